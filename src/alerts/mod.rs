//! Alerts: the tenant's inbox of things someone should look at, and the rules that raise them.
//!
//! An [`Alert`] is about one record (its `subject`, with the console path that shows it), is
//! addressed to chosen users of the tenant, and moves through [`AlertState`]s by [`Action`]s:
//! acknowledge, assign, snooze (it shows as open again once the time has passed), resolve (with a
//! required note) and reopen. Every change is kept in the alert's own history and audited. The
//! transitions are a pure function ([`apply`]); the audited operations around it ([`act`],
//! [`raise`]) read and write under the tenant's writer lock.
//!
//! Raising is idempotent: while an alert of the same kind about the same record is not resolved,
//! [`raise`] returns it instead of creating a second one. The negative-review rule
//! ([`ReviewRule`]) lives here; the churn-risk rules of account health ([`crate::health`]) call
//! [`raise`] with [`AlertKind::ChurnRisk`] and land in the same inbox.
//!
//! - [`store`]: the sealed trees (alerts, the subject index, the rules);
//! - [`routes`]: the inbox `/t/{tenant}/alerts`, one alert's page and its actions, and the rule
//!   settings `/t/{tenant}/settings/alerts`.
//!
//! Alerts hold ids, a short title made of the record's non-personal fields (a review's rating,
//! platform and location), and the notes people write; like every record they are sealed. Nothing
//! here logs tenant content: failures are logged with ids and a store error only.

pub mod routes;
pub mod store;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::audit::{Actor, AuditAction, AuditError, AuditEvent};
use crate::auth::Permission;
use crate::context::AppContext;
use crate::ids::{AlertId, RecordId, TenantId, UserId};
use crate::ingest::{ImportRun, ImportState};
use crate::records::{RecordKind, Stored};
use crate::signals::{Signal, SignalRecord, SignalStore};
use crate::store::{Scope, StoreError};
use crate::tenants::Tenant;
use crate::users::{Role, User};

pub use store::AlertStore;

/// What raised an alert. Each rule has its own kind; more come with account health.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A review at or below the tenant's rating threshold was created.
    NegativeReview,
    /// A churn-risk rule of account health fired for an account (the subject).
    ChurnRisk(crate::health::ChurnRule),
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NegativeReview => "negative_review",
            Self::ChurnRisk(rule) => rule.as_str(),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::NegativeReview => "Negative review",
            Self::ChurnRisk(_) => "Churn risk",
        }
    }
}

/// Where an alert stands, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AlertState {
    Open,
    Acknowledged,
    /// Out of sight until `until`; then it shows (and counts) as open again.
    Snoozed {
        until: DateTime<Utc>,
    },
    /// Done, with what was done.
    Resolved {
        note: String,
    },
}

/// Where an alert stands at a given time: the state people see and filter by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Open,
    Acknowledged,
    Snoozed,
    Resolved,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Open,
        Status::Acknowledged,
        Status::Snoozed,
        Status::Resolved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Acknowledged => "acknowledged",
            Self::Snoozed => "snoozed",
            Self::Resolved => "resolved",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }
}

impl AlertState {
    /// The state as seen at `now`: a snooze whose time has come reads as open.
    pub fn status(&self, now: DateTime<Utc>) -> Status {
        match self {
            Self::Open => Status::Open,
            Self::Acknowledged => Status::Acknowledged,
            Self::Snoozed { until } if *until <= now => Status::Open,
            Self::Snoozed { .. } => Status::Snoozed,
            Self::Resolved { .. } => Status::Resolved,
        }
    }
}

/// One change in an alert's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    Raised,
    Acknowledged,
    /// Assigned to a user; `label` is their e-mail address at the time.
    Assigned {
        to: UserId,
        label: String,
    },
    Snoozed {
        until: DateTime<Utc>,
    },
    Resolved {
        note: String,
    },
    Reopened,
}

/// Who changed what, when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: DateTime<Utc>,
    pub actor: Actor,
    pub change: Change,
}

