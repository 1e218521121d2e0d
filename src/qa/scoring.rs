//! Scoring a batch of interactions against a scorecard through a backend.
//!
//! With a model (`local`, `remote`), every (interaction × enabled criterion) is one text — the
//! conversation, human and AI agents both shown as `Agent`, then the criterion's question — and
//! the model makes a constrained choice among the scale's labels (`yes`/`no`/`n/a`, or the points
//! and `n/a`). Texts are grouped by scale, so a batch costs at most one `classify` call per scale
//! in use. The chosen label's probability is the confidence. The reasoning is one sentence built
//! from the choice and the evidence: a 270M base model writes no useful free-text explanation, and
//! a built sentence cannot misquote. The `off` backend runs the keyword checks of [`evidence`].

use std::collections::BTreeMap;

use crate::analysis::pipeline::flatten;
use crate::analysis::LabelProbability;
use crate::inference::{prompts, Backend, BackendKind, InferenceError, LabelSet, TaskKind};
use crate::interactions::{AuthorRole, InteractionRecord};
use crate::qa::evidence::{self, is_agent_side};
use crate::qa::{
    agent_of, overall, Criterion, CriterionScore, Evidence, QaResult, Scale, Scorecard, Scored,
};

/// Characters of one message in a QA text, and of the whole conversation.
const MAX_LINE_CHARS: usize = 300;
const MAX_CONVERSATION_CHARS: usize = 1000;
/// Characters of the quote repeated in a reasoning sentence.
const REASONING_QUOTE_CHARS: usize = 80;
/// The probability a keyword check gives its choice: predictable, not certain.
const KEYWORD_CONFIDENCE: f32 = 0.6;

/// The conversation as the QA prompt shows it: `Customer:` and `Agent:` turns (AI agents are
/// agents here, so they are judged the same way), internal notes left out, and when too long the
/// opening turns and the latest ones that fit.
pub fn conversation(record: &InteractionRecord) -> String {
    let lines: Vec<String> = record
        .messages
        .iter()
        .filter(|message| message.role != AuthorRole::InternalNote)
        .map(|message| {
            let who = if is_agent_side(message.role) {
                "Agent"
            } else {
                "Customer"
            };
            format!("{who}: {}", flatten(&message.text, MAX_LINE_CHARS))
        })
        .collect();
    let total: usize = lines.iter().map(|line| line.chars().count() + 1).sum();
    if total <= MAX_CONVERSATION_CHARS || lines.len() <= 2 {
        return flatten(&lines.join(" "), MAX_CONVERSATION_CHARS);
    }
    let head: Vec<&str> = lines.iter().take(2).map(String::as_str).collect();
    let mut budget = MAX_CONVERSATION_CHARS
        .saturating_sub(head.iter().map(|line| line.chars().count() + 1).sum());
    let mut tail = Vec::new();
    for line in lines[2..].iter().rev() {
        let cost = line.chars().count() + 1;
        if cost > budget {
            break;
        }
        budget -= cost;
        tail.push(line.as_str());
    }
    tail.reverse();
    head.into_iter().chain(tail).collect::<Vec<_>>().join(" ")
}

/// The text the model reads for one criterion.
pub fn criterion_text(conversation: &str, criterion: &Criterion) -> String {
    prompts::qa_text(conversation, &criterion.question)
}

/// What the QA analyzer reads, digested: the conversation (every message, by role and text) and
/// the scorecard's enabled criteria with their settings. A scorecard change gives another digest,
/// so the next analysis scores again instead of reusing the stored result.
pub fn input_digest(record: &InteractionRecord, scorecard: &Scorecard) -> String {
    let mut material = b"qa".to_vec();
    let mut push = |text: &str| {
        material.extend_from_slice(&u64::try_from(text.len()).unwrap_or(u64::MAX).to_be_bytes());
        material.extend_from_slice(text.as_bytes());
    };
    for message in &record.messages {
        if message.role == AuthorRole::InternalNote {
            continue;
        }
        push(message.role.label());
        push(message.author_name.as_deref().unwrap_or_default());
        push(message.author_email.as_deref().unwrap_or_default());
        push(&message.text);
    }
    for criterion in scorecard.enabled() {
        push(&criterion.id);
        push(&criterion.name);
        push(&criterion.question);
        push(criterion.scale.as_str());
        push(&criterion.weight.to_string());
        push(if criterion.critical { "critical" } else { "" });
    }
    hex::encode(crate::crypto::sha256(&[&material]))
}

