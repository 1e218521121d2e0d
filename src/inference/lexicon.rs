//! The `off` backend: deterministic analyzers for sites without a model.
//!
//! Sentiment comes from a small lexicon of English opinion words with negation ("not happy") and
//! intensifiers ignored for simplicity; topics come from matching a label's words against the text's
//! words by their first five letters (so "refunds" matches "refund"). Both are weak but predictable,
//! cost nothing, and give the same answer every time.

use std::collections::HashSet;

use crate::inference::{
    classification_from_scores, Backend, BackendKind, Classified, InferenceError, LabelSet,
    TaskKind,
};

const POSITIVE: &[&str] = &[
    "thank",
    "thanks",
    "great",
    "good",
    "excellent",
    "amazing",
    "awesome",
    "love",
    "happy",
    "helpful",
    "perfect",
    "fixed",
    "resolved",
    "appreciate",
    "wonderful",
    "fantastic",
    "quick",
    "fast",
    "friendly",
    "glad",
    "pleased",
    "works",
    "working",
    "best",
    "nice",
    "satisfied",
    "brilliant",
    "smooth",
    "easy",
];
const NEGATIVE: &[&str] = &[
    "bad",
    "terrible",
    "awful",
    "angry",
    "furious",
    "hate",
    "broken",
    "useless",
    "worst",
    "slow",
    "never",
    "declined",
    "refund",
    "complaint",
    "disappointed",
    "unacceptable",
    "frustrated",
    "problem",
    "issue",
    "error",
    "fail",
    "failed",
    "failing",
    "crash",
    "crashes",
    "crashing",
    "wrong",
    "lost",
    "missing",
    "cancel",
    "rude",
    "ridiculous",
    "annoyed",
    "upset",
    "waiting",
    "stuck",
    "charged",
    "scam",
    "poor",
];
const NEGATIONS: &[&str] = &[
    "not", "no", "never", "don't", "didn't", "isn't", "wasn't", "can't", "won't",
];

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The lexicon score: positive minus negative opinion words, a negation flipping the next word.
pub fn sentiment_score(text: &str) -> i32 {
    let mut score = 0;
    let mut negated = false;
    for word in words(text) {
        let polarity = if POSITIVE.contains(&word.as_str()) {
            1
        } else if NEGATIVE.contains(&word.as_str()) {
            -1
        } else {
            0
        };
        if polarity != 0 {
            score += if negated { -polarity } else { polarity };
        }
        negated = NEGATIONS.contains(&word.as_str());
    }
    score
}

fn stem(word: &str) -> String {
    word.chars().take(5).collect()
}

/// Per label, the share of its words found in the text.
pub fn topic_scores(text: &str, labels: &LabelSet) -> Vec<f32> {
    let text_stems: HashSet<String> = words(text).iter().map(|word| stem(word)).collect();
    labels
        .as_slice()
        .iter()
        .map(|label| {
            let label_words: Vec<String> = words(&label.replace(['_', '-'], " "));
            if label_words.is_empty() {
                return 0.0;
            }
            let found = label_words
                .iter()
                .filter(|word| text_stems.contains(&stem(word)))
                .count();
            #[allow(clippy::cast_precision_loss)] // Word counts are tiny.
            let share = found as f32 / label_words.len() as f32;
            share
        })
        .collect()
}

/// Phrases that point to each lead intent; a label without phrases (or unknown) scores 0, and
/// `just_browsing` wins when nothing matches.
const LEAD_INTENT_PHRASES: [(&str, &[&str]); 5] = [
    (
        "ready_to_buy",
        &[
            "buy",
            "purchase",
            "order form",
            "sign up",
            "contract",
            "invoice us",
            "subscribe",
        ],
    ),
    (
        "evaluating",
        &[
            "demo",
            "trial",
            "compare",
            "comparing",
            "evaluate",
            "alternative",
            "pilot",
        ],
    ),
    (
        "pricing_question",
        &["price", "pricing", "cost", "how much", "quote", "discount"],
    ),
    (
        "just_browsing",
        &["just looking", "browsing", "looking around", "curious"],
    ),
    (
        "support_request",
        &[
            "locked",
            "not working",
            "broken",
            "error",
            "my account",
            "bug",
            "refund",
        ],
    ),
];