/// One alert in a tenant's inbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub id: AlertId,
    pub kind: AlertKind,
    /// The record the alert is about (a review's signal id, later an account).
    pub subject: RecordId,
    /// The console path that shows the subject, e.g. `/t/acme/reviews/01J…`.
    pub link: String,
    /// A short title made of the subject's non-personal fields.
    pub title: String,
    pub created: DateTime<Utc>,
    /// The users it is addressed to.
    pub recipients: Vec<UserId>,
    pub assignee: Option<UserId>,
    pub state: AlertState,
    /// Every change, oldest first, starting with `raised`.
    pub history: Vec<HistoryEntry>,
}

impl Alert {
    pub fn status(&self, now: DateTime<Utc>) -> Status {
        self.state.status(now)
    }

    /// Whether the alert is addressed or assigned to `user`.
    pub fn concerns(&self, user: UserId) -> bool {
        self.recipients.contains(&user) || self.assignee == Some(user)
    }

    pub fn is_resolved(&self) -> bool {
        matches!(self.state, AlertState::Resolved { .. })
    }
}

/// What someone does to an alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Acknowledge,
    /// Assign to a user (their id and e-mail address); the caller has checked they may work it.
    Assign(UserId, String),
    Snooze(DateTime<Utc>),
    Resolve(String),
    Reopen,
}

impl Action {
    fn audit_action(&self) -> AuditAction {
        match self {
            Self::Acknowledge => AuditAction::AlertAcknowledged,
            Self::Assign(..) => AuditAction::AlertAssigned,
            Self::Snooze(_) => AuditAction::AlertSnoozed,
            Self::Resolve(_) => AuditAction::AlertResolved,
            Self::Reopen => AuditAction::AlertReopened,
        }
    }
}

/// The longest resolution note.
pub const MAX_NOTE_CHARS: usize = 2000;
/// The furthest a snooze may reach.
pub const MAX_SNOOZE_DAYS: i64 = 366;

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Tenant(#[from] crate::tenants::TenantError),
    #[error(transparent)]
    User(#[from] crate::users::UserError),
    #[error("there is no such alert")]
    NotFound,
    /// The action or the form is refused; the message says why, without tenant content.
    #[error("{0}")]
    Refused(String),
}

fn refused(message: impl Into<String>) -> AlertError {
    AlertError::Refused(message.into())
}

/// A resolution note as stored: trimmed, required, at most [`MAX_NOTE_CHARS`], no control
/// characters besides line breaks and tabs.
pub fn check_note(note: &str) -> Result<String, AlertError> {
    let note = note.trim();
    if note.is_empty() {
        return Err(refused(
            "A resolution note is required: say what was done (for example \"called the customer, refund issued\").",
        ));
    }
    if note.chars().count() > MAX_NOTE_CHARS {
        return Err(refused(format!(
            "The resolution note must be at most {MAX_NOTE_CHARS} characters."
        )));
    }
    if note
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(refused(
            "The resolution note must not contain control characters.",
        ));
    }
    Ok(note.replace("\r\n", "\n"))
}

/// The state machine: what `action` by `actor` at `now` makes of `alert`, or why it is refused.
/// Pure; [`act`] stores and audits the result.
pub fn apply(
    alert: &Alert,
    action: &Action,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<Alert, AlertError> {
    let status = alert.status(now);
    if status == Status::Resolved && *action != Action::Reopen {
        return Err(refused(
            "This alert is resolved; reopen it first to change it.",
        ));
    }
    let mut next = alert.clone();
    let change = match action {
        Action::Acknowledge => {
            if status == Status::Acknowledged {
                return Err(refused("This alert is already acknowledged."));
            }
            next.state = AlertState::Acknowledged;
            Change::Acknowledged
        }
        Action::Assign(user, label) => {
            if alert.assignee == Some(*user) {
                return Err(refused(format!(
                    "This alert is already assigned to {label}."
                )));
            }
            next.assignee = Some(*user);
            Change::Assigned {
                to: *user,
                label: label.clone(),
            }
        }
        Action::Snooze(until) => {
            if *until <= now {
                return Err(refused("A snooze must end in the future."));
            }
            if *until > now + Duration::days(MAX_SNOOZE_DAYS) {
                return Err(refused(format!(
                    "A snooze may last at most {MAX_SNOOZE_DAYS} days."
                )));
            }
            next.state = AlertState::Snoozed { until: *until };
            Change::Snoozed { until: *until }
        }
        Action::Resolve(note) => {
            let note = check_note(note)?;
            next.state = AlertState::Resolved { note: note.clone() };
            Change::Resolved { note }
        }
        Action::Reopen => {
            if status == Status::Open {
                return Err(refused("This alert is already open."));
            }
            next.state = AlertState::Open;
            Change::Reopened
        }
    };
    next.history.push(HistoryEntry {
        at: now,
        actor: actor.clone(),
        change,
    });
    Ok(next)
}

/// How long a snooze lasts, as the form offers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnoozeFor {
    Day,
    Week,
    /// Until midnight (UTC) at the start of the date.
    Until(NaiveDate),
}

