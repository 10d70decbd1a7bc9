//! `GET /channels/{channel}/presence`: the members present now (action
//! PRESENT), optionally filtered by `clientId` / `connectionId`, at most
//! `limit` of them (a single page). Reading never creates a channel.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::channel_access;
use crate::app::App;
use crate::capability::op;
use crate::error::AblyError;
use crate::history::{DEFAULT_LIMIT, MAX_LIMIT};
use crate::http::{query_map, PathParam, Reply};
use crate::message::PresenceMessage;

pub async fn members(
    State(app): State<Arc<App>>,
    PathParam(channel): PathParam,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let params = query_map(q.as_deref());
    let reply = Reply::negotiate(&headers, &params);
    let result = (|| -> Result<_, AblyError> {
        channel_access::authorize(&app, &headers, &channel, op::SUBSCRIBE)?;
        filtered(present(&app, &channel), &params)
    })();
    reply.result(StatusCode::OK, result)
}

/// Every member of `channel` now (none if the channel does not exist).
pub fn present(app: &App, channel: &str) -> Vec<PresenceMessage> {
    app.channels.read(channel, |c| c.map(|c| c.presence_members()).unwrap_or_default())
}

fn filtered(members: Vec<PresenceMessage>, params: &HashMap<String, String>) -> Result<Vec<PresenceMessage>, AblyError> {
    let limit = match params.get("limit") {
        None => DEFAULT_LIMIT,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| AblyError::invalid_parameter(format!("Invalid limit \"{l}\"")))?,
    };
    let client_id = params.get("clientId");
    let connection_id = params.get("connectionId");
    Ok(members
        .into_iter()
        .filter(|m| client_id.is_none_or(|c| m.client_id.as_ref() == Some(c)))
        .filter(|m| connection_id.is_none_or(|c| m.connection_id.as_ref() == Some(c)))
        .take(limit)
        .collect())
}
