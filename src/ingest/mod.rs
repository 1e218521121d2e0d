//! Imports and exports of tenant data.
//!
//! An import reads its file twice, streaming (a file of any size never sits in memory): the first
//! pass validates every record and collects what is wrong with which line and field; the second
//! writes the valid records in batches. Unless `--skip-invalid` is given, any invalid record means
//! nothing is written. Every batch first writes and flushes its undo journal (each touched
//! record's previous version, or "new"), then its records and index entries, so an import cut off
//! by a crash or `kill -9` is rolled back when the database is next opened: an import commits
//! whole or not at all. Re-importing the same source ids updates, never duplicates.

pub mod accounts;
pub mod csv_messages;
pub mod jsonl;
pub mod live;
pub mod mbox;
pub mod reviews;
pub mod routes;
pub mod spool;
pub mod surveys;
pub mod table;
pub mod usage;
pub mod zendesk;

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::audit::{Actor, AuditAction, AuditEvent, Outcome};
use crate::context::AppContext;
use crate::ids::{ImportId, RecordId, TenantId};
use crate::interactions::InteractionRecord;
use crate::records::{RecordKind, RecordStore, SourceRecord, Stored};
use crate::search::{IndexBatch, SearchIndex, Vocabulary};
use crate::store::{BlindIndex, Collection, Scope, StoreError, WriteSet};
use crate::tenants::Tenant;

/// Records written per commit: enough to amortise a commit's flushes, small enough to keep a
/// batch's memory to a few megabytes.
const BATCH_SIZE: usize = 2000;
/// Search postings an import collects over several commits before it writes them (one chunk per
/// distinct word): fewer, larger chunks mean far fewer scattered writes into the postings tree.
/// A batch's records are searchable once their postings are written.
const POSTINGS_BUDGET_BYTES: usize = 32 * 1024 * 1024;
/// Rejections kept in an import's report; the count covers all of them.
const MAX_REPORTED_REJECTIONS: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the export: {0}")]
    Write(std::io::Error),
    #[error("{path} changed while it was being imported; nothing was imported")]
    FileChanged { path: PathBuf },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
}

impl IngestError {
    /// A short, content-free name of the failure, for logs (the error itself may name a file
    /// that an uploader chose).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Read { .. } => "read",
            Self::Write(_) => "write",
            Self::FileChanged { .. } => "file changed",
            Self::Store(StoreError::DiskFull { .. }) => "disk full",
            Self::Store(_) => "store",
            Self::Audit(_) => "audit",
        }
    }
}

/// The file formats `rapport import` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ImportFormat {
    /// Rapport's own schema, one interaction per line (see the README).
    Jsonl,
    /// Rapport's message CSV: one row per message, grouped by interaction id.
    Csv,
    /// A Zendesk ticket export: one ticket with its comments and users per line.
    Zendesk,
    /// E-mail threads in an mbox file.
    Mbox,
    /// Public reviews: a Google Business Profile export (JSON) or Rapport's review CSV.
    Reviews,
    /// Survey answers (NPS, CSAT) as CSV.
    Surveys,
    /// Customer accounts as CSV.
    Accounts,
    /// Contacts (people at customers) as CSV.
    Contacts,
    /// Product-usage figures as CSV.
    Usage,
}

impl ImportFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Jsonl => "jsonl",
            Self::Zendesk => "zendesk",
            Self::Mbox => "mbox",
            Self::Reviews => "reviews",
            Self::Surveys => "surveys",
            Self::Accounts => "accounts",
            Self::Contacts => "contacts",
            Self::Usage => "usage",
        }
    }

    /// The kind of record the format carries.
    pub fn kind(self) -> RecordKind {
        match self {
            Self::Csv | Self::Jsonl | Self::Zendesk | Self::Mbox => RecordKind::Interaction,
            Self::Reviews | Self::Surveys | Self::Usage => RecordKind::Signal,
            Self::Accounts => RecordKind::Account,
            Self::Contacts => RecordKind::Contact,
        }
    }
}

