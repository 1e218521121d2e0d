//! The alerts pages: the inbox `/t/{tenant}/alerts` (the signed-in user's alerts, or every
//! alert for tenant admins, by state, with counts), one alert's page `/t/{tenant}/alerts/{id}`
//! with its history and its actions (`…/{id}/acknowledge`, `assign`, `snooze`, `resolve`,
//! `reopen`), all `TenantAccess<WorkAlerts>`; and the negative-review rule's settings
//! `/t/{tenant}/settings/alerts` (`TenantAccess<ManageAlertRules>`). Reads are audited as
//! `personal_data.read` before rendering; every action is audited by the domain function.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::web::{self, Data, Form, Query};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;
use chrono::Utc;
use serde::Deserialize;

use crate::alerts::{
    act, assignable_users, inbox, save_review_rule, visible_alert, Action, Alert, AlertError,
    AlertState, AlertStore, Change, InboxFilter, ReviewRule, SnoozeFor, Status, MAX_NOTE_CHARS,
    MAX_THRESHOLD,
};
use crate::auth::guard::policy::{ManageAlertRules, WorkAlerts};
use crate::auth::guard::{client_address, RequestSession, TenantAccess};
use crate::auth::session::FlashKind;
use crate::auth::Permission;
use crate::context::AppContext;
use crate::error::AppError;
use crate::ids::{AlertId, UserId};
use crate::tenants::Tenant;
use crate::web::pages::{audit_personal_read, format_time, push_flash, render, Chrome, Reply};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/t/{tenant}/alerts", web::get().to(list))
        .route("/t/{tenant}/alerts/{id}", web::get().to(show))
        .route("/t/{tenant}/alerts/{id}/{action}", web::post().to(change))
        .route("/t/{tenant}/settings/alerts", web::get().to(rules))
        .route("/t/{tenant}/settings/alerts", web::post().to(save_rules));
}

impl From<AlertError> for AppError {
    fn from(error: AlertError) -> Self {
        match error {
            AlertError::Store(store) => store.into(),
            AlertError::Audit(audit) => audit.into(),
            AlertError::Tenant(tenant) => tenant.into(),
            AlertError::User(user) => user.into(),
            AlertError::NotFound => Self::NotFound,
            AlertError::Refused(message) => Self::BadRequest(message),
        }
    }
}

fn inbox_url(tenant: &Tenant) -> String {
    format!("/t/{}/alerts", tenant.slug)
}

fn client(request: &HttpRequest) -> Option<String> {
    client_address(request).map(|address| address.to_string())
}

/// E-mail addresses of the tenant's users by id, for names on the pages.
fn user_labels(context: &AppContext, tenant: &Tenant) -> Result<HashMap<UserId, String>, AppError> {
    Ok(context
        .users
        .list(Some(tenant.id))?
        .into_iter()
        .map(|user| (user.id, user.email.to_string()))
        .collect())
}

fn label_of(labels: &HashMap<UserId, String>, id: UserId) -> String {
    labels
        .get(&id)
        .cloned()
        .unwrap_or_else(|| format!("removed user {id}"))
}

pub struct AlertRow {
    pub title: String,
    pub kind: &'static str,
    pub created: String,
    pub status: &'static str,
    pub assignee: String,
    pub url: String,
    pub subject_url: String,
}

pub struct StateTab {
    pub label: &'static str,
    pub href: String,
    pub count: usize,
    pub active: bool,
}

#[derive(Template)]
#[template(path = "alerts/inbox.html")]
struct InboxPage {
    chrome: Chrome,
    tabs: Vec<StateTab>,
    rows: Vec<AlertRow>,
    everyone: bool,
    can_see_all: bool,
    mine_href: String,
    all_href: String,
    scan_limit_reached: bool,
}

#[derive(Deserialize)]
struct InboxQuery {
    #[serde(default)]
    state: String,
    #[serde(default)]
    scope: String,
}

