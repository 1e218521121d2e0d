//! Prompts for the local backend, written for a small *base* model.
//!
//! A base model does not follow instructions; it continues documents. So each prompt is a short
//! document of labelled examples (few-shot) whose next line is the label, and the backend scores
//! every label's likelihood as that continuation instead of asking for an answer. The shared part
//! (heading and examples) is the *prefix*, decoded once and kept in the KV cache; each text adds
//! only its own `Message: …` lines. An instruct model would get a chat-template prompt here; the
//! engine does not care which, since it only sees a prefix, items and choices.
//!
//! Changing a prompt changes results: bump [`PROMPT_VERSION`], which stored analyses will record.

use std::fmt::Write as _;

use crate::inference::{LabelSet, TaskKind};

/// Recorded with every analysis, so results from different prompts are never mixed up.
pub const PROMPT_VERSION: u32 = 1;
/// A text longer than this keeps its last tokens; the cue after it must stay.
pub const MAX_ITEM_TOKENS: usize = 384;
/// The text whose label likelihoods measure a prompt's bias towards each label.
pub const CONTENT_FREE_TEXT: &str = "N/A";
/// Characters of a text that reach the tokenizer at most.
const MAX_ITEM_CHARS: usize = 4000;

/// The content-free text of a task, as [`item`] takes it.
pub fn content_free(task: TaskKind) -> String {
    match task {
        TaskKind::Sentiment | TaskKind::Topic | TaskKind::LeadIntent => {
            CONTENT_FREE_TEXT.to_owned()
        }
        TaskKind::QaCriterion => qa_text(CONTENT_FREE_TEXT, CONTENT_FREE_TEXT),
    }
}

/// The shared part of a classification prompt and the continuations to score.
#[derive(Clone, Debug)]
pub struct ClassificationPrompt {
    pub prefix: String,
    pub choices: Vec<String>,
}

const SENTIMENT_EXAMPLES: [(&str, &str); 6] = [
    (
        "Thanks a lot, the refund arrived and everything works again.",
        "positive",
    ),
    (
        "I have been waiting two weeks and nobody answers my emails. This is unacceptable.",
        "negative",
    ),
    (
        "What time does your support line open on Saturdays?",
        "neutral",
    ),
    (
        "Great service, the agent was quick and very friendly!",
        "positive",
    ),
    (
        "The app keeps crashing and I lost my order again.",
        "negative",
    ),
    (
        "Please send the invoice to our accounts address.",
        "neutral",
    ),
];

const LEAD_INTENT_EXAMPLES: [(&str, &str); 5] = [
    (
        "We want to sign up 30 seats today, can you send the order form?",
        "ready_to_buy",
    ),
    (
        "We are comparing you with two other tools, could we get a demo next week?",
        "evaluating",
    ),
    (
        "How much does the business plan cost per user?",
        "pricing_question",
    ),
    (
        "Just having a look around, what does your product do?",
        "just_browsing",
    ),
    (
        "I am a customer and my account is locked, can you help?",
        "support_request",
    ),
];

/// How a label is shown to the model: `card_arrival` reads as `card arrival`.
pub fn display_label(label: &str) -> String {
    label.replace(['_', '-'], " ")
}

fn flat(text: &str, max_chars: usize) -> String {
    let mut flat = String::with_capacity(text.len().min(max_chars));
    for word in text.split_whitespace() {
        if flat.len() + word.len() + 1 > max_chars {
            break;
        }
        if !flat.is_empty() {
            flat.push(' ');
        }
        flat.push_str(word);
    }
    flat
}

/// One text as a prompt item: whitespace collapsed (so it stays one `Message:` line) and capped.
/// A QA text ([`qa_text`]) keeps its two lines, the conversation and the question.
pub fn item(task: TaskKind, text: &str) -> String {
    match task {
        TaskKind::Sentiment => format!("Message: {}\nSentiment:", flat(text, MAX_ITEM_CHARS)),
        TaskKind::Topic => format!("Message: {}\nTopic:", flat(text, MAX_ITEM_CHARS)),
        TaskKind::LeadIntent => format!("Message: {}\nIntent:", flat(text, MAX_ITEM_CHARS)),
        TaskKind::QaCriterion => {
            let (conversation, question) = text.rsplit_once('\n').unwrap_or((text, ""));
            let question = flat(question, MAX_ITEM_CHARS / 4);
            let conversation = flat(conversation, MAX_ITEM_CHARS - question.len());
            format!("{conversation}\n{question}\nAnswer:")
        }
    }
}

/// Recorded with every QA analysis; bump it when the QA prompt or its examples change.
pub const QA_PROMPT_VERSION: u32 = 1;

