//! The Feedback pages: `/t/{tenant}/feedback` (choose contacts, past batches), a batch's preview
//! and send progress at `/t/{tenant}/feedback/batches/{id}` with its CSV export and Send, and the
//! tenant admin's template at `/t/{tenant}/settings/feedback`.

use actix_web::http::{header, StatusCode};
use actix_web::web::{self, Data, Form};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use crate::auth::guard::policy::{ManageFeedbackSettings, SendFeedbackRequests};
use crate::auth::guard::{client_address, RequestSession, TenantAccess};
use crate::auth::session::FlashKind;
use crate::context::AppContext;
use crate::error::AppError;
use crate::feedback::{
    begin_send, export_csv, is_sending, prepare_batch, save_settings, send_batch,
    without_missing_contacts, FeedbackError, FeedbackSettings, FeedbackStore, MessageStatus,
    Progress, Selection, SkipCounts, WithheldReason, MAX_SCANNED, PLACEHOLDERS,
};
use crate::ids::{FeedbackBatchId, RecordId};
use crate::records::Order;
use crate::tenants::Tenant;
use crate::web::pages::{audit_personal_read, format_time, push_flash, render, Chrome, Reply};

/// Contacts and accounts offered as checkboxes, newest first.
const PICK_LIMIT: usize = 200;
const RECENT_BATCHES: usize = 20;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/t/{tenant}/feedback", web::get().to(show))
        .route("/t/{tenant}/feedback/batches", web::post().to(prepare))
        .route(
            "/t/{tenant}/feedback/batches/{id}",
            web::get().to(show_batch),
        )
        .route(
            "/t/{tenant}/feedback/batches/{id}/export",
            web::post().to(export),
        )
        .route(
            "/t/{tenant}/feedback/batches/{id}/send",
            web::post().to(send),
        )
        .route("/t/{tenant}/settings/feedback", web::get().to(settings))
        .route("/t/{tenant}/settings/feedback", web::post().to(save));
}

fn base(tenant: &Tenant) -> String {
    format!("/t/{}/feedback", tenant.slug)
}

fn client_of(request: &HttpRequest) -> Option<String> {
    client_address(request).map(|address| address.to_string())
}

pub struct Pick {
    pub id: String,
    pub label: String,
    pub detail: String,
}

pub struct BatchRow {
    pub url: String,
    pub created: String,
    pub created_by: String,
    pub selection: String,
    pub requests: usize,
    pub progress: Progress,
}

#[derive(Template)]
#[template(path = "feedback/home.html")]
struct HomePage {
    chrome: Chrome,
    base: String,
    contacts: Vec<Pick>,
    accounts: Vec<Pick>,
    batches: Vec<BatchRow>,
    smtp_on: bool,
    sending_enabled: bool,
    cooldown_days: u32,
    error: Option<String>,
}

/// The selection page, its contact list a read of personal data (audited). Blocking.
fn home(
    context: &AppContext,
    session: &RequestSession,
    tenant: &Tenant,
    client: Option<String>,
    error: Option<String>,
) -> Result<HomePage, AppError> {
    let base = base(tenant);
    let contacts = context
        .contacts
        .page(tenant.id, Order::NewestFirst, None, PICK_LIMIT, |_| true)?
        .items;
    let accounts = context
        .accounts
        .page(tenant.id, Order::NewestFirst, None, PICK_LIMIT, |_| true)?
        .items;
    audit_personal_read(
        context,
        session,
        tenant,
        client,
        format!(
            "feedback contact choice ({} contacts shown)",
            contacts.len()
        ),
    )?;
    let feedback = FeedbackStore::new(context.store.clone());
    let settings = feedback.settings(tenant.id)?;
    Ok(HomePage {
        chrome: Chrome::for_session(context, session, Some(tenant), "Feedback requests", &base)?,
        contacts: contacts
            .into_iter()
            .map(|contact| Pick {
                id: contact.id.to_string(),
                label: contact.record.name,
                detail: contact
                    .record
                    .email
                    .unwrap_or_else(|| "no e-mail address".to_owned()),
            })
            .collect(),
        accounts: accounts
            .into_iter()
            .map(|account| Pick {
                id: account.id.to_string(),
                label: account.record.name,
                detail: account.record.domain.unwrap_or_default(),
            })
            .collect(),
        batches: feedback
            .recent_batches(tenant.id, RECENT_BATCHES)?
            .into_iter()
            .map(|batch| BatchRow {
                url: format!("{base}/batches/{}", batch.id),
                created: format_time(batch.created_at),
                progress: batch.progress(),
                requests: batch.messages.len(),
                created_by: batch.created_by,
                selection: batch.selection,
            })
            .collect(),
        smtp_on: context.config.smtp.is_some(),
        sending_enabled: settings.sending_enabled,
        cooldown_days: settings.cooldown_days,
        error,
        base,
    })
}

