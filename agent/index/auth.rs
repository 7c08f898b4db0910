//! Optional access control for the index: a bearer token, HTTP basic credentials, or both.
//!
//! pip and uv cannot send a bearer token, but both send basic credentials taken from the index URL
//! (`http://user:pass@host/simple/`). So a configured token is also accepted as the basic
//! password with any user name (`http://__token__:TOKEN@host/simple/`), the convention of PyPI and
//! most private registries. Comparisons are constant-time; secrets never reach a log line.

use base64_lite::decode as b64decode;
use subtle::ConstantTimeEq;

/// What a request must present. Empty = open index.
#[derive(Clone, Default)]
pub struct Auth {
    token: Option<String>,
    /// `user:password`.
    basic: Option<String>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("basic", &self.basic.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The challenge sent with a 401, so pip's keyring/netrc support and browsers know to retry.
pub const CHALLENGE: &str = "Basic realm=\"kiln index\", charset=\"UTF-8\"";

impl Auth {
    pub fn new(token: Option<String>, basic: Option<String>) -> Auth {
        Auth {
            token: token.filter(|t| !t.is_empty()),
            basic: basic.filter(|b| !b.is_empty()),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.token.is_some() || self.basic.is_some()
    }

    /// Whether an `Authorization` header value grants access.
    pub fn allows(&self, header: Option<&str>) -> bool {
        if !self.is_enabled() {
            return true;
        }
        let Some(h) = header.map(str::trim) else {
            return false;
        };
        let (scheme, value) = h.split_once(' ').unwrap_or((h, ""));
        let value = value.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            return self.token.as_deref().is_some_and(|t| eq(t, value));
        }
        if !scheme.eq_ignore_ascii_case("basic") {
            return false;
        }
        let Some(decoded) = b64decode(value).and_then(|b| String::from_utf8(b).ok()) else {
            return false;
        };
        let basic_ok = self.basic.as_deref().is_some_and(|b| eq(b, &decoded));
        let token_ok = self.token.as_deref().is_some_and(|t| {
            decoded
                .split_once(':')
                .is_some_and(|(_, password)| eq(t, password))
        });
        basic_ok | token_ok
    }
}

fn eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Standard base64 decoding (RFC 4648, padding optional): all HTTP basic auth needs, without a
/// dependency.
mod base64_lite {
    pub fn decode(s: &str) -> Option<Vec<u8>> {
        let s = s.trim_end_matches('=');
        let mut out = Vec::with_capacity(s.len() * 3 / 4);
        let mut acc = 0u32;
        let mut bits = 0;
        for c in s.bytes() {
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                _ => return None,
            } as u32;
            acc = (acc << 6) | v;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
                acc &= (1 << bits) - 1;
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes() {
        assert_eq!(b64decode("dXNlcjpwYXNz").unwrap(), b"user:pass");
        assert_eq!(b64decode("YQ==").unwrap(), b"a");
        assert_eq!(b64decode("YWI=").unwrap(), b"ab");
        assert!(b64decode("a b").is_none());
    }

    #[test]
    fn open_index_allows_all() {
        assert!(Auth::new(None, None).allows(None));
    }

    #[test]
    fn token_as_bearer_or_basic_password() {
        let a = Auth::new(Some("s3cret".into()), None);
        assert!(!a.allows(None));
        assert!(a.allows(Some("Bearer s3cret")));
        assert!(!a.allows(Some("Bearer s3cre")));
        // __token__:s3cret
        assert!(a.allows(Some("Basic X190b2tlbl9fOnMzY3JldA==")));
        // user:pass
        assert!(!a.allows(Some("Basic dXNlcjpwYXNz")));
        assert!(!format!("{a:?}").contains("s3cret"));
    }

    #[test]
    fn basic_credentials() {
        let a = Auth::new(None, Some("user:pass".into()));
        assert!(a.allows(Some("Basic dXNlcjpwYXNz")));
        assert!(a.allows(Some("basic dXNlcjpwYXNz")));
        assert!(!a.allows(Some("Bearer user:pass")));
        assert!(!a.allows(Some("Basic dXNlcjpwYXN6")));
    }
}
