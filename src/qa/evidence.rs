//! Evidence quotes, and the keyword checks of the `off` backend.
//!
//! A quote is never written by a model: it is one sentence (at most [`MAX_QUOTE_CHARS`]) cut out of
//! an agent or AI-agent message by byte range, chosen deterministically among the agent side's
//! sentences as the one that best supports the score (the sentence with most of the criterion's
//! cue words for a good score, the telling one for a poor score: the opening for a greeting, the
//! last words for a closing, the longest sentence for readability). So every quote is an exact
//! substring of its message, and so of the conversation; [`verify`] checks it anyway.

use crate::interactions::{AuthorRole, InteractionRecord};
use crate::qa::{Criterion, Evidence, Scale};

/// Characters of a quote at most; a longer sentence is cut (still a substring).
pub const MAX_QUOTE_CHARS: usize = 200;

/// One sentence of an agent-side message: the message's position and a byte range of its text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sentence {
    pub message: usize,
    pub start: usize,
    pub end: usize,
}

/// True for the messages QA judges: human agents' and AI agents' alike.
pub fn is_agent_side(role: AuthorRole) -> bool {
    matches!(role, AuthorRole::Agent | AuthorRole::AiAgent)
}

/// Byte ranges of the sentences of `text`: split after `.`, `?` or `!` followed by white space,
/// and at line breaks; trimmed; empty ones dropped.
pub fn split_sentences(text: &str) -> Vec<(usize, usize)> {
    let mut ranges = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((index, c)) = chars.next() {
        let next_is_space = chars.peek().is_none_or(|(_, next)| next.is_whitespace());
        let ends = c == '\n' || (matches!(c, '.' | '?' | '!') && next_is_space);
        if ends {
            let end = if c == '\n' {
                index
            } else {
                index + c.len_utf8()
            };
            ranges.push((start, end));
            start = index + c.len_utf8();
        }
    }
    ranges.push((start, text.len()));
    ranges
        .into_iter()
        .filter_map(|(start, end)| {
            let piece = &text[start..end];
            let leading = piece.len() - piece.trim_start().len();
            let trailing = piece.len() - piece.trim_end().len();
            let (start, end) = (start + leading, end - trailing);
            (start < end).then_some((start, end))
        })
        .collect()
}

/// Every sentence of the agent side, in conversation order.
pub fn agent_sentences(record: &InteractionRecord) -> Vec<Sentence> {
    record
        .messages
        .iter()
        .enumerate()
        .filter(|(_, message)| is_agent_side(message.role))
        .flat_map(|(index, message)| {
            split_sentences(&message.text)
                .into_iter()
                .map(move |(start, end)| Sentence {
                    message: index,
                    start,
                    end,
                })
        })
        .collect()
}

