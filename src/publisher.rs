//! The HTTP side of the background worker: plain threads that publish
//! batches to Ably's REST API and report one [`Outcome`] per batch.
//!
//! Invariants: these threads never call into Postgres and block every
//! signal, since they live inside a backend process; a request is retried
//! on fallback hosts only with the same body, so message ids (and with them
//! Ably's idempotency) survive retries; the API key never appears in a
//! `Debug` output, an error or a message built here.
//!
//! How the worker uses it:
//!
//! 1. Per channel, compute each pending row's [`message_size`] and cut the
//!    rows with [`chunk_by_size`] into ranges under [`MAX_MESSAGE_SIZE`].
//! 2. Each range becomes a [`Batch`] whose messages carry ids
//!    [`message_id`]`(base, 0..n)`, `base` fixed for that exact range (Ably
//!    requires one shared base per multi-message publish). Keep the range
//!    and base until an outcome arrives; a retry must send the same range
//!    with the same ids, or Ably cannot de-duplicate it.
//! 3. [`pack`] groups ready batches into [`Job`]s; [`Publisher::submit`]
//!    hands them to the threads without blocking.
//! 4. Drain [`Publisher::results`]; each [`JobResult`] lists
//!    `(batch key, Outcome)` for every batch of one job. Back off with
//!    [`backoff`] before resending a `Retry` or `RateLimited` batch.

use std::io;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use std::{fmt, thread};

use base64::Engine as _;
use crossbeam_channel::{Receiver, Sender};
use rand::seq::SliceRandom;
use rand::Rng;
use serde::Serialize;
use serde_json::Value;

use crate::token::{ApiKey, TokenError};

/// Ably's default per-publish limit (§A6): the sum of [`message_size`] over
/// the messages of one request must not exceed it.
pub const MAX_MESSAGE_SIZE: usize = 65_536;
/// Batch publish accepts at most this many distinct channels per request.
pub const MAX_BATCH_CHANNELS: usize = 100;
/// A batch publish body must be strictly smaller than this (2 MiB).
pub const MAX_BATCH_BODY: usize = 2 * 1024 * 1024;
/// Ably's own per-request timeout (`httpRequestTimeout`).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_THREADS: usize = 4;

const DEFAULT_ENDPOINT: &str = "main";
/// Pinned so the batch publish response shape cannot change under us.
const PROTOCOL_VERSION: &str = "6";
/// Ably's `httpMaxRetryCount`: retries after the first attempt.
const MAX_RETRIES: usize = 3;
/// Ably's `httpMaxRetryDuration`: no retry starts later than this.
const MAX_RETRY_DURATION: Duration = Duration::from_secs(15);
/// Ably's `fallbackRetryTimeout`: how long a working fallback is preferred.
const FALLBACK_STICKY: Duration = Duration::from_secs(600);
/// Responses are small JSON documents; anything larger is not worth reading.
const MAX_RESPONSE_BODY: u64 = 1024 * 1024;
/// Error texts come from the network; keep them log-sized.
const MAX_ERROR_MESSAGE_CHARS: usize = 500;
const BACKOFF_BASE_MS: u64 = 100;
const BACKOFF_CAP_MS: u64 = 30_000;

#[derive(Debug, thiserror::Error)]
pub enum PublisherError {
    #[error(transparent)]
    Key(#[from] TokenError),
    #[error("\"{0}\" is not a valid host name")]
    InvalidHost(String),
    #[error(
        "\"{0}\" is not a valid endpoint; expected a routing policy id, nonprod:id or a host name"
    )]
    InvalidEndpoint(String),
    #[error("The port must be between 1 and 65535")]
    InvalidPort,
    #[error("The agent must be printable ASCII")]
    InvalidAgent,
    #[error("Could not start a publisher thread")]
    Spawn(#[source] io::Error),
}

/// Where and how to publish. Build it with [`PublisherConfig::from_options`]
/// so host rules match Ably's SDKs, then adjust the tuning fields.
#[derive(Clone)]
pub struct PublisherConfig {
    /// Sent as HTTP Basic auth; its `Debug` redacts the secret.
    pub api_key: ApiKey,
    /// Primary host, without scheme or port.
    pub rest_host: String,
    pub port: u16,
    /// `false` only for a local Ably-compatible server: the real service
    /// refuses Basic auth over plain HTTP (40103).
    pub tls: bool,
    /// Tried in random order after a network error, timeout or 500–504.
    pub fallback_hosts: Vec<String>,
    /// Whole-request limit, connect to last body byte.
    pub request_timeout: Duration,
    /// Number of HTTP threads, i.e. requests in flight (`ably.max_in_flight`).
    pub threads: usize,
    /// `Ably-Agent` header, e.g. `ably-pg/0.1.0`.
    pub agent: String,
    /// Called by a publisher thread after each result is queued, so the
    /// worker can sleep on its latch instead of polling. It runs on a
    /// non-Postgres thread: it may only do thread-safe things such as
    /// setting a latch or writing to a pipe.
    pub wake: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl fmt::Debug for PublisherConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublisherConfig")
            .field("api_key", &self.api_key)
            .field("rest_host", &self.rest_host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("fallback_hosts", &self.fallback_hosts)
            .field("request_timeout", &self.request_timeout)
            .field("threads", &self.threads)
            .field("agent", &self.agent)
            .field("wake", &self.wake.is_some())
            .finish()
    }
}

impl PublisherConfig {
    /// Resolves hosts the way ably-js ≥ 2.10 does (§A1). Empty strings
    /// count as unset, so unset GUCs can be passed straight through.
    ///
    /// - `rest_host` (deprecated in Ably, kept for local servers): that
    ///   host, no default fallbacks; it overrides `endpoint` (ably-js
    ///   refuses the pair with 40106, but a server setting should not stop
    ///   the worker over that).
    /// - `endpoint` containing `.` or `::`, or `localhost`: that host, no
    ///   default fallbacks.
    /// - `nonprod:{id}`: `{id}.realtime.ably-nonprod.net`, fallbacks
    ///   `{id}.[a-e].fallback.ably-realtime-nonprod.com`.
    /// - any other `{id}` (default `main`): `{id}.realtime.ably.net`,
    ///   fallbacks `{id}.[a-e].fallback.ably-realtime.com`.
    /// - an explicit `port` also drops the default fallbacks, as in ably-js;
    ///   otherwise the port is 443 with TLS and 80 without.
    /// - `fallback_hosts`, when given, replaces the list; blank entries are
    ///   skipped, so an empty list (or `[""]`) disables fallback.
    pub fn from_options(
        api_key: &str,
        endpoint: Option<&str>,
        rest_host: Option<&str>,
        port: Option<u16>,
        tls: bool,
        fallback_hosts: Option<Vec<String>>,
    ) -> Result<PublisherConfig, PublisherError> {
        let api_key = ApiKey::parse(api_key)?;
        let endpoint = endpoint.map(str::trim).filter(|s| !s.is_empty());
        let rest_host = rest_host.map(str::trim).filter(|s| !s.is_empty());
        let (primary, mut fallbacks) = match rest_host {
            Some(host) => (host.to_owned(), Vec::new()),
            None => endpoint_hosts(endpoint.unwrap_or(DEFAULT_ENDPOINT))?,
        };
        let port = match port {
            Some(0) => return Err(PublisherError::InvalidPort),
            Some(p) => {
                fallbacks.clear();
                p
            }
            None if tls => 443,
            None => 80,
        };
        if let Some(explicit) = fallback_hosts {
            fallbacks = explicit
                .iter()
                .map(|h| h.trim())
                .filter(|h| !h.is_empty())
                .map(String::from)
                .collect();
        }
        validate_host(&primary)?;
        for host in &fallbacks {
            validate_host(host)?;
        }
        // Order is irrelevant (they are shuffled per request), duplicates are not.
        fallbacks.retain(|h| *h != primary);
        fallbacks.sort();
        fallbacks.dedup();
        Ok(PublisherConfig {
            api_key,
            rest_host: primary,
            port,
            tls,
            fallback_hosts: fallbacks,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            threads: DEFAULT_THREADS,
            agent: format!("ably-pg/{}", env!("CARGO_PKG_VERSION")),
            wake: None,
        })
    }
}

