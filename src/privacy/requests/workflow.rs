//! The request workflow: recording a request, and every state change with what it does. Each
//! change is one durable write followed by its `dsar.*` audit entry; the entry names the request
//! by id and the subject by its token label, never by the identifier.
//!
//! Completing a request does what its kind asks: access and portability build the package
//! ([`super::package`]); restriction and objection call [`crate::privacy::restrict`] for the
//! subject's e-mail addresses; erasure goes through [`erasure_step`]; rectification closes the
//! request (its edits were made while it was in progress, see [`super::rectify`]).

use chrono::{DateTime, NaiveDate, Utc};

use crate::audit::{Actor, AuditAction, AuditEvent};
use crate::context::AppContext;
use crate::ids::{RequestId, TenantId};
use crate::privacy::requests::store::RequestStore;
use crate::privacy::requests::{
    check_note, find, invalid, package, PrivacyRequest, RequestError, RequestKind, RequestState,
    Transition, Verification, VerificationMethod,
};
use crate::privacy::subject::SubjectRef;
use crate::privacy::{restrict, RestrictionKind};

/// Who acts, and from where: every workflow function takes one.
#[derive(Clone, Debug)]
pub struct By {
    pub actor: Actor,
    pub client: Option<String>,
}

impl By {
    pub fn cli() -> Self {
        Self {
            actor: Actor::cli(),
            client: None,
        }
    }
}

/// A request as typed in the form, the API or on the command line, before validation.
#[derive(Clone, Debug, Default)]
pub struct NewRequest {
    /// One of [`RequestKind`]'s names.
    pub kind: String,
    /// `email`, `phone`, `name` or `contact`.
    pub subject_kind: String,
    pub subject: String,
    /// When it arrived: `YYYY-MM-DD` or an RFC 3339 time; empty for now. Never in the future.
    pub received: String,
    pub note: String,
}

/// A state change as asked for.
#[derive(Clone, Debug, Default)]
pub struct Change {
    /// One of [`RequestState`]'s names.
    pub to: String,
    /// For `verified`: how identity was checked ([`VerificationMethod`]'s names) and a note.
    pub method: String,
    pub verification_note: String,
    /// For `rejected`: why.
    pub reason: String,
}

fn parse_received(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, RequestError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(now);
    }
    let time = DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .or_else(|_| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map(|day| day.and_time(chrono::NaiveTime::MIN).and_utc())
        })
        .map_err(|_| invalid("Received", "give a date as YYYY-MM-DD or an RFC 3339 time"))?;
    if time > now {
        return Err(invalid("Received", "must not be in the future"));
    }
    Ok(time)
}

/// Records a new request, in state received, due 30 days after receipt. Audited as
/// `dsar.created`.
pub fn create(
    context: &AppContext,
    by: &By,
    tenant: TenantId,
    new: &NewRequest,
) -> Result<PrivacyRequest, RequestError> {
    let kind = RequestKind::parse(&new.kind).ok_or_else(|| {
        invalid(
            "Kind",
            "choose access, portability, rectification, erasure, restriction or objection",
        )
    })?;
    let subject = SubjectRef::parse(&new.subject_kind, &new.subject)
        .map_err(|error| invalid("Subject", error.0))?;
    let received_at = parse_received(&new.received, Utc::now())?;
    let note = check_note("Note", &new.note, false)?;
    let request = PrivacyRequest {
        id: RequestId::new(),
        kind,
        subject_token: subject.token(&context.store, tenant)?,
        subject,
        state: RequestState::Received,
        received_at,
        due_at: PrivacyRequest::due_for(received_at),
        note,
        created_by: by.actor.label.clone(),
        verification: None,
        rejection: None,
        history: Vec::new(),
        rectifications: Vec::new(),
        package: None,
    };
    RequestStore::new(context.store.clone()).put(tenant, &request)?;
    context.audit(
        AuditEvent::new(
            Some(tenant),
            by.actor.clone(),
            AuditAction::DsarCreated,
            format!(
                "{}, due {}",
                request.audit_label(),
                request.due_at.format("%Y-%m-%d")
            ),
        )
        .client(by.client.clone()),
    )?;
    Ok(request)
}

