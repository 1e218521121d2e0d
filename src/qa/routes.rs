//! QA in the console: the Scorecard section of the interaction page (scores, reasoning, evidence
//! highlighted in the thread, the override form), the override action, the QA page listing scored
//! interactions, and the scorecard editor with its re-score offer.
//!
//! Scores, reasoning and quotes are tenant content: the templates escape them like every text.
//! Highlighting splits a message's text into segments on the server; nothing is marked up as
//! raw HTML.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::web::{self, Data, Form, Query};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use crate::analysis::routes::ProvenanceView;
use crate::auth::guard::policy::{ExportQaReport, ManageScorecards, ReviewQa, ViewTenantData};
use crate::auth::guard::{client_address, RequestSession, TenantAccess};
use crate::auth::session::FlashKind;
use crate::auth::Permission;
use crate::context::AppContext;
use crate::error::AppError;
use crate::ids::{RecordId, TenantId};
use crate::interactions::Interaction;
use crate::qa::evidence::verify;
use crate::qa::store::QaStore;
use crate::qa::{
    criterion_id, effective_overall, override_criterion, override_for, qa_analysis, AgentKind,
    Criterion, Overall, OverrideInput, QaError, QaFilter, RescoreScope, Scale, Scorecard,
    ScorecardProblem,
};
use crate::tenants::Tenant;
use crate::web::pages::{audit_personal_read, format_time, push_flash, render, Chrome, Reply};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/t/{tenant}/qa", web::get().to(list))
        .route("/t/{tenant}/qa/export.csv", web::get().to(export_csv))
        .route(
            "/t/{tenant}/interactions/{id}/qa/override",
            web::post().to(override_score),
        )
        .route("/t/{tenant}/settings/scorecard", web::get().to(editor))
        .route("/t/{tenant}/settings/scorecard", web::post().to(save))
        .route(
            "/t/{tenant}/settings/scorecard/rescore",
            web::post().to(rescore),
        );
}

impl From<QaError> for AppError {
    fn from(error: QaError) -> Self {
        match error {
            QaError::Store(store) => store.into(),
            QaError::Audit(audit) => audit.into(),
            QaError::Analysis(analysis) => analysis.into(),
            QaError::NotFound => Self::NotFound,
            QaError::NotScored => Self::Conflict(error.to_string()),
            QaError::Invalid(message) => Self::BadRequest(message),
            QaError::Scorecard(problem) => Self::BadRequest(problem.to_string()),
        }
    }
}

fn percent(probability: f32) -> String {
    format!("{:.0} %", (probability * 100.0).clamp(0.0, 100.0))
}

/// An overall score as people read it.
fn overall_text(overall: &Overall) -> String {
    match (overall.auto_fail, overall.score) {
        (true, _) => "0 (auto-fail)".to_owned(),
        (false, Some(score)) => format!("{score:.1}"),
        (false, None) => "— (no criterion applied)".to_owned(),
    }
}

/// A piece of a message's text; `marked` pieces are evidence quotes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub text: String,
    pub marked: bool,
}

