//! Analysis: what Rapport derives from each interaction — a summary, sentiment for the
//! interaction and for each customer message, and topics from the tenant's list — and the
//! persistent job queue that produces it through the tenant's inference backend.
//!
//! Every stored [`Analysis`] carries its [`Provenance`]: the backend, the model (its file's
//! sha256, or `lexicon` for the deterministic analyzers), the prompt version, the interaction
//! version it read (that version's `updated` time), when it was made and how long it took. An
//! interaction updated since is shown as stale, and the write that updated it queued it again.
//! Model output is untrusted text: stored as data, escaped by every template, never logged.
//!
//! - [`jobs`]: the job, its states and its transitions, as pure functions;
//! - [`store`]: the sealed trees (jobs, the queue index, counts, analyses, the topic list);
//! - [`pipeline`]: one batch of interactions through a backend;
//! - [`worker`]: the background thread of `rapport serve` and the foreground loop of
//!   `rapport analyse`;
//! - [`overrides`]: a QA lead's sentiment and topic overrides, kept beside the AI's result;
//! - [`routes`]: the Analysis status page, the Re-analyse action and the interaction page's panel
//!   (with the override forms).
//!
//! The functions here are the enqueue points: an explicit request (console or command line), an
//! import that committed, and a record written through the API or a webhook.

pub mod jobs;
pub mod lead;
pub mod overrides;
pub mod pipeline;
pub mod progress;
pub mod routes;
pub mod store;
pub mod topics;
pub mod worker;

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::audit::{Actor, AuditAction, AuditError, AuditEvent};
use crate::context::AppContext;
use crate::ids::{RecordId, TenantId};
use crate::inference::{BackendKind, InferenceError};
use crate::ingest::{ImportRun, ImportState};
use crate::records::RecordKind;
use crate::store::StoreError;

use crate::analysis::jobs::{EnqueueRequest, JobSubject, Priority};

#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Inference(#[from] InferenceError),
    #[error("there is no interaction {0} in this tenant")]
    NotFound(RecordId),
}

impl AnalysisError {
    /// A content-free name of the failure, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Store(_) => "store",
            Self::Audit(_) => "audit",
            Self::Inference(InferenceError::Model(_)) => "model",
            Self::Inference(_) => "inference",
            Self::NotFound(_) => "not found",
        }
    }
}

/// What is derived from an interaction. The string forms are stable (pages, the command line).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnalysisKind {
    Summary,
    Sentiment,
    Topics,
    /// Lead qualification: sales chats only.
    Lead,
    /// The QA scorecard ([`crate::qa`]).
    Qa,
    /// A reply draft for a review signal ([`crate::reviews`]); never asked of an interaction.
    ReplyDraft,
    /// An account's briefing ([`crate::accounts::briefing`]), stored under the account's id;
    /// never asked of an interaction.
    Briefing,
}

impl AnalysisKind {
    /// Every kind an interaction is analysed for.
    pub const ALL: [Self; 5] = [
        Self::Summary,
        Self::Sentiment,
        Self::Topics,
        Self::Lead,
        Self::Qa,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Summary => "summary",
            Self::Sentiment => "sentiment",
            Self::Topics => "topics",
            Self::Lead => "lead",
            Self::Qa => "qa",
            Self::ReplyDraft => "reply_draft",
            Self::Briefing => "briefing",
        }
    }

    /// What a review signal is analysed for, besides its reply draft (which is asked for only
    /// when the tenant's reply mode is `suggest`, or by a person).
    pub const REVIEW: [Self; 2] = [Self::Sentiment, Self::Topics];

    /// Every kind that can be stored: an interaction's, a review's and an account's.
    pub const STORED: [Self; 7] = [
        Self::Summary,
        Self::Sentiment,
        Self::Topics,
        Self::Lead,
        Self::Qa,
        Self::ReplyDraft,
        Self::Briefing,
    ];

    /// The byte that names the kind in an analysis's record key.
    fn code(self) -> u8 {
        match self {
            Self::Summary => 1,
            Self::Sentiment => 2,
            Self::Topics => 3,
            Self::Lead => 4,
            Self::Qa => 5,
            Self::ReplyDraft => 6,
            Self::Briefing => 7,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Self::STORED.into_iter().find(|kind| kind.code() == code)
    }
}