/// The text QA quotes from: every message that is not an internal note, one per line.
pub fn conversation_text(record: &InteractionRecord) -> String {
    record
        .messages
        .iter()
        .filter(|message| message.role != AuthorRole::InternalNote)
        .map(|message| message.text.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The quote of a sentence, cut to [`MAX_QUOTE_CHARS`] at a character boundary.
pub fn quote(record: &InteractionRecord, sentence: Sentence) -> Evidence {
    let text = &record.messages[sentence.message].text;
    let piece = &text[sentence.start..sentence.end];
    let end = piece
        .char_indices()
        .nth(MAX_QUOTE_CHARS)
        .map_or(sentence.end, |(cut, _)| {
            sentence.start + piece[..cut].trim_end().len()
        });
    Evidence {
        message: sentence.message,
        start: sentence.start,
        end,
        quote: text[sentence.start..end].to_owned(),
    }
}

/// True when `evidence` is where it says it is, in this version of the interaction.
pub fn verify(record: &InteractionRecord, evidence: &Evidence) -> bool {
    record
        .messages
        .get(evidence.message)
        .is_some_and(|message| {
            message.role != AuthorRole::InternalNote
                && message.text.get(evidence.start..evidence.end) == Some(evidence.quote.as_str())
        })
        && conversation_text(record).contains(&evidence.quote)
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .collect()
}

const GREETING_CUES: &[&str] = &[
    "hello",
    "hi",
    "hey",
    "dear",
    "welcome",
    "good morning",
    "good afternoon",
    "good evening",
    "thanks for contacting",
    "thank you for contacting",
    "thanks for reaching",
    "thank you for reaching",
];
const CLOSING_CUES: &[&str] = &[
    "anything else",
    "nice day",
    "great day",
    "good day",
    "have a",
    "regards",
    "bye",
    "goodbye",
    "take care",
    "let us know",
    "let me know",
    "feel free",
    "glad to help",
    "happy to help",
    "cheers",
];
const EMPATHY_CUES: &[&str] = &[
    "sorry",
    "apologise",
    "apologize",
    "apologies",
    "understand",
    "frustrating",
    "inconvenience",
    "i see",
    "unfortunately",
    "must be",
];
const SOLUTION_CUES: &[&str] = &[
    "i have",
    "i've",
    "we have",
    "we've",
    "fixed",
    "resolved",
    "refund",
    "refunded",
    "replacement",
    "you can",
    "please try",
    "try",
    "here is",
    "here's",
    "steps",
    "i will",
    "we will",
    "i'll",
    "we'll",
    "sent",
    "updated",
    "unblocked",
    "reset",
];
const POLITE_CUES: &[&str] = &[
    "please", "thank", "thanks", "glad", "happy to", "sorry", "welcome", "kind",
];
const RUDE_CUES: &[&str] = &[
    "stupid",
    "idiot",
    "whatever",
    "calm down",
    "not my problem",
    "your fault",
    "obviously",
    "shut up",
    "read the",
    "as i said",
];

/// Words (or phrases) that show a criterion being met, and ones that show it missed.
fn cues(criterion: &Criterion) -> (Vec<String>, Vec<String>) {
    let list = |items: &[&str]| items.iter().map(|item| (*item).to_owned()).collect();
    match criterion.id.as_str() {
        "greeting" => (list(GREETING_CUES), Vec::new()),
        "closing" => (list(CLOSING_CUES), Vec::new()),
        "empathy" => (list(EMPATHY_CUES), Vec::new()),
        "solution_offered" => (list(SOLUTION_CUES), Vec::new()),
        "tone" => (list(POLITE_CUES), list(RUDE_CUES)),
        _ => {
            // A tenant criterion (or one without cues): the longer words of its name and question.
            let text = format!("{} {}", criterion.name, criterion.question);
            let mut found: Vec<String> = words(&text)
                .into_iter()
                .filter(|word| word.chars().count() >= 5 && !STOP_WORDS.contains(&word.as_str()))
                .collect();
            found.sort();
            found.dedup();
            (found, Vec::new())
        }
    }
}

const STOP_WORDS: &[&str] = &[
    "agent",
    "agent's",
    "customer",
    "customer's",
    "about",
    "their",
    "there",
    "which",
    "would",
    "should",
    "could",
    "conversation",
    "messages",
    "message",
    "whether",
];

/// How many of `cues` a sentence holds: a one-word cue matches a word (or its first five
/// letters, so "apologised" matches "apologise"), a phrase matches the words in order.
fn hits(sentence: &str, cues: &[String]) -> usize {
    let said = words(sentence);
    let joined = format!(" {} ", said.join(" "));
    cues.iter()
        .filter(|cue| {
            if cue.contains(' ') {
                joined.contains(&format!(" {cue} "))
            } else {
                said.iter().any(|word| {
                    word == *cue
                        || (cue.chars().count() >= 5
                            && word.chars().take(5).eq(cue.chars().take(5)))
                })
            }
        })
        .count()
}

fn sentence_text<'a>(record: &'a InteractionRecord, sentence: &Sentence) -> &'a str {
    &record.messages[sentence.message].text[sentence.start..sentence.end]
}

fn word_count(text: &str) -> usize {
    text.split_whitespace().count()
}

