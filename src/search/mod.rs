//! Search over a tenant's interactions without a plaintext index on disk.
//!
//! Words are normalised (lower case, letters and digits, stop words dropped) and replaced by their
//! HMAC under the tenant's index key, so the index holds keyed tokens, never words. Each indexed
//! version of an interaction gets a fresh document number (`Store::generate_id`); its postings are
//! appended to one open chunk per token (delta-encoded document numbers with term frequencies),
//! sealed and written, keyed by token and the chunk's first document, once the chunk is full or
//! the index batch ends (see [`IndexBatch`]). A re-imported interaction gets a new
//! document number and its old one is retired (its mapping deleted), so stale postings are
//! skipped at query time. Ranking is BM25 over the live documents.
//!
//! What the index reveals to someone holding the database but not the keys: how many documents
//! share a keyed token, and chunk sizes — not the words, and not which record a document number
//! belongs to (that mapping is sealed).

use std::collections::HashSet;

use rustc_hash::FxHashMap;

use integer_encoding::VarInt;
use serde::{Deserialize, Serialize};

pub mod routes;

use chrono::{DateTime, Utc};

use crate::context::AppContext;
use crate::ids::{RecordId, TenantId};
use crate::interactions::Channel;
use crate::store::{BlindIndex, Collection, Scope, Store, StoreError, WriteSet};

const K1: f32 = 1.2;
const B: f32 = 0.75;
const MAX_TOKEN_CHARS: usize = 40;
const STATS_KEY: &str = "stats";

/// Words too common to be worth an index entry, sorted (searched by bisection).
const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "from", "has", "have", "i",
    "if", "in", "is", "it", "its", "me", "my", "no", "not", "of", "on", "or", "our", "so", "that",
    "the", "their", "them", "then", "there", "they", "this", "to", "was", "we", "were", "will",
    "with", "you", "your",
];

/// The longest stop word, in bytes: longer words skip the search.
const LONGEST_STOP_WORD: usize = 5;

fn is_stop_word(word: &str) -> bool {
    word.len() <= LONGEST_STOP_WORD && STOP_WORDS.binary_search(&word).is_ok()
}

/// The searchable terms of `text`, normalised, in order (with repeats): its words, and each
/// e-mail address as one more term, so that an address finds its own messages first.
pub fn words(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for_each_term(text, &mut String::new(), |term| found.push(term.to_owned()));
    found
}

/// Calls `visit` with each searchable term of `text` (see [`words`]), normalised into `scratch`
/// so that the common case allocates nothing. Indexing and querying both go through here, so a
/// query's terms always match the indexed ones.
///
/// Words are runs of alphanumeric characters. ASCII, the common case, is split byte by byte;
/// other characters are decoded where they occur, with the same rules.
pub fn for_each_term(text: &str, scratch: &mut String, mut visit: impl FnMut(&str)) {
    let bytes = text.as_bytes();
    let mut position = 0;
    while position < bytes.len() {
        let start = position;
        let mut ascii = true;
        while position < bytes.len() {
            let byte = bytes[position];
            if byte.is_ascii() {
                if !byte.is_ascii_alphanumeric() {
                    break;
                }
                position += 1;
            } else {
                match text[position..].chars().next() {
                    Some(c) if c.is_alphanumeric() => {
                        ascii = false;
                        position += c.len_utf8();
                    }
                    _ => break,
                }
            }
        }
        if position == start {
            // A separator: step over it (a whole character).
            position += text[position..].chars().next().map_or(1, char::len_utf8);
            continue;
        }
        let word = &text[start..position];
        scratch.clear();
        if ascii {
            if word.len() > MAX_TOKEN_CHARS {
                continue;
            }
            scratch.push_str(word);
            scratch.make_ascii_lowercase();
        } else {
            if word.chars().count() > MAX_TOKEN_CHARS {
                continue;
            }
            scratch.extend(word.chars().flat_map(char::to_lowercase));
        }
        let single = scratch.chars().nth(1).is_none();
        if (single && !scratch.chars().all(char::is_numeric)) || is_stop_word(scratch) {
            continue;
        }
        visit(scratch);
    }
    // Most texts hold no address; skip the second scan for them.
    if !text.contains('@') {
        return;
    }
    for part in text.split(|c: char| c.is_whitespace() || "<>()[],;:\"'".contains(c)) {
        let part = part.trim_matches(|c: char| !c.is_alphanumeric());
        let is_address = part.chars().count() <= 254
            && part
                .split_once('@')
                .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
        if is_address {
            scratch.clear();
            scratch.extend(part.chars().flat_map(char::to_lowercase));
            visit(scratch);
        }
    }
}

