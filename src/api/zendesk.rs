//! Zendesk ticket events for webhooks: the JSON a Zendesk trigger or webhook sends with a ticket
//! and its comments, mapped to an [`InteractionRecord`]. (The Zendesk *export file* parser of
//! `rapport import` is separate; this module only reads webhook bodies.)
//!
//! Accepted shape (other fields are ignored):
//!
//! ```json
//! {"ticket": {"id": 35436, "subject": "…", "status": "open", "tags": ["billing"],
//!   "via": {"channel": "email"}, "organization_id": 57542,
//!   "comments": [{"id": 1, "public": true, "created_at": "2026-11-01T09:00:00Z",
//!     "plain_body": "…", "author": {"name": "…", "email": "…", "role": "end-user"},
//!     "attachments": [{"file_name": "invoice.pdf"}]}]}}
//! ```
//!
//! Mapping: `source_system` is `zendesk`, `source_id` the ticket id; `via.channel` `email` →
//! email, `chat`/`messaging`/`native_messaging` → chat, `voice`/`phone` → call, anything else →
//! ticket; `organization_id` (or `organization.external_id`) → `account`. A comment with
//! `public: false` is an internal note; otherwise an author role of `end-user` is the customer and
//! `agent` or `admin` the agent. The text is `plain_body`, else `body`. Attachment file names of
//! all comments become the interaction's attachments.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::api::{parse_json, ApiError, FieldError};
use crate::interactions::{AuthorRole, Channel, InteractionRecord, MessageRecord};

/// A Zendesk id: a number, though some tools send it as a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum ZendeskId {
    Number(u64),
    Text(String),
}

impl ZendeskId {
    fn into_string(self) -> String {
        match self {
            Self::Number(number) => number.to_string(),
            Self::Text(text) => text,
        }
    }
}

#[derive(Deserialize)]
struct Event {
    ticket: Ticket,
}

#[derive(Deserialize)]
struct Ticket {
    id: ZendeskId,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    via: Option<Via>,
    #[serde(default)]
    organization_id: Option<ZendeskId>,
    #[serde(default)]
    organization: Option<Organization>,
    comments: Vec<Comment>,
}

#[derive(Deserialize)]
struct Via {
    #[serde(default)]
    channel: Option<String>,
}

#[derive(Deserialize)]
struct Organization {
    #[serde(default)]
    external_id: Option<String>,
}

#[derive(Deserialize)]
struct Comment {
    #[serde(default = "public_by_default")]
    public: bool,
    created_at: DateTime<Utc>,
    #[serde(default)]
    plain_body: Option<String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    author: Option<Author>,
    #[serde(default)]
    attachments: Vec<Attachment>,
}

fn public_by_default() -> bool {
    true
}

#[derive(Deserialize)]
struct Author {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    role: Option<String>,
}

#[derive(Deserialize)]
struct Attachment {
    file_name: String,
}

fn channel_of(via: Option<&str>) -> Channel {
    match via {
        Some("email") => Channel::Email,
        Some("chat" | "messaging" | "native_messaging") => Channel::Chat,
        Some("voice" | "phone") => Channel::Call,
        _ => Channel::Ticket,
    }
}

/// Maps a Zendesk ticket event body to an interaction, naming the bad field on failure.
pub fn to_interaction(body: &[u8]) -> Result<InteractionRecord, ApiError> {
    let event: Event = parse_json(body)?;
    let ticket = event.ticket;
    let mut attachments = Vec::new();
    let mut messages = Vec::new();
    for (index, comment) in ticket.comments.into_iter().enumerate() {
        let Some(text) = comment.plain_body.or(comment.body) else {
            return Err(ApiError::Invalid(vec![FieldError::body(
                &format!("ticket.comments[{index}].plain_body"),
                "a comment needs plain_body or body",
            )]));
        };
        let author = comment.author;
        let author_role = author.as_ref().and_then(|author| author.role.as_deref());
        let role = match (comment.public, author_role) {
            (false, _) => AuthorRole::InternalNote,
            (true, Some("agent" | "admin")) => AuthorRole::Agent,
            (true, _) => AuthorRole::Customer,
        };
        attachments.extend(comment.attachments.into_iter().map(|file| file.file_name));
        messages.push(MessageRecord {
            role,
            author_name: author.as_ref().and_then(|author| author.name.clone()),
            author_email: author.and_then(|author| author.email),
            sent_at: comment.created_at,
            text,
            quoted: None,
            signature: None,
        });
    }
    messages.sort_by_key(|message| message.sent_at);
    let account = ticket
        .organization_id
        .map(ZendeskId::into_string)
        .or_else(|| ticket.organization.and_then(|org| org.external_id));
    Ok(InteractionRecord {
        source_system: "zendesk".to_owned(),
        source_id: ticket.id.into_string(),
        channel: channel_of(ticket.via.as_ref().and_then(|via| via.channel.as_deref())),
        subject: ticket.subject,
        status: ticket.status,
        account,
        tags: ticket.tags,
        ai_tool: None,
        attachments,
        messages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_event_maps_to_an_interaction() {
        let body = br#"{"ticket":{"id":35436,"subject":"Refund","status":"open","tags":["billing"],
            "via":{"channel":"email"},"organization_id":57542,"url":"ignored",
            "comments":[
              {"id":2,"public":false,"created_at":"2026-11-01T10:00:00Z","body":"check plan",
               "author":{"name":"Agent A","role":"agent"}},
              {"id":1,"public":true,"created_at":"2026-11-01T09:00:00Z","plain_body":"Hi",
               "author":{"name":"Cus T","email":"cus@example.com","role":"end-user"},
               "attachments":[{"file_name":"invoice.pdf"}]}]}}"#;
        let record = to_interaction(body).unwrap();
        assert_eq!(record.source_system, "zendesk");
        assert_eq!(record.source_id, "35436");
        assert_eq!(record.channel, Channel::Email);
        assert_eq!(record.account.as_deref(), Some("57542"));
        assert_eq!(record.attachments, ["invoice.pdf"]);
        assert_eq!(record.messages[0].role, AuthorRole::Customer);
        assert_eq!(record.messages[1].role, AuthorRole::InternalNote);
    }
}
