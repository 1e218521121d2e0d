//! TOTP second factor (RFC 6238: HMAC-SHA1, 6 digits, 30-second steps) through `totp-rs`, plus
//! single-use recovery codes stored as SHA-256 digests.
//!
//! Only the current and the previous step are accepted, and never a step at or before the last
//! accepted one, so an observed code cannot be replayed.

use base64::Engine as _;
use totp_rs::{Algorithm, TOTP};

use crate::crypto;
use crate::users::TotpCredential;

const STEP_SECONDS: u64 = 30;
const DIGITS: usize = 6;
const ISSUER: &str = "Rapport";
const RECOVERY_CODES: usize = 10;

fn totp(secret: &[u8], account: &str) -> TOTP {
    TOTP::new_unchecked(
        Algorithm::SHA1,
        DIGITS,
        1,
        STEP_SECONDS,
        secret.to_vec(),
        Some(ISSUER.to_owned()),
        account.to_owned(),
    )
}

/// A fresh 160-bit secret (RFC 4226's recommended length).
pub fn new_secret() -> Vec<u8> {
    crypto::random_bytes::<20>().to_vec()
}

/// The secret as base32, for typing into an authenticator app.
pub fn secret_base32(secret: &[u8]) -> String {
    totp(secret, "").get_secret_base32()
}

/// The `otpauth://` URI that authenticator apps read from the QR code.
pub fn provisioning_uri(secret: &[u8], account: &str) -> String {
    totp(secret, account).get_url()
}

/// The QR code of `uri` as an SVG document.
pub fn qr_svg(uri: &str) -> Option<String> {
    let code = qrcode::QrCode::new(uri.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .build(),
    )
}

pub fn step_at(unix_seconds: u64) -> u64 {
    unix_seconds / STEP_SECONDS
}

/// The code for `step`; used by the verifier and by tests acting as an authenticator.
pub fn code_at_step(secret: &[u8], step: u64) -> String {
    totp(secret, "").generate(step * STEP_SECONDS)
}

/// The step that `code` belongs to, if it is the current or previous step's code and newer than
/// `last_step`.
pub fn verify(secret: &[u8], last_step: u64, code: &str, unix_seconds: u64) -> Option<u64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != DIGITS || !code.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let current = step_at(unix_seconds);
    [current, current.saturating_sub(1)]
        .into_iter()
        .filter(|step| *step > last_step)
        .find(|step| {
            crypto::constant_time_eq(code_at_step(secret, *step).as_bytes(), code.as_bytes())
        })
}

fn normalise_recovery_code(code: &str) -> String {
    code.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn recovery_hash(code: &str) -> String {
    hex::encode(crypto::sha256(&[
        b"rapport/recovery/v1\0",
        normalise_recovery_code(code).as_bytes(),
    ]))
}

/// Ten new recovery codes (shown once) and their digests (stored).
pub fn new_recovery_codes() -> (Vec<String>, Vec<String>) {
    let codes: Vec<String> = (0..RECOVERY_CODES)
        .map(|_| {
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(crypto::random_bytes::<10>())
                .to_lowercase()
                .replace(['-', '_'], "x");
            format!("{}-{}", &raw[..6], &raw[6..12])
        })
        .collect();
    let hashes = codes.iter().map(|code| recovery_hash(code)).collect();
    (codes, hashes)
}

/// Consumes `code` if it is one of the credential's unused recovery codes.
pub fn use_recovery_code(credential: &mut TotpCredential, code: &str) -> bool {
    let digest = recovery_hash(code);
    let before = credential.recovery_hashes.len();
    credential
        .recovery_hashes
        .retain(|stored| !crypto::constant_time_eq(stored.as_bytes(), digest.as_bytes()));
    credential.recovery_hashes.len() < before
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_vector_for_sha1() {
        // RFC 6238 appendix B: secret "12345678901234567890", T = 59 s → 94287082 (8 digits);
        // the 6-digit code is its last six digits.
        let secret = b"12345678901234567890";
        assert_eq!(code_at_step(secret, 59 / 30), "287082");
    }

    #[test]
    fn accepts_current_and_previous_step_once() {
        let secret = new_secret();
        let now = 1_700_000_000;
        let step = step_at(now);
        let current = code_at_step(&secret, step);
        assert_eq!(verify(&secret, 0, &current, now), Some(step));
        assert_eq!(
            verify(&secret, step, &current, now),
            None,
            "replay accepted"
        );
        let previous = code_at_step(&secret, step - 1);
        assert_eq!(verify(&secret, 0, &previous, now), Some(step - 1));
        let older = code_at_step(&secret, step - 2);
        assert_eq!(
            verify(&secret, 0, &older, now),
            None,
            "a code two steps old was accepted"
        );
        assert_eq!(verify(&secret, 0, "12345", now), None);
    }

    #[test]
    fn recovery_codes_work_once() {
        let (codes, hashes) = new_recovery_codes();
        let mut credential = TotpCredential {
            secret: new_secret(),
            last_step: 0,
            recovery_hashes: hashes,
        };
        assert!(use_recovery_code(&mut credential, &codes[3].to_uppercase()));
        assert!(!use_recovery_code(&mut credential, &codes[3]));
        assert_eq!(credential.recovery_hashes.len(), 9);
    }
}
