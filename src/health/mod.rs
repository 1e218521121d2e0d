//! Account health: a score of 0–100 per account, the weighted mean of measures the tenant admin
//! configures ([`HealthConfig`]), in red/amber/green bands, with its explanation and a history of
//! one sealed [`Snapshot`] per account per day; and the churn-risk rules ([`rules`]) that raise
//! alerts in the owning CSM's inbox.
//!
//! - [`score`]: the pure part — the measures' normalisations, the score, bands, explanation;
//! - [`rules`]: the churn-risk rules and their pure evaluation;
//! - [`store`]: the snapshots and the configuration;
//! - [`routes`]: the settings page `/t/{tenant}/settings/health`; the account page shows health.
//!
//! [`recompute`] gathers one account's [`Facts`] with bounded reads (its newest interactions and
//! signals through the shared pagination engine, at most [`crate::records::MAX_SCANNED_PER_PAGE`]
//! records of each kind examined, and the analyses of the last 90 days' interactions), stores the
//! day's snapshot and evaluates the rules. It runs after an import commits, after a record is
//! written through the API, after the analysis worker stores a batch, and from
//! `rapport health recompute`. Pages only read snapshots. Nothing here logs tenant content.

pub mod routes;
pub mod rules;
pub mod score;
pub mod store;

use std::collections::{HashMap, HashSet};
use std::sync::{LazyLock, Mutex, PoisonError};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::accounts::query::records_of;
use crate::accounts::Account;
use crate::alerts::{AlertKind, NewAlert, Raised};
use crate::analysis::AnalysisResult;
use crate::audit::{Actor, AuditAction, AuditError, AuditEvent};
use crate::context::AppContext;
use crate::ids::{RecordId, TenantId, UserId};
use crate::ingest::{ImportRun, ImportState};
use crate::interactions::query::first_message_time;
use crate::records::{Order, RecordKind};
use crate::signals::{Signal, SurveyKind};
use crate::store::StoreError;
use crate::users::Role;

pub use rules::{ChurnRule, ChurnRules};
pub use score::{Band, Explanation, Facts, Measure, MeasureValue};
pub use store::HealthStore;

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Alert(#[from] crate::alerts::AlertError),
    #[error(transparent)]
    User(#[from] crate::users::UserError),
    #[error(transparent)]
    Tenant(#[from] crate::tenants::TenantError),
    /// The settings are refused; the message says why, without tenant content.
    #[error("{0}")]
    Refused(String),
}

/// One measure's setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeasureSetting {
    pub measure: Measure,
    pub enabled: bool,
    /// 0 to [`MAX_WEIGHT`].
    pub weight: u32,
}

/// The highest weight of one measure.
pub const MAX_WEIGHT: u32 = 100;

/// The tenant's health configuration. Without a stored one the defaults apply: every measure on
/// with [`Measure::default_weight`], red below 40, amber below 70, every rule on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthConfig {
    pub measures: Vec<MeasureSetting>,
    /// A score below this is red.
    pub red_below: u8,
    /// A score below this (and not red) is amber; otherwise green.
    pub amber_below: u8,
    pub rules: ChurnRules,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            measures: Measure::ALL
                .into_iter()
                .map(|measure| MeasureSetting {
                    measure,
                    enabled: true,
                    weight: measure.default_weight(),
                })
                .collect(),
            red_below: 40,
            amber_below: 70,
            rules: ChurnRules::default(),
        }
    }
}

impl HealthConfig {
    /// The setting of `measure` (a measure missing from a stored configuration is off).
    pub fn setting(&self, measure: Measure) -> MeasureSetting {
        self.measures
            .iter()
            .copied()
            .find(|setting| setting.measure == measure)
            .unwrap_or(MeasureSetting {
                measure,
                enabled: false,
                weight: measure.default_weight(),
            })
    }

