//! The `mbox` format: e-mail threads from an mbox file, each message parsed by a real MIME parser
//! (`mail-parser`). See README, "Import formats" for the rules summarised here.
//!
//! Threads: messages are joined through their `Message-ID`, `In-Reply-To` and `References`
//! headers (messages that refer to a common message belong to one thread even when that message
//! is not in the file). The thread's root is its earliest message in the file that refers to no
//! other message of the file; the thread's source id is the root's `Message-ID` (in angle
//! brackets), its subject the root's subject without `Re:`/`Fwd:` prefixes. A message that comes
//! twice (the same `Message-ID`) is taken once.
//!
//! Roles: the root's sender is the customer who wrote in; messages from an address in the
//! root sender's domain are `customer`, all others `agent`. (A thread the company starts comes out
//! reversed; import it as `jsonl` to set roles explicitly.)
//!
//! Text: the first text/plain body, or the HTML body with its markup stripped when there is no
//! plain one. Quoted lines (`>`), their "On … wrote:" attribution and everything after an Outlook
//! "-----Original Message-----" line go into `quoted`; the block after a `-- ` signature line (up
//! to any quote) into `signature`; the rest is the message's text. Attachments' file names are
//! kept, their contents are not imported.
//!
//! Streaming: the file is read twice. A first read through the path collects only the thread
//! structure (ids, no bodies). The second read parses each message and emits its thread as soon as
//! the thread's last message in the file has been read, so memory holds only the open threads.
//! A separator is a line starting `From ` at the start of the file or after a blank line;
//! `>From ` lines in bodies are unescaped (mboxrd).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};

use chrono::{DateTime, Utc};
use mail_parser::{HeaderValue, MessageParser, MimeHeaders as _};

use crate::ingest::{ImportSource, Records, Rejection};
use crate::interactions::{AuthorRole, Channel, InteractionRecord, MessageRecord};
use crate::records::SourceRecord as _;

/// The source system of every imported thread.
pub const SOURCE_SYSTEM: &str = "mail";

/// The largest message accepted (attachments included).
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// The most messages one thread may hold: the interaction schema's own limit.
pub const MAX_THREAD_MESSAGES: usize = 10_000;
/// The most text (new text, quotes and signatures) one thread may hold, as a `jsonl` line may.
/// An open thread is held in memory until its last message is read, so this bounds it.
pub const MAX_THREAD_TEXT_BYTES: usize = 32 * 1024 * 1024;

fn reject(line: u64, field: Option<&str>, message: impl Into<String>) -> Rejection {
    Rejection {
        line,
        field: field.map(str::to_owned),
        message: message.into(),
    }
}

/// One message's raw bytes and the line of its `From ` separator.
struct RawMessage {
    line: u64,
    bytes: Vec<u8>,
    too_large: bool,
}

/// Splits an mbox into messages, or reports text that is not inside one.
struct Splitter<R> {
    reader: R,
    line: u64,
    previous_blank: bool,
    current: Option<RawMessage>,
    buffer: Vec<u8>,
    /// Text before the first separator is reported once.
    reported_preamble: bool,
}

impl<R: BufRead> Splitter<R> {
    fn new(reader: R) -> Self {
        Self {
            reader,
            line: 0,
            previous_blank: true,
            current: None,
            buffer: Vec::new(),
            reported_preamble: false,
        }
    }
}

impl<R: BufRead> Iterator for Splitter<R> {
    type Item = Result<RawMessage, Rejection>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.buffer.clear();
            let read = self
                .reader
                .by_ref()
                .take(MAX_MESSAGE_BYTES as u64 + 1)
                .read_until(b'\n', &mut self.buffer);
            match read {
                Ok(0) => return self.current.take().map(Ok),
                Ok(_) => {}
                Err(error) => {
                    self.current = None;
                    return Some(Err(reject(
                        self.line + 1,
                        None,
                        format!("cannot be read: {error}"),
                    )));
                }
            }
            self.line += 1;
            let blank = self.buffer.iter().all(u8::is_ascii_whitespace);
            let separator = self.previous_blank && self.buffer.starts_with(b"From ");
            self.previous_blank = blank;
            if separator {
                let next = RawMessage {
                    line: self.line,
                    bytes: Vec::new(),
                    too_large: false,
                };
                if let Some(done) = self.current.replace(next) {
                    return Some(Ok(done));
                }
                continue;
            }
            let Some(message) = &mut self.current else {
                if !blank && !self.reported_preamble {
                    self.reported_preamble = true;
                    return Some(Err(reject(
                        self.line,
                        None,
                        "is not part of a message: an mbox message starts with a `From ` line",
                    )));
                }
                continue;
            };
            if message.too_large {
                continue;
            }
            // mboxrd: a body line `>From ` (any number of `>`) was escaped by one `>`.
            let quoted_from = self.buffer.starts_with(b">")
                && self
                    .buffer
                    .iter()
                    .position(|&byte| byte != b'>')
                    .is_some_and(|start| self.buffer[start..].starts_with(b"From "));
            let line = if quoted_from {
                &self.buffer[1..]
            } else {
                &self.buffer[..]
            };
            if message.bytes.len() + line.len() > MAX_MESSAGE_BYTES {
                message.too_large = true;
                message.bytes = Vec::new();
            } else {
                message.bytes.extend_from_slice(line);
            }
        }
    }
}

