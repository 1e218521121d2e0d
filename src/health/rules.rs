//! The churn-risk rules: each one's settings with defaults, and its evaluation as a pure function
//! of the new snapshot, the account's earlier snapshots and the facts. [`super::recompute`]
//! evaluates them after every recompute and raises one alert per firing rule and account.

use chrono::{Duration, NaiveDate};
use serde::{Deserialize, Serialize};

use super::score::Band;
use super::Snapshot;

/// The churn-risk rules a tenant can switch on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChurnRule {
    ScoreDrop,
    BandToRed,
    NegativeEvent,
    RenewalWhileRed,
    UsageDrop,
}

impl ChurnRule {
    pub const ALL: [ChurnRule; 5] = [
        ChurnRule::ScoreDrop,
        ChurnRule::BandToRed,
        ChurnRule::NegativeEvent,
        ChurnRule::RenewalWhileRed,
        ChurnRule::UsageDrop,
    ];

    /// The stable name; alerts of each rule are kept apart by it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ScoreDrop => "churn_risk.score_drop",
            Self::BandToRed => "churn_risk.band_to_red",
            Self::NegativeEvent => "churn_risk.negative_event",
            Self::RenewalWhileRed => "churn_risk.renewal_while_red",
            Self::UsageDrop => "churn_risk.usage_drop",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::ScoreDrop => "Health score dropped",
            Self::BandToRed => "Health band turned red",
            Self::NegativeEvent => "Negative review or escalation",
            Self::RenewalWhileRed => "Renewal near while red",
            Self::UsageDrop => "Product usage dropped",
        }
    }
}

/// Each rule on or off with its parameters.
// One switch per rule, as the settings form shows them.
#[allow(clippy::struct_excessive_bools)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChurnRules {
    /// A drop of at least `drop_points` against any snapshot of the last `drop_days` days.
    pub score_drop: bool,
    pub drop_points: u32,
    pub drop_days: u32,
    /// The band is red now and was not at the previous day's snapshot.
    pub band_to_red: bool,
    /// A review rated 2 or less, or an escalated interaction, in the last `negative_days` days.
    pub negative_event: bool,
    pub negative_days: u32,
    /// Red, and the renewal is at most `renewal_days` days away.
    pub renewal_while_red: bool,
    pub renewal_days: u32,
    /// The last 30 days' usage is at least `usage_drop_percent` % below the last 90 days'.
    pub usage_drop: bool,
    pub usage_drop_percent: u32,
}

impl Default for ChurnRules {
    fn default() -> Self {
        Self {
            score_drop: true,
            drop_points: 15,
            drop_days: 30,
            band_to_red: true,
            negative_event: true,
            negative_days: 30,
            renewal_while_red: true,
            renewal_days: 60,
            usage_drop: true,
            usage_drop_percent: 30,
        }
    }
}

/// The highest number of days or points a rule parameter may have.
pub const MAX_PARAMETER: u32 = 365;

/// Score drop: the current score is at least `points` below a score of a snapshot taken in the
/// `days` days before `today` (today's own snapshot is the current one, so it is not compared).
pub fn score_drop(
    points: u32,
    days: u32,
    current: Option<f64>,
    history: &[(NaiveDate, Option<f64>)],
    today: NaiveDate,
) -> bool {
    let Some(current) = current else {
        return false;
    };
    let since = today - Duration::days(i64::from(days));
    history.iter().any(|(day, score)| {
        *day >= since
            && *day < today
            && score.is_some_and(|before| before - current >= f64::from(points))
    })
}

/// Band to red: red now, and the previous snapshot was not red (or there was none).
pub fn band_to_red(previous: Option<Band>, current: Option<Band>) -> bool {
    current == Some(Band::Red) && previous != Some(Band::Red)
}

/// Negative event: at least one negative review or escalation in the rule's window.
pub fn negative_event(events: u32) -> bool {
    events > 0
}

/// Renewal while red: red, and the renewal date is today or at most `days` days away.
pub fn renewal_while_red(days: u32, days_to_renewal: Option<i64>, current: Option<Band>) -> bool {
    current == Some(Band::Red)
        && days_to_renewal.is_some_and(|left| (0..=i64::from(days)).contains(&left))
}

/// Usage drop: the last 30 days' mean usage is at least `percent` % below the last 90 days'.
/// Without both means (or with a 90-day mean of 0) it does not fire.
pub fn usage_drop(percent: u32, usage_30: Option<f64>, usage_90: Option<f64>) -> bool {
    match (usage_30, usage_90) {
        (Some(recent), Some(longer)) if longer > 0.0 => {
            100.0 * (1.0 - recent / longer) >= f64::from(percent)
        }
        _ => false,
    }
}

