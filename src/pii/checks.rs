//! The validators behind the "validated" finding types: check digits (Luhn, ISO 7064 mod 97,
//! Verhoeff) and the published number ranges and letter rules of national identifiers. Each takes
//! the characters of a candidate with its separators already removed and answers yes or no; none
//! of them allocates more than the candidate's length.

/// The Luhn (mod 10) check of payment card numbers: `digits` are ASCII digits, check digit last.
pub fn luhn_valid(digits: &[u8]) -> bool {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let mut sum = 0u32;
    for (position, digit) in digits.iter().rev().enumerate() {
        let mut value = u32::from(digit - b'0');
        if position % 2 == 1 {
            value *= 2;
            if value > 9 {
                value -= 9;
            }
        }
        sum += value;
    }
    sum % 10 == 0
}

/// The IBAN length of each country that issues them (ISO 13616 registry), so that a candidate
/// is cut at its country's length and an unknown country is no IBAN at all.
#[rustfmt::skip] // One row per line of the registry would be 80 lines of noise.
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24), ("AE", 23), ("AL", 28), ("AT", 20), ("AZ", 28), ("BA", 20), ("BE", 16),
    ("BG", 22), ("BH", 22), ("BR", 29), ("BY", 28), ("CH", 21), ("CR", 22), ("CY", 28),
    ("CZ", 24), ("DE", 22), ("DK", 18), ("DO", 28), ("EE", 20), ("EG", 29), ("ES", 24),
    ("FI", 18), ("FO", 18), ("FR", 27), ("GB", 22), ("GE", 22), ("GI", 23), ("GL", 18),
    ("GR", 27), ("GT", 28), ("HR", 21), ("HU", 28), ("IE", 22), ("IL", 23), ("IQ", 23),
    ("IS", 26), ("IT", 27), ("JO", 30), ("KW", 30), ("KZ", 20), ("LB", 28), ("LC", 32),
    ("LI", 21), ("LT", 20), ("LU", 20), ("LV", 21), ("MC", 27), ("MD", 24), ("ME", 22),
    ("MK", 19), ("MR", 27), ("MT", 31), ("MU", 30), ("NL", 18), ("NO", 15), ("PK", 24),
    ("PL", 28), ("PS", 29), ("PT", 25), ("QA", 29), ("RO", 24), ("RS", 22), ("SA", 24),
    ("SC", 31), ("SE", 24), ("SI", 19), ("SK", 24), ("SM", 27), ("ST", 25), ("SV", 28),
    ("TL", 23), ("TN", 24), ("TR", 26), ("UA", 29), ("VA", 22), ("VG", 24), ("XK", 20),
];

/// The IBAN length of `country` (two upper-case letters), or `None` for a country without IBANs.
pub fn iban_length(country: &[u8]) -> Option<usize> {
    IBAN_LENGTHS
        .iter()
        .find(|(code, _)| code.as_bytes() == country)
        .map(|&(_, length)| length)
}

/// The ISO 13616 check of an IBAN: `compact` is upper-case letters and digits without spaces.
/// The country must issue IBANs of exactly this length, and the number, with its first four
/// characters moved to the end and letters read as 10–35, must leave 1 when divided by 97.
pub fn iban_valid(compact: &[u8]) -> bool {
    if compact.len() < 5
        || !compact[..2].iter().all(u8::is_ascii_uppercase)
        || !compact[2..4].iter().all(u8::is_ascii_digit)
        || !compact[4..]
            .iter()
            .all(|byte| byte.is_ascii_digit() || byte.is_ascii_uppercase())
        || iban_length(&compact[..2]) != Some(compact.len())
    {
        return false;
    }
    let mut remainder = 0u32;
    for &byte in compact[4..].iter().chain(&compact[..4]) {
        if byte.is_ascii_digit() {
            remainder = (remainder * 10 + u32::from(byte - b'0')) % 97;
        } else {
            remainder = (remainder * 100 + u32::from(byte - b'A' + 10)) % 97;
        }
    }
    remainder == 1
}

