//! Ably tokens: verifying TokenRequests (HMAC-SHA256 over the canonical sign
//! text of §A10), issuing TokenDetails and looking tokens up later. A token's
//! capability is always a subset of its key's. Tokens are forgotten when they
//! expire and nonces when a replay could no longer pass the timestamp check,
//! so memory follows what is live; a token's text carries its expiry, so a
//! forgotten token is still answered "expired" (40142), never "unknown".

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize};
use sha2::Sha256;

use crate::capability::Capability;
use crate::error::AblyError;
use crate::keys::{constant_time_eq, ApiKey};
use crate::lenient;

pub const DEFAULT_TTL_MS: i64 = 60 * 60 * 1000;
pub const MAX_TTL_MS: i64 = 24 * 60 * 60 * 1000;
/// How far a signed request's timestamp may be from server time.
pub const TIMESTAMP_WINDOW_MS: i64 = 2 * 60 * 1000;

/// Capability as sent in a TokenRequest: canonical JSON text (what ably-js
/// signs), or an object from hand-written unsigned requests.
fn capability_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        None => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    })
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRequest {
    #[serde(default)]
    pub key_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub ttl: Option<i64>,
    #[serde(default, deserialize_with = "capability_text")]
    pub capability: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub timestamp: Option<i64>,
    #[serde(default)]
    pub nonce: Option<String>,
    #[serde(default)]
    pub mac: Option<String>,
}

impl TokenRequest {
    /// The six fields, each followed by a newline; absent fields are empty.
    pub fn sign_text(&self) -> String {
        let num = |n: Option<i64>| n.map(|v| v.to_string()).unwrap_or_default();
        format!(
            "{}\n{}\n{}\n{}\n{}\n{}\n",
            self.key_name.as_deref().unwrap_or(""),
            num(self.ttl),
            self.capability.as_deref().unwrap_or(""),
            self.client_id.as_deref().unwrap_or(""),
            num(self.timestamp),
            self.nonce.as_deref().unwrap_or(""),
        )
    }
}

/// Standard-base64 HMAC-SHA256 of `text` keyed with `secret`.
pub fn mac(secret: &str, text: &str) -> String {
    let mut h = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    h.update(text.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize().into_bytes())
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenDetails {
    pub token: String,
    pub key_name: String,
    pub issued: i64,
    pub expires: i64,
    pub capability: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// What a token grants, looked up on every use.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub key_name: String,
    pub capability: Capability,
    pub client_id: Option<String>,
    pub expires: i64,
}

#[derive(Debug, Default)]
pub struct TokenStore {
    tokens: Mutex<HashMap<String, IssuedToken>>,
    /// `nonce` → its request timestamp, kept while a replay could still pass
    /// the timestamp check.
    nonces: Mutex<HashMap<String, i64>>,
}

/// How a token string failed to authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenProblem {
    Unknown,
    Expired,
}

