//! Classification quality: the confusion matrix, accuracy and macro-averaged F1.

use std::fmt::Write as _;

/// Counts of (gold label, predicted label) over a fixed list of labels.
#[derive(Clone, Debug)]
pub struct ConfusionMatrix {
    labels: Vec<String>,
    /// `counts[gold][predicted]`.
    counts: Vec<Vec<u64>>,
}

impl ConfusionMatrix {
    pub fn new(labels: Vec<String>) -> Self {
        let size = labels.len();
        Self {
            labels,
            counts: vec![vec![0; size]; size],
        }
    }

    /// Counts one item; labels outside the list are ignored (the caller validates them).
    pub fn record(&mut self, gold: &str, predicted: &str) {
        let gold = self.labels.iter().position(|label| label == gold);
        let predicted = self.labels.iter().position(|label| label == predicted);
        if let (Some(gold), Some(predicted)) = (gold, predicted) {
            self.counts[gold][predicted] += 1;
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    pub fn correct(&self) -> u64 {
        (0..self.labels.len())
            .map(|index| self.counts[index][index])
            .sum()
    }

    #[allow(clippy::cast_precision_loss)] // Counts stay far below 2^52.
    pub fn accuracy(&self) -> f64 {
        let total = self.total();
        if total == 0 {
            0.0
        } else {
            self.correct() as f64 / total as f64
        }
    }

    /// Per label: precision, recall and F1 (0 where undefined).
    #[allow(clippy::cast_precision_loss)]
    pub fn per_label(&self) -> Vec<(f64, f64, f64)> {
        (0..self.labels.len())
            .map(|index| {
                let true_positives = self.counts[index][index] as f64;
                let predicted: u64 = self.counts.iter().map(|row| row[index]).sum();
                let gold: u64 = self.counts[index].iter().sum();
                let precision = if predicted == 0 {
                    0.0
                } else {
                    true_positives / predicted as f64
                };
                let recall = if gold == 0 {
                    0.0
                } else {
                    true_positives / gold as f64
                };
                let f1 = if precision + recall == 0.0 {
                    0.0
                } else {
                    2.0 * precision * recall / (precision + recall)
                };
                (precision, recall, f1)
            })
            .collect()
    }

    /// The mean F1 over the labels that occur as gold or as prediction (labels that never occur
    /// would add a meaningless zero).
    #[allow(clippy::cast_precision_loss)]
    pub fn macro_f1(&self) -> f64 {
        let per_label = self.per_label();
        let occurring: Vec<f64> = (0..self.labels.len())
            .filter(|index| {
                self.counts[*index].iter().sum::<u64>() > 0
                    || self.counts.iter().map(|row| row[*index]).sum::<u64>() > 0
            })
            .map(|index| per_label[index].2)
            .collect();
        if occurring.is_empty() {
            0.0
        } else {
            occurring.iter().sum::<f64>() / occurring.len() as f64
        }
    }

    /// The matrix as text: one row per gold label, one column per prediction (numbered, with a
    /// key below, so 77 labels still fit a terminal).
    pub fn render(&self) -> String {
        let mut text = String::new();
        let width = self
            .counts
            .iter()
            .flatten()
            .max()
            .map_or(1, |max| max.to_string().len())
            .max(self.labels.len().to_string().len());
        let _ = write!(text, "{:>width$} ", "gold\\pred", width = 9);
        for index in 0..self.labels.len() {
            let _ = write!(text, " {:>width$}", index + 1);
        }
        text.push('\n');
        for (index, row) in self.counts.iter().enumerate() {
            let _ = write!(text, "{:>9} ", index + 1);
            for count in row {
                let _ = write!(text, " {count:>width$}");
            }
            text.push('\n');
        }
        let per_label = self.per_label();
        for (index, label) in self.labels.iter().enumerate() {
            let (precision, recall, f1) = per_label[index];
            let gold: u64 = self.counts[index].iter().sum();
            let _ = writeln!(
                text,
                "{:>4}  {label}  (n={gold}, precision {precision:.2}, recall {recall:.2}, f1 {f1:.2})",
                index + 1
            );
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_and_macro_f1_on_a_hand_checked_example() {
        // gold:      a a a b b c
        // predicted: a a b b c c
        let mut matrix = ConfusionMatrix::new(vec!["a".into(), "b".into(), "c".into()]);
        for (gold, predicted) in [
            ("a", "a"),
            ("a", "a"),
            ("a", "b"),
            ("b", "b"),
            ("b", "c"),
            ("c", "c"),
        ] {
            matrix.record(gold, predicted);
        }
        assert_eq!(matrix.total(), 6);
        assert!((matrix.accuracy() - 4.0 / 6.0).abs() < 1e-12);
        // a: p=2/2 r=2/3 f1=0.8; b: p=1/2 r=1/2 f1=0.5; c: p=1/2 r=1/1 f1=2/3.
        let expected = (0.8 + 0.5 + 2.0 / 3.0) / 3.0;
        assert!(
            (matrix.macro_f1() - expected).abs() < 1e-12,
            "{}",
            matrix.macro_f1()
        );
        assert!(matrix.render().contains("n=3"));
    }

    #[test]
    fn labels_that_never_occur_do_not_lower_macro_f1() {
        let mut matrix = ConfusionMatrix::new(vec!["a".into(), "unused".into()]);
        matrix.record("a", "a");
        assert!((matrix.macro_f1() - 1.0).abs() < 1e-12);
    }
}
