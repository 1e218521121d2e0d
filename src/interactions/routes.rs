//! The interactions list (filters, cursor pagination) and one interaction's thread with its
//! analyses. Both show personal data and record the read in the audit log before rendering.

use actix_web::http::StatusCode;
use actix_web::web::{self, Data, Query};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use crate::analysis::routes::{panel, AnalysisPanel};
use crate::auth::guard::policy::ViewTenantData;
use crate::auth::guard::{client_address, TenantAccess};
use crate::context::AppContext;
use crate::error::AppError;
use crate::ids::RecordId;
use crate::interactions::query::{
    first_message_time, last_message_time, list_interactions, InteractionFilter, TextMatch,
};
use crate::interactions::{Channel, Interaction};
use crate::qa::routes::{scorecard_panel, segments, ScorecardPanel, Segment};
use crate::records::{MAX_SCANNED_PER_PAGE, PAGE_SIZE};
use crate::web::pages::{audit_personal_read, format_time, render, Chrome};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/t/{tenant}/interactions", web::get().to(list))
        .route("/t/{tenant}/interactions/{id}", web::get().to(show));
}

/// The list's query string as the GET form sends it: empty fields mean "any".
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ListQuery {
    pub channel: String,
    pub status: String,
    pub account: String,
    pub tag: String,
    pub from: String,
    pub to: String,
    pub cursor: String,
}

fn non_empty(value: &str) -> Option<String> {
    let trimmed = value.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

fn parse_date(field: &str, value: &str) -> Result<Option<chrono::NaiveDate>, AppError> {
    non_empty(value)
        .map(|text| {
            chrono::NaiveDate::parse_from_str(&text, "%Y-%m-%d").map_err(|_| {
                AppError::BadRequest(format!("The {field} date must look like 2026-10-31."))
            })
        })
        .transpose()
}

/// Parses a cursor (a record id) from a query string.
pub fn parse_cursor(value: &str) -> Result<Option<RecordId>, AppError> {
    non_empty(value)
        .map(|text| {
            text.parse::<RecordId>()
                .map_err(|_| AppError::BadRequest("The page cursor is not valid.".to_owned()))
        })
        .transpose()
}

/// Midnight UTC of `date`, and of the day after it.
fn day_start(date: chrono::NaiveDate) -> Option<chrono::DateTime<chrono::Utc>> {
    date.and_hms_opt(0, 0, 0).map(|time| time.and_utc())
}

impl ListQuery {
    /// The shared filter, as people use the form: texts ignore case, and the `from`/`to` dates
    /// both count, so the window runs from `from`'s midnight to the midnight after `to`.
    fn filter(&self) -> Result<InteractionFilter, AppError> {
        let to = parse_date("to", &self.to)?;
        Ok(InteractionFilter {
            channel: non_empty(&self.channel)
                .map(|text| text.parse::<Channel>())
                .transpose()
                .map_err(AppError::BadRequest)?,
            status: non_empty(&self.status),
            account: non_empty(&self.account),
            tag: non_empty(&self.tag),
            since: parse_date("from", &self.from)?.and_then(day_start),
            until: to.and_then(|to| to.succ_opt()).and_then(day_start),
            text_match: TextMatch::IgnoreCase,
        })
    }

    /// The query string of the next page: the same filters, another cursor.
    fn with_cursor(&self, cursor: RecordId) -> String {
        let pairs = [
            ("channel", self.channel.as_str()),
            ("status", self.status.as_str()),
            ("account", self.account.as_str()),
            ("tag", self.tag.as_str()),
            ("from", self.from.as_str()),
            ("to", self.to.as_str()),
        ];
        let mut kept: Vec<(&str, String)> = pairs
            .into_iter()
            .filter(|(_, value)| !value.trim().is_empty())
            .map(|(name, value)| (name, value.trim().to_owned()))
            .collect();
        kept.push(("cursor", cursor.to_string()));
        serde_urlencoded::to_string(kept).unwrap_or_default()
    }
}

pub struct InteractionRow {
    pub url: String,
    pub subject: String,
    pub channel: &'static str,
    pub account: String,
    pub status: String,
    pub messages: usize,
    pub first: String,
    pub last: String,
}

pub fn row(base: &str, interaction: &Interaction) -> InteractionRow {
    let record = &interaction.record;
    InteractionRow {
        url: format!("{base}/interactions/{}", interaction.id),
        subject: record
            .subject
            .clone()
            .unwrap_or_else(|| "(no subject)".to_owned()),
        channel: record.channel.as_str(),
        account: record.account.clone().unwrap_or_default(),
        status: record.status.clone().unwrap_or_default(),
        messages: record.messages.len(),
        first: first_message_time(record)
            .map(format_time)
            .unwrap_or_default(),
        last: last_message_time(record)
            .map(format_time)
            .unwrap_or_default(),
    }
}

#[derive(Template)]
#[template(path = "interactions/list.html")]
struct ListPage {
    chrome: Chrome,
    base: String,
    query: ListQuery,
    channels: Vec<&'static str>,
    rows: Vec<InteractionRow>,
    older: Option<String>,
    is_first_page: bool,
    filtered: bool,
    /// The page stopped after examining this many interactions without filling up.
    scan_limit: Option<usize>,
}

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
        let cursor = parse_cursor(&query.cursor)?;
        let found = list_interactions(
            &context.interactions,
            access.tenant.id,
            &filter,
            cursor,
            PAGE_SIZE,
        )?;
        audit_personal_read(
            &context,
            &access.session,
            &access.tenant,
            client,
            "interactions list",
        )?;
        let base = format!("/t/{}", access.tenant.slug);
        let list_url = format!("{base}/interactions");
        Ok(ListPage {
            chrome: Chrome::for_session(
                &context,
                &access.session,
                Some(&access.tenant),
                "Interactions",
                &list_url,
            )?,
            rows: found.items.iter().map(|item| row(&base, item)).collect(),
            older: found
                .next_cursor
                .map(|next| format!("{list_url}?{}", query.with_cursor(next))),
            is_first_page: cursor.is_none(),
            filtered: !filter.is_empty(),
            scan_limit: found.scan_limit_reached.then_some(MAX_SCANNED_PER_PAGE),
            channels: Channel::ALL
                .iter()
                .map(|channel| channel.as_str())
                .collect(),
            query,
            base,
        })
    })
    .await??;
    render(&page, StatusCode::OK)
}