/// A chunk of one token's postings: document numbers (ascending, delta varints), each with its
/// term frequency and its document's length, so ranking needs no per-document lookup.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Postings {
    #[serde(with = "serde_bytes")]
    encoded: Vec<u8>,
    /// The first and the last document appended (not stored: a chunk is only appended to while
    /// it is staged; the first is part of its key).
    #[serde(skip)]
    first: u64,
    #[serde(skip)]
    last: u64,
}

impl Postings {
    /// Appends a posting; documents must come in ascending order (an index writer numbers its
    /// documents from the store's ever-increasing id generator, one after the other).
    fn push(&mut self, posting: Posting) {
        debug_assert!(self.encoded.is_empty() || posting.document > self.last);
        if self.encoded.is_empty() {
            self.first = posting.document;
        }
        let delta = posting.document.saturating_sub(self.last);
        let mut buffer = [0u8; 10];
        let written = delta.encode_var(&mut buffer);
        self.encoded.extend_from_slice(&buffer[..written]);
        self.encoded.push(posting.frequency);
        let written = posting.length.encode_var(&mut buffer);
        self.encoded.extend_from_slice(&buffer[..written]);
        self.last = posting.document;
    }

    #[cfg(test)]
    fn encode(mut entries: Vec<Posting>) -> Self {
        entries.sort_unstable_by_key(|posting| posting.document);
        let mut postings = Self::default();
        for posting in entries {
            postings.push(posting);
        }
        postings
    }

    /// Calls `visit` for each posting, without building a list.
    fn for_each(&self, mut visit: impl FnMut(Posting)) {
        let mut position = 0;
        let mut document = 0u64;
        while position < self.encoded.len() {
            let Some((delta, read)) = u64::decode_var(&self.encoded[position..]) else {
                break;
            };
            position += read;
            let Some(&frequency) = self.encoded.get(position) else {
                break;
            };
            position += 1;
            let Some((length, read)) = u32::decode_var(&self.encoded[position..]) else {
                break;
            };
            position += read;
            document += delta;
            visit(Posting {
                document,
                frequency,
                length,
            });
        }
    }

    #[cfg(test)]
    fn decode(&self) -> Vec<Posting> {
        let mut entries = Vec::new();
        self.for_each(|posting| entries.push(posting));
        entries
    }
}

/// One document's occurrence of a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Posting {
    document: u64,
    /// Occurrences in the document, capped at 255.
    frequency: u8,
    /// The document's indexed words, for BM25's length normalisation.
    length: u32,
}

/// One indexed version of a record.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Document {
    record: RecordId,
    /// Number of indexed words, for BM25's length normalisation.
    length: u32,
}

/// Totals for ranking. Updated with each batch; concurrent writers may leave them slightly off,
/// which only nudges scores.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Stats {
    documents: u64,
    total_length: u64,
}

/// A ranked result.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    pub record: RecordId,
    pub score: f32,
}

/// The tenant search indexes.
#[derive(Clone)]
pub struct SearchIndex {
    store: Store,
}

struct Trees {
    tokens: BlindIndex<()>,
    postings: Collection<([u8; 32], u64), Postings>,
    documents: Collection<u64, Document>,
    document_of: Collection<RecordId, u64>,
    stats: Collection<&'static str, Stats>,
}

impl SearchIndex {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    fn trees(&self, tenant: TenantId) -> Result<Trees, StoreError> {
        let scope = Scope::Tenant(tenant);
        Ok(Trees {
            tokens: self.store.blind_index(scope, "search_tokens")?,
            postings: self.store.collection(scope, "search_postings")?,
            documents: self.store.collection(scope, "search_documents")?,
            document_of: self.store.collection(scope, "search_document_of")?,
            stats: self.store.collection(scope, "search_stats")?,
        })
    }

