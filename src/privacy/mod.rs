//! Restriction of processing and objection: a privacy officer flags a data subject (by e-mail
//! address), and analysis skips every interaction in which that subject wrote as the customer.
//!
//! Restrictions live in the tenant's scope, sealed. The key of each is the e-mail's keyed token (a
//! blind index), so checking an interaction costs one lookup per customer address and never holds
//! an address in clear outside the sealed value. The audit log names a subject by a short prefix of
//! that token, never by the address.

pub(crate) mod erase_cli;
pub mod erasure;
pub mod ledger;
pub mod mentions;
pub mod requests;
pub mod routes;
pub mod subject;
pub mod subjects;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::audit::{Actor, AuditAction, AuditError, AuditEvent};
use crate::context::AppContext;
use crate::ids::TenantId;
use crate::interactions::{AuthorRole, InteractionRecord};
use crate::store::{BlindIndex, Collection, Scope, Store, StoreError};

const COLLECTION: &str = "subject_restrictions";
const INDEX: &str = "subject_restriction_tokens";
/// The longest e-mail address accepted (RFC 5321's path limit).
const MAX_EMAIL_CHARS: usize = 254;
const MAX_REASON_CHARS: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
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
    #[error("no such restriction")]
    NotFound,
}

/// Which right the subject exercised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestrictionKind {
    /// Restriction of processing (GDPR art. 18).
    Restriction,
    /// Objection to processing (GDPR art. 21).
    Objection,
}

impl RestrictionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Restriction => "restriction",
            Self::Objection => "objection",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "restriction" => Some(Self::Restriction),
            "objection" => Some(Self::Objection),
            _ => None,
        }
    }
}

/// One restricted subject.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restriction {
    /// The subject's e-mail address, normalised (trimmed, lower case).
    pub email: String,
    pub kind: RestrictionKind,
    /// Why (the request's reference, say); the privacy officer's words.
    pub reason: String,
    pub recorded_by: String,
    pub recorded_at: DateTime<Utc>,
}

/// An e-mail address as restrictions are keyed: trimmed and in lower case. `None` when it is not
/// an address.
pub fn normalise_email(email: &str) -> Option<String> {
    let email = email.trim().to_lowercase();
    let (local, domain) = email.split_once('@')?;
    let valid = !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && email.chars().count() <= MAX_EMAIL_CHARS
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    valid.then_some(email)
}

/// The restrictions of every tenant.
#[derive(Clone)]
pub struct Restrictions {
    store: Store,
}

impl Restrictions {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    fn collection(
        &self,
        tenant: TenantId,
    ) -> Result<Collection<[u8; 32], Restriction>, StoreError> {
        self.store.collection(Scope::Tenant(tenant), COLLECTION)
    }

    fn index(&self, tenant: TenantId) -> Result<BlindIndex<()>, StoreError> {
        self.store.blind_index(Scope::Tenant(tenant), INDEX)
    }

    /// The keyed token of a normalised address (how `privacy.*` audit entries name the subject).
    pub fn token(&self, tenant: TenantId, email: &str) -> Result<[u8; 32], StoreError> {
        Ok(self.index(tenant)?.pseudonym(email))
    }

    /// The restriction of `email`, if the subject is restricted.
    pub fn of(&self, tenant: TenantId, email: &str) -> Result<Option<Restriction>, StoreError> {
        let Some(email) = normalise_email(email) else {
            return Ok(None);
        };
        self.collection(tenant)?.get(&self.token(tenant, &email)?)
    }

