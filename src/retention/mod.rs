//! Retention: per tenant and per data category, how long data is kept, and the sweep that
//! deletes what has outlived its period unless a legal hold ([`holds`]) keeps it.
//!
//! A record's age is measured from the time it describes, not from when Rapport learnt of it:
//! an interaction from its latest message's `sent_at` (its first import when it has no message),
//! a signal from its `occurred_at`, an analysis (derived data) from its `created` time. A record
//! is expired when that time is more than the period before the sweep's start: with 30 days, a
//! record of 30 days and one minute ago goes, one of 29 days and 23 hours stays.
//!
//! The sweep walks a category's records in key order and deletes the expired, unheld ones through
//! [`crate::records::delete::delete`], [`DELETE_BATCH`] per commit, releasing the tenant's
//! writer lock between batches so imports and API writes go on meanwhile. The preview is the same
//! walk with the deletion left out, so it counts exactly what a run at that moment deletes.
//!
//! Policies are sealed per tenant (`retention_policies`), and each run's report too
//! (`retention_runs`). Policy changes are audited as `retention.policy_changed` (the periods only),
//! runs as `retention.run` (the counts).

pub mod audit_log;
pub mod cli;
pub mod holds;
pub mod routes;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::audit::{Actor, AuditAction, AuditError, AuditEvent, Outcome};
use crate::context::AppContext;
use crate::ids::{RecordId, RetentionRunId, TenantId};
use crate::interactions::InteractionRecord;
use crate::records::delete::{delete, Target, DELETE_BATCH};
use crate::records::Stored;
use crate::signals::SignalRecord;
use crate::store::{Collection, Scope, StoreError};
use holds::{ActiveHolds, HeldFacts};

const POLICIES: &str = "retention_policies";
const POLICIES_KEY: &str = "policies";
const RUNS: &str = "retention_runs";
/// The audit log is kept at least this long (privacy promise 3).
pub const AUDIT_LOG_MIN_DAYS: u32 = 365;
/// The longest period that can be typed (100 years); longer is "for the life of the tenant".
pub const MAX_DAYS: u32 = 36_500;
/// Reports the retention page lists.
pub const REPORTS_SHOWN: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
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
    #[error("no such legal hold")]
    NotFound,
    #[error("a retention run of this tenant is already in progress")]
    AlreadyRunning,
}

/// How long a category is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Keep {
    /// For the life of the tenant.
    Forever,
    /// This many days after the record's time.
    Days(u32),
}

impl Keep {
    pub fn describe(self) -> String {
        match self {
            Self::Forever => "for the life of the tenant".to_owned(),
            Self::Days(1) => "1 day".to_owned(),
            Self::Days(days) => format!("{days} days"),
        }
    }

    /// The form's text: empty for "forever", else the number of days.
    pub fn form_value(self) -> String {
        match self {
            Self::Forever => String::new(),
            Self::Days(days) => days.to_string(),
        }
    }

    fn audit_value(self) -> String {
        match self {
            Self::Forever => "forever".to_owned(),
            Self::Days(days) => days.to_string(),
        }
    }
}

/// The data categories a policy covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Interactions,
    SurveySignals,
    UsageSignals,
    BugSignals,
    ReviewSignals,
    LeadSignals,
    ExternalSignals,
    /// Analyses (summaries, sentiment, topics, QA, lead qualification, reply drafts) kept apart
    /// from the record they came from; they always go with their record.
    DerivedData,
    AuditLog,
    TechnicalLogs,
    ExportPackages,
}

impl Category {
    pub const ALL: [Self; 11] = [
        Self::Interactions,
        Self::SurveySignals,
        Self::UsageSignals,
        Self::BugSignals,
        Self::ReviewSignals,
        Self::LeadSignals,
        Self::ExternalSignals,
        Self::DerivedData,
        Self::AuditLog,
        Self::TechnicalLogs,
        Self::ExportPackages,
    ];

