//! Which data subject a record belongs to: the person whose own key seals it (see
//! `store::subject`), so that erasing that person destroys every copy of it.
//!
//! A record's subject is its primary person: a contact's e-mail address (else its phone number),
//! an interaction's first customer-role author with an e-mail address, a signal's contact e-mail
//! (else a lead's e-mail). Records without one (accounts, interactions no customer wrote with an
//! address) stay under the tenant's data key. Other people named in a record (a second customer,
//! a colleague in copy) do not change its key; erasure finds those records through the reference
//! index and deletes them (see `privacy::erasure`).

use crate::accounts::ContactRecord;
use crate::interactions::{AuthorRole, InteractionRecord};
use crate::privacy::normalise_email;
use crate::signals::{Signal, SignalRecord};

/// The fewest digits a phone number must have to name a subject.
const MIN_PHONE_DIGITS: usize = 6;

/// A data subject, by a normalised address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    /// Trimmed, lower case.
    Email(String),
    /// Digits only, with a leading `+` kept.
    Phone(String),
}

impl Subject {
    /// An e-mail address as a subject; `None` when it is not an address.
    pub fn email(value: &str) -> Option<Self> {
        normalise_email(value).map(Self::Email)
    }

    /// A phone number as a subject (`+1 (555) 010-2000` → `+15550102000`); `None` when it has
    /// fewer than six digits.
    pub fn phone(value: &str) -> Option<Self> {
        let trimmed = value.trim();
        let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
        if digits.len() < MIN_PHONE_DIGITS {
            return None;
        }
        Some(Self::Phone(if trimmed.starts_with('+') {
            format!("+{digits}")
        } else {
            digits
        }))
    }

    /// The name the store derives the subject's key token from (`email:…`, `phone:…`). Never
    /// stored or logged: only its keyed token is.
    pub fn key_name(&self) -> String {
        match self {
            Self::Email(email) => format!("email:{email}"),
            Self::Phone(phone) => format!("phone:{phone}"),
        }
    }

    /// The address itself.
    pub fn address(&self) -> &str {
        match self {
            Self::Email(value) | Self::Phone(value) => value,
        }
    }
}

/// An interaction's subject: the first customer who wrote with a valid e-mail address.
pub fn of_interaction(record: &InteractionRecord) -> Option<Subject> {
    record
        .messages
        .iter()
        .filter(|message| message.role == AuthorRole::Customer)
        .find_map(|message| message.author_email.as_deref().and_then(Subject::email))
}

/// A contact's subject: its e-mail address, else its phone number.
pub fn of_contact(record: &ContactRecord) -> Option<Subject> {
    record
        .email
        .as_deref()
        .and_then(Subject::email)
        .or_else(|| record.phone.as_deref().and_then(Subject::phone))
}

/// A signal's subject: its contact's e-mail, else a lead's e-mail.
pub fn of_signal(record: &SignalRecord) -> Option<Subject> {
    record
        .contact
        .as_deref()
        .and_then(Subject::email)
        .or_else(|| match &record.signal {
            Signal::Lead {
                email: Some(email), ..
            } => Subject::email(email),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interactions::{Channel, MessageRecord};

    fn message(role: AuthorRole, email: Option<&str>) -> MessageRecord {
        MessageRecord {
            role,
            author_name: Some("Someone".to_owned()),
            author_email: email.map(str::to_owned),
            sent_at: chrono::Utc::now(),
            text: "hello".to_owned(),
            quoted: None,
            signature: None,
        }
    }

    #[test]
    fn an_interaction_belongs_to_its_first_customer_with_an_address() {
        let mut record = InteractionRecord {
            source_system: "mail".to_owned(),
            source_id: "1".to_owned(),
            channel: Channel::Email,
            subject: None,
            status: None,
            account: None,
            tags: Vec::new(),
            ai_tool: None,
            attachments: Vec::new(),
            messages: vec![
                message(AuthorRole::Agent, Some("agent@vendor.example")),
                message(AuthorRole::Customer, None),
                message(AuthorRole::Customer, Some(" Jo.Kim@Example.ORG ")),
                message(AuthorRole::Customer, Some("other@example.org")),
            ],
        };
        assert_eq!(
            of_interaction(&record),
            Some(Subject::Email("jo.kim@example.org".to_owned()))
        );
        record.messages.retain(|m| m.role == AuthorRole::Agent);
        assert_eq!(of_interaction(&record), None);
    }

    #[test]
    fn a_contact_is_its_email_else_its_phone_and_a_signal_its_contact_else_its_lead() {
        let mut contact = ContactRecord {
            source_system: "crm".to_owned(),
            source_id: "c1".to_owned(),
            name: "Jo Kim".to_owned(),
            email: Some("JO@example.org".to_owned()),
            phone: Some("+1 (555) 010-2000".to_owned()),
            date_of_birth: None,
            job_title: None,
            account: None,
        };
        assert_eq!(
            of_contact(&contact).map(|s| s.key_name()),
            Some("email:jo@example.org".to_owned())
        );
        contact.email = None;
        assert_eq!(
            of_contact(&contact).map(|s| s.key_name()),
            Some("phone:+15550102000".to_owned())
        );
        contact.phone = Some("12-34".to_owned());
        assert_eq!(of_contact(&contact), None);
        assert_eq!(
            Subject::phone("0555 010 2000"),
            Some(Subject::Phone("05550102000".to_owned()))
        );

        let mut signal: SignalRecord = serde_json::from_value(serde_json::json!({
            "source_system": "forms", "source_id": "l1",
            "occurred_at": "2026-01-01T00:00:00Z",
            "signal": {"kind": "lead", "email": "Lead@Example.org"}
        }))
        .unwrap();
        assert_eq!(
            of_signal(&signal),
            Some(Subject::Email("lead@example.org".to_owned()))
        );
        signal.contact = Some("contact@example.org".to_owned());
        assert_eq!(
            of_signal(&signal),
            Some(Subject::Email("contact@example.org".to_owned()))
        );
    }
}
