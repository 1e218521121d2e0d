//! Lead qualification of sales chats: the visitor's intent, the budget, company size, timeline and
//! current solution they stated, each with the visitor's own words quoted as evidence, and a score
//! from 0 to 100.
//!
//! The intent is a constrained choice (label scoring, with a confidence). The stated facts are
//! extracted as one JSON object: the `local` backend generates it under [`FACTS_GRAMMAR`], so the
//! output always has the right shape; every backend's answer is parsed and checked against the
//! conversation, and a fact that is not there (a budget the visitor never wrote, a company size
//! whose number is not in the chat) is dropped rather than stored. The `off` backend finds the same
//! facts with patterns. Every kept fact is then located in the visitor's messages and quoted (the
//! sentence it sits in, cut out by byte range as QA's evidence is: [`crate::qa::evidence`]), so a
//! quote is always an exact substring of what the visitor wrote. The score is computed here from those parts, the same way for every
//! backend, so it can be explained: see [`score`].

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::analysis::LabelScores;
use crate::interactions::{AuthorRole, InteractionRecord};
use crate::pii::patterns::pattern;
use crate::qa::evidence;
use crate::qa::Evidence;

/// The intents a sales chat is classified into, most promising first.
pub const INTENT_LABELS: [&str; 5] = [
    "ready_to_buy",
    "evaluating",
    "pricing_question",
    "just_browsing",
    "support_request",
];
/// When the visitor means to start.
pub const TIMELINE_LABELS: [&str; 5] = ["now", "this_quarter", "this_year", "later", "unknown"];
/// Recorded with every lead qualification; bump it when a prompt or the grammar changes.
pub const LEAD_PROMPT_VERSION: u32 = 2;
/// Tokens the facts may take to generate.
pub const FACTS_MAX_TOKENS: u32 = 72;
/// A stated budget is kept to this many characters.
const MAX_BUDGET_CHARS: usize = 40;
/// A current solution (a product or vendor name) is kept to this many characters.
const MAX_SOLUTION_CHARS: usize = 40;

/// The coarse intent the inbox groups by: `support`, `buying` or `browsing`.
pub fn intent_group(label: &str) -> &'static str {
    match label {
        "ready_to_buy" | "evaluating" | "pricing_question" => "buying",
        "just_browsing" => "browsing",
        _ => "support",
    }
}

/// The phrases that state each timeline, most urgent first: the `off` backend's timeline, and the
/// evidence of a model's timeline.
const TIMELINE_PHRASES: [(&str, &[&str]); 4] = [
    (
        "now",
        &["today", "asap", "right away", "immediately", "this week"],
    ),
    (
        "this_quarter",
        &[
            "this month",
            "next month",
            "this quarter",
            "within weeks",
            "in a few weeks",
        ],
    ),
    (
        "this_year",
        &[
            "this year",
            "next quarter",
            "in a few months",
            "by the end of the year",
        ],
    ),
    ("later", &["next year", "later", "someday", "no rush"]),
];

/// The JSON object the `local` backend must produce (GBNF, root rule `root`).
pub const FACTS_GRAMMAR: &str = r#"root ::= "{\"budget\": " budget ", \"company_size\": " size ", \"timeline\": " timeline ", \"current_solution\": " solution "}"
budget ::= "null" | "\"" [^"\\\n]{1,40} "\""
solution ::= "null" | "\"" [^"\\\n]{1,40} "\""
size ::= "null" | [1-9] [0-9]{0,6}
timeline ::= "\"now\"" | "\"this_quarter\"" | "\"this_year\"" | "\"later\"" | "\"unknown\"""#;

/// What the visitor stated, as extracted and checked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadFacts {
    /// The budget in the visitor's own words (an exact part of what they wrote).
    pub budget: Option<String>,
    /// People in the visitor's company, when they said.
    pub company_size: Option<u32>,
    /// One of [`TIMELINE_LABELS`].
    pub timeline: String,
    /// The tool or vendor the visitor uses now, in their own words (an exact part of what they
    /// wrote). Absent from qualifications made before prompt version 2.
    #[serde(default)]
    pub current_solution: Option<String>,
}

/// The facts a lead can have evidence for, by their stable names.
pub const FACT_NAMES: [&str; 4] = ["budget", "company_size", "timeline", "current_solution"];

/// One fact's quote: the sentence of a visitor's message that states it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactEvidence {
    /// One of [`FACT_NAMES`].
    pub fact: String,
    pub evidence: crate::qa::Evidence,
}

