//! Customer-success aggregates, maintained incrementally: what the dashboard draws is read from a
//! bounded number of small sealed records (one bucket per day, one directory entry per account), never by
//! scanning a tenant's interactions at page load.
//!
//! Each interaction and each review signal has one stored [`Contribution`]: what it adds to its
//! day's bucket (channel, the account's owner, sentiment, topics, QA scores by agent, team and AI
//! agent, a review's rating). Every change goes through [`refresh`], which, under the tenant's
//! writer lock, computes the record's contribution now, subtracts the stored one from its day's
//! bucket, adds the new one, and stores it. So updates are exact (counts and fixed-point sums,
//! no floating drift) and idempotent (refreshing twice changes nothing), and a deleted record
//! subtracts what it added, in its deletion's own commit ([`stage_forgotten`], from
//! `records::delete`). The hooks: an import commit (its written ids, in chunks
//! of [`REFRESH_CHUNK`]), an import rollback (the records it restored or removed), an API or
//! webhook write, the analysis worker's finished batch, a QA override, a health snapshot
//! ([`after_health`]: the account directory's score and band), and `rapport insights rebuild`
//! ([`rebuild`]), which recomputes everything from the tenant's data.
//!
//! - [`store`]: the five collections;
//! - [`account_sums`]: per account name, the sentiment and QA of all its interactions (the
//!   account page's section);
//! - [`criteria`]: per QA group, criterion sums by day (the breakdown of one agent, team or AI
//!   agent);
//! - [`dashboard`]: the dashboard's filters and chart data, from buckets and the directory;
//! - [`routes`]: `/t/{tenant}/dashboard` and its CSVs.
//!
//! Nothing here logs tenant content: hook failures are logged by tenant and record id.

pub mod account_sums;
pub mod criteria;
pub mod dashboard;
pub mod routes;
pub mod store;

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::analysis::AnalysisResult;
use crate::context::AppContext;
use crate::health::{Band, Snapshot};
use crate::ids::{RecordId, TenantId};
use crate::interactions::query::first_message_time;
use crate::interactions::Interaction;
use crate::qa::AgentKind;
use crate::records::refs::{RefIndex, Reference};
use crate::records::RecordKind;
use crate::signals::{Signal, StoredSignal};
use crate::store::{Scope, StoreError, WriteSet};

pub use store::{DayKey, InsightsStore};

/// Records refreshed per commit (an import's written ids are refreshed in chunks of this size).
pub const REFRESH_CHUNK: usize = 2000;

/// The QA group of every scored interaction; the per-criterion breakdown reads it.
pub const QA_ALL: &str = "all";

/// What one interaction adds to its day's bucket.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InteractionContribution {
    pub day: i32,
    pub channel: String,
    /// The account's source id as the interaction names it (lower case), to keep the owner
    /// it had when first counted while the interaction names the same account.
    pub account: String,
    /// The account owner's e-mail, empty when unknown.
    pub owner: String,
    pub sentiment: Option<SentimentPart>,
    pub topics: Vec<String>,
    pub qa: Option<QaPart>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentimentPart {
    pub label: String,
    /// P(positive) − P(negative), in thousandths.
    pub score_milli: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QaPart {
    /// The groups the interaction counts in: [`QA_ALL`], `agent:NAME`, `team:NAME`, `ai:NAME`.
    pub groups: Vec<String>,
    /// The effective overall score in tenths (0–1000), when one applies.
    pub overall_tenths: Option<i64>,
    /// Per criterion name: points above the scale's lowest, and the most there are.
    pub criteria: Vec<(String, i64, i64)>,
}

/// What one review signal adds: its rating on its platform.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewContribution {
    pub day: i32,
    pub platform: String,
    pub rating: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Contribution {
    Interaction(InteractionContribution),
    Review(ReviewContribution),
}

impl Contribution {
    fn day(&self) -> i32 {
        match self {
            Self::Interaction(part) => part.day,
            Self::Review(part) => part.day,
        }
    }
}

/// QA sums of one group in one cell.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QaSums {
    /// Interactions with an overall score.
    pub scored: i64,
    pub overall_tenths: i64,
    /// Criterion name → (times scored, points, most points); kept for the [`QA_ALL`] group only
    /// (per group in [`criteria`]).
    pub criteria: criteria::CriterionSums,
}

