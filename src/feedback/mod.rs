//! Feedback requests: after a resolved interaction, a personalised e-mail asking a contact how it
//! went (and for a public review), for contacts a user picks, the contacts of accounts, or the
//! customers of interactions resolved in the last days.
//!
//! A request is plain substitution into the tenant admin's template (subject and body with
//! `{first_name}`, `{account}`, `{interaction_subject}`, `{review_link}`, …): predictable, and
//! nothing is sent to a model. Preparing a batch picks the contacts, skips those without an
//! address, those under restriction or objection (`crate::privacy`, by the contact's address), and
//! those asked within the tenant's waiting period (a per-contact last-requested time), and stores
//! the batch sealed. A batch is then exported as CSV or, when the operator configured a relay and
//! a tenant admin turned sending on, sent through the operator's SMTP relay (`crate::mail`) by a
//! background thread that records each message's outcome in the batch as it goes, so a failed or
//! interrupted send loses nothing: what was not sent stays listed and can be sent again. Exported
//! messages are never sent too. Every read-modify-write of a batch holds the tenant's writer lock.
//! The audit log names contacts by record id, never by address.
//!
//! A message whose contact no longer exists (deleted, or its data subject erased) is never sent,
//! exported or shown: sending and exporting withhold it and empty it of its address, subject and
//! body, and the batch page shows it emptied. Erasure empties the erased contacts' messages in
//! every stored batch at once ([`forget_contacts`]).

pub mod routes;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::accounts::query::account_keys;
use crate::accounts::Contact;
use crate::audit::{Actor, AuditAction, AuditError, AuditEvent, Outcome};
use crate::context::AppContext;
use crate::csv_cell::defuse;
use crate::ids::{FeedbackBatchId, RecordId, TenantId};
use crate::interactions::query::last_message_time;
use crate::interactions::AuthorRole;
use crate::mail::{OutgoingMail, Relay, SendFailure};
use crate::privacy::{normalise_email, Restrictions};
use crate::records::{Order, MAX_SCANNED_PER_PAGE};
use crate::store::{Collection, Scope, StoreError, WriteSet};
use crate::tenants::Tenant;

const SETTINGS: &str = "feedback_settings";
const SETTINGS_KEY: &str = "template";
const BATCHES: &str = "feedback_batches";
const LAST_REQUESTED: &str = "feedback_last_requested";

/// Requests in one batch at most; more chosen contacts are counted as left over.
pub const MAX_BATCH: usize = 500;
const MAX_SUBJECT_CHARS: usize = 200;
const MAX_BODY_CHARS: usize = 10_000;
const MAX_LINK_CHARS: usize = 500;
/// The longest waiting period a tenant can set, in days.
const MAX_COOLDOWN_DAYS: u32 = 365;
/// The widest "resolved in the last N days" window.
pub const MAX_RESOLVED_DAYS: u32 = 365;
/// Interactions, contacts and accounts examined (each, newest first) to prepare a batch at most,
/// the bound the console's listings use.
pub const MAX_SCANNED: usize = MAX_SCANNED_PER_PAGE;

/// The placeholders a template may use.
pub const PLACEHOLDERS: &[&str] = &[
    "first_name",
    "name",
    "account",
    "interaction_subject",
    "review_link",
    "company",
];

/// Interaction statuses that count as resolved (compared without case).
pub const RESOLVED_STATUSES: &[&str] = &["resolved", "closed", "solved"];

#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// A typed value, naming its field.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("no such feedback batch")]
    NotFound,
    #[error("{0}")]
    Refused(String),
}

fn invalid(field: &'static str, message: impl Into<String>) -> FeedbackError {
    FeedbackError::Invalid {
        field,
        message: message.into(),
    }
}

/// The tenant admin's template and rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedbackSettings {
    pub subject: String,
    pub body: String,
    /// Where the review is left (the Google or Facebook review page); `{review_link}`.
    pub review_link: String,
    /// A contact asked within this many days is not asked again.
    pub cooldown_days: u32,
    /// The tenant admin allows sending through the operator's relay (off: export only).
    #[serde(default)]
    pub sending_enabled: bool,
}

impl Default for FeedbackSettings {
    fn default() -> Self {
        Self {
            subject: "How did we do, {first_name}?".to_owned(),
            body: "Hello {first_name},\n\nThank you for getting in touch with {company} about \
                   \"{interaction_subject}\". We hope it is sorted out to your satisfaction.\n\n\
                   Would you tell us how we did? A short review helps us and other customers:\n\
                   {review_link}\n\nKind regards,\n{company}\n"
                .to_owned(),
            review_link: String::new(),
            cooldown_days: 30,
            sending_enabled: false,
        }
    }
}

