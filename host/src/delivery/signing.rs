//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): the receiver gets
//! `webhook-id`, `webhook-timestamp` (seconds) and `webhook-signature: v1,<base64>`, the
//! HMAC-SHA256 of `<id>.<timestamp>.<body>` keyed with the secret's bytes, so that the
//! spec's verifier libraries check it unchanged.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const PREFIX: &str = "whsec_";
/// The spec asks for keys of 24 to 64 bytes.
const KEY_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

/// A new secret: `whsec_` and 32 random bytes in base64.
pub fn new_secret() -> String {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).expect("the operating system's random source failed");
    format!("{PREFIX}{}", STANDARD.encode(key))
}

/// The key bytes of a `whsec_` secret, or what is wrong with it.
pub fn secret_key(secret: &str) -> Result<Vec<u8>, String> {
    let Some(encoded) = secret.strip_prefix(PREFIX) else {
        return Err(
            "a signing secret starts with whsec_ followed by base64 (leave it out to have one generated)".into(),
        );
    };
    let key = STANDARD
        .decode(encoded)
        .map_err(|e| format!("the signing secret after whsec_ is not valid base64 ({e})"))?;
    if !KEY_BYTES.contains(&key.len()) {
        return Err(format!(
            "the signing secret holds {} bytes; Standard Webhooks asks for 24 to 64 (leave it out to have one generated)",
            key.len()
        ));
    }
    Ok(key)
}

/// The `webhook-signature` value for one message.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_specs_example() {
        // The signing example of the Standard Webhooks reference library.
        let key = secret_key("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        assert_eq!(
            sign(
                &key,
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1649367553,
                br#"{"email":"test@example.com","username":"test_user"}"#
            ),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn secrets_are_checked() {
        assert!(secret_key(&new_secret()).is_ok());
        assert!(
            secret_key("C2FVsBQIhrscChlQIMV+b5sSYspob7oD")
                .unwrap_err()
                .contains("whsec_")
        );
        assert!(secret_key("whsec_!!").unwrap_err().contains("base64"));
        assert!(secret_key("whsec_c2hvcnQ=").unwrap_err().contains("24 to 64"));
    }
}