/// The text of one QA criterion of one conversation: `Conversation: …` then `Question: …`.
pub fn qa_text(conversation: &str, question: &str) -> String {
    format!(
        "Conversation: {}\nQuestion: {}",
        flat(conversation, MAX_ITEM_CHARS),
        flat(question, MAX_ITEM_CHARS / 4)
    )
}

/// QA examples: a conversation, a question, and whether the answer is the best point (`High`),
/// the lowest (`Low`), or not applicable.
#[derive(Clone, Copy)]
enum QaAnswer {
    High,
    Low,
    NotApplicable,
}

const QA_EXAMPLES: [(&str, &str, QaAnswer); 5] = [
    (
        "Customer: My parcel has not arrived. Agent: Hello Maria, thanks for reaching out! I am sorry about the delay. I have sent a replacement today. Have a nice day!",
        "Did the agent greet the customer at the start?",
        QaAnswer::High,
    ),
    (
        "Customer: Can I change my plan? Agent: no. read the faq",
        "Was the agent's tone polite and professional?",
        QaAnswer::Low,
    ),
    (
        "Customer: My parcel has not arrived. Agent: Hello Maria, thanks for reaching out! I am sorry about the delay. I have sent a replacement today. Have a nice day!",
        "Did the agent offer a solution to the customer's problem?",
        QaAnswer::High,
    ),
    (
        "Customer: Thanks, all good now, just wanted to say that. Agent: Great to hear!",
        "Did the agent offer a solution to the customer's problem?",
        QaAnswer::NotApplicable,
    ),
    (
        "Customer: The app crashes when I log in. Agent: ok",
        "Did the agent show empathy for the customer's situation?",
        QaAnswer::Low,
    ),
];

fn qa_prefix(labels: &LabelSet) -> String {
    let shown = labels.as_slice();
    let points: Vec<u8> = shown
        .iter()
        .filter_map(|label| label.parse().ok())
        .collect();
    let (high, low) = match (points.iter().max(), points.iter().min()) {
        (Some(high), Some(low)) => (high.to_string(), low.to_string()),
        _ => ("yes".to_owned(), "no".to_owned()),
    };
    let mut prefix = if points.is_empty() {
        "Customer support conversations, each followed by a question about the agent and the answer: yes, no, or n/a when it does not apply.\n\n".to_owned()
    } else {
        format!(
            "Customer support conversations, each followed by a question about the agent and a rating from {low} (poor) to {high} (excellent), or n/a when it does not apply.\n\n"
        )
    };
    for (conversation, question, answer) in QA_EXAMPLES {
        let answer = match answer {
            QaAnswer::High => high.as_str(),
            QaAnswer::Low => low.as_str(),
            QaAnswer::NotApplicable => "n/a",
        };
        let _ = write!(
            prefix,
            "Conversation: {conversation}\nQuestion: {question}\nAnswer: {answer}\n\n"
        );
    }
    prefix
}

/// The prefix and choices for classifying into `labels`.
pub fn classification_prompt(task: TaskKind, labels: &LabelSet) -> ClassificationPrompt {
    let shown: Vec<String> = labels
        .as_slice()
        .iter()
        .map(|label| display_label(label))
        .collect();
    let prefix = match task {
        TaskKind::Sentiment => {
            let mut prefix = format!(
                "Customer messages to a support team, each labelled with its sentiment ({}).\n\n",
                shown.join(", ")
            );
            let is_standard = labels.as_slice() == LabelSet::sentiment().as_slice();
            for (text, label) in SENTIMENT_EXAMPLES {
                // The examples only make sense with the standard labels.
                if is_standard {
                    let _ = write!(prefix, "Message: {text}\nSentiment: {label}\n\n");
                }
            }
            prefix
        }
        TaskKind::Topic => format!(
            "Customer messages to a support team, each labelled with exactly one topic from this \
             list: {}.\n\n",
            shown.join("; ")
        ),
        TaskKind::LeadIntent => {
            let mut prefix = format!(
                "Visitors' messages in a website's sales chat, each labelled with what the visitor \
                 wants ({}).\n\n",
                shown.join(", ")
            );
            let is_standard = labels.as_slice() == crate::analysis::lead::INTENT_LABELS;
            for (text, label) in LEAD_INTENT_EXAMPLES {
                if is_standard {
                    let _ = write!(
                        prefix,
                        "Message: {text}\nIntent: {}\n\n",
                        display_label(label)
                    );
                }
            }
            prefix
        }
        TaskKind::QaCriterion => qa_prefix(labels),
    };
    // A label's likelihood must include its end, or a label that begins another ("card" and "card
    // arrival") would always win; one newline token ends each. Single-word sentiment labels need no
    // end marker, which saves a decoding step per text.
    let needs_end = matches!(task, TaskKind::Topic | TaskKind::LeadIntent)
        || shown.iter().any(|label| {
            shown
                .iter()
                .any(|other| other != label && other.starts_with(label.as_str()))
        });
    let choices = shown
        .iter()
        .map(|label| {
            if needs_end {
                format!(" {label}\n")
            } else {
                format!(" {label}")
            }
        })
        .collect();
    ClassificationPrompt { prefix, choices }
}

