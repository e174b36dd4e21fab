//! Time-based one-time passwords (RFC 6238) for console sign-in: SHA-1, 6 digits, 30-second
//! steps — what every authenticator app reads from an `otpauth://` URL — accepting the step
//! before and after the current one for clock drift. The caller remembers the last step a
//! user signed in with, so a code is used once.

use totp_rs::{Algorithm, TOTP};

/// Digits of a code.
pub const DIGITS: usize = 6;
/// Seconds a code is valid for.
pub const STEP_SECS: u64 = 30;
/// Steps accepted either side of the current one.
pub const SKEW_STEPS: u64 = 1;
/// The issuer shown by authenticator apps.
pub const ISSUER: &str = "Suanli";

fn totp(secret_base32: &str) -> Result<TOTP, String> {
    let secret = base32_decode(secret_base32).ok_or("the TOTP secret is not base32")?;
    TOTP::new(Algorithm::SHA1, DIGITS, 0, STEP_SECS, secret).map_err(|e| format!("TOTP: {e}"))
}

/// RFC 4648 base32 without padding, upper case, as authenticator apps take it.
fn base32_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.chars().filter(|c| *c != '=' && !c.is_whitespace()) {
        let v = match c.to_ascii_uppercase() {
            c @ 'A'..='Z' => c as u32 - 'A' as u32,
            c @ '2'..='7' => c as u32 - '2' as u32 + 26,
            _ => return None,
        };
        buffer = (buffer << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((buffer >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

/// A new secret: 20 random bytes (160 bits, RFC 4226's recommendation) in base32.
pub fn new_secret() -> String {
    let bytes: [u8; 20] = rand::random();
    base32_encode(&bytes)
}

/// The `otpauth://totp/…` URL an authenticator app enrols from (shown as a QR code). Logins
/// are `a-z 0-9 . _ -`, so they need no escaping in it.
pub fn otpauth_url(secret_base32: &str, login: &str) -> String {
    format!(
        "otpauth://totp/{ISSUER}:{login}?secret={secret_base32}&issuer={ISSUER}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}"
    )
}

/// The code of `secret` at `unix_secs`.
pub fn code_at(secret_base32: &str, unix_secs: u64) -> Result<String, String> {
    Ok(totp(secret_base32)?.generate(unix_secs))
}

/// The time step `code` is valid for at `unix_secs` (the current step or one either side), if
/// any. The comparison does not stop at the first differing digit.
pub fn matching_step(secret_base32: &str, code: &str, unix_secs: u64) -> Option<u64> {
    let totp = totp(secret_base32).ok()?;
    let code = code.trim();
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = unix_secs / STEP_SECS;
    (now.saturating_sub(SKEW_STEPS)..=now + SKEW_STEPS).find(|step| {
        let expected = totp.generate(step * STEP_SECS);
        expected
            .bytes()
            .zip(code.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 6238's SHA-1 test vector (secret "12345678901234567890", 59 s → 94287082, of which
    // the last six digits), drift of one step either side accepted and no more, and the
    // otpauth URL an app reads.
    #[test]
    fn codes_follow_rfc_6238() {
        let secret = base32_encode(b"12345678901234567890");
        assert_eq!(secret, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(base32_decode(&secret).unwrap(), b"12345678901234567890");
        assert_eq!(code_at(&secret, 59).unwrap(), "287082");
        let at = 1_111_111_109;
        assert_eq!(code_at(&secret, at).unwrap(), "081804");
        let step = at / STEP_SECS;
        assert_eq!(matching_step(&secret, "081804", at), Some(step));
        assert_eq!(matching_step(&secret, "081804", at + 30), Some(step));
        assert_eq!(matching_step(&secret, "081804", at - 30), Some(step));
        assert_eq!(matching_step(&secret, "081804", at + 60), None);
        assert_eq!(matching_step(&secret, "81804", at), None);
        assert_eq!(matching_step(&secret, "08180x", at), None);
        let url = otpauth_url(&secret, "finance1");
        assert!(
            url.starts_with("otpauth://totp/Suanli:finance1?secret=GEZDGNBVGY3TQOJQ"),
            "{url}"
        );
        assert_eq!(new_secret().len(), 32);
    }
}