/// A sales chat's qualification, stored as an analysis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeadQualification {
    pub intent: LabelScores,
    pub facts: LeadFacts,
    /// 0 to 100; see [`score`].
    pub score: u8,
    /// The visitor's words behind each fact that was found in them (see [`evidence`]).
    #[serde(default)]
    pub evidence: Vec<FactEvidence>,
}

impl LeadQualification {
    /// The quote behind `fact` (one of [`FACT_NAMES`]), when there is one.
    pub fn evidence_for(&self, fact: &str) -> Option<&crate::qa::Evidence> {
        self.evidence
            .iter()
            .find(|found| found.fact == fact)
            .map(|found| &found.evidence)
    }
}

/// The few-shot prompt that the facts' JSON continues. `visitor_text` is what the visitor wrote.
pub fn facts_prompt(visitor_text: &str) -> String {
    let flat = crate::analysis::pipeline::flatten(visitor_text, 1200);
    format!(
        "Sales chats, each followed by the facts the visitor stated, as JSON (null when not stated).\n\n\
         Chat: We are a team of 40 and want to switch from Zendesk by next month. Our budget is around $500 per month.\n\
         Facts: {{\"budget\": \"$500 per month\", \"company_size\": 40, \"timeline\": \"this_quarter\", \"current_solution\": \"Zendesk\"}}\n\n\
         Chat: Do you have a free plan? Just looking around for now.\n\
         Facts: {{\"budget\": null, \"company_size\": null, \"timeline\": \"unknown\", \"current_solution\": null}}\n\n\
         Chat: We have 1200 employees, use spreadsheets today and need a contract signed today, budget 80k EUR a year.\n\
         Facts: {{\"budget\": \"80k EUR a year\", \"company_size\": 1200, \"timeline\": \"now\", \"current_solution\": \"spreadsheets\"}}\n\n\
         Chat: {flat}\nFacts: "
    )
}

#[derive(Deserialize)]
struct RawFacts {
    budget: Option<String>,
    company_size: Option<u64>,
    timeline: Option<String>,
    #[serde(default)]
    current_solution: Option<String>,
}

/// Reads a backend's JSON answer and keeps only what the visitor's text supports. Anything that
/// does not parse gives no facts (and `unknown` timeline), never an error: the rest of the
/// qualification stands.
pub fn checked_facts(answer: &str, visitor_text: &str) -> LeadFacts {
    let start = answer.find('{');
    let end = answer.rfind('}');
    let raw: Option<RawFacts> = match (start, end) {
        (Some(start), Some(end)) if start < end => serde_json::from_str(&answer[start..=end]).ok(),
        _ => None,
    };
    let Some(raw) = raw else {
        return LeadFacts {
            timeline: "unknown".to_owned(),
            ..LeadFacts::default()
        };
    };
    let lowered = visitor_text.to_lowercase();
    let budget = raw
        .budget
        .map(|budget| budget.trim().to_owned())
        .filter(|budget| {
            !budget.is_empty()
                && budget.chars().count() <= MAX_BUDGET_CHARS
                && budget.chars().any(|c| c.is_ascii_digit())
                && lowered.contains(&budget.to_lowercase())
        });
    let company_size = raw
        .company_size
        .filter(|size| digits_in(visitor_text).contains(size))
        .and_then(|size| u32::try_from(size).ok());
    let timeline = raw
        .timeline
        .filter(|timeline| TIMELINE_LABELS.contains(&timeline.as_str()))
        .unwrap_or_else(|| "unknown".to_owned());
    let current_solution = raw
        .current_solution
        .map(|solution| solution.trim().to_owned())
        .filter(|solution| {
            solution.chars().count() <= MAX_SOLUTION_CHARS
                && solution.chars().any(char::is_alphabetic)
                && lowered.contains(&solution.to_lowercase())
        });
    LeadFacts {
        budget,
        company_size,
        timeline,
        current_solution,
    }
}

