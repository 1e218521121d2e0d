//! The audit log: who did what to which record, when, from where, and how it ended.
//!
//! Entries are appended to their own segment files beside the database (see [`log`]), each sealed
//! under the appliance's audit key and chained to the previous one by SHA-256, so that an altered,
//! removed or reordered entry is detected by `rapport audit verify`. An action that must be audited
//! fails when its entry cannot be written. Tenant entries are visible to that tenant's auditors and
//! privacy officers, appliance entries (no tenant) to operators.

pub mod log;
pub mod routes;

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{TenantId, UserId};

pub use log::{AuditError, AuditLog, PruneReport, VerifyReport};

/// Who acted: a user, or the command line / the system itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub user: Option<UserId>,
    /// The user's e-mail, or `cli`, `system`, or the e-mail typed at a failed login.
    pub label: String,
}

impl Actor {
    pub fn cli() -> Self {
        Self {
            user: None,
            label: "command line".to_owned(),
        }
    }

    pub fn system() -> Self {
        Self {
            user: None,
            label: "system".to_owned(),
        }
    }
}

/// What happened. The string forms are stable: reports and filters depend on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    Login,
    LoginFailed,
    LockedOut,
    Logout,
    PasswordChanged,
    TotpEnrolled,
    RecoveryCodeUsed,
    UserCreated,
    UserDisabled,
    UserEnabled,
    SecondFactorReset,
    UserPasswordReset,
    UserRoleChanged,
    TenantCreated,
    TenantSettingsChanged,
    /// An import run finished (committed, refused or rolled back); the target holds its counts.
    DataImported,
    /// Any read of personal data; the target says which.
    PersonalDataRead,
    /// A record created or updated through the API or a webhook; the target names it.
    DataWritten,
    ApiKeyCreated,
    ApiKeyRevoked,
    IntegrationCreated,
    IntegrationDisabled,
    /// A tenant's analysis backend was chosen or its settings changed; the target says which
    /// backend and, for `remote`, the host and model (never the key).
    AnalysisSettingsChanged,
    /// Someone asked for an interaction (or a tenant's interactions) to be analysed; the target
    /// names which.
    AnalysisRequested,
    /// Someone cancelled a tenant's queued analysis jobs; the target says how many.
    AnalysisCancelled,
    /// A tenant admin changed the tenant's topic list; the target says how many topics.
    AnalysisTopicsChanged,
    /// An interaction's text (redacted of PII) was sent to a tenant's remote analysis endpoint;
    /// the target names the interaction and the endpoint.
    AnalysisSentRemote,
    /// An operator approved a model file for loading; the target names its sha256 and file.
    ModelApproved,
    /// An operator revoked a model's approval; the target names its sha256 and any tenants that
    /// still used it.
    ModelRevoked,
    /// The master key was replaced (`rapport keys rotate-master`); the target holds the old and
    /// new fingerprints, never key bytes.
    KeysMasterRotated,
    /// A tenant's data key rotation started, resumed or completed (`rapport keys rotate-tenant`).
    KeysTenantRotated,
    /// A backup was written (command line or scheduler); the target holds its counts and
    /// checksum, never a record.
    BackupCreated,
    /// A backup was restored into this data directory (the first entry a restored log gets).
    BackupRestored,
    /// Expired segments were deleted from the start of the audit log; the target gives the
    /// counts and the first entry kept.
    AuditPruned,
    /// A privacy officer recorded a subject's restriction of processing or objection; the
    /// target names the subject by a keyed token, never the address.
    PrivacyRestricted,
    /// A privacy officer lifted a subject's restriction.
    PrivacyRestrictionLifted,
    /// A data subject was erased (records deleted, subject keys destroyed); the target names the
    /// subject by a keyed token's prefix and gives counts, never an address.
    PrivacyErased,
    /// The erasure ledger was re-applied to a restored database and found something to erase.
    PrivacyErasureReapplied,
    /// A QA lead overrode a QA criterion's score; the target names the interaction and criterion.
    QaOverridden,
    /// A QA lead overrode an interaction's sentiment or topics; the target names the interaction,
    /// what was overridden, and the labels before and after (labels of Rapport's and the
    /// tenant's own lists, never message text).
    AnalysisLabelOverridden,
    /// A tenant's QA scorecard was changed.
    QaScorecardChanged,
    /// A batch of feedback requests was prepared; the target names the batch and its counts
    /// (contacts by record id only, never an address).
    FeedbackBatchCreated,
    /// A batch's requests were exported as CSV; the target names the batch and its contacts' ids.
    FeedbackExported,
    /// One feedback request was sent through the SMTP relay (or failed: outcome and class); the
    /// target names the batch and the contact's record id.
    FeedbackSent,
    /// A tenant admin changed the feedback-request template, review link or waiting period.
    FeedbackSettingsChanged,
    /// An alert rule raised an alert; the target names the alert, its kind and its subject's id.
    AlertRaised,
    /// Someone acknowledged an alert.
    AlertAcknowledged,
    /// Someone assigned an alert to a user of the tenant; the target names both by id.
    AlertAssigned,
    /// Someone snoozed an alert until a time the target gives.
    AlertSnoozed,
    /// Someone resolved an alert (with a note, which stays in the alert, not in the log).
    AlertResolved,
    /// Someone reopened an acknowledged, snoozed or resolved alert.
    AlertReopened,
    /// A tenant admin changed an alert rule; the target says which rule and its settings.
    AlertRuleChanged,
    /// Someone marked an interaction as a lead; the target names the interaction.
    LeadMarked,
    /// Someone took the lead mark off an interaction.
    LeadUnmarked,
    /// A lead's status changed; the target names the lead and the old and new status.
    LeadStatusChanged,
    /// A lead was assigned; the target names the lead and the user by id.
    LeadAssigned,
    /// Qualified leads were exported as a CRM's CSV; the target holds the format and counts.
    LeadsExported,
    /// A tenant admin changed the CRM webhook settings (never the secret's value).
    CrmSettingsChanged,
    /// One attempt to deliver a lead to the CRM webhook; the target names the delivery, the
    /// lead, the URL's host and the outcome, never the payload.
    CrmDeliveryAttempted,
    /// Someone put a failed CRM delivery back in the queue.
    CrmDeliveryRequeued,
    /// A review's status changed (new, drafted, replied, ignored); the target names the review
    /// and both statuses.
    ReviewStatusChanged,
    /// Someone saved a review's reply draft; the target names the review.
    ReviewDraftSaved,
    /// Someone asked for a new reply draft of a review; the target names the review.
    ReviewDraftRequested,
    /// Reviews with their replies were exported; the target says the format and how many.
    ReviewsExported,
    /// A tenant admin changed the reply-draft settings; the target says the mode.
    ReviewSettingsChanged,
    /// A tenant admin changed the account-health configuration (measures, bands, churn rules);
    /// the target holds the settings, no tenant content.
    HealthConfigChanged,
    /// The account list with health and its reasons was exported as CSV; the target says how
    /// many accounts.
    AccountsExported,
    /// The QA report was exported as CSV; the target says the filters and how many rows.
    QaReportExported,
    /// Someone asked for an account's briefing to be written again; the target names the account.
    BriefingRequested,
    /// A privacy officer changed a tenant's retention policies; the target holds the periods
    /// (numbers only).
    RetentionPolicyChanged,
    /// A retention sweep ran (command line, console or scheduler); the target holds its counts
    /// per category, deleted and held, and its error kinds.
    RetentionRun,
    /// A privacy officer placed a legal hold; the target names it by id and kind, never its
    /// subject's address.
    LegalHoldCreated,
    /// A privacy officer released a legal hold.
    LegalHoldReleased,
    /// A dashboard chart's data was downloaded as CSV; the target names the chart and range.
    DashboardExported,
    /// `rapport insights rebuild` rebuilt a tenant's dashboard aggregates; the target has counts.
    InsightsRebuilt,
    RecordsReindexed,
    /// The operator started a tenant's offboarding (export written, wind-down begun); the
    /// target names the tenant and holds the export's counts and digest, the purge date.
    TenantOffboardingStarted,
    /// The operator cancelled a tenant's offboarding during its wind-down.
    TenantOffboardingCancelled,
    /// A tenant's keys and data were destroyed after its wind-down; the target holds counts.
    TenantPurged,
    /// A privacy officer recorded a data-subject request; the target names the request by id and
    /// kind and the subject by a keyed-token label, never the identifier itself.
    DsarCreated,
    /// A request moved from one state to another (verified, in progress, completed, rejected);
    /// the target names the request and both states.
    DsarStateChanged,
    /// A contact was rectified through a request; the target names the request, the contact's
    /// record id and the fields changed (names only, never values).
    DsarRectified,
    /// An access or portability package was built; the target names the request and counts.
    DsarPackageCreated,
    /// A privacy officer downloaded a package (or a part of it); the target names which.
    DsarPackageDownloaded,
    /// The scheduler deleted an expired package; the target names the request.
    DsarPackageExpired,
    /// The daily reminder of overdue and due-soon requests; the target names them by id.
    DsarReminder,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Login => "auth.login",
            Self::LoginFailed => "auth.login_failed",
            Self::LockedOut => "auth.locked_out",
            Self::Logout => "auth.logout",
            Self::PasswordChanged => "auth.password_changed",
            Self::TotpEnrolled => "auth.totp_enrolled",
            Self::RecoveryCodeUsed => "auth.recovery_code_used",
            Self::UserCreated => "user.created",
            Self::UserDisabled => "user.disabled",
            Self::UserEnabled => "user.enabled",
            Self::SecondFactorReset => "user.second_factor_reset",
            Self::UserPasswordReset => "user.password_reset",
            Self::UserRoleChanged => "user.role_changed",
            Self::TenantCreated => "tenant.created",
            Self::TenantSettingsChanged => "tenant.settings_changed",
            Self::DataImported => "data.imported",
            Self::PersonalDataRead => "personal_data.read",
            Self::DataWritten => "data.written",
            Self::ApiKeyCreated => "api_key.created",
            Self::ApiKeyRevoked => "api_key.revoked",
            Self::IntegrationCreated => "integration.created",
            Self::IntegrationDisabled => "integration.disabled",
            Self::AnalysisSettingsChanged => "analysis.settings_changed",
            Self::AnalysisRequested => "analysis.requested",
            Self::AnalysisCancelled => "analysis.cancelled",
            Self::AnalysisTopicsChanged => "analysis.topics_changed",
            Self::AnalysisSentRemote => "analysis.sent_remote",
            Self::ModelApproved => "model.approved",
            Self::ModelRevoked => "model.revoked",
            Self::KeysMasterRotated => "keys.master_rotated",
            Self::KeysTenantRotated => "keys.tenant_rotated",
            Self::BackupCreated => "backup.created",
            Self::BackupRestored => "backup.restored",
            Self::AuditPruned => "audit.pruned",
            Self::PrivacyRestricted => "privacy.restricted",
            Self::PrivacyRestrictionLifted => "privacy.restriction_lifted",
            Self::PrivacyErased => "privacy.erased",
            Self::PrivacyErasureReapplied => "privacy.erasure_reapplied",
            Self::QaOverridden => "qa.overridden",
            Self::AnalysisLabelOverridden => "analysis.label_overridden",
            Self::QaScorecardChanged => "qa.scorecard_changed",
            Self::FeedbackBatchCreated => "feedback.batch_created",
            Self::FeedbackExported => "feedback.exported",
            Self::FeedbackSent => "feedback.sent",
            Self::FeedbackSettingsChanged => "feedback.settings_changed",
            Self::AlertRaised => "alert.raised",
            Self::AlertAcknowledged => "alert.acknowledged",
            Self::AlertAssigned => "alert.assigned",
            Self::AlertSnoozed => "alert.snoozed",
            Self::AlertResolved => "alert.resolved",
            Self::AlertReopened => "alert.reopened",
            Self::AlertRuleChanged => "alert.rule_changed",
            Self::LeadMarked => "lead.marked",
            Self::LeadUnmarked => "lead.unmarked",
            Self::LeadStatusChanged => "lead.status_changed",
            Self::LeadAssigned => "lead.assigned",
            Self::LeadsExported => "lead.exported",
            Self::CrmSettingsChanged => "crm.settings_changed",
            Self::CrmDeliveryAttempted => "crm.delivery_attempted",
            Self::CrmDeliveryRequeued => "crm.delivery_requeued",
            Self::ReviewStatusChanged => "review.status_changed",
            Self::ReviewDraftSaved => "review.draft_saved",
            Self::ReviewDraftRequested => "review.draft_requested",
            Self::ReviewsExported => "review.exported",
            Self::ReviewSettingsChanged => "review.settings_changed",
            Self::HealthConfigChanged => "health.config_changed",
            Self::AccountsExported => "account.exported",
            Self::QaReportExported => "qa.exported",
            Self::BriefingRequested => "account.briefing_requested",
            Self::RetentionPolicyChanged => "retention.policy_changed",
            Self::RetentionRun => "retention.run",
            Self::LegalHoldCreated => "legal_hold.created",
            Self::LegalHoldReleased => "legal_hold.released",
            Self::DashboardExported => "dashboard.exported",
            Self::InsightsRebuilt => "insights.rebuilt",
            Self::RecordsReindexed => "records.reindexed",
            Self::TenantOffboardingStarted => "tenant.offboarding_started",
            Self::TenantOffboardingCancelled => "tenant.offboarding_cancelled",
            Self::TenantPurged => "tenant.purged",
            Self::DsarCreated => "dsar.created",
            Self::DsarStateChanged => "dsar.state_changed",
            Self::DsarRectified => "dsar.rectified",
            Self::DsarPackageCreated => "dsar.package_created",
            Self::DsarPackageDownloaded => "dsar.package_downloaded",
            Self::DsarPackageExpired => "dsar.package_expired",
            Self::DsarReminder => "dsar.reminder",
        }
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Denied => "denied",
        }
    }
}

