//! QA scorecards: how well the agent side of an interaction (human agents and AI agents alike)
//! handled the customer, criterion by criterion, with a weighted overall score and auto-fail.
//!
//! A tenant's [`Scorecard`] is the eight built-in criteria (each can be switched off, weighted,
//! made critical, and given another scale) plus its own criteria. Each criterion is scored on its
//! [`Scale`] — binary (yes/no), 3 points or 5 points — or found not applicable (N/A), with a
//! confidence, a short reasoning and an [`Evidence`] quote that is an exact substring of one of the
//! interaction's messages (see [`evidence`]). The analysis pipeline stores the result as
//! `AnalysisKind::Qa` with the usual provenance ([`scoring`] makes it).
//!
//! The overall score ([`overall`]) is the weighted mean of the applicable criteria, normalised to
//! 0–100; a critical criterion at its lowest point fails the whole interaction (overall 0, flagged).
//! A QA lead's [`Override`] of one criterion is stored beside the AI result, which is kept; the
//! effective score ([`effective_overall`]) and every report use the override.
//!
//! Everything in this file is pure; [`store`] holds the scorecard and the overrides, [`routes`] the
//! pages. The functions at the end are the domain operations the routes call (they audit).

pub mod evidence;
pub mod export;
pub mod routes;
pub mod scoring;
pub mod store;

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::analysis::{
    Analysis, AnalysisError, AnalysisKind, AnalysisResult, Enqueued, LabelProbability,
    ReanalysisScope,
};
use crate::audit::{Actor, AuditAction, AuditError, AuditEvent};
use crate::context::AppContext;
use crate::ids::{RecordId, TenantId};
use crate::interactions::{AuthorRole, InteractionRecord};
use crate::store::StoreError;

/// The most criteria a scorecard may have, built-ins included.
pub const MAX_CRITERIA: usize = 40;
/// The highest weight a criterion may have.
pub const MAX_WEIGHT: u32 = 100;
/// Characters of a criterion's name and of its question, at most.
pub const MAX_NAME_CHARS: usize = 80;
pub const MAX_QUESTION_CHARS: usize = 300;
/// Characters of an override's comment, at most.
pub const MAX_COMMENT_CHARS: usize = 1000;

/// How a criterion is scored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    /// Yes (1) or no (0).
    Binary,
    /// 1 to 3 points.
    Three,
    /// 1 to 5 points.
    Five,
}

impl Scale {
    pub const ALL: [Self; 3] = [Self::Binary, Self::Three, Self::Five];

    /// The stable name (forms, the editor).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Binary => "binary",
            Self::Three => "3-point",
            Self::Five => "5-point",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|scale| scale.as_str() == value.trim())
    }

    /// The lowest point: a critical criterion scored here fails the interaction.
    pub fn min(self) -> u8 {
        match self {
            Self::Binary => 0,
            Self::Three | Self::Five => 1,
        }
    }

    pub fn max(self) -> u8 {
        match self {
            Self::Binary => 1,
            Self::Three => 3,
            Self::Five => 5,
        }
    }

    /// The point in the middle (binary: yes).
    pub fn mid(self) -> u8 {
        match self {
            Self::Binary => 1,
            Self::Three => 2,
            Self::Five => 3,
        }
    }

    pub fn contains(self, points: u8) -> bool {
        (self.min()..=self.max()).contains(&points)
    }

    /// `points` on a 0–1 line: the lowest point is 0, the highest 1.
    pub fn fraction(self, points: u8) -> f64 {
        let span = f64::from(self.max() - self.min());
        (f64::from(points.clamp(self.min(), self.max()) - self.min())) / span
    }

    /// The labels a model chooses among: the points (or yes/no) and `n/a`, highest first.
    pub fn labels(self) -> Vec<String> {
        let mut labels: Vec<String> = match self {
            Self::Binary => vec!["yes".to_owned(), "no".to_owned()],
            Self::Three | Self::Five => (self.min()..=self.max())
                .rev()
                .map(|points| points.to_string())
                .collect(),
        };
        labels.push(NOT_APPLICABLE.to_owned());
        labels
    }

    /// What a label (of [`Scale::labels`], or typed in an override) means: `Some(None)` is N/A.
    pub fn parse_points(self, label: &str) -> Option<Option<u8>> {
        let label = label.trim().to_ascii_lowercase();
        match (self, label.as_str()) {
            (_, NOT_APPLICABLE | "na" | "n.a.") => Some(None),
            (Self::Binary, "yes" | "1") => Some(Some(1)),
            (Self::Binary, "no" | "0") => Some(Some(0)),
            (Self::Binary, _) => None,
            (_, digits) => digits
                .parse::<u8>()
                .ok()
                .filter(|points| self.contains(*points))
                .map(Some),
        }
    }

    /// A score as people read it: `yes`, `no`, `4/5`, `N/A`.
    pub fn describe(self, points: Option<u8>) -> String {
        match (self, points) {
            (_, None) => "N/A".to_owned(),
            (Self::Binary, Some(0)) => "no".to_owned(),
            (Self::Binary, Some(_)) => "yes".to_owned(),
            (_, Some(points)) => format!("{points}/{}", self.max()),
        }
    }

    /// The label of a score, as [`Scale::labels`] spells it.
    pub fn label(self, points: Option<u8>) -> String {
        match (self, points) {
            (_, None) => NOT_APPLICABLE.to_owned(),
            (Self::Binary, Some(0)) => "no".to_owned(),
            (Self::Binary, Some(_)) => "yes".to_owned(),
            (_, Some(points)) => points.to_string(),
        }
    }
}