/// The placeholders a text uses that are not known, or a description of a stray brace.
pub fn template_problem(text: &str) -> Option<String> {
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Some("has a `{` without its `}`".to_owned());
        };
        let name = &after[..close];
        if !PLACEHOLDERS.contains(&name) {
            return Some(format!(
                "{{{}}} is not a placeholder (use {})",
                name.chars().take(40).collect::<String>(),
                PLACEHOLDERS
                    .iter()
                    .map(|p| format!("{{{p}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        rest = &after[close + 1..];
    }
    None
}

/// The values substituted for one contact.
#[derive(Clone, Debug, Default)]
pub struct Personalisation {
    pub first_name: String,
    pub name: String,
    pub account: String,
    pub interaction_subject: String,
    pub review_link: String,
    pub company: String,
}

impl Personalisation {
    fn value(&self, placeholder: &str) -> Option<&str> {
        Some(match placeholder {
            "first_name" => &self.first_name,
            "name" => &self.name,
            "account" => &self.account,
            "interaction_subject" => &self.interaction_subject,
            "review_link" => &self.review_link,
            "company" => &self.company,
            _ => return None,
        })
    }
}

/// `template` with each known placeholder replaced; anything else is left as written.
pub fn fill(template: &str, values: &Personalisation) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        if let Some((close, value)) = after
            .find('}')
            .and_then(|close| values.value(&after[..close]).map(|value| (close, value)))
        {
            out.push_str(value);
            rest = &after[close + 1..];
        } else {
            out.push('{');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The first word of a name.
fn first_name(name: &str) -> String {
    name.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Which contacts a batch is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// The customers (matched to contacts by address) of interactions whose status is resolved,
    /// closed or solved and whose last message is within the last `days` days.
    Resolved { days: u32 },
    /// Every contact of these accounts.
    Accounts(Vec<RecordId>),
    /// These contacts.
    Contacts(Vec<RecordId>),
}

impl Selection {
    fn describe(&self) -> String {
        match self {
            Self::Resolved { days } => {
                format!("contacts of interactions resolved in the last {days} days")
            }
            Self::Accounts(ids) => format!("contacts of {} chosen accounts", ids.len()),
            Self::Contacts(ids) => format!("{} chosen contacts", ids.len()),
        }
    }
}

/// Why chosen contacts got no request, counted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkipCounts {
    pub no_email: usize,
    /// Under restriction of processing or objection (never named on the page).
    pub restricted: usize,
    pub recently_requested: usize,
    /// Customers of resolved interactions with no contact record of their address.
    pub no_contact_record: usize,
    /// Beyond [`MAX_BATCH`].
    pub over_limit: usize,
    /// Chosen by account or by hand but with no resolved interaction (by the contact's address).
    #[serde(default)]
    pub no_resolved_interaction: usize,
}

impl SkipCounts {
    pub fn total(&self) -> usize {
        self.no_email
            + self.restricted
            + self.recently_requested
            + self.no_contact_record
            + self.over_limit
            + self.no_resolved_interaction
    }
}

/// Where one message stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum MessageStatus {
    /// Prepared, not sent (also after an interrupted send).
    Pending,
    Sent {
        at: DateTime<Utc>,
    },
    Failed {
        failure: SendFailure,
        at: DateTime<Utc>,
    },
    /// Not sent: since the batch was prepared the contact came under restriction or objection,
    /// or was asked by another batch, or no longer exists (see [`WithheldReason`]).
    Withheld {
        at: DateTime<Utc>,
        /// Absent in batches stored before reasons were kept: restricted or asked since.
        #[serde(default)]
        reason: WithheldReason,
    },
    /// Exported as CSV (first at `at`): the tenant's own mail system asks; never sent from here.
    Exported {
        at: DateTime<Utc>,
    },
}

/// Why a message was withheld.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WithheldReason {
    /// The contact came under restriction or objection, or was asked by another batch.
    #[default]
    RestrictedOrAskedSince,
    /// The contact record no longer exists (deleted, or its data subject erased); the message
    /// was emptied of its address, subject and body.
    ContactGone,
}

/// One prepared request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchMessage {
    pub contact: RecordId,
    pub to: String,
    pub subject: String,
    pub body: String,
    pub status: MessageStatus,
}

impl BatchMessage {
    /// Empties the message of its contact's address and text (personalised with their name),
    /// keeping the contact's record id. A message not sent yet is withheld for good; a sent one
    /// stays sent, so that nothing is ever sent or exported again from it.
    fn forget(&mut self, at: DateTime<Utc>) {
        self.to = String::new();
        self.subject = String::new();
        self.body = String::new();
        if !matches!(self.status, MessageStatus::Sent { .. }) {
            self.status = MessageStatus::Withheld {
                at,
                reason: WithheldReason::ContactGone,
            };
        }
    }

    /// Whether the message was emptied because its contact no longer exists.
    pub fn is_forgotten(&self) -> bool {
        self.to.is_empty()
    }
}

/// Whether `contact` is still held and can be read: false once it was deleted (by hand, by
/// retention or by an erasure) or its data subject's key was destroyed.
fn contact_exists(
    context: &AppContext,
    tenant: TenantId,
    contact: RecordId,
) -> Result<bool, StoreError> {
    match context.contacts.get(tenant, contact) {
        Ok(found) => Ok(found.is_some()),
        Err(StoreError::SubjectErased { .. }) => Ok(false),
        Err(other) => Err(other),
    }
}

/// The batch as it may be shown: every message whose contact no longer exists emptied (see
/// [`BatchMessage::forget`]), also for batches stored before their contacts were deleted.
/// Nothing is written; sending, exporting and [`forget_contacts`] store the emptied messages.
pub fn without_missing_contacts(
    context: &AppContext,
    tenant: TenantId,
    mut batch: FeedbackBatch,
) -> Result<FeedbackBatch, StoreError> {
    let now = Utc::now();
    for message in &mut batch.messages {
        if !message.is_forgotten() && !contact_exists(context, tenant, message.contact)? {
            message.forget(now);
        }
    }
    Ok(batch)
}

