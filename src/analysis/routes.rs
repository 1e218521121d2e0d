//! The tenant's Analysis page (the queue's counts per state, the backend and topics in use, the
//! failed jobs), the Re-analyse action of an interaction, the Analysis panel of the
//! interaction page, and its sentiment and topic override forms (QA leads). Analyses are tenant content and model output: the templates escape them
//! like every other text, and the interaction page audits their read with the thread's.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::web::{self, Data, Form};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use crate::analysis::jobs::{Job, JobState, JobSubject, MAX_ATTEMPTS};
use crate::analysis::overrides::{
    latest, override_labels, LabelOverride, LabelOverrideInput, LabelOverrides, LabelTarget,
};
use crate::analysis::progress::describe_duration;
use crate::analysis::topics::{change_topics, parse_topic_lines, MAX_TOPICS, MAX_TOPIC_CHARS};
use crate::analysis::{
    cancel_queued, queue_status, request_reanalysis, Analysis, AnalysisError, AnalysisResult,
    LabelScores,
};
use crate::analysis::{reanalyse_scope, ReanalysisScope, DEFAULT_TOPICS};
use crate::auth::guard::policy::{ManageAnalysis, RequestAnalysis, ReviewQa};
use crate::auth::guard::{client_address, RequestSession, TenantAccess};
use crate::auth::session::FlashKind;
use crate::auth::Permission;
use crate::context::AppContext;
use crate::error::AppError;
use crate::ids::{RecordId, TenantId};
use crate::interactions::Interaction;
use crate::tenants::Tenant;
use crate::web::pages::{format_time, push_flash, render, Chrome, Reply};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/t/{tenant}/analysis", web::get().to(status))
        .route("/t/{tenant}/analysis/cancel", web::post().to(cancel))
        .route("/t/{tenant}/settings/topics", web::get().to(topics_show))
        .route("/t/{tenant}/settings/topics", web::post().to(topics_save))
        .route(
            "/t/{tenant}/settings/topics/reanalyse",
            web::post().to(topics_reanalyse),
        )
        .route(
            "/t/{tenant}/interactions/{id}/reanalyse",
            web::post().to(reanalyse),
        )
        .route(
            "/t/{tenant}/interactions/{id}/labels/override",
            web::post().to(override_labels_action),
        );
}

/// A probability as the console shows it.
fn percent(probability: f32) -> String {
    format!("{:.0} %", (probability * 100.0).clamp(0.0, 100.0))
}

/// Where an analysis came from, in one line, and whether the interaction changed since.
pub struct ProvenanceView {
    pub line: String,
    pub stale: bool,
}

impl ProvenanceView {
    pub fn of(analysis: &Analysis, current_version: chrono::DateTime<chrono::Utc>) -> Self {
        let provenance = &analysis.provenance;
        Self {
            line: format!(
                "{} · model {} · {}, prompt v{} · analysed the version of {} · made {} in {} ms",
                provenance.backend_description,
                provenance.model,
                provenance.analyzer,
                provenance.prompt_version,
                format_time(provenance.interaction_version),
                format_time(provenance.created),
                provenance.duration_ms
            ),
            stale: analysis.is_stale(current_version),
        }
    }
}

pub struct ScoreView {
    pub label: String,
    pub percent: String,
}

fn score_views(scores: &LabelScores) -> Vec<ScoreView> {
    scores
        .probabilities
        .iter()
        .map(|scored| ScoreView {
            label: scored.label.clone(),
            percent: percent(scored.probability),
        })
        .collect()
}

pub struct SummaryView {
    pub text: String,
    pub provenance: ProvenanceView,
}

/// A QA lead's override shown beside the AI's result.
pub struct OverrideNote {
    pub by: String,
    pub at: String,
    pub comment: String,
    /// What the AI said, kept unchanged.
    pub ai: String,
}

impl OverrideNote {
    fn of(entry: &LabelOverride, ai: String) -> Self {
        Self {
            by: entry.by.clone(),
            at: format_time(entry.at),
            comment: entry.comment.clone(),
            ai,
        }
    }
}

/// One label of an override form, selected when it is the effective one.
pub struct LabelChoice {
    pub label: String,
    pub selected: bool,
}