/// One record that could not be imported: where, which field, and what is wrong. The value itself
/// is never repeated (it may be personal data).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub line: u64,
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "line {}, field {}: {}", self.line, field, self.message),
            None => write!(f, "line {}: {}", self.line, self.message),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportState {
    /// Writing; an import found in this state when the database opens was cut off and is undone.
    Running,
    /// Every valid record was written.
    Committed,
    /// Invalid records were found and `--skip-invalid` was not given: nothing was written.
    Refused,
    /// Cut off (crash, kill, full disk) and undone: nothing of it remains.
    RolledBack,
}

impl ImportState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Committed => "committed",
            Self::Refused => "refused",
            Self::RolledBack => "rolled back",
        }
    }
}

/// One import and its report, kept for the import history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportRun {
    pub id: ImportId,
    pub format: ImportFormat,
    /// The file's name (not its directory).
    pub source_name: String,
    pub actor: String,
    pub started: DateTime<Utc>,
    pub finished: Option<DateTime<Utc>>,
    pub state: ImportState,
    pub imported: u64,
    pub updated: u64,
    pub rejected: u64,
    /// The first rejections, in file order.
    pub rejections: Vec<Rejection>,
}

/// How far an import has come, for progress output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// 1 while validating, 2 while writing.
    pub pass: u8,
    pub records: u64,
    pub bytes: u64,
    pub total_bytes: u64,
}

/// What the undo journal keeps for each record an import touches.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(bound = "R: SourceRecord")]
struct JournalEntry<R> {
    record: RecordId,
    source_key: String,
    /// When the import wrote its version. A rollback undoes the record only while it still
    /// holds that version, so a later write by someone else (the API, another import, an
    /// erasure) is never undone or resurrected.
    written: DateTime<Utc>,
    /// The version before the import; `None` when the import created the record.
    previous: Option<Stored<R>>,
}

/// The journal of one write batch: one sealed value per batch, written in the batch's
/// transaction.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(bound = "R: SourceRecord")]
struct JournalBatch<R> {
    entries: Vec<JournalEntry<R>>,
}

fn runs(
    context: &AppContext,
    tenant: TenantId,
) -> Result<Collection<ImportId, ImportRun>, StoreError> {
    context.store.collection(Scope::Tenant(tenant), "imports")
}

fn journal<R: SourceRecord>(
    context: &AppContext,
    tenant: TenantId,
) -> Result<Collection<(ImportId, u64), JournalBatch<R>>, StoreError> {
    context
        .store
        .collection(Scope::Tenant(tenant), "import_journal")
}

/// A reader that counts the bytes read through it, for progress.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.count.fetch_add(read as u64, Ordering::Relaxed);
        Ok(read)
    }
}

/// A parsed file: records with their line numbers, or what is wrong where.
pub type Records<R> = Box<dyn Iterator<Item = Result<(u64, R), Rejection>>>;

/// A format's parser: from a buffered reader of the file to records. The source is there for
/// formats that must read the file more than once (an mbox is threaded before it is read); it
/// serves a sealed upload spool as well as a file.
pub type Parser<R> = fn(&dyn ImportSource, Box<dyn BufRead>) -> Records<R>;

type Opened<R> = (Records<R>, Arc<AtomicU64>, u64);

/// Where an import reads its file from. An import reads the file twice (validate, then write),
/// so a source must hand out a fresh reader from the first byte each time: a plain file, or a
/// sealed upload spool read back through its decrypting reader ([`spool::SealedSpool`]).
pub trait ImportSource {
    /// A reader from the first byte, and how many bytes it will yield (for progress).
    fn open(&self) -> std::io::Result<(Box<dyn Read>, u64)>;
}

/// A file on disk, as the command line imports it.
pub struct FileSource<'a>(pub &'a Path);

impl ImportSource for FileSource<'_> {
    fn open(&self) -> std::io::Result<(Box<dyn Read>, u64)> {
        let file = File::open(self.0)?;
        let total = file.metadata()?.len();
        Ok((Box::new(file), total))
    }
}

