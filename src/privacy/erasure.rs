//! Erasure of a data subject (GDPR art. 17), crypto-complete.
//!
//! [`erase_subject`] resolves the subject (an e-mail address, a phone number, a name, or a
//! contact, which stands for its own address, phone and name), finds every record naming the
//! subject — interactions in which the subject wrote (by author address or name), contacts with
//! the subject's address, phone or name, signals naming the subject as contact, lead or reviewer —
//! and then, in this order:
//!
//! 1. refuses, naming the hold, when an active legal hold covers the subject or any of those
//!    records (nothing is changed);
//! 2. appends the erasure to the [ledger](super::ledger) (tokens, key ids, record ids; no
//!    address), so that a restore of an older backup erases again even if this run is cut off;
//! 3. deletes the records through `records::delete`, the one deletion path (search entries,
//!    analyses, QA, lead and review state go with them, and the dashboard aggregates are
//!    corrected), [`DELETE_BATCH`] per commit, reporting progress, then redacts the
//!    subject's addresses and numbers where other people's conversations mention them
//!    ([`super::mentions`]);
//! 4. deletes the access and portability packages of every privacy request about the subject
//!    (by any of its addresses, numbers and names, or by a contact erased with it), and empties
//!    the erased contacts' messages in prepared feedback batches (`feedback::forget_contacts`);
//! 5. removes the subject's restriction entry;
//! 6. destroys the subject's keys (`Store::destroy_subject_key`), so that every copy of what was
//!    sealed under them — in sled's log-structured files or in a backup — no longer opens;
//! 7. audits `privacy.erased` with the subject's token prefix and the counts.
//!
//! An interaction is deleted whole when the subject wrote any message of it (a conversation is
//! about the people in it; a redacted half-conversation would still be the subject's). A mention
//! of the subject in someone else's conversation is found through the search index (an address
//! is one term) and redacted in place; a mention by name alone is left (a name is too ambiguous to
//! remove from other people's words).
//!
//! Every step is idempotent: an interrupted erasure run again finds what is left and finishes.
//! When it completes a request, the ledger entries an earlier, interrupted run of the same request
//! wrote are re-applied first: that run may have deleted the very records (a contact, the
//! interactions that gave a name its addresses) from which the subject's addresses and keys are
//! worked out, so a fresh look alone would not find the keys left to destroy.

use chrono::Utc;

use crate::accounts::ContactRecord;
use crate::audit::{Actor, AuditAction, AuditError, AuditEvent};
use crate::context::AppContext;
use crate::ids::{KeyId, RecordId, RequestId, TenantId};
use crate::interactions::InteractionRecord;
use crate::privacy::ledger::{self, LedgerEntry, LedgerError};
use crate::privacy::requests::store::RequestStore;
use crate::privacy::subjects::Subject;
use crate::privacy::{normalise_email, subject_label, Restrictions};
use crate::records::delete::{self, Target, DELETE_BATCH};
use crate::records::refs::{RefIndex, Reference};
use crate::records::{RecordKind, RecordStore, SourceRecord, Stored};
use crate::retention::holds::{ActiveHolds, HeldFacts, LegalHold};
use crate::signals::{Signal, SignalRecord};
use crate::store::{Scope, StoreError, WriteSet};

/// The longest request label accepted.
const MAX_REQUEST_CHARS: usize = 80;

/// Who is to be erased: the subject as a privacy request names them (one type for requests and
/// erasure; `resolve` normalises again, so a value typed by a program is accepted as well).
pub use crate::privacy::subject::SubjectRef;

#[derive(Debug, thiserror::Error)]
pub enum ErasureError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("no contact with id {0} in this tenant")]
    UnknownContact(RecordId),
    /// Rewriting another person's interaction without the subject failed, after records were
    /// already deleted: the erasure did not finish.
    #[error("interaction {id} could not be rewritten without the subject: {cause}")]
    Rewrite { id: RecordId, cause: String },
    #[error("legal hold {hold} ({kind}) covers this subject's data: release the hold before erasing (nothing was erased)")]
    Held { hold: String, kind: &'static str },
}

impl From<crate::tenants::TenantError> for ErasureError {
    fn from(error: crate::tenants::TenantError) -> Self {
        Self::Invalid {
            field: "tenant",
            message: error.to_string(),
        }
    }
}