/// Primary host and default fallbacks for an `endpoint` option value.
fn endpoint_hosts(endpoint: &str) -> Result<(String, Vec<String>), PublisherError> {
    if endpoint.contains('.') || endpoint.contains("::") || endpoint == "localhost" {
        return Ok((endpoint.to_owned(), Vec::new()));
    }
    let (id, primary_domain, fallback_domain) = match endpoint.strip_prefix("nonprod:") {
        Some(id) => (
            id,
            "realtime.ably-nonprod.net",
            "fallback.ably-realtime-nonprod.com",
        ),
        None => (endpoint, "realtime.ably.net", "fallback.ably-realtime.com"),
    };
    let valid_id = !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid_id {
        return Err(PublisherError::InvalidEndpoint(without_userinfo(endpoint)));
    }
    let fallbacks = ['a', 'b', 'c', 'd', 'e']
        .iter()
        .map(|letter| format!("{id}.{letter}.{fallback_domain}"))
        .collect();
    Ok((format!("{id}.{primary_domain}"), fallbacks))
}

/// A host name or IP literal (IPv6 bare or bracketed). Anything that could
/// smuggle a path, userinfo or header text into the URL is refused.
fn validate_host(host: &str) -> Result<(), PublisherError> {
    let ok = !host.is_empty()
        && host.len() <= 253
        && host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']')
        });
    if ok {
        Ok(())
    } else {
        Err(PublisherError::InvalidHost(without_userinfo(host)))
    }
}

/// A bad host setting may be a whole URL with `user:password@`; keep that
/// part out of error messages.
fn without_userinfo(value: &str) -> String {
    match value.rsplit_once('@') {
        Some((_, rest)) => format!("<redacted>@{rest}"),
        None => value.to_owned(),
    }
}

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
    pub messages: Vec<OutMessage>,
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
    /// Consecutive batches of one channel, posted one after the other as
    /// [`Job::Channel`]; after the first that is not delivered the rest are
    /// [`Outcome::NotSent`], so the channel's order holds.
    Chain(Vec<Batch>),
}

impl Job {
    fn keys(&self) -> Vec<i64> {
        match self {
            Job::Channel(batch) => vec![batch.key],
            Job::Multi(batches) | Job::Chain(batches) => batches.iter().map(|b| b.key).collect(),
        }
    }
}

/// One `(batch key, outcome)` per batch of a submitted job, in job order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobResult {
    pub outcomes: Vec<(i64, Outcome)>,
}

/// What the caller should do with a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Ably accepted every message of the batch.
    Delivered,
    /// Network error, timeout or 5xx after the fallbacks: resend the same
    /// messages with the same ids after a [`backoff`].
    Retry { error: PublishError },
    /// 429 or a 429xx code: back off this channel only.
    RateLimited { error: PublishError },
    /// A credential error (401 with a code in 40100–40149: bad, expired or
    /// revoked key): nothing will succeed until the configuration changes.
    AuthFailed { error: PublishError },
    /// Any other 4xx (too large, bad channel name, bad id or data…):
    /// resending will fail the same way.
    Rejected { error: PublishError },
    /// Not attempted because an earlier batch of the same [`Job::Chain`]
    /// was not delivered; send it again after that one.
    NotSent,
}

impl Outcome {
    pub fn error(&self) -> Option<&PublishError> {
        match self {
            Outcome::Delivered | Outcome::NotSent => None,
            Outcome::Retry { error }
            | Outcome::RateLimited { error }
            | Outcome::AuthFailed { error }
            | Outcome::Rejected { error } => Some(error),
        }
    }

    /// Sorts an error into the action it calls for. Ably codes are
    /// `status * 100 + n`, so a code also tells the class when the HTTP
    /// status is generic (e.g. 42922 arrives with headers only).
    fn from_error(error: PublishError) -> Outcome {
        let class = error.code.map(|c| c / 100);
        let is = |s: u16| error.status == Some(s) || class == Some(u32::from(s));
        let code = error.code.unwrap_or(0);
        if is(429) {
            Outcome::RateLimited { error }
        } else if (40160..=40169).contains(&code) {
            // The key may not publish to this channel: that message, not
            // the whole database, is refused.
            Outcome::Rejected { error }
        } else if (40100..=40149).contains(&code) || (error.status == Some(401) && error.code.is_none()) {
            Outcome::AuthFailed { error }
        } else if is(401) || is(403) {
            // Other refusals are about this channel: back it off alone.
            Outcome::RateLimited { error }
        } else {
            match error.status {
                Some(408) => Outcome::Retry { error },
                Some(400..=499) => Outcome::Rejected { error },
                _ => Outcome::Retry { error },
            }
        }
    }
}

/// An error from Ably or the network. Its message has been stripped of the
/// key and shortened, so it can be logged and shown to users as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishError {
    /// HTTP status, or `None` when no response arrived.
    pub status: Option<u16>,
    /// Ably error code, when the response named one.
    pub code: Option<u32>,
    pub message: String,
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        match (self.status, self.code) {
            (Some(s), Some(c)) => write!(f, " (HTTP {s}, Ably error {c})"),
            (Some(s), None) => write!(f, " (HTTP {s})"),
            (None, Some(c)) => write!(f, " (Ably error {c})"),
            (None, None) => Ok(()),
        }
    }
}

impl std::error::Error for PublishError {}

/// The id of message `index` in a publish whose messages share `base`.
/// `base` must be the same for every message of one request and stable
/// across retries of it; it should not contain `:`.
pub fn message_id(base: &str, index: usize) -> String {
    format!("{base}:{index}")
}

/// Size as Ably counts it against [`MAX_MESSAGE_SIZE`] (§A6): UTF-8 bytes
/// of the name plus the data (already stringified JSON). Ids do not count.
pub fn message_size(name: Option<&str>, data: &str) -> usize {
    name.map_or(0, str::len) + data.len()
}

/// Cuts consecutive messages, given by their [`message_size`]s, into
/// ranges whose sizes add up to at most `max_bytes` and that hold at most
/// `max_count` messages. A message larger than `max_bytes` gets a range of
/// its own, so Ably rejects that message alone and the rest goes through.
pub fn chunk_by_size(
    sizes: impl IntoIterator<Item = usize>,
    max_bytes: usize,
    max_count: usize,
) -> Vec<Range<usize>> {
    let max_count = max_count.max(1);
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut total = 0usize;
    let mut index = 0;
    for size in sizes {
        let count = index - start;
        if count > 0 && (count >= max_count || total.saturating_add(size) > max_bytes) {
            chunks.push(start..index);
            start = index;
            total = 0;
        }
        total = total.saturating_add(size);
        index += 1;
    }
    if index > start {
        chunks.push(start..index);
    }
    chunks
}

/// Delay before the `attempt`-th retry (0-based): uniform in
/// `[0, min(30 s, 100 ms × 2^attempt)]` ("full jitter"), so many channels
/// failing together do not retry in lock-step.
pub fn backoff(attempt: u32) -> Duration {
    let cap = BACKOFF_BASE_MS
        .saturating_mul(1u64 << attempt.min(20))
        .min(BACKOFF_CAP_MS);
    Duration::from_millis(rand::rng().random_range(0..=cap))
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
fn group_specs(batches: &[Batch], sizes: &[usize]) -> Vec<Range<usize>> {
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
struct WireMessage<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    data: &'a str,
    encoding: &'static str,
}

#[derive(Serialize)]
struct WireSpec<'a> {
    channels: &'a str,
    messages: Vec<WireMessage<'a>>,
}

fn wire_messages(batch: &Batch) -> Vec<WireMessage<'_>> {
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

fn wire_spec(batch: &Batch) -> WireSpec<'_> {
    WireSpec {
        channels: &batch.channel,
        messages: wire_messages(batch),
    }
}

/// Exact JSON length of a batch's BatchSpec, measured without building it.
fn spec_size(batch: &Batch) -> usize {
    struct Counter(usize);
    impl io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Serializing strings into a counter cannot fail; were it to, the
    // over-estimate puts the batch in a request of its own.
    match serde_json::to_writer(&mut counter, &wire_spec(batch)) {
        Ok(()) => counter.0,
        Err(_) => MAX_BATCH_BODY,
    }
}

