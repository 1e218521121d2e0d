//! The pure part of account health: the measures' normalisations to 0–100, the weighted score,
//! the bands and the explanation. Nothing here reads the store; [`super::recompute`] gathers the
//! [`Facts`] and calls these. The formulas are the ones the README's "Account health" section
//! documents; change both together.

use serde::{Deserialize, Serialize};

/// One measure of account health.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    Sentiment,
    TicketVolume,
    Qa,
    Surveys,
    Usage,
    Renewal,
    OpenBugs,
}

impl Measure {
    pub const ALL: [Measure; 7] = [
        Measure::Sentiment,
        Measure::TicketVolume,
        Measure::Qa,
        Measure::Surveys,
        Measure::Usage,
        Measure::Renewal,
        Measure::OpenBugs,
    ];

    /// The stable name (forms, the store).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sentiment => "sentiment",
            Self::TicketVolume => "ticket_volume",
            Self::Qa => "qa",
            Self::Surveys => "surveys",
            Self::Usage => "usage",
            Self::Renewal => "renewal",
            Self::OpenBugs => "open_bugs",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Sentiment => "Customer sentiment trend",
            Self::TicketVolume => "Ticket volume against baseline",
            Self::Qa => "QA score",
            Self::Surveys => "NPS and CSAT",
            Self::Usage => "Product-usage trend",
            Self::Renewal => "Days to renewal",
            Self::OpenBugs => "Open bug records",
        }
    }

    /// The default weight (they add up to 100).
    pub fn default_weight(self) -> u32 {
        match self {
            Self::Sentiment | Self::Surveys => 20,
            Self::Qa | Self::Usage => 15,
            Self::TicketVolume | Self::Renewal | Self::OpenBugs => 10,
        }
    }
}

/// What the measures are computed from: counts and means of one account's records, no content.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    /// Mean sentiment value (P(positive) − P(negative), −1 to 1) of the account's analysed
    /// interactions of the last 30 days, and of the last 90 days.
    pub sentiment_30: Option<f64>,
    pub sentiment_90: Option<f64>,
    /// Interactions that began in the last 30 days, and in the 150 days before those.
    pub tickets_30: u32,
    pub tickets_31_180: u32,
    /// QA overall scores (0–100, with QA leads' overrides) of the last 90 days' interactions.
    pub qa_scores: Vec<f64>,
    /// Survey answers of the last 90 days.
    pub nps: Vec<u8>,
    pub csat: Vec<u8>,
    /// Mean value of the usage records whose period ended in the last 30 days, and 90 days.
    pub usage_30: Option<f64>,
    pub usage_90: Option<f64>,
    /// Days from today to the renewal date (negative: past).
    pub days_to_renewal: Option<i64>,
    /// Bug records of the account, and how many of them are open.
    pub bugs: u32,
    pub open_bugs: u32,
    /// Reviews rated 2 or less and escalated interactions within the negative-event rule's days.
    pub negative_events: u32,
}

fn clamp(value: f64) -> f64 {
    value.clamp(0.0, 100.0)
}

/// The mean of the values, `None` for none.
pub fn mean(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let (sum, count) = values
        .into_iter()
        .fold((0.0, 0u32), |(sum, count), value| (sum + value, count + 1));
    (count > 0).then(|| sum / f64::from(count))
}

/// Sentiment trend: the level of the last 30 days plus its change against the last 90,
/// `50·(1 + s30) + 50·(s30 − s90)`, clamped to 0–100. No data without a 30-day value.
pub fn sentiment_trend(s30: Option<f64>, s90: Option<f64>) -> Option<f64> {
    let s30 = s30?;
    let s90 = s90.unwrap_or(s30);
    Some(clamp(50.0 * (1.0 + s30) + 50.0 * (s30 - s90)))
}

/// Ticket volume against the account's own baseline `b` (the mean per 30 days over days 31–180,
/// i.e. `earlier / 5`): 100 at or below the baseline, minus 50 for each baseline's worth above
/// it, `100 − 50·(n − b)/max(b, 1)`, clamped. No data when the account had no interaction in
/// 180 days.
pub fn ticket_volume(recent: u32, earlier: u32) -> Option<f64> {
    if recent == 0 && earlier == 0 {
        return None;
    }
    let baseline = f64::from(earlier) / 5.0;
    let recent = f64::from(recent);
    if recent <= baseline {
        return Some(100.0);
    }
    Some(clamp(
        100.0 - 50.0 * (recent - baseline) / baseline.max(1.0),
    ))
}

