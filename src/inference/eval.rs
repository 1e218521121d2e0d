//! `rapport eval`: classify a labelled CSV with a tenant's backend and measure the result.
//!
//! The file is the operator's own test set, not tenant data, but it is treated the same way:
//! errors name rows and columns, never cell values.

use std::path::PathBuf;
use std::time::Instant;

use crate::inference::metrics::ConfusionMatrix;
use crate::inference::{Backend, InferenceError, LabelSet, TaskKind};

/// Texts sent to the backend at once; the engine splits them into batches of its own width.
const CHUNK: usize = 64;

#[derive(Clone, Debug)]
pub struct EvalOptions {
    pub task: TaskKind,
    pub text_column: String,
    pub label_column: String,
    /// When absent, the distinct values of the label column (sorted).
    pub labels: Option<Vec<String>>,
    pub limit: Option<usize>,
    pub file: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("cannot read {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path} has no column named {column:?}")]
    MissingColumn { path: PathBuf, column: String },
    #[error("{path} has no labelled rows to evaluate")]
    Empty { path: PathBuf },
    #[error(transparent)]
    Inference(#[from] InferenceError),
}

#[derive(Debug)]
pub struct EvalReport {
    pub matrix: ConfusionMatrix,
    pub labels: LabelSet,
    pub items: usize,
    /// Rows whose label is not in `--labels`, or whose text or label is empty.
    pub skipped_rows: usize,
    pub seconds: f64,
    pub tokens_decoded: u64,
    pub backend: String,
    pub mean_confidence: f64,
}

impl EvalReport {
    #[allow(clippy::cast_precision_loss)]
    pub fn items_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.items as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// The one-line JSON summary printed last.
    pub fn summary(&self, task: TaskKind) -> serde_json::Value {
        let round = |value: f64| (value * 10_000.0).round() / 10_000.0;
        serde_json::json!({
            "task": task,
            "backend": self.backend,
            "items": self.items,
            "labels": self.labels.len(),
            "skipped_rows": self.skipped_rows,
            "accuracy": round(self.matrix.accuracy()),
            "macro_f1": round(self.matrix.macro_f1()),
            "mean_confidence": round(self.mean_confidence),
            "seconds": round(self.seconds),
            "items_per_second": round(self.items_per_second()),
            "tokens_decoded": self.tokens_decoded,
        })
    }
}

fn read_rows(options: &EvalOptions) -> Result<Vec<(String, String)>, EvalError> {
    let path = &options.file;
    let read_error = |error: &dyn std::fmt::Display| EvalError::Read {
        path: path.clone(),
        message: error.to_string(),
    };
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .from_path(path)
        .map_err(|error| read_error(&error))?;
    let headers = reader
        .headers()
        .map_err(|error| read_error(&error))?
        .clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|header| header.trim() == name)
            .ok_or_else(|| EvalError::MissingColumn {
                path: path.clone(),
                column: name.to_owned(),
            })
    };
    let text_column = column(&options.text_column)?;
    let label_column = column(&options.label_column)?;
    let mut rows = Vec::new();
    for (index, record) in reader.records().enumerate() {
        // Only the position is reported: the csv crate's own message can quote the row.
        let record = record.map_err(|error| EvalError::Read {
            path: path.clone(),
            message: format!(
                "row {} is malformed{}",
                index + 2,
                error
                    .position()
                    .map(|position| format!(" (line {})", position.line()))
                    .unwrap_or_default()
            ),
        })?;
        let text = record.get(text_column).unwrap_or("").trim().to_owned();
        let label = record.get(label_column).unwrap_or("").trim().to_owned();
        rows.push((text, label));
    }
    Ok(rows)
}

/// Classifies the file's rows (up to `limit` usable ones) and measures the result.
pub fn run(backend: &dyn Backend, options: &EvalOptions) -> Result<EvalReport, EvalError> {
    let rows = read_rows(options)?;
    let labels = if let Some(labels) = &options.labels {
        LabelSet::parse(labels.clone())?
    } else {
        let mut distinct: Vec<String> = rows
            .iter()
            .map(|(_, label)| label.clone())
            .filter(|label| !label.is_empty())
            .collect();
        distinct.sort();
        distinct.dedup();
        LabelSet::parse(distinct).map_err(|_| EvalError::Empty {
            path: options.file.clone(),
        })?
    };
    let total_rows = rows.len();
    let mut usable: Vec<(String, String)> = rows
        .into_iter()
        .filter(|(text, label)| !text.is_empty() && labels.as_slice().contains(label))
        .collect();
    let skipped_rows = total_rows - usable.len();
    if let Some(limit) = options.limit {
        usable.truncate(limit);
    }
    if usable.is_empty() {
        return Err(EvalError::Empty {
            path: options.file.clone(),
        });
    }
    let mut matrix = ConfusionMatrix::new(labels.as_slice().to_vec());
    let mut tokens_decoded = 0;
    let mut confidence_sum = 0.0_f64;
    let started = Instant::now();
    for chunk in usable.chunks(CHUNK) {
        let texts: Vec<String> = chunk.iter().map(|(text, _)| text.clone()).collect();
        let classified = backend.classify(options.task, &labels, &texts)?;
        tokens_decoded += classified.tokens_decoded;
        for ((_, gold), result) in chunk.iter().zip(&classified.results) {
            matrix.record(gold, &result.label);
            confidence_sum += f64::from(result.confidence);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let mean_confidence = confidence_sum / usable.len() as f64;
    Ok(EvalReport {
        matrix,
        labels,
        items: usable.len(),
        skipped_rows,
        seconds,
        tokens_decoded,
        backend: backend.describe(),
        mean_confidence,
    })
}