/// What an erasure did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErasureReport {
    /// How the audit log names the subject (a keyed token's prefix).
    pub subject: String,
    pub interactions: u64,
    pub contacts: u64,
    pub signals: u64,
    /// Subject keys destroyed.
    pub keys_destroyed: u64,
    /// Other people's interactions whose mentions of the subject were redacted.
    pub mentions_redacted: u64,
    /// Access and portability packages deleted (of requests about the subject).
    pub packages_deleted: u64,
    /// Records deleted and keys destroyed by finishing an earlier, interrupted run of the same
    /// request (see the module comment).
    pub finished_earlier_run: Reapplied,
    /// The token labels of every way a privacy request may name the subject (its addresses,
    /// numbers and names, its contacts): the audit entry carries them, so the audit log filtered
    /// by any of them shows the erasure.
    pub named_as: Vec<String>,
}

/// What re-applying one ledger entry found and erased again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reapplied {
    pub records_deleted: u64,
    pub keys_destroyed: u64,
    pub mentions_redacted: u64,
}

/// Progress after each deletion batch.
#[derive(Clone, Copy, Debug)]
pub struct ErasureProgress {
    pub kind: RecordKind,
    pub deleted: u64,
    pub total: u64,
}

/// The subject's names, normalised.
#[derive(Clone, Debug, Default)]
struct Identity {
    emails: Vec<String>,
    phones: Vec<String>,
    names: Vec<String>,
}

fn normalise_name(name: &str) -> String {
    name.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

impl Identity {
    fn add_email(&mut self, email: Option<&str>) {
        if let Some(email) = email.and_then(normalise_email) {
            if !self.emails.contains(&email) {
                self.emails.push(email);
            }
        }
    }

    fn add_phone(&mut self, phone: Option<&str>) {
        if let Some(Subject::Phone(phone)) = phone.and_then(Subject::phone) {
            if !self.phones.contains(&phone) {
                self.phones.push(phone);
            }
        }
    }

    fn add_name(&mut self, name: Option<&str>) {
        let Some(name) = name.map(normalise_name).filter(|name| !name.is_empty()) else {
            return;
        };
        if !self.names.contains(&name) {
            self.names.push(name);
        }
    }

    fn email(&self, value: Option<&str>) -> bool {
        value
            .and_then(normalise_email)
            .is_some_and(|email| self.emails.contains(&email))
    }

    fn phone(&self, value: Option<&str>) -> bool {
        matches!(value.and_then(Subject::phone), Some(Subject::Phone(phone)) if self.phones.contains(&phone))
    }

    fn name(&self, value: Option<&str>) -> bool {
        value.is_some_and(|name| self.names.contains(&normalise_name(name)))
    }

    /// The references the reference index files the subject's records under.
    fn references(&self) -> Vec<Reference> {
        let emails = self
            .emails
            .iter()
            .filter_map(|email| Reference::email(email));
        let phones = self
            .phones
            .iter()
            .filter_map(|phone| Reference::phone(phone));
        let names = self.names.iter().filter_map(|name| Reference::name(name));
        emails.chain(phones).chain(names).collect()
    }

    /// The subjects whose keys the erasure destroys: every address and phone number.
    fn key_subjects(&self) -> Vec<Subject> {
        self.emails
            .iter()
            .map(|email| Subject::Email(email.clone()))
            .chain(
                self.phones
                    .iter()
                    .map(|phone| Subject::Phone(phone.clone())),
            )
            .collect()
    }
}

/// Whether a record names the subject, per kind.
trait Names: SourceRecord {
    fn names(&self, identity: &Identity) -> bool;
    fn facts(stored: &Stored<Self>) -> HeldFacts<'_>;
}

impl Names for InteractionRecord {
    fn names(&self, identity: &Identity) -> bool {
        self.messages.iter().any(|message| {
            identity.email(message.author_email.as_deref())
                || identity.name(message.author_name.as_deref())
        })
    }
    fn facts(stored: &Stored<Self>) -> HeldFacts<'_> {
        HeldFacts::of_interaction(&stored.record, crate::retention::interaction_time(stored))
    }
}