/// Splits `text` into plain and marked segments at `ranges` (byte ranges; ranges that overlap are
/// merged, ranges that do not fall on character boundaries are dropped).
pub fn segments(text: &str, ranges: &[(usize, usize)]) -> Vec<Segment> {
    let mut sorted: Vec<(usize, usize)> = ranges
        .iter()
        .copied()
        .filter(|(start, end)| start < end && text.get(*start..*end).is_some())
        .collect();
    sorted.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for (start, end) in sorted {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    let mut pieces = Vec::new();
    let mut at = 0;
    for (start, end) in merged {
        if start > at {
            pieces.push(Segment {
                text: text[at..start].to_owned(),
                marked: false,
            });
        }
        pieces.push(Segment {
            text: text[start..end].to_owned(),
            marked: true,
        });
        at = end;
    }
    if at < text.len() || pieces.is_empty() {
        pieces.push(Segment {
            text: text[at..].to_owned(),
            marked: false,
        });
    }
    pieces
}

pub struct OverrideView {
    pub criterion: String,
    pub score: String,
    pub comment: String,
    pub by: String,
    pub at: String,
}

pub struct ChoiceView {
    pub value: String,
    pub label: String,
    /// The criterion's effective score: the override form starts from it.
    pub selected: bool,
}

pub struct CriterionView {
    pub id: String,
    pub name: String,
    pub scale: &'static str,
    pub weight: u32,
    pub critical: bool,
    pub ai_score: String,
    pub confidence: String,
    pub reasoning: String,
    pub quote: Option<String>,
    /// The quote is no longer in this version of the interaction.
    pub quote_moved: bool,
    /// The message the quote is from (1-based, as the thread numbers them).
    pub quote_message: usize,
    pub overridden: Option<OverrideView>,
    pub effective: String,
    pub choices: Vec<ChoiceView>,
}

/// The override form's choices: the scale's labels, the effective score selected.
fn choices(scale: Scale, effective: Option<u8>) -> Vec<ChoiceView> {
    scale
        .labels()
        .into_iter()
        .map(|label| {
            let points = scale.parse_points(&label).unwrap_or(None);
            ChoiceView {
                label: scale.describe(points),
                selected: points == effective,
                value: label,
            }
        })
        .collect()
}

/// The Scorecard section of the interaction page (`templates/qa/scorecard.html`).
pub struct ScorecardPanel {
    pub criteria: Vec<CriterionView>,
    pub ai_overall: String,
    pub effective_overall: String,
    pub auto_fail: bool,
    pub agent: String,
    pub agent_kind: &'static str,
    pub provenance: ProvenanceView,
    /// Where the override form posts, for QA leads.
    pub override_url: Option<String>,
    pub history: Vec<OverrideView>,
    /// Per message (by position), the byte ranges of its quotes, when they are still there.
    pub highlights: HashMap<usize, Vec<(usize, usize)>>,
}

/// Reads the interaction's QA analysis and overrides for its page. Blocking. The caller audits
/// the read together with the interaction's.
pub fn scorecard_panel(
    context: &AppContext,
    session: &RequestSession,
    tenant: TenantId,
    base: &str,
    interaction: &Interaction,
) -> Result<Option<ScorecardPanel>, AppError> {
    let Some((analysis, result)) = qa_analysis(context, tenant, interaction.id)? else {
        return Ok(None);
    };
    let overrides = QaStore::new(context.store.clone()).overrides(tenant, interaction.id)?;
    let effective = effective_overall(&result, &overrides);
    let ai = Overall {
        score: result.overall,
        auto_fail: result.auto_fail,
    };
    let mut highlights: HashMap<usize, Vec<(usize, usize)>> = HashMap::new();
    let view_of = |entry: &crate::qa::Override, scale: Scale| OverrideView {
        criterion: entry.criterion.clone(),
        score: scale.describe(entry.points),
        comment: entry.comment.clone(),
        by: entry.by.clone(),
        at: format_time(entry.at),
    };
    let mut criteria = Vec::with_capacity(result.criteria.len());
    for score in &result.criteria {
        let found = score
            .evidence
            .as_ref()
            .is_some_and(|evidence| verify(&interaction.record, evidence));
        if let (true, Some(evidence)) = (found, &score.evidence) {
            highlights
                .entry(evidence.message)
                .or_default()
                .push((evidence.start, evidence.end));
        }
        let current = override_for(score, &overrides);
        let effective_points = current.map_or(score.points, |entry| entry.points);
        let overridden = current.map(|entry| view_of(entry, score.scale));
        criteria.push(CriterionView {
            id: score.criterion.clone(),
            name: score.name.clone(),
            scale: score.scale.as_str(),
            weight: score.weight,
            critical: score.critical,
            ai_score: score.scale.describe(score.points),
            confidence: percent(score.confidence),
            reasoning: score.reasoning.clone(),
            quote: score
                .evidence
                .as_ref()
                .map(|evidence| evidence.quote.clone()),
            quote_moved: score.evidence.is_some() && !found,
            quote_message: score
                .evidence
                .as_ref()
                .map_or(0, |evidence| evidence.message + 1),
            effective: overridden.as_ref().map_or_else(
                || score.scale.describe(score.points),
                |view| view.score.clone(),
            ),
            overridden,
            choices: choices(score.scale, effective_points),
        });
    }
    let scales: HashMap<&str, Scale> = result
        .criteria
        .iter()
        .map(|score| (score.criterion.as_str(), score.scale))
        .collect();
    let history = overrides
        .iter()
        .rev()
        .map(|entry| {
            let scale = scales
                .get(entry.criterion.as_str())
                .copied()
                .unwrap_or(Scale::Five);
            view_of(entry, scale)
        })
        .collect();
    Ok(Some(ScorecardPanel {
        criteria,
        ai_overall: overall_text(&ai),
        effective_overall: overall_text(&effective),
        auto_fail: effective.auto_fail,
        agent: result.agent.clone().unwrap_or_else(|| "—".to_owned()),
        agent_kind: result.agent_kind.as_str(),
        provenance: ProvenanceView::of(&analysis, interaction.updated),
        override_url: session
            .user
            .role
            .grants(Permission::ReviewQa)
            .then(|| format!("{base}/interactions/{}/qa/override", interaction.id)),
        history,
        highlights,
    }))
}

#[derive(Deserialize)]
struct OverrideFields {
    #[serde(default)]
    criterion: String,
    #[serde(default)]
    score: String,
    #[serde(default)]
    comment: String,
}

async fn override_score(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ReviewQa>,
    path: web::Path<(String, String)>,
    form: Form<OverrideFields>,
) -> Result<Reply, AppError> {
    let client = client_address(&request).map(|address| address.to_string());
    let id: RecordId = path.1.parse().map_err(|_| AppError::NotFound)?;
    let fields = form.into_inner();
    web::block(move || -> Result<Reply, AppError> {
        context
            .interactions
            .get(access.tenant.id, id)?
            .ok_or(AppError::NotFound)?;
        override_criterion(
            &context,
            &access.session.user.actor(),
            client,
            access.tenant.id,
            id,
            &OverrideInput {
                criterion: fields.criterion,
                score: fields.score,
                comment: fields.comment,
            },
        )?;
        push_flash(
            &context,
            &access.session,
            FlashKind::Success,
            "The override is saved; the AI's score is kept beside it.",
        )?;
        Ok(Reply::SeeOther(format!(
            "/t/{}/interactions/{id}#scorecard",
            access.tenant.slug
        )))
    })
    .await?
}

/// The QA page's query string; empty fields mean "any".
#[derive(Debug, Default, Deserialize, serde::Serialize)]
#[serde(default)]
pub struct ListQuery {
    pub agent_kind: String,
    pub agent: String,
    pub min: String,
    pub max: String,
    pub auto_fail: String,
}

fn parse_score(field: &str, value: &str) -> Result<Option<f32>, AppError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    value
        .parse::<f32>()
        .ok()
        .filter(|score| (0.0..=100.0).contains(score))
        .map(Some)
        .ok_or_else(|| AppError::BadRequest(format!("{field}: enter a score from 0 to 100.")))
}