impl SnoozeFor {
    /// The form's fields: `for` is `day`, `week` or `date`, with `until` (YYYY-MM-DD) for a date.
    pub fn parse(choice: &str, until: &str) -> Result<Self, AlertError> {
        match choice {
            "day" => Ok(Self::Day),
            "week" => Ok(Self::Week),
            "date" => NaiveDate::parse_from_str(until.trim(), "%Y-%m-%d")
                .map(Self::Until)
                .map_err(|_| refused("Snooze until: enter a date as YYYY-MM-DD.")),
            _ => Err(refused("Snooze: choose one day, one week or a date.")),
        }
    }

    pub fn end(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Self::Day => now + Duration::days(1),
            Self::Week => now + Duration::weeks(1),
            Self::Until(date) => date.and_time(chrono::NaiveTime::MIN).and_utc(),
        }
    }
}

/// What a rule asks [`raise`] for.
#[derive(Clone, Debug)]
pub struct NewAlert {
    pub kind: AlertKind,
    pub subject: RecordId,
    pub link: String,
    pub title: String,
    pub recipients: Vec<UserId>,
}

/// What [`raise`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Raised {
    Created(AlertId),
    /// An alert of the same kind about the same subject is not resolved yet: nothing new.
    AlreadyOpen(AlertId),
}

/// Raises an alert, unless one of the same kind about the same subject is still unresolved.
/// Audited as `alert.raised` (ids only) by `actor`, usually [`Actor::system`].
pub fn raise(
    context: &AppContext,
    actor: &Actor,
    tenant: TenantId,
    new: NewAlert,
) -> Result<Raised, AlertError> {
    let alerts = AlertStore::new(context.store.clone());
    let now = Utc::now();
    let raised =
        context
            .store
            .lock_scope(Scope::Tenant(tenant))
            .run(|| -> Result<Raised, AlertError> {
                if let Some(current) = alerts.current_for(tenant, new.kind, new.subject)? {
                    if !current.is_resolved() {
                        return Ok(Raised::AlreadyOpen(current.id));
                    }
                }
                let alert = Alert {
                    id: AlertId::new(),
                    kind: new.kind,
                    subject: new.subject,
                    link: new.link,
                    title: new.title,
                    created: now,
                    recipients: new.recipients,
                    assignee: None,
                    state: AlertState::Open,
                    history: vec![HistoryEntry {
                        at: now,
                        actor: actor.clone(),
                        change: Change::Raised,
                    }],
                };
                alerts.create(tenant, &alert)?;
                Ok(Raised::Created(alert.id))
            })?;
    if let Raised::Created(id) = raised {
        context.audit(AuditEvent::new(
            Some(tenant),
            actor.clone(),
            AuditAction::AlertRaised,
            format!(
                "alert {id}: {} about record {}",
                new.kind.as_str(),
                new.subject
            ),
        ))?;
    }
    Ok(raised)
}

/// Whether `user` may see (and so work) `alert`: it is addressed or assigned to them, or they
/// configure the tenant's alert rules (tenant admins see every alert).
pub fn may_see(user: &User, alert: &Alert) -> bool {
    user.role.grants(Permission::WorkAlerts)
        && (alert.concerns(user.id) || user.role.grants(Permission::ManageAlertRules))
}

