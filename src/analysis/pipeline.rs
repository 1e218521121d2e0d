//! One batch of interactions through a backend. Sentiment (each interaction and each of its
//! customer messages) is one `classify` call for the whole batch, topics another, so the local
//! engine fills its batch width; summaries are generated one interaction at a time.
//!
//! What each analyzer reads is digested first. When an interaction's new version gives the same
//! digest as its stored analysis, from the same model and prompt version, the stored result is
//! re-stamped with the new version instead of being computed again: re-importing an unchanged
//! export costs a read, not a model run.
//!
//! Model output is untrusted text: the summary is cut to one line and [`MAX_SUMMARY_CHARS`],
//! stored as data, and never logged.

use std::time::Instant;

use chrono::{DateTime, Utc};

use crate::analysis::{
    lead, Analysis, AnalysisKind, AnalysisResult, LabelProbability, LabelScores, MessageSentiment,
    Provenance,
};
use crate::inference::prompts::{self, PROMPT_VERSION, SUMMARY_PROMPT_VERSION};
use crate::inference::{Backend, BackendKind, Classified, InferenceError, LabelSet, TaskKind};
use crate::interactions::{AuthorRole, Interaction, InteractionRecord};

/// A stored summary is at most this many characters.
pub const MAX_SUMMARY_CHARS: usize = 400;
/// Tokens a summary may take to generate.
pub const SUMMARY_MAX_TOKENS: u32 = 64;
/// A topic besides the most likely one is kept when it is at least this likely.
pub const SECOND_TOPIC_PROBABILITY: f32 = 0.25;
/// Topics kept at most.
const MAX_TOPICS: usize = 3;
/// Customer messages scored one by one, per interaction: the latest ones.
const MAX_MESSAGES_SCORED: usize = 16;
/// The conversation shown to the summary prompt: each message and the whole, in characters.
const MAX_LINE_CHARS: usize = 400;
const MAX_CONVERSATION_CHARS: usize = 1600;

/// One interaction to analyse, what is asked for, and what is stored for it already.
#[derive(Debug)]
pub struct Item<'a> {
    pub interaction: &'a Interaction,
    pub kinds: &'a [AnalysisKind],
    pub existing: &'a [Analysis],
    /// A person marked it as a lead ([`crate::leads`]): qualified even when it is not a sales
    /// chat.
    pub marked_lead: bool,
}

/// What became of one item.
#[derive(Debug)]
pub enum ItemOutcome {
    /// Every kind asked for, analysed (or reused).
    Done(Vec<Analysis>),
    /// The backend failed on this item alone.
    Failed,
    /// The batch stopped (the worker is shutting down) before this item was finished.
    NotReached,
}

/// The texts the analyzers read, taken from the interaction. Internal notes are never read:
/// they are not part of the conversation with the customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs {
    /// The customer's messages together (every non-internal message when the customer wrote
    /// none): the interaction's sentiment.
    pub overall: String,
    /// The latest customer messages, by position in the interaction.
    pub messages: Vec<(usize, String)>,
    /// The subject and the customer's messages: what the topics are about.
    pub topic_text: String,
    /// One `Role: text` line per message, for the summary.
    pub conversation: String,
    /// Only sales chats are qualified as leads.
    pub is_sales_chat: bool,
}

/// `text` on one line: whitespace runs collapsed to single spaces, cut after the last whole word
/// that fits `max_chars` characters. Prompts use it so that a text stays one prompt line.
pub(crate) fn flatten(text: &str, max_chars: usize) -> String {
    let mut flat = String::new();
    for word in text.split_whitespace() {
        if flat.chars().count() + word.chars().count() + 1 > max_chars {
            break;
        }
        if !flat.is_empty() {
            flat.push(' ');
        }
        flat.push_str(word);
    }
    flat
}

fn role_name(role: AuthorRole) -> &'static str {
    match role {
        AuthorRole::Customer => "Customer",
        AuthorRole::Agent => "Agent",
        AuthorRole::AiAgent => "AI agent",
        AuthorRole::InternalNote => "Note",
    }
}