/// QA: the mean overall score (already 0–100). No data without a scored interaction.
pub fn qa(scores: &[f64]) -> Option<f64> {
    mean(scores.iter().copied()).map(clamp)
}

/// NPS and CSAT: each answer on 0–100 (NPS `10·n`, CSAT `25·(c − 1)`), then their mean.
pub fn surveys(nps: &[u8], csat: &[u8]) -> Option<f64> {
    let nps = nps.iter().map(|score| 10.0 * f64::from((*score).min(10)));
    let csat = csat
        .iter()
        .map(|score| 25.0 * (f64::from((*score).clamp(1, 5)) - 1.0));
    mean(nps.chain(csat))
}

/// Usage trend: `100·u30/u90`, clamped (steady or growing usage is 100). No data without both
/// means or when `u90` is 0.
pub fn usage_trend(u30: Option<f64>, u90: Option<f64>) -> Option<f64> {
    match (u30, u90) {
        (Some(u30), Some(u90)) if u90 > 0.0 => Some(clamp(100.0 * u30 / u90)),
        _ => None,
    }
}

/// Days to renewal: `100·d/90`, clamped (90 days or more away is 100). No data without a
/// renewal date or when it has passed.
pub fn renewal(days: Option<i64>) -> Option<f64> {
    let days = days.filter(|days| *days >= 0)?.min(90);
    let days = i32::try_from(days).unwrap_or(90);
    Some(clamp(100.0 * f64::from(days) / 90.0))
}

/// Open bugs: `100 − 20·open`, at least 0. No data when the account has no bug record.
pub fn open_bugs(total: u32, open: u32) -> Option<f64> {
    (total > 0).then(|| clamp(100.0 - 20.0 * f64::from(open)))
}

/// Every measure's value from the facts (`None`: no data).
pub fn measure_values(facts: &Facts) -> Vec<(Measure, Option<f64>)> {
    Measure::ALL
        .into_iter()
        .map(|measure| {
            let value = match measure {
                Measure::Sentiment => sentiment_trend(facts.sentiment_30, facts.sentiment_90),
                Measure::TicketVolume => ticket_volume(facts.tickets_30, facts.tickets_31_180),
                Measure::Qa => qa(&facts.qa_scores),
                Measure::Surveys => surveys(&facts.nps, &facts.csat),
                Measure::Usage => usage_trend(facts.usage_30, facts.usage_90),
                Measure::Renewal => renewal(facts.days_to_renewal),
                Measure::OpenBugs => open_bugs(facts.bugs, facts.open_bugs),
            };
            (measure, value.map(round1))
        })
        .collect()
}

/// Rounds to one decimal, as every stored and shown figure is.
pub fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

/// One measure in a snapshot: its value (`None`: no data) and the weight it had (0 when off).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeasureValue {
    pub measure: Measure,
    pub value: Option<f64>,
    pub weight: u32,
}

/// The weights of the measures that count: on, weighted and with data.
fn counted(values: &[MeasureValue]) -> impl Iterator<Item = (&MeasureValue, f64)> {
    values.iter().filter_map(|entry| {
        entry
            .value
            .filter(|_| entry.weight > 0)
            .map(|value| (entry, value))
    })
}

/// The score, `Σ wᵢ·mᵢ / Σ wᵢ` over the measures with data and a weight (one decimal); `None`
/// when no measure counts.
pub fn score(values: &[MeasureValue]) -> Option<f64> {
    let (sum, weights) = counted(values).fold((0.0, 0u32), |(sum, weights), (entry, value)| {
        (
            sum + f64::from(entry.weight) * value,
            weights + entry.weight,
        )
    });
    (weights > 0).then(|| round1(sum / f64::from(weights)))
}

/// A measure's weighted contribution to the score, `wᵢ·mᵢ / Σ w`: the contributions add up to
/// the score. 0 when it does not count.
pub fn contribution(values: &[MeasureValue], measure: Measure) -> f64 {
    let weights: u32 = counted(values).map(|(entry, _)| entry.weight).sum();
    if weights == 0 {
        return 0.0;
    }
    counted(values)
        .find(|(entry, _)| entry.measure == measure)
        .map_or(0.0, |(entry, value)| {
            f64::from(entry.weight) * value / f64::from(weights)
        })
}

/// Red, amber or green.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Band {
    Red,
    Amber,
    Green,
}

