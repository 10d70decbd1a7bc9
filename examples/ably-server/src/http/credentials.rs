//! Credentials of a REST request: `Authorization` (Basic key or Bearer
//! token), then the clientId the client asserts in `X-Ably-ClientId`
//! (base64). `--require-tls-for-basic` refuses Basic here, before any check.

use axum::http::{header, HeaderMap};
use base64::Engine;

use crate::app::{now_ms, App};
use crate::auth::Principal;
use crate::error::AblyError;

pub fn authenticate(app: &App, headers: &HeaderMap) -> Result<Principal, AblyError> {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if app.settings.require_tls_for_basic
        && authorization.is_some_and(|a| a.trim_start().get(..6).is_some_and(|s| s.eq_ignore_ascii_case("basic ")))
    {
        return Err(AblyError::basic_auth_needs_tls());
    }
    let principal = app.authenticator().with_authorization(authorization, now_ms())?;
    let requested = match headers.get("x-ably-clientid").and_then(|v| v.to_str().ok()) {
        None => None,
        Some(b64) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| AblyError::invalid_client_id("X-Ably-ClientId must be base64 of a UTF-8 clientId"))?,
        ),
    };
    principal.with_requested_client_id(requested.as_deref())
}
