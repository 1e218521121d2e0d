//! The `reviews` format: public reviews, either a Google Business Profile export (JSON, the
//! Business Profile API's `{"reviews": [...]}` shape), a Facebook page's ratings export (JSON, the
//! Graph API's `{"data": [...]}` shape of `/{page}/ratings`), or Rapport's review CSV (README,
//! "Import formats"). The first non-blank byte decides: `{` or `[` is JSON, anything else CSV; in
//! JSON the array's member name (`reviews` or `data`) decides between Google and Facebook, and in
//! a bare top-level array each review's own fields do (`created_time` or `recommendation_type`
//! is Facebook).
//!
//! JSON is streamed: the top-level object is walked by hand, other members (`averageRating`,
//! `nextPageToken`, …) are skipped without being kept, and each element of `reviews` is read and
//! parsed on its own, so only one review is in memory at a time. A bare top-level array of review
//! objects is accepted too. JSON lines carry no meaning here, so a JSON review's rejection gives
//! the review's 1-based position in the array as its line, and says so.

use std::io::BufRead;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::ingest::table::{self, optional, required, Column, Row, SOURCE_SYSTEM};
use crate::ingest::{jsonl, ImportSource, Records, Rejection};
use crate::records::SourceRecord as _;
use crate::signals::{Signal, SignalRecord};

/// The largest review accepted in a JSON export.
const MAX_REVIEW_BYTES: usize = 8 * 1024 * 1024;

/// The source system and platform of a Google Business Profile export.
pub const GOOGLE: &str = "google";

/// The source system and platform of a Facebook page's ratings export.
pub const FACEBOOK: &str = "facebook";

/// Which JSON export the reviews come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Export {
    Google,
    Facebook,
}

/// The parser for [`crate::ingest::import_file`].
pub fn parser(_source: &dyn ImportSource, mut reader: Box<dyn BufRead>) -> Records<SignalRecord> {
    let first = match first_byte(&mut reader) {
        Ok(first) => first,
        Err(error) => {
            return Box::new(std::iter::once(Err(Rejection {
                line: 0,
                field: None,
                message: format!("cannot be read: {error}"),
            })))
        }
    };
    match first {
        Some(b'{' | b'[') => Box::new(JsonReviews {
            bytes: Bytes { reader },
            index: 0,
            state: State::Start,
            export: None,
        }),
        _ => table::records(reader, CSV_COLUMNS, CSV_FIELDS, csv_review),
    }
}

/// The first byte after a byte-order mark and white space, without consuming anything (the CSV
/// reader counts lines from the very start).
fn first_byte(reader: &mut Box<dyn BufRead>) -> std::io::Result<Option<u8>> {
    let buffer = reader.fill_buf()?;
    let buffer = buffer.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(buffer);
    Ok(buffer
        .iter()
        .copied()
        .find(|byte| !byte.is_ascii_whitespace()))
}

// --- CSV ---------------------------------------------------------------------------------------

const CSV_COLUMNS: &[Column] = &[
    required("review_id"),
    required("platform"),
    optional("location"),
    required("rating"),
    optional("text"),
    optional("reviewer"),
    optional("reply"),
    required("reviewed_at"),
    optional("account"),
    optional(SOURCE_SYSTEM),
];

const CSV_FIELDS: &[(&str, &str)] = &[("source_id", "review_id"), ("occurred_at", "reviewed_at")];

fn csv_review(row: &Row) -> Result<SignalRecord, Rejection> {
    Ok(SignalRecord {
        source_system: row.source_system(),
        source_id: row.required("review_id")?.to_owned(),
        account: row.text("account"),
        contact: None,
        occurred_at: row.required_time("reviewed_at")?,
        signal: Signal::Review {
            platform: row.required("platform")?.to_lowercase(),
            rating: row.required_number("rating", "a whole number from 1 to 5")?,
            text: row.text("text"),
            reviewer: row.text("reviewer"),
            location: row.text("location"),
            reply: row.text("reply"),
        },
    })
}

