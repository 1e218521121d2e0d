//! What the CSV formats share: a header that must name known columns (unknown, duplicated or
//! missing required columns are refused naming the column), rows read one at a time with their
//! line number, and getters that parse a cell or reject it naming its column — never repeating
//! the cell's value, which may be personal data.
//!
//! A UTF-8 byte-order mark before the header is tolerated. Cells are trimmed; an empty cell is an
//! absent value. Every table may carry a `source_system` column (default `csv`).

use std::cell::Cell;
use std::io::{BufRead, Read};
use std::rc::Rc;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};

use crate::ingest::{Records, Rejection};
use crate::records::{FieldProblem, SourceRecord};

/// The column every table accepts, naming the system the rows come from.
pub const SOURCE_SYSTEM: &str = "source_system";
/// The source system of rows without a `source_system` column or value.
pub const DEFAULT_SOURCE_SYSTEM: &str = "csv";

/// The longest row accepted, in bytes: room for a message's 1 MiB of text and its other cells
/// many times over. The csv reader holds a whole row in memory, so without this a quote left open
/// would make it read the rest of the file (up to the upload limit) into one cell.
pub const MAX_ROW_BYTES: usize = 4 * 1024 * 1024;

/// The reader under the csv reader: it counts the bytes taken since the current row began and
/// fails the read once they pass [`MAX_ROW_BYTES`], so that no row is buffered beyond that (plus
/// the csv reader's own 8 KiB buffer).
struct RowBudget<R> {
    inner: R,
    /// Bytes read since [`rows`] last finished a row; reset by it.
    used: Rc<Cell<usize>>,
}

/// The error [`RowBudget`] fails a read with.
#[derive(Debug, thiserror::Error)]
#[error("a row is longer than {MAX_ROW_BYTES} bytes")]
struct RowTooLong;

impl<R> RowBudget<R> {
    /// The budgeted reader and the counter that [`rows`] resets at each row.
    fn over(inner: R) -> (Self, Rc<Cell<usize>>) {
        let used = Rc::new(Cell::new(0));
        let budget = Self {
            inner,
            used: Rc::clone(&used),
        };
        (budget, used)
    }
}

impl<R: Read> Read for RowBudget<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        if self.used.get() > MAX_ROW_BYTES {
            return Err(std::io::Error::other(RowTooLong));
        }
        let read = self.inner.read(buffer)?;
        self.used.set(self.used.get() + read);
        Ok(read)
    }
}

/// One column a table format knows.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub name: &'static str,
    pub required: bool,
}

/// A column that must be in the header (its cells may still be optional, see [`Row::required`]).
pub const fn required(name: &'static str) -> Column {
    Column {
        name,
        required: true,
    }
}

/// A column that may be left out of the header.
pub const fn optional(name: &'static str) -> Column {
    Column {
        name,
        required: false,
    }
}

pub fn reject(line: u64, field: &str, message: impl Into<String>) -> Rejection {
    Rejection {
        line,
        field: Some(field.to_owned()),
        message: message.into(),
    }
}

/// One data row: its line and its cells in the order of the format's columns.
#[derive(Clone, Debug)]
pub struct Row {
    pub line: u64,
    columns: &'static [Column],
    cells: Vec<Option<String>>,
}

impl Row {
    fn position(&self, column: &str) -> Option<usize> {
        self.columns.iter().position(|known| known.name == column)
    }

    /// The trimmed cell, `None` when the column is absent or the cell empty.
    pub fn get(&self, column: &str) -> Option<&str> {
        self.position(column)
            .and_then(|index| self.cells.get(index))
            .and_then(Option::as_deref)
    }

    /// The cell as an owned string, `None` when empty.
    pub fn text(&self, column: &str) -> Option<String> {
        self.get(column).map(str::to_owned)
    }

    /// The cell, which must not be empty.
    pub fn required(&self, column: &str) -> Result<&str, Rejection> {
        self.get(column)
            .ok_or_else(|| reject(self.line, column, "must not be empty"))
    }

    /// The `source_system` cell, or `csv`.
    pub fn source_system(&self) -> String {
        self.get(SOURCE_SYSTEM)
            .unwrap_or(DEFAULT_SOURCE_SYSTEM)
            .to_owned()
    }

    /// A rejection of this row naming `column`.
    pub fn reject(&self, column: &str, message: impl Into<String>) -> Rejection {
        reject(self.line, column, message)
    }

