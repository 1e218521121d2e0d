//! One account's page: its contacts and a timeline of its interactions and signals. An
//! interaction or signal belongs to the account when it names the account's source id or its
//! domain. Synchronous; full scans of the tenant's interactions, signals and contacts (there is
//! no secondary index yet), with the timeline capped at [`TIMELINE_LIMIT`] entries.

use chrono::{DateTime, Utc};

use crate::accounts::{Account, Contact};
use crate::context::AppContext;
use crate::ids::{RecordId, TenantId};
use crate::interactions::query::{belongs_to, first_message_time};
use crate::interactions::Interaction;
use crate::signals::StoredSignal;
use crate::store::StoreError;

/// The newest entries an account page shows.
pub const TIMELINE_LIMIT: usize = 200;

/// One entry of an account's timeline.
pub enum TimelineEntry {
    Interaction(Box<Interaction>),
    Signal(Box<StoredSignal>),
}

impl TimelineEntry {
    /// When it happened: an interaction's first message, a signal's occurrence.
    pub fn time(&self) -> Option<DateTime<Utc>> {
        match self {
            Self::Interaction(interaction) => first_message_time(&interaction.record),
            Self::Signal(signal) => Some(signal.record.occurred_at),
        }
    }
}

pub struct AccountOverview {
    pub account: Account,
    pub contacts: Vec<Contact>,
    /// Newest first, at most [`TIMELINE_LIMIT`].
    pub timeline: Vec<TimelineEntry>,
    /// True when older entries were left out.
    pub truncated: bool,
}

/// The names by which other records refer to the account.
pub fn account_keys(account: &Account) -> Vec<&str> {
    let mut keys = vec![account.record.source_id.as_str()];
    if let Some(domain) = &account.record.domain {
        keys.push(domain.as_str());
    }
    keys
}

/// The account `id` with its contacts and timeline; `None` when the tenant has no such account.
pub fn account_overview(
    context: &AppContext,
    tenant: TenantId,
    id: RecordId,
) -> Result<Option<AccountOverview>, StoreError> {
    let Some(account) = context.accounts.get(tenant, id)? else {
        return Ok(None);
    };
    let keys = account_keys(&account);
    let names_account = |named: Option<&String>| {
        named.is_some_and(|name| {
            keys.iter()
                .any(|key| key.trim().eq_ignore_ascii_case(name.trim()))
        })
    };
    let mut contacts = Vec::new();
    context.contacts.for_each(tenant, |contact| {
        if names_account(contact.record.account.as_ref()) {
            contacts.push(contact);
        }
        Ok(())
    })?;
    let mut timeline = Vec::new();
    context.interactions.for_each(tenant, |interaction| {
        if belongs_to(&interaction.record, &keys) {
            timeline.push(TimelineEntry::Interaction(Box::new(interaction)));
        }
        Ok(())
    })?;
    context.signals.for_each(tenant, |signal| {
        if names_account(signal.record.account.as_ref()) {
            timeline.push(TimelineEntry::Signal(Box::new(signal)));
        }
        Ok(())
    })?;
    timeline.sort_by_key(|entry| std::cmp::Reverse(entry.time()));
    let truncated = timeline.len() > TIMELINE_LIMIT;
    timeline.truncate(TIMELINE_LIMIT);
    Ok(Some(AccountOverview {
        account,
        contacts,
        timeline,
        truncated,
    }))
}
