//! The review inbox in the console: the filtered list, a review's page with its analysis, draft
//! and actions, the CSV/JSON export, and the reply-draft settings page.
//!
//! Reviews carry reviewers' names and their words: every page and export that shows them records
//! the read in the audit log first. Review texts and drafts are tenant content (drafts may be a
//! model's output): the templates escape them like every text.

use actix_web::http::{header, StatusCode};
use actix_web::web::{self, Data, Form, Query};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use crate::analysis::routes::ProvenanceView;
use crate::auth::guard::policy::{ManageReviewSettings, WorkReviews};
use crate::auth::guard::{client_address, TenantAccess};
use crate::auth::session::FlashKind;
use crate::context::AppContext;
use crate::error::AppError;
use crate::ids::RecordId;
use crate::interactions::routes::parse_cursor;
use crate::records::{MAX_SCANNED_PER_PAGE, PAGE_SIZE};
use crate::reviews::store::ReviewStore;
use crate::reviews::{
    Acting, ExportFormat, Formality, ReplyMode, ReviewEntry, ReviewError, ReviewFilter,
    ReviewSettings, ReviewStatus,
};
use crate::tenants::Tenant;
use crate::web::pages::{audit_personal_read, format_time, push_flash, render, Chrome, Reply};

pub fn routes(config: &mut web::ServiceConfig) {
    // The export paths come before `{id}`, which would match them too.
    config
        .route("/t/{tenant}/reviews", web::get().to(inbox))
        .route("/t/{tenant}/reviews/export.csv", web::get().to(export_csv))
        .route(
            "/t/{tenant}/reviews/export.json",
            web::get().to(export_json),
        )
        .route("/t/{tenant}/reviews/{id}", web::get().to(show))
        .route("/t/{tenant}/reviews/{id}/draft", web::post().to(save_draft))
        .route(
            "/t/{tenant}/reviews/{id}/request-draft",
            web::post().to(request_draft),
        )
        .route("/t/{tenant}/reviews/{id}/replied", web::post().to(replied))
        .route("/t/{tenant}/reviews/{id}/status", web::post().to(status))
        .route("/t/{tenant}/settings/reviews", web::get().to(settings))
        .route(
            "/t/{tenant}/settings/reviews",
            web::post().to(save_settings),
        );
}

impl From<ReviewError> for AppError {
    fn from(error: ReviewError) -> Self {
        match error {
            ReviewError::Store(store) => store.into(),
            ReviewError::Audit(audit) => audit.into(),
            ReviewError::Analysis(analysis) => analysis.into(),
            ReviewError::NotFound => Self::NotFound,
            ReviewError::Invalid(message) => Self::BadRequest(message),
            ReviewError::DraftsOff | ReviewError::Restricted => Self::Conflict(error.to_string()),
            // Only `export` answers this, with the inbox and the message (422).
            ReviewError::ExportTooBroad => Self::BadRequest(error.to_string()),
            ReviewError::Export(_) => Self::internal(&error),
        }
    }
}

fn client(request: &HttpRequest) -> Option<String> {
    client_address(request).map(|address| address.to_string())
}

