//! Identifiers: sortable record ids and unguessable secrets.

/// A new record id: `prefix` + `_` + a ULID (time-ordered, 80 random bits), for example
/// `evt_01JD6N4X3Q9W8V7T6S5R4P3M2K`.
pub fn record_id(prefix: &str) -> String {
    format!("{prefix}_{}", ulid::Ulid::new())
}

/// An unguessable token of `bytes` random bytes from the OS generator, hex encoded.
/// Webhook ids and secrets use at least 16 bytes (128 bits).
pub fn secret_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the operating system's random source failed");
    hex::encode(buf)
}

/// Compares two secrets in constant time (for equal lengths).
pub fn secrets_match(given: &[u8], expected: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    given.ct_eq(expected).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_tokens_carry_128_bits_and_differ() {
        let a = secret_token(16);
        assert_eq!(a.len(), 32);
        assert_ne!(a, secret_token(16));
    }

    #[test]
    fn record_ids_sort_by_creation() {
        let first = record_id("evt");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = record_id("evt");
        assert!(first < second, "{first} should sort before {second}");
        assert!(first.starts_with("evt_"));
    }

    #[test]
    fn secrets_compare_by_content() {
        assert!(secrets_match(b"abc", b"abc"));
        assert!(!secrets_match(b"abc", b"abd"));
        assert!(!secrets_match(b"abc", b"abcd"));
    }
}
