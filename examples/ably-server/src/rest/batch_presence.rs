//! `GET /presence?channels=a,b`: the members of several channels at once
//! (RSC24). One result per channel, in request order: `{channel, presence}`
//! or, when that channel is refused (name, capability), `{channel, error}`;
//! the request as a whole fails only for bad credentials or parameters.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Serialize;

use super::channel_access;
use super::presence::present;
use crate::app::App;
use crate::capability::op;
use crate::error::{AblyError, ErrorInfo};
use crate::http::{authenticate, query_map, Reply};
use crate::message::PresenceMessage;

const MAX_CHANNELS: usize = 100;

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum ChannelPresence {
    Success { channel: String, presence: Vec<PresenceMessage> },
    Failure { channel: String, error: ErrorInfo },
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct BatchPresenceResult {
    success_count: usize,
    failure_count: usize,
    results: Vec<ChannelPresence>,
}

pub async fn batch_presence(State(app): State<Arc<App>>, RawQuery(q): RawQuery, headers: HeaderMap) -> Response {
    let params = query_map(q.as_deref());
    let reply = Reply::negotiate(&headers, &params);
    let result = (|| -> Result<_, AblyError> {
        let principal = authenticate(&app, &headers)?;
        let channels: Vec<&str> = params
            .get("channels")
            .map(|c| c.split(',').filter(|c| !c.is_empty()).collect())
            .unwrap_or_default();
        if channels.is_empty() {
            return Err(AblyError::invalid_parameter("The channels parameter must name at least one channel"));
        }
        if channels.len() > MAX_CHANNELS {
            return Err(AblyError::invalid_parameter(format!("A batch may name at most {MAX_CHANNELS} channels")));
        }
        let results: Vec<ChannelPresence> = channels
            .into_iter()
            .map(|channel| match channel_access::check(&principal, channel, op::SUBSCRIBE) {
                Ok(()) => ChannelPresence::Success { channel: channel.to_string(), presence: present(&app, channel) },
                Err(e) => ChannelPresence::Failure { channel: channel.to_string(), error: e.info() },
            })
            .collect();
        let success_count = results.iter().filter(|r| matches!(r, ChannelPresence::Success { .. })).count();
        Ok(BatchPresenceResult { success_count, failure_count: results.len() - success_count, results })
    })();
    reply.result(StatusCode::OK, result)
}
