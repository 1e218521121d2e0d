//! The accounts list, one account's page (its contacts and timeline) and the contacts list. All
//! show personal data and record the read in the audit log before rendering.

use actix_web::http::StatusCode;
use actix_web::web::{self, Data, Query};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use crate::accounts::query::{account_overview, TimelineEntry};
use crate::accounts::{Account, Contact};
use crate::auth::guard::policy::ViewTenantData;
use crate::auth::guard::{client_address, TenantAccess};
use crate::context::AppContext;
use crate::error::AppError;
use crate::ids::RecordId;
use crate::interactions::routes::parse_cursor;
use crate::web::pages::{audit_personal_read, format_time, render, Chrome};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/t/{tenant}/accounts", web::get().to(list))
        .route("/t/{tenant}/accounts/{id}", web::get().to(show))
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
    /// Records examined per kind, when that bound cut the search short.
    search_limit: Option<usize>,
    /// The account's health, from its stored snapshots (none before the first recompute).
    health: Option<crate::health::routes::HealthView>,
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
        let health = crate::health::routes::account_health(&context, access.tenant.id, id)?;
        Ok(ShowPage {
            health,
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
            search_limit: overview
                .search_limited
                .then_some(crate::records::MAX_SCANNED_PER_PAGE),
            base,
        })
    })
    .await??;
    render(&page, StatusCode::OK)
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
