//! `rapport bench analysis`: how fast the default model runs here, raw and through Rapport.
//!
//! In one run: (a) llama.cpp's raw speed from a minimal direct loop (one prompt decoded as one
//! batch, then greedy generation one token at a time), and (b) the pipeline (prefix reuse, batched
//! label scoring) on synthetic short messages at several batch widths and on six-message
//! conversations. The pipeline's token throughput is compared with the raw prompt speed, since
//! label scoring is prompt processing. The last line is one JSON object.

use std::num::NonZeroU32;
use std::time::Instant;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use crate::config::InferenceConfig;
use crate::inference::engine::backend;
use crate::inference::models::{self, ModelDirectories, PACKAGED_MODELS_DIR};
use crate::inference::{
    engine_settings, prompts, start_local, Backend, InferenceError, LabelSet, LocalBackend,
    TaskKind,
};

#[derive(Clone, Debug)]
pub struct AnalysisBench {
    pub messages: usize,
    pub conversations: usize,
    pub widths: Vec<usize>,
    pub threads: u32,
}

const OPENERS: [&str; 8] = [
    "Hi,",
    "Hello team,",
    "Good morning,",
    "Hey,",
    "Dear support,",
    "Hi there,",
    "Hello,",
    "Morning,",
];
const BODIES: [&str; 12] = [
    "my card was declined twice today and I am really annoyed",
    "thank you so much, the refund arrived and everything works now",
    "can you tell me when my new card will be delivered",
    "the app crashes every time I try to log in",
    "great service, the agent solved my problem in minutes",
    "I was charged twice for the same order",
    "how do I change the address on my account",
    "nobody has answered my ticket for a week, this is unacceptable",
    "the transfer went through quickly, thanks",
    "what are your opening hours on Sunday",
    "I lost my phone and need to block my card",
    "the new dashboard is really easy to use, well done",
];
const CLOSERS: [&str; 6] = [
    "Thanks.",
    "Regards, Sam",
    "Please help.",
    "Cheers",
    "",
    "Best wishes",
];

/// A deterministic sequence of synthetic customer messages (no randomness between runs).
fn synthetic_messages(count: usize, salt: usize) -> Vec<String> {
    (0..count)
        .map(|index| {
            let mixed = index.wrapping_mul(2_654_435_761).wrapping_add(salt);
            format!(
                "{} {} {}",
                OPENERS[mixed % OPENERS.len()],
                BODIES[(mixed / 7) % BODIES.len()],
                CLOSERS[(mixed / 11) % CLOSERS.len()]
            )
            .trim()
            .to_owned()
        })
        .collect()
}

