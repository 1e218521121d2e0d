//! One account's page: its contacts and a timeline of its interactions and signals. An
//! interaction or signal belongs to the account when it names the account's source id or its
//! domain. Synchronous. There is no secondary index yet, so finding them means opening the
//! tenant's records; each kind is read newest first through the shared pagination engine, which
//! examines at most [`crate::records::MAX_SCANNED_PER_PAGE`] records, so a page load never reads a whole large
//! tenant. The page says when that bound cut the search short.

use chrono::{DateTime, Utc};

use crate::accounts::{Account, Contact};
use crate::context::AppContext;
use crate::ids::{RecordId, TenantId};
use crate::interactions::query::{belongs_to, first_message_time};
use crate::interactions::Interaction;
use crate::records::Order;
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
    /// True when the search stopped at [`crate::records::MAX_SCANNED_PER_PAGE`] records of some kind, so older
    /// contacts, interactions or signals of the account may exist that were not looked at.
    pub search_limited: bool,
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
    let contacts =
        context
            .contacts
            .page(tenant, Order::NewestFirst, None, CONTACT_LIMIT, |contact| {
                names_account(contact.account.as_ref())
            })?;
    let interactions = context.interactions.page(
        tenant,
        Order::NewestFirst,
        None,
        TIMELINE_LIMIT,
        |interaction| belongs_to(interaction, &keys),
    )?;
    let signals =
        context
            .signals
            .page(tenant, Order::NewestFirst, None, TIMELINE_LIMIT, |signal| {
                names_account(signal.account.as_ref())
            })?;
    let search_limited = contacts.scan_limit_reached
        || interactions.scan_limit_reached
        || signals.scan_limit_reached;
    let more_found = interactions.next_cursor.is_some() || signals.next_cursor.is_some();
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
    let contacts = contacts.items;
    Ok(Some(AccountOverview {
        account,
        contacts,
        timeline,
        truncated,
        search_limited,
    }))
}
