//! The storage engine's floor, for `rapport bench engine`: what sled alone does with the writes
//! of an import and of a retention sweep, with nothing of Rapport's own work (no parsing,
//! sealing, encoding, search tokens, locks or aggregates). Rapport's own rates divided by these
//! say how much of a benchmark target is left to Rapport's code, and a target above the floor
//! cannot be met by changing that code alone.
//!
//! Per interaction it writes the keys Rapport writes (see the importer and `records::delete`):
//! the record (a time-ordered id and a value the size of a sealed six-message interaction), its
//! source claim (a random keyed token, read first), three reference entries (token and id) and
//! the reference set (read first), the search document and its mapping, and the dashboard
//! contribution, in commits of 1,000 interactions with one journal entry each, applied tree by
//! tree in sled batches of at most 64 KiB and flushed. Search postings are left out, so this is
//! less than Rapport's real work. The sweep walks every record and deletes 7 in 12 of them,
//! spread over the whole range as the synthetic tenant's expired threads are: all of those keys
//! plus the three per-record entries that are nearly always absent (overrides, lead state), a
//! thousand per redo commit (journal entry, flush, writes in key order, flush, entry removed,
//! flush), as `Store::commit_redo` does.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

use super::collection::MAX_SLED_BATCH_BYTES;
use super::StoreError;

/// Records per commit, as the importer (`ingest`) and the sweeps (`records::delete`) batch them.
const BATCH: usize = 1000;
/// A sealed six-message interaction of the synthetic tenant, in bytes (about 600 bytes of text
/// per message, with authors, times and the seal's nonce and tag).
const RECORD_BYTES: usize = 4200;

/// What the floor measured.
#[derive(Clone, Debug)]
pub struct FloorFigures {
    pub interactions: u64,
    pub import_seconds: f64,
    /// The process's peak RSS once the import was written, in MiB.
    pub rss_after_import_mib: u64,
    pub database_bytes_after_import: u64,
    pub deleted: u64,
    /// The sweep: the walk over every record and the deletions.
    pub sweep_seconds: f64,
}

/// One tree's writes of a commit: key, and value or `None` for a removal.
type Writes = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// The trees written, in the order a commit applies them.
const TREES: [&str; 11] = [
    "journal",
    "records",
    "sources",
    "refs",
    "ref_sets",
    "document_of",
    "documents",
    "contributions",
    "qa_overrides",
    "label_overrides",
    "lead_states",
];
const JOURNAL: usize = 0;
const RECORDS: usize = 1;
const SOURCES: usize = 2;
const REFS: usize = 3;
const REF_SETS: usize = 4;
const DOCUMENT_OF: usize = 5;
const DOCUMENTS: usize = 6;
const CONTRIBUTIONS: usize = 7;
const QA_OVERRIDES: usize = 8;
const LABEL_OVERRIDES: usize = 9;
const LEAD_STATES: usize = 10;

fn record_key(number: u64) -> Vec<u8> {
    // A time-ordered id: 16 bytes, increasing with import order, as `RecordId`s are.
    let mut key = number.to_be_bytes().to_vec();
    key.extend_from_slice(&[0; 8]);
    key
}

/// Interaction `number`'s keyed token number `slot` (0 its source claim, 1 to 3 its references):
/// random-looking, spread over the key space as keyed hashes are, and derived again at deletion
/// rather than kept, so that the floor's peak RSS is sled's.
fn token(number: u64, slot: u64) -> [u8; 32] {
    let mut token = [0; 32];
    for (i, chunk) in (0u64..).zip(token.chunks_exact_mut(8)) {
        chunk.copy_from_slice(&splitmix64(number * 16 + slot * 4 + i).to_be_bytes());
    }
    token
}

/// A well-mixed 64-bit function of `x` (the `SplitMix64` finaliser): spreads keys, nothing more.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Applies each tree's writes in key order as sled batches of at most `MAX_SLED_BATCH_BYTES`,
/// as `WriteSet::apply_per_tree` does.
fn apply_batches(trees: &[sled::Tree], writes: &mut [Writes]) -> Result<(), StoreError> {
    for (tree, writes) in trees.iter().zip(writes.iter_mut()) {
        writes.sort_by(|a, b| a.0.cmp(&b.0));
        let mut batch = sled::Batch::default();
        let mut bytes = 0;
        for (key, value) in writes.drain(..) {
            let size = key.len() + value.as_ref().map_or(0, Vec::len);
            if bytes > 0 && bytes + size > MAX_SLED_BATCH_BYTES {
                tree.apply_batch(std::mem::take(&mut batch))?;
                bytes = 0;
            }
            bytes += size;
            match value {
                Some(value) => batch.insert(key, value),
                None => batch.remove(key),
            }
        }
        tree.apply_batch(batch)?;
    }
    Ok(())
}