// --- Google Business Profile JSON ---------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GoogleReview {
    /// `accounts/{account}/locations/{location}/reviews/{review}`.
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    review_id: Option<String>,
    #[serde(default)]
    reviewer: Option<Reviewer>,
    star_rating: String,
    #[serde(default)]
    comment: Option<String>,
    create_time: DateTime<Utc>,
    #[serde(default)]
    review_reply: Option<Reply>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reviewer {
    #[serde(default)]
    display_name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Reply {
    comment: String,
}

/// Record fields named as the export names them.
const JSON_FIELDS: &[(&str, &str)] = &[
    ("source_id", "reviewId"),
    ("occurred_at", "createTime"),
    ("signal.rating", "starRating"),
    ("signal.text", "comment"),
    ("signal.reviewer", "reviewer.displayName"),
    ("signal.location", "name"),
    ("signal.reply", "reviewReply.comment"),
];

fn google_review(review: GoogleReview) -> Result<SignalRecord, (String, String)> {
    let rating = match review.star_rating.as_str() {
        "ONE" => 1,
        "TWO" => 2,
        "THREE" => 3,
        "FOUR" => 4,
        "FIVE" => 5,
        _ => {
            return Err((
                "starRating".to_owned(),
                "must be one of ONE, TWO, THREE, FOUR, FIVE".to_owned(),
            ))
        }
    };
    let segments: Vec<&str> = review
        .name
        .as_deref()
        .unwrap_or_default()
        .split('/')
        .collect();
    let after = |label: &str| {
        segments
            .iter()
            .position(|segment| *segment == label)
            .and_then(|position| segments.get(position + 1))
            .filter(|value| !value.is_empty())
            .map(|value| (*value).to_owned())
    };
    let Some(source_id) = review.review_id.clone().or_else(|| after("reviews")) else {
        return Err((
            "reviewId".to_owned(),
            "is missing (and name does not end in reviews/{id})".to_owned(),
        ));
    };
    Ok(SignalRecord {
        source_system: GOOGLE.to_owned(),
        source_id,
        account: None,
        contact: None,
        occurred_at: review.create_time,
        signal: Signal::Review {
            platform: GOOGLE.to_owned(),
            rating,
            text: review.comment,
            reviewer: review.reviewer.and_then(|reviewer| reviewer.display_name),
            location: after("locations"),
            reply: review.review_reply.map(|reply| reply.comment),
        },
    })
}

// --- Facebook page ratings JSON ------------------------------------------------------------------

/// One element of a page's `ratings` edge (the Graph API's Recommendation object). Pages have
/// recommendations (`recommendation_type` positive or negative) since 2018; older exports carry a
/// star `rating` instead, or both.
#[derive(Debug, Deserialize)]
struct FacebookReview {
    created_time: String,
    #[serde(default)]
    recommendation_type: Option<String>,
    #[serde(default)]
    rating: Option<i64>,
    #[serde(default)]
    review_text: Option<String>,
    #[serde(default)]
    reviewer: Option<FacebookReviewer>,
    #[serde(default)]
    open_graph_story: Option<FacebookStory>,
    /// Present in some exports instead of `open_graph_story`.
    #[serde(default)]
    id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct FacebookReviewer {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct FacebookStory {
    #[serde(default)]
    id: Option<String>,
}

/// Record fields named as the Facebook export names them.
const FACEBOOK_FIELDS: &[(&str, &str)] = &[
    ("source_id", "open_graph_story.id"),
    ("occurred_at", "created_time"),
    ("signal.rating", "rating"),
    ("signal.text", "review_text"),
    ("signal.reviewer", "reviewer.name"),
];

/// The 1–5 rating of a Facebook review: a stated `rating` wins; otherwise a positive
/// recommendation is 5 and a negative one 1.
fn facebook_rating(review: &FacebookReview) -> Result<u8, (String, String)> {
    if let Some(rating) = review.rating {
        return u8::try_from(rating)
            .ok()
            .filter(|rating| (1..=5).contains(rating))
            .ok_or_else(|| {
                (
                    "rating".to_owned(),
                    "must be a whole number from 1 to 5".to_owned(),
                )
            });
    }
    match review.recommendation_type.as_deref() {
        Some("positive") => Ok(5),
        Some("negative") => Ok(1),
        _ => Err((
            "recommendation_type".to_owned(),
            "must be positive or negative when the review has no rating".to_owned(),
        )),
    }
}

fn facebook_review(review: FacebookReview) -> Result<SignalRecord, (String, String)> {
    let rating = facebook_rating(&review)?;
    let occurred_at = DateTime::parse_from_rfc3339(&review.created_time)
        .or_else(|_| DateTime::parse_from_str(&review.created_time, "%Y-%m-%dT%H:%M:%S%z"))
        .map_err(|_| {
            (
                "created_time".to_owned(),
                "must be a time such as 2026-10-01T08:00:00+0000".to_owned(),
            )
        })?
        .with_timezone(&Utc);
    let source_id = review
        .open_graph_story
        .and_then(|story| story.id)
        .or(review.id)
        .filter(|id| !id.trim().is_empty())
        .ok_or_else(|| {
            (
                "open_graph_story.id".to_owned(),
                "is missing (and the review has no id)".to_owned(),
            )
        })?;
    Ok(SignalRecord {
        source_system: FACEBOOK.to_owned(),
        source_id,
        account: None,
        contact: None,
        occurred_at,
        signal: Signal::Review {
            platform: FACEBOOK.to_owned(),
            rating,
            text: review.review_text,
            reviewer: review.reviewer.and_then(|reviewer| reviewer.name),
            location: None,
            reply: None,
        },
    })
}

/// The fields that tell a Facebook review in a bare array from a Google one.
#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    created_time: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    recommendation_type: Option<serde::de::IgnoredAny>,
}

fn detect(bytes: &[u8]) -> Export {
    match serde_json::from_slice::<Probe>(bytes) {
        Ok(probe) if probe.created_time.is_some() || probe.recommendation_type.is_some() => {
            Export::Facebook
        }
        _ => Export::Google,
    }
}

/// A reader of single bytes with one byte of look-ahead.
struct Bytes {
    reader: Box<dyn BufRead>,
}

impl Bytes {
    fn peek(&mut self) -> std::io::Result<Option<u8>> {
        Ok(self.reader.fill_buf()?.first().copied())
    }

    fn bump(&mut self) {
        self.reader.consume(1);
    }

    /// The next byte that is not white space (or a byte-order mark), not consumed.
    fn peek_token(&mut self) -> std::io::Result<Option<u8>> {
        loop {
            let buffer = self.reader.fill_buf()?;
            if buffer.starts_with(b"\xEF\xBB\xBF") {
                self.reader.consume(3);
                continue;
            }
            match buffer.first() {
                Some(byte) if byte.is_ascii_whitespace() => self.bump(),
                other => return Ok(other.copied()),
            }
        }
    }

    /// Reads one JSON value's bytes (kept only when `keep`), leaving the `,`, `}` or `]` after
    /// it unread. Strings and nesting are followed, nothing is parsed.
    fn value(&mut self, keep: bool, limit: usize) -> Result<Vec<u8>, String> {
        let mut kept = Vec::new();
        let mut depth = 0usize;
        let mut in_string = false;
        let mut escaped = false;
        let mut length = 0usize;
        self.peek_token().map_err(|error| error.to_string())?;
        loop {
            let Some(byte) = self.peek().map_err(|error| error.to_string())? else {
                return Err("ends in the middle of a value".to_owned());
            };
            if !in_string && depth == 0 && length > 0 && matches!(byte, b',' | b'}' | b']') {
                return Ok(kept);
            }
            self.bump();
            length += 1;
            if keep {
                if length > limit {
                    return Err(format!("is longer than {limit} bytes"));
                }
                kept.push(byte);
            }
            if in_string {
                if escaped {
                    escaped = false;
                } else if byte == b'\\' {
                    escaped = true;
                } else if byte == b'"' {
                    in_string = false;
                    if depth == 0 {
                        return Ok(kept);
                    }
                }
                continue;
            }
            match byte {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return Ok(kept);
                    }
                }
                _ => {}
            }
        }
    }

    fn expect(&mut self, wanted: u8) -> Result<(), String> {
        match self.peek_token().map_err(|error| error.to_string())? {
            Some(byte) if byte == wanted => {
                self.bump();
                Ok(())
            }
            _ => Err(format!(
                "is not valid JSON: expected `{}`",
                char::from(wanted)
            )),
        }
    }
}

