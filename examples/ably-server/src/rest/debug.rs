//! LOCAL-SERVER ONLY endpoints, not part of Ably's API, served only when the
//! server runs with `--debug-endpoints` (they need no credentials):
//! `GET /_debug/stats` gives counters and gauges (connection attempts, open
//! and suspended connections, publishes, channels and tokens held), e.g. to
//! check that a client with a bad key does not retry in a loop or that unused
//! channels are freed; `POST /_debug/connections/{id}/drop` closes one
//! realtime connection's socket abruptly to simulate a network blip (the
//! connection stays resumable).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

use crate::app::App;
use crate::error::AblyError;
use crate::http::{PathParam, Reply};

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/_debug/stats", get(stats))
        .route("/_debug/connections/{id}/drop", post(drop_connection))
}

async fn stats(State(app): State<Arc<App>>) -> Response {
    Reply::json().ok(StatusCode::OK, &app.stats.snapshot(app.gauges()), None)
}

async fn drop_connection(State(app): State<Arc<App>>, PathParam(id): PathParam) -> Response {
    if app.connections.drop_transport(&id) {
        Reply::json().ok(StatusCode::OK, &serde_json::json!({ "dropped": id }), None)
    } else {
        Reply::json().error(&AblyError::not_found(format!("No live connection \"{id}\"")))
    }
}
