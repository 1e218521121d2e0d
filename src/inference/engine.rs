//! The inference thread: the one place that owns llama.cpp's model and context.
//!
//! A `LlamaContext` is not `Send`, and several contexts decoding at once on a small machine gain
//! nothing (and have crashed other projects), so one dedicated thread loads the model, owns the
//! context, and serves jobs that arrive over a bounded channel. Callers hold an [`Engine`], which is
//! a cheap, cloneable handle that sends a job and waits for its reply.
//!
//! The thread keeps a shared prompt prefix (the few-shot examples) decoded in sequence 0 of a
//! unified KV cache. Each job's items are copied from it (a copy in a unified cache only tags the
//! cells), so the prefix is decoded once, not once per item. Items are decoded many per batch, and
//! label scoring decodes the labels' token trie for each item in one further batch. A panic inside
//! a job is caught, the cache is reset, and the caller gets an error; the thread goes on serving.

use std::num::NonZeroU32;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::OnceLock;
use std::thread;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;

use crate::inference::models::ApprovedModel;
use crate::inference::InferenceError;

/// llama.cpp's `LLAMA_MAX_SEQ`: sequence ids are below this.
const MAX_SEQUENCES: usize = 256;
#[allow(clippy::cast_possible_truncation)] // 256 fits.
const MAX_SEQUENCES_U32: u32 = MAX_SEQUENCES as u32;
/// Jobs waiting for the thread; a caller beyond this blocks until one is taken.
const QUEUE_DEPTH: usize = 16;

/// How the thread sets up llama.cpp.
#[derive(Clone, Debug)]
pub struct EngineSettings {
    pub threads: u32,
    /// Tokens of KV cache, shared by the prefix and every sequence of a batch.
    pub context_size: u32,
    /// Items (sequences) decoded together in one batch.
    pub batch_width: usize,
}

/// One scoring job: a shared prefix, items that continue it, and the choices to score after each.
#[derive(Clone, Debug)]
pub struct ScoreRequest {
    /// Decoded once and kept (tokenised with the model's start token).
    pub prefix: String,
    /// Each item's text, continuing the prefix and ending where a choice would follow.
    pub items: Vec<String>,
    /// The continuations to score, e.g. `" positive"`.
    pub choices: Vec<String>,
    /// Items longer than this many tokens keep only their last tokens (the cue sits at the end).
    pub max_item_tokens: usize,
}

/// Per item, the log-likelihood of each choice (natural log, in the order of the request), up to
/// a constant per item: the normaliser of the row that predicts every choice's first token (a
/// log-sum-exp over the whole vocabulary, 262,144 entries for Gemma) is the same for all of an
/// item's choices, so it is left out. Only differences between an item's choices are meaningful,
/// which is all a classification (a softmax over the choices) and its calibration use.
#[derive(Clone, Debug)]
pub struct ScoreOutput {
    pub relative_log_likelihoods: Vec<Vec<f32>>,
    pub stats: DecodeStats,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct DecodeStats {
    /// Tokens that went through `llama_decode` for this job (prefix tokens only when new).
    pub tokens_decoded: u64,
    pub decode_calls: u64,
}

#[derive(Clone, Debug)]
pub struct GenerateRequest {
    pub prompt: String,
    pub max_tokens: u32,
    /// Generation stops before the first of these strings.
    pub stop: Vec<String>,
    /// A GBNF grammar (root rule `root`) the output must follow; `None` for free text.
    pub grammar: Option<String>,
}

#[derive(Clone, Debug)]
pub struct GenerateOutput {
    pub text: String,
    pub tokens_generated: u32,
    /// Steps where the model's own choice broke the grammar, so the grammar was applied to the
    /// whole vocabulary (see [`GrammarGuide`]).
    pub grammar_fallbacks: u32,
    pub stats: DecodeStats,
}

/// Keeps greedy generation inside a grammar cheaply. Applying a grammar to every candidate costs
/// about 60 ms per token with a 262k-token vocabulary, so the model's choice is checked alone
/// first and the whole vocabulary is filtered only when that choice breaks the grammar. Tokens are
/// accepted through llama.cpp's fallible call: a grammar that cannot go on is an error for this
/// request, never an exception that aborts the process.
struct GrammarGuide {
    sampler: LlamaSampler,
    fallbacks: u32,
}

impl GrammarGuide {
    fn new(model: &LlamaModel, grammar: &str) -> Result<Self, InferenceError> {
        let sampler = LlamaSampler::grammar(model, grammar, "root")
            .map_err(|error| InferenceError::Engine(format!("the grammar was refused: {error}")))?;
        Ok(Self {
            sampler,
            fallbacks: 0,
        })
    }

