//! The lead pages: the inbox `/t/{tenant}/leads` (filters, sort, pages, CSV exports), the lead
//! page `/t/{tenant}/leads/{id}` (facts with their quotes, status, assignee), the Mark as lead /
//! Unmark actions of the interaction page (all `WorkLeads`), and the tenant admin's CRM webhook
//! settings and delivery log under `/t/{tenant}/settings/crm` (`ManageIntegrations`). Every page
//! that shows leads records a read of personal data; every change is audited by the domain
//! functions.

use std::collections::HashMap;

use actix_web::http::{header, StatusCode};
use actix_web::web::{self, Data, Form, Query};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;
use secrecy::ExposeSecret as _;
use serde::Deserialize;

use crate::analysis::lead::FACT_NAMES;
use crate::audit::{AuditAction, AuditEvent};
use crate::auth::guard::policy::{ManageIntegrations, WorkLeads};
use crate::auth::guard::{client_address, RequestSession, TenantAccess};
use crate::auth::session::FlashKind;
use crate::context::AppContext;
use crate::error::AppError;
use crate::ids::{RecordId, UserId};
use crate::leads::crm::{export, CrmFormat};
use crate::leads::store::LeadStore;
use crate::leads::webhook::{self, CrmSettings, PAYLOAD_FIELDS};
use crate::leads::{
    assign, assignable_users, inbox, lead, mark, set_status, unmark, Lead, LeadError, LeadFilter,
    LeadSort, LeadStatus,
};
use crate::tenants::Tenant;
use crate::web::pages::{audit_personal_read, format_time, push_flash, render, Chrome, Reply};

/// Leads per inbox page.
pub const LEADS_PER_PAGE: usize = 50;
/// Deliveries the log page shows, newest first (the page says how many there are in all).
const DELIVERIES_SHOWN: usize = 200;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/t/{tenant}/leads", web::get().to(list))
        .route(
            "/t/{tenant}/leads/export/{format}",
            web::post().to(download),
        )
        .route("/t/{tenant}/leads/{id}", web::get().to(show))
        .route(
            "/t/{tenant}/leads/{id}/status",
            web::post().to(change_status),
        )
        .route(
            "/t/{tenant}/leads/{id}/assign",
            web::post().to(change_assignee),
        )
        .route(
            "/t/{tenant}/interactions/{id}/mark-lead",
            web::post().to(mark_lead),
        )
        .route(
            "/t/{tenant}/interactions/{id}/unmark-lead",
            web::post().to(unmark_lead),
        )
        .route("/t/{tenant}/settings/crm", web::get().to(crm_settings))
        .route(
            "/t/{tenant}/settings/crm",
            web::post().to(save_crm_settings),
        )
        .route(
            "/t/{tenant}/settings/crm/secret",
            web::post().to(new_secret),
        )
        .route(
            "/t/{tenant}/settings/crm/deliveries",
            web::get().to(deliveries),
        )
        .route(
            "/t/{tenant}/settings/crm/deliveries/{number}/send-again",
            web::post().to(send_again),
        );
}

fn client(request: &HttpRequest) -> Option<String> {
    client_address(request).map(|address| address.to_string())
}

pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

pub struct LeadRow {
    pub url: String,
    pub visitor: String,
    pub intent: String,
    pub budget: String,
    pub company_size: String,
    pub timeline: String,
    pub current_solution: String,
    pub score: String,
    pub status: &'static str,
    pub assignee: String,
    pub time: String,
}

fn or_dash(value: Option<String>) -> String {
    value.unwrap_or_else(|| "—".to_owned())
}

fn visitor_label(lead: &Lead) -> String {
    let visitor = lead.visitor();
    match (visitor.name, visitor.email) {
        (Some(name), Some(email)) => format!("{name} <{email}>"),
        (Some(one), None) | (None, Some(one)) => one,
        (None, None) => lead
            .interaction
            .record
            .account
            .clone()
            .unwrap_or_else(|| "(unknown visitor)".to_owned()),
    }
}

fn intent_label(lead: &Lead) -> String {
    match (lead.intent_group(), lead.intent()) {
        (Some(group), Some(label)) => format!("{group} · {}", label.replace('_', " ")),
        _ => "not analysed yet".to_owned(),
    }
}

