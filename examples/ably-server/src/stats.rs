//! Counters served at `GET /_debug/stats` (local-server only, behind
//! `--debug-endpoints`), so tests and benchmarks can see e.g. how often a
//! client tried to connect, or that unused channels and tokens were freed.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

#[derive(Debug, Default)]
pub struct Stats {
    pub connection_attempts: AtomicU64,
    pub connections_opened: AtomicU64,
    pub connections_closed: AtomicU64,
    pub rest_publishes: AtomicU64,
    pub messages_stored: AtomicU64,
}

/// What the registries hold now, counted when the snapshot is taken.
#[derive(Debug, Default, Clone, Copy)]
pub struct Gauges {
    pub channels: usize,
    pub tokens: usize,
    pub nonces: usize,
    pub connections_suspended: usize,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsSnapshot {
    pub connection_attempts: u64,
    pub connections_opened: u64,
    /// WebSockets open now.
    pub connections_open: u64,
    /// Dropped connections kept for resume.
    pub connections_suspended: usize,
    pub rest_publishes: u64,
    pub messages_stored: u64,
    pub channels: usize,
    pub tokens: usize,
    pub nonces: usize,
}

impl Stats {
    pub fn bump(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self, gauges: Gauges) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let opened = get(&self.connections_opened);
        StatsSnapshot {
            connection_attempts: get(&self.connection_attempts),
            connections_opened: opened,
            connections_open: opened.saturating_sub(get(&self.connections_closed)),
            connections_suspended: gauges.connections_suspended,
            rest_publishes: get(&self.rest_publishes),
            messages_stored: get(&self.messages_stored),
            channels: gauges.channels,
            tokens: gauges.tokens,
            nonces: gauges.nonces,
        }
    }
}
