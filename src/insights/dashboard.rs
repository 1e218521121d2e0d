//! The dashboard's filters and its charts' data, built from day buckets and the account directory
//! only: a date range of N days reads at most 2·N bucket records (the range and, for the topic
//! trend, the equal range before it) and the account directory (one small entry per account),
//! whatever the number of interactions. Each chart's data is one `charts` value, so the page, its data table and its CSV
//! show the same numbers.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use chrono::{Datelike, Duration, NaiveDate};

use crate::charts::{BarData, Caption, DistributionData, LineData, Part, Series};
use crate::context::AppContext;
use crate::health::Band;
use crate::ids::{RecordId, TenantId};
use crate::insights::{Cell, DayBucket, InsightsStore, QA_ALL};
use crate::interactions::Channel;
use crate::store::StoreError;

/// The default range: the last 90 days.
pub const DEFAULT_DAYS: i64 = 90;
/// The longest range (two years), so a page reads a bounded number of buckets.
pub const MAX_DAYS: i64 = 731;
/// Ranges longer than this are drawn by week.
pub const DAILY_UP_TO: i64 = 92;
/// Topics shown, at most.
pub const TOP_TOPICS: usize = 10;
/// QA groups (agents, teams, AI agents) shown, at most.
pub const MAX_QA_GROUPS: usize = 40;
/// At-risk accounts listed, at most (lowest score first).
pub const MAX_AT_RISK: usize = 25;

/// The charts a CSV can be asked for, by the name in its URL.
pub const CHARTS: [&str; 7] = [
    "sentiment",
    "volume",
    "topics",
    "qa-agents",
    "qa-criteria",
    "reviews",
    "health",
];

/// The dashboard's GET form.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Filters {
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// A channel's name ([`Channel::as_str`]), or every channel.
    pub channel: Option<String>,
    /// An owner's e-mail (lower case), or every owner.
    pub owner: Option<String>,
    /// A QA group (`agent:NAME`, `team:NAME`, `ai:NAME`) whose per-criterion breakdown the
    /// criterion chart shows, or the whole.
    pub qa_group: Option<String>,
}

impl Filters {
    /// The filters from the query's fields; an empty or absent field takes its default (the
    /// last 90 days to `today`, every channel and owner). The message names the field at fault.
    pub fn parse(fields: &[(String, String)], today: NaiveDate) -> Result<Self, String> {
        let field = |name: &str| {
            fields
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.trim())
                .filter(|value| !value.is_empty())
        };
        let date = |name: &str| -> Result<Option<NaiveDate>, String> {
            field(name)
                .map(|value| {
                    NaiveDate::parse_from_str(value, "%Y-%m-%d")
                        .map_err(|_| format!("{name}: a date like 2026-01-31"))
                })
                .transpose()
        };
        let to = date("to")?.unwrap_or(today);
        let from = date("from")?.unwrap_or(to - Duration::days(DEFAULT_DAYS - 1));
        if from > to {
            return Err("from: the range must start on or before its end".to_owned());
        }
        if (to - from).num_days() + 1 > MAX_DAYS {
            return Err(format!("from: a range is at most {MAX_DAYS} days"));
        }
        let channel = match field("channel") {
            None => None,
            Some(value) => Some(
                Channel::ALL
                    .into_iter()
                    .find(|channel| channel.as_str() == value)
                    .ok_or_else(|| "channel: not a known channel".to_owned())?
                    .as_str()
                    .to_owned(),
            ),
        };
        let owner = field("owner").map(str::to_lowercase);
        let qa_group = match field("qa_group") {
            None => None,
            Some(value) => match value.split_once(':') {
                Some(("agent" | "team" | "ai", name)) if !name.trim().is_empty() => {
                    Some(value.to_owned())
                }
                _ => {
                    return Err(
                        "qa_group: a QA group like agent:NAME, team:NAME or ai:NAME".to_owned()
                    )
                }
            },
        };
        Ok(Self {
            from,
            to,
            channel,
            owner,
            qa_group,
        })
    }

    /// The filters as a query string (for CSV links), URL-encoded.
    pub fn query(&self) -> String {
        let mut pairs = vec![("from", self.from.to_string()), ("to", self.to.to_string())];
        if let Some(channel) = &self.channel {
            pairs.push(("channel", channel.clone()));
        }
        if let Some(owner) = &self.owner {
            pairs.push(("owner", owner.clone()));
        }
        if let Some(group) = &self.qa_group {
            pairs.push(("qa_group", group.clone()));
        }
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }

    fn days(&self) -> i64 {
        (self.to - self.from).num_days() + 1
    }

    pub fn weekly(&self) -> bool {
        self.days() > DAILY_UP_TO
    }

    fn keeps(&self, cell: &Cell) -> bool {
        self.keeps_part(&cell.channel, &cell.owner)
    }

    /// Whether counts of `channel` and `owner` are in the filtered data.
    fn keeps_part(&self, channel: &str, owner: &str) -> bool {
        self.channel.as_ref().is_none_or(|kept| kept == channel)
            && self.owner.as_ref().is_none_or(|kept| kept == owner)
    }
}