/// The alert, if `user` may see it. Another tenant's id, or one not addressed to the user, is
/// simply not found.
pub fn visible_alert(
    context: &AppContext,
    tenant: TenantId,
    user: &User,
    id: AlertId,
) -> Result<Alert, AlertError> {
    AlertStore::new(context.store.clone())
        .get(tenant, id)?
        .filter(|alert| may_see(user, alert))
        .ok_or(AlertError::NotFound)
}

/// The users of the tenant an alert may be assigned to: active, with [`Permission::WorkAlerts`].
pub fn assignable_users(context: &AppContext, tenant: TenantId) -> Result<Vec<User>, AlertError> {
    let users = context.users.list(Some(tenant))?;
    Ok(users
        .into_iter()
        .filter(|user| !user.disabled && user.role.grants(Permission::WorkAlerts))
        .collect())
}

/// `user` (a member of the tenant who may see the alert) does `action` to alert `id`; stored and
/// audited. An assignee must be one of [`assignable_users`]. Reopening is refused while a newer
/// alert about the same subject is unresolved, so there is never a second open one.
pub fn act(
    context: &AppContext,
    user: &User,
    client: Option<String>,
    tenant: TenantId,
    id: AlertId,
    action: &Action,
) -> Result<Alert, AlertError> {
    let alerts = AlertStore::new(context.store.clone());
    let actor = user.actor();
    let updated =
        context
            .store
            .lock_scope(Scope::Tenant(tenant))
            .run(|| -> Result<Alert, AlertError> {
                let alert = alerts
                    .get(tenant, id)?
                    .filter(|alert| may_see(user, alert))
                    .ok_or(AlertError::NotFound)?;
                if *action == Action::Reopen {
                    if let Some(current) = alerts.current_for(tenant, alert.kind, alert.subject)? {
                        if current.id != alert.id && !current.is_resolved() {
                            return Err(refused(
                            "A newer alert about the same record is open; work that one instead.",
                        ));
                        }
                    }
                }
                let updated = apply(&alert, action, &actor, Utc::now())?;
                alerts.save(tenant, &updated)?;
                Ok(updated)
            })?;
    let detail = match action {
        Action::Assign(to, _) => format!(" to user {to}"),
        Action::Snooze(until) => format!(" until {}", until.to_rfc3339()),
        _ => String::new(),
    };
    context.audit(
        AuditEvent::new(
            Some(tenant),
            actor,
            action.audit_action(),
            format!("alert {id}{detail}"),
        )
        .client(client),
    )?;
    Ok(updated)
}

/// Which alerts an inbox shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InboxFilter {
    /// `None`: every state.
    pub status: Option<Status>,
    /// Every alert of the tenant (only for users with [`Permission::ManageAlertRules`]) rather
    /// than those addressed or assigned to the user.
    pub everyone: bool,
}

/// Counts per status of the alerts an inbox covers (its scope, every state).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub open: usize,
    pub acknowledged: usize,
    pub snoozed: usize,
    pub resolved: usize,
}

impl Counts {
    pub fn of(&self, status: Status) -> usize {
        match status {
            Status::Open => self.open,
            Status::Acknowledged => self.acknowledged,
            Status::Snoozed => self.snoozed,
            Status::Resolved => self.resolved,
        }
    }

    fn add(&mut self, status: Status) {
        match status {
            Status::Open => self.open += 1,
            Status::Acknowledged => self.acknowledged += 1,
            Status::Snoozed => self.snoozed += 1,
            Status::Resolved => self.resolved += 1,
        }
    }
}

/// One inbox: the matching alerts newest first (at most [`store::MAX_LISTED`]), the counts of
/// its scope, and whether the scan stopped at [`store::MAX_SCANNED`] alerts.
pub struct Inbox {
    pub alerts: Vec<Alert>,
    pub counts: Counts,
    pub scan_limit_reached: bool,
}