    /// Starts staging index changes for `tenant`; see [`IndexBatch`].
    pub fn batch(&self, tenant: TenantId) -> Result<IndexBatch, StoreError> {
        self.batch_with(tenant, Vocabulary::default())
    }

    /// Like [`SearchIndex::batch`], reusing the terms (and their keyed tokens) that earlier
    /// batches of the same writer met: a bulk import repeats most of its vocabulary from batch
    /// to batch. Get the vocabulary back with [`IndexBatch::finish`].
    pub fn batch_with(
        &self,
        tenant: TenantId,
        mut vocabulary: Vocabulary,
    ) -> Result<IndexBatch, StoreError> {
        let trees = self.trees(tenant)?;
        let stats = trees.stats.get(&STATS_KEY)?.unwrap_or_default();
        if vocabulary.tenant != Some(tenant) || vocabulary.tokens.len() > MAX_VOCABULARY {
            vocabulary = Vocabulary {
                tenant: Some(tenant),
                ..Vocabulary::default()
            };
        }
        Ok(IndexBatch {
            store: self.store.clone(),
            trees,
            stats,
            postings: FxHashMap::default(),
            pending_bytes: 0,
            full: Vec::new(),
            staged: FxHashMap::default(),
            vocabulary,
            scratch: String::new(),
            document_terms: Vec::new(),
        })
    }

    /// Adds to `writes` the index entries for new versions of `records` (record id and its
    /// searchable texts), retiring each record's earlier version.
    pub fn stage(
        &self,
        writes: &mut WriteSet,
        tenant: TenantId,
        records: &[(RecordId, Vec<&str>)],
    ) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut batch = self.batch(tenant)?;
        for (record, texts) in records {
            batch.add(writes, *record, texts)?;
        }
        batch.finish(writes).map(drop)
    }

    /// The best `limit` records for `query`, best first, and how many records matched at all.
    // Counts and lengths become f32 for ranking, which needs only their rough size.
    #[allow(clippy::cast_precision_loss)]
    pub fn search(
        &self,
        tenant: TenantId,
        query: &str,
        limit: usize,
    ) -> Result<(Vec<Hit>, usize), StoreError> {
        let trees = self.trees(tenant)?;
        let stats = trees.stats.get(&STATS_KEY)?.unwrap_or_default();
        let live = stats.documents.max(1) as f32;
        let average_length = (stats.total_length as f32 / live).max(1.0);
        let unique: HashSet<String> = words(query).into_iter().collect();
        // BM25 summed per document straight from the postings (they carry the lengths).
        let mut scores: FxHashMap<u64, f32> = FxHashMap::default();
        for word in unique {
            let token = trees.tokens.pseudonym(&word);
            let chunks: Vec<Postings> = trees
                .postings
                .scan_prefix(&token)
                .map(|chunk| chunk.map(|(_, postings)| postings))
                .collect::<Result<_, _>>()?;
            let mut frequency = 0usize;
            for chunk in &chunks {
                chunk.for_each(|_| frequency += 1);
            }
            let frequency = frequency as f32;
            let idf = ((live - frequency + 0.5) / (frequency + 0.5) + 1.0).ln();
            for chunk in &chunks {
                chunk.for_each(|posting| {
                    let tf = f32::from(posting.frequency);
                    let normaliser = 1.0 - B + B * (posting.length as f32 / average_length);
                    *scores.entry(posting.document).or_default() +=
                        idf * tf * (K1 + 1.0) / (tf + K1 * normaliser);
                });
            }
        }
        // Best first; only as many documents are resolved as it takes to find `limit` live ones
        // (retired versions have no document entry any more and are passed over).
        let mut ranked: Vec<(u64, f32)> = scores.into_iter().collect();
        ranked.sort_unstable_by(|left, right| right.1.total_cmp(&left.1));
        let mut hits = Vec::with_capacity(limit);
        let mut retired = 0usize;
        for (document, score) in &ranked {
            if hits.len() == limit {
                break;
            }
            match trees.documents.get(document)? {
                Some(entry) => hits.push(Hit {
                    record: entry.record,
                    score: *score,
                }),
                None => retired += 1,
            }
        }
        // Counted without resolving every document, so retired versions beyond the page are
        // included: an upper bound, shown as "about".
        let matched = ranked.len() - retired;
        Ok((hits, matched))
    }

    /// The live records whose indexed text holds `term` exactly (one normalised term, such as an
    /// e-mail address in lower case), at most `limit`, and whether more did. Only that term's
    /// postings are read: no ranking, no other word of the query.
    pub fn records_with_term(
        &self,
        tenant: TenantId,
        term: &str,
        limit: usize,
    ) -> Result<(Vec<RecordId>, bool), StoreError> {
        let trees = self.trees(tenant)?;
        let token = trees.tokens.pseudonym(term);
        let mut documents = Vec::new();
        for chunk in trees.postings.scan_prefix(&token) {
            chunk?
                .1
                .for_each(|posting| documents.push(posting.document));
        }
        let mut records = Vec::new();
        let mut seen = HashSet::new();
        for document in documents {
            // Retired versions have no document entry any more.
            if let Some(entry) = trees.documents.get(&document)? {
                if records.len() == limit {
                    return Ok((records, true));
                }
                if seen.insert(entry.record) {
                    records.push(entry.record);
                }
            }
        }
        Ok((records, false))
    }
}