fn open_records<R>(
    parser: Parser<R>,
    path: &Path,
    source: &dyn ImportSource,
) -> Result<Opened<R>, IngestError> {
    let (inner, total) = source.open().map_err(|source| IngestError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let count = Arc::new(AtomicU64::new(0));
    let reader = BufReader::with_capacity(
        256 * 1024,
        Counting {
            inner,
            count: Arc::clone(&count),
        },
    );
    Ok((parser(source, Box::new(reader)), count, total))
}

/// The records of one batch, keyed by source so that a record repeated within the batch replaces
/// its earlier copy.
struct Batch<R> {
    order: Vec<String>,
    pending: HashMap<String, R>,
}

/// Writes an import's records in batches: each batch's records, source claims, search index
/// entries and undo journal in one transaction, under the tenant's writer lock.
struct Writer<'a, R: SourceRecord> {
    context: &'a AppContext,
    tenant: TenantId,
    run: ImportId,
    records: Collection<RecordId, Stored<R>>,
    sources: BlindIndex<RecordId>,
    journal: Collection<(ImportId, u64), JournalBatch<R>>,
    search: SearchIndex,
    references: crate::records::refs::TenantRefs,
    /// The search postings collected since they were last written, if any.
    index: Option<IndexBatch>,
    /// Terms met by earlier batches, with their keyed tokens (while no index batch is open).
    vocabulary: Vocabulary,
    batches: u64,
    imported: u64,
    updated: u64,
    batch: Batch<R>,
    /// The last batch's records, for the dashboard aggregates: seeds of interactions (so they
    /// are not read back), ids of other kinds.
    seeds: Vec<crate::insights::Seed>,
    written: Vec<RecordId>,
}

impl<'a, R: SourceRecord> Writer<'a, R> {
    fn new(context: &'a AppContext, tenant: TenantId, run: ImportId) -> Result<Self, StoreError> {
        let store = RecordStore::<R>::new(context.store.clone());
        Ok(Self {
            context,
            tenant,
            run,
            records: store.records(tenant)?,
            sources: store.sources(tenant)?,
            journal: journal::<R>(context, tenant)?,
            search: SearchIndex::new(context.store.clone()),
            references: crate::records::refs::RefIndex::new(context.store.clone())
                .tenant(tenant)?,
            index: None,
            vocabulary: Vocabulary::default(),
            batches: 0,
            imported: 0,
            updated: 0,
            batch: Batch {
                order: Vec::new(),
                pending: HashMap::new(),
            },
            seeds: Vec::new(),
            written: Vec::new(),
        })
    }

    fn add(&mut self, record: R) -> Result<(), IngestError> {
        let key = record.source_key();
        // A record repeated within the batch replaces its pending copy and is counted once.
        if let Some(pending) = self.batch.pending.get_mut(&key) {
            *pending = record;
            return Ok(());
        }
        self.batch.order.push(key.clone());
        self.batch.pending.insert(key, record);
        if self.batch.order.len() >= BATCH_SIZE {
            self.flush(false)?;
        }
        Ok(())
    }

    /// Writes the pending batch and, when `last` (or when the postings collected outgrow their
    /// budget), the search postings. Whether each record is new is decided under the tenant's
    /// writer lock, so a record created meanwhile through the API is updated, not claimed twice.
    fn flush(&mut self, last: bool) -> Result<(), IngestError> {
        if self.batch.order.is_empty() && !(last && self.index.is_some()) {
            return Ok(());
        }
        let store = self.context.store.clone();
        store
            .lock_scope(Scope::Tenant(self.tenant))
            .run(|| self.write_batch(last))?;
        // The batch's dashboard aggregates, once it is written (logged, never an error; a run
        // rolled back later takes them away again in `roll_back`).
        let seeds = std::mem::take(&mut self.seeds);
        if !seeds.is_empty() {
            if let Err(error) = crate::insights::refresh_seeded(self.context, self.tenant, &seeds) {
                tracing::warn!(tenant = %self.tenant, records = seeds.len(), %error, "dashboard aggregates not updated");
            }
        }
        let written = std::mem::take(&mut self.written);
        crate::insights::refresh_logged(self.context, self.tenant, R::KIND, &written);
        Ok(())
    }

