//! [`SubjectRef`]: how a data subject is named in a privacy request and in erasure:
//! an e-mail address, a phone number, a name or a contact's record id, normalised once, here, the
//! way the reference index (`records::refs`) normalises what records name.
//!
//! A subject is looked up and audited by its keyed token ([`SubjectRef::token`], an HMAC under the
//! tenant's index key), never by the value: the value itself only ever sits inside sealed records.

use serde::{Deserialize, Serialize};

use crate::ids::{RecordId, TenantId};
use crate::privacy::{normalise_email, subject_label};
use crate::store::{Scope, Store, StoreError};

/// The blind index whose key makes subject tokens (no entries are stored in it).
const TOKEN_INDEX: &str = "privacy_subject_tokens";
const MAX_NAME_CHARS: usize = 200;
const MIN_PHONE_DIGITS: usize = 5;
const MAX_PHONE_DIGITS: usize = 20;

/// A data subject, normalised: e-mail trimmed and in lower case; phone as its digits with a
/// leading `+` kept; name with whitespace collapsed, in lower case; or a contact's record id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum SubjectRef {
    Email(String),
    Phone(String),
    Name(String),
    Contact(RecordId),
}

/// Why a typed subject was refused: the message names the kind, never the value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SubjectError(pub &'static str);

/// A phone number as references compare it: its digits, with a leading `+` kept. `None` when it
/// has too few or too many digits to be a number.
pub fn normalise_phone(phone: &str) -> Option<String> {
    let trimmed = phone.trim();
    let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
    if !(MIN_PHONE_DIGITS..=MAX_PHONE_DIGITS).contains(&digits.len())
        || trimmed
            .chars()
            .any(|c| !(c.is_ascii_digit() || " +-().".contains(c)))
    {
        return None;
    }
    Some(if trimmed.starts_with('+') {
        format!("+{digits}")
    } else {
        digits
    })
}

/// A name as references compare it: whitespace collapsed, in lower case. `None` when empty, too
/// long or holding control characters.
pub fn normalise_name(name: &str) -> Option<String> {
    let collapsed = name.split_whitespace().collect::<Vec<_>>().join(" ");
    (!collapsed.is_empty()
        && collapsed.chars().count() <= MAX_NAME_CHARS
        && !collapsed.chars().any(char::is_control))
    .then(|| collapsed.to_lowercase())
}

impl SubjectRef {
    /// Parses a typed identifier of `kind` (`email`, `phone`, `name` or `contact`).
    pub fn parse(kind: &str, value: &str) -> Result<Self, SubjectError> {
        match kind.trim() {
            "email" => normalise_email(value).map(Self::Email).ok_or(SubjectError(
                "the subject's e-mail address is not an address, such as name@example.com",
            )),
            "phone" => normalise_phone(value).map(Self::Phone).ok_or(SubjectError(
                "the subject's phone number must have 5 to 20 digits (spaces, +, -, brackets and dots allowed)",
            )),
            "name" => normalise_name(value).map(Self::Name).ok_or(SubjectError(
                "the subject's name must be 1 to 200 characters without control characters",
            )),
            "contact" => value
                .trim()
                .parse::<RecordId>()
                .map(Self::Contact)
                .map_err(|_| SubjectError("the contact id is not a record id (26 characters)")),
            _ => Err(SubjectError(
                "the identifier kind must be email, phone, name or contact",
            )),
        }
    }

    pub fn kind_str(&self) -> &'static str {
        match self {
            Self::Email(_) => "email",
            Self::Phone(_) => "phone",
            Self::Name(_) => "name",
            Self::Contact(_) => "contact",
        }
    }

    /// The normalised value as text (personal data: show it only where the reader may see it).
    pub fn value(&self) -> String {
        match self {
            Self::Email(value) | Self::Phone(value) | Self::Name(value) => value.clone(),
            Self::Contact(id) => id.to_string(),
        }
    }

    /// The subject's keyed token in `tenant`: equal subjects have equal tokens, and the token
    /// reveals nothing of the value without the tenant's index key.
    pub fn token(&self, store: &Store, tenant: TenantId) -> Result<[u8; 32], StoreError> {
        let index = store.blind_index::<()>(Scope::Tenant(tenant), TOKEN_INDEX)?;
        Ok(index.pseudonym(&format!("{}:{}", self.kind_str(), self.value())))
    }

    /// How the audit log names the subject: a short prefix of its token.
    pub fn label(token: &[u8; 32]) -> String {
        subject_label(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_normalised_or_refused_by_kind() {
        assert_eq!(
            SubjectRef::parse("email", " Jo.Kim@Example.ORG "),
            Ok(SubjectRef::Email("jo.kim@example.org".to_owned()))
        );
        assert_eq!(
            SubjectRef::parse("phone", "+44 (20) 7946-0958"),
            Ok(SubjectRef::Phone("+442079460958".to_owned()))
        );
        assert_eq!(
            SubjectRef::parse("phone", "020 7946 0958"),
            Ok(SubjectRef::Phone("02079460958".to_owned()))
        );
        assert_eq!(
            SubjectRef::parse("name", "  Jo   KIM "),
            Ok(SubjectRef::Name("jo kim".to_owned()))
        );
        let id = RecordId::new();
        assert_eq!(
            SubjectRef::parse("contact", &id.to_string()),
            Ok(SubjectRef::Contact(id))
        );
        for (kind, value) in [
            ("email", "jo"),
            ("phone", "12"),
            ("phone", "call me"),
            ("name", "   "),
            ("contact", "42"),
            ("passport", "X1"),
        ] {
            let error = SubjectRef::parse(kind, value).unwrap_err();
            assert!(
                !error.to_string().contains(value.trim()) || value.trim().is_empty(),
                "{error}"
            );
        }
    }
}
