//! Zendesk tickets, the one mapping of a Zendesk ticket to an [`InteractionRecord`]: for the
//! `zendesk` import format (a ticket export as JSON lines, one ticket object per line with its
//! `comments` and the `users` it mentions side-loaded) and for webhook deliveries of integrations
//! of kind `zendesk` (`{"ticket": {…}}`, each comment with its `author` inline). Both shapes are
//! one serde type, so a ticket maps the same way whichever way it arrives (README, "Import
//! formats" and "Zendesk ticket events"). Fields Rapport does not use are ignored — real exports
//! carry many — but a missing field that Rapport needs is refused naming it
//! (`comments[1].created_at`), as Zendesk names it.
//!
//! Mapping: source system `zendesk`, source id the ticket id (a number, or a string as some tools
//! send it); the channel from `via.channel` (`email` → email, `chat`, `messaging` and
//! `native_messaging` → chat, `voice` and `phone` → call, anything else → ticket); the account
//! from `organization_id`, else `organization.external_id`. A comment's author is its inline
//! `author`, else the side-loaded user with its `author_id`; a non-public comment is an internal
//! note, an author with the role `end-user` the customer and any other role an agent; an author
//! whose role is unknown is the customer when it is the ticket's requester (or the ticket names
//! no requester) and an agent otherwise. The text is `plain_body`, else `body`, trimmed. Messages
//! are ordered by `created_at`; attachment file names of all comments become the interaction's.

use std::io::BufRead;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::ingest::jsonl::{self, reject};
use crate::ingest::{ImportSource, Records};
use crate::interactions::{AuthorRole, Channel, InteractionRecord, MessageRecord};
use crate::records::{FieldProblem, SourceRecord as _};

/// The source system of every Zendesk ticket.
pub const SOURCE_SYSTEM: &str = "zendesk";

/// A Zendesk id: a number, though some tools send it as a string.
#[derive(Debug, Deserialize)]
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

    fn is(&self, id: i64) -> bool {
        match self {
            Self::Number(number) => u64::try_from(id).ok() == Some(*number),
            Self::Text(text) => text.trim() == id.to_string(),
        }
    }
}

/// A webhook's ticket event: the ticket under `ticket`.
#[derive(Debug, Deserialize)]
pub struct TicketEvent {
    pub ticket: Ticket,
}

/// A Zendesk ticket with its comments, as an export line or inside a [`TicketEvent`].
#[derive(Debug, Deserialize)]
pub struct Ticket {
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
    requester_id: Option<ZendeskId>,
    #[serde(default)]
    organization_id: Option<ZendeskId>,
    #[serde(default)]
    organization: Option<Organization>,
    comments: Vec<Comment>,
    #[serde(default)]
    users: Vec<User>,
}