async fn show(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<SendFeedbackRequests>,
) -> Result<HttpResponse, AppError> {
    let client = client_of(&request);
    let page =
        web::block(move || home(&context, &access.session, &access.tenant, client, None)).await??;
    render(&page, StatusCode::OK)
}

/// The selection from the form: `mode` plus repeated `contact` / `account` fields.
fn selection_from(body: &[u8]) -> Result<Selection, FeedbackError> {
    // Checkboxes repeat the field name, which only a list-of-pairs decoding keeps.
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_bytes(body).map_err(|_| FeedbackError::Invalid {
            field: "Form",
            message: "the form could not be read".to_owned(),
        })?;
    let field = |name: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.trim().to_owned())
            .unwrap_or_default()
    };
    let ids = |name: &str| -> Vec<RecordId> {
        pairs
            .iter()
            .filter(|(key, _)| key == name)
            .filter_map(|(_, value)| value.parse().ok())
            .collect()
    };
    match field("mode").as_str() {
        "resolved" => {
            let days = field("days").parse().map_err(|_| FeedbackError::Invalid {
                field: "Days",
                message: "give a whole number of days".to_owned(),
            })?;
            Ok(Selection::Resolved { days })
        }
        "accounts" => Ok(Selection::Accounts(ids("account"))),
        "contacts" => Ok(Selection::Contacts(ids("contact"))),
        _ => Err(FeedbackError::Invalid {
            field: "Who",
            message: "choose resolved interactions, accounts or contacts".to_owned(),
        }),
    }
}

async fn prepare(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<SendFeedbackRequests>,
    body: web::Bytes,
) -> Result<Reply, AppError> {
    let client = client_of(&request);
    web::block(move || -> Result<Reply, AppError> {
        let outcome = selection_from(&body).and_then(|selection| {
            prepare_batch(
                &context,
                &access.session.user.actor(),
                client.clone(),
                &access.tenant,
                &selection,
            )
        });
        match outcome {
            Ok(batch) => Ok(Reply::SeeOther(format!(
                "{}/batches/{}",
                base(&access.tenant),
                batch.id
            ))),
            Err(FeedbackError::Invalid { field, message }) => {
                let page = home(
                    &context,
                    &access.session,
                    &access.tenant,
                    client,
                    Some(format!("{field}: {message}")),
                )?;
                Reply::page(&page, StatusCode::UNPROCESSABLE_ENTITY)
            }
            Err(other) => Err(other.into()),
        }
    })
    .await?
}

pub struct MessageRow {
    pub to: String,
    pub subject: String,
    pub body: String,
    pub status: String,
}

#[derive(Template)]
#[template(path = "feedback/batch.html")]
struct BatchPage {
    chrome: Chrome,
    base: String,
    batch_url: String,
    created: String,
    created_by: String,
    selection: String,
    exported: Option<String>,
    rows: Vec<MessageRow>,
    skipped: SkipCounts,
    progress: Progress,
    sending: bool,
    smtp_on: bool,
    sending_enabled: bool,
    cooldown_days: u32,
    withheld_at_export: usize,
    /// The bound, when preparing the batch reached it.
    scan_limit: Option<usize>,
}

fn batch_id(path: &(String, String)) -> Result<FeedbackBatchId, AppError> {
    path.1.parse().map_err(|_| AppError::NotFound)
}

