//! The detectors: each finds candidates of one kind in a text and scores them. Patterns are
//! compiled once per process (`LazyLock`); where a checksum or a range decides, a pattern only
//! proposes and a function of `checks` disposes. Digit sequences (cards, Aadhaar, SSN) are read as
//! runs of digit groups so that a check is tried on whole groups only, never on a slice cut out
//! of the middle of a longer number.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use std::sync::LazyLock;

use chrono::{Datelike as _, NaiveDate};
use regex::{Regex, RegexBuilder};

use super::checks;
use super::{Finding, PiiError, PiiType};

/// Compiles one of the crate's constant patterns (these below, and the lead patterns in
/// `analysis::lead`); a unit test compiles every one of them.
pub(crate) fn pattern(source: &str) -> Regex {
    Regex::new(source).unwrap_or_else(|error| invalid_pattern(&error))
}

#[allow(clippy::panic)] // The patterns are constants, each compiled by a unit test; this cannot run.
fn invalid_pattern(error: &regex::Error) -> Regex {
    panic!("a built-in pattern does not compile: {error}")
}

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    pattern(
        r"(?i)[a-z0-9](?:[a-z0-9._%+-]*[a-z0-9_%+-])?@(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,24}",
    )
});
static DIGIT_RUN: LazyLock<Regex> = LazyLock::new(|| pattern(r"[0-9]+(?:[ -][0-9]+)*"));
static PHONE_INTERNATIONAL: LazyLock<Regex> =
    LazyLock::new(|| pattern(r"(?:\+|\b00)[1-9][0-9]{0,3}(?:[ .-]?\(?[0-9]{1,5}\)?){1,7}"));
static PHONE_PARENTHESISED: LazyLock<Regex> =
    LazyLock::new(|| pattern(r"\([0-9]{2,5}\)[ -]?[0-9]{3,4}[ .-]?[0-9]{3,4}"));
static PHONE_NANP: LazyLock<Regex> =
    LazyLock::new(|| pattern(r"\b[2-9][0-9]{2}[-. ][2-9][0-9]{2}[-. ][0-9]{4}\b"));
static PHONE_TRUNK: LazyLock<Regex> =
    LazyLock::new(|| pattern(r"\b0[1-9][0-9]{0,4}(?:[ .-]?[0-9]{2,4}){1,4}\b"));
/// Words before a number that make it an order, ticket or similar reference, not personal data.
static REFERENCE_CONTEXT: LazyLock<Regex> = LazyLock::new(|| {
    pattern(
        r"(?i)(?:\b(?:order|ticket|invoice|ref|reference|case|tracking|transaction|serial|sku|po|parcel|shipment)\b[^0-9\n]{0,12}|#\s*)$",
    )
});
static IBAN_START: LazyLock<Regex> = LazyLock::new(|| pattern(r"(?i)\b[a-z]{2}[0-9]{2}"));
static IPV4: LazyLock<Regex> = LazyLock::new(|| pattern(r"\b(?:[0-9]{1,3}\.){3}[0-9]{1,3}\b"));
static IPV6: LazyLock<Regex> =
    LazyLock::new(|| pattern(r"(?i)[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}(?:\.[0-9]{1,3}){0,3}"));
static VERSION_CONTEXT: LazyLock<Regex> = LazyLock::new(|| {
    pattern(
        r"(?i)\b(?:version|ver|v|release|build|firmware|update|app|rev|(?:up|down)grad(?:e|ed|ing)(?:\s+\S+){0,3}\s+to)\.?\s*:?\s*$",
    )
});
static SSN_CONTEXT: LazyLock<Regex> =
    LazyLock::new(|| pattern(r"(?i)\b(?:ssn|ss#|social\s+security)"));
static AADHAAR_CONTEXT: LazyLock<Regex> =
    LazyLock::new(|| pattern(r"(?i)\b(?:aadhaa?r|uidai|uid)\b"));
static PAN: LazyLock<Regex> = LazyLock::new(|| pattern(r"\b[A-Z]{5}[0-9]{4}[A-Z]\b"));
static NINO: LazyLock<Regex> =
    LazyLock::new(|| pattern(r"\b[A-Z]{2} ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D]\b"));

const MONTHS: &str = r"(jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)";
static DATE_NUMERIC: LazyLock<Regex> =
    LazyLock::new(|| pattern(r"\b([0-9]{1,2})([/.-])([0-9]{1,2})([/.-])([0-9]{4}|[0-9]{2})\b"));
static DATE_ISO: LazyLock<Regex> =
    LazyLock::new(|| pattern(r"\b([0-9]{4})([/.-])([0-9]{1,2})([/.-])([0-9]{1,2})\b"));
static DATE_DAY_MONTH: LazyLock<Regex> = LazyLock::new(|| {
    pattern(&format!(
        r"(?i)\b([0-9]{{1,2}})(?:st|nd|rd|th)?(?:\s+of)?\s+{MONTHS}\.?,?\s+([0-9]{{4}})\b"
    ))
});
static DATE_MONTH_DAY: LazyLock<Regex> = LazyLock::new(|| {
    pattern(&format!(
        r"(?i)\b{MONTHS}\.?\s+([0-9]{{1,2}})(?:st|nd|rd|th)?,?\s+([0-9]{{4}})\b"
    ))
});
static BIRTH_CONTEXT: LazyLock<Regex> = LazyLock::new(|| {
    pattern(r"(?i)\b(?:born|d\.?o\.?b|date\s+of\s+birth|birth\s*date|birthday|b-day)\b\.?")
});

