//! The reference index: from what a record names (an account, a person's e-mail, phone or name)
//! to the records that name it, so that an account page, a health score, a briefing or a
//! data-subject request finds its records without opening the tenant's others.
//!
//! Two collections per tenant:
//!
//! - `record_refs`: an entry per (keyed token of a [`Reference`], record id), with an empty value.
//!   Record ids are ULIDs, so under one token the entries sort by first import, and reading the
//!   newest first is a reverse prefix scan of keys alone: nothing is opened. The token is an HMAC
//!   under the tenant's index key (see [`crate::store::Collection::keyed_token`]), so the keys
//!   hold no name, address or account.
//! - `record_ref_sets`: per record, the tokens it is filed under now, so that an update or a
//!   deletion removes exactly the entries it made without reading the previous version.
//!
//! Every write of a record stages its entries in the same write set as the record
//! ([`RefIndex::stage`], [`RefIndex::stage_removal`]): `RecordStore::upsert`, the importer's
//! batches, import rollback and `records::delete`. `rapport records reindex` files a tenant's
//! existing records (the upgrade path). Readers open the records they find and keep those that
//! still name the reference ([`crate::records::RecordStore::naming`]), so an entry left by a crash
//! between trees is harmless.

use std::collections::BTreeSet;

use crate::ids::{RecordId, TenantId};
use crate::records::{RecordKind, RecordStore, SourceRecord, Stored};
use crate::store::{Collection, Scope, Store, StoreError, WriteSet};

/// What a record can name. Built only through the normalising constructors, so that two
/// spellings of the same address or account meet under one token.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reference {
    /// An account by its source id or its domain (lowercased).
    Account(String),
    /// A person's e-mail address (lowercased).
    Email(String),
    /// A phone number: its digits, with a leading `+` when it had one.
    Phone(String),
    /// A person's name: lowercased, runs of whitespace made one space.
    Name(String),
}

impl Reference {
    /// An account reference; `None` for a blank value.
    pub fn account(value: &str) -> Option<Self> {
        non_empty(value.trim().to_lowercase()).map(Self::Account)
    }

    /// An e-mail reference; `None` for a blank value.
    pub fn email(value: &str) -> Option<Self> {
        non_empty(value.trim().to_lowercase()).map(Self::Email)
    }

    /// A phone reference: the digits (and a leading `+`); `None` below five digits.
    pub fn phone(value: &str) -> Option<Self> {
        let trimmed = value.trim();
        let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
        if digits.len() < 5 {
            return None;
        }
        let plus = if trimmed.starts_with('+') { "+" } else { "" };
        Some(Self::Phone(format!("{plus}{digits}")))
    }

    /// A name reference; `None` for a blank value.
    pub fn name(value: &str) -> Option<Self> {
        let joined = value.split_whitespace().collect::<Vec<_>>().join(" ");
        non_empty(joined.to_lowercase()).map(Self::Name)
    }

    /// What the token is computed from: the record kind, the reference's kind and its value, so
    /// that the same address named by an interaction and by a contact gets different tokens.
    fn token_input(&self, kind: RecordKind) -> String {
        let (label, value) = match self {
            Self::Account(value) => ("account", value),
            Self::Email(value) => ("email", value),
            Self::Phone(value) => ("phone", value),
            Self::Name(value) => ("name", value),
        };
        format!("{}\u{0}{label}\u{0}{value}", kind.as_str())
    }
}

fn non_empty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

/// Adds the references that `make` builds from each present value to `into`, without repeats.
pub fn collect<'a>(
    into: &mut Vec<Reference>,
    make: fn(&str) -> Option<Reference>,
    values: impl IntoIterator<Item = Option<&'a str>>,
) {
    for reference in values.into_iter().flatten().filter_map(make) {
        if !into.contains(&reference) {
            into.push(reference);
        }
    }
}

const ENTRIES: &str = "record_refs";
const SETS: &str = "record_ref_sets";

/// The reference index of every tenant.
#[derive(Clone)]
pub struct RefIndex {
    store: Store,
}

impl RefIndex {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// The index of one tenant, its collections opened once (for writers that file many
    /// records).
    pub fn tenant(&self, tenant: TenantId) -> Result<TenantRefs, StoreError> {
        let scope = Scope::Tenant(tenant);
        Ok(TenantRefs {
            entries: self.store.collection(scope, ENTRIES)?,
            sets: self.store.collection(scope, SETS)?,
        })
    }

    /// Stages record `id` (of `kind`) as naming exactly `references` (see [`TenantRefs::stage`]).
    pub fn stage(
        &self,
        writes: &mut WriteSet,
        tenant: TenantId,
        kind: RecordKind,
        id: RecordId,
        references: &[Reference],
    ) -> Result<(), StoreError> {
        self.tenant(tenant)?.stage(writes, kind, id, references)
    }

    /// Stages the removal of every entry of record `id` (a deletion).
    pub fn stage_removal(
        &self,
        writes: &mut WriteSet,
        tenant: TenantId,
        kind: RecordKind,
        id: RecordId,
    ) -> Result<(), StoreError> {
        self.stage(writes, tenant, kind, id, &[])
    }

    /// The ids of records of `kind` filed under `reference`, newest first, at most `limit`.
    /// Keys alone are read.
    pub fn referring(
        &self,
        tenant: TenantId,
        kind: RecordKind,
        reference: &Reference,
        limit: usize,
    ) -> Result<Vec<RecordId>, StoreError> {
        self.tenant(tenant)?.referring(kind, reference, limit)
    }
}