async fn show_batch(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<SendFeedbackRequests>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let client = client_of(&request);
    let id = batch_id(&path)?;
    let page = web::block(move || -> Result<BatchPage, AppError> {
        let tenant = &access.tenant;
        let feedback = FeedbackStore::new(context.store.clone());
        let batch = feedback.batch(tenant.id, id)?.ok_or(AppError::NotFound)?;
        // A message whose contact was deleted or erased since is shown emptied.
        let batch = without_missing_contacts(&context, tenant.id, batch)?;
        let settings = feedback.settings(tenant.id)?;
        audit_personal_read(
            &context,
            &access.session,
            tenant,
            client,
            format!(
                "feedback batch {id} ({} requests shown)",
                batch.messages.len()
            ),
        )?;
        let base = base(tenant);
        Ok(BatchPage {
            chrome: Chrome::for_session(
                &context,
                &access.session,
                Some(tenant),
                "Feedback batch",
                &base,
            )?,
            batch_url: format!("{base}/batches/{id}"),
            created: format_time(batch.created_at),
            created_by: batch.created_by.clone(),
            selection: batch.selection.clone(),
            exported: batch.exported_at.map(format_time),
            progress: batch.progress(),
            skipped: batch.skipped.clone(),
            withheld_at_export: batch.withheld_at_export,
            scan_limit: batch.scan_limit_reached.then_some(MAX_SCANNED),
            rows: batch
                .messages
                .into_iter()
                .map(|message| MessageRow {
                    status: match message.status {
                        MessageStatus::Pending => "not sent".to_owned(),
                        MessageStatus::Sent { at } => format!("sent {}", format_time(at)),
                        MessageStatus::Failed { failure, at } => {
                            format!("failed {}: {}", format_time(at), failure.as_str())
                        }
                        MessageStatus::Withheld {
                            reason: WithheldReason::RestrictedOrAskedSince,
                            ..
                        } => "withheld (restricted or asked since)".to_owned(),
                        MessageStatus::Withheld {
                            reason: WithheldReason::ContactGone,
                            ..
                        } => "withheld (contact no longer exists)".to_owned(),
                        MessageStatus::Exported { at } => {
                            format!("exported as CSV {} (not sent by e-mail)", format_time(at))
                        }
                    },
                    to: message.to,
                    subject: message.subject,
                    body: message.body,
                })
                .collect(),
            sending: is_sending(id),
            smtp_on: context.config.smtp.is_some(),
            sending_enabled: settings.sending_enabled,
            cooldown_days: settings.cooldown_days,
            base,
        })
    })
    .await??;
    render(&page, StatusCode::OK)
}

async fn export(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<SendFeedbackRequests>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let client = client_of(&request);
    let id = batch_id(&path)?;
    let bytes = web::block(move || {
        export_csv(
            &context,
            &access.session.user.actor(),
            client,
            access.tenant.id,
            id,
        )
    })
    .await??;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"feedback-requests-{id}.csv\""),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(bytes))
}

async fn send(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<SendFeedbackRequests>,
    path: web::Path<(String, String)>,
) -> Result<Reply, AppError> {
    let client = client_of(&request);
    let id = batch_id(&path)?;
    let tenant = access.tenant.id;
    let actor = access.session.user.actor();
    let url = format!("{}/batches/{id}", base(&access.tenant));
    let checked = context.clone();
    let relay = web::block(move || begin_send(&checked, tenant, id)).await?;
    let relay = match relay {
        Ok(relay) => relay,
        Err(FeedbackError::Refused(message)) => {
            return Err(AppError::Conflict(format!("Nothing was sent: {message}.")))
        }
        Err(other) => return Err(other.into()),
    };
    let worker = context.clone();
    std::thread::Builder::new()
        .name("feedback-send".to_owned())
        .spawn(move || {
            if let Err(error) = send_batch(&worker, &actor, client.as_deref(), tenant, id, &relay) {
                tracing::error!(batch = %id, %error, "feedback send stopped");
            }
        })
        .map_err(|error| AppError::internal(&error))?;
    web::block(move || -> Result<Reply, AppError> {
        push_flash(
            &context,
            &access.session,
            FlashKind::Success,
            "Sending started. This page shows each request's outcome as it goes.",
        )?;
        Ok(Reply::SeeOther(url))
    })
    .await?
}