/// Writes `interactions` interactions into a new sled database at `path` (with a
/// cache of `cache_bytes`), then walks the records and deletes 7 in 12 of them. `peak_rss_mib`
/// reads the process's peak RSS (taken once the import is written); `progress` is called with
/// a line now and then, and `commits` counts the commits made (a watchdog's heartbeat).
pub fn measure(
    path: &Path,
    interactions: u64,
    cache_bytes: u64,
    peak_rss_mib: &dyn Fn() -> u64,
    progress: &mut dyn FnMut(&str),
    commits: &AtomicU64,
) -> Result<FloorFigures, StoreError> {
    let db = sled::Config::new()
        .path(path)
        .cache_capacity(cache_bytes)
        .flush_every_ms(Some(500))
        .open()?;
    measure_in(&db, interactions, peak_rss_mib, progress, commits)
}

/// [`measure`] in the open database `db`.
fn measure_in(
    db: &sled::Db,
    interactions: u64,
    peak_rss_mib: &dyn Fn() -> u64,
    progress: &mut dyn FnMut(&str),
    commits: &AtomicU64,
) -> Result<FloorFigures, StoreError> {
    let trees = TREES
        .iter()
        .map(|name| db.open_tree(name))
        .collect::<Result<Vec<_>, _>>()?;
    let mut rng = StdRng::seed_from_u64(7);
    let mut record = vec![0u8; RECORD_BYTES];

    let started = Instant::now();
    let mut number = 0u64;
    while number < interactions {
        let mut writes: Vec<Writes> = vec![Vec::new(); trees.len()];
        let mut journal = Vec::new();
        for _ in 0..BATCH.min(usize::try_from(interactions - number).unwrap_or(BATCH)) {
            number += 1;
            let id = record_key(number);
            rng.fill_bytes(&mut record);
            writes[RECORDS].push((id.clone(), Some(record.clone())));
            journal.extend_from_slice(&id);
            let source = token(number, 0);
            // The importer reads the claim (is this source known?) and the reference set.
            trees[SOURCES].get(source)?;
            trees[REF_SETS].get(&id)?;
            writes[SOURCES].push((source.to_vec(), Some(vec![1; 60])));
            for slot in 1..=3 {
                let mut key = token(number, slot).to_vec();
                key.extend_from_slice(&id);
                writes[REFS].push((key, Some(Vec::new())));
            }
            writes[REF_SETS].push((id.clone(), Some(vec![2; 130])));
            writes[DOCUMENT_OF].push((id.clone(), Some(vec![3; 40])));
            writes[DOCUMENTS].push((number.to_be_bytes().to_vec(), Some(vec![4; 60])));
            writes[CONTRIBUTIONS].push((id, Some(vec![5; 150])));
        }
        writes[JOURNAL].push((number.to_be_bytes().to_vec(), Some(journal)));
        apply_batches(&trees, &mut writes)?;
        db.flush()?;
        commits.fetch_add(1, Ordering::Relaxed);
        if number % 100_000 == 0 {
            progress(&format!("written {number} interactions"));
        }
    }
    let import_seconds = started.elapsed().as_secs_f64();
    let rss_after_import_mib = peak_rss_mib();
    let database_bytes_after_import = db.size_on_disk()?;

    progress("walking and deleting");
    let started = Instant::now();
    let mut doomed: Vec<u64> = Vec::with_capacity(BATCH);
    let mut deleted = 0u64;
    let mut choose = StdRng::seed_from_u64(9);
    for entry in &trees[RECORDS] {
        let (key, value) = entry?;
        // Touch the value, as opening it would.
        std::hint::black_box(value.first());
        let number = key
            .get(..8)
            .and_then(|bytes| bytes.try_into().ok())
            .map_or(0, u64::from_be_bytes);
        if choose.gen_ratio(7, 12) {
            doomed.push(number);
        }
        if doomed.len() >= BATCH {
            deleted += delete(db, &trees, &mut doomed)?;
            commits.fetch_add(1, Ordering::Relaxed);
        }
    }
    if !doomed.is_empty() {
        deleted += delete(db, &trees, &mut doomed)?;
        commits.fetch_add(1, Ordering::Relaxed);
    }
    Ok(FloorFigures {
        interactions,
        import_seconds,
        rss_after_import_mib,
        database_bytes_after_import,
        deleted,
        sweep_seconds: started.elapsed().as_secs_f64(),
    })
}