fn monday(day: NaiveDate) -> NaiveDate {
    day - Duration::days(i64::from(day.weekday().num_days_from_monday()))
}

/// The x positions of the range: its days, or the weeks (by their Monday) it touches.
struct Periods {
    labels: Vec<String>,
    from: NaiveDate,
    weekly: bool,
}

impl Periods {
    fn of(filters: &Filters) -> Self {
        let weekly = filters.weekly();
        let mut labels = Vec::new();
        let mut day = if weekly {
            monday(filters.from)
        } else {
            filters.from
        };
        while day <= filters.to {
            labels.push(day.to_string());
            day += Duration::days(if weekly { 7 } else { 1 });
        }
        Self {
            labels,
            from: if weekly {
                monday(filters.from)
            } else {
                filters.from
            },
            weekly,
        }
    }

    fn index(&self, day: NaiveDate) -> Option<usize> {
        let days = (day - self.from).num_days();
        let index = if self.weekly { days / 7 } else { days };
        usize::try_from(index)
            .ok()
            .filter(|index| *index < self.labels.len())
    }

    fn name(&self) -> &'static str {
        if self.weekly {
            "week starting"
        } else {
            "day"
        }
    }
}

/// An account listed as at risk.
#[derive(Clone, Debug, PartialEq)]
pub struct AtRisk {
    pub id: RecordId,
    pub name: String,
    pub owner: String,
    pub score: String,
}

/// Everything the dashboard shows.
#[derive(Clone, Debug, PartialEq)]
pub struct Dashboard {
    pub filters: Filters,
    pub sentiment: LineData,
    pub volume: LineData,
    pub topics: BarData,
    pub qa_agents: BarData,
    pub qa_criteria: BarData,
    pub reviews: DistributionData,
    pub health: DistributionData,
    pub at_risk: Vec<AtRisk>,
    /// The owners the filter offers (every account owner known).
    pub owners: Vec<String>,
    /// The QA groups the criterion filter offers (those scored in the range), as (value, label).
    pub qa_groups: Vec<(String, String)>,
}

impl Dashboard {
    /// The CSV of chart `name` (one of [`CHARTS`]).
    pub fn csv(&self, name: &str) -> Option<String> {
        Some(match name {
            "sentiment" => self.sentiment.csv(),
            "volume" => self.volume.csv(),
            "topics" => self.topics.csv(),
            "qa-agents" => self.qa_agents.csv(),
            "qa-criteria" => self.qa_criteria.csv(),
            "reviews" => self.reviews.csv(),
            "health" => self.health.csv(),
            _ => return None,
        })
    }
}

fn caption(base: &str, filters: &Filters, id: &str, title: &str, description: &str) -> Caption {
    Caption {
        id: id.to_owned(),
        title: title.to_owned(),
        description: description.to_owned(),
        csv_url: Some(format!("{base}/dashboard/{id}.csv?{}", filters.query())),
        table_elsewhere: false,
    }
}

#[allow(clippy::cast_precision_loss)] // Counts far below 2^52.
fn count(value: i64) -> f64 {
    value as f64
}