const STREET_TYPES: &str = "Street|St|Road|Rd|Avenue|Ave|Lane|Ln|Drive|Dr|Boulevard|Blvd|Way|Court|Ct|Place|Pl|Close|Crescent|Cres|Terrace|Square|Sq|Highway|Hwy|Parkway|Pkwy|Gardens|Grove|Row|Mews|Circle|Cir|Trail|Walk";
static STREET: LazyLock<Regex> = LazyLock::new(|| {
    pattern(&format!(
        r"\b[0-9]{{1,5}}[A-Za-z]?(?:[-/][0-9]{{1,5}})?,?[ \t]+(?:\p{{Lu}}[\p{{L}}'’.-]*[ \t]+){{1,4}}(?:{STREET_TYPES})\b\.?"
    ))
});
static STREET_NUMBER_LAST: LazyLock<Regex> = LazyLock::new(|| {
    pattern(
        r"\b\p{Lu}\p{Ll}+(?:straße|strasse|str\.|weg|gasse|platz|allee)[ \t]+[0-9]{1,4}[a-z]?\b",
    )
});
static UK_POSTCODE: LazyLock<Regex> = LazyLock::new(|| {
    pattern(r"\b[A-PR-UWYZ][A-HK-Y]?[0-9][0-9A-HJKPSTUW]? ?[0-9][ABD-HJLNP-UW-Z]{2}\b")
});
static US_ZIP: LazyLock<Regex> = LazyLock::new(|| {
    pattern(
        r"\b(?:AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY)[ \t]+[0-9]{5}(?:-[0-9]{4})?\b",
    )
});
/// What may stand between two parts of one address: commas, line breaks, a town's name.
static ADDRESS_GAP: LazyLock<Regex> =
    LazyLock::new(|| pattern(r"^[ \t]*,?[ \t\r\n]*(?:\p{Lu}[\p{L}'’.-]*[ \t]*,?[ \t\r\n]*){0,3}$"));

const NAME: &str = r"(?P<name>\p{Lu}\p{Ll}+(?:\p{Lu}\p{Ll}+)?(?:['’-]\p{Lu}\p{Ll}+)?(?:[ \t]+\p{Lu}(?:\p{Ll}+(?:\p{Lu}\p{Ll}+)?(?:['’-]\p{Lu}\p{Ll}+)?|['’]\p{Lu}\p{Ll}+)){0,2})";
static GREETING_NAME: LazyLock<Regex> = LazyLock::new(|| {
    pattern(&format!(
        r"(?:(?i:\b(?:hi|hello|hey|dear|good\s+(?:morning|afternoon|evening)))[ \t]+|(?i:\b(?:thanks|thank\s+you|many\s+thanks|cheers|regards|best\s+regards|kind\s+regards|warm\s+regards|best\s+wishes|best|sincerely|yours\s+sincerely|yours\s+truly|all\s+the\s+best))[ \t]*(?:,[ \t]*(?:\r?\n[ \t]*)?|\r?\n[ \t]*)|(?i:\b(?:thanks|thank\s+you|many\s+thanks|cheers))[ \t]+){NAME}"
    ))
});
static INTRODUCED_NAME: LazyLock<Regex> = LazyLock::new(|| {
    pattern(&format!(
        r"(?i:\b(?:my\s+name\s+is|this\s+is|name:|spoke\s+(?:to|with)|speaking\s+with|contact\s+person\s+is))[ \t]+{NAME}"
    ))
});
static TITLED_NAME: LazyLock<Regex> =
    LazyLock::new(|| pattern(&format!(r"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof)\.?[ \t]+{NAME}")));

/// Capitalised words that follow greetings and sign-offs without being names.
const NOT_NAMES: &[&str] = &[
    "a",
    "about",
    "account",
    "admin",
    "advance",
    "afternoon",
    "again",
    "agent",
    "all",
    "an",
    "and",
    "april",
    "as",
    "assistant",
    "at",
    "attached",
    "august",
    "bank",
    "below",
    "best",
    "billing",
    "bot",
    "both",
    "by",
    "card",
    "cheers",
    "client",
    "colleague",
    "colleagues",
    "company",
    "customer",
    "customers",
    "dear",
    "december",
    "desk",
    "email",
    "evening",
    "everybody",
    "everyone",
    "february",
    "finance",
    "folks",
    "for",
    "friday",
    "friend",
    "friends",
    "from",
    "good",
    "great",
    "guys",
    "happy",
    "hello",
    "help",
    "hey",
    "hi",
    "i",
    "in",
    "invoice",
    "is",
    "it",
    "january",
    "july",
    "just",
    "kind",
    "madam",
    "mail",
    "manager",
    "march",
    "miss",
    "monday",
    "morning",
    "mr",
    "mrs",
    "ms",
    "much",
    "mx",
    "my",
    "no",
    "not",
    "november",
    "ok",
    "okay",
    "on",
    "order",
    "our",
    "payment",
    "per",
    "phone",
    "please",
    "prof",
    "dr",
    "quick",
    "regards",
    "regarding",
    "re",
    "sales",
    "saturday",
    "september",
    "service",
    "sincerely",
    "sir",
    "so",
    "sunday",
    "support",
    "team",
    "thank",
    "thanks",
    "that",
    "the",
    "there",
    "this",
    "thursday",
    "ticket",
    "to",
    "today",
    "tomorrow",
    "tuesday",
    "update",
    "urgent",
    "valued",
    "very",
    "we",
    "wednesday",
    "with",
    "yes",
    "you",
    "your",
    "october",
];

/// Words that make a signed-off "name" an organisation or a function, not a person.
const ORGANISATION_WORDS: &[&str] = &[
    "bank",
    "billing",
    "corp",
    "desk",
    "gmbh",
    "group",
    "inc",
    "llc",
    "ltd",
    "sales",
    "services",
    "support",
    "team",
    "technologies",
];