async fn list(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<WorkAlerts>,
    query: Query<InboxQuery>,
) -> Result<HttpResponse, AppError> {
    let client = client(&request);
    let query = query.into_inner();
    let page = web::block(move || -> Result<InboxPage, AppError> {
        let TenantAccess {
            session, tenant, ..
        } = access;
        let can_see_all = session.user.role.grants(Permission::ManageAlertRules);
        let everyone = can_see_all && query.scope == "all";
        // The inbox opens on the open alerts; `state=all` shows every state.
        let status = match query.state.as_str() {
            "" => Some(Status::Open),
            "all" => None,
            other => Some(
                Status::parse(other)
                    .ok_or_else(|| AppError::BadRequest("unknown alert state".to_owned()))?,
            ),
        };
        let found = inbox(
            &context,
            tenant.id,
            &session.user,
            InboxFilter { status, everyone },
        )?;
        audit_personal_read(
            &context,
            &session,
            &tenant,
            client,
            format!("alerts inbox ({} shown)", found.alerts.len()),
        )?;
        let base = inbox_url(&tenant);
        let scope = if everyone { "&scope=all" } else { "" };
        let mut tabs: Vec<StateTab> = Status::ALL
            .into_iter()
            .map(|each| StateTab {
                label: each.as_str(),
                href: format!("{base}?state={}{scope}", each.as_str()),
                count: found.counts.of(each),
                active: status == Some(each),
            })
            .collect();
        tabs.push(StateTab {
            label: "all",
            href: format!("{base}?state=all{scope}"),
            count: Status::ALL
                .into_iter()
                .map(|each| found.counts.of(each))
                .sum(),
            active: status.is_none(),
        });
        let state = query.state.clone();
        let labels = user_labels(&context, &tenant)?;
        let now = Utc::now();
        Ok(InboxPage {
            chrome: Chrome::for_session(&context, &session, Some(&tenant), "Alerts", &base)?,
            tabs,
            rows: found
                .alerts
                .into_iter()
                .map(|alert| AlertRow {
                    url: format!("{base}/{}", alert.id),
                    subject_url: alert.link.clone(),
                    title: alert.title.clone(),
                    kind: alert.kind.label(),
                    created: format_time(alert.created),
                    status: alert.status(now).as_str(),
                    assignee: alert
                        .assignee
                        .map(|id| label_of(&labels, id))
                        .unwrap_or_default(),
                })
                .collect(),
            everyone,
            can_see_all,
            mine_href: format!("{base}?state={state}"),
            all_href: format!("{base}?state={state}&scope=all"),
            scan_limit_reached: found.scan_limit_reached,
        })
    })
    .await??;
    render(&page, StatusCode::OK)
}

pub struct HistoryRow {
    pub at: String,
    pub who: String,
    pub what: String,
}

pub struct UserOption {
    pub id: String,
    pub email: String,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "alerts/show.html")]
struct AlertPage {
    chrome: Chrome,
    alert_title: String,
    kind: &'static str,
    status: &'static str,
    created: String,
    subject_url: String,
    recipients: String,
    assignee: String,
    snoozed_until: Option<String>,
    note: Option<String>,
    history: Vec<HistoryRow>,
    action_base: String,
    inbox: String,
    assignable: Vec<UserOption>,
    resolved: bool,
    acknowledged: bool,
    open: bool,
    error: Option<String>,
    typed_note: String,
    max_note: usize,
}

/// What the history table says of a change.
fn describe(change: &Change) -> String {
    match change {
        Change::Raised => "raised".to_owned(),
        Change::Acknowledged => "acknowledged".to_owned(),
        Change::Assigned { label, .. } => format!("assigned to {label}"),
        Change::Snoozed { until } => format!("snoozed until {}", format_time(*until)),
        Change::Resolved { note } => format!("resolved: {note}"),
        Change::Reopened => "reopened".to_owned(),
    }
}

/// One alert's page, its read audited. Blocking.
fn alert_page(
    context: &AppContext,
    session: &RequestSession,
    tenant: &Tenant,
    client: Option<String>,
    alert: Alert,
    error: Option<String>,
    typed_note: String,
) -> Result<AlertPage, AppError> {
    audit_personal_read(
        context,
        session,
        tenant,
        client,
        format!("alert {}", alert.id),
    )?;
    let base = inbox_url(tenant);
    let labels = user_labels(context, tenant)?;
    let now = Utc::now();
    let status = alert.status(now);
    let assignable = assignable_users(context, tenant.id)?
        .into_iter()
        .map(|user| UserOption {
            id: user.id.to_string(),
            email: user.email.to_string(),
            selected: alert.assignee == Some(user.id),
        })
        .collect();
    Ok(AlertPage {
        chrome: Chrome::for_session(context, session, Some(tenant), &alert.title, &base)?,
        kind: alert.kind.label(),
        status: status.as_str(),
        created: format_time(alert.created),
        subject_url: alert.link.clone(),
        recipients: alert
            .recipients
            .iter()
            .map(|id| label_of(&labels, *id))
            .collect::<Vec<_>>()
            .join(", "),
        assignee: alert
            .assignee
            .map(|id| label_of(&labels, id))
            .unwrap_or_default(),
        snoozed_until: match &alert.state {
            AlertState::Snoozed { until } if status == Status::Snoozed => Some(format_time(*until)),
            _ => None,
        },
        note: match &alert.state {
            AlertState::Resolved { note } => Some(note.clone()),
            _ => None,
        },
        history: alert
            .history
            .iter()
            .map(|entry| HistoryRow {
                at: format_time(entry.at),
                who: entry.actor.label.clone(),
                what: describe(&entry.change),
            })
            .collect(),
        action_base: format!("{base}/{}", alert.id),
        inbox: base,
        assignable,
        resolved: status == Status::Resolved,
        acknowledged: status == Status::Acknowledged,
        open: status == Status::Open,
        alert_title: alert.title,
        error,
        typed_note,
        max_note: MAX_NOTE_CHARS,
    })
}