impl fmt::Display for Scale {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// The label of "not applicable".
pub const NOT_APPLICABLE: &str = "n/a";

/// One criterion of a scorecard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Criterion {
    /// Stable id: the built-ins' names (`greeting`), or a slug of a tenant criterion's name.
    pub id: String,
    pub name: String,
    /// What the model is asked about the conversation ("Did the agent greet the customer?").
    pub question: String,
    pub scale: Scale,
    pub weight: u32,
    /// Scored at its lowest point, it fails the whole interaction.
    pub critical: bool,
    pub enabled: bool,
}

impl Criterion {
    pub fn is_builtin(&self) -> bool {
        BUILTIN.iter().any(|builtin| builtin.0 == self.id)
    }
}

/// The built-in criteria: id, name, question, scale, weight.
const BUILTIN: [(&str, &str, &str, Scale, u32); 8] = [
    (
        "greeting",
        "Greeting",
        "Did the agent greet the customer at the start?",
        Scale::Binary,
        1,
    ),
    (
        "empathy",
        "Empathy",
        "Did the agent show empathy for the customer's situation?",
        Scale::Three,
        2,
    ),
    (
        "spelling_grammar",
        "Spelling & grammar",
        "Are the agent's messages free of spelling and grammar mistakes?",
        Scale::Three,
        1,
    ),
    (
        "closing",
        "Closing",
        "Did the agent close the conversation politely?",
        Scale::Binary,
        1,
    ),
    (
        "solution_offered",
        "Solution offered",
        "Did the agent offer a solution to the customer's problem?",
        Scale::Binary,
        3,
    ),
    (
        "tone",
        "Tone",
        "Was the agent's tone polite and professional?",
        Scale::Three,
        2,
    ),
    (
        "readability",
        "Readability",
        "Are the agent's messages clear and easy to read?",
        Scale::Three,
        1,
    ),
    (
        "comprehension",
        "Comprehension",
        "Did the agent understand the customer's request?",
        Scale::Three,
        2,
    ),
];

/// The ids of the built-in criteria, in scorecard order.
pub fn builtin_ids() -> impl Iterator<Item = &'static str> {
    BUILTIN.iter().map(|builtin| builtin.0)
}

/// A tenant's scorecard: the built-ins first, then its own criteria.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scorecard {
    pub criteria: Vec<Criterion>,
}

impl Scorecard {
    /// What every tenant starts with: the eight built-ins, enabled, none critical.
    pub fn builtin() -> Self {
        Self {
            criteria: BUILTIN
                .iter()
                .map(|(id, name, question, scale, weight)| Criterion {
                    id: (*id).to_owned(),
                    name: (*name).to_owned(),
                    question: (*question).to_owned(),
                    scale: *scale,
                    weight: *weight,
                    critical: false,
                    enabled: true,
                })
                .collect(),
        }
    }

    pub fn enabled(&self) -> impl Iterator<Item = &Criterion> {
        self.criteria.iter().filter(|criterion| criterion.enabled)
    }

    pub fn get(&self, id: &str) -> Option<&Criterion> {
        self.criteria.iter().find(|criterion| criterion.id == id)
    }