/// Terms met by a writer, each with its keyed token, numbered so that a batch's postings are
/// grouped by a small integer instead of a string. Bounded: a writer whose vocabulary outgrows
/// [`MAX_VOCABULARY`] starts a fresh one with its next batch.
#[derive(Default)]
pub struct Vocabulary {
    tenant: Option<TenantId>,
    ids: FxHashMap<Box<str>, u32>,
    tokens: Vec<[u8; 32]>,
}

/// A token's postings chunk is written once it holds this many bytes (a few thousand documents),
/// so that frequent words make bounded values and rare ones are collected over many commits.
const MAX_CHUNK_BYTES: usize = 16 * 1024;

/// Terms a [`Vocabulary`] keeps before it is dropped (about 100 bytes each).
const MAX_VOCABULARY: usize = 500_000;

/// Index changes staged into [`WriteSet`]s: new versions, retirements, and the totals. Document
/// entries go into the write set they are added with; postings are kept until
/// [`IndexBatch::finish`], so a bulk writer can collect the postings of several commits into
/// one chunk per token (see [`IndexBatch::pending_bytes`]) — fewer, larger postings values.
/// A record changed twice while a batch is open keeps only its last version.
pub struct IndexBatch {
    store: Store,
    trees: Trees,
    stats: Stats,
    /// Postings by term number (see [`Vocabulary`]), encoded as they are added.
    postings: FxHashMap<u32, Postings>,
    /// Bytes of encoded postings held, for [`IndexBatch::pending_bytes`].
    pending_bytes: usize,
    /// Documents created in this batch, by record, with their lengths.
    staged: FxHashMap<RecordId, (u64, u32)>,
    /// Chunks that reached [`MAX_CHUNK_BYTES`], written with the next commit.
    full: Vec<(u32, Postings)>,
    vocabulary: Vocabulary,
    /// Reused buffers: a normalised word, and one document's term numbers.
    scratch: String,
    document_terms: Vec<u32>,
}

impl IndexBatch {
    /// Retires `record`'s indexed version, whether committed or staged in this batch.
    pub fn retire(&mut self, writes: &mut WriteSet, record: RecordId) -> Result<(), StoreError> {
        if let Some((document, length)) = self.staged.remove(&record) {
            // Its postings stay: a document without an entry is passed over at query time.
            writes.remove(&self.trees.documents, &document);
            self.stats.documents = self.stats.documents.saturating_sub(1);
            self.stats.total_length = self.stats.total_length.saturating_sub(u64::from(length));
            return Ok(());
        }
        if let Some(previous) = self.trees.document_of.get(&record)? {
            if let Some(entry) = self.trees.documents.get(&previous)? {
                self.stats.documents = self.stats.documents.saturating_sub(1);
                self.stats.total_length = self
                    .stats
                    .total_length
                    .saturating_sub(u64::from(entry.length));
            }
            writes.remove(&self.trees.documents, &previous);
            writes.remove(&self.trees.document_of, &record);
        }
        Ok(())
    }