impl fmt::Display for AnalysisKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Where an analysis came from, stored with it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub backend: BackendKind,
    /// The backend as people read it (`local: gemma-3-270m-q4_k_m.gguf (sha256 a5fd3b62230a…)`).
    pub backend_description: String,
    /// The model file's sha256, or `lexicon` for the deterministic analyzers.
    pub model: String,
    /// How the result was made: `label scoring`, `few-shot generation`, `lexicon`,
    /// `keyword topics` or `extractive`.
    pub analyzer: String,
    /// The version of the prompt (or template) that produced it.
    pub prompt_version: u32,
    /// The `updated` time of the interaction version that was analysed.
    pub interaction_version: DateTime<Utc>,
    pub created: DateTime<Utc>,
    /// Time spent on it; for a batched classification, the batch's time shared out evenly.
    pub duration_ms: u64,
    /// SHA-256 (hex) of everything the analyzer read: the texts, and the labels for topics. A
    /// newer version with the same digest, model and prompt reuses the result (see
    /// [`pipeline`]). It sits inside the sealed value, like the texts themselves.
    pub input_digest: String,
}

/// A label and its probability.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelProbability {
    pub label: String,
    pub probability: f32,
}

/// One classification: the chosen label, its confidence, and every label's probability.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelScores {
    pub label: String,
    pub confidence: f32,
    pub probabilities: Vec<LabelProbability>,
}

impl LabelScores {
    pub fn from_classification(
        labels: &crate::inference::LabelSet,
        classification: &crate::inference::Classification,
    ) -> Self {
        Self {
            label: classification.label.clone(),
            confidence: classification.confidence,
            probabilities: labels
                .as_slice()
                .iter()
                .zip(&classification.probabilities)
                .map(|(label, probability)| LabelProbability {
                    label: label.clone(),
                    probability: *probability,
                })
                .collect(),
        }
    }
}

/// The sentiment of one customer message, by its position in the interaction's messages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MessageSentiment {
    pub message: usize,
    pub scores: LabelScores,
}

/// The result of one kind of analysis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnalysisResult {
    /// Generated (or, without a model, extracted) text: untrusted, at most
    /// [`pipeline::MAX_SUMMARY_CHARS`] characters.
    Summary { text: String },
    /// The interaction's customer messages together, and each customer message alone.
    Sentiment {
        overall: LabelScores,
        messages: Vec<MessageSentiment>,
    },
    /// The chosen labels (the most likely one, and any other at least
    /// [`pipeline::SECOND_TOPIC_PROBABILITY`] likely) and every label's probability.
    Topics {
        labels: Vec<String>,
        probabilities: Vec<LabelProbability>,
    },
    /// A sales chat's intent, stated facts and score (see [`lead`]).
    Lead(lead::LeadQualification),
    /// The QA scorecard's per-criterion scores with evidence, and the overall score.
    Qa(crate::qa::QaResult),
    /// A review's reply draft (see [`crate::reviews::drafts`]): untrusted text when a model
    /// wrote it.
    ReplyDraft(crate::reviews::drafts::ReplyDraft),
    /// An account's briefing with the interactions it cites (see
    /// [`crate::accounts::briefing`]): untrusted text when a model wrote it.
    Briefing(crate::accounts::briefing::Briefing),
}

impl AnalysisResult {
    pub fn kind(&self) -> AnalysisKind {
        match self {
            Self::Summary { .. } => AnalysisKind::Summary,
            Self::Sentiment { .. } => AnalysisKind::Sentiment,
            Self::Topics { .. } => AnalysisKind::Topics,
            Self::Lead(_) => AnalysisKind::Lead,
            Self::Qa(_) => AnalysisKind::Qa,
            Self::ReplyDraft(_) => AnalysisKind::ReplyDraft,
            Self::Briefing(_) => AnalysisKind::Briefing,
        }
    }
}

/// One stored analysis of one interaction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub interaction: RecordId,
    pub result: AnalysisResult,
    pub provenance: Provenance,
}

impl Analysis {
    pub fn kind(&self) -> AnalysisKind {
        self.result.kind()
    }

    /// True when the interaction has changed since this analysis read it.
    pub fn is_stale(&self, current_version: DateTime<Utc>) -> bool {
        self.provenance.interaction_version < current_version
    }
}

/// The topics every tenant starts with, until it stores its own list.
pub const DEFAULT_TOPICS: [&str; 9] = [
    "billing_and_payment",
    "refund_request",
    "account_and_login",
    "technical_problem",
    "delivery_and_shipping",
    "cancellation",
    "product_question",
    "complaint",
    "praise_and_feedback",
];

/// How many interactions an enqueue did something with (created or changed their job).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Enqueued {
    pub considered: usize,
    pub queued: usize,
}

