//! The tenant's topic list (its taxonomy): what an administrator may type into the editor, and
//! the change itself, audited. Labels go into prompts and onto pages, so they are short, plain
//! and one per line; the model is asked to choose among them, never to read them as instructions.

use std::fmt;

use crate::analysis::AnalysisError;
use crate::audit::{Actor, AuditAction, AuditEvent};
use crate::context::AppContext;
use crate::ids::TenantId;
use crate::inference::LabelSet;

/// Labels in a list at most: each is scored for every interaction, so each costs time.
pub const MAX_TOPICS: usize = 60;
/// Characters in one label at most.
pub const MAX_TOPIC_CHARS: usize = 60;

/// Why a typed topic list was refused, naming the line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicProblem {
    /// 1-based line of the text area; 0 for the list as a whole.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for TopicProblem {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(formatter, "Topics: {}", self.message)
        } else {
            write!(formatter, "Topics, line {}: {}", self.line, self.message)
        }
    }
}

fn allowed(character: char) -> bool {
    character.is_alphanumeric() || matches!(character, ' ' | '_' | '-' | '&' | '/' | '\'' | '.')
}

/// Reads one label per line: blank lines are skipped, spaces around a label trimmed. Refuses a
/// label that is too long, holds other characters than letters, digits, spaces and `_ - & / ' .`,
/// or repeats another (ignoring case); and an empty or too long list.
pub fn parse_topic_lines(text: &str) -> Result<Vec<String>, TopicProblem> {
    let mut labels: Vec<String> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let label = raw.trim();
        if label.is_empty() {
            continue;
        }
        let problem = |message: String| TopicProblem { line, message };
        if label.chars().count() > MAX_TOPIC_CHARS {
            return Err(problem(format!(
                "a topic has at most {MAX_TOPIC_CHARS} characters"
            )));
        }
        if let Some(bad) = label.chars().find(|character| !allowed(*character)) {
            return Err(problem(format!(
                "{bad:?} is not allowed; use letters, digits, spaces and _ - & / ' ."
            )));
        }
        if let Some(first) = labels
            .iter()
            .position(|other| other.to_lowercase() == label.to_lowercase())
        {
            return Err(problem(format!(
                "repeats the topic on an earlier line (topic {})",
                first + 1
            )));
        }
        labels.push(label.to_owned());
    }
    if labels.is_empty() {
        return Err(TopicProblem {
            line: 0,
            message: "give at least one topic, one per line".to_owned(),
        });
    }
    if labels.len() > MAX_TOPICS {
        return Err(TopicProblem {
            line: 0,
            message: format!("at most {MAX_TOPICS} topics (got {})", labels.len()),
        });
    }
    Ok(labels)
}

/// Replaces the tenant's topic list and records the change (`analysis.topics_changed`, with the
/// number of topics: the labels themselves are the tenant's and stay out of the log).
pub fn change_topics(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    tenant: TenantId,
    labels: Vec<String>,
) -> Result<LabelSet, AnalysisError> {
    let set = context.analysis.save_topics(tenant, labels)?;
    context.audit(
        AuditEvent::new(
            Some(tenant),
            actor.clone(),
            AuditAction::AnalysisTopicsChanged,
            format!("{} topics", set.len()),
        )
        .client(client),
    )?;
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_label_per_line_trimmed_and_blank_lines_skipped() {
        let labels =
            parse_topic_lines("  billing \n\n refund_request\r\nlogin & access\n").unwrap();
        assert_eq!(labels, ["billing", "refund_request", "login & access"]);
    }

    #[test]
    fn refusals_name_the_line_and_the_reason() {
        let problem = parse_topic_lines("billing\nBilling").unwrap_err();
        assert_eq!(problem.line, 2);
        assert!(
            problem.to_string().starts_with("Topics, line 2: repeats"),
            "{problem}"
        );
        let problem = parse_topic_lines("ok\n\n<script>").unwrap_err();
        assert_eq!(problem.line, 3);
        assert!(problem.message.contains("'<'"), "{problem}");
        let long = "x".repeat(MAX_TOPIC_CHARS + 1);
        assert_eq!(parse_topic_lines(&long).unwrap_err().line, 1);
        assert_eq!(parse_topic_lines(" \n\n").unwrap_err().line, 0);
        let many: Vec<String> = (0..=MAX_TOPICS).map(|n| format!("topic {n}")).collect();
        let problem = parse_topic_lines(&many.join("\n")).unwrap_err();
        assert_eq!(problem.line, 0);
        assert!(problem.message.contains("at most 60"), "{problem}");
        let exactly: Vec<String> = (0..MAX_TOPICS).map(|n| format!("topic {n}")).collect();
        assert_eq!(
            parse_topic_lines(&exactly.join("\n")).unwrap().len(),
            MAX_TOPICS
        );
    }
}