    /// Indexes `texts` for `record`, which has no indexed version yet (its writer just created
    /// it): unlike [`IndexBatch::add`], no lookup for an earlier version to retire.
    pub fn add_new(
        &mut self,
        writes: &mut WriteSet,
        record: RecordId,
        texts: &[&str],
    ) -> Result<(), StoreError> {
        self.index(writes, record, texts)
    }

    /// Indexes `texts` as the new version of `record`.
    pub fn add(
        &mut self,
        writes: &mut WriteSet,
        record: RecordId,
        texts: &[&str],
    ) -> Result<(), StoreError> {
        self.retire(writes, record)?;
        self.index(writes, record, texts)
    }

    fn index(
        &mut self,
        writes: &mut WriteSet,
        record: RecordId,
        texts: &[&str],
    ) -> Result<(), StoreError> {
        let document = self.store.generate_id()?;
        // Each word becomes its term number; sorting groups repeats for counting.
        let Self {
            trees,
            vocabulary,
            scratch,
            document_terms,
            ..
        } = self;
        document_terms.clear();
        for text in texts {
            for_each_term(text, scratch, |term| {
                let id = if let Some(id) = vocabulary.ids.get(term) {
                    *id
                } else {
                    let id = u32::try_from(vocabulary.tokens.len()).unwrap_or(u32::MAX);
                    vocabulary.tokens.push(trees.tokens.pseudonym(term));
                    vocabulary.ids.insert(term.into(), id);
                    id
                };
                document_terms.push(id);
            });
        }
        let length = u32::try_from(document_terms.len()).unwrap_or(u32::MAX);
        document_terms.sort_unstable();
        for run in document_terms.chunk_by(|left, right| left == right) {
            let frequency = u8::try_from(run.len()).unwrap_or(u8::MAX);
            let postings = self.postings.entry(run[0]).or_default();
            let before = postings.encoded.len();
            postings.push(Posting {
                document,
                frequency,
                length,
            });
            self.pending_bytes += postings.encoded.len() - before;
            if postings.encoded.len() >= MAX_CHUNK_BYTES {
                let full = std::mem::take(postings);
                self.pending_bytes -= full.encoded.len();
                self.full.push((run[0], full));
            }
        }
        writes.put(
            &self.trees.documents,
            &document,
            &Document { record, length },
        )?;
        writes.put(&self.trees.document_of, &record, &document)?;
        self.staged.insert(record, (document, length));
        self.stats.documents += 1;
        self.stats.total_length += u64::from(length);
        Ok(())
    }

    /// Bytes of postings held for [`IndexBatch::finish`]; a bulk writer finishes the batch
    /// once this passes its memory budget.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Stages the chunks that are full and the updated totals, for a commit that leaves the batch
    /// open. The other postings are held: until [`IndexBatch::finish`], the documents added are
    /// stored, but a search finds them only through their full chunks.
    pub fn write_full(&mut self, writes: &mut WriteSet) -> Result<(), StoreError> {
        for (term, postings) in std::mem::take(&mut self.full) {
            self.put_chunk(writes, term, &postings)?;
        }
        writes.put(&self.trees.stats, &STATS_KEY, &self.stats)
    }

    /// Writes the batch's postings and the updated totals; returns the vocabulary for the
    /// writer's next batch.
    pub fn finish(mut self, writes: &mut WriteSet) -> Result<Vocabulary, StoreError> {
        self.write_full(writes)?;
        for (term, postings) in &self.postings {
            if !postings.encoded.is_empty() {
                self.put_chunk(writes, *term, postings)?;
            }
        }
        Ok(self.vocabulary)
    }

