//! An account's briefing: a short paragraph about the account's recent conversations, written by
//! the tenant's inference backend, that cites the interactions it draws on.
//!
//! - The input ([`BriefingInput`]) is the account's newest interactions (at most
//!   [`MAX_SOURCES`], newest first by their first message), each as one numbered line of what
//!   is stored about it — date, channel, sentiment, topics and summary — never the messages
//!   themselves. Interactions of customers who restricted or objected to processing
//!   ([`Restrictions::covers`]) are left out. Its digest says whether the briefing is current.
//! - The text: with the `off` backend it is extractive (built from the stored summaries, each
//!   sentence citing its interaction); with `local` or `remote` the model continues a few-shot
//!   document. A `remote` backend gets the prompt redacted through its usual path, and each send
//!   is audited first. Only citations `[n]` that refer to a listed number are kept
//!   ([`keep_valid_citations`]); the page turns each into a link built on the server.
//! - Generation never happens at page load. It is a job of the shared analysis queue
//!   ([`JobSubject::Account`], the account's id as the job's record), queued by [`refresh`] when
//!   health notices that the account's data changed and the input's digest differs from the
//!   stored briefing's, or by a person (Regenerate). The briefing is stored in the analysis store
//!   (kind [`AnalysisKind::Briefing`], under the account's id), sealed, with its provenance: the
//!   backend and model, the prompt version, the input digest, when it was made, and the cited
//!   interactions in [`Briefing::cited`].
//!
//! Nothing here logs tenant content: failures are logged with ids and error kinds.

use std::fmt::Write as _;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::accounts::query::{records_of, TIMELINE_LIMIT};
use crate::accounts::Account;
use crate::analysis::jobs::{AttemptEnd, EnqueueRequest, Job, JobErrorKind, JobSubject, Priority};
use crate::analysis::store::Finished;
use crate::analysis::{Analysis, AnalysisKind, AnalysisResult, Provenance};
use crate::audit::{Actor, AuditAction, AuditEvent};
use crate::context::AppContext;
use crate::ids::{RecordId, TenantId};
use crate::inference::{Backend, BackendKind, InferenceError};
use crate::interactions::query::first_message_time;
use crate::interactions::Interaction;
use crate::privacy::Restrictions;
use crate::store::StoreError;

/// Recorded with every briefing; bump it when [`prompt`] or [`extractive`] changes.
pub const BRIEFING_PROMPT_VERSION: u32 = 1;
/// Interactions one briefing reads at most (the newest).
pub const MAX_SOURCES: usize = 8;
/// A stored briefing's text, at most (characters).
pub const MAX_BRIEFING_CHARS: usize = 1200;
/// Tokens a model may write for one briefing.
pub const BRIEFING_MAX_TOKENS: u32 = 160;
/// What one source line keeps of a summary and a subject, at most (characters).
const MAX_SUMMARY_CHARS: usize = 300;
const MAX_SUBJECT_CHARS: usize = 120;
/// Sources the extractive briefing quotes, at most.
const EXTRACTIVE_SOURCES: usize = 3;

/// How the text was made (the provenance's `analyzer`).
pub const EXTRACTIVE_ANALYZER: &str = "extractive";
pub const GENERATION_ANALYZER: &str = "few-shot generation";
/// Generated, and some sentence the model left uncited was given the citations of the sources
/// that share the most words with it.
pub const ATTRIBUTED_ANALYZER: &str = "few-shot generation, citations attributed by word overlap";
/// The model wrote nothing usable (nothing, or a copy of the prompt's example): the extractive
/// text stands in, and the provenance says so.
pub const FALLBACK_ANALYZER: &str = "extractive (the model wrote nothing usable)";

/// A stored briefing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Briefing {
    /// The paragraph. A mark `[n]` cites `sources[n - 1]`; only such marks are kept.
    pub text: String,
    /// The interactions the input listed, in their numbers' order (`[1]` first).
    pub sources: Vec<RecordId>,
    /// The interactions the text cites (each in `sources`), in the order first cited.
    pub cited: Vec<RecordId>,
}