impl Names for ContactRecord {
    fn names(&self, identity: &Identity) -> bool {
        identity.email(self.email.as_deref())
            || identity.phone(self.phone.as_deref())
            || identity.name(Some(&self.name))
    }
    fn facts(stored: &Stored<Self>) -> HeldFacts<'_> {
        HeldFacts {
            account: stored.record.account.as_deref(),
            emails: stored.record.email.iter().map(String::as_str).collect(),
            tags: &[],
            time: stored.first_imported,
        }
    }
}

impl Names for SignalRecord {
    fn names(&self, identity: &Identity) -> bool {
        identity.email(self.contact.as_deref())
            || match &self.signal {
                Signal::Lead { email, name, .. } => {
                    identity.email(email.as_deref()) || identity.name(name.as_deref())
                }
                Signal::Review { reviewer, .. } => identity.name(reviewer.as_deref()),
                _ => false,
            }
    }
    fn facts(stored: &Stored<Self>) -> HeldFacts<'_> {
        HeldFacts::of_signal(&stored.record)
    }
}

/// Resolves `subject` to the names the erasure looks for.
fn resolve(
    context: &AppContext,
    tenant: TenantId,
    subject: &SubjectRef,
) -> Result<Identity, ErasureError> {
    let mut identity = Identity::default();
    match subject {
        SubjectRef::Email(email) => {
            identity.add_email(Some(email));
            if identity.emails.is_empty() {
                return Err(invalid(
                    "E-mail address",
                    "give the subject's address, such as name@example.com",
                ));
            }
        }
        SubjectRef::Phone(phone) => {
            identity.add_phone(Some(phone));
            if identity.phones.is_empty() {
                return Err(invalid("Phone", "give at least six digits"));
            }
        }
        SubjectRef::Name(name) => {
            identity.add_name(Some(name));
            if identity.names.is_empty() {
                return Err(invalid("Name", "must not be empty"));
            }
            add_addresses_of_name(context, tenant, &mut identity)?;
        }
        SubjectRef::Contact(id) => {
            let contact = context
                .contacts
                .get(tenant, *id)?
                .ok_or(ErasureError::UnknownContact(*id))?;
            identity.add_email(contact.record.email.as_deref());
            identity.add_phone(contact.record.phone.as_deref());
            identity.add_name(Some(&contact.record.name));
        }
    }
    Ok(identity)
}

/// For a subject named by name: the addresses and phone numbers the tenant's records give that
/// name (a contact's, a message author's, a lead's), so that the keys sealing the subject's
/// records are destroyed too.
fn add_addresses_of_name(
    context: &AppContext,
    tenant: TenantId,
    identity: &mut Identity,
) -> Result<(), StoreError> {
    let index = RefIndex::new(context.store.clone()).tenant(tenant)?;
    let names: Vec<Reference> = identity
        .names
        .iter()
        .filter_map(|name| Reference::name(name))
        .collect();
    for reference in &names {
        for id in index.referring(RecordKind::Contact, reference, usize::MAX)? {
            if let Some(contact) = context.contacts.get(tenant, id)? {
                if identity.name(Some(&contact.record.name)) {
                    identity.add_email(contact.record.email.as_deref());
                    identity.add_phone(contact.record.phone.as_deref());
                }
            }
        }
        for id in index.referring(RecordKind::Interaction, reference, usize::MAX)? {
            let Some(interaction) = context.interactions.get(tenant, id)? else {
                continue;
            };
            for message in &interaction.record.messages {
                if identity.name(message.author_name.as_deref()) {
                    identity.add_email(message.author_email.as_deref());
                }
            }
        }
    }
    Ok(())
}

fn invalid(field: &'static str, message: &str) -> ErasureError {
    ErasureError::Invalid {
        field,
        message: message.to_owned(),
    }
}