    /// The token to emit: `best` when the grammar allows it, else the most likely token the
    /// grammar allows. The choice is accepted into the grammar's state.
    fn choose(&mut self, row: &[f32], best: usize) -> Result<LlamaToken, InferenceError> {
        let alone = LlamaTokenData::new(LlamaToken(to_i32(best)?), row[best], 0.0);
        let mut single = LlamaTokenDataArray::new(vec![alone], false);
        self.sampler.apply(&mut single);
        let token = if single.data[0].logit().is_finite() {
            single.data[0].id()
        } else {
            self.fallbacks += 1;
            let mut all = LlamaTokenDataArray::from_iter(
                (0_i32..)
                    .zip(row)
                    .map(|(id, logit)| LlamaTokenData::new(LlamaToken(id), *logit, 0.0)),
                false,
            );
            self.sampler.apply(&mut all);
            all.data
                .iter()
                .filter(|candidate| candidate.logit().is_finite())
                .max_by(|left, right| left.logit().total_cmp(&right.logit()))
                .map(LlamaTokenData::id)
                .ok_or_else(|| {
                    InferenceError::Engine("the grammar allows no further token".to_owned())
                })?
        };
        self.sampler.try_accept(token).map_err(|error| {
            InferenceError::Engine(format!("the grammar refused a token: {error}"))
        })?;
        Ok(token)
    }
}

/// What the loaded model reports about itself.
#[derive(Clone, Debug)]
pub struct EngineInfo {
    pub model_path: PathBuf,
    pub sha256: String,
    pub vocabulary: usize,
    pub context_size: u32,
    pub batch_width: usize,
    pub threads: u32,
}

enum Job {
    Score(
        ScoreRequest,
        mpsc::Sender<Result<ScoreOutput, InferenceError>>,
    ),
    Generate(
        GenerateRequest,
        mpsc::Sender<Result<GenerateOutput, InferenceError>>,
    ),
    SetBatchWidth(usize, mpsc::Sender<()>),
}

/// A handle on the inference thread. Dropping the last handle ends the thread.
#[derive(Clone)]
pub struct Engine {
    jobs: SyncSender<Job>,
    info: EngineInfo,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Engine")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// llama.cpp's backend may be initialised once per process; every engine shares it.
pub(crate) fn backend() -> Result<&'static LlamaBackend, InferenceError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            #[cfg(feature = "runtime-kernels")]
            crate::cpu::load_kernels()?;
            let mut backend = LlamaBackend::init().map_err(|error| error.to_string())?;
            // llama.cpp's own chatter would go to stderr, where commands print only their errors.
            backend.void_logs();
            Ok(backend)
        })
        .as_ref()
        .map_err(|message| InferenceError::Engine(format!("llama.cpp did not start: {message}")))
}

impl Engine {
    /// Loads the approved model on a new thread and waits until it is ready (or failed).
    pub fn start(model: &ApprovedModel, settings: &EngineSettings) -> Result<Self, InferenceError> {
        if settings.threads == 0 || settings.batch_width == 0 || settings.context_size < 256 {
            return Err(InferenceError::Engine(
                "threads and batch width must be at least 1 and the context at least 256 tokens"
                    .to_owned(),
            ));
        }
        let (jobs, receiver) = mpsc::sync_channel::<Job>(QUEUE_DEPTH);
        let (ready_sender, ready) = mpsc::channel::<Result<usize, InferenceError>>();
        let pinned = model.clone();
        let thread_settings = settings.clone();
        thread::Builder::new()
            .name("inference".to_owned())
            .spawn(move || run_thread(&pinned, &thread_settings, &receiver, &ready_sender))
            .map_err(|error| InferenceError::Engine(format!("cannot start the thread: {error}")))?;
        let vocabulary = ready.recv().map_err(|_| InferenceError::EngineStopped)??;
        Ok(Self {
            jobs,
            info: EngineInfo {
                model_path: model.path().to_path_buf(),
                sha256: model.sha256().to_owned(),
                vocabulary,
                context_size: settings.context_size,
                batch_width: settings.batch_width,
                threads: settings.threads,
            },
        })
    }

