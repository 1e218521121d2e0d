//! What every kind of imported tenant data shares: a source system and id (so re-imports update),
//! validation that names the bad field, and the stored envelope around the record. One generic
//! [`RecordStore`] keeps every kind, sealed under the tenant's keys.

pub mod delete;
pub mod migrate;
pub mod refs;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::ids::{RecordId, TenantId};
use crate::store::{BlindIndex, Collection, Scope, Store, StoreError};

/// The kinds of imported data, each in its own collection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    Interaction,
    Account,
    Contact,
    Signal,
}

impl RecordKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Interaction => "interaction",
            Self::Account => "account",
            Self::Contact => "contact",
            Self::Signal => "signal",
        }
    }

    fn collection(self) -> &'static str {
        match self {
            Self::Interaction => "interactions",
            Self::Account => "accounts",
            Self::Contact => "contacts",
            Self::Signal => "signals",
        }
    }

    fn sources(self) -> &'static str {
        match self {
            Self::Interaction => "interaction_sources",
            Self::Account => "account_sources",
            Self::Contact => "contact_sources",
            Self::Signal => "signal_sources",
        }
    }
}

/// A problem with one field of one record: what and where, never the offending value itself
/// (it may be personal data, and messages end up in reports and logs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldProblem {
    pub field: String,
    pub message: String,
}

impl FieldProblem {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A record that arrives from a source system.
pub trait SourceRecord: Clone + Serialize + DeserializeOwned + Send + 'static {
    const KIND: RecordKind;

    fn source_system(&self) -> &str;
    fn source_id(&self) -> &str;

    /// Every problem of the record, each naming its field (`messages[2].sent_at`).
    fn problems(&self) -> Vec<FieldProblem>;

    /// The texts that search indexes for this record; none for kinds that are not searched.
    fn search_texts(&self) -> Vec<&str> {
        Vec::new()
    }

    /// The data subject whose own key seals the record (see `privacy::subjects`); none seals it
    /// under the tenant's data key.
    fn subject(&self) -> Option<crate::privacy::subjects::Subject> {
        None
    }

    /// [`SourceRecord::subject`]'s key name, as [`crate::store::WriteSet::put_for`] takes it.
    fn subject_key_name(&self) -> Option<String> {
        self.subject().map(|subject| subject.key_name())
    }

    /// What the record names (accounts, people), for the reference index ([`refs`]); none by
    /// default.
    fn references(&self) -> Vec<refs::Reference> {
        Vec::new()
    }

    /// The key that identifies the record across imports: [`plain_source_key`] by default;
    /// signals add their kind (see `SignalRecord`).
    fn source_key(&self) -> String {
        plain_source_key(self.source_system(), self.source_id())
    }
}

/// `source system ‖ 0x00 ‖ source id`: the source key of interactions, accounts and contacts, and
/// the key signals had before their kind was added to it ([`migrate`] moves those claims).
pub fn plain_source_key(source_system: &str, source_id: &str) -> String {
    format!("{source_system}\u{0}{source_id}")
}

/// A stored record: the record as imported, with Rapport's id and times.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored<R> {
    pub id: RecordId,
    pub record: R,
    pub first_imported: DateTime<Utc>,
    pub updated: DateTime<Utc>,
}

/// The order a listing walks a tenant's records in. Record ids are ULIDs made at first import,
/// so this is the order of first import.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// The console's lists: the latest first.
    NewestFirst,
    /// The API's lists: the order records were first stored in.
    OldestFirst,
}

/// One page of a listing.
#[derive(Clone, Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Where the next page starts (exclusive); `None` on the last page. It is the last record
    /// shown when another match follows it, or the last record examined when the scan stopped at
    /// [`MAX_SCANNED_PER_PAGE`].
    pub next_cursor: Option<RecordId>,
    /// True when the page stopped because it had examined [`MAX_SCANNED_PER_PAGE`] records, not
    /// because it was full or the records ran out: it may be short, even empty, with more matches
    /// further on.
    pub scan_limit_reached: bool,
}

/// The page size of the console's listings.
pub const PAGE_SIZE: usize = 50;

/// Records examined for one page at most. Records are sealed, so filtering means opening each;
/// a sparse filter over a large tenant answers with what it found so far and a cursor to go on
/// from, instead of opening the whole tenant in one request.
pub const MAX_SCANNED_PER_PAGE: usize = 5000;

type Entry<R> = Result<(RecordId, Stored<R>), StoreError>;