/// The alerts `user` sees under `filter`. Not audited here: the page that shows them audits
/// its read.
pub fn inbox(
    context: &AppContext,
    tenant: TenantId,
    user: &User,
    filter: InboxFilter,
) -> Result<Inbox, AlertError> {
    let everyone = filter.everyone && user.role.grants(Permission::ManageAlertRules);
    let now = Utc::now();
    let mut inbox = Inbox {
        alerts: Vec::new(),
        counts: Counts::default(),
        scan_limit_reached: false,
    };
    inbox.scan_limit_reached =
        AlertStore::new(context.store.clone()).for_each_newest_first(tenant, |alert| {
            if !(everyone || alert.concerns(user.id)) || !may_see(user, &alert) {
                return;
            }
            let status = alert.status(now);
            inbox.counts.add(status);
            if filter.status.is_none_or(|wanted| wanted == status)
                && inbox.alerts.len() < store::MAX_LISTED
            {
                inbox.alerts.push(alert);
            }
        })?;
    Ok(inbox)
}

/// How long the navigation's open count is reused while no alert of the tenant is written: a
/// snoozed alert reopens by the clock, not by a write.
const OPEN_COUNT_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// Counts kept for the navigation: (tenant, user) → (alert generation, when counted, count).
/// Bounded: emptied when it holds [`OPEN_COUNTS_MAX`] entries.
type OpenCounts = std::collections::HashMap<(TenantId, UserId), (u64, std::time::Instant, usize)>;
static OPEN_COUNTS: std::sync::LazyLock<std::sync::Mutex<OpenCounts>> =
    std::sync::LazyLock::new(|| std::sync::Mutex::new(std::collections::HashMap::new()));
const OPEN_COUNTS_MAX: usize = 10_000;

/// The number of open alerts addressed or assigned to `user` (the navigation's count, on every
/// page): counted by [`open_count_now`] at most once per [`OPEN_COUNT_TTL`] while the tenant's
/// alerts are unchanged, so a page load does not open thousands of alerts.
pub fn open_count(
    context: &AppContext,
    tenant: TenantId,
    user: &User,
) -> Result<usize, AlertError> {
    let generation = store::generation(tenant);
    let key = (tenant, user.id);
    let lock = || {
        OPEN_COUNTS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    if let Some((at_generation, counted, count)) = lock().get(&key) {
        if *at_generation == generation && counted.elapsed() < OPEN_COUNT_TTL {
            return Ok(*count);
        }
    }
    let count = open_count_now(context, tenant, user)?;
    let mut counts = lock();
    if counts.len() >= OPEN_COUNTS_MAX {
        counts.clear();
    }
    counts.insert(key, (generation, std::time::Instant::now(), count));
    Ok(count)
}

/// [`open_count`] counted afresh from the alerts.
pub fn open_count_now(
    context: &AppContext,
    tenant: TenantId,
    user: &User,
) -> Result<usize, AlertError> {
    let inbox = inbox(
        context,
        tenant,
        user,
        InboxFilter {
            status: Some(Status::Open),
            everyone: false,
        },
    )?;
    Ok(inbox.counts.open)
}

// --- The negative-review rule ---------------------------------------------------------------

/// The tenant admin's negative-review rule. Without a stored rule the default applies: on,
/// ratings 1 and 2, addressed to every tenant admin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewRule {
    pub enabled: bool,
    /// A review rated at most this many stars raises an alert (1 to 4).
    pub max_rating: u8,
    /// The chosen users. Empty: every active tenant admin.
    pub recipients: Vec<UserId>,
}

impl Default for ReviewRule {
    fn default() -> Self {
        Self {
            enabled: true,
            max_rating: 2,
            recipients: Vec::new(),
        }
    }
}

/// The highest threshold a rule may have: a rule at 5 would alert on every review.
pub const MAX_THRESHOLD: u8 = 4;

