//! The operator's model catalogue: every GGUF file in the model directories with what its header
//! says, its sha256, whether it may be loaded, and which tenants use it; and the audited approval
//! and revocation of a model, shared by `rapport model …` and the `/admin/models` page.
//!
//! Listing hashes every model file, and a model is hundreds of megabytes, so digests are kept in a
//! [`DigestCache`] keyed by (path, size, modification time): the page rehashes a file only when it
//! changed. The cache only speeds up *showing* and *finding* a file. Approving reads the chosen
//! file's header and digest afresh, and loading ([`crate::inference::models::approve_for_loading`])
//! always hashes the file it loads, so a file swapped behind the cache's back is never trusted.
//!
//! What the catalogue shows of tenants is their slug and name, never their content. GGUF metadata
//! is untrusted text (a crafted file can name itself anything): it is shown escaped and used for
//! nothing but display.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::SystemTime;

use chrono::Utc;

use crate::audit::{Actor, AuditAction, AuditEvent};
use crate::context::AppContext;
use crate::inference::gguf::GgufHeader;
use crate::inference::models::{self, ModelDirectories, ModelError, DEFAULT_MODEL_SHA256};
use crate::inference::store::{AnalysisSettingsStore, ModelApproval, ModelApprovals};
use crate::inference::{BackendKind, InferenceError};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("{0:?} is not a sha256: give 64 hexadecimal digits")]
    InvalidDigest(String),
    #[error(
        "the default model (sha256 {}) is built in and always approved; it cannot be revoked",
        DEFAULT_MODEL_SHA256
    )]
    DefaultModel,
    #[error("model sha256 {0} is not approved, so there is nothing to revoke")]
    NotApproved(String),
    #[error(
        "model sha256 {sha256} is used by tenant(s) {}; revoking it stops their local analysis until a tenant admin chooses another model (use --force, or tick the box, to revoke it anyway)",
        .tenants.join(", ")
    )]
    InUse {
        sha256: String,
        /// The slugs of the tenants whose `local` backend uses it.
        tenants: Vec<String>,
    },
    #[error(
        "no model file with sha256 {sha256} was found in {searched}; install the file there, or approve it with --file"
    )]
    NotFound { sha256: String, searched: String },
    #[error(
        "model file {path} changed since it was listed (its sha256 is now {sha256}); nothing was approved: look at it again"
    )]
    Changed { path: PathBuf, sha256: String },
    #[error("refused: {0}")]
    Unreadable(#[source] ModelError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error(transparent)]
    Inference(#[from] InferenceError),
    #[error(transparent)]
    Tenant(#[from] crate::tenants::TenantError),
}

/// Digests of model files, remembered while a file's size and modification time stay the same.
#[derive(Debug, Default)]
pub struct DigestCache {
    entries: Mutex<HashMap<PathBuf, CachedDigest>>,
    /// How many files were hashed (not answered from the cache), for tests and curiosity.
    hashed: AtomicU64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct CachedDigest {
    size: u64,
    modified: Option<SystemTime>,
    sha256: String,
}

/// The process's cache, shared by every request of the console.
static SHARED_DIGESTS: LazyLock<DigestCache> = LazyLock::new(DigestCache::default);

impl DigestCache {
    /// The cache the console uses (memory only; it starts empty with the process).
    pub fn shared() -> &'static Self {
        &SHARED_DIGESTS
    }

    /// The file's sha256: from the cache when its size and modification time are those it had
    /// when it was hashed, else hashed now (streamed, 1 MiB at a time).
    pub fn sha256(&self, path: &Path) -> Result<String, ModelError> {
        let before = file_stamp(path)?;
        if let Some(cached) = self.lock().get(path) {
            if (cached.size, cached.modified) == before {
                return Ok(cached.sha256.clone());
            }
        }
        let sha256 = models::sha256_file(path)?;
        self.hashed.fetch_add(1, Ordering::Relaxed);
        // A file that changed while it was read gives a digest of neither version: not kept.
        if file_stamp(path)? == before {
            self.lock().insert(
                path.to_path_buf(),
                CachedDigest {
                    size: before.0,
                    modified: before.1,
                    sha256: sha256.clone(),
                },
            );
        }
        Ok(sha256)
    }

    /// Forgets files that are no longer among `present`, so the cache does not outgrow the
    /// directories.
    pub fn retain(&self, present: &[PathBuf]) {
        self.lock().retain(|path, _| present.contains(path));
    }

    /// How many files this cache has hashed so far.
    pub fn files_hashed(&self) -> u64 {
        self.hashed.load(Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, CachedDigest>> {
        // A panic while the map was held cannot leave it half-updated (one insert or retain).
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn file_stamp(path: &Path) -> Result<(u64, Option<SystemTime>), ModelError> {
    let metadata = std::fs::metadata(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok((metadata.len(), metadata.modified().ok()))
}

/// Whether a model may be loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Approval {
    /// The built-in default model: approved from the start, cannot be revoked.
    Default,
    Approved,
    NotApproved,
}

impl Approval {
    pub fn label(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Approved => "approved",
            Self::NotApproved => "not approved",
        }
    }

    pub fn is_approved(self) -> bool {
        !matches!(self, Self::NotApproved)
    }

    pub fn is_default(self) -> bool {
        matches!(self, Self::Default)
    }
}

/// A tenant, as the catalogue names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantUse {
    pub slug: String,
    pub name: String,
}

/// One model file found in a model directory.
#[derive(Clone, Debug)]
pub struct CatalogueEntry {
    pub path: PathBuf,
    pub file_name: String,
    pub directory: PathBuf,
    pub size_bytes: u64,
    /// `None` when the file could not be read at all (see `problem`).
    pub sha256: Option<String>,
    /// `None` when the header could not be read (see `problem`).
    pub header: Option<GgufHeader>,
    /// Why the header or the digest could not be read.
    pub problem: Option<String>,
    pub approval: Approval,
    /// The tenants whose `local` backend uses this digest.
    pub tenants: Vec<TenantUse>,
    /// Other files with the same digest.
    pub same_digest_elsewhere: Vec<PathBuf>,
}

impl CatalogueEntry {
    pub fn architecture(&self) -> String {
        self.header
            .as_ref()
            .map_or_else(String::new, |header| header.architecture.clone())
    }

    /// The parameter count for people: `268.1M`, `8.03B`.
    pub fn parameters(&self) -> String {
        self.header
            .as_ref()
            .map_or_else(String::new, |header| human_count(header.parameter_count))
    }

    pub fn quantisation(&self) -> String {
        self.header
            .as_ref()
            .map_or_else(String::new, GgufHeader::quantisation)
    }

    pub fn context_length(&self) -> String {
        self.header
            .as_ref()
            .and_then(|header| header.context_length)
            .map_or_else(String::new, |length| length.to_string())
    }

    /// The size for people, in MiB or GiB.
    pub fn size(&self) -> String {
        human_bytes(self.size_bytes)
    }

    pub fn sha256_text(&self) -> &str {
        self.sha256.as_deref().unwrap_or("")
    }

    /// The tenants' slugs, comma-separated.
    pub fn tenant_slugs(&self) -> String {
        self.tenants
            .iter()
            .map(|tenant| tenant.slug.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Everything the console shows about models.
#[derive(Clone, Debug)]
pub struct Catalogue {
    /// The directories searched, in order.
    pub directories: Vec<PathBuf>,
    /// Every `.gguf` file found, directory by directory in search order.
    pub models: Vec<CatalogueEntry>,
    /// Approvals whose file is in none of the directories (it can still be revoked).
    pub approved_not_found: Vec<ModelApproval>,
}

#[allow(clippy::cast_precision_loss)] // Shown with three significant digits.
fn human_count(count: u64) -> String {
    let count_f = count as f64;
    if count >= 1_000_000_000 {
        format!("{:.2}B", count_f / 1e9)
    } else if count >= 1_000_000 {
        format!("{:.1}M", count_f / 1e6)
    } else if count >= 1_000 {
        format!("{:.1}K", count_f / 1e3)
    } else {
        count.to_string()
    }
}

#[allow(clippy::cast_precision_loss)] // Shown with one decimal.
fn human_bytes(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    let bytes_f = bytes as f64;
    if bytes_f >= 1024.0 * MIB {
        format!("{:.1} GiB", bytes_f / (1024.0 * MIB))
    } else if bytes_f >= MIB {
        format!("{:.1} MiB", bytes_f / MIB)
    } else {
        format!("{bytes} B")
    }
}

/// A sha256 typed by a person: 64 hex digits, any case, surrounding blanks ignored; lower case out.
pub fn parse_sha256(raw: &str) -> Result<String, CatalogueError> {
    let digest = raw.trim().to_ascii_lowercase();
    if digest.len() == 64 && digest.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        Ok(digest)
    } else {
        Err(CatalogueError::InvalidDigest(raw.trim().to_owned()))
    }
}

/// Which tenants' `local` backend uses which model digest (tenants without stored settings use
/// the default model when it is installed). Only slugs and names are read, besides the settings.
pub fn tenants_by_model(
    context: &AppContext,
    directories: &ModelDirectories,
) -> Result<HashMap<String, Vec<TenantUse>>, CatalogueError> {
    let settings_store = AnalysisSettingsStore::new(context.store.clone());
    let mut uses: HashMap<String, Vec<TenantUse>> = HashMap::new();
    for tenant in context.tenants.list()? {
        let settings = settings_store.get(tenant.id, directories)?;
        if settings.backend != BackendKind::Local {
            continue;
        }
        let sha256 = settings
            .model_sha256
            .unwrap_or_else(|| DEFAULT_MODEL_SHA256.to_owned());
        uses.entry(sha256).or_default().push(TenantUse {
            slug: tenant.slug.to_string(),
            name: tenant.name.clone(),
        });
    }
    Ok(uses)
}

/// Scans every model directory and describes each `.gguf` file found. A file whose header or
/// contents cannot be read is listed with the reason; nothing here loads a model.
pub fn catalogue(context: &AppContext, cache: &DigestCache) -> Result<Catalogue, CatalogueError> {
    let directories = ModelDirectories::from_config(&context.config);
    let approvals = ModelApprovals::new(context.store.clone()).list()?;
    let uses = tenants_by_model(context, &directories)?;
    let files = directories.model_files();
    cache.retain(&files);
    let mut models: Vec<CatalogueEntry> = files
        .iter()
        .map(|path| describe(path, cache, &approvals, &uses))
        .collect();
    let mut paths_by_digest: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for entry in &models {
        if let Some(sha256) = &entry.sha256 {
            paths_by_digest
                .entry(sha256.clone())
                .or_default()
                .push(entry.path.clone());
        }
    }
    for entry in &mut models {
        if let Some(paths) = entry
            .sha256
            .as_ref()
            .and_then(|sha256| paths_by_digest.get(sha256))
        {
            entry.same_digest_elsewhere = paths
                .iter()
                .filter(|path| **path != entry.path)
                .cloned()
                .collect();
        }
    }
    let approved_not_found = approvals
        .into_iter()
        .filter(|approval| !paths_by_digest.contains_key(&approval.sha256))
        .collect();
    Ok(Catalogue {
        directories: directories.as_slice().to_vec(),
        models,
        approved_not_found,
    })
}

fn approval_of(sha256: &str, approvals: &[ModelApproval]) -> Approval {
    if sha256 == DEFAULT_MODEL_SHA256 {
        Approval::Default
    } else if approvals.iter().any(|approval| approval.sha256 == sha256) {
        Approval::Approved
    } else {
        Approval::NotApproved
    }
}

fn describe(
    path: &Path,
    cache: &DigestCache,
    approvals: &[ModelApproval],
    uses: &HashMap<String, Vec<TenantUse>>,
) -> CatalogueEntry {
    let mut problems = Vec::new();
    let header = match crate::inference::gguf::read_header(path) {
        Ok(header) => Some(header),
        Err(error) => {
            problems.push(error.to_string());
            None
        }
    };
    let size_bytes = std::fs::metadata(path).map_or(0, |metadata| metadata.len());
    let sha256 = match cache.sha256(path) {
        Ok(sha256) => Some(sha256),
        Err(error) => {
            problems.push(error.to_string());
            None
        }
    };
    let approval = sha256.as_deref().map_or(Approval::NotApproved, |sha256| {
        approval_of(sha256, approvals)
    });
    let tenants = sha256
        .as_ref()
        .and_then(|sha256| uses.get(sha256))
        .cloned()
        .unwrap_or_default();
    CatalogueEntry {
        path: path.to_path_buf(),
        file_name: path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default(),
        directory: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        size_bytes,
        sha256,
        header,
        problem: (!problems.is_empty()).then(|| problems.join("; ")),
        approval,
        tenants,
        same_digest_elsewhere: Vec::new(),
    }
}

/// What an approval did.
#[derive(Clone, Debug)]
pub struct Approved {
    pub sha256: String,
    pub path: PathBuf,
    /// False when the digest was approved already (the default one, or approved before); nothing
    /// was written then.
    pub newly: bool,
}

/// Approves the model file at `path`: its header must read as GGUF, and its digest (hashed now,
/// not taken from a cache) is what is approved. Audited as `model.approved`.
pub fn approve_file(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    path: &Path,
) -> Result<Approved, CatalogueError> {
    approve_path(context, actor, client, path, None)
}

fn approve_path(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    path: &Path,
    expected_sha256: Option<&str>,
) -> Result<Approved, CatalogueError> {
    let info = models::inspect(path).map_err(CatalogueError::Unreadable)?;
    if let Some(expected) = expected_sha256 {
        if info.sha256 != expected {
            return Err(CatalogueError::Changed {
                path: info.path,
                sha256: info.sha256,
            });
        }
    }
    let approvals = ModelApprovals::new(context.store.clone());
    if info.sha256 == DEFAULT_MODEL_SHA256 || approvals.get(&info.sha256)?.is_some() {
        return Ok(Approved {
            sha256: info.sha256,
            path: info.path,
            newly: false,
        });
    }
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    approvals.approve(&ModelApproval {
        sha256: info.sha256.clone(),
        file_name: file_name.clone(),
        approved_by: actor.label.clone(),
        approved_at: Utc::now(),
    })?;
    context.audit(
        AuditEvent::new(
            None,
            actor.clone(),
            AuditAction::ModelApproved,
            format!(
                "model sha256 {} (file {file_name}, {} bytes)",
                info.sha256, info.size_bytes
            ),
        )
        .client(client),
    )?;
    tracing::info!(sha256 = %info.sha256, "model approved");
    Ok(Approved {
        sha256: info.sha256,
        path: info.path,
        newly: true,
    })
}

/// Approves the model file with digest `sha256` found in the model directories (the same checks
/// as [`approve_file`] on that file).
pub fn approve_digest(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    cache: &DigestCache,
    sha256: &str,
) -> Result<Approved, CatalogueError> {
    let sha256 = parse_sha256(sha256)?;
    let directories = ModelDirectories::from_config(&context.config);
    let found = directories
        .model_files()
        .into_iter()
        .find(|path| cache.sha256(path).is_ok_and(|digest| digest == sha256))
        .ok_or_else(|| CatalogueError::NotFound {
            sha256: sha256.clone(),
            searched: directories
                .as_slice()
                .iter()
                .map(|path| path.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    approve_path(context, actor, client, &found, Some(&sha256))
}

/// What a revocation did.
#[derive(Clone, Debug)]
pub struct Revoked {
    pub approval: ModelApproval,
    /// Tenants that used the model (only when forced).
    pub tenants: Vec<TenantUse>,
}

/// Revokes the approval of `sha256`, so that the model is no longer loaded. Refused for the
/// built-in default, for a digest that is not approved, and, unless `force`, for a model that
/// tenants use. Audited as `model.revoked`.
pub fn revoke(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    sha256: &str,
    force: bool,
) -> Result<Revoked, CatalogueError> {
    let sha256 = parse_sha256(sha256)?;
    if sha256 == DEFAULT_MODEL_SHA256 {
        return Err(CatalogueError::DefaultModel);
    }
    let approvals = ModelApprovals::new(context.store.clone());
    if approvals.get(&sha256)?.is_none() {
        return Err(CatalogueError::NotApproved(sha256));
    }
    let directories = ModelDirectories::from_config(&context.config);
    let tenants = tenants_by_model(context, &directories)?
        .remove(&sha256)
        .unwrap_or_default();
    if !tenants.is_empty() && !force {
        return Err(CatalogueError::InUse {
            sha256,
            tenants: tenants.iter().map(|tenant| tenant.slug.clone()).collect(),
        });
    }
    let approval = approvals
        .revoke(&sha256)?
        .ok_or_else(|| CatalogueError::NotApproved(sha256.clone()))?;
    let mut target = format!("model sha256 {sha256} (file {})", approval.file_name);
    if !tenants.is_empty() {
        let slugs: Vec<&str> = tenants.iter().map(|tenant| tenant.slug.as_str()).collect();
        target = format!(
            "{target}, forced while used by tenant(s) {}",
            slugs.join(", ")
        );
    }
    context.audit(
        AuditEvent::new(None, actor.clone(), AuditAction::ModelRevoked, target).client(client),
    )?;
    tracing::info!(sha256 = %sha256, "model approval revoked");
    Ok(Revoked { approval, tenants })
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::time::Duration;

    use super::*;

    #[test]
    fn an_unchanged_file_is_hashed_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.gguf");
        std::fs::write(&path, b"first contents").unwrap();
        let cache = DigestCache::default();
        let first = cache.sha256(&path).unwrap();
        assert_eq!(first, models::sha256_file(&path).unwrap());
        assert_eq!(cache.sha256(&path).unwrap(), first);
        assert_eq!(cache.files_hashed(), 1);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn the_cache_is_keyed_by_size_and_modification_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.gguf");
        std::fs::write(&path, b"aaaa").unwrap();
        let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(when)
            .unwrap();
        let cache = DigestCache::default();
        let old = cache.sha256(&path).unwrap();

        // Same size, same modification time: the cached digest is answered (this is what the
        // key promises, and why loading never relies on this cache).
        std::fs::write(&path, b"bbbb").unwrap();
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(when)
            .unwrap();
        assert_eq!(cache.sha256(&path).unwrap(), old);
        assert_eq!(cache.files_hashed(), 1);

        // A new modification time: hashed again.
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(when + Duration::from_secs(5))
            .unwrap();
        let new = cache.sha256(&path).unwrap();
        assert_ne!(new, old);
        assert_eq!(new, models::sha256_file(&path).unwrap());
        assert_eq!(cache.files_hashed(), 2);

        // A new size (same modification time): hashed again.
        std::fs::write(&path, b"bbbbb").unwrap();
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(when + Duration::from_secs(5))
            .unwrap();
        assert_eq!(
            cache.sha256(&path).unwrap(),
            models::sha256_file(&path).unwrap()
        );
        assert_eq!(cache.files_hashed(), 3);
    }

    #[test]
    fn files_gone_from_the_directories_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let kept = dir.path().join("kept.gguf");
        let gone = dir.path().join("gone.gguf");
        std::fs::write(&kept, b"kept").unwrap();
        std::fs::write(&gone, b"gone").unwrap();
        let cache = DigestCache::default();
        cache.sha256(&kept).unwrap();
        cache.sha256(&gone).unwrap();
        cache.retain(std::slice::from_ref(&kept));
        assert_eq!(cache.len(), 1);
        cache.sha256(&kept).unwrap();
        assert_eq!(cache.files_hashed(), 2);
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let cache = DigestCache::default();
        let error = cache.sha256(Path::new("/nonexistent/x.gguf")).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/x.gguf"), "{error}");
        assert!(cache.is_empty());
    }

    #[test]
    fn typed_digests_are_checked_and_lower_cased() {
        let upper = DEFAULT_MODEL_SHA256.to_ascii_uppercase();
        assert_eq!(
            parse_sha256(&format!(" {upper} ")).unwrap(),
            DEFAULT_MODEL_SHA256
        );
        assert!(parse_sha256("abc").is_err());
        assert!(parse_sha256(&"g".repeat(64)).is_err());
    }

    #[test]
    fn counts_and_sizes_read_well() {
        assert_eq!(human_count(268_098_176), "268.1M");
        assert_eq!(human_count(8_030_261_248), "8.03B");
        assert_eq!(human_count(17), "17");
        assert_eq!(human_bytes(253_115_264), "241.4 MiB");
        assert_eq!(human_bytes(100), "100 B");
    }
}