fn stars(rating: u8) -> String {
    let filled = usize::from(rating.min(5));
    format!("{}{}", "★".repeat(filled), "☆".repeat(5 - filled))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct InboxQuery {
    source: String,
    rating: String,
    location: String,
    status: String,
    sentiment: String,
    topic: String,
    cursor: String,
}

impl InboxQuery {
    fn filter(&self) -> Result<ReviewFilter, ReviewError> {
        ReviewFilter::parse(
            &self.source,
            &self.rating,
            &self.location,
            &self.status,
            &self.sentiment,
            &self.topic,
        )
    }
}

pub struct ReviewRow {
    pub url: String,
    pub time: String,
    pub stars: String,
    pub rating: u8,
    pub platform: String,
    pub reviewer: String,
    pub location: String,
    pub excerpt: String,
    pub status: &'static str,
    pub sentiment: String,
    pub topics: String,
}

pub struct Choice {
    pub value: String,
    pub selected: bool,
}

fn choices(values: &[&str], current: &str) -> Vec<Choice> {
    values
        .iter()
        .map(|value| Choice {
            value: (*value).to_owned(),
            selected: *value == current,
        })
        .collect()
}

#[derive(Template)]
#[template(path = "reviews/inbox.html")]
struct InboxPage {
    chrome: Chrome,
    error: Option<String>,
    list_url: String,
    source: String,
    location: String,
    topic: String,
    ratings: Vec<Choice>,
    statuses: Vec<Choice>,
    sentiments: Vec<Choice>,
    rows: Vec<ReviewRow>,
    filtered: bool,
    older: Option<String>,
    is_first_page: bool,
    scan_limit: Option<usize>,
    export_csv: String,
    export_json: String,
}

fn row(base: &str, entry: &ReviewEntry) -> ReviewRow {
    let review = &entry.review;
    ReviewRow {
        url: format!("{base}/reviews/{}", review.id()),
        time: format_time(review.stored.record.occurred_at),
        stars: stars(review.rating),
        rating: review.rating,
        platform: review.platform.clone(),
        reviewer: review.reviewer.clone().unwrap_or_default(),
        location: review.location.clone().unwrap_or_default(),
        excerpt: review
            .text
            .as_deref()
            .map(|text| crate::analysis::pipeline::flatten(text, 120))
            .unwrap_or_default(),
        status: entry.state.status.as_str(),
        sentiment: entry
            .analyses
            .sentiment_label()
            .unwrap_or_default()
            .to_owned(),
        topics: entry.analyses.topic_labels().join(", "),
    }
}

fn with_query(url: &str, pairs: &[(&'static str, String)]) -> String {
    if pairs.is_empty() {
        url.to_owned()
    } else {
        format!(
            "{url}?{}",
            serde_urlencoded::to_string(pairs).unwrap_or_default()
        )
    }
}

/// The inbox page for `query`, with `error` above the list (a refused export).
fn inbox_view(
    context: &AppContext,
    access: &TenantAccess<WorkReviews>,
    client: Option<String>,
    query: &InboxQuery,
    error: Option<String>,
) -> Result<InboxPage, AppError> {
    let filter = query.filter()?;
    let cursor = parse_cursor(&query.cursor)?;
    let found = crate::reviews::inbox_page(context, access.tenant.id, &filter, cursor, PAGE_SIZE)?;
    audit_personal_read(
        context,
        &access.session,
        &access.tenant,
        client,
        "reviews list",
    )?;
    let base = format!("/t/{}", access.tenant.slug);
    let list_url = format!("{base}/reviews");
    let pairs = filter.query_pairs();
    let older = found.next_cursor.map(|next| {
        let mut pairs = pairs.clone();
        pairs.push(("cursor", next.to_string()));
        with_query(&list_url, &pairs)
    });
    let rating = filter
        .rating
        .map(|rating| rating.to_string())
        .unwrap_or_default();
    let status = filter.status.map(ReviewStatus::as_str).unwrap_or_default();
    Ok(InboxPage {
        chrome: Chrome::for_session(
            context,
            &access.session,
            Some(&access.tenant),
            "Reviews",
            &list_url,
        )?,
        error,
        rows: found.items.iter().map(|entry| row(&base, entry)).collect(),
        filtered: !pairs.is_empty(),
        older,
        is_first_page: cursor.is_none(),
        scan_limit: found.scan_limit_reached.then_some(MAX_SCANNED_PER_PAGE),
        export_csv: with_query(&format!("{list_url}/export.csv"), &pairs),
        export_json: with_query(&format!("{list_url}/export.json"), &pairs),
        ratings: choices(&["1", "2", "3", "4", "5"], &rating),
        statuses: choices(&ReviewStatus::ALL.map(ReviewStatus::as_str), status),
        sentiments: choices(
            &crate::inference::SENTIMENT_LABELS,
            filter.sentiment.as_deref().unwrap_or_default(),
        ),
        source: filter.source.clone().unwrap_or_default(),
        location: filter.location.clone().unwrap_or_default(),
        topic: filter.topic.clone().unwrap_or_default(),
        list_url,
    })
}

async fn inbox(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<WorkReviews>,
    query: Query<InboxQuery>,
) -> Result<HttpResponse, AppError> {
    let client = client(&request);
    let page = web::block(move || inbox_view(&context, &access, client, &query, None)).await??;
    render(&page, StatusCode::OK)
}

async fn export(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<WorkReviews>,
    query: Query<InboxQuery>,
    format: ExportFormat,
) -> Result<HttpResponse, AppError> {
    let client = client(&request);
    let exported = web::block(move || -> Result<Result<Vec<u8>, InboxPage>, AppError> {
        let filter = query.filter()?;
        let actor = access.session.user.actor();
        let acting = Acting {
            actor: &actor,
            client: client.clone(),
            tenant: access.tenant.id,
        };
        match crate::reviews::export(&context, &acting, &filter, format) {
            Ok(bytes) => Ok(Ok(bytes)),
            // Too broad: the inbox with these filters and the reason, to narrow them there.
            Err(error @ ReviewError::ExportTooBroad) => {
                let query = InboxQuery {
                    cursor: String::new(),
                    ..query.into_inner()
                };
                Ok(Err(inbox_view(
                    &context,
                    &access,
                    client,
                    &query,
                    Some(error.to_string()),
                )?))
            }
            Err(error) => Err(error.into()),
        }
    })
    .await??;
    let bytes = match exported {
        Ok(bytes) => bytes,
        Err(page) => return render(&page, StatusCode::UNPROCESSABLE_ENTITY),
    };
    let (content_type, name) = match format {
        ExportFormat::Csv => ("text/csv; charset=utf-8", "reviews.csv"),
        ExportFormat::Json => ("application/json", "reviews.json"),
    };
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        ))
        .body(bytes))
}