fn row(base: &str, lead: &Lead, users: &HashMap<UserId, String>) -> LeadRow {
    let facts = lead.qualification.as_ref().map(|found| &found.facts);
    LeadRow {
        url: format!("{base}/leads/{}", lead.id()),
        visitor: visitor_label(lead),
        intent: intent_label(lead),
        budget: or_dash(facts.and_then(|facts| facts.budget.clone())),
        company_size: or_dash(
            facts
                .and_then(|facts| facts.company_size)
                .map(|size| size.to_string()),
        ),
        timeline: or_dash(facts.map(|facts| facts.timeline.replace('_', " "))),
        current_solution: or_dash(facts.and_then(|facts| facts.current_solution.clone())),
        score: or_dash(lead.score().map(|score| score.to_string())),
        status: lead.state.status.as_str(),
        assignee: or_dash(
            lead.state
                .assignee
                .and_then(|user| users.get(&user).cloned()),
        ),
        time: format_time(lead.time()),
    }
}

fn user_names(context: &AppContext, tenant: &Tenant) -> Result<HashMap<UserId, String>, AppError> {
    Ok(assignable_users(context, tenant.id)?
        .into_iter()
        .map(|user| (user.id, user.email.to_string()))
        .collect())
}

#[derive(Template)]
#[template(path = "leads/inbox.html")]
struct InboxPage {
    chrome: Chrome,
    base: String,
    rows: Vec<LeadRow>,
    matching: usize,
    page: usize,
    pages: usize,
    statuses: Vec<Choice>,
    assignees: Vec<Choice>,
    intents: Vec<Choice>,
    sorts: Vec<Choice>,
    previous_url: Option<String>,
    next_url: Option<String>,
    scan_limit: Option<usize>,
}

#[derive(Deserialize, Default)]
struct InboxQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    assignee: String,
    #[serde(default)]
    intent: String,
    #[serde(default)]
    sort: String,
    #[serde(default)]
    page: Option<usize>,
}

fn choices(options: &[(String, String)], chosen: &str) -> Vec<Choice> {
    options
        .iter()
        .map(|(value, label)| Choice {
            value: value.clone(),
            label: label.clone(),
            selected: value == chosen,
        })
        .collect()
}

async fn list(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<WorkLeads>,
    query: Query<InboxQuery>,
) -> Result<HttpResponse, AppError> {
    let client = client(&request);
    let query = query.into_inner();
    let page = web::block(move || -> Result<InboxPage, AppError> {
        let tenant = &access.tenant;
        let base = format!("/t/{}", tenant.slug);
        let users = user_names(&context, tenant)?;
        let filter = LeadFilter {
            status: LeadStatus::parse(&query.status),
            assignee: match query.assignee.as_str() {
                "" => None,
                "none" => Some(None),
                other => Some(Some(other.parse().map_err(|_| {
                    AppError::BadRequest("Assignee: not a user of this tenant".to_owned())
                })?)),
            },
            intent: (!query.intent.is_empty()).then(|| query.intent.clone()),
        };
        let sort = LeadSort::parse(&query.sort);
        let found = inbox(
            &context,
            tenant.id,
            &filter,
            sort,
            query.page.unwrap_or(1),
            LEADS_PER_PAGE,
        )?;
        audit_personal_read(
            &context,
            &access.session,
            tenant,
            client,
            format!("leads inbox ({} shown)", found.leads.len()),
        )?;
        let link = |page: usize| {
            let mut url = format!("{base}/leads?page={page}&sort={}", sort.as_str());
            for (name, value) in [
                ("status", &query.status),
                ("assignee", &query.assignee),
                ("intent", &query.intent),
            ] {
                if !value.is_empty() {
                    url.push('&');
                    url.push_str(name);
                    url.push('=');
                    url.push_str(&urlencode(value));
                }
            }
            url
        };
        let (status_options, assignee_options, intent_options, sort_options) =
            filter_options(&users);
        Ok(InboxPage {
            chrome: Chrome::for_session(
                &context,
                &access.session,
                Some(tenant),
                "Leads",
                &format!("{base}/leads"),
            )?,
            rows: found
                .leads
                .iter()
                .map(|lead| row(&base, lead, &users))
                .collect(),
            matching: found.matching,
            page: found.page,
            pages: found.pages,
            statuses: choices(&status_options, &query.status),
            assignees: choices(&assignee_options, &query.assignee),
            intents: choices(&intent_options, &query.intent),
            sorts: choices(&sort_options, sort.as_str()),
            previous_url: (found.page > 1).then(|| link(found.page - 1)),
            next_url: (found.page < found.pages).then(|| link(found.page + 1)),
            scan_limit: found.limit_reached.then_some(crate::leads::MAX_SCANNED),
            base,
        })
    })
    .await??;
    render(&page, StatusCode::OK)
}

