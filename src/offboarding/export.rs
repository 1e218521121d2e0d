//! The offboarding export: everything of a tenant, in clear, in a new directory (mode 0700) of
//! files (mode 0600), each written once and never replaced:
//!
//! - `interactions.jsonl`: every interaction in the import schema ([`crate::ingest::export_jsonl`]),
//!   so that `rapport import --format jsonl` reads it back;
//! - `accounts.jsonl`, `contacts.jsonl`, `signals.jsonl`: every stored record (Rapport's id, the
//!   record as imported, its times), one JSON object a line;
//! - `analyses.jsonl`: every interaction's stored analyses (`{"interaction": id, "analyses": […]}`);
//! - `accounts-health.csv`: the account list with health and reasons
//!   ([`crate::accounts::export::export_all_accounts`]);
//! - `manifest.json`: the tenant, the time, and each file's record count and SHA-256. The
//!   manifest's own SHA-256 is the export's digest, printed and audited.
//!
//! The export is the one deliberate path by which a tenant's content leaves through the operator:
//! each part is audited as a read of personal data in the tenant's log, and the start of the
//! offboarding on the appliance's. An export the console wrote under the data directory is
//! removed by the purge; one the command line wrote elsewhere is the operator's to hand over.
//!
//! Never a partial copy: until the offboarding that names the export is saved, the directory is
//! held by an [`ExportGuard`], which removes what this export created when any step fails (a
//! file, a store read, an audit entry, the offboarding record) or panics. Under the data
//! directory's `exports` the whole directory goes; elsewhere only the files this export created
//! and then the directory, if nothing else was put in it.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::audit::{Actor, AuditAction, AuditEvent};
use crate::context::AppContext;
use crate::offboarding::OffboardingError;
use crate::records::{RecordStore, SourceRecord};
use crate::tenants::Tenant;

/// The name of the manifest in an export directory.
pub const MANIFEST: &str = "manifest.json";

/// One file of an export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedFile {
    pub name: String,
    /// Records (lines, or CSV rows without the header) in the file.
    pub records: u64,
    pub sha256: String,
}

/// What an export wrote, kept with the offboarding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportSummary {
    pub path: PathBuf,
    pub files: Vec<ExportedFile>,
    pub manifest_sha256: String,
    /// Written by the console under the data directory: the purge removes it.
    pub inside_data_dir: bool,
}

impl ExportSummary {
    fn count(&self, name: &str) -> u64 {
        self.files
            .iter()
            .find(|file| file.name == name)
            .map_or(0, |file| file.records)
    }

    /// `N interactions, N accounts, N contacts, N signals, N analysed interactions`.
    pub fn counts_text(&self) -> String {
        format!(
            "{} interactions, {} accounts, {} contacts, {} signals, {} analysed interactions",
            self.count("interactions.jsonl"),
            self.count("accounts.jsonl"),
            self.count("contacts.jsonl"),
            self.count("signals.jsonl"),
            self.count("analyses.jsonl")
        )
    }
}

#[derive(Serialize)]
struct Manifest<'a> {
    format: &'static str,
    tenant_id: String,
    tenant_slug: &'a str,
    tenant_name: &'a str,
    exported_at: DateTime<Utc>,
    files: &'a [ExportedFile],
}

/// A writer that hashes what passes through it.
struct Hashing<W: Write> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// An export directory this export created and that no saved offboarding names yet: dropped
/// while armed (an error returned with `?`, or a panic), it removes what the export wrote, so a
/// failed start leaves no plaintext copy of the tenant that no purge would ever remove.
/// [`ExportGuard::keep`] disarms it once the offboarding is durably saved.
#[derive(Debug)]
#[must_use = "dropping the guard removes the export; call `keep` once the offboarding is saved"]
pub struct ExportGuard {
    path: PathBuf,
    /// The files this export created in it (complete or not), by name.
    created: Vec<String>,
    /// The directory is `<data_dir>/exports/<name>`, where only exports live: it goes whole.
    in_exports: bool,
    armed: bool,
}

impl ExportGuard {
    /// Guards `path`, just created by this export; `exports` is `<data_dir>/exports`.
    fn new(path: &Path, exports: &Path) -> Self {
        let in_exports = path.parent() == Some(exports)
            && matches!(path.components().next_back(), Some(Component::Normal(_)))
            && !path
                .components()
                .any(|component| matches!(component, Component::ParentDir));
        Self {
            path: path.to_path_buf(),
            created: Vec::new(),
            in_exports,
            armed: true,
        }
    }

