//! The accounts list, one account's page and the contacts list. All show personal data and
//! record the read in the audit log before rendering; the account page is one audited read,
//! whatever sections it shows. Also the account export (CSV, audited) and the briefing's
//! Regenerate action.
//!
//! The account page shows, in order: the account, its health, its open alerts, its briefing (see
//! [`crate::accounts::briefing`]; only read here, never written), the QA and sentiment of its
//! conversations, its contacts and its timeline.

use actix_web::http::StatusCode;
use actix_web::web::{self, Data, Query};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use crate::accounts::briefing::{self, Part};
use crate::accounts::query::{account_overview, TimelineEntry};
use crate::accounts::sections::{open_alerts, qa_sentiment};
use crate::accounts::{Account, Contact};
use crate::analysis::routes::ProvenanceView;
use crate::auth::guard::policy::{ExportAccounts, RequestAnalysis, ViewTenantData};
use crate::auth::guard::{client_address, TenantAccess};
use crate::auth::session::FlashKind;
use crate::auth::Permission;
use crate::context::AppContext;
use crate::error::AppError;
use crate::ids::RecordId;
use crate::interactions::routes::parse_cursor;
use crate::web::pages::{audit_personal_read, format_time, push_flash, render, Chrome};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/t/{tenant}/accounts", web::get().to(list))
        // The export path comes before `{id}`, which would match it too.
        .route("/t/{tenant}/accounts/export.csv", web::get().to(export_csv))
        .route("/t/{tenant}/accounts/{id}", web::get().to(show))
        .route(
            "/t/{tenant}/accounts/{id}/briefing",
            web::post().to(regenerate),
        )
        .route("/t/{tenant}/contacts", web::get().to(contacts));
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CursorQuery {
    pub cursor: String,
}

pub struct AccountRow {
    pub url: String,
    pub name: String,
    pub domain: String,
    pub plan: String,
    pub arr: String,
    pub renewal: String,
    pub owner: String,
}

fn account_row(base: &str, account: &Account) -> AccountRow {
    let record = &account.record;
    AccountRow {
        url: format!("{base}/accounts/{}", account.id),
        name: record.name.clone(),
        domain: record.domain.clone().unwrap_or_default(),
        plan: record.plan.clone().unwrap_or_default(),
        arr: record
            .arr
            .map(|arr| format!("{arr:.2}"))
            .unwrap_or_default(),
        renewal: record
            .renewal_date
            .map(|date| date.to_string())
            .unwrap_or_default(),
        owner: record.owner.clone().unwrap_or_default(),
    }
}

pub struct ContactRow {
    pub name: String,
    pub email: String,
    pub phone: String,
    pub job_title: String,
    pub account: String,
}

fn contact_row(contact: &Contact) -> ContactRow {
    let record = &contact.record;
    ContactRow {
        name: record.name.clone(),
        email: record.email.clone().unwrap_or_default(),
        phone: record.phone.clone().unwrap_or_default(),
        job_title: record.job_title.clone().unwrap_or_default(),
        account: record.account.clone().unwrap_or_default(),
    }
}

fn older_link(url: &str, next: Option<RecordId>) -> Option<String> {
    next.map(|cursor| format!("{url}?cursor={cursor}"))
}

#[derive(Template)]
#[template(path = "accounts/list.html")]
struct ListPage {
    chrome: Chrome,
    list_url: String,
    rows: Vec<AccountRow>,
    older: Option<String>,
    is_first_page: bool,
    /// The account export, for those who may export it.
    export_url: Option<String>,
}

async fn list(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ViewTenantData>,
    query: Query<CursorQuery>,
) -> Result<HttpResponse, AppError> {
    let client = client_address(&request).map(|address| address.to_string());
    let page = web::block(move || -> Result<ListPage, AppError> {
        let cursor = parse_cursor(&query.cursor)?;
        let found = context.accounts.newest_page(access.tenant.id, cursor)?;
        audit_personal_read(
            &context,
            &access.session,
            &access.tenant,
            client,
            "accounts list",
        )?;
        let base = format!("/t/{}", access.tenant.slug);
        let list_url = format!("{base}/accounts");
        Ok(ListPage {
            chrome: Chrome::for_session(
                &context,
                &access.session,
                Some(&access.tenant),
                "Accounts",
                &list_url,
            )?,
            rows: found.items.iter().map(|a| account_row(&base, a)).collect(),
            older: older_link(&list_url, found.next_cursor),
            is_first_page: cursor.is_none(),
            export_url: access
                .session
                .user
                .role
                .grants(Permission::ExportAccounts)
                .then(|| format!("{list_url}/export.csv")),
            list_url,
        })
    })
    .await??;
    render(&page, StatusCode::OK)
}

pub struct TimelineRow {
    pub kind: &'static str,
    pub time: String,
    pub text: String,
    pub url: Option<String>,
}