    /// Checks what a person typed; the problem names the field (`criterion 3: weight`).
    pub fn validate(&self) -> Result<(), ScorecardProblem> {
        if self.criteria.len() > MAX_CRITERIA {
            return Err(ScorecardProblem::new(
                "criteria",
                format!("a scorecard has at most {MAX_CRITERIA} criteria"),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (index, criterion) in self.criteria.iter().enumerate() {
            let field = |name: &str| format!("criterion {} ({}): {name}", index + 1, criterion.id);
            let name = criterion.name.trim();
            if name.is_empty() {
                return Err(ScorecardProblem::new(
                    &format!("criterion {}: name", index + 1),
                    "a criterion needs a name",
                ));
            }
            if name.chars().count() > MAX_NAME_CHARS {
                return Err(ScorecardProblem::new(
                    &field("name"),
                    format!("a name has at most {MAX_NAME_CHARS} characters"),
                ));
            }
            let question = criterion.question.trim();
            if question.is_empty() {
                return Err(ScorecardProblem::new(
                    &field("question"),
                    "a criterion needs the question the model answers about the conversation",
                ));
            }
            if question.chars().count() > MAX_QUESTION_CHARS {
                return Err(ScorecardProblem::new(
                    &field("question"),
                    format!("a question has at most {MAX_QUESTION_CHARS} characters"),
                ));
            }
            if criterion.weight > MAX_WEIGHT {
                return Err(ScorecardProblem::new(
                    &field("weight"),
                    format!("a weight is a whole number from 0 to {MAX_WEIGHT}"),
                ));
            }
            if criterion.id.is_empty() || !seen.insert(criterion.id.as_str()) {
                return Err(ScorecardProblem::new(
                    &format!("criterion {}: name", index + 1),
                    "two criteria have the same name",
                ));
            }
        }
        if self.enabled().next().is_none() {
            return Err(ScorecardProblem::new(
                "enabled",
                "enable at least one criterion",
            ));
        }
        if self.enabled().all(|criterion| criterion.weight == 0) {
            return Err(ScorecardProblem::new(
                "weight",
                "at least one enabled criterion needs a weight above 0",
            ));
        }
        Ok(())
    }
}

/// The id of a tenant criterion: its name in lower case, words joined by `_`, prefixed `custom_`
/// so it can never take a built-in's id.
pub fn criterion_id(name: &str) -> String {
    let words: Vec<String> = name
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .collect();
    format!("custom_{}", words.join("_"))
}

/// A scorecard that cannot be saved, naming the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ScorecardProblem {
    pub field: String,
    pub message: String,
}

impl ScorecardProblem {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// Where a quote sits: the message (its position in the interaction) and the byte range of its
/// text. `quote` is `text[start..end]` of that message when it was scored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub message: usize,
    pub start: usize,
    pub end: usize,
    pub quote: String,
}

/// One criterion's AI score, with the criterion's settings at the time it was scored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CriterionScore {
    pub criterion: String,
    pub name: String,
    pub scale: Scale,
    pub weight: u32,
    pub critical: bool,
    /// `None`: not applicable.
    pub points: Option<u8>,
    pub confidence: f32,
    /// One short sentence made from the choice and the evidence (never free generation).
    pub reasoning: String,
    pub evidence: Option<Evidence>,
    pub probabilities: Vec<LabelProbability>,
}

/// Who answered the customer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentKind {
    Human,
    Ai,
    /// Both a human agent and an AI agent wrote.
    Mixed,
    /// Nobody answered the customer.
    None,
}

impl AgentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Human => "human",
            Self::Ai => "AI",
            Self::Mixed => "human and AI",
            Self::None => "none",
        }
    }
}

/// The stored QA analysis of one interaction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QaResult {
    pub criteria: Vec<CriterionScore>,
    /// The AI's overall score (0–100), `None` when no criterion applied.
    pub overall: Option<f32>,
    pub auto_fail: bool,
    /// The agent who wrote most of the agent side (name, or e-mail).
    pub agent: Option<String>,
    pub agent_kind: AgentKind,
}

/// One criterion's contribution to the overall score.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scored {
    pub scale: Scale,
    pub weight: u32,
    pub critical: bool,
    pub points: Option<u8>,
}

/// An overall score.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Overall {
    /// 0–100, one decimal; `None` when no weighted criterion applied (and nothing failed).
    pub score: Option<f32>,
    pub auto_fail: bool,
}

/// The weighted mean of the applicable criteria, normalised to 0–100 (one decimal). N/A criteria
/// and criteria of weight 0 do not count. A critical criterion at its scale's lowest point fails
/// the interaction: the overall score is 0 and `auto_fail` is set.
pub fn overall(scores: &[Scored]) -> Overall {
    let auto_fail = scores
        .iter()
        .any(|scored| scored.critical && scored.points == Some(scored.scale.min()));
    if auto_fail {
        return Overall {
            score: Some(0.0),
            auto_fail,
        };
    }
    let mut weighted = 0.0;
    let mut total = 0.0;
    for scored in scores {
        if let Some(points) = scored.points {
            if scored.weight > 0 {
                weighted += f64::from(scored.weight) * scored.scale.fraction(points);
                total += f64::from(scored.weight);
            }
        }
    }
    let score = (total > 0.0).then(|| {
        #[allow(clippy::cast_possible_truncation)] // 0–1000, well within f32.
        let tenths = (weighted / total * 1000.0).round() as f32;
        tenths / 10.0
    });
    Overall {
        score,
        auto_fail: false,
    }
}