    /// An optional number.
    pub fn number<T: FromStr>(&self, column: &str, what: &str) -> Result<Option<T>, Rejection> {
        self.get(column)
            .map(|cell| {
                cell.parse::<T>()
                    .map_err(|_| self.reject(column, format!("must be {what}")))
            })
            .transpose()
    }

    /// A number that must be there.
    pub fn required_number<T: FromStr>(&self, column: &str, what: &str) -> Result<T, Rejection> {
        self.required(column)?;
        self.number(column, what)?
            .ok_or_else(|| self.reject(column, "must not be empty"))
    }

    /// An optional calendar date, `YYYY-MM-DD`.
    pub fn date(&self, column: &str) -> Result<Option<NaiveDate>, Rejection> {
        self.get(column)
            .map(|cell| {
                NaiveDate::parse_from_str(cell, "%Y-%m-%d")
                    .map_err(|_| self.reject(column, "must be a date like 2026-10-31"))
            })
            .transpose()
    }

    /// A calendar date that must be there.
    pub fn required_date(&self, column: &str) -> Result<NaiveDate, Rejection> {
        self.required(column)?;
        self.date(column)?
            .ok_or_else(|| self.reject(column, "must not be empty"))
    }

    /// A point in time that must be there: RFC 3339 (`2026-10-01T08:12:00Z`), or a date alone,
    /// taken as midnight UTC.
    pub fn required_time(&self, column: &str) -> Result<DateTime<Utc>, Rejection> {
        let cell = self.required(column)?;
        parse_time(cell).ok_or_else(|| {
            self.reject(
                column,
                "must be an RFC 3339 time like 2026-10-01T08:12:00Z, or a date like 2026-10-01",
            )
        })
    }
}

/// An RFC 3339 time, or a `YYYY-MM-DD` date taken as midnight UTC.
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map(|time| time.and_utc())
}

/// Reads a table: first the header (checked against `columns`), then one [`Row`] per record.
/// A header problem is reported at line 1 and ends the table, since no row can be read without
/// knowing its columns.
pub fn rows(
    reader: Box<dyn BufRead>,
    columns: &'static [Column],
) -> Box<dyn Iterator<Item = Result<Row, Rejection>>> {
    Box::new(read_rows(reader, columns, None).map(|row| row.map_err(|bad| bad.rejection)))
}

/// What a row that cannot be read still says about one column, its key (see [`keyed_rows`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    /// The key cell, trimmed, certainly from the key column: the row has as many cells as the
    /// header (another cell is not UTF-8), or the key column is the file's first, which a missing
    /// or extra cell cannot shift.
    Exact(String),
    /// The cell at the key column's position, which a missing or extra cell before it may have
    /// shifted: it may be another column's cell.
    Shifted(String),
    /// The row has no key cell that can be read: too few cells, an empty cell or one that is not
    /// UTF-8.
    Unknown,
    /// Not even the row could be split from the file (too long, or a read error); the table
    /// ends here.
    NoRow,
}

/// A row that cannot be read: its rejection and what its key cell still says.
#[derive(Clone, Debug)]
pub struct BadRow {
    pub rejection: Rejection,
    pub key: Key,
}

/// [`rows`], with each row that cannot be read carrying its cell of the `key` column (one of
/// `columns`) where it can still be read, so that a format grouping rows by that column can tell
/// which group the row belongs to.
pub fn keyed_rows(
    reader: Box<dyn BufRead>,
    columns: &'static [Column],
    key: &str,
) -> Box<dyn Iterator<Item = Result<Row, BadRow>>> {
    let key = columns.iter().position(|column| column.name == key);
    read_rows(reader, columns, key)
}

/// The key cell of a record that has the wrong number of cells or a cell that is not UTF-8.
/// `mapping` maps the file's columns to `columns`; `key` is the key's index among `columns`.
fn key_of(record: &csv::ByteRecord, mapping: &[usize], key: Option<usize>) -> Key {
    let Some(position) = key.and_then(|key| mapping.iter().position(|&target| target == key))
    else {
        return Key::Unknown;
    };
    let Some(text) = record
        .get(position)
        .and_then(|cell| std::str::from_utf8(cell).ok())
        .map(str::trim)
        .filter(|text| !text.is_empty())
    else {
        return Key::Unknown;
    };
    let text = text.replace("\r\n", "\n");
    if position == 0 || record.len() == mapping.len() {
        Key::Exact(text)
    } else {
        Key::Shifted(text)
    }
}