impl Band {
    pub fn label(self) -> &'static str {
        match self {
            Self::Red => "Red (at risk)",
            Self::Amber => "Amber (watch)",
            Self::Green => "Green (healthy)",
        }
    }

    pub fn css_class(self) -> &'static str {
        match self {
            Self::Red => "band-red",
            Self::Amber => "band-amber",
            Self::Green => "band-green",
        }
    }
}

/// The band of a score: below `red_below` red, below `amber_below` amber, else green.
pub fn band(score: f64, red_below: u8, amber_below: u8) -> Band {
    if score < f64::from(red_below) {
        Band::Red
    } else if score < f64::from(amber_below) {
        Band::Amber
    } else {
        Band::Green
    }
}

/// Why the score is what it is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// The score's change since the previous snapshot (none: no previous score).
    pub change: Option<f64>,
    /// The measure whose weighted contribution changed most, and by how much (points).
    pub mover: Option<(Measure, f64)>,
    /// The measure with the lowest value, and that value.
    pub weakest: Option<(Measure, f64)>,
    /// The switched-on measures without data, left out with the others' weights renormalised.
    pub missing: Vec<Measure>,
}

/// The explanation of `current` against the `previous` snapshot's values: the change, the measure
/// whose weighted contribution changed most (ties: the first in [`Measure::ALL`]), the weakest
/// measure and the measures without data.
pub fn explain(previous: Option<&[MeasureValue]>, current: &[MeasureValue]) -> Explanation {
    let now = score(current);
    let before = previous.and_then(score);
    let change = match (now, before) {
        (Some(now), Some(before)) => Some(round1(now - before)),
        _ => None,
    };
    let mover = previous.filter(|_| change.is_some()).and_then(|previous| {
        let mut best: Option<(Measure, f64)> = None;
        for measure in Measure::ALL {
            let delta = contribution(current, measure) - contribution(previous, measure);
            if delta.abs() >= 0.05 && best.is_none_or(|(_, top)| delta.abs() > top.abs()) {
                best = Some((measure, round1(delta)));
            }
        }
        best
    });
    let weakest = counted(current).fold(None::<(Measure, f64)>, |low, (entry, value)| match low {
        Some((_, lowest)) if lowest <= value => low,
        _ => Some((entry.measure, value)),
    });
    let missing = current
        .iter()
        .filter(|entry| entry.weight > 0 && entry.value.is_none())
        .map(|entry| entry.measure)
        .collect();
    Explanation {
        change,
        mover,
        weakest,
        missing,
    }
}

fn signed(value: f64) -> String {
    if value >= 0.0 {
        format!("+{value:.1}")
    } else {
        format!("{value:.1}")
    }
}