#[derive(Debug, Deserialize)]
struct Via {
    #[serde(default)]
    channel: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct Organization {
    #[serde(default)]
    external_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Comment {
    #[serde(default)]
    author_id: Option<i64>,
    /// Inline in webhook events; exports side-load `users` instead.
    #[serde(default)]
    author: Option<User>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    plain_body: Option<String>,
    /// Zendesk's own default: a comment is public unless it says otherwise.
    #[serde(default = "public_by_default")]
    public: bool,
    created_at: DateTime<Utc>,
    #[serde(default)]
    attachments: Vec<Attachment>,
}

fn public_by_default() -> bool {
    true
}

#[derive(Debug, Deserialize)]
struct Attachment {
    file_name: String,
}

#[derive(Debug, Deserialize)]
struct User {
    #[serde(default)]
    id: Option<i64>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    role: Option<String>,
}

fn channel(via: Option<&Via>) -> Channel {
    match via
        .and_then(|via| via.channel.as_ref())
        .and_then(serde_json::Value::as_str)
    {
        Some("email") => Channel::Email,
        Some("chat" | "messaging" | "native_messaging") => Channel::Chat,
        Some("voice" | "phone") => Channel::Call,
        _ => Channel::Ticket,
    }
}

/// Maps a ticket to an interaction and checks it; a problem names the field as Zendesk names it,
/// relative to the ticket (`comments[1].created_at`, `id`).
pub fn to_interaction(ticket: Ticket) -> Result<InteractionRecord, FieldProblem> {
    let mut attachments = Vec::new();
    // Each message with the index of its comment and whether its author was inline, to name a
    // problem where the sender put it.
    let mut messages: Vec<(Origin, MessageRecord)> = Vec::with_capacity(ticket.comments.len());
    for (index, comment) in ticket.comments.into_iter().enumerate() {
        if comment.author.is_none() && comment.author_id.is_none() {
            return Err(FieldProblem::new(
                format!("comments[{index}].author_id"),
                "is missing (neither author_id nor author is given)",
            ));
        }
        let side_loaded = comment
            .author_id
            .and_then(|author_id| ticket.users.iter().find(|user| user.id == Some(author_id)));
        let author = comment.author.as_ref().or(side_loaded);
        let is_requester = match (&ticket.requester_id, comment.author_id) {
            (None, _) => true,
            (Some(requester), Some(author_id)) => requester.is(author_id),
            (Some(_), None) => false,
        };
        let role = if comment.public {
            match author.and_then(|user| user.role.as_deref()) {
                Some("end-user") => AuthorRole::Customer,
                None if is_requester => AuthorRole::Customer,
                _ => AuthorRole::Agent,
            }
        } else {
            AuthorRole::InternalNote
        };
        let Some(text) = comment.plain_body.or(comment.body) else {
            return Err(FieldProblem::new(
                format!("comments[{index}].body"),
                "is missing (neither body nor plain_body is given)",
            ));
        };
        attachments.extend(
            comment
                .attachments
                .into_iter()
                .map(|attachment| attachment.file_name),
        );
        messages.push((
            Origin {
                comment: index,
                inline_author: comment.author.is_some(),
            },
            MessageRecord {
                role,
                author_name: author.and_then(|user| user.name.clone()),
                author_email: author.and_then(|user| user.email.clone()),
                sent_at: comment.created_at,
                text: text.trim().to_owned(),
                quoted: None,
                signature: None,
            },
        ));
    }
    // Oldest first; a stable sort keeps the ticket's order for equal times.
    messages.sort_by_key(|(_, message)| message.sent_at);
    let origins: Vec<Origin> = messages.iter().map(|(origin, _)| *origin).collect();
    let account = ticket
        .organization_id
        .map(ZendeskId::into_string)
        .or_else(|| ticket.organization.and_then(|org| org.external_id));
    let record = InteractionRecord {
        source_system: SOURCE_SYSTEM.to_owned(),
        source_id: ticket.id.into_string(),
        channel: channel(ticket.via.as_ref()),
        subject: ticket.subject,
        status: ticket.status,
        account,
        tags: ticket.tags,
        ai_tool: None,
        attachments,
        messages: messages.into_iter().map(|(_, message)| message).collect(),
    };
    if let Some(problem) = record.problems().into_iter().next() {
        return Err(FieldProblem::new(
            zendesk_field(&problem.field, &origins),
            problem.message,
        ));
    }
    Ok(record)
}

/// Where a message came from in the ticket.
#[derive(Clone, Copy)]
struct Origin {
    comment: usize,
    inline_author: bool,
}

/// A record field named as Zendesk names it; `origins` maps message indexes to comments.
fn zendesk_field(field: &str, origins: &[Origin]) -> String {
    if let Some(rest) = field.strip_prefix("messages[") {
        if let Some((index, name)) = rest.split_once("].") {
            let origin = index
                .parse::<usize>()
                .ok()
                .and_then(|index| origins.get(index));
            let index =
                origin.map_or_else(|| index.to_owned(), |origin| origin.comment.to_string());
            let author = if origin.is_some_and(|origin| origin.inline_author) {
                format!("comments[{index}].author")
            } else {
                format!("users (author of comments[{index}])")
            };
            let name = match name {
                "text" => "body",
                "author_name" => return format!("{author}.name"),
                "author_email" => return format!("{author}.email"),
                "sent_at" => "created_at",
                other => other,
            };
            return format!("comments[{index}].{name}");
        }
    }
    match field {
        "messages" => "comments".to_owned(),
        "source_id" => "id".to_owned(),
        "account" => "organization_id".to_owned(),
        other => other.to_owned(),
    }
}

/// The parser for [`crate::ingest::import_file`].
pub fn parser(_source: &dyn ImportSource, reader: Box<dyn BufRead>) -> Records<InteractionRecord> {
    Box::new(jsonl::values::<Ticket>(reader).map(|item| {
        let (line, ticket) = item?;
        let record = to_interaction(ticket)
            .map_err(|problem| reject(line, Some(problem.field), problem.message))?;
        Ok((line, record))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::Rejection;

    fn parse(text: &str) -> Vec<Result<(u64, InteractionRecord), Rejection>> {
        parser(
            &crate::ingest::FileSource(std::path::Path::new("z.json")),
            Box::new(std::io::Cursor::new(text.to_owned().into_bytes())),
        )
        .collect()
    }

    #[test]
    fn tickets_map_roles_channels_and_internal_notes() {
        let results = parse(concat!(
            r#"{"id":35436,"url":"https://x.zendesk.com/api/v2/tickets/35436.json","subject":"Help","status":"open","tags":["vip"],"via":{"channel":"email","source":{}},"requester_id":20,"organization_id":509,"custom_fields":[],"#,
            r#""comments":[{"id":1,"author_id":20,"body":"Hi","public":true,"created_at":"2026-10-01T08:00:00Z","attachments":[{"file_name":"log.txt"}]},"#,
            r#"{"id":2,"author_id":30,"body":"Check logs","public":false,"created_at":"2026-10-01T08:01:00Z"},"#,
            r#"{"id":3,"author_id":30,"plain_body":"Fixed","body":"**Fixed**","public":true,"created_at":"2026-10-01T08:02:00Z"}],"#,
            r#""users":[{"id":20,"name":"Ana","email":"ana@example.com","role":"end-user"},{"id":30,"name":"Sam","role":"admin"}]}"#,
        ));
        let (line, ticket) = results[0].as_ref().unwrap();
        assert_eq!(*line, 1);
        assert_eq!(ticket.source_id, "35436");
        assert_eq!(ticket.channel, Channel::Email);
        assert_eq!(ticket.account.as_deref(), Some("509"));
        assert_eq!(ticket.attachments, ["log.txt"]);
        let roles: Vec<AuthorRole> = ticket.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                AuthorRole::Customer,
                AuthorRole::InternalNote,
                AuthorRole::Agent
            ]
        );
        assert_eq!(ticket.messages[2].text, "Fixed");
    }

    #[test]
    fn missing_and_bad_fields_are_named_without_their_value() {
        let results = parse(concat!(
            r#"{"id":1,"comments":[{"author_id":1,"body":"Hi","public":true}]}"#,
            "\n",
            r#"{"id":2,"comments":[{"author_id":1,"body":"Hi","public":true,"created_at":"secret tuesday"}]}"#,
            "\n",
            r#"{"id":3,"comments":[{"author_id":1,"public":true,"created_at":"2026-10-01T08:00:00Z"}]}"#,
            "\n",
            r#"{"id":4,"comments":[{"author_id":7,"body":"Hi","public":true,"created_at":"2026-10-01T08:00:00Z"}],"users":[{"id":7,"email":"secret-address","role":"end-user"}]}"#,
            "\n",
            r#"{"subject":"no id","comments":[]}"#,
        ));
        let errors: Vec<(u64, String)> = results
            .iter()
            .map(|r| {
                let e = r.as_ref().unwrap_err();
                assert!(!e.to_string().contains("secret"), "{e}");
                (e.line, e.field.clone().unwrap_or_default())
            })
            .collect();
        assert_eq!(errors[0], (1, "comments[0].created_at".to_owned()));
        assert_eq!(errors[1], (2, "comments[0].created_at".to_owned()));
        assert_eq!(errors[2], (3, "comments[0].body".to_owned()));
        assert_eq!(
            errors[3],
            (4, "users (author of comments[0]).email".to_owned())
        );
        assert_eq!(errors[4], (5, "id".to_owned()));
    }

    #[test]
    fn a_webhook_ticket_event_maps_the_same_way_with_inline_authors() {
        let body = r#"{"ticket":{"id":"35436","subject":"Refund","status":"open","tags":["billing"],
            "via":{"channel":"messaging"},"organization":{"external_id":"ACME"},"url":"ignored",
            "comments":[
              {"id":2,"public":false,"created_at":"2026-11-01T10:00:00Z","body":"check plan",
               "author":{"name":"Agent A","role":"agent"}},
              {"id":1,"created_at":"2026-11-01T09:00:00Z","plain_body":" Hi ",
               "author":{"name":"Cus T","email":"cus@example.com","role":"end-user"},
               "attachments":[{"file_name":"invoice.pdf"}]},
              {"id":3,"created_at":"2026-11-01T11:00:00Z","body":"Done",
               "author":{"name":"Agent A","role":"admin"}}]}}"#;
        let event: TicketEvent = serde_json::from_str(body).unwrap();
        let record = to_interaction(event.ticket).unwrap();
        assert_eq!(record.source_system, "zendesk");
        assert_eq!(record.source_id, "35436");
        assert_eq!(record.channel, Channel::Chat);
        assert_eq!(record.account.as_deref(), Some("ACME"));
        assert_eq!(record.attachments, ["invoice.pdf"]);
        let roles: Vec<AuthorRole> = record.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                AuthorRole::Customer,
                AuthorRole::InternalNote,
                AuthorRole::Agent
            ]
        );
        assert_eq!(record.messages[0].text, "Hi");
        assert_eq!(
            record.messages[0].author_email.as_deref(),
            Some("cus@example.com")
        );

        // A problem in a sorted message is named at the comment the sender wrote it in.
        let bad = r#"{"ticket":{"id":1,"comments":[
              {"created_at":"2026-11-01T10:00:00Z","body":"later","author":{"role":"agent"}},
              {"created_at":"2026-11-01T09:00:00Z","body":"first",
               "author":{"email":"secret-address","role":"end-user"}}]}}"#;
        let event: TicketEvent = serde_json::from_str(bad).unwrap();
        let problem = to_interaction(event.ticket).unwrap_err();
        assert_eq!(problem.field, "comments[1].author.email");
        assert!(!problem.message.contains("secret"));
    }
}
