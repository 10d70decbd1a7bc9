//! `GET /time`: server time as `[ms]`, no authentication.

use axum::extract::RawQuery;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use crate::app::now_ms;
use crate::http::{query_map, Reply};

pub async fn time(headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    Reply::negotiate(&headers, &query_map(q.as_deref())).ok(StatusCode::OK, &[now_ms()], None)
}