/// One request, or [`RequestError::NotFound`].
pub fn load(
    context: &AppContext,
    tenant: TenantId,
    id: RequestId,
) -> Result<PrivacyRequest, RequestError> {
    RequestStore::new(context.store.clone())
        .get(tenant, id)?
        .ok_or(RequestError::NotFound)
}

/// Moves a request to the state `change.to` asks for, doing what that state needs: a
/// verification record for `verified`, a reason for `rejected`, the kind's work for
/// `completed`. Illegal transitions are refused, naming what is allowed.
pub fn transition(
    context: &AppContext,
    by: &By,
    tenant: TenantId,
    id: RequestId,
    change: &Change,
) -> Result<PrivacyRequest, RequestError> {
    let to = RequestState::parse(&change.to).ok_or_else(|| {
        invalid(
            "State",
            "choose verified, in_progress, completed or rejected",
        )
    })?;
    // Erasure deletes through `records::delete`, which takes the tenant's writer lock batch by
    // batch, so it runs before the request's own lock is taken (the lock is not re-entrant). It
    // is idempotent: two officers completing at once erase once, and the second is then refused
    // as an illegal transition.
    let erased = if to == RequestState::Completed {
        let request = load(context, tenant, id)?;
        request.state.check_transition(to)?;
        if request.kind == RequestKind::Erasure {
            Some(erasure_step(context, by, tenant, &request)?)
        } else {
            None
        }
    } else {
        None
    };
    // One request changes under the tenant's writer lock: two officers completing it at once
    // would otherwise both build a package or restrict twice.
    let store = context.store.clone();
    store
        .lock_scope(crate::store::Scope::Tenant(tenant))
        .run(|| {
            let mut request = load(context, tenant, id)?;
            request.state.check_transition(to)?;
            let now = Utc::now();
            let mut note = None;
            match to {
                RequestState::Verified => {
                    let method = VerificationMethod::parse(&change.method).ok_or_else(|| {
                        invalid(
                            "Verification method",
                            "choose how the subject's identity was verified",
                        )
                    })?;
                    request.verification = Some(Verification {
                        method,
                        note: check_note("Verification note", &change.verification_note, true)?,
                        by: by.actor.label.clone(),
                        at: now,
                    });
                }
                RequestState::Rejected => {
                    let reason = check_note("Reason", &change.reason, true)?;
                    request.rejection = Some(reason.clone());
                    note = Some(reason);
                }
                RequestState::Completed => {
                    return complete(context, by, tenant, request, now, erased);
                }
                RequestState::Received | RequestState::InProgress => {}
            }
            record_transition(by, &mut request, to, now, note);
            RequestStore::new(context.store.clone()).put(tenant, &request)?;
            audit_transition(context, by, tenant, &request)?;
            Ok(request)
        })
}

fn record_transition(
    by: &By,
    request: &mut PrivacyRequest,
    to: RequestState,
    now: DateTime<Utc>,
    note: Option<String>,
) {
    request.history.push(Transition {
        from: request.state,
        to,
        by: by.actor.label.clone(),
        at: now,
        note,
    });
    request.state = to;
}

fn audit_transition(
    context: &AppContext,
    by: &By,
    tenant: TenantId,
    request: &PrivacyRequest,
) -> Result<(), RequestError> {
    let from = request
        .history
        .last()
        .map_or("received", |transition| transition.from.as_str());
    context.audit(
        AuditEvent::new(
            Some(tenant),
            by.actor.clone(),
            AuditAction::DsarStateChanged,
            format!(
                "{}: {from} → {}",
                request.audit_label(),
                request.state.as_str()
            ),
        )
        .client(by.client.clone()),
    )?;
    Ok(())
}

