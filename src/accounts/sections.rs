//! What the account page shows besides the account, its contacts and timeline: the account's
//! open alerts and the QA and sentiment of its conversations. Both read only what the page has
//! already gathered (its timeline, at most [`crate::accounts::query::TIMELINE_LIMIT`] entries) and
//! keyed lookups, so a page load stays bounded.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::accounts::query::TimelineEntry;
use crate::alerts::{Alert, AlertKind, AlertStore};
use crate::analysis::AnalysisResult;
use crate::context::AppContext;
use crate::health::ChurnRule;
use crate::ids::{RecordId, TenantId};
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
    /// Interactions looked at (those in the page's timeline).
    pub interactions: usize,
    /// Sentiment label → how many of them have it.
    pub sentiment: BTreeMap<String, usize>,
    /// Interactions with an overall QA score.
    pub scored: usize,
    /// The mean of their effective overall scores.
    pub mean_qa: Option<f64>,
    /// The newest interactions with a QA score or a sentiment, newest first, at most
    /// [`LATEST_SHOWN`].
    pub latest: Vec<ScoredConversation>,
}

/// Analysed conversations the page lists at most.
pub const LATEST_SHOWN: usize = 10;

/// QA and sentiment of the interactions in `timeline` (newest first), from their stored
/// analyses and QA overrides.
pub fn qa_sentiment(
    context: &AppContext,
    tenant: TenantId,
    timeline: &[TimelineEntry],
) -> Result<QaSentiment, StoreError> {
    let overrides = QaStore::new(context.store.clone());
    let mut summary = QaSentiment::default();
    let mut total = 0.0;
    for entry in timeline {
        let TimelineEntry::Interaction(interaction) = entry else {
            continue;
        };
        summary.interactions += 1;
        let mut conversation = ScoredConversation {
            interaction: interaction.id,
            subject: interaction.record.subject.clone(),
            began: entry.time(),
            qa: None,
            auto_fail: false,
            sentiment: None,
        };
        for analysis in context.analysis.analyses(tenant, interaction.id)? {
            match &analysis.result {
                AnalysisResult::Sentiment { overall, .. } => {
                    *summary.sentiment.entry(overall.label.clone()).or_default() += 1;
                    conversation.sentiment = Some(overall.label.clone());
                }
                AnalysisResult::Qa(result) => {
                    let effective = crate::qa::effective_overall(
                        result,
                        &overrides.overrides(tenant, interaction.id)?,
                    );
                    conversation.auto_fail = effective.auto_fail;
                    if let Some(score) = effective.score {
                        summary.scored += 1;
                        total += f64::from(score);
                        conversation.qa = Some(score);
                    }
                }
                _ => {}
            }
        }
        if (conversation.qa.is_some() || conversation.sentiment.is_some())
            && summary.latest.len() < LATEST_SHOWN
        {
            summary.latest.push(conversation);
        }
    }
    #[allow(clippy::cast_precision_loss)] // at most a few hundred interactions
    if summary.scored > 0 {
        summary.mean_qa = Some(total / summary.scored as f64);
    }
    Ok(summary)
}