fn synthetic_conversations(count: usize) -> Vec<String> {
    (0..count)
        .map(|index| {
            let messages = synthetic_messages(6, index * 6);
            messages
                .iter()
                .enumerate()
                .map(|(turn, text)| {
                    let speaker = if turn % 2 == 0 { "Customer" } else { "Agent" };
                    format!("{speaker}: {text}")
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// Times the raw prompt decode is measured; the median counts.
const PROMPT_ROUNDS: usize = 5;

/// How many short messages the raw item loop decodes at each width.
const RAW_ITEMS: usize = 256;

/// Raw llama.cpp speeds from a minimal direct loop.
struct RawSpeed {
    /// One 512-token prompt decoded as one batch (one output row), tokens per second.
    prompt: f64,
    /// Greedy generation, one token per decode, tokens per second.
    generation: f64,
    /// The pipeline's kind of work without the pipeline, per batch width.
    items: Vec<RawItems>,
    /// The tokens of the sentiment prompt's few-shot prefix.
    prefix_tokens: usize,
}

/// Short items decoded `width` sequences per batch, one output row each; tokens per second.
struct RawItems {
    width: usize,
    /// Alone in the cache.
    bare: f64,
    /// Each continuing the sentiment prompt's few-shot prefix, as in the pipeline.
    after_prefix: f64,
}

impl RawSpeed {
    /// The raw item speeds at `width`, alone and after the prefix (NaN where not measured).
    fn items_at(&self, width: usize) -> (f64, f64) {
        self.items
            .iter()
            .find(|measured| measured.width == width)
            .map_or((f64::NAN, f64::NAN), |measured| {
                (measured.bare, measured.after_prefix)
            })
    }

    /// Prints the raw figures, one line each.
    fn print(&self) {
        println!(
            "raw prompt             {:.0} tokens/s (512-token batch)",
            self.prompt
        );
        println!(
            "raw generation         {:.1} tokens/s (greedy, one token per decode)",
            self.generation
        );
        for measured in &self.items {
            println!(
                "raw short items, width {:>2}  {:.0} tokens/s alone, {:.0} tokens/s after the {}-token prefix (one output row per item)",
                measured.width, measured.bare, measured.after_prefix, self.prefix_tokens
            );
        }
    }
}

/// Raw llama.cpp speed: prompt, generation, and short items with an output row each.
fn raw_speed(
    path: &std::path::Path,
    threads: u32,
    prefix: &str,
    items: &[String],
    widths: &[usize],
) -> Result<RawSpeed, InferenceError> {
    let engine_error = |error: &dyn std::fmt::Display| InferenceError::Engine(error.to_string());
    let backend = backend()?;
    let model = LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())
        .map_err(|error| engine_error(&error))?;
    let threads = i32::try_from(threads).unwrap_or(2);
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(2048))
        .with_n_batch(2048)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let mut context = model
        .new_context(backend, params)
        .map_err(|error| engine_error(&error))?;
    let text = synthetic_messages(40, 1).join("\n");
    let mut tokens = model.vocab().tokenize(text.as_bytes(), true, false);
    tokens.truncate(512);
    let prompt_tokens = tokens.len();
    let mut batch = LlamaBatch::new(prompt_tokens, 1);
    for (position, token) in tokens.iter().enumerate() {
        let position = i32::try_from(position).map_err(|error| engine_error(&error))?;
        batch
            .add(
                *token,
                position,
                &[0],
                position + 1 == i32::try_from(prompt_tokens).unwrap_or(0),
            )
            .map_err(|error| engine_error(&error))?;
    }
    // The prompt is decoded PROMPT_ROUNDS times into an emptied cache; the median counts, so
    // neither the first decode's set-up nor one noisy round decides the ratio.
    let mut rounds = Vec::with_capacity(PROMPT_ROUNDS);
    for _ in 0..PROMPT_ROUNDS {
        context.clear_kv_cache();
        let started = Instant::now();
        context
            .decode(&mut batch)
            .map_err(|error| engine_error(&error))?;
        rounds.push(started.elapsed().as_secs_f64());
    }
    rounds.sort_by(f64::total_cmp);
    let prompt_seconds = rounds[PROMPT_ROUNDS / 2];

    let generate: u32 = 64;
    let vocabulary = usize::try_from(model.n_vocab()).unwrap_or(0);
    let mut last_row = batch.n_tokens() - 1;
    let started = Instant::now();
    for step in 0..generate {
        let row = context.get_logits_ith(last_row);
        let best = row[..vocabulary.min(row.len())]
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
        batch.clear();
        let position =
            i32::try_from(prompt_tokens + step as usize).map_err(|error| engine_error(&error))?;
        let token = LlamaToken(i32::try_from(best).map_err(|error| engine_error(&error))?);
        batch
            .add(token, position, &[0], true)
            .map_err(|error| engine_error(&error))?;
        context
            .decode(&mut batch)
            .map_err(|error| engine_error(&error))?;
        last_row = 0;
    }
    let generate_seconds = started.elapsed().as_secs_f64();
    drop(context);
    // Tokenised as the engine does a prompt prefix: with the start token.
    let prefix = model.vocab().tokenize(prefix.as_bytes(), true, false);
    let items = widths
        .iter()
        .map(|width| {
            Ok(RawItems {
                width: *width,
                bare: raw_items_speed(&model, threads, &[], items, *width)?,
                after_prefix: raw_items_speed(&model, threads, &prefix, items, *width)?,
            })
        })
        .collect::<Result<Vec<_>, InferenceError>>()?;
    #[allow(clippy::cast_precision_loss)]
    Ok(RawSpeed {
        prompt: prompt_tokens as f64 / prompt_seconds,
        generation: f64::from(generate) / generate_seconds,
        items,
        prefix_tokens: prefix.len(),
    })
}

/// Tokens per second of `items` decoded `width` sequences per batch, each batch's items replacing
/// the previous batch's in the cache, with one output row per item whose first three logits are
/// read. With a `prefix`, the cache holds it in sequence 0 (decoded once, not counted), and each
/// item continues it in a sequence of its own, as the pipeline's items continue the few-shot
/// prompt.
fn raw_items_speed(
    model: &LlamaModel,
    threads: i32,
    prefix: &[LlamaToken],
    items: &[String],
    width: usize,
) -> Result<f64, InferenceError> {
    let engine_error = |error: &dyn std::fmt::Display| InferenceError::Engine(error.to_string());
    let sequences = u32::try_from(width + 1).map_err(|error| engine_error(&error))?;
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(2048))
        .with_n_batch(2048)
        .with_n_seq_max(sequences)
        .with_n_threads(threads)
        .with_n_threads_batch(threads)
        .with_kv_unified(true);
    let mut context = model
        .new_context(backend()?, params)
        .map_err(|error| engine_error(&error))?;
    if !prefix.is_empty() {
        let mut batch = LlamaBatch::new(prefix.len(), 1);
        for (position, token) in prefix.iter().enumerate() {
            let position = i32::try_from(position).map_err(|error| engine_error(&error))?;
            batch
                .add(*token, position, &[0], false)
                .map_err(|error| engine_error(&error))?;
        }
        context
            .decode(&mut batch)
            .map_err(|error| engine_error(&error))?;
    }
    let tokenized: Vec<Vec<LlamaToken>> = items
        .iter()
        .map(|item| model.vocab().tokenize(item.as_bytes(), false, false))
        .collect();
    let mut tokens = 0;
    let mut checksum = 0.0_f32;
    let started = Instant::now();
    for group in tokenized.chunks(width) {
        let total: usize = group.iter().map(Vec::len).sum();
        let mut batch = LlamaBatch::new(total.max(1), 1);
        let mut rows = Vec::with_capacity(group.len());
        for (slot, item) in group.iter().enumerate() {
            // Sequence 0 holds the prefix; the items take 1.. and start over each batch.
            let sequence = i32::try_from(slot + 1).map_err(|error| engine_error(&error))?;
            context
                .kv_cache_seq_rm(sequence, None, None)
                .map_err(|error| engine_error(&error))?;
            context
                .kv_cache_seq_cp(0, sequence, None, None)
                .map_err(|error| engine_error(&error))?;
            for (offset, token) in item.iter().enumerate() {
                let last = offset + 1 == item.len();
                let position =
                    i32::try_from(prefix.len() + offset).map_err(|error| engine_error(&error))?;
                batch
                    .add(*token, position, &[sequence], last)
                    .map_err(|error| engine_error(&error))?;
            }
            rows.push(batch.n_tokens() - 1);
        }
        context
            .decode(&mut batch)
            .map_err(|error| engine_error(&error))?;
        for row in rows {
            checksum += context.get_logits_ith(row)[..3].iter().sum::<f32>();
        }
        tokens += total;
    }
    let seconds = started.elapsed().as_secs_f64();
    if !checksum.is_finite() {
        return Err(InferenceError::Engine("non-finite logits".to_owned()));
    }
    #[allow(clippy::cast_precision_loss)]
    Ok(tokens as f64 / seconds)
}

/// One measured pipeline pass.
struct Pass {
    items: usize,
    seconds: f64,
    tokens: u64,
}

impl Pass {
    #[allow(clippy::cast_precision_loss)]
    fn items_per_second(&self) -> f64 {
        self.items as f64 / self.seconds
    }

    #[allow(clippy::cast_precision_loss)]
    fn tokens_per_second(&self) -> f64 {
        self.tokens as f64 / self.seconds
    }
}

fn pass(backend: &dyn Backend, texts: &[String]) -> Result<Pass, InferenceError> {
    let labels = LabelSet::sentiment();
    let started = Instant::now();
    let mut tokens = 0;
    for chunk in texts.chunks(64) {
        tokens += backend
            .classify(TaskKind::Sentiment, &labels, chunk)?
            .tokens_decoded;
    }
    Ok(Pass {
        items: texts.len(),
        seconds: started.elapsed().as_secs_f64(),
        tokens,
    })
}

/// One pass over `texts` at each of `widths`, each printed as "`what`, width N  … `unit`/s".
fn sweep(
    local: &mut LocalBackend,
    texts: &[String],
    widths: &[usize],
    what: &str,
    unit: &str,
) -> Result<Vec<(usize, Pass)>, InferenceError> {
    let mut by_width = Vec::new();
    for width in widths {
        local.engine_mut().set_batch_width(*width)?;
        let measured = pass(local, texts)?;
        println!(
            "{what}, width {width:>2}  {:.1} {unit}/s, {:.0} tokens/s",
            measured.items_per_second(),
            measured.tokens_per_second()
        );
        by_width.push((*width, measured));
    }
    Ok(by_width)
}

/// The pass with the most items per second, and its width.
fn fastest(by_width: &[(usize, Pass)]) -> Result<(usize, &Pass), InferenceError> {
    by_width
        .iter()
        .max_by(|left, right| {
            left.1
                .items_per_second()
                .total_cmp(&right.1.items_per_second())
        })
        .map(|(width, measured)| (*width, measured))
        .ok_or_else(|| InferenceError::Invalid("no batch width to try".to_owned()))
}

/// Runs the benchmark and prints its figures; the last line is JSON.
pub fn analysis(options: &AnalysisBench) -> Result<(), InferenceError> {
    let config = InferenceConfig {
        threads: options.threads,
        ..InferenceConfig::default()
    };
    let directories =
        ModelDirectories::new(vec![PACKAGED_MODELS_DIR.into(), config.models_cache_dir()]);
    let path = directories
        .find_by_sha256(models::DEFAULT_MODEL_SHA256)
        .map_err(|error| {
            InferenceError::Invalid(format!("{error} (run scripts/fetch-model.sh first)"))
        })?;
    println!("model                  {}", path.display());
    println!("threads                {}", options.threads);
    println!(
        "kernels                {}",
        crate::cpu::kernels_note().map_err(InferenceError::Engine)?
    );

    let messages = synthetic_messages(options.messages, 0);
    let items: Vec<String> = messages
        .iter()
        .take(RAW_ITEMS)
        .map(|text| prompts::item(TaskKind::Sentiment, text))
        .collect();
    let prefix = prompts::classification_prompt(TaskKind::Sentiment, &LabelSet::sentiment()).prefix;
    let raw = raw_speed(&path, options.threads, &prefix, &items, &options.widths)?;
    let prompt_rate = raw.prompt;
    let generate_rate = raw.generation;
    raw.print();

    let mut local = start_local(&path, &[], &engine_settings(&config))?;
    // Warm-up: decodes the prompt prefix once, as a running server would have done long ago.
    pass(&local, &messages[..messages.len().min(8)])?;
    let by_width = sweep(
        &mut local,
        &messages,
        &options.widths,
        "short messages",
        "messages",
    )?;
    let (best_width, best) = fastest(&by_width)?;
    let conversations = synthetic_conversations(options.conversations);
    let conversation_passes = sweep(
        &mut local,
        &conversations,
        &options.widths,
        "conversations (6 msgs)",
        "conversations",
    )?;
    let (_, conversation_pass) = fastest(&conversation_passes)?;
    let ratio = best.tokens_per_second() / prompt_rate;
    let conversation_ratio = conversation_pass.tokens_per_second() / prompt_rate;
    println!("pipeline / raw         {ratio:.2} (short messages), {conversation_ratio:.2} (conversations)");
    // The same width's raw item loops: what the few-shot prefix and the output rows cost in
    // llama.cpp itself, and what the pipeline adds over llama.cpp doing the same work.
    let (bare, after_prefix) = raw.items_at(best_width);
    let items_ratio = best.tokens_per_second() / after_prefix;
    println!(
        "raw items / raw        {:.2} alone, {:.2} after the prefix (width {best_width})",
        bare / prompt_rate,
        after_prefix / prompt_rate
    );
    println!(
        "pipeline / raw items   {items_ratio:.2} (short messages, width {best_width}, after the prefix)"
    );
    let rss = crate::bench::peak_rss_mib();
    println!("peak RSS               {rss} MiB");
    let round = |value: f64| (value * 100.0).round() / 100.0;
    let widths: Vec<serde_json::Value> = by_width
        .iter()
        .map(|(width, measured)| {
            serde_json::json!({
                "width": width,
                "messages_per_second": round(measured.items_per_second()),
                "tokens_per_second": round(measured.tokens_per_second()),
            })
        })
        .collect();
    println!(
        "{}",
        serde_json::json!({
            "threads": options.threads,
            "raw_prompt_tokens_per_second": round(prompt_rate),
            "raw_generated_tokens_per_second": round(generate_rate),
            "short_messages": options.messages,
            "best_width": best_width,
            "messages_per_second": round(best.items_per_second()),
            "pipeline_tokens_per_second": round(best.tokens_per_second()),
            "pipeline_vs_raw": round(ratio),
            "raw_items_tokens_per_second": round(bare),
            "raw_items_after_prefix_tokens_per_second": round(after_prefix),
            "prefix_tokens": raw.prefix_tokens,
            "pipeline_vs_raw_items": round(items_ratio),
            "conversations": options.conversations,
            "conversations_per_second": round(conversation_pass.items_per_second()),
            "conversation_pipeline_vs_raw": round(conversation_ratio),
            "widths": widths,
            "peak_rss_mib": rss,
        })
    );
    Ok(())
}