    fn write_batch(&mut self, last: bool) -> Result<(), IngestError> {
        // Read what each record replaces, then stage the journal first: the batch is applied
        // tree by tree (see `Store::commit_journaled`), and the journal, applied and flushed
        // before the rest, is what lets a crash half-way through be rolled back.
        let mut entries = Vec::with_capacity(self.batch.order.len());
        let mut versions = Vec::with_capacity(self.batch.order.len());
        for key in std::mem::take(&mut self.batch.order) {
            let Some(record) = self.batch.pending.remove(&key) else {
                continue;
            };
            let previous = match self.sources.get(&key)? {
                Some(id) => self.records.get(&id)?,
                None => None,
            };
            let stored = Stored::next_version(previous.as_ref(), record);
            let is_new = previous.is_none();
            entries.push(JournalEntry {
                record: stored.id,
                source_key: key,
                written: stored.updated,
                previous,
            });
            versions.push((stored, is_new));
        }
        let mut writes = WriteSet::default();
        self.batches += 1;
        writes.put(
            &self.journal,
            &(self.run, self.batches),
            &JournalBatch { entries },
        )?;
        let mut index = if let Some(index) = self.index.take() {
            index
        } else {
            let vocabulary = std::mem::take(&mut self.vocabulary);
            self.search.batch_with(self.tenant, vocabulary)?
        };
        for (stored, is_new) in &versions {
            let texts = stored.record.search_texts();
            if *is_new {
                self.imported += 1;
                writes.claim(&self.sources, &stored.record.source_key(), &stored.id)?;
                if !texts.is_empty() {
                    index.add_new(&mut writes, stored.id, &texts)?;
                }
            } else {
                self.updated += 1;
                if texts.is_empty() {
                    index.retire(&mut writes, stored.id)?;
                } else {
                    index.add(&mut writes, stored.id, &texts)?;
                }
            }
            writes.put_for(
                &self.records,
                &stored.id,
                stored,
                stored.record.subject_key_name().as_deref(),
            )?;
            self.references
                .stage(&mut writes, R::KIND, stored.id, &stored.record.references())?;
            match (stored as &dyn std::any::Any).downcast_ref::<crate::interactions::Interaction>()
            {
                Some(interaction) => self.seeds.push(crate::insights::Seed::of(interaction)),
                None => self.written.push(stored.id),
            }
        }
        if last || index.pending_bytes() >= POSTINGS_BUDGET_BYTES {
            self.vocabulary = index.finish(&mut writes)?;
        } else {
            index.write_full(&mut writes)?;
            self.index = Some(index);
        }
        self.context.store.commit_journaled(writes)?;
        Ok(())
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || "standard input".to_owned(),
        |name| name.to_string_lossy().into_owned(),
    )
}

fn record_rejection(run: &mut ImportRun, rejection: Rejection) {
    run.rejected += 1;
    if run.rejections.len() < MAX_REPORTED_REJECTIONS {
        run.rejections.push(rejection);
    }
}

/// Everything an import needs besides the file's records.
pub struct ImportRequest<'a> {
    pub actor: &'a Actor,
    pub tenant: &'a Tenant,
    pub format: ImportFormat,
    /// The file; with [`import_from_source`], only the name it is known by (reports show its
    /// last component).
    pub path: &'a Path,
    pub skip_invalid: bool,
}

/// Imports `request.path` into the tenant. Returns the run's report; `state` says whether
/// anything was written. Errors are reserved for reading the file and for the store.
pub fn import_file(
    context: &AppContext,
    request: &ImportRequest<'_>,
    progress: &mut dyn FnMut(Progress),
) -> Result<ImportRun, IngestError> {
    import_from_source(
        context,
        request,
        &FileSource(request.path),
        ImportId::new(),
        progress,
    )
}