    /// A chunk is keyed by its token and its first document, which no other chunk of the token
    /// shares.
    fn put_chunk(
        &self,
        writes: &mut WriteSet,
        term: u32,
        postings: &Postings,
    ) -> Result<(), StoreError> {
        let token = self.vocabulary.tokens[term as usize];
        writes.put(&self.trees.postings, &(token, postings.first), postings)
    }
}

/// One search result, ready to show.
pub struct ResultItem {
    pub id: RecordId,
    pub subject: Vec<Segment>,
    pub channel: Channel,
    pub snippet: Vec<Segment>,
    pub when: DateTime<Utc>,
}

pub struct Results {
    pub items: Vec<ResultItem>,
    /// How many interactions matched in all.
    pub matched: usize,
}

/// Searches `tenant`'s interactions and prepares highlighted subjects and snippets. Blocking.
pub fn find(
    context: &AppContext,
    tenant: TenantId,
    query: &str,
    limit: usize,
) -> Result<Results, StoreError> {
    let (hits, matched) = SearchIndex::new(context.store.clone()).search(tenant, query, limit)?;
    let wanted: HashSet<String> = words(query).into_iter().collect();
    let mut items = Vec::with_capacity(hits.len());
    for hit in hits {
        let Some(interaction) = context.interactions.get(tenant, hit.record)? else {
            continue;
        };
        let record = &interaction.record;
        let subject = record
            .subject
            .clone()
            .unwrap_or_else(|| "(no subject)".to_owned());
        // The snippet comes from the first message that holds a query word, else the first.
        let message = record
            .messages
            .iter()
            .find(|m| words(&m.text).iter().any(|w| wanted.contains(w)))
            .or_else(|| record.messages.first());
        items.push(ResultItem {
            id: interaction.id,
            subject: highlight(&subject, query, 30),
            channel: record.channel,
            snippet: message
                .map(|m| highlight(&m.text, query, 40))
                .unwrap_or_default(),
            when: record
                .messages
                .first()
                .map_or(interaction.updated, |m| m.sent_at),
        });
    }
    Ok(Results { items, matched })
}

/// A piece of displayed text, marked when it matches the query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub text: String,
    pub hit: bool,
}