/// Validates and saves the tenant's negative-review rule; audited as `alert.rule_changed`.
/// Every recipient must be one of [`assignable_users`].
pub fn save_review_rule(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    tenant: TenantId,
    rule: ReviewRule,
) -> Result<(), AlertError> {
    if !(1..=MAX_THRESHOLD).contains(&rule.max_rating) {
        return Err(refused(format!(
            "Rating threshold: choose 1 to {MAX_THRESHOLD} stars."
        )));
    }
    let eligible = assignable_users(context, tenant)?;
    if rule
        .recipients
        .iter()
        .any(|chosen| !eligible.iter().any(|user| user.id == *chosen))
    {
        return Err(refused(
            "Recipients: choose active users of this tenant who work the alerts inbox (tenant admins and analysts).",
        ));
    }
    let mut rule = rule;
    rule.recipients.sort();
    rule.recipients.dedup();
    AlertStore::new(context.store.clone()).save_review_rule(tenant, &rule)?;
    context.audit(
        AuditEvent::new(
            Some(tenant),
            actor.clone(),
            AuditAction::AlertRuleChanged,
            format!(
                "negative_review: {}, rating <= {}, {}",
                if rule.enabled { "on" } else { "off" },
                rule.max_rating,
                if rule.recipients.is_empty() {
                    "to every tenant admin".to_owned()
                } else {
                    format!("to {} chosen users", rule.recipients.len())
                }
            ),
        )
        .client(client),
    )?;
    Ok(())
}

/// Who a negative-review alert goes to now: the chosen users who are still active and may work
/// the inbox, or, when none is chosen (or none of them is left), every active tenant admin.
pub fn review_recipients(
    context: &AppContext,
    tenant: TenantId,
    rule: &ReviewRule,
) -> Result<Vec<UserId>, AlertError> {
    let eligible = assignable_users(context, tenant)?;
    let chosen: Vec<UserId> = eligible
        .iter()
        .filter(|user| rule.recipients.contains(&user.id))
        .map(|user| user.id)
        .collect();
    if !chosen.is_empty() {
        return Ok(chosen);
    }
    Ok(eligible
        .iter()
        .filter(|user| user.role == Role::TenantAdmin)
        .map(|user| user.id)
        .collect())
}

/// The review's rating and a title of its non-personal fields, when the signal is a review.
fn review_title(record: &SignalRecord) -> Option<(u8, String)> {
    match &record.signal {
        Signal::Review {
            platform,
            rating,
            location,
            ..
        } => {
            let title = match location.as_deref().map(str::trim) {
                Some(location) if !location.is_empty() => {
                    format!("{rating}-star review on {platform} ({location})")
                }
                _ => format!("{rating}-star review on {platform}"),
            };
            Some((*rating, title))
        }
        _ => None,
    }
}

/// The console path of a review (the review inbox's page).
pub fn review_link(tenant: &Tenant, id: RecordId) -> String {
    format!("/t/{}/reviews/{id}", tenant.slug)
}

/// The review's id and alert title when `record` is a review at or below the rule's threshold.
fn negative_review(rule: &ReviewRule, stored: &Stored<SignalRecord>) -> Option<(RecordId, String)> {
    review_title(&stored.record)
        .filter(|(rating, _)| *rating <= rule.max_rating)
        .map(|(_, title)| (stored.id, title))
}

/// Raises an alert for each of the `reviews` (id and title) just created; returns how many
/// alerts were created.
fn alert_reviews(
    context: &AppContext,
    tenant: TenantId,
    rule: &ReviewRule,
    reviews: Vec<(RecordId, String)>,
) -> Result<usize, AlertError> {
    if reviews.is_empty() {
        return Ok(0);
    }
    let Some(tenant_record) = context.tenants.get(tenant)? else {
        return Ok(0);
    };
    let recipients = review_recipients(context, tenant, rule)?;
    let mut created = 0;
    for (id, title) in reviews {
        let raised = raise(
            context,
            &Actor::system(),
            tenant,
            NewAlert {
                kind: AlertKind::NegativeReview,
                subject: id,
                link: review_link(&tenant_record, id),
                title,
                recipients: recipients.clone(),
            },
        )?;
        if matches!(raised, Raised::Created(_)) {
            created += 1;
        }
    }
    Ok(created)
}