/// One day's counts for one channel and owner.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    pub channel: String,
    pub owner: String,
    pub volume: i64,
    /// Sentiment label → interactions.
    pub sentiment: BTreeMap<String, i64>,
    pub sentiment_milli: i64,
    pub topics: BTreeMap<String, i64>,
    pub qa: BTreeMap<String, QaSums>,
}

impl Cell {
    fn is_empty(&self) -> bool {
        self.volume == 0
            && self.sentiment.is_empty()
            && self.sentiment_milli == 0
            && self.topics.is_empty()
            && self.qa.is_empty()
    }
}

/// One day of a tenant's aggregates.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayBucket {
    pub cells: Vec<Cell>,
    /// Review platform → count of each rating, 1 to 5 stars.
    pub reviews: BTreeMap<String, [i64; 5]>,
}

fn bump<K: Ord + Clone>(map: &mut BTreeMap<K, i64>, key: &K, by: i64) {
    let entry = map.entry(key.clone()).or_insert(0);
    *entry += by;
    if *entry == 0 {
        map.remove(key);
    }
}

impl DayBucket {
    /// Adds `contribution` (`sign` 1) or takes it away (`sign` −1).
    pub fn apply(&mut self, contribution: &Contribution, sign: i64) {
        match contribution {
            Contribution::Review(review) => {
                let counts = self.reviews.entry(review.platform.clone()).or_default();
                if let Some(slot) = usize::from(review.rating)
                    .checked_sub(1)
                    .and_then(|index| counts.get_mut(index))
                {
                    *slot += sign;
                }
                if counts.iter().all(|count| *count == 0) {
                    self.reviews.remove(&review.platform);
                }
            }
            Contribution::Interaction(part) => {
                let position = self
                    .cells
                    .iter()
                    .position(|cell| cell.channel == part.channel && cell.owner == part.owner);
                let index = position.unwrap_or_else(|| {
                    self.cells.push(Cell {
                        channel: part.channel.clone(),
                        owner: part.owner.clone(),
                        ..Cell::default()
                    });
                    self.cells.len() - 1
                });
                let cell = &mut self.cells[index];
                cell.volume += sign;
                if let Some(sentiment) = &part.sentiment {
                    bump(&mut cell.sentiment, &sentiment.label, sign);
                    cell.sentiment_milli += sign * sentiment.score_milli;
                }
                for topic in &part.topics {
                    bump(&mut cell.topics, topic, sign);
                }
                if let Some(qa) = &part.qa {
                    for group in &qa.groups {
                        let sums = cell.qa.entry(group.clone()).or_default();
                        if let Some(tenths) = qa.overall_tenths {
                            sums.scored += sign;
                            sums.overall_tenths += sign * tenths;
                        }
                        // Per-criterion sums only for the whole here: per group they would
                        // multiply a bucket's size by the number of agents (see `criteria`).
                        if group == QA_ALL {
                            criteria::add_criteria(&mut sums.criteria, &qa.criteria, sign);
                        }
                        if sums.scored == 0 && sums.overall_tenths == 0 && sums.criteria.is_empty()
                        {
                            cell.qa.remove(group);
                        }
                    }
                }
                if cell.is_empty() {
                    self.cells.remove(index);
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty() && self.reviews.is_empty()
    }
}

/// One account as the dashboard knows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccountEntry {
    pub id: RecordId,
    pub name: String,
    /// Source id and domain, lower case: what interactions name the account by.
    pub keys: Vec<String>,
    pub owner: String,
    pub score: Option<f64>,
    pub band: Option<Band>,
    pub day: Option<NaiveDate>,
}

/// Every account's name, keys, owner and latest health, as the dashboard reads them (stored as
/// one entry per account).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AccountDirectory {
    pub accounts: Vec<AccountEntry>,
}

#[derive(Debug, thiserror::Error)]
pub enum InsightsError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn normalise(text: &str) -> String {
    text.trim().to_lowercase()
}

/// The team an interaction's tags name (`team:NAME`), if any.
fn team_of(tags: &[String]) -> Option<String> {
    tags.iter().find_map(|tag| {
        let (prefix, name) = tag.split_once(':')?;
        (prefix.trim().eq_ignore_ascii_case("team") && !name.trim().is_empty())
            .then(|| name.trim().to_owned())
    })
}

/// What a contribution needs of an interaction's record, taken from it once: the importer makes
/// these from the versions it has just written, so that it does not read them back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seed {
    pub id: RecordId,
    /// The day of the first message; `None` without messages.
    pub day: Option<i32>,
    pub channel: &'static str,
    /// The account as the interaction names it, lower case.
    pub account: String,
    pub team: Option<String>,
    pub ai_tool: Option<String>,
}