/// Random text, then `.` and the expiry in ms.
fn new_token(expires: i64) -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    format!("{}.{expires}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// The expiry a token's text names, if it is one of ours.
fn expiry_of(token: &str) -> Option<i64> {
    token.rsplit_once('.').and_then(|(_, ms)| ms.parse().ok())
}

impl TokenStore {
    /// Verifies `req` for `key` and issues a token. `signed` requests must carry
    /// a valid mac, a current timestamp and an unused nonce; unsigned ones were
    /// already authenticated by the caller.
    pub fn issue(&self, key: &ApiKey, req: &TokenRequest, now: i64) -> Result<TokenDetails, AblyError> {
        if let Some(name) = &req.key_name {
            if name != &key.name {
                return Err(AblyError::invalid_credentials(format!(
                    "Token request keyName \"{name}\" does not match key \"{}\"",
                    key.name
                )));
            }
        }
        if let Some(given) = &req.mac {
            let want = mac(key.secret(), &req.sign_text());
            if !constant_time_eq(given.as_bytes(), want.as_bytes()) {
                return Err(AblyError::invalid_credentials("Invalid mac in token request"));
            }
            let timestamp = req
                .timestamp
                .ok_or_else(|| AblyError::invalid_parameter("Token request is missing timestamp"))?;
            if (now - timestamp).abs() > TIMESTAMP_WINDOW_MS {
                return Err(AblyError::timestamp_not_current());
            }
            let nonce = req
                .nonce
                .as_deref()
                .filter(|n| n.len() >= 16)
                .ok_or_else(|| AblyError::invalid_parameter("Token request nonce must be at least 16 characters"))?;
            let mut nonces = self.nonces.lock().unwrap_or_else(|p| p.into_inner());
            if nonces.insert(format!("{}\n{nonce}", key.name), timestamp).is_some() {
                return Err(AblyError::nonce_reused());
            }
        }
        let ttl = req.ttl.unwrap_or(DEFAULT_TTL_MS);
        if ttl <= 0 || ttl > MAX_TTL_MS {
            return Err(AblyError::invalid_parameter(format!(
                "Invalid ttl {ttl}: must be between 1 and {MAX_TTL_MS} ms"
            )));
        }
        let capability = match req.capability.as_deref().filter(|c| !c.is_empty()) {
            None => key.capability.clone(),
            Some(text) => key.capability.intersect(&Capability::parse(text)?).ok_or_else(|| {
                AblyError::capability_denied("Requested capability is not permitted by the key's capability")
            })?,
        };
        let client_id = req.client_id.clone().filter(|c| !c.is_empty());
        let details = TokenDetails {
            token: new_token(now + ttl),
            key_name: key.name.clone(),
            issued: now,
            expires: now + ttl,
            capability: capability.canonical(),
            client_id: client_id.clone(),
        };
        let issued = IssuedToken { key_name: key.name.clone(), capability, client_id, expires: details.expires };
        self.tokens.lock().unwrap_or_else(|p| p.into_inner()).insert(details.token.clone(), issued);
        Ok(details)
    }

    pub fn lookup(&self, token: &str, now: i64) -> Result<IssuedToken, TokenProblem> {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        match tokens.get(token) {
            Some(t) if t.expires > now => Ok(t.clone()),
            Some(_) => Err(TokenProblem::Expired),
            None if expiry_of(token).is_some_and(|e| e <= now) => Err(TokenProblem::Expired),
            None => Err(TokenProblem::Unknown),
        }
    }

    /// Forgets expired tokens, and nonces whose request timestamp is too old
    /// to pass the timestamp check again. Returns how many were forgotten.
    pub fn sweep(&self, now: i64) -> usize {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        let mut nonces = self.nonces.lock().unwrap_or_else(|p| p.into_inner());
        let before = tokens.len() + nonces.len();
        tokens.retain(|_, t| t.expires > now);
        nonces.retain(|_, ts| *ts + TIMESTAMP_WINDOW_MS >= now);
        before - tokens.len() - nonces.len()
    }

    /// (tokens, nonces) remembered now.
    pub fn len(&self) -> (usize, usize) {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner()).len();
        (tokens, self.nonces.lock().unwrap_or_else(|p| p.into_inner()).len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS: i64 = 1_700_000_000_000;

    fn key() -> ApiKey {
        ApiKey::parse_spec("appId.keyId:keySecret").unwrap()
    }

    fn req(ttl: Option<i64>, capability: Option<&str>, client_id: Option<&str>) -> TokenRequest {
        TokenRequest {
            key_name: Some("appId.keyId".into()),
            ttl,
            capability: capability.map(String::from),
            client_id: client_id.map(String::from),
            timestamp: Some(TS),
            nonce: Some("0123456789abcdef".into()),
            mac: None,
        }
    }

    #[test]
    fn reference_vector_1_minimal_request() {
        let r = req(None, None, None);
        assert_eq!(r.sign_text(), "appId.keyId\n\n\n\n1700000000000\n0123456789abcdef\n");
        assert_eq!(mac("keySecret", &r.sign_text()), "hof9jY3Ir8CZuMxMW/MEF7NHdZ61VWK2ByjCJDseUO0=");
    }

    #[test]
    fn reference_vector_2_full_request() {
        let r = req(Some(3_600_000), Some(r#"{"*":["publish","subscribe"]}"#), Some("alice"));
        assert_eq!(mac("keySecret", &r.sign_text()), "K25gizcKpv/ECAQe0EkF9UNae3+19fncU3GFejyavsA=");
    }

    #[test]
    fn signed_request_issues_a_token_once() {
        let store = TokenStore::default();
        let mut r = req(Some(3_600_000), Some(r#"{"*":["publish","subscribe"]}"#), Some("alice"));
        r.mac = Some(mac("keySecret", &r.sign_text()));
        let d = store.issue(&key(), &r, TS + 1000).unwrap();
        assert_eq!(d.expires - d.issued, 3_600_000);
        assert_eq!(d.capability, r#"{"*":["publish","subscribe"]}"#);
        assert_eq!(d.client_id.as_deref(), Some("alice"));
        let t = store.lookup(&d.token, TS + 2000).unwrap();
        assert_eq!(t.client_id.as_deref(), Some("alice"));
        assert_eq!(store.lookup(&d.token, d.expires).unwrap_err(), TokenProblem::Expired);
        assert_eq!(store.lookup("nope", TS).unwrap_err(), TokenProblem::Unknown);
        // Same nonce again: replay.
        assert_eq!(store.issue(&key(), &r, TS + 1000).unwrap_err().code, 40105);
    }

    #[test]
    fn expired_tokens_and_stale_nonces_are_forgotten() {
        let store = TokenStore::default();
        let mut r = req(Some(1000), None, None);
        r.mac = Some(mac("keySecret", &r.sign_text()));
        let d = store.issue(&key(), &r, TS).unwrap();
        assert_eq!(store.len(), (1, 1));
        store.sweep(TS + 999);
        assert_eq!(store.len(), (1, 1));
        store.sweep(TS + 1000);
        assert_eq!(store.len(), (0, 1), "the token is gone at expiry");
        assert_eq!(store.lookup(&d.token, TS + 1000).unwrap_err(), TokenProblem::Expired, "still told apart");
        // The nonce is kept while its timestamp could pass the check again.
        assert_eq!(store.issue(&key(), &r, TS + TIMESTAMP_WINDOW_MS).unwrap_err().code, 40105);
        store.sweep(TS + TIMESTAMP_WINDOW_MS + 1);
        assert_eq!(store.len(), (0, 0));
        assert_eq!(store.lookup("forged.notanumber", TS).unwrap_err(), TokenProblem::Unknown);
    }

    #[test]
    fn signed_request_checks() {
        let store = TokenStore::default();
        let mut r = req(None, None, None);
        r.mac = Some("AAAA".into());
        assert_eq!(store.issue(&key(), &r, TS).unwrap_err().code, 40101);

        r.mac = Some(mac("keySecret", &r.sign_text()));
        assert_eq!(store.issue(&key(), &r, TS + TIMESTAMP_WINDOW_MS + 1).unwrap_err().code, 40104);

        let mut long = req(Some(MAX_TTL_MS + 1), None, None);
        long.mac = Some(mac("keySecret", &long.sign_text()));
        assert_eq!(store.issue(&key(), &long, TS).unwrap_err().code, 40003);
    }

    #[test]
    fn capability_is_narrowed_to_the_key() {
        let store = TokenStore::default();
        let narrow = ApiKey::parse_spec(r#"appId.keyId:keySecret={"chat:*":["subscribe"]}"#).unwrap();
        let d = store.issue(&narrow, &req(None, Some(r#"{"*":["*"]}"#), None), TS).unwrap();
        assert_eq!(d.capability, r#"{"chat:*":["subscribe"]}"#);
        let e = store.issue(&narrow, &req(None, Some(r#"{"other":["publish"]}"#), None), TS).unwrap_err();
        assert_eq!(e.code, 40160);
    }
}
