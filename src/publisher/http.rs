//! The HTTP side: one POST per job, with Ably's fallback-host rules (§A1),
//! turned into one [`Outcome`] per batch.
//!
//! Invariants: a request is retried on fallback hosts only with the same
//! body, so message ids (and with them Ably's idempotency) survive retries;
//! the Authorization header only ever goes to the configured hosts (no
//! redirects); the key never appears in an error built here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use rand::seq::SliceRandom;
use serde_json::Value;

use super::config::PublisherConfig;
use super::outcome::{error_from_json, is_publish_response, Outcome, PublishError};
use super::wire::{encode_path_segment, group_specs, spec_size, wire_messages, wire_spec, Batch, Job, WireSpec, MAX_PATH};
use super::JobResult;

/// Pinned so the batch publish response shape cannot change under us.
const PROTOCOL_VERSION: &str = "6";
/// Ably's `httpMaxRetryCount`: retries after the first attempt.
pub(super) const MAX_RETRIES: usize = 3;
/// Ably's `httpMaxRetryDuration`: no retry starts later than this.
const MAX_RETRY_DURATION: Duration = Duration::from_secs(15);
/// Ably's `fallbackRetryTimeout`: how long a working fallback is preferred.
const FALLBACK_STICKY: Duration = Duration::from_secs(600);
/// Responses are small JSON documents; anything larger is not worth reading.
const MAX_RESPONSE_BODY: u64 = 1024 * 1024;
/// Error texts come from the network; keep them log-sized.
const MAX_ERROR_MESSAGE_CHARS: usize = 500;

/// State shared by the threads of one publisher.
pub(super) struct Shared {
    agent: ureq::Agent,
    scheme: &'static str,
    port: u16,
    pub(super) primary: String,
    fallbacks: Vec<String>,
    /// `Basic base64(key)`, built once.
    authorization: String,
    /// Texts to scrub from anything reported: the secret and the header.
    secrets: [String; 2],
    agent_header: String,
    /// A fallback that worked, and until when to prefer it.
    sticky: Mutex<Option<(String, Instant)>>,
    pub(super) stopping: AtomicBool,
    pub(super) wake: Option<Arc<dyn Fn() + Send + Sync>>,
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
    pub(super) fn new(cfg: PublisherConfig, threads: usize) -> Shared {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // Never follow redirects: the Authorization header must only
            // go to the hosts configured here.
            .max_redirects(0)
            .timeout_global(Some(cfg.request_timeout))
            .user_agent(cfg.agent.clone())
            .max_idle_connections_per_host(threads)
            .build();
        let agent = ureq::Agent::with_parts(
            config,
            ureq::unversioned::transport::DefaultConnector::default(),
            super::resolver::CachingResolver::default(),
        );
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

    pub(super) fn run(&self, job: Job) -> JobResult {
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
        if path.len() > MAX_PATH {
            // Too long for a URL: the name goes in a batch publish body.
            return self.publish_multi(std::slice::from_ref(batch)).pop().unwrap_or_else(unencodable);
        }
        match self.post(&path, &body) {
            Attempt::Network(error) => Outcome::Retry { error },
            Attempt::Reply(reply) if is_publish_response(reply.status, &reply.body) => Outcome::Delivered,
            Attempt::Reply(reply) if (200..300).contains(&reply.status) => Outcome::Retry {
                error: PublishError {
                    status: Some(reply.status),
                    code: None,
                    message: "The reply is not Ably's publish response; the messages are sent again".into(),
                },
            },
            Attempt::Reply(reply) => Outcome::from_ably_error(self.reply_error(&reply)),
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
        if let Some(outcomes) = all_delivered(reply, batches) {
            return outcomes;
        }
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
                .map(|_| Outcome::from_ably_error(error.clone()))
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
                    }) => Outcome::from_ably_error(self.scrubbed(error.clone())),
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
    /// else the `X-Ably-Error*` headers, else just the status (then without
    /// an Ably code: not recognisably Ably's).
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

/// The common answer, read without building a document: a 2xx response in
/// the current shape, every channel of `batches` with a result and no error
/// anywhere. None for anything else, which [`Shared::batch_outcomes`] reads
/// in full.
fn all_delivered(reply: &Reply, batches: &[Batch]) -> Option<Vec<Outcome>> {
    use serde::de::IgnoredAny;
    use std::borrow::Cow;
    #[derive(serde::Deserialize)]
    struct Spec<'a> {
        #[serde(borrow)]
        results: Option<Vec<Result<'a>>>,
        error: Option<IgnoredAny>,
    }
    #[derive(serde::Deserialize)]
    struct Result<'a> {
        #[serde(borrow)]
        channel: Option<Cow<'a, str>>,
        error: Option<IgnoredAny>,
    }
    if !(200..300).contains(&reply.status) {
        return None;
    }
    let specs: Vec<Spec<'_>> = serde_json::from_str(&reply.body).ok()?;
    let mut channels = Vec::with_capacity(batches.len());
    for spec in &specs {
        if spec.error.is_some() {
            return None;
        }
        for result in spec.results.as_ref()? {
            if result.error.is_some() {
                return None;
            }
            channels.push(result.channel.as_deref()?);
        }
    }
    // Results come in the order of the specs; look further only if not.
    let answered = |i: usize, channel: &str| channels.get(i) == Some(&channel) || channels.contains(&channel);
    batches
        .iter()
        .enumerate()
        .all(|(i, b)| answered(i, &b.channel))
        .then(|| batches.iter().map(|_| Outcome::Delivered).collect())
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