enum State {
    Start,
    /// Inside the reviews array; true before its first element.
    InArray(bool),
    Done,
}

struct JsonReviews {
    bytes: Bytes,
    /// The 1-based position of the last review read.
    index: u64,
    state: State,
    /// Named by the array's member; `None` for a bare array (each review decides).
    export: Option<Export>,
}

impl JsonReviews {
    fn rejection(&self, field: Option<String>, message: &str) -> Rejection {
        Rejection {
            line: self.index,
            field,
            message: format!(
                "{message} (review {} of the {} array: JSON reviews are counted, not lines)",
                self.index,
                if self.export == Some(Export::Facebook) {
                    "data"
                } else {
                    "reviews"
                }
            ),
        }
    }

    /// Walks the top-level object up to the `[` of its `reviews` (Google) or `data` (Facebook)
    /// member.
    fn open_array(&mut self) -> Result<bool, String> {
        if self.bytes.peek_token().map_err(|e| e.to_string())? == Some(b'[') {
            self.bytes.bump();
            return Ok(true);
        }
        self.bytes.expect(b'{')?;
        loop {
            match self.bytes.peek_token().map_err(|e| e.to_string())? {
                Some(b'}') | None => return Ok(false),
                Some(b',') => {
                    self.bytes.bump();
                    continue;
                }
                _ => {}
            }
            let key = self.bytes.value(true, 1024)?;
            let key: String = serde_json::from_slice(&key)
                .map_err(|_| "is not valid JSON: a member name is not a string".to_owned())?;
            self.bytes.expect(b':')?;
            let export = match key.as_str() {
                "reviews" => Some(Export::Google),
                "data" => Some(Export::Facebook),
                _ => None,
            };
            if export.is_some() {
                self.export = export;
                self.bytes.expect(b'[')?;
                return Ok(true);
            }
            self.bytes.value(false, 0)?;
        }
    }