/// Empties the messages of `contacts` in every stored feedback batch of the tenant (see
/// [`BatchMessage::forget`]: never sent or exported afterwards, no address, subject or body
/// kept) and forgets when they were last asked, in one commit under the tenant's writer lock
/// (so call it without holding that lock). Erasure calls it with the contacts it deleted.
/// Returns how many messages were emptied.
pub fn forget_contacts(
    context: &AppContext,
    tenant: TenantId,
    contacts: &[RecordId],
) -> Result<usize, StoreError> {
    if contacts.is_empty() {
        return Ok(0);
    }
    let wanted: HashSet<RecordId> = contacts.iter().copied().collect();
    let feedback = FeedbackStore::new(context.store.clone());
    context.store.lock_scope(Scope::Tenant(tenant)).run(|| {
        let batches = feedback.batches(tenant)?;
        let last_requested = feedback.last_requested(tenant)?;
        let now = Utc::now();
        let mut forgotten = 0;
        let mut writes = WriteSet::default();
        for entry in batches.scan() {
            let (id, mut batch) = entry?;
            let mut changed = false;
            for message in &mut batch.messages {
                if wanted.contains(&message.contact) && !message.is_forgotten() {
                    message.forget(now);
                    forgotten += 1;
                    changed = true;
                }
            }
            if changed {
                writes.put(&batches, &id, &batch)?;
            }
        }
        for contact in &wanted {
            writes.remove(&last_requested, contact);
        }
        context.store.commit(writes)?;
        Ok(forgotten)
    })
}

/// A prepared batch and what became of each message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedbackBatch {
    pub id: FeedbackBatchId,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub selection: String,
    pub messages: Vec<BatchMessage>,
    pub skipped: SkipCounts,
    pub exported_at: Option<DateTime<Utc>>,
    /// Messages left out of exports because their contact came under restriction or objection
    /// after the batch was prepared.
    #[serde(default)]
    pub withheld_at_export: usize,
    /// Preparing stopped examining interactions, contacts or accounts at [`MAX_SCANNED`].
    #[serde(default)]
    pub scan_limit_reached: bool,
}

/// Messages of a batch by state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub pending: usize,
    pub sent: usize,
    pub failed: usize,
    pub withheld: usize,
    pub exported: usize,
}

impl FeedbackBatch {
    pub fn progress(&self) -> Progress {
        let mut progress = Progress::default();
        for message in &self.messages {
            match message.status {
                MessageStatus::Pending => progress.pending += 1,
                MessageStatus::Sent { .. } => progress.sent += 1,
                MessageStatus::Failed { .. } => progress.failed += 1,
                MessageStatus::Withheld { .. } => progress.withheld += 1,
                MessageStatus::Exported { .. } => progress.exported += 1,
            }
        }
        progress
    }
}

/// The feedback collections of every tenant.
#[derive(Clone)]
pub struct FeedbackStore {
    store: crate::store::Store,
}

impl FeedbackStore {
    pub fn new(store: crate::store::Store) -> Self {
        Self { store }
    }

    fn settings_collection(
        &self,
        tenant: TenantId,
    ) -> Result<Collection<&'static str, FeedbackSettings>, StoreError> {
        self.store.collection(Scope::Tenant(tenant), SETTINGS)
    }

    pub fn batches(
        &self,
        tenant: TenantId,
    ) -> Result<Collection<FeedbackBatchId, FeedbackBatch>, StoreError> {
        self.store.collection(Scope::Tenant(tenant), BATCHES)
    }

    fn last_requested(
        &self,
        tenant: TenantId,
    ) -> Result<Collection<RecordId, DateTime<Utc>>, StoreError> {
        self.store.collection(Scope::Tenant(tenant), LAST_REQUESTED)
    }

    /// The tenant's settings, or the defaults.
    pub fn settings(&self, tenant: TenantId) -> Result<FeedbackSettings, StoreError> {
        Ok(self
            .settings_collection(tenant)?
            .get(&SETTINGS_KEY)?
            .unwrap_or_default())
    }

    /// When the contact was last asked, if ever.
    pub fn last_requested_at(
        &self,
        tenant: TenantId,
        contact: RecordId,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.last_requested(tenant)?.get(&contact)
    }

    pub fn batch(
        &self,
        tenant: TenantId,
        id: FeedbackBatchId,
    ) -> Result<Option<FeedbackBatch>, StoreError> {
        self.batches(tenant)?.get(&id)
    }

    /// The newest batches, at most `limit`.
    pub fn recent_batches(
        &self,
        tenant: TenantId,
        limit: usize,
    ) -> Result<Vec<FeedbackBatch>, StoreError> {
        self.batches(tenant)?
            .scan_newest_first(None)
            .take(limit)
            .map(|entry| entry.map(|(_, batch)| batch))
            .collect()
    }
}