/// The sentence that best supports `points` for `criterion`, as a quote; `None` for N/A or
/// when the agent side wrote nothing.
pub fn pick(
    record: &InteractionRecord,
    criterion: &Criterion,
    points: Option<u8>,
) -> Option<Evidence> {
    let points = points?;
    let sentences = agent_sentences(record);
    if sentences.is_empty() {
        return None;
    }
    let good = criterion.scale.fraction(points) >= 0.5;
    let (positive, negative) = cues(criterion);
    let text = |sentence: &Sentence| sentence_text(record, sentence);
    // The first sentence with the most hits of `cues` (the last one, `from_end`), if any hit.
    let best_by = |cues: &[String], from_end: bool| -> Option<Sentence> {
        let mut best: Option<(usize, Sentence)> = None;
        for sentence in &sentences {
            let count = hits(text(sentence), cues);
            let better = match best {
                None => count > 0,
                Some((top, _)) => count > top || (from_end && count == top),
            };
            if better && count > 0 {
                best = Some((count, *sentence));
            }
        }
        best.map(|(_, sentence)| sentence)
    };
    let first = sentences[0];
    let last = sentences[sentences.len() - 1];
    let chosen = match criterion.id.as_str() {
        "greeting" => {
            let opening: Vec<Sentence> = sentences
                .iter()
                .copied()
                .filter(|sentence| sentence.message == first.message)
                .collect();
            if good {
                opening
                    .iter()
                    .copied()
                    .find(|sentence| hits(text(sentence), &positive) > 0)
                    .unwrap_or(first)
            } else {
                first
            }
        }
        "closing" => {
            if good {
                best_by(&positive, true)
                    .filter(|sentence| sentence.message == last.message)
                    .unwrap_or(last)
            } else {
                last
            }
        }
        "readability" | "spelling_grammar" => {
            if good {
                first
            } else {
                // The longest sentence: the hardest to read.
                sentences
                    .iter()
                    .copied()
                    .rev()
                    .max_by_key(|sentence| word_count(text(sentence)))
                    .unwrap_or(first)
            }
        }
        _ => {
            if good {
                best_by(&positive, false).unwrap_or(first)
            } else {
                best_by(&negative, false).unwrap_or(first)
            }
        }
    };
    let evidence = quote(record, chosen);
    verify(record, &evidence).then_some(evidence)
}

/// A rough level a keyword check reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    Low,
    Mid,
    High,
}

fn points_at(scale: Scale, level: Level) -> u8 {
    match level {
        Level::Low => scale.min(),
        Level::Mid => scale.mid(),
        Level::High => scale.max(),
    }
}

