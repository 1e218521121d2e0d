//! The access / portability package: everything [`find`](super::find) found about the subject,
//! in three forms built at once — one JSON document (machine-readable, all data), one CSV file
//! per data type (cells defused for spreadsheets), and a readable HTML page (askama, escaped).
//!
//! Rapport has no archive crate, so the package is not zipped: it is one sealed value in the
//! tenant's scope (`privacy_request_packages`, by request id), whose parts are downloaded
//! separately (`package.json`, `package.html`, `<type>.csv`). It expires 5 days after it is
//! built (or sooner when the tenant's retention policy keeps export packages for less): a download after that is refused with the expiry time, and the scheduler's daily run
//! deletes it ([`super::reminders`]). Every download is audited as `dsar.package_downloaded`.
//!
//! Audit entries go into the package without their actor and client address: those are the
//! staff's data, not the subject's.

use askama::Template;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::audit::{Actor, AuditAction, AuditEntry, AuditEvent};
use crate::context::AppContext;
use crate::csv_cell::defuse;
use crate::ids::{RequestId, TenantId};
use crate::privacy::requests::find::Found;
use crate::privacy::requests::store::RequestStore;
use crate::privacy::requests::{PackageSummary, PrivacyRequest, RequestError};

/// How long a package can be downloaded.
pub const EXPIRY_DAYS: i64 = 5;

/// A built package, sealed at rest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    pub request: RequestId,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// `(data type, count)`.
    pub counts: Vec<(String, usize)>,
    pub json: String,
    /// `(file name, CSV text)`, one per data type.
    pub csv: Vec<(String, String)>,
    pub html: String,
}

impl Package {
    pub fn summary(&self) -> PackageSummary {
        PackageSummary {
            created_at: self.created_at,
            expires_at: self.expires_at,
            counts: self.counts.clone(),
        }
    }

    /// The names of the parts, as downloaded.
    pub fn part_names(&self) -> Vec<String> {
        let mut names = vec!["package.json".to_owned(), "package.html".to_owned()];
        names.extend(self.csv.iter().map(|(name, _)| name.clone()));
        names
    }

    /// One part by name: `(content type, body)`.
    pub fn part(&self, name: &str) -> Option<(&'static str, &str)> {
        match name {
            "package.json" => Some(("application/json", self.json.as_str())),
            "package.html" => Some(("text/html; charset=utf-8", self.html.as_str())),
            _ => self
                .csv
                .iter()
                .find(|(file, _)| file == name)
                .map(|(_, text)| ("text/csv; charset=utf-8", text.as_str())),
        }
    }
}

/// An audit entry as the package shows it: without actor and client.
#[derive(Clone, Debug, Serialize)]
struct AuditItem<'a> {
    seq: u64,
    time: DateTime<Utc>,
    action: &'static str,
    target: &'a str,
    outcome: &'static str,
}

impl<'a> From<&'a AuditEntry> for AuditItem<'a> {
    fn from(entry: &'a AuditEntry) -> Self {
        Self {
            seq: entry.seq,
            time: entry.time,
            action: entry.event.action.as_str(),
            target: &entry.event.target,
            outcome: entry.event.outcome.as_str(),
        }
    }
}

fn package_error(what: &str, error: &dyn std::fmt::Display) -> RequestError {
    RequestError::Package(format!(
        "the package's {what} could not be written: {error}"
    ))
}

/// The JSON document: the request, the subject and every item found.
fn json_document(
    request: &PrivacyRequest,
    found: &Found,
    now: DateTime<Utc>,
) -> Result<String, RequestError> {
    let audit: Vec<AuditItem<'_>> = found.audit.iter().map(AuditItem::from).collect();
    let document = serde_json::json!({
        "format": "rapport-subject-access/1",
        "generated_at": now,
        "request": {
            "id": request.id,
            "kind": request.kind,
            "received_at": request.received_at,
        },
        "subject": request.subject,
        "contacts": found.contacts,
        "interactions": found.interactions,
        "interactions_mentioning": found.mentions,
        "signals": found.signals,
        "analyses": found.analyses,
        "search_index_entries": found.search_entries,
        "audit_entries": audit,
        "truncated": found.truncated,
    });
    serde_json::to_string_pretty(&document).map_err(|error| package_error("JSON", &error))
}

fn csv_text(
    header: &[&str],
    rows: impl IntoIterator<Item = Vec<String>>,
) -> Result<String, RequestError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer
        .write_record(header)
        .map_err(|error| package_error("CSV", &error))?;
    for row in rows {
        let row: Vec<String> = row.iter().map(|cell| defuse(cell)).collect();
        writer
            .write_record(&row)
            .map_err(|error| package_error("CSV", &error))?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|error| package_error("CSV", &error))?;
    String::from_utf8(bytes).map_err(|error| package_error("CSV", &error))
}

fn optional(value: Option<&String>) -> String {
    value.cloned().unwrap_or_default()
}

