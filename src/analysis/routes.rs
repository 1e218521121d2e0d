//! The tenant's Analysis page (the queue's counts per state, the backend and topics in use, the
//! failed jobs), the Re-analyse action of an interaction, and the Analysis panel of the
//! interaction page. Analyses are tenant content and model output: the templates escape them
//! like every other text, and the interaction page audits their read with the thread's.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::web::{self, Data, Form};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use crate::analysis::jobs::{Job, JobState, JobSubject, MAX_ATTEMPTS};
use crate::analysis::progress::describe_duration;
use crate::analysis::topics::{change_topics, parse_topic_lines, MAX_TOPICS, MAX_TOPIC_CHARS};
use crate::analysis::{
    cancel_queued, queue_status, request_reanalysis, Analysis, AnalysisError, AnalysisResult,
    LabelScores,
};
use crate::analysis::{reanalyse_scope, ReanalysisScope, DEFAULT_TOPICS};
use crate::auth::guard::policy::{ManageAnalysis, RequestAnalysis};
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

pub struct SentimentView {
    pub label: String,
    pub confidence: String,
    pub probabilities: Vec<ScoreView>,
    pub provenance: ProvenanceView,
}

pub struct TopicsView {
    pub labels: Vec<String>,
    pub probabilities: Vec<ScoreView>,
    pub provenance: ProvenanceView,
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
    let job = context.analysis.job(tenant, interaction.id)?;
    let current = interaction.updated;
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
                panel.sentiment = Some(SentimentView {
                    label: overall.label.clone(),
                    confidence: percent(overall.confidence),
                    probabilities: score_views(overall),
                    provenance,
                });
            }
            AnalysisResult::Lead(lead) => {
                panel.lead = Some(LeadView {
                    score: lead.score,
                    intent: format!(
                        "{} · {}",
                        crate::analysis::lead::intent_group(&lead.intent.label),
                        lead.intent.label.replace('_', " ")
                    ),
                    confidence: percent(lead.intent.confidence),
                    budget: lead
                        .facts
                        .budget
                        .clone()
                        .unwrap_or_else(|| "not stated".to_owned()),
                    company_size: lead
                        .facts
                        .company_size
                        .map_or_else(|| "not stated".to_owned(), |size| format!("{size} people")),
                    timeline: lead.facts.timeline.replace('_', " "),
                    current_solution: lead
                        .facts
                        .current_solution
                        .clone()
                        .unwrap_or_else(|| "not stated".to_owned()),
                    lead_url: format!("{base}/leads/{}", interaction.id),
                    provenance,
                });
            }
            AnalysisResult::Topics {
                labels,
                probabilities,
            } => {
                panel.topics = Some(TopicsView {
                    labels: labels.clone(),
                    probabilities: probabilities
                        .iter()
                        .map(|scored| ScoreView {
                            label: scored.label.clone(),
                            percent: percent(scored.probability),
                        })
                        .collect(),
                    provenance,
                });
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