/// Series over the periods from per-period counts; all `None` when every count is 0, so the chart
/// says there is no data.
fn line_series(
    names: &[String],
    counts: &BTreeMap<String, Vec<i64>>,
    periods: usize,
) -> Vec<Series> {
    let any = counts.values().flatten().any(|value| *value != 0);
    names
        .iter()
        .map(|name| Series {
            name: name.clone(),
            values: (0..periods)
                .map(|index| {
                    any.then(|| {
                        count(
                            counts
                                .get(name)
                                .and_then(|values| values.get(index))
                                .copied()
                                .unwrap_or(0),
                        )
                    })
                })
                .collect(),
        })
        .collect()
}

/// Dashboards built since their tenant's aggregates last changed, by tenant, filters and base
/// URL, with the aggregate generation they were built at (see `store::generation`).
type CacheKey = (TenantId, Filters, String);
type Cache = HashMap<CacheKey, (u64, Dashboard)>;
static CACHE: LazyLock<Mutex<Cache>> = LazyLock::new(|| Mutex::new(HashMap::new()));
/// One gate per key: a build holds it, so that requests missing the cache together wait for
/// that build instead of each building the same dashboard (a stampede after every write of the
/// aggregates, when 20 users at once each paid for a year's dashboard).
static BUILDING: LazyLock<Mutex<HashMap<CacheKey, Arc<Mutex<()>>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));
/// Cached dashboards, at most (all are dropped when full: a cache, not a store).
const CACHED: usize = 256;

fn cached(key: &CacheKey, generation: u64) -> Option<Dashboard> {
    CACHE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(key)
        .filter(|(built_at, _)| *built_at == generation)
        .map(|(_, dashboard)| dashboard.clone())
}

/// The dashboard of `filters` from the tenant's aggregates. `base` is `/t/{slug}`. A dashboard
/// built at the tenant's current aggregate generation is served from memory; any write of the
/// aggregates moves the generation on, so a cached one is never stale.
pub fn build(
    context: &AppContext,
    tenant: TenantId,
    filters: &Filters,
    base: &str,
) -> Result<Dashboard, StoreError> {
    let key = (tenant, filters.clone(), base.to_owned());
    // Read before the aggregates are: a write meanwhile leaves the entry at the older
    // generation, so the next request builds again.
    if let Some(dashboard) = cached(&key, super::store::generation(tenant)) {
        return Ok(dashboard);
    }
    let gate = {
        let mut building = BUILDING.lock().unwrap_or_else(PoisonError::into_inner);
        if building.len() >= CACHED {
            building.retain(|_, gate| Arc::strong_count(gate) > 1);
        }
        Arc::clone(building.entry(key.clone()).or_default())
    };
    let _turn = gate.lock().unwrap_or_else(PoisonError::into_inner);
    // Whoever held the gate before may have built it meanwhile.
    let generation = super::store::generation(tenant);
    if let Some(dashboard) = cached(&key, generation) {
        return Ok(dashboard);
    }
    let dashboard = build_uncached(context, tenant, filters, base)?;
    let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    if cache.len() >= CACHED {
        cache.clear();
    }
    cache.insert(key, (generation, dashboard.clone()));
    Ok(dashboard)
}