/// `encodeURIComponent`: everything but `A-Z a-z 0-9 - _ . ! ~ * ' ( )` is
/// percent-encoded as UTF-8, so `a/b c` becomes `a%2Fb%20c`.
fn encode_path_segment(segment: &str) -> String {
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

/// Runs the HTTP threads. Dropping it behaves like [`Publisher::shutdown`].
pub struct Publisher {
    jobs: Option<Sender<Job>>,
    results_tx: Sender<JobResult>,
    results: Receiver<JobResult>,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("primary", &self.shared.primary)
            .field("threads", &self.threads.len())
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Spawns `cfg.threads` (at least one) HTTP threads sharing one
    /// keep-alive connection pool. The threads are created with every
    /// signal blocked, so Postgres's handlers only ever run on the
    /// backend's main thread.
    pub fn start(cfg: PublisherConfig) -> Result<Publisher, PublisherError> {
        // The fields are public, so check again what from_options checked:
        // a bad value here would otherwise fail every request forever.
        if !cfg.agent.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(PublisherError::InvalidAgent);
        }
        if cfg.port == 0 {
            return Err(PublisherError::InvalidPort);
        }
        validate_host(&cfg.rest_host)?;
        for host in &cfg.fallback_hosts {
            validate_host(host)?;
        }
        let threads = cfg.threads.max(1);
        let shared = Arc::new(Shared::new(cfg, threads));
        let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded::<Job>();
        let (results_tx, results_rx) = crossbeam_channel::unbounded::<JobResult>();
        let mut publisher = Publisher {
            jobs: Some(jobs_tx),
            results_tx: results_tx.clone(),
            results: results_rx,
            shared: Arc::clone(&shared),
            threads: Vec::with_capacity(threads),
        };
        // New threads inherit the creator's mask, so block here first:
        // that closes the window before the thread blocks signals itself.
        let _mask = SignalMaskGuard::block_all();
        for i in 0..threads {
            let shared = Arc::clone(&shared);
            let jobs = jobs_rx.clone();
            let results = results_tx.clone();
            let spawned = thread::Builder::new()
                .name(format!("ably-publish-{i}"))
                .spawn(move || worker_loop(&shared, &jobs, &results));
            match spawned {
                Ok(handle) => publisher.threads.push(handle),
                // Dropping `publisher` stops the threads already started.
                Err(e) => return Err(PublisherError::Spawn(e)),
            }
        }
        Ok(publisher)
    }

    /// Queues jobs for the threads; never blocks.
    pub fn submit(&self, jobs: Vec<Job>) {
        for job in jobs {
            let Some(sender) = &self.jobs else { return };
            if let Err(crossbeam_channel::SendError(job)) = sender.send(job) {
                // No thread is left to run it; report it rather than let
                // the caller wait for a result that never comes.
                let error = PublishError {
                    status: None,
                    code: None,
                    message: "The publisher threads have stopped".into(),
                };
                let outcomes = job
                    .keys()
                    .into_iter()
                    .map(|k| {
                        (
                            k,
                            Outcome::Retry {
                                error: error.clone(),
                            },
                        )
                    })
                    .collect();
                let _ = self.results_tx.send(JobResult { outcomes });
            }
        }
    }

    pub fn results(&self) -> &Receiver<JobResult> {
        &self.results
    }

    /// Stops the threads and waits for them. A request in flight finishes
    /// (bounded by `request_timeout`); queued jobs are dropped unreported,
    /// which is safe because their rows stay in the queue.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        self.jobs = None;
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
    }
}

/// Blocks every signal on the current thread and restores the previous
/// mask when dropped.
struct SignalMaskGuard {
    previous: libc::sigset_t,
}

impl SignalMaskGuard {
    fn block_all() -> SignalMaskGuard {
        // SAFETY: sigset_t is plain data; sigfillset initialises it and
        // pthread_sigmask only reads `all` and writes `previous`.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut previous: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut previous);
            SignalMaskGuard { previous }
        }
    }
}

impl Drop for SignalMaskGuard {
    fn drop(&mut self) {
        // SAFETY: restores a mask obtained from pthread_sigmask above.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.previous, std::ptr::null_mut());
        }
    }
}

fn worker_loop(shared: &Shared, jobs: &Receiver<Job>, results: &Sender<JobResult>) {
    // Already inherited from `start`; repeated so the invariant holds
    // even if the spawning code changes. Never restored: the thread ends.
    std::mem::forget(SignalMaskGuard::block_all());
    while let Ok(job) = jobs.recv() {
        if shared.stopping.load(Ordering::Acquire) {
            break;
        }
        let keys = job.keys();
        let result = catch_unwind(AssertUnwindSafe(|| shared.run(job))).unwrap_or_else(|_| {
            let error = PublishError {
                status: None,
                code: None,
                message: "Internal error in the publisher thread".into(),
            };
            let outcomes = keys.into_iter().map(|k| {
                (
                    k,
                    Outcome::Retry {
                        error: error.clone(),
                    },
                )
            });
            JobResult {
                outcomes: outcomes.collect(),
            }
        });
        if results.send(result).is_err() {
            break;
        }
        if let Some(wake) = &shared.wake {
            wake();
        }
    }
}

/// State shared by the threads of one publisher.
struct Shared {
    agent: ureq::Agent,
    scheme: &'static str,
    port: u16,
    primary: String,
    fallbacks: Vec<String>,
    /// `Basic base64(key)`, built once.
    authorization: String,
    /// Texts to scrub from anything reported: the secret and the header.
    secrets: [String; 2],
    agent_header: String,
    /// A fallback that worked, and until when to prefer it.
    sticky: Mutex<Option<(String, Instant)>>,
    stopping: AtomicBool,
    wake: Option<Arc<dyn Fn() + Send + Sync>>,
}

/// The last thing one host attempt produced.
enum Attempt {
    Reply(Reply),
    Network(PublishError),
}

struct Reply {
    status: u16,
    header_code: Option<u32>,
    header_message: Option<String>,
    body: String,
}

