//! The tenant's Analysis page (the queue's counts per state, the backend and topics in use, the
//! failed jobs), the Re-analyse action of an interaction, and the Analysis panel of the
//! interaction page. Analyses are tenant content and model output: the templates escape them
//! like every other text, and the interaction page audits their read with the thread's.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::web::{self, Data};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;

use crate::analysis::jobs::{Job, JobState, MAX_ATTEMPTS};
use crate::analysis::{
    queue_status, request_reanalysis, Analysis, AnalysisError, AnalysisResult, LabelScores,
};
use crate::auth::guard::policy::RequestAnalysis;
use crate::auth::guard::{client_address, RequestSession, TenantAccess};
use crate::auth::session::FlashKind;
use crate::auth::Permission;
use crate::context::AppContext;
use crate::error::AppError;
use crate::ids::{RecordId, TenantId};
use crate::interactions::Interaction;
use crate::web::pages::{format_time, push_flash, render, Chrome, Reply};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/t/{tenant}/analysis", web::get().to(status))
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

/// The Analysis section of the interaction page (`templates/analysis/panel.html`).
pub struct AnalysisPanel {
    pub summary: Option<SummaryView>,
    pub sentiment: Option<SentimentView>,
    pub topics: Option<TopicsView>,
    /// The job's state, when it has not simply finished.
    pub job: Option<String>,
    /// Where the Re-analyse button posts, for roles that may use it.
    pub reanalyse_url: Option<String>,
    /// Per customer message (by position), its sentiment, unless the analysis is stale.
    pub message_sentiments: HashMap<usize, String>,
}

impl AnalysisPanel {
    pub fn is_empty(&self) -> bool {
        self.summary.is_none() && self.sentiment.is_none() && self.topics.is_none()
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
        job: job.as_ref().and_then(job_line),
        reanalyse_url: session
            .user
            .role
            .grants(Permission::RequestAnalysis)
            .then(|| format!("{base}/interactions/{}/reanalyse", interaction.id)),
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
            // The scorecard has its own section (`crate::qa::routes::scorecard_panel`).
            AnalysisResult::Qa(_) => {}
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
            backend: match status.model_sha256 {
                Some(sha256) => format!("{} (model sha256 {sha256})", status.backend),
                None => status.backend.to_string(),
            },
            topics: status.topics,
            failed: status
                .failed
                .into_iter()
                .map(|job| FailedRow {
                    url: format!("{base}/interactions/{}", job.interaction),
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