impl ListQuery {
    fn filter(&self) -> Result<QaFilter, AppError> {
        let agent_kind = match self.agent_kind.trim() {
            "" => None,
            "human" => Some(AgentKind::Human),
            "ai" => Some(AgentKind::Ai),
            _ => {
                return Err(AppError::BadRequest(
                    "agent kind: choose human, AI or any.".to_owned(),
                ))
            }
        };
        let agent = self.agent.trim();
        Ok(QaFilter {
            agent_kind,
            agent: (!agent.is_empty()).then(|| agent.to_owned()),
            min_score: parse_score("minimum score", &self.min)?,
            max_score: parse_score("maximum score", &self.max)?,
            auto_fail_only: !self.auto_fail.trim().is_empty(),
        })
    }
}

pub struct QaRow {
    pub url: String,
    pub subject: String,
    pub agent: String,
    pub agent_kind: &'static str,
    pub effective: String,
    pub ai: String,
    pub auto_fail: bool,
    pub overridden: usize,
    pub scored: String,
    pub stale: bool,
}

#[derive(Template)]
#[template(path = "qa/list.html")]
struct ListPage {
    chrome: Chrome,
    query: ListQuery,
    rows: Vec<QaRow>,
    more: bool,
    scan_limit: Option<usize>,
    shown_at_most: usize,
    /// The QA report of these filters as CSV, for those who may export it.
    export_url: Option<String>,
}

/// Rows shown at most, and scored interactions examined at most, per page.
const QA_PAGE_ROWS: usize = 100;
const QA_PAGE_SCANNED: usize = 5000;

