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

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

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

/// An export directory being written.
struct ExportDir {
    path: PathBuf,
    files: Vec<ExportedFile>,
}

impl ExportDir {
    fn create(path: &Path) -> Result<Self, OffboardingError> {
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
            path: path.to_path_buf(),
            files: Vec::new(),
        })
    }

    fn error(&self, name: &str, source: std::io::Error) -> OffboardingError {
        OffboardingError::ExportWrite {
            path: self.path.join(name),
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
            .open(self.path.join(name))
            .map_err(|source| self.error(name, source))?;
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

/// Writes the export of `tenant` into the new directory `path` (see the module comment).
pub fn write_export(
    context: &AppContext,
    actor: &Actor,
    tenant: &Tenant,
    path: &Path,
    now: DateTime<Utc>,
) -> Result<ExportSummary, OffboardingError> {
    let mut dir = ExportDir::create(path)?;
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
    Ok(ExportSummary {
        path: path.to_path_buf(),
        files,
        manifest_sha256,
        inside_data_dir,
    })
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