/// Every whole number written in `text` (`1,200` and `1200` both read as 1200).
fn digits_in(text: &str) -> Vec<u64> {
    static NUMBER: LazyLock<Regex> = LazyLock::new(|| pattern(r"\d{1,3}(?:,\d{3})+|\d+"));
    NUMBER
        .find_iter(text)
        .filter_map(|found| found.as_str().replace(',', "").parse().ok())
        .collect()
}

/// The facts without a model: a currency amount near a budget word, a number of people, and
/// timeline phrases.
pub fn pattern_facts(visitor_text: &str) -> LeadFacts {
    static BUDGET: LazyLock<Regex> = LazyLock::new(|| {
        pattern(
            r"(?i)(?:[$€£]\s?\d[\d,.]*\s?[km]?|\d[\d,.]*\s?[km]?\s?(?:usd|eur|gbp|dollars|euros|pounds))(?:\s?(?:per|a|/)\s?(?:year|month|yr|mo|seat|user))?",
        )
    });
    static SIZE: LazyLock<Regex> = LazyLock::new(|| {
        pattern(
            r"(?i)\b(\d{1,3}(?:,\d{3})+|\d+)\s+(?:employees|people|staff|colleagues|team members)\b",
        )
    });
    // A capitalised name (up to three words) or a generic tool after a phrase that says it is in
    // use now.
    static SOLUTION: LazyLock<Regex> = LazyLock::new(|| {
        pattern(
            r"(?i:\b(?:we(?:'re| are)? (?:currently |still )?(?:use|using|on)|(?:currently|today) (?:use|using|on)|switch(?:ing)? (?:away )?from|moving (?:away )?from|migrat(?:e|ing) from|replac(?:e|ing)|our current (?:tool|system|vendor|provider|solution) is))\s+((?:[A-Z][\w&+-]*(?:\.[\w&+-]+)*(?:\s+[A-Z][\w&+-]*(?:\.[\w&+-]+)*){0,2})|(?i:spreadsheets|excel|google sheets|email|e-mail|paper))",
        )
    });
    let budget = BUDGET
        .find(visitor_text)
        .map(|found| found.as_str().trim().to_owned())
        .filter(|budget| budget.chars().count() <= MAX_BUDGET_CHARS);
    let company_size = SIZE
        .captures(visitor_text)
        .and_then(|captures| captures[1].replace(',', "").parse().ok());
    let timeline = TIMELINE_PHRASES
        .iter()
        .find(|(_, phrases)| first_phrase(visitor_text, phrases).is_some())
        .map_or("unknown", |(label, _)| label);
    let current_solution = SOLUTION
        .captures(visitor_text)
        .map(|captures| captures[1].trim().to_owned())
        .filter(|solution| solution.chars().count() <= MAX_SOLUTION_CHARS);
    LeadFacts {
        budget,
        company_size,
        timeline: timeline.to_owned(),
        current_solution,
    }
}

/// Where `needle` first occurs in `text`, ignoring case, as a byte range of `text`.
fn find_ignoring_case(text: &str, needle: &str) -> Option<(usize, usize)> {
    if needle.is_empty() {
        return None;
    }
    let finder = regex::RegexBuilder::new(&regex::escape(needle))
        .case_insensitive(true)
        .build()
        .ok()?;
    finder.find(text).map(|found| (found.start(), found.end()))
}

/// The earliest of `phrases` in `text`, as a byte range.
fn first_phrase(text: &str, phrases: &[&str]) -> Option<(usize, usize)> {
    phrases
        .iter()
        .filter_map(|phrase| find_ignoring_case(text, phrase))
        .min_by_key(|(start, _)| *start)
}

