//! Where and how the publisher reaches Ably: the API key and the hosts,
//! resolved from the `ably.*` settings the way Ably's SDKs resolve their
//! client options (protocol reference §A1).
//!
//! Invariant: a configuration that passed [`PublisherConfig::from_options`]
//! names only hosts that cannot smuggle a path, userinfo or header text into
//! a URL, and never shows the key's secret (its `Debug` redacts it). The
//! same rules back the settings' check hooks (src/guc.rs), so an invalid
//! value is refused when it is set instead of stopping delivery later.

use std::sync::Arc;
use std::time::Duration;
use std::{fmt, io};

use crate::token::{ApiKey, TokenError};

/// Ably's own per-request timeout (`httpRequestTimeout`).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_THREADS: usize = 4;
const DEFAULT_ENDPOINT: &str = "main";

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
pub fn endpoint_hosts(endpoint: &str) -> Result<(String, Vec<String>), PublisherError> {
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
pub fn validate_host(host: &str) -> Result<(), PublisherError> {
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

/// Checks an `endpoint` setting the way [`PublisherConfig::from_options`]
/// will use it.
pub fn check_endpoint(endpoint: &str) -> Result<(), PublisherError> {
    let (primary, fallbacks) = endpoint_hosts(endpoint.trim())?;
    validate_host(&primary)?;
    fallbacks.iter().try_for_each(|h| validate_host(h))
}

/// Checks one host setting.
pub fn check_host(host: &str) -> Result<(), PublisherError> {
    validate_host(host.trim())
}
