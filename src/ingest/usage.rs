//! The `usage` format: a CSV of product-usage figures per account, metric and period (README,
//! "Import formats"). One [`Signal::Usage`] per row; the source id is
//! `account_id|metric|period_start`, so re-importing a period's figure updates it.

use std::io::BufRead;

use crate::ingest::table::{self, optional, required, Column, Row, SOURCE_SYSTEM};
use crate::ingest::{ImportSource, Records, Rejection};
use crate::signals::{Signal, SignalRecord};

const COLUMNS: &[Column] = &[
    required("account_id"),
    required("metric"),
    required("value"),
    required("period_start"),
    required("period_end"),
    optional(SOURCE_SYSTEM),
];

const FIELDS: &[(&str, &str)] = &[
    ("source_id", "metric"),
    ("account", "account_id"),
    ("occurred_at", "period_start"),
];

fn usage(row: &Row) -> Result<SignalRecord, Rejection> {
    let account = row.required("account_id")?;
    let metric = row.required("metric")?;
    let period_start = row.required_date("period_start")?;
    let period_end = row.required_date("period_end")?;
    let occurred_at = period_start
        .and_hms_opt(0, 0, 0)
        .map(|time| time.and_utc())
        .ok_or_else(|| row.reject("period_start", "is not a valid date"))?;
    Ok(SignalRecord {
        source_system: row.source_system(),
        source_id: format!("{account}|{metric}|{period_start}"),
        account: Some(account.to_owned()),
        contact: None,
        occurred_at,
        signal: Signal::Usage {
            metric: metric.to_owned(),
            value: row.required_number("value", "a number like 1200 or 0.75")?,
            period_start,
            period_end,
        },
    })
}

/// The parser of the `usage` format.
pub fn parser(_source: &dyn ImportSource, reader: Box<dyn BufRead>) -> Records<SignalRecord> {
    table::records(reader, COLUMNS, FIELDS, usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_parse_and_periods_are_checked() {
        let text = concat!(
            "account_id,metric,value,period_start,period_end\n",
            "A-1,active_users,182,2026-09-01,2026-09-30\n",
            "A-1,active_users,190,2026-10-01,2026-09-30\n",
            "A-2,exports,lots,2026-10-01,2026-10-31\n",
        );
        let results: Vec<_> = parser(
            &crate::ingest::FileSource(std::path::Path::new("u.csv")),
            Box::new(std::io::Cursor::new(text.as_bytes())),
        )
        .collect();
        let (_, first) = results[0].as_ref().unwrap();
        assert_eq!(first.source_id, "A-1|active_users|2026-09-01");
        assert_eq!(first.account.as_deref(), Some("A-1"));
        let end = results[1].as_ref().unwrap_err();
        assert_eq!((end.line, end.field.as_deref()), (3, Some("period_end")));
        let value = results[2].as_ref().unwrap_err();
        assert_eq!((value.line, value.field.as_deref()), (4, Some("value")));
        assert!(!value.to_string().contains("lots"));
    }
}