impl Shared {
    fn new(cfg: PublisherConfig, threads: usize) -> Shared {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // Never follow redirects: the Authorization header must only
            // go to the hosts configured here.
            .max_redirects(0)
            .timeout_global(Some(cfg.request_timeout))
            .user_agent(cfg.agent.clone())
            .max_idle_connections_per_host(threads)
            .build()
            .new_agent();
        let token = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            cfg.api_key.name(),
            cfg.api_key.secret()
        ));
        Shared {
            agent,
            scheme: if cfg.tls { "https" } else { "http" },
            port: cfg.port,
            primary: cfg.rest_host,
            fallbacks: cfg.fallback_hosts,
            authorization: format!("Basic {token}"),
            secrets: [cfg.api_key.secret().to_owned(), token],
            agent_header: cfg.agent,
            sticky: Mutex::new(None),
            stopping: AtomicBool::new(false),
            wake: cfg.wake,
        }
    }

    fn run(&self, job: Job) -> JobResult {
        match job {
            Job::Channel(batch) => {
                let outcome = self.publish_channel(&batch);
                JobResult {
                    outcomes: vec![(batch.key, outcome)],
                }
            }
            Job::Multi(batches) => {
                let sizes: Vec<usize> = batches.iter().map(spec_size).collect();
                let mut outcomes = Vec::with_capacity(batches.len());
                for range in group_specs(&batches, &sizes) {
                    let group = &batches[range];
                    let group_outcomes = match group {
                        [single] => vec![self.publish_channel(single)],
                        _ => self.publish_multi(group),
                    };
                    outcomes.extend(group.iter().map(|b| b.key).zip(group_outcomes));
                }
                JobResult { outcomes }
            }
            Job::Chain(batches) => {
                let mut outcomes = Vec::with_capacity(batches.len());
                let mut failed = false;
                for batch in &batches {
                    let outcome = if failed { Outcome::NotSent } else { self.publish_channel(batch) };
                    failed |= outcome != Outcome::Delivered;
                    outcomes.push((batch.key, outcome));
                }
                JobResult { outcomes }
            }
        }
    }

    fn publish_channel(&self, batch: &Batch) -> Outcome {
        if batch.messages.is_empty() {
            return Outcome::Delivered;
        }
        let body = match serde_json::to_vec(&wire_messages(batch)) {
            Ok(body) => body,
            Err(_) => return unencodable(),
        };
        let path = format!("/channels/{}/messages", encode_path_segment(&batch.channel));
        match self.post(&path, &body) {
            Attempt::Network(error) => Outcome::Retry { error },
            Attempt::Reply(reply) if (200..300).contains(&reply.status) => Outcome::Delivered,
            Attempt::Reply(reply) => Outcome::from_error(self.reply_error(&reply)),
        }
    }

    /// One batch publish request for distinct channels.
    fn publish_multi(&self, batches: &[Batch]) -> Vec<Outcome> {
        let specs: Vec<WireSpec<'_>> = batches.iter().map(wire_spec).collect();
        let body = match serde_json::to_vec(&specs) {
            Ok(body) => body,
            Err(_) => return batches.iter().map(|_| unencodable()).collect(),
        };
        match self.post("/messages", &body) {
            Attempt::Network(error) => batches
                .iter()
                .map(|_| Outcome::Retry {
                    error: error.clone(),
                })
                .collect(),
            Attempt::Reply(reply) => self.batch_outcomes(&reply, batches),
        }
    }

    /// Maps a batch publish response onto the batches, accepting both the
    /// current shape (2xx, one `{successCount, failureCount, results}` per
    /// BatchSpec) and the legacy one (2xx flat array of per-channel
    /// results, or 400 `{error, batchResponse}`), see §A7.
    fn batch_outcomes(&self, reply: &Reply, batches: &[Batch]) -> Vec<Outcome> {
        let doc: Option<Value> = serde_json::from_str(&reply.body).ok();
        let success = (200..300).contains(&reply.status);
        let entries = match (&doc, success) {
            (Some(Value::Array(items)), true) => Some(batch_entries(items)),
            (Some(Value::Object(obj)), _) => match obj.get("batchResponse") {
                Some(Value::Array(items)) => Some(batch_entries(items)),
                _ => None,
            },
            _ => None,
        };
        let Some(entries) = entries else {
            let error = if success {
                PublishError {
                    status: Some(reply.status),
                    code: None,
                    message: "Unreadable batch publish response".into(),
                }
            } else {
                self.reply_error(reply)
            };
            return batches
                .iter()
                .map(|_| Outcome::from_error(error.clone()))
                .collect();
        };
        batches
            .iter()
            .enumerate()
            .map(|(i, batch)| {
                let found = entries
                    .iter()
                    .find(|e| e.channel.as_deref() == Some(batch.channel.as_str()))
                    .or_else(|| {
                        entries
                            .iter()
                            .find(|e| e.channel.is_none() && e.spec == Some(i))
                    });
                match found {
                    Some(BatchEntry { error: None, .. }) => Outcome::Delivered,
                    Some(BatchEntry {
                        error: Some(error), ..
                    }) => Outcome::from_error(self.scrubbed(error.clone())),
                    None => Outcome::Retry {
                        error: PublishError {
                            status: Some(reply.status),
                            code: None,
                            message: "The batch publish response has no result for this channel"
                                .into(),
                        },
                    },
                }
            })
            .collect()
    }

    /// POSTs `body` to `path`, moving to fallback hosts after a network
    /// error, a timeout or a 500–504, as Ably's SDKs do (§A1). Returns the
    /// first other response, or the last failure.
    fn post(&self, path: &str, body: &[u8]) -> Attempt {
        let started = Instant::now();
        let mut last = None;
        for (attempt, host) in self.host_order().iter().enumerate().take(1 + MAX_RETRIES) {
            if attempt > 0
                && (started.elapsed() >= MAX_RETRY_DURATION
                    || self.stopping.load(Ordering::Acquire))
            {
                break;
            }
            match self.post_once(host, path, body) {
                Ok(reply) if !(500..=504).contains(&reply.status) => {
                    self.remember(host, true);
                    return Attempt::Reply(reply);
                }
                Ok(reply) => last = Some(Attempt::Reply(reply)),
                Err(error) => last = Some(Attempt::Network(error)),
            }
            self.remember(host, false);
        }
        last.unwrap_or_else(|| {
            Attempt::Network(PublishError {
                status: None,
                code: None,
                message: "No host to publish to".into(),
            })
        })
    }

    fn post_once(&self, host: &str, path: &str, body: &[u8]) -> Result<Reply, PublishError> {
        let url_host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        let url = format!("{}://{}:{}{}", self.scheme, url_host, self.port, path);
        let sent = self
            .agent
            .post(&url)
            .header("Authorization", &self.authorization)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .header("X-Ably-Version", PROTOCOL_VERSION)
            .header("Ably-Agent", &self.agent_header)
            .send(body);
        let mut response = sent.map_err(|e| PublishError {
            status: None,
            code: None,
            message: self.scrub(&format!("Request to {host} failed: {e}")),
        })?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .map(String::from)
        };
        let header_code = header("x-ably-errorcode").and_then(|c| c.parse().ok());
        let header_message = header("x-ably-errormessage").filter(|m| !m.is_empty());
        // A body we cannot read is treated as absent: the status still
        // says what happened.
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BODY)
            .lossy_utf8(true)
            .read_to_string()
            .unwrap_or_default();
        Ok(Reply {
            status: response.status().as_u16(),
            header_code,
            header_message,
            body,
        })
    }

    /// The sticky fallback if still fresh, else the primary; then the
    /// primary if not first; then the other fallbacks in random order.
    fn host_order(&self) -> Vec<String> {
        let first = {
            let mut sticky = self.sticky();
            match sticky.as_ref() {
                Some((host, until)) if Instant::now() < *until => host.clone(),
                _ => {
                    *sticky = None;
                    self.primary.clone()
                }
            }
        };
        let mut rest: Vec<String> = self
            .fallbacks
            .iter()
            .filter(|h| **h != first)
            .cloned()
            .collect();
        rest.shuffle(&mut rand::rng());
        let mut order = vec![first];
        if order[0] != self.primary {
            order.push(self.primary.clone());
        }
        order.extend(rest);
        order
    }

    /// A working fallback becomes sticky; a working primary or a failing
    /// sticky host clears it.
    fn remember(&self, host: &str, worked: bool) {
        let mut sticky = self.sticky();
        if worked {
            *sticky =
                (host != self.primary).then(|| (host.to_owned(), Instant::now() + FALLBACK_STICKY));
        } else if sticky.as_ref().is_some_and(|(h, _)| h == host) {
            *sticky = None;
        }
    }

    fn sticky(&self) -> MutexGuard<'_, Option<(String, Instant)>> {
        // The guarded value is always consistent, so a poisoned lock is
        // still usable.
        self.sticky
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The error a non-2xx reply reports: the JSON body's `error` object,
    /// else the `X-Ably-Error*` headers, else just the status.
    fn reply_error(&self, reply: &Reply) -> PublishError {
        let body_error = serde_json::from_str::<Value>(&reply.body)
            .ok()
            .and_then(|doc| doc.get("error").cloned())
            .map(|e| error_from_json(&e));
        let code = body_error
            .as_ref()
            .and_then(|e| e.code)
            .or(reply.header_code);
        let message = body_error
            .map(|e| e.message)
            .filter(|m| !m.is_empty())
            .or_else(|| reply.header_message.clone())
            .unwrap_or_else(|| format!("Ably returned HTTP {}", reply.status));
        self.scrubbed(PublishError {
            status: Some(reply.status),
            code,
            message,
        })
    }

    fn scrubbed(&self, mut error: PublishError) -> PublishError {
        error.message = self.scrub(&error.message);
        error
    }

    /// Removes the key from text that came from the network, and keeps it
    /// to a loggable length.
    fn scrub(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.secrets {
            if !secret.is_empty() {
                text = text.replace(secret.as_str(), "<redacted>");
            }
        }
        if let Some((cut, _)) = text.char_indices().nth(MAX_ERROR_MESSAGE_CHARS) {
            text.truncate(cut);
            text.push('…');
        }
        text
    }
}

fn unencodable() -> Outcome {
    Outcome::Rejected {
        error: PublishError {
            status: None,
            code: None,
            message: "The batch could not be encoded as JSON".into(),
        },
    }
}

/// One channel's result inside a batch publish response.
struct BatchEntry {
    channel: Option<String>,
    /// Index of the BatchSpec it answers, when the shape tells.
    spec: Option<usize>,
    error: Option<PublishError>,
}

/// Flattens either response shape into per-channel entries.
fn batch_entries(items: &[Value]) -> Vec<BatchEntry> {
    let mut entries = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match item.get("results") {
            Some(Value::Array(results)) => {
                entries.extend(results.iter().map(|r| batch_entry(r, Some(i))));
                if results.is_empty() && item.get("error").is_some_and(Value::is_object) {
                    entries.push(batch_entry(item, Some(i)));
                }
            }
            _ => entries.push(batch_entry(item, None)),
        }
    }
    entries
}

fn batch_entry(item: &Value, spec: Option<usize>) -> BatchEntry {
    BatchEntry {
        channel: item
            .get("channel")
            .and_then(Value::as_str)
            .map(String::from),
        spec,
        error: item
            .get("error")
            .filter(|e| e.is_object())
            .map(error_from_json),
    }
}