fn choices(all: &[String], effective: &[String]) -> Vec<LabelChoice> {
    all.iter()
        .map(|label| LabelChoice {
            label: label.clone(),
            selected: effective.contains(label),
        })
        .collect()
}

/// One past override, for the history list.
pub struct OverrideRow {
    pub at: String,
    pub by: String,
    pub target: &'static str,
    pub labels: String,
    pub comment: String,
}

pub struct SentimentView {
    /// The effective label: the latest override's, else the AI's.
    pub label: String,
    pub confidence: String,
    /// The AI's probabilities.
    pub probabilities: Vec<ScoreView>,
    pub provenance: ProvenanceView,
    pub overridden: Option<OverrideNote>,
    pub choices: Vec<LabelChoice>,
}

pub struct TopicsView {
    /// The effective labels: the latest override's, else the AI's.
    pub labels: Vec<String>,
    /// The AI's probabilities.
    pub probabilities: Vec<ScoreView>,
    pub provenance: ProvenanceView,
    pub overridden: Option<OverrideNote>,
    pub choices: Vec<LabelChoice>,
}

pub struct LeadView {
    pub score: u8,
    pub intent: String,
    pub confidence: String,
    pub budget: String,
    pub company_size: String,
    pub timeline: String,
    pub current_solution: String,
    /// The lead's page (facts with their quotes, status, assignee).
    pub lead_url: String,
    pub provenance: ProvenanceView,
}

impl SentimentView {
    fn of(
        overall: &LabelScores,
        overridden: Option<&LabelOverride>,
        may_override: bool,
        provenance: ProvenanceView,
    ) -> Self {
        let label = overridden
            .and_then(|entry| entry.labels.first().cloned())
            .unwrap_or_else(|| overall.label.clone());
        let all: Vec<String> = crate::inference::SENTIMENT_LABELS
            .iter()
            .map(|label| (*label).to_owned())
            .collect();
        Self {
            choices: if may_override {
                choices(&all, std::slice::from_ref(&label))
            } else {
                Vec::new()
            },
            label,
            confidence: percent(overall.confidence),
            probabilities: score_views(overall),
            provenance,
            overridden: overridden.map(|entry| {
                OverrideNote::of(
                    entry,
                    format!(
                        "{} ({} confident)",
                        overall.label,
                        percent(overall.confidence)
                    ),
                )
            }),
        }
    }
}

impl TopicsView {
    /// `offered`: the topics the override form offers (none: no form).
    fn of(
        labels: &[String],
        probabilities: &[crate::analysis::LabelProbability],
        overridden: Option<&LabelOverride>,
        offered: &[String],
        provenance: ProvenanceView,
    ) -> Self {
        let effective = overridden.map_or(labels, |entry| entry.labels.as_slice());
        Self {
            choices: choices(offered, effective),
            labels: effective.to_vec(),
            probabilities: probabilities
                .iter()
                .map(|scored| ScoreView {
                    label: scored.label.clone(),
                    percent: percent(scored.probability),
                })
                .collect(),
            provenance,
            overridden: overridden.map(|entry| OverrideNote::of(entry, labels.join(", "))),
        }
    }
}

impl LeadView {
    fn of(
        lead: &crate::analysis::lead::LeadQualification,
        lead_url: String,
        provenance: ProvenanceView,
    ) -> Self {
        let stated =
            |fact: &Option<String>| fact.clone().unwrap_or_else(|| "not stated".to_owned());
        Self {
            score: lead.score,
            intent: format!(
                "{} · {}",
                crate::analysis::lead::intent_group(&lead.intent.label),
                lead.intent.label.replace('_', " ")
            ),
            confidence: percent(lead.intent.confidence),
            budget: stated(&lead.facts.budget),
            company_size: lead
                .facts
                .company_size
                .map_or_else(|| "not stated".to_owned(), |size| format!("{size} people")),
            timeline: lead.facts.timeline.replace('_', " "),
            current_solution: stated(&lead.facts.current_solution),
            lead_url,
            provenance,
        }
    }
}