    /// The next element of the array, or `None` at its end.
    fn next_element(&mut self, first: bool) -> Result<Option<Vec<u8>>, String> {
        let token = self.bytes.peek_token().map_err(|e| e.to_string())?;
        match token {
            Some(b']') => return Ok(None),
            Some(b',') if !first => self.bytes.bump(),
            _ if first => {}
            _ => return Err("is not valid JSON: expected `,` or `]`".to_owned()),
        }
        if self.bytes.peek_token().map_err(|e| e.to_string())? == Some(b']') {
            return Err("is not valid JSON: a comma before `]`".to_owned());
        }
        self.bytes.value(true, MAX_REVIEW_BYTES).map(Some)
    }

    fn review(&self, bytes: &[u8]) -> Result<(u64, SignalRecord), Rejection> {
        let export = self.export.unwrap_or_else(|| detect(bytes));
        let (record, fields) = match export {
            Export::Google => (
                self.parse::<GoogleReview>(bytes)?.and_then(google_review),
                JSON_FIELDS,
            ),
            Export::Facebook => (
                self.parse::<FacebookReview>(bytes)?
                    .and_then(facebook_review),
                FACEBOOK_FIELDS,
            ),
        };
        let record = record.map_err(|(field, message)| self.rejection(Some(field), &message))?;
        if let Some(problem) = record.problems().into_iter().next() {
            let field = table::column_for(&problem.field, fields);
            return Err(self.rejection(Some(field), &problem.message));
        }
        Ok((self.index, record))
    }

    /// One review's JSON as `T`; a shape error names the field by its path in the export.
    fn parse<T: serde::de::DeserializeOwned>(
        &self,
        bytes: &[u8],
    ) -> Result<Result<T, (String, String)>, Rejection> {
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        serde_path_to_error::deserialize(&mut deserializer)
            .map(Ok)
            .map_err(|error| {
                let path = error.path().to_string();
                let message = jsonl::describe(error.inner());
                self.rejection(jsonl::field_of(&path, &message), &message)
            })
    }
}

impl Iterator for JsonReviews {
    type Item = Result<(u64, SignalRecord), Rejection>;

