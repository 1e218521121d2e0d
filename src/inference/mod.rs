//! Inference: the analysis backends (llama.cpp on this machine, deterministic analyzers, and an
//! OpenAI-compatible endpoint in the client's network), the models they run, and how a tenant
//! chooses between them.
//!
//! Callers see one interface, [`Backend`]: classify texts into one label of a set (sentiment,
//! topics), or generate free text with a token limit. The `local` backend runs llama.cpp on a
//! dedicated thread ([`engine`]) and classifies by *constrained choice*: it scores the likelihood of
//! each label after a few-shot prompt, which works on small base models and yields per-label
//! probabilities. The `off` backend ([`lexicon`]) needs no model. The `remote` backend ([`remote`])
//! sends text, redacted of personal data first, to an endpoint the tenant admin chose
//! ([`settings`], [`routes`]). A model file is loaded only when its sha256 is approved
//! ([`models`]). This is the only module that links `llama-cpp-2`.
//!
//! Model output is untrusted text: it is returned as data, never interpreted, and never logged.

pub mod bench;
pub mod catalogue;
pub mod engine;
pub mod eval;
pub mod gguf;
pub mod lexicon;
pub mod metrics;
pub mod models;
pub mod prompts;
pub mod remote;
pub mod routes;
pub mod settings;
pub mod store;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::audit::Actor;
use crate::context::AppContext;
use crate::inference::engine::{Engine, GenerateRequest, ScoreRequest};
use crate::store::StoreError;
use crate::tenants::Tenant;

#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    #[error(transparent)]
    Model(#[from] models::ModelError),
    #[error("inference failed: {0}")]
    Engine(String),
    #[error("the inference thread has stopped")]
    EngineStopped,
    #[error("{0}")]
    Invalid(String),
    #[error("the {0} backend is not available in this version")]
    Unavailable(BackendKind),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Remote(#[from] remote::RemoteError),
    /// A setting typed by a tenant admin, naming its field.
    #[error(transparent)]
    Setting(#[from] remote::SettingsProblem),
    #[error(transparent)]
    Pii(#[from] crate::pii::PiiError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
}

impl InferenceError {
    /// Whether the backend could not be reached for now (the inference thread stopped; a remote
    /// endpoint refusing connections, timing out, overloaded or failing with a server error),
    /// as opposed to a problem with the work itself or a setting: the analysis worker then
    /// gives the batch back and rests the tenant instead of spending the jobs' attempts.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::EngineStopped => true,
            Self::Remote(error) => error.is_transient(),
            _ => false,
        }
    }
}

/// Which analysis backend a tenant uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// llama.cpp on this machine.
    Local,
    /// Deterministic analyzers only (a sentiment lexicon and keyword topics).
    Off,
    /// An OpenAI-compatible endpoint inside the client's network; text is redacted first.
    Remote,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Self::Local => "local",
            Self::Off => "off",
            Self::Remote => "remote",
        })
    }
}

/// What a classification is about; it picks the prompt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    Sentiment,
    Topic,
    /// What a sales-chat visitor wants (see `analysis::lead`).
    #[value(name = "lead-intent")]
    #[serde(rename = "lead_intent")]
    LeadIntent,
    /// One QA criterion of one conversation: the text ends with the criterion's question, the
    /// labels are the scale's (`yes`/`no`/`n/a`, or points and `n/a`).
    #[value(name = "qa-criterion")]
    #[serde(rename = "qa_criterion")]
    QaCriterion,
}

/// The sentiment labels, in the order every sentiment result lists them.
pub const SENTIMENT_LABELS: [&str; 3] = ["positive", "neutral", "negative"];

/// A non-empty set of distinct labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelSet(Vec<String>);