fn header_ids(value: &HeaderValue<'_>) -> Vec<String> {
    match value {
        HeaderValue::Text(id) => vec![id.to_string()],
        HeaderValue::TextList(ids) => ids.iter().map(ToString::to_string).collect(),
        _ => Vec::new(),
    }
}

/// A message's own id (a synthetic one that cannot clash when it has none) and the ids it refers to.
fn ids_of(index: usize, bytes: &[u8], headers_only: bool) -> (String, Vec<String>) {
    let parser = MessageParser::default();
    let parsed = if headers_only {
        parser.parse_headers(bytes)
    } else {
        parser.parse(bytes)
    };
    let synthetic = format!("\u{0}message {index}");
    let Some(message) = parsed else {
        return (synthetic, Vec::new());
    };
    let own = message.message_id().map_or(synthetic, str::to_owned);
    let mut parents = header_ids(message.references());
    parents.extend(header_ids(message.in_reply_to()));
    (own, parents)
}

/// Union-find over message ids.
#[derive(Default)]
struct Ids {
    index: HashMap<String, usize>,
    parent: Vec<usize>,
}

impl Ids {
    fn node(&mut self, id: &str) -> usize {
        if let Some(&node) = self.index.get(id) {
            return node;
        }
        let node = self.parent.len();
        self.parent.push(node);
        self.index.insert(id.to_owned(), node);
        node
    }

    fn find(&mut self, mut node: usize) -> usize {
        while self.parent[node] != node {
            self.parent[node] = self.parent[self.parent[node]];
            node = self.parent[node];
        }
        node
    }

    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            self.parent[a.max(b)] = a.min(b);
        }
    }
}

/// The thread structure: for each message in file order its thread, and for each thread its
/// root message and last message.
struct Structure {
    thread_of: Vec<usize>,
    root: HashMap<usize, usize>,
    last: HashMap<usize, usize>,
}

fn structure(source: &dyn ImportSource) -> std::io::Result<Structure> {
    let file = BufReader::with_capacity(256 * 1024, source.open()?.0);
    let mut ids = Ids::default();
    // Per message: its node and the nodes that decide whether it is a root — the first and last
    // `References` entries and `In-Reply-To` — kept small, since there is one per message.
    let mut messages: Vec<(usize, [usize; 3])> = Vec::new();
    for raw in Splitter::new(file).flatten() {
        let index = messages.len();
        let (own, parents) = ids_of(index, &raw.bytes, true);
        let own = ids.node(&own);
        let parents: Vec<usize> = parents.iter().map(|id| ids.node(id)).collect();
        // `parents` is References then In-Reply-To: the first, the last two.
        let nearest = match parents.len() {
            0 => [own; 3],
            count => [
                parents[0],
                parents[count.saturating_sub(2)],
                parents[count - 1],
            ],
        };
        for &parent in &parents {
            ids.union(own, parent);
        }
        messages.push((own, nearest));
    }
    let present: HashSet<usize> = messages.iter().map(|(own, _)| *own).collect();
    let mut structure = Structure {
        thread_of: Vec::with_capacity(messages.len()),
        root: HashMap::new(),
        last: HashMap::new(),
    };
    let mut first: HashMap<usize, usize> = HashMap::new();
    for (index, (own, parents)) in messages.iter().enumerate() {
        let thread = ids.find(*own);
        structure.thread_of.push(thread);
        structure.last.insert(thread, index);
        first.entry(thread).or_insert(index);
        let refers_inside = parents
            .iter()
            .any(|parent| parent != own && present.contains(parent));
        if !refers_inside {
            structure.root.entry(thread).or_insert(index);
        }
    }
    for (thread, index) in first {
        structure.root.entry(thread).or_insert(index);
    }
    Ok(structure)
}