/// A QA lead's score for one criterion, kept beside the AI's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    pub criterion: String,
    /// `None`: not applicable.
    pub points: Option<u8>,
    pub comment: String,
    /// Who overrode it, as the audit log names them.
    pub by: String,
    pub at: DateTime<Utc>,
}

/// The override that counts for `criterion`: the latest one whose points fit its scale.
pub fn override_for<'a>(score: &CriterionScore, overrides: &'a [Override]) -> Option<&'a Override> {
    overrides
        .iter()
        .filter(|entry| {
            entry.criterion == score.criterion
                && entry
                    .points
                    .is_none_or(|points| score.scale.contains(points))
        })
        .max_by_key(|entry| entry.at)
}

/// Each criterion's effective points: the override's where there is one, the AI's otherwise.
pub fn effective_points(result: &QaResult, overrides: &[Override]) -> Vec<Option<u8>> {
    result
        .criteria
        .iter()
        .map(|score| override_for(score, overrides).map_or(score.points, |entry| entry.points))
        .collect()
}

/// The overall score that reports use: computed from the effective points.
pub fn effective_overall(result: &QaResult, overrides: &[Override]) -> Overall {
    let scored: Vec<Scored> = result
        .criteria
        .iter()
        .zip(effective_points(result, overrides))
        .map(|(score, points)| Scored {
            scale: score.scale,
            weight: score.weight,
            critical: score.critical,
            points,
        })
        .collect();
    overall(&scored)
}

/// The agent of an interaction: the author who wrote most agent and AI-agent messages (name, else
/// e-mail), and whether they were human, AI, or both.
pub fn agent_of(record: &InteractionRecord) -> (Option<String>, AgentKind) {
    let mut human = false;
    let mut ai = false;
    let mut authors: Vec<(String, usize)> = Vec::new();
    for message in &record.messages {
        match message.role {
            AuthorRole::Agent => human = true,
            AuthorRole::AiAgent => ai = true,
            AuthorRole::Customer | AuthorRole::InternalNote => continue,
        }
        let author = message
            .author_name
            .as_deref()
            .or(message.author_email.as_deref())
            .map(str::trim)
            .filter(|author| !author.is_empty());
        if let Some(author) = author {
            match authors.iter_mut().find(|(name, _)| name == author) {
                Some((_, count)) => *count += 1,
                None => authors.push((author.to_owned(), 1)),
            }
        }
    }
    let kind = match (human, ai) {
        (true, true) => AgentKind::Mixed,
        (true, false) => AgentKind::Human,
        (false, true) => AgentKind::Ai,
        (false, false) => AgentKind::None,
    };
    // The first author among the most frequent ones.
    let agent = authors
        .iter()
        .fold(None::<&(String, usize)>, |best, candidate| match best {
            Some(best) if best.1 >= candidate.1 => Some(best),
            _ => Some(candidate),
        })
        .map(|(name, _)| name.clone());
    (agent, kind)
}

