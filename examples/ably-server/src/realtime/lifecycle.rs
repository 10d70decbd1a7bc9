//! What happens to a connection when a transport ends (§B11, §B14):
//!
//! - a CLOSE (or a fatal error) discards it at once: its attachments end and
//!   its presence members leave;
//! - a lost transport suspends it: attachments stay but receive nothing, the
//!   presence members stay for the leave delay (15 s) and then leave with
//!   synthesised LEAVEs, and the rest is discarded when the connection-state
//!   window (2 min) ends — unless the connection resumes first.
//!
//! Timers act only if the connection's epoch is the one they were set for,
//! so a resume (which bumps the epoch) cancels them.

use std::sync::Arc;

use tokio::time::{sleep_until, Instant};

use crate::app::{now_ms, App};
use crate::connection::{Connection, ConnectionState};

/// Stops delivery to every attachment of a connection that lost its socket.
pub fn suspend_attachments(app: &App, id: &str, state: &ConnectionState) {
    for (name, attachment) in &state.attachments {
        app.channels.with(&attachment.channel, |c| c.suspend(id, name));
    }
}

/// Ends every attachment and presence membership of a connection.
fn release(app: &App, id: &str, state: &mut ConnectionState) {
    let now = now_ms();
    for (name, attachment) in std::mem::take(&mut state.attachments) {
        app.channels.with(&attachment.channel, |c| c.detach(id, &name, now));
    }
    let present: Vec<String> = std::mem::take(&mut state.present_in).into_iter().collect();
    app.channels.each(&present, |c| c.leave_connection(id, now));
}

/// Discards the connection if it is still at `epoch`.
pub fn close(app: &App, connection: &Connection, epoch: u64) {
    let mut state = connection.lock();
    if state.epoch != epoch || state.closed {
        return;
    }
    state.closed = true;
    state.transport = None;
    release(app, &connection.id, &mut state);
    drop(state);
    app.connections.remove(&connection.id);
    tracing::debug!(connection_id = %connection.id, "connection closed");
}

/// Keeps the connection resumable if it is still at `epoch`.
pub fn suspend(app: &Arc<App>, connection: &Arc<Connection>, epoch: u64) {
    let mut state = connection.lock();
    if state.epoch != epoch || state.closed {
        return;
    }
    state.transport = None;
    state.epoch += 1;
    suspend_attachments(app, &connection.id, &state);
    let suspended = state.epoch;
    drop(state);
    tracing::debug!(connection_id = %connection.id, "connection suspended");
    tokio::spawn(retain(app.clone(), connection.clone(), suspended));
}

/// The timers of one suspension.
async fn retain(app: Arc<App>, connection: Arc<Connection>, epoch: u64) {
    let started = Instant::now();
    let leave_at = started + app.settings.presence_leave_delay;
    let discard_at = started + app.settings.connection_state_ttl;
    if leave_at < discard_at {
        sleep_until(leave_at).await;
        let mut state = connection.lock();
        if state.epoch != epoch {
            return;
        }
        let present: Vec<String> = std::mem::take(&mut state.present_in).into_iter().collect();
        let now = now_ms();
        app.channels.each(&present, |c| c.leave_connection(&connection.id, now));
    }
    sleep_until(discard_at).await;
    let mut state = connection.lock();
    if state.epoch != epoch || state.closed {
        return;
    }
    state.closed = true;
    release(&app, &connection.id, &mut state);
    drop(state);
    app.connections.remove(&connection.id);
    tracing::debug!(connection_id = %connection.id, "connection state expired");
}
