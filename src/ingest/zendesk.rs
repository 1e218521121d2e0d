//! The `zendesk` format: a Zendesk ticket export as JSON lines, one ticket object per line with
//! its `comments` array and the `users` it mentions side-loaded on the ticket (README, "Import
//! formats"). Fields Rapport does not use are ignored — real exports carry many — but a missing
//! field that Rapport needs is refused naming it (`comments[1].created_at`).
//!
//! Mapping: source system `zendesk`, source id the ticket id; the channel from `via.channel`
//! (`email` → email, `chat` and `native_messaging` → chat, `voice` → call, anything else →
//! ticket); a comment's role from its author's user role (`end-user` → customer, `agent` and
//! `admin` → agent), a non-public comment is an internal note. An author missing from `users` is
//! the customer when it is the ticket's requester and an agent otherwise.

use std::io::BufRead;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::ingest::jsonl::{self, reject};
use crate::ingest::{ImportSource, Records, Rejection};
use crate::interactions::{AuthorRole, Channel, InteractionRecord, MessageRecord};
use crate::records::SourceRecord as _;

/// The source system of every imported ticket.
pub const SOURCE_SYSTEM: &str = "zendesk";

#[derive(Debug, Deserialize)]
struct Ticket {
    id: u64,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    via: Option<Via>,
    #[serde(default)]
    requester_id: Option<u64>,
    #[serde(default)]
    organization_id: Option<u64>,
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
struct Comment {
    author_id: i64,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    plain_body: Option<String>,
    public: bool,
    created_at: DateTime<Utc>,
    #[serde(default)]
    attachments: Vec<Attachment>,
}

#[derive(Debug, Deserialize)]
struct Attachment {
    file_name: String,
}

#[derive(Debug, Deserialize)]
struct User {
    id: i64,
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
        Some("chat" | "native_messaging") => Channel::Chat,
        Some("voice") => Channel::Call,
        _ => Channel::Ticket,
    }
}

fn interaction(line: u64, ticket: Ticket) -> Result<InteractionRecord, Rejection> {
    let mut attachments = Vec::new();
    let mut messages = Vec::with_capacity(ticket.comments.len());
    for (index, comment) in ticket.comments.into_iter().enumerate() {
        let author = ticket
            .users
            .iter()
            .find(|user| user.id == comment.author_id);
        let is_requester = u64::try_from(comment.author_id).ok() == ticket.requester_id;
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
            return Err(reject(
                line,
                Some(format!("comments[{index}].body")),
                "is missing (neither body nor plain_body is given)",
            ));
        };
        attachments.extend(
            comment
                .attachments
                .into_iter()
                .map(|attachment| attachment.file_name),
        );
        messages.push(MessageRecord {
            role,
            author_name: author.and_then(|user| user.name.clone()),
            author_email: author.and_then(|user| user.email.clone()),
            sent_at: comment.created_at,
            text: text.trim().to_owned(),
            quoted: None,
            signature: None,
        });
    }
    Ok(InteractionRecord {
        source_system: SOURCE_SYSTEM.to_owned(),
        source_id: ticket.id.to_string(),
        channel: channel(ticket.via.as_ref()),
        subject: ticket.subject,
        status: ticket.status,
        account: ticket.organization_id.map(|id| id.to_string()),
        tags: ticket.tags,
        ai_tool: None,
        attachments,
        messages,
    })
}

/// Record fields named as Zendesk names them.
fn zendesk_field(field: &str) -> String {
    if let Some(rest) = field.strip_prefix("messages[") {
        if let Some((index, name)) = rest.split_once("].") {
            let name = match name {
                "text" => "body",
                "author_name" => return format!("users (author of comments[{index}]).name"),
                "author_email" => return format!("users (author of comments[{index}]).email"),
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
        let record = interaction(line, ticket)?;
        if let Some(problem) = record.problems().into_iter().next() {
            return Err(reject(
                line,
                Some(zendesk_field(&problem.field)),
                problem.message,
            ));
        }
        Ok((line, record))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
