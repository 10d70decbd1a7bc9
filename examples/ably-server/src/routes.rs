//! The whole HTTP surface: the realtime endpoint at `/`, Ably's REST routes,
//! the local-only debug routes when enabled, and Ably's answer for anything
//! else — 404 with an Ably error body (40400), also for a known path asked
//! with the wrong method, as Ably does. The composition lives here so that
//! `rest` and `realtime` never need each other.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request};
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use crate::app::App;
use crate::error::AblyError;
use crate::http::{cors, query_map, Reply};
use crate::{realtime, rest};

/// Request bodies larger than this are refused before parsing; anything below
/// it gets a proper Ably error (e.g. 40009) from the handlers.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

pub fn router(app: Arc<App>) -> Router {
    let mut router = Router::new().route("/", get(realtime::upgrade)).merge(rest::routes());
    if app.settings.debug_endpoints {
        router = router.merge(rest::debug::routes());
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(cors::layer))
        .with_state(app)
}

async fn not_found(req: Request) -> Response {
    let query = query_map(req.uri().query());
    Reply::negotiate(req.headers(), &query)
        .error(&AblyError::not_found(format!("Not found: {} {}", req.method(), req.uri().path())))
}