/// [`build`] without the cache.
#[allow(clippy::too_many_lines)] // One chart after the other, each a few lines.
pub fn build_uncached(
    context: &AppContext,
    tenant: TenantId,
    filters: &Filters,
    base: &str,
) -> Result<Dashboard, StoreError> {
    let store = InsightsStore::new(context.store.clone());
    let previous_from = filters.from - Duration::days(filters.days());
    let mut buckets = store.buckets(tenant, previous_from, filters.to)?;
    let split = buckets.partition_point(|(day, _)| *day < filters.from);
    let current = buckets.split_off(split);
    let previous = buckets;
    let periods = Periods::of(filters);
    let slots = periods.labels.len();

    let mut sentiment: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut volume: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut topics_now: BTreeMap<String, i64> = BTreeMap::new();
    let mut qa_groups: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut criteria: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut ratings = [0i64; 5];
    for (day, bucket) in &current {
        let Some(index) = periods.index(*day) else {
            continue;
        };
        add_reviews(bucket, &mut ratings);
        for cell in bucket.cells.iter().filter(|cell| filters.keeps(cell)) {
            volume
                .entry(cell.channel.clone())
                .or_insert_with(|| vec![0; slots])[index] += cell.volume;
            for (label, number) in &cell.sentiment {
                sentiment
                    .entry(label.clone())
                    .or_insert_with(|| vec![0; slots])[index] += number;
            }
            for (topic, number) in &cell.topics {
                *topics_now.entry(topic.clone()).or_default() += number;
            }
            for (group, sums) in &cell.qa {
                if group == QA_ALL {
                    for (name, (_, points, most)) in &sums.criteria {
                        let entry = criteria.entry(name.clone()).or_default();
                        entry.0 += points;
                        entry.1 += most;
                    }
                } else {
                    let entry = qa_groups.entry(group.clone()).or_default();
                    entry.0 += sums.scored;
                    entry.1 += sums.overall_tenths;
                }
            }
        }
    }
    let mut topics_before: BTreeMap<String, i64> = BTreeMap::new();
    for (_, bucket) in &previous {
        for cell in bucket.cells.iter().filter(|cell| filters.keeps(cell)) {
            for (topic, number) in &cell.topics {
                *topics_before.entry(topic.clone()).or_default() += number;
            }
        }
    }
    let filter_words = describe(filters);

    let mut sentiment_names: Vec<String> = ["positive", "neutral", "negative"]
        .iter()
        .map(|label| (*label).to_owned())
        .collect();
    sentiment_names.extend(
        sentiment
            .keys()
            .filter(|label| !sentiment_names.contains(label))
            .cloned()
            .collect::<Vec<_>>(),
    );
    let channel_names: Vec<String> = Channel::ALL
        .iter()
        .map(|channel| channel.as_str().to_owned())
        .filter(|name| volume.contains_key(name))
        .collect();

    let mut topic_rows: Vec<(String, i64)> =
        topics_now.into_iter().filter(|(_, n)| *n > 0).collect();
    topic_rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    topic_rows.truncate(TOP_TOPICS);

    let mut qa_group_options: Vec<(String, String)> = qa_groups
        .iter()
        .filter(|(_, (scored, _))| *scored > 0)
        .map(|(group, _)| (group.clone(), group_label(group)))
        .collect();
    if let Some(selected) = &filters.qa_group {
        if !qa_groups.contains_key(selected) {
            qa_group_options.push((selected.clone(), group_label(selected)));
        }
    }
    let mut group_rows: Vec<(String, f64)> = qa_groups
        .into_iter()
        .filter(|(_, (scored, _))| *scored > 0)
        .map(|(group, (scored, tenths))| {
            (
                group_label(&group),
                (count(tenths) / count(scored)).round() / 10.0,
            )
        })
        .collect();
    group_rows.sort_by(|a, b| {
        group_rank(&a.0)
            .cmp(&group_rank(&b.0))
            .then(b.1.total_cmp(&a.1))
            .then_with(|| a.0.cmp(&b.0))
    });
    group_rows.truncate(MAX_QA_GROUPS);
    let (criteria, criteria_of) = match &filters.qa_group {
        Some(group) => (
            super::criteria::of_group(
                &store,
                tenant,
                group,
                filters.from,
                filters.to,
                |channel, owner| filters.keeps_part(channel, owner),
            )?,
            group_label(group),
        ),
        None => (criteria, "every agent, team and AI agent".to_owned()),
    };
    let criterion_rows: Vec<(String, f64)> = criteria
        .into_iter()
        .filter(|(_, (_, most))| *most > 0)
        .map(|(name, (points, most))| (name, (count(points) / count(most) * 1000.0).round() / 10.0))
        .collect();

    let directory = store.directory(tenant)?;
    let mut owners: Vec<String> = directory
        .accounts
        .iter()
        .map(|entry| entry.owner.clone())
        .filter(|owner| !owner.is_empty())
        .collect();
    owners.sort();
    owners.dedup();
    let accounts: Vec<_> = directory
        .accounts
        .iter()
        .filter(|entry| {
            filters
                .owner
                .as_ref()
                .is_none_or(|owner| *owner == entry.owner)
        })
        .collect();
    let band_count =
        |band: Option<Band>| accounts.iter().filter(|entry| entry.band == band).count() as u64;
    let mut at_risk: Vec<_> = accounts
        .iter()
        .filter(|entry| entry.band == Some(Band::Red))
        .collect();
    at_risk.sort_by(|a, b| {
        a.score
            .unwrap_or(0.0)
            .total_cmp(&b.score.unwrap_or(0.0))
            .then_with(|| a.name.cmp(&b.name))
    });

    Ok(Dashboard {
        sentiment: LineData {
            caption: caption(
                base,
                filters,
                "sentiment",
                "Sentiment over time",
                &format!("Interactions by customer sentiment per {}, {filter_words}.", periods.name()),
            ),
            x_name: periods.name().to_owned(),
            x_labels: periods.labels.clone(),
            series: line_series(&sentiment_names, &sentiment, slots),
            decimals: 0,
            range: None,
            zones: Vec::new(),
        },
        volume: LineData {
            caption: caption(
                base,
                filters,
                "volume",
                "Volume by channel",
                &format!("Interactions per channel per {}, {filter_words}.", periods.name()),
            ),
            x_name: periods.name().to_owned(),
            x_labels: periods.labels.clone(),
            series: line_series(&channel_names, &volume, slots),
            decimals: 0,
            range: None,
            zones: Vec::new(),
        },
        topics: BarData {
            caption: caption(
                base,
                filters,
                "topics",
                "Top topics and their trend",
                &format!("Interactions per topic in the range and in the equal range before it, {filter_words}."),
            ),
            category_name: "topic".to_owned(),
            categories: topic_rows.iter().map(|(topic, _)| topic.clone()).collect(),
            series: vec![
                Series {
                    name: "this period".to_owned(),
                    values: topic_rows.iter().map(|(_, n)| Some(count(*n))).collect(),
                },
                Series {
                    name: "previous period".to_owned(),
                    values: topic_rows
                        .iter()
                        .map(|(topic, _)| Some(count(topics_before.get(topic).copied().unwrap_or(0))))
                        .collect(),
                },
            ],
            decimals: 0,
            max: None,
        },
        qa_agents: BarData {
            caption: caption(
                base,
                filters,
                "qa-agents",
                "QA score by agent, team and AI agent",
                &format!("Mean effective QA score (0–100) per agent, team and AI agent, {filter_words}."),
            ),
            category_name: "group".to_owned(),
            categories: group_rows.iter().map(|(label, _)| label.clone()).collect(),
            series: vec![Series {
                name: "mean QA score".to_owned(),
                values: group_rows.iter().map(|(_, mean)| Some(*mean)).collect(),
            }],
            decimals: 1,
            max: Some(100.0),
        },
        qa_criteria: BarData {
            caption: caption(
                base,
                filters,
                "qa-criteria",
                &format!("QA score per criterion — {criteria_of}"),
                &format!("Points reached as a share of the most possible (%) per scorecard criterion, {criteria_of}, {filter_words}."),
            ),
            category_name: "criterion".to_owned(),
            categories: criterion_rows.iter().map(|(name, _)| name.clone()).collect(),
            series: vec![Series {
                name: "% of points".to_owned(),
                values: criterion_rows.iter().map(|(_, share)| Some(*share)).collect(),
            }],
            decimals: 1,
            max: Some(100.0),
        },
        reviews: DistributionData {
            caption: caption(
                base,
                filters,
                "reviews",
                "Review ratings",
                &format!(
                    "Reviews per star rating published from {} to {} (every platform; channel and owner do not apply).",
                    filters.from, filters.to
                ),
            ),
            part_name: "rating".to_owned(),
            parts: ratings
                .iter()
                .enumerate()
                .map(|(index, number)| Part {
                    name: format!("{} star{}", index + 1, if index == 0 { "" } else { "s" }),
                    count: u64::try_from(*number).unwrap_or(0),
                    class: STAR_CLASSES[index],
                })
                .collect(),
        },
        health: DistributionData {
            caption: caption(
                base,
                filters,
                "health",
                "Account health",
                "Accounts per health band, by their latest score (the date range does not apply).",
            ),
            part_name: "band".to_owned(),
            parts: vec![
                Part { name: "red".to_owned(), count: band_count(Some(Band::Red)), class: "band-red" },
                Part { name: "amber".to_owned(), count: band_count(Some(Band::Amber)), class: "band-amber" },
                Part { name: "green".to_owned(), count: band_count(Some(Band::Green)), class: "band-green" },
                Part { name: "no score".to_owned(), count: band_count(None), class: "band-none" },
            ],
        },
        at_risk: at_risk
            .into_iter()
            .take(MAX_AT_RISK)
            .map(|entry| AtRisk {
                id: entry.id,
                name: entry.name.clone(),
                owner: entry.owner.clone(),
                score: entry
                    .score
                    .map_or_else(|| "no score".to_owned(), |score| format!("{score:.1}")),
            })
            .collect(),
        owners,
        qa_groups: qa_group_options,
        filters: filters.clone(),
    })
}