/// A tenant admin saves the template, review link, waiting period and whether requests may be
/// sent by e-mail. Audited as `feedback.settings_changed`.
pub fn save_settings(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    tenant: TenantId,
    settings: &FeedbackSettings,
) -> Result<(), FeedbackError> {
    let subject = settings.subject.trim();
    if subject.is_empty() || subject.chars().count() > MAX_SUBJECT_CHARS || subject.contains('\n') {
        return Err(invalid(
            "Subject",
            format!("write one line of at most {MAX_SUBJECT_CHARS} characters"),
        ));
    }
    if let Some(problem) = template_problem(subject) {
        return Err(invalid("Subject", problem));
    }
    if settings.body.trim().is_empty() || settings.body.chars().count() > MAX_BODY_CHARS {
        return Err(invalid(
            "Body",
            format!("write the message, in at most {MAX_BODY_CHARS} characters"),
        ));
    }
    if let Some(problem) = template_problem(&settings.body) {
        return Err(invalid("Body", problem));
    }
    let link = settings.review_link.trim();
    if !link.is_empty() {
        let parsed = url::Url::parse(link).ok();
        if link.chars().count() > MAX_LINK_CHARS || parsed.is_none_or(|url| url.scheme() != "https")
        {
            return Err(invalid(
                "Review link",
                "give the address of your review page, starting with https://",
            ));
        }
    }
    if settings.cooldown_days > MAX_COOLDOWN_DAYS {
        return Err(invalid(
            "Waiting period",
            format!("give a number of days from 0 to {MAX_COOLDOWN_DAYS}"),
        ));
    }
    let stored = FeedbackSettings {
        subject: subject.to_owned(),
        body: settings.body.replace("\r\n", "\n"),
        review_link: link.to_owned(),
        cooldown_days: settings.cooldown_days,
        sending_enabled: settings.sending_enabled,
    };
    FeedbackStore::new(context.store.clone())
        .settings_collection(tenant)?
        .insert(&SETTINGS_KEY, &stored)?;
    context.audit(
        AuditEvent::new(
            Some(tenant),
            actor.clone(),
            AuditAction::FeedbackSettingsChanged,
            format!(
                "feedback settings (waiting period {} days, sending by e-mail {})",
                stored.cooldown_days,
                if stored.sending_enabled { "on" } else { "off" }
            ),
        )
        .client(client),
    )?;
    Ok(())
}

fn is_resolved(status: Option<&String>) -> bool {
    status.is_some_and(|status| {
        RESOLVED_STATUSES
            .iter()
            .any(|resolved| status.trim().eq_ignore_ascii_case(resolved))
    })
}

/// What a selection names, from scans bounded by [`MAX_SCANNED`] (newest first).
struct Chosen {
    contacts: Vec<Contact>,
    /// The latest resolved interaction's subject by customer address (in the accounts and
    /// contacts modes, only the chosen contacts' addresses).
    subjects: HashMap<String, String>,
    /// Account names by the keys the chosen contacts' `account` fields use, in lower case.
    account_names: HashMap<String, String>,
    /// Customers of resolved interactions without a contact record.
    no_contact_record: usize,
    scan_limit_reached: bool,
}

/// The latest resolved interaction's subject per customer address, among the newest
/// [`MAX_SCANNED`] interactions: those whose last message is after `since` when set, and only
/// the addresses in `wanted` when set. True as well when the scan stopped at the bound.
fn resolved_subjects(
    context: &AppContext,
    tenant: TenantId,
    since: Option<DateTime<Utc>>,
    wanted: Option<&HashSet<String>>,
) -> Result<(HashMap<String, String>, bool), StoreError> {
    let mut latest: HashMap<String, (DateTime<Utc>, String)> = HashMap::new();
    if wanted.is_some_and(HashSet::is_empty) {
        return Ok((HashMap::new(), false));
    }
    // The filter gathers and keeps nothing: the page only bounds the scan.
    let page = context
        .interactions
        .page(tenant, Order::NewestFirst, None, 1, |record| {
            if !is_resolved(record.status.as_ref()) {
                return false;
            }
            let Some(last) = last_message_time(record) else {
                return false;
            };
            if since.is_some_and(|since| last < since) {
                return false;
            }
            for message in &record.messages {
                if message.role != AuthorRole::Customer {
                    continue;
                }
                let Some(email) = message.author_email.as_deref().and_then(normalise_email) else {
                    continue;
                };
                if wanted.is_some_and(|wanted| !wanted.contains(&email)) {
                    continue;
                }
                match latest.get(&email) {
                    Some((time, _)) if *time >= last => {}
                    _ => {
                        let subject = record.subject.clone().unwrap_or_default();
                        latest.insert(email, (last, subject));
                    }
                }
            }
            false
        })?;
    let subjects = latest
        .into_iter()
        .map(|(email, (_, subject))| (email, subject))
        .collect();
    Ok((subjects, page.scan_limit_reached))
}

/// The newest contacts that `keep` accepts, among the newest [`MAX_SCANNED`]; true when the scan
/// stopped at the bound.
fn scan_contacts(
    context: &AppContext,
    tenant: TenantId,
    keep: impl FnMut(&crate::accounts::ContactRecord) -> bool,
) -> Result<(Vec<Contact>, bool), StoreError> {
    let page = context
        .contacts
        .page(tenant, Order::NewestFirst, None, MAX_SCANNED, keep)?;
    Ok((page.items, page.scan_limit_reached))
}

/// The normalised addresses of `contacts`.
fn addresses(contacts: &[Contact]) -> HashSet<String> {
    contacts
        .iter()
        .filter_map(|contact| contact.record.email.as_deref().and_then(normalise_email))
        .collect()
}

/// The `account` keys `contacts` use, in lower case.
fn account_keys_of(contacts: &[Contact]) -> HashSet<String> {
    contacts
        .iter()
        .filter_map(|contact| contact.record.account.as_deref())
        .map(|account| account.trim().to_lowercase())
        .collect()
}

