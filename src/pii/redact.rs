//! Turning findings into redacted text. Three one-way modes ([`RedactionMode`]: a mask that keeps
//! separators and reveals little, a type tag, a keyed hash that lets equal values be recognised
//! without being readable) and one reversible form for the remote inference backend
//! ([`PlaceholderMap`]: numbered placeholders out, original values back in the reply).

use std::collections::HashMap;
use std::fmt;
use std::fmt::Write as _;
use std::sync::LazyLock;

use regex::Regex;
use zeroize::Zeroize as _;

use super::patterns::pattern;
use super::{Finding, PiiType};
use crate::crypto::{self, SecretKey};

/// The domain label of the keyed hash, so its tokens never equal another index's under one key.
const KEYED_HASH_DOMAIN: &str = "rapport/pii-redaction/v1";

/// How [`redact`] replaces a finding.
#[derive(Clone, Copy)]
pub enum RedactionMode<'k> {
    /// Characters replaced by `*`, separators kept, a little revealed: the first letter of each
    /// part of an e-mail address and its top-level domain (`j***@e******.com`), the last four
    /// digits of a card, the last two of a phone number, an IBAN's country, a name's initials.
    /// The length stays visible.
    Mask,
    /// The type's tag: `[EMAIL]`, `[PHONE]`, `[DATE_OF_BIRTH]`.
    Tag,
    /// The tag with the first 32 bits of an HMAC-SHA256 of the normalised value under the key:
    /// `[EMAIL:3f9a1c2b]`. Equal values (`4242 4242…` and `4242-4242…`) give equal tokens under
    /// one key; without the key, a token cannot be tested against guesses.
    KeyedHash(&'k SecretKey),
}

impl fmt::Debug for RedactionMode<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Mask => "Mask",
            Self::Tag => "Tag",
            Self::KeyedHash(_) => "KeyedHash(..)",
        })
    }
}

/// `text` with each finding replaced as `mode` says. `findings` are those of
/// [`Detector::detect`](super::Detector::detect) on this `text`: in order, without overlaps (a
/// finding that overlaps an earlier one, or does not fit the text, is left out).
pub fn redact(text: &str, findings: &[Finding], mode: &RedactionMode<'_>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut cursor = 0;
    for finding in findings {
        let Some(value) = text.get(finding.span.clone()) else {
            continue;
        };
        if finding.span.start < cursor {
            continue;
        }
        out.push_str(&text[cursor..finding.span.start]);
        match mode {
            RedactionMode::Mask => out.push_str(&mask(finding.kind, value)),
            RedactionMode::Tag => {
                let _ = write!(out, "[{}]", finding.kind.tag());
            }
            RedactionMode::KeyedHash(key) => {
                let digest =
                    crypto::keyed_hash(key, KEYED_HASH_DOMAIN, &identity(finding.kind, value));
                let _ = write!(
                    out,
                    "[{}:{}]",
                    finding.kind.tag(),
                    hex::encode(&digest[..4])
                );
            }
        }
        cursor = finding.span.end;
    }
    out.push_str(&text[cursor..]);
    out
}

/// The value in the form that makes two writings of it equal: digits only for numbers, letters
/// and digits in upper case for codes, lower case with single spaces for words; prefixed by the
/// type, so that equal text of two types stays apart.
fn identity(kind: PiiType, value: &str) -> Vec<u8> {
    let normalised: String = match kind {
        PiiType::Card | PiiType::Phone | PiiType::Ssn | PiiType::Aadhaar => {
            value.chars().filter(char::is_ascii_digit).collect()
        }
        PiiType::Iban | PiiType::Pan | PiiType::Nino => value
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_uppercase())
            .collect(),
        PiiType::Email
        | PiiType::Ip
        | PiiType::DateOfBirth
        | PiiType::Address
        | PiiType::Person => value
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase(),
    };
    let mut identity = Vec::with_capacity(normalised.len() + 16);
    identity.extend_from_slice(kind.as_str().as_bytes());
    identity.push(0);
    identity.extend_from_slice(normalised.as_bytes());
    identity
}

/// Every letter and digit as `*`, except the last `keep_last` digits; other characters kept.
fn mask_keeping_last_digits(value: &str, keep_last: usize) -> String {
    let digits = value.chars().filter(char::is_ascii_digit).count();
    let mut seen = 0;
    value
        .chars()
        .map(|c| {
            if c.is_ascii_digit() {
                seen += 1;
                if seen + keep_last > digits {
                    c
                } else {
                    '*'
                }
            } else if c.is_alphanumeric() {
                '*'
            } else {
                c
            }
        })
        .collect()
}

