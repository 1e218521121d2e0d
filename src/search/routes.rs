//! The search page: ranked interactions with the matching words highlighted.

use actix_web::http::StatusCode;
use actix_web::web::{self, Data, Query};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use crate::audit::{AuditAction, AuditEvent};
use crate::auth::guard::policy::ViewTenantData;
use crate::auth::guard::{client_address, TenantAccess};
use crate::context::AppContext;
use crate::error::AppError;
use crate::search::{self, Segment};
use crate::tenants::Tenant;
use crate::web::pages::{render, Chrome};

const RESULTS: usize = 20;
const MAX_QUERY_CHARS: usize = 200;

pub fn routes(config: &mut web::ServiceConfig) {
    config.route("/t/{tenant}/search", web::get().to(search_page));
}

#[derive(Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
}

pub struct ResultRow {
    pub url: String,
    pub subject: Vec<Segment>,
    pub channel: &'static str,
    pub snippet: Vec<Segment>,
    pub when: String,
}

#[derive(Template)]
#[template(path = "search/results.html")]
struct SearchPage {
    chrome: Chrome,
    tenant: Tenant,
    query: String,
    searched: bool,
    matched: usize,
    rows: Vec<ResultRow>,
}

async fn search_page(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ViewTenantData>,
    query: Query<SearchQuery>,
) -> Result<HttpResponse, AppError> {
    let client = client_address(&request).map(|ip| ip.to_string());
    let text: String = query.into_inner().q.chars().take(MAX_QUERY_CHARS).collect();
    let page = web::block(move || -> Result<SearchPage, AppError> {
        let tenant = access.tenant;
        let searched = !text.trim().is_empty();
        let (mut rows, mut matched) = (Vec::new(), 0);
        if searched {
            let results = search::find(&context, tenant.id, &text, RESULTS)?;
            matched = results.matched;
            // Results show message text and names: a read of personal data. The query itself is
            // not recorded (it may be a person's name).
            context.audit(
                AuditEvent::new(
                    Some(tenant.id),
                    access.session.user.actor(),
                    AuditAction::PersonalDataRead,
                    format!("search results ({} shown)", results.items.len()),
                )
                .client(client),
            )?;
            rows = results
                .items
                .into_iter()
                .map(|item| ResultRow {
                    url: format!("/t/{}/interactions/{}", tenant.slug, item.id),
                    subject: item.subject,
                    channel: item.channel.as_str(),
                    snippet: item.snippet,
                    when: item.when.format("%Y-%m-%d %H:%M").to_string(),
                })
                .collect();
        }
        Ok(SearchPage {
            chrome: Chrome::for_session(
                &context,
                &access.session,
                Some(&tenant),
                "Search",
                &format!("/t/{}/search", tenant.slug),
            )?,
            tenant,
            query: text,
            searched,
            matched,
            rows,
        })
    })
    .await??;
    render(&page, StatusCode::OK)
}