    /// The offboarding naming the export is saved: the export stays (the purge removes it when
    /// it lies under the data directory).
    pub fn keep(mut self) {
        self.armed = false;
    }

    fn remove(&self) -> std::io::Result<()> {
        if self.in_exports {
            return match std::fs::remove_dir_all(&self.path) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
                _ => Ok(()),
            };
        }
        // Outside the data directory: only what this export created, never anything else.
        for name in &self.created {
            match std::fs::remove_file(self.path.join(name)) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
        }
        match std::fs::remove_dir(&self.path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }
}

impl Drop for ExportGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // The error being returned stays the caller's; a failed removal is logged with the
        // path (the operator's directory, or `exports/offboarding-<slug>-<time>`), no content.
        if let Err(error) = self.remove() {
            tracing::error!(
                path = %self.path.display(),
                %error,
                "could not remove a failed offboarding export; remove it by hand"
            );
        }
    }
}

/// An export directory being written.
struct ExportDir {
    guard: ExportGuard,
    files: Vec<ExportedFile>,
}

impl ExportDir {
    /// Creates the new directory `path` (refused when it exists), guarded; `exports` is
    /// `<data_dir>/exports`.
    fn create(path: &Path, exports: &Path) -> Result<Self, OffboardingError> {
        DirBuilder::new()
            .mode(0o700)
            .create(path)
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::AlreadyExists => {
                    OffboardingError::ExportExists(path.to_path_buf())
                }
                _ => OffboardingError::ExportWrite {
                    path: path.to_path_buf(),
                    source,
                },
            })?;
        Ok(Self {
            guard: ExportGuard::new(path, exports),
            files: Vec::new(),
        })
    }

    fn error(&self, name: &str, source: std::io::Error) -> OffboardingError {
        OffboardingError::ExportWrite {
            path: self.guard.path.join(name),
            source,
        }
    }

    /// Writes file `name` (new, 0600) with `contents`, which returns its record count; the file is
    /// `fsync`ed before its digest is kept.
    fn file(
        &mut self,
        name: &str,
        contents: impl FnOnce(&mut Hashing<BufWriter<&mut File>>) -> Result<u64, OffboardingError>,
    ) -> Result<u64, OffboardingError> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(self.guard.path.join(name))
            .map_err(|source| self.error(name, source))?;
        self.guard.created.push(name.to_owned());
        let (records, digest) = {
            let mut writer = Hashing {
                inner: BufWriter::new(&mut file),
                hasher: Sha256::new(),
            };
            let records = contents(&mut writer)?;
            writer.flush().map_err(|source| self.error(name, source))?;
            (records, hex::encode(writer.hasher.finalize()))
        };
        file.sync_all().map_err(|source| self.error(name, source))?;
        self.files.push(ExportedFile {
            name: name.to_owned(),
            records,
            sha256: digest,
        });
        Ok(records)
    }
}

/// Every stored record of one kind, one JSON object a line.
fn write_records<R: SourceRecord>(
    records: &RecordStore<R>,
    tenant: &Tenant,
    out: &mut dyn Write,
) -> Result<u64, OffboardingError> {
    let mut count = 0;
    for entry in records.records(tenant.id)?.scan() {
        let (_, stored) = entry?;
        write_line(out, &stored)?;
        count += 1;
    }
    Ok(count)
}

fn write_line(out: &mut dyn Write, value: &impl Serialize) -> Result<(), OffboardingError> {
    serde_json::to_writer(&mut *out, value)
        .map_err(std::io::Error::other)
        .and_then(|()| out.write_all(b"\n"))
        .map_err(|source| OffboardingError::ExportWrite {
            path: PathBuf::from("(export file)"),
            source,
        })
}

