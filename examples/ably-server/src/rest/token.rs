//! `POST /keys/{keyName}/requestToken`: exchange a TokenRequest for
//! TokenDetails. Signed requests (with `mac`) need no other authentication;
//! unsigned ones must be authenticated with the same key. An unsigned request
//! authenticated with a token is confined to that token: it never yields a
//! token with another clientId, a wider capability or a later expiry.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use crate::app::{now_ms, App};
use crate::auth::Principal;
use crate::capability::Capability;
use crate::error::AblyError;
use crate::http::{authenticate, body_format, query_map, PathParam, Reply};
use crate::keys::ApiKey;
use crate::token::{TokenDetails, TokenRequest, DEFAULT_TTL_MS};

pub async fn request_token(
    State(app): State<Arc<App>>,
    PathParam(key_name): PathParam,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reply = Reply::negotiate(&headers, &query_map(q.as_deref()));
    reply.result(StatusCode::OK, handle(&app, &key_name, &headers, &body))
}

fn handle(app: &App, key_name: &str, headers: &HeaderMap, body: &[u8]) -> Result<TokenDetails, AblyError> {
    let mut request: TokenRequest = if body.is_empty() {
        TokenRequest::default()
    } else {
        body_format(headers).decode(body)?
    };
    let key = app
        .keys
        .get(key_name)
        .ok_or_else(|| AblyError::invalid_credentials(format!("Invalid credentials: key \"{key_name}\" not found")))?;
    let now = now_ms();
    if request.mac.is_none() {
        let principal = authenticate(app, headers)?;
        if principal.key_name != key.name {
            return Err(AblyError::invalid_credentials("Unsigned token request must be authenticated with the same key"));
        }
        if principal.by_token {
            request = confine(request, &principal, now)?;
        }
    }
    issue(app, key, &request, now)
}

/// Narrows a token-authenticated request to the token it was made with:
/// the token's clientId (a wildcard token may name any), the intersection of
/// capabilities, and an expiry no later than the token's own.
fn confine(mut request: TokenRequest, token: &Principal, now: i64) -> Result<TokenRequest, AblyError> {
    let wanted = match request.capability.as_deref().filter(|c| !c.is_empty()) {
        Some(text) => Capability::parse(text)?,
        None => token.capability.clone(),
    };
    let capability = token.capability.intersect(&wanted).ok_or_else(|| {
        AblyError::capability_denied("Requested capability is not permitted by the token's capability")
    })?;
    request.capability = Some(capability.canonical());

    let requested = request.client_id.as_deref().filter(|c| !c.is_empty());
    request.client_id = match (requested, token.client_id.as_deref()) {
        (_, Some("*")) => requested.map(String::from).or(Some("*".to_string())),
        (None, own) => own.map(String::from),
        (Some(r), Some(own)) if r == own => Some(r.to_string()),
        (Some(r), own) => {
            return Err(AblyError::incompatible_credentials(format!(
                "A token {} cannot request a token for clientId \"{r}\"",
                own.map_or("without a clientId".to_string(), |o| format!("for \"{o}\""))
            )))
        }
    };

    let left = token.expires.map_or(DEFAULT_TTL_MS, |e| e - now);
    if left <= 0 {
        return Err(AblyError::token_expired());
    }
    request.ttl = Some(request.ttl.unwrap_or(DEFAULT_TTL_MS).min(left));
    Ok(request)
}

fn issue(app: &App, key: &ApiKey, request: &TokenRequest, now: i64) -> Result<TokenDetails, AblyError> {
    let details = app.tokens.issue(key, request, now)?;
    tracing::debug!(key = %key.name, client_id = ?details.client_id, expires = details.expires, "token issued");
    Ok(details)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(client_id: Option<&str>, capability: &str, expires: i64) -> Principal {
        Principal {
            key_name: "a.b".into(),
            capability: Capability::parse(capability).unwrap(),
            client_id: client_id.map(String::from),
            expires: Some(expires),
            by_token: true,
        }
    }

    fn request(client_id: Option<&str>, capability: Option<&str>, ttl: Option<i64>) -> TokenRequest {
        TokenRequest {
            client_id: client_id.map(String::from),
            capability: capability.map(String::from),
            ttl,
            ..Default::default()
        }
    }

    #[test]
    fn a_token_never_yields_another_client_id() {
        let alice = token(Some("alice"), r#"{"*":["*"]}"#, 10_000);
        assert_eq!(confine(request(None, None, None), &alice, 0).unwrap().client_id.as_deref(), Some("alice"));
        assert_eq!(confine(request(Some("bob"), None, None), &alice, 0).unwrap_err().code, 40102);
        assert_eq!(confine(request(Some("*"), None, None), &alice, 0).unwrap_err().code, 40102);
        let anonymous = token(None, r#"{"*":["*"]}"#, 10_000);
        assert_eq!(confine(request(None, None, None), &anonymous, 0).unwrap().client_id, None);
        assert_eq!(confine(request(Some("bob"), None, None), &anonymous, 0).unwrap_err().code, 40102);
        let wildcard = token(Some("*"), r#"{"*":["*"]}"#, 10_000);
        assert_eq!(confine(request(Some("bob"), None, None), &wildcard, 0).unwrap().client_id.as_deref(), Some("bob"));
    }

    #[test]
    fn a_token_never_yields_a_wider_capability_or_a_later_expiry() {
        let narrow = token(Some("c"), r#"{"chat:*":["subscribe"]}"#, 5_000);
        let r = confine(request(None, Some(r#"{"*":["*"]}"#), Some(86_400_000)), &narrow, 1_000).unwrap();
        assert_eq!(r.capability.as_deref(), Some(r#"{"chat:*":["subscribe"]}"#));
        assert_eq!(r.ttl, Some(4_000));
        let r = confine(request(None, None, None), &narrow, 1_000).unwrap();
        assert_eq!((r.capability.as_deref(), r.ttl), (Some(r#"{"chat:*":["subscribe"]}"#), Some(4_000)));
        let e = confine(request(None, Some(r#"{"news":["publish"]}"#), None), &narrow, 1_000).unwrap_err();
        assert_eq!(e.code, 40160);
    }
}