/// Completes an in-progress request with its kind's work: the package is stored with the
/// request in one commit; the kind's other work (a restriction) is written before the request,
/// so a failure leaves the request in progress, to be completed again.
fn complete(
    context: &AppContext,
    by: &By,
    tenant: TenantId,
    mut request: PrivacyRequest,
    now: DateTime<Utc>,
    erased: Option<String>,
) -> Result<PrivacyRequest, RequestError> {
    let (note, built) = match request.kind {
        RequestKind::Access | RequestKind::Portability => {
            let found = find::find_subject(context, tenant, &request.subject)?;
            let days = package::expiry_days(context, tenant)?;
            let built = package::build(&request, &found, now, days)?;
            (
                format!("package built, {} items", found.total()),
                Some(built),
            )
        }
        RequestKind::Restriction | RequestKind::Objection => {
            (restrict_subject(context, by, tenant, &request)?, None)
        }
        // Erased before the lock was taken (see `transition`).
        RequestKind::Erasure => (
            erased
                .ok_or_else(|| RequestError::ErasureFailed("the erasure did not run".to_owned()))?,
            None,
        ),
        RequestKind::Rectification => (
            format!("{} rectification(s) made", request.rectifications.len()),
            None,
        ),
    };
    request.package = built.as_ref().map(package::Package::summary);
    record_transition(by, &mut request, RequestState::Completed, now, Some(note));
    let store = RequestStore::new(context.store.clone());
    match &built {
        Some(built) => store.put_with_package(tenant, &request, built)?,
        None => store.put(tenant, &request)?,
    }
    if let Some(built) = &built {
        let counts = built
            .counts
            .iter()
            .map(|(what, count)| format!("{what} {count}"))
            .collect::<Vec<_>>()
            .join(", ");
        context.audit(
            AuditEvent::new(
                Some(tenant),
                by.actor.clone(),
                AuditAction::DsarPackageCreated,
                format!(
                    "{}: {counts}; expires {}",
                    request.audit_label(),
                    built.expires_at.format("%Y-%m-%d %H:%M UTC")
                ),
            )
            .client(by.client.clone()),
        )?;
    }
    audit_transition(context, by, tenant, &request)?;
    Ok(request)
}

/// Records the restriction or objection for each of the subject's e-mail addresses; returns
/// what it did, for the request's history.
fn restrict_subject(
    context: &AppContext,
    by: &By,
    tenant: TenantId,
    request: &PrivacyRequest,
) -> Result<String, RequestError> {
    let emails = find::subject_emails(context, tenant, &request.subject)?;
    if emails.is_empty() {
        return Err(RequestError::CannotComplete(
            "restriction and objection are recorded by e-mail address, and this subject has none on record: record the request by e-mail address or by a contact with one".to_owned(),
        ));
    }
    let kind = if request.kind == RequestKind::Restriction {
        RestrictionKind::Restriction
    } else {
        RestrictionKind::Objection
    };
    for email in &emails {
        restrict(
            context,
            &by.actor,
            by.client.clone(),
            tenant,
            email,
            kind,
            &format!("privacy request {}", request.id),
        )?;
    }
    Ok(format!(
        "{} recorded for {} address(es); analysis and outbound integrations skip the subject",
        kind.as_str(),
        emails.len()
    ))
}

/// The one place an erasure request's completion erases the subject (`privacy::erasure`, which
/// writes the erasure ledger, deletes through the one deletion path and destroys the subject's
/// keys); returns what it did, for the request's history. A refusal (a legal hold) leaves the
/// request in progress.
pub fn erasure_step(
    context: &AppContext,
    by: &By,
    tenant: TenantId,
    request: &PrivacyRequest,
) -> Result<String, RequestError> {
    let label = request.id.to_string();
    let report = crate::privacy::erasure::erase_subject(
        context,
        &by.actor,
        tenant,
        &request.subject,
        Some(&label),
    )?;
    Ok(format!(
        "erased {} interaction(s), {} contact(s), {} signal(s); {} subject key(s) destroyed",
        report.interactions, report.contacts, report.signals, report.keys_destroyed
    ))
}
