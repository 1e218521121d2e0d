//! The signals list, filtered by kind, each signal summarised on one line. It shows personal data
//! (reviewers, comments) and records the read in the audit log before rendering.

use actix_web::http::StatusCode;
use actix_web::web::{self, Data, Query};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use crate::auth::guard::policy::ViewTenantData;
use crate::auth::guard::{client_address, TenantAccess};
use crate::context::AppContext;
use crate::error::AppError;
use crate::interactions::routes::parse_cursor;
use crate::records::{Order, PAGE_SIZE};
use crate::signals::KINDS;
use crate::web::pages::{audit_personal_read, format_time, render, Chrome};

pub fn routes(config: &mut web::ServiceConfig) {
    config.route("/t/{tenant}/signals", web::get().to(list));
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SignalsQuery {
    kind: String,
    cursor: String,
}

pub struct SignalRow {
    pub kind: &'static str,
    pub time: String,
    pub account: String,
    pub summary: String,
    /// An active legal hold covers it.
    pub on_hold: bool,
}

#[derive(Template)]
#[template(path = "signals/list.html")]
struct ListPage {
    chrome: Chrome,
    list_url: String,
    kinds: Vec<&'static str>,
    kind: String,
    rows: Vec<SignalRow>,
    older: Option<String>,
    is_first_page: bool,
}

async fn list(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ViewTenantData>,
    query: Query<SignalsQuery>,
) -> Result<HttpResponse, AppError> {
    let client = client_address(&request).map(|address| address.to_string());
    let page = web::block(move || -> Result<ListPage, AppError> {
        let kind = query.kind.trim().to_owned();
        if !kind.is_empty() && !KINDS.contains(&kind.as_str()) {
            return Err(AppError::BadRequest(format!(
                "Unknown kind of signal (use one of: {}).",
                KINDS.join(", ")
            )));
        }
        let cursor = parse_cursor(&query.cursor)?;
        let found = context.signals.page(
            access.tenant.id,
            Order::NewestFirst,
            cursor,
            PAGE_SIZE,
            |record| kind.is_empty() || record.signal.kind_str() == kind,
        )?;
        audit_personal_read(
            &context,
            &access.session,
            &access.tenant,
            client,
            "signals list",
        )?;
        let holds = crate::retention::holds::ActiveHolds::load(
            &context,
            access.tenant.id,
            chrono::Utc::now(),
        )?;
        let list_url = format!("/t/{}/signals", access.tenant.slug);
        let older = found.next_cursor.map(|next| {
            let mut pairs = vec![("cursor", next.to_string())];
            if !kind.is_empty() {
                pairs.insert(0, ("kind", kind.clone()));
            }
            format!(
                "{list_url}?{}",
                serde_urlencoded::to_string(pairs).unwrap_or_default()
            )
        });
        Ok(ListPage {
            chrome: Chrome::for_session(
                &context,
                &access.session,
                Some(&access.tenant),
                "Signals",
                &list_url,
            )?,
            rows: found
                .items
                .iter()
                .map(|signal| SignalRow {
                    kind: signal.record.signal.kind_str(),
                    time: format_time(signal.record.occurred_at),
                    account: signal.record.account.clone().unwrap_or_default(),
                    summary: signal.record.signal.summary(),
                    on_hold: crate::retention::holds::signal_is_held(&holds, &signal.record),
                })
                .collect(),
            older,
            is_first_page: cursor.is_none(),
            kinds: KINDS.to_vec(),
            kind,
            list_url,
        })
    })
    .await??;
    render(&page, StatusCode::OK)
}
