//! Signals: what besides conversations tells how a customer is doing — survey answers (NPS, CSAT),
//! product-usage figures, bug records, public reviews, sales-chat leads and external items (news,
//! press notes). Each is a [`SignalRecord`] with its kind-specific [`Signal`] body.

pub mod routes;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::records::refs::{self, Reference};
use crate::records::{
    check_email, check_optional, check_short, FieldProblem, RecordKind, RecordStore, SourceRecord,
    Stored,
};

const MAX_TEXT: usize = 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SurveyKind {
    /// Net Promoter Score, 0 to 10.
    Nps,
    /// Customer satisfaction, 1 to 5.
    Csat,
}

/// The kind-specific part of a signal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Signal {
    Survey {
        survey: SurveyKind,
        score: u8,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
    Usage {
        metric: String,
        value: f64,
        period_start: NaiveDate,
        period_end: NaiveDate,
    },
    Bug {
        title: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        severity: Option<String>,
    },
    Review {
        /// Where the review was published (`google`, `facebook`, …).
        platform: String,
        rating: u8,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reviewer: Option<String>,
        /// The business location reviewed, for multi-site companies.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        location: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply: Option<String>,
    },
    Lead {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        company: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        email: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    External {
        title: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
        /// The publication or site it comes from.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        publisher: Option<String>,
    },
}

impl Signal {
    pub fn kind_str(&self) -> &'static str {
        match self {
            Self::Survey { .. } => "survey",
            Self::Usage { .. } => "usage",
            Self::Bug { .. } => "bug",
            Self::Review { .. } => "review",
            Self::Lead { .. } => "lead",
            Self::External { .. } => "external",
        }
    }
}

/// The kinds of signal, as [`Signal::kind_str`] names them (the signals page filters by them).
pub const KINDS: [&str; 6] = ["survey", "usage", "bug", "review", "lead", "external"];

/// The first `limit` characters of `text` on one line, with an ellipsis when cut.
fn excerpt(text: &str, limit: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > limit {
        let cut: String = flat.chars().take(limit).collect();
        format!("{}…", cut.trim_end())
    } else {
        flat
    }
}

impl Signal {
    /// One line that says what the signal is, for lists and timelines, e.g. `NPS 9 — comment…`
    /// or `★★☆☆☆ google — text…`. It is tenant content: pages escape it like any other.
    pub fn summary(&self) -> String {
        const TEXT: usize = 80;
        let with_text = |head: String, text: Option<&String>| match text {
            Some(text) if !text.trim().is_empty() => format!("{head} — {}", excerpt(text, TEXT)),
            _ => head,
        };
        match self {
            Self::Survey {
                survey,
                score,
                comment,
            } => {
                let name = match survey {
                    SurveyKind::Nps => "NPS",
                    SurveyKind::Csat => "CSAT",
                };
                with_text(format!("{name} {score}"), comment.as_ref())
            }
            Self::Usage {
                metric,
                value,
                period_start,
                period_end,
            } => format!("{metric}: {value} ({period_start} to {period_end})"),
            Self::Bug {
                title,
                status,
                severity,
            } => {
                let mut parts = vec![excerpt(title, TEXT)];
                parts.extend([severity, status].into_iter().flatten().cloned());
                parts.join(" · ")
            }
            Self::Review {
                platform,
                rating,
                text,
                reviewer,
                ..
            } => {
                let filled = usize::from((*rating).min(5));
                let stars = format!("{}{}", "★".repeat(filled), "☆".repeat(5 - filled));
                let by = reviewer
                    .as_ref()
                    .map(|name| format!(" by {name}"))
                    .unwrap_or_default();
                with_text(
                    format!("{stars} ({rating}/5) {platform}{by}"),
                    text.as_ref(),
                )
            }
            Self::Lead {
                company,
                name,
                message,
                ..
            } => {
                let who = [company, name]
                    .into_iter()
                    .flatten()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ");
                let head = if who.is_empty() {
                    "Lead".to_owned()
                } else {
                    format!("Lead: {who}")
                };
                with_text(head, message.as_ref())
            }
            Self::External {
                title,
                body,
                publisher,
            } => {
                let head = match publisher {
                    Some(publisher) => format!("{} ({publisher})", excerpt(title, TEXT)),
                    None => excerpt(title, TEXT),
                };
                with_text(head, body.as_ref())
            }
        }
    }
}

/// A signal as imported.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignalRecord {
    pub source_system: String,
    pub source_id: String,
    /// The account's source id (or domain), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The contact's e-mail, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    pub occurred_at: DateTime<Utc>,
    pub signal: Signal,
}

pub type StoredSignal = Stored<SignalRecord>;
pub type SignalStore = RecordStore<SignalRecord>;

fn check_text(problems: &mut Vec<FieldProblem>, field: &str, value: Option<&String>) {
    if value.is_some_and(|text| text.len() > MAX_TEXT) {
        problems.push(FieldProblem::new(
            field,
            format!("must be at most {MAX_TEXT} bytes"),
        ));
    }
}

impl SourceRecord for SignalRecord {
    fn subject(&self) -> Option<crate::privacy::subjects::Subject> {
        crate::privacy::subjects::of_signal(self)
    }

    const KIND: RecordKind = RecordKind::Signal;