/// `text` cut to `max` characters, with an ellipsis when cut.
fn shortened(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let cut: String = text.chars().take(max - 1).collect();
    format!("{}…", cut.trim_end())
}

/// The reasoning sentence: the choice, its confidence (for a model) and the evidence.
pub fn reasoning(
    scale: Scale,
    points: Option<u8>,
    confidence: Option<f32>,
    evidence: Option<&Evidence>,
    agent_wrote_nothing: bool,
) -> String {
    let how = match confidence {
        Some(confidence) => format!(
            "({:.0} % confidence)",
            (confidence * 100.0).clamp(0.0, 100.0)
        ),
        None => "by keyword check".to_owned(),
    };
    match (points, evidence) {
        (None, _) if agent_wrote_nothing => {
            "Not applicable: no agent or AI-agent message to judge.".to_owned()
        }
        (None, _) if confidence.is_none() => {
            "Not applicable: keyword checks cannot judge this criterion; a model backend can."
                .to_owned()
        }
        (None, _) => format!("Not applicable {how}."),
        (Some(points), Some(evidence)) => format!(
            "Scored {} {how}: the agent wrote “{}”.",
            scale.describe(Some(points)),
            shortened(&evidence.quote, REASONING_QUOTE_CHARS)
        ),
        (Some(points), None) => format!("Scored {} {how}.", scale.describe(Some(points))),
    }
}

/// One criterion's score from a choice.
fn criterion_score(
    record: &InteractionRecord,
    criterion: &Criterion,
    points: Option<u8>,
    confidence: Option<f32>,
    probabilities: Vec<LabelProbability>,
    agent_wrote_nothing: bool,
) -> CriterionScore {
    let evidence = evidence::pick(record, criterion, points);
    CriterionScore {
        criterion: criterion.id.clone(),
        name: criterion.name.clone(),
        scale: criterion.scale,
        weight: criterion.weight,
        critical: criterion.critical,
        points,
        // Nothing to judge is certain; a keyword check is predictable, not certain.
        confidence: confidence.unwrap_or(if agent_wrote_nothing {
            1.0
        } else {
            KEYWORD_CONFIDENCE
        }),
        reasoning: reasoning(
            criterion.scale,
            points,
            confidence,
            evidence.as_ref(),
            agent_wrote_nothing,
        ),
        evidence,
        probabilities,
    }
}

/// The keyword check's choice as probabilities over the scale's labels.
fn keyword_probabilities(scale: Scale, points: Option<u8>) -> Vec<LabelProbability> {
    let labels = scale.labels();
    let chosen = scale.label(points);
    #[allow(clippy::cast_precision_loss)] // At most six labels.
    let others = (1.0 - KEYWORD_CONFIDENCE) / (labels.len() - 1) as f32;
    labels
        .into_iter()
        .map(|label| LabelProbability {
            probability: if label == chosen {
                KEYWORD_CONFIDENCE
            } else {
                others
            },
            label,
        })
        .collect()
}

fn result_of(record: &InteractionRecord, criteria: Vec<CriterionScore>) -> QaResult {
    let scored: Vec<Scored> = criteria
        .iter()
        .map(|score| Scored {
            scale: score.scale,
            weight: score.weight,
            critical: score.critical,
            points: score.points,
        })
        .collect();
    let total = overall(&scored);
    let (agent, agent_kind) = agent_of(record);
    QaResult {
        criteria,
        overall: total.score,
        auto_fail: total.auto_fail,
        agent,
        agent_kind,
    }
}

