//! `POST /keys/{keyName}/requestToken`: exchange a TokenRequest for
//! TokenDetails. Signed requests (with `mac`) need no other authentication;
//! unsigned ones must be authenticated with the same key.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::{authenticate, PathParam, body_format, query_map, Reply};
use crate::app::{now_ms, App};
use crate::error::AblyError;
use crate::token::{TokenDetails, TokenRequest};

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
    let request: TokenRequest = if body.is_empty() {
        TokenRequest::default()
    } else {
        body_format(headers).decode(body)?
    };
    let key = app
        .keys
        .get(key_name)
        .ok_or_else(|| AblyError::invalid_credentials(format!("Invalid credentials: key \"{key_name}\" not found")))?;
    if request.mac.is_none() {
        let principal = authenticate(app, headers)?;
        if principal.key_name != key.name {
            return Err(AblyError::invalid_credentials("Unsigned token request must be authenticated with the same key"));
        }
        if principal.by_token {
            // A token may only request a token narrower than itself.
            let mut narrowed = request.clone();
            let wanted = match request.capability.as_deref() {
                Some(c) if !c.is_empty() => crate::capability::Capability::parse(c)?,
                _ => principal.capability.clone(),
            };
            let cap = principal.capability.intersect(&wanted).ok_or_else(|| {
                AblyError::capability_denied("Requested capability is not permitted by the token's capability")
            })?;
            narrowed.capability = Some(cap.canonical());
            return issue(app, key, &narrowed);
        }
    }
    issue(app, key, &request)
}

fn issue(app: &App, key: &crate::keys::ApiKey, request: &TokenRequest) -> Result<TokenDetails, AblyError> {
    let details = app.tokens.issue(key, request, now_ms())?;
    tracing::debug!(key = %key.name, client_id = ?details.client_id, expires = details.expires, "token issued");
    Ok(details)
}