/// The names of the accounts whose keys (source id, domain) are `wanted`, among the newest
/// [`MAX_SCANNED`] accounts; true when the scan stopped at the bound.
fn account_names(
    context: &AppContext,
    tenant: TenantId,
    wanted: &HashSet<String>,
) -> Result<(HashMap<String, String>, bool), StoreError> {
    let mut names = HashMap::new();
    if wanted.is_empty() {
        return Ok((names, false));
    }
    let page = context
        .accounts
        .page_stored(tenant, Order::NewestFirst, None, 1, |account| {
            for key in account_keys(account) {
                let key = key.trim().to_lowercase();
                if wanted.contains(&key) {
                    names
                        .entry(key)
                        .or_insert_with(|| account.record.name.clone());
                }
            }
            false
        })?;
    Ok((names, page.scan_limit_reached))
}

/// The contacts a selection names, with only the lookups its mode needs: in the resolved mode the
/// resolved interactions in the window and the contacts of their customers; for accounts, the
/// chosen accounts' contacts and their resolved interactions; for contacts, those contacts by id
/// and their resolved interactions.
fn chosen_contacts(
    context: &AppContext,
    tenant: TenantId,
    selection: &Selection,
    now: DateTime<Utc>,
) -> Result<Chosen, StoreError> {
    let (contacts, subjects, names, no_contact_record, limited) = match selection {
        Selection::Resolved { days } => {
            let since = now - Duration::days(i64::from(*days));
            let (subjects, interactions_limited) =
                resolved_subjects(context, tenant, Some(since), None)?;
            let mut found = HashSet::new();
            let (contacts, contacts_limited) = if subjects.is_empty() {
                (Vec::new(), false)
            } else {
                scan_contacts(context, tenant, |contact| {
                    contact
                        .email
                        .as_deref()
                        .and_then(normalise_email)
                        .is_some_and(|email| subjects.contains_key(&email) && found.insert(email))
                })?
            };
            let no_contact_record = subjects.len() - found.len();
            (
                contacts,
                subjects,
                None,
                no_contact_record,
                interactions_limited || contacts_limited,
            )
        }
        Selection::Accounts(ids) => {
            let mut names = HashMap::new();
            for id in ids {
                if let Some(account) = context.accounts.get(tenant, *id)? {
                    for key in account_keys(&account) {
                        names.insert(key.trim().to_lowercase(), account.record.name.clone());
                    }
                }
            }
            let (contacts, contacts_limited) = if names.is_empty() {
                (Vec::new(), false)
            } else {
                scan_contacts(context, tenant, |contact| {
                    contact
                        .account
                        .as_ref()
                        .is_some_and(|account| names.contains_key(&account.trim().to_lowercase()))
                })?
            };
            let (subjects, interactions_limited) =
                resolved_subjects(context, tenant, None, Some(&addresses(&contacts)))?;
            (
                contacts,
                subjects,
                Some(names),
                0,
                contacts_limited || interactions_limited,
            )
        }
        Selection::Contacts(ids) => {
            let mut seen = HashSet::new();
            let mut contacts = Vec::new();
            for id in ids {
                if seen.insert(*id) {
                    if let Some(contact) = context.contacts.get(tenant, *id)? {
                        contacts.push(contact);
                    }
                }
            }
            let (subjects, interactions_limited) =
                resolved_subjects(context, tenant, None, Some(&addresses(&contacts)))?;
            (contacts, subjects, None, 0, interactions_limited)
        }
    };
    let (account_names, accounts_limited) = match names {
        Some(names) => (names, false),
        None => account_names(context, tenant, &account_keys_of(&contacts))?,
    };
    Ok(Chosen {
        contacts,
        subjects,
        account_names,
        no_contact_record,
        scan_limit_reached: limited || accounts_limited,
    })
}

fn check_selection(selection: &Selection) -> Result<(), FeedbackError> {
    match selection {
        Selection::Resolved { days } if *days == 0 || *days > MAX_RESOLVED_DAYS => Err(invalid(
            "Days",
            format!("give a number of days from 1 to {MAX_RESOLVED_DAYS}"),
        )),
        Selection::Accounts(ids) if ids.is_empty() => {
            Err(invalid("Accounts", "choose at least one account"))
        }
        Selection::Contacts(ids) if ids.is_empty() => {
            Err(invalid("Contacts", "choose at least one contact"))
        }
        _ => Ok(()),
    }
}