fn read_rows(
    reader: Box<dyn BufRead>,
    columns: &'static [Column],
    key: Option<usize>,
) -> Box<dyn Iterator<Item = Result<Row, BadRow>>> {
    let no_row = |rejection: Rejection| BadRow {
        rejection,
        key: Key::NoRow,
    };
    // A final line break makes every record end in one, which `start_line` relies on; after one
    // that is already there it is a blank line, which is skipped.
    let (budget, used) = RowBudget::over(reader.chain(&b"\n"[..]));
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        // Records end at a line feed only, so that the line count is exact for CRLF files too
        // (a carriage return before it is white space, trimmed from the last cell).
        .terminator(csv::Terminator::Any(b'\n'))
        .from_reader(budget);
    let mut record = csv::ByteRecord::new();
    // Where each of the file's columns goes among `columns`.
    let mut mapping: Vec<usize> = Vec::new();
    let mut header_read = false;
    let mut finished = false;
    // Where the next row starts at the earliest, for a row too long to be read whole.
    let mut next_line = 1;
    Box::new(std::iter::from_fn(move || {
        if finished {
            return None;
        }
        loop {
            used.set(0);
            match csv.read_byte_record(&mut record) {
                Ok(false) => {
                    finished = true;
                    if header_read {
                        return None;
                    }
                    return Some(Err(no_row(Rejection {
                        line: 1,
                        field: None,
                        message: "has no header row".to_owned(),
                    })));
                }
                Ok(true) => {}
                // Nothing after an over-long row can be read reliably (it is usually an open
                // quote), so the table ends here.
                Err(_) if used.get() > MAX_ROW_BYTES => {
                    finished = true;
                    return Some(Err(no_row(row_too_long(next_line))));
                }
                Err(error) => {
                    let line = error.position().map_or(0, csv::Position::line);
                    if error.is_io_error() {
                        finished = true;
                    }
                    return Some(Err(no_row(Rejection {
                        line,
                        field: None,
                        message: describe(&error),
                    })));
                }
            }
            let line = start_line(&record, &csv);
            // The next row starts on the line after this one ends (or later, after blank lines).
            next_line = line + inner_line_breaks(&record) + 1;
            if !header_read {
                header_read = true;
                match map_header(&record, columns) {
                    Ok(found) => {
                        mapping = found;
                        continue;
                    }
                    Err(rejection) => {
                        finished = true;
                        return Some(Err(no_row(rejection)));
                    }
                }
            }
            if record
                .iter()
                .all(|cell| cell.iter().all(u8::is_ascii_whitespace))
            {
                continue;
            }
            let cells = match cells(&record, &mapping, columns, key, line) {
                Ok(cells) => cells,
                Err(bad) => return Some(Err(bad)),
            };
            return Some(Ok(Row {
                line,
                columns,
                cells,
            }));
        }
    }))
}

/// A record's cells in the order of `columns`, or why the row cannot be read (with its key
/// cell where that can still be read).
fn cells(
    record: &csv::ByteRecord,
    mapping: &[usize],
    columns: &[Column],
    key: Option<usize>,
    line: u64,
) -> Result<Vec<Option<String>>, BadRow> {
    if record.len() != mapping.len() {
        return Err(BadRow {
            rejection: Rejection {
                line,
                field: None,
                message: format!(
                    "has {} cells, the header has {} columns",
                    record.len(),
                    mapping.len()
                ),
            },
            key: key_of(record, mapping, key),
        });
    }
    let mut cells = vec![None; columns.len()];
    for (cell, &target) in record.iter().zip(mapping) {
        let Ok(text) = std::str::from_utf8(cell) else {
            return Err(BadRow {
                rejection: reject(line, columns[target].name, "is not valid UTF-8"),
                key: key_of(record, mapping, key),
            });
        };
        let text = text.trim();
        if !text.is_empty() {
            cells[target] = Some(text.replace("\r\n", "\n"));
        }
    }
    Ok(cells)
}

fn row_too_long(line: u64) -> Rejection {
    Rejection {
        line,
        field: None,
        message: format!(
            "starts a row longer than {} MiB (is a quote left open?); the rest of the file was not read",
            MAX_ROW_BYTES / (1024 * 1024)
        ),
    }
}

