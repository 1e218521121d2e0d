//! Finding interactions again: the filters of the console's list (and, later, of the API's), and
//! the interactions that belong to one account. Synchronous, like every domain function; callers
//! on the web side run them in the blocking pool.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;

use crate::ids::{RecordId, TenantId};
use crate::interactions::{Channel, Interaction, InteractionRecord, InteractionStore};
use crate::records::Page;
use crate::store::StoreError;

/// What the interactions list narrows by. Text comparisons ignore case; the date range is on the
/// first message's time and includes both ends.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct InteractionFilter {
    pub channel: Option<Channel>,
    pub status: Option<String>,
    /// The account as the interaction names it (its source id or domain).
    pub account: Option<String>,
    pub tag: Option<String>,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
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

impl InteractionFilter {
    /// True when no filter is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
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
            Some(wanted) => actual.is_some_and(|actual| same(wanted, actual)),
        };
        if !text_matches(self.status.as_ref(), record.status.as_ref())
            || !text_matches(self.account.as_ref(), record.account.as_ref())
        {
            return false;
        }
        if let Some(tag) = &self.tag {
            if !record.tags.iter().any(|candidate| same(tag, candidate)) {
                return false;
            }
        }
        if self.from.is_some() || self.to.is_some() {
            let Some(first) = first_message_time(record).map(|time| time.date_naive()) else {
                return false;
            };
            if self.from.is_some_and(|from| first < from) || self.to.is_some_and(|to| first > to) {
                return false;
            }
        }
        true
    }
}

/// One page of the tenant's interactions that match `filter`, newest first, starting below
/// `cursor`. The scan stops once `limit` interactions are found.
pub fn list_interactions(
    store: &InteractionStore,
    tenant: TenantId,
    filter: &InteractionFilter,
    cursor: Option<RecordId>,
    limit: usize,
) -> Result<Page<Interaction>, StoreError> {
    store.page(tenant, cursor, limit, |record| filter.matches(record))
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

    #[test]
    fn filters_narrow_by_each_field_and_ignore_case() {
        let record = record();
        assert!(InteractionFilter::default().matches(&record));
        let by = |filter: InteractionFilter| filter.matches(&record);
        assert!(by(InteractionFilter {
            channel: Some(Channel::Chat),
            status: Some("open".to_owned()),
            account: Some("ACME.example".to_owned()),
            tag: Some("billing".to_owned()),
            from: NaiveDate::from_ymd_opt(2026, 1, 2),
            to: NaiveDate::from_ymd_opt(2026, 1, 2),
        }));
        assert!(!by(InteractionFilter {
            channel: Some(Channel::Email),
            ..InteractionFilter::default()
        }));
        assert!(!by(InteractionFilter {
            tag: Some("bug".to_owned()),
            ..InteractionFilter::default()
        }));
        assert!(!by(InteractionFilter {
            from: NaiveDate::from_ymd_opt(2026, 1, 3),
            ..InteractionFilter::default()
        }));
        assert!(belongs_to(&record, &["x", "acme.example"]));
        assert!(!belongs_to(&record, &["other.example"]));
    }
}