    pub fn info(&self) -> &EngineInfo {
        &self.info
    }

    pub fn score(&self, request: ScoreRequest) -> Result<ScoreOutput, InferenceError> {
        let (reply, answer) = mpsc::channel();
        self.jobs
            .send(Job::Score(request, reply))
            .map_err(|_| InferenceError::EngineStopped)?;
        answer.recv().map_err(|_| InferenceError::EngineStopped)?
    }

    pub fn generate(&self, request: GenerateRequest) -> Result<GenerateOutput, InferenceError> {
        let (reply, answer) = mpsc::channel();
        self.jobs
            .send(Job::Generate(request, reply))
            .map_err(|_| InferenceError::EngineStopped)?;
        answer.recv().map_err(|_| InferenceError::EngineStopped)?
    }

    /// Changes how many items share a batch (the benchmark tries several).
    pub fn set_batch_width(&mut self, width: usize) -> Result<(), InferenceError> {
        let width = width.max(1);
        let (reply, answer) = mpsc::channel();
        self.jobs
            .send(Job::SetBatchWidth(width, reply))
            .map_err(|_| InferenceError::EngineStopped)?;
        answer.recv().map_err(|_| InferenceError::EngineStopped)?;
        self.info.batch_width = width;
        Ok(())
    }
}

fn run_thread(
    model: &ApprovedModel,
    settings: &EngineSettings,
    jobs: &Receiver<Job>,
    ready: &mpsc::Sender<Result<usize, InferenceError>>,
) {
    let loaded = catch_unwind(AssertUnwindSafe(|| load(model, settings)));
    let model = match loaded {
        Ok(Ok(model)) => model,
        Ok(Err(error)) => {
            let _ = ready.send(Err(error));
            return;
        }
        Err(_) => {
            let _ = ready.send(Err(InferenceError::Engine(
                "loading the model failed unexpectedly".to_owned(),
            )));
            return;
        }
    };
    let context = match new_context(&model, settings) {
        Ok(context) => context,
        Err(error) => {
            let _ = ready.send(Err(error));
            return;
        }
    };
    let vocabulary = usize::try_from(model.n_vocab()).unwrap_or(0);
    let mut worker = Worker {
        model: &model,
        context,
        prefix: Vec::new(),
        batch_width: settings.batch_width,
        context_size: settings.context_size as usize,
    };
    if ready.send(Ok(vocabulary)).is_err() {
        return;
    }
    while let Ok(job) = jobs.recv() {
        match job {
            Job::Score(request, reply) => {
                let result = worker.guarded(|worker| worker.score(&request));
                let _ = reply.send(result);
            }
            Job::Generate(request, reply) => {
                let result = worker.guarded(|worker| worker.generate(&request));
                let _ = reply.send(result);
            }
            Job::SetBatchWidth(width, reply) => {
                worker.batch_width = width;
                let _ = reply.send(());
            }
        }
    }
}

/// Loads the approved model through the descriptor its digest was read from, then checks that
/// nothing was written to the file meanwhile.
fn load(model: &ApprovedModel, settings: &EngineSettings) -> Result<LlamaModel, InferenceError> {
    let backend = backend()?;
    let _ = settings;
    let loaded =
        LlamaModel::load_from_file(backend, model.load_path(), &LlamaModelParams::default())
            .map_err(|error| {
                InferenceError::Engine(format!(
                    "llama.cpp could not load model file {}: {error}",
                    model.path().display()
                ))
            })?;
    model.check_unchanged()?;
    Ok(loaded)
}