/// One interaction as the briefing's input lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub id: RecordId,
    pub began: Option<DateTime<Utc>>,
    pub channel: &'static str,
    pub subject: Option<String>,
    /// The stored summary, if it was analysed.
    pub summary: Option<String>,
    pub sentiment: Option<String>,
    pub topics: Vec<String>,
    /// The interaction version (its `updated` time).
    pub updated: DateTime<Utc>,
}

fn one_line(text: &str, max_chars: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max_chars {
        return flat;
    }
    let cut: String = flat.chars().take(max_chars.saturating_sub(1)).collect();
    format!("{}…", cut.trim_end())
}

impl Source {
    /// What is stored about `interaction`, from its `analyses`.
    pub fn of(interaction: &Interaction, analyses: &[Analysis]) -> Self {
        let mut source = Self {
            id: interaction.id,
            began: first_message_time(&interaction.record),
            channel: interaction.record.channel.as_str(),
            subject: interaction
                .record
                .subject
                .as_deref()
                .map(|subject| one_line(subject, MAX_SUBJECT_CHARS))
                .filter(|subject| !subject.is_empty()),
            summary: None,
            sentiment: None,
            topics: Vec::new(),
            updated: interaction.updated,
        };
        for analysis in analyses {
            match &analysis.result {
                AnalysisResult::Summary { text } => {
                    let text = one_line(text, MAX_SUMMARY_CHARS);
                    source.summary = (!text.is_empty()).then_some(text);
                }
                AnalysisResult::Sentiment { overall, .. } => {
                    source.sentiment = Some(overall.label.clone());
                }
                AnalysisResult::Topics { labels, .. } => source.topics.clone_from(labels),
                _ => {}
            }
        }
        source
    }

    fn day(&self) -> String {
        self.began.map_or_else(
            || "undated".to_owned(),
            |time| time.date_naive().to_string(),
        )
    }

    /// What it says, for a line: the summary, else the subject.
    fn gist(&self) -> String {
        self.summary
            .clone()
            .or_else(|| self.subject.clone())
            .unwrap_or_else(|| "(not summarised yet)".to_owned())
    }

    /// The numbered line the prompt and the digest use.
    pub fn line(&self, number: usize) -> String {
        let mut line = format!("[{number}] {}, {}", self.day(), self.channel);
        if let Some(sentiment) = &self.sentiment {
            let _ = write!(line, ", {sentiment}");
        }
        if !self.topics.is_empty() {
            let _ = write!(line, ", topics: {}", self.topics.join("; "));
        }
        let _ = write!(line, ". {}", self.gist());
        line
    }
}

/// What one briefing is written from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BriefingInput {
    pub account: RecordId,
    pub account_name: String,
    /// Newest first; `[1]` is the first.
    pub sources: Vec<Source>,
    /// SHA-256 (hex) of the prompt version, the account's name and the numbered lines.
    pub digest: String,
}

impl BriefingInput {
    /// The newest version of what it reads: the newest source's, else the account's.
    pub fn version(&self, account_updated: DateTime<Utc>) -> DateTime<Utc> {
        self.sources
            .iter()
            .map(|source| source.updated)
            .max()
            .unwrap_or(account_updated)
    }
}

fn lines(sources: &[Source]) -> String {
    sources
        .iter()
        .enumerate()
        .map(|(index, source)| source.line(index + 1))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The input from the account's `interactions` (any order, any number): the newest
/// [`MAX_SOURCES`] by first message whose customers did not restrict processing, with what is
/// stored about them. Reads the analyses of those only.
pub fn input_from<'a>(
    context: &AppContext,
    tenant: TenantId,
    account: &Account,
    interactions: impl IntoIterator<Item = &'a Interaction>,
) -> Result<BriefingInput, StoreError> {
    let mut candidates: Vec<&Interaction> = interactions.into_iter().collect();
    candidates.sort_by_key(|interaction| {
        std::cmp::Reverse((first_message_time(&interaction.record), interaction.id))
    });
    let restrictions = Restrictions::new(context.store.clone());
    let mut sources = Vec::new();
    for interaction in candidates {
        if sources.len() == MAX_SOURCES {
            break;
        }
        if restrictions.covers(tenant, &interaction.record)? {
            continue;
        }
        let analyses = context.analysis.reviewed(tenant, interaction.id)?;
        sources.push(Source::of(interaction, &analyses));
    }
    let name = one_line(&account.record.name, MAX_SUBJECT_CHARS);
    let digest = hex::encode(crate::crypto::sha256(&[
        BRIEFING_PROMPT_VERSION.to_string().as_bytes(),
        b"\n",
        name.as_bytes(),
        b"\n",
        lines(&sources).as_bytes(),
    ]));
    Ok(BriefingInput {
        account: account.id,
        account_name: name,
        sources,
        digest,
    })
}

