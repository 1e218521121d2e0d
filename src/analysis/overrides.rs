//! Human review of the classifications: a QA lead overrides an interaction's sentiment or its
//! topics, with a comment. The AI's analysis stays stored as it was; the override is kept beside
//! it in its own log, and every report reads the **effective** result
//! ([`crate::analysis::store::AnalysisStore::reviewed`]): the AI's, with the latest override of
//! each kind applied. This is the label counterpart of the QA scorecard's criterion overrides
//! ([`crate::qa::override_criterion`]).
//!
//! `label_overrides` (tenant scope): interaction id → every [`LabelOverride`], oldest first,
//! sealed under the interaction's subject key like the analyses, and removed with them
//! ([`stage_removal`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::analysis::{Analysis, AnalysisKind, AnalysisResult, LabelProbability};
use crate::audit::{Actor, AuditAction, AuditEvent};
use crate::context::AppContext;
use crate::ids::{RecordId, TenantId};
use crate::qa::QaError;
use crate::store::{Collection, Scope, Store, StoreError, WriteSet};

/// What a label override replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelTarget {
    /// The interaction's overall sentiment (per-message sentiments stay the AI's).
    Sentiment,
    /// The interaction's topic labels.
    Topics,
}

impl LabelTarget {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sentiment => "sentiment",
            Self::Topics => "topics",
        }
    }

    fn kind(self) -> AnalysisKind {
        match self {
            Self::Sentiment => AnalysisKind::Sentiment,
            Self::Topics => AnalysisKind::Topics,
        }
    }
}

/// A QA lead's labels for one analysis of one interaction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelOverride {
    pub target: LabelTarget,
    /// One sentiment label, or one or more topics of the tenant's list.
    pub labels: Vec<String>,
    pub comment: String,
    /// Who overrode it, as the audit log names them.
    pub by: String,
    pub at: DateTime<Utc>,
}

/// The override that counts for `target`: the latest one.
pub fn latest(overrides: &[LabelOverride], target: LabelTarget) -> Option<&LabelOverride> {
    overrides.iter().rev().find(|entry| entry.target == target)
}

/// Applies the latest override of each target to `analysis`, which becomes the effective one.
/// A sentiment override is certain: its label gets probability 1 and the others 0, so the
/// sentiment value the reports average is +1, 0 or −1. A topics override replaces the chosen
/// labels; the AI's probabilities stay (they are what the model thought).
pub fn apply(analysis: &mut Analysis, overrides: &[LabelOverride]) {
    match &mut analysis.result {
        AnalysisResult::Sentiment { overall, .. } => {
            let Some(entry) = latest(overrides, LabelTarget::Sentiment) else {
                return;
            };
            let Some(label) = entry.labels.first() else {
                return;
            };
            overall.label.clone_from(label);
            overall.confidence = 1.0;
            for scored in &mut overall.probabilities {
                scored.probability = if scored.label.eq_ignore_ascii_case(label) {
                    1.0
                } else {
                    0.0
                };
            }
            if !overall
                .probabilities
                .iter()
                .any(|scored| scored.label.eq_ignore_ascii_case(label))
            {
                overall.probabilities.push(LabelProbability {
                    label: label.clone(),
                    probability: 1.0,
                });
            }
        }
        AnalysisResult::Topics { labels, .. } => {
            if let Some(entry) = latest(overrides, LabelTarget::Topics) {
                labels.clone_from(&entry.labels);
            }
        }
        _ => {}
    }
}

/// A QA lead's override as typed: the labels chosen in the form.
#[derive(Clone, Debug)]
pub struct LabelOverrideInput {
    pub target: LabelTarget,
    pub labels: Vec<String>,
    pub comment: String,
}

/// Stores a QA lead's labels beside the AI's analysis and audits it (`analysis.label_overridden`,
/// naming the interaction and the target, never the labels' text beyond the tenant's own list).
/// The interaction must have the analysis; sentiment takes exactly one of
/// [`crate::inference::SENTIMENT_LABELS`], topics one or more of the tenant's topics.
pub fn override_labels(
    context: &AppContext,
    actor: &Actor,
    client: Option<String>,
    tenant: TenantId,
    interaction: RecordId,
    input: &LabelOverrideInput,
) -> Result<LabelOverride, QaError> {
    let analysis = context
        .analysis
        .analysis(tenant, interaction, input.target.kind())?
        .ok_or_else(|| {
            QaError::Invalid(format!(
                "{}: this interaction has no {} analysis to override yet",
                input.target.as_str(),
                input.target.as_str()
            ))
        })?;
    let labels = checked_labels(context, tenant, input)?;
    let comment = crate::qa::checked_comment(&input.comment)?;
    // What counted until now: the latest override of the target, else the AI's labels.
    let logs = LabelOverrides::new(context.store.clone());
    let before = match latest(&logs.overrides(tenant, interaction)?, input.target) {
        Some(entry) => entry.labels.clone(),
        None => match &analysis.result {
            AnalysisResult::Sentiment { overall, .. } => vec![overall.label.clone()],
            AnalysisResult::Topics { labels, .. } => labels.clone(),
            _ => Vec::new(),
        },
    };
    let entry = LabelOverride {
        target: input.target,
        labels,
        comment: comment.to_owned(),
        by: actor.label.clone(),
        at: Utc::now(),
    };
    logs.add(tenant, interaction, entry.clone())?;
    after_override(
        context,
        AuditEvent::new(
            Some(tenant),
            actor.clone(),
            AuditAction::AnalysisLabelOverridden,
            format!(
                "interaction {interaction} {}: {} → {}",
                input.target.as_str(),
                before.join(", "),
                entry.labels.join(", ")
            ),
        )
        .client(client),
        interaction,
    )?;
    Ok(entry)
}

