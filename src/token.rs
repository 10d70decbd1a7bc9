//! Signed Ably TokenRequests, so SQL callers can hand browsers short-lived
//! credentials without ever seeing the API key (protocol reference §A10).
//!
//! Invariants: the key secret never appears in a `Debug` output or an error
//! message; a TokenRequest is only signed after its ttl, capability and
//! clientId have been validated, and its capability is the canonical text
//! that the mac covers, byte for byte.

use crate::channel::pattern_covers as resource_covers;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::distr::{Alphanumeric, SampleString};
use serde::Serialize;
use serde_json::Value;
use sha2::Sha256;

/// Longest clientId ably_pg signs. Ably documents no limit; a clientId
/// travels with every message and presence event of the client.
pub const MAX_CLIENT_ID_CHARS: usize = 256;

/// Longest token lifetime Ably grants to a non-revocable key (24 hours);
/// asking for more is rejected by the server with 40003, so we refuse first.
pub const MAX_TTL_MS: u64 = 24 * 60 * 60 * 1000;

/// Ably requires at least 16 characters; alphanumerics give ~95 bits.
const NONCE_LEN: usize = 16;

/// Capability operations Ably documents (§A10), plus the `*` wildcard.
/// Unknown names are refused rather than passed through: a typo would
/// otherwise give a token that quietly lacks the right the caller meant.
const OPERATIONS: &[&str] = &[
    "*",
    "annotation-publish",
    "annotation-subscribe",
    "channel-metadata",
    "history",
    "message-delete-any",
    "message-delete-own",
    "message-update-any",
    "message-update-own",
    "object-publish",
    "object-subscribe",
    "presence",
    "privileged-headers",
    "publish",
    "push-admin",
    "push-subscribe",
    "stats",
    "subscribe",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Carries a fixed description only: the input may contain the secret.
    #[error("The Ably API key is malformed: {0}; expected the form appId.keyId:secret")]
    MalformedKey(&'static str),
    #[error("The capability is invalid: {0}")]
    InvalidCapability(String),
    #[error("The capability names unknown operation \"{operation}\" for resource \"{resource}\"")]
    UnknownOperation { resource: String, operation: String },
    #[error("The capability asks for \"{operation}\" on \"{resource}\", which the API key does not allow")]
    CapabilityExceedsKey { resource: String, operation: String },
    #[error("The token ttl must be between 1 and {MAX_TTL_MS} milliseconds, got {0}")]
    TtlOutOfRange(u64),
    #[error("The clientId must not be empty; omit it for an anonymous token")]
    EmptyClientId,
    /// The clientId is part of the newline-separated text the mac signs: a
    /// control character in it could make one signature fit another request.
    #[error("The clientId must not contain control characters (such as a line break)")]
    ControlCharacterInClientId,
    #[error("The clientId must be at most {MAX_CLIENT_ID_CHARS} characters, got {0}")]
    ClientIdTooLong(usize),
    #[error("The system clock is before 1970, so no token timestamp can be made")]
    ClockBeforeEpoch,
}

/// An Ably API key split into the public key name and the secret.
///
/// The fields are private so the secret can only leave through
/// [`ApiKey::secret`], which is crate-visible for signing and Basic auth.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    name: String,
    secret: String,
}

