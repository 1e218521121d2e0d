//! Rectification: while a rectification request is in progress, the privacy officer corrects the
//! subject's contact record (name, e-mail, phone, date of birth, job title).
//!
//! The previous values are kept first, as a history entry inside the sealed request, and only
//! then is the contact written, through the API's own write path
//! ([`crate::api::resources::write_record`]: validation, `RecordStore::upsert` so the record's
//! indexes follow, `data.written`, and the dashboards' and health's follow-ups). Should that write
//! fail, the history entry is taken back. A later import from the source system carries the
//! source's values again: the officer should have the source corrected too (the README says so).

use chrono::{DateTime, NaiveDate, Utc};

use crate::accounts::ContactRecord;
use crate::api::ApiError;
use crate::audit::{AuditAction, AuditEvent};
use crate::context::AppContext;
use crate::ids::{RecordId, RequestId, TenantId};
use crate::privacy::normalise_email;
use crate::privacy::requests::store::RequestStore;
use crate::privacy::requests::workflow::{load, By};
use crate::privacy::requests::{
    invalid, FieldChange, PrivacyRequest, Rectification, RequestError, RequestKind, RequestState,
};
use crate::privacy::subject::{normalise_name, normalise_phone, SubjectRef};
use crate::store::Scope;

/// The corrected values as typed; `None` leaves a field alone, an empty text clears an optional
/// field.
#[derive(Clone, Debug, Default)]
pub struct Corrections {
    /// The contact's record id.
    pub contact: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// `YYYY-MM-DD`.
    pub date_of_birth: Option<String>,
    pub job_title: Option<String>,
}

/// Whether `contact` is the request's subject: the same record, or naming the same address,
/// number or name.
fn is_subject(id: RecordId, contact: &ContactRecord, subject: &SubjectRef) -> bool {
    match subject {
        SubjectRef::Contact(subject) => *subject == id,
        SubjectRef::Email(email) => {
            contact.email.as_deref().and_then(normalise_email).as_ref() == Some(email)
        }
        SubjectRef::Phone(phone) => {
            contact.phone.as_deref().and_then(normalise_phone).as_ref() == Some(phone)
        }
        SubjectRef::Name(name) => normalise_name(&contact.name).as_ref() == Some(name),
    }
}