#[derive(Template)]
#[template(path = "feedback/settings.html")]
struct SettingsPage {
    chrome: Chrome,
    action: String,
    settings: FeedbackSettings,
    placeholders: String,
    error: Option<String>,
}

fn settings_page(
    context: &AppContext,
    session: &RequestSession,
    tenant: &Tenant,
    settings: FeedbackSettings,
    error: Option<String>,
) -> Result<SettingsPage, AppError> {
    let action = format!("/t/{}/settings/feedback", tenant.slug);
    Ok(SettingsPage {
        chrome: Chrome::for_session(context, session, Some(tenant), "Feedback template", &action)?,
        action,
        settings,
        placeholders: PLACEHOLDERS
            .iter()
            .map(|name| format!("{{{name}}}"))
            .collect::<Vec<_>>()
            .join(" "),
        error,
    })
}

async fn settings(
    context: Data<AppContext>,
    access: TenantAccess<ManageFeedbackSettings>,
) -> Result<HttpResponse, AppError> {
    let page = web::block(move || -> Result<SettingsPage, AppError> {
        let settings = FeedbackStore::new(context.store.clone()).settings(access.tenant.id)?;
        settings_page(&context, &access.session, &access.tenant, settings, None)
    })
    .await??;
    render(&page, StatusCode::OK)
}

#[derive(Deserialize)]
struct SettingsFields {
    #[serde(default)]
    subject: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    review_link: String,
    #[serde(default)]
    cooldown_days: String,
    /// The checkbox: present when ticked.
    #[serde(default)]
    sending_enabled: Option<String>,
}

async fn save(
    request: HttpRequest,
    context: Data<AppContext>,
    access: TenantAccess<ManageFeedbackSettings>,
    form: Form<SettingsFields>,
) -> Result<Reply, AppError> {
    let client = client_of(&request);
    let fields = form.into_inner();
    web::block(move || -> Result<Reply, AppError> {
        let typed_days = fields.cooldown_days.trim().parse::<u32>();
        let settings = FeedbackSettings {
            subject: fields.subject,
            body: fields.body,
            review_link: fields.review_link,
            cooldown_days: typed_days.clone().unwrap_or_default(),
            sending_enabled: fields.sending_enabled.is_some(),
        };
        let outcome = match typed_days {
            Ok(_) => save_settings(
                &context,
                &access.session.user.actor(),
                client,
                access.tenant.id,
                &settings,
            ),
            Err(_) => Err(FeedbackError::Invalid {
                field: "Waiting period",
                message: "give a whole number of days".to_owned(),
            }),
        };
        match outcome {
            Ok(()) => {
                push_flash(
                    &context,
                    &access.session,
                    FlashKind::Success,
                    "Feedback template saved. New batches use it.",
                )?;
                Ok(Reply::SeeOther(format!(
                    "/t/{}/settings/feedback",
                    access.tenant.slug
                )))
            }
            Err(FeedbackError::Invalid { field, message }) => {
                let page = settings_page(
                    &context,
                    &access.session,
                    &access.tenant,
                    settings,
                    Some(format!("{field}: {message}")),
                )?;
                Reply::page(&page, StatusCode::UNPROCESSABLE_ENTITY)
            }
            Err(other) => Err(other.into()),
        }
    })
    .await?
}

impl From<FeedbackError> for AppError {
    fn from(error: FeedbackError) -> Self {
        match error {
            FeedbackError::Store(store) => store.into(),
            FeedbackError::Audit(audit) => audit.into(),
            FeedbackError::NotFound => Self::NotFound,
            FeedbackError::Invalid { field, message } => {
                Self::BadRequest(format!("{field}: {message}"))
            }
            FeedbackError::Refused(message) => {
                Self::Conflict(format!("Nothing was done: {message}."))
            }
        }
    }
}