impl Inputs {
    pub fn of(record: &InteractionRecord) -> Self {
        let conversation: Vec<(usize, &crate::interactions::MessageRecord)> = record
            .messages
            .iter()
            .enumerate()
            .filter(|(_, message)| message.role != AuthorRole::InternalNote)
            .collect();
        let customer: Vec<(usize, &str)> = conversation
            .iter()
            .filter(|(_, message)| message.role == AuthorRole::Customer)
            .map(|(index, message)| (*index, message.text.as_str()))
            .collect();
        let spoken: Vec<&str> = if customer.is_empty() {
            conversation
                .iter()
                .map(|(_, message)| message.text.as_str())
                .collect()
        } else {
            customer.iter().map(|(_, text)| *text).collect()
        };
        let overall = spoken.join("\n");
        let messages = customer
            .iter()
            .skip(customer.len().saturating_sub(MAX_MESSAGES_SCORED))
            .map(|(index, text)| (*index, (*text).to_owned()))
            .collect();
        let topic_text = match &record.subject {
            Some(subject) => format!("{subject}\n{overall}"),
            None => overall.clone(),
        };
        let lines: Vec<String> = conversation
            .iter()
            .map(|(_, message)| {
                format!(
                    "{}: {}",
                    role_name(message.role),
                    flatten(&message.text, MAX_LINE_CHARS)
                )
            })
            .collect();
        Self {
            overall,
            messages,
            topic_text,
            conversation: bounded_conversation(&lines),
            is_sales_chat: record.channel == crate::interactions::Channel::SalesChat,
        }
    }

    /// SHA-256 (hex) of what `kind` reads; `topics` are part of what the topic analyzer reads.
    fn digest(&self, kind: AnalysisKind, topics: &LabelSet) -> String {
        let texts: Vec<&str> = match kind {
            // QA reads more (authors, the scorecard) and uses its own digest
            // (`crate::qa::scoring::input_digest`); this one is never asked for.
            // Reply drafts are made outside the pipeline (`crate::reviews::analyse`), and so are
            // account briefings (`crate::accounts::briefing`).
            AnalysisKind::Summary
            | AnalysisKind::Qa
            | AnalysisKind::ReplyDraft
            | AnalysisKind::Briefing => {
                vec![self.conversation.as_str()]
            }
            AnalysisKind::Sentiment => std::iter::once(self.overall.as_str())
                .chain(self.messages.iter().map(|(_, text)| text.as_str()))
                .collect(),
            AnalysisKind::Topics => std::iter::once(self.topic_text.as_str())
                .chain(topics.as_slice().iter().map(String::as_str))
                .collect(),
            AnalysisKind::Lead => vec![self.overall.as_str()],
        };
        // Each text is length-prefixed, so moving a boundary between texts changes the digest.
        let mut material = kind.as_str().as_bytes().to_vec();
        for text in texts {
            material
                .extend_from_slice(&u64::try_from(text.len()).unwrap_or(u64::MAX).to_be_bytes());
            material.extend_from_slice(text.as_bytes());
        }
        hex::encode(crate::crypto::sha256(&[&material]))
    }
}