/// The account's input, read as the account page reads its timeline: its newest interactions
/// (at most [`TIMELINE_LIMIT`], through the reference index).
pub fn input_for(
    context: &AppContext,
    tenant: TenantId,
    account: &Account,
) -> Result<BriefingInput, StoreError> {
    let found = records_of(&context.interactions, tenant, account, TIMELINE_LIMIT)?;
    input_from(context, tenant, account, &found.items)
}

const EXAMPLE_ACCOUNT: &str = "Lakeside Freight";
const EXAMPLE_LINES: &str = "[1] 2025-06-12, email, negative, topics: delivery_and_shipping. Two pallets arrived a week late and the customer wants to know why.\n\
[2] 2025-06-09, chat, neutral, topics: technical_problem. The tracking API returned timeouts; the agent shared a workaround.\n\
[3] 2025-05-28, phone, positive, topics: praise_and_feedback. The customer praised the new route planner.";
const EXAMPLE_BRIEFING: &str = "Lakeside Freight is unhappy about two pallets that arrived a week late [1] and had timeouts on the tracking API [2]. They like the new route planner [3].";

/// A few-shot document whose continuation is the briefing of `input`. Generation stops at the
/// blank line that ends an example.
pub fn prompt(input: &BriefingInput) -> String {
    format!(
        "Account briefings for customer success managers. Each briefing is two or three sentences about the account's recent conversations and cites the conversations it draws on by their numbers in brackets.\n\n\
         Account: {EXAMPLE_ACCOUNT}\nConversations:\n{EXAMPLE_LINES}\nBriefing: {EXAMPLE_BRIEFING}\n\n\
         Account: {}\nConversations:\n{}\nBriefing:",
        input.account_name,
        lines(&input.sources)
    )
}

/// Without a model: how many recent conversations and their sentiments, then the newest
/// summaries, each citing its interaction.
pub fn extractive(input: &BriefingInput) -> String {
    if input.sources.is_empty() {
        return "No conversations with this account yet.".to_owned();
    }
    let mut counts: Vec<(String, usize)> = Vec::new();
    for source in &input.sources {
        let label = source
            .sentiment
            .clone()
            .unwrap_or_else(|| "not analysed".to_owned());
        match counts.iter_mut().find(|(known, _)| *known == label) {
            Some((_, count)) => *count += 1,
            None => counts.push((label, 1)),
        }
    }
    let counts: Vec<String> = counts
        .iter()
        .map(|(label, count)| format!("{count} {label}"))
        .collect();
    let total = input.sources.len();
    let mut text = format!(
        "{total} recent conversation{} ({}).",
        if total == 1 { "" } else { "s" },
        counts.join(", ")
    );
    for (index, source) in input.sources.iter().take(EXTRACTIVE_SOURCES).enumerate() {
        let gist = source.gist();
        let gist = gist.trim_end_matches(['.', '!', '?']);
        let _ = write!(
            text,
            " {} ({}): {gist} [{}].",
            source.day(),
            source.channel,
            index + 1
        );
    }
    text
}

/// A piece of a briefing's text: plain text, or a citation mark with the numbers it names.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Cite(Vec<usize>),
}

