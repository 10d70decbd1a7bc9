//! `POST /messages`: batch publish. The body is a BatchSpec or an array of
//! them; each is published atomically per channel. The reply is the current
//! (ably-js v2) shape: HTTP 201 with one `{successCount, failureCount,
//! results}` per BatchSpec, per-channel failures reported inside `results`.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::publish::{publish_to, PublishResponse};
use super::{authenticate, decode_one_or_many, query_map, OneOrMany, Reply};
use crate::app::App;
use crate::error::{AblyError, ErrorInfo};
use crate::message::Message;

const MAX_CHANNELS: usize = 100;
const MAX_MESSAGES_PER_SPEC: usize = 1000;

#[derive(Debug, Deserialize)]
struct BatchSpec {
    channels: OneOrMany<String>,
    messages: OneOrMany<Message>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum ChannelResult {
    Success(PublishResponse),
    Failure { channel: String, error: ErrorInfo },
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SpecResult {
    success_count: usize,
    failure_count: usize,
    results: Vec<ChannelResult>,
}

pub async fn batch_publish(
    State(app): State<Arc<App>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reply = Reply::negotiate(&headers, &query_map(q.as_deref()));
    reply.result(StatusCode::CREATED, handle(&app, &headers, &body))
}

fn handle(app: &App, headers: &HeaderMap, body: &[u8]) -> Result<Vec<SpecResult>, AblyError> {
    let principal = authenticate(app, headers)?;
    let specs: Vec<BatchSpec> = decode_one_or_many(headers, body)?;
    let specs: Vec<(Vec<String>, Vec<Message>)> =
        specs.into_iter().map(|s| (s.channels.into_vec(), s.messages.into_vec())).collect();
    let distinct: BTreeSet<&String> = specs.iter().flat_map(|(c, _)| c).collect();
    if distinct.len() > MAX_CHANNELS {
        return Err(AblyError::invalid_parameter(format!("A batch may name at most {MAX_CHANNELS} channels")));
    }
    if specs.iter().any(|(_, m)| m.len() > MAX_MESSAGES_PER_SPEC) {
        return Err(AblyError::invalid_parameter(format!(
            "A BatchSpec may hold at most {MAX_MESSAGES_PER_SPEC} messages"
        )));
    }
    Ok(specs
        .into_iter()
        .map(|(channels, messages)| {
            let results: Vec<ChannelResult> = channels
                .into_iter()
                .map(|channel| match publish_to(app, &principal, &channel, messages.clone()) {
                    Ok(ok) => ChannelResult::Success(ok),
                    Err(e) => ChannelResult::Failure { channel, error: e.info() },
                })
                .collect();
            let success_count = results.iter().filter(|r| matches!(r, ChannelResult::Success(_))).count();
            SpecResult { success_count, failure_count: results.len() - success_count, results }
        })
        .collect())
}