impl<R: SourceRecord> RecordStore<R> {
    /// The one pagination engine of the console and the API: the records that `keep` accepts,
    /// in `order`, starting after `cursor`, at most `limit` of them, examining at most
    /// [`MAX_SCANNED_PER_PAGE`] records. `next_cursor` is set only when there is more to see: a
    /// full page looks one match ahead (within the same scan bound).
    pub fn page(
        &self,
        tenant: TenantId,
        order: Order,
        cursor: Option<RecordId>,
        limit: usize,
        mut keep: impl FnMut(&R) -> bool,
    ) -> Result<Page<Stored<R>>, StoreError> {
        self.page_stored(tenant, order, cursor, limit, |stored| keep(&stored.record))
    }

    /// [`RecordStore::page`] with a filter that sees the stored record (its id, its times), for
    /// filters on what is kept beside it (a review's status, its analyses).
    pub fn page_stored(
        &self,
        tenant: TenantId,
        order: Order,
        cursor: Option<RecordId>,
        limit: usize,
        mut keep: impl FnMut(&Stored<R>) -> bool,
    ) -> Result<Page<Stored<R>>, StoreError> {
        let limit = limit.max(1);
        let records = self.records(tenant)?;
        let entries: Box<dyn Iterator<Item = Entry<R>> + '_> = match (order, &cursor) {
            (Order::NewestFirst, _) => Box::new(records.scan_newest_first(cursor.as_ref())),
            (Order::OldestFirst, Some(after)) => Box::new(records.scan_after(after)),
            (Order::OldestFirst, None) => Box::new(records.scan()),
        };
        let mut page = Page {
            items: Vec::new(),
            next_cursor: None,
            scan_limit_reached: false,
        };
        let mut scanned = 0usize;
        for entry in entries {
            let (id, stored) = entry?;
            if keep(&stored) {
                if page.items.len() == limit {
                    page.next_cursor = page.items.last().map(|last: &Stored<R>| last.id);
                    break;
                }
                page.items.push(stored);
            }
            scanned += 1;
            if scanned >= MAX_SCANNED_PER_PAGE {
                page.next_cursor = Some(id);
                page.scan_limit_reached = true;
                break;
            }
        }
        Ok(page)
    }

    /// An unfiltered console page: the newest records below `cursor`, [`PAGE_SIZE`] of them.
    pub fn newest_page(
        &self,
        tenant: TenantId,
        cursor: Option<RecordId>,
    ) -> Result<Page<Stored<R>>, StoreError> {
        self.page(tenant, Order::NewestFirst, cursor, PAGE_SIZE, |_| true)
    }
}

impl<R> Stored<R> {
    /// The next stored version of `record`: a new id and first-import time when there is no
    /// `previous` version, else the previous ones; updated now.
    pub fn next_version(previous: Option<&Stored<R>>, record: R) -> Self {
        let now = Utc::now();
        Self {
            id: previous.map_or_else(RecordId::new, |previous| previous.id),
            record,
            first_imported: previous.map_or(now, |previous| previous.first_imported),
            updated: now,
        }
    }
}

/// The records of one kind, per tenant, with the blind index from source key to record.
pub struct RecordStore<R> {
    store: Store,
    marker: std::marker::PhantomData<fn() -> R>,
}

impl<R> Clone for RecordStore<R> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            marker: std::marker::PhantomData,
        }
    }
}