/// Splits a message body into its new text, the quoted text and the signature.
pub fn split_body(body: &str) -> (String, Option<String>, Option<String>) {
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Kind {
        Text,
        Quoted,
        Signature,
        Delimiter,
    }
    let lines: Vec<&str> = body.lines().collect();
    let mut kinds = vec![Kind::Text; lines.len()];
    let mut original_message = false;
    for (index, line) in lines.iter().enumerate() {
        let trimmed = line.trim();
        if original_message || line.starts_with('>') {
            kinds[index] = Kind::Quoted;
        } else if trimmed.starts_with("-----Original Message-----") {
            original_message = true;
            kinds[index] = Kind::Quoted;
        } else if trimmed.ends_with("wrote:")
            && lines[index + 1..]
                .iter()
                .find(|next| !next.trim().is_empty())
                .is_some_and(|next| next.starts_with('>'))
        {
            kinds[index] = Kind::Quoted;
            // An attribution wrapped over two lines: "On …, Name <" / "address> wrote:".
            if !trimmed.starts_with("On ")
                && index > 0
                && lines[index - 1].trim_start().starts_with("On ")
            {
                kinds[index - 1] = Kind::Quoted;
            }
        }
    }
    let mut in_signature = false;
    for (index, line) in lines.iter().enumerate() {
        if kinds[index] == Kind::Quoted {
            in_signature = false;
        } else if *line == "-- " || *line == "--" {
            in_signature = true;
            kinds[index] = Kind::Delimiter;
        } else if in_signature {
            kinds[index] = Kind::Signature;
        }
    }
    let join = |wanted: Kind| {
        let text = lines
            .iter()
            .zip(&kinds)
            .filter(|(_, kind)| **kind == wanted)
            .map(|(line, _)| *line)
            .collect::<Vec<_>>()
            .join("\n");
        text.trim().to_owned()
    };
    let optional = |text: String| (!text.is_empty()).then_some(text);
    (
        join(Kind::Text),
        optional(join(Kind::Quoted)),
        optional(join(Kind::Signature)),
    )
}

fn domain(address: &str) -> Option<String> {
    address
        .rsplit_once('@')
        .map(|(_, domain)| domain.to_ascii_lowercase())
}

/// A message read for its thread.
struct ThreadMessage {
    line: u64,
    from_domain: Option<String>,
    record: MessageRecord,
}

/// A thread whose last message has not been read yet.
#[derive(Default)]
struct OpenThread {
    messages: Vec<ThreadMessage>,
    /// The text bytes of `messages`.
    text_bytes: usize,
    seen: HashSet<String>,
    attachments: Vec<String>,
    root: Option<Root>,
    error: Option<Rejection>,
}

struct Root {
    line: u64,
    id: Option<String>,
    subject: Option<String>,
    domain: Option<String>,
}

struct Threads<R> {
    messages: Splitter<R>,
    structure: Structure,
    index: usize,
    open: HashMap<usize, OpenThread>,
}

impl<R: BufRead> Threads<R> {
    fn read(&mut self, raw: &RawMessage) -> Option<Result<(u64, InteractionRecord), Rejection>> {
        let index = self.index;
        self.index += 1;
        let thread = *self.structure.thread_of.get(index)?;
        let is_root = self.structure.root.get(&thread) == Some(&index);
        let open = self.open.entry(thread).or_default();
        if raw.too_large {
            open.error.get_or_insert_with(|| {
                reject(
                    raw.line,
                    None,
                    format!("is a message larger than {MAX_MESSAGE_BYTES} bytes"),
                )
            });
        } else if open.error.is_none() {
            if let Err(rejection) = add_message(open, raw, index, is_root) {
                open.error = Some(rejection);
            }
        }
        if open.error.is_some() {
            // The thread is rejected: nothing more of it needs to be held until its end.
            open.messages = Vec::new();
            open.attachments = Vec::new();
        }
        if self.structure.last.get(&thread) != Some(&index) {
            return None;
        }
        let open = self.open.remove(&thread)?;
        Some(finish(open))
    }
}