    fn next(&mut self) -> Option<Self::Item> {
        let first = match self.state {
            State::Done => return None,
            State::Start => match self.open_array() {
                Ok(true) => true,
                Ok(false) => {
                    self.state = State::Done;
                    return Some(Err(Rejection {
                        line: 0,
                        field: Some("reviews".to_owned()),
                        message: "is missing: the file has no reviews array (Google) or data array (Facebook)".to_owned(),
                    }));
                }
                Err(message) => {
                    self.state = State::Done;
                    return Some(Err(self.rejection(None, &message)));
                }
            },
            State::InArray(first) => first,
        };
        self.index += 1;
        match self.next_element(first) {
            Ok(Some(bytes)) => {
                self.state = State::InArray(false);
                Some(self.review(&bytes))
            }
            Ok(None) => {
                // Whatever follows the array (more members) is not needed.
                self.state = State::Done;
                None
            }
            Err(message) => {
                // The file's structure is lost: nothing after this point can be trusted.
                self.state = State::Done;
                Some(Err(self.rejection(None, &message)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<Result<(u64, SignalRecord), Rejection>> {
        parser(
            &crate::ingest::FileSource(std::path::Path::new("r")),
            Box::new(std::io::Cursor::new(text.to_owned().into_bytes())),
        )
        .collect()
    }

    #[test]
    fn google_json_streams_reviews_and_skips_other_members() {
        let results = parse(concat!(
            "\u{feff}\n  {\"averageRating\": 3.5, \"meta\": {\"a\": [1, \"]}\"]},\n \"reviews\": [",
            r#"{"name":"accounts/1/locations/77/reviews/r1","reviewId":"r1","reviewer":{"displayName":"Ana"},"starRating":"ONE","comment":"Cold food","createTime":"2026-10-01T08:00:00Z","reviewReply":{"comment":"Sorry!","updateTime":"2026-10-02T08:00:00Z"}},"#,
            r#"{"name":"accounts/1/locations/77/reviews/r2","starRating":"FIVE","createTime":"2026-10-03T08:00:00Z"}"#,
            "], \"totalReviewCount\": 2, \"nextPageToken\": \"x\"}"
        ));
        assert_eq!(results.len(), 2);
        let (index, first) = results[0].as_ref().unwrap();
        assert_eq!(*index, 1);
        assert_eq!(first.source_id, "r1");
        assert_eq!(
            first.signal,
            Signal::Review {
                platform: "google".to_owned(),
                rating: 1,
                text: Some("Cold food".to_owned()),
                reviewer: Some("Ana".to_owned()),
                location: Some("77".to_owned()),
                reply: Some("Sorry!".to_owned()),
            }
        );
        assert_eq!(results[1].as_ref().unwrap().1.source_id, "r2");
    }

    #[test]
    fn bad_json_reviews_are_named_by_position_and_field() {
        let results = parse(concat!(
            r#"{"reviews":[{"reviewId":"a","starRating":"ONE","createTime":"2026-10-01T08:00:00Z"},"#,
            r#"{"reviewId":"b","starRating":"SECRET","createTime":"2026-10-01T08:00:00Z"},"#,
            r#"{"reviewId":"c","starRating":"TWO"},"#,
            r#"{"reviewId":"d","starRating":"TWO","createTime":"secret"}]}"#,
        ));
        assert!(results[0].is_ok());
        let errors: Vec<(u64, String)> = results[1..]
            .iter()
            .map(|r| {
                let e = r.as_ref().unwrap_err();
                assert!(!e.to_string().contains("SECRET") && !e.to_string().contains("secret"));
                assert!(e.message.contains("review"), "{e}");
                (e.line, e.field.clone().unwrap())
            })
            .collect();
        assert_eq!(
            errors,
            [
                (2, "starRating".to_owned()),
                (3, "createTime".to_owned()),
                (4, "createTime".to_owned())
            ]
        );
        let broken = parse(
            r#"{"reviews":[{"reviewId":"a","starRating":"ONE","createTime":"2026-10-01T08:00:00Z"} {"#,
        );
        assert!(broken[0].is_ok());
        assert_eq!(broken[1].as_ref().unwrap_err().line, 2);
        assert_eq!(broken.len(), 2);
        let bare =
            parse(r#"[{"reviewId":"a","starRating":"TWO","createTime":"2026-10-01T08:00:00Z"}]"#);
        assert_eq!(bare.len(), 1);
        assert_eq!(bare[0].as_ref().unwrap().1.source_id, "a");
        let none = parse(r#"{"totalReviewCount": 0}"#);
        assert_eq!(
            none[0].as_ref().unwrap_err().field.as_deref(),
            Some("reviews")
        );
    }

    #[test]
    fn facebook_ratings_map_recommendations_to_ratings() {
        let results = parse(concat!(
            r#"{"data": ["#,
            r#"{"created_time":"2026-10-01T08:00:00+0000","recommendation_type":"negative","review_text":"Rude on the phone","reviewer":{"id":"1","name":"Ana"},"open_graph_story":{"id":"fb-1"},"has_review":true},"#,
            r#"{"created_time":"2026-10-02T08:00:00+0000","recommendation_type":"positive","open_graph_story":{"id":"fb-2"}},"#,
            r#"{"created_time":"2016-05-02T08:00:00+0000","rating":3,"recommendation_type":"positive","id":"fb-3"},"#,
            r#"{"created_time":"2026-10-02T08:00:00+0000","recommendation_type":"SECRET","open_graph_story":{"id":"fb-4"}},"#,
            r#"{"created_time":"secret","recommendation_type":"positive","open_graph_story":{"id":"fb-5"}},"#,
            r#"{"created_time":"2026-10-02T08:00:00+0000","rating":9,"open_graph_story":{"id":"fb-6"}},"#,
            r#"{"created_time":"2026-10-02T08:00:00+0000","recommendation_type":"positive"}"#,
            r#"], "paging": {"cursors": {"before": "a", "after": "b"}}}"#,
        ));
        assert_eq!(results.len(), 7);
        let (_, first) = results[0].as_ref().unwrap();
        assert_eq!(
            (first.source_system.as_str(), first.source_id.as_str()),
            ("facebook", "fb-1")
        );
        assert_eq!(first.occurred_at.to_rfc3339(), "2026-10-01T08:00:00+00:00");
        assert_eq!(
            first.signal,
            Signal::Review {
                platform: "facebook".to_owned(),
                rating: 1,
                text: Some("Rude on the phone".to_owned()),
                reviewer: Some("Ana".to_owned()),
                location: None,
                reply: None,
            }
        );
        let rating = |index: usize| match &results[index].as_ref().unwrap().1.signal {
            Signal::Review { rating, .. } => *rating,
            other => panic!("{other:?}"),
        };
        // Positive is 5; a stated rating wins over the recommendation.
        assert_eq!((rating(1), rating(2)), (5, 3));
        assert_eq!(results[2].as_ref().unwrap().1.source_id, "fb-3");
        let errors: Vec<(u64, String)> = results[3..]
            .iter()
            .map(|r| {
                let e = r.as_ref().unwrap_err();
                assert!(!e.to_string().contains("SECRET") && !e.to_string().contains("secret"));
                assert!(e.message.contains("of the data array"), "{e}");
                (e.line, e.field.clone().unwrap())
            })
            .collect();
        assert_eq!(
            errors,
            [
                (4, "recommendation_type".to_owned()),
                (5, "created_time".to_owned()),
                (6, "rating".to_owned()),
                (7, "open_graph_story.id".to_owned())
            ]
        );
        // A bare array: each review's own fields say which export it is.
        let bare = parse(concat!(
            r#"[{"created_time":"2026-10-01T08:00:00+0000","recommendation_type":"positive","open_graph_story":{"id":"fb-1"}},"#,
            r#"{"reviewId":"g-1","starRating":"TWO","createTime":"2026-10-01T08:00:00Z"}]"#
        ));
        assert_eq!(bare[0].as_ref().unwrap().1.source_system, "facebook");
        assert_eq!(bare[1].as_ref().unwrap().1.source_system, "google");
    }

    #[test]
    fn the_review_csv_parses_with_its_columns() {
        let results = parse(concat!(
            "review_id,platform,location,rating,text,reviewer,reply,reviewed_at,account\n",
            "fb-1,Facebook,Berlin,4,\"Nice staff,\nslow checkout\",Jo,,2026-10-01,A-1\n",
            "fb-2,facebook,,6,,,,2026-10-01,\n",
        ));
        let (line, review) = results[0].as_ref().unwrap();
        assert_eq!(*line, 2);
        assert_eq!(review.source_system, "csv");
        let Signal::Review { platform, text, .. } = &review.signal else {
            panic!("not a review");
        };
        assert_eq!(platform, "facebook");
        assert_eq!(text.as_deref(), Some("Nice staff,\nslow checkout"));
        let error = results[1].as_ref().unwrap_err();
        assert_eq!((error.line, error.field.as_deref()), (4, Some("rating")));
    }
}