fn parse_alert_id(text: &str) -> Result<AlertId, AppError> {
    text.parse().map_err(|_| AppError::NotFound)
}

async fn show(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<WorkAlerts>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let client = client(&request);
    let id = parse_alert_id(&path.1)?;
    let page = web::block(move || -> Result<AlertPage, AppError> {
        let alert = visible_alert(&context, access.tenant.id, &access.session.user, id)?;
        alert_page(
            &context,
            &access.session,
            &access.tenant,
            client,
            alert,
            None,
            String::new(),
        )
    })
    .await??;
    render(&page, StatusCode::OK)
}

#[derive(Deserialize)]
struct ActionFields {
    #[serde(default)]
    assignee: String,
    #[serde(default, rename = "for")]
    snooze_for: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    note: String,
}

/// The action a form asks for, with its fields checked. Blocking (an assignee is looked up).
fn action_of(
    context: &AppContext,
    tenant: &Tenant,
    name: &str,
    fields: &ActionFields,
) -> Result<Action, AlertError> {
    match name {
        "acknowledge" => Ok(Action::Acknowledge),
        "reopen" => Ok(Action::Reopen),
        "resolve" => Ok(Action::Resolve(fields.note.clone())),
        "snooze" => Ok(Action::Snooze(
            SnoozeFor::parse(&fields.snooze_for, &fields.until)?.end(Utc::now()),
        )),
        "assign" => {
            let chosen = fields.assignee.parse::<UserId>().ok();
            assignable_users(context, tenant.id)?
                .into_iter()
                .find(|user| Some(user.id) == chosen)
                .map(|user| Action::Assign(user.id, user.email.to_string()))
                .ok_or_else(|| {
                    AlertError::Refused(
                        "Assign: choose an active user of this tenant who works the alerts inbox."
                            .to_owned(),
                    )
                })
        }
        _ => Err(AlertError::NotFound),
    }
}

fn done_message(action: &Action) -> &'static str {
    match action {
        Action::Acknowledge => "Alert acknowledged.",
        Action::Assign(..) => "Alert assigned.",
        Action::Snooze(_) => "Alert snoozed; it shows as open again when the snooze ends.",
        Action::Resolve(_) => "Alert resolved.",
        Action::Reopen => "Alert reopened.",
    }
}

async fn change(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<WorkAlerts>,
    path: web::Path<(String, String, String)>,
    form: Form<ActionFields>,
) -> Result<Reply, AppError> {
    let client = client(&request);
    let (_, id, name) = path.into_inner();
    let id = parse_alert_id(&id)?;
    let fields = form.into_inner();
    web::block(move || -> Result<Reply, AppError> {
        let TenantAccess {
            session, tenant, ..
        } = access;
        let outcome = action_of(&context, &tenant, &name, &fields).and_then(|action| {
            act(
                &context,
                &session.user,
                client.clone(),
                tenant.id,
                id,
                &action,
            )
            .map(|_| action)
        });
        match outcome {
            Ok(action) => {
                push_flash(
                    &context,
                    &session,
                    FlashKind::Success,
                    done_message(&action),
                )?;
                Ok(Reply::SeeOther(format!("{}/{id}", inbox_url(&tenant))))
            }
            Err(AlertError::Refused(message)) => {
                // The alert page again, with the reason and what was typed.
                let alert = visible_alert(&context, tenant.id, &session.user, id)?;
                let page = alert_page(
                    &context,
                    &session,
                    &tenant,
                    client,
                    alert,
                    Some(message),
                    fields.note,
                )?;
                Reply::page(&page, StatusCode::UNPROCESSABLE_ENTITY)
            }
            Err(other) => Err(other.into()),
        }
    })
    .await?
}

