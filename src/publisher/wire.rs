//! What goes over the wire: messages, batches, the jobs the threads run,
//! their JSON bodies and the size rules Ably applies (§A4–§A7).
//!
//! Invariants: the messages of one request share one id base
//! (`<base>:0..n`), which a retry keeps; a batch publish body never breaks
//! Ably's limits (distinct channels, at most [`MAX_BATCH_CHANNELS`], under
//! [`MAX_BATCH_BODY`]).

use std::ops::Range;

use serde::Serialize;

/// Ably's default per-publish limit (§A6): the sum of [`message_size`] over
/// the messages of one request must not exceed it.
pub const MAX_MESSAGE_SIZE: usize = 65_536;
/// Batch publish accepts at most this many distinct channels per request.
pub const MAX_BATCH_CHANNELS: usize = 100;
/// A batch publish body must be strictly smaller than this (2 MiB).
pub const MAX_BATCH_BODY: usize = 2 * 1024 * 1024;
/// Longest request path sent; a channel whose encoded name makes the path
/// longer goes in a batch publish body instead, where Ably judges the name
/// itself (40010) rather than a proxy refusing the URL.
pub const MAX_PATH: usize = 1024;

/// One message to publish. `data` is JSON text (e.g. a row as produced by
/// Postgres); it is sent as a string with `encoding: "json"`, which Ably
/// SDK subscribers decode back into an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutMessage {
    /// `<base>:<index>`, see [`message_id`].
    pub id: String,
    pub name: Option<String>,
    pub data: String,
}

/// Messages for one channel, published atomically in one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The caller's handle for this batch, echoed in the [`JobResult`].
    pub key: i64,
    pub channel: String,
    /// Shared with the caller, which keeps them for a retry.
    pub messages: std::sync::Arc<[OutMessage]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// `POST /channels/{channel}/messages` with a JSON array.
    Channel(Batch),
    /// `POST /messages` (batch publish), one BatchSpec per batch. Batches
    /// are sent in order; a job breaking Ably's limits (repeated channel,
    /// over [`MAX_BATCH_CHANNELS`], body over [`MAX_BATCH_BODY`]) is split
    /// into several requests rather than refused.
    Multi(Vec<Batch>),
}

impl Job {
    pub(super) fn keys(&self) -> Vec<i64> {
        match self {
            Job::Channel(batch) => vec![batch.key],
            Job::Multi(batches) => batches.iter().map(|b| b.key).collect(),
        }
    }
}


/// The id of message `index` in a publish whose messages share `base`.
/// `base` must be the same for every message of one request and stable
/// across retries of it; it should not contain `:`.
pub fn message_id(base: &str, index: usize) -> String {
    format!("{base}:{index}")
}

/// Groups batches into jobs that fit Ably's batch publish limits: distinct
/// channels, at most [`MAX_BATCH_CHANNELS`] per job, body under
/// [`MAX_BATCH_BODY`]. A group of one becomes a [`Job::Channel`]. Jobs run
/// concurrently, so submit at most one batch per channel at a time when
/// order within a channel matters.
pub fn pack(batches: Vec<Batch>) -> Vec<Job> {
    let sizes: Vec<usize> = batches.iter().map(spec_size).collect();
    let groups = group_specs(&batches, &sizes);
    let mut batches = batches.into_iter();
    groups
        .into_iter()
        .map(|range| {
            let group: Vec<Batch> = batches.by_ref().take(range.len()).collect();
            match <[Batch; 1]>::try_from(group) {
                Ok([single]) => Job::Channel(single),
                Err(group) => Job::Multi(group),
            }
        })
        .collect()
}

/// Consecutive ranges of `batches` that each fit in one batch publish.
/// Ranges are cut in order, so repeated channels keep their order.
pub(super) fn group_specs(batches: &[Batch], sizes: &[usize]) -> Vec<Range<usize>> {
    let mut groups = Vec::new();
    let mut start = 0;
    let mut body = 2; // the enclosing []
    for (i, (batch, size)) in batches.iter().zip(sizes).enumerate() {
        let members = &batches[start..i];
        let full = members.len() >= MAX_BATCH_CHANNELS
            || body + size + 1 >= MAX_BATCH_BODY
            || members.iter().any(|b| b.channel == batch.channel);
        if !members.is_empty() && full {
            groups.push(start..i);
            start = i;
            body = 2;
        }
        body += size + 1;
    }
    if batches.len() > start {
        groups.push(start..batches.len());
    }
    groups
}

#[derive(Serialize)]
pub(super) struct WireMessage<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    data: &'a str,
    encoding: &'static str,
}

#[derive(Serialize)]
pub(super) struct WireSpec<'a> {
    channels: &'a str,
    messages: Vec<WireMessage<'a>>,
}

pub(super) fn wire_messages(batch: &Batch) -> Vec<WireMessage<'_>> {
    batch
        .messages
        .iter()
        .map(|m| WireMessage {
            id: &m.id,
            name: m.name.as_deref(),
            data: &m.data,
            encoding: "json",
        })
        .collect()
}

pub(super) fn wire_spec(batch: &Batch) -> WireSpec<'_> {
    WireSpec {
        channels: &batch.channel,
        messages: wire_messages(batch),
    }
}

/// Exact JSON length of a batch's BatchSpec as serde_json writes it
/// ([`WireSpec`]), counted without serializing: the grouping of every
/// request needs it, and escaping each message's data once more per count
/// was a large share of the worker's time.
pub(super) fn spec_size(batch: &Batch) -> usize {
    // {"channels":"…","messages":[…]}
    let mut size = r#"{"channels":"","messages":[]}"#.len() + escaped_len(&batch.channel);
    for (i, m) in batch.messages.iter().enumerate() {
        // {"id":"…","name":"…","data":"…","encoding":"json"}, comma-separated
        size += usize::from(i > 0) + r#"{"id":"","data":"","encoding":"json"}"#.len() + escaped_len(&m.id) + escaped_len(&m.data);
        if let Some(name) = &m.name {
            size += r#","name":"""#.len() + escaped_len(name);
        }
    }
    size
}

/// Length of `s` as the contents of a JSON string, escaped as serde_json
/// escapes: `"` and `\` take a backslash, \b \t \n \f \r two bytes, other
/// control characters six (`\u00XX`), everything else itself.
pub(super) fn escaped_len(s: &str) -> usize {
    let mut extra = 0usize;
    for &b in s.as_bytes() {
        extra += usize::from(b == b'"' || b == b'\\');
        if b < 0x20 {
            extra += if matches!(b, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) { 1 } else { 5 };
        }
    }
    s.len() + extra
}

/// `encodeURIComponent`: everything but `A-Z a-z 0-9 - _ . ! ~ * ' ( )` is
/// percent-encoded as UTF-8, so `a/b c` becomes `a%2Fb%20c`.
pub(super) fn encode_path_segment(segment: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out
}