    /// The form field's and the report's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Interactions => "interactions",
            Self::SurveySignals => "survey_signals",
            Self::UsageSignals => "usage_signals",
            Self::BugSignals => "bug_signals",
            Self::ReviewSignals => "review_signals",
            Self::LeadSignals => "lead_signals",
            Self::ExternalSignals => "external_signals",
            Self::DerivedData => "derived_data",
            Self::AuditLog => "audit_log",
            Self::TechnicalLogs => "technical_logs",
            Self::ExportPackages => "export_packages",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Interactions => "Interactions",
            Self::SurveySignals => "Survey answers (NPS, CSAT)",
            Self::UsageSignals => "Product-usage figures",
            Self::BugSignals => "Bug and error records",
            Self::ReviewSignals => "Public reviews",
            Self::LeadSignals => "Sales-chat leads",
            Self::ExternalSignals => "External items (news, press)",
            Self::DerivedData => "Derived data (analyses)",
            Self::AuditLog => "Audit log",
            Self::TechnicalLogs => "Technical and usage logs",
            Self::ExportPackages => "Export packages",
        }
    }

    /// The category of a signal kind ([`crate::signals::Signal::kind_str`]).
    pub fn of_signal(record: &SignalRecord) -> Self {
        use crate::signals::Signal;
        match record.signal {
            Signal::Survey { .. } => Self::SurveySignals,
            Signal::Usage { .. } => Self::UsageSignals,
            Signal::Bug { .. } => Self::BugSignals,
            Signal::Review { .. } => Self::ReviewSignals,
            Signal::Lead { .. } => Self::LeadSignals,
            Signal::External { .. } => Self::ExternalSignals,
        }
    }

    fn is_signal(self) -> bool {
        matches!(
            self,
            Self::SurveySignals
                | Self::UsageSignals
                | Self::BugSignals
                | Self::ReviewSignals
                | Self::LeadSignals
                | Self::ExternalSignals
        )
    }

    /// Why a run deletes nothing in this category, where it never does in this version.
    fn not_swept(self) -> Option<&'static str> {
        match self {
            Self::AuditLog => Some(
                "pruned for every tenant at once after the nightly sweeps: whole week-long \
                 segments of the hash-chained log, once every entry in them is past its \
                 tenant's period (audited as audit.pruned)",
            ),
            Self::TechnicalLogs => {
                Some("Rapport keeps no technical logs of its own (the system journal does)")
            }
            Self::ExportPackages => Some(
                "privacy-request packages are deleted by the daily privacy task when they \
                 expire (after 5 days, or this period when shorter)",
            ),
            _ => None,
        }
    }
}

/// A tenant's retention policy: a period per category.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policies {
    pub periods: Vec<(Category, Keep)>,
}

impl Default for Policies {
    /// PRODUCT.md's defaults: tenant data and what is derived from it for the life of the
    /// tenant, the audit log 365 days, technical logs 90 days, export packages 5 days.
    fn default() -> Self {
        Self {
            periods: Category::ALL
                .into_iter()
                .map(|category| (category, Self::default_for(category)))
                .collect(),
        }
    }
}

impl Policies {
    pub fn default_for(category: Category) -> Keep {
        match category {
            Category::AuditLog => Keep::Days(AUDIT_LOG_MIN_DAYS),
            Category::TechnicalLogs => Keep::Days(90),
            Category::ExportPackages => Keep::Days(5),
            _ => Keep::Forever,
        }
    }

    pub fn get(&self, category: Category) -> Keep {
        self.periods
            .iter()
            .find(|(known, _)| *known == category)
            .map_or_else(|| Self::default_for(category), |(_, keep)| *keep)
    }

    pub fn set(&mut self, category: Category, keep: Keep) {
        match self
            .periods
            .iter_mut()
            .find(|(known, _)| *known == category)
        {
            Some(slot) => slot.1 = keep,
            None => self.periods.push((category, keep)),
        }
    }