/// Scores each record against the scorecard's enabled criteria. A failed classification fails
/// the batch (the caller retries it), as for sentiment and topics.
pub fn score_batch(
    backend: &dyn Backend,
    scorecard: &Scorecard,
    records: &[&InteractionRecord],
) -> Result<Vec<QaResult>, InferenceError> {
    let criteria: Vec<&Criterion> = scorecard.enabled().collect();
    let silent: Vec<bool> = records
        .iter()
        .map(|record| evidence::agent_sentences(record).is_empty())
        .collect();
    // Per record, per criterion: the score, filled in below.
    let mut scores: Vec<Vec<Option<CriterionScore>>> =
        vec![vec![None; criteria.len()]; records.len()];
    if backend.kind() == BackendKind::Off {
        for (index, record) in records.iter().enumerate() {
            for (slot, criterion) in criteria.iter().enumerate() {
                let points = evidence::keyword_score(record, criterion);
                scores[index][slot] = Some(criterion_score(
                    record,
                    criterion,
                    points,
                    None,
                    keyword_probabilities(criterion.scale, points),
                    silent[index],
                ));
            }
        }
    } else {
        // Records with nothing from the agent side are N/A without asking the model.
        for (index, record) in records.iter().enumerate() {
            if silent[index] {
                for (slot, criterion) in criteria.iter().enumerate() {
                    scores[index][slot] = Some(criterion_score(
                        record,
                        criterion,
                        None,
                        None,
                        Vec::new(),
                        true,
                    ));
                }
            }
        }
        let conversations: Vec<String> =
            records.iter().map(|record| conversation(record)).collect();
        // Per scale (by name), the (record, criterion) pairs to classify with its labels.
        let mut by_scale: BTreeMap<&'static str, Vec<(usize, usize)>> = BTreeMap::new();
        for (index, _) in records
            .iter()
            .enumerate()
            .filter(|(index, _)| !silent[*index])
        {
            for (slot, criterion) in criteria.iter().enumerate() {
                by_scale
                    .entry(criterion.scale.as_str())
                    .or_default()
                    .push((index, slot));
            }
        }
        for (name, pairs) in by_scale {
            let Some(scale) = Scale::parse(name) else {
                continue;
            };
            let labels = LabelSet::parse(scale.labels())?;
            let texts: Vec<String> = pairs
                .iter()
                .map(|(index, slot)| criterion_text(&conversations[*index], criteria[*slot]))
                .collect();
            let classified = backend.classify(TaskKind::QaCriterion, &labels, &texts)?;
            if classified.results.len() != texts.len() {
                return Err(InferenceError::Engine(format!(
                    "the backend answered {} of {} texts",
                    classified.results.len(),
                    texts.len()
                )));
            }
            for ((index, slot), classification) in pairs.into_iter().zip(&classified.results) {
                let points = scale.parse_points(&classification.label).ok_or_else(|| {
                    InferenceError::Engine("the backend chose a label outside the scale".to_owned())
                })?;
                let probabilities = labels
                    .as_slice()
                    .iter()
                    .zip(&classification.probabilities)
                    .map(|(label, probability)| LabelProbability {
                        label: label.clone(),
                        probability: *probability,
                    })
                    .collect();
                scores[index][slot] = Some(criterion_score(
                    records[index],
                    criteria[slot],
                    points,
                    Some(classification.confidence),
                    probabilities,
                    false,
                ));
            }
        }
    }
    Ok(records
        .iter()
        .zip(scores)
        .map(|(record, scores)| result_of(record, scores.into_iter().flatten().collect()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::lexicon::OffBackend;
    use crate::inference::{classification_from_scores, Classified};

    fn record(messages: &[(&str, &str)]) -> InteractionRecord {
        let messages: Vec<serde_json::Value> = messages
            .iter()
            .map(|(role, text)| {
                serde_json::json!({"role": role, "author_name": "Sam",
                    "sent_at": "2026-01-02T03:04:05Z", "text": text})
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "source_system": "desk", "source_id": "1", "channel": "chat", "messages": messages
        }))
        .unwrap()
    }

    fn conversation_one() -> InteractionRecord {
        record(&[
            ("customer", "My parcel has not arrived."),
            ("internal-note", "Customer is VIP."),
            (
                "ai-agent",
                "Hello! I am sorry about that. I have sent a replacement today.",
            ),
            ("customer", "Thanks."),
            ("agent", "Anything else? Have a nice day."),
        ])
    }

    #[test]
    fn the_off_backend_scores_with_keywords_and_quotes_substrings() {
        let stored = conversation_one();
        let results = score_batch(&OffBackend, &Scorecard::builtin(), &[&stored]).unwrap();
        let result = &results[0];
        assert_eq!(result.criteria.len(), 8);
        let text = evidence::conversation_text(&stored);
        for score in &result.criteria {
            if let Some(evidence) = &score.evidence {
                assert!(text.contains(&evidence.quote), "{}", evidence.quote);
                assert!(
                    score.reasoning.contains("keyword check"),
                    "{}",
                    score.reasoning
                );
            }
            assert!(score
                .points
                .is_none_or(|points| score.scale.contains(points)));
        }
        let greeting = &result.criteria[0];
        assert_eq!(greeting.points, Some(1));
        assert_eq!(
            greeting.reasoning,
            "Scored yes by keyword check: the agent wrote “Hello!”."
        );
        assert_eq!(result.agent.as_deref(), Some("Sam"));
        assert_eq!(result.agent_kind, crate::qa::AgentKind::Mixed);
        assert!(result.overall.is_some());
        assert!(!result.auto_fail);
    }

    /// Answers every text with the scale's first label (the best score), and counts calls.
    struct Eager(std::sync::atomic::AtomicUsize);

    impl Backend for Eager {
        fn kind(&self) -> BackendKind {
            BackendKind::Local
        }
        fn describe(&self) -> String {
            "eager".to_owned()
        }
        fn classify(
            &self,
            task: TaskKind,
            labels: &LabelSet,
            texts: &[String],
        ) -> Result<Classified, InferenceError> {
            assert_eq!(task, TaskKind::QaCriterion);
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut scores = vec![0.0; labels.len()];
            scores[0] = 2.0;
            Ok(Classified {
                results: texts
                    .iter()
                    .map(|text| {
                        assert!(text.contains("\nQuestion: "), "{text}");
                        assert!(!text.contains("VIP"));
                        classification_from_scores(labels, &scores)
                    })
                    .collect(),
                tokens_decoded: 0,
            })
        }
        fn generate(&self, _: &str, _: u32) -> Result<String, InferenceError> {
            unreachable!()
        }
    }

    #[test]
    fn a_model_scores_every_criterion_in_one_call_per_scale() {
        let backend = Eager(std::sync::atomic::AtomicUsize::new(0));
        let first = conversation_one();
        let silent = record(&[("customer", "Hello?")]);
        let results = score_batch(&backend, &Scorecard::builtin(), &[&first, &silent]).unwrap();
        // Binary and 3-point criteria: two calls for the whole batch.
        assert_eq!(backend.0.load(std::sync::atomic::Ordering::SeqCst), 2);
        let scored = &results[0];
        assert_eq!(scored.overall, Some(100.0));
        for score in &scored.criteria {
            assert_eq!(score.points, Some(score.scale.max()));
            assert!(
                score.reasoning.contains("% confidence"),
                "{}",
                score.reasoning
            );
            assert!(score.confidence > 0.5);
            let evidence = score.evidence.as_ref().unwrap();
            assert!(evidence::conversation_text(&first).contains(&evidence.quote));
        }
        assert!(results[1]
            .criteria
            .iter()
            .all(|score| score.points.is_none()));
        assert_eq!(results[1].overall, None);
    }

    #[test]
    fn the_digest_follows_the_scorecard_and_the_conversation() {
        let stored = conversation_one();
        let card = Scorecard::builtin();
        let digest = input_digest(&stored, &card);
        assert_eq!(digest, input_digest(&stored, &card.clone()));
        let mut changed = card.clone();
        changed.criteria[0].critical = true;
        assert_ne!(digest, input_digest(&stored, &changed));
        let mut other = stored.clone();
        other.messages[4].text.push('!');
        assert_ne!(digest, input_digest(&other, &card));
        // Internal notes are not read.
        let mut noted = stored;
        noted.messages[1].text = "Changed note.".to_owned();
        assert_eq!(digest, input_digest(&noted, &card));
    }

    #[test]
    fn long_conversations_keep_the_opening_and_the_end() {
        let mut messages = vec![("customer", "First question here.".to_owned())];
        messages.push(("agent", "Hello, opening words.".to_owned()));
        for n in 0..40 {
            messages.push((
                "customer",
                format!("Filler line number {n:02} {}", "x".repeat(30)),
            ));
        }
        messages.push(("agent", "Goodbye and take care.".to_owned()));
        let borrowed: Vec<(&str, &str)> = messages.iter().map(|(r, t)| (*r, t.as_str())).collect();
        let text = conversation(&record(&borrowed));
        assert!(
            text.chars().count() <= MAX_CONVERSATION_CHARS + 2,
            "{}",
            text.len()
        );
        assert!(text.starts_with("Customer: First question here. Agent: Hello, opening words."));
        assert!(text.ends_with("Agent: Goodbye and take care."));
        assert!(!text.contains("number 05"));
    }
}
