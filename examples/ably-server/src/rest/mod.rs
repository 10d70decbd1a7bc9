//! The REST API: routes, plus what every handler needs first — the query
//! string, the reply format and the authenticated Principal. Handlers return
//! `Result`s; only `Reply` turns them into HTTP, so every error has Ably's shape.

mod batch;
mod cors;
mod debug;
mod history;
mod presence;
mod publish;
mod reply;
mod time;
mod token;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Request};
use axum::http::{header, request::Parts, HeaderMap};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use serde::Deserialize;

use crate::app::{now_ms, App};
use crate::auth::Principal;
use crate::error::AblyError;
use crate::format::Format;
use crate::realtime;

pub use reply::Reply;

/// Request bodies larger than this are refused before parsing; anything below
/// it gets a proper Ably error (e.g. 40009) from the handlers.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(realtime::upgrade))
        .route("/time", get(time::time))
        .route("/messages", post(batch::batch_publish))
        .route("/channels/{channel}/messages", post(publish::publish).get(history::history))
        .route("/channels/{channel}/presence", get(presence::members))
        .route("/keys/{key_name}/requestToken", post(token::request_token))
        .route("/_debug/stats", get(debug::stats))
        .route("/_debug/connections/{id}/drop", post(debug::drop_connection))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(cors::layer))
        .with_state(app)
}

async fn not_found(req: Request) -> Response {
    let headers = req.headers().clone();
    let query = query_map(req.uri().query());
    Reply::negotiate(&headers, &query)
        .error(&AblyError::not_found(format!("Not found: {} {}", req.method(), req.uri().path())))
}

/// A single path parameter (channel or key name), percent-decoded. A path
/// that does not decode (e.g. invalid UTF-8) is 40000 in Ably's error shape.
pub struct PathParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(PathParam(value)),
            Err(e) => Err(Reply::negotiate(&parts.headers, &query_map(parts.uri.query()))
                .error(&AblyError::bad_request(format!("Invalid request path: {e}")))),
        }
    }
}

/// Query parameters, last value wins; undecodable pairs are dropped.
pub fn query_map(raw: Option<&str>) -> HashMap<String, String> {
    raw.and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// Format of a request body, from its Content-Type (JSON if absent).
fn body_format(headers: &HeaderMap) -> Format {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map_or(Format::Json, Format::from_media_type)
}

/// A JSON/msgpack value that may be a single item or an array of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    Many(Vec<T>),
    One(T),
}

impl<T> OneOrMany<T> {
    fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::Many(v) => v,
            OneOrMany::One(t) => vec![t],
        }
    }
}

/// Decodes a request body holding one item or an array of items.
fn decode_one_or_many<T: serde::de::DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<Vec<T>, AblyError> {
    if body.is_empty() {
        return Err(AblyError::invalid_body("Request body is empty"));
    }
    body_format(headers).decode::<OneOrMany<T>>(body).map(OneOrMany::into_vec)
}

/// Authenticates a request from `Authorization`, then applies the clientId
/// the client asserts in `X-Ably-ClientId` (base64).
fn authenticate(app: &App, headers: &HeaderMap) -> Result<Principal, AblyError> {
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
