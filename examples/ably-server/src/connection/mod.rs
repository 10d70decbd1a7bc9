//! A realtime connection's state, which outlives its WebSocket: who it is,
//! what it has attached, the answers it was given, and which transport (if
//! any) carries it now. When a transport drops, the state is kept for the
//! connection-state window so the client can resume or recover it; a clean
//! CLOSE or the window's end discards it.
//!
//! Invariant: the state is only changed under its lock, and every change of
//! hands (a drop, a resume, a takeover) bumps `epoch`. A transport or timer
//! that finds the epoch moved on since it looked has been superseded and must
//! leave the state alone.

mod acks;
mod key;
mod registry;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::Notify;
use tokio::time::Instant;

pub use acks::{AckLog, Outcome};
pub use key::{random_text, ConnectionKey};
pub use registry::{Connections, KeyProblem};

use crate::auth::Principal;
use crate::outbound::Outbound;

/// One channel attachment, under the name the client attached with.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// The channel itself (the name without its `[?…]` qualifier).
    pub channel: String,
    pub modes: i64,
}

/// The socket currently carrying a connection.
#[derive(Debug)]
pub struct Transport {
    pub tx: UnboundedSender<Outbound>,
    /// Wakes the transport's task when it must stop: it was dropped on
    /// purpose or another transport took the connection over.
    pub stop: Arc<Notify>,
}

#[derive(Debug)]
pub struct ConnectionState {
    /// The secret half of the connection key; replaced on every resume.
    pub secret: String,
    pub principal: Principal,
    /// The `clientId` connection parameter, re-applied when the token changes.
    pub requested_client_id: Option<String>,
    pub echo: bool,
    /// By the name the client attached with.
    pub attachments: BTreeMap<String, Attachment>,
    /// Channels where this connection entered presence, attached or not, so
    /// its members leave when it goes away.
    pub present_in: BTreeSet<String>,
    pub acks: AckLog,
    /// `None` while the connection is suspended (dropped, resumable).
    pub transport: Option<Transport>,
    pub epoch: u64,
    /// Closed or expired: it can never be resumed again.
    pub closed: bool,
    /// When to ask the client for a new token (AUTH), for token auth.
    pub renew_at: Option<Instant>,
    /// An AUTH was sent for the current token; wait for expiry now.
    pub reauth_requested: bool,
}

impl ConnectionState {
    pub fn key(&self, id: &str) -> ConnectionKey {
        ConnectionKey { secret: self.secret.clone(), id: id.to_string() }
    }
}

#[derive(Debug)]
pub struct Connection {
    pub id: String,
    /// The API key the connection authenticated under; a resume must match.
    pub key_name: String,
    /// Fixed for the connection's life: a resume must present the same.
    pub client_id: Option<String>,
    state: Mutex<ConnectionState>,
}

impl Connection {
    pub fn new(id: String, state: ConnectionState) -> Arc<Connection> {
        Arc::new(Connection {
            id,
            key_name: state.principal.key_name.clone(),
            client_id: state.principal.client_id.clone(),
            state: Mutex::new(state),
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, ConnectionState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}