/// After a committed import of signals: alerts for the negative reviews the run created (those
/// first imported since the run started, found newest first, so the walk stops at the first older
/// record; only their ids and titles are kept). Updates of existing reviews do not alert, and
/// neither do reviews imported while the rule was off. Failures are logged by run id, not
/// returned: the import has committed.
pub fn after_import(context: &AppContext, tenant: TenantId, run: &ImportRun) -> usize {
    if run.state != ImportState::Committed
        || run.format.kind() != RecordKind::Signal
        || run.imported == 0
    {
        return 0;
    }
    let result = (|| -> Result<usize, AlertError> {
        let rule = AlertStore::new(context.store.clone()).review_rule(tenant)?;
        if !rule.enabled {
            return Ok(0);
        }
        let signals = SignalStore::new(context.store.clone()).records(tenant)?;
        let mut negative = Vec::new();
        for entry in signals.scan_newest_first(None) {
            let (_, stored) = entry?;
            if stored.first_imported < run.started {
                break;
            }
            negative.extend(negative_review(&rule, &stored));
        }
        // Oldest first, so the inbox (newest first) lists them in the file's order of creation.
        negative.reverse();
        alert_reviews(context, tenant, &rule, negative)
    })();
    result.unwrap_or_else(|error| {
        tracing::warn!(import = %run.id, %error, "negative-review alerts of an import not raised");
        0
    })
}