async fn list(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ViewTenantData>,
    query: Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    let client = client_address(&request).map(|address| address.to_string());
    let query = query.into_inner();
    let page = web::block(move || -> Result<ListPage, AppError> {
        let filter = query.filter()?;
        let tenant = access.tenant.id;
        let found =
            crate::qa::list_scored(&context, tenant, &filter, QA_PAGE_ROWS, QA_PAGE_SCANNED)?;
        audit_personal_read(&context, &access.session, &access.tenant, client, "QA list")?;
        let base = format!("/t/{}", access.tenant.slug);
        let mut rows = Vec::with_capacity(found.rows.len());
        for row in found.rows {
            let interaction = context.interactions.get(tenant, row.interaction)?;
            let stale = interaction
                .as_ref()
                .is_some_and(|current| row.provenance.interaction_version < current.updated);
            rows.push(QaRow {
                url: format!("{base}/interactions/{}", row.interaction),
                subject: interaction
                    .and_then(|current| current.record.subject)
                    .unwrap_or_else(|| "(no subject)".to_owned()),
                agent: row.result.agent.clone().unwrap_or_else(|| "—".to_owned()),
                agent_kind: row.result.agent_kind.as_str(),
                effective: overall_text(&row.effective),
                ai: overall_text(&Overall {
                    score: row.result.overall,
                    auto_fail: row.result.auto_fail,
                }),
                auto_fail: row.effective.auto_fail,
                overridden: row.overridden,
                scored: format_time(row.provenance.created),
                stale,
            });
        }
        let export_url = access
            .session
            .user
            .role
            .grants(Permission::ExportQaReport)
            .then(|| {
                format!(
                    "{base}/qa/export.csv?{}",
                    serde_urlencoded::to_string(&query).unwrap_or_default()
                )
            });
        Ok(ListPage {
            chrome: Chrome::for_session(
                &context,
                &access.session,
                Some(&access.tenant),
                "QA",
                &format!("{base}/qa"),
            )?,
            export_url,
            query,
            rows,
            more: found.more,
            scan_limit: found.scan_limit,
            shown_at_most: QA_PAGE_ROWS,
        })
    })
    .await??;
    render(&page, StatusCode::OK)
}

/// The QA report as CSV with the QA page's filters (QA leads and tenant admins). Refused (409,
/// with the reason) when the filters reach past the export's bound; audited.
async fn export_csv(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ExportQaReport>,
    query: Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    let client = client_address(&request).map(|address| address.to_string());
    let bytes = web::block(move || -> Result<Vec<u8>, AppError> {
        let filter = query.filter()?;
        let base = format!("/t/{}", access.tenant.slug);
        crate::qa::export::export_qa(
            &context,
            &access.session.user.actor(),
            client,
            access.tenant.id,
            &filter,
            &base,
        )?
        .ok_or_else(|| AppError::Conflict(crate::qa::export::TOO_BROAD.to_owned()))
    })
    .await??;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            "attachment; filename=\"qa-report.csv\"",
        ))
        .body(bytes))
}

pub struct ScaleOption {
    pub value: &'static str,
    pub selected: bool,
}

fn scale_options(chosen: &str) -> Vec<ScaleOption> {
    Scale::ALL
        .iter()
        .map(|scale| ScaleOption {
            value: scale.as_str(),
            selected: scale.as_str() == chosen,
        })
        .collect()
}

/// One row of the editor.
pub struct EditorRow {
    pub id: String,
    pub name: String,
    pub question: String,
    pub scales: Vec<ScaleOption>,
    pub weight: String,
    pub critical: bool,
    pub enabled: bool,
    pub builtin: bool,
}

#[derive(Template)]
#[template(path = "qa/editor.html")]
struct EditorPage {
    chrome: Chrome,
    action: String,
    rescore_action: String,
    rows: Vec<EditorRow>,
    new_name: String,
    new_question: String,
    new_scales: Vec<ScaleOption>,
    new_weight: String,
    new_critical: bool,
    error: Option<String>,
}

fn editor_base(tenant: &Tenant) -> String {
    format!("/t/{}/settings/scorecard", tenant.slug)
}