/// Splits `text` at citation marks: brackets holding only numbers, commas and spaces (`[2]`,
/// `[1, 3]`). Other brackets are text.
fn pieces(text: &str) -> Vec<Piece<'_>> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let Some(close) = after.find(']') else {
            break;
        };
        let inner = &after[..close];
        let is_mark = !inner.trim().is_empty()
            && inner
                .chars()
                .all(|c| c.is_ascii_digit() || c == ',' || c == ' ')
            && inner.chars().any(|c| c.is_ascii_digit());
        if !is_mark {
            pieces.push(Piece::Text(&rest[..=open]));
            rest = after;
            continue;
        }
        if open > 0 {
            pieces.push(Piece::Text(&rest[..open]));
        }
        let numbers = inner
            .split([',', ' '])
            .filter(|part| !part.is_empty())
            .map(|part| part.parse::<usize>().unwrap_or(0))
            .collect();
        pieces.push(Piece::Cite(numbers));
        rest = &after[close + 1..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest));
    }
    pieces
}

/// `text` with only the citations of listed numbers (1 to `listed`), each as its own `[n]`;
/// marks that name no listed number are dropped (with the space before them). Also returns the
/// numbers cited, in the order first cited.
pub fn keep_valid_citations(text: &str, listed: usize) -> (String, Vec<usize>) {
    let mut kept = String::with_capacity(text.len());
    let mut cited: Vec<usize> = Vec::new();
    for piece in pieces(text) {
        match piece {
            Piece::Text(text) => kept.push_str(text),
            Piece::Cite(numbers) => {
                let valid: Vec<usize> = numbers
                    .into_iter()
                    .filter(|number| (1..=listed).contains(number))
                    .collect();
                if valid.is_empty() {
                    let trimmed = kept.trim_end().len();
                    kept.truncate(trimmed);
                    continue;
                }
                for number in valid {
                    let _ = write!(kept, "[{number}]");
                    if !cited.contains(&number) {
                        cited.push(number);
                    }
                }
            }
        }
    }
    (kept.trim().to_owned(), cited)
}

/// Words that say nothing about which conversation a sentence draws on.
const COMMON_WORDS: [&str; 24] = [
    "about",
    "account",
    "after",
    "again",
    "also",
    "asked",
    "because",
    "been",
    "customer",
    "customers",
    "from",
    "have",
    "into",
    "recent",
    "said",
    "team",
    "that",
    "their",
    "them",
    "they",
    "this",
    "were",
    "what",
    "with",
];

/// The content words of `text`: lower case, at least four letters or digits, not common.
fn content_words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| word.chars().count() >= 4)
        .map(str::to_lowercase)
        .filter(|word| !COMMON_WORDS.contains(&word.as_str()))
        .collect()
}

/// How many content words `sentence` shares with what the input says about `source` (its gist,
/// subject and topics).
fn overlap(sentence: &str, source: &Source) -> usize {
    let mut about = format!(
        "{} {}",
        source.gist(),
        source.topics.join(" ").replace('_', " ")
    );
    if let Some(subject) = &source.subject {
        about.push(' ');
        about.push_str(subject);
    }
    let known = content_words(&about);
    let mut words = content_words(sentence);
    words.sort_unstable();
    words.dedup();
    words.iter().filter(|word| known.contains(word)).count()
}

/// The sources (numbers) that support `sentence` best: those sharing the most content words with
/// it, at least one, two at most.
fn best_sources(sentence: &str, sources: &[Source]) -> Vec<usize> {
    let scores: Vec<usize> = sources
        .iter()
        .map(|source| overlap(sentence, source))
        .collect();
    let best = scores.iter().copied().max().unwrap_or(0);
    if best == 0 {
        return Vec::new();
    }
    scores
        .iter()
        .enumerate()
        .filter(|(_, score)| **score == best)
        .map(|(index, _)| index + 1)
        .take(2)
        .collect()
}