/// Splits `text` into segments, marking the words that match `query` (for highlighting). At most
/// `max_words` words around the first match are kept, with an ellipsis where text was cut.
pub fn highlight(text: &str, query: &str, max_words: usize) -> Vec<Segment> {
    let wanted: HashSet<String> = words(query).into_iter().collect();
    // Split into alternating word and separator runs, keeping every character.
    let mut runs: Vec<(String, bool)> = Vec::new();
    for c in text.chars() {
        let is_word = c.is_alphanumeric();
        match runs.last_mut() {
            Some((run, kind)) if *kind == is_word => run.push(c),
            _ => runs.push((c.to_string(), is_word)),
        }
    }
    let word_positions: Vec<usize> = runs
        .iter()
        .enumerate()
        .filter(|(_, (_, w))| *w)
        .map(|(i, _)| i)
        .collect();
    let first_hit = word_positions
        .iter()
        .position(|&i| wanted.contains(&runs[i].0.to_lowercase()))
        .unwrap_or(0);
    let start_word = first_hit.saturating_sub(max_words / 3);
    let end_word = (start_word + max_words).min(word_positions.len());
    // From the start of the text when the window starts at its first word, so leading
    // punctuation is kept.
    let start = match word_positions.get(start_word) {
        Some(&position) if start_word > 0 => position,
        _ => 0,
    };
    let end = word_positions
        .get(end_word)
        .map_or(runs.len(), |&position| position);
    let mut segments = Vec::new();
    if start > 0 {
        segments.push(Segment {
            text: "… ".to_owned(),
            hit: false,
        });
    }
    for (text, is_word) in &runs[start..end] {
        let hit = *is_word && wanted.contains(&text.to_lowercase());
        match segments.last_mut() {
            Some(last) if !last.hit && !hit => last.text.push_str(text),
            _ => segments.push(Segment {
                text: text.clone(),
                hit,
            }),
        }
    }
    if end < runs.len() {
        segments.push(Segment {
            text: " …".to_owned(),
            hit: false,
        });
    }
    segments
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_normalised_and_stop_words_dropped() {
        let found = words("The Card was DECLINED, twice: café-Zürich 42 a");
        assert_eq!(found, ["card", "declined", "twice", "café", "zürich", "42"]);
        let with_address = words("Mail <Tom@Contoso.example>.");
        assert_eq!(
            with_address,
            ["mail", "tom", "contoso", "example", "tom@contoso.example"]
        );
    }

    /// The word rules written the plain way (Unicode split, then filters): the fast scanner in
    /// [`for_each_term`] must agree with it on any text.
    fn reference_words(text: &str) -> Vec<String> {
        let mut found = Vec::new();
        for word in text.split(|c: char| !c.is_alphanumeric()) {
            if word.is_empty() || word.chars().count() > MAX_TOKEN_CHARS {
                continue;
            }
            let lower: String = word.chars().flat_map(char::to_lowercase).collect();
            let single = lower.chars().nth(1).is_none();
            if (single && !lower.chars().all(char::is_numeric))
                || STOP_WORDS.binary_search(&lower.as_str()).is_ok()
            {
                continue;
            }
            found.push(lower);
        }
        found
    }

    #[test]
    fn the_fast_scanner_agrees_with_the_plain_rules() {
        assert!(STOP_WORDS
            .iter()
            .all(|word| word.len() <= LONGEST_STOP_WORD));
        assert!(STOP_WORDS.windows(2).all(|pair| pair[0] < pair[1]));
        let pieces = [
            "Card",
            "declined",
            "THE",
            " ",
            "-",
            "é",
            "Zürich",
            "İstanbul",
            "ß",
            "42",
            "x",
            "7",
            "日本語",
            "🙂",
            "\u{301}",
            "a",
            "\n",
            "ǅ",
            "Ⅻ",
            "٣",
            "__",
            "'",
            "naïve",
            "ÉTÉ",
            "thereabouts",
            "their",
            "0123456789012345678901234567890123456789",
            "01234567890123456789012345678901234567890",
        ];
        // A fixed pseudo-random walk over the pieces, so the test is reproducible.
        let mut state = 0x2545_f491_u64;
        for _ in 0..2000 {
            let mut text = String::new();
            for _ in 0..12 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let pick = usize::try_from(state % pieces.len() as u64).unwrap();
                text.push_str(pieces[pick]);
                if state % 3 == 0 {
                    text.push(' ');
                }
            }
            let mut fast = Vec::new();
            for_each_term(&text, &mut String::new(), |term| {
                if !term.contains('@') {
                    fast.push(term.to_owned());
                }
            });
            assert_eq!(fast, reference_words(&text), "text {text:?}");
        }
    }

    fn temp_store(dir: &std::path::Path) -> (Store, TenantId) {
        use crate::store::{MasterKey, OpenMode, StoreSettings};
        let key_path = dir.join("master.key");
        MasterKey::create_file(&key_path).unwrap();
        let store = Store::open(
            &StoreSettings {
                data_dir: dir.to_path_buf(),
                cache_capacity_bytes: 8 * 1024 * 1024,
                min_free_disk_bytes: 0,
            },
            MasterKey::load(&key_path).unwrap(),
            OpenMode::CreateIfMissing,
        )
        .unwrap();
        let tenant = TenantId::new();
        let mut writes = WriteSet::default();
        writes
            .create_scope_keys(&store, Scope::Tenant(tenant), false)
            .unwrap();
        store.commit(writes).unwrap();
        (store, tenant)
    }

    #[test]
    fn an_address_is_found_as_one_term_and_a_retired_version_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let (store, tenant) = temp_store(dir.path());
        let index = SearchIndex::new(store.clone());
        let (jo, ana, lee) = (RecordId::new(), RecordId::new(), RecordId::new());
        let mut writes = WriteSet::default();
        index
            .stage(
                &mut writes,
                tenant,
                &[
                    (jo, vec!["Write to Jo.Kim@Example.org please"]),
                    (ana, vec!["jo and kim from example.org wrote"]),
                    (lee, vec!["copy jo.kim@example.org and jo.kim@example.org"]),
                ],
            )
            .unwrap();
        store.commit(writes).unwrap();
        let (found, more) = index
            .records_with_term(tenant, "jo.kim@example.org", 10)
            .unwrap();
        assert_eq!((found, more), (vec![jo, lee], false));
        let (found, more) = index
            .records_with_term(tenant, "jo.kim@example.org", 1)
            .unwrap();
        assert_eq!((found, more), (vec![jo], true));
        // Lee's re-indexed version no longer names the address.
        let mut writes = WriteSet::default();
        index
            .stage(&mut writes, tenant, &[(lee, vec!["nothing here"])])
            .unwrap();
        store.commit(writes).unwrap();
        let (found, _) = index
            .records_with_term(tenant, "jo.kim@example.org", 10)
            .unwrap();
        assert_eq!(found, vec![jo]);
    }

    #[test]
    fn postings_held_over_several_commits_are_found_once_finished() {
        let dir = tempfile::tempdir().unwrap();
        let (store, tenant) = temp_store(dir.path());
        let index = SearchIndex::new(store.clone());
        // Enough documents that the frequent word fills three chunks and part of a fourth (each
        // of its postings takes three bytes), committed in five parts as a bulk import does.
        let documents = 7 * MAX_CHUNK_BYTES / 6;
        let records: Vec<RecordId> = (0..documents).map(|_| RecordId::new()).collect();
        let mut batch = index.batch(tenant).unwrap();
        let mut rare_seen = false;
        for (part, records) in records.chunks(documents / 5 + 1).enumerate() {
            let mut writes = WriteSet::default();
            for (number, record) in records.iter().enumerate() {
                let text = if part == 0 && number == 0 {
                    "refund refund rareword".to_owned()
                } else {
                    format!("refund w{part}x{number}")
                };
                batch.add_new(&mut writes, *record, &[&text]).unwrap();
            }
            batch.write_full(&mut writes).unwrap();
            store.commit(writes).unwrap();
            // Full chunks of the frequent word are written as they fill; the rare word is
            // held until the batch is finished.
            let (_, rare) = index.search(tenant, "rareword", 10).unwrap();
            rare_seen |= rare > 0;
        }
        assert!(
            !rare_seen,
            "a held posting was written before the batch finished"
        );
        let (_, frequent) = index.search(tenant, "refund", 10).unwrap();
        assert!(frequent > 0 && frequent < documents, "{frequent}");
        let mut writes = WriteSet::default();
        batch.finish(&mut writes).unwrap();
        store.commit(writes).unwrap();
        let (_, frequent) = index.search(tenant, "refund", 10).unwrap();
        assert_eq!(frequent, documents);
        let (hits, rare) = index.search(tenant, "rareword", 10).unwrap();
        assert_eq!((rare, hits[0].record), (1, records[0]));
        let chunks = index
            .trees(tenant)
            .unwrap()
            .postings
            .scan_prefix(&index.trees(tenant).unwrap().tokens.pseudonym("refund"))
            .count();
        assert_eq!(chunks, 4, "chunks of the frequent word");
    }

    #[test]
    fn postings_round_trip_through_their_encoding() {
        let posting = |document, frequency, length| Posting {
            document,
            frequency,
            length,
        };
        let entries = vec![
            posting(900, 3, 40),
            posting(5, 1, 7),
            posting(70_000_000_000, 255, 100_000),
        ];
        let mut sorted = entries.clone();
        sorted.sort_unstable_by_key(|p| p.document);
        assert_eq!(Postings::encode(entries).decode(), sorted);
    }

    #[test]
    fn highlighting_marks_matching_words_and_keeps_all_text_around_them() {
        let segments = highlight("My card was declined again.", "DECLINED card", 50);
        let rebuilt: String = segments.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(rebuilt, "My card was declined again.");
        let marked: Vec<&str> = segments
            .iter()
            .filter(|s| s.hit)
            .map(|s| s.text.as_str())
            .collect();
        assert_eq!(marked, ["card", "declined"]);
    }
}
