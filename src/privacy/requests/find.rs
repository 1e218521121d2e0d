//! Finding everything about one data subject, through indexes only (no scan of the tenant's
//! records):
//!
//! - the reference index ([`crate::records::refs`]): the contacts, interactions (as author) and
//!   signals that name the subject's e-mail, phone or name; a contact id stands for that
//!   contact's e-mail, phone and name;
//! - the search index: interactions that mention one of the subject's e-mail addresses in their
//!   text (each hit is opened and kept only when the address is really in it);
//! - the stored analyses of those interactions (`analysis::store`), and the search-index
//!   documents they have (every stored interaction with text has one);
//! - the tenant's audit entries that name one of the records found, or the subject's token
//!   label (restrictions and requests name the subject that way).
//!
//! Each list is bounded ([`MAX_PER_KIND`]); `truncated` says when one was cut.

use std::collections::BTreeSet;

use crate::accounts::ContactRecord;
use crate::analysis::Analysis;
use crate::audit::{AuditEntry, AuditView};
use crate::context::AppContext;
use crate::ids::{RecordId, TenantId};
use crate::interactions::InteractionRecord;
use crate::privacy::requests::RequestError;
use crate::privacy::subject::SubjectRef;
use crate::privacy::{normalise_email, subject_label, Restrictions};
use crate::records::refs::Reference;
use crate::records::{SourceRecord as _, Stored};
use crate::signals::SignalRecord;
use crate::store::StoreError;

/// The most records of one kind a search returns (and the most audit entries).
pub const MAX_PER_KIND: usize = 10_000;
/// The length of a record id (a ULID) as text.
const ID_CHARS: usize = 26;

/// Everything found about one subject.
#[derive(Clone, Debug, Default)]
pub struct Found {
    /// The references searched for (personal data).
    pub references: Vec<Reference>,
    pub contacts: Vec<Stored<ContactRecord>>,
    /// Interactions in which the subject wrote (or is named as author).
    pub interactions: Vec<Stored<InteractionRecord>>,
    /// Interactions that mention one of the subject's addresses in their text, not authored.
    pub mentions: Vec<Stored<InteractionRecord>>,
    pub signals: Vec<Stored<SignalRecord>>,
    /// Stored analyses of the interactions above.
    pub analyses: Vec<Analysis>,
    /// The interactions whose text is in the search index (by id).
    pub search_entries: Vec<RecordId>,
    /// The tenant's audit entries about the records found or the subject's tokens.
    pub audit: Vec<AuditEntry>,
    /// True when some list stopped at [`MAX_PER_KIND`].
    pub truncated: bool,
}

impl Found {
    /// How many items were found, all kinds together.
    pub fn total(&self) -> usize {
        self.contacts.len()
            + self.interactions.len()
            + self.mentions.len()
            + self.signals.len()
            + self.analyses.len()
            + self.audit.len()
    }

    /// Every record id found (contacts, interactions, mentions, signals).
    pub fn record_ids(&self) -> BTreeSet<RecordId> {
        self.contacts
            .iter()
            .map(|stored| stored.id)
            .chain(self.interactions.iter().map(|stored| stored.id))
            .chain(self.mentions.iter().map(|stored| stored.id))
            .chain(self.signals.iter().map(|stored| stored.id))
            .collect()
    }

    /// The subject's e-mail addresses among the references.
    pub fn emails(&self) -> Vec<String> {
        self.references
            .iter()
            .filter_map(|reference| match reference {
                Reference::Email(email) => Some(email.clone()),
                _ => None,
            })
            .collect()
    }
}

/// The references that stand for `subject`: its own, or a contact's e-mail, phone and name.
/// Returns the contact too when the subject is one.
fn references_of(
    context: &AppContext,
    tenant: TenantId,
    subject: &SubjectRef,
) -> Result<(Vec<Reference>, Option<Stored<ContactRecord>>), StoreError> {
    Ok(match subject {
        SubjectRef::Email(email) => (Reference::email(email).into_iter().collect(), None),
        SubjectRef::Phone(phone) => (Reference::phone(phone).into_iter().collect(), None),
        SubjectRef::Name(name) => (Reference::name(name).into_iter().collect(), None),
        SubjectRef::Contact(id) => match context.contacts.get(tenant, *id)? {
            Some(contact) => {
                let mut references = Vec::new();
                let record = &contact.record;
                references.extend(record.email.as_deref().and_then(Reference::email));
                references.extend(record.phone.as_deref().and_then(Reference::phone));
                references.extend(Reference::name(&record.name));
                (references, Some(contact))
            }
            None => (Vec::new(), None),
        },
    })
}

/// The subject's e-mail addresses: its own, or its contact's (restrictions are by address).
pub fn subject_emails(
    context: &AppContext,
    tenant: TenantId,
    subject: &SubjectRef,
) -> Result<Vec<String>, RequestError> {
    let (references, _) = references_of(context, tenant, subject)?;
    Ok(references
        .iter()
        .filter_map(|reference| match reference {
            Reference::Email(email) => normalise_email(email),
            _ => None,
        })
        .collect())
}