    /// The measures' values with the weights that count (0 for a measure that is off).
    pub fn weigh(&self, values: &[(Measure, Option<f64>)]) -> Vec<MeasureValue> {
        values
            .iter()
            .map(|(measure, value)| {
                let setting = self.setting(*measure);
                MeasureValue {
                    measure: *measure,
                    value: *value,
                    weight: if setting.enabled { setting.weight } else { 0 },
                }
            })
            .collect()
    }

    /// Why the configuration cannot be saved, if it cannot.
    pub fn problem(&self) -> Option<String> {
        if self
            .measures
            .iter()
            .any(|setting| setting.weight > MAX_WEIGHT)
        {
            return Some(format!("Weights: each is 0 to {MAX_WEIGHT}."));
        }
        if !self
            .measures
            .iter()
            .any(|setting| setting.enabled && setting.weight > 0)
        {
            return Some("Switch on at least one measure with a weight above 0.".to_owned());
        }
        if !(1..=100).contains(&self.red_below)
            || !(1..=100).contains(&self.amber_below)
            || self.red_below >= self.amber_below
        {
            return Some(
                "Bands: red must start below amber, both between 1 and 100 (for example red below 40, amber below 70).".to_owned(),
            );
        }
        let rules = &self.rules;
        let parameters = [
            rules.drop_points,
            rules.drop_days,
            rules.negative_days,
            rules.renewal_days,
        ];
        if parameters
            .iter()
            .any(|value| !(1..=rules::MAX_PARAMETER).contains(value))
        {
            return Some(format!(
                "Rules: points and days are 1 to {}.",
                rules::MAX_PARAMETER
            ));
        }
        if !(1..=100).contains(&rules.usage_drop_percent) {
            return Some("Rules: the usage drop is 1 to 100 %.".to_owned());
        }
        None
    }
}

/// An account's health on one day: the latest recompute of that day.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub account: RecordId,
    pub day: NaiveDate,
    pub computed: DateTime<Utc>,
    /// `None` when no measure had data.
    pub score: Option<f64>,
    pub band: Option<Band>,
    pub values: Vec<MeasureValue>,
    pub explanation: Explanation,
    pub facts: Facts,
}

/// Interactions and signals of the account read for one recompute, at most (newest first).
pub const MAX_RECORDS_READ: usize = 2000;
/// Accounts one import or analysis batch recomputes at most; `rapport health recompute` does
/// the rest.
pub const MAX_ACCOUNTS_PER_HOOK: usize = 200;

fn within(time: DateTime<Utc>, now: DateTime<Utc>, days: u32) -> bool {
    let age = now - time;
    age >= chrono::Duration::zero() - chrono::Duration::days(1)
        && age < chrono::Duration::days(i64::from(days))
}

/// Whether an interaction's status or tags say it was escalated.
pub fn is_escalated(status: Option<&str>, tags: &[String]) -> bool {
    let says = |text: &str| text.to_ascii_lowercase().contains("escalat");
    status.is_some_and(says) || tags.iter().any(|tag| says(tag))
}

/// Whether a bug record's status says it is closed (no status: open).
fn bug_closed(status: Option<&str>) -> bool {
    status.is_some_and(|status| {
        let status = status.trim().to_ascii_lowercase();
        [
            "closed",
            "resolved",
            "fixed",
            "done",
            "released",
            "wontfix",
            "won't fix",
        ]
        .iter()
        .any(|closed| status == *closed)
    })
}

/// The sentiment value of an analysis: P(positive) − P(negative) of the customer side.
pub(crate) fn sentiment_value(result: &AnalysisResult) -> Option<f64> {
    let AnalysisResult::Sentiment { overall, .. } = result else {
        return None;
    };
    let probability = |label: &str| {
        overall
            .probabilities
            .iter()
            .find(|entry| entry.label.eq_ignore_ascii_case(label))
            .map_or(0.0, |entry| f64::from(entry.probability))
    };
    Some(probability("positive") - probability("negative"))
}

fn mean(values: &[f64]) -> Option<f64> {
    score::mean(values.iter().copied())
}