pub struct RecipientOption {
    pub id: String,
    pub email: String,
    pub role: &'static str,
    pub chosen: bool,
}

#[derive(Template)]
#[template(path = "alerts/rules.html")]
struct RulesPage {
    chrome: Chrome,
    action: String,
    enabled: bool,
    max_rating: u8,
    thresholds: Vec<u8>,
    recipients: Vec<RecipientOption>,
    error: Option<String>,
}

fn rules_url(tenant: &Tenant) -> String {
    format!("/t/{}/settings/alerts", tenant.slug)
}

/// The rule settings page, showing `rule` (the stored one, or what was typed). Blocking.
fn rules_page(
    context: &AppContext,
    session: &RequestSession,
    tenant: &Tenant,
    rule: &ReviewRule,
    error: Option<String>,
) -> Result<RulesPage, AppError> {
    let action = rules_url(tenant);
    Ok(RulesPage {
        chrome: Chrome::for_session(context, session, Some(tenant), "Alert rules", &action)?,
        enabled: rule.enabled,
        max_rating: rule.max_rating,
        thresholds: (1..=MAX_THRESHOLD).collect(),
        recipients: assignable_users(context, tenant.id)?
            .into_iter()
            .map(|user| RecipientOption {
                id: user.id.to_string(),
                email: user.email.to_string(),
                role: user.role.label(),
                chosen: rule.recipients.contains(&user.id),
            })
            .collect(),
        action,
        error,
    })
}

async fn rules(
    context: Data<AppContext>,
    access: TenantAccess<ManageAlertRules>,
) -> Result<HttpResponse, AppError> {
    let page = web::block(move || -> Result<RulesPage, AppError> {
        let rule = AlertStore::new(context.store.clone()).review_rule(access.tenant.id)?;
        rules_page(&context, &access.session, &access.tenant, &rule, None)
    })
    .await??;
    render(&page, StatusCode::OK)
}

/// The form: `enabled` (a checkbox), `max_rating`, and one `recipient` field per chosen user.
fn rule_from_form(fields: &[(String, String)]) -> Result<ReviewRule, (ReviewRule, String)> {
    let mut rule = ReviewRule {
        enabled: false,
        max_rating: 2,
        recipients: Vec::new(),
    };
    let mut problem = None;
    for (name, value) in fields {
        match name.as_str() {
            "enabled" => rule.enabled = true,
            "max_rating" => match value.parse::<u8>() {
                Ok(rating) => rule.max_rating = rating,
                Err(_) => {
                    problem = Some(format!(
                        "Rating threshold: choose 1 to {MAX_THRESHOLD} stars."
                    ));
                }
            },
            "recipient" => match value.parse::<UserId>() {
                Ok(id) => rule.recipients.push(id),
                Err(_) => problem = Some("Recipients: an unknown user was chosen.".to_owned()),
            },
            _ => {}
        }
    }
    match problem {
        Some(message) => Err((rule, message)),
        None => Ok(rule),
    }
}

async fn save_rules(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ManageAlertRules>,
    form: Form<Vec<(String, String)>>,
) -> Result<Reply, AppError> {
    let client = client(&request);
    let fields = form.into_inner();
    web::block(move || -> Result<Reply, AppError> {
        let TenantAccess {
            session, tenant, ..
        } = access;
        let refused = |rule: &ReviewRule, message: String| -> Result<Reply, AppError> {
            let page = rules_page(&context, &session, &tenant, rule, Some(message))?;
            Reply::page(&page, StatusCode::UNPROCESSABLE_ENTITY)
        };
        let rule = match rule_from_form(&fields) {
            Ok(rule) => rule,
            Err((rule, message)) => return refused(&rule, message),
        };
        match save_review_rule(
            &context,
            &session.user.actor(),
            client,
            tenant.id,
            rule.clone(),
        ) {
            Ok(()) => {
                push_flash(
                    &context,
                    &session,
                    FlashKind::Success,
                    "Alert rule saved. It applies to reviews created from now on.",
                )?;
                Ok(Reply::SeeOther(rules_url(&tenant)))
            }
            Err(AlertError::Refused(message)) => refused(&rule, message),
            Err(other) => Err(other.into()),
        }
    })
    .await?
}
