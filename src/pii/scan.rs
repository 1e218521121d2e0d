//! `rapport pii scan`: JSON lines with a `text` field in, one JSON line of findings out per input
//! line, offsets in characters (Unicode scalar values), the form used to measure the detector.
//!
//! A malformed line does not stop the scan: it gets an `{"error": "line N: …"}` object in its
//! place (so output line K still answers input line K, blank lines aside), the caller is told, and
//! the scan goes on; [`ScanReport::failed`] counts such lines so the command can exit non-zero.
//! Messages name the line and what was wrong, never the text.

use std::io::{BufRead, Read as _, Write};
use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::{Detector, Finding, PiiType};

/// The longest line read, as for JSON-lines imports; a longer one is an error for that line.
pub const MAX_LINE_BYTES: u64 = 32 << 20;

#[derive(Deserialize)]
struct ScanLine {
    text: String,
}

/// One finding as `rapport pii scan` writes it.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct ScannedFinding {
    #[serde(rename = "type")]
    pub kind: PiiType,
    pub start: usize,
    pub end: usize,
    pub confidence: f32,
}

#[derive(Serialize)]
#[serde(untagged)]
enum ScanOutput {
    Findings { findings: Vec<ScannedFinding> },
    Error { error: String },
}

/// A line that could not be scanned: its number (from 1) and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: u64,
    pub message: String,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// What a scan did: lines with text scanned, and lines that could not be.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScanReport {
    pub scanned: u64,
    pub failed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("cannot read the input: {0}")]
    Read(std::io::Error),
    #[error("cannot write the findings: {0}")]
    Write(std::io::Error),
}

/// The findings' spans in characters, computed in one pass over `text` (findings in text order,
/// as `detect` returns them).
pub fn char_spans(text: &str, findings: &[Finding]) -> Vec<Range<usize>> {
    let mut offsets: Vec<(usize, usize)> = findings
        .iter()
        .enumerate()
        .flat_map(|(index, finding)| {
            [
                (finding.span.start, 2 * index),
                (finding.span.end, 2 * index + 1),
            ]
        })
        .collect();
    offsets.sort_unstable();
    let mut converted = vec![0; offsets.len()];
    let mut chars = text.char_indices().peekable();
    let mut counted = 0;
    for (byte_offset, slot) in offsets {
        while chars.next_if(|&(index, _)| index < byte_offset).is_some() {
            counted += 1;
        }
        converted[slot] = counted;
    }
    converted
        .chunks_exact(2)
        .map(|pair| pair[0]..pair[1])
        .collect()
}

/// The findings of one text, as `rapport pii scan` writes them.
pub fn scan_text(detector: &Detector, text: &str) -> Vec<ScannedFinding> {
    let findings = detector.detect(text);
    char_spans(text, &findings)
        .into_iter()
        .zip(&findings)
        .map(|(span, finding)| ScannedFinding {
            kind: finding.kind,
            start: span.start,
            end: span.end,
            confidence: finding.confidence,
        })
        .collect()
}

fn describe(error: &serde_json::Error) -> String {
    if error.classify() == serde_json::error::Category::Syntax {
        // The line number inside a one-line document is always 1; the column is what helps.
        format!("is not valid JSON (column {})", error.column())
    } else {
        crate::records::describe_json_error(error)
    }
}

/// The findings of one line, or what is wrong with it; `None` for a blank line.
fn scan_line(detector: &Detector, line: &[u8]) -> Option<Result<Vec<ScannedFinding>, String>> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    let Ok(line) = std::str::from_utf8(line) else {
        return Some(Err("is not valid UTF-8".to_owned()));
    };
    Some(match serde_json::from_str::<ScanLine>(line) {
        Ok(parsed) => Ok(scan_text(detector, &parsed.text)),
        Err(error) => Err(describe(&error)),
    })
}