/// The first line and the latest lines that fit [`MAX_CONVERSATION_CHARS`]: how a conversation
/// opens and where it ended say most about it.
fn bounded_conversation(lines: &[String]) -> String {
    let total: usize = lines.iter().map(|line| line.chars().count() + 1).sum();
    if total <= MAX_CONVERSATION_CHARS || lines.len() < 2 {
        return lines.join("\n");
    }
    let mut budget = MAX_CONVERSATION_CHARS.saturating_sub(lines[0].chars().count() + 1);
    let mut tail = Vec::new();
    for line in lines[1..].iter().rev() {
        let cost = line.chars().count() + 1;
        if cost > budget {
            break;
        }
        budget -= cost;
        tail.push(line.as_str());
    }
    tail.reverse();
    std::iter::once(lines[0].as_str())
        .chain(tail)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A model's summary made safe to store: its first line, whitespace collapsed, at most
/// [`MAX_SUMMARY_CHARS`] characters (cut at a word where possible).
pub fn clean_summary(generated: &str) -> String {
    let first_line = generated.trim_start().lines().next().unwrap_or_default();
    let flat = flatten(first_line, usize::MAX);
    if flat.chars().count() <= MAX_SUMMARY_CHARS {
        return flat;
    }
    let cut: String = flat.chars().take(MAX_SUMMARY_CHARS - 1).collect();
    let cut = match cut.rfind(' ') {
        Some(space) if space > MAX_SUMMARY_CHARS / 2 => cut[..space].to_owned(),
        _ => cut,
    };
    format!("{cut}…")
}

/// Without a model: the first sentence the customer wrote (or the first message), bounded.
fn extractive_summary(inputs: &Inputs) -> String {
    let first = inputs
        .messages
        .first()
        .map(|(_, text)| text.as_str())
        .or_else(|| inputs.overall.lines().next())
        .unwrap_or_default();
    let flat = flatten(first, usize::MAX);
    let sentence_end = flat
        .char_indices()
        .find(|(index, c)| {
            matches!(c, '.' | '?' | '!')
                && flat[index + c.len_utf8()..]
                    .chars()
                    .next()
                    .is_none_or(char::is_whitespace)
        })
        .map_or(flat.len(), |(index, c)| index + c.len_utf8());
    clean_summary(&flat[..sentence_end])
}

/// The chosen topics: the most likely label, and up to two more that are at least
/// [`SECOND_TOPIC_PROBABILITY`] likely, most likely first.
pub fn chosen_topics(probabilities: &[LabelProbability]) -> Vec<String> {
    let mut ranked: Vec<&LabelProbability> = probabilities.iter().collect();
    ranked.sort_by(|left, right| right.probability.total_cmp(&left.probability));
    ranked
        .iter()
        .enumerate()
        .filter(|(rank, scored)| *rank == 0 || scored.probability >= SECOND_TOPIC_PROBABILITY)
        .take(MAX_TOPICS)
        .map(|(_, scored)| scored.label.clone())
        .collect()
}

/// A backend answers every text, or the batch fails (rather than pairing results wrongly).
fn check_count(classified: &Classified, expected: usize) -> Result<(), InferenceError> {
    if classified.results.len() == expected {
        Ok(())
    } else {
        Err(InferenceError::Engine(format!(
            "the backend answered {} of {expected} texts",
            classified.results.len()
        )))
    }
}

/// A non-zero item count, for sharing a batch's time out.
fn count(items: usize) -> u64 {
    u64::try_from(items).unwrap_or(u64::MAX).max(1)
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The backend's side of a provenance record.
struct Maker {
    backend: BackendKind,
    description: String,
    model: String,
}

impl Maker {
    fn provenance(
        &self,
        analyzer: &str,
        prompt_version: u32,
        version: DateTime<Utc>,
        duration_ms: u64,
        input_digest: String,
    ) -> Provenance {
        Provenance {
            backend: self.backend,
            backend_description: self.description.clone(),
            model: self.model.clone(),
            analyzer: analyzer.to_owned(),
            prompt_version,
            interaction_version: version,
            created: Utc::now(),
            duration_ms,
            input_digest,
        }
    }

    /// The stored analysis of `kind`, when it read the same inputs with this model and prompt:
    /// re-stamped with the new version.
    fn reusable(
        &self,
        existing: &[Analysis],
        kind: AnalysisKind,
        prompt_version: u32,
        digest: &str,
        version: DateTime<Utc>,
    ) -> Option<Analysis> {
        existing
            .iter()
            .find(|analysis| {
                analysis.kind() == kind
                    && analysis.provenance.backend == self.backend
                    && analysis.provenance.model == self.model
                    && analysis.provenance.prompt_version == prompt_version
                    && analysis.provenance.input_digest == digest
            })
            .map(|analysis| {
                let mut reused = analysis.clone();
                reused.provenance.interaction_version =
                    version.max(analysis.provenance.interaction_version);
                reused
            })
    }
}

fn prompt_version(kind: AnalysisKind) -> u32 {
    match kind {
        AnalysisKind::Summary => SUMMARY_PROMPT_VERSION,
        AnalysisKind::Qa => prompts::QA_PROMPT_VERSION,
        AnalysisKind::Sentiment | AnalysisKind::Topics => PROMPT_VERSION,
        AnalysisKind::Lead => lead::LEAD_PROMPT_VERSION,
        AnalysisKind::ReplyDraft => crate::reviews::drafts::REPLY_PROMPT_VERSION,
        AnalysisKind::Briefing => crate::accounts::briefing::BRIEFING_PROMPT_VERSION,
    }
}

fn analyzer(backend: BackendKind, kind: AnalysisKind) -> &'static str {
    match (backend, kind) {
        (BackendKind::Off, AnalysisKind::Summary) => "extractive",
        (BackendKind::Off, AnalysisKind::Sentiment) => "lexicon",
        (BackendKind::Off, AnalysisKind::Topics) => "keyword topics",
        (BackendKind::Off, AnalysisKind::Qa) => "qa keyword checks",
        (BackendKind::Off, AnalysisKind::Lead) => "keyword intent and fact patterns",
        (BackendKind::Off, AnalysisKind::ReplyDraft) => crate::reviews::drafts::TEMPLATE_ANALYZER,
        (_, AnalysisKind::Lead) => "label scoring and grammar-constrained extraction",
        (_, AnalysisKind::Summary) => "few-shot generation",
        (_, _) => "label scoring",
    }
}

/// Analyses `items` with `backend`. A failed classification fails the whole batch (the caller
/// retries its jobs); a failed summary fails its item. `stop` is asked between summaries.
/// `scorecard` is the tenant's QA scorecard.
pub fn analyse_batch(
    backend: &dyn Backend,
    topics: &LabelSet,
    scorecard: &crate::qa::Scorecard,
    items: &[Item<'_>],
    stop: &dyn Fn() -> bool,
) -> Result<Vec<ItemOutcome>, InferenceError> {
    let mut batch = Batch::plan(backend, topics, scorecard, items);
    batch.score_sentiment()?;
    batch.score_topics()?;
    batch.qualify_leads()?;
    batch.score_qa(scorecard)?;
    Ok(batch.summarise(stop))
}

/// One batch under way: its inputs, the results so far, and what is still to compute.
struct Batch<'a> {
    backend: &'a dyn Backend,
    maker: Maker,
    topics: &'a LabelSet,
    items: &'a [Item<'a>],
    inputs: Vec<Inputs>,
    done: Vec<Vec<Analysis>>,
    /// Per item, the kinds still to compute, each with the digest of what it reads.
    pending: Vec<Vec<(AnalysisKind, String)>>,
}