async fn export_csv(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<WorkReviews>,
    query: Query<InboxQuery>,
) -> Result<HttpResponse, AppError> {
    export(request, context, access, query, ExportFormat::Csv).await
}

async fn export_json(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<WorkReviews>,
    query: Query<InboxQuery>,
) -> Result<HttpResponse, AppError> {
    export(request, context, access, query, ExportFormat::Json).await
}

pub struct AnalysisLine {
    pub text: String,
    pub provenance: ProvenanceView,
}

#[derive(Template)]
#[template(path = "reviews/show.html")]
struct ShowPage {
    chrome: Chrome,
    base: String,
    action_base: String,
    row: ReviewRow,
    text: String,
    imported_reply: Option<String>,
    source: String,
    sentiment: Option<AnalysisLine>,
    topics: Option<AnalysisLine>,
    draft: Option<AnalysisLine>,
    draft_pending: bool,
    can_request_draft: bool,
    /// The reviewer restricted processing: no draft can be asked for (the page says so, no more).
    restricted: bool,
    /// What the edit box starts with: the person's text, else the machine's draft.
    reply: String,
    replied_at: Option<String>,
    changed: Option<String>,
    status: &'static str,
}

fn review_id(path: &(String, String)) -> Result<RecordId, AppError> {
    path.1.parse().map_err(|_| AppError::NotFound)
}

async fn show(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<WorkReviews>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let client = client(&request);
    let id = review_id(&path)?;
    let page = web::block(move || -> Result<ShowPage, AppError> {
        let tenant = access.tenant.id;
        let entry = crate::reviews::review(&context, tenant, id)?;
        let pending = crate::reviews::draft_pending(&context, tenant, id)?;
        let settings = ReviewStore::new(context.store.clone()).settings(tenant)?;
        let restricted = crate::reviews::restricted(&context, tenant, &entry.review)?;
        audit_personal_read(
            &context,
            &access.session,
            &access.tenant,
            client,
            format!("review {id}"),
        )?;
        let base = format!("/t/{}", access.tenant.slug);
        let version = entry.review.stored.updated;
        let line = |analysis: &crate::analysis::Analysis, text: String| AnalysisLine {
            text,
            provenance: ProvenanceView::of(analysis, version),
        };
        let analyses = &entry.analyses;
        let sentiment = analyses
            .sentiment
            .as_ref()
            .and_then(|analysis| match &analysis.result {
                crate::analysis::AnalysisResult::Sentiment { overall, .. } => Some(line(
                    analysis,
                    format!(
                        "{} ({:.0} % confident)",
                        overall.label,
                        (overall.confidence * 100.0).clamp(0.0, 100.0)
                    ),
                )),
                _ => None,
            });
        let topics = analyses
            .topics
            .as_ref()
            .map(|analysis| line(analysis, analyses.topic_labels().join(", ")));
        let draft = analyses.draft.as_ref().and_then(|analysis| {
            analyses
                .draft_text()
                .map(|text| line(analysis, text.to_owned()))
        });
        Ok(ShowPage {
            chrome: Chrome::for_session(
                &context,
                &access.session,
                Some(&access.tenant),
                "Review",
                &format!("{base}/reviews"),
            )?,
            action_base: format!("{base}/reviews/{id}"),
            row: row(&base, &entry),
            text: entry.review.text.clone().unwrap_or_default(),
            imported_reply: entry.review.imported_reply.clone(),
            source: format!(
                "{} {}",
                entry.review.stored.record.source_system, entry.review.stored.record.source_id
            ),
            sentiment,
            topics,
            draft,
            draft_pending: pending,
            can_request_draft: settings.mode == ReplyMode::Suggest && !restricted,
            restricted,
            reply: entry.reply_text().unwrap_or_default().to_owned(),
            replied_at: entry.state.replied_at.map(format_time),
            changed: entry.state.changed_at.map(|at| {
                format!(
                    "{} by {}",
                    format_time(at),
                    entry.state.changed_by.clone().unwrap_or_default()
                )
            }),
            status: entry.state.status.as_str(),
            base,
        })
    })
    .await??;
    render(&page, StatusCode::OK)
}

