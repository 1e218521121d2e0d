//! The `jsonl` format: one [`InteractionRecord`] per line, Rapport's own schema (README, "Import
//! formats"). Lines are read one at a time and never longer than [`MAX_LINE_BYTES`].

use std::io::{BufRead, Read};

use crate::ingest::Rejection;
use crate::interactions::InteractionRecord;
use crate::records::SourceRecord as _;

/// The longest line accepted: a conversation of many long messages fits; a runaway file does not.
pub const MAX_LINE_BYTES: usize = 32 * 1024 * 1024;

pub(crate) fn reject(line: u64, field: Option<String>, message: impl Into<String>) -> Rejection {
    Rejection {
        line,
        field,
        message: message.into(),
    }
}

/// serde's message without the submitted value; see [`crate::records::describe_json_error`].
pub fn describe(error: &serde_json::Error) -> String {
    crate::records::describe_json_error(error)
}

/// The field a serde error is about: its path, and for a missing field the field itself
/// (`messages[0].sent_at`, not `messages[0]`).
pub fn field_of(path: &str, message: &str) -> Option<String> {
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    match (path, missing) {
        (".", None) => None,
        (".", Some(name)) => Some(name.to_owned()),
        (path, Some(name)) => Some(format!("{path}.{name}")),
        (path, None) => Some(path.to_owned()),
    }
}

/// The parser for [`crate::ingest::import_file`].
pub fn parser(
    _source: &dyn crate::ingest::ImportSource,
    reader: Box<dyn BufRead>,
) -> crate::ingest::Records<InteractionRecord> {
    Box::new(records(reader))
}

/// Parses `reader` line by line; blank lines are skipped.
pub fn records(
    reader: impl BufRead + 'static,
) -> impl Iterator<Item = Result<(u64, InteractionRecord), Rejection>> {
    values::<InteractionRecord>(reader).map(|item| {
        let (line_number, record) = item?;
        if let Some(first) = record.problems().into_iter().next() {
            return Err(reject(line_number, Some(first.field), first.message));
        }
        Ok((line_number, record))
    })
}

/// Reads one JSON value of type `T` per line (blank lines skipped): the line reading shared by
/// the formats that come as JSON lines. A value that does not fit `T` is rejected naming the
/// field's path (`comments[2].created_at`) and never the value.
pub fn values<T: serde::de::DeserializeOwned>(
    mut reader: impl BufRead + 'static,
) -> impl Iterator<Item = Result<(u64, T), Rejection>> {
    let mut line_number = 0u64;
    let mut buffer = Vec::new();
    std::iter::from_fn(move || loop {
        buffer.clear();
        line_number += 1;
        let mut limited = reader.by_ref().take(MAX_LINE_BYTES as u64 + 1);
        match limited.read_until(b'\n', &mut buffer) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(error) => {
                return Some(Err(reject(
                    line_number,
                    None,
                    format!("cannot be read: {error}"),
                )))
            }
        }
        if buffer.len() > MAX_LINE_BYTES && !buffer.ends_with(b"\n") {
            // Skip the rest of the over-long line before reporting it.
            let mut rest = Vec::new();
            loop {
                rest.clear();
                match reader
                    .by_ref()
                    .take(1024 * 1024)
                    .read_until(b'\n', &mut rest)
                {
                    Ok(read) if read > 0 && !rest.ends_with(b"\n") => {}
                    _ => break,
                }
            }
            return Some(Err(reject(
                line_number,
                None,
                format!("is longer than {MAX_LINE_BYTES} bytes"),
            )));
        }
        let text = match std::str::from_utf8(&buffer) {
            Ok(text) => text.trim(),
            Err(_) => return Some(Err(reject(line_number, None, "is not valid UTF-8"))),
        };
        if text.is_empty() {
            continue;
        }
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let parsed = serde_path_to_error::deserialize(&mut deserializer)
            .map_err(|error| {
                let path = error.path().to_string();
                let message = describe(error.inner());
                reject(line_number, field_of(&path, &message), message)
            })
            .and_then(|value| {
                // One value per line: anything after it is an error, not silently dropped.
                deserializer
                    .end()
                    .map(|()| (line_number, value))
                    .map_err(|_| reject(line_number, None, "has text after its JSON value"))
            });
        return Some(parsed);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &'static str) -> Vec<Result<(u64, InteractionRecord), Rejection>> {
        records(std::io::Cursor::new(text.as_bytes())).collect()
    }

    #[test]
    fn lines_parse_and_errors_name_line_and_field_without_the_value() {
        let results = parse(concat!(
            r#"{"source_system":"d","source_id":"1","channel":"chat","messages":[{"role":"customer","sent_at":"2026-01-02T03:04:05Z","text":"Hi"}]}"#,
            "\n\n",
            r#"{"source_system":"d","source_id":"2","channel":"fax","messages":[]}"#,
            "\n",
            r#"{"source_system":"d","source_id":"3","channel":"chat","messages":[{"role":"customer","sent_at":"2026-01-02T03:04:05Z","text":"Hi","author_email":"secret-person"}]}"#,
            "\n",
            r#"{"source_system":"d","source_id":"4","channel":"chat","messages":[{"role":"customer","sent_at":"yesterday secret","text":"Hi"}]}"#,
        ));
        assert_eq!(results.len(), 4);
        assert_eq!(results[0].as_ref().unwrap().0, 1);
        let channel = results[1].as_ref().unwrap_err();
        assert_eq!(
            (channel.line, channel.field.as_deref()),
            (3, Some("channel"))
        );
        assert!(channel.message.contains("unknown variant"), "{channel}");
        assert!(
            !channel.message.contains("fax"),
            "the rejected value was echoed: {channel}"
        );
        let email = results[2].as_ref().unwrap_err();
        assert_eq!(
            (email.line, email.field.as_deref()),
            (4, Some("messages[0].author_email"))
        );
        assert!(!email.to_string().contains("secret-person"));
        let date = results[3].as_ref().unwrap_err();
        assert_eq!(
            (date.line, date.field.as_deref()),
            (5, Some("messages[0].sent_at"))
        );
        assert!(!date.to_string().contains("secret"), "{date}");
    }
}