/// Where the whole number `value` is written in `text` (`1,200` or `1200`), as a byte range.
fn number_in(text: &str, value: u32) -> Option<(usize, usize)> {
    static NUMBER: LazyLock<Regex> = LazyLock::new(|| pattern(r"\d{1,3}(?:,\d{3})+|\d+"));
    NUMBER
        .find_iter(text)
        .find(|found| found.as_str().replace(',', "").parse::<u64>().ok() == Some(u64::from(value)))
        .map(|found| (found.start(), found.end()))
}

/// The messages the lead analyzer reads, by position: the customer's, or every message but
/// internal notes when the customer wrote none (as the pipeline's inputs are taken).
fn visitor_messages(record: &InteractionRecord) -> Vec<usize> {
    let customer: Vec<usize> = record
        .messages
        .iter()
        .enumerate()
        .filter(|(_, message)| message.role == AuthorRole::Customer)
        .map(|(index, _)| index)
        .collect();
    if !customer.is_empty() {
        return customer;
    }
    record
        .messages
        .iter()
        .enumerate()
        .filter(|(_, message)| message.role != AuthorRole::InternalNote)
        .map(|(index, _)| index)
        .collect()
}

/// The quote for a match at `start..end` of a message: the sentence around it, cut as QA cuts
/// its quotes ([`evidence::quote`]); the match alone when that cut would leave it out.
fn quote_around(record: &InteractionRecord, message: usize, start: usize, end: usize) -> Evidence {
    let text = &record.messages[message].text;
    let around = evidence::split_sentences(text)
        .into_iter()
        .find(|(from, to)| *from <= start && end <= *to);
    if let Some((from, to)) = around {
        let quoted = evidence::quote(
            record,
            evidence::Sentence {
                message,
                start: from,
                end: to,
            },
        );
        if quoted.end >= end {
            return quoted;
        }
    }
    Evidence {
        message,
        start,
        end,
        quote: text[start..end].to_owned(),
    }
}

/// The evidence of each fact in `facts`: the first visitor sentence that states it (the budget and
/// the current solution as written, the company size's number, one of the timeline's phrases).
/// A fact found nowhere in the visitor's messages (a model's timeline without a telling phrase)
/// has no quote. Every quote passes [`evidence::verify`].
pub fn evidence(record: &InteractionRecord, facts: &LeadFacts) -> Vec<FactEvidence> {
    let messages = visitor_messages(record);
    let locate = |finder: &dyn Fn(&str) -> Option<(usize, usize)>| {
        messages.iter().find_map(|&index| {
            finder(&record.messages[index].text)
                .map(|(start, end)| quote_around(record, index, start, end))
        })
    };
    let mut found = Vec::new();
    let mut keep = |fact: &str, quote: Option<Evidence>| {
        if let Some(quote) = quote.filter(|quote| evidence::verify(record, quote)) {
            found.push(FactEvidence {
                fact: fact.to_owned(),
                evidence: quote,
            });
        }
    };
    if let Some(budget) = &facts.budget {
        keep("budget", locate(&|text| find_ignoring_case(text, budget)));
    }
    if let Some(size) = facts.company_size {
        keep("company_size", locate(&|text| number_in(text, size)));
    }
    if let Some((_, phrases)) = TIMELINE_PHRASES
        .iter()
        .find(|(label, _)| *label == facts.timeline)
    {
        keep("timeline", locate(&|text| first_phrase(text, phrases)));
    }
    if let Some(solution) = &facts.current_solution {
        keep(
            "current_solution",
            locate(&|text| find_ignoring_case(text, solution)),
        );
    }
    found
}

