//! The `surveys` format: a CSV of survey answers (NPS 0–10, CSAT 1–5) with their comments
//! (README, "Import formats"). One [`Signal::Survey`] per row; the response id is the source id.

use std::io::BufRead;

use crate::ingest::table::{self, optional, required, Column, Row, SOURCE_SYSTEM};
use crate::ingest::{ImportSource, Records, Rejection};
use crate::signals::{Signal, SignalRecord, SurveyKind};

const COLUMNS: &[Column] = &[
    required("response_id"),
    required("survey"),
    required("score"),
    optional("comment"),
    required("answered_at"),
    optional("contact_email"),
    optional("account"),
    optional(SOURCE_SYSTEM),
];

const FIELDS: &[(&str, &str)] = &[
    ("source_id", "response_id"),
    ("contact", "contact_email"),
    ("occurred_at", "answered_at"),
];

fn survey(row: &Row) -> Result<SignalRecord, Rejection> {
    let survey = match row.required("survey")?.to_ascii_lowercase().as_str() {
        "nps" => SurveyKind::Nps,
        "csat" => SurveyKind::Csat,
        _ => return Err(row.reject("survey", "must be nps or csat")),
    };
    Ok(SignalRecord {
        source_system: row.source_system(),
        source_id: row.required("response_id")?.to_owned(),
        account: row.text("account"),
        contact: row.text("contact_email"),
        occurred_at: row.required_time("answered_at")?,
        signal: Signal::Survey {
            survey,
            score: row.required_number("score", "a whole number from 0 to 10")?,
            comment: row.text("comment"),
        },
    })
}

/// The parser of the `surveys` format.
pub fn parser(_source: &dyn ImportSource, reader: Box<dyn BufRead>) -> Records<SignalRecord> {
    table::records(reader, COLUMNS, FIELDS, survey)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_and_scores_are_checked_against_their_survey() {
        let text = concat!(
            "response_id,survey,score,comment,answered_at,contact_email,account\n",
            "R-1,NPS,9,\"Great support, fast answers\",2026-10-01T10:00:00Z,maria@northwind.example,A-1\n",
            "R-2,csat,7,,2026-10-02,,\n",
            "R-3,ces,3,,2026-10-02,,\n",
            "R-4,nps,very secret,,2026-10-02,,\n",
        );
        let results: Vec<_> = parser(
            &crate::ingest::FileSource(std::path::Path::new("s.csv")),
            Box::new(std::io::Cursor::new(text.as_bytes())),
        )
        .collect();
        let (_, first) = results[0].as_ref().unwrap();
        assert_eq!(
            first.signal,
            Signal::Survey {
                survey: SurveyKind::Nps,
                score: 9,
                comment: Some("Great support, fast answers".to_owned())
            }
        );
        let errors: Vec<_> = results[1..]
            .iter()
            .map(|r| r.as_ref().unwrap_err())
            .collect();
        assert_eq!(
            (errors[0].line, errors[0].field.as_deref()),
            (3, Some("score"))
        );
        assert!(errors[0].message.contains("1 to 5"));
        assert_eq!(errors[1].field.as_deref(), Some("survey"));
        assert_eq!(errors[2].field.as_deref(), Some("score"));
        assert!(!errors[2].to_string().contains("secret"));
    }
}
