//! Data-subject requests: a privacy officer records a request (access, portability,
//! rectification, erasure, restriction, objection) for a subject named by e-mail, phone, name or
//! contact id ([`SubjectRef`]), records how the subject's identity was verified, and moves it
//! received → verified → in progress → completed, or rejected with a reason, within 30 days.
//!
//! The parts, one file each: the types and the transition rule (here), the store ([`store`]), the
//! workflow that changes and audits requests ([`workflow`]), finding the subject's data
//! ([`find`]), the access/portability package ([`package`]), rectification ([`rectify`]), the
//! scheduler's daily reminder ([`reminders`]), and the surfaces: console ([`routes`]), API
//! ([`api`]) and command line ([`cli`]).
//!
//! Requests are sealed tenant records. The subject's identifier lives only inside them; lists and
//! look-ups compare the subject's keyed token, and the audit log names the subject by a prefix of
//! that token (`subject 1a2b…`), never by the identifier.

pub mod api;
pub mod cli;
pub mod find;
pub mod package;
pub mod rectify;
pub mod reminders;
pub mod routes;
pub mod store;
pub mod workflow;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::audit::AuditError;
use crate::ids::{RecordId, RequestId};
use crate::privacy::subject::SubjectRef;
use crate::privacy::PrivacyError;
use crate::store::StoreError;

/// Days from receipt to the due date (GDPR art. 12(3): one month).
pub const DUE_DAYS: i64 = 30;
/// An open request due within this many days stands out as due soon.
pub const DUE_SOON_DAYS: i64 = 7;
const MAX_NOTE_CHARS: usize = 2000;

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// A typed value, naming its field.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("no such privacy request")]
    NotFound,
    /// A transition the workflow does not allow; the message names both states and what is
    /// allowed from the current one.
    #[error("{0}")]
    IllegalTransition(String),
    /// Completing the request needs something that is missing (a contact without an e-mail for
    /// a restriction, say); the message says what.
    #[error("{0}")]
    CannotComplete(String),
    /// The erasure was refused before anything was erased (a legal hold, an unknown contact);
    /// the message says why and the request stays in progress (see [`workflow::erasure_step`]).
    #[error("{0}")]
    ErasureRefused(String),
    /// The erasure failed part-way (storage, ledger or audit); completing the request again
    /// finishes it.
    #[error("the erasure did not finish ({0}); complete the request again to finish it")]
    ErasureFailed(String),
    /// The package is past its expiry time (it is deleted by the scheduler's next run).
    #[error("this package expired on {0}; complete the request again to build a new one")]
    PackageExpired(String),
    /// Writing a rectified contact failed; the message says why (no values).
    #[error("the contact could not be written: {0}")]
    Write(String),
    /// Building the package failed (a serialiser's error; no tenant content in it).
    #[error("{0}")]
    Package(String),
    #[error("this request has no package: access and portability requests get one when completed")]
    NoPackage,
}

impl From<crate::privacy::erasure::ErasureError> for RequestError {
    fn from(error: crate::privacy::erasure::ErasureError) -> Self {
        use crate::privacy::erasure::ErasureError;
        match error {
            ErasureError::Invalid { .. }
            | ErasureError::UnknownContact(_)
            | ErasureError::Held { .. } => Self::ErasureRefused(error.to_string()),
            ErasureError::Store(_)
            | ErasureError::Audit(_)
            | ErasureError::Ledger(_)
            | ErasureError::Rewrite { .. } => Self::ErasureFailed(error.to_string()),
        }
    }
}

impl From<PrivacyError> for RequestError {
    fn from(error: PrivacyError) -> Self {
        match error {
            PrivacyError::Store(store) => Self::Store(store),
            PrivacyError::Audit(audit) => Self::Audit(audit),
            PrivacyError::Invalid { field, message } => Self::Invalid { field, message },
            PrivacyError::NotFound => Self::NotFound,
        }
    }
}

pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> RequestError {
    RequestError::Invalid {
        field,
        message: message.into(),
    }
}

/// Which right the subject exercises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    Access,
    Portability,
    Rectification,
    Erasure,
    Restriction,
    Objection,
}