/// The line breaks inside a record's cells.
fn inner_line_breaks(record: &csv::ByteRecord) -> u64 {
    record
        .iter()
        .map(|cell| (cell.split(|&byte| byte == b'\n').count() - 1) as u64)
        .sum()
}

/// The line a record starts on. The csv crate's record position is where reading began, which
/// is before any blank lines it skipped; counting back from where the record ended is exact: the
/// end less the line breaks inside its cells, less its own terminating line break.
fn start_line<R: std::io::Read>(record: &csv::ByteRecord, csv: &csv::Reader<R>) -> u64 {
    csv.position()
        .line()
        .saturating_sub(inner_line_breaks(record))
        .saturating_sub(1)
        .max(1)
}

fn describe(error: &csv::Error) -> String {
    match error.kind() {
        csv::ErrorKind::Io(io) => format!("cannot be read: {io}"),
        csv::ErrorKind::Utf8 { .. } => "is not valid UTF-8".to_owned(),
        _ => "is not valid CSV".to_owned(),
    }
}

fn map_header(record: &csv::ByteRecord, columns: &[Column]) -> Result<Vec<usize>, Rejection> {
    let header_error = |field: &str, message: &str| Rejection {
        line: 1,
        field: Some(field.to_owned()),
        message: message.to_owned(),
    };
    let mut mapping = Vec::with_capacity(record.len());
    for (index, cell) in record.iter().enumerate() {
        let cell = if index == 0 {
            cell.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(cell)
        } else {
            cell
        };
        let name = std::str::from_utf8(cell)
            .map_err(|_| Rejection {
                line: 1,
                field: None,
                message: format!("header column {} is not valid UTF-8", index + 1),
            })?
            .trim();
        let Some(position) = columns.iter().position(|column| column.name == name) else {
            let known: Vec<&str> = columns.iter().map(|column| column.name).collect();
            // Named by position: a file without a header row would put a person's data here.
            return Err(Rejection {
                line: 1,
                field: None,
                message: format!(
                    "header column {} is not a known column (known: {})",
                    index + 1,
                    known.join(", ")
                ),
            });
        };
        if mapping.contains(&position) {
            return Err(header_error(name, "appears twice in the header"));
        }
        mapping.push(position);
    }
    for (position, column) in columns.iter().enumerate() {
        if column.required && !mapping.contains(&position) {
            return Err(header_error(column.name, "is missing from the header"));
        }
    }
    Ok(mapping)
}