fn lead_intent_scores(text: &str, labels: &LabelSet) -> Vec<f32> {
    let lowered = text.to_lowercase();
    let mut scores: Vec<f32> = labels
        .as_slice()
        .iter()
        .map(|label| {
            let phrases = LEAD_INTENT_PHRASES
                .iter()
                .find(|(name, _)| name == label)
                .map_or(&[][..], |(_, phrases)| *phrases);
            #[allow(clippy::cast_precision_loss)] // A handful of phrases.
            let found = phrases
                .iter()
                .filter(|phrase| lowered.contains(*phrase))
                .count() as f32;
            found * 3.0
        })
        .collect();
    if scores.iter().all(|score| *score == 0.0) {
        if let Some(index) = labels
            .as_slice()
            .iter()
            .position(|label| label == "just_browsing")
        {
            scores[index] = 1.0;
        }
    }
    scores
}

/// The deterministic backend.
#[derive(Debug, Default)]
pub struct OffBackend;

impl Backend for OffBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Off
    }

    fn describe(&self) -> String {
        "off: sentiment lexicon and keyword topics".to_owned()
    }

    fn model_id(&self) -> String {
        "lexicon".to_owned()
    }

    fn classify(
        &self,
        task: TaskKind,
        labels: &LabelSet,
        texts: &[String],
    ) -> Result<Classified, InferenceError> {
        let results = texts
            .iter()
            .map(|text| {
                // Scores are scaled so that one word of difference is a clear but not certain call.
                let scores: Vec<f32> = match task {
                    TaskKind::Sentiment => {
                        let score = sentiment_score(text);
                        labels
                            .as_slice()
                            .iter()
                            .map(|label| {
                                let target = match label.as_str() {
                                    "positive" => score.signum(),
                                    "negative" => -score.signum(),
                                    "neutral" => i32::from(score == 0),
                                    _ => return -10.0,
                                };
                                #[allow(clippy::cast_precision_loss)] // Small counts.
                                let strength = (score.abs().max(1)) as f32;
                                if target > 0 {
                                    strength
                                } else {
                                    0.0
                                }
                            })
                            .collect()
                    }
                    TaskKind::Topic => topic_scores(text, labels)
                        .into_iter()
                        .map(|share| share * 4.0)
                        .collect(),
                    TaskKind::LeadIntent => lead_intent_scores(text, labels),
                    // The lexicon cannot judge a QA criterion from the text alone: `n/a` when the
                    // set has it (QA's keyword checks run in `crate::qa` instead), else the first.
                    TaskKind::QaCriterion => labels
                        .as_slice()
                        .iter()
                        .map(|label| if label == "n/a" { 1.0 } else { 0.0 })
                        .collect(),
                };
                classification_from_scores(labels, &scores)
            })
            .collect();
        Ok(Classified {
            results,
            tokens_decoded: 0,
        })
    }

    fn generate(&self, _prompt: &str, _max_tokens: u32) -> Result<String, InferenceError> {
        Err(InferenceError::Unavailable(BackendKind::Off))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexicon_reads_polarity_and_negation() {
        assert!(sentiment_score("Thanks, great support!") > 0);
        assert!(sentiment_score("My card was declined again, I am furious") < 0);
        assert_eq!(sentiment_score("What time do you open?"), 0);
        assert!(sentiment_score("I am not happy") < 0);
    }

    #[test]
    fn off_backend_picks_labels_deterministically() {
        let labels = LabelSet::sentiment();
        let texts = vec![
            "Thank you, it works!".to_owned(),
            "Where is my parcel".to_owned(),
        ];
        let first = OffBackend
            .classify(TaskKind::Sentiment, &labels, &texts)
            .unwrap();
        assert_eq!(first.results[0].label, "positive");
        assert_eq!(first.results[1].label, "neutral");
        let topics = LabelSet::parse(vec!["card_arrival".into(), "refund_status".into()]).unwrap();
        let result = OffBackend
            .classify(
                TaskKind::Topic,
                &topics,
                &["What is the status of my refund?".to_owned()],
            )
            .unwrap();
        assert_eq!(result.results[0].label, "refund_status");
    }
}