fn add_message(
    open: &mut OpenThread,
    raw: &RawMessage,
    index: usize,
    is_root: bool,
) -> Result<(), Rejection> {
    let Some(message) = MessageParser::default().parse(&raw.bytes) else {
        return Err(reject(
            raw.line,
            None,
            "is not an e-mail message that can be parsed",
        ));
    };
    let id = message.message_id().map(|id| format!("<{id}>"));
    let key = id
        .clone()
        .unwrap_or_else(|| format!("\u{0}message {index}"));
    if !open.seen.insert(key) {
        // The same message twice (an inbox and a sent-mail copy): keep the first.
        return Ok(());
    }
    let sender = message.from().and_then(|from| from.first());
    let author_email = sender
        .and_then(|sender| sender.address())
        .map(str::to_owned);
    let from_domain = author_email.as_deref().and_then(domain);
    if is_root {
        open.root = Some(Root {
            line: raw.line,
            id,
            subject: message.thread_name().map(str::to_owned),
            domain: from_domain.clone(),
        });
    }
    let sent_at = message
        .date()
        .filter(|date| date.is_valid())
        .and_then(|date| DateTime::<Utc>::from_timestamp(date.to_timestamp(), 0))
        .ok_or_else(|| {
            reject(
                raw.line,
                Some("Date"),
                "is missing or not a valid RFC 5322 date",
            )
        })?;
    let body = message.body_text(0).unwrap_or_default();
    let (text, quoted, signature) = split_body(&body);
    open.attachments.extend(
        message
            .attachments()
            .filter_map(|part| part.attachment_name())
            .map(str::to_owned),
    );
    if open.messages.len() >= MAX_THREAD_MESSAGES {
        return Err(reject(
            raw.line,
            Some("References"),
            format!("puts its thread over {MAX_THREAD_MESSAGES} messages"),
        ));
    }
    let text_bytes = text.len()
        + quoted.as_ref().map_or(0, String::len)
        + signature.as_ref().map_or(0, String::len);
    open.text_bytes += text_bytes;
    if open.text_bytes > MAX_THREAD_TEXT_BYTES {
        return Err(reject(
            raw.line,
            Some("body"),
            format!(
                "puts its thread over {} MiB of text",
                MAX_THREAD_TEXT_BYTES / (1024 * 1024)
            ),
        ));
    }
    open.messages.push(ThreadMessage {
        line: raw.line,
        from_domain,
        record: MessageRecord {
            role: AuthorRole::Customer,
            author_name: sender.and_then(|sender| sender.name()).map(str::to_owned),
            author_email,
            sent_at,
            text,
            quoted,
            signature,
        },
    });
    Ok(())
}

/// The header a record field comes from.
fn header_of(field: &str) -> &str {
    match field {
        "text" | "quoted" | "signature" => "body",
        "author_name" | "author_email" => "From",
        "sent_at" => "Date",
        "source_id" | "source_system" => "Message-ID",
        "subject" => "Subject",
        "attachments" => "attachment name",
        other => other,
    }
}

fn finish(mut open: OpenThread) -> Result<(u64, InteractionRecord), Rejection> {
    if let Some(rejection) = open.error {
        return Err(rejection);
    }
    let Some(root) = open.root else {
        let line = open.messages.first().map_or(0, |message| message.line);
        return Err(reject(line, None, "has no readable first message"));
    };
    let Some(source_id) = root.id else {
        return Err(reject(
            root.line,
            Some("Message-ID"),
            "is missing from the thread's first message",
        ));
    };
    // Oldest first; a stable sort keeps the file's order for equal times.
    open.messages.sort_by_key(|message| message.record.sent_at);
    let lines: Vec<u64> = open.messages.iter().map(|message| message.line).collect();
    let messages = open
        .messages
        .into_iter()
        .map(|mut message| {
            message.record.role =
                if message.from_domain.is_some() && message.from_domain == root.domain {
                    AuthorRole::Customer
                } else {
                    AuthorRole::Agent
                };
            message.record
        })
        .collect();
    let record = InteractionRecord {
        source_system: SOURCE_SYSTEM.to_owned(),
        source_id,
        channel: Channel::Email,
        subject: root.subject.filter(|subject| !subject.trim().is_empty()),
        status: None,
        account: None,
        tags: Vec::new(),
        ai_tool: None,
        attachments: open.attachments,
        messages,
    };
    if let Some(problem) = record.problems().into_iter().next() {
        let (line, field) = match problem.field.strip_prefix("messages[") {
            Some(rest) => {
                let (index, name) = rest.split_once("].").unwrap_or((rest, "body"));
                let line = index
                    .parse::<usize>()
                    .ok()
                    .and_then(|index| lines.get(index))
                    .copied()
                    .unwrap_or(root.line);
                (line, header_of(name))
            }
            None => (
                root.line,
                header_of(problem.field.split('[').next().unwrap_or_default()),
            ),
        };
        return Err(reject(line, Some(field), problem.message));
    }
    Ok((root.line, record))
}