/// Imports what `source` yields, as run `id` (chosen by the caller, so that a page can name the
/// run before it has a stored report). `request.path` is only the name the data is known by.
pub fn import_from_source(
    context: &AppContext,
    request: &ImportRequest<'_>,
    source: &dyn ImportSource,
    id: ImportId,
    progress: &mut dyn FnMut(Progress),
) -> Result<ImportRun, IngestError> {
    match request.format {
        ImportFormat::Csv => {
            import_kind(context, request, source, id, csv_messages::parser, progress)
        }
        ImportFormat::Jsonl => import_kind(context, request, source, id, jsonl::parser, progress),
        ImportFormat::Zendesk => {
            import_kind(context, request, source, id, zendesk::parser, progress)
        }
        ImportFormat::Mbox => import_kind(context, request, source, id, mbox::parser, progress),
        ImportFormat::Reviews => {
            import_kind(context, request, source, id, reviews::parser, progress)
        }
        ImportFormat::Surveys => {
            import_kind(context, request, source, id, surveys::parser, progress)
        }
        ImportFormat::Accounts => {
            import_kind(context, request, source, id, accounts::accounts, progress)
        }
        ImportFormat::Contacts => {
            import_kind(context, request, source, id, accounts::contacts, progress)
        }
        ImportFormat::Usage => import_kind(context, request, source, id, usage::parser, progress),
    }
}

fn import_kind<R: SourceRecord>(
    context: &AppContext,
    request: &ImportRequest<'_>,
    source: &dyn ImportSource,
    id: ImportId,
    parser: Parser<R>,
    progress: &mut dyn FnMut(Progress),
) -> Result<ImportRun, IngestError> {
    let ImportRequest {
        actor,
        tenant,
        format,
        path,
        skip_invalid,
    } = *request;
    let mut run = ImportRun {
        id,
        format,
        source_name: file_name(path),
        actor: actor.label.clone(),
        started: Utc::now(),
        finished: None,
        state: ImportState::Running,
        imported: 0,
        updated: 0,
        rejected: 0,
        rejections: Vec::new(),
    };

    // Pass 1: validate everything, write nothing.
    let (records, bytes, total_bytes) = open_records(parser, path, source)?;
    let mut valid = 0u64;
    for item in records {
        match item {
            Ok(_) => valid += 1,
            Err(rejection) => record_rejection(&mut run, rejection),
        }
        let seen = valid + run.rejected;
        if seen % 1000 == 0 {
            progress(Progress {
                pass: 1,
                records: seen,
                bytes: bytes.load(Ordering::Relaxed),
                total_bytes,
            });
        }
    }
    if run.rejected > 0 && !skip_invalid {
        run.state = ImportState::Refused;
        return finish(context, tenant, actor, run);
    }

    // Pass 2: write, with the undo journal, under a run that recovery can find.
    runs(context, tenant.id)?.insert(&run.id, &run)?;
    let mut writer = Writer::<R>::new(context, tenant.id, run.id)?;
    let written = (|| -> Result<(), IngestError> {
        let (records, bytes, total_bytes) = open_records(parser, path, source)?;
        let mut seen = 0u64;
        let mut valid_again = 0u64;
        for item in records {
            seen += 1;
            if let Ok((_, record)) = item {
                valid_again += 1;
                writer.add(record)?;
            }
            if seen % 1000 == 0 {
                progress(Progress {
                    pass: 2,
                    records: seen,
                    bytes: bytes.load(Ordering::Relaxed),
                    total_bytes,
                });
            }
        }
        writer.flush(true)?;
        if valid_again == valid {
            Ok(())
        } else {
            Err(IngestError::FileChanged {
                path: path.to_path_buf(),
            })
        }
    })();
    if let Err(error) = written {
        // Undo what was written, then report the cause.
        roll_back::<R>(context, tenant.id, run.id)?;
        run.state = ImportState::RolledBack;
        finish(context, tenant, actor, run)?;
        return Err(error);
    }
    run.imported = writer.imported;
    run.updated = writer.updated;
    run.state = ImportState::Committed;
    let run = finish(context, tenant, actor, run)?;
    // Negative-review alerts for the reviews this run created (logged, never an error: the run
    // has committed).
    crate::alerts::after_import(context, tenant.id, &run);
    crate::health::after_import(context, tenant.id, &run);
    // The import is committed; a journal left behind by a failure here is only garbage (a
    // committed run is never rolled back), so it is reported, not turned into an error.
    if let Err(error) = discard_journal::<R>(context, tenant.id, run.id) {
        tracing::warn!(import = %run.id, %error, "journal of a committed import not removed");
    }
    Ok(run)
}