/// How a QA group is named on the page: `agent: NAME`, `team: NAME`, `AI agent: NAME`.
fn group_label(group: &str) -> String {
    match group.split_once(':') {
        Some(("agent", name)) => format!("agent: {name}"),
        Some(("team", name)) => format!("team: {name}"),
        Some(("ai", name)) => format!("AI agent: {name}"),
        _ => group.to_owned(),
    }
}

const STAR_CLASSES: [&str; 5] = [
    "stars stars-1",
    "stars stars-2",
    "stars stars-3",
    "stars stars-4",
    "stars stars-5",
];

fn group_rank(label: &str) -> u8 {
    if label.starts_with("agent:") {
        0
    } else if label.starts_with("team:") {
        1
    } else {
        2
    }
}

fn add_reviews(bucket: &DayBucket, ratings: &mut [i64; 5]) {
    for counts in bucket.reviews.values() {
        for (total, number) in ratings.iter_mut().zip(counts) {
            *total += number;
        }
    }
}

/// The filters in words, for a chart's description.
fn describe(filters: &Filters) -> String {
    let mut words = format!("{} to {}", filters.from, filters.to);
    if let Some(channel) = &filters.channel {
        words.push_str(", channel ");
        words.push_str(channel);
    }
    if filters.owner.is_some() {
        words.push_str(", one account owner");
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn filters_default_to_the_last_90_days_and_refuse_bad_values() {
        let today = NaiveDate::from_ymd_opt(2026, 3, 31).unwrap();
        let filters = Filters::parse(&[], today).unwrap();
        assert_eq!(filters.to, today);
        assert_eq!((filters.to - filters.from).num_days(), 89);
        assert!(!filters.weekly());
        let year = Filters::parse(
            &fields(&[("from", "2025-04-01"), ("to", "2026-03-31")]),
            today,
        )
        .unwrap();
        assert!(year.weekly());
        assert_eq!(Periods::of(&year).labels.len(), 53);
        assert!(Filters::parse(&fields(&[("from", "2026-04-02")]), today).is_err());
        assert!(Filters::parse(&fields(&[("from", "31/01/2026")]), today)
            .unwrap_err()
            .starts_with("from:"));
        assert!(Filters::parse(&fields(&[("channel", "fax")]), today).is_err());
        assert!(Filters::parse(&fields(&[("from", "2020-01-01")]), today).is_err());
        let chat = Filters::parse(
            &fields(&[("channel", "chat"), ("owner", "CSM@Example.com")]),
            today,
        )
        .unwrap();
        assert_eq!(chat.owner.as_deref(), Some("csm@example.com"));
        assert!(chat.query().contains("owner=csm%40example.com"));
        let agent = Filters::parse(&fields(&[("qa_group", "agent:Kim Ray")]), today).unwrap();
        assert_eq!(agent.qa_group.as_deref(), Some("agent:Kim Ray"));
        assert!(agent.query().contains("qa_group=agent%3AKim+Ray"));
        for wrong in ["Kim Ray", "boss:Kim", "team:"] {
            assert!(Filters::parse(&fields(&[("qa_group", wrong)]), today)
                .unwrap_err()
                .starts_with("qa_group:"));
        }
    }

    #[test]
    fn weeks_start_on_monday_and_index_days() {
        let filters = Filters {
            from: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            to: NaiveDate::from_ymd_opt(2026, 6, 30).unwrap(),
            channel: None,
            owner: None,
            qa_group: None,
        };
        let periods = Periods::of(&filters);
        assert_eq!(periods.labels[0], "2025-12-29");
        assert_eq!(
            periods.index(NaiveDate::from_ymd_opt(2026, 1, 4).unwrap()),
            Some(0)
        );
        assert_eq!(
            periods.index(NaiveDate::from_ymd_opt(2026, 1, 5).unwrap()),
            Some(1)
        );
    }
}
