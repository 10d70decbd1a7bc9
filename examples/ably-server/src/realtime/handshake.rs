//! Opening a connection (§B7, §B14): authenticate, then either take over the
//! connection a `resume`/`recover` key names — same connectionId, a fresh
//! key, no error, the old transport (if the server still thought it live)
//! stopped — or start a new connection. A key that opens nothing still gets
//! a connection: a new one, with the reason in CONNECTED's error (80018 for a
//! malformed key, 80011 for other credentials, 80008 for an unknown or
//! expired one), which ably-js treats as a failed resume.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::Notify;

use super::lifecycle;
use super::session::Session;
use super::ConnectParams;
use crate::app::{now_ms, App};
use crate::auth::{Principal, Surface};
use crate::connection::{random_text, AckLog, Connection, ConnectionState, KeyProblem, Transport};
use crate::error::AblyError;
use crate::outbound::Outbound;

/// Turns the connect parameters (or a new token, on AUTH) into a Principal.
pub fn authenticate(app: &App, params: &ConnectParams) -> Result<Principal, AblyError> {
    let auth = app.authenticator();
    let principal = match (params.access_token.as_deref(), params.key.as_deref()) {
        (Some(token), _) => auth.with_token(token, now_ms(), Surface::Realtime)?,
        (None, Some(_)) if app.settings.require_tls_for_basic => return Err(AblyError::basic_auth_needs_tls()),
        (None, Some(key)) => auth.with_key(key)?,
        (None, None) => return Err(AblyError::invalid_credentials("Invalid credentials: no key or token given")),
    };
    principal.with_requested_client_id(params.client_id.as_deref())
}

/// Authenticates and sends CONNECTED; `Err` only for bad credentials.
pub fn open(
    app: &Arc<App>,
    params: &ConnectParams,
    tx: UnboundedSender<Outbound>,
    stop: Arc<Notify>,
) -> Result<Session, AblyError> {
    let principal = authenticate(app, params)?;
    let transport = Transport { tx, stop };
    let Some(key) = &params.resume else {
        return Ok(fresh(app, principal, params, transport, None));
    };
    Ok(match resume(app, key, principal.clone(), params, transport) {
        Ok(session) => session,
        Err((reason, transport)) => fresh(app, principal, params, transport, Some(reason)),
    })
}

fn fresh(
    app: &Arc<App>,
    principal: Principal,
    params: &ConnectParams,
    transport: Transport,
    resume_error: Option<AblyError>,
) -> Session {
    let id = random_text(9);
    let state = ConnectionState {
        secret: random_text(12),
        renew_at: None,
        principal,
        requested_client_id: params.client_id.clone(),
        echo: params.echo,
        attachments: BTreeMap::new(),
        present_in: BTreeSet::new(),
        acks: AckLog::default(),
        transport: Some(transport),
        epoch: 0,
        closed: false,
        reauth_requested: false,
    };
    let connection = Connection::new(id, state);
    app.connections.insert(connection.clone());
    let session = Session::new(app.clone(), connection, 0);
    tracing::debug!(connection_id = %session.id(), "connection opened");
    session.connected(resume_error);
    session
}

/// Takes over the connection `key` names. On failure the transport is
/// handed back with the reason.
fn resume(
    app: &Arc<App>,
    key: &str,
    principal: Principal,
    params: &ConnectParams,
    transport: Transport,
) -> Result<Session, (AblyError, Transport)> {
    let connection = match app.connections.find(key) {
        Ok(c) => c,
        Err(KeyProblem::Malformed) => {
            return Err((AblyError::new(80018, 400, "Unable to recover connection: invalid connection key"), transport))
        }
        Err(KeyProblem::Unknown) => return Err((AblyError::connection_resume_failed(), transport)),
    };
    if connection.key_name != principal.key_name || connection.client_id != principal.client_id {
        let e = AblyError::new(80011, 401, "Unable to recover connection: the credentials differ from the connection's");
        return Err((e, transport));
    }
    let mut state = connection.lock();
    if state.closed || !crate::connection::ConnectionKey::parse(key).is_some_and(|k| k.matches(&state.secret)) {
        return Err((AblyError::connection_resume_failed(), transport));
    }
    if let Some(old) = state.transport.take() {
        // The server had not noticed the old socket die (or a second client
        // recovers a live connection): that socket stops, its attachments
        // wait for the new transport's ATTACHes.
        let _ = old.tx.send(Outbound::Close);
        old.stop.notify_one();
        lifecycle::suspend_attachments(app, &connection.id, &state);
    }
    state.epoch += 1;
    state.secret = random_text(12);
    state.principal = principal;
    state.renew_at = None;
    state.reauth_requested = false;
    state.requested_client_id = params.client_id.clone();
    state.echo = params.echo;
    state.transport = Some(transport);
    let epoch = state.epoch;
    drop(state);
    let session = Session::new(app.clone(), connection, epoch);
    tracing::debug!(connection_id = %session.id(), "connection resumed");
    session.connected(None);
    Ok(session)
}