#[derive(Template)]
#[template(path = "accounts/show.html")]
struct ShowPage {
    chrome: Chrome,
    base: String,
    account: AccountRow,
    source: String,
    contacts: Vec<ContactRow>,
    timeline: Vec<TimelineRow>,
    truncated: bool,
    /// The account's health, from its stored snapshots (none before the first recompute).
    health: Option<crate::health::routes::HealthView>,
    alerts: Vec<AlertRow>,
    briefing: BriefingView,
    qa: QaView,
}

/// One open alert of the account.
pub struct AlertRow {
    pub url: String,
    pub kind: &'static str,
    pub title: String,
    pub status: &'static str,
    pub raised: String,
}

/// The briefing section.
pub struct BriefingView {
    /// The stored briefing's text and citations; empty when there is none yet.
    pub parts: Vec<Part>,
    pub exists: bool,
    pub provenance: String,
    /// Cited interactions (distinct).
    pub cited: usize,
    /// A job is queued or running for it.
    pub pending: bool,
    /// Newer data exists than the stored briefing read.
    pub outdated: bool,
    /// The Regenerate form's action, for those who may ask for it.
    pub regenerate_url: Option<String>,
}

/// One analysed conversation in the QA and sentiment section.
pub struct ConversationRow {
    pub url: String,
    pub subject: String,
    pub time: String,
    pub qa: String,
    pub sentiment: String,
}

/// The QA and sentiment section.
pub struct QaView {
    pub interactions: usize,
    /// `label: count`, by label.
    pub sentiment: Vec<(String, usize)>,
    pub scored: usize,
    pub mean_qa: String,
    pub latest: Vec<ConversationRow>,
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
        let overview =
            account_overview(&context, access.tenant.id, id)?.ok_or(AppError::NotFound)?;
        audit_personal_read(
            &context,
            &access.session,
            &access.tenant,
            client,
            format!("account {id}"),
        )?;
        let base = format!("/t/{}", access.tenant.slug);
        let timeline = overview
            .timeline
            .iter()
            .map(|entry| {
                let time = entry.time().map(format_time).unwrap_or_default();
                match entry {
                    TimelineEntry::Interaction(interaction) => TimelineRow {
                        kind: interaction.record.channel.as_str(),
                        time,
                        text: interaction
                            .record
                            .subject
                            .clone()
                            .unwrap_or_else(|| "(no subject)".to_owned()),
                        url: Some(format!("{base}/interactions/{}", interaction.id)),
                    },
                    TimelineEntry::Signal(signal) => TimelineRow {
                        kind: signal.record.signal.kind_str(),
                        time,
                        text: signal.record.signal.summary(),
                        url: None,
                    },
                }
            })
            .collect();
        let account = account_row(&base, &overview.account);
        let tenant = access.tenant.id;
        let health = crate::health::routes::account_health(&context, tenant, id)?;
        let alerts = open_alerts(&context, tenant, id, &overview.timeline)?
            .into_iter()
            .map(|alert| AlertRow {
                url: format!("{base}/alerts/{}", alert.id),
                kind: alert.kind.label(),
                title: alert.title.clone(),
                status: alert.status(chrono::Utc::now()).as_str(),
                raised: format_time(alert.created),
            })
            .collect();
        let briefing = briefing_view(&context, &access, &overview, &base)?;
        let qa = qa_view(
            &qa_sentiment(&context, tenant, &overview.account, &overview.timeline)?,
            &base,
        );
        Ok(ShowPage {
            health,
            alerts,
            briefing,
            qa,
            chrome: Chrome::for_session(
                &context,
                &access.session,
                Some(&access.tenant),
                &account.name,
                &format!("{base}/accounts"),
            )?,
            source: format!(
                "{} · {}",
                overview.account.record.source_system, overview.account.record.source_id
            ),
            account,
            contacts: overview.contacts.iter().map(contact_row).collect(),
            timeline,
            truncated: overview.truncated,
            base,
        })
    })
    .await??;
    render(&page, StatusCode::OK)
}

/// The briefing section: the stored briefing (never written here), whether one is being
/// prepared, and whether newer data exists than it read (its input's digest differs from that
/// of the page's interactions).
fn briefing_view(
    context: &AppContext,
    access: &TenantAccess<ViewTenantData>,
    overview: &crate::accounts::query::AccountOverview,
    base: &str,
) -> Result<BriefingView, AppError> {
    let tenant = access.tenant.id;
    let account = &overview.account;
    let stored = briefing::stored(context, tenant, account.id)?;
    let pending = briefing::pending(context, tenant, account.id)?;
    let interactions = overview.timeline.iter().filter_map(|entry| match entry {
        TimelineEntry::Interaction(interaction) => Some(interaction.as_ref()),
        TimelineEntry::Signal(_) => None,
    });
    let current = briefing::input_from(context, tenant, account, interactions)?;
    let regenerate_url = access
        .session
        .user
        .role
        .grants(Permission::RequestAnalysis)
        .then(|| format!("{base}/accounts/{}/briefing", account.id));
    Ok(match stored {
        Some((analysis, stored)) => BriefingView {
            parts: briefing::parts(&stored, base),
            exists: true,
            provenance: ProvenanceView::of(&analysis, analysis.provenance.interaction_version).line,
            cited: stored.cited.len(),
            pending,
            outdated: analysis.provenance.input_digest != current.digest,
            regenerate_url,
        },
        None => BriefingView {
            parts: Vec::new(),
            exists: false,
            provenance: String::new(),
            cited: 0,
            pending,
            outdated: false,
            regenerate_url,
        },
    })
}

