//! `GET /time`: server time as `[ms]`, no authentication.

use axum::http::{HeaderMap, StatusCode};
use axum::extract::RawQuery;
use axum::response::Response;

use super::{query_map, Reply};
use crate::app::now_ms;

pub async fn time(headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    Reply::negotiate(&headers, &query_map(q.as_deref())).ok(StatusCode::OK, &[now_ms()], None)
}