    /// Refuses a policy that breaks a floor: the audit log is kept at least 365 days.
    pub fn validate(&self) -> Result<(), RetentionError> {
        for (category, keep) in &self.periods {
            if let Keep::Days(days) = keep {
                if *category == Category::AuditLog && *days < AUDIT_LOG_MIN_DAYS {
                    return Err(RetentionError::Invalid {
                        field: Category::AuditLog.label(),
                        message: format!(
                            "the audit log must be kept at least {AUDIT_LOG_MIN_DAYS} days (privacy promise 3); {days} is too short"
                        ),
                    });
                }
                if *days == 0 || *days > MAX_DAYS {
                    return Err(RetentionError::Invalid {
                        field: category.label(),
                        message: format!(
                            "give a number of days from 1 to {MAX_DAYS}, or leave it empty to keep for the life of the tenant"
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// The audit entry's target: every period, numbers only.
    fn audit_text(&self) -> String {
        let mut text = String::from("retention policy:");
        for category in Category::ALL {
            let _ = write!(
                text,
                " {}={}",
                category.as_str(),
                self.get(category).audit_value()
            );
        }
        text
    }
}

/// Reads a period as typed: empty (or `forever`) for the life of the tenant, else whole days.
pub fn parse_keep(category: Category, text: &str) -> Result<Keep, RetentionError> {
    let text = text.trim();
    if text.is_empty() || text.eq_ignore_ascii_case("forever") {
        return Ok(Keep::Forever);
    }
    text.parse::<u32>()
        .map(Keep::Days)
        .map_err(|_| RetentionError::Invalid {
            field: category.label(),
            message:
                "give a whole number of days, or leave it empty to keep for the life of the tenant"
                    .to_owned(),
        })
}

fn policies_collection(
    context: &AppContext,
    tenant: TenantId,
) -> Result<Collection<&'static str, Policies>, StoreError> {
    context.store.collection(Scope::Tenant(tenant), POLICIES)
}

fn runs_collection(
    context: &AppContext,
    tenant: TenantId,
) -> Result<Collection<RetentionRunId, RunReport>, StoreError> {
    context.store.collection(Scope::Tenant(tenant), RUNS)
}

/// The tenant's policies, or the defaults when it has stored none.
pub fn policies(context: &AppContext, tenant: TenantId) -> Result<Policies, StoreError> {
    Ok(policies_collection(context, tenant)?
        .get(&POLICIES_KEY)?
        .unwrap_or_default())
}

/// Replaces the tenant's policies after checking them. Audited as `retention.policy_changed`.
pub fn save_policies(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    tenant: TenantId,
    policies: &Policies,
) -> Result<(), RetentionError> {
    policies.validate()?;
    policies_collection(context, tenant)?.insert(&POLICIES_KEY, policies)?;
    context.audit(
        AuditEvent::new(
            Some(tenant),
            actor.clone(),
            AuditAction::RetentionPolicyChanged,
            policies.audit_text(),
        )
        .client(client),
    )?;
    Ok(())
}

/// What started a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    CommandLine,
    Console,
    Scheduler,
    Preview,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CommandLine => "command line",
            Self::Console => "console",
            Self::Scheduler => "scheduler",
            Self::Preview => "preview",
        }
    }
}

/// One category's line of a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryCount {
    pub category: Category,
    pub keep: Keep,
    /// Deleted (a run) or that would be deleted (a preview).
    pub deleted: u64,
    /// Expired, but kept by a legal hold.
    pub held: u64,
    /// Why nothing is swept in this category, where that is so.
    pub note: Option<String>,
}

/// A run's report (or a preview's, which is not stored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    pub id: RetentionRunId,
    pub trigger: Trigger,
    pub actor: String,
    pub dry_run: bool,
    pub started: DateTime<Utc>,
    pub finished: Option<DateTime<Utc>>,
    pub counts: Vec<CategoryCount>,
    /// What went wrong, as content-free kinds (`store`, `disk full`), with the category.
    pub errors: Vec<String>,
}

impl RunReport {
    pub fn count(&self, category: Category) -> Option<&CategoryCount> {
        self.counts.iter().find(|count| count.category == category)
    }

    pub fn total_deleted(&self) -> u64 {
        self.counts.iter().map(|count| count.deleted).sum()
    }

    pub fn total_held(&self) -> u64 {
        self.counts.iter().map(|count| count.held).sum()
    }

    fn audit_text(&self) -> String {
        let mut text = format!("retention run {} ({}):", self.id, self.trigger.as_str());
        for count in &self.counts {
            if count.deleted > 0 || count.held > 0 {
                let _ = write!(
                    text,
                    " {} {} deleted {} held;",
                    count.category.as_str(),
                    count.deleted,
                    count.held
                );
            }
        }
        if self.total_deleted() == 0 && self.total_held() == 0 {
            text.push_str(" nothing expired;");
        }
        if !self.errors.is_empty() {
            let _ = write!(text, " errors: {}", self.errors.join(", "));
        }
        text.trim_end_matches(';').to_owned()
    }
}

/// How far a run has come, for progress output.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// `interactions` or `signals`.
    pub what: &'static str,
    pub examined: u64,
    pub deleted: u64,
}