impl Explanation {
    /// The explanation as sentences, for the account page and alerts.
    pub fn sentences(&self) -> Vec<String> {
        let mut sentences = Vec::new();
        match (self.change, self.mover) {
            (Some(change), Some((measure, delta))) => sentences.push(format!(
                "Since the previous snapshot the score changed by {} points; {} moved it most ({} points of weighted contribution).",
                signed(change),
                measure.label(),
                signed(delta)
            )),
            (Some(change), None) => sentences.push(format!(
                "Since the previous snapshot the score changed by {} points; no measure moved it noticeably.",
                signed(change)
            )),
            (None, _) => sentences.push(
                "There is no earlier snapshot with a score to compare with.".to_owned(),
            ),
        }
        if let Some((measure, value)) = self.weakest {
            sentences.push(format!(
                "The weakest measure is {} ({value:.1}).",
                measure.label()
            ));
        }
        if !self.missing.is_empty() {
            let names: Vec<&str> = self.missing.iter().map(|measure| measure.label()).collect();
            sentences.push(format!(
                "No data for: {}. They were left out and the other measures' weights renormalised.",
                names.join(", ")
            ));
        }
        sentences
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(entries: &[(Measure, Option<f64>, u32)]) -> Vec<MeasureValue> {
        entries
            .iter()
            .map(|(measure, value, weight)| MeasureValue {
                measure: *measure,
                value: *value,
                weight: *weight,
            })
            .collect()
    }

    #[test]
    fn normalisations_match_the_documented_formulas() {
        // 50·(1 + 0.5) + 50·(0.5 − 0.2) = 75 + 15 = 90.
        assert_eq!(
            sentiment_trend(Some(0.5), Some(0.2)).map(round1),
            Some(90.0)
        );
        // 50·(1 − 0.6) + 50·(−0.6 − 0) = 20 − 30 → clamped to 0.
        assert_eq!(sentiment_trend(Some(-0.6), Some(0.0)), Some(0.0));
        assert_eq!(sentiment_trend(None, Some(0.3)), None);

        // Baseline 10/5 = 2: 2 tickets is 100, 3 is 100 − 50·1/2 = 75, 6 is 0.
        assert_eq!(ticket_volume(2, 10), Some(100.0));
        assert_eq!(ticket_volume(3, 10), Some(75.0));
        assert_eq!(ticket_volume(6, 10), Some(0.0));
        // No baseline: measured against 1.
        assert_eq!(ticket_volume(1, 0), Some(50.0));
        assert_eq!(ticket_volume(0, 0), None);

        assert_eq!(qa(&[80.0, 60.0]), Some(70.0));
        assert_eq!(qa(&[]), None);

        // NPS 9 → 90, NPS 5 → 50, CSAT 4 → 75: mean 215/3 = 71.67.
        assert_eq!(surveys(&[9, 5], &[4]).map(round1), Some(71.7));
        assert_eq!(surveys(&[], &[]), None);

        assert_eq!(usage_trend(Some(70.0), Some(100.0)), Some(70.0));
        assert_eq!(usage_trend(Some(150.0), Some(100.0)), Some(100.0));
        assert_eq!(usage_trend(Some(1.0), Some(0.0)), None);
        assert_eq!(usage_trend(None, Some(10.0)), None);

        assert_eq!(renewal(Some(45)), Some(50.0));
        assert_eq!(renewal(Some(400)), Some(100.0));
        assert_eq!(renewal(Some(-1)), None);
        assert_eq!(renewal(None), None);

        assert_eq!(open_bugs(4, 2), Some(60.0));
        assert_eq!(open_bugs(9, 7), Some(0.0));
        assert_eq!(open_bugs(0, 0), None);
    }

    #[test]
    fn score_is_the_weighted_mean_renormalised_over_measures_with_data() {
        let current = values(&[
            (Measure::Sentiment, Some(90.0), 20),
            (Measure::Surveys, Some(60.0), 20),
            (Measure::Renewal, Some(50.0), 10),
            (Measure::Usage, None, 15),
            (Measure::Qa, Some(0.0), 0),
        ]);
        // (20·90 + 20·60 + 10·50) / 50 = 3500 / 50 = 70.
        assert_eq!(score(&current), Some(70.0));
        assert!((contribution(&current, Measure::Sentiment) - 36.0).abs() < 1e-9);
        assert!(contribution(&current, Measure::Usage).abs() < 1e-9);
        assert_eq!(score(&values(&[(Measure::Usage, None, 15)])), None);
        assert_eq!(band(39.9, 40, 70), Band::Red);
        assert_eq!(band(40.0, 40, 70), Band::Amber);
        assert_eq!(band(70.0, 40, 70), Band::Green);
    }

    #[test]
    fn explanation_names_the_measure_that_moved_the_score_most() {
        let previous = values(&[
            (Measure::Sentiment, Some(90.0), 20),
            (Measure::Surveys, Some(60.0), 20),
            (Measure::Renewal, Some(50.0), 10),
        ]);
        // Surveys fall from 60 to 20 (contribution 24 → 8), renewal rises 50 → 60 (10 → 12):
        // (20·90 + 20·20 + 10·60) / 50 = 2800 / 50 = 56, a change of −14.
        let current = values(&[
            (Measure::Sentiment, Some(90.0), 20),
            (Measure::Surveys, Some(20.0), 20),
            (Measure::Renewal, Some(60.0), 10),
            (Measure::OpenBugs, None, 10),
        ]);
        let explanation = explain(Some(&previous), &current);
        assert_eq!(score(&current), Some(56.0));
        assert_eq!(explanation.change, Some(-14.0));
        assert_eq!(explanation.mover, Some((Measure::Surveys, -16.0)));
        assert_eq!(explanation.weakest, Some((Measure::Surveys, 20.0)));
        assert_eq!(explanation.missing, vec![Measure::OpenBugs]);
        let text = explanation.sentences().join(" ");
        assert!(
            text.contains("changed by -14.0 points; NPS and CSAT moved it most (-16.0"),
            "{text}"
        );
        assert!(text.contains("No data for: Open bug records."), "{text}");

        let first = explain(None, &current);
        assert_eq!(first.change, None);
        assert_eq!(first.mover, None);
        assert!(first.sentences()[0].contains("no earlier snapshot"));
        // Nothing moved.
        assert_eq!(explain(Some(&current), &current).mover, None);
    }
}