/// The account's facts at `now`: bounded reads of its newest interactions and signals.
pub fn gather(
    context: &AppContext,
    tenant: TenantId,
    account: &Account,
    config: &HealthConfig,
    now: DateTime<Utc>,
) -> Result<Facts, HealthError> {
    let negative_days = config.rules.negative_days;
    let mut facts = Facts {
        days_to_renewal: account
            .record
            .renewal_date
            .map(|date| (date - now.date_naive()).num_days()),
        ..Facts::default()
    };
    let interactions = records_of(&context.interactions, tenant, account, MAX_RECORDS_READ)?;
    let qa = crate::qa::store::QaStore::new(context.store.clone());
    let (mut sentiment_30, mut sentiment_90) = (Vec::new(), Vec::new());
    for interaction in &interactions.items {
        let Some(began) = first_message_time(&interaction.record) else {
            continue;
        };
        if within(began, now, 30) {
            facts.tickets_30 += 1;
        } else if within(began, now, 180) {
            facts.tickets_31_180 += 1;
        }
        if within(began, now, negative_days)
            && is_escalated(
                interaction.record.status.as_deref(),
                &interaction.record.tags,
            )
        {
            facts.negative_events += 1;
        }
        if !within(began, now, 90) {
            continue;
        }
        for analysis in context.analysis.reviewed(tenant, interaction.id)? {
            match &analysis.result {
                AnalysisResult::Sentiment { .. } => {
                    if let Some(value) = sentiment_value(&analysis.result) {
                        sentiment_90.push(value);
                        if within(began, now, 30) {
                            sentiment_30.push(value);
                        }
                    }
                }
                AnalysisResult::Qa(result) => {
                    let overrides = qa.overrides(tenant, interaction.id)?;
                    if let Some(score) = crate::qa::effective_overall(result, &overrides).score {
                        facts.qa_scores.push(f64::from(score));
                    }
                }
                _ => {}
            }
        }
    }
    facts.sentiment_30 = mean(&sentiment_30);
    facts.sentiment_90 = mean(&sentiment_90);
    add_signals(context, tenant, account, negative_days, now, &mut facts)?;
    Ok(facts)
}

/// Adds the account's signals to `facts`: surveys, usage, bugs and
/// negative reviews.
fn add_signals(
    context: &AppContext,
    tenant: TenantId,
    account: &Account,
    negative_days: u32,
    now: DateTime<Utc>,
    facts: &mut Facts,
) -> Result<(), HealthError> {
    let signals = records_of(&context.signals, tenant, account, MAX_RECORDS_READ)?;
    let (mut usage_30, mut usage_90) = (Vec::new(), Vec::new());
    for signal in &signals.items {
        let occurred = signal.record.occurred_at;
        match &signal.record.signal {
            Signal::Survey { survey, score, .. } if within(occurred, now, 90) => match survey {
                SurveyKind::Nps => facts.nps.push(*score),
                SurveyKind::Csat => facts.csat.push(*score),
            },
            Signal::Usage {
                value, period_end, ..
            } => {
                let ended = period_end.and_time(chrono::NaiveTime::MIN).and_utc();
                if within(ended, now, 90) {
                    usage_90.push(*value);
                    if within(ended, now, 30) {
                        usage_30.push(*value);
                    }
                }
            }
            Signal::Bug { status, .. } => {
                facts.bugs += 1;
                if !bug_closed(status.as_deref()) {
                    facts.open_bugs += 1;
                }
            }
            Signal::Review { rating, .. }
                if *rating <= 2 && within(occurred, now, negative_days) =>
            {
                facts.negative_events += 1;
            }
            _ => {}
        }
    }
    facts.usage_30 = mean(&usage_30);
    facts.usage_90 = mean(&usage_90);
    Ok(())
}

