//! `POST /channels/{channel}/messages`: publish one message or an array of
//! them atomically. Answers 201 with `{channel, messageId, serials}` — never
//! an empty body, which ably-js cannot parse. A message carrying
//! `connectionKey` is published on behalf of that realtime connection (TM2h):
//! it gets the connection's id and clientId, and an unknown key is 40006.
//! The `_forceNack` publish param is answered with 40099, as Ably's sandbox does.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Serialize;

use crate::app::{now_ms, App};
use crate::auth::Principal;
use crate::channel::Origin;
use crate::error::AblyError;
use crate::http::{authenticate, decode_body, query_map, PathParam, Reply};
use crate::message::Message;
use crate::publish;
use crate::stats::Stats;

#[derive(Debug, Clone, Serialize)]
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
    let params = query_map(q.as_deref());
    let reply = Reply::negotiate(&headers, &params);
    let result = (|| {
        let principal = authenticate(&app, &headers)?;
        publish::check_params(params.keys())?;
        if params.get("enveloped").is_some_and(|e| e == "false") {
            return Err(AblyError::bad_request("Unenveloped publishes (enveloped=false) are not supported by this local server"));
        }
        let messages: Vec<Message> = decode_body(&headers, &body)?.into_vec();
        publish_to(&app, &principal, &channel, messages)
    })();
    reply.result(StatusCode::CREATED, result)
}

/// Attributes messages that name a realtime connection to that connection.
fn on_behalf(app: &App, messages: &mut [Message]) -> Result<(), AblyError> {
    for m in messages {
        let Some(key) = m.connection_key.take() else { continue };
        let connection = app.connections.find(&key).map_err(|_| {
            AblyError::new(40006, 400, "Invalid connectionKey: no such connection (expired, closed or never issued)")
        })?;
        let own = connection.client_id.as_deref().filter(|c| *c != "*");
        match (m.client_id.as_deref(), own) {
            (Some(given), Some(own)) if given != own => {
                return Err(AblyError::invalid_client_id(format!(
                    "Mismatched clientId \"{given}\" for the connection identified as \"{own}\""
                )))
            }
            (None, Some(own)) => m.client_id = Some(own.to_string()),
            _ => {}
        }
        m.connection_id = Some(connection.id.clone());
    }
    Ok(())
}

/// Publishes over REST; shared with batch publish.
pub fn publish_to(
    app: &App,
    principal: &Principal,
    channel: &str,
    mut messages: Vec<Message>,
) -> Result<PublishResponse, AblyError> {
    on_behalf(app, &mut messages)?;
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
