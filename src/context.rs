//! The opened appliance: configuration, store, audit log and the domain stores, shared by the web
//! server and the command line so both go through the same domain functions.

use std::time::Duration;

use crate::accounts::{AccountStore, ContactStore};
use crate::audit::{AuditEntry, AuditError, AuditEvent, AuditLog};
use crate::auth::password::{HashError, PasswordHasher};
use crate::auth::session::{SessionLifetimes, SessionStore};
use crate::auth::throttle::{Throttle, ThrottlePolicy};
use crate::config::Config;
use crate::interactions::InteractionStore;
use crate::signals::SignalStore;
use crate::store::{KeyError, MasterKey, OpenMode, Store, StoreError, StoreSettings};
use crate::tenants::TenantStore;
use crate::users::UserStore;

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error("cannot undo an interrupted import: {0}")]
    Recovery(#[from] crate::ingest::IngestError),
}

pub struct AppContext {
    pub config: Config,
    pub store: Store,
    pub audit_log: AuditLog,
    pub tenants: TenantStore,
    pub users: UserStore,
    pub sessions: SessionStore,
    pub interactions: InteractionStore,
    pub accounts: AccountStore,
    pub contacts: ContactStore,
    pub signals: SignalStore,
    pub hasher: PasswordHasher,
    pub throttle: Throttle,
    pub lifetimes: SessionLifetimes,
    /// Progress of the console's running imports (memory only).
    pub live_imports: crate::ingest::live::LiveImports,
    pub api_keys: crate::api::keys::ApiKeyStore,
    pub integrations: crate::api::webhooks::IntegrationStore,
    /// Webhook signatures seen recently, so that a replayed request is refused.
    pub webhook_replays: crate::api::webhooks::ReplayGuard,
    /// The analysis job queue and the stored analyses.
    pub analysis: crate::analysis::store::AnalysisStore,
    /// When the last backup was taken (memory only), for `/metrics`.
    pub backups: crate::backup::scheduled::BackupStatus,
    /// Retention runs this process made (any trigger), for `/metrics`.
    pub retention_runs: std::sync::atomic::AtomicU64,
}

impl AppContext {
    /// Loads the master key, opens the store (proving the key) and the audit log.
    pub fn open(config: Config, mode: OpenMode) -> Result<Self, ContextError> {
        let master = MasterKey::load(&config.storage.master_key_file)?;
        let settings = StoreSettings {
            data_dir: config.storage.data_dir.clone(),
            cache_capacity_bytes: config.cache_capacity_bytes(),
            min_free_disk_bytes: config.min_free_disk_bytes(),
        };
        let store = Store::open(&settings, master, mode)?;
        let audit_log = AuditLog::open(&store)?;
        let auth = &config.auth;
        let throttle = Throttle::new(ThrottlePolicy {
            account_threshold: auth.lockout_threshold,
            address_threshold: auth.address_lockout_threshold,
            base: Duration::from_secs(auth.lockout_base_seconds),
            max: Duration::from_secs(auth.lockout_max_minutes.saturating_mul(60)),
        });
        let lifetimes = SessionLifetimes {
            idle: chrono::Duration::minutes(i64::from(auth.session_idle_minutes)),
            absolute: chrono::Duration::hours(i64::from(auth.session_absolute_hours)),
        };
        let context = Self {
            hasher: PasswordHasher::new(auth.password_hash_concurrency)?,
            tenants: TenantStore::new(store.clone()),
            users: UserStore::new(store.clone()),
            sessions: SessionStore::new(store.clone()),
            interactions: InteractionStore::new(store.clone()),
            accounts: AccountStore::new(store.clone()),
            contacts: ContactStore::new(store.clone()),
            signals: SignalStore::new(store.clone()),
            api_keys: crate::api::keys::ApiKeyStore::new(store.clone()),
            integrations: crate::api::webhooks::IntegrationStore::new(store.clone()),
            analysis: crate::analysis::store::AnalysisStore::new(store.clone()),
            store,
            audit_log,
            throttle,
            lifetimes,
            live_imports: crate::ingest::live::LiveImports::default(),
            webhook_replays: crate::api::webhooks::ReplayGuard::default(),
            backups: crate::backup::scheduled::BackupStatus::default(),
            retention_runs: std::sync::atomic::AtomicU64::new(0),
            config,
        };
        // Only one process opens the database, so an import still marked running was cut off.
        let recovered = crate::ingest::recover_interrupted(&context)?;
        if recovered > 0 {
            tracing::warn!(recovered, "rolled back imports that were interrupted");
        }
        // Likewise an analysis job still marked running was cut off: it goes back to its place.
        let requeued = crate::analysis::requeue_interrupted(&context)?;
        if requeued > 0 {
            tracing::warn!(requeued, "re-queued analysis jobs that were interrupted");
        }
        // Signals' source keys gained their kind: claims stored before move once per tenant
        // (after the rollbacks above, which release claims under the keys they were made with).
        let moved = crate::records::migrate::signal_source_keys(&context)?;
        if moved.claimed > 0 || moved.released > 0 {
            tracing::info!(
                tenants = moved.tenants,
                claimed = moved.claimed,
                released = moved.released,
                "moved signal source keys to include the signal kind"
            );
        }
        // Upload spools left by a crash cannot be opened (their keys lived in memory): remove them.
        match crate::ingest::spool::purge(&context.config.storage.data_dir) {
            Ok(0) => {}
            Ok(removed) => tracing::warn!(removed, "removed unreadable upload spools"),
            Err(error) => tracing::warn!(%error, "upload spool folder not cleaned"),
        }
        Ok(context)
    }

    /// Records an audit event durably; callers fail their action when this fails.
    pub fn audit(&self, event: AuditEvent) -> Result<AuditEntry, AuditError> {
        self.audit_log.append(event)
    }

    /// Records several events with one `fsync` (one read seen from several tenants' logs).
    pub fn audit_all(&self, events: Vec<AuditEvent>) -> Result<Vec<AuditEntry>, AuditError> {
        self.audit_log.append_all(events)
    }

    pub fn uses_tls(&self) -> bool {
        self.config.server.tls.is_some()
    }
}