fn new_context<'m>(
    model: &'m LlamaModel,
    settings: &EngineSettings,
) -> Result<LlamaContext<'m>, InferenceError> {
    let threads = i32::try_from(settings.threads).unwrap_or(2);
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(settings.context_size))
        .with_n_batch(settings.context_size)
        .with_n_ubatch(512.min(settings.context_size))
        .with_n_seq_max(MAX_SEQUENCES_U32)
        .with_n_threads(threads)
        .with_n_threads_batch(threads)
        .with_kv_unified(true);
    model
        .new_context(backend()?, params)
        .map_err(|error| InferenceError::Engine(format!("cannot create a context: {error}")))
}

/// Whether `token` is in the model's vocabulary; token ids index the logits rows.
fn token_index(token: LlamaToken, vocabulary: usize) -> Option<usize> {
    usize::try_from(token.0)
        .ok()
        .filter(|index| *index < vocabulary)
}

/// `log(sum(exp(row)))`, computed stably.
pub(crate) fn log_sum_exp(row: &[f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return max;
    }
    let sum: f32 = row.iter().map(|logit| (logit - max).exp()).sum();
    max + sum.ln()
}

/// A node of the choices' token trie that needs logits: the prefix `choice[..=depth]` of at
/// least one choice with more tokens after it.
#[derive(Debug)]
struct TrieNode {
    token: LlamaToken,
    depth: usize,
    /// The choices (by index) that go through this node and continue past it; their path
    /// sequences are the node's sequence set.
    paths: Vec<usize>,
}

/// The inner nodes of the choices' trie, shallowest first, and for each choice the node
/// index that predicts its token `j` (for `j >= 1`).
fn choice_trie(choices: &[Vec<LlamaToken>]) -> (Vec<TrieNode>, Vec<Vec<usize>>) {
    let mut nodes: Vec<TrieNode> = Vec::new();
    let mut keys: Vec<&[LlamaToken]> = Vec::new();
    let mut predictors = vec![Vec::new(); choices.len()];
    let deepest = choices.iter().map(Vec::len).max().unwrap_or(0);
    for depth in 0..deepest.saturating_sub(1) {
        for (choice_index, tokens) in choices.iter().enumerate() {
            if tokens.len() <= depth + 1 {
                continue;
            }
            let key = &tokens[..=depth];
            let node_index = if let Some(found) = keys.iter().position(|known| *known == key) {
                found
            } else {
                keys.push(key);
                nodes.push(TrieNode {
                    token: tokens[depth],
                    depth,
                    paths: Vec::new(),
                });
                nodes.len() - 1
            };
            nodes[node_index].paths.push(choice_index);
            predictors[choice_index].push(node_index);
        }
    }
    (nodes, predictors)
}

fn common_prefix_length(left: &[LlamaToken], right: &[LlamaToken]) -> usize {
    left.iter()
        .zip(right)
        .take_while(|(left, right)| left == right)
        .count()
}

fn to_i32(value: usize) -> Result<i32, InferenceError> {
    i32::try_from(value).map_err(|_| InferenceError::Engine("a position overflowed".to_owned()))
}

fn to_u32(value: usize) -> Result<u32, InferenceError> {
    u32::try_from(value).map_err(|_| InferenceError::Engine("a position overflowed".to_owned()))
}

struct Worker<'m> {
    model: &'m LlamaModel,
    context: LlamaContext<'m>,
    /// The tokens held in sequence 0.
    prefix: Vec<LlamaToken>,
    batch_width: usize,
    context_size: usize,
}

