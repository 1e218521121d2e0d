//! Lead qualification of sales chats: the visitor's intent, the budget, company size and timeline
//! they stated, and a score from 0 to 100.
//!
//! The intent is a constrained choice (label scoring, with a confidence). The stated facts are
//! extracted as one JSON object: the `local` backend generates it under [`FACTS_GRAMMAR`], so the
//! output always has the right shape; every backend's answer is parsed and checked against the
//! conversation, and a fact that is not there (a budget the visitor never wrote, a company size
//! whose number is not in the chat) is dropped rather than stored. The `off` backend finds the same
//! facts with patterns. The score is computed here from those parts, the same way for every
//! backend, so it can be explained: see [`score`].

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::analysis::LabelScores;
use crate::pii::patterns::pattern;

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
pub const LEAD_PROMPT_VERSION: u32 = 1;
/// Tokens the facts may take to generate.
pub const FACTS_MAX_TOKENS: u32 = 48;
/// A stated budget is kept to this many characters.
const MAX_BUDGET_CHARS: usize = 40;

/// The JSON object the `local` backend must produce (GBNF, root rule `root`).
pub const FACTS_GRAMMAR: &str = r#"root ::= "{\"budget\": " budget ", \"company_size\": " size ", \"timeline\": " timeline "}"
budget ::= "null" | "\"" [^"\\\n]{1,40} "\""
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
}

/// A sales chat's qualification, stored as an analysis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeadQualification {
    pub intent: LabelScores,
    pub facts: LeadFacts,
    /// 0 to 100; see [`score`].
    pub score: u8,
}

/// The few-shot prompt that the facts' JSON continues. `visitor_text` is what the visitor wrote.
pub fn facts_prompt(visitor_text: &str) -> String {
    let flat = crate::analysis::pipeline::flatten(visitor_text, 1200);
    format!(
        "Sales chats, each followed by the facts the visitor stated, as JSON (null when not stated).\n\n\
         Chat: We are a team of 40 and want to switch by next month. Our budget is around $500 per month.\n\
         Facts: {{\"budget\": \"$500 per month\", \"company_size\": 40, \"timeline\": \"this_quarter\"}}\n\n\
         Chat: Do you have a free plan? Just looking around for now.\n\
         Facts: {{\"budget\": null, \"company_size\": null, \"timeline\": \"unknown\"}}\n\n\
         Chat: We have 1200 employees and need a contract signed today, budget 80k EUR a year.\n\
         Facts: {{\"budget\": \"80k EUR a year\", \"company_size\": 1200, \"timeline\": \"now\"}}\n\n\
         Chat: {flat}\nFacts: "
    )
}

#[derive(Deserialize)]
struct RawFacts {
    budget: Option<String>,
    company_size: Option<u64>,
    timeline: Option<String>,
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
    LeadFacts {
        budget,
        company_size,
        timeline,
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
    let budget = BUDGET
        .find(visitor_text)
        .map(|found| found.as_str().trim().to_owned())
        .filter(|budget| budget.chars().count() <= MAX_BUDGET_CHARS);
    let company_size = SIZE
        .captures(visitor_text)
        .and_then(|captures| captures[1].replace(',', "").parse().ok());
    let lowered = visitor_text.to_lowercase();
    let has = |phrases: &[&str]| phrases.iter().any(|phrase| lowered.contains(phrase));
    let timeline = if has(&["today", "asap", "right away", "immediately", "this week"]) {
        "now"
    } else if has(&[
        "this month",
        "next month",
        "this quarter",
        "within weeks",
        "in a few weeks",
    ]) {
        "this_quarter"
    } else if has(&[
        "this year",
        "next quarter",
        "in a few months",
        "by the end of the year",
    ]) {
        "this_year"
    } else if has(&["next year", "later", "someday", "no rush"]) {
        "later"
    } else {
        "unknown"
    };
    LeadFacts {
        budget,
        company_size,
        timeline: timeline.to_owned(),
    }
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
                timeline: "unknown".to_owned()
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
                timeline: "unknown".to_owned()
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
        };
        // 30 × 0.8 + 0 + 10 + 10
        assert_eq!(score(&intent("evaluating", 0.8), &some), 44);
    }
}