impl<R: BufRead> Iterator for Threads<R> {
    type Item = Result<(u64, InteractionRecord), Rejection>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.messages.next()? {
                Err(rejection) => return Some(Err(rejection)),
                Ok(raw) => {
                    if let Some(done) = self.read(&raw) {
                        return Some(done);
                    }
                }
            }
        }
    }
}

/// The parser for [`crate::ingest::import_file`]: reads the source once for the thread
/// structure, then `reader` for the messages.
pub fn parser(source: &dyn ImportSource, reader: Box<dyn BufRead>) -> Records<InteractionRecord> {
    match structure(source) {
        Ok(structure) => Box::new(Threads {
            messages: Splitter::new(reader),
            structure,
            index: 0,
            open: HashMap::new(),
        }),
        Err(error) => Box::new(std::iter::once(Err(reject(
            0,
            None,
            format!("cannot be read: {error}"),
        )))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_attributions_and_signatures_are_kept_apart() {
        let (text, quoted, signature) = split_body(
            "Hi Priya,\n\nyes, five more seats please.\n\n-- \nTom Becker\nContoso\n\nOn Tue, 6 Oct 2026 at 09:12, Priya Nair <\npriya@vendor.example> wrote:\n> The price stays the same.\n>\n> Priya\n",
        );
        assert_eq!(text, "Hi Priya,\n\nyes, five more seats please.");
        assert_eq!(signature.as_deref(), Some("Tom Becker\nContoso"));
        assert_eq!(
            quoted.as_deref(),
            Some("On Tue, 6 Oct 2026 at 09:12, Priya Nair <\npriya@vendor.example> wrote:\n> The price stays the same.\n>\n> Priya")
        );
        let (text, quoted, _) =
            split_body("Thanks!\n\n-----Original Message-----\nFrom: a\nSent: b\n\nOld text");
        assert_eq!(text, "Thanks!");
        assert!(quoted.unwrap().ends_with("Old text"));
    }

    fn write(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.mbox");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn parse(path: &std::path::Path) -> Vec<Result<(u64, InteractionRecord), Rejection>> {
        let reader = BufReader::new(std::fs::File::open(path).unwrap());
        parser(&crate::ingest::FileSource(path), Box::new(reader)).collect()
    }

    #[test]
    fn messages_thread_by_references_and_threads_end_at_their_last_message() {
        let (_dir, path) = write(concat!(
            "From a@x Mon Oct  5 09:00:00 2026\n",
            "From: Ana <ana@customer.example>\nTo: help@vendor.example\nSubject: Broken export\n",
            "Message-ID: <1@customer.example>\nDate: Mon, 5 Oct 2026 09:00:00 +0000\n\nThe export is empty.\n",
            "\n",
            "From b@x Mon Oct  5 09:30:00 2026\n",
            "From: Bo <bo@other.example>\nSubject: Unrelated\nMessage-ID: <2@other.example>\n",
            "Date: Mon, 5 Oct 2026 09:30:00 +0000\n\nHello\n>From the start\n",
            "\n",
            "From c@x Mon Oct  5 10:00:00 2026\n",
            "From: Sam <sam@vendor.example>\nSubject: Re: Broken export\nMessage-ID: <3@vendor.example>\n",
            "In-Reply-To: <1@customer.example>\nReferences: <1@customer.example>\n",
            "Date: Mon, 5 Oct 2026 10:00:00 +0000\n\nFixed.\n\n> The export is empty.\n",
        ));
        let results = parse(&path);
        assert_eq!(results.len(), 2);
        let (line, other) = results[0].as_ref().unwrap();
        assert_eq!((*line, other.source_id.as_str()), (10, "<2@other.example>"));
        assert_eq!(other.messages[0].text, "Hello\nFrom the start");
        let (line, thread) = results[1].as_ref().unwrap();
        assert_eq!(*line, 1);
        assert_eq!(thread.source_id, "<1@customer.example>");
        assert_eq!(thread.subject.as_deref(), Some("Broken export"));
        assert_eq!(thread.messages.len(), 2);
        assert_eq!(thread.messages[0].role, AuthorRole::Customer);
        assert_eq!(thread.messages[1].role, AuthorRole::Agent);
        assert_eq!(thread.messages[1].text, "Fixed.");
        assert_eq!(
            thread.messages[1].quoted.as_deref(),
            Some("> The export is empty.")
        );
    }

    #[test]
    fn bad_messages_reject_their_thread_at_their_line() {
        let (_dir, path) = write(concat!(
            "stray text\n",
            "\n",
            "From a@x Mon Oct  5 09:00:00 2026\n",
            "From: Ana <ana@customer.example>\nSubject: Secret subject\nMessage-ID: <1@c.example>\n",
            "Date: Mon, 5 Oct 2026 09:00:00 +0000\n\nHi\n",
            "\n",
            "From c@x Mon Oct  5 10:00:00 2026\n",
            "From: Sam <sam@vendor.example>\nIn-Reply-To: <1@c.example>\nMessage-ID: <3@v.example>\n",
            "Date: secret day\n\nFixed.\n",
        ));
        let results = parse(&path);
        let errors: Vec<(u64, Option<String>)> = results
            .iter()
            .map(|r| {
                let e = r.as_ref().unwrap_err();
                assert!(!e.to_string().contains("ecret"), "{e}");
                (e.line, e.field.clone())
            })
            .collect();
        assert_eq!(errors, [(1, None), (11, Some("Date".to_owned()))]);
    }

    #[test]
    fn a_thread_over_the_message_limit_is_rejected_at_the_first_message_too_many() {
        use std::fmt::Write as _;

        let mut mbox = String::from(concat!(
            "From a@x Mon Oct  5 09:00:00 2026\n",
            "From: Ana <ana@customer.example>\nSubject: Loop\nMessage-ID: <root@c.example>\n",
            "Date: Mon, 5 Oct 2026 09:00:00 +0000\n\nHi\n\n",
        ));
        for n in 0..MAX_THREAD_MESSAGES {
            write!(
                mbox,
                "From b@x Mon Oct  5 09:00:00 2026\nFrom: Bot <bot@vendor.example>\n\
                 In-Reply-To: <root@c.example>\nMessage-ID: <{n}@v.example>\n\
                 Date: Mon, 5 Oct 2026 09:00:00 +0000\n\nAuto reply {n}\n\n"
            )
            .unwrap();
        }
        // A separate thread after it is still read.
        mbox.push_str(concat!(
            "From c@x Mon Oct  5 09:00:00 2026\n",
            "From: Bo <bo@b.example>\nSubject: Other\nMessage-ID: <other@b.example>\n",
            "Date: Mon, 5 Oct 2026 09:00:00 +0000\n\nHello\n",
        ));
        let (_dir, path) = write(&mbox);
        let results = parse(&path);
        assert_eq!(results.len(), 2);
        let error = results[0].as_ref().unwrap_err();
        // The root takes lines 1 to 8 and each reply 8 more: the 10,001st message of the thread
        // is reply number 10,000.
        let line = 9 + 8 * (MAX_THREAD_MESSAGES as u64 - 1);
        assert_eq!(
            (error.line, error.field.as_deref()),
            (line, Some("References"))
        );
        assert!(error.message.contains("10000 messages"), "{error}");
        assert!(results[1].is_ok());
    }

    #[test]
    fn a_thread_without_a_root_id_is_refused_and_duplicates_count_once() {
        let message = concat!(
            "From a@x Mon Oct  5 09:00:00 2026\n",
            "From: Ana <ana@customer.example>\nSubject: Hello\nMessage-ID: <1@c.example>\n",
            "Date: Mon, 5 Oct 2026 09:00:00 +0000\n\nHi\n\n",
        );
        let (_dir, path) = write(&format!(
            "{message}{message}From b@x Mon Oct  5 09:00:00 2026\nFrom: Bo <bo@b.example>\nDate: Mon, 5 Oct 2026 09:00:00 +0000\n\nNo id\n"
        ));
        let results = parse(&path);
        assert_eq!(results.len(), 2);
        assert_eq!(results[0].as_ref().unwrap().1.messages.len(), 1);
        let error = results[1].as_ref().unwrap_err();
        assert_eq!(
            (error.line, error.field.as_deref()),
            (17, Some("Message-ID"))
        );
    }
}
