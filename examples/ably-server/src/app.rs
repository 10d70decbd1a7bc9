//! The state shared by every REST handler and realtime connection: keys,
//! issued tokens, channels, connections, fixed settings and counters, plus
//! the sweeper that frees what has expired.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::auth::Authenticator;
use crate::channels::Channels;
use crate::connection::Connections;
use crate::keys::KeyStore;
use crate::stats::{Gauges, Stats};
use crate::token::TokenStore;

/// How often expired tokens, nonces and idle channels are freed.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub max_message_size: usize,
    pub max_frame_size: usize,
    pub require_tls_for_basic: bool,
    pub server_id: String,
    /// How long a dropped connection stays resumable.
    pub connection_state_ttl: Duration,
    /// How long a dropped connection's presence members stay.
    pub presence_leave_delay: Duration,
    pub debug_endpoints: bool,
}

pub struct App {
    pub keys: KeyStore,
    pub tokens: TokenStore,
    pub channels: Channels,
    pub connections: Connections,
    pub settings: Settings,
    pub stats: Stats,
}

impl App {
    pub fn authenticator(&self) -> Authenticator<'_> {
        Authenticator { keys: &self.keys, tokens: &self.tokens }
    }

    pub fn gauges(&self) -> Gauges {
        let (_, connections_suspended) = self.connections.counts();
        let (tokens, nonces) = self.tokens.len();
        Gauges { channels: self.channels.len(), tokens, nonces, connections_suspended }
    }

    /// Frees expired tokens and nonces and idle channels, forever.
    pub async fn sweep_forever(self: Arc<App>) {
        let mut every = tokio::time::interval(SWEEP_EVERY);
        let mut freed_since_return = 0;
        loop {
            every.tick().await;
            freed_since_return += self.tokens.sweep(now_ms()) + self.channels.sweep(Instant::now());
            if freed_since_return >= RETURN_MEMORY_AFTER {
                return_free_memory();
                freed_since_return = 0;
            }
        }
    }
}

/// Once this many objects were freed, the memory is worth giving back.
const RETURN_MEMORY_AFTER: usize = 1000;

/// Hands freed heap pages back to the OS. glibc keeps them otherwise, so the
/// resident size of a server that once held many channels would never drop,
/// although the memory is free for reuse.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn return_free_memory() {
    extern "C" {
        fn malloc_trim(pad: usize) -> std::os::raw::c_int;
    }
    // SAFETY: malloc_trim only releases free memory; it has no preconditions.
    unsafe {
        malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_free_memory() {}