fn editor_page(
    context: &AppContext,
    session: &RequestSession,
    tenant: &Tenant,
    fields: Option<&[(String, String)]>,
    error: Option<String>,
) -> Result<EditorPage, AppError> {
    let action = editor_base(tenant);
    let scorecard = QaStore::new(context.store.clone()).scorecard(tenant.id)?;
    let typed = |name: &str| -> Option<String> {
        fields.and_then(|fields| {
            fields
                .iter()
                .find(|(field, _)| field == name)
                .map(|(_, value)| value.clone())
        })
    };
    let checked = |name: &str, stored: bool| match fields {
        Some(_) => typed(name).is_some(),
        None => stored,
    };
    let rows = scorecard
        .criteria
        .iter()
        .map(|criterion| {
            let id = &criterion.id;
            EditorRow {
                id: id.clone(),
                name: typed(&format!("name_{id}")).unwrap_or_else(|| criterion.name.clone()),
                question: typed(&format!("question_{id}"))
                    .unwrap_or_else(|| criterion.question.clone()),
                scales: scale_options(
                    &typed(&format!("scale_{id}"))
                        .unwrap_or_else(|| criterion.scale.as_str().to_owned()),
                ),
                weight: typed(&format!("weight_{id}"))
                    .unwrap_or_else(|| criterion.weight.to_string()),
                critical: checked(&format!("critical_{id}"), criterion.critical),
                enabled: checked(&format!("enabled_{id}"), criterion.enabled),
                builtin: criterion.is_builtin(),
            }
        })
        .collect();
    Ok(EditorPage {
        chrome: Chrome::for_session(context, session, Some(tenant), "Scorecard", &action)?,
        rescore_action: format!("{action}/rescore"),
        action,
        rows,
        new_name: typed("new_name").unwrap_or_default(),
        new_question: typed("new_question").unwrap_or_default(),
        new_scales: scale_options(
            &typed("new_scale").unwrap_or_else(|| Scale::Binary.as_str().to_owned()),
        ),
        new_weight: typed("new_weight").unwrap_or_else(|| "1".to_owned()),
        new_critical: typed("new_critical").is_some(),
        error,
    })
}

fn form_value<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(field, _)| field == name)
        .map(|(_, value)| value.as_str())
}

fn form_weight(label: &str, text: &str) -> Result<u32, ScorecardProblem> {
    text.trim()
        .parse::<u32>()
        .ok()
        .filter(|weight| *weight <= crate::qa::MAX_WEIGHT)
        .ok_or_else(|| {
            ScorecardProblem::new(
                &format!("weight of “{label}”"),
                format!("enter a whole number from 0 to {}", crate::qa::MAX_WEIGHT),
            )
        })
}

fn form_scale(label: &str, text: &str) -> Result<Scale, ScorecardProblem> {
    Scale::parse(text).ok_or_else(|| {
        ScorecardProblem::new(
            &format!("scale of “{label}”"),
            "choose binary, 3-point or 5-point",
        )
    })
}

/// The editor's "add a criterion" row, when it is filled in.
fn new_criterion(
    fields: &[(String, String)],
    existing: &[Criterion],
) -> Result<Option<Criterion>, ScorecardProblem> {
    let value = |name: &str| form_value(fields, name);
    let weight = form_weight;
    let scale = form_scale;
    let new_name = value("new_name").unwrap_or_default().trim();
    let new_question = value("new_question").unwrap_or_default().trim();
    if !new_name.is_empty() || !new_question.is_empty() {
        if new_name.is_empty() {
            return Err(ScorecardProblem::new(
                "name of the new criterion",
                "a criterion needs a name",
            ));
        }
        if new_question.is_empty() {
            return Err(ScorecardProblem::new(
                "question of the new criterion",
                "write the question the model answers about the conversation",
            ));
        }
        let id = criterion_id(new_name);
        if id == "custom_" {
            return Err(ScorecardProblem::new(
                "name of the new criterion",
                "a name needs at least one letter or digit",
            ));
        }
        if existing.iter().any(|criterion| criterion.id == id) {
            return Err(ScorecardProblem::new(
                "name of the new criterion",
                "another criterion already has this name",
            ));
        }
        return Ok(Some(Criterion {
            id,
            name: new_name.to_owned(),
            question: new_question.to_owned(),
            scale: scale("the new criterion", value("new_scale").unwrap_or_default())?,
            weight: weight("the new criterion", value("new_weight").unwrap_or_default())?,
            critical: value("new_critical").is_some(),
            enabled: true,
        }));
    }
    Ok(None)
}

