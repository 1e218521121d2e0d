//! What the account page shows besides the account, its contacts and timeline: the account's
//! open alerts and the QA and sentiment of its conversations. Both read only what the page has
//! already gathered (its timeline, at most [`crate::accounts::query::TIMELINE_LIMIT`] entries),
//! the account's aggregated sums and keyed lookups, so a page load stays bounded.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::accounts::query::{account_keys, TimelineEntry};
use crate::accounts::Account;
use crate::alerts::{Alert, AlertKind, AlertStore};
use crate::analysis::AnalysisResult;
use crate::context::AppContext;
use crate::health::ChurnRule;
use crate::ids::{RecordId, TenantId};
use crate::insights::account_sums;
use crate::insights::InsightsStore;
use crate::qa::store::QaStore;
use crate::signals::Signal;
use crate::store::StoreError;

/// The account's alerts that are not resolved: its churn-risk alerts (one lookup per rule) and
/// the negative-review alerts of the review signals in its timeline. Newest first.
pub fn open_alerts(
    context: &AppContext,
    tenant: TenantId,
    account: RecordId,
    timeline: &[TimelineEntry],
) -> Result<Vec<Alert>, StoreError> {
    let store = AlertStore::new(context.store.clone());
    let mut found = Vec::new();
    for rule in ChurnRule::ALL {
        if let Some(alert) = store.current_for(tenant, AlertKind::ChurnRisk(rule), account)? {
            found.push(alert);
        }
    }
    for entry in timeline {
        if let TimelineEntry::Signal(signal) = entry {
            if matches!(signal.record.signal, Signal::Review { .. }) {
                if let Some(alert) =
                    store.current_for(tenant, AlertKind::NegativeReview, signal.id)?
                {
                    found.push(alert);
                }
            }
        }
    }
    found.retain(|alert| !alert.is_resolved());
    found.sort_by_key(|alert| std::cmp::Reverse(alert.created));
    Ok(found)
}

/// One analysed conversation of the account.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoredConversation {
    pub interaction: RecordId,
    pub subject: Option<String>,
    pub began: Option<DateTime<Utc>>,
    /// The effective overall QA score (overrides applied); `None` when not scored or no
    /// criterion applied.
    pub qa: Option<f32>,
    pub auto_fail: bool,
    pub sentiment: Option<String>,
}

/// QA and sentiment of the account's conversations.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QaSentiment {
    /// The account's interactions counted (all of them, from the aggregates).
    pub interactions: usize,
    /// Sentiment label → how many of them have it.
    pub sentiment: BTreeMap<String, usize>,
    /// Interactions with an overall QA score.
    pub scored: usize,
    /// The mean of their effective overall scores.
    pub mean_qa: Option<f64>,
    /// The newest interactions with a QA score or a sentiment, newest first, at most
    /// [`LATEST_SHOWN`], among the newest [`LATEST_LOOKED_AT`] of the timeline.
    pub latest: Vec<ScoredConversation>,
}

/// Analysed conversations the page lists at most.
pub const LATEST_SHOWN: usize = 10;
/// Timeline interactions whose analyses are opened, at most, to find them.
pub const LATEST_LOOKED_AT: usize = 3 * LATEST_SHOWN;

/// QA and sentiment of the account's conversations: the counts and mean of all of them from the
/// account's sums (`insights::account_sums`, kept as analyses finish), and the newest analysed
/// ones from the stored analyses and QA overrides of the newest interactions in `timeline`
/// (newest first). A page load opens a bounded number of records, however many conversations
/// the account has.
pub fn qa_sentiment(
    context: &AppContext,
    tenant: TenantId,
    account: &Account,
    timeline: &[TimelineEntry],
) -> Result<QaSentiment, StoreError> {
    let sums = account_sums::of_account(
        &InsightsStore::new(context.store.clone()),
        tenant,
        &account_keys(account),
    )?;
    let count = |value: i64| usize::try_from(value).unwrap_or(0);
    let mut summary = QaSentiment {
        interactions: count(sums.interactions),
        sentiment: sums
            .sentiment
            .iter()
            .map(|(label, number)| (label.clone(), count(*number)))
            .collect(),
        scored: count(sums.qa_scored),
        mean_qa: sums.mean_qa(),
        latest: Vec::new(),
    };
    let overrides = QaStore::new(context.store.clone());
    let interactions = timeline.iter().filter_map(|entry| match entry {
        TimelineEntry::Interaction(interaction) => Some((entry, interaction)),
        TimelineEntry::Signal(_) => None,
    });
    for (entry, interaction) in interactions.take(LATEST_LOOKED_AT) {
        if summary.latest.len() == LATEST_SHOWN {
            break;
        }
        let mut conversation = ScoredConversation {
            interaction: interaction.id,
            subject: interaction.record.subject.clone(),
            began: entry.time(),
            qa: None,
            auto_fail: false,
            sentiment: None,
        };
        for analysis in context.analysis.reviewed(tenant, interaction.id)? {
            match &analysis.result {
                AnalysisResult::Sentiment { overall, .. } => {
                    conversation.sentiment = Some(overall.label.to_lowercase());
                }
                AnalysisResult::Qa(result) => {
                    let effective = crate::qa::effective_overall(
                        result,
                        &overrides.overrides(tenant, interaction.id)?,
                    );
                    conversation.auto_fail = effective.auto_fail;
                    conversation.qa = effective.score;
                }
                _ => {}
            }
        }
        if conversation.qa.is_some() || conversation.sentiment.is_some() {
            summary.latest.push(conversation);
        }
    }
    Ok(summary)
}