/// The score, 0 to 100, as the sum of four parts:
///
/// - intent, up to 40: `ready_to_buy` 40, `evaluating` 30, `pricing_question` 25,
///   `just_browsing` 5, `support_request` 0, weighted by the intent's confidence;
/// - a stated budget: 20;
/// - company size, up to 20: 1–10 people 5, 11–50 10, 51–200 15, more 20;
/// - timeline, up to 20: `now` 20, `this_quarter` 15, `this_year` 10, `later` 3, `unknown` 0.
pub fn score(intent: &LabelScores, facts: &LeadFacts) -> u8 {
    let intent_points = match intent.label.as_str() {
        "ready_to_buy" => 40.0,
        "evaluating" => 30.0,
        "pricing_question" => 25.0,
        "just_browsing" => 5.0,
        _ => 0.0,
    } * intent.confidence.clamp(0.0, 1.0);
    let budget_points = if facts.budget.is_some() { 20.0 } else { 0.0 };
    let size_points = match facts.company_size {
        None | Some(0) => 0.0,
        Some(1..=10) => 5.0,
        Some(11..=50) => 10.0,
        Some(51..=200) => 15.0,
        Some(_) => 20.0,
    };
    let timeline_points = match facts.timeline.as_str() {
        "now" => 20.0,
        "this_quarter" => 15.0,
        "this_year" => 10.0,
        "later" => 3.0,
        _ => 0.0,
    };
    let total: f32 = intent_points + budget_points + size_points + timeline_points;
    // At most 100 by construction; the clamp keeps a float slip from wrapping.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let points = total.round().clamp(0.0, 100.0) as u8;
    points
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::LabelProbability;

    fn intent(label: &str, confidence: f32) -> LabelScores {
        LabelScores {
            label: label.to_owned(),
            confidence,
            probabilities: vec![LabelProbability {
                label: label.to_owned(),
                probability: confidence,
            }],
        }
    }

    const CHAT: &str =
        "Hi! We are 1,200 employees and want it live next month. Budget: $30k a year.";

    #[test]
    fn facts_are_kept_only_when_the_visitor_wrote_them() {
        let answer =
            r#"{"budget": "$30k a year", "company_size": 1200, "timeline": "this_quarter"}"#;
        let facts = checked_facts(answer, CHAT);
        assert_eq!(facts.budget.as_deref(), Some("$30k a year"));
        assert_eq!(facts.company_size, Some(1200));
        assert_eq!(facts.timeline, "this_quarter");
        // A budget and a size the visitor never wrote are dropped; a timeline outside the list
        // becomes unknown.
        let invented = r#"{"budget": "$90k", "company_size": 50, "timeline": "tomorrow"}"#;
        let facts = checked_facts(invented, CHAT);
        assert_eq!(
            facts,
            LeadFacts {
                budget: None,
                company_size: None,
                timeline: "unknown".to_owned(),
                current_solution: None,
            }
        );
        // Text around the object is ignored; no object at all gives no facts.
        let facts = checked_facts(&format!("Sure! {answer} Hope that helps."), CHAT);
        assert_eq!(facts.company_size, Some(1200));
        assert_eq!(checked_facts("no idea", CHAT).timeline, "unknown");
        assert_eq!(checked_facts("no idea", CHAT).budget, None);
    }

    #[test]
    fn patterns_find_the_facts_without_a_model() {
        let facts = pattern_facts(CHAT);
        assert_eq!(facts.budget.as_deref(), Some("$30k a year"));
        assert_eq!(facts.company_size, Some(1200));
        assert_eq!(facts.timeline, "this_quarter");
        let facts = pattern_facts("Just browsing, what does it do?");
        assert_eq!(
            facts,
            LeadFacts {
                budget: None,
                company_size: None,
                timeline: "unknown".to_owned(),
                current_solution: None,
            }
        );
        assert_eq!(
            pattern_facts("We need it today, 8 people, 500 EUR per month").timeline,
            "now"
        );
        assert_eq!(
            pattern_facts("We need it today, 8 people, 500 EUR per month")
                .budget
                .as_deref(),
            Some("500 EUR per month")
        );
    }

    #[test]
    fn the_score_adds_its_four_parts() {
        let full = LeadFacts {
            budget: Some("$30k".to_owned()),
            company_size: Some(1200),
            timeline: "now".to_owned(),
            current_solution: None,
        };
        assert_eq!(score(&intent("ready_to_buy", 1.0), &full), 100);
        assert_eq!(score(&intent("ready_to_buy", 0.5), &full), 80);
        let none = LeadFacts {
            timeline: "unknown".to_owned(),
            ..LeadFacts::default()
        };
        assert_eq!(score(&intent("support_request", 0.9), &none), 0);
        let some = LeadFacts {
            budget: None,
            company_size: Some(40),
            timeline: "this_year".to_owned(),
            current_solution: None,
        };
        // 30 × 0.8 + 0 + 10 + 10
        assert_eq!(score(&intent("evaluating", 0.8), &some), 44);
    }

    fn chat_record(text: &str) -> InteractionRecord {
        serde_json::from_value(serde_json::json!({
            "source_system": "web", "source_id": "1", "channel": "sales-chat",
            "messages": [
                {"role": "ai-agent", "sent_at": "2026-10-06T10:00:00Z", "text": "Hi! How can I help?"},
                {"role": "customer", "sent_at": "2026-10-06T10:00:05Z", "text": text}
            ]
        }))
        .unwrap()
    }

    #[test]
    fn the_current_solution_is_found_and_checked() {
        assert_eq!(
            pattern_facts("We use Zendesk. It is slow.")
                .current_solution
                .as_deref(),
            Some("Zendesk")
        );
        assert_eq!(
            pattern_facts("We're switching from Salesforce Service Cloud next month")
                .current_solution
                .as_deref(),
            Some("Salesforce Service Cloud")
        );
        assert_eq!(
            pattern_facts("Today we are using spreadsheets for this.")
                .current_solution
                .as_deref(),
            Some("spreadsheets")
        );
        assert_eq!(pattern_facts("Just browsing.").current_solution, None);
        let answer = r#"{"budget": null, "company_size": null, "timeline": "unknown", "current_solution": "Intercom"}"#;
        assert_eq!(
            checked_facts(answer, "We use intercom at the moment")
                .current_solution
                .as_deref(),
            Some("Intercom")
        );
        // A vendor the visitor never named is dropped.
        assert_eq!(checked_facts(answer, CHAT).current_solution, None);
    }

    #[test]
    fn every_fact_is_quoted_from_the_visitor_s_own_sentence() {
        let record = chat_record(
            "Hello. We are 1,200 employees. We use Zendesk. Budget: $30k a year! We want it live next month.",
        );
        let facts = pattern_facts(&record.messages[1].text);
        assert_eq!(facts.current_solution.as_deref(), Some("Zendesk"));
        let found = evidence(&record, &facts);
        let quote = |fact: &str| {
            found
                .iter()
                .find(|found| found.fact == fact)
                .map(|found| found.evidence.quote.clone())
        };
        assert_eq!(quote("budget").as_deref(), Some("Budget: $30k a year!"));
        assert_eq!(
            quote("company_size").as_deref(),
            Some("We are 1,200 employees.")
        );
        assert_eq!(
            quote("timeline").as_deref(),
            Some("We want it live next month.")
        );
        assert_eq!(
            quote("current_solution").as_deref(),
            Some("We use Zendesk.")
        );
        for fact in &found {
            assert_eq!(fact.evidence.message, 1, "{fact:?}");
            assert!(evidence::verify(&record, &fact.evidence), "{fact:?}");
        }
        // A timeline the visitor stated in no telling phrase has no quote.
        let unstated = LeadFacts {
            timeline: "now".to_owned(),
            ..LeadFacts::default()
        };
        assert!(evidence(&chat_record("Hello there."), &unstated).is_empty());
    }

    #[test]
    fn intents_fall_into_three_groups() {
        assert_eq!(intent_group("ready_to_buy"), "buying");
        assert_eq!(intent_group("pricing_question"), "buying");
        assert_eq!(intent_group("just_browsing"), "browsing");
        assert_eq!(intent_group("support_request"), "support");
    }
}