/// Queues one interaction's current version for every kind of analysis. `force` queues it even
/// when that version was analysed already (the Re-analyse button, `--interaction`).
pub fn enqueue_interaction(
    context: &AppContext,
    tenant: TenantId,
    id: RecordId,
    priority: Priority,
    force: bool,
) -> Result<Enqueued, AnalysisError> {
    let interaction = context
        .interactions
        .get(tenant, id)?
        .ok_or(AnalysisError::NotFound(id))?;
    let queued = context.analysis.enqueue(
        tenant,
        &[(
            id,
            EnqueueRequest {
                subject: JobSubject::Interaction,
                version: interaction.updated,
                kinds: AnalysisKind::ALL.to_vec(),
                priority,
                force,
            },
        )],
    )?;
    Ok(Enqueued {
        considered: 1,
        queued,
    })
}

/// Queues every interaction (and review signal) of the tenant that is not analysed (or queued)
/// at its current version. Reads the whole tenant, so it is for backfills: `rapport analyse --all`.
pub fn enqueue_all(context: &AppContext, tenant: TenantId) -> Result<Enqueued, AnalysisError> {
    let mut report = enqueue_where(context, tenant, Priority::Backfill, false, |_| true)?;
    // Review signals share the queue; a review whose version was analysed is not queued again.
    let reviews = crate::reviews::enqueue_written_since(context, tenant, DateTime::<Utc>::MIN_UTC)?;
    report.considered += reviews.considered;
    report.queued += reviews.queued;
    Ok(report)
}

/// Which interactions a re-analysis after a taxonomy change covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReanalysisScope {
    All,
    /// Interactions updated on or after this day (UTC).
    UpdatedSince(chrono::NaiveDate),
}

impl std::fmt::Display for ReanalysisScope {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::All => formatter.write_str("all interactions"),
            Self::UpdatedSince(day) => write!(formatter, "interactions updated since {day}"),
        }
    }
}

/// Queues the interactions in `scope` again even where their current version was analysed (a
/// backfill, behind live arrivals), after a taxonomy change: analyses whose inputs, model and
/// prompt are unchanged are kept and only re-stamped, so only what the change affects is
/// computed again. Audited as `analysis.requested` with the scope.
pub fn reanalyse_scope(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    tenant: TenantId,
    scope: ReanalysisScope,
) -> Result<Enqueued, AnalysisError> {
    let since = match scope {
        ReanalysisScope::All => None,
        ReanalysisScope::UpdatedSince(day) => Some(day.and_time(chrono::NaiveTime::MIN).and_utc()),
    };
    let enqueued = enqueue_where(context, tenant, Priority::Backfill, true, |version| {
        since.is_none_or(|since| version >= since)
    })?;
    context.audit(
        AuditEvent::new(
            Some(tenant),
            actor.clone(),
            AuditAction::AnalysisRequested,
            scope.to_string(),
        )
        .client(client),
    )?;
    Ok(enqueued)
}

fn enqueue_where(
    context: &AppContext,
    tenant: TenantId,
    priority: Priority,
    force: bool,
    keep: impl Fn(DateTime<Utc>) -> bool,
) -> Result<Enqueued, AnalysisError> {
    let mut report = Enqueued::default();
    let mut pending = Vec::new();
    context.interactions.for_each(tenant, |interaction| {
        if keep(interaction.updated) {
            pending.push((
                interaction.id,
                EnqueueRequest {
                    subject: JobSubject::Interaction,
                    version: interaction.updated,
                    kinds: AnalysisKind::ALL.to_vec(),
                    priority,
                    force,
                },
            ));
        }
        if pending.len() >= store::ENQUEUE_CHUNK {
            report.considered += pending.len();
            report.queued += context.analysis.enqueue(tenant, &pending)?;
            pending.clear();
        }
        Ok(())
    })?;
    report.considered += pending.len();
    report.queued += context.analysis.enqueue(tenant, &pending)?;
    Ok(report)
}

/// Queues the interactions a committed import wrote: those whose version is no older than the
/// run's start. The import engine does not hand out the ids it wrote, so this walks the tenant's
/// interactions once; enqueueing is idempotent, so an interaction written meanwhile by someone
/// else is queued once too. Failures are logged (without content) and reported as 0: the import
/// itself has committed, and `rapport analyse --all` catches up.
pub fn enqueue_after_import(context: &AppContext, tenant: TenantId, run: &ImportRun) -> usize {
    if run.state != ImportState::Committed || run.imported + run.updated == 0 {
        return 0;
    }
    let since = run.started;
    if run.format.kind() == RecordKind::Signal {
        // Review signals share the queue (sentiment, topics, reply drafts).
        return match crate::reviews::enqueue_written_since(context, tenant, since) {
            Ok(report) => report.queued,
            Err(error) => {
                tracing::warn!(import = %run.id, %error, "imported reviews not queued for analysis");
                0
            }
        };
    }
    if run.format.kind() != RecordKind::Interaction {
        return 0;
    }
    match enqueue_where(context, tenant, Priority::Backfill, false, |version| {
        version >= since
    }) {
        Ok(report) => report.queued,
        Err(error) => {
            tracing::warn!(import = %run.id, kind = error.kind(), "imported interactions not queued for analysis");
            0
        }
    }
}