/// The snapshot of `facts` under `config` on `today`, explained against `previous` (the latest
/// snapshot of an earlier day). Pure.
pub fn snapshot_of(
    config: &HealthConfig,
    account: RecordId,
    facts: Facts,
    previous: Option<&Snapshot>,
    now: DateTime<Utc>,
) -> Snapshot {
    let values = config.weigh(&score::measure_values(&facts));
    let score = score::score(&values);
    let explanation = score::explain(previous.map(|snapshot| snapshot.values.as_slice()), &values);
    Snapshot {
        account,
        day: now.date_naive(),
        computed: now,
        score,
        band: score.map(|score| score::band(score, config.red_below, config.amber_below)),
        values,
        explanation,
        facts,
    }
}

/// Snapshots of earlier days the rules look back on, at most.
const RULE_HISTORY_DAYS: usize = rules::MAX_PARAMETER as usize + 1;

/// Computes and stores the account's health for today (replacing today's earlier snapshot), then
/// evaluates the churn-risk rules and raises an alert for each that fires. `None` when the tenant
/// has no such account.
pub fn recompute(
    context: &AppContext,
    tenant: TenantId,
    account: RecordId,
) -> Result<Option<Snapshot>, HealthError> {
    let Some(account) = context.accounts.get(tenant, account)? else {
        return Ok(None);
    };
    let health = HealthStore::new(context.store.clone());
    let config = health.config(tenant)?;
    let now = Utc::now();
    let facts = gather(context, tenant, &account, &config, now)?;
    let mut earlier = health.history(tenant, account.id, RULE_HISTORY_DAYS + 1)?;
    earlier.retain(|snapshot| snapshot.day < now.date_naive());
    let snapshot = snapshot_of(&config, account.id, facts, earlier.last(), now);
    health.put(tenant, &snapshot)?;
    crate::accounts::briefing::refresh(context, tenant, &account);
    crate::insights::after_health(context, tenant, &snapshot);
    let fired = rules::evaluate(&config.rules, &snapshot, &earlier);
    if !fired.is_empty() {
        raise_alerts(context, tenant, &account, &snapshot, &fired)?;
    }
    Ok(Some(snapshot))
}

/// Who churn-risk alerts of the account go to: the active tenant user whose e-mail is the
/// account's owner and who works the alerts inbox; otherwise every active tenant admin.
pub fn recipients(
    context: &AppContext,
    tenant: TenantId,
    owner: Option<&str>,
) -> Result<Vec<UserId>, HealthError> {
    let users = crate::alerts::assignable_users(context, tenant)?;
    if let Some(owner) = owner.map(str::trim).filter(|owner| !owner.is_empty()) {
        if let Some(user) = users
            .iter()
            .find(|user| user.email.to_string().eq_ignore_ascii_case(owner))
        {
            return Ok(vec![user.id]);
        }
    }
    Ok(users
        .iter()
        .filter(|user| user.role == Role::TenantAdmin)
        .map(|user| user.id)
        .collect())
}

fn raise_alerts(
    context: &AppContext,
    tenant: TenantId,
    account: &Account,
    snapshot: &Snapshot,
    fired: &[ChurnRule],
) -> Result<usize, HealthError> {
    let Some(tenant_record) = context.tenants.get(tenant)? else {
        return Ok(0);
    };
    let recipients = recipients(context, tenant, account.record.owner.as_deref())?;
    let score = snapshot.score.map_or_else(
        || "no score".to_owned(),
        |score| format!("score {score:.1}"),
    );
    let mut created = 0;
    for rule in fired {
        let raised = crate::alerts::raise(
            context,
            &Actor::system(),
            tenant,
            NewAlert {
                kind: AlertKind::ChurnRisk(*rule),
                subject: account.id,
                link: format!("/t/{}/accounts/{}", tenant_record.slug, account.id),
                title: format!("{}: {} ({score})", rule.label(), account.record.name),
                recipients: recipients.clone(),
            },
        )?;
        if matches!(raised, Raised::Created(_)) {
            created += 1;
        }
    }
    Ok(created)
}