/// Stores the run's final report and audits it.
fn finish(
    context: &AppContext,
    tenant: &Tenant,
    actor: &Actor,
    mut run: ImportRun,
) -> Result<ImportRun, IngestError> {
    run.finished = Some(Utc::now());
    runs(context, tenant.id)?.insert(&run.id, &run)?;
    let outcome = match run.state {
        ImportState::Committed => Outcome::Success,
        _ => Outcome::Failure,
    };
    context.audit(
        AuditEvent::new(
            Some(tenant.id),
            actor.clone(),
            AuditAction::DataImported,
            format!(
                "import {} ({}): {}, {} imported, {} updated, {} rejected",
                run.id,
                run.format.as_str(),
                run.state.as_str(),
                run.imported,
                run.updated,
                run.rejected
            ),
        )
        .outcome(outcome),
    )?;
    Ok(run)
}

/// The sequence numbers of `run`'s journal batches, oldest first: keys only. The journal is
/// keyed by run first, so this reads nothing of other runs (of any record kind).
fn journal_sequence<R: SourceRecord>(
    journal: &Collection<(ImportId, u64), JournalBatch<R>>,
    run: ImportId,
) -> Result<Vec<u64>, StoreError> {
    journal
        .keys_with_prefix(&run.to_bytes())
        .map(|key| key.map(|(_, seq)| seq))
        .collect()
}

fn discard_journal<R: SourceRecord>(
    context: &AppContext,
    tenant: TenantId,
    run: ImportId,
) -> Result<(), StoreError> {
    let journal = journal::<R>(context, tenant)?;
    let sequence = journal_sequence(&journal, run)?;
    for chunk in sequence.chunks(BATCH_SIZE) {
        let mut writes = WriteSet::default();
        for seq in chunk {
            writes.remove(&journal, &(run, *seq));
        }
        context.store.commit(writes)?;
    }
    Ok(())
}

/// Restores every record the run touched to its version before the run, newest change first.
/// A record that no longer holds the run's version (changed or erased since) is left as it is.
fn roll_back<R: SourceRecord>(
    context: &AppContext,
    tenant: TenantId,
    run: ImportId,
) -> Result<(), StoreError> {
    let store = RecordStore::<R>::new(context.store.clone());
    let records = store.records(tenant)?;
    let journal = journal::<R>(context, tenant)?;
    let search = SearchIndex::new(context.store.clone());
    let references = crate::records::refs::RefIndex::new(context.store.clone()).tenant(tenant)?;
    let mut sequence = journal_sequence(&journal, run)?;
    sequence.reverse();
    let mut undone = Vec::new();
    for seq in sequence {
        context.store.lock_scope(Scope::Tenant(tenant)).run(|| {
            let Some(batch) = journal.get(&(run, seq))? else {
                return Ok(());
            };
            let mut writes = WriteSet::default();
            let mut index = search.batch(tenant)?;
            for entry in batch.entries.iter().rev() {
                undone.push(entry.record);
                let current = records.get(&entry.record)?;
                let holds_run_version = current
                    .as_ref()
                    .is_some_and(|current| current.updated == entry.written);
                // A batch that a crash cut short may have indexed the run's version while the
                // record still holds the previous one: re-index that too.
                let holds_previous = matches!(
                    (&current, &entry.previous),
                    (Some(current), Some(previous)) if current.updated == previous.updated
                );
                match &entry.previous {
                    Some(previous) if holds_run_version || holds_previous => {
                        writes.put_for(
                            &records,
                            &entry.record,
                            previous,
                            previous.record.subject_key_name().as_deref(),
                        )?;
                        references.stage(
                            &mut writes,
                            R::KIND,
                            entry.record,
                            &previous.record.references(),
                        )?;
                        let texts = previous.record.search_texts();
                        if texts.is_empty() {
                            index.retire(&mut writes, entry.record)?;
                        } else {
                            index.add(&mut writes, entry.record, &texts)?;
                        }
                    }
                    // The run created the record: remove it, and also clean up after a batch
                    // that a crash cut short (claim or index entries in, record not).
                    None if holds_run_version || current.is_none() => {
                        crate::records::delete::stage_deletion::<R>(
                            context,
                            tenant,
                            entry.record,
                            &entry.source_key,
                            &mut writes,
                            &mut index,
                        )?;
                    }
                    // Changed since by someone else (or erased): theirs to keep.
                    _ => {}
                }
            }
            writes.remove(&journal, &(run, seq));
            index.finish(&mut writes)?;
            context.store.commit(writes)
        })?;
    }
    // The dashboard aggregates of the records restored or removed (logged, never an error:
    // the rollback has committed).
    crate::insights::refresh_logged(context, tenant, R::KIND, &undone);
    Ok(())
}