/// The rules that fire for `current`, given the account's earlier snapshots (oldest first, days
/// before `current.day`).
pub fn evaluate(rules: &ChurnRules, current: &Snapshot, earlier: &[Snapshot]) -> Vec<ChurnRule> {
    let history: Vec<(NaiveDate, Option<f64>)> = earlier
        .iter()
        .map(|snapshot| (snapshot.day, snapshot.score))
        .collect();
    let previous = earlier.last().and_then(|snapshot| snapshot.band);
    let facts = &current.facts;
    let mut fired = Vec::new();
    if rules.score_drop
        && score_drop(
            rules.drop_points,
            rules.drop_days,
            current.score,
            &history,
            current.day,
        )
    {
        fired.push(ChurnRule::ScoreDrop);
    }
    if rules.band_to_red && band_to_red(previous, current.band) {
        fired.push(ChurnRule::BandToRed);
    }
    if rules.negative_event && negative_event(facts.negative_events) {
        fired.push(ChurnRule::NegativeEvent);
    }
    if rules.renewal_while_red
        && renewal_while_red(rules.renewal_days, facts.days_to_renewal, current.band)
    {
        fired.push(ChurnRule::RenewalWhileRed);
    }
    if rules.usage_drop && usage_drop(rules.usage_drop_percent, facts.usage_30, facts.usage_90) {
        fired.push(ChurnRule::UsageDrop);
    }
    fired
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::score::{Explanation, Facts};
    use crate::ids::RecordId;

    fn day(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    #[test]
    fn score_drop_fires_exactly_at_n_points_within_d_days() {
        let today = day("2026-03-31");
        let history = [
            (day("2026-02-28"), Some(90.0)), // 31 days ago: outside 30 days
            (day("2026-03-01"), Some(80.0)), // 30 days ago: inside
            (day("2026-03-30"), None),
        ];
        assert!(score_drop(15, 30, Some(65.0), &history, today));
        assert!(!score_drop(15, 30, Some(65.1), &history, today));
        assert!(!score_drop(15, 29, Some(60.0), &history, today));
        assert!(!score_drop(15, 30, None, &history, today));
        // Today's own (replaced) snapshot does not count.
        assert!(!score_drop(
            15,
            30,
            Some(10.0),
            &[(today, Some(90.0))],
            today
        ));
    }

    #[test]
    fn band_to_red_fires_only_on_entering_red() {
        assert!(band_to_red(Some(Band::Amber), Some(Band::Red)));
        assert!(band_to_red(Some(Band::Green), Some(Band::Red)));
        assert!(band_to_red(None, Some(Band::Red)));
        assert!(!band_to_red(Some(Band::Red), Some(Band::Red)));
        assert!(!band_to_red(Some(Band::Green), Some(Band::Amber)));
        assert!(!band_to_red(Some(Band::Amber), None));
    }

    #[test]
    fn negative_event_fires_on_any_event_in_the_window() {
        assert!(negative_event(1));
        assert!(negative_event(3));
        assert!(!negative_event(0));
    }

    #[test]
    fn renewal_while_red_needs_both() {
        assert!(renewal_while_red(60, Some(60), Some(Band::Red)));
        assert!(renewal_while_red(60, Some(0), Some(Band::Red)));
        assert!(!renewal_while_red(60, Some(61), Some(Band::Red)));
        assert!(!renewal_while_red(60, Some(-1), Some(Band::Red)));
        assert!(!renewal_while_red(60, Some(10), Some(Band::Amber)));
        assert!(!renewal_while_red(60, None, Some(Band::Red)));
    }

    #[test]
    fn usage_drop_fires_at_x_percent() {
        assert!(usage_drop(30, Some(70.0), Some(100.0)));
        assert!(!usage_drop(30, Some(70.1), Some(100.0)));
        assert!(!usage_drop(30, Some(120.0), Some(100.0)));
        assert!(!usage_drop(30, None, Some(100.0)));
        assert!(!usage_drop(30, Some(0.0), Some(0.0)));
    }

    fn snapshot(day_text: &str, score: Option<f64>, band: Option<Band>, facts: Facts) -> Snapshot {
        Snapshot {
            account: RecordId::new(),
            day: day(day_text),
            computed: chrono::Utc::now(),
            score,
            band,
            values: Vec::new(),
            explanation: Explanation::default(),
            facts,
        }
    }

    #[test]
    fn evaluate_applies_only_the_rules_that_are_on() {
        let earlier = [snapshot(
            "2026-03-30",
            Some(75.0),
            Some(Band::Green),
            Facts::default(),
        )];
        let facts = Facts {
            negative_events: 1,
            days_to_renewal: Some(20),
            usage_30: Some(10.0),
            usage_90: Some(100.0),
            ..Facts::default()
        };
        let current = snapshot("2026-03-31", Some(30.0), Some(Band::Red), facts);
        let all = evaluate(&ChurnRules::default(), &current, &earlier);
        assert_eq!(all, ChurnRule::ALL.to_vec());
        let none = ChurnRules {
            score_drop: false,
            band_to_red: false,
            negative_event: false,
            renewal_while_red: false,
            usage_drop: false,
            ..ChurnRules::default()
        };
        assert!(evaluate(&none, &current, &earlier).is_empty());
        let calm = snapshot(
            "2026-03-31",
            Some(74.0),
            Some(Band::Green),
            Facts::default(),
        );
        assert!(evaluate(&ChurnRules::default(), &calm, &earlier).is_empty());
    }
}