    /// Whether a customer who wrote in `record` is restricted: analysis must skip it.
    pub fn covers(&self, tenant: TenantId, record: &InteractionRecord) -> Result<bool, StoreError> {
        let collection = self.collection(tenant)?;
        let index = self.index(tenant)?;
        for message in &record.messages {
            if message.role != AuthorRole::Customer {
                continue;
            }
            let Some(email) = message.author_email.as_deref().and_then(normalise_email) else {
                continue;
            };
            if collection.get(&index.pseudonym(&email))?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Removes the restriction of `email`, if any, into `writes` (erasure: the subject's flag is
    /// data about the subject too).
    pub fn stage_forget(
        &self,
        tenant: TenantId,
        email: &str,
        writes: &mut crate::store::WriteSet,
    ) -> Result<(), StoreError> {
        if let Some(email) = normalise_email(email) {
            let collection = self.collection(tenant)?;
            writes.remove(&collection, &self.token(tenant, &email)?);
        }
        Ok(())
    }

    /// Every restriction of the tenant, newest first, each with the token that names it.
    pub fn list(&self, tenant: TenantId) -> Result<Vec<([u8; 32], Restriction)>, StoreError> {
        let mut all: Vec<([u8; 32], Restriction)> =
            self.collection(tenant)?.scan().collect::<Result<_, _>>()?;
        all.sort_by_key(|(_, restriction)| std::cmp::Reverse(restriction.recorded_at));
        Ok(all)
    }
}

/// How the audit log names a subject: the first bytes of its keyed token, never the address.
pub fn subject_label(token: &[u8; 32]) -> String {
    format!("subject {}", hex::encode(&token[..6]))
}

/// A privacy officer records a restriction or objection; analysis skips the subject from its next
/// batch on. Recording it again replaces the earlier record. Audited as `privacy.restricted`.
pub fn restrict(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    tenant: TenantId,
    email: &str,
    kind: RestrictionKind,
    reason: &str,
) -> Result<[u8; 32], PrivacyError> {
    let email = normalise_email(email).ok_or_else(|| PrivacyError::Invalid {
        field: "E-mail address",
        message: "give the subject's e-mail address, such as name@example.com".to_owned(),
    })?;
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
        return Err(PrivacyError::Invalid {
            field: "Reason",
            message: format!(
                "say why (the request's reference, for example), in at most {MAX_REASON_CHARS} characters"
            ),
        });
    }
    let restrictions = Restrictions::new(context.store.clone());
    let token = restrictions.token(tenant, &email)?;
    restrictions.collection(tenant)?.insert(
        &token,
        &Restriction {
            email,
            kind,
            reason: reason.to_owned(),
            recorded_by: actor.label.clone(),
            recorded_at: Utc::now(),
        },
    )?;
    context.audit(
        AuditEvent::new(
            Some(tenant),
            actor.clone(),
            AuditAction::PrivacyRestricted,
            format!("{} ({})", subject_label(&token), kind.as_str()),
        )
        .client(client),
    )?;
    Ok(token)
}

/// Lifts a restriction; analysis takes the subject's interactions again when they are next
/// queued. Audited as `privacy.restriction_lifted`.
pub fn lift(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    tenant: TenantId,
    token: &[u8; 32],
) -> Result<(), PrivacyError> {
    let restrictions = Restrictions::new(context.store.clone());
    let collection = restrictions.collection(tenant)?;
    if collection.get(token)?.is_none() {
        return Err(PrivacyError::NotFound);
    }
    collection.remove(token)?;
    context.audit(
        AuditEvent::new(
            Some(tenant),
            actor.clone(),
            AuditAction::PrivacyRestrictionLifted,
            subject_label(token),
        )
        .client(client),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_normalised_or_refused() {
        assert_eq!(
            normalise_email("  Jo.Kim@Example.ORG ").as_deref(),
            Some("jo.kim@example.org")
        );
        for refused in [
            "",
            "jo",
            "@example.org",
            "jo@example",
            "jo@.org",
            "jo @x.org",
            "jo@x.org.",
        ] {
            assert_eq!(normalise_email(refused), None, "{refused}");
        }
        let long = format!("{}@example.org", "a".repeat(250));
        assert_eq!(normalise_email(&long), None);
    }

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in [RestrictionKind::Restriction, RestrictionKind::Objection] {
            assert_eq!(RestrictionKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(RestrictionKind::parse("erasure"), None);
    }
}