/// Recomputes each account, logging failures by account id; returns how many were recomputed.
fn recompute_each(context: &AppContext, tenant: TenantId, accounts: &[RecordId]) -> usize {
    let mut done = 0;
    for account in accounts.iter().take(MAX_ACCOUNTS_PER_HOOK) {
        match recompute(context, tenant, *account) {
            Ok(_) => done += 1,
            Err(error) => {
                tracing::warn!(account = %account, %error, "account health not recomputed");
            }
        }
    }
    if accounts.len() > MAX_ACCOUNTS_PER_HOOK {
        tracing::info!(
            touched = accounts.len(),
            recomputed = MAX_ACCOUNTS_PER_HOOK,
            "more accounts touched than one hook recomputes; run `rapport health recompute`"
        );
    }
    done
}

/// The accounts named by any of `names` (source ids or domains, compared without case), among
/// the tenant's newest accounts (a bounded read).
fn accounts_named(
    context: &AppContext,
    tenant: TenantId,
    names: &HashSet<String>,
) -> Result<Vec<RecordId>, StoreError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let matches = |text: &str| names.contains(&text.trim().to_ascii_lowercase());
    let found = context.accounts.page(
        tenant,
        Order::NewestFirst,
        None,
        MAX_ACCOUNTS_PER_HOOK,
        |account| matches(&account.source_id) || account.domain.as_deref().is_some_and(matches),
    )?;
    Ok(found.items.iter().map(|account| account.id).collect())
}

fn add_name(names: &mut HashSet<String>, name: Option<&String>) {
    if let Some(name) = name.map(|name| name.trim().to_ascii_lowercase()) {
        if !name.is_empty() {
            names.insert(name);
        }
    }
}

/// The accounts an import run touched: the accounts it imported, or those its interactions,
/// signals or contacts name (records updated since the run started, newest imported first,
/// bounded).
fn touched_by_import(
    context: &AppContext,
    tenant: TenantId,
    run: &ImportRun,
) -> Result<Vec<RecordId>, StoreError> {
    let since = run.started;
    let mut names = HashSet::new();
    match run.format.kind() {
        RecordKind::Account => {
            let page = context.accounts.page(
                tenant,
                Order::NewestFirst,
                None,
                MAX_ACCOUNTS_PER_HOOK,
                |_| true,
            )?;
            return Ok(page
                .items
                .iter()
                .filter(|account| account.updated >= since)
                .map(|account| account.id)
                .collect());
        }
        RecordKind::Interaction => {
            // Bounded like a page: the accounts of a larger import are recomputed when its
            // interactions' analysis drains (`after_analysis`).
            for entry in context
                .interactions
                .records(tenant)?
                .scan_newest_first(None)
                .take(crate::records::MAX_SCANNED_PER_PAGE)
            {
                let (_, stored) = entry?;
                if stored.first_imported < since || names.len() >= MAX_ACCOUNTS_PER_HOOK {
                    break;
                }
                add_name(&mut names, stored.record.account.as_ref());
            }
        }
        RecordKind::Signal => {
            for entry in context
                .signals
                .records(tenant)?
                .scan_newest_first(None)
                .take(crate::records::MAX_SCANNED_PER_PAGE)
            {
                let (_, stored) = entry?;
                if stored.first_imported < since || names.len() >= MAX_ACCOUNTS_PER_HOOK {
                    break;
                }
                add_name(&mut names, stored.record.account.as_ref());
            }
        }
        RecordKind::Contact => return Ok(Vec::new()),
    }
    accounts_named(context, tenant, &names)
}

/// After a committed import: recomputes the accounts it touched (the accounts imported, or
/// named by its new interactions or signals). Logged, never an error: the import has committed.
pub fn after_import(context: &AppContext, tenant: TenantId, run: &ImportRun) -> usize {
    if run.state != ImportState::Committed || run.imported + run.updated == 0 {
        return 0;
    }
    match touched_by_import(context, tenant, run) {
        Ok(accounts) => recompute_each(context, tenant, &accounts),
        Err(error) => {
            tracing::warn!(import = %run.id, %error, "accounts touched by an import not found");
            0
        }
    }
}