impl Seed {
    pub fn of(interaction: &Interaction) -> Self {
        let record = &interaction.record;
        Self {
            id: interaction.id,
            day: first_message_time(record).map(|began| DayKey::of(began.date_naive()).0),
            channel: record.channel.as_str(),
            account: record.account.as_deref().map(normalise).unwrap_or_default(),
            team: team_of(&record.tags),
            ai_tool: record
                .ai_tool
                .as_deref()
                .map(str::trim)
                .filter(|tool| !tool.is_empty())
                .map(str::to_owned),
        }
    }
}

/// The contribution of an interaction as it is now: its seed, stored analyses and QA overrides.
/// `owner` is the account's owner (empty when unknown). `None` without a message time.
pub fn interaction_contribution(
    context: &AppContext,
    tenant: TenantId,
    seed: &Seed,
    owner: &str,
) -> Result<Option<InteractionContribution>, StoreError> {
    let Some(day) = seed.day else {
        return Ok(None);
    };
    let mut part = InteractionContribution {
        day,
        channel: seed.channel.to_owned(),
        account: seed.account.clone(),
        owner: owner.to_owned(),
        ..InteractionContribution::default()
    };
    for analysis in context.analysis.reviewed(tenant, seed.id)? {
        match &analysis.result {
            AnalysisResult::Sentiment { overall, .. } => {
                let score = crate::health::sentiment_value(&analysis.result).unwrap_or(0.0);
                part.sentiment = Some(SentimentPart {
                    label: overall.label.to_lowercase(),
                    // Rounded to thousandths so sums stay exact integers.
                    score_milli: round_to_i64(score * 1000.0),
                });
            }
            AnalysisResult::Topics { labels, .. } => {
                let mut topics: Vec<String> = labels.clone();
                topics.sort();
                topics.dedup();
                part.topics = topics;
            }
            AnalysisResult::Qa(result) => {
                let overrides = crate::qa::store::QaStore::new(context.store.clone())
                    .overrides(tenant, seed.id)?;
                part.qa = Some(qa_part(seed, result, &overrides));
            }
            _ => {}
        }
    }
    Ok(Some(part))
}

/// The QA groups an interaction counts in, with its effective overall score and points.
fn qa_part(seed: &Seed, result: &crate::qa::QaResult, overrides: &[crate::qa::Override]) -> QaPart {
    let overall = crate::qa::effective_overall(result, overrides);
    let points = crate::qa::effective_points(result, overrides);
    let mut groups = vec![QA_ALL.to_owned()];
    let agent = result
        .agent
        .as_deref()
        .map(str::trim)
        .filter(|name| !name.is_empty());
    if let (AgentKind::Human | AgentKind::Mixed, Some(agent)) = (result.agent_kind, agent) {
        groups.push(format!("agent:{agent}"));
    }
    if matches!(result.agent_kind, AgentKind::Ai | AgentKind::Mixed) {
        let ai_author = agent.filter(|_| result.agent_kind == AgentKind::Ai);
        if let Some(name) = seed.ai_tool.as_deref().or(ai_author) {
            groups.push(format!("ai:{name}"));
        }
    }
    if let Some(team) = &seed.team {
        groups.push(format!("team:{team}"));
    }
    QaPart {
        groups,
        overall_tenths: overall
            .score
            .map(|score| round_to_i64(f64::from(score) * 10.0)),
        criteria: result
            .criteria
            .iter()
            .zip(points)
            .filter_map(|(criterion, points)| {
                let points = points?;
                Some((
                    criterion.name.clone(),
                    i64::from(points.saturating_sub(criterion.scale.min())),
                    i64::from(criterion.scale.max() - criterion.scale.min()),
                ))
            })
            .collect(),
    }
}

#[allow(clippy::cast_possible_truncation)] // Scores are small: ±1000 or 0–1000.
fn round_to_i64(value: f64) -> i64 {
    value.round() as i64
}