/// After a person's override of interaction `interaction`'s analysis is stored (a label here, a
/// QA criterion in `qa::override_criterion`): the dashboard aggregates follow, and `event` is
/// audited.
pub(crate) fn after_override(
    context: &AppContext,
    event: AuditEvent,
    interaction: RecordId,
) -> Result<(), crate::audit::AuditError> {
    if let Some(tenant) = event.tenant {
        crate::insights::refresh_logged(
            context,
            tenant,
            crate::records::RecordKind::Interaction,
            &[interaction],
        );
    }
    context.audit(event)?;
    Ok(())
}

/// Appends to interaction `interaction`'s entry in `logs` (a log of overrides: the QA
/// criteria's in `qa::store`, the labels' here), read and written under the tenant scope's lock
/// so that two overrides at once both stay, and sealed under the interaction's subject key like
/// the analyses it overrides.
pub(crate) fn append_to_log<L>(
    store: &Store,
    tenant: TenantId,
    logs: &Collection<RecordId, L>,
    interaction: RecordId,
    push: impl FnOnce(&mut L),
) -> Result<(), StoreError>
where
    L: Default + Serialize + serde::de::DeserializeOwned,
{
    store.lock_scope(Scope::Tenant(tenant)).run(|| {
        let mut log = logs.get(&interaction)?.unwrap_or_default();
        push(&mut log);
        let subject = crate::records::subject_key_of(store, tenant, interaction)?;
        let mut writes = WriteSet::default();
        writes.put_under(logs, &interaction, &log, subject)?;
        store.commit(writes)
    })
}

