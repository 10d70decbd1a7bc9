//! Ably auth from SQL: `ably.create_token_request()` signs a TokenRequest
//! with the configured key, so a web app hands it to the `ably` SDK
//! (authUrl / authCallback) and the key secret never leaves the database.

use crate::errors::{raise, Code};
use crate::guc;
use crate::token::{self, ApiKey, TokenError, TokenParams};
use pgrx::datum::Interval;
use pgrx::prelude::*;

#[pg_extern(
    volatile,
    sql = r#"
CREATE FUNCTION ably.create_token_request(
    client_id text DEFAULT NULL,
    capability jsonb DEFAULT NULL,
    ttl interval DEFAULT '1 hour'
) RETURNS jsonb VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION ably.create_token_request(text, jsonb, interval) IS
    'A signed Ably TokenRequest for the ably SDK (authUrl/authCallback); the key never leaves the database';
"#
)]
fn create_token_request(
    client_id: Option<&str>,
    capability: Option<pgrx::JsonB>,
    ttl: Option<Interval>,
) -> pgrx::JsonB {
    let Some(key_text) = guc::string(&guc::API_KEY) else {
        raise(
            Code::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "ably.api_key is not set",
            "Set it with ALTER SYSTEM SET ably.api_key = '...'; SELECT pg_reload_conf();",
        );
    };
    let key = ApiKey::parse(&key_text).unwrap_or_else(|_| {
        raise(
            Code::ERRCODE_INVALID_PARAMETER_VALUE,
            "ably.api_key is not a valid Ably API key",
            "An Ably key looks like appId.keyId:secret.",
        )
    });
    let ttl_ms = ttl.map(|t| {
        let ms = (i64::from(t.months()) * 30 + i64::from(t.days())) * 86_400_000 + t.micros() / 1000;
        if ms <= 0 {
            raise(Code::ERRCODE_INVALID_PARAMETER_VALUE, format!("token ttl must be positive, got {ms} ms"), "Pass an interval such as '1 hour'.");
        }
        ms as u64
    });
    let key_capability = guc::string(&guc::KEY_CAPABILITY).map(|text| {
        serde_json::from_str::<serde_json::Value>(&text).unwrap_or_else(|_| {
            raise(Code::ERRCODE_INVALID_PARAMETER_VALUE, "ably.key_capability is not valid JSON", "Set it to the key's capability, e.g. {\"*\":[\"*\"]}.")
        })
    });
    let params = TokenParams {
        ttl: ttl_ms,
        capability: capability.map(|c| c.0),
        client_id: client_id.map(str::to_string),
    };
    match token::create_token_request(&key, &params, key_capability.as_ref()) {
        Ok(request) => pgrx::JsonB(serde_json::to_value(request).expect("a token request serializes")),
        Err(e) => {
            let hint = match e {
                TokenError::EmptyClientId | TokenError::ControlCharacterInClientId | TokenError::ClientIdTooLong(_) => {
                    "Pass the user's id as client_id: printable text without line breaks, at most 256 characters (NULL for an anonymous token)."
                }
                TokenError::TtlOutOfRange(_) => "ttl is at most 24 hours, e.g. '1 hour'.",
                _ => "Capabilities look like {\"chat:*\": [\"subscribe\", \"presence\"]} and must stay within ably.key_capability.",
            };
            raise(Code::ERRCODE_INVALID_PARAMETER_VALUE, format!("cannot create token request: {e}"), hint)
        }
    }
}
