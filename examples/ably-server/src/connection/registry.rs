//! The registry of realtime connections that exist now, live or suspended,
//! by connectionId. Lock order: the registry, then a connection's state, then
//! the channels; the registry lock is never held while waiting for anything.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Connection, ConnectionKey};
use crate::outbound::Outbound;

/// Why a connection key opens nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyProblem {
    /// Not shaped like a key this server hands out (80018 on resume).
    Malformed,
    /// Unknown, expired, closed or superseded (80008 on resume).
    Unknown,
}

#[derive(Debug, Default)]
pub struct Connections {
    by_id: Mutex<HashMap<String, Arc<Connection>>>,
}

impl Connections {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Connection>>> {
        self.by_id.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert(&self, connection: Arc<Connection>) {
        self.lock().insert(connection.id.clone(), connection);
    }

    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// The connection `key` opens, checked against its current secret.
    pub fn find(&self, key: &str) -> Result<Arc<Connection>, KeyProblem> {
        let key = ConnectionKey::parse(key).ok_or(KeyProblem::Malformed)?;
        let connection = self.lock().get(&key.id).cloned().ok_or(KeyProblem::Unknown)?;
        let state = connection.lock();
        if state.closed || !key.matches(&state.secret) {
            return Err(KeyProblem::Unknown);
        }
        drop(state);
        Ok(connection)
    }

    /// Stops a live connection's transport without any protocol goodbye, as
    /// a network failure would; the connection stays resumable. Returns
    /// whether there was a live transport.
    pub fn drop_transport(&self, id: &str) -> bool {
        let Some(connection) = self.lock().get(id).cloned() else { return false };
        let state = connection.lock();
        match &state.transport {
            Some(transport) => {
                let _ = transport.tx.send(Outbound::Close);
                transport.stop.notify_one();
                true
            }
            None => false,
        }
    }

    /// (live, suspended) connections.
    pub fn counts(&self) -> (usize, usize) {
        let all: Vec<Arc<Connection>> = self.lock().values().cloned().collect();
        all.iter().fold((0, 0), |(live, suspended), c| {
            if c.lock().transport.is_some() {
                (live + 1, suspended)
            } else {
                (live, suspended + 1)
            }
        })
    }
}