/// The records of kind `R` about the subject: those naming the subject, found through the
/// reference index and checked against the record itself, and every record sealed under the
/// subject's keys (found from clear headers: complete even for records the reference index has
/// not filed). Refuses at the first one a legal hold covers.
fn find<R: Names>(
    context: &AppContext,
    tenant: TenantId,
    identity: &Identity,
    keys: &[KeyId],
    holds: &ActiveHolds,
) -> Result<Vec<Target>, ErasureError> {
    let index = RefIndex::new(context.store.clone()).tenant(tenant)?;
    let mut ids = std::collections::BTreeSet::new();
    for reference in identity.references() {
        ids.extend(index.referring(R::KIND, &reference, usize::MAX)?);
    }
    let records = RecordStore::<R>::new(context.store.clone()).records(tenant)?;
    let mut sealed = std::collections::BTreeSet::new();
    for key in keys {
        sealed.extend(records.keys_sealed_under(*key)?);
    }
    ids.extend(sealed.iter().copied());
    let mut found = Vec::with_capacity(ids.len());
    for id in ids {
        let stored = match records.get(&id) {
            Ok(Some(stored)) => stored,
            // Gone, or left by an earlier erasure of someone else that was cut off after
            // destroying the key: nobody can read it, and the ledger's re-application removes it.
            Ok(None) | Err(StoreError::SubjectErased { .. }) => continue,
            Err(error) => return Err(error.into()),
        };
        if !sealed.contains(&id) && !stored.record.names(identity) {
            continue;
        }
        if let Some(hold) = holds.holding(&R::facts(&stored)) {
            return Err(held(hold));
        }
        found.push(Target {
            id: stored.id,
            source_key: stored.record.source_key(),
        });
    }
    Ok(found)
}

/// Other people's interactions that mention one of the subject's e-mail addresses (the search
/// index's candidates, checked in their text; `privacy::requests::find` lists the same for an
/// access request), excluding the ones being deleted. A held one refuses the erasure.
fn mentioning(
    context: &AppContext,
    tenant: TenantId,
    identity: &Identity,
    deleting: &[Target],
    holds: &ActiveHolds,
) -> Result<Vec<RecordId>, ErasureError> {
    let deleting: std::collections::BTreeSet<RecordId> =
        deleting.iter().map(|target| target.id).collect();
    let found = crate::privacy::requests::find::interactions_mentioning(
        context,
        tenant,
        &identity.emails,
        &deleting,
        usize::MAX,
    )?;
    let mut ids = Vec::with_capacity(found.len());
    for stored in found {
        if let Some(hold) = holds.holding(&InteractionRecord::facts(&stored)) {
            return Err(held(hold));
        }
        ids.push(stored.id);
    }
    Ok(ids)
}

fn held(hold: &LegalHold) -> ErasureError {
    ErasureError::Held {
        hold: hold.id.to_string(),
        kind: hold.scope.kind_str(),
    }
}

/// Deletes `targets` of kind `R` in batches, reporting progress; returns how many were deleted.
fn delete_all<R: SourceRecord>(
    context: &AppContext,
    tenant: TenantId,
    targets: &[Target],
    progress: &mut dyn FnMut(ErasureProgress),
) -> Result<u64, StoreError> {
    let mut deleted = 0u64;
    for chunk in targets.chunks(DELETE_BATCH) {
        deleted += delete::delete::<R>(context, tenant, chunk)?.len() as u64;
        progress(ErasureProgress {
            kind: R::KIND,
            deleted,
            total: targets.len() as u64,
        });
    }
    Ok(deleted)
}

/// A request label as the ledger and the audit log keep it: letters, digits and `-_.:#/`, at
/// most 80 characters (a request's id, never a name).
fn check_request(request: Option<&str>) -> Result<Option<String>, ErasureError> {
    let Some(request) = request.map(str::trim).filter(|request| !request.is_empty()) else {
        return Ok(None);
    };
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.:#/".contains(c);
    if request.chars().count() > MAX_REQUEST_CHARS || !request.chars().all(allowed) {
        return Err(invalid(
            "Request",
            "a request's id: letters, digits and - _ . : # /, at most 80 characters",
        ));
    }
    Ok(Some(request.to_owned()))
}

/// Erases `subject` from `tenant` (see the module comment); `request` labels the data-subject
/// request it completes (its id), kept in the ledger and the audit entry.
pub fn erase_subject(
    context: &AppContext,
    actor: &Actor,
    tenant: TenantId,
    subject: &SubjectRef,
    request: Option<&str>,
) -> Result<ErasureReport, ErasureError> {
    erase_subject_with_progress(context, actor, tenant, subject, request, &mut |_| {})
}