/// The scorecard the editor's form describes, from the stored one: built-ins keep their name and
/// question; tenant criteria can be renamed, re-worded or removed; a filled-in "new criterion" row
/// adds one. Problems name the field as the form labels it.
pub fn scorecard_from_form(
    current: &Scorecard,
    fields: &[(String, String)],
) -> Result<Scorecard, ScorecardProblem> {
    let value = |name: &str| form_value(fields, name);
    let (weight, scale) = (form_weight, form_scale);
    let mut criteria = Vec::with_capacity(current.criteria.len() + 1);
    for criterion in &current.criteria {
        let id = &criterion.id;
        let builtin = criterion.is_builtin();
        if !builtin && value(&format!("remove_{id}")).is_some() {
            continue;
        }
        let (name, question) = if builtin {
            (criterion.name.clone(), criterion.question.clone())
        } else {
            (
                value(&format!("name_{id}"))
                    .unwrap_or(&criterion.name)
                    .trim()
                    .to_owned(),
                value(&format!("question_{id}"))
                    .unwrap_or(&criterion.question)
                    .trim()
                    .to_owned(),
            )
        };
        let label = criterion.name.clone();
        if !builtin && name.is_empty() {
            return Err(ScorecardProblem::new(
                &format!("name of “{label}”"),
                "a criterion needs a name (tick Remove to delete it)",
            ));
        }
        criteria.push(Criterion {
            id: id.clone(),
            scale: scale(&label, value(&format!("scale_{id}")).unwrap_or_default())?,
            weight: weight(&label, value(&format!("weight_{id}")).unwrap_or_default())?,
            critical: value(&format!("critical_{id}")).is_some(),
            enabled: value(&format!("enabled_{id}")).is_some(),
            name,
            question,
        });
    }
    if let Some(added) = new_criterion(fields, &criteria)? {
        criteria.push(added);
    }
    let scorecard = Scorecard { criteria };
    scorecard.validate()?;
    Ok(scorecard)
}

async fn editor(
    context: Data<AppContext>,
    access: TenantAccess<ManageScorecards>,
) -> Result<HttpResponse, AppError> {
    let page =
        web::block(move || editor_page(&context, &access.session, &access.tenant, None, None))
            .await??;
    render(&page, StatusCode::OK)
}

async fn save(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ManageScorecards>,
    form: Form<Vec<(String, String)>>,
) -> Result<Reply, AppError> {
    let client = client_address(&request).map(|address| address.to_string());
    let fields = form.into_inner();
    web::block(move || -> Result<Reply, AppError> {
        let session = &access.session;
        let current = QaStore::new(context.store.clone()).scorecard(access.tenant.id)?;
        let changed = scorecard_from_form(&current, &fields).map_err(QaError::from).and_then(
            |scorecard| {
                crate::qa::change_scorecard(
                    &context,
                    &session.user.actor(),
                    client,
                    access.tenant.id,
                    &scorecard,
                )
            },
        );
        match changed {
            Ok(()) => {
                push_flash(
                    &context,
                    session,
                    FlashKind::Success,
                    "Scorecard saved. New analyses use it; re-score interactions below to apply it to those scored before.",
                )?;
                Ok(Reply::SeeOther(editor_base(&access.tenant)))
            }
            Err(QaError::Scorecard(problem)) => {
                let page = editor_page(
                    &context,
                    session,
                    &access.tenant,
                    Some(&fields),
                    Some(format!("The scorecard was not saved. {problem}.")),
                )?;
                Reply::page(&page, StatusCode::UNPROCESSABLE_ENTITY)
            }
            Err(other) => Err(other.into()),
        }
    })
    .await?
}

#[derive(Deserialize)]
struct RescoreFields {
    #[serde(default)]
    scope: String,
}