impl RequestKind {
    pub const ALL: [Self; 6] = [
        Self::Access,
        Self::Portability,
        Self::Rectification,
        Self::Erasure,
        Self::Restriction,
        Self::Objection,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Access => "access",
            Self::Portability => "portability",
            Self::Rectification => "rectification",
            Self::Erasure => "erasure",
            Self::Restriction => "restriction",
            Self::Objection => "objection",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == value.trim())
    }

    /// Whether completing the request builds an access package.
    pub fn builds_package(self) -> bool {
        matches!(self, Self::Access | Self::Portability)
    }
}

/// Where a request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    Received,
    Verified,
    InProgress,
    Completed,
    Rejected,
}

impl RequestState {
    pub const ALL: [Self; 5] = [
        Self::Received,
        Self::Verified,
        Self::InProgress,
        Self::Completed,
        Self::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Verified => "verified",
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
            Self::Rejected => "rejected",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Verified => "verified",
            Self::InProgress => "in progress",
            Self::Completed => "completed",
            Self::Rejected => "rejected",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == value.trim())
    }

    pub fn is_open(self) -> bool {
        !matches!(self, Self::Completed | Self::Rejected)
    }

    /// The states a request may move to from this one: forward one step, or rejected while
    /// open. Completed and rejected are final.
    pub fn next_states(self) -> &'static [Self] {
        match self {
            Self::Received => &[Self::Verified, Self::Rejected],
            Self::Verified => &[Self::InProgress, Self::Rejected],
            Self::InProgress => &[Self::Completed, Self::Rejected],
            Self::Completed | Self::Rejected => &[],
        }
    }

    /// Checks a transition, naming both states and the allowed ones when it is illegal.
    pub fn check_transition(self, to: Self) -> Result<(), RequestError> {
        if self.next_states().contains(&to) {
            return Ok(());
        }
        let allowed = self.next_states();
        let allowed = if allowed.is_empty() {
            "none: it is final".to_owned()
        } else {
            allowed
                .iter()
                .map(|state| state.as_str())
                .collect::<Vec<_>>()
                .join(" or ")
        };
        Err(RequestError::IllegalTransition(format!(
            "a request that is {} cannot become {}; allowed next: {allowed}",
            self.as_str(),
            to.as_str()
        )))
    }
}

/// How the subject's identity was checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VerificationMethod {
    /// A reply from the address or number on record.
    KnownContactDetails,
    /// An identity document was seen.
    IdentityDocument,
    /// A call back to the number on record.
    CallBack,
    /// Signed in to the tenant's own customer account.
    CustomerAccount,
    Other,
}

impl VerificationMethod {
    pub const ALL: [Self; 5] = [
        Self::KnownContactDetails,
        Self::IdentityDocument,
        Self::CallBack,
        Self::CustomerAccount,
        Self::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::KnownContactDetails => "known_contact_details",
            Self::IdentityDocument => "identity_document",
            Self::CallBack => "call_back",
            Self::CustomerAccount => "customer_account",
            Self::Other => "other",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::KnownContactDetails => "reply from contact details on record",
            Self::IdentityDocument => "identity document seen",
            Self::CallBack => "call back to the number on record",
            Self::CustomerAccount => "signed in to their customer account",
            Self::Other => "other (see note)",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|method| method.as_str() == value.trim())
    }
}

/// The record of how identity was verified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    pub method: VerificationMethod,
    pub note: String,
    pub by: String,
    pub at: DateTime<Utc>,
}

/// One state change, kept on the request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub from: RequestState,
    pub to: RequestState,
    pub by: String,
    pub at: DateTime<Utc>,
    /// The reason of a rejection, or what completing did.
    pub note: Option<String>,
}

/// One field's correction: `(field, before, after)`; `None` is an empty field.
pub type FieldChange = (String, Option<String>, Option<String>);

/// One rectification of a contact through the request: the values before and after, per field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rectification {
    pub contact: RecordId,
    pub changes: Vec<FieldChange>,
    pub by: String,
    pub at: DateTime<Utc>,
}

/// What a built package holds, shown on the request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageSummary {
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// `(data type, count)`, in the package's order.
    pub counts: Vec<(String, usize)>,
}