/// The input's labels, trimmed and checked against the labels the target allows.
fn checked_labels(
    context: &AppContext,
    tenant: TenantId,
    input: &LabelOverrideInput,
) -> Result<Vec<String>, QaError> {
    let mut labels: Vec<String> = Vec::new();
    for label in input.labels.iter().map(|label| label.trim()) {
        if !label.is_empty() && !labels.iter().any(|kept| kept == label) {
            labels.push(label.to_owned());
        }
    }
    match input.target {
        LabelTarget::Sentiment => match labels.as_slice() {
            [label] if crate::inference::SENTIMENT_LABELS.contains(&label.as_str()) => Ok(labels),
            _ => Err(QaError::Invalid(format!(
                "sentiment: choose one of {}",
                crate::inference::SENTIMENT_LABELS.join(", ")
            ))),
        },
        LabelTarget::Topics => {
            if labels.is_empty() {
                return Err(QaError::Invalid(
                    "topics: choose at least one topic".to_owned(),
                ));
            }
            let allowed = context.analysis.topics(tenant)?;
            if let Some(unknown) = labels
                .iter()
                .position(|label| !allowed.as_slice().contains(label))
            {
                return Err(QaError::Invalid(format!(
                    "topics: choice {} is not one of the tenant's topics",
                    unknown + 1
                )));
            }
            Ok(labels)
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct LabelOverrideLog {
    entries: Vec<LabelOverride>,
}

/// The label-override logs of every tenant. Cheap to make: it holds only the store handle.
#[derive(Clone)]
pub struct LabelOverrides {
    store: Store,
}

impl std::fmt::Debug for LabelOverrides {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("LabelOverrides")
    }
}

impl LabelOverrides {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    fn logs(&self, tenant: TenantId) -> Result<Collection<RecordId, LabelOverrideLog>, StoreError> {
        self.store
            .collection(Scope::Tenant(tenant), "label_overrides")
    }

    /// Every label override of the interaction, oldest first.
    pub fn overrides(
        &self,
        tenant: TenantId,
        interaction: RecordId,
    ) -> Result<Vec<LabelOverride>, StoreError> {
        Ok(self
            .logs(tenant)?
            .get(&interaction)?
            .map(|log| log.entries)
            .unwrap_or_default())
    }

    /// Adds an override to the interaction's log (earlier ones are kept).
    pub fn add(
        &self,
        tenant: TenantId,
        interaction: RecordId,
        entry: LabelOverride,
    ) -> Result<(), StoreError> {
        append_to_log(
            &self.store,
            tenant,
            &self.logs(tenant)?,
            interaction,
            |log: &mut LabelOverrideLog| log.entries.push(entry),
        )
    }
}

/// Stages the removal of everything people decided about an interaction's analyses — the QA
/// criterion overrides and the label overrides — into `writes`, for the commit that removes the
/// interaction or its analyses. The one place both removal paths (`records::delete` and the
/// analysis worker's "interaction missing") go through.
pub fn stage_removal(
    store: &Store,
    tenant: TenantId,
    interaction: RecordId,
    writes: &mut WriteSet,
) -> Result<(), StoreError> {
    crate::qa::store::QaStore::new(store.clone()).stage_removal(tenant, interaction, writes)?;
    writes.remove(
        &LabelOverrides::new(store.clone()).logs(tenant)?,
        &interaction,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{LabelScores, Provenance};
    use crate::inference::BackendKind;

    fn provenance() -> Provenance {
        Provenance {
            backend: BackendKind::Off,
            backend_description: "off".to_owned(),
            model: "lexicon".to_owned(),
            analyzer: "lexicon".to_owned(),
            prompt_version: 1,
            interaction_version: Utc::now(),
            created: Utc::now(),
            duration_ms: 0,
            input_digest: String::new(),
        }
    }

    fn sentiment(label: &str, positive: f32, neutral: f32, negative: f32) -> Analysis {
        let probability = |label: &str, probability| LabelProbability {
            label: label.to_owned(),
            probability,
        };
        Analysis {
            interaction: RecordId::new(),
            result: AnalysisResult::Sentiment {
                overall: LabelScores {
                    label: label.to_owned(),
                    confidence: positive.max(neutral).max(negative),
                    probabilities: vec![
                        probability("positive", positive),
                        probability("neutral", neutral),
                        probability("negative", negative),
                    ],
                },
                messages: Vec::new(),
            },
            provenance: provenance(),
        }
    }

    fn entry(target: LabelTarget, labels: &[&str], minute: u32) -> LabelOverride {
        LabelOverride {
            target,
            labels: labels.iter().map(|label| (*label).to_owned()).collect(),
            comment: "checked".to_owned(),
            by: "lead".to_owned(),
            at: chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 11, 1, 9, minute, 0).unwrap(),
        }
    }

    #[test]
    fn the_latest_sentiment_override_counts_and_makes_the_value_certain() {
        let ai = sentiment("positive", 0.7, 0.2, 0.1);
        let overrides = [
            entry(LabelTarget::Sentiment, &["neutral"], 1),
            entry(LabelTarget::Topics, &["billing"], 2),
            entry(LabelTarget::Sentiment, &["negative"], 3),
        ];
        let mut effective = ai.clone();
        apply(&mut effective, &overrides);
        let AnalysisResult::Sentiment { overall, .. } = &effective.result else {
            panic!("still a sentiment analysis");
        };
        assert_eq!(overall.label, "negative");
        assert!((overall.confidence - 1.0).abs() < f32::EPSILON);
        assert_eq!(
            crate::health::sentiment_value(&effective.result),
            Some(-1.0)
        );
        // Without a sentiment override nothing changes.
        let mut untouched = ai.clone();
        apply(&mut untouched, &overrides[1..2]);
        assert_eq!(untouched, ai);
    }

    #[test]
    fn a_topics_override_replaces_the_chosen_labels_and_keeps_the_probabilities() {
        let probabilities = vec![LabelProbability {
            label: "billing".to_owned(),
            probability: 0.9,
        }];
        let ai = Analysis {
            interaction: RecordId::new(),
            result: AnalysisResult::Topics {
                labels: vec!["billing".to_owned()],
                probabilities: probabilities.clone(),
            },
            provenance: provenance(),
        };
        let mut effective = ai.clone();
        apply(
            &mut effective,
            &[entry(
                LabelTarget::Topics,
                &["refund_request", "complaint"],
                1,
            )],
        );
        assert_eq!(
            effective.result,
            AnalysisResult::Topics {
                labels: vec!["refund_request".to_owned(), "complaint".to_owned()],
                probabilities,
            }
        );
        // A sentiment override does not touch topics.
        let mut untouched = ai.clone();
        apply(
            &mut untouched,
            &[entry(LabelTarget::Sentiment, &["negative"], 1)],
        );
        assert_eq!(untouched, ai);
    }
}