/// `text` (whose marks are all valid) with only the citations whose sentence the cited source
/// supports (shares a content word with it): a citation the model put on a sentence about
/// something else (a copy of the prompt's example, say) is dropped. A sentence left without a
/// citation gets those of the sources that support it best, if any does. Returns the text, the
/// numbers cited in the order first cited, and whether any citation was attributed so.
fn keep_supported_citations(text: &str, sources: &[Source]) -> (String, Vec<usize>, bool) {
    let mut kept = String::with_capacity(text.len());
    let mut sentence = String::new();
    let mut previous = String::new();
    let mut sentence_cited = false;
    let mut attributed = false;
    for piece in pieces(text) {
        match piece {
            Piece::Text(part) => {
                for c in part.chars() {
                    if matches!(c, '.' | '!' | '?') && !sentence_cited {
                        let found = best_sources(&sentence, sources);
                        attributed |= !found.is_empty();
                        let trimmed = kept.trim_end().len();
                        kept.truncate(trimmed);
                        for number in found {
                            let _ = write!(kept, " [{number}]");
                        }
                    }
                    kept.push(c);
                    sentence.push(c);
                    if matches!(c, '.' | '!' | '?') {
                        previous = std::mem::take(&mut sentence);
                        sentence_cited = false;
                    }
                }
            }
            Piece::Cite(numbers) => {
                // A mark right after a sentence's end cites that sentence.
                let about = if sentence.trim().is_empty() {
                    &previous
                } else {
                    sentence_cited = true;
                    &sentence
                };
                let supported: Vec<usize> = numbers
                    .into_iter()
                    .filter(|number| {
                        number
                            .checked_sub(1)
                            .and_then(|index| sources.get(index))
                            .is_some_and(|source| overlap(about, source) > 0)
                    })
                    .collect();
                if supported.is_empty() {
                    let trimmed = kept.trim_end().len();
                    kept.truncate(trimmed);
                }
                for number in supported {
                    let _ = write!(kept, "[{number}]");
                }
            }
        }
    }
    let (text, cited) = keep_valid_citations(&kept, sources.len());
    (text, cited, attributed)
}

/// Whether a model's text is mostly the prompt's example briefing (a small model may copy it).
fn copies_example(text: &str) -> bool {
    let example = content_words(EXAMPLE_BRIEFING);
    let words = content_words(text);
    let copied = words.iter().filter(|word| example.contains(word)).count();
    !words.is_empty() && copied * 2 >= words.len()
}

/// A model's text made safe to store: its first paragraph on one line, at most
/// [`MAX_BRIEFING_CHARS`] characters (cut at a word), with only the citations that refer to a
/// listed source and that the cited source supports, and citations attributed to the sentences
/// the model left without one (see [`keep_supported_citations`]; the last value says whether
/// any was).
pub fn clean(generated: &str, sources: &[Source]) -> (String, Vec<usize>, bool) {
    let paragraph = generated
        .trim_start()
        .split("\n\n")
        .next()
        .unwrap_or_default();
    // A model that goes on with the next example's header is cut there.
    let paragraph = paragraph.split("\nAccount:").next().unwrap_or_default();
    let mut flat = one_line(paragraph, MAX_BRIEFING_CHARS);
    if flat.ends_with('…') {
        // Cut at the last complete word, and never inside a citation mark.
        if let Some(space) = flat.rfind(' ') {
            flat.truncate(space);
        }
        if let Some(open) = flat.rfind('[') {
            if !flat[open..].contains(']') {
                flat.truncate(open);
            }
        }
        flat = format!("{}…", flat.trim_end());
    }
    let (valid, _) = keep_valid_citations(&flat, sources.len());
    keep_supported_citations(&valid, sources)
}

/// A piece of a briefing as the page shows it: text, or a citation (its number and the path of
/// the interaction it cites).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub text: String,
    pub link: Option<String>,
}

/// The briefing's text split into plain text and citations; each citation links to its
/// interaction under `base` (`/t/{slug}`). A mark that names no source stays plain text
/// (stored briefings hold none).
pub fn parts(briefing: &Briefing, base: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    for piece in pieces(&briefing.text) {
        match piece {
            Piece::Text(text) => parts.push(Part {
                text: text.to_owned(),
                link: None,
            }),
            Piece::Cite(numbers) => {
                for number in numbers {
                    let link = number
                        .checked_sub(1)
                        .and_then(|index| briefing.sources.get(index))
                        .map(|id| format!("{base}/interactions/{id}"));
                    parts.push(Part {
                        text: format!("[{number}]"),
                        link,
                    });
                }
            }
        }
    }
    parts
}

