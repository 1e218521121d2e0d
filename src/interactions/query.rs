//! Finding interactions again: the one filter of the console's list and the API's, and the
//! interactions that belong to one account. Synchronous, like every domain function; callers on
//! the web side run them in the blocking pool.

use chrono::{DateTime, Utc};

use crate::ids::{RecordId, TenantId};
use crate::interactions::{Channel, Interaction, InteractionRecord, InteractionStore};
use crate::records::{Order, Page};
use crate::store::StoreError;

/// How a filter's texts (status, account, tag) compare with the record's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TextMatch {
    /// Exactly as imported: the API's documented behaviour.
    #[default]
    Exact,
    /// Ignoring case and surrounding white space: the console's, for people typing.
    IgnoreCase,
}

impl TextMatch {
    fn same(self, wanted: &str, actual: &str) -> bool {
        match self {
            Self::Exact => wanted == actual,
            Self::IgnoreCase => same(wanted, actual),
        }
    }
}

/// What the console's interactions list and the API's `GET /interactions` narrow by. The time
/// window is on the first message's time: `since` included, `until` excluded (the console turns
/// its inclusive `from`/`to` dates into such a window).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InteractionFilter {
    pub channel: Option<Channel>,
    pub status: Option<String>,
    /// The account as the interaction names it (its source id or domain).
    pub account: Option<String>,
    pub tag: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub text_match: TextMatch,
}

fn same(left: &str, right: &str) -> bool {
    left.trim().eq_ignore_ascii_case(right.trim())
}

/// The time of the earliest message (messages are ordered, but imports are not trusted to be).
pub fn first_message_time(record: &InteractionRecord) -> Option<DateTime<Utc>> {
    record.messages.iter().map(|message| message.sent_at).min()
}

/// The time of the latest message.
pub fn last_message_time(record: &InteractionRecord) -> Option<DateTime<Utc>> {
    record.messages.iter().map(|message| message.sent_at).max()
}

/// Whether `time` falls in `[since, until)`; a missing time falls in no bounded window.
pub fn in_window(
    time: Option<DateTime<Utc>>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> bool {
    let after_start = since.is_none_or(|since| time.is_some_and(|t| t >= since));
    let before_end = until.is_none_or(|until| time.is_some_and(|t| t < until));
    after_start && before_end
}

impl InteractionFilter {
    /// True when no filter is set (whatever the text comparison).
    pub fn is_empty(&self) -> bool {
        *self
            == Self {
                text_match: self.text_match,
                ..Self::default()
            }
    }

    pub fn matches(&self, record: &InteractionRecord) -> bool {
        if self
            .channel
            .is_some_and(|channel| channel != record.channel)
        {
            return false;
        }
        let text_matches = |wanted: Option<&String>, actual: Option<&String>| match wanted {
            None => true,
            Some(wanted) => actual.is_some_and(|actual| self.text_match.same(wanted, actual)),
        };
        if !text_matches(self.status.as_ref(), record.status.as_ref())
            || !text_matches(self.account.as_ref(), record.account.as_ref())
        {
            return false;
        }
        if let Some(tag) = &self.tag {
            if !record
                .tags
                .iter()
                .any(|candidate| self.text_match.same(tag, candidate))
            {
                return false;
            }
        }
        if self.since.is_some() || self.until.is_some() {
            return in_window(first_message_time(record), self.since, self.until);
        }
        true
    }
}

/// One page of the tenant's interactions that match `filter`, newest first, starting below
/// `cursor`, through the shared pagination engine ([`crate::records::RecordStore::page`]).
pub fn list_interactions(
    store: &InteractionStore,
    tenant: TenantId,
    filter: &InteractionFilter,
    cursor: Option<RecordId>,
    limit: usize,
) -> Result<Page<Interaction>, StoreError> {
    store.page(tenant, Order::NewestFirst, cursor, limit, |record| {
        filter.matches(record)
    })
}

/// True when the interaction names the account by one of `keys` (its source id or domain).
pub fn belongs_to(record: &InteractionRecord, keys: &[&str]) -> bool {
    record
        .account
        .as_deref()
        .is_some_and(|account| keys.iter().any(|key| same(key, account)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> InteractionRecord {
        serde_json::from_str(
            r#"{"source_system":"desk","source_id":"1","channel":"chat","status":"Open",
                "account":"acme.example","tags":["Billing"],"messages":[
                {"role":"customer","sent_at":"2026-01-02T03:04:05Z","text":"Hello"}]}"#,
        )
        .unwrap()
    }

    fn day(text: &str) -> DateTime<Utc> {
        chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
    }

    #[test]
    fn filters_narrow_by_each_field_and_ignore_case_when_asked() {
        let record = record();
        assert!(InteractionFilter::default().matches(&record));
        let by = |filter: InteractionFilter| filter.matches(&record);
        assert!(by(InteractionFilter {
            channel: Some(Channel::Chat),
            status: Some("open".to_owned()),
            account: Some("ACME.example".to_owned()),
            tag: Some("billing".to_owned()),
            since: Some(day("2026-01-02")),
            until: Some(day("2026-01-03")),
            text_match: TextMatch::IgnoreCase,
        }));
        // The API's exact comparison: case counts.
        assert!(!by(InteractionFilter {
            status: Some("open".to_owned()),
            ..InteractionFilter::default()
        }));
        assert!(by(InteractionFilter {
            status: Some("Open".to_owned()),
            tag: Some("Billing".to_owned()),
            ..InteractionFilter::default()
        }));
        assert!(!by(InteractionFilter {
            channel: Some(Channel::Email),
            ..InteractionFilter::default()
        }));
        assert!(!by(InteractionFilter {
            tag: Some("bug".to_owned()),
            text_match: TextMatch::IgnoreCase,
            ..InteractionFilter::default()
        }));
        // `until` is excluded, `since` included.
        assert!(!by(InteractionFilter {
            since: Some(day("2026-01-03")),
            ..InteractionFilter::default()
        }));
        assert!(!by(InteractionFilter {
            until: Some(day("2026-01-02")),
            ..InteractionFilter::default()
        }));
        assert!(InteractionFilter {
            text_match: TextMatch::IgnoreCase,
            ..InteractionFilter::default()
        }
        .is_empty());
        assert!(belongs_to(&record, &["x", "acme.example"]));
        assert!(!belongs_to(&record, &["other.example"]));
    }
}