/// Every candidate in `text`, overlapping and unfiltered.
pub fn candidates(text: &str, known_names: Option<&Regex>) -> Vec<Finding> {
    let mut found = Vec::new();
    emails(text, &mut found);
    digit_runs(text, &mut found);
    phones(text, &mut found);
    ibans(text, &mut found);
    ip_addresses(text, &mut found);
    letter_identifiers(text, &mut found);
    dates_of_birth(text, &mut found);
    addresses(text, &mut found);
    people(text, known_names, &mut found);
    found
}

fn push(found: &mut Vec<Finding>, kind: PiiType, span: Range<usize>, confidence: f32) {
    found.push(Finding {
        kind,
        span,
        confidence,
    });
}

fn char_before(text: &str, index: usize) -> Option<char> {
    text.get(..index).and_then(|head| head.chars().next_back())
}

fn char_after(text: &str, index: usize) -> Option<char> {
    text.get(index..).and_then(|tail| tail.chars().next())
}

/// Up to `max_bytes` of text ending at `end`, cut on a character boundary.
fn window_before(text: &str, end: usize, max_bytes: usize) -> &str {
    let mut start = end.saturating_sub(max_bytes);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text.get(start..end).unwrap_or_default()
}

/// Up to `max_bytes` of text starting at `start`, cut on a character boundary.
fn window_after(text: &str, start: usize, max_bytes: usize) -> &str {
    let mut end = (start + max_bytes).min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(start..end).unwrap_or_default()
}

/// Whether a number may start at `start`: not glued to a word, a sign, or a decimal point.
fn free_on_left(text: &str, start: usize) -> bool {
    match char_before(text, start) {
        Some(c) if c.is_alphanumeric() || "+_/@\\".contains(c) => false,
        Some('.' | ',' | ':') => !char_before(text, start - 1).is_some_and(|c| c.is_ascii_digit()),
        _ => true,
    }
}

/// Whether a number may end at `end`: not glued to a word, or continued after a point.
fn free_on_right(text: &str, end: usize) -> bool {
    match char_after(text, end) {
        Some(c) if c.is_alphanumeric() || "_/@\\".contains(c) => false,
        Some('.' | ',' | ':' | '-') => {
            !char_after(text, end + 1).is_some_and(|c| c.is_ascii_digit())
        }
        _ => true,
    }
}

fn is_reference(text: &str, start: usize) -> bool {
    REFERENCE_CONTEXT.is_match(window_before(text, start, 40))
}

fn emails(text: &str, found: &mut Vec<Finding>) {
    for email in EMAIL.find_iter(text) {
        let glued_left = char_before(text, email.start())
            .is_some_and(|c| c.is_alphanumeric() || "._%+-".contains(c));
        let glued_right = char_after(text, email.end()).is_some_and(char::is_alphanumeric);
        if !glued_left && !glued_right {
            push(found, PiiType::Email, email.range(), 0.99);
        }
    }
}

/// A maximal run of digit groups joined by single spaces or dashes.
struct DigitRun {
    groups: Vec<Range<usize>>,
    separators: Vec<u8>,
    free_left: bool,
    free_right: bool,
}

impl DigitRun {
    fn parse(text: &str, span: Range<usize>) -> Self {
        let bytes = text.as_bytes();
        let mut groups = Vec::new();
        let mut separators = Vec::new();
        let mut group_start = span.start;
        for index in span.clone() {
            if !bytes[index].is_ascii_digit() {
                groups.push(group_start..index);
                separators.push(bytes[index]);
                group_start = index + 1;
            }
        }
        groups.push(group_start..span.end);
        Self {
            groups,
            separators,
            free_left: free_on_left(text, span.start),
            free_right: free_on_right(text, span.end),
        }
    }

    fn digits(&self, text: &str, groups: Range<usize>) -> Vec<u8> {
        self.groups[groups]
            .iter()
            .flat_map(|group| text.as_bytes()[group.clone()].iter().copied())
            .collect()
    }

    /// Whether groups `first..=last` may stand as one number: same separator throughout, and
    /// free on each side that is an end of the run.
    fn window_ok(&self, first: usize, last: usize) -> bool {
        let separators = &self.separators[first..last];
        separators
            .iter()
            .all(|&separator| separator == separators[0])
            && (first > 0 || self.free_left)
            && (last + 1 < self.groups.len() || self.free_right)
    }

    fn span(&self, first: usize, last: usize) -> Range<usize> {
        self.groups[first].start..self.groups[last].end
    }

    fn whole(&self) -> bool {
        self.free_left && self.free_right
    }
}

fn digit_runs(text: &str, found: &mut Vec<Finding>) {
    for run in DIGIT_RUN.find_iter(text) {
        let run_start = run.start();
        let run = DigitRun::parse(text, run.range());
        cards(text, &run, found);
        if run.whole() && !is_reference(text, run_start) {
            aadhaar(text, &run, found);
            ssn(text, &run, found);
        }
    }
}

/// Payment cards: 13–19 digits on group boundaries, a card network's first digit, Luhn.
fn cards(text: &str, run: &DigitRun, found: &mut Vec<Finding>) {
    let count = run.groups.len();
    let mut first = 0;
    while first < count {
        let mut matched = None;
        // A card has at most 19 digits, so at most 19 groups: this bounds the work per run.
        let max_last = (first + 18).min(count - 1);
        for last in (first..=max_last).rev() {
            let lengths: Vec<usize> = run.groups[first..=last].iter().map(Range::len).collect();
            let digit_count: usize = lengths.iter().sum();
            if digit_count < 13 {
                break;
            }
            let grouped_like_a_card =
                lengths.len() == 1 || lengths.iter().all(|length| (3..=6).contains(length));
            if digit_count > 19 || !grouped_like_a_card || !run.window_ok(first, last) {
                continue;
            }
            let digits = run.digits(text, first..last + 1);
            if (b'2'..=b'6').contains(&digits[0]) && checks::luhn_valid(&digits) {
                matched = Some(last);
                break;
            }
        }
        if let Some(last) = matched {
            push(found, PiiType::Card, run.span(first, last), 0.97);
            first = last + 1;
        } else {
            first += 1;
        }
    }
}