/// The records that name `subject` (contacts, interactions as author, signals), found through
/// the reference index.
fn records_naming(
    context: &AppContext,
    tenant: TenantId,
    subject: &SubjectRef,
) -> Result<Found, RequestError> {
    let (references, contact) = references_of(context, tenant, subject)?;
    let mut found = Found {
        references,
        ..Found::default()
    };
    if !found.references.is_empty() {
        let contacts = context
            .contacts
            .naming(tenant, &found.references, MAX_PER_KIND)?;
        let interactions = context
            .interactions
            .naming(tenant, &found.references, MAX_PER_KIND)?;
        let signals = context
            .signals
            .naming(tenant, &found.references, MAX_PER_KIND)?;
        found.truncated = contacts.more || interactions.more || signals.more;
        found.contacts = contacts.items;
        found.interactions = interactions.items;
        found.signals = signals.items;
    }
    if let Some(contact) = contact {
        if !found.contacts.iter().any(|known| known.id == contact.id) {
            found.contacts.insert(0, contact);
        }
    }
    Ok(found)
}

/// Finds everything about `subject` in `tenant` (see the module comment). Blocking; reads
/// nothing but what the indexes point at, plus the tenant's audit log.
pub fn find_subject(
    context: &AppContext,
    tenant: TenantId,
    subject: &SubjectRef,
) -> Result<Found, RequestError> {
    let mut found = records_naming(context, tenant, subject)?;
    found.mentions = mentions(context, tenant, &found)?;
    for interaction in found.interactions.iter().chain(&found.mentions) {
        found
            .analyses
            .extend(context.analysis.analyses(tenant, interaction.id)?);
        if !interaction.record.search_texts().is_empty() {
            found.search_entries.push(interaction.id);
        }
    }
    let (audit, more) = audit_about(context, tenant, subject, &found, MAX_PER_KIND)?;
    found.audit = audit;
    found.truncated |= more;
    Ok(found)
}

/// The tenant's audit entries about `subject`, newest first, at most `limit`, and whether more
/// matched: the audit page's subject filter. Entries name records by id and subjects by token
/// label, so the subject's records are found first and the log is filtered by them.
pub fn audit_for_subject(
    context: &AppContext,
    tenant: TenantId,
    subject: &SubjectRef,
    limit: usize,
) -> Result<(Vec<AuditEntry>, bool), RequestError> {
    let found = records_naming(context, tenant, subject)?;
    audit_about(context, tenant, subject, &found, limit)
}

/// Interactions whose text holds one of the subject's addresses and that the subject did not
/// author.
fn mentions(
    context: &AppContext,
    tenant: TenantId,
    found: &Found,
) -> Result<Vec<Stored<InteractionRecord>>, StoreError> {
    let authored: BTreeSet<RecordId> = found.interactions.iter().map(|item| item.id).collect();
    interactions_mentioning(context, tenant, &found.emails(), &authored, MAX_PER_KIND)
}

/// Interactions whose subject line or messages (text, quoted text, signature) hold one of
/// `emails` (normalised addresses), except those in `excluded`, at most `limit`: the search
/// index's candidates for each address (an address is one term of its own, see
/// `search::for_each_term`; quoted text and signatures are indexed for their addresses only, see
/// `InteractionRecord::search_texts`), each checked in its text.
/// The access package lists them; erasure redacts them (`privacy::mentions`).
pub(crate) fn interactions_mentioning(
    context: &AppContext,
    tenant: TenantId,
    emails: &[String],
    excluded: &BTreeSet<RecordId>,
    limit: usize,
) -> Result<Vec<Stored<InteractionRecord>>, StoreError> {
    let mut seen = BTreeSet::new();
    let mut mentions = Vec::new();
    let index = crate::search::SearchIndex::new(context.store.clone());
    for email in emails {
        let (candidates, _) = index.records_with_term(tenant, email, limit)?;
        for candidate in candidates {
            if excluded.contains(&candidate) || !seen.insert(candidate) {
                continue;
            }
            let interaction = match context.interactions.get(tenant, candidate) {
                Ok(Some(interaction)) => interaction,
                // Gone, or sealed under a key an erasure destroyed: no one can read it.
                Ok(None) | Err(StoreError::SubjectErased { .. }) => continue,
                Err(error) => return Err(error),
            };
            let record = &interaction.record;
            // Every text the interaction page shows: quoted text and signatures as well.
            let mentioned = record
                .subject
                .iter()
                .chain(record.messages.iter().flat_map(|message| {
                    std::iter::once(&message.text)
                        .chain(message.quoted.iter())
                        .chain(message.signature.iter())
                }))
                .any(|text| text.to_lowercase().contains(email.as_str()));
            if mentioned && mentions.len() < limit {
                mentions.push(interaction);
            }
        }
    }
    Ok(mentions)
}

/// The tenant's audit entries whose target names a record found or one of the subject's token
/// labels (its request token, and its restriction token for each address).
fn audit_about(
    context: &AppContext,
    tenant: TenantId,
    subject: &SubjectRef,
    found: &Found,
    limit: usize,
) -> Result<(Vec<AuditEntry>, bool), RequestError> {
    let ids: std::collections::HashSet<String> = found
        .record_ids()
        .into_iter()
        .map(|id| id.to_string())
        .collect();
    let mut labels = vec![subject_label(&subject.token(&context.store, tenant)?)];
    let restrictions = Restrictions::new(context.store.clone());
    for email in found.emails() {
        labels.push(subject_label(&restrictions.token(tenant, &email)?));
    }
    // Targets name records by id among other words: each 26-character word is looked up, so the
    // cost per entry does not grow with the number of records found.
    Ok(context
        .audit_log
        .entries_matching(AuditView::Tenant(tenant), limit, |entry| {
            let target = &entry.event.target;
            labels.iter().any(|label| target.contains(label.as_str()))
                || target
                    .split(|c: char| !c.is_ascii_alphanumeric())
                    .any(|word| word.len() == ID_CHARS && ids.contains(word))
        })?)
}
