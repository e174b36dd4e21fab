//! Console passwords: the policy a new password must meet, Argon2id hashing and verification.
//!
//! Parameters: Argon2id (RFC 9106), 19 MiB of memory, 2 passes, 1 lane, a 16-byte random salt
//! and a 32-byte hash — OWASP's recommended minimum for Argon2id, about 30 ms a hash on one
//! core of a current server. They are stored in each PHC string (`$argon2id$v=19$m=19456,t=2,
//! p=1$…`), so raising them later leaves stored hashes verifiable.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// Fewest characters a password may have.
pub const PASSWORD_CHARS_MIN: usize = 12;
/// Most characters a password may have: a bound on the work one sign-in can ask for.
pub const PASSWORD_CHARS_MAX: usize = 128;

const MEMORY_KIB: u32 = 19 * 1024;
const PASSES: u32 = 2;
const LANES: u32 = 1;

fn hasher() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, PASSES, LANES, Some(32)).expect("valid Argon2 params");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Why `password` may not be the password of `login`, or `None` when it may.
pub fn policy_violation(login: &str, password: &str) -> Option<String> {
    let chars = password.chars().count();
    if chars < PASSWORD_CHARS_MIN {
        return Some(format!(
            "the password must have at least {PASSWORD_CHARS_MIN} characters; it has {chars}"
        ));
    }
    if chars > PASSWORD_CHARS_MAX {
        return Some(format!(
            "the password may have at most {PASSWORD_CHARS_MAX} characters; it has {chars}"
        ));
    }
    if password.chars().any(char::is_control) {
        return Some("the password may not contain control characters".to_owned());
    }
    if password.to_lowercase().contains(&login.to_lowercase()) {
        return Some("the password may not contain the login".to_owned());
    }
    None
}

/// The Argon2id PHC string of `password` with a new random salt.
pub fn hash(password: &str) -> String {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).expect("16 bytes make a valid salt");
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .expect("hashing a bounded password cannot fail")
        .to_string()
}

/// Whether `password` matches the PHC string `stored`; an unreadable stored string never
/// matches. The parameters are the stored string's.
pub fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|parsed| {
        hasher()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Spends the time of one verification on nothing, for a login that does not exist or has no
/// password: a sign-in then takes as long whether the login exists or not.
pub fn verify_dummy(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let stored = DUMMY.get_or_init(|| hash("suanli dummy password for timing"));
    let _ = verify(password, stored);
}

/// A new one-time password: 20 characters from an alphabet without look-alikes (about 110
/// bits), shown once by `suanli user reset-password`.
pub fn generate() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..20)
        .map(|_| char::from(ALPHABET[rand::random_range(0..ALPHABET.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // A hash verifies its password only, is salted (two hashes differ), records Argon2id and
    // its parameters, and an unreadable stored string verifies nothing.
    #[test]
    fn hashes_verify_their_password_only() {
        let h = hash("correct horse battery");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify("correct horse battery", &h));
        assert!(!verify("correct horse batterz", &h));
        assert_ne!(h, hash("correct horse battery"));
        assert!(!verify("x", "not a phc string"));
        verify_dummy("anything");
    }

    // The policy: at least 12 characters, at most 128, no control characters, not the login.
    #[test]
    fn the_policy_names_what_is_wrong() {
        let check = |login: &str, password: &str| policy_violation(login, password);
        assert!(check("finance1", "short").unwrap().contains("at least 12"));
        assert!(
            check("finance1", &"x".repeat(129))
                .unwrap()
                .contains("at most 128")
        );
        assert!(
            check("finance1", "abc\ndefghijklm")
                .unwrap()
                .contains("control")
        );
        assert!(
            check("finance1", "my-FINANCE1-password")
                .unwrap()
                .contains("login")
        );
        assert_eq!(check("finance1", "十二个字符的密码也可以吧对吧"), None);
        assert_eq!(check("finance1", "a long enough secret"), None);
        let generated = generate();
        assert_eq!(generated.chars().count(), 20);
        assert_eq!(check("finance1", &generated), None);
    }
}