/// Every interaction's stored analyses (the AI's, as made) and the QA leads' overrides of its
/// QA criteria and labels, one line per analysed interaction.
fn write_analyses(
    context: &AppContext,
    tenant: &Tenant,
    out: &mut dyn Write,
) -> Result<u64, OffboardingError> {
    let qa = crate::qa::store::QaStore::new(context.store.clone());
    let labels = crate::analysis::overrides::LabelOverrides::new(context.store.clone());
    let mut count = 0;
    for entry in context.interactions.records(tenant.id)?.scan() {
        let (id, _) = entry?;
        let analyses = context.analysis.analyses(tenant.id, id)?;
        if analyses.is_empty() {
            continue;
        }
        write_line(
            out,
            &serde_json::json!({
                "interaction": id.to_string(),
                "analyses": analyses,
                "qa_overrides": qa.overrides(tenant.id, id)?,
                "label_overrides": labels.overrides(tenant.id, id)?,
            }),
        )?;
        count += 1;
    }
    Ok(count)
}

/// Writes the export of `tenant` into the new directory `path` (see the module comment). On an
/// error nothing of it is left; on success it is kept only once the returned guard's
/// [`ExportGuard::keep`] is called, after the offboarding naming it is saved.
pub fn write_export(
    context: &AppContext,
    actor: &Actor,
    tenant: &Tenant,
    path: &Path,
    now: DateTime<Utc>,
) -> Result<(ExportSummary, ExportGuard), OffboardingError> {
    let mut dir = ExportDir::create(path, &context.store.data_dir().join("exports"))?;
    dir.file("interactions.jsonl", |out| {
        Ok(crate::ingest::export_jsonl(context, actor, tenant, out)?)
    })?;
    context.audit(AuditEvent::new(
        Some(tenant.id),
        actor.clone(),
        AuditAction::PersonalDataRead,
        "offboarding export of all accounts, contacts, signals and analyses (jsonl)",
    ))?;
    dir.file("accounts.jsonl", |out| {
        write_records(&context.accounts, tenant, out)
    })?;
    dir.file("contacts.jsonl", |out| {
        write_records(&context.contacts, tenant, out)
    })?;
    dir.file("signals.jsonl", |out| {
        write_records(&context.signals, tenant, out)
    })?;
    dir.file("analyses.jsonl", |out| write_analyses(context, tenant, out))?;
    let base = format!("/t/{}", tenant.slug);
    dir.file("accounts-health.csv", |out| {
        let count =
            crate::accounts::export::export_all_accounts(context, actor, tenant.id, &base, out)?;
        Ok(count as u64)
    })?;
    let files = dir.files.clone();
    let manifest = Manifest {
        format: "rapport-tenant-export/1",
        tenant_id: tenant.id.to_string(),
        tenant_slug: tenant.slug.as_str(),
        tenant_name: &tenant.name,
        exported_at: now,
        files: &files,
    };
    dir.file(MANIFEST, |out| {
        serde_json::to_writer_pretty(&mut *out, &manifest)
            .map_err(std::io::Error::other)
            .map_err(|source| OffboardingError::ExportWrite {
                path: PathBuf::from(MANIFEST),
                source,
            })?;
        Ok(0)
    })?;
    crate::store::keys::sync_parent(&path.join(MANIFEST)).map_err(|error| {
        OffboardingError::ExportWrite {
            path: path.to_path_buf(),
            source: std::io::Error::other(error.to_string()),
        }
    })?;
    let manifest_sha256 = dir
        .files
        .last()
        .map(|file| file.sha256.clone())
        .unwrap_or_default();
    let inside_data_dir = path.starts_with(context.store.data_dir());
    Ok((
        ExportSummary {
            path: path.to_path_buf(),
            files,
            manifest_sha256,
            inside_data_dir,
        },
        dir.guard,
    ))
}

/// Removes an export the console wrote under the data directory (the purge's last step); one
/// written elsewhere is left alone. A failure is logged, not fatal: the keys are already gone.
pub fn remove_if_inside_data_dir(context: &AppContext, export: &ExportSummary) {
    if !export.inside_data_dir || !export.path.starts_with(context.store.data_dir()) {
        return;
    }
    if let Err(error) = std::fs::remove_dir_all(&export.path) {
        if error.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(%error, "could not remove an offboarding export under the data directory");
        }
    }
}