async fn rescore(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ManageScorecards>,
    form: Form<RescoreFields>,
) -> Result<Reply, AppError> {
    let client = client_address(&request).map(|address| address.to_string());
    let scope = match form.scope.trim() {
        "all" => RescoreScope::All,
        "30" => RescoreScope::RecentDays(30),
        "7" => RescoreScope::RecentDays(7),
        _ => {
            return Err(AppError::BadRequest(
                "scope: choose the last 7 days, the last 30 days, or all interactions.".to_owned(),
            ))
        }
    };
    web::block(move || -> Result<Reply, AppError> {
        let queued = crate::qa::rescore(
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
                "{} of {} interaction(s) queued for QA scoring ({}).",
                queued.queued,
                queued.considered,
                scope.describe()
            ),
        )?;
        Ok(Reply::SeeOther(editor_base(&access.tenant)))
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    /// The form as the editor renders it for the built-in scorecard.
    fn builtin_form() -> Vec<(String, String)> {
        let mut fields = Vec::new();
        for criterion in Scorecard::builtin().criteria {
            let id = criterion.id;
            fields.push((format!("enabled_{id}"), "on".to_owned()));
            fields.push((format!("scale_{id}"), criterion.scale.as_str().to_owned()));
            fields.push((format!("weight_{id}"), criterion.weight.to_string()));
        }
        fields
    }

    #[test]
    fn segments_mark_the_quotes_and_keep_every_byte() {
        let text = "Hello Ann. I fixed it. Bye é.";
        let pieces = segments(text, &[(11, 22), (0, 5), (3, 9), (27, 28)]);
        let joined: String = pieces.iter().map(|piece| piece.text.as_str()).collect();
        assert_eq!(joined, text);
        let marked: Vec<&str> = pieces
            .iter()
            .filter(|piece| piece.marked)
            .map(|piece| piece.text.as_str())
            .collect();
        // Overlaps merge; a range inside "é" is dropped.
        assert_eq!(marked, ["Hello Ann", "I fixed it."]);
        assert_eq!(
            segments("", &[]),
            vec![Segment {
                text: String::new(),
                marked: false
            }]
        );
    }

    #[test]
    fn the_editor_form_round_trips_and_adds_a_criterion() {
        let builtin = Scorecard::builtin();
        assert_eq!(
            scorecard_from_form(&builtin, &builtin_form()).unwrap(),
            builtin
        );
        let mut fields = builtin_form();
        fields.retain(|(name, _)| name != "enabled_greeting");
        fields.push(("critical_closing".to_owned(), "on".to_owned()));
        fields.extend(pairs(&[
            ("new_name", "Refund policy"),
            ("new_question", "Did the agent explain the refund policy?"),
            ("new_scale", "5-point"),
            ("new_weight", "4"),
        ]));
        let changed = scorecard_from_form(&builtin, &fields).unwrap();
        assert!(!changed.get("greeting").unwrap().enabled);
        assert!(changed.get("closing").unwrap().critical);
        let added = changed.get("custom_refund_policy").unwrap();
        assert_eq!((added.scale, added.weight), (Scale::Five, 4));
        // Removing a tenant criterion; built-ins cannot be removed.
        let mut fields: Vec<(String, String)> = builtin_form();
        for (name, value) in [
            ("enabled_custom_refund_policy", "on"),
            ("scale_custom_refund_policy", "5-point"),
            ("weight_custom_refund_policy", "4"),
            ("remove_custom_refund_policy", "on"),
            ("remove_greeting", "on"),
        ] {
            fields.push((name.to_owned(), value.to_owned()));
        }
        let removed = scorecard_from_form(&changed, &fields).unwrap();
        assert!(removed.get("custom_refund_policy").is_none());
        assert!(removed.get("greeting").is_some());
    }

    #[test]
    fn the_editor_names_the_field_it_refuses() {
        let builtin = Scorecard::builtin();
        let mut fields = builtin_form();
        for (name, value) in &mut fields {
            if name == "weight_tone" {
                *value = "heavy".to_owned();
            }
        }
        let problem = scorecard_from_form(&builtin, &fields).unwrap_err();
        assert_eq!(problem.field, "weight of “Tone”");
        let mut fields = builtin_form();
        fields.extend(pairs(&[("new_name", "Upsell")]));
        assert_eq!(
            scorecard_from_form(&builtin, &fields).unwrap_err().field,
            "question of the new criterion"
        );
        let mut fields = builtin_form();
        fields.extend(pairs(&[
            ("new_name", "Upsell"),
            ("new_question", "Did the agent offer an upgrade?"),
            ("new_scale", "7-point"),
            ("new_weight", "1"),
        ]));
        assert_eq!(
            scorecard_from_form(&builtin, &fields).unwrap_err().field,
            "scale of “the new criterion”"
        );
        let none_enabled: Vec<(String, String)> = builtin_form()
            .into_iter()
            .filter(|(name, _)| !name.starts_with("enabled_"))
            .collect();
        assert_eq!(
            scorecard_from_form(&builtin, &none_enabled)
                .unwrap_err()
                .field,
            "enabled"
        );
    }
}