/// After a record was written through the API or a webhook: recomputes the account it is or
/// names. Logged, never an error.
pub fn after_write(context: &AppContext, tenant: TenantId, kind: RecordKind, id: RecordId) {
    let found = (|| -> Result<Vec<RecordId>, StoreError> {
        let mut names = HashSet::new();
        match kind {
            RecordKind::Account => return Ok(vec![id]),
            // A written interaction is queued for analysis, and `after_analysis` recomputes its
            // account once the queue drains: recomputing here too would read the account's
            // records on every API call of a busy integration.
            RecordKind::Interaction => return Ok(Vec::new()),
            RecordKind::Signal => {
                if let Some(stored) = context.signals.get(tenant, id)? {
                    add_name(&mut names, stored.record.account.as_ref());
                }
            }
            RecordKind::Contact => {}
        }
        accounts_named(context, tenant, &names)
    })();
    match found {
        Ok(accounts) => {
            recompute_each(context, tenant, &accounts);
        }
        Err(error) => tracing::warn!(record = %id, %error, "account of a written record not found"),
    }
}

/// Per tenant, the account names (source ids or domains, lower case) whose interactions were
/// analysed since its queue last drained. In memory: after a restart the accounts of a backfill cut
/// short are recomputed by their next trigger or `rapport health recompute`.
static PENDING_ANALYSED: LazyLock<Mutex<HashMap<TenantId, HashSet<String>>>> =
    LazyLock::new(Mutex::default);

/// After the analysis worker stored a batch: notes the accounts its interactions name, and once
/// the tenant's queue has drained recomputes them (at most [`MAX_ACCOUNTS_PER_HOOK`] at a time;
/// the rest wait for the next drain). A backfill of many interactions so recomputes each account
/// once at its end instead of after every batch. Logged, never an error.
pub fn after_analysis(
    context: &AppContext,
    tenant: TenantId,
    jobs: &[crate::analysis::jobs::Job],
) -> usize {
    let found = (|| -> Result<Vec<RecordId>, StoreError> {
        let mut names = HashSet::new();
        for job in jobs {
            if let Some(stored) = context.interactions.get(tenant, job.interaction)? {
                add_name(&mut names, stored.record.account.as_ref());
            }
        }
        let drained = context.analysis.counts(tenant)?.queued == 0;
        let due: HashSet<String> = {
            let mut pending = PENDING_ANALYSED
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let waiting = pending.entry(tenant).or_default();
            waiting.extend(names);
            if !drained {
                return Ok(Vec::new());
            }
            let due: Vec<String> = waiting
                .iter()
                .take(MAX_ACCOUNTS_PER_HOOK)
                .cloned()
                .collect();
            for name in &due {
                waiting.remove(name);
            }
            due.into_iter().collect()
        };
        accounts_named(context, tenant, &due)
    })();
    match found {
        Ok(accounts) => recompute_each(context, tenant, &accounts),
        Err(error) => {
            tracing::warn!(%error, "accounts of an analysis batch not found");
            0
        }
    }
}

/// Validates and saves the tenant's health configuration; audited as `health.config_changed`
/// with the settings (numbers only).
pub fn save_config(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    tenant: TenantId,
    config: &HealthConfig,
) -> Result<(), HealthError> {
    if let Some(problem) = config.problem() {
        return Err(HealthError::Refused(problem));
    }
    HealthStore::new(context.store.clone()).save_config(tenant, config)?;
    let measures: Vec<String> = config
        .measures
        .iter()
        .map(|setting| {
            format!(
                "{}={}",
                setting.measure.as_str(),
                if setting.enabled {
                    setting.weight.to_string()
                } else {
                    "off".to_owned()
                }
            )
        })
        .collect();
    let rules: Vec<&str> = ChurnRule::ALL
        .into_iter()
        .filter(|rule| rules_enabled(&config.rules, *rule))
        .map(ChurnRule::as_str)
        .collect();
    context.audit(
        AuditEvent::new(
            Some(tenant),
            actor.clone(),
            AuditAction::HealthConfigChanged,
            format!(
                "{}; red < {}, amber < {}; rules on: {}",
                measures.join(", "),
                config.red_below,
                config.amber_below,
                if rules.is_empty() {
                    "none".to_owned()
                } else {
                    rules.join(", ")
                }
            ),
        )
        .client(client),
    )?;
    Ok(())
}