/// Why a QA operation failed. `Invalid` and `Scorecard` are for the person who typed the input
/// and name the field; the others are the usual store and audit failures.
#[derive(Debug, thiserror::Error)]
pub enum QaError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Scorecard(#[from] ScorecardProblem),
    #[error(transparent)]
    Analysis(#[from] AnalysisError),
    #[error("{0}")]
    Invalid(String),
    #[error("this interaction has no QA score yet")]
    NotScored,
    #[error("there is no such interaction in this tenant")]
    NotFound,
}

/// The stored QA analysis of an interaction, if it has one.
pub fn qa_analysis(
    context: &AppContext,
    tenant: TenantId,
    interaction: RecordId,
) -> Result<Option<(Analysis, QaResult)>, StoreError> {
    Ok(context
        .analysis
        .analysis(tenant, interaction, AnalysisKind::Qa)?
        .and_then(|analysis| match &analysis.result {
            AnalysisResult::Qa(result) => {
                let result = result.clone();
                Some((analysis, result))
            }
            _ => None,
        }))
}

/// An override's comment, trimmed: required (say why), at most [`MAX_COMMENT_CHARS`]
/// characters. Criterion overrides and label overrides
/// ([`crate::analysis::overrides`]) share it.
pub fn checked_comment(comment: &str) -> Result<&str, QaError> {
    let comment = comment.trim();
    if comment.is_empty() {
        return Err(QaError::Invalid(
            "comment: say why the AI's result is overridden".to_owned(),
        ));
    }
    if comment.chars().count() > MAX_COMMENT_CHARS {
        return Err(QaError::Invalid(format!(
            "comment: at most {MAX_COMMENT_CHARS} characters"
        )));
    }
    Ok(comment)
}

/// A QA lead's override of one criterion, as typed.
#[derive(Clone, Debug, Default)]
pub struct OverrideInput {
    pub criterion: String,
    /// `yes`, `no`, a number of points, or `n/a`.
    pub score: String,
    pub comment: String,
}

/// Stores a QA lead's score for one criterion beside the AI's, and audits it (`qa.overridden`).
/// The AI result is not touched; the effective score and the reports use the override.
pub fn override_criterion(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    tenant: TenantId,
    interaction: RecordId,
    input: &OverrideInput,
) -> Result<Override, QaError> {
    let (_, result) = qa_analysis(context, tenant, interaction)?.ok_or(QaError::NotScored)?;
    let score = result
        .criteria
        .iter()
        .find(|score| score.criterion == input.criterion)
        .ok_or_else(|| {
            QaError::Invalid("criterion: this interaction was not scored on it".to_owned())
        })?;
    let points = score.scale.parse_points(&input.score).ok_or_else(|| {
        QaError::Invalid(format!(
            "score: “{}” is not on the {} scale (use {})",
            input.score.trim().chars().take(20).collect::<String>(),
            score.scale,
            score.scale.labels().join(", ")
        ))
    })?;
    let comment = checked_comment(&input.comment)?;
    let entry = Override {
        criterion: score.criterion.clone(),
        points,
        comment: comment.to_owned(),
        by: actor.label.clone(),
        at: Utc::now(),
    };
    store::QaStore::new(context.store.clone()).add_override(tenant, interaction, entry.clone())?;
    crate::analysis::overrides::after_override(
        context,
        AuditEvent::new(
            Some(tenant),
            actor.clone(),
            AuditAction::QaOverridden,
            format!(
                "interaction {interaction} criterion {}: {} → {}",
                score.criterion,
                score.scale.describe(score.points),
                score.scale.describe(points)
            ),
        )
        .client(client),
        interaction,
    )?;
    Ok(entry)
}

/// Validates and stores the tenant's scorecard, and audits the change (`qa.scorecard_changed`).
pub fn change_scorecard(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    tenant: TenantId,
    scorecard: &Scorecard,
) -> Result<(), QaError> {
    scorecard.validate()?;
    store::QaStore::new(context.store.clone()).save_scorecard(tenant, scorecard)?;
    let enabled = scorecard.enabled().count();
    let critical = scorecard
        .enabled()
        .filter(|criterion| criterion.critical)
        .count();
    context.audit(
        AuditEvent::new(
            Some(tenant),
            actor.clone(),
            AuditAction::QaScorecardChanged,
            format!(
                "scorecard: {} criteria, {enabled} enabled, {critical} critical",
                scorecard.criteria.len()
            ),
        )
        .client(client),
    )?;
    Ok(())
}

/// Which interactions a scorecard change re-scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RescoreScope {
    /// Those updated in the last so many days.
    RecentDays(u32),
    /// Every interaction of the tenant.
    All,
}

impl RescoreScope {
    pub fn describe(self) -> String {
        match self {
            Self::RecentDays(days) => format!("interactions updated in the last {days} days"),
            Self::All => "all interactions".to_owned(),
        }
    }
}

/// Queues the interactions of `scope` to be analysed again, behind live work, through
/// [`crate::analysis::reanalyse_scope`] (audited there as `analysis.requested`). The other kinds
/// of analysis are reused where their inputs have not changed; QA's input digest holds the
/// scorecard, so a changed scorecard scores again and an unchanged one keeps its scores.
pub fn rescore(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    tenant: TenantId,
    scope: RescoreScope,
) -> Result<Enqueued, QaError> {
    let scope = match scope {
        RescoreScope::RecentDays(days) => ReanalysisScope::UpdatedSince(
            (Utc::now() - chrono::Duration::days(i64::from(days))).date_naive(),
        ),
        RescoreScope::All => ReanalysisScope::All,
    };
    Ok(crate::analysis::reanalyse_scope(
        context, actor, client, tenant, scope,
    )?)
}

/// The QA page's filters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QaFilter {
    /// `Human` keeps interactions a human agent answered (alone or with an AI agent); `Ai`
    /// likewise.
    pub agent_kind: Option<AgentKind>,
    /// The agent's name or e-mail, ignoring case.
    pub agent: Option<String>,
    pub min_score: Option<f32>,
    pub max_score: Option<f32>,
    pub auto_fail_only: bool,
}