fn json_cell(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn contacts_csv(found: &Found) -> Result<String, RequestError> {
    csv_text(
        &[
            "id",
            "source_system",
            "source_id",
            "name",
            "email",
            "phone",
            "date_of_birth",
            "job_title",
            "account",
        ],
        found.contacts.iter().map(|stored| {
            let record = &stored.record;
            vec![
                stored.id.to_string(),
                record.source_system.clone(),
                record.source_id.clone(),
                record.name.clone(),
                optional(record.email.as_ref()),
                optional(record.phone.as_ref()),
                record
                    .date_of_birth
                    .map(|day| day.to_string())
                    .unwrap_or_default(),
                optional(record.job_title.as_ref()),
                optional(record.account.as_ref()),
            ]
        }),
    )
}

fn interactions_csv(found: &Found) -> Result<String, RequestError> {
    let relation = found
        .interactions
        .iter()
        .map(|stored| ("author", stored))
        .chain(found.mentions.iter().map(|stored| ("mentioned", stored)));
    csv_text(
        &[
            "interaction",
            "relation",
            "source_system",
            "source_id",
            "channel",
            "subject",
            "message",
            "role",
            "author_name",
            "author_email",
            "sent_at",
            "text",
        ],
        relation.flat_map(|(relation, stored)| {
            let record = &stored.record;
            record
                .messages
                .iter()
                .enumerate()
                .map(move |(index, message)| {
                    vec![
                        stored.id.to_string(),
                        relation.to_owned(),
                        record.source_system.clone(),
                        record.source_id.clone(),
                        record.channel.as_str().to_owned(),
                        optional(record.subject.as_ref()),
                        (index + 1).to_string(),
                        message.role.label().to_owned(),
                        optional(message.author_name.as_ref()),
                        optional(message.author_email.as_ref()),
                        message.sent_at.to_rfc3339(),
                        message.text.clone(),
                    ]
                })
        }),
    )
}

/// One CSV per data type.
fn csv_files(found: &Found) -> Result<Vec<(String, String)>, RequestError> {
    let contacts = contacts_csv(found)?;
    let interactions = interactions_csv(found)?;
    let signals = csv_text(
        &[
            "id",
            "source_system",
            "source_id",
            "kind",
            "account",
            "contact",
            "occurred_at",
            "signal",
        ],
        found.signals.iter().map(|stored| {
            let record = &stored.record;
            vec![
                stored.id.to_string(),
                record.source_system.clone(),
                record.source_id.clone(),
                record.signal.kind_str().to_owned(),
                optional(record.account.as_ref()),
                optional(record.contact.as_ref()),
                record.occurred_at.to_rfc3339(),
                json_cell(&record.signal),
            ]
        }),
    )?;
    let analyses = csv_text(
        &[
            "interaction",
            "kind",
            "result",
            "model",
            "analyzer",
            "created",
        ],
        found.analyses.iter().map(|analysis| {
            vec![
                analysis.interaction.to_string(),
                analysis.kind().as_str().to_owned(),
                json_cell(&analysis.result),
                analysis.provenance.model.clone(),
                analysis.provenance.analyzer.clone(),
                analysis.provenance.created.to_rfc3339(),
            ]
        }),
    )?;
    let audit = csv_text(
        &["seq", "time", "action", "target", "outcome"],
        found.audit.iter().map(|entry| {
            vec![
                entry.seq.to_string(),
                entry.time.to_rfc3339(),
                entry.event.action.as_str().to_owned(),
                entry.event.target.clone(),
                entry.event.outcome.as_str().to_owned(),
            ]
        }),
    )?;
    Ok(vec![
        ("contacts.csv".to_owned(), contacts),
        ("interactions.csv".to_owned(), interactions),
        ("signals.csv".to_owned(), signals),
        ("analyses.csv".to_owned(), analyses),
        ("audit.csv".to_owned(), audit),
    ])
}

/// One message of an interaction on the readable page.
pub struct MessageView {
    pub role: &'static str,
    pub author: String,
    pub sent_at: String,
    pub text: String,
}

pub struct InteractionView {
    pub id: String,
    pub relation: &'static str,
    pub channel: &'static str,
    pub subject: String,
    pub messages: Vec<MessageView>,
}

/// The readable page (escaped by askama; it has no script and no external resource).
#[derive(Template)]
#[template(path = "privacy/requests/package.html")]
struct PackagePage<'a> {
    request: &'a PrivacyRequest,
    subject_kind: &'static str,
    subject_value: String,
    generated: String,
    expires: String,
    found: &'a Found,
    interactions: Vec<InteractionView>,
    signals: Vec<(String, String, String, String)>,
    analyses: Vec<(String, &'static str, String)>,
    audit: Vec<(u64, String, &'static str, String)>,
}

fn interaction_views(found: &Found) -> Vec<InteractionView> {
    let relation = found
        .interactions
        .iter()
        .map(|stored| ("you wrote in it", stored))
        .chain(
            found
                .mentions
                .iter()
                .map(|stored| ("it mentions you", stored)),
        );
    relation
        .map(|(relation, stored)| InteractionView {
            id: stored.id.to_string(),
            relation,
            channel: stored.record.channel.as_str(),
            subject: optional(stored.record.subject.as_ref()),
            messages: stored
                .record
                .messages
                .iter()
                .map(|message| MessageView {
                    role: message.role.label(),
                    author: message
                        .author_name
                        .clone()
                        .or_else(|| message.author_email.clone())
                        .unwrap_or_default(),
                    sent_at: message.sent_at.format("%Y-%m-%d %H:%M UTC").to_string(),
                    text: message.text.clone(),
                })
                .collect(),
        })
        .collect()
}

fn html_page(
    request: &PrivacyRequest,
    found: &Found,
    now: DateTime<Utc>,
    expires: DateTime<Utc>,
) -> Result<String, RequestError> {
    let page = PackagePage {
        request,
        subject_kind: request.subject.kind_str(),
        subject_value: request.subject.value(),
        generated: now.format("%Y-%m-%d %H:%M UTC").to_string(),
        expires: expires.format("%Y-%m-%d %H:%M UTC").to_string(),
        found,
        interactions: interaction_views(found),
        signals: found
            .signals
            .iter()
            .map(|stored| {
                (
                    stored.record.signal.kind_str().to_owned(),
                    stored.record.occurred_at.format("%Y-%m-%d").to_string(),
                    optional(stored.record.account.as_ref()),
                    json_cell(&stored.record.signal),
                )
            })
            .collect(),
        analyses: found
            .analyses
            .iter()
            .map(|analysis| {
                (
                    analysis.interaction.to_string(),
                    analysis.kind().as_str(),
                    json_cell(&analysis.result),
                )
            })
            .collect(),
        audit: found
            .audit
            .iter()
            .map(|entry| {
                (
                    entry.seq,
                    entry.time.format("%Y-%m-%d %H:%M UTC").to_string(),
                    entry.event.action.as_str(),
                    entry.event.target.clone(),
                )
            })
            .collect(),
    };
    page.render().map_err(|error| package_error("page", &error))
}

/// How many days a package of `tenant` can be downloaded: [`EXPIRY_DAYS`], or fewer when the
/// tenant's retention policy keeps export packages for less (at least one day).
pub fn expiry_days(context: &AppContext, tenant: TenantId) -> Result<i64, RequestError> {
    use crate::retention::{policies, Category, Keep};
    Ok(
        match policies(context, tenant)?.get(Category::ExportPackages) {
            Keep::Days(days) => i64::from(days).clamp(1, EXPIRY_DAYS),
            Keep::Forever => EXPIRY_DAYS,
        },
    )
}

/// Builds the package of `request` from what was found, expiring `days` after `now`.
pub fn build(
    request: &PrivacyRequest,
    found: &Found,
    now: DateTime<Utc>,
    days: i64,
) -> Result<Package, RequestError> {
    let expires_at = now + Duration::days(days);
    let counts = vec![
        ("contacts".to_owned(), found.contacts.len()),
        ("interactions".to_owned(), found.interactions.len()),
        ("interactions mentioning".to_owned(), found.mentions.len()),
        ("signals".to_owned(), found.signals.len()),
        ("analyses".to_owned(), found.analyses.len()),
        (
            "search index entries".to_owned(),
            found.search_entries.len(),
        ),
        ("audit entries".to_owned(), found.audit.len()),
    ];
    Ok(Package {
        request: request.id,
        created_at: now,
        expires_at,
        counts,
        json: json_document(request, found, now)?,
        csv: csv_files(found)?,
        html: html_page(request, found, now, expires_at)?,
    })
}

/// The package of request `id` for download at `now`: refused once expired. The caller audits
/// the download with [`audit_download`] once it knows which part was sent.
pub fn load(
    context: &AppContext,
    tenant: TenantId,
    id: RequestId,
    now: DateTime<Utc>,
) -> Result<Package, RequestError> {
    let store = RequestStore::new(context.store.clone());
    store.get(tenant, id)?.ok_or(RequestError::NotFound)?;
    let package = store.package(tenant, id)?.ok_or(RequestError::NoPackage)?;
    if now >= package.expires_at {
        return Err(RequestError::PackageExpired(
            package.expires_at.format("%Y-%m-%d %H:%M UTC").to_string(),
        ));
    }
    Ok(package)
}

/// One part of the package of request `id`, audited as `dsar.package_downloaded`: `(content
/// type, body)`. Unknown part names are not found.
pub fn download(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    tenant: TenantId,
    id: RequestId,
    part: &str,
    now: DateTime<Utc>,
) -> Result<(&'static str, String), RequestError> {
    let package = load(context, tenant, id, now)?;
    let (content_type, body) = package.part(part).ok_or(RequestError::NotFound)?;
    let body = body.to_owned();
    context.audit(
        AuditEvent::new(
            Some(tenant),
            actor.clone(),
            AuditAction::DsarPackageDownloaded,
            format!("privacy request {id}: {part}"),
        )
        .client(client),
    )?;
    Ok((content_type, body))
}