/// The choices of the inbox's filter and sort menus: status, assignee, intent, sort.
#[allow(clippy::type_complexity)]
fn filter_options(
    users: &HashMap<UserId, String>,
) -> (
    Vec<(String, String)>,
    Vec<(String, String)>,
    Vec<(String, String)>,
    Vec<(String, String)>,
) {
    let mut assignee_options = vec![
        (String::new(), "anyone".to_owned()),
        ("none".to_owned(), "nobody".to_owned()),
    ];
    let mut sorted_users: Vec<(&UserId, &String)> = users.iter().collect();
    sorted_users.sort_by(|a, b| a.1.cmp(b.1));
    assignee_options.extend(
        sorted_users
            .into_iter()
            .map(|(id, email)| (id.to_string(), email.clone())),
    );
    let mut intent_options = vec![(String::new(), "any intent".to_owned())];
    for group in ["buying", "browsing", "support"] {
        intent_options.push((group.to_owned(), group.to_owned()));
    }
    for label in crate::analysis::lead::INTENT_LABELS {
        intent_options.push((label.to_owned(), format!("… {}", label.replace('_', " "))));
    }
    let mut status_options = vec![(String::new(), "any status".to_owned())];
    status_options.extend(
        LeadStatus::ALL
            .iter()
            .map(|status| (status.as_str().to_owned(), status.as_str().to_owned())),
    );
    let sort_options: Vec<(String, String)> = [
        (LeadSort::ScoreDescending, "score, highest first"),
        (LeadSort::ScoreAscending, "score, lowest first"),
        (LeadSort::NewestFirst, "time, newest first"),
        (LeadSort::OldestFirst, "time, oldest first"),
    ]
    .iter()
    .map(|(sort, label)| (sort.as_str().to_owned(), (*label).to_owned()))
    .collect();
    (
        status_options,
        assignee_options,
        intent_options,
        sort_options,
    )
}

fn urlencode(value: &str) -> String {
    serde_urlencoded::to_string([("v", value)])
        .map(|encoded| encoded.trim_start_matches("v=").to_owned())
        .unwrap_or_default()
}

pub struct FactRow {
    pub name: &'static str,
    pub value: String,
    pub quote: Option<String>,
    pub message_url: Option<String>,
}

#[derive(Template)]
#[template(path = "leads/show.html")]
struct ShowPage {
    chrome: Chrome,
    base: String,
    id: String,
    visitor: String,
    company: String,
    intent: String,
    confidence: String,
    score: String,
    stale: bool,
    analysed: bool,
    facts: Vec<FactRow>,
    status: &'static str,
    statuses: Vec<Choice>,
    assignees: Vec<Choice>,
    interaction_url: String,
}

