//! `X-Hub-Signature-256`: GitHub signs each delivery's raw body with HMAC-SHA256 under the webhook
//! secret. We verify it over the exact bytes received, before parsing anything, and compare in
//! constant time (`Mac::verify_slice`) so a forger learns nothing from response timing.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a delivery's signature was refused. Messages never contain the secret or the expected MAC.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Hub-Signature-256 header (set a secret on the GitHub webhook)")]
    Missing,
    #[error("X-Hub-Signature-256 is not of the form sha256=<64 hex digits>")]
    Malformed,
    #[error("X-Hub-Signature-256 does not match the body (check that the webhook secret on GitHub matches KILN_WEBHOOK_SECRET)")]
    Mismatch,
}

/// The webhook secret. Deliberately not `Debug`/`Display` so it cannot end up in a log line.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(bytes.into())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `sha256=<hex>` for `body`, as GitHub would send it (used by tests and the load bench).
    pub fn sign(&self, body: &[u8]) -> String {
        let mut mac = self.mac();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    /// Check `header` (the raw `X-Hub-Signature-256` value, if any) against `body`.
    pub fn verify(&self, header: Option<&[u8]>, body: &[u8]) -> Result<(), SignatureError> {
        let header = header.ok_or(SignatureError::Missing)?;
        let hex_part = header
            .strip_prefix(b"sha256=")
            .ok_or(SignatureError::Malformed)?;
        if hex_part.len() != 64 {
            return Err(SignatureError::Malformed);
        }
        let given = hex::decode(hex_part).map_err(|_| SignatureError::Malformed)?;
        let mut mac = self.mac();
        mac.update(body);
        mac.verify_slice(&given)
            .map_err(|_| SignatureError::Mismatch)
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length; this cannot fail.
        match HmacSha256::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC-SHA256 takes keys of any length"),
        }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_documented_example_verifies() {
        // The example from GitHub's "Validating webhook deliveries" page.
        let s = Secret::new("It's a Secret to Everybody");
        let sig = b"sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(s.verify(Some(sig), b"Hello, World!"), Ok(()));
        assert_eq!(
            s.sign(b"Hello, World!").as_bytes(),
            sig.as_slice(),
            "sign() must produce GitHub's format"
        );
    }

    #[test]
    fn refuses_missing_malformed_and_mismatched() {
        let s = Secret::new("k");
        let body = b"{}";
        assert_eq!(s.verify(None, body), Err(SignatureError::Missing));
        assert_eq!(
            s.verify(Some(b"sha1=abc"), body),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            s.verify(Some(b"sha256=zz"), body),
            Err(SignatureError::Malformed)
        );
        let other = Secret::new("not k").sign(body);
        assert_eq!(
            s.verify(Some(other.as_bytes()), body),
            Err(SignatureError::Mismatch)
        );
        let good = s.sign(body);
        assert_eq!(
            s.verify(Some(good.as_bytes()), b"{ }"),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