/// Aadhaar: the whole run is 12 digits, alone or as three groups of four; Verhoeff.
fn aadhaar(text: &str, run: &DigitRun, found: &mut Vec<Finding>) {
    let lengths: Vec<usize> = run.groups.iter().map(Range::len).collect();
    let grouped = lengths == [4, 4, 4] && run.window_ok(0, 2);
    if !(grouped || lengths == [12]) {
        return;
    }
    let digits = run.digits(text, 0..run.groups.len());
    if !checks::aadhaar_valid(&digits) {
        return;
    }
    let span = run.span(0, run.groups.len() - 1);
    let named = AADHAAR_CONTEXT.is_match(window_before(text, span.start, 40));
    let confidence = if grouped || named { 0.95 } else { 0.6 };
    push(found, PiiType::Aadhaar, span, confidence);
}

/// US SSN: the whole run is 3-2-4 digits (dashes or spaces), or 9 digits after "SSN"; issued
/// ranges only.
fn ssn(text: &str, run: &DigitRun, found: &mut Vec<Finding>) {
    let lengths: Vec<usize> = run.groups.iter().map(Range::len).collect();
    let span = run.span(0, run.groups.len() - 1);
    let named = SSN_CONTEXT.is_match(window_before(text, span.start, 40));
    let confidence = match lengths.as_slice() {
        [3, 2, 4] if run.window_ok(0, 2) => {
            if named || run.separators[0] == b'-' {
                0.9
            } else {
                0.7
            }
        }
        [9] if named => 0.85,
        _ => return,
    };
    if checks::ssn_valid(&run.digits(text, 0..run.groups.len())) {
        push(found, PiiType::Ssn, span, confidence);
    }
}

/// The byte offsets just after each digit group of a phone-shaped match, with the number of
/// digits up to there; a trailing group that makes the number too long is dropped, not the whole.
fn digit_group_ends(candidate: &str) -> Vec<(usize, usize)> {
    let mut ends = Vec::new();
    let mut digits = 0;
    let bytes = candidate.as_bytes();
    for (index, byte) in bytes.iter().enumerate() {
        if byte.is_ascii_digit() {
            digits += 1;
            let next_is_digit = bytes.get(index + 1).is_some_and(u8::is_ascii_digit);
            if !next_is_digit {
                ends.push((index + 1, digits));
                // "(415)" may close a group; both ends are offered, the closed one tried first.
                if bytes.get(index + 1) == Some(&b')') {
                    ends.push((index + 2, digits));
                }
            }
        }
    }
    ends
}

fn balanced(candidate: &str) -> bool {
    let opened = candidate.matches('(').count();
    opened == candidate.matches(')').count() && opened <= 1
}

/// The longest prefix of the match at `start` whose digits fit `digit_range`, ends free of other
/// digits and letters, and has balanced parentheses.
fn phone_end(
    text: &str,
    start: usize,
    candidate: &str,
    digit_range: Range<usize>,
    discount: usize,
) -> Option<usize> {
    digit_group_ends(candidate)
        .into_iter()
        .rev()
        .find(|&(end, digits)| {
            digit_range.contains(&digits.saturating_sub(discount))
                && balanced(&candidate[..end])
                && !candidate[..end].contains("  ")
                && free_on_right(text, start + end)
        })
        .map(|(end, _)| start + end)
}

fn phones(text: &str, found: &mut Vec<Finding>) {
    for candidate in PHONE_INTERNATIONAL.find_iter(text) {
        let start = candidate.start();
        let glued = char_before(text, start).is_some_and(char::is_alphanumeric);
        // A "(0)" trunk prefix inside an international number is not dialled, so not counted.
        let discount = usize::from(candidate.as_str().contains("(0)"));
        if glued {
            continue;
        }
        if let Some(end) = phone_end(text, start, candidate.as_str(), 8..16, discount) {
            push(found, PiiType::Phone, start..end, 0.9);
        }
    }
    for candidate in PHONE_PARENTHESISED.find_iter(text) {
        let start = candidate.start();
        if char_before(text, start).is_some_and(|c| c.is_alphanumeric() || c == '+')
            || is_reference(text, start)
        {
            continue;
        }
        if let Some(end) = phone_end(text, start, candidate.as_str(), 9..12, 0) {
            push(found, PiiType::Phone, start..end, 0.8);
        }
    }
    for candidate in PHONE_NANP.find_iter(text) {
        let bytes = candidate.as_str().as_bytes();
        let same_separator = bytes[3] == bytes[7];
        if !same_separator
            || !free_on_left(text, candidate.start())
            || !free_on_right(text, candidate.end())
            || is_reference(text, candidate.start())
        {
            continue;
        }
        let confidence = if bytes[3] == b' ' { 0.6 } else { 0.75 };
        push(found, PiiType::Phone, candidate.range(), confidence);
    }
    for candidate in PHONE_TRUNK.find_iter(text) {
        let start = candidate.start();
        if !free_on_left(text, start) || is_reference(text, start) {
            continue;
        }
        let Some(end) = phone_end(text, start, candidate.as_str(), 9..13, 0) else {
            continue;
        };
        let number = &text[start..end];
        let separated = number.contains([' ', '-', '.']);
        let digits = number.bytes().filter(u8::is_ascii_digit).count();
        if separated {
            push(found, PiiType::Phone, start..end, 0.75);
        } else if (10..=11).contains(&digits) {
            push(found, PiiType::Phone, start..end, 0.6);
        }
    }
}

