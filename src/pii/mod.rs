//! PII detection and redaction: one [`Detector`] finds personal data in free text (e-mail
//! addresses, phone numbers, payment cards, IBANs, IP addresses, national identifiers, dates of
//! birth, postal addresses and person names) and returns typed, scored [`Finding`]s; [`redact`]
//! turns findings into masked, tagged or keyed-hash text, and [`PlaceholderMap`] redacts reversibly
//! for the remote inference backend. `rapport pii scan` ([`scan`]) exposes the detector to
//! measurement.
//!
//! Everything here is pure and synchronous. Nothing in this module logs: a finding's span points
//! into personal data, and its text is personal data. Errors name lines and fields, never text.

mod checks;
pub(crate) mod patterns;
pub mod redact;
pub mod scan;

#[cfg(test)]
mod evaluation;

use std::fmt;
use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::audit::{Actor, AuditAction, AuditEvent};
use crate::context::AppContext;
use crate::tenants::Tenant;

pub use checks::{
    aadhaar_valid, iban_valid, luhn_valid, nino_valid, pan_valid, ssn_valid, verhoeff_valid,
};
pub use redact::{redact, PlaceholderMap, RedactionMode};

/// The kinds of personal data the detector knows. The `snake_case` names are stable: they appear in
/// `rapport pii scan` output and in evaluation fixtures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiType {
    Email,
    Phone,
    Card,
    Iban,
    Ip,
    Ssn,
    Aadhaar,
    Pan,
    Nino,
    DateOfBirth,
    Address,
    Person,
}

impl PiiType {
    pub const ALL: [Self; 12] = [
        Self::Email,
        Self::Phone,
        Self::Card,
        Self::Iban,
        Self::Ip,
        Self::Ssn,
        Self::Aadhaar,
        Self::Pan,
        Self::Nino,
        Self::DateOfBirth,
        Self::Address,
        Self::Person,
    ];

    /// The stable `snake_case` name (`date_of_birth`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Phone => "phone",
            Self::Card => "card",
            Self::Iban => "iban",
            Self::Ip => "ip",
            Self::Ssn => "ssn",
            Self::Aadhaar => "aadhaar",
            Self::Pan => "pan",
            Self::Nino => "nino",
            Self::DateOfBirth => "date_of_birth",
            Self::Address => "address",
            Self::Person => "person",
        }
    }

    /// The upper-case word of tags and placeholders (`[DATE_OF_BIRTH]`, `[EMAIL_1]`).
    pub fn tag(self) -> &'static str {
        match self {
            Self::Email => "EMAIL",
            Self::Phone => "PHONE",
            Self::Card => "CARD",
            Self::Iban => "IBAN",
            Self::Ip => "IP",
            Self::Ssn => "SSN",
            Self::Aadhaar => "AADHAAR",
            Self::Pan => "PAN",
            Self::Nino => "NINO",
            Self::DateOfBirth => "DATE_OF_BIRTH",
            Self::Address => "ADDRESS",
            Self::Person => "PERSON",
        }
    }

    /// The type whose [`tag`](Self::tag) is `tag`.
    pub fn from_tag(tag: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.tag() == tag)
    }

    /// Whether every finding of this type passed a check beyond its shape: a check digit (card,
    /// IBAN, Aadhaar), a parse (IP), or published ranges and letter rules (SSN, PAN, NINO).
    pub fn is_validated(self) -> bool {
        matches!(
            self,
            Self::Card | Self::Iban | Self::Ip | Self::Ssn | Self::Aadhaar | Self::Pan | Self::Nino
        )
    }
}

impl fmt::Display for PiiType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One piece of personal data found in a text. `span` is a byte range into the text that was
/// scanned (always on character boundaries); [`Finding::char_span`] converts it to character
/// offsets. `Debug` shows the span, never the text.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub kind: PiiType,
    pub span: Range<usize>,
    /// How sure the detector is, from 0 to 1: about 0.95 or more for checksummed or parsed
    /// values, 0.8–0.9 for strict shapes (e-mail, international phone, SSN), 0.5–0.75 for
    /// heuristics (national phone forms, addresses, names from greetings, dates near "born").
    pub confidence: f32,
}

impl Finding {
    /// The span in Unicode scalar values (what Python's `len` counts) rather than bytes.
    pub fn char_span(&self, text: &str) -> Range<usize> {
        char_offset(text, self.span.start)..char_offset(text, self.span.end)
    }

    /// The found text itself.
    pub fn value<'t>(&self, text: &'t str) -> &'t str {
        text.get(self.span.clone()).unwrap_or_default()
    }
}

/// The number of characters (Unicode scalar values) before `byte_offset` in `text`. An offset past
/// the end counts every character; one inside a character counts only those that end before it.
pub fn char_offset(text: &str, byte_offset: usize) -> usize {
    text.char_indices()
        .take_while(|&(index, _)| index < byte_offset)
        .count()
}

/// What a [`Detector`] is built with.
#[derive(Clone, Default)]
pub struct DetectorOptions {
    /// The tenant's known contact names, matched case-insensitively on word boundaries with high
    /// confidence. Names shorter than three characters are ignored (they match too much).
    pub known_names: Vec<String>,
    /// Findings below this confidence are dropped. 0.5 by default (`None`).
    pub min_confidence: Option<f32>,
}

impl fmt::Debug for DetectorOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DetectorOptions")
            .field("known_names", &self.known_names.len())
            .field("min_confidence", &self.min_confidence)
            .finish()
    }
}

const DEFAULT_MIN_CONFIDENCE: f32 = 0.5;

#[derive(Debug, thiserror::Error)]
pub enum PiiError {
    #[error("the known contact names do not fit in one pattern ({0} names); remove duplicates or very long names")]
    TooManyNames(usize),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
}