impl QaFilter {
    pub fn keeps(&self, result: &QaResult, effective: &Overall) -> bool {
        let kind_ok = match self.agent_kind {
            None => true,
            Some(AgentKind::Human) => {
                matches!(result.agent_kind, AgentKind::Human | AgentKind::Mixed)
            }
            Some(AgentKind::Ai) => matches!(result.agent_kind, AgentKind::Ai | AgentKind::Mixed),
            Some(other) => result.agent_kind == other,
        };
        let agent_ok = self.agent.as_ref().is_none_or(|wanted| {
            result
                .agent
                .as_ref()
                .is_some_and(|agent| agent.eq_ignore_ascii_case(wanted.trim()))
        });
        let min_ok = self
            .min_score
            .is_none_or(|min| effective.score.is_some_and(|score| score >= min));
        let max_ok = self
            .max_score
            .is_none_or(|max| effective.score.is_some_and(|score| score <= max));
        kind_ok && agent_ok && min_ok && max_ok && (!self.auto_fail_only || effective.auto_fail)
    }
}

/// One scored interaction as the QA page lists it.
#[derive(Clone, Debug)]
pub struct ScoredInteraction {
    pub interaction: RecordId,
    pub result: QaResult,
    pub provenance: crate::analysis::Provenance,
    /// The score reports use: with the overrides applied.
    pub effective: Overall,
    pub overridden: usize,
}

/// A page of scored interactions, newest first.
#[derive(Clone, Debug)]
pub struct ScoredPage {
    pub rows: Vec<ScoredInteraction>,
    /// The list stopped after examining this many scored interactions.
    pub scan_limit: Option<usize>,
    /// There were more matching rows than the page shows.
    pub more: bool,
}