/// IBANs: a country that issues them, exactly its length of letters and digits (single spaces
/// allowed between them), then mod 97.
fn ibans(text: &str, found: &mut Vec<Finding>) {
    let bytes = text.as_bytes();
    for start in IBAN_START
        .find_iter(text)
        .map(|candidate| candidate.start())
    {
        let country = [
            bytes[start].to_ascii_uppercase(),
            bytes[start + 1].to_ascii_uppercase(),
        ];
        let Some(length) = checks::iban_length(&country) else {
            continue;
        };
        let mut compact = Vec::with_capacity(length);
        let mut index = start;
        let mut end = start;
        while index < bytes.len() && compact.len() < length {
            let byte = bytes[index];
            if byte.is_ascii_alphanumeric() {
                compact.push(byte.to_ascii_uppercase());
                index += 1;
                end = index;
            } else if byte == b' '
                && bytes[index - 1].is_ascii_alphanumeric()
                && bytes.get(index + 1).is_some_and(u8::is_ascii_alphanumeric)
            {
                index += 1;
            } else {
                break;
            }
        }
        let glued_right = char_after(text, end).is_some_and(char::is_alphanumeric);
        if compact.len() == length && !glued_right && checks::iban_valid(&compact) {
            push(found, PiiType::Iban, start..end, 0.98);
        }
    }
}

fn ip_addresses(text: &str, found: &mut Vec<Finding>) {
    for candidate in IPV4.find_iter(text) {
        let (start, end) = (candidate.start(), candidate.end());
        let looks_like_version = VERSION_CONTEXT.is_match(window_before(text, start, 40));
        if candidate.as_str().parse::<Ipv4Addr>().is_ok()
            && free_on_left(text, start)
            && free_on_right(text, end)
            && !looks_like_version
        {
            push(found, PiiType::Ip, start..end, 0.95);
        }
    }
    for candidate in IPV6.find_iter(text) {
        let value = candidate.as_str();
        let hex_digits = value.bytes().filter(u8::is_ascii_hexdigit).count();
        let glued_left = char_before(text, candidate.start())
            .is_some_and(|c| c.is_alphanumeric() || c == ':' || c == '.');
        let glued_right =
            char_after(text, candidate.end()).is_some_and(|c| c.is_alphanumeric() || c == ':');
        if hex_digits >= 3 && !glued_left && !glued_right && value.parse::<Ipv6Addr>().is_ok() {
            push(found, PiiType::Ip, candidate.range(), 0.95);
        }
    }
}

/// PAN and NINO: letters and digits in a fixed shape, with the issuers' letter rules.
fn letter_identifiers(text: &str, found: &mut Vec<Finding>) {
    for candidate in PAN.find_iter(text) {
        if checks::pan_valid(candidate.as_str().as_bytes()) {
            push(found, PiiType::Pan, candidate.range(), 0.9);
        }
    }
    for candidate in NINO.find_iter(text) {
        let compact: Vec<u8> = candidate
            .as_str()
            .bytes()
            .filter(|byte| *byte != b' ')
            .collect();
        if checks::nino_valid(&compact) {
            push(found, PiiType::Nino, candidate.range(), 0.9);
        }
    }
}

fn month_number(name: &str) -> Option<u32> {
    let prefix = name.get(..3)?.to_ascii_lowercase();
    let months = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    months
        .iter()
        .position(|month| *month == prefix)
        .and_then(|index| u32::try_from(index + 1).ok())
}

/// A real date from 1900 until ten years ago: customers and their contacts are not toddlers, and
/// a recent date near "birthday" is an event ("the birthday party on 12/12"), not a birth.
fn plausible_birth_date(year: i32, month: u32, day: u32) -> bool {
    let latest = chrono::Utc::now().year() - MIN_AGE_YEARS;
    (1900..=latest).contains(&year) && NaiveDate::from_ymd_opt(year, month, day).is_some()
}

const MIN_AGE_YEARS: i32 = 10;

fn full_year(text: &str) -> Option<i32> {
    let year: i32 = text.parse().ok()?;
    if text.len() == 2 {
        // Two-digit years of birth: the ones not yet reached this century are the last.
        let this_year = chrono::Utc::now().year() % 100;
        Some(if year <= this_year {
            2000 + year
        } else {
            1900 + year
        })
    } else {
        Some(year)
    }
}

/// Every well-formed date in `text` that could be a date of birth, as byte spans.
fn dates(text: &str) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    let number = |captures: &regex::Captures<'_>, group: usize| -> Option<u32> {
        captures.get(group)?.as_str().parse().ok()
    };
    for captures in DATE_NUMERIC.captures_iter(text) {
        let (Some(first), Some(second), Some(year)) = (
            number(&captures, 1),
            number(&captures, 3),
            captures.get(5).and_then(|year| full_year(year.as_str())),
        ) else {
            continue;
        };
        let same_separator =
            captures.get(2).map(|m| m.as_str()) == captures.get(4).map(|m| m.as_str());
        let valid =
            plausible_birth_date(year, second, first) || plausible_birth_date(year, first, second);
        if let (true, true, Some(whole)) = (same_separator, valid, captures.get(0)) {
            spans.push(whole.range());
        }
    }
    for captures in DATE_ISO.captures_iter(text) {
        let (Some(year), Some(month), Some(day)) = (
            captures.get(1).and_then(|year| year.as_str().parse().ok()),
            number(&captures, 3),
            number(&captures, 5),
        ) else {
            continue;
        };
        let same_separator =
            captures.get(2).map(|m| m.as_str()) == captures.get(4).map(|m| m.as_str());
        if let (true, true, Some(whole)) = (
            same_separator,
            plausible_birth_date(year, month, day),
            captures.get(0),
        ) {
            spans.push(whole.range());
        }
    }
    for (regex, day_group, month_group) in [(&*DATE_DAY_MONTH, 1, 2), (&*DATE_MONTH_DAY, 2, 1)] {
        for captures in regex.captures_iter(text) {
            let (Some(day), Some(month), Some(year)) = (
                number(&captures, day_group),
                captures
                    .get(month_group)
                    .and_then(|month| month_number(month.as_str())),
                captures.get(3).and_then(|year| year.as_str().parse().ok()),
            ) else {
                continue;
            };
            if let (true, Some(whole)) = (plausible_birth_date(year, month, day), captures.get(0)) {
                spans.push(whole.range());
            }
        }
    }
    spans
}

