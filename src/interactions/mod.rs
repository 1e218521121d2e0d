//! Interactions: tickets, chats, e-mail threads and call transcripts, each with its ordered
//! messages. [`InteractionRecord`] is the import/export schema (one JSON object per line in the
//! `jsonl` format); [`Interaction`] is the stored record around it. Everything here is tenant
//! content, sealed under the tenant's keys.

pub mod query;
pub mod routes;

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::records::refs::{self, Reference};
use crate::records::{
    check_email, check_optional, check_short, FieldProblem, RecordKind, RecordStore, SourceRecord,
    Stored,
};

/// The tenant's interactions.
pub type InteractionStore = RecordStore<InteractionRecord>;

/// How the conversation reached the company.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Channel {
    Ticket,
    Chat,
    Email,
    Call,
    SalesChat,
}

impl Channel {
    pub const ALL: [Channel; 5] = [
        Channel::Ticket,
        Channel::Chat,
        Channel::Email,
        Channel::Call,
        Channel::SalesChat,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ticket => "ticket",
            Self::Chat => "chat",
            Self::Email => "email",
            Self::Call => "call",
            Self::SalesChat => "sales-chat",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Who wrote a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AuthorRole {
    Customer,
    Agent,
    AiAgent,
    InternalNote,
}

impl AuthorRole {
    /// The label the thread shows beside each message, so the role never rests on colour alone.
    pub fn label(self) -> &'static str {
        match self {
            Self::Customer => "Customer",
            Self::Agent => "Agent",
            Self::AiAgent => "AI agent",
            Self::InternalNote => "Internal note",
        }
    }

    /// The CSS class suffix of the message block.
    pub fn css_class(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Agent => "agent",
            Self::AiAgent => "ai-agent",
            Self::InternalNote => "internal-note",
        }
    }
}

impl std::str::FromStr for Channel {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|channel| channel.as_str() == value)
            .ok_or_else(|| {
                format!(
                    "unknown channel (use one of: {})",
                    Self::ALL.map(Channel::as_str).join(", ")
                )
            })
    }
}

/// One message of a conversation, as imported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageRecord {
    pub role: AuthorRole,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_email: Option<String>,
    pub sent_at: DateTime<Utc>,
    /// The new text of the message.
    pub text: String,
    /// Earlier messages quoted below the new text (e-mail), kept apart from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quoted: Option<String>,
    /// The author's signature block, kept apart from the text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// An interaction as imported and exported: Rapport's own `jsonl` schema.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InteractionRecord {
    /// The system the interaction comes from (e.g. `zendesk`, `mail`, `phone`).
    pub source_system: String,
    /// Its id in that system; with `source_system` it makes re-imports update, not duplicate.
    pub source_id: String,
    pub channel: Channel,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The customer account (its source id or domain), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The AI tool that answered, for AI-supported service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ai_tool: Option<String>,
    /// File names of attachments (their contents are not imported).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<String>,
    pub messages: Vec<MessageRecord>,
}

/// A stored interaction.
pub type Interaction = Stored<InteractionRecord>;

const MAX_TEXT: usize = 1024 * 1024;
const MAX_MESSAGES: usize = 10_000;
const MAX_LIST: usize = 100;

impl SourceRecord for InteractionRecord {
    fn subject(&self) -> Option<crate::privacy::subjects::Subject> {
        crate::privacy::subjects::of_interaction(self)
    }

    const KIND: RecordKind = RecordKind::Interaction;

    fn source_system(&self) -> &str {
        &self.source_system
    }

    fn source_id(&self) -> &str {
        &self.source_id
    }

    /// Its account, and every message author's address and name.
    fn references(&self) -> Vec<Reference> {
        let mut references = Vec::new();
        refs::collect(
            &mut references,
            Reference::account,
            [self.account.as_deref()],
        );
        let authors = self.messages.iter();
        refs::collect(
            &mut references,
            Reference::email,
            authors
                .clone()
                .map(|message| message.author_email.as_deref()),
        );
        refs::collect(
            &mut references,
            Reference::name,
            authors.map(|message| message.author_name.as_deref()),
        );
        references
    }