/// An interaction's time for retention: its latest message, or its first import when it has no
/// message.
pub fn interaction_time(stored: &Stored<InteractionRecord>) -> DateTime<Utc> {
    stored
        .record
        .messages
        .iter()
        .map(|message| message.sent_at)
        .max()
        .unwrap_or(stored.first_imported)
}

fn cutoff(now: DateTime<Utc>, days: u32) -> DateTime<Utc> {
    now - Duration::days(i64::from(days))
}

fn error_kind(error: &StoreError) -> &'static str {
    match error {
        StoreError::DiskFull { .. } => "disk full",
        _ => "store",
    }
}

/// Tenants with a run in progress in this process: one run per tenant at a time, whoever
/// started it (scheduler, console, command line).
static RUNNING: Mutex<Vec<TenantId>> = Mutex::new(Vec::new());

struct RunSlot(TenantId);

impl RunSlot {
    fn take(tenant: TenantId) -> Result<Self, RetentionError> {
        let mut running = RUNNING.lock().unwrap_or_else(PoisonError::into_inner);
        if running.contains(&tenant) {
            return Err(RetentionError::AlreadyRunning);
        }
        running.push(tenant);
        Ok(Self(tenant))
    }
}

impl Drop for RunSlot {
    fn drop(&mut self) {
        let mut running = RUNNING.lock().unwrap_or_else(PoisonError::into_inner);
        running.retain(|tenant| *tenant != self.0);
    }
}

/// Whether a run of the tenant is in progress in this process.
pub fn is_running(tenant: TenantId) -> bool {
    RUNNING
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .contains(&tenant)
}

/// The walk shared by preview and run.
struct Sweep<'a> {
    context: &'a AppContext,
    tenant: TenantId,
    now: DateTime<Utc>,
    dry_run: bool,
    holds: ActiveHolds,
    progress: &'a mut dyn FnMut(Progress),
}