/// Queues an interaction (or a review signal) written through the API or a webhook, ahead of
/// backfills. Other kinds of record are not analysed. Failures are logged, not returned: the write has committed.
pub fn enqueue_written(
    context: &AppContext,
    tenant: TenantId,
    kind: RecordKind,
    id: RecordId,
    version: DateTime<Utc>,
) {
    if kind == RecordKind::Signal {
        // A review signal is analysed too; other signals are not.
        if let Err(error) = crate::reviews::enqueue_review(context, tenant, id, Priority::Live) {
            tracing::warn!(signal = %id, %error, "written review not queued for analysis");
        }
        return;
    }
    if kind != RecordKind::Interaction {
        return;
    }
    let request = EnqueueRequest {
        subject: JobSubject::Interaction,
        version,
        kinds: AnalysisKind::ALL.to_vec(),
        priority: Priority::Live,
        force: false,
    };
    if let Err(error) = context.analysis.enqueue(tenant, &[(id, request)]) {
        // A store error names collections and paths, never content.
        tracing::warn!(interaction = %id, %error, "written interaction not queued for analysis");
    }
}

/// A person asks for one interaction to be analysed again (the console's Re-analyse button):
/// queued ahead of backfills, and audited.
pub fn request_reanalysis(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    tenant: TenantId,
    id: RecordId,
) -> Result<Enqueued, AnalysisError> {
    let enqueued = enqueue_interaction(context, tenant, id, Priority::Live, true)?;
    context.audit(
        AuditEvent::new(
            Some(tenant),
            actor.clone(),
            AuditAction::AnalysisRequested,
            format!("interaction {id}"),
        )
        .client(client),
    )?;
    Ok(enqueued)
}

/// Someone cancels every queued job of the tenant (the Analysis page's Cancel button,
/// `rapport analyse --cancel`): they leave the queue as failed with `cancelled`, and the
/// cancellation is audited with the number of jobs. Running jobs finish their batch.
pub fn cancel_queued(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    tenant: TenantId,
) -> Result<usize, AnalysisError> {
    let cancelled = context.analysis.cancel_queued(tenant)?;
    context.audit(
        AuditEvent::new(
            Some(tenant),
            actor.clone(),
            AuditAction::AnalysisCancelled,
            format!("{cancelled} queued jobs"),
        )
        .client(client),
    )?;
    Ok(cancelled)
}

/// What the Analysis page shows: the tenant's job counts, its backend choice, its topic list and
/// its failed jobs (at most `failed_limit`). Ids, counts and labels only: no tenant content.
#[derive(Clone, Debug)]
pub struct QueueStatus {
    pub counts: jobs::JobCounts,
    pub progress: progress::Progress,
    pub backend: BackendKind,
    pub model_sha256: Option<String>,
    pub topics: Vec<String>,
    pub failed: Vec<jobs::Job>,
}

pub fn queue_status(
    context: &AppContext,
    tenant: TenantId,
    failed_limit: usize,
) -> Result<QueueStatus, AnalysisError> {
    let directories = crate::inference::models::ModelDirectories::from_config(&context.config);
    let settings = crate::inference::store::AnalysisSettingsStore::new(context.store.clone())
        .get(tenant, &directories)?;
    let counts = context.analysis.counts(tenant)?;
    Ok(QueueStatus {
        counts,
        progress: progress::Progress::new(&counts, context.analysis.per_minute(tenant)),
        backend: settings.backend,
        model_sha256: settings.model_sha256,
        topics: context.analysis.topics(tenant)?.as_slice().to_vec(),
        failed: context
            .analysis
            .jobs_in_state(tenant, jobs::JobState::Failed, failed_limit)?,
    })
}

/// Re-queues the jobs of every tenant that were running when the process stopped. Only one
/// process opens the database, so such a job was cut off. Called when the database opens.
pub fn requeue_interrupted(context: &AppContext) -> Result<usize, StoreError> {
    let mut requeued = 0;
    for tenant in context.tenants.list_stored()? {
        requeued += context.analysis.requeue_interrupted(tenant.id)?;
    }
    Ok(requeued)
}