/// One data-subject request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivacyRequest {
    pub id: RequestId,
    pub kind: RequestKind,
    pub subject: SubjectRef,
    /// The subject's keyed token ([`SubjectRef::token`]): lists and look-ups compare this.
    pub subject_token: [u8; 32],
    pub state: RequestState,
    pub received_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    /// The officer's words: the channel it came by, a reference.
    pub note: String,
    pub created_by: String,
    pub verification: Option<Verification>,
    pub rejection: Option<String>,
    pub history: Vec<Transition>,
    pub rectifications: Vec<Rectification>,
    pub package: Option<PackageSummary>,
}

/// How urgent an open request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Urgency {
    /// Completed or rejected.
    Closed,
    Overdue,
    /// Due within [`DUE_SOON_DAYS`].
    DueSoon,
    OnTime,
}

impl Urgency {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Overdue => "overdue",
            Self::DueSoon => "due soon",
            Self::OnTime => "on time",
        }
    }
}

impl PrivacyRequest {
    /// The due date of a request received at `received_at`.
    pub fn due_for(received_at: DateTime<Utc>) -> DateTime<Utc> {
        received_at + Duration::days(DUE_DAYS)
    }

    pub fn urgency(&self, now: DateTime<Utc>) -> Urgency {
        if !self.state.is_open() {
            Urgency::Closed
        } else if now > self.due_at {
            Urgency::Overdue
        } else if self.due_at - now <= Duration::days(DUE_SOON_DAYS) {
            Urgency::DueSoon
        } else {
            Urgency::OnTime
        }
    }

    /// How the audit log names the request: id, kind and the subject's token label.
    pub fn audit_label(&self) -> String {
        format!(
            "privacy request {} ({}, {})",
            self.id,
            self.kind.as_str(),
            SubjectRef::label(&self.subject_token)
        )
    }
}

/// A free-text note: trimmed, at most [`MAX_NOTE_CHARS`], no control characters but newlines.
pub(crate) fn check_note(
    field: &'static str,
    text: &str,
    required: bool,
) -> Result<String, RequestError> {
    let text = text.trim();
    if required && text.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if text.chars().count() > MAX_NOTE_CHARS
        || text
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
    {
        return Err(invalid(
            field,
            format!("must be at most {MAX_NOTE_CHARS} characters, without control characters"),
        ));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_workflow_s_transitions_are_legal() {
        use RequestState::{Completed, InProgress, Received, Rejected, Verified};
        let legal = [
            (Received, Verified),
            (Received, Rejected),
            (Verified, InProgress),
            (Verified, Rejected),
            (InProgress, Completed),
            (InProgress, Rejected),
        ];
        for from in RequestState::ALL {
            for to in RequestState::ALL {
                let result = from.check_transition(to);
                assert_eq!(
                    result.is_ok(),
                    legal.contains(&(from, to)),
                    "{from:?} → {to:?}"
                );
            }
        }
        let error = Received
            .check_transition(Completed)
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "a request that is received cannot become completed; allowed next: verified or rejected"
        );
        let error = Completed
            .check_transition(Rejected)
            .unwrap_err()
            .to_string();
        assert!(
            error.ends_with("allowed next: none: it is final"),
            "{error}"
        );
    }

    #[test]
    fn urgency_follows_the_due_date() {
        let received = DateTime::parse_from_rfc3339("2026-03-01T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut request = PrivacyRequest {
            id: RequestId::new(),
            kind: RequestKind::Access,
            subject: SubjectRef::Email("jo@example.org".to_owned()),
            subject_token: [7; 32],
            state: RequestState::Received,
            received_at: received,
            due_at: PrivacyRequest::due_for(received),
            note: String::new(),
            created_by: "officer".to_owned(),
            verification: None,
            rejection: None,
            history: Vec::new(),
            rectifications: Vec::new(),
            package: None,
        };
        assert_eq!(request.due_at.to_rfc3339(), "2026-03-31T09:00:00+00:00");
        assert_eq!(request.urgency(received), Urgency::OnTime);
        assert_eq!(
            request.urgency(received + Duration::days(23)),
            Urgency::DueSoon
        );
        assert_eq!(
            request.urgency(received + Duration::days(22)),
            Urgency::OnTime
        );
        assert_eq!(
            request.urgency(received + Duration::days(31)),
            Urgency::Overdue
        );
        request.state = RequestState::Completed;
        assert_eq!(
            request.urgency(received + Duration::days(31)),
            Urgency::Closed
        );
        assert!(!request.audit_label().contains("jo@"));
    }
}