impl Sweep<'_> {
    /// Deletes the batch (unless a dry run); returns how many went.
    fn flush_interactions(&mut self, batch: &mut Vec<Target>) -> Result<u64, StoreError> {
        let count = delete::<InteractionRecord>(self.context, self.tenant, batch)?.len();
        batch.clear();
        Ok(count as u64)
    }

    fn interactions(&mut self, count: &mut CategoryCount) -> Result<(), StoreError> {
        let Keep::Days(days) = count.keep else {
            return Ok(());
        };
        let cutoff = cutoff(self.now, days);
        let records = self.context.interactions.records(self.tenant)?;
        let mut batch = Vec::with_capacity(DELETE_BATCH);
        let mut examined = 0u64;
        for entry in records.scan() {
            let (id, stored) = entry?;
            examined += 1;
            let time = interaction_time(&stored);
            if time < cutoff {
                if self
                    .holds
                    .is_held(&HeldFacts::of_interaction(&stored.record, time))
                {
                    count.held += 1;
                } else if self.dry_run {
                    count.deleted += 1;
                } else {
                    batch.push(Target {
                        id,
                        source_key: crate::records::SourceRecord::source_key(&stored.record),
                    });
                    if batch.len() >= DELETE_BATCH {
                        count.deleted += self.flush_interactions(&mut batch)?;
                    }
                }
            }
            if examined % 10_000 == 0 {
                (self.progress)(Progress {
                    what: "interactions",
                    examined,
                    deleted: count.deleted,
                });
            }
        }
        if !batch.is_empty() {
            count.deleted += self.flush_interactions(&mut batch)?;
        }
        (self.progress)(Progress {
            what: "interactions",
            examined,
            deleted: count.deleted,
        });
        Ok(())
    }

    /// Every signal kind in one walk, each against its own period.
    fn signals(&mut self, counts: &mut [CategoryCount]) -> Result<(), StoreError> {
        let swept: Vec<(Category, DateTime<Utc>)> = counts
            .iter()
            .filter(|count| count.category.is_signal())
            .filter_map(|count| match count.keep {
                Keep::Days(days) => Some((count.category, cutoff(self.now, days))),
                Keep::Forever => None,
            })
            .collect();
        if swept.is_empty() {
            return Ok(());
        }
        let records = self.context.signals.records(self.tenant)?;
        let mut batch: Vec<(Target, Category)> = Vec::with_capacity(DELETE_BATCH);
        let mut examined = 0u64;
        let mut deleted_total = 0u64;
        let flush = |batch: &mut Vec<(Target, Category)>,
                     counts: &mut [CategoryCount]|
         -> Result<u64, StoreError> {
            let targets: Vec<Target> = batch.iter().map(|(target, _)| target.clone()).collect();
            let gone: HashSet<RecordId> =
                delete::<SignalRecord>(self.context, self.tenant, &targets)?
                    .into_iter()
                    .collect();
            for (target, category) in batch.drain(..) {
                if gone.contains(&target.id) {
                    if let Some(count) = counts.iter_mut().find(|c| c.category == category) {
                        count.deleted += 1;
                    }
                }
            }
            Ok(gone.len() as u64)
        };
        for entry in records.scan() {
            let (id, stored) = entry?;
            examined += 1;
            let category = Category::of_signal(&stored.record);
            let expired = swept
                .iter()
                .any(|(swept, cutoff)| *swept == category && stored.record.occurred_at < *cutoff);
            if expired {
                let Some(count) = counts.iter_mut().find(|c| c.category == category) else {
                    continue;
                };
                if self.holds.is_held(&HeldFacts::of_signal(&stored.record)) {
                    count.held += 1;
                } else if self.dry_run {
                    count.deleted += 1;
                } else {
                    batch.push((
                        Target {
                            id,
                            source_key: crate::records::SourceRecord::source_key(&stored.record),
                        },
                        category,
                    ));
                    if batch.len() >= DELETE_BATCH {
                        deleted_total += flush(&mut batch, counts)?;
                    }
                }
            }
            if examined % 10_000 == 0 {
                (self.progress)(Progress {
                    what: "signals",
                    examined,
                    deleted: deleted_total,
                });
            }
        }
        if !batch.is_empty() {
            flush(&mut batch, counts)?;
        }
        Ok(())
    }

    /// Analyses older than the derived-data period, of records that no hold keeps; the records
    /// themselves stay.
    fn derived(&mut self, count: &mut CategoryCount) -> Result<(), StoreError> {
        let Keep::Days(days) = count.keep else {
            return Ok(());
        };
        let cutoff = cutoff(self.now, days);
        let expired = self
            .context
            .analysis
            .analyses_created_before(self.tenant, cutoff)?;
        let mut doomed = Vec::new();
        for (subject, kind) in expired {
            let held = if self.holds.is_empty() {
                false
            } else if let Some(stored) = self.context.interactions.get(self.tenant, subject)? {
                self.holds.is_held(&HeldFacts::of_interaction(
                    &stored.record,
                    interaction_time(&stored),
                ))
            } else if let Some(stored) = self.context.signals.get(self.tenant, subject)? {
                self.holds.is_held(&HeldFacts::of_signal(&stored.record))
            } else {
                false
            };
            if held {
                count.held += 1;
            } else {
                doomed.push((subject, kind));
            }
        }
        if self.dry_run {
            count.deleted += doomed.len() as u64;
        } else {
            for chunk in doomed.chunks(DELETE_BATCH) {
                count.deleted += self.context.analysis.remove_analyses(self.tenant, chunk)?;
            }
        }
        Ok(())
    }
}

/// Walks every category: deletes (or, for a dry run, counts) what has expired and no hold
/// keeps. A failing category is reported by kind and the others still run.
fn sweep(
    context: &AppContext,
    tenant: TenantId,
    report: &mut RunReport,
    progress: &mut dyn FnMut(Progress),
) -> Result<(), StoreError> {
    let policies = policies(context, tenant)?;
    let holds = ActiveHolds::load(context, tenant, report.started)?;
    let mut counts: Vec<CategoryCount> = Category::ALL
        .into_iter()
        .map(|category| CategoryCount {
            category,
            keep: policies.get(category),
            deleted: 0,
            held: 0,
            note: category.not_swept().map(str::to_owned),
        })
        .collect();
    let mut sweep = Sweep {
        context,
        tenant,
        now: report.started,
        dry_run: report.dry_run,
        holds,
        progress,
    };
    let mut errors = Vec::new();
    if let Some(count) = counts
        .iter_mut()
        .find(|count| count.category == Category::Interactions)
    {
        if let Err(error) = sweep.interactions(count) {
            errors.push(format!("interactions: {}", error_kind(&error)));
        }
    }
    if let Err(error) = sweep.signals(&mut counts) {
        errors.push(format!("signals: {}", error_kind(&error)));
    }
    if let Some(count) = counts
        .iter_mut()
        .find(|count| count.category == Category::DerivedData)
    {
        if let Err(error) = sweep.derived(count) {
            errors.push(format!("derived data: {}", error_kind(&error)));
        }
    }
    report.counts = counts;
    report.errors = errors;
    Ok(())
}