async fn show(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<WorkLeads>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let client = client(&request);
    let id: RecordId = path.1.parse().map_err(|_| AppError::NotFound)?;
    let page = web::block(move || -> Result<ShowPage, AppError> {
        let tenant = &access.tenant;
        let base = format!("/t/{}", tenant.slug);
        let found = lead(&context, tenant.id, id)?;
        let users = user_names(&context, tenant)?;
        audit_personal_read(
            &context,
            &access.session,
            tenant,
            client,
            format!("lead {id}"),
        )?;
        let interaction_url = format!("{base}/interactions/{id}");
        let qualification = found.qualification.as_ref();
        let facts = qualification
            .map(|qualification| {
                FACT_NAMES
                    .iter()
                    .map(|name| {
                        let facts = &qualification.facts;
                        let value = match *name {
                            "budget" => facts.budget.clone(),
                            "company_size" => {
                                facts.company_size.map(|size| format!("{size} people"))
                            }
                            "timeline" => Some(facts.timeline.replace('_', " ")),
                            _ => facts.current_solution.clone(),
                        };
                        let evidence = qualification.evidence_for(name);
                        FactRow {
                            name: match *name {
                                "budget" => "Budget",
                                "company_size" => "Company size",
                                "timeline" => "Timeline",
                                _ => "Current solution",
                            },
                            value: value.unwrap_or_else(|| "not stated".to_owned()),
                            quote: evidence.map(|evidence| evidence.quote.clone()),
                            message_url: evidence.map(|evidence| {
                                format!("{interaction_url}#message-{}", evidence.message + 1)
                            }),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut assignee_options = vec![(String::new(), "nobody".to_owned())];
        assignee_options.extend(
            users
                .iter()
                .map(|(id, email)| (id.to_string(), email.clone())),
        );
        let chosen = found
            .state
            .assignee
            .map(|user| user.to_string())
            .unwrap_or_default();
        Ok(ShowPage {
            chrome: Chrome::for_session(
                &context,
                &access.session,
                Some(tenant),
                "Lead",
                &format!("{base}/leads"),
            )?,
            id: id.to_string(),
            visitor: visitor_label(&found),
            company: or_dash(found.company()),
            intent: intent_label(&found),
            confidence: qualification
                .map(|qualification| format!("{:.0} %", qualification.intent.confidence * 100.0))
                .unwrap_or_default(),
            score: or_dash(found.score().map(|score| score.to_string())),
            stale: found.stale,
            analysed: qualification.is_some(),
            facts,
            status: found.state.status.as_str(),
            statuses: choices(
                &LeadStatus::ALL
                    .iter()
                    .map(|status| (status.as_str().to_owned(), status.as_str().to_owned()))
                    .collect::<Vec<_>>(),
                found.state.status.as_str(),
            ),
            assignees: choices(&assignee_options, &chosen),
            interaction_url,
            base,
        })
    })
    .await??;
    render(&page, StatusCode::OK)
}

#[derive(Deserialize)]
struct StatusFields {
    #[serde(default)]
    status: String,
}

async fn change_status(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<WorkLeads>,
    path: web::Path<(String, String)>,
    form: Form<StatusFields>,
) -> Result<Reply, AppError> {
    let client = client(&request);
    let id: RecordId = path.1.parse().map_err(|_| AppError::NotFound)?;
    let status = LeadStatus::parse(&form.status).ok_or_else(|| {
        AppError::BadRequest("Status: choose new, contacted, qualified or disqualified".to_owned())
    })?;
    web::block(move || -> Result<Reply, AppError> {
        set_status(
            &context,
            &access.session.user.actor(),
            client,
            access.tenant.id,
            id,
            status,
        )?;
        push_flash(
            &context,
            &access.session,
            FlashKind::Success,
            format!("Status set to {}.", status.as_str()),
        )?;
        Ok(Reply::SeeOther(format!(
            "/t/{}/leads/{id}",
            access.tenant.slug
        )))
    })
    .await?
}

#[derive(Deserialize)]
struct AssigneeFields {
    #[serde(default)]
    assignee: String,
}

async fn change_assignee(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<WorkLeads>,
    path: web::Path<(String, String)>,
    form: Form<AssigneeFields>,
) -> Result<Reply, AppError> {
    let client = client(&request);
    let id: RecordId = path.1.parse().map_err(|_| AppError::NotFound)?;
    let assignee: Option<UserId> = match form.assignee.trim() {
        "" => None,
        other => Some(other.parse().map_err(|_| {
            AppError::BadRequest(
                "Assignee: choose a user of this tenant who works leads".to_owned(),
            )
        })?),
    };
    web::block(move || -> Result<Reply, AppError> {
        assign(
            &context,
            &access.session.user.actor(),
            client,
            access.tenant.id,
            id,
            assignee,
        )?;
        push_flash(
            &context,
            &access.session,
            FlashKind::Success,
            "Assignee saved.",
        )?;
        Ok(Reply::SeeOther(format!(
            "/t/{}/leads/{id}",
            access.tenant.slug
        )))
    })
    .await?
}

async fn mark_lead(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<WorkLeads>,
    path: web::Path<(String, String)>,
) -> Result<Reply, AppError> {
    set_mark(request, context, access, path, true).await
}

async fn unmark_lead(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<WorkLeads>,
    path: web::Path<(String, String)>,
) -> Result<Reply, AppError> {
    set_mark(request, context, access, path, false).await
}

/// Marks an interaction as a lead (queuing its lead qualification) or takes the mark off, then
/// goes back to the interaction's page.
async fn set_mark(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<WorkLeads>,
    path: web::Path<(String, String)>,
    marked: bool,
) -> Result<Reply, AppError> {
    let client = client(&request);
    let id: RecordId = path.1.parse().map_err(|_| AppError::NotFound)?;
    web::block(move || -> Result<Reply, AppError> {
        let actor = access.session.user.actor();
        let message = if marked {
            mark(&context, &actor, client, access.tenant.id, id)?;
            "Marked as a lead; its lead qualification is queued."
        } else {
            unmark(&context, &actor, client, access.tenant.id, id)?;
            "No longer marked as a lead."
        };
        push_flash(&context, &access.session, FlashKind::Success, message)?;
        Ok(Reply::SeeOther(format!(
            "/t/{}/interactions/{id}",
            access.tenant.slug
        )))
    })
    .await?
}

/// The CSV download, a POST with the form's CSRF token (it is audited, so never a GET); how many
/// qualified leads were left out is in the `X-Rapport-Left-Out` header and in the message on the
/// next page.
async fn download(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<WorkLeads>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let client = client(&request);
    let format = CrmFormat::parse(path.1.trim_end_matches(".csv")).ok_or(AppError::NotFound)?;
    let exported = web::block(move || -> Result<_, AppError> {
        let exported = export(
            &context,
            &access.session.user.actor(),
            client,
            access.tenant.id,
            format,
        )?;
        push_flash(
            &context,
            &access.session,
            FlashKind::Success,
            format!(
                "Exported {} qualified lead(s) for {}; {} left out because the subject restricted or objected to processing.{}",
                exported.rows,
                format.as_str(),
                exported.left_out,
                if exported.limit_reached {
                    format!(" Limit reached: only the newest {} leads were read.", crate::leads::MAX_SCANNED)
                } else {
                    String::new()
                }
            ),
        )?;
        Ok(exported)
    })
    .await??;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/csv; charset=utf-8"))
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"leads-{}.csv\"", format.as_str()),
        ))
        .insert_header(("x-rapport-left-out", exported.left_out.to_string()))
        .insert_header(("x-rapport-rows", exported.rows.to_string()))
        .body(exported.csv))
}

pub struct FieldChoice {
    pub name: &'static str,
    pub label: &'static str,
    pub checked: bool,
}

#[derive(Template)]
#[template(path = "leads/crm.html")]
struct CrmPage {
    chrome: Chrome,
    base: String,
    url: String,
    enabled: bool,
    secret_set: bool,
    new_secret: Option<String>,
    fields: Vec<FieldChoice>,
    error: Option<String>,
}

fn crm_page(
    context: &AppContext,
    session: &RequestSession,
    tenant: &Tenant,
    settings: &CrmSettings,
    new_secret: Option<String>,
    error: Option<String>,
) -> Result<CrmPage, AppError> {
    let base = format!("/t/{}", tenant.slug);
    Ok(CrmPage {
        chrome: Chrome::for_session(
            context,
            session,
            Some(tenant),
            "CRM hand-off",
            &format!("{base}/settings/crm"),
        )?,
        url: settings.url.clone(),
        enabled: settings.enabled,
        secret_set: settings.secret.is_some(),
        new_secret,
        fields: PAYLOAD_FIELDS
            .iter()
            .map(|(name, label)| FieldChoice {
                name,
                label,
                checked: settings.fields.iter().any(|field| field == name),
            })
            .collect(),
        error,
        base,
    })
}

async fn crm_settings(
    context: Data<AppContext>,
    access: TenantAccess<ManageIntegrations>,
) -> Result<HttpResponse, AppError> {
    let page = web::block(move || -> Result<CrmPage, AppError> {
        let settings = LeadStore::new(context.store.clone()).settings(access.tenant.id)?;
        crm_page(
            &context,
            &access.session,
            &access.tenant,
            &settings,
            None,
            None,
        )
    })
    .await??;
    render(&page, StatusCode::OK)
}

fn audit_settings(
    context: &AppContext,
    session: &RequestSession,
    tenant: &Tenant,
    client: Option<String>,
    target: String,
) -> Result<(), AppError> {
    context.audit(
        AuditEvent::new(
            Some(tenant.id),
            session.user.actor(),
            AuditAction::CrmSettingsChanged,
            target,
        )
        .client(client),
    )?;
    Ok(())
}

async fn save_crm_settings(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ManageIntegrations>,
    form: Form<HashMap<String, String>>,
) -> Result<Reply, AppError> {
    let client = client(&request);
    let form = form.into_inner();
    web::block(move || -> Result<Reply, AppError> {
        let store = LeadStore::new(context.store.clone());
        let mut settings = store.settings(access.tenant.id)?;
        let typed_url = form.get("url").cloned().unwrap_or_default();
        let enabled = form.contains_key("enabled");
        let fields: Vec<String> = PAYLOAD_FIELDS
            .iter()
            .filter(|(name, _)| form.contains_key(&format!("field_{name}")))
            .map(|(name, _)| (*name).to_owned())
            .collect();
        let checked = if typed_url.trim().is_empty() && !enabled {
            Ok(String::new())
        } else {
            webhook::validate_url(
                &typed_url,
                context.config.integrations.allow_private_networks,
            )
        };
        let problem = match checked {
            Err(LeadError::Invalid { field, message }) => Some(format!("{field}: {message}")),
            Err(other) => return Err(other.into()),
            Ok(url) => {
                settings.url = url;
                None
            }
        };
        let problem = problem.or_else(|| {
            (enabled && settings.secret.is_none()).then(|| {
                "Secret: generate a signing secret before turning the webhook on".to_owned()
            })
        });
        settings.fields = fields;
        if let Some(problem) = problem {
            settings.url = typed_url;
            settings.enabled = enabled;
            let page = crm_page(
                &context,
                &access.session,
                &access.tenant,
                &settings,
                None,
                Some(problem),
            )?;
            return Reply::page(&page, StatusCode::UNPROCESSABLE_ENTITY);
        }
        settings.enabled = enabled;
        store.save_settings(access.tenant.id, &settings)?;
        audit_settings(
            &context,
            &access.session,
            &access.tenant,
            client,
            format!(
                "webhook {} to {}, fields: {}",
                if settings.enabled { "on" } else { "off" },
                webhook::host_of(&settings.url),
                settings.fields.join(" ")
            ),
        )?;
        push_flash(
            &context,
            &access.session,
            FlashKind::Success,
            "CRM hand-off saved.",
        )?;
        Ok(Reply::SeeOther(format!(
            "/t/{}/settings/crm",
            access.tenant.slug
        )))
    })
    .await?
}

/// Generates a new signing secret and shows it once, on this response only.
async fn new_secret(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ManageIntegrations>,
) -> Result<Reply, AppError> {
    let client = client(&request);
    web::block(move || -> Result<Reply, AppError> {
        let store = LeadStore::new(context.store.clone());
        let mut settings = store.settings(access.tenant.id)?;
        let secret = webhook::generate_secret();
        settings.secret = Some(secret.clone());
        store.save_settings(access.tenant.id, &settings)?;
        audit_settings(
            &context,
            &access.session,
            &access.tenant,
            client,
            "webhook signing secret generated".to_owned(),
        )?;
        let page = crm_page(
            &context,
            &access.session,
            &access.tenant,
            &settings,
            Some(secret.expose_secret().to_owned()),
            None,
        )?;
        Reply::page(&page, StatusCode::OK)
    })
    .await?
}

pub struct DeliveryRow {
    pub number: u64,
    pub lead_url: String,
    pub host: String,
    pub state: &'static str,
    pub attempts: Vec<String>,
    pub next_attempt: String,
    pub created: String,
    pub send_again_url: Option<String>,
}

#[derive(Template)]
#[template(path = "leads/deliveries.html")]
struct DeliveriesPage {
    chrome: Chrome,
    rows: Vec<DeliveryRow>,
    total: usize,
}

async fn deliveries(
    context: Data<AppContext>,
    access: TenantAccess<ManageIntegrations>,
) -> Result<HttpResponse, AppError> {
    let page = web::block(move || -> Result<DeliveriesPage, AppError> {
        let base = format!("/t/{}", access.tenant.slug);
        let (recent, total) = LeadStore::new(context.store.clone())
            .recent_deliveries(access.tenant.id, DELIVERIES_SHOWN)?;
        Ok(DeliveriesPage {
            chrome: Chrome::for_session(
                &context,
                &access.session,
                Some(&access.tenant),
                "CRM deliveries",
                &format!("{base}/settings/crm"),
            )?,
            rows: recent
                .into_iter()
                .map(|delivery| DeliveryRow {
                    number: delivery.number,
                    lead_url: format!("{base}/leads/{}", delivery.lead),
                    host: delivery.host.clone(),
                    state: delivery.state.as_str(),
                    attempts: delivery
                        .attempts
                        .iter()
                        .map(|attempt| format!("{}: {}", format_time(attempt.at), attempt.outcome))
                        .collect(),
                    next_attempt: delivery
                        .next_attempt
                        .map_or_else(|| "—".to_owned(), format_time),
                    created: format_time(delivery.created),
                    send_again_url: (delivery.state == webhook::DeliveryState::Failed).then(|| {
                        format!(
                            "{base}/settings/crm/deliveries/{}/send-again",
                            delivery.number
                        )
                    }),
                })
                .collect(),
            total,
        })
    })
    .await??;
    render(&page, StatusCode::OK)
}

async fn send_again(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ManageIntegrations>,
    path: web::Path<(String, u64)>,
) -> Result<Reply, AppError> {
    let client = client(&request);
    let number = path.1;
    web::block(move || -> Result<Reply, AppError> {
        webhook::send_again(
            &context,
            &access.session.user.actor(),
            client,
            access.tenant.id,
            number,
        )?;
        push_flash(
            &context,
            &access.session,
            FlashKind::Success,
            "The delivery is queued again.",
        )?;
        Ok(Reply::SeeOther(format!(
            "/t/{}/settings/crm/deliveries",
            access.tenant.slug
        )))
    })
    .await?
}

/// The interaction page's Mark as lead / Unmark button (label and URL), for roles that work
/// leads; none on a sales chat nobody marked, which is a lead without marking. Blocking.
pub fn lead_action(
    context: &AppContext,
    session: &RequestSession,
    tenant: crate::ids::TenantId,
    base: &str,
    interaction: &crate::interactions::Interaction,
) -> Result<Option<(&'static str, String)>, AppError> {
    if !session.user.role.grants(crate::auth::Permission::WorkLeads) {
        return Ok(None);
    }
    let id = interaction.id;
    let marked = LeadStore::new(context.store.clone())
        .state(tenant, id)?
        .marked;
    Ok(if marked {
        Some((
            "Unmark as lead",
            format!("{base}/interactions/{id}/unmark-lead"),
        ))
    } else if interaction.record.channel == crate::interactions::Channel::SalesChat {
        None
    } else {
        Some((
            "Mark as lead",
            format!("{base}/interactions/{id}/mark-lead"),
        ))
    })
}

impl From<LeadError> for AppError {
    fn from(error: LeadError) -> Self {
        match error {
            LeadError::Store(store) => store.into(),
            LeadError::Audit(audit) => audit.into(),
            LeadError::Analysis(analysis) => analysis.into(),
            LeadError::User(user) => user.into(),
            LeadError::NotFound => Self::NotFound,
            LeadError::Invalid { field, message } => {
                Self::BadRequest(format!("{field}: {message}"))
            }
        }
    }
}