/// Prepares a batch: picks the contacts, skips (and counts) those without an address, under
/// restriction or objection, without a resolved interaction, or asked within the waiting period,
/// fills the template for each of the others and stores the batch. Audited as `feedback.batch_created` with the contacts' record
/// ids. Nothing is sent.
pub fn prepare_batch(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    tenant: &Tenant,
    selection: &Selection,
) -> Result<FeedbackBatch, FeedbackError> {
    check_selection(selection)?;
    let now = Utc::now();
    let feedback = FeedbackStore::new(context.store.clone());
    let settings = feedback.settings(tenant.id)?;
    let restrictions = Restrictions::new(context.store.clone());
    let Chosen {
        contacts,
        subjects,
        account_names: accounts,
        no_contact_record,
        scan_limit_reached,
    } = chosen_contacts(context, tenant.id, selection, now)?;
    let cooldown = Duration::days(i64::from(settings.cooldown_days));
    let mut skipped = SkipCounts {
        no_contact_record,
        ..SkipCounts::default()
    };
    let mut messages = Vec::new();
    for contact in contacts {
        let Some(email) = contact.record.email.as_deref().and_then(normalise_email) else {
            skipped.no_email += 1;
            continue;
        };
        if restrictions.of(tenant.id, &email)?.is_some() {
            skipped.restricted += 1;
            continue;
        }
        // Requests go after a resolved interaction: a contact chosen by account or by hand
        // without one is left out (in the resolved mode every contact has one).
        let Some(subject) = subjects.get(&email) else {
            skipped.no_resolved_interaction += 1;
            continue;
        };
        if settings.cooldown_days > 0
            && feedback
                .last_requested_at(tenant.id, contact.id)?
                .is_some_and(|at| now - at < cooldown)
        {
            skipped.recently_requested += 1;
            continue;
        }
        if messages.len() == MAX_BATCH {
            skipped.over_limit += 1;
            continue;
        }
        let account = contact.record.account.as_deref().map(|account| {
            accounts
                .get(&account.trim().to_lowercase())
                .cloned()
                .unwrap_or_else(|| account.to_owned())
        });
        let values = Personalisation {
            first_name: first_name(&contact.record.name),
            name: contact.record.name.clone(),
            account: account.unwrap_or_default(),
            interaction_subject: subject.clone(),
            review_link: settings.review_link.clone(),
            company: tenant.name.clone(),
        };
        messages.push(BatchMessage {
            contact: contact.id,
            to: contact
                .record
                .email
                .clone()
                .unwrap_or(email)
                .trim()
                .to_owned(),
            subject: crate::mail::single_line(&fill(&settings.subject, &values)),
            body: fill(&settings.body, &values),
            status: MessageStatus::Pending,
        });
    }
    let batch = FeedbackBatch {
        id: FeedbackBatchId::new(),
        created_at: now,
        created_by: actor.label.clone(),
        selection: selection.describe(),
        messages,
        skipped,
        exported_at: None,
        withheld_at_export: 0,
        scan_limit_reached,
    };
    feedback.batches(tenant.id)?.insert(&batch.id, &batch)?;
    audit_prepared(
        context,
        actor,
        client,
        tenant.id,
        &batch,
        settings.cooldown_days,
    )?;
    Ok(batch)
}

fn audit_prepared(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    tenant: TenantId,
    batch: &FeedbackBatch,
    cooldown_days: u32,
) -> Result<(), AuditError> {
    context.audit(
        AuditEvent::new(
            Some(tenant),
            actor.clone(),
            AuditAction::FeedbackBatchCreated,
            format!(
                "feedback batch {}: {} requests (contacts {}); skipped {} without e-mail, {} restricted or objecting, {} asked within {cooldown_days} days, {} without a contact record, {} over the limit, {} without a resolved interaction{}",
                batch.id,
                batch.messages.len(),
                contact_ids(&batch.messages),
                batch.skipped.no_email,
                batch.skipped.restricted,
                batch.skipped.recently_requested,
                batch.skipped.no_contact_record,
                batch.skipped.over_limit,
                batch.skipped.no_resolved_interaction,
                if batch.scan_limit_reached {
                    format!(" (scans stopped at {MAX_SCANNED} records)")
                } else {
                    String::new()
                },
            ),
        )
        .client(client),
    )?;
    Ok(())
}