/// The PII detector. Build it once (the patterns are compiled once per process; the known-name
/// pattern once per detector) and share it: `detect` takes `&self`.
pub struct Detector {
    known_names: Option<regex::Regex>,
    known_name_count: usize,
    min_confidence: f32,
}

impl fmt::Debug for Detector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Detector")
            .field("known_names", &self.known_name_count)
            .field("min_confidence", &self.min_confidence)
            .finish()
    }
}

impl Default for Detector {
    fn default() -> Self {
        Self {
            known_names: None,
            known_name_count: 0,
            min_confidence: DEFAULT_MIN_CONFIDENCE,
        }
    }
}

impl Detector {
    pub fn new(options: &DetectorOptions) -> Result<Self, PiiError> {
        let (known_names, known_name_count) = patterns::known_names_pattern(&options.known_names)?;
        Ok(Self {
            known_names,
            known_name_count,
            min_confidence: options.min_confidence.unwrap_or(DEFAULT_MIN_CONFIDENCE),
        })
    }

    /// Every piece of personal data in `text`, in text order, without overlaps: where candidates
    /// overlap, a validated one beats an unvalidated one, then the longer wins, then the more
    /// confident.
    pub fn detect(&self, text: &str) -> Vec<Finding> {
        let mut candidates = patterns::candidates(text, self.known_names.as_ref());
        candidates.retain(|candidate| candidate.confidence >= self.min_confidence);
        resolve_overlaps(candidates)
    }

    /// `text` with every finding replaced as `mode` says.
    pub fn redact(&self, text: &str, mode: &RedactionMode<'_>) -> String {
        redact(text, &self.detect(text), mode)
    }
}

/// Keeps the best of overlapping candidates (validated, then longer, then more confident, then
/// earlier) and returns the survivors in text order.
fn resolve_overlaps(mut candidates: Vec<Finding>) -> Vec<Finding> {
    candidates.sort_by(|a, b| {
        b.kind
            .is_validated()
            .cmp(&a.kind.is_validated())
            .then_with(|| b.span.len().cmp(&a.span.len()))
            .then_with(|| b.confidence.total_cmp(&a.confidence))
            .then_with(|| a.span.start.cmp(&b.span.start))
    });
    let mut kept: Vec<Finding> = Vec::with_capacity(candidates.len());
    for candidate in candidates {
        let overlaps = kept.iter().any(|finding| {
            finding.span.start < candidate.span.end && candidate.span.start < finding.span.end
        });
        if !overlaps {
            kept.push(candidate);
        }
    }
    kept.sort_by_key(|finding| finding.span.start);
    kept
}

/// The detector for `tenant`: its contacts' names are the known names. Reading them is a read of
/// personal data, so it is audited (without any name) before the detector is built.
pub fn tenant_detector(
    context: &AppContext,
    actor: &Actor,
    tenant: &Tenant,
) -> Result<Detector, PiiError> {
    let mut known_names = Vec::new();
    context.contacts.for_each(tenant.id, |contact| {
        known_names.push(contact.record.name);
        Ok(())
    })?;
    context.audit(AuditEvent::new(
        Some(tenant.id),
        actor.clone(),
        AuditAction::PersonalDataRead,
        "contact names for PII detection",
    ))?;
    Detector::new(&DetectorOptions {
        known_names,
        min_confidence: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(kind: PiiType, span: Range<usize>, confidence: f32) -> Finding {
        Finding {
            kind,
            span,
            confidence,
        }
    }

    #[test]
    fn char_offsets_count_unicode_scalar_values_not_bytes() {
        let text = "Grüße, café: jane@example.com";
        let findings = Detector::default().detect(text);
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].kind, PiiType::Email);
        assert_eq!(findings[0].span, 16..32);
        assert_eq!(findings[0].char_span(text), 13..29);
        assert_eq!(
            text.chars().skip(13).take(16).collect::<String>(),
            "jane@example.com"
        );
        assert_eq!(char_offset(text, 0), 0);
        assert_eq!(char_offset(text, text.len()), text.chars().count());
        assert_eq!(char_offset("👋 hi", 4), 1);
    }

    #[test]
    fn overlaps_prefer_validated_then_longer_then_more_confident() {
        let resolved = resolve_overlaps(vec![
            finding(PiiType::Phone, 0..19, 0.9),
            finding(PiiType::Card, 0..19, 0.97),
            finding(PiiType::Person, 25..30, 0.6),
            finding(PiiType::Person, 25..35, 0.6),
            finding(PiiType::Address, 40..50, 0.6),
            finding(PiiType::Person, 40..50, 0.95),
        ]);
        let kinds: Vec<(PiiType, Range<usize>)> = resolved
            .iter()
            .map(|finding| (finding.kind, finding.span.clone()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (PiiType::Card, 0..19),
                (PiiType::Person, 25..35),
                (PiiType::Person, 40..50)
            ]
        );
    }

    #[test]
    fn type_names_and_tags_are_stable() {
        let names: Vec<&str> = PiiType::ALL.iter().map(|kind| kind.as_str()).collect();
        assert_eq!(
            names,
            [
                "email",
                "phone",
                "card",
                "iban",
                "ip",
                "ssn",
                "aadhaar",
                "pan",
                "nino",
                "date_of_birth",
                "address",
                "person"
            ]
        );
        for kind in PiiType::ALL {
            assert_eq!(
                serde_json::to_string(&kind).unwrap_or_default(),
                format!("\"{}\"", kind.as_str())
            );
            assert_eq!(PiiType::from_tag(kind.tag()), Some(kind));
        }
    }
}
