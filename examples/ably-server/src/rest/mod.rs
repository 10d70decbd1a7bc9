//! The REST API: one module per endpoint. Handlers return `Result`s that
//! `http::Reply` turns into responses, so every error has Ably's shape.

mod batch;
mod batch_presence;
mod channel_access;
pub mod debug;
mod history;
mod presence;
mod publish;
mod time;
mod token;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use crate::app::App;

/// Ably's REST routes (the local-only `/_debug` ones are in `debug`).
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/time", get(time::time))
        .route("/messages", post(batch::batch_publish))
        .route("/presence", get(batch_presence::batch_presence))
        .route("/channels/{channel}/messages", post(publish::publish).get(history::history))
        .route("/channels/{channel}/presence", get(presence::members))
        .route("/keys/{key_name}/requestToken", post(token::request_token))
}