/// The contribution of a signal: reviews count, other kinds add nothing.
pub fn signal_contribution(signal: &StoredSignal) -> Option<ReviewContribution> {
    let Signal::Review {
        platform, rating, ..
    } = &signal.record.signal
    else {
        return None;
    };
    Some(ReviewContribution {
        day: DayKey::of(signal.record.occurred_at.date_naive()).0,
        platform: normalise(platform),
        rating: *rating,
    })
}

/// Brings the stored contributions of `ids` (interactions or signals, per `kind`) and their day
/// buckets up to date with the records as they are now, in one commit per [`REFRESH_CHUNK`] ids
/// under the tenant's writer lock. A record that is gone takes its contribution away. Exact and
/// idempotent.
pub fn refresh(
    context: &AppContext,
    tenant: TenantId,
    kind: RecordKind,
    ids: &[RecordId],
) -> Result<(), InsightsError> {
    match kind {
        RecordKind::Interaction | RecordKind::Signal => {
            for chunk in ids.chunks(REFRESH_CHUNK) {
                context
                    .store
                    .lock_scope(Scope::Tenant(tenant))
                    .run(|| refresh_chunk(context, tenant, kind, chunk, None))?;
            }
        }
        RecordKind::Account => refresh_accounts(context, tenant, ids)?,
        RecordKind::Contact => {}
    }
    Ok(())
}

/// [`refresh`] of interactions whose current versions the caller has just written and seeded
/// (the importer, after each batch), so that they are not read back.
pub fn refresh_seeded(
    context: &AppContext,
    tenant: TenantId,
    seeds: &[Seed],
) -> Result<(), InsightsError> {
    for chunk in seeds.chunks(REFRESH_CHUNK) {
        let ids: Vec<RecordId> = chunk.iter().map(|seed| seed.id).collect();
        context
            .store
            .lock_scope(Scope::Tenant(tenant))
            .run(|| refresh_chunk(context, tenant, RecordKind::Interaction, &ids, Some(chunk)))?;
    }
    Ok(())
}

fn refresh_chunk(
    context: &AppContext,
    tenant: TenantId,
    kind: RecordKind,
    ids: &[RecordId],
    seeds: Option<&[Seed]>,
) -> Result<(), InsightsError> {
    let store = InsightsStore::new(context.store.clone());
    let contributions = store.contributions(tenant)?;
    let mut owners: HashMap<String, String> = HashMap::new();
    let mut writes = WriteSet::default();
    let mut changes: Vec<(Contribution, i64)> = Vec::new();
    for (index, id) in ids.iter().enumerate() {
        let old = contributions.get(id)?;
        let new = match kind {
            RecordKind::Interaction => {
                let seed = match seeds.and_then(|seeds| seeds.get(index)) {
                    Some(seed) => Some(seed.clone()),
                    None => context
                        .interactions
                        .get(tenant, *id)?
                        .map(|interaction| Seed::of(&interaction)),
                };
                match seed {
                    Some(seed) => {
                        // The owner when the interaction was first counted stays while it
                        // names the same account ("the owner at the time").
                        let owner = match &old {
                            Some(Contribution::Interaction(old)) if old.account == seed.account => {
                                old.owner.clone()
                            }
                            _ => owner_for(context, tenant, &store, &mut owners, &seed.account)?,
                        };
                        interaction_contribution(context, tenant, &seed, &owner)?
                            .map(Contribution::Interaction)
                    }
                    None => None,
                }
            }
            _ => context
                .signals
                .get(tenant, *id)?
                .as_ref()
                .and_then(signal_contribution)
                .map(Contribution::Review),
        };
        if old == new {
            continue;
        }
        match &new {
            Some(new) => writes.put(&contributions, id, new)?,
            None => writes.remove(&contributions, id),
        }
        changes.extend(old.map(|old| (old, -1)));
        changes.extend(new.map(|new| (new, 1)));
    }
    stage_buckets(&store, tenant, &mut writes, &changes)?;
    store.commit(tenant, writes)?;
    Ok(())
}