/// Deletes the interactions numbered `doomed` (and empties it); how many.
fn delete(db: &sled::Db, trees: &[sled::Tree], doomed: &mut Vec<u64>) -> Result<u64, StoreError> {
    let count = doomed.len() as u64;
    let mut writes: Vec<Writes> = vec![Vec::new(); trees.len()];
    for number in doomed.drain(..) {
        let id = record_key(number);
        let source = token(number, 0);
        // As `records::delete` does: the claim and the reference set are read first.
        trees[SOURCES].get(source)?;
        trees[REF_SETS].get(&id)?;
        writes[SOURCES].push((source.to_vec(), None));
        for slot in 1..=3 {
            let mut key = token(number, slot).to_vec();
            key.extend_from_slice(&id);
            writes[REFS].push((key, None));
        }
        writes[DOCUMENTS].push((number.to_be_bytes().to_vec(), None));
        for tree in [
            RECORDS,
            REF_SETS,
            DOCUMENT_OF,
            CONTRIBUTIONS,
            QA_OVERRIDES,
            LABEL_OVERRIDES,
            LEAD_STATES,
        ] {
            writes[tree].push((id.clone(), None));
        }
    }
    // `Store::commit_redo`: the entry journaled and flushed, the writes applied one by one in
    // key order and flushed, the entry removed and flushed.
    let entry_bytes: usize = writes
        .iter()
        .flat_map(|tree| tree.iter().map(|(key, _)| key.len() + 8))
        .sum();
    trees[JOURNAL].insert(b"redo", vec![9; entry_bytes])?;
    db.flush()?;
    for (tree, writes) in trees.iter().zip(writes.iter_mut()) {
        writes.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, _) in writes.drain(..) {
            tree.remove(key)?;
        }
    }
    db.flush()?;
    trees[JOURNAL].remove(b"redo")?;
    db.flush()?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(db: &sled::Db, interactions: u64) -> FloorFigures {
        let mut lines = Vec::new();
        let commits = AtomicU64::new(0);
        let figures = measure_in(
            db,
            interactions,
            &|| 42,
            &mut |line| lines.push(line.to_owned()),
            &commits,
        )
        .unwrap();
        assert_eq!(
            lines.last().map(String::as_str),
            Some("walking and deleting")
        );
        // An import commit per thousand interactions, and a deletion commit per thousand
        // deleted (the last ones short).
        assert_eq!(
            commits.load(Ordering::Relaxed),
            interactions.div_ceil(1000) + figures.deleted.div_ceil(1000)
        );
        figures
    }

    fn tree_len(db: &sled::Db, name: usize) -> usize {
        db.open_tree(TREES[name]).unwrap().len()
    }

    #[test]
    fn the_floor_writes_every_key_and_its_sweep_removes_all_of_each_deleted_record() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new()
            .path(dir.path())
            .temporary(true)
            .open()
            .unwrap();
        let figures = figures(&db, 2500);
        assert_eq!(figures.interactions, 2500);
        assert_eq!(figures.rss_after_import_mib, 42);
        assert!(figures.database_bytes_after_import > 2500 * RECORD_BYTES as u64 / 2);
        // About 7 in 12 deleted (1,458 expected), and each deleted record's keys all gone.
        assert!(
            (1300..1620).contains(&figures.deleted),
            "{}",
            figures.deleted
        );
        let kept = 2500 - usize::try_from(figures.deleted).unwrap();
        for tree in [
            RECORDS,
            SOURCES,
            REF_SETS,
            DOCUMENT_OF,
            DOCUMENTS,
            CONTRIBUTIONS,
        ] {
            assert_eq!(tree_len(&db, tree), kept, "{}", TREES[tree]);
        }
        assert_eq!(tree_len(&db, REFS), 3 * kept);
        // Three batches' journal entries; the redo entry of each deletion is gone again.
        assert_eq!(tree_len(&db, JOURNAL), 3);
    }
}
