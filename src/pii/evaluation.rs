//! Precision and recall of the detector on `tests/fixtures/pii/labelled.jsonl`: realistic support
//! messages, each with its expected findings in character offsets (and the value, as a check on
//! the offsets). A found span counts as right when an expected span of the same type overlaps it;
//! each expected span is matched once. The known contact names stand for a tenant's contacts.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::scan::scan_text;
use super::{Detector, DetectorOptions, PiiType};

const FIXTURE: &str = include_str!("../../tests/fixtures/pii/labelled.jsonl");
const KNOWN_NAMES: [&str; 5] = [
    "Maria Lopez",
    "Tom Becker",
    "Ines Duarte",
    "Rahul Verma",
    "Aoife Byrne",
];

#[derive(Deserialize)]
struct Labelled {
    text: String,
    expected: Vec<Expected>,
}

#[derive(Deserialize)]
struct Expected {
    #[serde(rename = "type")]
    kind: PiiType,
    start: usize,
    end: usize,
    value: String,
}

#[derive(Default, Debug, Clone, Copy)]
struct Counts {
    true_positives: u32,
    false_positives: u32,
    false_negatives: u32,
}

impl Counts {
    fn precision(self) -> f64 {
        let found = self.true_positives + self.false_positives;
        if found == 0 {
            1.0
        } else {
            f64::from(self.true_positives) / f64::from(found)
        }
    }

    fn recall(self) -> f64 {
        let expected = self.true_positives + self.false_negatives;
        if expected == 0 {
            1.0
        } else {
            f64::from(self.true_positives) / f64::from(expected)
        }
    }
}

fn measure() -> BTreeMap<PiiType, Counts> {
    let detector = Detector::new(&DetectorOptions {
        known_names: KNOWN_NAMES.iter().map(|name| (*name).to_owned()).collect(),
        min_confidence: None,
    })
    .unwrap();
    let mut counts: BTreeMap<PiiType, Counts> = PiiType::ALL
        .into_iter()
        .map(|kind| (kind, Counts::default()))
        .collect();
    for (index, line) in FIXTURE.lines().enumerate() {
        let labelled: Labelled = serde_json::from_str(line).unwrap();
        for expected in &labelled.expected {
            let value: String = labelled
                .text
                .chars()
                .skip(expected.start)
                .take(expected.end - expected.start)
                .collect();
            assert_eq!(value, expected.value, "fixture line {}", index + 1);
        }
        let mut matched = vec![false; labelled.expected.len()];
        for found in scan_text(&detector, &labelled.text) {
            let hit = labelled
                .expected
                .iter()
                .enumerate()
                .position(|(slot, expected)| {
                    !matched[slot]
                        && expected.kind == found.kind
                        && expected.start < found.end
                        && found.start < expected.end
                });
            let entry = counts.entry(found.kind).or_default();
            if let Some(slot) = hit {
                matched[slot] = true;
                entry.true_positives += 1;
            } else {
                entry.false_positives += 1;
                println!("line {}: unexpected {}", index + 1, found.kind);
            }
        }
        for (expected, matched) in labelled.expected.iter().zip(matched) {
            if !matched {
                counts.entry(expected.kind).or_default().false_negatives += 1;
                println!("line {}: missed {}", index + 1, expected.kind);
            }
        }
    }
    counts
}

#[test]
fn precision_and_recall_on_the_labelled_sample_stay_above_their_floors() {
    let counts = measure();
    println!("type            expected  found  precision  recall");
    let mut total = Counts::default();
    for (kind, count) in &counts {
        println!(
            "{:<15} {:>8} {:>6} {:>10.2} {:>7.2}",
            kind.as_str(),
            count.true_positives + count.false_negatives,
            count.true_positives + count.false_positives,
            count.precision(),
            count.recall()
        );
        total.true_positives += count.true_positives;
        total.false_positives += count.false_positives;
        total.false_negatives += count.false_negatives;
    }
    println!(
        "all             {:>8} {:>6} {:>10.2} {:>7.2}",
        total.true_positives + total.false_negatives,
        total.true_positives + total.false_positives,
        total.precision(),
        total.recall()
    );
    for (kind, count) in &counts {
        // Checksummed, parsed or range-checked types, and e-mail, must be near perfect; the
        // heuristic types (phone forms, dates of birth, addresses, names) have lower floors.
        let floor = if kind.is_validated() || *kind == PiiType::Email {
            0.9
        } else {
            0.6
        };
        assert!(
            count.precision() >= floor && count.recall() >= floor,
            "{kind}: precision {:.2}, recall {:.2}, floor {floor}",
            count.precision(),
            count.recall()
        );
    }
    assert!(total.precision() >= 0.9 && total.recall() >= 0.85);
}