/// Writes the briefing of `input` with `backend`: extractive for `off` (and for an account
/// without conversations), else generated, falling back to the extractive text when the model
/// wrote nothing usable.
pub fn write(
    backend: &dyn Backend,
    input: &BriefingInput,
    version: DateTime<Utc>,
) -> Result<Analysis, InferenceError> {
    let started = Instant::now();
    let listed = input.sources.len();
    let (text, cited, analyzer) = if backend.kind() == BackendKind::Off || listed == 0 {
        let (text, cited) = keep_valid_citations(&extractive(input), listed);
        (text, cited, EXTRACTIVE_ANALYZER)
    } else {
        let generated = backend.generate(&prompt(input), BRIEFING_MAX_TOKENS)?;
        let (text, cited, attributed) = clean(&generated, &input.sources);
        if text.chars().filter(|c| c.is_alphanumeric()).count() < 3 || copies_example(&text) {
            let (text, cited) = keep_valid_citations(&extractive(input), listed);
            (text, cited, FALLBACK_ANALYZER)
        } else if attributed {
            (text, cited, ATTRIBUTED_ANALYZER)
        } else {
            (text, cited, GENERATION_ANALYZER)
        }
    };
    let sources: Vec<RecordId> = input.sources.iter().map(|source| source.id).collect();
    let cited = cited
        .into_iter()
        .filter_map(|number| sources.get(number - 1).copied())
        .collect();
    Ok(Analysis {
        interaction: input.account,
        result: AnalysisResult::Briefing(Briefing {
            text,
            sources,
            cited,
        }),
        provenance: Provenance {
            backend: backend.kind(),
            backend_description: backend.describe(),
            model: backend.model_id(),
            analyzer: analyzer.to_owned(),
            prompt_version: BRIEFING_PROMPT_VERSION,
            interaction_version: version,
            created: Utc::now(),
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            input_digest: input.digest.clone(),
        },
    })
}

/// The stored briefing of the account and its text, if there is one.
pub fn stored(
    context: &AppContext,
    tenant: TenantId,
    account: RecordId,
) -> Result<Option<(Analysis, Briefing)>, StoreError> {
    Ok(context
        .analysis
        .analysis(tenant, account, AnalysisKind::Briefing)?
        .and_then(|analysis| match &analysis.result {
            AnalysisResult::Briefing(briefing) => {
                let briefing = briefing.clone();
                Some((analysis, briefing))
            }
            _ => None,
        }))
}

/// Whether a briefing job of the account is queued or running.
pub fn pending(
    context: &AppContext,
    tenant: TenantId,
    account: RecordId,
) -> Result<bool, StoreError> {
    Ok(context.analysis.job(tenant, account)?.is_some_and(|job| {
        job.subject == JobSubject::Account
            && matches!(
                job.state,
                crate::analysis::jobs::JobState::Queued | crate::analysis::jobs::JobState::Running
            )
    }))
}

/// Queues the account's briefing job. `force` queues it even when one was done for the same
/// request (Regenerate).
pub fn enqueue(
    context: &AppContext,
    tenant: TenantId,
    account: RecordId,
    priority: Priority,
    force: bool,
) -> Result<usize, StoreError> {
    context.analysis.enqueue(
        tenant,
        &[(
            account,
            EnqueueRequest {
                subject: JobSubject::Account,
                version: Utc::now(),
                kinds: vec![AnalysisKind::Briefing],
                priority,
                force,
            },
        )],
    )
}

