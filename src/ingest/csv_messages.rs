//! The `csv` format: Rapport's message CSV (README, "Import formats"). One row per message; the
//! rows of one interaction share its `interaction_id` and must be contiguous. Interaction-level
//! columns (`source_system`, `channel`, `subject`, `status`, `account`, `tags`, `ai_tool`) are
//! taken from the interaction's first row; a later row may repeat them or leave them empty, but a
//! different value rejects the interaction. One bad row rejects its whole interaction, reported at
//! the bad row's line and column.
//!
//! A row that cannot be read (another number of cells than the header, a cell that is not UTF-8)
//! is placed by its `interaction_id` cell where that can still be read: it rejects the open
//! interaction if it has its id, and otherwise ends it (which is then complete) and rejects the
//! interaction of its own id, whose following rows are read past. Where the id cannot be read,
//! or may be another column's cell shifted by a missing one, the row rejects both the open
//! interaction and the next one, so that no interaction is stored without one of its rows.
//!
//! Streaming: only the interaction being read is held in memory, plus the ids of the interactions
//! already read (to refuse an id that comes back after other ids).

use std::collections::HashSet;
use std::io::BufRead;

use crate::ingest::table::{self, optional, required, BadRow, Column, Key, Row, SOURCE_SYSTEM};
use crate::ingest::{ImportSource, Records, Rejection};
use crate::interactions::{AuthorRole, Channel, InteractionRecord, MessageRecord};
use crate::records::SourceRecord as _;

const ID: &str = "interaction_id";
/// The most rows (messages) one interaction may have: the interaction schema's own limit.
pub const MAX_MESSAGES: usize = 10_000;
/// The most message text one interaction may hold, as a `jsonl` line may. The rows of an
/// interaction are held in memory until its last row is read, so this bounds them.
pub const MAX_INTERACTION_TEXT_BYTES: usize = 32 * 1024 * 1024;

const COLUMNS: &[Column] = &[
    required(ID),
    optional(SOURCE_SYSTEM),
    required("channel"),
    optional("subject"),
    optional("status"),
    optional("account"),
    optional("tags"),
    optional("ai_tool"),
    required("role"),
    optional("author_name"),
    optional("author_email"),
    required("sent_at"),
    required("text"),
];

/// The columns that describe the interaction rather than one message.
const INTERACTION_COLUMNS: [&str; 7] = [
    SOURCE_SYSTEM,
    "channel",
    "subject",
    "status",
    "account",
    "tags",
    "ai_tool",
];

const ROLES: [(&str, AuthorRole); 4] = [
    ("customer", AuthorRole::Customer),
    ("agent", AuthorRole::Agent),
    ("ai-agent", AuthorRole::AiAgent),
    ("internal-note", AuthorRole::InternalNote),
];

fn channel(row: &Row) -> Result<Channel, Rejection> {
    let cell = row.required("channel")?;
    Channel::ALL
        .into_iter()
        .find(|channel| channel.as_str().eq_ignore_ascii_case(cell))
        .ok_or_else(|| {
            row.reject(
                "channel",
                "must be one of ticket, chat, email, call, sales-chat",
            )
        })
}

fn message(row: &Row) -> Result<MessageRecord, Rejection> {
    let role_cell = row.required("role")?;
    let role = ROLES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(role_cell))
        .map(|(_, role)| *role)
        .ok_or_else(|| {
            row.reject(
                "role",
                "must be one of customer, agent, ai-agent, internal-note",
            )
        })?;
    Ok(MessageRecord {
        role,
        author_name: row.text("author_name"),
        author_email: row.text("author_email"),
        sent_at: row.required_time("sent_at")?,
        text: row.required("text")?.to_owned(),
        quoted: None,
        signature: None,
    })
}

/// The interaction being read.
struct Group {
    id: String,
    /// The line of its first row.
    line: u64,
    /// Its interaction-level cells, from the first row.
    first: Vec<Option<String>>,
    record: Option<InteractionRecord>,
    /// The line of each message's row.
    lines: Vec<u64>,
    /// The text bytes of the messages held.
    text_bytes: usize,
    error: Option<Rejection>,
}