/// The Analysis section of the interaction page (`templates/analysis/panel.html`).
pub struct AnalysisPanel {
    pub summary: Option<SummaryView>,
    pub sentiment: Option<SentimentView>,
    pub topics: Option<TopicsView>,
    pub lead: Option<LeadView>,
    /// The job's state, when it has not simply finished.
    pub job: Option<String>,
    /// Where the Re-analyse button posts, for roles that may use it.
    pub reanalyse_url: Option<String>,
    /// The Mark as lead / Unmark button (its label and URL), for roles that work leads.
    pub lead_action: Option<(&'static str, String)>,
    /// Per customer message (by position), its sentiment, unless the analysis is stale.
    pub message_sentiments: HashMap<usize, String>,
    /// Where the sentiment and topic override forms post, for QA leads.
    pub override_url: Option<String>,
    /// Every label override, oldest first.
    pub override_history: Vec<OverrideRow>,
}

impl AnalysisPanel {
    pub fn is_empty(&self) -> bool {
        self.summary.is_none()
            && self.sentiment.is_none()
            && self.topics.is_none()
            && self.lead.is_none()
    }
}

fn job_line(job: &Job) -> Option<String> {
    match job.state {
        JobState::Done => None,
        JobState::Queued if job.attempts > 0 => Some(format!(
            "queued again after a failed attempt ({} of {MAX_ATTEMPTS})",
            job.attempts
        )),
        JobState::Queued => Some("queued for analysis".to_owned()),
        JobState::Running => Some("being analysed now".to_owned()),
        JobState::Failed => Some(format!(
            "analysis failed ({}) after {} attempt(s)",
            job.error.map_or("unknown", |kind| kind.as_str()),
            job.attempts
        )),
    }
}

/// Reads the interaction's analyses and job for its page. Blocking. The caller audits the read
/// together with the interaction's.
pub fn panel(
    context: &AppContext,
    session: &RequestSession,
    tenant: TenantId,
    base: &str,
    interaction: &Interaction,
) -> Result<AnalysisPanel, AppError> {
    let analyses = context.analysis.analyses(tenant, interaction.id)?;
    let overrides = LabelOverrides::new(context.store.clone()).overrides(tenant, interaction.id)?;
    let job = context.analysis.job(tenant, interaction.id)?;
    let current = interaction.updated;
    let may_override = session.user.role.grants(Permission::ReviewQa);
    let mut panel = AnalysisPanel {
        summary: None,
        sentiment: None,
        topics: None,
        lead: None,
        job: job.as_ref().and_then(job_line),
        reanalyse_url: session
            .user
            .role
            .grants(Permission::RequestAnalysis)
            .then(|| format!("{base}/interactions/{}/reanalyse", interaction.id)),
        lead_action: crate::leads::routes::lead_action(
            context,
            session,
            tenant,
            base,
            interaction,
        )?,
        message_sentiments: HashMap::new(),
        override_url: may_override
            .then(|| format!("{base}/interactions/{}/labels/override", interaction.id)),
        override_history: overrides
            .iter()
            .map(|entry| OverrideRow {
                at: format_time(entry.at),
                by: entry.by.clone(),
                target: entry.target.as_str(),
                labels: entry.labels.join(", "),
                comment: entry.comment.clone(),
            })
            .collect(),
    };
    for analysis in &analyses {
        let provenance = ProvenanceView::of(analysis, current);
        match &analysis.result {
            AnalysisResult::Summary { text } => {
                panel.summary = Some(SummaryView {
                    text: text.clone(),
                    provenance,
                });
            }
            AnalysisResult::Sentiment { overall, messages } => {
                if !provenance.stale {
                    for message in messages {
                        panel.message_sentiments.insert(
                            message.message,
                            format!(
                                "{} ({})",
                                message.scores.label,
                                percent(message.scores.confidence)
                            ),
                        );
                    }
                }
                panel.sentiment = Some(SentimentView::of(
                    overall,
                    latest(&overrides, LabelTarget::Sentiment),
                    may_override,
                    provenance,
                ));
            }
            AnalysisResult::Lead(lead) => {
                panel.lead = Some(LeadView::of(
                    lead,
                    format!("{base}/leads/{}", interaction.id),
                    provenance,
                ));
            }
            AnalysisResult::Topics {
                labels,
                probabilities,
            } => {
                // The form offers the tenant's topics; others get no form and need no list.
                let offered = if may_override {
                    context.analysis.topics(tenant)?.as_slice().to_vec()
                } else {
                    Vec::new()
                };
                panel.topics = Some(TopicsView::of(
                    labels,
                    probabilities,
                    latest(&overrides, LabelTarget::Topics),
                    &offered,
                    provenance,
                ));
            }
            // The scorecard has its own section (`crate::qa::routes::scorecard_panel`); reply
            // drafts belong to reviews and briefings to accounts, never to interactions.
            _ => {}
        }
    }
    Ok(panel)
}

async fn reanalyse(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<RequestAnalysis>,
    path: web::Path<(String, String)>,
) -> Result<Reply, AppError> {
    let client = client_address(&request).map(|address| address.to_string());
    let id: RecordId = path.1.parse().map_err(|_| AppError::NotFound)?;
    web::block(move || -> Result<Reply, AppError> {
        request_reanalysis(
            &context,
            &access.session.user.actor(),
            client,
            access.tenant.id,
            id,
        )?;
        push_flash(
            &context,
            &access.session,
            FlashKind::Success,
            "The interaction is queued for analysis.",
        )?;
        Ok(Reply::SeeOther(format!(
            "/t/{}/interactions/{id}",
            access.tenant.slug
        )))
    })
    .await?
}

/// The override form: `target` (`sentiment` or `topics`), one `label` field per chosen label
/// (the topics' checkboxes repeat it), and `comment`.
async fn override_labels_action(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ReviewQa>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<Reply, AppError> {
    let client = client_address(&request).map(|address| address.to_string());
    let id: RecordId = path.1.parse().map_err(|_| AppError::NotFound)?;
    // Checkboxes repeat the field name, which only a list-of-pairs decoding keeps.
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
        .map_err(|_| AppError::BadRequest("The form could not be read.".to_owned()))?;
    let mut target = None;
    let mut labels = Vec::new();
    let mut comment = String::new();
    for (field, value) in pairs {
        match field.as_str() {
            "target" => {
                target = match value.as_str() {
                    "sentiment" => Some(LabelTarget::Sentiment),
                    "topics" => Some(LabelTarget::Topics),
                    _ => None,
                };
            }
            "label" => labels.push(value),
            "comment" => comment = value,
            _ => {}
        }
    }
    let target = target.ok_or_else(|| {
        AppError::BadRequest("target: override either sentiment or topics".to_owned())
    })?;
    web::block(move || -> Result<Reply, AppError> {
        context
            .interactions
            .get(access.tenant.id, id)?
            .ok_or(AppError::NotFound)?;
        override_labels(
            &context,
            &access.session.user.actor(),
            client,
            access.tenant.id,
            id,
            &LabelOverrideInput {
                target,
                labels,
                comment,
            },
        )?;
        push_flash(
            &context,
            &access.session,
            FlashKind::Success,
            "The override is saved; the AI's result is kept beside it.",
        )?;
        Ok(Reply::SeeOther(format!(
            "/t/{}/interactions/{id}#analysis-heading",
            access.tenant.slug
        )))
    })
    .await?
}

pub struct StateRow {
    pub state: &'static str,
    pub count: u64,
}

pub struct FailedRow {
    pub url: String,
    pub id: String,
    pub error: &'static str,
    pub attempts: u32,
    pub finished: String,
}

#[derive(Template)]
#[template(path = "analysis/status.html")]
struct StatusPage {
    chrome: Chrome,
    states: Vec<StateRow>,
    total: u64,
    busy: bool,
    /// Jobs finished (done or failed) and the per cent that is of all jobs.
    finished: u64,
    percent: u64,
    /// The measured rate and the ETA, or why there is none yet.
    pace: String,
    cancel_url: Option<String>,
    backend: String,
    topics: Vec<String>,
    failed: Vec<FailedRow>,
}

/// Failed jobs listed at most.
const FAILED_SHOWN: usize = 50;

async fn status(
    context: Data<AppContext>,
    access: TenantAccess<RequestAnalysis>,
) -> Result<HttpResponse, AppError> {
    let page = web::block(move || -> Result<StatusPage, AppError> {
        let status = queue_status(&context, access.tenant.id, FAILED_SHOWN)?;
        let base = format!("/t/{}", access.tenant.slug);
        Ok(StatusPage {
            chrome: Chrome::for_session(
                &context,
                &access.session,
                Some(&access.tenant),
                "Analysis",
                &format!("{base}/analysis"),
            )?,
            states: JobState::ALL
                .into_iter()
                .map(|state| StateRow {
                    state: state.as_str(),
                    count: status.counts.get(state),
                })
                .collect(),
            total: status.counts.total(),
            busy: status.counts.queued + status.counts.running > 0,
            finished: status.progress.finished,
            percent: status.progress.percent(),
            pace: describe_pace(&status.progress),
            cancel_url: (status.counts.queued > 0).then(|| format!("{base}/analysis/cancel")),
            backend: match status.model_sha256 {
                Some(sha256) => format!("{} (model sha256 {sha256})", status.backend),
                None => status.backend.to_string(),
            },
            topics: status.topics,
            failed: status
                .failed
                .into_iter()
                .map(|job| FailedRow {
                    url: match job.subject {
                        JobSubject::Interaction => {
                            format!("{base}/interactions/{}", job.interaction)
                        }
                        JobSubject::Review => format!("{base}/reviews/{}", job.interaction),
                        JobSubject::Account => format!("{base}/accounts/{}", job.interaction),
                    },
                    id: job.interaction.to_string(),
                    error: job.error.map_or("unknown", |kind| kind.as_str()),
                    attempts: job.attempts,
                    finished: job.finished.map(format_time).unwrap_or_default(),
                })
                .collect(),
        })
    })
    .await??;
    render(&page, StatusCode::OK)
}

/// The rate and ETA line under the progress bar.
fn describe_pace(progress: &crate::analysis::progress::Progress) -> String {
    match (progress.per_minute, progress.eta) {
        (Some(rate), Some(eta)) => format!(
            "{rate:.1} interactions per minute; the {} waiting take about {}.",
            progress.remaining,
            describe_duration(eta)
        ),
        (Some(rate), None) => format!("{rate:.1} interactions per minute recently."),
        (None, _) if progress.remaining > 0 => format!(
            "{} waiting; the rate is shown once the worker has finished a batch.",
            progress.remaining
        ),
        (None, _) => "Nothing is waiting.".to_owned(),
    }
}

async fn cancel(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<RequestAnalysis>,
) -> Result<Reply, AppError> {
    let client = client_address(&request).map(|address| address.to_string());
    web::block(move || -> Result<Reply, AppError> {
        let cancelled = cancel_queued(
            &context,
            &access.session.user.actor(),
            client,
            access.tenant.id,
        )?;
        push_flash(
            &context,
            &access.session,
            FlashKind::Success,
            format!(
                "{cancelled} queued jobs cancelled. They are listed as failed (cancelled); Re-analyse on an interaction, or rapport analyse --all, queues them again."
            ),
        )?;
        Ok(Reply::SeeOther(format!(
            "/t/{}/analysis",
            access.tenant.slug
        )))
    })
    .await?
}

#[derive(Template)]
#[template(path = "analysis/topics.html")]
struct TopicsPage {
    chrome: Chrome,
    base: String,
    /// The text area: the stored list, or what was typed when it was refused.
    text: String,
    uses_default: bool,
    max_topics: usize,
    max_chars: usize,
    error: Option<String>,
    /// The day field of the re-analysis form, as typed.
    since: String,
}

fn topics_base(tenant: &Tenant) -> String {
    format!("/t/{}/settings/topics", tenant.slug)
}

fn topics_page(
    context: &AppContext,
    session: &RequestSession,
    tenant: &Tenant,
    typed: Option<String>,
    error: Option<String>,
    since: String,
) -> Result<TopicsPage, AppError> {
    let base = topics_base(tenant);
    let current = context.analysis.topics(tenant.id)?;
    let uses_default = current.as_slice() == DEFAULT_TOPICS;
    Ok(TopicsPage {
        chrome: Chrome::for_session(context, session, Some(tenant), "Topics", &base)?,
        base,
        text: typed.unwrap_or_else(|| current.as_slice().join("\n")),
        uses_default,
        max_topics: MAX_TOPICS,
        max_chars: MAX_TOPIC_CHARS,
        error,
        since,
    })
}

async fn topics_show(
    context: Data<AppContext>,
    access: TenantAccess<ManageAnalysis>,
) -> Result<HttpResponse, AppError> {
    let page = web::block(move || {
        topics_page(
            &context,
            &access.session,
            &access.tenant,
            None,
            None,
            String::new(),
        )
    })
    .await??;
    render(&page, StatusCode::OK)
}

#[derive(Deserialize)]
struct TopicsFields {
    #[serde(default)]
    topics: String,
    /// Present when the "Restore the default list" button was pressed.
    #[serde(default)]
    restore_default: Option<String>,
}

async fn topics_save(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ManageAnalysis>,
    form: Form<TopicsFields>,
) -> Result<Reply, AppError> {
    let client = client_address(&request).map(|address| address.to_string());
    let fields = form.into_inner();
    web::block(move || -> Result<Reply, AppError> {
        let labels = if fields.restore_default.is_some() {
            Ok(DEFAULT_TOPICS.iter().map(|label| (*label).to_owned()).collect())
        } else {
            parse_topic_lines(&fields.topics)
        };
        match labels {
            Ok(labels) => {
                let set = change_topics(
                    &context,
                    &access.session.user.actor(),
                    client,
                    access.tenant.id,
                    labels,
                )?;
                push_flash(
                    &context,
                    &access.session,
                    FlashKind::Success,
                    format!(
                        "Topic list saved ({} topics). New analyses use it; to label interactions analysed before, re-analyse them below.",
                        set.len()
                    ),
                )?;
                Ok(Reply::SeeOther(topics_base(&access.tenant)))
            }
            Err(problem) => {
                let page = topics_page(
                    &context,
                    &access.session,
                    &access.tenant,
                    Some(fields.topics),
                    Some(problem.to_string()),
                    String::new(),
                )?;
                Reply::page(&page, StatusCode::UNPROCESSABLE_ENTITY)
            }
        }
    })
    .await?
}

#[derive(Deserialize)]
struct ScopeFields {
    #[serde(default)]
    scope: String,
    #[serde(default)]
    since: String,
}

/// The re-analysis scope as posted: `all`, or `since` with a day `YYYY-MM-DD`.
fn parse_scope(fields: &ScopeFields) -> Result<ReanalysisScope, String> {
    match fields.scope.as_str() {
        "all" => Ok(ReanalysisScope::All),
        "since" => chrono::NaiveDate::parse_from_str(fields.since.trim(), "%Y-%m-%d")
            .map(ReanalysisScope::UpdatedSince)
            .map_err(|_| "Updated since: give a day as YYYY-MM-DD".to_owned()),
        _ => Err("Scope: choose all interactions or those updated since a day".to_owned()),
    }
}

async fn topics_reanalyse(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ManageAnalysis>,
    form: Form<ScopeFields>,
) -> Result<Reply, AppError> {
    let client = client_address(&request).map(|address| address.to_string());
    let fields = form.into_inner();
    web::block(move || -> Result<Reply, AppError> {
        match parse_scope(&fields) {
            Ok(scope) => {
                let enqueued = reanalyse_scope(
                    &context,
                    &access.session.user.actor(),
                    client,
                    access.tenant.id,
                    scope,
                )?;
                push_flash(
                    &context,
                    &access.session,
                    FlashKind::Success,
                    format!(
                        "{} of {} interactions queued for analysis ({scope}). Results whose inputs did not change are kept.",
                        enqueued.queued, enqueued.considered
                    ),
                )?;
                Ok(Reply::SeeOther(format!(
                    "/t/{}/analysis",
                    access.tenant.slug
                )))
            }
            Err(message) => {
                let page = topics_page(
                    &context,
                    &access.session,
                    &access.tenant,
                    None,
                    Some(message),
                    fields.since,
                )?;
                Reply::page(&page, StatusCode::UNPROCESSABLE_ENTITY)
            }
        }
    })
    .await?
}

impl From<AnalysisError> for AppError {
    fn from(error: AnalysisError) -> Self {
        match error {
            AnalysisError::Store(store) => store.into(),
            AnalysisError::Audit(audit) => audit.into(),
            AnalysisError::NotFound(_) => Self::NotFound,
            AnalysisError::Inference(inference) => Self::internal(&inference),
        }
    }
}