/// One event to record. Built by the domain code, stamped with sequence, time and chain hash by
/// [`AuditLog::append`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// The tenant whose data or users the event concerns; `None` for appliance events.
    pub tenant: Option<TenantId>,
    pub actor: Actor,
    pub action: AuditAction,
    /// What was acted on, e.g. `user 01J…` or `users list`. Never free text from tenant data.
    pub target: String,
    /// Client address of the request, when there was one.
    pub client: Option<String>,
    pub outcome: Outcome,
}

impl AuditEvent {
    pub fn new(
        tenant: Option<TenantId>,
        actor: Actor,
        action: AuditAction,
        target: impl Into<String>,
    ) -> Self {
        Self {
            tenant,
            actor,
            action,
            target: target.into(),
            client: None,
            outcome: Outcome::Success,
        }
    }

    #[must_use]
    pub fn client(mut self, client: Option<String>) -> Self {
        self.client = client;
        self
    }

    #[must_use]
    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }
}

/// A stored entry: the event plus its place in the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub time: DateTime<Utc>,
    /// Hex SHA-256 of the previous entry (zeros for the first).
    pub prev_hash: String,
    pub event: AuditEvent,
}

/// Which entries a reader may see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditView {
    /// Appliance entries (no tenant), for operators.
    Appliance,
    /// One tenant's entries, for its auditors and privacy officers.
    Tenant(TenantId),
}

impl AuditView {
    fn admits(self, tenant: Option<TenantId>) -> bool {
        match self {
            Self::Appliance => tenant.is_none(),
            Self::Tenant(id) => tenant == Some(id),
        }
    }
}