impl Group {
    fn start(row: &Row, id: String) -> Self {
        let mut group = Self {
            id,
            line: row.line,
            first: INTERACTION_COLUMNS.iter().map(|c| row.text(c)).collect(),
            record: None,
            lines: Vec::new(),
            text_bytes: 0,
            error: None,
        };
        match Self::interaction(row, &group.id) {
            Ok(record) => group.record = Some(record),
            Err(rejection) => group.error = Some(rejection),
        }
        group.add_message(row);
        group
    }

    /// An interaction whose first row cannot be read but names it: rejected, its further rows
    /// read past.
    fn rejected(id: String, rejection: Rejection) -> Self {
        Self {
            id,
            line: rejection.line,
            first: Vec::new(),
            record: None,
            lines: Vec::new(),
            text_bytes: 0,
            error: Some(rejection),
        }
    }

    fn interaction(row: &Row, id: &str) -> Result<InteractionRecord, Rejection> {
        Ok(InteractionRecord {
            source_system: row.source_system(),
            source_id: id.to_owned(),
            channel: channel(row)?,
            subject: row.text("subject"),
            status: row.text("status"),
            account: row.text("account"),
            tags: row
                .get("tags")
                .map(|tags| {
                    tags.split(';')
                        .map(str::trim)
                        .filter(|tag| !tag.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            ai_tool: row.text("ai_tool"),
            attachments: Vec::new(),
            messages: Vec::new(),
        })
    }

    fn fail(&mut self, rejection: Rejection) {
        if self.error.is_none() {
            self.error = Some(rejection);
        }
        // A rejected interaction's rows are only read past from now on, not held.
        self.record = None;
        self.lines = Vec::new();
    }

    fn add_message(&mut self, row: &Row) {
        if self.error.is_some() {
            return;
        }
        if self.lines.len() >= MAX_MESSAGES {
            let message = format!(
                "puts interaction {} over {MAX_MESSAGES} rows (messages)",
                self.id
            );
            self.fail(row.reject(ID, message));
            return;
        }
        match message(row) {
            Ok(message) => {
                self.text_bytes += message.text.len();
                if self.text_bytes > MAX_INTERACTION_TEXT_BYTES {
                    let message = format!(
                        "puts interaction {} over {} MiB of text",
                        self.id,
                        MAX_INTERACTION_TEXT_BYTES / (1024 * 1024)
                    );
                    self.fail(row.reject("text", message));
                    return;
                }
                if let Some(record) = &mut self.record {
                    record.messages.push(message);
                    self.lines.push(row.line);
                }
            }
            Err(rejection) => self.fail(rejection),
        }
    }

    /// A later row of the interaction: its interaction-level cells must agree with the first.
    fn add(&mut self, row: &Row) {
        if self.error.is_some() {
            return;
        }
        for (column, first) in INTERACTION_COLUMNS.iter().zip(&self.first) {
            if let Some(cell) = row.get(column) {
                if first.as_deref() != Some(cell) {
                    let message = format!(
                        "differs from the first row of interaction {} (line {}); leave it empty or repeat it",
                        self.id, self.line
                    );
                    self.fail(row.reject(column, message));
                    return;
                }
            }
        }
        self.add_message(row);
    }

    fn finish(mut self) -> Result<(u64, InteractionRecord), Rejection> {
        if let Some(rejection) = self.error.take() {
            return Err(rejection);
        }
        let Some(record) = self.record.take() else {
            return Err(table::reject(self.line, ID, "could not be read"));
        };
        if let Some(problem) = record.problems().into_iter().next() {
            return Err(self.locate(&problem.field, problem.message));
        }
        Ok((self.line, record))
    }

    /// The line and column of a record field's problem.
    fn locate(&self, field: &str, message: String) -> Rejection {
        if let Some(rest) = field.strip_prefix("messages[") {
            if let Some((index, name)) = rest.split_once("].") {
                let line = index
                    .parse::<usize>()
                    .ok()
                    .and_then(|index| self.lines.get(index))
                    .copied()
                    .unwrap_or(self.line);
                return table::reject(line, name, message);
            }
        }
        let column = match field.split('[').next().unwrap_or(field) {
            "source_id" | "messages" => ID,
            other => other,
        };
        table::reject(self.line, column, message)
    }
}

/// How the next interaction begins.
enum Start {
    /// With a row that was read.
    Row(Row),
    /// With a row that cannot be read but whose `interaction_id` can: the interaction is rejected.
    Rejected { id: String, rejection: Rejection },
}

struct Interactions {
    rows: Box<dyn Iterator<Item = Result<Row, BadRow>>>,
    /// The beginning of the next interaction, read while looking for the end of the last.
    pending: Option<Start>,
    /// The line of a row before the next interaction whose `interaction_id` cannot be read: the
    /// row may be the first of the next interaction, which is then rejected.
    unplaced: Option<u64>,
    /// The ids already read.
    seen: HashSet<String>,
}

/// The rejection of a row whose `interaction_id` cannot be read (or not reliably), for the
/// interaction it follows, or alone.
fn unplaced(rejection: Rejection) -> Rejection {
    Rejection {
        message: format!(
            "{}; its {ID} cannot be read reliably, so the interaction open before it (if any) and the one after it are both rejected",
            rejection.message
        ),
        ..rejection
    }
}

impl Interactions {
    /// Starts the next interaction, or gives the rejection of a row that belongs to none.
    fn start(&mut self) -> Option<Result<Group, Rejection>> {
        let start = match self.pending.take() {
            Some(start) => start,
            None => match self.rows.next()? {
                Ok(row) => Start::Row(row),
                Err(BadRow {
                    rejection,
                    key: Key::Exact(id),
                }) => Start::Rejected { id, rejection },
                Err(BadRow {
                    rejection,
                    key: Key::NoRow,
                }) => return Some(Err(rejection)),
                Err(BadRow {
                    rejection,
                    key: Key::Shifted(_) | Key::Unknown,
                }) => {
                    self.unplaced = Some(rejection.line);
                    return Some(Err(unplaced(rejection)));
                }
            },
        };
        let mut group = match start {
            Start::Row(row) => match row.required(ID) {
                Ok(id) => Group::start(&row, id.to_owned()),
                Err(rejection) => return Some(Err(rejection)),
            },
            Start::Rejected { id, rejection } => Group::rejected(id, rejection),
        };
        if let Some(line) = self.unplaced.take() {
            let message = format!(
                "may begin with the row at line {line}, whose {ID} cannot be read reliably; the interaction is rejected with it"
            );
            group.fail(table::reject(group.line, ID, message));
        }
        Some(Ok(group))
    }
}

impl Iterator for Interactions {
    type Item = Result<(u64, InteractionRecord), Rejection>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut group = match self.start()? {
            Ok(group) => group,
            Err(rejection) => return Some(Err(rejection)),
        };
        loop {
            match self.rows.next() {
                None => break,
                // A row that cannot be read belongs to the interaction its id cell names, where
                // that can be read.
                Some(Err(BadRow { rejection, key })) => match key {
                    Key::Exact(id) | Key::Shifted(id) if id == group.id => group.fail(rejection),
                    // Rows of an interaction are contiguous: the open one is complete.
                    Key::Exact(id) => {
                        self.pending = Some(Start::Rejected { id, rejection });
                        break;
                    }
                    Key::NoRow => group.fail(rejection),
                    Key::Shifted(_) | Key::Unknown => {
                        self.unplaced = Some(rejection.line);
                        group.fail(unplaced(rejection));
                    }
                },
                Some(Ok(next)) => {
                    if next.get(ID) == Some(group.id.as_str()) {
                        group.add(&next);
                    } else {
                        self.pending = Some(Start::Row(next));
                        break;
                    }
                }
            }
        }
        if !self.seen.insert(group.id.clone()) {
            // An id is a source system's identifier, not personal data: it may be named.
            return Some(Err(table::reject(
                group.line,
                ID,
                format!(
                    "rows of interaction {} must be together; it appeared earlier in the file",
                    group.id
                ),
            )));
        }
        Some(group.finish())
    }
}

/// The parser for [`crate::ingest::import_file`].
pub fn parser(_source: &dyn ImportSource, reader: Box<dyn BufRead>) -> Records<InteractionRecord> {
    Box::new(Interactions {
        rows: table::keyed_rows(reader, COLUMNS, ID),
        pending: None,
        unplaced: None,
        seen: HashSet::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "interaction_id,channel,subject,tags,role,author_name,author_email,sent_at,text\n";

    fn parse(body: &str) -> Vec<Result<(u64, InteractionRecord), Rejection>> {
        let text = format!("{HEADER}{body}");
        parser(
            &crate::ingest::FileSource(std::path::Path::new("m.csv")),
            Box::new(std::io::Cursor::new(text.into_bytes())),
        )
        .collect()
    }

    #[test]
    fn rows_group_into_interactions_with_a_multi_line_cell() {
        let results = parse(concat!(
            "T-1,ticket,Refund,billing;refunds,customer,Ana,ana@example.com,2026-10-01T08:00:00Z,\"Hello,\nI was charged twice.\"\n",
            "T-1,,,,agent,Sam,,2026-10-01T08:10:00Z,Refunded.\n",
            "C-2,chat,,,customer,,,2026-10-02T08:00:00Z,Hi\n",
        ));
        assert_eq!(results.len(), 2);
        let (line, first) = results[0].as_ref().unwrap();
        assert_eq!(*line, 2);
        assert_eq!(first.source_system, "csv");
        assert_eq!(first.tags, ["billing", "refunds"]);
        assert_eq!(first.messages.len(), 2);
        assert_eq!(first.messages[0].text, "Hello,\nI was charged twice.");
        assert_eq!(first.messages[1].role, AuthorRole::Agent);
        assert_eq!(results[1].as_ref().unwrap().0, 5);
    }

    #[test]
    fn a_bad_row_rejects_its_interaction_at_its_line_and_column() {
        let results = parse(concat!(
            "T-1,ticket,,,customer,,,2026-10-01T08:00:00Z,Hi\n",
            "T-1,,,,agent,,secret-mail,2026-10-01T08:10:00Z,Hello\n",
            "T-2,ticket,,,customer,,,yesterday secret,Hi\n",
            "T-3,ticket,Printer,,customer,,,2026-10-01T08:00:00Z,Hi\n",
            "T-3,,Scanner secret,,agent,,,2026-10-01T08:01:00Z,Hello\n",
            "T-4,fax,,,customer,,,2026-10-01T08:00:00Z,Hi\n",
            "T-5,chat,,,robot,,,2026-10-01T08:00:00Z,Hi\n",
        ));
        let errors: Vec<(u64, String)> = results
            .iter()
            .map(|r| {
                let e = r.as_ref().unwrap_err();
                assert!(!e.to_string().contains("secret"), "{e}");
                (e.line, e.field.clone().unwrap())
            })
            .collect();
        assert_eq!(
            errors,
            [
                (3, "author_email".to_owned()),
                (4, "sent_at".to_owned()),
                (6, "subject".to_owned()),
                (7, "channel".to_owned()),
                (8, "role".to_owned()),
            ]
        );
    }

    #[test]
    fn an_interaction_over_the_row_limit_is_rejected_at_the_row_too_many() {
        let mut body = String::new();
        for _ in 0..=MAX_MESSAGES {
            body.push_str("T-1,chat,,,customer,,,2026-10-01T08:00:00Z,Again\n");
        }
        body.push_str("T-2,chat,,,customer,,,2026-10-01T08:00:00Z,Hi\n");
        let results = parse(&body);
        assert_eq!(results.len(), 2);
        let error = results[0].as_ref().unwrap_err();
        // The header is line 1, so row number 10,001 is line 10,002.
        assert_eq!(
            (error.line, error.field.as_deref()),
            (MAX_MESSAGES as u64 + 2, Some(ID))
        );
        assert!(error.message.contains("over 10000 rows"), "{error}");
        assert!(results[1].is_ok());
    }

    #[test]
    fn an_id_that_comes_back_after_other_ids_is_refused() {
        let results = parse(concat!(
            "T-1,ticket,,,customer,,,2026-10-01T08:00:00Z,Hi\n",
            "T-2,ticket,,,customer,,,2026-10-01T08:00:00Z,Hi\n",
            "T-1,ticket,,,agent,,,2026-10-01T08:05:00Z,Hello\n",
        ));
        assert!(results[0].is_ok() && results[1].is_ok());
        let error = results[2].as_ref().unwrap_err();
        assert_eq!((error.line, error.field.as_deref()), (4, Some(ID)));
        assert!(error
            .message
            .contains("rows of interaction T-1 must be together"));
    }

    fn parse_bytes(header: &str, body: &[u8]) -> Vec<Result<(u64, InteractionRecord), Rejection>> {
        let mut bytes = header.as_bytes().to_vec();
        bytes.extend_from_slice(body);
        parser(
            &crate::ingest::FileSource(std::path::Path::new("m.csv")),
            Box::new(std::io::Cursor::new(bytes)),
        )
        .collect()
    }

    /// A result as `Ok(id, messages)` or `Err(line, field)`.
    type Outcome = Result<(String, usize), (u64, Option<String>)>;

    fn outcomes(results: &[Result<(u64, InteractionRecord), Rejection>]) -> Vec<Outcome> {
        results
            .iter()
            .map(|result| match result {
                Ok((_, record)) => Ok((record.source_id.clone(), record.messages.len())),
                Err(error) => {
                    assert!(!error.to_string().contains("secret"), "{error}");
                    Err((error.line, error.field.clone()))
                }
            })
            .collect()
    }

    #[test]
    fn a_short_row_rejects_its_own_interaction_not_the_one_before() {
        let results = parse(concat!(
            "A,ticket,Printer,,customer,,,2026-10-01T08:00:00Z,Hi\n",
            "A,,,,agent,,,2026-10-01T08:01:00Z,Hello\n",
            // One cell short.
            "B,chat,Login,,customer,,2026-10-02T08:00:00Z,secret words\n",
            "B,chat,Login,,agent,,,2026-10-02T08:01:00Z,Hello\n",
            "B,,,,customer,,,2026-10-02T08:02:00Z,Thanks\n",
            "C,call,,,customer,,,2026-10-03T08:00:00Z,Hi\n",
        ));
        assert_eq!(
            outcomes(&results),
            [
                Ok(("A".to_owned(), 2)),
                Err((4, None)),
                Ok(("C".to_owned(), 1)),
            ]
        );
        assert!(results[1]
            .as_ref()
            .unwrap_err()
            .message
            .contains("has 8 cells, the header has 9 columns"));
    }

    #[test]
    fn a_bad_row_with_the_open_id_rejects_the_open_interaction() {
        let results = parse(concat!(
            "A,ticket,,,customer,,,2026-10-01T08:00:00Z,Hi\n",
            // One cell too many (an unquoted comma).
            "A,,,,agent,,,2026-10-01T08:01:00Z,Hello, secret\n",
            "A,,,,customer,,,2026-10-01T08:02:00Z,Thanks\n",
            "B,chat,,,customer,,,2026-10-02T08:00:00Z,Hi\n",
            // The first row of an interaction, then the end of the file.
            "C,chat,,,customer,,,2026-10-02T08:00:00Z\n",
        ));
        assert_eq!(
            outcomes(&results),
            [Err((3, None)), Ok(("B".to_owned(), 1)), Err((6, None))]
        );
    }

    #[test]
    fn a_cell_that_is_not_utf8_places_its_row_by_its_id() {
        let body: &[u8] = b"A,ticket,,,customer,,,2026-10-01T08:00:00Z,Hi\nB,chat,,,customer,,,2026-10-02T08:00:00Z,\xff\xfe\nB,chat,,,agent,,,2026-10-02T08:01:00Z,Hello\nC,call,,,customer,,,2026-10-03T08:00:00Z,Hi\n";
        let results = parse_bytes(HEADER, body);
        assert_eq!(
            outcomes(&results),
            [
                Ok(("A".to_owned(), 1)),
                Err((3, Some("text".to_owned()))),
                Ok(("C".to_owned(), 1)),
            ]
        );
        // An id that is not UTF-8 cannot be read: both neighbours are rejected.
        let body: &[u8] = b"A,ticket,,,customer,,,2026-10-01T08:00:00Z,Hi\n\xff,chat,,,customer,,,2026-10-02T08:00:00Z,Hi\nB,chat,,,agent,,,2026-10-02T08:01:00Z,Hello\n";
        let results = parse_bytes(HEADER, body);
        assert_eq!(
            outcomes(&results),
            [Err((3, Some(ID.to_owned()))), Err((4, Some(ID.to_owned()))),]
        );
    }

    #[test]
    fn a_bad_row_whose_id_cannot_be_read_rejects_both_neighbours() {
        let results = parse(concat!(
            "A,ticket,,,customer,,,2026-10-01T08:00:00Z,Hi\n",
            "A,,,,agent,,,2026-10-01T08:01:00Z,Hello\n",
            // No id and one cell short.
            ",chat,Login,,customer,,2026-10-02T08:00:00Z,secret words\n",
            "B,chat,Login,,agent,,,2026-10-02T08:01:00Z,Hello\n",
            "B,,,,customer,,,2026-10-02T08:02:00Z,Thanks\n",
            "C,call,,,customer,,,2026-10-03T08:00:00Z,Hi\n",
        ));
        assert_eq!(
            outcomes(&results),
            [
                Err((4, None)),
                Err((5, Some(ID.to_owned()))),
                Ok(("C".to_owned(), 1)),
            ]
        );
        let open = results[0].as_ref().unwrap_err();
        assert!(
            open.message
                .contains("interaction_id cannot be read reliably")
                && open.message.contains("both rejected"),
            "{open}"
        );
        let next = results[1].as_ref().unwrap_err();
        assert!(next.message.contains("the row at line 4"), "{next}");

        // As the first data row, it is reported alone and still rejects the next interaction.
        let results = parse(concat!(
            ",chat,Login,,customer,,2026-10-02T08:00:00Z,secret words\n",
            "B,chat,Login,,agent,,,2026-10-02T08:01:00Z,Hello\n",
            "C,call,,,customer,,,2026-10-03T08:00:00Z,Hi\n",
        ));
        assert_eq!(
            outcomes(&results),
            [
                Err((2, None)),
                Err((3, Some(ID.to_owned()))),
                Ok(("C".to_owned(), 1)),
            ]
        );
    }

    #[test]
    fn an_id_a_missing_cell_may_have_shifted_is_not_trusted_unless_it_is_the_open_one() {
        const SHIFTED: &str = "channel,interaction_id,role,sent_at,text\n";
        // The first cell is missing, so the id column holds the role.
        let results = parse_bytes(
            SHIFTED,
            concat!(
                "ticket,A,customer,2026-10-01T08:00:00Z,Hi\n",
                "A,agent,2026-10-01T08:01:00Z,Hello\n",
                "chat,B,customer,2026-10-02T08:00:00Z,Hi\n",
                "chat,C,customer,2026-10-03T08:00:00Z,Hi\n",
            )
            .as_bytes(),
        );
        assert_eq!(
            outcomes(&results),
            [
                Err((3, None)),
                Err((4, Some(ID.to_owned()))),
                Ok(("C".to_owned(), 1)),
            ]
        );
        // A cell at the id's position that is the open id places the row there.
        let results = parse_bytes(
            SHIFTED,
            concat!(
                "ticket,A,customer,2026-10-01T08:00:00Z,Hi\n",
                "ticket,A,agent,2026-10-01T08:01:00Z\n",
                "chat,B,customer,2026-10-02T08:00:00Z,Hi\n",
            )
            .as_bytes(),
        );
        assert_eq!(
            outcomes(&results),
            [Err((3, None)), Ok(("B".to_owned(), 1))]
        );
    }

    #[test]
    fn a_bad_row_naming_an_earlier_interaction_is_refused_as_out_of_place() {
        let results = parse(concat!(
            "A,ticket,,,customer,,,2026-10-01T08:00:00Z,Hi\n",
            "B,chat,,,customer,,,2026-10-02T08:00:00Z,Hi\n",
            "A,,,,agent,,2026-10-01T08:01:00Z,Hello\n",
        ));
        assert_eq!(
            outcomes(&results),
            [
                Ok(("A".to_owned(), 1)),
                Ok(("B".to_owned(), 1)),
                Err((4, Some(ID.to_owned()))),
            ]
        );
    }
}