/// [`erase_subject`], calling `progress` after every deletion batch.
pub fn erase_subject_with_progress(
    context: &AppContext,
    actor: &Actor,
    tenant: TenantId,
    subject: &SubjectRef,
    request: Option<&str>,
    progress: &mut dyn FnMut(ErasureProgress),
) -> Result<ErasureReport, ErasureError> {
    let request = check_request(request)?;
    let earlier = earlier_runs(context, tenant, request.as_deref())?;
    let identity = match resolve(context, tenant, subject) {
        Ok(identity) => identity,
        // The contact went with an earlier run of this request, whose ledger entry says the rest.
        Err(ErasureError::UnknownContact(_)) if !earlier.is_empty() => Identity::default(),
        Err(error) => return Err(error),
    };
    let holds = ActiveHolds::load(context, tenant, Utc::now())?;
    if let Some(hold) = identity
        .emails
        .iter()
        .find_map(|email| holds.holding_subject(email))
    {
        return Err(held(hold));
    }
    let mut finished = Reapplied::default();
    for entry in &earlier {
        let again = reapply_entry(context, entry)?;
        finished.records_deleted += again.records_deleted;
        finished.keys_destroyed += again.keys_destroyed;
        finished.mentions_redacted += again.mentions_redacted;
    }
    let key_names: Vec<String> = identity
        .key_subjects()
        .iter()
        .map(Subject::key_name)
        .collect();
    let mut tokens = Vec::with_capacity(key_names.len());
    let mut key_ids = Vec::new();
    for name in &key_names {
        let token = context.store.subject_token(tenant, name)?;
        key_ids.extend(context.store.subject_key_id(tenant, &token)?);
        tokens.push(token);
    }
    for entry in &earlier {
        for token in &entry.subject_tokens {
            if !tokens.contains(token) {
                tokens.push(*token);
            }
        }
    }
    let interactions = find::<InteractionRecord>(context, tenant, &identity, &key_ids, &holds)?;
    let mentions = mentioning(context, tenant, &identity, &interactions, &holds)?;
    let contacts = find::<ContactRecord>(context, tenant, &identity, &key_ids, &holds)?;
    let signals = find::<SignalRecord>(context, tenant, &identity, &key_ids, &holds)?;
    let named_as = subject_ref_tokens(context, tenant, subject, &identity, &contacts)?;
    let packages = packages_about(context, tenant, &named_as)?;
    let label_token = match tokens.first() {
        Some(token) => *token,
        None => context
            .store
            .subject_token(tenant, &format!("name:{}", identity.names.join(",")))?,
    };
    let records: Vec<(RecordKind, RecordId)> = [
        (RecordKind::Interaction, &interactions),
        (RecordKind::Contact, &contacts),
        (RecordKind::Signal, &signals),
    ]
    .into_iter()
    .flat_map(|(kind, targets)| targets.iter().map(move |target| (kind, target.id)))
    .collect();
    ledger::append(
        context,
        &LedgerEntry {
            tenant,
            subject_tokens: tokens.clone(),
            subject_keys: key_ids,
            records,
            mentions: mentions.clone(),
            packages: packages.clone(),
            time: Utc::now(),
            request: request.clone(),
        },
    )?;

    let mut report = ErasureReport {
        subject: subject_label(&label_token),
        named_as: named_as.iter().map(SubjectRef::label).collect(),
        finished_earlier_run: finished,
        ..ErasureReport::default()
    };
    report.interactions =
        delete_all::<InteractionRecord>(context, tenant, &interactions, progress)?;
    report.contacts = delete_all::<ContactRecord>(context, tenant, &contacts, progress)?;
    let contact_ids: Vec<RecordId> = contacts.iter().map(|target| target.id).collect();
    crate::feedback::forget_contacts(context, tenant, &contact_ids)?;
    report.signals = delete_all::<SignalRecord>(context, tenant, &signals, progress)?;
    for id in mentions {
        if super::mentions::redact_interaction(context, actor, tenant, id, &tokens)? {
            report.mentions_redacted += 1;
        }
    }
    report.packages_deleted = delete_packages(context, tenant, &packages)?;
    report.keys_destroyed = forget_subject(context, tenant, &identity, &tokens)?;
    audit_erasure(context, actor, tenant, &report, request.as_deref())?;
    Ok(report)
}

/// The ledger entries of earlier runs of the erasure completing `request` in `tenant` (none
/// without a request).
fn earlier_runs(
    context: &AppContext,
    tenant: TenantId,
    request: Option<&str>,
) -> Result<Vec<LedgerEntry>, ErasureError> {
    let Some(request) = request else {
        return Ok(Vec::new());
    };
    Ok(ledger::entries(context)?
        .into_iter()
        .filter(|entry| entry.tenant == tenant && entry.request.as_deref() == Some(request))
        .collect())
}