/// The column a record's field came from: `fields` maps record fields to columns; a field not
/// listed keeps its name without a `signal.` prefix.
pub fn column_for(field: &str, fields: &[(&str, &'static str)]) -> String {
    fields
        .iter()
        .find(|(record_field, _)| *record_field == field)
        .map_or_else(
            || field.strip_prefix("signal.").unwrap_or(field).to_owned(),
            |(_, column)| (*column).to_owned(),
        )
}

/// A table of one record per row: `build` turns a row into a record, which is then validated;
/// its first problem is reported against its column (see [`column_for`]).
pub fn records<R: SourceRecord>(
    reader: Box<dyn BufRead>,
    columns: &'static [Column],
    fields: &'static [(&'static str, &'static str)],
    build: fn(&Row) -> Result<R, Rejection>,
) -> Records<R> {
    Box::new(rows(reader, columns).map(move |row| {
        let row = row?;
        let record = build(&row)?;
        if let Some(FieldProblem { field, message }) = record.problems().into_iter().next() {
            return Err(row.reject(&column_for(&field, fields), message));
        }
        Ok((row.line, record))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLUMNS: &[Column] = &[required("id"), optional("when"), optional(SOURCE_SYSTEM)];

    fn read(text: &'static str) -> Vec<Result<Row, Rejection>> {
        rows(Box::new(std::io::Cursor::new(text.as_bytes())), COLUMNS).collect()
    }

    #[test]
    fn a_row_over_the_limit_is_rejected_at_its_line_without_reading_on() {
        let mut text = String::from("id,when\nfine,2026-01-02\n\"open quote,");
        text.push_str(&"x".repeat(MAX_ROW_BYTES + 64 * 1024));
        text.push_str("\nlater,2026-01-03\n");
        let rows: Vec<_> =
            rows(Box::new(std::io::Cursor::new(text.into_bytes())), COLUMNS).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].as_ref().unwrap().get("id"), Some("fine"));
        let rejection = rows[1].as_ref().unwrap_err();
        assert_eq!((rejection.line, rejection.field.as_deref()), (3, None));
        assert!(
            rejection.message.contains("longer than 4 MiB"),
            "{rejection}"
        );
    }

    #[test]
    fn a_bom_is_tolerated_and_lines_count_multi_line_cells() {
        let rows = read("\u{feff}id,when\n\"a\nb\",2026-01-02\n\nc,\n");
        assert_eq!(rows.len(), 2);
        let first = rows[0].as_ref().unwrap();
        assert_eq!((first.line, first.get("id")), (2, Some("a\nb")));
        let second = rows[1].as_ref().unwrap();
        assert_eq!((second.line, second.get("when")), (5, None));
        assert_eq!(second.source_system(), "csv");
    }

    #[test]
    fn lines_are_exact_with_blank_lines_crlf_and_no_final_break() {
        for (text, expected) in [
            ("id\n\n\na\n\nb", vec![4, 6]),
            ("id\r\na\r\n\r\n\"b\r\nc\"\r\nd\r\n", vec![2, 4, 6]),
            ("id\n\"x\n\ny\"\nz\n", vec![2, 5]),
        ] {
            let lines: Vec<u64> = read(text)
                .iter()
                .map(|row| row.as_ref().unwrap().line)
                .collect();
            assert_eq!(lines, expected, "{text:?}");
        }
    }

    #[test]
    fn unknown_duplicate_and_missing_columns_are_named() {
        let unknown = read("id,colour\n1,red\n");
        let error = unknown[0].as_ref().unwrap_err();
        // Named by position, never by its text, which could be a person's data.
        assert_eq!((error.line, error.field.as_deref()), (1, None));
        assert!(
            error
                .message
                .starts_with("header column 2 is not a known column"),
            "{error}"
        );
        assert!(!error.to_string().contains("colour"));
        assert_eq!(unknown.len(), 1);
        let missing = read("when\n2026-01-01\n");
        assert_eq!(
            missing[0].as_ref().unwrap_err().field.as_deref(),
            Some("id")
        );
        let twice = read("id,id\n1,2\n");
        assert!(twice[0].as_ref().unwrap_err().message.contains("twice"));
    }

    #[test]
    fn bad_cells_name_their_column_without_the_value() {
        let rows = read("id,when\n1,next tuesday secret\n2,3\n");
        let row = rows[0].as_ref().unwrap();
        let error = row.required_time("when").unwrap_err();
        assert_eq!((error.line, error.field.as_deref()), (2, Some("when")));
        assert!(!error.to_string().contains("secret"), "{error}");
        let short = rows[1].as_ref().unwrap();
        assert!(short.date("when").is_err());
        assert_eq!(
            parse_time("2026-10-01").unwrap().to_rfc3339(),
            "2026-10-01T00:00:00+00:00"
        );
        let uneven = read("id,when\n1,2,3\n");
        assert_eq!(uneven[0].as_ref().unwrap_err().line, 2);
    }

    fn keys(header: &str, body: &[u8]) -> Vec<Option<Key>> {
        let mut bytes = header.as_bytes().to_vec();
        bytes.extend_from_slice(body);
        keyed_rows(Box::new(std::io::Cursor::new(bytes)), COLUMNS, "id")
            .map(|row| row.err().map(|bad| bad.key))
            .collect()
    }

    #[test]
    fn a_bad_row_carries_its_key_where_it_can_be_read() {
        let exact = |id: &str| Some(Key::Exact(id.to_owned()));
        assert_eq!(
            keys(
                "id,when\n",
                b"fine,2026-01-02\n a ,\n b ,1,2\n,1,2\nc,\xff\n\xff,1\n"
            ),
            [
                None,
                None,
                exact("b"),
                Some(Key::Unknown),
                exact("c"),
                Some(Key::Unknown),
            ]
        );
        // Behind another column, a missing or extra cell may have shifted the key.
        assert_eq!(
            keys("when,id\n", b"1,a\nb\n1,b,2\n1,\xff\n\xff,d\n"),
            [
                None,
                Some(Key::Unknown),
                Some(Key::Shifted("b".to_owned())),
                Some(Key::Unknown),
                exact("d"),
            ]
        );
        // Rows that cannot be split from the file carry no key.
        let mut text = String::from("id\n\"open");
        text.push_str(&"x".repeat(MAX_ROW_BYTES + 64 * 1024));
        assert_eq!(keys("", text.as_bytes()), [Some(Key::NoRow)]);
    }
}