/// The owner of the account that interactions name by `key` (remembered in `memo` for the rest
/// of the chunk): the newest account filed under that key in the reference index, read from its
/// directory entry. Empty when no account or no owner is known.
fn owner_for(
    context: &AppContext,
    tenant: TenantId,
    store: &InsightsStore,
    memo: &mut HashMap<String, String>,
    key: &str,
) -> Result<String, StoreError> {
    if let Some(owner) = memo.get(key) {
        return Ok(owner.clone());
    }
    let account = match Reference::account(key) {
        Some(reference) => RefIndex::new(context.store.clone())
            .referring(tenant, RecordKind::Account, &reference, 1)?
            .first()
            .copied(),
        None => None,
    };
    let owner = match account {
        Some(id) => store
            .entry(tenant, id)?
            .map(|entry| entry.owner)
            .unwrap_or_default(),
        None => String::new(),
    };
    memo.insert(key.to_owned(), owner.clone());
    Ok(owner)
}

/// Applies `changes` to their days' buckets, reading each bucket once, to the QA groups'
/// criterion days and to the accounts' sums.
fn stage_buckets(
    store: &InsightsStore,
    tenant: TenantId,
    writes: &mut WriteSet,
    changes: &[(Contribution, i64)],
) -> Result<(), StoreError> {
    if changes.is_empty() {
        return Ok(());
    }
    stage_touched(
        &store.days(tenant)?,
        writes,
        changes
            .iter()
            .map(|(contribution, sign)| (DayKey(contribution.day()), (contribution, *sign))),
        |bucket: &mut DayBucket, (contribution, sign)| bucket.apply(contribution, sign),
        DayBucket::is_empty,
    )?;
    criteria::stage(store, tenant, writes, changes)?;
    account_sums::stage(store, tenant, writes, changes)
}

/// The one way an aggregate collection is updated: every record that `updates` touch is read
/// once, `apply` changes it for each of its updates, and it is staged into `writes` — removed
/// when `is_empty` says nothing is left, written otherwise.
pub(crate) fn stage_touched<K, V, U>(
    collection: &crate::store::Collection<K, V>,
    writes: &mut WriteSet,
    updates: impl IntoIterator<Item = (K, U)>,
    mut apply: impl FnMut(&mut V, U),
    is_empty: impl Fn(&V) -> bool,
) -> Result<(), StoreError>
where
    K: crate::store::RecordKey + Ord,
    V: Default + Serialize + serde::de::DeserializeOwned,
{
    let mut touched: BTreeMap<K, V> = BTreeMap::new();
    for (key, update) in updates {
        let value = match touched.entry(key) {
            std::collections::btree_map::Entry::Occupied(slot) => slot.into_mut(),
            std::collections::btree_map::Entry::Vacant(slot) => {
                let stored = collection.get(slot.key())?.unwrap_or_default();
                slot.insert(stored)
            }
        };
        apply(value, update);
    }
    for (key, value) in touched {
        if is_empty(&value) {
            writes.remove(collection, &key);
        } else {
            writes.put(collection, &key, &value)?;
        }
    }
    Ok(())
}

/// Brings the directory's entries of `ids` (accounts) up to date: name, keys and owner; a gone
/// account leaves it. Health scores stay as [`after_health`] stored them. A thousand entries per
/// commit.
fn refresh_accounts(
    context: &AppContext,
    tenant: TenantId,
    ids: &[RecordId],
) -> Result<(), InsightsError> {
    let store = InsightsStore::new(context.store.clone());
    for chunk in ids.chunks(1000) {
        context.store.lock_scope(Scope::Tenant(tenant)).run(|| {
            let mut writes = WriteSet::default();
            for id in chunk {
                match context.accounts.get(tenant, *id)? {
                    Some(account) => {
                        let entry = entry_of(store.entry(tenant, *id)?, &account);
                        store.stage_entry(&mut writes, tenant, &entry)?;
                    }
                    None => store.stage_entry_removal(&mut writes, tenant, *id)?,
                }
            }
            store.commit(tenant, writes)?;
            Ok::<_, InsightsError>(())
        })?;
    }
    Ok(())
}

/// Stores an account's latest health score and band in its directory entry (called where a
/// snapshot is stored). An older day's snapshot never replaces a newer one. Failures are logged
/// by id.
pub fn after_health(context: &AppContext, tenant: TenantId, snapshot: &Snapshot) {
    if let Err(error) = store_health(context, tenant, snapshot) {
        tracing::warn!(%tenant, account = %snapshot.account, %error, "dashboard health not updated");
    }
}

