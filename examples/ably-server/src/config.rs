//! Command-line configuration. Keys are parsed here, so a bad `--key` stops
//! the server before it listens; secrets never reach logs.

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

    /// Maximum message size in bytes, as Ably computes it.
    #[arg(long, default_value_t = 65_536)]
    pub max_message_size: usize,

    /// Refuse Basic auth with 40103, as Ably does over plain HTTP.
    #[arg(long)]
    pub require_tls_for_basic: bool,

    /// Log filter (e.g. `debug`, `ably_server=debug`); RUST_LOG also works.
    #[arg(long)]
    pub log: Option<String>,
}
