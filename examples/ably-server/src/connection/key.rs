//! Connection keys, `<secret>!<connectionId>`: the private handle a client
//! presents to resume or recover its connection, or to publish over REST on
//! its behalf. The id half finds the connection; the secret half proves the
//! holder was given the key. The secret changes on every resume and recover,
//! so a key that has been used to take a connection over opens nothing again.

use base64::Engine;
use rand::RngCore;

use crate::keys::constant_time_eq;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionKey {
    pub secret: String,
    pub id: String,
}

/// Random URL-safe text without `!`, `-` or `_`, so keys split unambiguously.
pub fn random_text(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut raw);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw).replace(['-', '_'], "x")
}

impl ConnectionKey {
    /// `None` when `text` is not shaped like a key this server hands out.
    pub fn parse(text: &str) -> Option<ConnectionKey> {
        let (secret, id) = text.split_once('!')?;
        let well_formed = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric());
        (well_formed(secret) && well_formed(id)).then(|| ConnectionKey { secret: secret.into(), id: id.into() })
    }

    pub fn matches(&self, secret: &str) -> bool {
        constant_time_eq(self.secret.as_bytes(), secret.as_bytes())
    }
}

impl std::fmt::Display for ConnectionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}!{}", self.secret, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_bad_shapes_are_refused() {
        let key = ConnectionKey { secret: random_text(12), id: random_text(9) };
        assert_eq!(ConnectionKey::parse(&key.to_string()), Some(key.clone()));
        assert!(key.matches(&key.secret));
        assert!(!key.matches("other"));
        for bad in ["", "abc", "!abc", "abc!", "_____!ablyjs_test_fake-key____", "a!b!c"] {
            assert_eq!(ConnectionKey::parse(bad), None, "{bad}");
        }
    }
}