/// Scored interactions that pass `filter`, newest first: at most `limit`, examining at most
/// `max_scanned`. The caller audits the read.
pub fn list_scored(
    context: &AppContext,
    tenant: TenantId,
    filter: &QaFilter,
    limit: usize,
    max_scanned: usize,
) -> Result<ScoredPage, QaError> {
    let store = store::QaStore::new(context.store.clone());
    let ids = context
        .analysis
        .interactions_with(tenant, AnalysisKind::Qa)?;
    let mut page = ScoredPage {
        rows: Vec::new(),
        scan_limit: None,
        more: false,
    };
    for (scanned, id) in ids.iter().enumerate() {
        if scanned >= max_scanned {
            page.scan_limit = Some(max_scanned);
            break;
        }
        let Some((analysis, result)) = qa_analysis(context, tenant, *id)? else {
            continue;
        };
        let overrides = store.overrides(tenant, *id)?;
        let effective = effective_overall(&result, &overrides);
        if !filter.keeps(&result, &effective) {
            continue;
        }
        if page.rows.len() == limit {
            page.more = true;
            break;
        }
        let overridden = result
            .criteria
            .iter()
            .filter(|score| override_for(score, &overrides).is_some())
            .count();
        page.rows.push(ScoredInteraction {
            interaction: *id,
            result,
            provenance: analysis.provenance,
            effective,
            overridden,
        });
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(scale: Scale, weight: u32, critical: bool, points: Option<u8>) -> Scored {
        Scored {
            scale,
            weight,
            critical,
            points,
        }
    }

    #[test]
    fn scales_map_labels_to_points_and_back() {
        assert_eq!(Scale::Binary.labels(), ["yes", "no", "n/a"]);
        assert_eq!(Scale::Five.labels(), ["5", "4", "3", "2", "1", "n/a"]);
        for scale in Scale::ALL {
            for label in scale.labels() {
                let points = scale.parse_points(&label).unwrap();
                assert_eq!(scale.label(points), label);
            }
            assert_eq!(Scale::parse(scale.as_str()), Some(scale));
        }
        assert_eq!(Scale::Three.parse_points("4"), None);
        assert_eq!(Scale::Three.parse_points("0"), None);
        assert_eq!(Scale::Binary.parse_points("maybe"), None);
        assert_eq!(Scale::Binary.parse_points(" N/A "), Some(None));
        assert_eq!(Scale::Five.describe(Some(4)), "4/5");
        assert_eq!(Scale::Binary.describe(Some(0)), "no");
        assert!((Scale::Five.fraction(3) - 0.5).abs() < 1e-9);
        assert!((Scale::Binary.fraction(1) - 1.0).abs() < 1e-9);
        assert!(Scale::Three.fraction(1).abs() < 1e-9);
    }

    #[test]
    fn overall_is_the_weighted_mean_of_applicable_criteria() {
        // Binary yes (1.0) weight 1, 5-point 4 (0.75) weight 3, N/A weight 10, weight 0 ignored.
        let result = overall(&[
            scored(Scale::Binary, 1, false, Some(1)),
            scored(Scale::Five, 3, false, Some(4)),
            scored(Scale::Three, 10, false, None),
            scored(Scale::Three, 0, false, Some(1)),
        ]);
        // (1 × 1.0 + 3 × 0.75) / 4 = 0.8125
        assert_eq!(result.score, Some(81.3));
        assert!(!result.auto_fail);
        assert_eq!(
            overall(&[scored(Scale::Three, 2, false, Some(3))]).score,
            Some(100.0)
        );
        assert_eq!(
            overall(&[scored(Scale::Three, 2, false, Some(1))]).score,
            Some(0.0)
        );
    }

    #[test]
    fn nothing_applicable_gives_no_score() {
        let result = overall(&[
            scored(Scale::Binary, 1, true, None),
            scored(Scale::Five, 0, false, Some(5)),
        ]);
        assert_eq!(
            result,
            Overall {
                score: None,
                auto_fail: false
            }
        );
        assert_eq!(overall(&[]).score, None);
    }

    #[test]
    fn a_critical_criterion_at_its_lowest_point_fails_the_interaction() {
        let failing = overall(&[
            scored(Scale::Five, 10, false, Some(5)),
            scored(Scale::Binary, 1, true, Some(0)),
        ]);
        assert_eq!(
            failing,
            Overall {
                score: Some(0.0),
                auto_fail: true
            }
        );
        // Critical but not at its lowest point, or N/A: no auto-fail.
        let passing = overall(&[
            scored(Scale::Five, 1, true, Some(2)),
            scored(Scale::Binary, 1, true, None),
        ]);
        assert!(!passing.auto_fail);
        assert_eq!(passing.score, Some(25.0));
        // A non-critical criterion at its lowest point only lowers the mean.
        assert!(!overall(&[scored(Scale::Three, 1, false, Some(1))]).auto_fail);
        // Weight 0 does not save a critical criterion from failing.
        assert!(overall(&[scored(Scale::Three, 0, true, Some(1))]).auto_fail);
    }

    fn score(criterion: &str, scale: Scale, points: Option<u8>, critical: bool) -> CriterionScore {
        CriterionScore {
            criterion: criterion.to_owned(),
            name: criterion.to_owned(),
            scale,
            weight: 1,
            critical,
            points,
            confidence: 0.5,
            reasoning: String::new(),
            evidence: None,
            probabilities: Vec::new(),
        }
    }

    fn override_of(criterion: &str, points: Option<u8>, minute: u32) -> Override {
        Override {
            criterion: criterion.to_owned(),
            points,
            comment: "checked".to_owned(),
            by: "lead".to_owned(),
            at: DateTime::parse_from_rfc3339(&format!("2026-01-01T10:{minute:02}:00Z"))
                .unwrap()
                .with_timezone(&Utc),
        }
    }

    #[test]
    fn overrides_change_the_effective_score_and_keep_the_ai_result() {
        let result = QaResult {
            criteria: vec![
                score("greeting", Scale::Binary, Some(0), false),
                score("tone", Scale::Three, Some(3), false),
            ],
            overall: Some(50.0),
            auto_fail: false,
            agent: None,
            agent_kind: AgentKind::Human,
        };
        assert_eq!(effective_overall(&result, &[]).score, Some(50.0));
        // The latest override of a criterion counts; one for another criterion does not.
        let overrides = [
            override_of("greeting", Some(0), 1),
            override_of("greeting", Some(1), 2),
            override_of("missing", Some(1), 3),
        ];
        assert_eq!(effective_points(&result, &overrides), [Some(1), Some(3)]);
        assert_eq!(effective_overall(&result, &overrides).score, Some(100.0));
        // Overriding to N/A takes the criterion out of the mean.
        let na = [override_of("tone", None, 1)];
        assert_eq!(effective_overall(&result, &na).score, Some(0.0));
        // An override whose points no longer fit the scale (the scale changed) is ignored.
        let stale = [override_of("greeting", Some(3), 4)];
        assert_eq!(effective_points(&result, &stale), [Some(0), Some(3)]);
        // The AI result itself is untouched.
        assert_eq!(result.criteria[0].points, Some(0));
    }

    #[test]
    fn overriding_a_critical_criterion_can_fail_or_rescue_an_interaction() {
        let result = QaResult {
            criteria: vec![
                score("solution_offered", Scale::Binary, Some(0), true),
                score("tone", Scale::Three, Some(3), false),
            ],
            overall: Some(0.0),
            auto_fail: true,
            agent: None,
            agent_kind: AgentKind::Ai,
        };
        assert!(effective_overall(&result, &[]).auto_fail);
        let rescued = effective_overall(&result, &[override_of("solution_offered", Some(1), 1)]);
        assert!(!rescued.auto_fail);
        assert_eq!(rescued.score, Some(100.0));
    }

    #[test]
    fn the_builtin_scorecard_is_valid_and_has_the_eight_criteria() {
        let card = Scorecard::builtin();
        assert_eq!(card.criteria.len(), 8);
        assert!(card.criteria.iter().all(Criterion::is_builtin));
        card.validate().unwrap();
        assert_eq!(
            builtin_ids().collect::<Vec<_>>(),
            [
                "greeting",
                "empathy",
                "spelling_grammar",
                "closing",
                "solution_offered",
                "tone",
                "readability",
                "comprehension"
            ]
        );
    }

    #[test]
    fn validation_names_the_field() {
        let mut card = Scorecard::builtin();
        card.criteria[2].weight = 101;
        let problem = card.validate().unwrap_err();
        assert_eq!(problem.field, "criterion 3 (spelling_grammar): weight");
        assert!(problem.to_string().contains("weight"), "{problem}");

        let mut card = Scorecard::builtin();
        card.criteria.push(Criterion {
            id: criterion_id("Refund policy"),
            name: "Refund policy".to_owned(),
            question: " ".to_owned(),
            scale: Scale::Binary,
            weight: 1,
            critical: false,
            enabled: true,
        });
        assert_eq!(card.criteria[8].id, "custom_refund_policy");
        assert_eq!(
            card.validate().unwrap_err().field,
            "criterion 9 (custom_refund_policy): question"
        );

        let mut card = Scorecard::builtin();
        for criterion in &mut card.criteria {
            criterion.enabled = false;
        }
        assert_eq!(card.validate().unwrap_err().field, "enabled");
        let mut card = Scorecard::builtin();
        for criterion in &mut card.criteria {
            criterion.weight = 0;
        }
        assert_eq!(card.validate().unwrap_err().field, "weight");
    }

    #[test]
    fn filters_keep_by_agent_kind_agent_score_and_auto_fail() {
        let result = |kind, agent: &str| QaResult {
            criteria: Vec::new(),
            overall: None,
            auto_fail: false,
            agent: Some(agent.to_owned()),
            agent_kind: kind,
        };
        let scored = |score, auto_fail| Overall {
            score: Some(score),
            auto_fail,
        };
        let mixed = result(AgentKind::Mixed, "Sam Hill");
        let ai = result(AgentKind::Ai, "Rappy");
        let human_only = QaFilter {
            agent_kind: Some(AgentKind::Human),
            ..QaFilter::default()
        };
        assert!(human_only.keeps(&mixed, &scored(50.0, false)));
        assert!(!human_only.keeps(&ai, &scored(50.0, false)));
        let ai_only = QaFilter {
            agent_kind: Some(AgentKind::Ai),
            ..QaFilter::default()
        };
        assert!(
            ai_only.keeps(&mixed, &scored(50.0, false)) && ai_only.keeps(&ai, &scored(1.0, false))
        );
        let by_agent = QaFilter {
            agent: Some(" sam HILL ".to_owned()),
            ..QaFilter::default()
        };
        assert!(by_agent.keeps(&mixed, &scored(50.0, false)));
        assert!(!by_agent.keeps(&ai, &scored(50.0, false)));
        let range = QaFilter {
            min_score: Some(40.0),
            max_score: Some(60.0),
            ..QaFilter::default()
        };
        assert!(range.keeps(&ai, &scored(60.0, false)));
        assert!(!range.keeps(&ai, &scored(60.1, false)));
        // No score (nothing applied) is outside any range.
        let unscored = Overall {
            score: None,
            auto_fail: false,
        };
        assert!(!range.keeps(&ai, &unscored));
        assert!(QaFilter::default().keeps(&ai, &unscored));
        let failed_only = QaFilter {
            auto_fail_only: true,
            ..QaFilter::default()
        };
        assert!(failed_only.keeps(&ai, &scored(0.0, true)));
        assert!(!failed_only.keeps(&ai, &scored(0.0, false)));
    }

    fn record(messages: &serde_json::Value) -> InteractionRecord {
        serde_json::from_value(serde_json::json!({
            "source_system": "desk", "source_id": "1", "channel": "chat", "messages": messages
        }))
        .unwrap()
    }

    #[test]
    fn the_agent_is_the_most_frequent_author_and_ai_agents_count() {
        let message = |role: &str, author: &str| {
            serde_json::json!({"role": role, "author_name": author,
                "sent_at": "2026-01-02T03:04:05Z", "text": "hi"})
        };
        let mixed = record(&serde_json::json!([
            message("customer", "Ann"),
            message("ai-agent", "Botty"),
            message("agent", "Sam"),
            message("agent", "Sam"),
        ]));
        assert_eq!(agent_of(&mixed), (Some("Sam".to_owned()), AgentKind::Mixed));
        let ai = record(&serde_json::json!([
            message("customer", "Ann"),
            message("ai-agent", "Botty")
        ]));
        assert_eq!(agent_of(&ai), (Some("Botty".to_owned()), AgentKind::Ai));
        let none = record(&serde_json::json!([message("customer", "Ann")]));
        assert_eq!(agent_of(&none), (None, AgentKind::None));
    }
}