/// The `off` backend's score for a criterion: keyword checks of the agent side, or N/A where
/// keywords cannot judge (spelling and grammar, comprehension, tenant criteria) or nobody
/// answered the customer.
pub fn keyword_score(record: &InteractionRecord, criterion: &Criterion) -> Option<u8> {
    let sentences = agent_sentences(record);
    if sentences.is_empty() {
        return None;
    }
    let (positive, negative) = cues(criterion);
    let count_in = |filter: &dyn Fn(&Sentence) -> bool, cues: &[String]| -> usize {
        sentences
            .iter()
            .filter(|sentence| filter(sentence))
            .map(|sentence| hits(sentence_text(record, sentence), cues))
            .sum()
    };
    let all = |_: &Sentence| true;
    let first_message = sentences[0].message;
    let last_message = sentences[sentences.len() - 1].message;
    let binary = |met: bool| if met { Level::High } else { Level::Low };
    let level = match criterion.id.as_str() {
        "greeting" => binary(count_in(&|s: &Sentence| s.message == first_message, &positive) > 0),
        "closing" => binary(count_in(&|s: &Sentence| s.message == last_message, &positive) > 0),
        "solution_offered" => binary(count_in(&all, &positive) > 0),
        "empathy" => match count_in(&all, &positive) {
            0 => Level::Low,
            1 => Level::Mid,
            _ => Level::High,
        },
        "tone" => {
            if count_in(&all, &negative) > 0 {
                Level::Low
            } else if count_in(&all, &positive) > 0 {
                Level::High
            } else {
                Level::Mid
            }
        }
        "readability" => {
            let total: usize = sentences
                .iter()
                .map(|sentence| word_count(sentence_text(record, sentence)))
                .sum();
            let average = total / sentences.len();
            match average {
                0..=20 => Level::High,
                21..=30 => Level::Mid,
                _ => Level::Low,
            }
        }
        _ => return None,
    };
    // A binary criterion has no middle: a middling tone still counts as met.
    Some(points_at(criterion.scale, level))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qa::Scorecard;

    fn record(messages: &[(&str, &str)]) -> InteractionRecord {
        let messages: Vec<serde_json::Value> = messages
            .iter()
            .map(|(role, text)| {
                serde_json::json!({"role": role, "sent_at": "2026-01-02T03:04:05Z", "text": text})
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "source_system": "desk", "source_id": "1", "channel": "chat", "messages": messages
        }))
        .unwrap()
    }

    fn criterion(id: &str) -> Criterion {
        Scorecard::builtin().get(id).unwrap().clone()
    }

    #[test]
    fn sentences_are_trimmed_byte_ranges() {
        let text = "Hello Ann!  How are you?\nFine. Version 4.2 ships é soon";
        let ranges = split_sentences(text);
        let pieces: Vec<&str> = ranges.iter().map(|(s, e)| &text[*s..*e]).collect();
        assert_eq!(
            pieces,
            [
                "Hello Ann!",
                "How are you?",
                "Fine.",
                "Version 4.2 ships é soon"
            ]
        );
        assert!(split_sentences("  \n ").is_empty());
    }

    #[test]
    fn quotes_are_substrings_even_when_cut() {
        let long = format!("Hello {} end.", "é".repeat(400));
        let stored = record(&[("customer", "Hi"), ("agent", &long)]);
        let sentences = agent_sentences(&stored);
        assert_eq!(sentences.len(), 1);
        let evidence = quote(&stored, sentences[0]);
        assert_eq!(evidence.quote.chars().count(), MAX_QUOTE_CHARS);
        assert!(verify(&stored, &evidence));
        assert!(conversation_text(&stored).contains(&evidence.quote));
    }

    #[test]
    fn verify_refuses_a_quote_that_moved_or_sits_in_a_note() {
        let stored = record(&[("internal-note", "Secret note."), ("agent", "Hello there.")]);
        let in_note = Evidence {
            message: 0,
            start: 0,
            end: 6,
            quote: "Secret".to_owned(),
        };
        assert!(!verify(&stored, &in_note));
        let moved = Evidence {
            message: 1,
            start: 1,
            end: 6,
            quote: "Hello".to_owned(),
        };
        assert!(!verify(&stored, &moved));
    }

    #[test]
    fn evidence_picks_the_sentence_that_supports_the_score() {
        let stored = record(&[
            ("customer", "My card was declined. I am annoyed."),
            (
                "agent",
                "Hello Ann, thanks for contacting us. I am sorry about the trouble.",
            ),
            ("customer", "Can you fix it?"),
            (
                "ai-agent",
                "I have unblocked your card. Is there anything else I can do? Have a nice day!",
            ),
        ]);
        let quote_for =
            |id: &str, points| pick(&stored, &criterion(id), Some(points)).unwrap().quote;
        assert_eq!(
            quote_for("greeting", 1),
            "Hello Ann, thanks for contacting us."
        );
        assert_eq!(quote_for("empathy", 3), "I am sorry about the trouble.");
        assert_eq!(
            quote_for("solution_offered", 1),
            "I have unblocked your card."
        );
        assert_eq!(quote_for("closing", 1), "Have a nice day!");
        assert_eq!(quote_for("closing", 0), "Have a nice day!");
        assert!(pick(&stored, &criterion("tone"), None).is_none());
        let text = conversation_text(&stored);
        for criterion in &Scorecard::builtin().criteria {
            for points in criterion.scale.min()..=criterion.scale.max() {
                let evidence = pick(&stored, criterion, Some(points)).unwrap();
                assert!(text.contains(&evidence.quote), "{}", evidence.quote);
                let message = &stored.messages[evidence.message];
                assert!(is_agent_side(message.role));
            }
        }
    }

    #[test]
    fn keyword_checks_score_the_agent_side_and_say_na_where_they_cannot_judge() {
        let polite = record(&[
            ("customer", "Where is my parcel?"),
            (
                "agent",
                "Hi Ann! Sorry for the wait. I have sent a replacement.",
            ),
            ("agent", "Anything else? Have a great day."),
        ]);
        let score = |stored: &InteractionRecord, id: &str| keyword_score(stored, &criterion(id));
        assert_eq!(score(&polite, "greeting"), Some(1));
        assert_eq!(score(&polite, "closing"), Some(1));
        assert_eq!(score(&polite, "solution_offered"), Some(1));
        assert_eq!(score(&polite, "empathy"), Some(2));
        assert_eq!(score(&polite, "tone"), Some(3));
        assert_eq!(score(&polite, "readability"), Some(3));
        assert_eq!(score(&polite, "spelling_grammar"), None);
        assert_eq!(score(&polite, "comprehension"), None);

        let curt = record(&[
            ("customer", "Where is my parcel?"),
            ("ai-agent", "Read the FAQ. Whatever."),
        ]);
        assert_eq!(score(&curt, "greeting"), Some(0));
        assert_eq!(score(&curt, "closing"), Some(0));
        assert_eq!(score(&curt, "tone"), Some(1));
        assert_eq!(score(&curt, "empathy"), Some(1));

        let unanswered = record(&[("customer", "Hello?")]);
        assert_eq!(score(&unanswered, "greeting"), None);
    }
}