#[derive(Deserialize)]
struct ReplyFields {
    #[serde(default)]
    reply: String,
}

#[derive(Deserialize)]
struct StatusFields {
    #[serde(default)]
    status: String,
}

/// Runs one action on a review and goes back to its page with a message.
async fn act(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<WorkReviews>,
    path: web::Path<(String, String)>,
    action: impl FnOnce(&AppContext, &Acting<'_>, RecordId) -> Result<String, ReviewError>
        + Send
        + 'static,
) -> Result<Reply, AppError> {
    let client = client(&request);
    let id = review_id(&path)?;
    web::block(move || -> Result<Reply, AppError> {
        let actor = access.session.user.actor();
        let acting = Acting {
            actor: &actor,
            client,
            tenant: access.tenant.id,
        };
        let message = action(&context, &acting, id)?;
        push_flash(&context, &access.session, FlashKind::Success, message)?;
        Ok(Reply::SeeOther(format!(
            "/t/{}/reviews/{id}",
            access.tenant.slug
        )))
    })
    .await?
}

async fn save_draft(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<WorkReviews>,
    path: web::Path<(String, String)>,
    form: Form<ReplyFields>,
) -> Result<Reply, AppError> {
    let text = form.into_inner().reply;
    act(
        request,
        context,
        access,
        path,
        move |context, acting, id| {
            crate::reviews::save_draft(context, acting, id, &text)?;
            Ok("Draft saved. Copy it to the platform, then mark the review replied.".to_owned())
        },
    )
    .await
}

async fn replied(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<WorkReviews>,
    path: web::Path<(String, String)>,
    form: Form<ReplyFields>,
) -> Result<Reply, AppError> {
    let text = form.into_inner().reply;
    act(
        request,
        context,
        access,
        path,
        move |context, acting, id| {
            crate::reviews::mark_replied(context, acting, id, &text)?;
            Ok("Marked replied, with the reply text you sent.".to_owned())
        },
    )
    .await
}

async fn status(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<WorkReviews>,
    path: web::Path<(String, String)>,
    form: Form<StatusFields>,
) -> Result<Reply, AppError> {
    let status = ReviewStatus::parse(form.status.trim())
        .ok_or_else(|| AppError::BadRequest("Status: choose new or ignored.".to_owned()))?;
    act(
        request,
        context,
        access,
        path,
        move |context, acting, id| {
            crate::reviews::set_status(context, acting, id, status)?;
            Ok(format!("The review is now {}.", status.as_str()))
        },
    )
    .await
}

async fn request_draft(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<WorkReviews>,
    path: web::Path<(String, String)>,
) -> Result<Reply, AppError> {
    act(request, context, access, path, |context, acting, id| {
        crate::reviews::request_draft(context, acting, id)?;
        Ok("A new draft is queued; this page shows it once it is written.".to_owned())
    })
    .await
}

pub struct TemplateField {
    pub rating: usize,
    pub name: String,
    pub text: String,
}

#[derive(Template)]
#[template(path = "reviews/settings.html")]
struct SettingsPage {
    chrome: Chrome,
    action: String,
    error: Option<String>,
    suggest: bool,
    formal: bool,
    style: String,
    support_contact: String,
    templates: Vec<TemplateField>,
}

fn settings_page(
    context: &AppContext,
    access: &TenantAccess<ManageReviewSettings>,
    settings: &ReviewSettings,
    error: Option<String>,
) -> Result<SettingsPage, AppError> {
    let action = settings_url(&access.tenant);
    Ok(SettingsPage {
        chrome: Chrome::for_session(
            context,
            &access.session,
            Some(&access.tenant),
            "Reply drafts",
            &action,
        )?,
        error,
        suggest: settings.mode == ReplyMode::Suggest,
        formal: settings.formality == Formality::Formal,
        style: settings.style.clone(),
        support_contact: settings.support_contact.clone(),
        templates: (1..=5u8)
            .map(|rating| TemplateField {
                rating: usize::from(rating),
                name: format!("template_{rating}"),
                text: settings.template(rating).to_owned(),
            })
            .collect(),
        action,
    })
}

fn settings_url(tenant: &Tenant) -> String {
    format!("/t/{}/settings/reviews", tenant.slug)
}

async fn settings(
    context: Data<AppContext>,
    access: TenantAccess<ManageReviewSettings>,
) -> Result<HttpResponse, AppError> {
    let page = web::block(move || -> Result<SettingsPage, AppError> {
        let settings = ReviewStore::new(context.store.clone()).settings(access.tenant.id)?;
        settings_page(&context, &access, &settings, None)
    })
    .await??;
    render(&page, StatusCode::OK)
}

#[derive(Deserialize)]
struct SettingsFields {
    #[serde(default)]
    mode: String,
    #[serde(default)]
    formality: String,
    #[serde(default)]
    style: String,
    #[serde(default)]
    support_contact: String,
    #[serde(default)]
    template_1: String,
    #[serde(default)]
    template_2: String,
    #[serde(default)]
    template_3: String,
    #[serde(default)]
    template_4: String,
    #[serde(default)]
    template_5: String,
}

impl SettingsFields {
    fn settings(self) -> Result<ReviewSettings, ReviewError> {
        let mode = match self.mode.trim() {
            "off" => ReplyMode::Off,
            "suggest" => ReplyMode::Suggest,
            _ => {
                return Err(ReviewError::Invalid(
                    "Mode: choose off or suggest.".to_owned(),
                ))
            }
        };
        let formality = match self.formality.trim() {
            "formal" => Formality::Formal,
            "friendly" => Formality::Friendly,
            _ => {
                return Err(ReviewError::Invalid(
                    "Tone: choose formal or friendly.".to_owned(),
                ))
            }
        };
        Ok(ReviewSettings {
            mode,
            formality,
            style: self.style.trim().to_owned(),
            support_contact: self.support_contact.trim().to_owned(),
            templates: [
                self.template_1,
                self.template_2,
                self.template_3,
                self.template_4,
                self.template_5,
            ]
            .map(|template| template.trim().to_owned())
            .to_vec(),
        })
    }
}

async fn save_settings(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ManageReviewSettings>,
    form: Form<SettingsFields>,
) -> Result<Reply, AppError> {
    let client = client(&request);
    let fields = form.into_inner();
    web::block(move || -> Result<Reply, AppError> {
        let actor = access.session.user.actor();
        let acting = Acting {
            actor: &actor,
            client,
            tenant: access.tenant.id,
        };
        let (shown, saved) = match fields.settings() {
            Ok(settings) => {
                let saved = crate::reviews::save_settings(&context, &acting, &settings);
                (settings, saved)
            }
            Err(error) => (
                ReviewStore::new(context.store.clone()).settings(access.tenant.id)?,
                Err(error),
            ),
        };
        match saved {
            Ok(()) => {
                push_flash(
                    &context,
                    &access.session,
                    FlashKind::Success,
                    "Reply-draft settings saved. New drafts use them.",
                )?;
                Ok(Reply::SeeOther(settings_url(&access.tenant)))
            }
            Err(ReviewError::Invalid(message)) => {
                let page = settings_page(
                    &context,
                    &access,
                    &shown,
                    Some(format!("The settings were not saved. {message}")),
                )?;
                Reply::page(&page, StatusCode::UNPROCESSABLE_ENTITY)
            }
            Err(other) => Err(other.into()),
        }
    })
    .await?
}

#[cfg(test)]
mod tests {
    use actix_web::ResponseError;

    use super::*;

    #[test]
    fn export_failures_that_are_not_the_users_are_server_errors() {
        let status = |error: ReviewError| AppError::from(error).status_code();
        assert_eq!(
            status(ReviewError::Export("io".to_owned())),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            status(ReviewError::Invalid(
                "Rating: choose 1 to 5 stars.".to_owned()
            )),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(status(ReviewError::Restricted), StatusCode::CONFLICT);
    }
}