pub struct MessageView {
    pub role: &'static str,
    pub role_class: &'static str,
    pub author: String,
    pub time: String,
    /// The text, split where QA evidence quotes it (marked segments).
    pub segments: Vec<Segment>,
    pub quoted: Option<String>,
    pub signature: Option<String>,
    /// The message's own sentiment, from a current (not stale) analysis.
    pub sentiment: Option<String>,
}

#[derive(Template)]
#[template(path = "interactions/show.html")]
struct ShowPage {
    chrome: Chrome,
    base: String,
    id: String,
    subject: String,
    source_system: String,
    source_id: String,
    channel: &'static str,
    status: String,
    account: String,
    tags: Vec<String>,
    ai_tool: String,
    attachments: Vec<String>,
    messages: Vec<MessageView>,
    analysis: AnalysisPanel,
    scorecard: Option<ScorecardPanel>,
    /// An active legal hold covers it (retention keeps it).
    on_hold: bool,
}

async fn show(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ViewTenantData>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let client = client_address(&request).map(|address| address.to_string());
    let id: RecordId = path.1.parse().map_err(|_| AppError::NotFound)?;
    let page = web::block(move || -> Result<ShowPage, AppError> {
        let interaction = context
            .interactions
            .get(access.tenant.id, id)?
            .ok_or(AppError::NotFound)?;
        let base = format!("/t/{}", access.tenant.slug);
        // The analyses are read with the thread, and this one entry records both reads.
        let mut analysis = panel(
            &context,
            &access.session,
            access.tenant.id,
            &base,
            &interaction,
        )?;
        let scorecard = scorecard_panel(
            &context,
            &access.session,
            access.tenant.id,
            &base,
            &interaction,
        )?;
        let no_highlights = Vec::new();
        let on_hold =
            crate::retention::holds::interaction_is_held(&context, access.tenant.id, &interaction)?;
        audit_personal_read(
            &context,
            &access.session,
            &access.tenant,
            client,
            format!("interaction {id}"),
        )?;
        let record = interaction.record;
        let subject = record.subject.unwrap_or_else(|| "(no subject)".to_owned());
        Ok(ShowPage {
            chrome: Chrome::for_session(
                &context,
                &access.session,
                Some(&access.tenant),
                &subject,
                &format!("{base}/interactions"),
            )?,
            id: id.to_string(),
            subject,
            source_system: record.source_system,
            source_id: record.source_id,
            channel: record.channel.as_str(),
            status: record.status.unwrap_or_default(),
            account: record.account.unwrap_or_default(),
            tags: record.tags,
            ai_tool: record.ai_tool.unwrap_or_default(),
            attachments: record.attachments,
            messages: record
                .messages
                .into_iter()
                .enumerate()
                .map(|(index, message)| MessageView {
                    role: message.role.label(),
                    role_class: message.role.css_class(),
                    author: message
                        .author_name
                        .or(message.author_email)
                        .unwrap_or_else(|| "(unknown author)".to_owned()),
                    time: format_time(message.sent_at),
                    segments: segments(
                        &message.text,
                        scorecard
                            .as_ref()
                            .and_then(|panel| panel.highlights.get(&index))
                            .unwrap_or(&no_highlights),
                    ),
                    quoted: message.quoted,
                    signature: message.signature,
                    sentiment: analysis.message_sentiments.remove(&index),
                })
                .collect(),
            analysis,
            scorecard,
            on_hold,
            base,
        })
    })
    .await??;
    render(&page, StatusCode::OK)
}