impl Worker<'_> {
    /// Runs a job, turning a panic into an error and leaving a clean cache for the next job.
    fn guarded<T>(
        &mut self,
        job: impl FnOnce(&mut Self) -> Result<T, InferenceError>,
    ) -> Result<T, InferenceError> {
        let outcome = catch_unwind(AssertUnwindSafe(|| job(self)));
        let result = match outcome {
            Ok(result) => result,
            Err(_) => Err(InferenceError::Engine(
                "an inference job failed unexpectedly".to_owned(),
            )),
        };
        if result.is_err() {
            self.context.clear_kv_cache();
            self.prefix.clear();
        } else {
            self.release_sequences(1..MAX_SEQUENCES);
        }
        result
    }

    fn tokenize(&self, text: &str, with_start: bool) -> Vec<LlamaToken> {
        self.model
            .vocab()
            .tokenize(text.as_bytes(), with_start, false)
    }

    fn release_sequences(&mut self, sequences: std::ops::Range<usize>) {
        for sequence in sequences {
            if let Ok(sequence) = u32::try_from(sequence) {
                let _ = self.context.clear_kv_cache_seq(Some(sequence), None, None);
            }
        }
    }

    fn decode(
        &mut self,
        batch: &mut LlamaBatch<'_>,
        stats: &mut DecodeStats,
    ) -> Result<(), InferenceError> {
        if batch.n_tokens() == 0 {
            return Ok(());
        }
        self.context
            .decode(batch)
            .map_err(|error| InferenceError::Engine(format!("decoding failed: {error}")))?;
        stats.tokens_decoded += u64::try_from(batch.n_tokens()).unwrap_or(0);
        stats.decode_calls += 1;
        Ok(())
    }

    /// Makes sequence 0 hold exactly `tokens`, decoding only what differs from what it holds.
    fn ensure_prefix(
        &mut self,
        tokens: &[LlamaToken],
        stats: &mut DecodeStats,
    ) -> Result<(), InferenceError> {
        let common = common_prefix_length(&self.prefix, tokens);
        if common == tokens.len() && common == self.prefix.len() {
            return Ok(());
        }
        self.context
            .clear_kv_cache_seq(Some(0), Some(to_u32(common)?), None)
            .map_err(|error| InferenceError::Engine(error.to_string()))?;
        self.prefix.truncate(common);
        let chunk_size = self.context_size.min(512);
        let mut batch = LlamaBatch::new(chunk_size, 1);
        for (chunk_index, chunk) in tokens[common..].chunks(chunk_size).enumerate() {
            batch.clear();
            let start = common + chunk_index * chunk_size;
            for (offset, token) in chunk.iter().enumerate() {
                let last = start + offset + 1 == tokens.len();
                batch
                    .add(*token, to_i32(start + offset)?, &[0], last)
                    .map_err(|error| InferenceError::Engine(error.to_string()))?;
            }
            self.decode(&mut batch, stats)?;
            self.prefix.extend_from_slice(chunk);
        }
        Ok(())
    }

    fn score(&mut self, request: &ScoreRequest) -> Result<ScoreOutput, InferenceError> {
        let mut stats = DecodeStats::default();
        let vocabulary = usize::try_from(self.model.n_vocab()).unwrap_or(0);
        let choices: Vec<Vec<LlamaToken>> = request
            .choices
            .iter()
            .map(|choice| self.tokenize(choice, false))
            .collect();
        if choices.is_empty() || choices.iter().any(Vec::is_empty) {
            return Err(InferenceError::Engine(
                "every choice needs at least one token".to_owned(),
            ));
        }
        if choices
            .iter()
            .flatten()
            .any(|token| token_index(*token, vocabulary).is_none())
        {
            return Err(InferenceError::Engine(
                "a choice token is out of range".to_owned(),
            ));
        }
        let (nodes, predictors) = choice_trie(&choices);
        let paths: Vec<usize> = (0..choices.len())
            .filter(|index| choices[*index].len() > 1)
            .collect();
        let prefix = self.tokenize(&request.prefix, true);
        let deepest = choices.iter().map(Vec::len).max().unwrap_or(1);
        // The prefix, one batch of items, and one item's trie must fit the cache together.
        let budget = self
            .context_size
            .checked_sub(prefix.len() + nodes.len() + deepest + 8)
            .filter(|budget| *budget >= 16)
            .ok_or_else(|| {
                InferenceError::Engine(format!(
                    "the prompt prefix ({} tokens) and the labels leave no room in a context of {} tokens",
                    prefix.len(),
                    self.context_size
                ))
            })?;
        self.ensure_prefix(&prefix, &mut stats)?;
        let max_item_tokens = request.max_item_tokens.clamp(1, budget);
        let items: Vec<Vec<LlamaToken>> = request
            .items
            .iter()
            .map(|item| {
                let mut tokens = self.tokenize(item, false);
                if tokens.is_empty() {
                    tokens = self.tokenize(" ", false);
                }
                if tokens.len() > max_item_tokens {
                    tokens.drain(..tokens.len() - max_item_tokens);
                }
                tokens
            })
            .collect();

        // Sequence 0 is the prefix, then one per item, then one item's paths at least.
        if paths.len() + 2 > MAX_SEQUENCES {
            return Err(InferenceError::Engine(format!(
                "{} multi-token labels are more than one batch can score",
                paths.len()
            )));
        }
        let width = self.batch_width.clamp(1, MAX_SEQUENCES - 1 - paths.len());
        let mut log_likelihoods = vec![vec![0.0_f32; choices.len()]; items.len()];
        let mut start = 0;
        while start < items.len() {
            // A group: up to `width` items whose tokens fit the budget together.
            let mut end = start;
            let mut group_tokens = 0;
            while end < items.len()
                && end - start < width
                && (end == start || group_tokens + items[end].len() <= budget)
            {
                group_tokens += items[end].len();
                end += 1;
            }
            self.score_group(
                &prefix,
                &items[start..end],
                &choices,
                &nodes,
                &predictors,
                &paths,
                &mut log_likelihoods[start..end],
                &mut stats,
            )?;
            start = end;
        }
        Ok(ScoreOutput {
            relative_log_likelihoods: log_likelihoods,
            stats,
        })
    }

    #[allow(clippy::too_many_arguments)] // One call site; a struct for it would only rename them.
    fn score_group(
        &mut self,
        prefix: &[LlamaToken],
        items: &[Vec<LlamaToken>],
        choices: &[Vec<LlamaToken>],
        nodes: &[TrieNode],
        predictors: &[Vec<usize>],
        paths: &[usize],
        results: &mut [Vec<f32>],
        stats: &mut DecodeStats,
    ) -> Result<(), InferenceError> {
        let vocabulary = usize::try_from(self.model.n_vocab()).unwrap_or(0);
        let engine_error =
            |error: &dyn std::fmt::Display| InferenceError::Engine(error.to_string());
        // Phase 1: every item of the group continues the prefix in its own sequence (1..).
        let total: usize = items.iter().map(Vec::len).sum();
        let mut batch = LlamaBatch::new(total.max(1), 1);
        let mut last_rows = Vec::with_capacity(items.len());
        for (slot, tokens) in items.iter().enumerate() {
            let sequence = to_i32(slot + 1)?;
            self.context
                .kv_cache_seq_rm(sequence, None, None)
                .map_err(|error| engine_error(&error))?;
            self.context
                .kv_cache_seq_cp(0, sequence, None, None)
                .map_err(|error| engine_error(&error))?;
            for (offset, token) in tokens.iter().enumerate() {
                let last = offset + 1 == tokens.len();
                batch
                    .add(*token, to_i32(prefix.len() + offset)?, &[sequence], last)
                    .map_err(|error| engine_error(&error))?;
            }
            last_rows.push(batch.n_tokens() - 1);
        }
        self.decode(&mut batch, stats)?;
        for (item, row_index) in last_rows.iter().enumerate() {
            let row = self.context.get_logits_ith(*row_index);
            if row.len() < vocabulary {
                return Err(InferenceError::Engine("short logits row".to_owned()));
            }
            // The row's normaliser would be the same for every choice: left out (see
            // `ScoreOutput`).
            for (choice, tokens) in choices.iter().enumerate() {
                let first = token_index(tokens[0], vocabulary).unwrap_or(0);
                results[item][choice] = row[first];
            }
        }
        if nodes.is_empty() {
            self.release_sequences(1..items.len() + 1);
            return Ok(());
        }

        // Phase 2: the choices' trie after each item, several items per batch while sequence ids
        // last. Each choice with more than one token gets a path sequence copied from its item;
        // a trie node belongs to the sequences of every choice through it.
        let first_path_sequence = items.len() + 1;
        let free_cells = self.context_size.saturating_sub(prefix.len() + total + 8);
        let items_per_batch = ((MAX_SEQUENCES - first_path_sequence) / paths.len())
            .min(free_cells / nodes.len())
            .max(1);
        let mut start = 0;
        while start < items.len() {
            let end = (start + items_per_batch).min(items.len());
            let mut batch =
                LlamaBatch::new((nodes.len() * (end - start)).max(1), to_i32(paths.len())?);
            let mut rows: Vec<Vec<i32>> = Vec::with_capacity(end - start);
            for (local, item) in (start..end).enumerate() {
                let item_sequence = to_i32(item + 1)?;
                let base = first_path_sequence + local * paths.len();
                let mut sequence_of_choice = vec![0_i32; choices.len()];
                for (path_number, choice) in paths.iter().enumerate() {
                    let sequence = to_i32(base + path_number)?;
                    sequence_of_choice[*choice] = sequence;
                    self.context
                        .kv_cache_seq_rm(sequence, None, None)
                        .map_err(|error| engine_error(&error))?;
                    self.context
                        .kv_cache_seq_cp(item_sequence, sequence, None, None)
                        .map_err(|error| engine_error(&error))?;
                }
                let item_end = prefix.len() + items[item].len();
                let mut node_rows = Vec::with_capacity(nodes.len());
                for node in nodes {
                    let sequences: Vec<i32> = node
                        .paths
                        .iter()
                        .map(|choice| sequence_of_choice[*choice])
                        .collect();
                    batch
                        .add(node.token, to_i32(item_end + node.depth)?, &sequences, true)
                        .map_err(|error| engine_error(&error))?;
                    node_rows.push(batch.n_tokens() - 1);
                }
                rows.push(node_rows);
            }
            self.decode(&mut batch, stats)?;
            for (local, item) in (start..end).enumerate() {
                let mut normalisers: Vec<Option<f32>> = vec![None; nodes.len()];
                for (choice, tokens) in choices.iter().enumerate() {
                    for (step, node_index) in predictors[choice].iter().enumerate() {
                        let row = self.context.get_logits_ith(rows[local][*node_index]);
                        if row.len() < vocabulary {
                            return Err(InferenceError::Engine("short logits row".to_owned()));
                        }
                        let normaliser = *normalisers[*node_index]
                            .get_or_insert_with(|| log_sum_exp(&row[..vocabulary]));
                        let token = token_index(tokens[step + 1], vocabulary).unwrap_or(0);
                        results[item][choice] += row[token] - normaliser;
                    }
                }
            }
            let first = first_path_sequence;
            self.release_sequences(first..first + (end - start) * paths.len());
            start = end;
        }
        self.release_sequences(1..items.len() + 1);
        Ok(())
    }

    #[allow(clippy::too_many_lines)] // One decoding loop, easier to follow whole.
    fn generate(&mut self, request: &GenerateRequest) -> Result<GenerateOutput, InferenceError> {
        let mut stats = DecodeStats::default();
        let vocabulary = usize::try_from(self.model.n_vocab()).unwrap_or(0);
        let tokens = self.tokenize(&request.prompt, true);
        if tokens.is_empty() {
            return Err(InferenceError::Engine("the prompt is empty".to_owned()));
        }
        // Reuse whatever the cached prefix shares with the prompt, but decode at least one token.
        let common = common_prefix_length(&self.prefix, &tokens).min(tokens.len() - 1);
        let max_tokens = request.max_tokens as usize;
        let used_by_prefix = self.prefix.len();
        if used_by_prefix + tokens.len() - common + max_tokens + 1 > self.context_size {
            return Err(InferenceError::Engine(format!(
                "a prompt of {} tokens and {} new tokens do not fit a context of {} tokens",
                tokens.len(),
                max_tokens,
                self.context_size
            )));
        }
        let sequence = 1;
        self.context
            .kv_cache_seq_rm(sequence, None, None)
            .map_err(|error| InferenceError::Engine(error.to_string()))?;
        if common > 0 {
            self.context
                .kv_cache_seq_cp(0, sequence, None, Some(to_u32(common)?))
                .map_err(|error| InferenceError::Engine(error.to_string()))?;
        }
        let chunk_size = 512;
        let mut batch = LlamaBatch::new(chunk_size, 1);
        let mut last_row = 0;
        for (chunk_index, chunk) in tokens[common..].chunks(chunk_size).enumerate() {
            batch.clear();
            let start = common + chunk_index * chunk_size;
            for (offset, token) in chunk.iter().enumerate() {
                let last = start + offset + 1 == tokens.len();
                batch
                    .add(*token, to_i32(start + offset)?, &[sequence], last)
                    .map_err(|error| InferenceError::Engine(error.to_string()))?;
            }
            last_row = batch.n_tokens() - 1;
            self.decode(&mut batch, &mut stats)?;
        }
        let mut guide = match &request.grammar {
            Some(grammar) => Some(GrammarGuide::new(self.model, grammar)?),
            None => None,
        };
        let vocab = self.model.vocab();
        let mut bytes = Vec::new();
        let mut generated = 0_u32;
        let mut position = tokens.len();
        while (generated as usize) < max_tokens {
            let row = self.context.get_logits_ith(last_row);
            if row.len() < vocabulary {
                return Err(InferenceError::Engine("short logits row".to_owned()));
            }
            // Greedy decoding: analysis wants the model's most likely reading, reproducibly.
            let best = row[..vocabulary]
                .iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (index, logit)| {
                    if *logit > best.1 {
                        (index, *logit)
                    } else {
                        best
                    }
                })
                .0;
            let token = match guide.as_mut() {
                Some(guide) => guide.choose(&row[..vocabulary], best)?,
                None => LlamaToken(to_i32(best)?),
            };
            if vocab.is_eog(token) {
                break;
            }
            bytes.extend_from_slice(&vocab.token_to_piece(token, false, None));
            generated += 1;
            let text = String::from_utf8_lossy(&bytes);
            if let Some(cut) = request
                .stop
                .iter()
                .filter(|stop| !stop.is_empty())
                .filter_map(|stop| text.find(stop.as_str()))
                .min()
            {
                let text = text[..cut].to_owned();
                return Ok(GenerateOutput {
                    text,
                    tokens_generated: generated,
                    grammar_fallbacks: guide.map_or(0, |guide| guide.fallbacks),
                    stats,
                });
            }
            batch.clear();
            batch
                .add(token, to_i32(position)?, &[sequence], true)
                .map_err(|error| InferenceError::Engine(error.to_string()))?;
            position += 1;
            last_row = 0;
            self.decode(&mut batch, &mut stats)?;
        }
        Ok(GenerateOutput {
            text: String::from_utf8_lossy(&bytes).into_owned(),
            tokens_generated: generated,
            grammar_fallbacks: guide.map_or(0, |guide| guide.fallbacks),
            stats,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trie_shares_prefixes_and_maps_each_step_to_its_node() {
        let t = LlamaToken;
        let choices = vec![
            vec![t(1), t(2), t(3)],
            vec![t(1), t(2), t(4)],
            vec![t(1), t(5)],
            vec![t(6)],
        ];
        let (nodes, predictors) = choice_trie(&choices);
        // Inner nodes: [1] (for choices 0, 1, 2) and [1, 2] (for 0 and 1).
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].paths, vec![0, 1, 2]);
        assert_eq!(nodes[1].paths, vec![0, 1]);
        assert_eq!(nodes[1].depth, 1);
        assert_eq!(predictors[0], vec![0, 1]);
        assert_eq!(predictors[2], vec![0]);
        assert!(predictors[3].is_empty());
    }

    #[test]
    fn log_sum_exp_matches_the_direct_sum() {
        let row = [1.0_f32, 2.0, 3.0];
        let direct = (1.0_f32.exp() + 2.0_f32.exp() + 3.0_f32.exp()).ln();
        assert!((log_sum_exp(&row) - direct).abs() < 1e-5);
    }
}
