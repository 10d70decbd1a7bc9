//! HTTP plumbing shared by the REST API and the realtime endpoint: query
//! strings, path parameters, request bodies, credentials from headers, CORS,
//! and `Reply`, the only place that turns results into HTTP responses (so
//! every error has Ably's shape).

pub mod cors;
mod credentials;
mod reply;

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Path};
use axum::http::{header, request::Parts, HeaderMap};
use axum::response::Response;
use serde::Deserialize;

pub use credentials::authenticate;
pub use reply::Reply;

use crate::error::AblyError;
use crate::format::Format;

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
pub fn body_format(headers: &HeaderMap) -> Format {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map_or(Format::Json, Format::from_media_type)
}

/// A JSON/msgpack value that may be a single item or an array of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    Many(Vec<T>),
    One(T),
}

impl<T> OneOrMany<T> {
    pub fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::Many(v) => v,
            OneOrMany::One(t) => vec![t],
        }
    }
}

/// Decodes a request body holding one item or an array of items.
pub fn decode_body<T: serde::de::DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<OneOrMany<T>, AblyError> {
    if body.is_empty() {
        return Err(AblyError::invalid_body("Request body is empty"));
    }
    body_format(headers).decode::<OneOrMany<T>>(body)
}