/// Whether an interaction of the input is still waiting for its analysis (queued or running):
/// a briefing written now would miss its summary, and its analysis ending queues the briefing
/// again (see [`refresh`]).
fn analyses_outstanding(
    context: &AppContext,
    tenant: TenantId,
    input: &BriefingInput,
) -> Result<bool, StoreError> {
    for source in &input.sources {
        if context.analysis.job(tenant, source.id)?.is_some_and(|job| {
            job.subject == JobSubject::Interaction
                && matches!(
                    job.state,
                    crate::analysis::jobs::JobState::Queued
                        | crate::analysis::jobs::JobState::Running
                )
        }) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// After health noticed that the account's data changed: queues its briefing (behind the
/// analyses already queued) when the input's digest differs from the stored briefing's and none
/// of its interactions is still waiting for its analysis (once they are analysed, health
/// recomputes the account and this runs again). Returns whether it queued one. Logged, never an
/// error.
pub fn refresh(context: &AppContext, tenant: TenantId, account: &Account) -> bool {
    let queued = (|| -> Result<bool, StoreError> {
        let input = input_for(context, tenant, account)?;
        let current = stored(context, tenant, account.id)?
            .is_some_and(|(analysis, _)| analysis.provenance.input_digest == input.digest);
        if current || analyses_outstanding(context, tenant, &input)? {
            return Ok(false);
        }
        Ok(enqueue(context, tenant, account.id, Priority::Backfill, false)? > 0)
    })();
    queued.unwrap_or_else(|error| {
        tracing::warn!(account = %account.id, %error, "account briefing not queued");
        false
    })
}

/// A person asks for the account's briefing to be written again (the Regenerate button): queued
/// ahead of backfills, and audited as `account.briefing_requested`.
pub fn request(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    tenant: TenantId,
    account: RecordId,
) -> Result<(), crate::analysis::AnalysisError> {
    if context.accounts.get(tenant, account)?.is_none() {
        return Err(crate::analysis::AnalysisError::NotFound(account));
    }
    enqueue(context, tenant, account, Priority::Live, true)?;
    context.audit(
        AuditEvent::new(
            Some(tenant),
            actor.clone(),
            AuditAction::BriefingRequested,
            format!("account {account}"),
        )
        .client(client),
    )?;
    Ok(())
}

fn failed(job: &Job, kind: JobErrorKind, retryable: bool) -> Finished {
    Finished {
        job: job.clone(),
        end: AttemptEnd::Failed { kind, retryable },
        analyses: Vec::new(),
    }
}

/// Runs the account jobs of one claimed batch: reads each account's input afresh and writes its
/// briefing. An account that is gone fails for good (and its briefing goes with it); one that
/// cannot be read or written fails alone (retryable).
pub fn run_jobs(
    context: &AppContext,
    backend: &dyn Backend,
    tenant: TenantId,
    claimed: &[Job],
    stop: &dyn Fn() -> bool,
) -> Vec<Finished> {
    let mut finished = Vec::with_capacity(claimed.len());
    for job in claimed {
        if stop() {
            finished.push(Finished {
                job: job.clone(),
                end: AttemptEnd::Released,
                analyses: Vec::new(),
            });
            continue;
        }
        finished.push(run_one(context, backend, tenant, job));
    }
    finished
}

fn run_one(context: &AppContext, backend: &dyn Backend, tenant: TenantId, job: &Job) -> Finished {
    let unreadable = |error: &dyn std::fmt::Display| {
        tracing::warn!(tenant = %tenant, account = %job.interaction, %error, "account briefing input could not be read");
        failed(job, JobErrorKind::Store, true)
    };
    let account = match context.accounts.get(tenant, job.interaction) {
        Ok(Some(account)) => account,
        Ok(None) => return failed(job, JobErrorKind::InteractionMissing, false),
        Err(error) => return unreadable(&error),
    };
    let input = match input_for(context, tenant, &account) {
        Ok(input) => input,
        Err(error) => return unreadable(&error),
    };
    match analyses_outstanding(context, tenant, &input) {
        // Written once they are analysed: health recomputes the account when the tenant's queue
        // drains, and that queues the briefing again (see `refresh`).
        Ok(true) => {
            return Finished {
                job: job.clone(),
                end: AttemptEnd::Done {
                    analysed_version: job.version,
                },
                analyses: Vec::new(),
            }
        }
        Ok(false) => {}
        Err(error) => return unreadable(&error),
    }
    if backend.kind() == BackendKind::Remote && !input.sources.is_empty() {
        // What is stored about the account's conversations is about to leave the appliance
        // (redacted by the remote backend): recorded first, and nothing is sent otherwise.
        let event = AuditEvent::new(
            Some(tenant),
            Actor::system(),
            AuditAction::AnalysisSentRemote,
            format!(
                "account {} briefing to {}",
                job.interaction,
                backend.describe()
            ),
        );
        if let Err(error) = context.audit(event) {
            return unreadable(&error);
        }
    }
    match write(backend, &input, input.version(account.updated)) {
        Ok(analysis) => Finished {
            job: job.clone(),
            end: AttemptEnd::Done {
                analysed_version: job.version,
            },
            analyses: vec![analysis],
        },
        Err(error) => {
            let kind = crate::analysis::AnalysisError::from(error).kind();
            tracing::warn!(account = %job.interaction, kind, "account briefing failed");
            failed(job, JobErrorKind::Inference, true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_citations_of_listed_numbers_are_kept() {
        let (text, cited) = keep_valid_citations(
            "Charged twice [2], later happy [1, 7]. Also [9] see [a note] and [0].",
            3,
        );
        assert_eq!(
            text,
            "Charged twice [2], later happy [1]. Also see [a note] and."
        );
        assert_eq!(cited, vec![2, 1]);
        let (text, cited) = keep_valid_citations("Nothing cited.", 3);
        assert_eq!((text.as_str(), cited.len()), ("Nothing cited.", 0));
        // Every mark invalid when nothing was listed.
        let (text, cited) = keep_valid_citations("See [1].", 0);
        assert_eq!((text.as_str(), cited.len()), ("See.", 0));
    }

    fn source(summary: &str) -> Source {
        Source {
            id: RecordId::new(),
            began: None,
            channel: "chat",
            subject: None,
            summary: Some(summary.to_owned()),
            sentiment: None,
            topics: vec!["billing_and_payment".to_owned()],
            updated: Utc::now(),
        }
    }

    #[test]
    fn a_model_text_is_cut_to_its_first_paragraph_and_never_inside_a_mark() {
        let sources = [source("First refund sentence."), source("Second.")];
        let (text, cited, attributed) = clean(
            " First [1] sentence.\nAccount: next example\n\nmore",
            &sources,
        );
        assert_eq!(text, "First [1] sentence.");
        assert_eq!(cited, vec![1]);
        assert!(!attributed);
        let long = format!("{} [1] [2", "word ".repeat(300));
        let (text, ..) = clean(&long, &sources);
        assert!(text.chars().count() <= MAX_BRIEFING_CHARS);
        assert!(!text.contains("[2"), "{text}");
    }

    #[test]
    fn a_citation_on_a_sentence_its_source_does_not_support_is_dropped() {
        let sources = [
            source("The customer was charged twice and wants a refund."),
            source("The customer praised the new dashboard."),
        ];
        // [2] is put on the refund sentence, [1] after the sentence's end on the same sentence,
        // [2] on the dashboard sentence; a billing topic supports [1] too; the last sentence
        // has no citation and gets the dashboard's.
        let (text, cited, attributed) = clean(
            "They were charged twice [2]. [1] The dashboard pleases them [2]. Payment matters [1]. A new dashboard!",
            &sources,
        );
        assert_eq!(
            text,
            "They were charged twice. [1] The dashboard pleases them [2]. Payment matters [1]. A new dashboard [2]!"
        );
        assert_eq!(cited, vec![1, 2]);
        assert!(attributed);
        assert!(copies_example(EXAMPLE_BRIEFING));
        assert!(!copies_example(&text));
    }

    #[test]
    fn parts_link_each_citation_to_its_source() {
        let first = RecordId::new();
        let second = RecordId::new();
        let briefing = Briefing {
            text: "Refund asked [2][1]. <b>x</b>".to_owned(),
            sources: vec![first, second],
            cited: vec![second, first],
        };
        let parts = parts(&briefing, "/t/acme");
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[0].text, "Refund asked ");
        assert_eq!(
            parts[1].link.as_deref(),
            Some(format!("/t/acme/interactions/{second}").as_str())
        );
        assert_eq!(parts[1].text, "[2]");
        assert_eq!(
            parts[2].link.as_deref(),
            Some(format!("/t/acme/interactions/{first}").as_str())
        );
        assert_eq!(parts[3].link, None);
    }
}