fn roll_back_run(
    context: &AppContext,
    tenant: TenantId,
    run: &ImportRun,
) -> Result<(), StoreError> {
    match run.format.kind() {
        RecordKind::Interaction => roll_back::<InteractionRecord>(context, tenant, run.id),
        RecordKind::Account => roll_back::<crate::accounts::AccountRecord>(context, tenant, run.id),
        RecordKind::Contact => roll_back::<crate::accounts::ContactRecord>(context, tenant, run.id),
        RecordKind::Signal => roll_back::<crate::signals::SignalRecord>(context, tenant, run.id),
    }
}

/// Undoes run `id` of `tenant` if it is still marked running (its thread died); a run that
/// finished is left alone.
pub fn roll_back_abandoned(
    context: &AppContext,
    tenant: &Tenant,
    id: ImportId,
) -> Result<(), IngestError> {
    let Some(mut run) = runs(context, tenant.id)?.get(&id)? else {
        return Ok(());
    };
    if run.state != ImportState::Running {
        return Ok(());
    }
    roll_back_run(context, tenant.id, &run)?;
    run.state = ImportState::RolledBack;
    finish(context, tenant, &Actor::system(), run)?;
    Ok(())
}

/// Undoes imports that were cut off (found still running when the database opens). Returns how
/// many were rolled back.
pub fn recover_interrupted(context: &AppContext) -> Result<usize, IngestError> {
    let mut recovered = 0;
    let tenants = context.tenants.list().map_err(|error| match error {
        crate::tenants::TenantError::Store(store) => IngestError::Store(store),
        other => IngestError::Store(StoreError::Decode {
            collection: "tenants".to_owned(),
            message: other.to_string(),
        }),
    })?;
    for tenant in tenants {
        let interrupted: Vec<ImportRun> = runs(context, tenant.id)?
            .scan()
            .filter_map(|entry| entry.ok().map(|(_, run)| run))
            .filter(|run| run.state == ImportState::Running)
            .collect();
        for mut run in interrupted {
            roll_back_run(context, tenant.id, &run)?;
            run.state = ImportState::RolledBack;
            finish(context, &tenant, &Actor::system(), run)?;
            recovered += 1;
        }
    }
    Ok(recovered)
}

/// The tenant's import history, newest first.
pub fn history(context: &AppContext, tenant: TenantId) -> Result<Vec<ImportRun>, StoreError> {
    let mut all: Vec<ImportRun> = runs(context, tenant)?
        .scan()
        .map(|entry| entry.map(|(_, run)| run))
        .collect::<Result<_, _>>()?;
    all.reverse();
    Ok(all)
}

/// Writes every interaction of `tenant` as `jsonl` (the import schema); returns how many. The
/// export is a read of personal data and is audited before anything is written.
pub fn export_jsonl(
    context: &AppContext,
    actor: &Actor,
    tenant: &Tenant,
    out: &mut dyn Write,
) -> Result<u64, IngestError> {
    context.audit(AuditEvent::new(
        Some(tenant.id),
        actor.clone(),
        AuditAction::PersonalDataRead,
        "export of all interactions (jsonl)",
    ))?;
    let mut count = 0u64;
    for entry in context.interactions.records(tenant.id)?.scan() {
        let (_, interaction) = entry?;
        serde_json::to_writer(&mut *out, &interaction.record)
            .map_err(std::io::Error::other)
            .and_then(|()| out.write_all(b"\n"))
            .map_err(IngestError::Write)?;
        count += 1;
    }
    out.flush().map_err(IngestError::Write)?;
    Ok(count)
}

/// One import's report, when the tenant has it.
pub fn find_run(
    context: &AppContext,
    tenant: TenantId,
    id: ImportId,
) -> Result<Option<ImportRun>, StoreError> {
    runs(context, tenant)?.get(&id)
}