const VERHOEFF_MULTIPLICATION: [[u8; 10]; 10] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
    [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
    [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
    [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
    [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
    [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
];

const VERHOEFF_PERMUTATION: [[u8; 10]; 8] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
    [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
    [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
    [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
    [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
];

/// The Verhoeff check (dihedral group D5), used by Aadhaar: `digits` are ASCII digits, check
/// digit last. It catches every single-digit error and every swap of neighbours.
pub fn verhoeff_valid(digits: &[u8]) -> bool {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let mut check = 0u8;
    for (position, digit) in digits.iter().rev().enumerate() {
        let permuted = VERHOEFF_PERMUTATION[position % 8][usize::from(digit - b'0')];
        check = VERHOEFF_MULTIPLICATION[usize::from(check)][usize::from(permuted)];
    }
    check == 0
}

/// An Aadhaar number: 12 digits, the first 2–9 (0 and 1 are not issued), Verhoeff check digit.
pub fn aadhaar_valid(digits: &[u8]) -> bool {
    digits.len() == 12 && (b'2'..=b'9').contains(&digits[0]) && verhoeff_valid(digits)
}

/// A US Social Security number in the issued ranges: 9 digits; the area (first three) is not
/// 000, 666 or 900–999, the group (next two) not 00, the serial (last four) not 0000.
pub fn ssn_valid(digits: &[u8]) -> bool {
    if digits.len() != 9 || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let area = &digits[..3];
    area != b"000"
        && area != b"666"
        && area[0] != b'9'
        && &digits[3..5] != b"00"
        && &digits[5..] != b"0000"
}

/// An Indian PAN: five letters, four digits, one letter (`AAAPA9999A`), upper case, the fourth
/// letter one of the holder types the Income Tax Department issues (person, company, firm,
/// trust, HUF, association, body of individuals, local authority, juridical person, government).
pub fn pan_valid(candidate: &[u8]) -> bool {
    candidate.len() == 10
        && candidate[..5].iter().all(u8::is_ascii_uppercase)
        && candidate[5..9].iter().all(u8::is_ascii_digit)
        && candidate[9].is_ascii_uppercase()
        && b"PCHFATBLJG".contains(&candidate[3])
}

/// A UK National Insurance number: two prefix letters, six digits, a suffix A–D. The first letter
/// is never D, F, I, Q, U or V; the second never D, F, I, O, Q, U or V; and the prefixes BG, GB,
/// KN, NK, NT, TN and ZZ are not allocated.
pub fn nino_valid(compact: &[u8]) -> bool {
    if compact.len() != 9
        || !compact[..2].iter().all(u8::is_ascii_uppercase)
        || !compact[2..8].iter().all(u8::is_ascii_digit)
        || !(b'A'..=b'D').contains(&compact[8])
    {
        return false;
    }
    let prefix = &compact[..2];
    !b"DFIQUV".contains(&prefix[0])
        && !b"DFIOQUV".contains(&prefix[1])
        && !matches!(
            prefix,
            b"BG" | b"GB" | b"KN" | b"NK" | b"NT" | b"TN" | b"ZZ"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_accepts_test_cards_and_rejects_a_changed_digit() {
        assert!(luhn_valid(b"4242424242424242"));
        assert!(luhn_valid(b"5555555555554444"));
        assert!(luhn_valid(b"378282246310005"));
        assert!(!luhn_valid(b"4242424242424241"));
        assert!(!luhn_valid(b"1234567812345678"));
        assert!(!luhn_valid(b""));
    }

    #[test]
    fn iban_accepts_registry_examples_and_rejects_wrong_check_digits_or_lengths() {
        assert!(iban_valid(b"GB82WEST12345698765432"));
        assert!(iban_valid(b"DE89370400440532013000"));
        assert!(iban_valid(b"NL91ABNA0417164300"));
        assert!(!iban_valid(b"GB83WEST12345698765432"));
        assert!(!iban_valid(b"GB82WEST1234569876543"));
        assert!(!iban_valid(b"XX82WEST12345698765432"));
    }

    #[test]
    fn verhoeff_accepts_valid_aadhaar_and_rejects_a_changed_or_swapped_digit() {
        assert!(aadhaar_valid(b"234123412346"));
        assert!(!aadhaar_valid(b"234123412347"));
        assert!(!aadhaar_valid(b"243123412346"));
        // Valid check digit, but Aadhaar numbers never start with 0 or 1.
        assert!(verhoeff_valid(b"2363"));
        assert!(!aadhaar_valid(b"123412341234"));
    }

    #[test]
    fn ssn_excludes_unissued_ranges() {
        assert!(ssn_valid(b"123456789"));
        assert!(ssn_valid(b"078051120"));
        for invalid in [
            b"000123456",
            b"666123456",
            b"900123456",
            b"123001234",
            b"123450000",
        ] {
            assert!(!ssn_valid(invalid));
        }
    }

    #[test]
    fn pan_requires_a_holder_type_letter() {
        assert!(pan_valid(b"ABCPE1234F"));
        assert!(pan_valid(b"AAACT9876K"));
        assert!(!pan_valid(b"ABCXE1234F"));
        assert!(!pan_valid(b"ABCPE12345"));
        assert!(!pan_valid(b"abcpe1234f"));
    }

    #[test]
    fn nino_excludes_unallocated_letters_and_prefixes() {
        assert!(nino_valid(b"AB123456C"));
        assert!(nino_valid(b"JG103759A"));
        assert!(!nino_valid(b"DA123456C"));
        assert!(!nino_valid(b"AO123456C"));
        assert!(!nino_valid(b"GB123456C"));
        assert!(!nino_valid(b"AB123456E"));
    }
}