fn store_health(
    context: &AppContext,
    tenant: TenantId,
    snapshot: &Snapshot,
) -> Result<(), InsightsError> {
    let store = InsightsStore::new(context.store.clone());
    context.store.lock_scope(Scope::Tenant(tenant)).run(|| {
        let mut entry = if let Some(entry) = store.entry(tenant, snapshot.account)? {
            entry
        } else {
            let Some(account) = context.accounts.get(tenant, snapshot.account)? else {
                return Ok(());
            };
            entry_of(None, &account)
        };
        if entry.day.is_some_and(|day| day > snapshot.day)
            || (entry.day == Some(snapshot.day)
                && entry.score == snapshot.score
                && entry.band == snapshot.band)
        {
            return Ok(());
        }
        entry.score = snapshot.score;
        entry.band = snapshot.band;
        entry.day = Some(snapshot.day);
        let mut writes = WriteSet::default();
        store.stage_entry(&mut writes, tenant, &entry)?;
        store.commit(tenant, writes)?;
        Ok(())
    })
}

/// The account's entry with its name, keys and owner as they are now, keeping the health of
/// `existing`.
fn entry_of(existing: Option<AccountEntry>, account: &crate::accounts::Account) -> AccountEntry {
    let mut keys = vec![normalise(&account.record.source_id)];
    keys.extend(account.record.domain.as_deref().map(normalise));
    let owner = account
        .record
        .owner
        .as_deref()
        .map(normalise)
        .unwrap_or_default();
    let (score, band, day) = existing.map_or((None, None, None), |entry| {
        (entry.score, entry.band, entry.day)
    });
    AccountEntry {
        id: account.id,
        name: account.record.name.clone(),
        keys,
        owner,
        score,
        band,
        day,
    }
}

/// Takes away what deleted interactions and signals contributed, after their removal (for
/// records removed other than through `records::delete`, which stages the same change into its
/// own commit: [`stage_forgotten`]). Ids that still exist are brought up to date instead.
pub fn forget(
    context: &AppContext,
    tenant: TenantId,
    interactions: &[RecordId],
    signals: &[RecordId],
) -> Result<(), InsightsError> {
    refresh(context, tenant, RecordKind::Interaction, interactions)?;
    refresh(context, tenant, RecordKind::Signal, signals)
}

/// Stages into `writes` what deleting `ids` (records of `kind` that the same commit deletes)
/// takes out of the aggregates: the stored contributions of interactions and signals, with
/// their days' buckets, QA criterion days and account sums, or the directory entries of
/// accounts. `records::delete` calls it under the tenant's writer lock, so that a deletion and
/// its correction of the dashboards land in one commit (a crash cannot leave one without the
/// other), then [`InsightsStore::committed_elsewhere`]. What [`refresh`] does for records that
/// are gone, without reading them.
pub fn stage_forgotten(
    context: &AppContext,
    tenant: TenantId,
    kind: RecordKind,
    ids: &[RecordId],
    writes: &mut WriteSet,
) -> Result<(), StoreError> {
    let store = InsightsStore::new(context.store.clone());
    match kind {
        RecordKind::Interaction | RecordKind::Signal => {
            let contributions = store.contributions(tenant)?;
            let mut changes: Vec<(Contribution, i64)> = Vec::new();
            for id in ids {
                if let Some(old) = contributions.get(id)? {
                    writes.remove(&contributions, id);
                    changes.push((old, -1));
                }
            }
            stage_buckets(&store, tenant, writes, &changes)
        }
        RecordKind::Account => {
            for id in ids {
                store.stage_entry_removal(writes, tenant, *id)?;
            }
            Ok(())
        }
        RecordKind::Contact => Ok(()),
    }
}

/// Runs [`refresh`] for a hook: a failure is logged by tenant and count, never an error (the
/// write has committed; `rapport insights rebuild` repairs).
pub fn refresh_logged(context: &AppContext, tenant: TenantId, kind: RecordKind, ids: &[RecordId]) {
    if let Err(error) = refresh(context, tenant, kind, ids) {
        tracing::warn!(%tenant, kind = kind.as_str(), records = ids.len(), %error, "dashboard aggregates not updated");
    }
}