/// Whether `rule` is on in `rules`.
pub fn rules_enabled(rules: &ChurnRules, rule: ChurnRule) -> bool {
    match rule {
        ChurnRule::ScoreDrop => rules.score_drop,
        ChurnRule::BandToRed => rules.band_to_red,
        ChurnRule::NegativeEvent => rules.negative_event,
        ChurnRule::RenewalWhileRed => rules.renewal_while_red,
        ChurnRule::UsageDrop => rules.usage_drop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escalation_and_closed_bugs_are_read_from_status_and_tags() {
        assert!(is_escalated(Some("Escalated"), &[]));
        assert!(is_escalated(
            None,
            &["billing".to_owned(), "ESCALATION".to_owned()]
        ));
        assert!(!is_escalated(Some("open"), &["billing".to_owned()]));
        assert!(bug_closed(Some(" Fixed ")));
        assert!(!bug_closed(Some("in progress")));
        assert!(!bug_closed(None));
    }

    #[test]
    fn a_snapshot_from_known_facts_has_the_hand_computed_score() {
        // Sentiment 50·(1+0.5)+50·(0.5−0.3) = 85; tickets 3 vs baseline 2: 75; surveys NPS 8 and
        // CSAT 3: (80+50)/2 = 65; renewal in 45 days: 50; the rest have no data.
        // (20·85 + 10·75 + 20·65 + 10·50) / 60 = 4250 / 60 = 70.83 → 70.8, green.
        let facts = Facts {
            sentiment_30: Some(0.5),
            sentiment_90: Some(0.3),
            tickets_30: 3,
            tickets_31_180: 10,
            nps: vec![8],
            csat: vec![3],
            days_to_renewal: Some(45),
            ..Facts::default()
        };
        let config = HealthConfig::default();
        let snapshot = snapshot_of(&config, RecordId::new(), facts, None, Utc::now());
        assert_eq!(snapshot.score, Some(70.8));
        assert_eq!(snapshot.band, Some(Band::Green));
        assert_eq!(
            snapshot.explanation.missing,
            vec![Measure::Qa, Measure::Usage, Measure::OpenBugs]
        );
        assert_eq!(snapshot.explanation.weakest, Some((Measure::Renewal, 50.0)));

        // Switching the renewal measure off renormalises the rest: 3750 / 50 = 75.
        let mut off = config.clone();
        off.measures
            .iter_mut()
            .filter(|setting| setting.measure == Measure::Renewal)
            .for_each(|setting| setting.enabled = false);
        let again = snapshot_of(
            &off,
            snapshot.account,
            snapshot.facts.clone(),
            Some(&snapshot),
            Utc::now(),
        );
        assert_eq!(again.score, Some(75.0));
        assert_eq!(again.explanation.change, Some(4.2));
    }

    #[test]
    fn the_default_configuration_is_valid_and_bad_ones_are_refused() {
        assert_eq!(HealthConfig::default().problem(), None);
        let bands = HealthConfig {
            red_below: 70,
            amber_below: 40,
            ..HealthConfig::default()
        };
        assert!(bands.problem().unwrap().contains("Bands"));
        let mut none = HealthConfig::default();
        none.measures
            .iter_mut()
            .for_each(|setting| setting.enabled = false);
        assert!(none.problem().is_some());
        let mut rules = HealthConfig::default();
        rules.rules.drop_days = 0;
        assert!(rules.problem().unwrap().contains("Rules"));
    }
}