/// The request tokens (`SubjectRef::token`) of every way a privacy request may name the subject:
/// `subject` itself, any of the identity's addresses, numbers or names, or a contact erased with
/// it.
fn subject_ref_tokens(
    context: &AppContext,
    tenant: TenantId,
    subject: &SubjectRef,
    identity: &Identity,
    contacts: &[Target],
) -> Result<Vec<[u8; 32]>, StoreError> {
    let mut refs = vec![subject.clone()];
    for (kind, values) in [
        ("email", &identity.emails),
        ("phone", &identity.phones),
        ("name", &identity.names),
    ] {
        refs.extend(
            values
                .iter()
                .filter_map(|value| SubjectRef::parse(kind, value).ok()),
        );
    }
    refs.extend(
        contacts
            .iter()
            .map(|contact| SubjectRef::Contact(contact.id)),
    );
    let mut tokens = Vec::with_capacity(refs.len());
    for subject in &refs {
        let token = subject.token(&context.store, tenant)?;
        if !tokens.contains(&token) {
            tokens.push(token);
        }
    }
    Ok(tokens)
}

/// The privacy requests whose subject token is one of `tokens` and that have a package.
fn packages_about(
    context: &AppContext,
    tenant: TenantId,
    tokens: &[[u8; 32]],
) -> Result<Vec<RequestId>, StoreError> {
    let requests = RequestStore::new(context.store.clone());
    let mut about = Vec::new();
    for request in requests.list(tenant)? {
        if tokens.contains(&request.subject_token)
            && requests.package(tenant, request.id)?.is_some()
        {
            about.push(request.id);
        }
    }
    Ok(about)
}

