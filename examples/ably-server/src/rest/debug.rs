//! LOCAL-SERVER ONLY endpoints, not part of Ably's API, for tests:
//! `GET /_debug/stats` gives counters (connection attempts, open connections,
//! publishes), e.g. to check that a client with a bad key does not retry in a
//! loop; `POST /_debug/connections/{id}/drop` closes one realtime connection's
//! socket abruptly to simulate a network blip.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::{PathParam, Reply};
use crate::app::App;
use crate::error::AblyError;

pub async fn stats(State(app): State<Arc<App>>) -> Response {
    Reply::json().ok(StatusCode::OK, &app.stats.snapshot(), None)
}

pub async fn drop_connection(State(app): State<Arc<App>>, PathParam(id): PathParam) -> Response {
    if app.drop_connection(&id) {
        Reply::json().ok(StatusCode::OK, &serde_json::json!({ "dropped": id }), None)
    } else {
        Reply::json().error(&AblyError::not_found(format!("No live connection \"{id}\"")))
    }
}