fn contact_ids(messages: &[BatchMessage]) -> String {
    messages
        .iter()
        .map(|message| message.contact.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The batch as CSV (`to,subject,body`, one row per message not sent and not withheld; cells
/// defused against spreadsheet formulas). Each message is checked against restrictions and
/// objections again: one whose contact came under either since the batch was prepared is
/// withheld, left out and counted. One whose contact no longer exists is withheld, emptied and
/// left out (counted in the audit entry). The exported messages are marked `Exported` (never sent from
/// here afterwards) and their contacts count as asked from now on, all in one commit under the
/// tenant's writer lock. Refused while the batch is being sent. Audited as `feedback.exported`
/// with the contacts' record ids.
pub fn export_csv(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    tenant: TenantId,
    id: FeedbackBatchId,
) -> Result<Vec<u8>, FeedbackError> {
    let feedback = FeedbackStore::new(context.store.clone());
    let restrictions = Restrictions::new(context.store.clone());
    context.store.lock_scope(Scope::Tenant(tenant)).run(|| {
        if is_sending(id) {
            return Err(FeedbackError::Refused(
                "this batch is being sent; export it when the send has finished".to_owned(),
            ));
        }
        let batches = feedback.batches(tenant)?;
        let mut batch = batches.get(&id)?.ok_or(FeedbackError::NotFound)?;
        let now = Utc::now();
        let mut exported: Vec<BatchMessage> = Vec::new();
        let mut withheld = 0;
        let mut gone = 0;
        for message in &mut batch.messages {
            if matches!(
                message.status,
                MessageStatus::Sent { .. } | MessageStatus::Withheld { .. }
            ) {
                continue;
            }
            if !contact_exists(context, tenant, message.contact)? {
                message.forget(now);
                gone += 1;
                continue;
            }
            if restrictions.of(tenant, &message.to)?.is_some() {
                message.status = MessageStatus::Withheld {
                    at: now,
                    reason: WithheldReason::RestrictedOrAskedSince,
                };
                withheld += 1;
                continue;
            }
            if !matches!(message.status, MessageStatus::Exported { .. }) {
                message.status = MessageStatus::Exported { at: now };
            }
            exported.push(message.clone());
        }
        let mut writer = csv::Writer::from_writer(Vec::new());
        let written = (|| -> Result<Vec<u8>, csv::Error> {
            writer.write_record(["to", "subject", "body"])?;
            for message in &exported {
                writer.write_record([
                    defuse(&message.to),
                    defuse(&message.subject),
                    defuse(&message.body),
                ])?;
            }
            writer
                .into_inner()
                .map_err(|error| csv::Error::from(error.into_error()))
        })();
        let bytes = written
            .map_err(|_| FeedbackError::Refused("the CSV could not be written".to_owned()))?;
        context.audit(
            AuditEvent::new(
                Some(tenant),
                actor.clone(),
                AuditAction::FeedbackExported,
                format!(
                    "feedback batch {id}: {} requests exported as CSV (contacts {}); {withheld} withheld, restricted or objecting since the batch was prepared; {gone} withheld, contact no longer exists",
                    exported.len(),
                    contact_ids(&exported)
                ),
            )
            .client(client),
        )?;
        batch.exported_at = Some(now);
        batch.withheld_at_export += withheld;
        let last_requested = feedback.last_requested(tenant)?;
        let mut changes = WriteSet::default();
        changes.put(&batches, &id, &batch)?;
        for message in &exported {
            changes.put(&last_requested, &message.contact, &now)?;
        }
        context.store.commit(changes)?;
        Ok(bytes)
    })
}

/// Batches being sent by this process (memory only: after a restart none is).
static SENDING: Mutex<Option<HashSet<FeedbackBatchId>>> = Mutex::new(None);

/// Whether a send of `id` is running now.
pub fn is_sending(id: FeedbackBatchId) -> bool {
    SENDING
        .lock()
        .is_ok_and(|set| set.as_ref().is_some_and(|set| set.contains(&id)))
}

fn claim_sending(id: FeedbackBatchId) -> bool {
    SENDING
        .lock()
        .is_ok_and(|mut set| set.get_or_insert_with(HashSet::new).insert(id))
}

fn release_sending(id: FeedbackBatchId) {
    if let Ok(mut set) = SENDING.lock() {
        if let Some(set) = set.as_mut() {
            set.remove(&id);
        }
    }
}

/// Checks that a send can start (the operator configured a relay, a tenant admin turned sending
/// on, the batch exists, has something to send and is not being sent) and marks it as being sent,
/// under the tenant's writer lock so that an export cannot run between the check and the mark.
/// The caller then runs [`send_batch`], usually on its own thread.
pub fn begin_send(
    context: &AppContext,
    tenant: TenantId,
    id: FeedbackBatchId,
) -> Result<Relay, FeedbackError> {
    let relay = Relay::from_config(context.config.smtp.as_ref())
        .map_err(|error| FeedbackError::Refused(error.to_string()))?;
    let feedback = FeedbackStore::new(context.store.clone());
    if !feedback.settings(tenant)?.sending_enabled {
        return Err(FeedbackError::Refused(
            "sending by e-mail is off for this tenant: a tenant admin turns it on in the feedback \
             template settings"
                .to_owned(),
        ));
    }
    context.store.lock_scope(Scope::Tenant(tenant)).run(|| {
        let batch = feedback.batch(tenant, id)?.ok_or(FeedbackError::NotFound)?;
        let progress = batch.progress();
        if progress.pending + progress.failed == 0 {
            return Err(FeedbackError::Refused(
                "every request of this batch has been sent, exported as CSV or withheld".to_owned(),
            ));
        }
        if !claim_sending(id) {
            return Err(FeedbackError::Refused(
                "this batch is being sent already".to_owned(),
            ));
        }
        Ok(relay)
    })
}

/// Sends every pending or failed message of the batch through `relay`, recording each outcome in
/// the batch as it goes and auditing each send (`feedback.sent`, the contact by record id, a
/// failure by its class). Exported messages are never sent. A contact that came under
/// restriction or objection, or was asked by another batch, since the batch was prepared is
/// withheld; one that no longer exists is withheld and its message emptied. Ends the mark
/// [`begin_send`] set.
pub fn send_batch(
    context: &AppContext,
    actor: &Actor,
    client: Option<&str>,
    tenant: TenantId,
    id: FeedbackBatchId,
    relay: &Relay,
) -> Result<Progress, FeedbackError> {
    let outcome = send_all(context, actor, client, tenant, id, relay);
    release_sending(id);
    outcome
}

fn send_all(
    context: &AppContext,
    actor: &Actor,
    client: Option<&str>,
    tenant: TenantId,
    id: FeedbackBatchId,
    relay: &Relay,
) -> Result<Progress, FeedbackError> {
    let feedback = FeedbackStore::new(context.store.clone());
    let restrictions = Restrictions::new(context.store.clone());
    let batches = feedback.batches(tenant)?;
    let last_requested = feedback.last_requested(tenant)?;
    // Each read-modify-write of the batch holds the tenant's writer lock; the relay is talked to
    // outside it, so a slow relay holds up no other writer of the tenant.
    let lock = context.store.lock_scope(Scope::Tenant(tenant));
    let count = batches
        .get(&id)?
        .ok_or(FeedbackError::NotFound)?
        .messages
        .len();
    for index in 0..count {
        let next = lock.run(|| -> Result<Option<BatchMessage>, FeedbackError> {
            let mut batch = batches.get(&id)?.ok_or(FeedbackError::NotFound)?;
            let Some(message) = batch.messages.get(index).cloned() else {
                return Ok(None);
            };
            if !matches!(
                message.status,
                MessageStatus::Pending | MessageStatus::Failed { .. }
            ) {
                return Ok(None);
            }
            if !contact_exists(context, tenant, message.contact)? {
                batch.messages[index].forget(Utc::now());
                batches.insert(&id, &batch)?;
                return Ok(None);
            }
            let restricted = restrictions.of(tenant, &message.to)?.is_some();
            // Every request this batch made is `Sent` or `Exported`, so a later time is another
            // batch's (or, for a batch exported before exports were marked, its export's).
            let asked_since = feedback
                .last_requested_at(tenant, message.contact)?
                .is_some_and(|at| at > batch.created_at);
            if restricted || asked_since {
                batch.messages[index].status = MessageStatus::Withheld {
                    at: Utc::now(),
                    reason: WithheldReason::RestrictedOrAskedSince,
                };
                batches.insert(&id, &batch)?;
                return Ok(None);
            }
            Ok(Some(message))
        })?;
        let Some(message) = next else {
            continue;
        };
        let contact = message.contact;
        let sent = relay.send(&OutgoingMail {
            to: message.to,
            subject: message.subject,
            body: message.body,
        });
        let now = Utc::now();
        let (status, outcome, target) = match sent {
            Ok(()) => (
                MessageStatus::Sent { at: now },
                Outcome::Success,
                format!("contact {contact} in feedback batch {id}"),
            ),
            Err(failure) => (
                MessageStatus::Failed { failure, at: now },
                Outcome::Failure,
                format!(
                    "contact {contact} in feedback batch {id}: {}",
                    failure.as_str()
                ),
            ),
        };
        lock.run(|| -> Result<(), FeedbackError> {
            let mut batch = batches.get(&id)?.ok_or(FeedbackError::NotFound)?;
            let was_sent = matches!(status, MessageStatus::Sent { .. });
            // Emptied by an erasure while the relay was talked to: a failure stays withheld (never
            // retried) and the erased contact gets no last-requested time.
            let forgotten = batch.messages[index].is_forgotten();
            if was_sent || !forgotten {
                batch.messages[index].status = status;
            }
            let mut writes = WriteSet::default();
            writes.put(&batches, &id, &batch)?;
            if was_sent && !forgotten {
                writes.put(&last_requested, &contact, &now)?;
            }
            context.store.commit(writes)?;
            Ok(())
        })?;
        context.audit(
            AuditEvent::new(
                Some(tenant),
                actor.clone(),
                AuditAction::FeedbackSent,
                target,
            )
            .client(client.map(str::to_owned))
            .outcome(outcome),
        )?;
    }
    Ok(batches.get(&id)?.ok_or(FeedbackError::NotFound)?.progress())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_known_placeholders_and_refuse_unknown_ones() {
        let values = Personalisation {
            first_name: "Jo".to_owned(),
            name: "Jo Kim".to_owned(),
            account: "Globex".to_owned(),
            interaction_subject: "Refund {name}".to_owned(),
            review_link: "https://g.page/r/x".to_owned(),
            company: "Acme".to_owned(),
        };
        assert_eq!(
            fill(
                "Hi {first_name} of {account}: {interaction_subject} {review_link} {x} {",
                &values
            ),
            "Hi Jo of Globex: Refund {name} https://g.page/r/x {x} {"
        );
        assert_eq!(template_problem("Hi {first_name}, {company}"), None);
        assert!(template_problem("Hi {firstname}")
            .unwrap()
            .contains("{firstname}"));
        assert!(template_problem("Hi {first_name").unwrap().contains('{'));
        assert!(FeedbackSettings::default().subject.contains("{first_name}"));
        assert_eq!(template_problem(&FeedbackSettings::default().body), None);
    }

    #[test]
    fn withheld_messages_stored_before_reasons_read_as_restricted_or_asked() {
        let old: MessageStatus =
            serde_json::from_str(r#"{"state":"withheld","at":"2025-01-02T03:04:05Z"}"#).unwrap();
        assert!(matches!(
            old,
            MessageStatus::Withheld {
                reason: WithheldReason::RestrictedOrAskedSince,
                ..
            }
        ));
        let gone = MessageStatus::Withheld {
            at: Utc::now(),
            reason: WithheldReason::ContactGone,
        };
        let json = serde_json::to_string(&gone).unwrap();
        assert!(json.contains("contact_gone"), "{json}");
        assert_eq!(serde_json::from_str::<MessageStatus>(&json).unwrap(), gone);
    }

    #[test]
    fn forgetting_a_message_empties_it_and_never_unsends_it() {
        let mut pending = BatchMessage {
            contact: RecordId::new(),
            to: "jo@example.org".to_owned(),
            subject: "Thanks Jo".to_owned(),
            body: "Dear Jo Kim".to_owned(),
            status: MessageStatus::Pending,
        };
        let mut sent = pending.clone();
        let at = Utc::now();
        sent.status = MessageStatus::Sent { at };
        pending.forget(at);
        sent.forget(at);
        for message in [&pending, &sent] {
            assert!(message.is_forgotten());
            assert!(message.to.is_empty() && message.subject.is_empty() && message.body.is_empty());
        }
        assert_eq!(
            pending.status,
            MessageStatus::Withheld {
                at,
                reason: WithheldReason::ContactGone
            }
        );
        assert_eq!(sent.status, MessageStatus::Sent { at });
    }

    #[test]
    fn resolved_statuses_are_matched_without_case() {
        for status in ["resolved", "Closed", " SOLVED "] {
            assert!(is_resolved(Some(&status.to_owned())), "{status}");
        }
        assert!(!is_resolved(Some(&"open".to_owned())));
        assert!(!is_resolved(None));
    }
}