/// One tenant's reference index.
pub struct TenantRefs {
    entries: Collection<([u8; 32], RecordId), ()>,
    sets: Collection<RecordId, Vec<[u8; 32]>>,
}

impl TenantRefs {
    fn token(&self, kind: RecordKind, reference: &Reference) -> [u8; 32] {
        self.entries.keyed_token(&reference.token_input(kind))
    }

    /// Stages record `id` (of `kind`) as naming exactly `references`: entries it no longer
    /// makes are removed, new ones added, and its set replaced. Reads the record's set, not the
    /// record.
    pub fn stage(
        &self,
        writes: &mut WriteSet,
        kind: RecordKind,
        id: RecordId,
        references: &[Reference],
    ) -> Result<(), StoreError> {
        let old: BTreeSet<[u8; 32]> = self
            .sets
            .get(&id)?
            .unwrap_or_default()
            .into_iter()
            .collect();
        let new: BTreeSet<[u8; 32]> = references
            .iter()
            .map(|reference| self.token(kind, reference))
            .collect();
        for token in old.difference(&new) {
            writes.remove(&self.entries, &(*token, id));
        }
        for token in new.difference(&old) {
            writes.put(&self.entries, &(*token, id), &())?;
        }
        if new.is_empty() {
            writes.remove(&self.sets, &id);
        } else if new != old {
            writes.put(&self.sets, &id, &new.into_iter().collect::<Vec<_>>())?;
        }
        Ok(())
    }

    /// The ids of records of `kind` filed under `reference`, newest first, at most `limit`.
    pub fn referring(
        &self,
        kind: RecordKind,
        reference: &Reference,
        limit: usize,
    ) -> Result<Vec<RecordId>, StoreError> {
        self.entries
            .keys_with_prefix_newest_first(&self.token(kind, reference))
            .take(limit)
            .map(|key| key.map(|(_, id)| id))
            .collect()
    }
}

/// Records found through the index.
pub struct Named<R> {
    /// Newest first (by first import).
    pub items: Vec<Stored<R>>,
    /// True when more records name the references than `limit`.
    pub more: bool,
}

impl<R: SourceRecord> RecordStore<R> {
    /// The newest records that name any of `references`, at most `limit`: the ids come from the
    /// reference index, and each record is opened and kept only if it still names one of them.
    pub fn naming(
        &self,
        tenant: TenantId,
        references: &[Reference],
        limit: usize,
    ) -> Result<Named<R>, StoreError> {
        let index = RefIndex::new(self.store.clone()).tenant(tenant)?;
        let mut ids = BTreeSet::new();
        for reference in references {
            ids.extend(index.referring(R::KIND, reference, limit + 1)?);
        }
        let more = ids.len() > limit;
        let records = self.records(tenant)?;
        let mut items = Vec::with_capacity(ids.len().min(limit));
        for id in ids.into_iter().rev().take(limit) {
            if let Some(stored) = records.get(&id)? {
                let named = stored.record.references();
                if references.iter().any(|reference| named.contains(reference)) {
                    items.push(stored);
                }
            }
        }
        Ok(Named { items, more })
    }

    /// Files every record of the tenant in the reference index again, a thousand per commit
    /// under the tenant's writer lock; returns how many records were filed. Idempotent.
    pub fn reindex_references(
        &self,
        tenant: TenantId,
        mut progress: impl FnMut(usize),
    ) -> Result<usize, StoreError> {
        let index = RefIndex::new(self.store.clone()).tenant(tenant)?;
        let records = self.records(tenant)?;
        let mut done = 0usize;
        let mut after: Option<RecordId> = None;
        loop {
            let filed = self.store.lock_scope(Scope::Tenant(tenant)).run(|| {
                let batch: Vec<(RecordId, Stored<R>)> = match &after {
                    Some(after) => records.scan_after(after).take(1000).collect(),
                    None => records.scan().take(1000).collect::<Result<_, _>>(),
                }?;
                let mut writes = WriteSet::default();
                for (id, stored) in &batch {
                    index.stage(&mut writes, R::KIND, *id, &stored.record.references())?;
                }
                self.store.commit(writes)?;
                Ok::<_, StoreError>(batch.last().map(|(id, _)| *id).zip(Some(batch.len())))
            })?;
            let Some((last, count)) = filed else {
                return Ok(done);
            };
            done += count;
            progress(done);
            after = Some(last);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_normalised_so_spellings_meet() {
        assert_eq!(
            Reference::email("  Ana@Example.COM "),
            Reference::email("ana@example.com")
        );
        assert_eq!(
            Reference::phone("+44 (20) 7946-0958"),
            Some(Reference::Phone("+442079460958".to_owned()))
        );
        assert_eq!(Reference::phone("12-34"), None);
        assert_eq!(
            Reference::name(" Ana   de  Souza "),
            Some(Reference::Name("ana de souza".to_owned()))
        );
        assert_eq!(Reference::account("   "), None);
        assert_ne!(
            Reference::email("a@x.example").map(|r| r.token_input(RecordKind::Interaction)),
            Reference::email("a@x.example").map(|r| r.token_input(RecordKind::Contact))
        );
    }

    #[test]
    fn collect_skips_blanks_and_repeats() {
        let mut references = Vec::new();
        collect(
            &mut references,
            Reference::email,
            [Some("A@x.example"), None, Some("a@x.example"), Some(" ")],
        );
        assert_eq!(references, vec![Reference::Email("a@x.example".to_owned())]);
    }
}