/// Where the console writes a tenant's export: `<data_dir>/exports/offboarding-<slug>-<time>`
/// (the `exports` directory is created with mode 0700 when missing).
pub fn console_export_path(
    context: &AppContext,
    tenant_slug: &str,
    now: DateTime<Utc>,
) -> Result<PathBuf, OffboardingError> {
    let exports = context.store.data_dir().join("exports");
    DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(&exports)
        .map_err(|source| OffboardingError::ExportWrite {
            path: exports.clone(),
            source,
        })?;
    Ok(exports.join(format!(
        "offboarding-{tenant_slug}-{}",
        now.format("%Y%m%dT%H%M%SZ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a first file with content, then fails writing `contacts.jsonl` part-way, as a
    /// store error or a full disk would, returning the error with `?` as `write_export` does.
    fn fail_part_way(dir: &mut ExportDir) -> Result<(), OffboardingError> {
        dir.file("interactions.jsonl", |out| {
            out.write_all(b"{\"text\":\"a customer's words\"}\n")
                .map_err(|source| OffboardingError::ExportWrite {
                    path: PathBuf::from("interactions.jsonl"),
                    source,
                })?;
            Ok(1)
        })?;
        dir.file("contacts.jsonl", |out| {
            out.write_all(b"{\"name\":\"half a rec")
                .and_then(|()| out.flush())
                .and(Err(std::io::Error::other("injected: no space left")))
                .map_err(|source| OffboardingError::ExportWrite {
                    path: PathBuf::from("contacts.jsonl"),
                    source,
                })
        })?;
        Ok(())
    }

    fn exports_dir(data: &Path) -> PathBuf {
        let exports = data.join("exports");
        std::fs::create_dir(&exports).unwrap();
        exports
    }

    #[test]
    fn a_failed_export_under_the_data_directory_is_removed_whole_and_nothing_else() {
        let data = tempfile::tempdir().unwrap();
        let exports = exports_dir(data.path());
        let kept = exports.join("offboarding-other-20260101T000000Z");
        std::fs::create_dir(&kept).unwrap();
        std::fs::write(kept.join(MANIFEST), b"{}").unwrap();
        let path = exports.join("offboarding-acme-20260102T030405Z");

        let mut dir = ExportDir::create(&path, &exports).unwrap();
        let error = fail_part_way(&mut dir).unwrap_err();
        assert!(error.to_string().contains("injected"), "{error}");
        // Written so far: the complete file and the partial one.
        assert!(
            std::fs::metadata(path.join("interactions.jsonl"))
                .unwrap()
                .len()
                > 0
        );
        assert!(path.join("contacts.jsonl").exists());
        drop(dir);

        assert!(!path.exists(), "the partial export is left behind");
        assert!(kept.join(MANIFEST).exists(), "another export was touched");
        assert!(exports.exists());
    }

    #[test]
    fn a_failed_export_elsewhere_loses_only_the_files_it_created() {
        let parent = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let exports = exports_dir(data.path());
        let path = parent.path().join("handover");

        let mut dir = ExportDir::create(&path, &exports).unwrap();
        assert!(fail_part_way(&mut dir).is_err());
        drop(dir);
        assert!(!path.exists(), "the partial export is left behind");

        // Something else put into the directory meanwhile is never removed (nor is the directory).
        let mut dir = ExportDir::create(&path, &exports).unwrap();
        assert!(fail_part_way(&mut dir).is_err());
        std::fs::write(path.join("notes.txt"), b"the operator's").unwrap();
        drop(dir);
        assert!(!path.join("interactions.jsonl").exists());
        assert!(!path.join("contacts.jsonl").exists());
        assert_eq!(
            std::fs::read(path.join("notes.txt")).unwrap(),
            b"the operator's"
        );
    }

    #[test]
    fn a_kept_export_stays_and_a_path_escaping_the_exports_is_not_removed_whole() {
        let data = tempfile::tempdir().unwrap();
        let exports = exports_dir(data.path());
        let path = exports.join("offboarding-acme-20260102T030405Z");
        let mut dir = ExportDir::create(&path, &exports).unwrap();
        dir.file("interactions.jsonl", |_| Ok(0)).unwrap();
        dir.guard.keep();
        assert!(path.join("interactions.jsonl").exists());

        assert!(ExportGuard::new(&path, &exports).in_exports);
        for outside in [
            exports.clone(),
            exports.join(".."),
            exports.join("a").join("b"),
            data.path().join("other").join("x"),
        ] {
            let guard = ExportGuard::new(&outside, &exports);
            assert!(!guard.in_exports, "{outside:?}");
            guard.keep();
        }
    }
}