impl ApiKey {
    /// Parses `appId.keyId:secret`. Surrounding whitespace is ignored (a
    /// key pasted into a config file often carries a newline); any other
    /// whitespace or control character is refused because the key ends up
    /// in an HTTP header.
    pub fn parse(text: &str) -> Result<ApiKey, TokenError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(TokenError::MalformedKey("it is empty"));
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(TokenError::MalformedKey(
                "it contains whitespace or control characters",
            ));
        }
        let Some((name, secret)) = text.split_once(':') else {
            return Err(TokenError::MalformedKey(
                "the ':' before the secret is missing",
            ));
        };
        let Some((app_id, key_id)) = name.split_once('.') else {
            return Err(TokenError::MalformedKey(
                "the key name has no '.' between appId and keyId",
            ));
        };
        if app_id.is_empty() || key_id.is_empty() || key_id.contains('.') {
            return Err(TokenError::MalformedKey(
                "the key name must be exactly appId.keyId",
            ));
        }
        if secret.is_empty() {
            return Err(TokenError::MalformedKey("the secret is empty"));
        }
        Ok(ApiKey {
            name: name.to_owned(),
            secret: secret.to_owned(),
        })
    }

    /// `appId.keyId`: public, safe to log.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn secret(&self) -> &str {
        &self.secret
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// What the caller may choose about a token; everything else is fixed by
/// the key. `None` means "let Ably apply its default".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenParams {
    /// Milliseconds; Ably's default is one hour.
    pub ttl: Option<u64>,
    /// `{resource: [operation, …]}`; Ably's default is the key's capability.
    pub capability: Option<Value>,
    /// `*` lets the holder assume any clientId.
    pub client_id: Option<String>,
}

/// A signed TokenRequest, serialized exactly as Ably expects it: camelCase
/// names and unset fields omitted rather than null (§A10).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRequest {
    pub key_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
    /// Canonical JSON text; the mac covers this exact string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capability: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    pub timestamp: u64,
    pub nonce: String,
    pub mac: String,
}

/// Validates `params`, checks the capability against the key's own
/// (`key_capability`, when known) and signs a TokenRequest stamped now.
pub fn create_token_request(
    key: &ApiKey,
    params: &TokenParams,
    key_capability: Option<&Value>,
) -> Result<TokenRequest, TokenError> {
    if let Some(ttl) = params.ttl {
        validate_ttl(ttl)?;
    }
    let capability = match &params.capability {
        Some(requested) => {
            if let Some(allowed) = key_capability {
                capability_within(requested, allowed)?;
            }
            Some(canonical_capability(requested)?)
        }
        None => None,
    };
    if let Some(client_id) = params.client_id.as_deref() {
        validate_client_id(client_id)?;
    }
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| TokenError::ClockBeforeEpoch)?
        .as_millis();
    let timestamp = u64::try_from(timestamp).unwrap_or(u64::MAX);
    let nonce = Alphanumeric.sample_string(&mut rand::rng(), NONCE_LEN);
    Ok(sign(
        key,
        params.ttl,
        capability,
        params.client_id.clone(),
        timestamp,
        nonce,
    ))
}

/// A clientId ably_pg will sign: not empty, no control characters, not
/// longer than [`MAX_CLIENT_ID_CHARS`].
pub fn validate_client_id(client_id: &str) -> Result<(), TokenError> {
    if client_id.is_empty() {
        return Err(TokenError::EmptyClientId);
    }
    if client_id.chars().any(char::is_control) {
        return Err(TokenError::ControlCharacterInClientId);
    }
    let chars = client_id.chars().count();
    if chars > MAX_CLIENT_ID_CHARS {
        return Err(TokenError::ClientIdTooLong(chars));
    }
    Ok(())
}

/// Ably refuses a zero ttl and anything over 24 hours (40003).
pub fn validate_ttl(ttl: u64) -> Result<(), TokenError> {
    if ttl == 0 || ttl > MAX_TTL_MS {
        return Err(TokenError::TtlOutOfRange(ttl));
    }
    Ok(())
}