/// Deletes the packages of `requests` (those still there); returns how many.
fn delete_packages(
    context: &AppContext,
    tenant: TenantId,
    requests: &[RequestId],
) -> Result<u64, StoreError> {
    let store = RequestStore::new(context.store.clone());
    let mut deleted = 0u64;
    for request in requests {
        if store.package(tenant, *request)?.is_some() {
            store.remove_package(tenant, *request)?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// Removes the subject's restriction entries and destroys its keys, under the tenant's writer
/// lock (no write seals under a key while it is destroyed). Returns the keys destroyed.
fn forget_subject(
    context: &AppContext,
    tenant: TenantId,
    identity: &Identity,
    tokens: &[[u8; 32]],
) -> Result<u64, StoreError> {
    context.store.lock_scope(Scope::Tenant(tenant)).run(|| {
        let restrictions = Restrictions::new(context.store.clone());
        let mut writes = WriteSet::default();
        for email in &identity.emails {
            restrictions.stage_forget(tenant, email, &mut writes)?;
        }
        context.store.commit(writes)?;
        let mut destroyed = 0u64;
        for token in tokens {
            if context.store.destroy_subject_key(tenant, token)?.is_some() {
                destroyed += 1;
            }
        }
        Ok(destroyed)
    })
}

fn audit_erasure(
    context: &AppContext,
    actor: &Actor,
    tenant: TenantId,
    report: &ErasureReport,
    request: Option<&str>,
) -> Result<(), AuditError> {
    let request = request.map_or_else(String::new, |request| format!(", request {request}"));
    let again = report.finished_earlier_run;
    let earlier = if again == Reapplied::default() {
        String::new()
    } else {
        format!(
            " (finishing an interrupted run: {} records deleted, {} mentions redacted, {} subject keys destroyed)",
            again.records_deleted, again.mentions_redacted, again.keys_destroyed
        )
    };
    context.audit(AuditEvent::new(
        Some(tenant),
        actor.clone(),
        AuditAction::PrivacyErased,
        format!(
            "{}: {} interactions, {} contacts, {} signals deleted, {} mentions redacted, {} packages deleted, {} subject keys destroyed{earlier}{request}; requests may name it as {}",
            report.subject,
            report.interactions,
            report.contacts,
            report.signals,
            report.mentions_redacted,
            report.packages_deleted,
            report.keys_destroyed,
            report.named_as.join(", ")
        ),
    ))?;
    Ok(())
}

/// The targets of kind `R` among `ids`, plus every record of the kind sealed under `keys`.
fn reapply_targets<R: SourceRecord>(
    context: &AppContext,
    tenant: TenantId,
    entry: &LedgerEntry,
) -> Result<Vec<Target>, StoreError> {
    let records = RecordStore::<R>::new(context.store.clone()).records(tenant)?;
    let mut ids: Vec<RecordId> = entry
        .records
        .iter()
        .filter(|(kind, _)| *kind == R::KIND)
        .map(|(_, id)| *id)
        .collect();
    for key in &entry.subject_keys {
        ids.extend(records.keys_sealed_under(*key)?);
    }
    ids.sort_unstable();
    ids.dedup();
    // A record sealed under a key that is already gone cannot be read for its source key; it
    // is removed by id (its source claim, if any, then points nowhere and is released by the
    // next import of that source key).
    let mut targets = Vec::with_capacity(ids.len());
    for id in ids {
        match records.get(&id) {
            Ok(Some(stored)) => targets.push(Target {
                id,
                source_key: stored.record.source_key(),
            }),
            Ok(None) => {}
            Err(StoreError::SubjectErased { .. }) => targets.push(Target {
                id,
                source_key: String::new(),
            }),
            Err(error) => return Err(error),
        }
    }
    Ok(targets)
}

/// Erases again, in a (restored) database, what one ledger entry erased: its records, every
/// record sealed under its subject keys, the mentions in other people's interactions, and the
/// keys themselves.
pub(super) fn reapply_entry(
    context: &AppContext,
    entry: &LedgerEntry,
) -> Result<Reapplied, ErasureError> {
    let tenant = entry.tenant;
    let mut quiet = |_: ErasureProgress| {};
    let interactions = reapply_targets::<InteractionRecord>(context, tenant, entry)?;
    let contacts = reapply_targets::<ContactRecord>(context, tenant, entry)?;
    let signals = reapply_targets::<SignalRecord>(context, tenant, entry)?;
    let mut deleted = delete_all::<InteractionRecord>(context, tenant, &interactions, &mut quiet)?;
    deleted += delete_all::<ContactRecord>(context, tenant, &contacts, &mut quiet)?;
    let contact_ids: Vec<RecordId> = entry
        .records
        .iter()
        .filter(|(kind, _)| *kind == RecordKind::Contact)
        .map(|(_, id)| *id)
        .collect();
    crate::feedback::forget_contacts(context, tenant, &contact_ids)?;
    deleted += delete_all::<SignalRecord>(context, tenant, &signals, &mut quiet)?;
    let mut redacted = 0u64;
    for id in &entry.mentions {
        if super::mentions::redact_interaction(
            context,
            &Actor::system(),
            tenant,
            *id,
            &entry.subject_tokens,
        )? {
            redacted += 1;
        }
    }
    deleted += delete_packages(context, tenant, &entry.packages)?;
    let destroyed = context.store.lock_scope(Scope::Tenant(tenant)).run(|| {
        let mut destroyed = 0u64;
        for key in &entry.subject_keys {
            if context.store.destroy_subject_key_id(tenant, *key)? {
                destroyed += 1;
            }
        }
        for token in &entry.subject_tokens {
            if context.store.destroy_subject_key(tenant, token)?.is_some() {
                destroyed += 1;
            }
        }
        Ok::<_, StoreError>(destroyed)
    })?;
    if deleted + destroyed + redacted > 0 {
        let label = entry
            .subject_tokens
            .first()
            .map_or_else(|| "a subject named by name".to_owned(), subject_label);
        context.audit(AuditEvent::new(
            Some(tenant),
            Actor::system(),
            AuditAction::PrivacyErasureReapplied,
            format!("{label}: {deleted} records deleted again, {redacted} mentions redacted again, {destroyed} subject keys destroyed again"),
        ))?;
    }
    Ok(Reapplied {
        records_deleted: deleted,
        keys_destroyed: destroyed,
        mentions_redacted: redacted,
    })
}

/// The ids of the subject keys an erasure of `entry`'s tokens would destroy now (tests, status).
pub fn subject_keys_of(
    context: &AppContext,
    tenant: TenantId,
    tokens: &[[u8; 32]],
) -> Result<Vec<KeyId>, StoreError> {
    let mut ids = Vec::new();
    for token in tokens {
        ids.extend(context.store.subject_key_id(tenant, token)?);
    }
    Ok(ids)
}
