//! Per account, the sentiment and QA of all its conversations: the account page's "QA and
//! sentiment" section reads one small record per name the account goes by (its source id and
//! its domain) instead of opening every interaction's analyses. Keyed by the keyed token of the
//! name as interactions give it (lower case), so account names stay out of keys.
//!
//! Maintained with the day buckets: [`stage`] applies the same contribution changes, so the sums
//! follow every refresh, deletion and rebuild.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::TenantId;
use crate::insights::{Contribution, InsightsStore};
use crate::store::{StoreError, WriteSet};

/// The sums of one account name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountSums {
    /// Interactions counted (those with a message time).
    pub interactions: i64,
    /// Sentiment label → interactions.
    pub sentiment: BTreeMap<String, i64>,
    /// Interactions with an effective overall QA score, and the sum of those scores in tenths.
    pub qa_scored: i64,
    pub qa_tenths: i64,
}

impl AccountSums {
    fn apply(&mut self, contribution: &Contribution, sign: i64) {
        let Contribution::Interaction(part) = contribution else {
            return;
        };
        self.interactions += sign;
        if let Some(sentiment) = &part.sentiment {
            super::bump(&mut self.sentiment, &sentiment.label, sign);
        }
        if let Some(tenths) = part.qa.as_ref().and_then(|qa| qa.overall_tenths) {
            self.qa_scored += sign;
            self.qa_tenths += sign * tenths;
        }
    }

    fn add(&mut self, other: &Self) {
        self.interactions += other.interactions;
        for (label, count) in &other.sentiment {
            *self.sentiment.entry(label.clone()).or_default() += count;
        }
        self.qa_scored += other.qa_scored;
        self.qa_tenths += other.qa_tenths;
    }

    fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The mean effective overall QA score (0–100), when any interaction was scored.
    #[allow(clippy::cast_precision_loss)] // sums far below 2^52
    pub fn mean_qa(&self) -> Option<f64> {
        (self.qa_scored > 0).then(|| self.qa_tenths as f64 / self.qa_scored as f64 / 10.0)
    }
}

/// Applies `changes` to the sums of the account names they touch (each read once).
pub(crate) fn stage(
    store: &InsightsStore,
    tenant: TenantId,
    writes: &mut WriteSet,
    changes: &[(Contribution, i64)],
) -> Result<(), StoreError> {
    let collection = store.account_sums(tenant)?;
    let updates = changes
        .iter()
        .filter_map(|(contribution, sign)| match contribution {
            Contribution::Interaction(part) if !part.account.is_empty() => {
                Some((collection.keyed_token(&part.account), (contribution, *sign)))
            }
            _ => None,
        });
    super::stage_touched(
        &collection,
        writes,
        updates,
        |sums: &mut AccountSums, (contribution, sign)| sums.apply(contribution, sign),
        AccountSums::is_empty,
    )
}

/// The sums of an account known by `names` (its source id and domain, any case).
pub fn of_account(
    store: &InsightsStore,
    tenant: TenantId,
    names: &[&str],
) -> Result<AccountSums, StoreError> {
    let collection = store.account_sums(tenant)?;
    let mut total = AccountSums::default();
    let mut seen = Vec::new();
    for name in names {
        let name = super::normalise(name);
        if name.is_empty() || seen.contains(&name) {
            continue;
        }
        if let Some(sums) = collection.get(&collection.keyed_token(&name))? {
            total.add(&sums);
        }
        seen.push(name);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insights::{InteractionContribution, QaPart, SentimentPart, QA_ALL};

    fn chat(label: &str, tenths: Option<i64>) -> Contribution {
        Contribution::Interaction(InteractionContribution {
            day: 739_000,
            channel: "chat".to_owned(),
            account: "a-1".to_owned(),
            sentiment: Some(SentimentPart {
                label: label.to_owned(),
                score_milli: 0,
            }),
            qa: Some(QaPart {
                groups: vec![QA_ALL.to_owned()],
                overall_tenths: tenths,
                criteria: Vec::new(),
            }),
            ..InteractionContribution::default()
        })
    }

    #[test]
    fn sums_add_and_take_away_exactly() {
        let mut sums = AccountSums::default();
        sums.apply(&chat("negative", Some(455)), 1);
        sums.apply(&chat("positive", Some(900)), 1);
        sums.apply(&chat("negative", None), 1);
        assert_eq!(sums.interactions, 3);
        assert_eq!(sums.sentiment.get("negative"), Some(&2));
        assert_eq!((sums.qa_scored, sums.qa_tenths), (2, 1355));
        assert_eq!(sums.mean_qa(), Some(67.75));
        for (label, tenths) in [("negative", Some(455)), ("positive", Some(900))] {
            sums.apply(&chat(label, tenths), -1);
        }
        sums.apply(&chat("negative", None), -1);
        assert!(sums.is_empty(), "{sums:?}");
        assert_eq!(sums.mean_qa(), None);
    }
}
