//! One account's page: its contacts and a timeline of its interactions and signals. An
//! interaction, signal or contact belongs to the account when it names the account's source id
//! or its domain; the reference index (`records::refs`) finds them, so a page load opens only the
//! records it shows, however large the tenant. Synchronous.

use chrono::{DateTime, Utc};

use crate::accounts::{Account, Contact};
use crate::context::AppContext;
use crate::ids::{RecordId, TenantId};
use crate::interactions::query::first_message_time;
use crate::interactions::Interaction;
use crate::records::refs::{Named, Reference};
use crate::records::{RecordStore, SourceRecord};
use crate::signals::StoredSignal;
use crate::store::StoreError;

/// The newest entries an account page shows.
pub const TIMELINE_LIMIT: usize = 50;

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

/// The contacts an account page shows at most.
pub const CONTACT_LIMIT: usize = 200;

/// The names by which other records refer to the account.
pub fn account_keys(account: &Account) -> Vec<&str> {
    let mut keys = vec![account.record.source_id.as_str()];
    if let Some(domain) = &account.record.domain {
        keys.push(domain.as_str());
    }
    keys
}

/// The newest records of kind `R` that name the account, at most `limit` (through the reference
/// index: only what is returned is opened). Health, the briefing and the account page all read
/// an account's records through this.
pub fn records_of<R: SourceRecord>(
    store: &RecordStore<R>,
    tenant: TenantId,
    account: &Account,
    limit: usize,
) -> Result<Named<R>, StoreError> {
    let references: Vec<Reference> = account.record.references();
    store.naming(tenant, &references, limit)
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
    let contacts = records_of(&context.contacts, tenant, &account, CONTACT_LIMIT)?;
    let interactions = records_of(&context.interactions, tenant, &account, TIMELINE_LIMIT)?;
    let signals = records_of(&context.signals, tenant, &account, TIMELINE_LIMIT)?;
    let more_found = interactions.more || signals.more;
    let mut timeline: Vec<TimelineEntry> = interactions
        .items
        .into_iter()
        .map(|interaction| TimelineEntry::Interaction(Box::new(interaction)))
        .chain(
            signals
                .items
                .into_iter()
                .map(|signal| TimelineEntry::Signal(Box::new(signal))),
        )
        .collect();
    timeline.sort_by_key(|entry| std::cmp::Reverse(entry.time()));
    let truncated = more_found || timeline.len() > TIMELINE_LIMIT;
    timeline.truncate(TIMELINE_LIMIT);
    Ok(Some(AccountOverview {
        account,
        contacts: contacts.items,
        timeline,
        truncated,
    }))
}