    fn source_system(&self) -> &str {
        &self.source_system
    }

    fn source_id(&self) -> &str {
        &self.source_id
    }

    /// `source system ‖ 0x00 ‖ source id ‖ 0x00 ‖ kind` ([`Signal::kind_str`]): every kind of
    /// signal shares one collection and one `signal_sources` index, and the CSV formats all
    /// default the source system to `csv`, so a survey's `response_id` and a review's `review_id`
    /// may well be the same. Without the kind, one would replace the other. (Keys stored before
    /// the kind was added are moved by `records::migrate` when the store opens.)
    fn source_key(&self) -> String {
        format!(
            "{}\u{0}{}",
            crate::records::plain_source_key(&self.source_system, &self.source_id),
            self.signal.kind_str()
        )
    }

    /// Its account and contact, and a review's reviewer or a lead's name and address.
    fn references(&self) -> Vec<Reference> {
        let mut references = Vec::new();
        refs::collect(
            &mut references,
            Reference::account,
            [self.account.as_deref()],
        );
        let (name, email) = match &self.signal {
            Signal::Review { reviewer, .. } => (reviewer.as_deref(), None),
            Signal::Lead { name, email, .. } => (name.as_deref(), email.as_deref()),
            _ => (None, None),
        };
        refs::collect(
            &mut references,
            Reference::email,
            [self.contact.as_deref(), email],
        );
        refs::collect(&mut references, Reference::name, [name]);
        references
    }

    fn problems(&self) -> Vec<FieldProblem> {
        let mut problems = Vec::new();
        check_short(&mut problems, "source_system", &self.source_system, true);
        check_short(&mut problems, "source_id", &self.source_id, true);
        check_optional(&mut problems, "account", self.account.as_ref());
        check_email(&mut problems, "contact", self.contact.as_ref());
        match &self.signal {
            Signal::Survey {
                survey,
                score,
                comment,
            } => {
                let range = match survey {
                    SurveyKind::Nps => 0..=10,
                    SurveyKind::Csat => 1..=5,
                };
                if !range.contains(score) {
                    problems.push(FieldProblem::new(
                        "signal.score",
                        format!(
                            "must be {} to {} for this survey",
                            range.start(),
                            range.end()
                        ),
                    ));
                }
                check_text(&mut problems, "signal.comment", comment.as_ref());
            }
            Signal::Usage {
                metric,
                value,
                period_start,
                period_end,
            } => {
                check_short(&mut problems, "signal.metric", metric, true);
                if !value.is_finite() {
                    problems.push(FieldProblem::new("signal.value", "must be a finite number"));
                }
                if period_end < period_start {
                    problems.push(FieldProblem::new(
                        "signal.period_end",
                        "must not be before period_start",
                    ));
                }
            }
            Signal::Bug {
                title,
                status,
                severity,
            } => {
                check_short(&mut problems, "signal.title", title, true);
                check_optional(&mut problems, "signal.status", status.as_ref());
                check_optional(&mut problems, "signal.severity", severity.as_ref());
            }
            Signal::Review {
                platform,
                rating,
                text,
                reviewer,
                location,
                reply,
            } => {
                check_short(&mut problems, "signal.platform", platform, true);
                if !(1..=5).contains(rating) {
                    problems.push(FieldProblem::new("signal.rating", "must be 1 to 5"));
                }
                check_text(&mut problems, "signal.text", text.as_ref());
                check_optional(&mut problems, "signal.reviewer", reviewer.as_ref());
                check_optional(&mut problems, "signal.location", location.as_ref());
                check_text(&mut problems, "signal.reply", reply.as_ref());
            }
            Signal::Lead {
                company,
                name,
                email,
                message,
            } => {
                check_optional(&mut problems, "signal.company", company.as_ref());
                check_optional(&mut problems, "signal.name", name.as_ref());
                check_email(&mut problems, "signal.email", email.as_ref());
                check_text(&mut problems, "signal.message", message.as_ref());
            }
            Signal::External {
                title,
                body,
                publisher,
            } => {
                check_short(&mut problems, "signal.title", title, true);
                check_text(&mut problems, "signal.body", body.as_ref());
                check_optional(&mut problems, "signal.publisher", publisher.as_ref());
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_say_what_each_kind_is_on_one_line() {
        let review = Signal::Review {
            platform: "google".to_owned(),
            rating: 2,
            text: Some("Slow\nsupport".to_owned()),
            reviewer: None,
            location: None,
            reply: None,
        };
        assert_eq!(review.summary(), "★★☆☆☆ (2/5) google — Slow support");
        let survey = Signal::Survey {
            survey: SurveyKind::Nps,
            score: 9,
            comment: Some("x".repeat(100)),
        };
        let line = survey.summary();
        assert!(
            line.starts_with("NPS 9 — xxx") && line.ends_with('…'),
            "{line}"
        );
    }

    #[test]
    fn scores_are_checked_against_their_scale() {
        let record: SignalRecord = serde_json::from_str(
            r#"{"source_system":"survey-tool","source_id":"r1","occurred_at":"2026-10-01T00:00:00Z",
                "signal":{"kind":"survey","survey":"csat","score":9}}"#,
        )
        .unwrap();
        let problems = record.problems();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].field, "signal.score");
        assert!(problems[0].message.contains("1 to 5"));
    }
}