/// Reads an Ably ErrorInfo object, tolerating missing or oddly typed
/// fields. Without `statusCode`, the status is derived from the code.
fn error_from_json(v: &Value) -> PublishError {
    let number = |field: &str| match v.get(field) {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    let code = number("code").and_then(|c| u32::try_from(c).ok());
    let status = number("statusCode")
        .and_then(|s| u16::try_from(s).ok())
        .filter(|s| (100..600).contains(s))
        .or_else(|| {
            code.map(|c| c / 100)
                .and_then(|s| u16::try_from(s).ok())
                .filter(|s| (100..600).contains(s))
        });
    let message = v
        .get("message")
        .and_then(Value::as_str)
        .map(String::from)
        .unwrap_or_else(|| "Ably reported an error without a message".into());
    PublishError {
        status,
        code,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::AtomicUsize;

    const KEY: &str = "appId.keyId:SuperSecretValue123";
    const WAIT: Duration = Duration::from_secs(20);

    #[derive(Debug, Clone)]
    struct Recorded {
        path: String,
        headers: HashMap<String, String>,
        body: String,
    }

    struct Canned {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    }

    fn reply(status: u16, body: &str) -> Canned {
        Canned {
            status,
            headers: vec![("Content-Type", "application/json".into())],
            body: body.into(),
        }
    }

    type Handler = Arc<dyn Fn(&Recorded) -> Canned + Send + Sync>;

    /// A minimal HTTP/1.1 server with keep-alive that records requests.
    struct Server {
        port: u16,
        requests: Arc<Mutex<Vec<Recorded>>>,
    }

    impl Server {
        fn requests(&self) -> Vec<Recorded> {
            self.requests.lock().unwrap().clone()
        }
    }

    fn serve(listener: TcpListener, handler: Handler) -> Server {
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&requests);
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let handler = Arc::clone(&handler);
                let log = Arc::clone(&log);
                thread::spawn(move || serve_connection(stream, &handler, &log));
            }
        });
        Server { port, requests }
    }

    fn serve_connection(stream: TcpStream, handler: &Handler, log: &Mutex<Vec<Recorded>>) {
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
            let mut headers = HashMap::new();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 {
                    return;
                }
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                }
            }
            let len: usize = headers
                .get("content-length")
                .and_then(|l| l.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            let req = Recorded {
                path,
                headers,
                body: String::from_utf8(body).unwrap(),
            };
            log.lock().unwrap().push(req.clone());
            let canned = handler(&req);
            let mut out = format!(
                "HTTP/1.1 {} X\r\nContent-Length: {}\r\n",
                canned.status,
                canned.body.len()
            );
            for (k, v) in &canned.headers {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
            out.push_str("\r\n");
            out.push_str(&canned.body);
            if writer.write_all(out.as_bytes()).is_err() {
                return;
            }
        }
    }

    /// Listeners on 127.0.0.{1..=n}, all on one port, because Ably's
    /// fallback hosts share the primary's port.
    fn listeners(n: u8) -> Vec<TcpListener> {
        'retry: for _ in 0..20 {
            let first = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = first.local_addr().unwrap().port();
            let mut all = vec![first];
            for i in 2..=n {
                match TcpListener::bind(("127.0.0.".to_owned() + &i.to_string(), port)) {
                    Ok(l) => all.push(l),
                    Err(_) => continue 'retry,
                }
            }
            return all;
        }
        panic!("no free port shared by 127.0.0.1..{n}");
    }

    fn config(primary: &str, port: u16, fallbacks: &[&str]) -> PublisherConfig {
        let mut cfg = PublisherConfig::from_options(
            KEY,
            None,
            Some(primary),
            Some(port),
            false,
            Some(fallbacks.iter().map(|s| s.to_string()).collect()),
        )
        .unwrap();
        cfg.threads = 2;
        cfg.agent = "ably-pg/test".into();
        cfg.request_timeout = Duration::from_secs(5);
        cfg
    }

    fn batch(key: i64, channel: &str, n: usize) -> Batch {
        let messages = (0..n)
            .map(|i| OutMessage {
                id: message_id(&format!("b{key}"), i),
                name: (i % 2 == 0).then(|| "insert".to_owned()),
                data: format!(r#"{{"row":{i},"s":"q\"é"}}"#),
            })
            .collect();
        Batch {
            key,
            channel: channel.into(),
            messages,
        }
    }

    /// Submits one job and waits for its result.
    fn run(publisher: &Publisher, job: Job) -> Vec<(i64, Outcome)> {
        publisher.submit(vec![job]);
        publisher
            .results()
            .recv_timeout(WAIT)
            .expect("a result")
            .outcomes
    }

    fn single(publisher: &Publisher, b: Batch) -> Outcome {
        let mut outcomes = run(publisher, Job::Channel(b));
        assert_eq!(outcomes.len(), 1);
        outcomes.remove(0).1
    }

    #[test]
    fn channel_publish_sends_headers_ids_and_json_encoded_data() {
        let mut l = listeners(1);
        let server = serve(
            l.remove(0),
            Arc::new(|_| reply(201, r#"{"channel":"x","messageId":"b1"}"#)),
        );
        let publisher = Publisher::start(config("127.0.0.1", server.port, &[])).unwrap();

        assert_eq!(single(&publisher, batch(1, "a/b c", 3)), Outcome::Delivered);
        assert_eq!(
            single(&publisher, batch(2, "chat:é", 1)),
            Outcome::Delivered
        );

        let reqs = server.requests();
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0].path, "/channels/a%2Fb%20c/messages");
        assert_eq!(reqs[1].path, "/channels/chat%3A%C3%A9/messages");
        let h = &reqs[0].headers;
        let expected_auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(KEY)
        );
        assert_eq!(h["authorization"], expected_auth);
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(h["accept"], "application/json");
        assert_eq!(h["x-ably-version"], "6");
        assert_eq!(h["ably-agent"], "ably-pg/test");
        assert_eq!(h["host"], format!("127.0.0.1:{}", server.port));

        let body: Value = serde_json::from_str(&reqs[0].body).unwrap();
        assert_eq!(
            body,
            serde_json::json!([
                {"id": "b1:0", "name": "insert", "data": "{\"row\":0,\"s\":\"q\\\"é\"}", "encoding": "json"},
                {"id": "b1:1", "data": "{\"row\":1,\"s\":\"q\\\"é\"}", "encoding": "json"},
                {"id": "b1:2", "name": "insert", "data": "{\"row\":2,\"s\":\"q\\\"é\"}", "encoding": "json"},
            ])
        );
        // Subscribers decode `data` back into the original object.
        let data: Value = serde_json::from_str(body[1]["data"].as_str().unwrap()).unwrap();
        assert_eq!(data, serde_json::json!({"row": 1, "s": "q\"é"}));
        publisher.shutdown();
    }

    #[test]
    fn path_segments_are_encoded_like_encode_uri_component() {
        assert_eq!(encode_path_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(encode_path_segment("chat:é"), "chat%3A%C3%A9");
        assert_eq!(encode_path_segment("AZaz09-_.!~*'()"), "AZaz09-_.!~*'()");
        assert_eq!(encode_path_segment("?#%+&"), "%3F%23%25%2B%26");
    }

    #[test]
    fn error_responses_map_to_outcomes() {
        let mut l = listeners(1);
        let handler: Handler = Arc::new(|req: &Recorded| {
            let channel = req
                .path
                .trim_start_matches("/channels/")
                .trim_end_matches("/messages");
            let err = |status: u16, code: u32, msg: &str| {
                let body = format!(
                    r#"{{"error":{{"message":"{msg}","code":{code},"statusCode":{status},"href":"x"}}}}"#
                );
                let mut r = reply(status, &body);
                r.headers.push(("X-Ably-ErrorCode", code.to_string()));
                r
            };
            match channel {
                "rate" => err(429, 42913, "channel rate exceeded"),
                "flood" => Canned {
                    status: 429,
                    headers: vec![
                        ("X-Ably-ErrorCode", "42922".into()),
                        ("X-Ably-ErrorMessage", "edge flood".into()),
                    ],
                    body: String::new(),
                },
                "bare429" => reply(429, ""),
                "auth" => err(401, 40101, "invalid credentials"),
                "token" => err(401, 40142, "token expired"),
                "capability" => err(401, 40160, "action not permitted"),
                "forbidden" => reply(403, ""),
                "big" => err(413, 40009, "maximum message length exceeded"),
                "badname" => err(400, 40010, "invalid channel name"),
                "badid" => err(400, 40031, "invalid message id"),
                "html" => Canned {
                    status: 400,
                    headers: vec![("Content-Type", "text/html".into())],
                    body: "<html>bad</html>".into(),
                },
                "codestring" => reply(400, r#"{"error":{"message":"m","code":"40013"}}"#),
                "down" => err(500, 50000, "internal error"),
                "http-version" => reply(505, ""),
                _ => reply(201, "{}"),
            }
        });
        let server = serve(l.remove(0), handler);
        let publisher = Publisher::start(config("127.0.0.1", server.port, &[])).unwrap();
        let outcome = |channel: &str| single(&publisher, batch(9, channel, 1));

        // A chain stops at the first batch that is not delivered.
        let chain = run(&publisher, Job::Chain(vec![batch(1, "fine", 2), batch(2, "big", 1), batch(3, "fine", 1)]));
        assert_eq!(chain[0], (1, Outcome::Delivered));
        assert!(matches!(&chain[1], (2, Outcome::Rejected { error }) if error.code == Some(40009)));
        assert_eq!(chain[2], (3, Outcome::NotSent));
        let err = |status: Option<u16>, code: Option<u32>, message: &str| PublishError {
            status,
            code,
            message: message.into(),
        };

        assert_eq!(
            outcome("rate"),
            Outcome::RateLimited {
                error: err(Some(429), Some(42913), "channel rate exceeded")
            }
        );
        assert_eq!(
            outcome("flood"),
            Outcome::RateLimited {
                error: err(Some(429), Some(42922), "edge flood")
            }
        );
        assert_eq!(
            outcome("bare429"),
            Outcome::RateLimited {
                error: err(Some(429), None, "Ably returned HTTP 429")
            }
        );
        assert_eq!(
            outcome("auth"),
            Outcome::AuthFailed {
                error: err(Some(401), Some(40101), "invalid credentials")
            }
        );
        assert!(
            matches!(outcome("token"), Outcome::AuthFailed { error } if error.code == Some(40142))
        );
        assert!(
            matches!(outcome("capability"), Outcome::Rejected { error } if error.code == Some(40160)),
            "a capability refusal concerns that channel only"
        );
        assert!(
            matches!(outcome("forbidden"), Outcome::RateLimited { error } if error.status == Some(403)),
            "a bare 403 backs off that channel, it does not pause delivery"
        );
        assert_eq!(
            outcome("big"),
            Outcome::Rejected {
                error: err(Some(413), Some(40009), "maximum message length exceeded")
            }
        );
        assert!(
            matches!(outcome("badname"), Outcome::Rejected { error } if error.code == Some(40010))
        );
        assert!(
            matches!(outcome("badid"), Outcome::Rejected { error } if error.code == Some(40031))
        );
        assert_eq!(
            outcome("html"),
            Outcome::Rejected {
                error: err(Some(400), None, "Ably returned HTTP 400")
            }
        );
        assert_eq!(
            outcome("codestring"),
            Outcome::Rejected {
                error: err(Some(400), Some(40013), "m")
            }
        );
        assert_eq!(
            outcome("down"),
            Outcome::Retry {
                error: err(Some(500), Some(50000), "internal error")
            }
        );
        assert!(
            matches!(outcome("http-version"), Outcome::Retry { error } if error.status == Some(505))
        );

        let shown = outcome("rate").error().unwrap().to_string();
        assert_eq!(shown, "channel rate exceeded (HTTP 429, Ably error 42913)");
        publisher.shutdown();
    }

    #[test]
    fn falls_back_on_503_with_same_body_and_sticks_to_the_fallback() {
        let mut l = listeners(2);
        let primary = serve(l.remove(0), Arc::new(|_| reply(503, "")));
        let fallback = serve(l.remove(0), Arc::new(|_| reply(201, "{}")));
        let publisher =
            Publisher::start(config("127.0.0.1", primary.port, &["127.0.0.2"])).unwrap();

        assert_eq!(single(&publisher, batch(1, "c", 2)), Outcome::Delivered);
        let (p, f) = (primary.requests(), fallback.requests());
        assert_eq!((p.len(), f.len()), (1, 1));
        assert_eq!(p[0].body, f[0].body, "a retry must resend the same ids");
        assert_eq!(f[0].headers["host"], format!("127.0.0.2:{}", primary.port));

        // The fallback that worked is used first from now on.
        assert_eq!(single(&publisher, batch(2, "c", 1)), Outcome::Delivered);
        assert_eq!(
            (primary.requests().len(), fallback.requests().len()),
            (1, 2)
        );
        publisher.shutdown();
    }

    #[test]
    fn falls_back_when_the_primary_refuses_connections() {
        let mut l = listeners(2);
        // Nothing listens on 127.0.0.3 at this port.
        drop(l.remove(0));
        let fallback = serve(l.remove(0), Arc::new(|_| reply(201, "{}")));
        let publisher =
            Publisher::start(config("127.0.0.3", fallback.port, &["127.0.0.2"])).unwrap();
        assert_eq!(single(&publisher, batch(1, "c", 1)), Outcome::Delivered);
        assert_eq!(fallback.requests().len(), 1);
        publisher.shutdown();
    }

    #[test]
    fn gives_up_after_three_retries_and_reports_retry() {
        let l = listeners(6);
        let port = l[0].local_addr().unwrap().port();
        let servers: Vec<Server> = l
            .into_iter()
            .map(|l| serve(l, Arc::new(|_| reply(503, ""))))
            .collect();
        let fallbacks = [
            "127.0.0.2",
            "127.0.0.3",
            "127.0.0.4",
            "127.0.0.5",
            "127.0.0.6",
        ];
        let publisher = Publisher::start(config("127.0.0.1", port, &fallbacks)).unwrap();
        let outcome = single(&publisher, batch(1, "c", 1));
        assert!(
            matches!(&outcome, Outcome::Retry { error } if error.status == Some(503)),
            "{outcome:?}"
        );
        let total: usize = servers.iter().map(|s| s.requests().len()).sum();
        assert_eq!(total, 1 + MAX_RETRIES);
        assert_eq!(servers[0].requests().len(), 1, "the primary is tried first");

        // Nothing listening anywhere: a network error, no status.
        let refused = config("127.0.0.7", port, &["127.0.0.8"]);
        let publisher = Publisher::start(refused).unwrap();
        let outcome = single(&publisher, batch(1, "c", 1));
        assert!(
            matches!(&outcome, Outcome::Retry { error } if error.status.is_none()),
            "{outcome:?}"
        );
    }

    #[test]
    fn a_silent_server_times_out_as_retry() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let held = thread::spawn(move || {
            let conn = listener.accept().map(|(s, _)| s);
            thread::sleep(Duration::from_secs(3));
            drop(conn);
        });
        let mut cfg = config("127.0.0.1", port, &[]);
        cfg.request_timeout = Duration::from_millis(300);
        let publisher = Publisher::start(cfg).unwrap();
        let started = Instant::now();
        let outcome = single(&publisher, batch(1, "c", 1));
        assert!(
            matches!(&outcome, Outcome::Retry { error } if error.status.is_none()),
            "{outcome:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
        publisher.shutdown();
        held.join().unwrap();
    }

    #[test]
    fn secrets_never_appear_in_debug_or_errors() {
        let secret = "SuperSecretValue123";
        let basic = base64::engine::general_purpose::STANDARD.encode(KEY);
        let cfg = config("127.0.0.1", 1, &[]);
        let debug = format!("{cfg:?}");
        assert!(
            !debug.contains(secret) && !debug.contains(&basic),
            "{debug}"
        );
        assert!(debug.contains("appId.keyId"));

        let bad = PublisherConfig::from_options(
            "appId.keyId-SuperSecretValue123",
            None,
            None,
            None,
            true,
            None,
        );
        let bad = bad.unwrap_err();
        assert!(!format!("{bad} {bad:?}").contains(secret));
        let url = "https://u:hunter2@ably.example";
        for bad in [
            PublisherConfig::from_options(KEY, None, Some(url), None, true, None),
            PublisherConfig::from_options(KEY, Some("u:hunter2@id"), None, None, true, None),
        ] {
            let bad = bad.unwrap_err();
            assert!(!format!("{bad} {bad:?}").contains("hunter2"), "{bad}");
        }

        // A server echoing the key back (or a proxy echoing the header).
        let mut l = listeners(1);
        let echo = format!(
            r#"{{"error":{{"message":"bad key {KEY} / {basic}","code":40101,"statusCode":401}}}}"#
        );
        let server = serve(l.remove(0), Arc::new(move |_| reply(401, &echo)));
        let publisher = Publisher::start(config("127.0.0.1", server.port, &[])).unwrap();
        let outcome = single(&publisher, batch(1, "c", 1));
        let error = outcome.error().unwrap();
        for shown in [
            format!("{error}"),
            format!("{error:?}"),
            format!("{outcome:?}"),
            format!("{publisher:?}"),
        ] {
            assert!(
                !shown.contains(secret) && !shown.contains(&basic),
                "{shown}"
            );
        }
        assert!(
            error.message.contains("appId.keyId:<redacted>"),
            "{}",
            error.message
        );
        publisher.shutdown();
    }

    /// Answers a batch publish per channel, by the channel's name.
    fn batch_handler(shape: &'static str) -> Handler {
        Arc::new(move |req: &Recorded| {
            if req.path != "/messages" {
                return reply(201, "{}");
            }
            let specs: Vec<Value> = serde_json::from_str(&req.body).unwrap();
            let result = |spec: &Value| {
                let channel = spec["channels"].as_str().unwrap();
                let id = spec["messages"][0]["id"]
                    .as_str()
                    .unwrap()
                    .split(':')
                    .next()
                    .unwrap();
                match channel {
                    c if c.starts_with("deny") => serde_json::json!({"channel": c, "error":
                        {"message": "denied", "code": 40160, "statusCode": 401}}),
                    c if c.starts_with("slow") => serde_json::json!({"channel": c, "error":
                        {"message": "rate", "code": 42913}}),
                    c if c.starts_with("bad") => serde_json::json!({"channel": c, "error":
                        {"message": "bad name", "code": 40010, "statusCode": 400}}),
                    c => serde_json::json!({"channel": c, "messageId": id, "serials": ["s1"]}),
                }
            };
            let results: Vec<Value> = specs
                .iter()
                .filter(|s| !s["channels"].as_str().unwrap().starts_with("lost"))
                .map(result)
                .collect();
            let failed = results.iter().any(|r| r.get("error").is_some());
            match shape {
                "current" => {
                    let per_spec: Vec<Value> = results
                        .iter()
                        .map(|r| {
                            let ok = r.get("error").is_none();
                            serde_json::json!({"successCount": ok as u8, "failureCount": (!ok) as u8, "results": [r]})
                        })
                        .collect();
                    reply(200, &Value::Array(per_spec).to_string())
                }
                _ if failed => reply(
                    400,
                    &serde_json::json!({"error": {"message": "Batched response includes errors",
                        "code": 40020, "statusCode": 400}, "batchResponse": results})
                    .to_string(),
                ),
                _ => reply(201, &Value::Array(results).to_string()),
            }
        })
    }

    #[test]
    fn batch_publish_current_response_shape() {
        let mut l = listeners(1);
        let server = serve(l.remove(0), batch_handler("current"));
        let publisher = Publisher::start(config("127.0.0.1", server.port, &[])).unwrap();
        let job = Job::Multi(vec![
            batch(1, "ok", 2),
            batch(2, "deny", 1),
            batch(3, "slow", 1),
            batch(4, "bad", 1),
            batch(5, "lost", 1),
        ]);
        let outcomes = run(&publisher, job);
        let keys: Vec<i64> = outcomes.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, [1, 2, 3, 4, 5]);
        assert_eq!(outcomes[0].1, Outcome::Delivered);
        assert!(
            matches!(&outcomes[1].1, Outcome::Rejected { error } if error.code == Some(40160))
        );
        assert!(
            matches!(&outcomes[2].1, Outcome::RateLimited { error } if error.status == Some(429)),
            "status is derived from the code: {:?}",
            outcomes[2].1
        );
        assert!(matches!(&outcomes[3].1, Outcome::Rejected { error } if error.code == Some(40010)));
        assert!(matches!(&outcomes[4].1, Outcome::Retry { .. }));

        let reqs = server.requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].path, "/messages");
        assert_eq!(reqs[0].headers["x-ably-version"], "6");
        let body: Value = serde_json::from_str(&reqs[0].body).unwrap();
        assert_eq!(body[0]["channels"], "ok");
        assert_eq!(body[0]["messages"][1]["id"], "b1:1");
        assert_eq!(body[0]["messages"][1]["encoding"], "json");
        assert_eq!(body.as_array().unwrap().len(), 5);
        publisher.shutdown();
    }

    #[test]
    fn batch_publish_legacy_response_shapes() {
        let mut l = listeners(1);
        let server = serve(l.remove(0), batch_handler("legacy"));
        let publisher = Publisher::start(config("127.0.0.1", server.port, &[])).unwrap();

        // 201 with a flat array.
        let outcomes = run(
            &publisher,
            Job::Multi(vec![batch(1, "a", 1), batch(2, "b", 1)]),
        );
        assert_eq!(
            outcomes,
            vec![(1, Outcome::Delivered), (2, Outcome::Delivered)]
        );

        // 400 {error, batchResponse}: per-channel, not the 40020 wrapper.
        let outcomes = run(
            &publisher,
            Job::Multi(vec![
                batch(3, "a", 1),
                batch(4, "bad", 1),
                batch(5, "lost", 1),
            ]),
        );
        assert_eq!(outcomes[0], (3, Outcome::Delivered));
        assert!(matches!(&outcomes[1].1, Outcome::Rejected { error } if error.code == Some(40010)));
        assert!(matches!(&outcomes[2].1, Outcome::Retry { .. }));
        publisher.shutdown();

        // A plain error response applies to every batch.
        let mut l = listeners(1);
        let body = r#"{"error":{"message":"invalid body","code":40001,"statusCode":400}}"#;
        let server = serve(l.remove(0), Arc::new(move |_| reply(400, body)));
        let publisher = Publisher::start(config("127.0.0.1", server.port, &[])).unwrap();
        let outcomes = run(
            &publisher,
            Job::Multi(vec![batch(1, "a", 1), batch(2, "b", 1)]),
        );
        for (_, outcome) in &outcomes {
            assert!(matches!(outcome, Outcome::Rejected { error } if error.code == Some(40001)));
        }
        publisher.shutdown();
    }

    #[test]
    fn multi_jobs_are_split_to_fit_batch_limits() {
        let mut l = listeners(1);
        let server = serve(l.remove(0), batch_handler("current"));
        let publisher = Publisher::start(config("127.0.0.1", server.port, &[])).unwrap();
        let mut batches: Vec<Batch> = (0..150).map(|i| batch(i, &format!("c{i}"), 1)).collect();
        batches.push(batch(150, "c120", 1)); // repeats a channel: needs its own request
        let outcomes = run(&publisher, Job::Multi(batches));
        assert_eq!(outcomes.len(), 151);
        assert!(outcomes
            .iter()
            .enumerate()
            .all(|(i, (k, o))| *k == i as i64 && *o == Outcome::Delivered));
        let reqs = server.requests();
        let counts: Vec<usize> = reqs
            .iter()
            .map(|r| {
                serde_json::from_str::<Vec<Value>>(&r.body)
                    .map(|v| v.len())
                    .unwrap_or(0)
            })
            .collect();
        // The repeated channel went alone, last, to the channel endpoint.
        assert_eq!(counts, [100, 50, 1]);
        assert_eq!(reqs[2].path, "/channels/c120/messages");
        publisher.shutdown();
    }

    #[test]
    fn pack_respects_channels_count_and_body_size() {
        let big = |key: i64| Batch {
            key,
            channel: format!("big{key}"),
            messages: vec![OutMessage {
                id: message_id("x", 0),
                name: None,
                data: "7".repeat(600_000),
            }],
        };
        let jobs = pack((0..5).map(big).collect());
        let sizes: Vec<usize> = jobs
            .iter()
            .map(|j| match j {
                Job::Multi(b) | Job::Chain(b) => b.len(),
                Job::Channel(_) => 1,
            })
            .collect();
        assert_eq!(
            sizes,
            [3, 2],
            "three 600 kB specs fit under 2 MiB, four do not"
        );

        let jobs = pack((0..250).map(|i| batch(i, &format!("c{i}"), 1)).collect());
        let sizes: Vec<usize> = jobs
            .iter()
            .map(|j| if let Job::Multi(b) = j { b.len() } else { 1 })
            .collect();
        assert_eq!(sizes, [100, 100, 50]);

        let jobs = pack(vec![batch(1, "a", 1)]);
        assert!(matches!(&jobs[..], [Job::Channel(b)] if b.key == 1));
        let jobs = pack(vec![batch(1, "a", 1), batch(2, "a", 1), batch(3, "b", 1)]);
        assert!(
            matches!(&jobs[..], [Job::Channel(a), Job::Multi(rest)] if a.key == 1 && rest.len() == 2)
        );
        assert!(pack(Vec::new()).is_empty());

        // The measured size is the real serialized size.
        let b = batch(1, "chat:é", 3);
        assert_eq!(
            spec_size(&b),
            serde_json::to_vec(&wire_spec(&b)).unwrap().len()
        );
    }

    #[test]
    fn chunk_by_size_cuts_under_the_limits() {
        assert!(chunk_by_size(Vec::new(), 10, 5).is_empty());
        assert_eq!(chunk_by_size([4, 4, 4], 10, 100), [0..2, 2..3]);
        assert_eq!(
            chunk_by_size([5, 5, 5], 10, 100),
            [0..2, 2..3],
            "a chunk may be exactly the limit"
        );
        assert_eq!(chunk_by_size([1, 1, 1, 1, 1], 100, 2), [0..2, 2..4, 4..5]);
        // An oversized message is isolated so only it gets rejected.
        assert_eq!(chunk_by_size([3, 50, 3, 3], 10, 100), [0..1, 1..2, 2..4]);
        assert_eq!(chunk_by_size([50], 10, 100).first(), Some(&(0..1)));
        assert_eq!(chunk_by_size([0, 0, 0], 10, 0), [0..1, 1..2, 2..3]);

        let msgs = [
            ("insert", "x".repeat(40_000)),
            ("update", "y".repeat(30_000)),
            ("delete", "{}".into()),
        ];
        let sizes = msgs.iter().map(|(n, d)| message_size(Some(n), d));
        assert_eq!(chunk_by_size(sizes, MAX_MESSAGE_SIZE, 1000), [0..1, 1..3]);
        assert_eq!(message_size(Some("é"), "{\"a\":\"ü\"}"), 2 + 10);
        assert_eq!(message_size(None, ""), 0);
        assert_eq!(message_id("row-17", 3), "row-17:3");
    }

    #[test]
    fn backoff_stays_within_bounds() {
        for attempt in [0, 1, 5, 8, 9, 20, 64, u32::MAX] {
            let cap = (100u64 << attempt.min(20)).min(30_000);
            for _ in 0..200 {
                assert!(
                    backoff(attempt) <= Duration::from_millis(cap),
                    "attempt {attempt}"
                );
            }
        }
        assert!(
            (0..200)
                .map(|_| backoff(30))
                .any(|d| d > Duration::from_secs(15)),
            "reaches the cap"
        );
        assert!((0..200)
            .map(|_| backoff(0))
            .all(|d| d <= Duration::from_millis(100)));
    }

    #[test]
    fn hosts_follow_ably_endpoint_rules() {
        let hosts =
            |endpoint: Option<&str>, rest_host: Option<&str>, port: Option<u16>, tls: bool| {
                let cfg = PublisherConfig::from_options(KEY, endpoint, rest_host, port, tls, None)
                    .unwrap();
                (cfg.rest_host, cfg.port, cfg.fallback_hosts)
            };
        let letters = |id: &str, domain: &str| -> Vec<String> {
            ["a", "b", "c", "d", "e"]
                .iter()
                .map(|l| format!("{id}.{l}.fallback.{domain}"))
                .collect()
        };
        assert_eq!(
            hosts(None, None, None, true),
            (
                "main.realtime.ably.net".into(),
                443,
                letters("main", "ably-realtime.com")
            )
        );
        assert_eq!(
            hosts(Some(""), Some(" "), None, false).1,
            80,
            "empty means unset"
        );
        assert_eq!(
            hosts(Some("acme"), None, None, true),
            (
                "acme.realtime.ably.net".into(),
                443,
                letters("acme", "ably-realtime.com")
            )
        );
        assert_eq!(
            hosts(Some("nonprod:sandbox"), None, None, true),
            (
                "sandbox.realtime.ably-nonprod.net".into(),
                443,
                letters("sandbox", "ably-realtime-nonprod.com")
            )
        );
        assert_eq!(
            hosts(Some("localhost"), None, Some(8080), false),
            ("localhost".into(), 8080, vec![])
        );
        assert_eq!(
            hosts(Some("ably.example.com"), None, None, true),
            ("ably.example.com".into(), 443, vec![])
        );
        assert_eq!(
            hosts(Some("::1"), None, None, false),
            ("::1".into(), 80, vec![])
        );
        assert_eq!(
            hosts(None, Some("127.0.0.1"), None, false),
            ("127.0.0.1".into(), 80, vec![])
        );
        assert_eq!(
            hosts(Some("main"), None, Some(8443), true),
            ("main.realtime.ably.net".into(), 8443, vec![])
        );

        let explicit = PublisherConfig::from_options(
            KEY,
            None,
            None,
            None,
            true,
            Some(vec!["f1.example".into()]),
        );
        assert_eq!(explicit.unwrap().fallback_hosts, ["f1.example"]);
        for disabled in [vec![], vec![String::new()]] {
            let none = PublisherConfig::from_options(KEY, None, None, None, true, Some(disabled));
            assert!(none.unwrap().fallback_hosts.is_empty());
        }

        let err = |endpoint, rest_host, port, fallbacks| {
            PublisherConfig::from_options(KEY, endpoint, rest_host, port, true, fallbacks)
                .unwrap_err()
        };
        assert_eq!(
            hosts(Some("main"), Some("local.test"), None, true),
            ("local.test".into(), 443, vec![]),
            "rest_host overrides endpoint"
        );
        assert!(matches!(
            err(Some("nonprod:"), None, None, None),
            PublisherError::InvalidEndpoint(_)
        ));
        assert!(matches!(
            err(Some("a b"), None, None, None),
            PublisherError::InvalidEndpoint(_)
        ));
        assert!(matches!(
            err(None, Some("user@host"), None, None),
            PublisherError::InvalidHost(_)
        ));
        assert!(matches!(
            err(None, Some("h/path"), None, None),
            PublisherError::InvalidHost(_)
        ));
        assert!(matches!(
            err(None, None, None, Some(vec!["ok".into(), "bad host".into()])),
            PublisherError::InvalidHost(_)
        ));
        assert!(matches!(
            err(None, None, Some(0), None),
            PublisherError::InvalidPort
        ));
    }

    #[test]
    fn threads_block_signals_and_the_caller_mask_is_restored() {
        fn blocked(signal: libc::c_int) -> bool {
            unsafe {
                let mut current: libc::sigset_t = std::mem::zeroed();
                libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut current);
                libc::sigismember(&current, signal) == 1
            }
        }
        let probe_seen = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = crossbeam_channel::unbounded();
        // Run the real worker loop with a wake hook that reports its mask.
        let mut cfg = config("127.0.0.1", 9, &[]);
        let seen = Arc::clone(&probe_seen);
        cfg.wake = Some(Arc::new(move || {
            seen.fetch_add(1, Ordering::SeqCst);
            let _ =
                tx.send(blocked(libc::SIGTERM) && blocked(libc::SIGUSR1) && blocked(libc::SIGINT));
        }));
        cfg.request_timeout = Duration::from_millis(500);
        let was_blocked = blocked(libc::SIGTERM);
        let publisher = Publisher::start(cfg).unwrap();
        assert_eq!(
            blocked(libc::SIGTERM),
            was_blocked,
            "start restores the caller's mask"
        );
        publisher.submit(vec![Job::Channel(batch(1, "c", 1))]);
        assert!(
            rx.recv_timeout(WAIT).unwrap(),
            "publisher threads block all signals"
        );
        assert!(publisher.results().recv_timeout(WAIT).is_ok());
        assert_eq!(probe_seen.load(Ordering::SeqCst), 1);
        publisher.shutdown();
    }

    #[test]
    fn start_rechecks_hand_edited_config() {
        let mut cfg = config("127.0.0.1", 9, &[]);
        cfg.agent = "bad\r\nX-Injected: 1".into();
        assert!(matches!(
            Publisher::start(cfg),
            Err(PublisherError::InvalidAgent)
        ));
        let mut cfg = config("127.0.0.1", 9, &[]);
        cfg.fallback_hosts.push("evil.example/path?".into());
        assert!(matches!(
            Publisher::start(cfg),
            Err(PublisherError::InvalidHost(_))
        ));
    }

    #[test]
    fn shutdown_returns_promptly_and_empty_batches_need_no_request() {
        let publisher = Publisher::start(config("127.0.0.1", 9, &[])).unwrap();
        let empty = Batch {
            key: 5,
            channel: "c".into(),
            messages: Vec::new(),
        };
        assert_eq!(single(&publisher, empty), Outcome::Delivered);
        let started = Instant::now();
        publisher.shutdown();
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