/// Signs already-validated fields. Deterministic, so it can be checked
/// against Ably's published vectors; `capability` must be canonical text.
///
/// The sign text is the six fields keyName, ttl, capability, clientId,
/// timestamp, nonce, each followed by `\n`, absent ones as empty strings.
pub fn sign(
    key: &ApiKey,
    ttl: Option<u64>,
    capability: Option<String>,
    client_id: Option<String>,
    timestamp: u64,
    nonce: String,
) -> TokenRequest {
    let ttl_text = ttl.map(|t| t.to_string()).unwrap_or_default();
    let sign_text = format!(
        "{}\n{}\n{}\n{}\n{}\n{}\n",
        key.name(),
        ttl_text,
        capability.as_deref().unwrap_or(""),
        client_id.as_deref().unwrap_or(""),
        timestamp,
        nonce,
    );
    // HMAC accepts keys of any length, so this cannot fail; the fallback
    // keeps the function total without a panic path.
    let mac = match Hmac::<Sha256>::new_from_slice(key.secret().as_bytes()) {
        Ok(mut hmac) => {
            hmac.update(sign_text.as_bytes());
            base64::engine::general_purpose::STANDARD.encode(hmac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    };
    TokenRequest {
        key_name: key.name().to_owned(),
        ttl,
        capability,
        client_id,
        timestamp,
        nonce,
        mac,
    }
}

/// A validated capability: resources in byte order, each with its sorted,
/// de-duplicated operations.
type Capability = Vec<(String, Vec<String>)>;

/// Checks that `v` is `{resource: [operation, …]}` with at least one
/// resource, non-empty resource names and non-empty lists of known
/// operations.
fn parse_capability(v: &Value) -> Result<Capability, TokenError> {
    let Value::Object(map) = v else {
        return Err(TokenError::InvalidCapability(
            "it must be a JSON object mapping resources to arrays of operations".into(),
        ));
    };
    if map.is_empty() {
        return Err(TokenError::InvalidCapability(
            "it must name at least one resource".into(),
        ));
    }
    let mut out: Capability = Vec::with_capacity(map.len());
    for (resource, ops) in map {
        if resource.is_empty() {
            return Err(TokenError::InvalidCapability(
                "a resource name is empty".into(),
            ));
        }
        if resource.chars().any(char::is_control) {
            return Err(TokenError::InvalidCapability(format!(
                "the resource name {} contains a control character",
                json_string(resource)
            )));
        }
        let Value::Array(ops) = ops else {
            return Err(TokenError::InvalidCapability(format!(
                "the operations for \"{resource}\" must be an array of strings"
            )));
        };
        if ops.is_empty() {
            return Err(TokenError::InvalidCapability(format!(
                "the operations for \"{resource}\" must not be empty"
            )));
        }
        let mut names = Vec::with_capacity(ops.len());
        for op in ops {
            let Value::String(op) = op else {
                return Err(TokenError::InvalidCapability(format!(
                    "the operations for \"{resource}\" must be an array of strings"
                )));
            };
            if !OPERATIONS.contains(&op.as_str()) {
                return Err(TokenError::UnknownOperation {
                    resource: resource.clone(),
                    operation: op.clone(),
                });
            }
            names.push(op.clone());
        }
        names.sort();
        names.dedup();
        out.push((resource.clone(), names));
    }
    // serde_json's map is ordered only without its preserve_order feature,
    // which another crate may switch on; sort explicitly.
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Canonical capability text as Ably signs it: no whitespace, resources
/// and each operation list sorted, e.g. `{"*":["publish","subscribe"]}`.
pub fn canonical_capability(v: &Value) -> Result<String, TokenError> {
    let cap = parse_capability(v)?;
    let mut text = String::from("{");
    for (i, (resource, ops)) in cap.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&json_string(resource));
        text.push_str(":[");
        for (j, op) in ops.iter().enumerate() {
            if j > 0 {
                text.push(',');
            }
            text.push_str(&json_string(op));
        }
        text.push(']');
    }
    text.push('}');
    Ok(text)
}

/// serde_json escapes exactly the characters JSON.stringify does for a
/// Rust string (quote, backslash, controls), so the canonical text matches
/// what ably-js would sign.
fn json_string(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// Succeeds when every (resource, operation) in `requested` is granted by
/// `key_capability`; otherwise names the first one that is not.
///
/// A key resource covers a requested one when it is equal, when it is `*`
/// or `[*]*` (every channel), or when it is `ns:*` and the requested one
/// starts with `ns:` (this includes a requested `ns:*` or `ns:a:b`). Other
/// qualified resources (`[…]name`) only cover themselves. A key operation
/// `*` covers every operation; a requested `*` needs a key `*`.
pub fn capability_within(requested: &Value, key_capability: &Value) -> Result<(), TokenError> {
    let requested = parse_capability(requested)?;
    let allowed = parse_capability(key_capability)?;
    for (resource, ops) in &requested {
        for op in ops {
            let granted = allowed.iter().any(|(pattern, allowed_ops)| {
                resource_covers(pattern, resource)
                    && allowed_ops.iter().any(|a| a == "*" || a == op)
            });
            if !granted {
                return Err(TokenError::CapabilityExceedsKey {
                    resource: resource.clone(),
                    operation: op.clone(),
                });
            }
        }
    }
    Ok(())
}


#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key() -> ApiKey {
        ApiKey::parse("appId.keyId:keySecret").expect("valid key")
    }

    #[test]
    fn vector_without_optional_fields() {
        let req = sign(
            &key(),
            None,
            None,
            None,
            1_700_000_000_000,
            "0123456789abcdef".into(),
        );
        assert_eq!(req.mac, "hof9jY3Ir8CZuMxMW/MEF7NHdZ61VWK2ByjCJDseUO0=");
        let text = serde_json::to_string(&req).expect("serializes");
        assert_eq!(
            text,
            r#"{"keyName":"appId.keyId","timestamp":1700000000000,"nonce":"0123456789abcdef","mac":"hof9jY3Ir8CZuMxMW/MEF7NHdZ61VWK2ByjCJDseUO0="}"#
        );
    }

    #[test]
    fn vector_with_ttl_capability_and_client_id() {
        // Written out of order and with whitespace: canonicalisation must
        // produce the text the published vector was signed over.
        let cap: Value = serde_json::from_str(r#"{ "*" : [ "subscribe", "publish" ] }"#).unwrap();
        let canonical = canonical_capability(&cap).unwrap();
        assert_eq!(canonical, r#"{"*":["publish","subscribe"]}"#);
        let req = sign(
            &key(),
            Some(3_600_000),
            Some(canonical),
            Some("alice".into()),
            1_700_000_000_000,
            "0123456789abcdef".into(),
        );
        assert_eq!(req.mac, "K25gizcKpv/ECAQe0EkF9UNae3+19fncU3GFejyavsA=");
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(v["keyName"], "appId.keyId");
        assert_eq!(v["ttl"], 3_600_000);
        assert_eq!(v["capability"], r#"{"*":["publish","subscribe"]}"#);
        assert_eq!(v["clientId"], "alice");
    }

    #[test]
    fn canonical_sorts_resources_and_operations() {
        let cap = json!({
            "zeta": ["subscribe", "publish", "subscribe"],
            "alpha:*": ["presence", "history"],
            "Alpha": ["*"],
        });
        assert_eq!(
            canonical_capability(&cap).unwrap(),
            r#"{"Alpha":["*"],"alpha:*":["history","presence"],"zeta":["publish","subscribe"]}"#
        );
    }

    #[test]
    fn canonical_escapes_like_json_stringify() {
        let cap = json!({"a\"b\\cé/": ["publish"]});
        assert_eq!(
            canonical_capability(&cap).unwrap(),
            "{\"a\\\"b\\\\cé/\":[\"publish\"]}"
        );
    }

    #[test]
    fn canonical_rejects_bad_shapes() {
        for bad in [
            json!([]),
            json!("x"),
            json!({}),
            json!({"a": []}),
            json!({"a": "publish"}),
            json!({"a": [1]}),
            json!({"": ["publish"]}),
        ] {
            assert!(
                matches!(
                    canonical_capability(&bad),
                    Err(TokenError::InvalidCapability(_))
                ),
                "{bad} should be invalid"
            );
        }
        let err = canonical_capability(&json!({"chan": ["publish", "teleport"]})).unwrap_err();
        assert_eq!(
            err,
            TokenError::UnknownOperation {
                resource: "chan".into(),
                operation: "teleport".into()
            }
        );
        assert!(err.to_string().contains("teleport"));
    }

    #[test]
    fn capability_within_accepts_covered_requests() {
        let key_cap =
            json!({"*": ["subscribe"], "orders:*": ["publish", "presence"], "admin": ["*"]});
        for ok in [
            json!({"anything": ["subscribe"]}),
            json!({"*": ["subscribe"]}),
            json!({"orders:42": ["publish", "subscribe"]}),
            json!({"orders:*": ["presence"]}),
            json!({"orders:eu:7": ["publish"]}),
            json!({"admin": ["*"]}),
            json!({"admin": ["push-admin", "history"]}),
        ] {
            assert_eq!(
                capability_within(&ok, &key_cap),
                Ok(()),
                "{ok} should be allowed"
            );
        }
        assert_eq!(
            capability_within(&json!({"x": ["*"]}), &json!({"*": ["*"]})),
            Ok(())
        );
        assert_eq!(
            capability_within(&json!({"x": ["publish"]}), &json!({"[*]*": ["*"]})),
            Ok(())
        );
    }

    #[test]
    fn capability_within_names_what_is_denied() {
        let key_cap = json!({"*": ["subscribe"], "orders:*": ["publish"], "admin": ["*"]});
        let cases = [
            (json!({"chat": ["publish"]}), "chat", "publish"),
            (json!({"orders:1": ["history"]}), "orders:1", "history"),
            (json!({"orders": ["publish"]}), "orders", "publish"),
            (json!({"*": ["publish"]}), "*", "publish"),
            (json!({"orders:*": ["*"]}), "orders:*", "*"),
            (json!({"admins": ["history"]}), "admins", "history"),
        ];
        for (requested, resource, operation) in cases {
            let err = capability_within(&requested, &key_cap).unwrap_err();
            assert_eq!(
                err,
                TokenError::CapabilityExceedsKey {
                    resource: resource.into(),
                    operation: operation.into()
                }
            );
            let text = err.to_string();
            assert!(
                text.contains(resource) && text.contains(operation),
                "{text}"
            );
        }
        // A namespace wildcard does not reach into other namespaces' prefixes.
        let err = capability_within(
            &json!({"ordersx:1": ["publish"]}),
            &json!({"orders:*": ["*"]}),
        );
        assert!(err.is_err());
    }

    #[test]
    fn client_ids_cannot_rearrange_the_signed_text() {
        let params = |id: &str| TokenParams { ttl: None, capability: None, client_id: Some(id.to_string()) };
        for bad in ["alice\n1700000000000\nx", "a\rb", "a\tb", "a\u{7f}", "a\u{85}b"] {
            assert_eq!(create_token_request(&key(), &params(bad), None).unwrap_err(), TokenError::ControlCharacterInClientId, "{bad:?}");
        }
        let long = "x".repeat(MAX_CLIENT_ID_CHARS + 1);
        assert_eq!(create_token_request(&key(), &params(&long), None).unwrap_err(), TokenError::ClientIdTooLong(MAX_CLIENT_ID_CHARS + 1));
        assert!(create_token_request(&key(), &params(&"é".repeat(MAX_CLIENT_ID_CHARS)), None).is_ok());
        let cap = json!({"chat:\n1": ["publish"]});
        assert!(matches!(canonical_capability(&cap), Err(TokenError::InvalidCapability(_))));
    }

    #[test]
    fn ttl_bounds() {
        assert_eq!(validate_ttl(0), Err(TokenError::TtlOutOfRange(0)));
        assert_eq!(validate_ttl(1), Ok(()));
        assert_eq!(validate_ttl(MAX_TTL_MS), Ok(()));
        assert_eq!(
            validate_ttl(MAX_TTL_MS + 1),
            Err(TokenError::TtlOutOfRange(MAX_TTL_MS + 1))
        );
        assert_eq!(
            validate_ttl(0).unwrap_err().to_string(),
            "The token ttl must be between 1 and 86400000 milliseconds, got 0"
        );
        let params = TokenParams {
            ttl: Some(MAX_TTL_MS + 1),
            ..Default::default()
        };
        assert!(matches!(
            create_token_request(&key(), &params, None),
            Err(TokenError::TtlOutOfRange(_))
        ));
    }

    #[test]
    fn create_validates_signs_and_verifies() {
        let params = TokenParams {
            ttl: Some(60_000),
            capability: Some(json!({"chat:*": ["subscribe", "presence"]})),
            client_id: Some("bob".into()),
        };
        let req = create_token_request(&key(), &params, Some(&json!({"*": ["*"]}))).unwrap();
        assert_eq!(
            req.capability.as_deref(),
            Some(r#"{"chat:*":["presence","subscribe"]}"#)
        );
        assert!(req.nonce.len() >= 16 && req.nonce.chars().all(|c| c.is_ascii_alphanumeric()));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(now.abs_diff(req.timestamp) < 60_000);
        let again = sign(
            &key(),
            req.ttl,
            req.capability.clone(),
            req.client_id.clone(),
            req.timestamp,
            req.nonce.clone(),
        );
        assert_eq!(again.mac, req.mac);

        let other = create_token_request(&key(), &params, None).unwrap();
        assert_ne!(other.nonce, req.nonce);

        let denied = create_token_request(&key(), &params, Some(&json!({"chat:*": ["subscribe"]})));
        assert!(matches!(
            denied,
            Err(TokenError::CapabilityExceedsKey { .. })
        ));
        let empty = TokenParams {
            client_id: Some(String::new()),
            ..Default::default()
        };
        assert_eq!(
            create_token_request(&key(), &empty, None),
            Err(TokenError::EmptyClientId)
        );
        let bare = create_token_request(&key(), &TokenParams::default(), None).unwrap();
        let v = serde_json::to_value(&bare).unwrap();
        let obj = v.as_object().unwrap();
        assert!(
            !obj.contains_key("ttl")
                && !obj.contains_key("capability")
                && !obj.contains_key("clientId")
        );
    }

    #[test]
    fn key_parsing_and_redaction() {
        let k = ApiKey::parse("  app1.key1:s3cr3tValue \n").unwrap();
        assert_eq!(k.name(), "app1.key1");
        assert_eq!(k.secret(), "s3cr3tValue");
        let debug = format!("{k:?}");
        assert!(!debug.contains("s3cr3tValue"), "{debug}");
        assert!(debug.contains("app1.key1"));
        // Secrets may themselves contain ':' after the first separator.
        assert_eq!(ApiKey::parse("a.b:x:y").unwrap().secret(), "x:y");
    }

    #[test]
    fn key_parse_errors_do_not_leak_input() {
        let secret = "TopSecretValue42";
        let inputs = [
            String::new(),
            format!("app.key{secret}"),
            format!("appkey:{secret}"),
            format!(".key:{secret}"),
            format!("app.:{secret}"),
            format!("app.key.extra:{secret}"),
            "app.key:".to_string(),
            format!("app.key:{secret} more"),
            format!("app.key:{secret}\u{0}"),
        ];
        for input in inputs {
            let err = ApiKey::parse(&input).expect_err("must be rejected");
            assert!(matches!(err, TokenError::MalformedKey(_)));
            for shown in [err.to_string(), format!("{err:?}")] {
                assert!(!shown.contains(secret), "{shown}");
                assert!(!shown.contains("app.key"), "{shown}");
            }
        }
    }
}
