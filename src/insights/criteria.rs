//! QA points per scorecard criterion for each QA group (an agent, a team, an AI agent), by day:
//! the dashboard's per-criterion breakdown of one group. The day buckets keep criteria for the
//! whole only ([`QA_ALL`]); keeping them per group there would make every dashboard read every
//! group's criteria. Here a group's days are one range scan of at most one record per day, read
//! only when the dashboard is asked for that group.
//!
//! Maintained with the day buckets: [`stage`] applies the same contribution changes, so the two
//! agree after every refresh, deletion and rebuild.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::ids::TenantId;
use crate::insights::store::{DayKey, GroupDayKey};
use crate::insights::{Contribution, InsightsStore, QA_ALL};
use crate::store::{StoreError, WriteSet};

/// Criterion name → (times scored, points above the scale's lowest, the most points there are).
pub type CriterionSums = BTreeMap<String, (i64, i64, i64)>;

/// Adds one interaction's criterion points (`sign` 1) or takes them away (−1); a criterion whose
/// sums return to zero leaves the map. The day buckets' whole-tenant sums use it too.
pub(crate) fn add_criteria(sums: &mut CriterionSums, criteria: &[(String, i64, i64)], sign: i64) {
    for (criterion, points, most) in criteria {
        let entry = sums.entry(criterion.clone()).or_default();
        entry.0 += sign;
        entry.1 += sign * points;
        entry.2 += sign * most;
        if *entry == (0, 0, 0) {
            sums.remove(criterion);
        }
    }
}

/// One group's criterion sums for one channel and owner on one day.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupCell {
    pub channel: String,
    pub owner: String,
    pub criteria: CriterionSums,
}

/// One group's criterion sums on one day.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDay {
    pub cells: Vec<GroupCell>,
}

impl GroupDay {
    fn apply(&mut self, channel: &str, owner: &str, criteria: &[(String, i64, i64)], sign: i64) {
        let index = self
            .cells
            .iter()
            .position(|cell| cell.channel == channel && cell.owner == owner)
            .unwrap_or_else(|| {
                self.cells.push(GroupCell {
                    channel: channel.to_owned(),
                    owner: owner.to_owned(),
                    criteria: CriterionSums::new(),
                });
                self.cells.len() - 1
            });
        add_criteria(&mut self.cells[index].criteria, criteria, sign);
        if self.cells[index].criteria.is_empty() {
            self.cells.remove(index);
        }
    }
}

/// Applies `changes` to the group days they touch (each read once), staging the writes.
pub(crate) fn stage(
    store: &InsightsStore,
    tenant: TenantId,
    writes: &mut WriteSet,
    changes: &[(Contribution, i64)],
) -> Result<(), StoreError> {
    let collection = store.group_days(tenant)?;
    let updates = changes.iter().flat_map(|(contribution, sign)| {
        let scored = match contribution {
            Contribution::Interaction(part) => part
                .qa
                .as_ref()
                .filter(|qa| !qa.criteria.is_empty())
                .map(|qa| (part, qa)),
            Contribution::Review(_) => None,
        };
        scored.into_iter().flat_map(|(part, qa)| {
            qa.groups
                .iter()
                .filter(|group| *group != QA_ALL)
                .map(|group| {
                    let key = GroupDayKey {
                        group: collection.keyed_token(group),
                        day: DayKey(part.day),
                    };
                    (key, (part, &qa.criteria, *sign))
                })
                .collect::<Vec<_>>()
        })
    });
    super::stage_touched(
        &collection,
        writes,
        updates,
        |day: &mut GroupDay, (part, criteria, sign)| {
            day.apply(&part.channel, &part.owner, criteria, sign);
        },
        |day| day.cells.is_empty(),
    )
}

/// The criterion sums (points, most points) of `group` over the days `from..=to`, of the cells
/// for which `keeps(channel, owner)` holds.
pub fn of_group(
    store: &InsightsStore,
    tenant: TenantId,
    group: &str,
    from: NaiveDate,
    to: NaiveDate,
    keeps: impl Fn(&str, &str) -> bool,
) -> Result<BTreeMap<String, (i64, i64)>, StoreError> {
    let collection = store.group_days(tenant)?;
    let token = collection.keyed_token(group);
    let (first, last) = (DayKey::of(from), DayKey::of(to));
    let mut sums: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let start = GroupDayKey {
        group: token,
        day: DayKey(first.0 - 1),
    };
    for entry in collection.scan_after(&start) {
        let (key, day) = entry?;
        if key.group != token || key.day > last {
            break;
        }
        for cell in day
            .cells
            .iter()
            .filter(|cell| keeps(&cell.channel, &cell.owner))
        {
            for (name, (_, points, most)) in &cell.criteria {
                let entry = sums.entry(name.clone()).or_default();
                entry.0 += points;
                entry.1 += most;
            }
        }
    }
    Ok(sums)
}
