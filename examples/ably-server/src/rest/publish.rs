//! `POST /channels/{channel}/messages`: publish one message or an array of
//! them atomically. Answers 201 with `{channel, messageId, serials}` — never
//! an empty body, which ably-js cannot parse.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Serialize;

use super::{authenticate, PathParam, decode_one_or_many, query_map, Reply};
use crate::app::{now_ms, App, Stats};
use crate::channel::Origin;
use crate::error::AblyError;
use crate::message::Message;
use crate::publish;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishResponse {
    pub channel: String,
    pub message_id: String,
    pub serials: Vec<Option<String>>,
}

pub async fn publish(
    State(app): State<Arc<App>>,
    PathParam(channel): PathParam,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reply = Reply::negotiate(&headers, &query_map(q.as_deref()));
    reply.result(StatusCode::CREATED, handle(&app, &channel, &headers, &body))
}

fn handle(app: &App, channel: &str, headers: &HeaderMap, body: &[u8]) -> Result<PublishResponse, AblyError> {
    let principal = authenticate(app, headers)?;
    let messages: Vec<Message> = decode_one_or_many(headers, body)?;
    publish_to(app, &principal, channel, messages)
}

/// Publishes over REST; shared with batch publish.
pub fn publish_to(
    app: &App,
    principal: &crate::auth::Principal,
    channel: &str,
    messages: Vec<Message>,
) -> Result<PublishResponse, AblyError> {
    let prepared = publish::prepare(channel, messages, principal, app.settings.max_message_size, None)?;
    let message_id = prepared.ids.message_id().to_string();
    let count = prepared.messages.len();
    let published = app.channels.with(channel, |c| c.publish(prepared, &Origin::default(), now_ms()))?;
    Stats::bump(&app.stats.rest_publishes, 1);
    if !published.duplicate {
        Stats::bump(&app.stats.messages_stored, count as u64);
    }
    tracing::debug!(
        channel,
        message_id = %message_id,
        count,
        duplicate = published.duplicate,
        key = %principal.key_name,
        "rest publish"
    );
    Ok(PublishResponse { channel: channel.to_string(), message_id, serials: published.serials })
}