/// The first character of `word` and a `*` for each letter or digit after it.
fn initial_then_stars(word: &str) -> String {
    let mut chars = word.chars();
    let Some(first) = chars.next() else {
        return String::new();
    };
    std::iter::once(first)
        .chain(chars.map(|c| if c.is_alphanumeric() { '*' } else { c }))
        .collect()
}

fn mask(kind: PiiType, value: &str) -> String {
    match kind {
        PiiType::Email => {
            let Some((local, domain)) = value.rsplit_once('@') else {
                return mask_keeping_last_digits(value, 0);
            };
            let labels: Vec<&str> = domain.split('.').collect();
            let last = labels.len() - 1;
            let domain: Vec<String> = labels
                .iter()
                .enumerate()
                .map(|(index, label)| {
                    if index == last {
                        (*label).to_owned()
                    } else {
                        initial_then_stars(label)
                    }
                })
                .collect();
            format!("{}@{}", initial_then_stars(local), domain.join("."))
        }
        PiiType::Card => mask_keeping_last_digits(value, 4),
        PiiType::Phone => mask_keeping_last_digits(value, 2),
        PiiType::Iban => {
            let country: String = value.chars().take(2).collect();
            let rest: String = value.chars().skip(2).collect();
            format!("{country}{}", mask_keeping_last_digits(&rest, 0))
        }
        PiiType::Person => value
            .split(' ')
            .map(initial_then_stars)
            .collect::<Vec<_>>()
            .join(" "),
        PiiType::Ip
        | PiiType::Ssn
        | PiiType::Aadhaar
        | PiiType::Pan
        | PiiType::Nino
        | PiiType::DateOfBirth
        | PiiType::Address => mask_keeping_last_digits(value, 0),
    }
}

static PLACEHOLDER: LazyLock<Regex> = LazyLock::new(|| pattern(r"\[[A-Z]+(?:_[A-Z]+)*_[0-9]+\]"));

/// A reversible redaction, for text that leaves the appliance and comes back: each distinct value
/// becomes a numbered placeholder of its type (`[EMAIL_1]`, `[PERSON_2]`), the same value always
/// the same placeholder, across every text pseudonymised with one map; [`restore`](Self::restore)
/// puts the values back into the reply. The map holds the originals in memory only, never prints
/// them, and wipes them when dropped.
///
/// A placeholder-shaped string that was already in the original text (`[EMAIL_1]` typed by a
/// customer) would be restored too; such text is rare, and restoring only swaps one personal
/// value of this same conversation for another.
#[derive(Default)]
pub struct PlaceholderMap {
    originals: HashMap<String, String>,
    by_identity: HashMap<Vec<u8>, String>,
    counters: HashMap<PiiType, usize>,
}

impl fmt::Debug for PlaceholderMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlaceholderMap")
            .field("placeholders", &self.originals.len())
            .finish_non_exhaustive()
    }
}

impl Drop for PlaceholderMap {
    fn drop(&mut self) {
        for (_, mut value) in self.originals.drain() {
            value.zeroize();
        }
        for (mut identity, _) in self.by_identity.drain() {
            identity.zeroize();
        }
    }
}