fn qa_view(summary: &crate::accounts::sections::QaSentiment, base: &str) -> QaView {
    QaView {
        interactions: summary.interactions,
        sentiment: summary
            .sentiment
            .iter()
            .map(|(label, count)| (label.clone(), *count))
            .collect(),
        scored: summary.scored,
        mean_qa: summary.mean_qa.map_or_else(
            || "no QA scores yet".to_owned(),
            |mean| format!("{mean:.1}"),
        ),
        latest: summary
            .latest
            .iter()
            .map(|conversation| ConversationRow {
                url: format!("{base}/interactions/{}", conversation.interaction),
                subject: conversation
                    .subject
                    .clone()
                    .unwrap_or_else(|| "(no subject)".to_owned()),
                time: conversation.began.map(format_time).unwrap_or_default(),
                qa: match (conversation.auto_fail, conversation.qa) {
                    (true, _) => "0 (auto-fail)".to_owned(),
                    (false, Some(score)) => format!("{score:.1}"),
                    (false, None) => "—".to_owned(),
                },
                sentiment: conversation
                    .sentiment
                    .clone()
                    .unwrap_or_else(|| "—".to_owned()),
            })
            .collect(),
    }
}

/// The Regenerate button: queues the account's briefing ahead of backfills (audited), then back
/// to the account page, which says it is being prepared.
async fn regenerate(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<RequestAnalysis>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let client = client_address(&request).map(|address| address.to_string());
    let id: RecordId = path.1.parse().map_err(|_| AppError::NotFound)?;
    let target = format!("/t/{}/accounts/{id}", access.tenant.slug);
    web::block(move || -> Result<(), AppError> {
        match briefing::request(
            &context,
            &access.session.user.actor(),
            client,
            access.tenant.id,
            id,
        ) {
            Ok(()) => {}
            Err(crate::analysis::AnalysisError::NotFound(_)) => return Err(AppError::NotFound),
            Err(error) => return Err(error.into()),
        }
        push_flash(
            &context,
            &access.session,
            FlashKind::Success,
            "The briefing is being prepared; it appears here once the analysis queue reaches it.",
        )
    })
    .await??;
    Ok(HttpResponse::SeeOther()
        .insert_header((actix_web::http::header::LOCATION, target))
        .finish())
}

/// The account list with health and its reasons, as CSV. Audited.
async fn export_csv(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ExportAccounts>,
) -> Result<HttpResponse, AppError> {
    use crate::accounts::export::{export_accounts, ExportError};
    let client = client_address(&request).map(|address| address.to_string());
    let bytes = web::block(move || -> Result<Vec<u8>, AppError> {
        let base = format!("/t/{}", access.tenant.slug);
        match export_accounts(
            &context,
            &access.session.user.actor(),
            client,
            access.tenant.id,
            &base,
        ) {
            Ok(bytes) => Ok(bytes),
            Err(error @ ExportError::TooBroad) => Err(AppError::Conflict(format!("{error}."))),
            Err(ExportError::Store(error)) => Err(error.into()),
            Err(ExportError::Audit(error)) => Err(error.into()),
            Err(error @ ExportError::Write(_)) => Err(AppError::internal(&error)),
        }
    })
    .await??;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            "attachment; filename=\"accounts.csv\"",
        ))
        .body(bytes))
}

#[derive(Template)]
#[template(path = "accounts/contacts.html")]
struct ContactsPage {
    chrome: Chrome,
    rows: Vec<ContactRow>,
    older: Option<String>,
    list_url: String,
    is_first_page: bool,
}

async fn contacts(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ViewTenantData>,
    query: Query<CursorQuery>,
) -> Result<HttpResponse, AppError> {
    let client = client_address(&request).map(|address| address.to_string());
    let page = web::block(move || -> Result<ContactsPage, AppError> {
        let cursor = parse_cursor(&query.cursor)?;
        let found = context.contacts.newest_page(access.tenant.id, cursor)?;
        audit_personal_read(
            &context,
            &access.session,
            &access.tenant,
            client,
            "contacts list",
        )?;
        let list_url = format!("/t/{}/contacts", access.tenant.slug);
        Ok(ContactsPage {
            chrome: Chrome::for_session(
                &context,
                &access.session,
                Some(&access.tenant),
                "Contacts",
                &list_url,
            )?,
            rows: found.items.iter().map(contact_row).collect(),
            older: older_link(&list_url, found.next_cursor),
            is_first_page: cursor.is_none(),
            list_url,
        })
    })
    .await??;
    render(&page, StatusCode::OK)
}