impl<R: SourceRecord> RecordStore<R> {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            marker: std::marker::PhantomData,
        }
    }

    pub fn records(&self, tenant: TenantId) -> Result<Collection<RecordId, Stored<R>>, StoreError> {
        self.store
            .collection(Scope::Tenant(tenant), R::KIND.collection())
    }

    pub fn sources(&self, tenant: TenantId) -> Result<BlindIndex<RecordId>, StoreError> {
        self.store
            .blind_index(Scope::Tenant(tenant), R::KIND.sources())
    }

    pub fn get(&self, tenant: TenantId, id: RecordId) -> Result<Option<Stored<R>>, StoreError> {
        self.records(tenant)?.get(&id)
    }

    /// The record imported under `source_key` (see [`SourceRecord::source_key`]).
    pub fn find_by_source(
        &self,
        tenant: TenantId,
        source_key: &str,
    ) -> Result<Option<Stored<R>>, StoreError> {
        match self.sources(tenant)?.get(source_key)? {
            Some(id) => self.get(tenant, id),
            None => Ok(None),
        }
    }

    /// Creates the record, or updates the one with the same source key; true when created.
    /// The caller has validated the record (see [`SourceRecord::problems`]).
    pub fn upsert(&self, tenant: TenantId, record: R) -> Result<(Stored<R>, bool), StoreError> {
        // Read, stage and commit under the tenant's writer lock, so that a concurrent import
        // batch or upsert never stages its index changes from the same stale read.
        self.store.lock_scope(Scope::Tenant(tenant)).run(|| {
            let key = record.source_key();
            let existing = self.find_by_source(tenant, &key)?;
            let created = existing.is_none();
            let stored = Stored::next_version(existing.as_ref(), record);
            let mut writes = crate::store::WriteSet::default();
            writes.put_for(
                &self.records(tenant)?,
                &stored.id,
                &stored,
                stored.record.subject_key_name().as_deref(),
            )?;
            if created {
                writes.claim(&self.sources(tenant)?, &key, &stored.id)?;
            }
            refs::RefIndex::new(self.store.clone()).stage(
                &mut writes,
                tenant,
                R::KIND,
                stored.id,
                &stored.record.references(),
            )?;
            let texts = stored.record.search_texts();
            if !texts.is_empty() {
                crate::search::SearchIndex::new(self.store.clone()).stage(
                    &mut writes,
                    tenant,
                    &[(stored.id, texts)],
                )?;
            }
            self.store.commit(writes)?;
            Ok((stored, created))
        })
    }

    pub fn count(&self, tenant: TenantId) -> Result<usize, StoreError> {
        Ok(self.records(tenant)?.len())
    }

    /// Calls `visit` with every record, oldest first, without holding them all in memory.
    /// Every record's id, oldest first, from keys alone: no record is opened (rebuilds).
    pub fn ids(&self, tenant: TenantId) -> Result<Vec<RecordId>, StoreError> {
        self.records(tenant)?.keys_with_prefix(&[]).collect()
    }

    pub fn for_each(
        &self,
        tenant: TenantId,
        mut visit: impl FnMut(Stored<R>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        for entry in self.records(tenant)?.scan() {
            visit(entry?.1)?;
        }
        Ok(())
    }
}

/// The subject key sealing record `id` (an interaction or a signal), read from its clear
/// header: what is derived from a record and keyed by its id (analyses, QA overrides, lead and
/// review state) is sealed under it too ([`crate::store::WriteSet::put_under`]), so that erasing
/// the record's subject leaves none of it readable.
pub fn subject_key_of(
    store: &Store,
    tenant: TenantId,
    id: RecordId,
) -> Result<Option<crate::ids::KeyId>, StoreError> {
    let interactions = RecordStore::<crate::interactions::InteractionRecord>::new(store.clone())
        .records(tenant)?;
    if let Some(key) = interactions.subject_key_of(&id)? {
        return Ok(Some(key));
    }
    RecordStore::<crate::signals::SignalRecord>::new(store.clone())
        .records(tenant)?
        .subject_key_of(&id)
}

const MAX_SHORT: usize = 200;

/// Checks a short text field: required or not, at most 200 characters, no control characters.
pub fn check_short(problems: &mut Vec<FieldProblem>, field: &str, value: &str, required: bool) {
    if required && value.trim().is_empty() {
        problems.push(FieldProblem::new(field, "must not be empty"));
    } else if value.chars().count() > MAX_SHORT {
        problems.push(FieldProblem::new(
            field,
            format!("must be at most {MAX_SHORT} characters"),
        ));
    } else if value.chars().any(char::is_control) {
        problems.push(FieldProblem::new(
            field,
            "must not contain control characters",
        ));
    }
}

/// Checks an optional short text field.
pub fn check_optional(problems: &mut Vec<FieldProblem>, field: &str, value: Option<&String>) {
    if let Some(value) = value {
        check_short(problems, field, value, false);
    }
}

/// Checks an optional e-mail address.
pub fn check_email(problems: &mut Vec<FieldProblem>, field: &str, value: Option<&String>) {
    if value.is_some_and(|email| crate::users::Email::parse(email).is_err()) {
        problems.push(FieldProblem::new(field, "is not a valid e-mail address"));
    }
}

/// serde's message without any submitted value (it may be personal data, and messages reach
/// reports, pages and API errors): type and value errors keep only what was expected, unknown
/// variants only the allowed ones. Every JSON reader of imported data uses this one.
pub fn describe_json_error(error: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match error.classify() {
        Category::Syntax => format!(
            "is not valid JSON (line {}, column {})",
            error.line(),
            error.column()
        ),
        Category::Eof => "ends before the JSON value is complete".to_owned(),
        Category::Io => "could not be read".to_owned(),
        Category::Data => {
            let text = error.to_string();
            let text = text.split(" at line ").next().unwrap_or_default();
            let expected = text
                .find(", expected ")
                .map(|position| &text[position..])
                .unwrap_or_default();
            for prefix in [
                "invalid type",
                "invalid value",
                "invalid length",
                "unknown variant",
            ] {
                if text.starts_with(prefix) {
                    return format!("{prefix}{expected}");
                }
            }
            text.to_owned()
        }
    }
}
