//! The realtime WebSocket endpoint at `/`. The upgrade is always accepted:
//! credential problems are reported in-protocol (ERROR then close), because a
//! refused upgrade looks like a network failure and ably-js would retry forever.
//! `socket` moves frames, `handshake` opens or resumes a connection,
//! `session` answers each client frame (with `attach` and `publish`), and
//! `lifecycle` decides what is kept when a transport ends.

mod attach;
mod handshake;
mod lifecycle;
mod publish;
mod session;
mod socket;

use std::sync::Arc;

use axum::extract::ws::{rejection::WebSocketUpgradeRejection, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;

use crate::app::App;
use crate::error::AblyError;
use crate::format::Format;
use crate::http::{query_map, Reply};

/// The connection parameters ably-js puts in the WebSocket URL (§B1).
#[derive(Debug, Clone)]
pub struct ConnectParams {
    pub key: Option<String>,
    pub access_token: Option<String>,
    pub format: Format,
    pub client_id: Option<String>,
    pub echo: bool,
    /// `resume` or `recover`: a connectionKey from an earlier connection.
    pub resume: Option<String>,
}

impl ConnectParams {
    fn from_query(q: &std::collections::HashMap<String, String>) -> Self {
        let get = |k: &str| q.get(k).filter(|v| !v.is_empty()).cloned();
        ConnectParams {
            key: get("key"),
            access_token: get("access_token").or_else(|| get("accessToken")),
            format: q.get("format").and_then(|f| Format::from_param(f)).unwrap_or(Format::Json),
            client_id: get("clientId"),
            echo: q.get("echo").map(String::as_str) != Some("false"),
            resume: get("resume").or_else(|| get("recover")),
        }
    }
}

pub async fn upgrade(
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    State(app): State<Arc<App>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = query_map(q.as_deref());
    match ws {
        Ok(ws) => {
            let params = ConnectParams::from_query(&query);
            ws.max_message_size(app.settings.max_frame_size * 4)
                .on_upgrade(move |socket| socket::run(socket, params, app))
        }
        Err(_) => Reply::negotiate(&headers, &query)
            .error(&AblyError::bad_request("Expected a WebSocket upgrade request at /")),
    }
}