impl LabelSet {
    pub fn parse(labels: Vec<String>) -> Result<Self, InferenceError> {
        let labels: Vec<String> = labels
            .into_iter()
            .map(|label| label.trim().to_owned())
            .collect();
        if labels.is_empty() || labels.iter().any(String::is_empty) {
            return Err(InferenceError::Invalid(
                "a label set needs at least one non-empty label".to_owned(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(duplicate) = labels.iter().find(|label| !seen.insert(label.as_str())) {
            return Err(InferenceError::Invalid(format!(
                "label {duplicate:?} appears twice"
            )));
        }
        Ok(Self(labels))
    }

    pub fn sentiment() -> Self {
        Self(
            SENTIMENT_LABELS
                .iter()
                .map(|label| (*label).to_owned())
                .collect(),
        )
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One text's result: the chosen label, every label's probability (in the label set's order, summing
/// to 1 over the set) and the confidence, which is the chosen label's probability.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Classification {
    pub label: String,
    pub probabilities: Vec<f32>,
    pub confidence: f32,
}

/// A batch of results, with what it cost.
#[derive(Clone, Debug)]
pub struct Classified {
    pub results: Vec<Classification>,
    /// Tokens decoded by the model for this batch (0 for deterministic backends).
    pub tokens_decoded: u64,
}

/// The interface every analysis backend offers.
pub trait Backend: Send + Sync {
    fn kind(&self) -> BackendKind;

    /// A short description for people: the backend and, where there is one, the model.
    fn describe(&self) -> String;

    /// What stored provenance names as the model: the model file's sha256 for `local`,
    /// `lexicon` for the deterministic analyzers.
    fn model_id(&self) -> String {
        self.kind().to_string()
    }

    /// Classifies each text into one label of `labels`.
    fn classify(
        &self,
        task: TaskKind,
        labels: &LabelSet,
        texts: &[String],
    ) -> Result<Classified, InferenceError>;

    /// Generates at most `max_tokens` tokens of free text after `prompt`, stopping at a blank line.
    fn generate(&self, prompt: &str, max_tokens: u32) -> Result<String, InferenceError>;

    /// Generates at most `max_tokens` tokens after `prompt` that follow `grammar` (GBNF, root rule
    /// `root`), where a structure is needed. The `local` backend enforces the grammar while it
    /// decodes; a backend that cannot (a remote endpoint) generates freely, so callers always
    /// parse and check what comes back.
    fn generate_structured(
        &self,
        prompt: &str,
        grammar: &str,
        max_tokens: u32,
    ) -> Result<String, InferenceError> {
        let _ = grammar;
        self.generate(prompt, max_tokens)
    }
}

/// Turns per-label log-likelihoods into a [`Classification`]: a softmax over the label set.
pub fn classification_from_scores(labels: &LabelSet, scores: &[f32]) -> Classification {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let weights: Vec<f32> = scores
        .iter()
        .map(|score| {
            if max.is_finite() {
                (score - max).exp()
            } else {
                1.0
            }
        })
        .collect();
    let total: f32 = weights.iter().sum();
    let probabilities: Vec<f32> = weights
        .iter()
        .map(|weight| if total > 0.0 { weight / total } else { 0.0 })
        .collect();
    let (best, confidence) = probabilities.iter().copied().enumerate().fold(
        (0, f32::NEG_INFINITY),
        |best, (index, probability)| {
            if probability > best.1 {
                (index, probability)
            } else {
                best
            }
        },
    );
    Classification {
        label: labels.as_slice()[best].clone(),
        probabilities,
        confidence,
    }
}

/// The `local` backend: llama.cpp on the inference thread.
#[derive(Debug)]
pub struct LocalBackend {
    engine: Engine,
}

impl LocalBackend {
    pub fn new(engine: Engine) -> Self {
        Self { engine }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }
}

impl Backend for LocalBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Local
    }

    fn describe(&self) -> String {
        let info = self.engine.info();
        let file = info
            .model_path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!(
            "local: {file} (sha256 {}…), {} threads, batch width {}",
            &info.sha256[..12.min(info.sha256.len())],
            info.threads,
            info.batch_width
        )
    }

    fn model_id(&self) -> String {
        self.engine.info().sha256.clone()
    }

    fn classify(
        &self,
        task: TaskKind,
        labels: &LabelSet,
        texts: &[String],
    ) -> Result<Classified, InferenceError> {
        if texts.is_empty() {
            return Ok(Classified {
                results: Vec::new(),
                tokens_decoded: 0,
            });
        }
        let prompt = prompts::classification_prompt(task, labels);
        let mut items: Vec<String> = texts.iter().map(|text| prompts::item(task, text)).collect();
        // Zero-shot topics are calibrated against a content-free message: a small model prefers
        // some labels whatever the text (the first listed, the shortest), and subtracting that
        // prior is what makes its choice depend on the text (contextual calibration). QA criteria
        // too: uncalibrated, the default model answers `no` and `1` to nearly every question.
        let calibrate = matches!(task, TaskKind::Topic | TaskKind::QaCriterion);
        if calibrate {
            items.push(prompts::item(task, &prompts::content_free(task)));
        }
        let mut output = self.engine.score(ScoreRequest {
            prefix: prompt.prefix,
            items,
            choices: prompt.choices,
            max_item_tokens: prompts::MAX_ITEM_TOKENS,
        })?;
        if calibrate {
            if let Some(prior) = output.relative_log_likelihoods.pop() {
                for scores in &mut output.relative_log_likelihoods {
                    for (score, bias) in scores.iter_mut().zip(&prior) {
                        *score -= bias;
                    }
                }
            }
        }
        let results = output
            .relative_log_likelihoods
            .iter()
            .map(|scores| classification_from_scores(labels, scores))
            .collect();
        Ok(Classified {
            results,
            tokens_decoded: output.stats.tokens_decoded,
        })
    }

    fn generate(&self, prompt: &str, max_tokens: u32) -> Result<String, InferenceError> {
        let output = self.engine.generate(GenerateRequest {
            prompt: prompt.to_owned(),
            max_tokens,
            stop: vec!["\n\n".to_owned()],
            grammar: None,
        })?;
        Ok(output.text)
    }

    fn generate_structured(
        &self,
        prompt: &str,
        grammar: &str,
        max_tokens: u32,
    ) -> Result<String, InferenceError> {
        let output = self.engine.generate(GenerateRequest {
            prompt: prompt.to_owned(),
            max_tokens,
            stop: Vec::new(),
            grammar: Some(grammar.to_owned()),
        })?;
        Ok(output.text)
    }
}

/// The engine settings from the configuration.
pub fn engine_settings(config: &crate::config::InferenceConfig) -> engine::EngineSettings {
    engine::EngineSettings {
        threads: config.threads,
        context_size: config.context_size,
        batch_width: config.batch_width as usize,
    }
}

/// Starts the `local` backend on the model file at `path`, if its digest is approved.
pub fn start_local(
    path: &std::path::Path,
    approved: &[String],
    settings: &engine::EngineSettings,
) -> Result<LocalBackend, InferenceError> {
    let model = models::approve_for_loading(path, approved)?;
    Ok(LocalBackend::new(Engine::start(&model, settings)?))
}

/// The backend a tenant has chosen (or its default), ready to use. A `local` backend starts its
/// inference thread and loads the model here, which takes a second or two. A `remote` backend
/// gets the tenant's PII detector, whose known names are its contacts' names (reading them is
/// audited as a read of personal data by `actor`).
pub fn open_tenant_backend(
    context: &AppContext,
    actor: &Actor,
    tenant: &Tenant,
) -> Result<Box<dyn Backend>, InferenceError> {
    let config = &context.config;
    let store = &context.store;
    let directories = models::ModelDirectories::from_config(config);
    let settings = store::AnalysisSettingsStore::new(store.clone()).get(tenant.id, &directories)?;
    match settings.backend {
        BackendKind::Off => Ok(Box::new(lexicon::OffBackend)),
        BackendKind::Remote => {
            let remote = settings.remote.ok_or_else(|| {
                InferenceError::Invalid(
                    "the remote backend is chosen but has no endpoint; a tenant admin sets it in the analysis settings".to_owned(),
                )
            })?;
            let detector = crate::pii::tenant_detector(context, actor, tenant)?;
            Ok(Box::new(remote::RemoteBackend::new(&remote, detector)?))
        }
        BackendKind::Local => {
            let sha256 = settings
                .model_sha256
                .unwrap_or_else(|| models::DEFAULT_MODEL_SHA256.to_owned());
            let path = directories.find_by_sha256(&sha256)?;
            let approved = store::ModelApprovals::new(store.clone()).approved_digests()?;
            Ok(Box::new(start_local(
                &path,
                &approved,
                &engine_settings(&config.inference),
            )?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_become_probabilities_that_sum_to_one() {
        let labels = LabelSet::sentiment();
        let result = classification_from_scores(&labels, &[-0.5, -2.0, -3.0]);
        assert_eq!(result.label, "positive");
        let sum: f32 = result.probabilities.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5);
        // exp(-0.5) / (exp(-0.5) + exp(-2) + exp(-3)) = 0.6065 / 0.7916 = 0.7662
        assert!(
            (result.confidence - 0.7662).abs() < 1e-3,
            "{}",
            result.confidence
        );
    }

    #[test]
    fn label_sets_refuse_duplicates_and_blanks() {
        assert!(LabelSet::parse(vec!["a".into(), "a".into()]).is_err());
        assert!(LabelSet::parse(vec![" ".into()]).is_err());
        assert!(LabelSet::parse(Vec::new()).is_err());
        assert_eq!(
            LabelSet::parse(vec![" a ".into()]).unwrap().as_slice(),
            ["a"]
        );
    }
}