/// After a record was written through the API or a webhook: an alert when it is a newly created
/// review at or below the threshold. Failures are logged by record id, not returned: the write
/// has committed.
pub fn after_write(
    context: &AppContext,
    tenant: TenantId,
    kind: RecordKind,
    id: RecordId,
    created: bool,
) {
    if !created || kind != RecordKind::Signal {
        return;
    }
    let result = (|| -> Result<usize, AlertError> {
        let rule = AlertStore::new(context.store.clone()).review_rule(tenant)?;
        if !rule.enabled {
            return Ok(0);
        }
        let Some(stored) = SignalStore::new(context.store.clone()).get(tenant, id)? else {
            return Ok(0);
        };
        alert_reviews(
            context,
            tenant,
            &rule,
            negative_review(&rule, &stored).into_iter().collect(),
        )
    })();
    if let Err(error) = result {
        tracing::warn!(signal = %id, %error, "negative-review alert of a written review not raised");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert() -> Alert {
        let now = Utc::now();
        Alert {
            id: AlertId::new(),
            kind: AlertKind::NegativeReview,
            subject: RecordId::new(),
            link: "/t/acme/reviews/x".to_owned(),
            title: "1-star review on google".to_owned(),
            created: now,
            recipients: vec![UserId::new()],
            assignee: None,
            state: AlertState::Open,
            history: vec![HistoryEntry {
                at: now,
                actor: Actor::system(),
                change: Change::Raised,
            }],
        }
    }

    fn actor() -> Actor {
        Actor {
            user: Some(UserId::new()),
            label: "csm@acme.example".to_owned(),
        }
    }

    #[test]
    fn acknowledge_then_resolve_with_a_note_records_each_change() {
        let now = Utc::now();
        let acknowledged = apply(&alert(), &Action::Acknowledge, &actor(), now).unwrap();
        assert_eq!(acknowledged.status(now), Status::Acknowledged);
        let resolved = apply(
            &acknowledged,
            &Action::Resolve("  called the customer\r\nrefund issued ".to_owned()),
            &actor(),
            now,
        )
        .unwrap();
        assert_eq!(
            resolved.state,
            AlertState::Resolved {
                note: "called the customer\nrefund issued".to_owned()
            }
        );
        let changes: Vec<_> = resolved.history.iter().map(|entry| &entry.change).collect();
        assert_eq!(changes.len(), 3);
        assert_eq!(*changes[1], Change::Acknowledged);
        assert!(matches!(changes[2], Change::Resolved { .. }));
        assert_eq!(resolved.history[2].actor.label, "csm@acme.example");
    }

    #[test]
    fn resolving_needs_a_note_and_a_resolved_alert_only_reopens() {
        let now = Utc::now();
        for note in ["", "   \n "] {
            let error = apply(&alert(), &Action::Resolve(note.to_owned()), &actor(), now)
                .unwrap_err()
                .to_string();
            assert!(error.contains("resolution note is required"), "{error}");
        }
        let long = "x".repeat(MAX_NOTE_CHARS + 1);
        assert!(apply(&alert(), &Action::Resolve(long), &actor(), now).is_err());
        assert!(apply(
            &alert(),
            &Action::Resolve("a\u{7}b".to_owned()),
            &actor(),
            now
        )
        .is_err());

        let resolved = apply(&alert(), &Action::Resolve("done".to_owned()), &actor(), now).unwrap();
        for action in [
            Action::Acknowledge,
            Action::Snooze(now + Duration::days(1)),
            Action::Assign(UserId::new(), "x@acme.example".to_owned()),
            Action::Resolve("again".to_owned()),
        ] {
            let error = apply(&resolved, &action, &actor(), now)
                .unwrap_err()
                .to_string();
            assert!(error.contains("reopen it first"), "{action:?}: {error}");
        }
        let reopened = apply(&resolved, &Action::Reopen, &actor(), now).unwrap();
        assert_eq!(reopened.state, AlertState::Open);
        assert!(apply(&reopened, &Action::Reopen, &actor(), now).is_err());
    }

    #[test]
    fn a_snooze_ends_by_itself_and_must_lie_ahead() {
        let now = Utc::now();
        let until = now + Duration::hours(3);
        let snoozed = apply(&alert(), &Action::Snooze(until), &actor(), now).unwrap();
        assert_eq!(snoozed.status(now), Status::Snoozed);
        assert_eq!(
            snoozed.status(until - Duration::seconds(1)),
            Status::Snoozed
        );
        assert_eq!(snoozed.status(until), Status::Open);
        assert_eq!(snoozed.status(until + Duration::days(2)), Status::Open);
        // Once it shows as open again it can be acknowledged, and reopening it is refused.
        let later = until + Duration::minutes(1);
        assert!(apply(&snoozed, &Action::Reopen, &actor(), later).is_err());
        assert!(apply(&snoozed, &Action::Acknowledge, &actor(), later).is_ok());

        assert!(apply(&alert(), &Action::Snooze(now), &actor(), now).is_err());
        assert!(apply(
            &alert(),
            &Action::Snooze(now + Duration::days(MAX_SNOOZE_DAYS + 1)),
            &actor(),
            now
        )
        .is_err());
    }

    #[test]
    fn assigning_keeps_the_state_and_names_the_assignee() {
        let now = Utc::now();
        let colleague = UserId::new();
        let assigned = apply(
            &alert(),
            &Action::Assign(colleague, "ana@acme.example".to_owned()),
            &actor(),
            now,
        )
        .unwrap();
        assert_eq!(assigned.assignee, Some(colleague));
        assert_eq!(assigned.state, AlertState::Open);
        assert!(assigned.concerns(colleague));
        assert_eq!(
            assigned.history.last().unwrap().change,
            Change::Assigned {
                to: colleague,
                label: "ana@acme.example".to_owned()
            }
        );
        assert!(apply(
            &assigned,
            &Action::Assign(colleague, "ana@acme.example".to_owned()),
            &actor(),
            now
        )
        .is_err());
    }

    #[test]
    fn snooze_choices_end_where_the_form_says() {
        let now = Utc::now();
        assert_eq!(
            SnoozeFor::parse("day", "").unwrap().end(now),
            now + Duration::days(1)
        );
        assert_eq!(
            SnoozeFor::parse("week", "").unwrap().end(now),
            now + Duration::weeks(1)
        );
        let date = SnoozeFor::parse("date", " 2031-02-03 ").unwrap().end(now);
        assert_eq!(date.to_rfc3339(), "2031-02-03T00:00:00+00:00");
        assert!(SnoozeFor::parse("date", "03/02/2031").is_err());
        assert!(SnoozeFor::parse("month", "").is_err());
    }

    #[test]
    fn a_review_title_holds_rating_platform_and_location_only() {
        let record = SignalRecord {
            source_system: "csv".to_owned(),
            source_id: "r1".to_owned(),
            account: None,
            contact: Some("jonas@example.org".to_owned()),
            occurred_at: Utc::now(),
            signal: Signal::Review {
                platform: "google".to_owned(),
                rating: 1,
                text: Some("Terrible, ask for Jonas".to_owned()),
                reviewer: Some("Jonas K.".to_owned()),
                location: Some("Berlin Mitte".to_owned()),
                reply: None,
            },
        };
        let (rating, title) = review_title(&record).unwrap();
        assert_eq!(rating, 1);
        assert_eq!(title, "1-star review on google (Berlin Mitte)");
    }
}