/// Scans every line of `input`, writes one JSON line per non-blank input line to `output`, and
/// calls `on_error` for each line that could not be scanned.
pub fn scan_json_lines(
    detector: &Detector,
    input: &mut dyn BufRead,
    output: &mut dyn Write,
    on_error: &mut dyn FnMut(&LineError),
) -> Result<ScanReport, ScanError> {
    let mut report = ScanReport::default();
    let mut buffer = Vec::new();
    let mut line_number = 0u64;
    loop {
        buffer.clear();
        let read = (&mut *input)
            .take(MAX_LINE_BYTES + 1)
            .read_until(b'\n', &mut buffer)
            .map_err(ScanError::Read)?;
        if read == 0 {
            break;
        }
        line_number += 1;
        let too_long = buffer.len() as u64 > MAX_LINE_BYTES && buffer.last() != Some(&b'\n');
        let outcome = if too_long {
            input.skip_until(b'\n').map_err(ScanError::Read)?;
            Some(Err(format!("is longer than {} MiB", MAX_LINE_BYTES >> 20)))
        } else {
            scan_line(detector, &buffer)
        };
        let written = match outcome {
            None => continue,
            Some(Ok(findings)) => {
                report.scanned += 1;
                ScanOutput::Findings { findings }
            }
            Some(Err(message)) => {
                report.failed += 1;
                let error = LineError {
                    line: line_number,
                    message,
                };
                on_error(&error);
                ScanOutput::Error {
                    error: error.to_string(),
                }
            }
        };
        serde_json::to_writer(&mut *output, &written)
            .map_err(|error| ScanError::Write(error.into()))?;
        output.write_all(b"\n").map_err(ScanError::Write)?;
    }
    output.flush().map_err(ScanError::Write)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &str) -> (String, Vec<String>, ScanReport) {
        let mut output = Vec::new();
        let mut errors = Vec::new();
        let report = scan_json_lines(
            &Detector::default(),
            &mut input.as_bytes(),
            &mut output,
            &mut |error| errors.push(error.to_string()),
        )
        .unwrap();
        (String::from_utf8(output).unwrap(), errors, report)
    }

    #[test]
    fn each_line_gets_its_findings_in_character_offsets() {
        let (output, errors, report) = run(concat!(
            "{\"text\": \"Grüße, café: jane@example.com\", \"id\": 7}\n",
            "\n",
            "{\"text\": \"nothing here\"}\r\n",
        ));
        assert!(errors.is_empty());
        assert_eq!(
            report,
            ScanReport {
                scanned: 2,
                failed: 0
            }
        );
        assert_eq!(
            output,
            "{\"findings\":[{\"type\":\"email\",\"start\":13,\"end\":29,\"confidence\":0.99}]}\n{\"findings\":[]}\n"
        );
    }

    #[test]
    fn a_malformed_line_is_reported_by_number_without_its_text_and_the_rest_is_scanned() {
        let (output, errors, report) = run(concat!(
            "{\"text\": \"call +44 20 7946 0958\"}\n",
            "{\"text\": \"jane@example.com\"\n",
            "{\"text\": 4242424242424242}\n",
            "{\"body\": \"jane@example.com\"}\n",
            "{\"text\": \"ok\"}",
        ));
        assert_eq!(
            report,
            ScanReport {
                scanned: 2,
                failed: 3
            }
        );
        assert_eq!(
            errors,
            [
                "line 2: ends before the JSON value is complete",
                "line 3: invalid type, expected a string",
                "line 4: missing field `text`"
            ]
        );
        let lines: Vec<&str> = output.lines().collect();
        assert_eq!(lines.len(), 5);
        assert!(lines[0].contains("\"phone\""));
        assert_eq!(
            lines[2],
            "{\"error\":\"line 3: invalid type, expected a string\"}"
        );
        assert!(!output.contains("jane") && !output.contains("4242"));
        assert_eq!(lines[4], "{\"findings\":[]}");
    }

    #[test]
    fn invalid_utf8_is_an_error_for_that_line() {
        let mut output = Vec::new();
        let mut errors = Vec::new();
        let report = scan_json_lines(
            &Detector::default(),
            &mut &b"{\"text\": \"\xff\"}\n"[..],
            &mut output,
            &mut |error| errors.push(error.to_string()),
        )
        .unwrap();
        assert_eq!(report.failed, 1);
        assert_eq!(errors, ["line 1: is not valid UTF-8"]);
    }

    #[test]
    fn char_spans_match_per_finding_conversion() {
        let text = "Ünïcödé 👋 jane@example.com, +44 20 7946 0958 — DOB: 12/03/1985";
        let findings = Detector::default().detect(text);
        assert_eq!(findings.len(), 3);
        let spans = char_spans(text, &findings);
        for (finding, span) in findings.iter().zip(spans) {
            assert_eq!(finding.char_span(text), span);
            let by_chars: String = text.chars().skip(span.start).take(span.len()).collect();
            assert_eq!(by_chars, finding.value(text));
        }
    }
}