impl PlaceholderMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many distinct values have a placeholder.
    pub fn len(&self) -> usize {
        self.originals.len()
    }

    pub fn is_empty(&self) -> bool {
        self.originals.is_empty()
    }

    /// `text` with each finding replaced by its value's placeholder (see [`redact`] for what
    /// `findings` must be).
    pub fn pseudonymise(&mut self, text: &str, findings: &[Finding]) -> String {
        let mut out = String::with_capacity(text.len());
        let mut cursor = 0;
        for finding in findings {
            let Some(value) = text.get(finding.span.clone()) else {
                continue;
            };
            if finding.span.start < cursor {
                continue;
            }
            out.push_str(&text[cursor..finding.span.start]);
            out.push_str(&self.placeholder(finding.kind, value));
            cursor = finding.span.end;
        }
        out.push_str(&text[cursor..]);
        out
    }

    fn placeholder(&mut self, kind: PiiType, value: &str) -> String {
        let identity = identity(kind, value);
        if let Some(placeholder) = self.by_identity.get(&identity) {
            return placeholder.clone();
        }
        let counter = self.counters.entry(kind).or_insert(0);
        *counter += 1;
        let placeholder = format!("[{}_{}]", kind.tag(), counter);
        self.originals.insert(placeholder.clone(), value.to_owned());
        self.by_identity.insert(identity, placeholder.clone());
        placeholder
    }

    /// `reply` with every placeholder this map handed out replaced by its original value (as first
    /// written). Placeholders the map does not know (a model may invent `[EMAIL_9]`) stay as they
    /// are.
    pub fn restore(&self, reply: &str) -> String {
        PLACEHOLDER
            .replace_all(reply, |captures: &regex::Captures<'_>| {
                let placeholder = &captures[0];
                self.originals
                    .get(placeholder)
                    .cloned()
                    .unwrap_or_else(|| placeholder.to_owned())
            })
            .into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pii::Detector;

    const TEXT: &str =
        "Hi Priya, card 4242 4242 4242 4242, mail jane@example.com, call +44 20 7946 0958.";

    #[test]
    fn mask_keeps_separators_and_reveals_little() {
        let detector = Detector::default();
        assert_eq!(
            detector.redact(TEXT, &RedactionMode::Mask),
            "Hi P****, card **** **** **** 4242, mail j***@e******.com, call +** ** **** **58."
        );
        assert_eq!(mask(PiiType::Iban, "GB82 WEST 1234"), "GB** **** ****");
        assert_eq!(mask(PiiType::Ip, "203.0.113.42"), "***.*.***.**");
        assert_eq!(mask(PiiType::Person, "Tomás O'Brien"), "T**** O'*****");
    }

    #[test]
    fn tag_names_the_type_only() {
        assert_eq!(
            Detector::default().redact(TEXT, &RedactionMode::Tag),
            "Hi [PERSON], card [CARD], mail [EMAIL], call [PHONE]."
        );
    }

    #[test]
    fn keyed_hash_is_stable_per_value_and_key_and_hides_the_value() {
        let key = SecretKey::from_slice(&[7; 32]).unwrap();
        let other_key = SecretKey::from_slice(&[8; 32]).unwrap();
        let detector = Detector::default();
        let text = "4242 4242 4242 4242 and 4242-4242-4242-4242 and jane@example.com";
        let redacted = detector.redact(text, &RedactionMode::KeyedHash(&key));
        let token = Regex::new(r"\[(CARD|EMAIL):([0-9a-f]{8})\]").unwrap();
        let tokens: Vec<(String, String)> = token
            .captures_iter(&redacted)
            .map(|captures| (captures[1].to_owned(), captures[2].to_owned()))
            .collect();
        assert_eq!(tokens.len(), 3, "{redacted}");
        assert_eq!(tokens[0], tokens[1]);
        assert_ne!(tokens[0].1, tokens[2].1);
        assert!(!redacted.contains("4242"));
        assert!(!redacted.contains("jane"));
        assert_ne!(
            redacted,
            detector.redact(text, &RedactionMode::KeyedHash(&other_key))
        );
        assert_eq!(
            redacted,
            detector.redact(text, &RedactionMode::KeyedHash(&key))
        );
    }

    #[test]
    fn placeholders_round_trip_and_repeat_for_the_same_value() {
        let detector = Detector::default();
        let mut map = PlaceholderMap::new();
        let first =
            "Hi Priya, please e-mail jane@example.com or JANE@example.com, not bob@example.org.";
        let pseudonymised = map.pseudonymise(first, &detector.detect(first));
        assert_eq!(
            pseudonymised,
            "Hi [PERSON_1], please e-mail [EMAIL_1] or [EMAIL_1], not [EMAIL_2]."
        );
        let second = "Card 4242 4242 4242 4242; reply to jane@example.com.";
        assert_eq!(
            map.pseudonymise(second, &detector.detect(second)),
            "Card [CARD_1]; reply to [EMAIL_1]."
        );
        assert_eq!(map.len(), 4);
        let reply =
            "Dear [PERSON_1], we wrote to [EMAIL_1] about card [CARD_1]; [EMAIL_7] is unknown.";
        assert_eq!(
            map.restore(reply),
            "Dear Priya, we wrote to jane@example.com about card 4242 4242 4242 4242; [EMAIL_7] is unknown."
        );
        assert_eq!(map.restore(&pseudonymised), first.replace("JANE@", "jane@"));
        assert!(!format!("{map:?}").contains("jane"));
    }
}