impl<'a> Batch<'a> {
    /// Reads the inputs and reuses every stored result whose inputs have not changed.
    fn plan(
        backend: &'a dyn Backend,
        topics: &'a LabelSet,
        scorecard: &crate::qa::Scorecard,
        items: &'a [Item<'a>],
    ) -> Self {
        let maker = Maker {
            backend: backend.kind(),
            description: backend.describe(),
            model: backend.model_id(),
        };
        let inputs: Vec<Inputs> = items
            .iter()
            .map(|item| Inputs::of(&item.interaction.record))
            .collect();
        let mut done: Vec<Vec<Analysis>> = vec![Vec::new(); items.len()];
        let mut pending: Vec<Vec<(AnalysisKind, String)>> = vec![Vec::new(); items.len()];
        for (index, item) in items.iter().enumerate() {
            for kind in item.kinds {
                if *kind == AnalysisKind::Lead && !inputs[index].is_sales_chat && !item.marked_lead
                {
                    // Neither a sales chat nor marked as a lead: there is no lead to qualify.
                    continue;
                }
                let digest = if *kind == AnalysisKind::Qa {
                    crate::qa::scoring::input_digest(&item.interaction.record, scorecard)
                } else {
                    inputs[index].digest(*kind, topics)
                };
                let version = item.interaction.updated;
                match maker.reusable(
                    item.existing,
                    *kind,
                    prompt_version(*kind),
                    &digest,
                    version,
                ) {
                    Some(reused) => done[index].push(reused),
                    None => pending[index].push((*kind, digest)),
                }
            }
        }
        Self {
            backend,
            maker,
            topics,
            items,
            inputs,
            done,
            pending,
        }
    }

    /// The items that still need `kind`, with their digests.
    fn wanting(&self, kind: AnalysisKind) -> Vec<(usize, String)> {
        self.pending
            .iter()
            .enumerate()
            .filter_map(|(index, pending)| {
                pending
                    .iter()
                    .find(|(wanted, _)| *wanted == kind)
                    .map(|(_, digest)| (index, digest.clone()))
            })
            .collect()
    }

    fn store(
        &mut self,
        index: usize,
        kind: AnalysisKind,
        result: AnalysisResult,
        duration_ms: u64,
        digest: String,
    ) {
        let provenance = self.maker.provenance(
            analyzer(self.maker.backend, kind),
            prompt_version(kind),
            self.items[index].interaction.updated,
            duration_ms,
            digest,
        );
        self.done[index].push(Analysis {
            interaction: self.items[index].interaction.id,
            result,
            provenance,
        });
    }

    /// Every interaction's text, then every scored message, in one call.
    fn score_sentiment(&mut self) -> Result<(), InferenceError> {
        let wanting = self.wanting(AnalysisKind::Sentiment);
        if wanting.is_empty() {
            return Ok(());
        }
        let labels = LabelSet::sentiment();
        let mut texts: Vec<String> = wanting
            .iter()
            .map(|(index, _)| self.inputs[*index].overall.clone())
            .collect();
        // Per interaction, each scored message and the result it takes. A lone customer message
        // is the interaction's text already, and takes the interaction's result.
        let mut slots: Vec<Vec<(usize, usize)>> = Vec::with_capacity(wanting.len());
        for (position, (index, _)) in wanting.iter().enumerate() {
            let item = &self.inputs[*index];
            let mut item_slots = Vec::with_capacity(item.messages.len());
            for (message, text) in &item.messages {
                if item.messages.len() == 1 && *text == item.overall {
                    item_slots.push((*message, position));
                } else {
                    texts.push(text.clone());
                    item_slots.push((*message, texts.len() - 1));
                }
            }
            slots.push(item_slots);
        }
        let started = Instant::now();
        let classified = self
            .backend
            .classify(TaskKind::Sentiment, &labels, &texts)?;
        check_count(&classified, texts.len())?;
        let share = elapsed_ms(started) / count(wanting.len());
        for (position, (index, digest)) in wanting.into_iter().enumerate() {
            let overall = LabelScores::from_classification(&labels, &classified.results[position]);
            let messages = slots[position]
                .iter()
                .map(|(message, slot)| MessageSentiment {
                    message: *message,
                    scores: LabelScores::from_classification(&labels, &classified.results[*slot]),
                })
                .collect();
            let result = AnalysisResult::Sentiment { overall, messages };
            self.store(index, AnalysisKind::Sentiment, result, share, digest);
        }
        Ok(())
    }

    /// One call for the batch.
    fn score_topics(&mut self) -> Result<(), InferenceError> {
        let wanting = self.wanting(AnalysisKind::Topics);
        if wanting.is_empty() {
            return Ok(());
        }
        let texts: Vec<String> = wanting
            .iter()
            .map(|(index, _)| self.inputs[*index].topic_text.clone())
            .collect();
        let started = Instant::now();
        let classified = self
            .backend
            .classify(TaskKind::Topic, self.topics, &texts)?;
        check_count(&classified, texts.len())?;
        let share = elapsed_ms(started) / count(wanting.len());
        for ((index, digest), classification) in wanting.into_iter().zip(&classified.results) {
            let scores = LabelScores::from_classification(self.topics, classification);
            let result = AnalysisResult::Topics {
                labels: chosen_topics(&scores.probabilities),
                probabilities: scores.probabilities,
            };
            self.store(index, AnalysisKind::Topics, result, share, digest);
        }
        Ok(())
    }

    /// The QA scorecard: at most one call per scale in use, for the batch ([`crate::qa::scoring`]).
    fn score_qa(&mut self, scorecard: &crate::qa::Scorecard) -> Result<(), InferenceError> {
        let wanting = self.wanting(AnalysisKind::Qa);
        if wanting.is_empty() {
            return Ok(());
        }
        let records: Vec<&InteractionRecord> = wanting
            .iter()
            .map(|(index, _)| &self.items[*index].interaction.record)
            .collect();
        let started = Instant::now();
        let results = crate::qa::scoring::score_batch(self.backend, scorecard, &records)?;
        let share = elapsed_ms(started) / count(wanting.len());
        for ((index, digest), result) in wanting.into_iter().zip(results) {
            self.store(
                index,
                AnalysisKind::Qa,
                AnalysisResult::Qa(result),
                share,
                digest,
            );
        }
        Ok(())
    }

    /// Sales chats: every intent in one `classify` call, then each chat's stated facts (one short
    /// grammar-constrained generation each with a model, patterns without one).
    fn qualify_leads(&mut self) -> Result<(), InferenceError> {
        let wanting = self.wanting(AnalysisKind::Lead);
        if wanting.is_empty() {
            return Ok(());
        }
        let labels = LabelSet::parse(
            lead::INTENT_LABELS
                .iter()
                .map(|label| (*label).to_owned())
                .collect(),
        )?;
        let texts: Vec<String> = wanting
            .iter()
            .map(|(index, _)| self.inputs[*index].overall.clone())
            .collect();
        let started = Instant::now();
        let classified = self
            .backend
            .classify(TaskKind::LeadIntent, &labels, &texts)?;
        check_count(&classified, texts.len())?;
        let share = elapsed_ms(started) / count(wanting.len());
        for ((index, digest), classification) in wanting.into_iter().zip(&classified.results) {
            let started = Instant::now();
            let visitor = &self.inputs[index].overall;
            let facts = if self.maker.backend == BackendKind::Off {
                lead::pattern_facts(visitor)
            } else {
                match self.backend.generate_structured(
                    &lead::facts_prompt(visitor),
                    lead::FACTS_GRAMMAR,
                    lead::FACTS_MAX_TOKENS,
                ) {
                    Ok(answer) => lead::checked_facts(&answer, visitor),
                    // The intent stands without the facts; the chat is qualified on what is known.
                    Err(_) => lead::checked_facts("", visitor),
                }
            };
            let intent = LabelScores::from_classification(&labels, classification);
            let score = lead::score(&intent, &facts);
            let evidence = lead::evidence(&self.items[index].interaction.record, &facts);
            let result = AnalysisResult::Lead(lead::LeadQualification {
                intent,
                facts,
                score,
                evidence,
            });
            self.store(
                index,
                AnalysisKind::Lead,
                result,
                share + elapsed_ms(started),
                digest,
            );
        }
        Ok(())
    }

    /// Summaries, one at a time; the worker may stop between them. Ends the batch.
    fn summarise(mut self, stop: &dyn Fn() -> bool) -> Vec<ItemOutcome> {
        let wanting = self.wanting(AnalysisKind::Summary);
        let mut failed = vec![false; self.items.len()];
        let mut reached = vec![true; self.items.len()];
        for (index, digest) in wanting {
            if stop() {
                reached[index] = false;
                continue;
            }
            let started = Instant::now();
            let text = if self.maker.backend == BackendKind::Off {
                Ok(extractive_summary(&self.inputs[index]))
            } else {
                self.backend
                    .generate(
                        &prompts::summary_prompt(&self.inputs[index].conversation),
                        SUMMARY_MAX_TOKENS,
                    )
                    .map(|generated| clean_summary(&generated))
            };
            match text {
                Ok(text) => {
                    let result = AnalysisResult::Summary { text };
                    self.store(
                        index,
                        AnalysisKind::Summary,
                        result,
                        elapsed_ms(started),
                        digest,
                    );
                }
                Err(_) => failed[index] = true,
            }
        }
        self.done
            .into_iter()
            .enumerate()
            .map(|(index, analyses)| {
                if !reached[index] {
                    ItemOutcome::NotReached
                } else if failed[index] {
                    ItemOutcome::Failed
                } else {
                    ItemOutcome::Done(analyses)
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::lexicon::OffBackend;
    use crate::records::Stored;

    fn interaction(messages: &serde_json::Value) -> Interaction {
        let record: InteractionRecord = serde_json::from_value(serde_json::json!({
            "source_system": "desk", "source_id": "1", "channel": "chat",
            "subject": "Card declined", "messages": messages
        }))
        .unwrap();
        Stored::next_version(None, record)
    }

    fn message(role: &str, text: &str) -> serde_json::Value {
        serde_json::json!({"role": role, "sent_at": "2026-01-02T03:04:05Z", "text": text})
    }

    #[test]
    fn inputs_leave_out_internal_notes_and_keep_message_positions() {
        let stored = interaction(&serde_json::json!([
            message("customer", "My card   was declined."),
            message("internal-note", "VIP, be nice"),
            message("agent", "Sorry, fixed."),
            message("customer", "Thanks!"),
        ]));
        let inputs = Inputs::of(&stored.record);
        assert_eq!(inputs.overall, "My card   was declined.\nThanks!");
        assert_eq!(
            inputs.messages,
            vec![
                (0, "My card   was declined.".to_owned()),
                (3, "Thanks!".to_owned())
            ]
        );
        assert!(!inputs.conversation.contains("VIP"));
        assert_eq!(
            inputs.conversation,
            "Customer: My card was declined.\nAgent: Sorry, fixed.\nCustomer: Thanks!"
        );
        assert!(inputs.topic_text.starts_with("Card declined\n"));
    }

    #[test]
    fn summaries_are_one_bounded_line() {
        assert_eq!(
            clean_summary("  The card works.\nMessage: x"),
            "The card works."
        );
        let long = "word ".repeat(200);
        let cleaned = clean_summary(&long);
        assert!(cleaned.chars().count() <= MAX_SUMMARY_CHARS, "{cleaned}");
        assert!(cleaned.ends_with('…'));
    }

    #[test]
    fn long_conversations_keep_their_opening_and_their_end() {
        let lines: Vec<String> = (0..100)
            .map(|n| format!("Customer: line {n:03} {}", "x".repeat(40)))
            .collect();
        let bounded = bounded_conversation(&lines);
        assert!(bounded.chars().count() <= MAX_CONVERSATION_CHARS);
        assert!(bounded.starts_with("Customer: line 000"));
        assert!(bounded.ends_with(&lines[99]));
        assert!(!bounded.contains("line 050"));
    }

    #[test]
    fn topics_keep_the_best_and_other_likely_labels() {
        let scored = |label: &str, probability| LabelProbability {
            label: label.to_owned(),
            probability,
        };
        let chosen = chosen_topics(&[
            scored("a", 0.1),
            scored("b", 0.5),
            scored("c", 0.3),
            scored("d", 0.1),
        ]);
        assert_eq!(chosen, ["b", "c"]);
        assert_eq!(
            chosen_topics(&[scored("a", 0.2), scored("b", 0.2)]).len(),
            1
        );
    }

    #[test]
    fn the_off_backend_analyses_and_reuses_unchanged_inputs() {
        let stored = interaction(&serde_json::json!([
            message("customer", "Thanks, the refund arrived. Great support!"),
            message("agent", "Glad to help."),
        ]));
        let topics = LabelSet::parse(vec!["refund_request".into(), "delivery".into()]).unwrap();
        let item = Item {
            interaction: &stored,
            kinds: &AnalysisKind::ALL,
            existing: &[],
            marked_lead: false,
        };
        let card = crate::qa::Scorecard::builtin();
        let outcomes = analyse_batch(&OffBackend, &topics, &card, &[item], &|| false).unwrap();
        let [ItemOutcome::Done(analyses)] = outcomes.as_slice() else {
            panic!("{outcomes:?}");
        };
        assert_eq!(analyses.len(), 4);
        for analysis in analyses {
            assert_eq!(analysis.provenance.model, "lexicon");
            assert_eq!(analysis.provenance.interaction_version, stored.updated);
        }
        let summary = analyses
            .iter()
            .find_map(|analysis| match &analysis.result {
                AnalysisResult::Summary { text } => Some(text.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(summary, "Thanks, the refund arrived.");

        // A new version with the same texts reuses every result, re-stamped.
        let newer = Stored::next_version(Some(&stored), stored.record.clone());
        let item = Item {
            interaction: &newer,
            kinds: &AnalysisKind::ALL,
            existing: analyses,
            marked_lead: false,
        };
        let outcomes = analyse_batch(&OffBackend, &topics, &card, &[item], &|| false).unwrap();
        let [ItemOutcome::Done(again)] = outcomes.as_slice() else {
            panic!("{outcomes:?}");
        };
        assert_eq!(again.len(), 4);
        for new in again {
            let old = analyses
                .iter()
                .find(|old| old.kind() == new.kind())
                .unwrap();
            assert_eq!(old.provenance.created, new.provenance.created);
            assert_eq!(old.result, new.result);
            assert_eq!(new.provenance.interaction_version, newer.updated);
        }
    }
}
