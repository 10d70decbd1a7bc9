//! The state shared by every REST handler and realtime connection: keys,
//! issued tokens, channels, fixed settings and counters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::auth::Authenticator;
use crate::channels::Channels;
use crate::keys::KeyStore;
use crate::realtime::protocol::Outbound;
use crate::token::TokenStore;

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub max_message_size: usize,
    pub max_frame_size: usize,
    pub require_tls_for_basic: bool,
    pub server_id: String,
}

/// Counters served at `GET /_debug/stats` (local-server only), so tests can
/// see e.g. how often a client tried to connect.
#[derive(Debug, Default)]
pub struct Stats {
    pub connection_attempts: AtomicU64,
    pub connections_opened: AtomicU64,
    pub connections_closed: AtomicU64,
    pub rest_publishes: AtomicU64,
    pub messages_stored: AtomicU64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsSnapshot {
    pub connection_attempts: u64,
    pub connections_opened: u64,
    pub connections_open: u64,
    pub rest_publishes: u64,
    pub messages_stored: u64,
}

impl Stats {
    pub fn bump(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let opened = get(&self.connections_opened);
        StatsSnapshot {
            connection_attempts: get(&self.connection_attempts),
            connections_opened: opened,
            connections_open: opened.saturating_sub(get(&self.connections_closed)),
            rest_publishes: get(&self.rest_publishes),
            messages_stored: get(&self.messages_stored),
        }
    }
}

pub struct App {
    pub keys: KeyStore,
    pub tokens: TokenStore,
    pub channels: Channels,
    pub settings: Settings,
    pub stats: Stats,
    /// Live realtime connections by connectionId, so the local-only debug
    /// endpoint can drop one to simulate a network blip.
    pub connections: Mutex<HashMap<String, tokio::sync::mpsc::UnboundedSender<Outbound>>>,
}

impl App {
    /// Closes a live connection's socket without any protocol goodbye, as a
    /// network failure would. Returns whether it existed.
    pub fn drop_connection(&self, connection_id: &str) -> bool {
        let connections = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        connections.get(connection_id).is_some_and(|tx| tx.send(Outbound::Close).is_ok())
    }

    pub fn authenticator(&self) -> Authenticator<'_> {
        Authenticator { keys: &self.keys, tokens: &self.tokens }
    }
}