/// After the analysis worker stored a batch: the batch's interactions.
pub fn after_analysis(context: &AppContext, tenant: TenantId, interactions: &[RecordId]) {
    refresh_logged(context, tenant, RecordKind::Interaction, interactions);
}

/// Progress of [`rebuild`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RebuildProgress {
    pub accounts: u64,
    pub interactions: u64,
    pub signals: u64,
}

/// Rebuilds the tenant's aggregates from its data: clears them, then refreshes every account,
/// every account's latest health snapshot, every interaction and every signal. The upgrade path
/// for tenants with data from before the aggregates, and a recovery tool. Owners are today's.
pub fn rebuild(
    context: &AppContext,
    tenant: TenantId,
    progress: &mut dyn FnMut(RebuildProgress),
) -> Result<RebuildProgress, InsightsError> {
    let store = InsightsStore::new(context.store.clone());
    store.clear(tenant)?;
    let mut done = RebuildProgress::default();
    let mut ids = Vec::new();
    context.accounts.for_each(tenant, |account| {
        ids.push(account.id);
        Ok(())
    })?;
    refresh_accounts(context, tenant, &ids)?;
    let health = crate::health::HealthStore::new(context.store.clone());
    for id in &ids {
        if let Some(snapshot) = health.history(tenant, *id, 1)?.pop() {
            after_health(context, tenant, &snapshot);
        }
    }
    done.accounts = ids.len() as u64;
    progress(done);
    for kind in [RecordKind::Interaction, RecordKind::Signal] {
        // Keys only: the ids of every record, oldest first, without opening one.
        let ids: Vec<RecordId> = match kind {
            RecordKind::Interaction => context.interactions.ids(tenant)?,
            _ => context.signals.ids(tenant)?,
        };
        for chunk in ids.chunks(REFRESH_CHUNK) {
            refresh(context, tenant, kind, chunk)?;
            if kind == RecordKind::Interaction {
                done.interactions += chunk.len() as u64;
            } else {
                done.signals += chunk.len() as u64;
            }
            progress(done);
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(owner: &str, label: &str) -> Contribution {
        Contribution::Interaction(InteractionContribution {
            day: 739_000,
            channel: "chat".to_owned(),
            account: "a-1".to_owned(),
            owner: owner.to_owned(),
            sentiment: Some(SentimentPart {
                label: label.to_owned(),
                score_milli: -250,
            }),
            topics: vec!["billing".to_owned()],
            qa: Some(QaPart {
                groups: vec![QA_ALL.to_owned(), "agent:Sam".to_owned()],
                overall_tenths: Some(875),
                criteria: vec![("Greeting".to_owned(), 1, 1)],
            }),
        })
    }

    #[test]
    fn a_contribution_taken_away_leaves_exactly_what_was_there() {
        let review = Contribution::Review(ReviewContribution {
            day: 739_000,
            platform: "google".to_owned(),
            rating: 2,
        });
        let mut bucket = DayBucket::default();
        bucket.apply(&chat("csm@example.com", "negative"), 1);
        let one = bucket.clone();
        bucket.apply(&chat("csm@example.com", "positive"), 1);
        bucket.apply(&chat("", "negative"), 1);
        bucket.apply(&review, 1);
        let cell = &bucket.cells[0];
        assert_eq!(cell.volume, 2);
        assert_eq!(cell.sentiment_milli, -500);
        assert_eq!(cell.topics["billing"], 2);
        assert_eq!(cell.qa[QA_ALL].criteria["Greeting"], (2, 2, 2));
        assert!(
            cell.qa["agent:Sam"].criteria.is_empty(),
            "criteria kept for the whole only"
        );
        assert_eq!(cell.qa["agent:Sam"].overall_tenths, 1750);
        assert_eq!(bucket.reviews["google"], [0, 1, 0, 0, 0]);
        bucket.apply(&review, -1);
        bucket.apply(&chat("", "negative"), -1);
        bucket.apply(&chat("csm@example.com", "positive"), -1);
        assert_eq!(bucket, one);
        bucket.apply(&chat("csm@example.com", "negative"), -1);
        assert!(bucket.is_empty());
    }

    #[test]
    fn teams_come_from_team_tags() {
        assert_eq!(
            team_of(&["vip".to_owned(), "Team: Blue ".to_owned()]).as_deref(),
            Some("Blue")
        );
        assert_eq!(team_of(&["team:".to_owned()]), None);
    }
}