/// Dates that a birth word ("born", "DOB", "date of birth", "birthday") introduces closely, in
/// the same sentence, or follows right after.
fn dates_of_birth(text: &str, found: &mut Vec<Finding>) {
    for span in dates(text) {
        let before = window_before(text, span.start, 48);
        let confidence = if let Some(keyword) = BIRTH_CONTEXT.find_iter(before).last() {
            let between = &before[keyword.end()..];
            let same_sentence = !between.contains(['\n', '!', '?']) && !between.contains(". ");
            match (same_sentence, between.len()) {
                (true, 0..=24) => 0.85,
                (true, _) => 0.7,
                (false, _) => continue,
            }
        } else {
            let after = window_after(text, span.end, 24);
            match BIRTH_CONTEXT.find(after) {
                Some(keyword) if !after[..keyword.start()].contains(['\n', '.', '!', '?']) => 0.7,
                _ => continue,
            }
        };
        push(found, PiiType::DateOfBirth, span, confidence);
    }
}

/// Street lines, UK postcodes and US state-plus-ZIP, with the parts of one address (street,
/// town, postcode) merged into one finding when only commas and a town's name stand between.
fn addresses(text: &str, found: &mut Vec<Finding>) {
    let mut parts: Vec<(Range<usize>, f32)> = Vec::new();
    for candidate in STREET.find_iter(text) {
        parts.push((candidate.range(), 0.65));
    }
    for candidate in STREET_NUMBER_LAST.find_iter(text) {
        parts.push((candidate.range(), 0.6));
    }
    for candidate in UK_POSTCODE.find_iter(text) {
        parts.push((candidate.range(), 0.7));
    }
    for candidate in US_ZIP.find_iter(text) {
        parts.push((candidate.range(), 0.7));
    }
    parts.sort_by_key(|(span, _)| span.start);
    let mut merged: Vec<(Range<usize>, f32)> = Vec::new();
    for (span, confidence) in parts {
        if let Some((last, last_confidence)) = merged.last_mut() {
            let joins = span.start <= last.end
                || (span.start - last.end <= 40
                    && ADDRESS_GAP.is_match(&text[last.end..span.start]));
            if joins {
                last.end = last.end.max(span.end);
                // Two parts that agree make the whole more likely an address than either.
                *last_confidence = (last_confidence.max(confidence) + 0.1).min(0.8);
                continue;
            }
        }
        merged.push((span, confidence));
    }
    for (span, confidence) in merged {
        push(found, PiiType::Address, span, confidence);
    }
}

/// The part of a heuristic name match that is a name: leading non-names refuse it, trailing
/// ones are cut, and an organisation word anywhere refuses it.
fn name_span(text: &str, name: &regex::Match<'_>) -> Option<Range<usize>> {
    let mut words: Vec<Range<usize>> = Vec::new();
    let mut offset = name.start();
    for word in name.as_str().split([' ', '\t']) {
        if !word.is_empty() {
            words.push(offset..offset + word.len());
        }
        offset += word.len() + 1;
    }
    let lower = |span: &Range<usize>| text[span.clone()].to_lowercase();
    if words
        .iter()
        .any(|word| ORGANISATION_WORDS.contains(&lower(word).as_str()))
    {
        return None;
    }
    while words
        .last()
        .is_some_and(|word| NOT_NAMES.contains(&lower(word).as_str()))
    {
        words.pop();
    }
    let first = words.first()?;
    if NOT_NAMES.contains(&lower(first).as_str()) {
        return None;
    }
    Some(first.start..words.last()?.end)
}

fn people(text: &str, known_names: Option<&Regex>, found: &mut Vec<Finding>) {
    if let Some(known_names) = known_names {
        for name in known_names.find_iter(text) {
            let glued = char_before(text, name.start()).is_some_and(char::is_alphanumeric)
                || char_after(text, name.end()).is_some_and(char::is_alphanumeric);
            if !glued {
                push(found, PiiType::Person, name.range(), 0.95);
            }
        }
    }
    for (regex, confidence) in [
        (&*GREETING_NAME, 0.6),
        (&*INTRODUCED_NAME, 0.7),
        (&*TITLED_NAME, 0.75),
    ] {
        for captures in regex.captures_iter(text) {
            if let Some(span) = captures
                .name("name")
                .and_then(|name| name_span(text, &name))
            {
                push(found, PiiType::Person, span, confidence);
            }
        }
    }
}

