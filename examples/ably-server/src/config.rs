//! Command-line configuration. Keys are parsed here, so a bad `--key` stops
//! the server before it listens; secrets never reach logs. Every duration is
//! in milliseconds and defaults to Ably's own value, so tests can shorten the
//! windows they need to see expire without the server changing behaviour.

use std::time::Duration;

use clap::Parser;

use crate::keys::ApiKey;

#[derive(Debug, Parser)]
#[command(name = "ably-server", about = "Local Ably-compatible REST + realtime server")]
pub struct Config {
    /// Port to listen on; 0 picks a free port (see the ready line on stdout).
    #[arg(long, default_value_t = 8090)]
    pub port: u16,

    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,

    /// API key `appId.keyId:secret`, optionally `=<capability JSON>`
    /// (default `{"*":["*"]}`). Repeat for several keys.
    #[arg(long = "key", required = true, value_parser = ApiKey::parse_spec)]
    pub keys: Vec<ApiKey>,

    /// Per-channel inbound limit in messages per second (429 / 42913 above it).
    #[arg(long)]
    pub channel_rate_limit: Option<u32>,

    /// Messages kept in history per channel (oldest dropped first).
    #[arg(long, default_value_t = 10_000)]
    pub history_limit: usize,

    /// How long a message stays in history (ms). Ably keeps two minutes by default.
    #[arg(long, default_value_t = 120_000)]
    pub history_ttl: u64,

    /// How long the state of a dropped realtime connection is kept for resume
    /// and recover (ms); advertised as `connectionStateTtl`.
    #[arg(long, default_value_t = 120_000)]
    pub connection_state_ttl: u64,

    /// How long the presence members of a dropped connection stay present
    /// before they leave, unless the connection resumes (ms).
    #[arg(long, default_value_t = 15_000)]
    pub presence_leave_delay: u64,

    /// Maximum message size in bytes, as Ably computes it.
    #[arg(long, default_value_t = 65_536)]
    pub max_message_size: usize,

    /// Refuse Basic auth with 40103, as Ably does over plain HTTP.
    #[arg(long)]
    pub require_tls_for_basic: bool,

    /// Serve the local-only `/_debug/*` endpoints (counters, dropping a
    /// connection). They need no credentials, so they are off by default.
    #[arg(long)]
    pub debug_endpoints: bool,

    /// Log filter (e.g. `debug`, `ably_server=debug`); RUST_LOG also works.
    #[arg(long)]
    pub log: Option<String>,
}

impl Config {
    pub fn history_ttl(&self) -> Duration {
        Duration::from_millis(self.history_ttl.max(1))
    }

    pub fn connection_state_ttl(&self) -> Duration {
        Duration::from_millis(self.connection_state_ttl.max(1))
    }

    pub fn presence_leave_delay(&self) -> Duration {
        Duration::from_millis(self.presence_leave_delay)
    }
}