fn optional_text(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

/// Applies `corrections` to `record`, returning the changes as `(field, before, after)`.
fn apply(
    record: &mut ContactRecord,
    corrections: &Corrections,
) -> Result<Vec<FieldChange>, RequestError> {
    let mut changes = Vec::new();
    let mut change = |field: &str, before: Option<String>, after: Option<String>| {
        if before != after {
            changes.push((field.to_owned(), before, after));
        }
    };
    if let Some(name) = &corrections.name {
        let name = name.trim().to_owned();
        change("name", Some(record.name.clone()), Some(name.clone()));
        record.name = name;
    }
    if let Some(email) = &corrections.email {
        let email = optional_text(email);
        change("email", record.email.clone(), email.clone());
        record.email = email;
    }
    if let Some(phone) = &corrections.phone {
        let phone = optional_text(phone);
        change("phone", record.phone.clone(), phone.clone());
        record.phone = phone;
    }
    if let Some(day) = &corrections.date_of_birth {
        let day = match optional_text(day) {
            Some(text) => Some(
                NaiveDate::parse_from_str(&text, "%Y-%m-%d")
                    .map_err(|_| invalid("Date of birth", "give a date as YYYY-MM-DD"))?,
            ),
            None => None,
        };
        change(
            "date_of_birth",
            record.date_of_birth.map(|day| day.to_string()),
            day.map(|day| day.to_string()),
        );
        record.date_of_birth = day;
    }
    if let Some(title) = &corrections.job_title {
        let title = optional_text(title);
        change("job_title", record.job_title.clone(), title.clone());
        record.job_title = title;
    }
    Ok(changes)
}

fn write_problem(error: ApiError) -> RequestError {
    match error {
        ApiError::Invalid(errors) => invalid(
            "Contact",
            errors
                .iter()
                .map(|error| {
                    format!(
                        "{} {}",
                        error
                            .pointer
                            .as_deref()
                            .unwrap_or("")
                            .trim_start_matches('/'),
                        error.detail
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
        ),
        other => RequestError::Write(other.to_string()),
    }
}

/// Checks the request and the contact, and stores the rectification's history entry (previous
/// and new values) in the request, under the tenant's writer lock. Returns the request, the
/// corrected contact record and the entry's time.
fn stage(
    context: &AppContext,
    by: &By,
    tenant: TenantId,
    id: RequestId,
    corrections: &Corrections,
) -> Result<(PrivacyRequest, ContactRecord, DateTime<Utc>), RequestError> {
    let mut request = load(context, tenant, id)?;
    if request.kind != RequestKind::Rectification || request.state != RequestState::InProgress {
        return Err(RequestError::CannotComplete(format!(
            "only a rectification request in progress can rectify a contact; this is a {} request that is {}",
            request.kind.as_str(),
            request.state.label()
        )));
    }
    let contact_id = corrections
        .contact
        .trim()
        .parse::<RecordId>()
        .map_err(|_| invalid("Contact", "give the contact's record id"))?;
    let contact = context
        .contacts
        .get(tenant, contact_id)?
        .filter(|contact| is_subject(contact.id, &contact.record, &request.subject))
        .ok_or_else(|| {
            invalid(
                "Contact",
                "no contact of this request's subject has that id",
            )
        })?;
    let mut record = contact.record.clone();
    let changes = apply(&mut record, corrections)?;
    if changes.is_empty() {
        return Err(invalid(
            "Corrections",
            "nothing differs from the stored values",
        ));
    }
    let at = Utc::now();
    request.rectifications.push(Rectification {
        contact: contact_id,
        changes,
        by: by.actor.label.clone(),
        at,
    });
    RequestStore::new(context.store.clone()).put(tenant, &request)?;
    Ok((request, record, at))
}

/// Rectifies the subject's contact through request `id` (a rectification request in progress).
/// Audited as `dsar.rectified`, naming the fields changed, never their values.
pub fn rectify(
    context: &AppContext,
    by: &By,
    tenant: TenantId,
    id: RequestId,
    corrections: &Corrections,
) -> Result<PrivacyRequest, RequestError> {
    let lock = || context.store.lock_scope(Scope::Tenant(tenant));
    // The previous values are durable before the contact changes. The contact's write takes the
    // writer lock itself, so the request is staged, and taken back, under locks of their own.
    let (request, record, at) = lock().run(|| stage(context, by, tenant, id, corrections))?;
    let via = format!("privacy request {id}");
    if let Err(error) = crate::api::resources::write_record(
        context,
        &by.actor,
        by.client.clone(),
        tenant,
        &via,
        record,
    ) {
        lock().run(|| -> Result<(), RequestError> {
            let mut request = load(context, tenant, id)?;
            request.rectifications.retain(|entry| entry.at != at);
            RequestStore::new(context.store.clone()).put(tenant, &request)?;
            Ok(())
        })?;
        return Err(write_problem(error));
    }
    let entry = request
        .rectifications
        .last()
        .map(|entry| {
            let fields: Vec<&str> = entry
                .changes
                .iter()
                .map(|(field, _, _)| field.as_str())
                .collect();
            format!("contact {} ({})", entry.contact, fields.join(", "))
        })
        .unwrap_or_default();
    context.audit(
        AuditEvent::new(
            Some(tenant),
            by.actor.clone(),
            AuditAction::DsarRectified,
            format!("{}: {entry}", request.audit_label()),
        )
        .client(by.client.clone()),
    )?;
    Ok(request)
}