/// One case-insensitive pattern of all `names` (longest first, so that "Jane
/// Cooper" wins over "Jane"), or `None` when no name is long enough to use.
pub fn known_names_pattern(names: &[String]) -> Result<(Option<Regex>, usize), PiiError> {
    let mut cleaned: Vec<String> = names
        .iter()
        .map(|name| name.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|name| name.chars().count() >= 3)
        .collect();
    cleaned.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    cleaned.dedup_by(|a, b| a.to_lowercase() == b.to_lowercase());
    if cleaned.is_empty() {
        return Ok((None, 0));
    }
    let alternatives: Vec<String> = cleaned
        .iter()
        .map(|name| {
            name.split(' ')
                .map(regex::escape)
                .collect::<Vec<_>>()
                .join(r"\s+")
        })
        .collect();
    // Word boundaries are checked by the caller: a Unicode `\b` would keep thousands of names off
    // the regex crate's fast engines.
    let source = format!(r"(?i)(?:{})", alternatives.join("|"));
    let regex = RegexBuilder::new(&source)
        .size_limit(256 << 20)
        .dfa_size_limit(64 << 20)
        .build()
        .map_err(|_| PiiError::TooManyNames(cleaned.len()))?;
    Ok((Some(regex), cleaned.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pii::{Detector, DetectorOptions};

    /// The (type, value) pairs the default detector finds in `text`.
    fn found(text: &str) -> Vec<(PiiType, String)> {
        found_with(&Detector::default(), text)
    }

    fn found_with(detector: &Detector, text: &str) -> Vec<(PiiType, String)> {
        detector
            .detect(text)
            .into_iter()
            .map(|finding| (finding.kind, finding.value(text).to_owned()))
            .collect()
    }

    fn one(kind: PiiType, value: &str) -> Vec<(PiiType, String)> {
        vec![(kind, value.to_owned())]
    }

    #[test]
    fn every_builtin_pattern_compiles() {
        for regex in [
            &EMAIL,
            &DIGIT_RUN,
            &PHONE_INTERNATIONAL,
            &PHONE_PARENTHESISED,
            &PHONE_NANP,
            &PHONE_TRUNK,
            &REFERENCE_CONTEXT,
            &IBAN_START,
            &IPV4,
            &IPV6,
            &VERSION_CONTEXT,
            &SSN_CONTEXT,
            &AADHAAR_CONTEXT,
            &PAN,
            &NINO,
            &DATE_NUMERIC,
            &DATE_ISO,
            &DATE_DAY_MONTH,
            &DATE_MONTH_DAY,
            &BIRTH_CONTEXT,
            &STREET,
            &STREET_NUMBER_LAST,
            &UK_POSTCODE,
            &US_ZIP,
            &ADDRESS_GAP,
            &GREETING_NAME,
            &INTRODUCED_NAME,
            &TITLED_NAME,
        ] {
            assert!(!regex.as_str().is_empty());
        }
    }

    #[test]
    fn emails_are_found_whole_and_not_inside_words() {
        assert_eq!(
            found("Write to jane.doe+billing@mail.example.co.uk today."),
            one(PiiType::Email, "jane.doe+billing@mail.example.co.uk")
        );
        assert!(found("the @mention and user@localhost are not addresses").is_empty());
    }

    #[test]
    fn phones_in_international_and_national_forms() {
        for phone in [
            "+44 20 7946 0958",
            "+1 (415) 555-0132",
            "+49 (30) 1234-5678",
            "+44 (0)20 7946 0958",
            "0044 20 7946 0958",
            "020 7946 0958",
            "(415) 555-0132",
            "0171 1234567",
            "415-555-0132",
            "01 23 45 67 89",
        ] {
            let text = format!("Call me on {phone} after five.");
            assert_eq!(found(&text), one(PiiType::Phone, phone), "{phone}");
        }
    }

    #[test]
    fn phone_near_misses_are_not_phones() {
        for text in [
            "Order 020 7946 0958 has shipped.",
            "It cost 1500 dollars in 2023.",
            "Ticket #415-555-0132 is closed.",
            "+44 12",
            "See section 12.03.1985 of the manual.",
            "Between 10:30 and 11:45 on 2024-03-05.",
        ] {
            let phones: Vec<_> = found(text)
                .into_iter()
                .filter(|(kind, _)| *kind == PiiType::Phone)
                .collect();
            assert!(phones.is_empty(), "{text}: {phones:?}");
        }
    }

    #[test]
    fn cards_need_luhn_and_a_card_shape() {
        assert_eq!(
            found("Card 4242 4242 4242 4242 exp 12/27."),
            one(PiiType::Card, "4242 4242 4242 4242")
        );
        assert_eq!(
            found("Amex 3782-822463-10005 please"),
            one(PiiType::Card, "3782-822463-10005")
        );
        assert_eq!(
            found("it was 5555555555554444."),
            one(PiiType::Card, "5555555555554444")
        );
        // Sixteen digits failing Luhn, mixed separators, and a Luhn-valid slice of a longer number.
        assert!(found("Card 4242 4242 4242 4241 declined").is_empty());
        assert!(found("Card 4242-4242 4242-4242 declined").is_empty());
        assert!(found("serial 142424242424242421").is_empty());
    }

    #[test]
    fn ibans_need_their_country_length_and_mod_97() {
        assert_eq!(
            found("Pay to GB82 WEST 1234 5698 7654 32 by Friday."),
            one(PiiType::Iban, "GB82 WEST 1234 5698 7654 32")
        );
        assert_eq!(
            found("IBAN: DE89370400440532013000"),
            one(PiiType::Iban, "DE89370400440532013000")
        );
        assert!(found("Pay to GB83 WEST 1234 5698 7654 32 by Friday.").is_empty());
        assert!(found("IBAN: DE8937040044053201300").is_empty());
    }

    #[test]
    fn ip_addresses_parse_and_version_numbers_do_not() {
        assert_eq!(
            found("Blocked from 203.0.113.42 twice"),
            one(PiiType::Ip, "203.0.113.42")
        );
        assert_eq!(
            found("client 2001:db8::8a2e:370:7334 connected"),
            one(PiiType::Ip, "2001:db8::8a2e:370:7334")
        );
        assert_eq!(
            found("from ::ffff:192.0.2.1."),
            one(PiiType::Ip, "::ffff:192.0.2.1")
        );
        for text in [
            "Upgrade to 1.2.3.4.5 now",
            "version 10.2.0.1 fixed it",
            "address 256.1.1.1 is bad",
            "meet at 10:30:45",
            "MAC 00:1a:2b:3c:4d:5e",
        ] {
            assert!(found(text).is_empty(), "{text}");
        }
    }

    #[test]
    fn ssns_in_issued_ranges_only() {
        assert_eq!(found("SSN 123-45-6789"), one(PiiType::Ssn, "123-45-6789"));
        assert_eq!(found("my ssn is 078051120"), one(PiiType::Ssn, "078051120"));
        for text in [
            "SSN 000-12-3456",
            "SSN 666-12-3456",
            "SSN 912-12-3456",
            "SSN 123-00-4567",
            "SSN 123-45-0000",
            "id 078051120",
        ] {
            assert!(found(text).is_empty(), "{text}");
        }
    }

    #[test]
    fn aadhaar_needs_verhoeff_and_a_first_digit_from_2() {
        assert_eq!(
            found("Aadhaar 2341 2341 2346 attached"),
            one(PiiType::Aadhaar, "2341 2341 2346")
        );
        assert_eq!(
            found("My aadhar no is 491876543212"),
            one(PiiType::Aadhaar, "491876543212")
        );
        assert!(found("Aadhaar 2341 2341 2347 attached").is_empty());
        assert!(found("Aadhaar 1341 2341 2346 attached").is_empty());
    }

    #[test]
    fn pan_and_nino_follow_their_letter_rules() {
        assert_eq!(found("PAN ABCPE1234F"), one(PiiType::Pan, "ABCPE1234F"));
        assert!(found("code ABCXE1234F").is_empty());
        assert_eq!(
            found("NI number AB 12 34 56 C"),
            one(PiiType::Nino, "AB 12 34 56 C")
        );
        assert_eq!(found("NINO: JG103759A."), one(PiiType::Nino, "JG103759A"));
        for text in [
            "NI QQ123456E",
            "NI GB123456A",
            "NI DA123456A",
            "NI AO123456A",
        ] {
            assert!(found(text).is_empty(), "{text}");
        }
    }

    #[test]
    fn dates_of_birth_need_a_birth_word_nearby() {
        assert_eq!(
            found("DOB: 12/03/1985"),
            one(PiiType::DateOfBirth, "12/03/1985")
        );
        assert_eq!(
            found("I was born on 4th July 1990 in Leeds"),
            one(PiiType::DateOfBirth, "4th July 1990")
        );
        assert_eq!(
            found("Date of birth March 14, 1979."),
            one(PiiType::DateOfBirth, "March 14, 1979")
        );
        assert_eq!(
            found("D.O.B. 02.11.1975"),
            one(PiiType::DateOfBirth, "02.11.1975")
        );
        assert_eq!(
            found("1985-04-12 is my birthday"),
            one(PiiType::DateOfBirth, "1985-04-12")
        );
        for text in [
            "The invoice is dated 12/03/2023.",
            "DOB: 31/02/1985",
            "born 12/03/2199",
            "Birthday party! We shipped on 2024-01-15.",
        ] {
            assert!(found(text).is_empty(), "{text}");
        }
    }

    #[test]
    fn addresses_join_street_town_and_postcode() {
        assert_eq!(
            found("Send it to 221B Baker Street, London NW1 6XE please"),
            one(PiiType::Address, "221B Baker Street, London NW1 6XE")
        );
        assert_eq!(
            found("Ship to 1600 Amphitheatre Parkway, Mountain View, CA 94043."),
            one(
                PiiType::Address,
                "1600 Amphitheatre Parkway, Mountain View, CA 94043"
            )
        );
        assert_eq!(
            found("Our office: Hauptstraße 5, Berlin"),
            one(PiiType::Address, "Hauptstraße 5")
        );
        for text in [
            "I waited 2 hours on the way home",
            "We have 3 Premium seats",
            "Release 2024 was late",
        ] {
            assert!(found(text).is_empty(), "{text}");
        }
    }

    #[test]
    fn names_from_greetings_sign_offs_and_known_contacts() {
        assert_eq!(found("Hi Priya, thanks for"), one(PiiType::Person, "Priya"));
        assert_eq!(
            found("Kind regards,\nTomás O'Brien\nAcme"),
            one(PiiType::Person, "Tomás O'Brien")
        );
        assert_eq!(
            found("Hello, my name is Jane Cooper and"),
            one(PiiType::Person, "Jane Cooper")
        );
        assert_eq!(
            found("Dear Mr. McDonald,"),
            one(PiiType::Person, "McDonald")
        );
        for text in [
            "Hi Team, the export failed",
            "Thanks again for the help",
            "Best regards,\nThe Acme Support Team",
            "Hi there!",
            "Dear Customer,",
        ] {
            assert!(found(text).is_empty(), "{text}");
        }
        let detector = Detector::new(&DetectorOptions {
            known_names: vec![
                "Maria Lopez".to_owned(),
                "Zoë Müller".to_owned(),
                "Al".to_owned(),
            ],
            min_confidence: None,
        })
        .unwrap();
        assert_eq!(
            found_with(
                &detector,
                "I spoke to maria  lopez and ZOË MÜLLER; Al was out."
            ),
            vec![
                (PiiType::Person, "maria  lopez".to_owned()),
                (PiiType::Person, "ZOË MÜLLER".to_owned())
            ]
        );
        assert!(found_with(&detector, "Marias Lopezz").is_empty());
        assert!(found_with(&detector, "xmaria lopez").is_empty());
        // A long run of digit groups is read in bounded time and yields no card.
        let groups = "1 ".repeat(20_000);
        assert!(found(&groups).is_empty());
    }
}