fn new_report(trigger: Trigger, actor: &Actor, dry_run: bool, now: DateTime<Utc>) -> RunReport {
    RunReport {
        id: RetentionRunId::new(),
        trigger,
        actor: actor.label.clone(),
        dry_run,
        started: now,
        finished: None,
        counts: Vec::new(),
        errors: Vec::new(),
    }
}

/// What a run at `now` would delete and what holds would keep, per category; nothing is
/// deleted or stored. Counts only: no personal data is read out.
pub fn preview(
    context: &AppContext,
    actor: &Actor,
    tenant: TenantId,
    now: DateTime<Utc>,
) -> Result<RunReport, RetentionError> {
    let mut report = new_report(Trigger::Preview, actor, true, now);
    sweep(context, tenant, &mut report, &mut |_| {})?;
    report.finished = Some(Utc::now());
    Ok(report)
}

/// Deletes what has expired at `now` and no hold keeps, stores the report and audits it as
/// `retention.run`. One run per tenant at a time ([`RetentionError::AlreadyRunning`]).
pub fn run(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    tenant: TenantId,
    trigger: Trigger,
    now: DateTime<Utc>,
    progress: &mut dyn FnMut(Progress),
) -> Result<RunReport, RetentionError> {
    let _slot = RunSlot::take(tenant)?;
    let mut report = new_report(trigger, actor, false, now);
    if let Err(error) = sweep(context, tenant, &mut report, progress) {
        report
            .errors
            .push(format!("policies: {}", error_kind(&error)));
    }
    report.finished = Some(Utc::now());
    runs_collection(context, tenant)?.insert(&report.id, &report)?;
    let outcome = if report.errors.is_empty() {
        Outcome::Success
    } else {
        Outcome::Failure
    };
    context.audit(
        AuditEvent::new(
            Some(tenant),
            actor.clone(),
            AuditAction::RetentionRun,
            report.audit_text(),
        )
        .client(client)
        .outcome(outcome),
    )?;
    context
        .retention_runs
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(report)
}

/// The tenant's latest run reports, newest first, at most `limit` (reads only those).
pub fn reports(
    context: &AppContext,
    tenant: TenantId,
    limit: usize,
) -> Result<Vec<RunReport>, StoreError> {
    runs_collection(context, tenant)?
        .scan_newest_first(None)
        .take(limit)
        .map(|entry| entry.map(|(_, report)| report))
        .collect()
}

/// The scheduled sweep: every tenant's run, one after another, then the audit log's pruning
/// ([`audit_log::prune`], for every tenant at once). A tenant whose run fails is logged (by kind)
/// and the others still run.
pub fn run_all_tenants(context: &AppContext) {
    let tenants = match context.tenants.list() {
        Ok(tenants) => tenants,
        Err(error) => {
            tracing::error!(%error, "retention: cannot list tenants");
            return;
        }
    };
    for tenant in tenants {
        match run(
            context,
            &Actor::system(),
            None,
            tenant.id,
            Trigger::Scheduler,
            Utc::now(),
            &mut |_| {},
        ) {
            Ok(report) => tracing::info!(
                tenant = %tenant.id,
                deleted = report.total_deleted(),
                held = report.total_held(),
                errors = report.errors.len(),
                "retention run finished"
            ),
            Err(RetentionError::AlreadyRunning) => {
                tracing::info!(tenant = %tenant.id, "retention run skipped: one is in progress");
            }
            Err(error) => {
                tracing::error!(tenant = %tenant.id, kind = run_error_kind(&error), "retention run failed");
            }
        }
    }
    audit_log::prune_logged(context);
}

/// A content-free name of a run's failure, for logs.
pub fn run_error_kind(error: &RetentionError) -> &'static str {
    match error {
        RetentionError::Store(store) => error_kind(store),
        RetentionError::Audit(_) => "audit",
        RetentionError::Invalid { .. } => "invalid",
        RetentionError::NotFound => "not found",
        RetentionError::AlreadyRunning => "already running",
    }
}