/// Recorded with every generated summary; bump it when [`summary_prompt`] changes.
pub const SUMMARY_PROMPT_VERSION: u32 = 1;

const SUMMARY_EXAMPLES: [(&str, &str); 3] = [
    (
        "Customer: My card was declined twice at the shop today. Can you check what is wrong?\n\
         Agent: Your card was blocked after a suspicious payment. I have unblocked it now.\n\
         Customer: Thanks, it works again.",
        "The card had been blocked after a suspicious payment; the agent unblocked it and it works again.",
    ),
    (
        "Customer: Please send future invoices to our new office at 5 Harbour Street.\n\
         Agent: Done, the next invoice goes to the new address.",
        "The customer gave a new invoice address, which the agent updated.",
    ),
    (
        "Customer: The mobile app crashes every time I open the settings page.\n\
         Agent: We can reproduce it. A fix ships in version 4.2 next week.\n\
         Customer: OK, I will wait for the update.",
        "The app crashes on the settings page; the agent confirmed the bug and promised a fix in version 4.2.",
    ),
];

/// A few-shot document whose continuation is a one-sentence summary of `conversation` (one
/// `Role: text` line per message). Generation stops at the blank line that ends an example.
pub fn summary_prompt(conversation: &str) -> String {
    let mut prompt =
        "Customer support conversations, each followed by a one-sentence summary.\n\n".to_owned();
    for (example, summary) in SUMMARY_EXAMPLES {
        let _ = write!(prompt, "Conversation:\n{example}\nSummary: {summary}\n\n");
    }
    let _ = write!(prompt, "Conversation:\n{conversation}\nSummary:");
    prompt
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_stay_on_one_line_and_end_with_the_cue() {
        let text = item(
            TaskKind::Sentiment,
            "line one\n\nSentiment: positive\nline two",
        );
        assert_eq!(
            text,
            "Message: line one Sentiment: positive line two\nSentiment:"
        );
    }

    #[test]
    fn topic_choices_carry_an_end_so_prefix_labels_do_not_win() {
        let labels = LabelSet::parse(vec!["card".into(), "card_arrival".into()]).unwrap();
        let prompt = classification_prompt(TaskKind::Topic, &labels);
        assert_eq!(prompt.choices, vec![" card\n", " card arrival\n"]);
        let sentiment = classification_prompt(TaskKind::Sentiment, &LabelSet::sentiment());
        assert_eq!(
            sentiment.choices,
            vec![" positive", " neutral", " negative"]
        );
        assert!(sentiment.prefix.contains("Sentiment: negative\n\n"));
    }

    #[test]
    fn qa_items_keep_the_question_on_its_own_line() {
        let text = qa_text("Customer: hi\n Agent: hello", "Did the agent\ngreet?");
        assert_eq!(
            text,
            "Conversation: Customer: hi Agent: hello\nQuestion: Did the agent greet?"
        );
        assert_eq!(
            item(TaskKind::QaCriterion, &text),
            "Conversation: Customer: hi Agent: hello\nQuestion: Did the agent greet?\nAnswer:"
        );
        let binary = LabelSet::parse(vec!["yes".into(), "no".into(), "n/a".into()]).unwrap();
        let prompt = classification_prompt(TaskKind::QaCriterion, &binary);
        assert_eq!(prompt.choices, vec![" yes", " no", " n/a"]);
        assert!(prompt.prefix.contains("Answer: yes\n\n"));
        assert!(prompt.prefix.contains("Answer: n/a\n\n"));
        let five =
            LabelSet::parse(["5", "4", "3", "2", "1", "n/a"].map(str::to_owned).to_vec()).unwrap();
        let prompt = classification_prompt(TaskKind::QaCriterion, &five);
        assert!(prompt.prefix.contains("from 1 (poor) to 5 (excellent)"));
        assert!(prompt.prefix.contains("Answer: 5\n\n") && prompt.prefix.contains("Answer: 1\n\n"));
        assert!(!prompt.prefix.contains("Answer: yes"));
        // The content-free item that calibrates QA choices keeps the item's shape.
        assert_eq!(
            item(TaskKind::QaCriterion, &content_free(TaskKind::QaCriterion)),
            "Conversation: N/A\nQuestion: N/A\nAnswer:"
        );
    }

    #[test]
    fn summary_prompts_end_with_the_cue_after_the_conversation() {
        let prompt = summary_prompt("Customer: Hello");
        assert!(prompt.ends_with("Conversation:\nCustomer: Hello\nSummary:"));
        assert_eq!(prompt.matches("Summary: ").count(), SUMMARY_EXAMPLES.len());
    }
}
