//! Sealing what a shared database must not hold in plain text (sidecars: signing
//! secrets, bot tokens): XChaCha20-Poly1305 with a key every replica is given
//! (`[store] secret-key` or `SLUICE_STORE_SECRET_KEY`).
//!
//! A sealed text reads `sealed:v1:` and then, in base64, the 24-byte random nonce
//! followed by the ciphertext and its tag. The key is 32 bytes, written as 64 hex digits
//! or in base64 (`openssl rand -base64 32` makes one).

use anyhow::Context as _;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

const PREFIX: &str = "sealed:v1:";
const NONCE_BYTES: usize = 24;

/// The key that seals and opens sidecars in the shared database.
#[derive(Clone)]
pub struct SecretKey(chacha20poly1305::Key);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// Reads a key written as 64 hex digits or as base64 of 32 bytes.
    pub fn parse(text: &str) -> anyhow::Result<SecretKey> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()) {
            hex::decode(text).ok()
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
                .ok()
        };
        match bytes {
            Some(bytes) if bytes.len() == 32 => Ok(SecretKey(*chacha20poly1305::Key::from_slice(&bytes))),
            _ => anyhow::bail!(
                "the store's secret key must be 32 bytes, written as 64 hex digits or in base64 \
                 (`openssl rand -base64 32` makes one)"
            ),
        }
    }

    /// Seals `plain` under a fresh random nonce.
    pub fn seal(&self, plain: &str) -> String {
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).expect("the operating system's random source failed");
        let sealed = XChaCha20Poly1305::new(&self.0)
            .encrypt(XNonce::from_slice(&nonce), plain.as_bytes())
            .expect("sealing a text in memory cannot fail");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        format!("{PREFIX}{}", base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    /// Opens what [`SecretKey::seal`] sealed; refuses it when another key sealed it, or
    /// it was altered.
    pub fn open(&self, sealed: &str) -> anyhow::Result<String> {
        let encoded = sealed.strip_prefix(PREFIX).context("not a sealed text")?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .context("a sealed text that is not base64")?;
        anyhow::ensure!(bytes.len() > NONCE_BYTES, "a sealed text too short to hold anything");
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        let plain = XChaCha20Poly1305::new(&self.0)
            .decrypt(XNonce::from_slice(nonce), sealed)
            .map_err(|_| {
                anyhow::anyhow!("a sealed sidecar does not open with this secret key: give every replica the same key")
            })?;
        String::from_utf8(plain).context("a sealed sidecar that is not UTF-8")
    }
}

/// Whether `text` is sealed (as [`SecretKey::seal`] writes it).
pub fn is_sealed(text: &str) -> bool {
    text.starts_with(PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn keys_are_read_from_hex_or_base64_and_must_be_32_bytes() {
        let from_hex = SecretKey::parse(HEX_KEY).unwrap();
        let base64 = base64::engine::general_purpose::STANDARD.encode(hex::decode(HEX_KEY).unwrap());
        let from_base64 = SecretKey::parse(&format!("{base64}\n")).unwrap();
        assert_eq!(from_hex.0, from_base64.0);
        for bad in ["", "short", &HEX_KEY[2..], "AAAA"] {
            let error = SecretKey::parse(bad).unwrap_err().to_string();
            assert!(error.contains("32 bytes"), "{error}");
        }
        assert_eq!(format!("{from_hex:?}"), "SecretKey(..)", "never printed");
    }

    #[test]
    fn a_sealed_text_opens_with_its_key_only_and_hides_the_text() {
        let key = SecretKey::parse(HEX_KEY).unwrap();
        let plain = "[configuration]\nbot-token = \"xoxb-secret\"\n";
        let sealed = key.seal(plain);
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("xoxb-secret"));
        assert_ne!(sealed, key.seal(plain), "a fresh nonce each time");
        assert_eq!(key.open(&sealed).unwrap(), plain);

        let other = SecretKey::parse(&"ab".repeat(32)).unwrap();
        assert!(other.open(&sealed).unwrap_err().to_string().contains("same key"));
        let mut altered = sealed.clone();
        altered.pop();
        altered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(key.open(&altered).is_err());
    }
}