    /// Subject, message texts and authors' names and addresses. Of quoted text, which repeats
    /// earlier messages, and of signatures, only the words that hold an e-mail address
    /// ("jane@example.com wrote:"): so an address is found there too, by search and by a privacy
    /// request for its subject (`privacy::requests::find::interactions_mentioning`), while their
    /// other words neither count twice in the ranking nor swell the index.
    fn search_texts(&self) -> Vec<&str> {
        let mut texts: Vec<&str> = self.subject.iter().map(String::as_str).collect();
        for message in &self.messages {
            texts.push(&message.text);
            texts.extend(message.author_name.as_deref());
            texts.extend(message.author_email.as_deref());
            for kept_apart in [&message.quoted, &message.signature] {
                texts.extend(
                    kept_apart
                        .iter()
                        .flat_map(|text| text.split_whitespace())
                        .filter(|word| word.contains('@')),
                );
            }
        }
        texts
    }

    fn problems(&self) -> Vec<FieldProblem> {
        let mut problems = Vec::new();
        check_short(&mut problems, "source_system", &self.source_system, true);
        check_short(&mut problems, "source_id", &self.source_id, true);
        for (name, value) in [
            ("subject", &self.subject),
            ("status", &self.status),
            ("account", &self.account),
            ("ai_tool", &self.ai_tool),
        ] {
            check_optional(&mut problems, name, value.as_ref());
        }
        for (name, list) in [("tags", &self.tags), ("attachments", &self.attachments)] {
            if list.len() > MAX_LIST {
                problems.push(FieldProblem::new(
                    name,
                    format!("must have at most {MAX_LIST} entries"),
                ));
            }
            for (index, value) in list.iter().enumerate() {
                check_short(&mut problems, &format!("{name}[{index}]"), value, true);
            }
        }
        if self.messages.is_empty() || self.messages.len() > MAX_MESSAGES {
            problems.push(FieldProblem::new(
                "messages",
                format!("must have 1 to {MAX_MESSAGES} messages"),
            ));
        }
        for (index, message) in self.messages.iter().enumerate() {
            let field = |name: &str| format!("messages[{index}].{name}");
            if message.text.trim().is_empty() {
                problems.push(FieldProblem::new(field("text"), "must not be empty"));
            }
            for (name, value) in [
                ("text", Some(&message.text)),
                ("quoted", message.quoted.as_ref()),
                ("signature", message.signature.as_ref()),
            ] {
                if value.is_some_and(|text| text.len() > MAX_TEXT) {
                    problems.push(FieldProblem::new(
                        field(name),
                        format!("must be at most {MAX_TEXT} bytes"),
                    ));
                }
            }
            check_optional(
                &mut problems,
                &field("author_name"),
                message.author_name.as_ref(),
            );
            check_email(
                &mut problems,
                &field("author_email"),
                message.author_email.as_ref(),
            );
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> InteractionRecord {
        serde_json::from_str(
            r#"{"source_system":"desk","source_id":"1","channel":"chat","messages":[
                {"role":"customer","sent_at":"2026-01-02T03:04:05Z","text":"Hello"}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn a_valid_record_has_no_problems_and_problems_name_their_field() {
        use crate::records::SourceRecord as _;
        assert!(record().problems().is_empty());
        let mut bad = record();
        bad.source_id = String::new();
        bad.messages[0].author_email = Some("not an address".to_owned());
        let fields: Vec<String> = bad.problems().into_iter().map(|p| p.field).collect();
        assert_eq!(fields, ["source_id", "messages[0].author_email"]);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let error = serde_json::from_str::<InteractionRecord>(
            r#"{"source_system":"d","source_id":"1","channel":"chat","messages":[],"colour":"red"}"#,
        )
        .unwrap_err();
        assert!(error.to_string().contains("unknown field `colour`"));
    }
}
