//! `POST /messages`: batch publish. The body is a BatchSpec or an array of
//! them; each is published atomically per channel. The reply's shape follows
//! the `X-Ably-Version` the client sent (§A7):
//!
//! - version 3 and later, or no header (ably-js v2, ably_pg): HTTP 201, one
//!   `{successCount, failureCount, results}` per BatchSpec, per-channel
//!   failures inside `results`;
//! - version 2 and earlier (ably-js v1, `request()` with version 2): a flat
//!   array of per-channel results for a single BatchSpec (an array of such
//!   arrays for several), HTTP 201 when every channel succeeded, else HTTP 400
//!   with error 40020 and the same results as `batchResponse`.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::publish::{publish_to, PublishResponse};
use crate::app::App;
use crate::error::{AblyError, ErrorInfo};
use crate::http::{authenticate, decode_body, query_map, OneOrMany, Reply};
use crate::message::Message;

const MAX_CHANNELS: usize = 100;
const MAX_MESSAGES_PER_SPEC: usize = 1000;
/// The first protocol version whose clients expect the BatchResult shape.
const BATCH_RESULT_VERSION: u32 = 3;

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

/// The legacy whole-request failure: 40020 plus every channel's result.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct LegacyFailure<T: Serialize> {
    error: ErrorInfo,
    batch_response: T,
}

/// The protocol version a request asked for; `None` without the header.
fn requested_version(headers: &HeaderMap) -> Option<u32> {
    let text = headers.get("x-ably-version")?.to_str().ok()?;
    // Old clients send "1.2": the major part decides.
    text.trim().split('.').next()?.parse().ok()
}

pub async fn batch_publish(
    State(app): State<Arc<App>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reply = Reply::negotiate(&headers, &query_map(q.as_deref()));
    let (specs, single) = match publish_all(&app, &headers, &body) {
        Ok(done) => done,
        Err(e) => return reply.error(&e),
    };
    if requested_version(&headers).is_none_or(|v| v >= BATCH_RESULT_VERSION) {
        let results: Vec<SpecResult> = specs
            .into_iter()
            .map(|results| {
                let success_count = results.iter().filter(|r| matches!(r, ChannelResult::Success(_))).count();
                SpecResult { success_count, failure_count: results.len() - success_count, results }
            })
            .collect();
        return reply.ok(StatusCode::CREATED, &results, None);
    }
    let failed = specs.iter().flatten().any(|r| matches!(r, ChannelResult::Failure { .. }));
    let error = AblyError::new(40020, 400, "Batched response includes errors");
    match (single, failed) {
        (true, false) => reply.ok(StatusCode::CREATED, &specs[0], None),
        (false, false) => reply.ok(StatusCode::CREATED, &specs, None),
        (true, true) => reply.failure(&error, &LegacyFailure { error: error.info(), batch_response: &specs[0] }),
        (false, true) => reply.failure(&error, &LegacyFailure { error: error.info(), batch_response: &specs }),
    }
}

/// Publishes every BatchSpec; per-channel results, and whether the body was
/// a single BatchSpec rather than an array.
fn publish_all(app: &App, headers: &HeaderMap, body: &[u8]) -> Result<(Vec<Vec<ChannelResult>>, bool), AblyError> {
    let principal = authenticate(app, headers)?;
    let decoded: OneOrMany<BatchSpec> = decode_body(headers, body)?;
    let single = matches!(decoded, OneOrMany::One(_));
    let specs: Vec<(Vec<String>, Vec<Message>)> =
        decoded.into_vec().into_iter().map(|s| (s.channels.into_vec(), s.messages.into_vec())).collect();
    let distinct: BTreeSet<&String> = specs.iter().flat_map(|(c, _)| c).collect();
    if distinct.len() > MAX_CHANNELS {
        return Err(AblyError::invalid_parameter(format!("A batch may name at most {MAX_CHANNELS} channels")));
    }
    if specs.iter().any(|(_, m)| m.len() > MAX_MESSAGES_PER_SPEC) {
        return Err(AblyError::invalid_parameter(format!(
            "A BatchSpec may hold at most {MAX_MESSAGES_PER_SPEC} messages"
        )));
    }
    let results = specs
        .into_iter()
        .map(|(channels, messages)| {
            channels
                .into_iter()
                .map(|channel| match publish_to(app, &principal, &channel, messages.clone()) {
                    Ok(ok) => ChannelResult::Success(ok),
                    Err(e) => ChannelResult::Failure { channel, error: e.info() },
                })
                .collect()
        })
        .collect();
    Ok((results, single))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_header_is_read_by_its_major_part() {
        let mut h = HeaderMap::new();
        assert_eq!(requested_version(&h), None);
        h.insert("x-ably-version", "6".parse().unwrap());
        assert_eq!(requested_version(&h), Some(6));
        h.insert("x-ably-version", "1.2".parse().unwrap());
        assert_eq!(requested_version(&h), Some(1));
    }
}
