//! The protocol side of one transport of a connection: how each client frame
//! is answered (§B7–B12). Every MESSAGE and PRESENCE gets exactly one answer,
//! ACK or NACK, carrying its msgSerial — and a frame re-sent after a resume
//! gets the same answer again instead of being applied twice. Nothing else is
//! ever acknowledged. Token lifetime is handled here too: AUTH before expiry,
//! DISCONNECTED 40142 (the connection stays resumable) at expiry.

use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

use super::handshake;
use super::lifecycle;
use super::ConnectParams;
use crate::app::{now_ms, App};
use crate::auth::Principal;
use crate::connection::{Connection, ConnectionState, Outcome};
use crate::error::AblyError;
use crate::format::Format;
use crate::outbound::Outbound;
use crate::protocol::{action, ConnectionDetails, ProtocolMessage};

const MAX_IDLE_INTERVAL_MS: u64 = 15_000;
const MAX_INBOUND_RATE: u32 = 50;
/// Ask for a fresh token at most this long before the current one expires
/// (half its remaining life for shorter tokens).
const REAUTH_LEAD: Duration = Duration::from_secs(30);

/// What the transport does after a frame or timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// The client closed the connection: its state goes.
    Close,
    /// The transport is lost (or superseded): the state stays resumable.
    Drop,
    /// A fatal error was sent: the state goes.
    Fail,
}

/// The next token-lifetime event of a token-authenticated connection.
#[derive(Debug, Clone, Copy)]
pub enum TokenTimer {
    /// Send AUTH so the client renews in place.
    Renew(Instant),
    /// Token expired without renewal: DISCONNECTED 40142.
    Expire(Instant),
}

impl TokenTimer {
    pub fn at(self) -> Instant {
        match self {
            TokenTimer::Renew(at) | TokenTimer::Expire(at) => at,
        }
    }
}

/// When to send AUTH for `principal`'s token.
fn renewal(principal: &Principal) -> Option<Instant> {
    let remaining = u64::try_from(principal.expires? - now_ms()).ok().filter(|ms| *ms > 0)?;
    let remaining = Duration::from_millis(remaining);
    Some(Instant::now() + remaining - (remaining / 2).min(REAUTH_LEAD))
}

pub struct Session {
    pub(super) app: Arc<App>,
    pub(super) connection: Arc<Connection>,
    /// The connection's epoch when this transport took it.
    epoch: u64,
    /// This transport's queue.
    pub(super) tx: UnboundedSender<Outbound>,
}

impl Session {
    pub fn new(app: Arc<App>, connection: Arc<Connection>, epoch: u64) -> Session {
        let tx = connection.lock().transport.as_ref().map(|t| t.tx.clone()).expect("a new session has a transport");
        Session { app, connection, epoch, tx }
    }

    pub fn id(&self) -> &str {
        &self.connection.id
    }

    /// The connection's state, unless another transport has taken it over.
    fn state(&self) -> Option<MutexGuard<'_, ConnectionState>> {
        let state = self.connection.lock();
        (state.epoch == self.epoch).then_some(state)
    }

    pub fn send(&self, pm: ProtocolMessage) {
        let _ = self.tx.send(Outbound::message(pm));
    }

    /// CONNECTED with the connection's details (and current key).
    pub fn connected(&self, error: Option<AblyError>) {
        if let Some(mut state) = self.state() {
            self.send_connected(&mut state, error);
        }
    }

    fn send_connected(&self, state: &mut ConnectionState, error: Option<AblyError>) {
        state.renew_at = renewal(&state.principal);
        let settings = &self.app.settings;
        self.send(ProtocolMessage {
            connection_id: Some(self.id().to_string()),
            connection_details: Some(ConnectionDetails {
                connection_key: state.key(self.id()).to_string(),
                client_id: state.principal.client_id.clone(),
                max_message_size: settings.max_message_size,
                max_frame_size: settings.max_frame_size,
                max_inbound_rate: MAX_INBOUND_RATE,
                connection_state_ttl: settings.connection_state_ttl.as_millis() as u64,
                max_idle_interval: MAX_IDLE_INTERVAL_MS,
                server_id: settings.server_id.clone(),
            }),
            error: error.map(|e| e.info()),
            ..ProtocolMessage::new(action::CONNECTED)
        });
    }

    /// Sends a connection-level error and closes: the client goes FAILED.
    fn fail(&self, error: &AblyError) -> Flow {
        tracing::debug!(connection_id = %self.id(), code = error.code, "connection failed");
        self.send(ProtocolMessage { error: Some(error.info()), ..ProtocolMessage::new(action::ERROR) });
        Flow::Fail
    }

    pub fn token_timer(&self) -> Option<TokenTimer> {
        let state = self.state()?;
        let expires = state.principal.expires?;
        match state.renew_at {
            Some(at) if !state.reauth_requested => Some(TokenTimer::Renew(at)),
            _ => {
                let left = u64::try_from(expires - now_ms()).unwrap_or(0);
                Some(TokenTimer::Expire(Instant::now() + Duration::from_millis(left)))
            }
        }
    }

    pub fn on_token_timer(&self) -> Flow {
        let Some(mut state) = self.state() else { return Flow::Drop };
        let Some(expires) = state.principal.expires else { return Flow::Continue };
        if !state.reauth_requested && state.renew_at.is_some_and(|at| at <= Instant::now()) {
            state.reauth_requested = true;
            self.send(ProtocolMessage::new(action::AUTH));
            return Flow::Continue;
        }
        if expires > now_ms() {
            return Flow::Continue; // renewed meanwhile
        }
        tracing::debug!(connection_id = %self.id(), "token expired; disconnecting");
        self.send(ProtocolMessage {
            error: Some(AblyError::token_expired().info()),
            ..ProtocolMessage::new(action::DISCONNECTED)
        });
        Flow::Drop
    }

    pub fn handle_frame(&self, format: Format, bytes: &[u8]) -> Flow {
        let pm: ProtocolMessage = match format.decode(bytes) {
            Ok(pm) => pm,
            Err(e) => {
                tracing::debug!(connection_id = %self.id(), error = %e, "ignoring undecodable frame");
                return Flow::Continue;
            }
        };
        let Some(mut state) = self.state() else { return Flow::Drop };
        match pm.action {
            Some(action::HEARTBEAT) => self.send(ProtocolMessage { id: pm.id, ..ProtocolMessage::new(action::HEARTBEAT) }),
            Some(action::CLOSE) => {
                self.send(ProtocolMessage::new(action::CLOSED));
                return Flow::Close;
            }
            Some(action::DISCONNECT) => return Flow::Drop,
            Some(action::ATTACH) => self.attach(&mut state, pm),
            Some(action::DETACH) => self.detach(&mut state, pm),
            Some(action::MESSAGE) => self.answer_once(&mut state, pm, Session::publish),
            Some(action::PRESENCE) => self.answer_once(&mut state, pm, Session::presence),
            Some(action::SYNC) => self.sync(&state, pm),
            Some(action::AUTH) => return self.reauthenticate(&mut state, pm),
            Some(action::OBJECT) | Some(action::ANNOTATION) => self.answer_once(&mut state, pm, |_, _, _| {
                Outcome::Nack(AblyError::bad_request("This local server does not support objects or annotations"))
            }),
            _ => {}
        }
        Flow::Continue
    }

    /// Answers a frame that needs an ACK or NACK: from the log if its
    /// msgSerial was answered before, else by applying it.
    fn answer_once(
        &self,
        state: &mut ConnectionState,
        pm: ProtocolMessage,
        apply: impl FnOnce(&Session, &mut ConnectionState, ProtocolMessage) -> Outcome,
    ) {
        let serial = pm.msg_serial;
        let outcome = match serial.and_then(|s| state.acks.answered(s)) {
            Some(earlier) => earlier.clone(),
            None => {
                let outcome = apply(self, state, pm);
                if let Some(s) = serial {
                    state.acks.record(s, outcome.clone());
                }
                outcome
            }
        };
        let Some(msg_serial) = serial else { return };
        self.send(match outcome {
            Outcome::Ack(res) => ProtocolMessage {
                msg_serial: Some(msg_serial),
                count: Some(1),
                res: res.map(|r| vec![r]),
                ..ProtocolMessage::new(action::ACK)
            },
            Outcome::Nack(e) => {
                tracing::debug!(connection_id = %self.id(), code = e.code, "nack");
                ProtocolMessage {
                    msg_serial: Some(msg_serial),
                    count: Some(1),
                    error: Some(e.info()),
                    ..ProtocolMessage::new(action::NACK)
                }
            }
        });
    }

    /// Client AUTH with a new token: same connection, updated details, and
    /// attachments the new capability no longer allows end.
    fn reauthenticate(&self, state: &mut ConnectionState, pm: ProtocolMessage) -> Flow {
        let Some(token) = pm.auth.and_then(|a| a.access_token) else {
            return self.fail(&AblyError::invalid_credentials("AUTH without an accessToken"));
        };
        let params = ConnectParams {
            key: None,
            access_token: Some(token),
            format: Format::Json,
            client_id: state.requested_client_id.clone(),
            echo: state.echo,
            resume: None,
        };
        match handshake::authenticate(&self.app, &params) {
            Ok(p) if p.client_id != state.principal.client_id => self.fail(&AblyError::incompatible_credentials(
                "The new token's clientId does not match the connection's clientId",
            )),
            Ok(p) => {
                tracing::debug!(connection_id = %self.id(), "reauthenticated");
                state.principal = p;
                state.reauth_requested = false;
                self.enforce_capability(state);
                self.send_connected(state, None);
                Flow::Continue
            }
            Err(e) => self.fail(&e),
        }
    }

    /// Decides what of the connection outlives this transport.
    pub fn end(&self, flow: Flow) {
        match flow {
            Flow::Close | Flow::Fail => lifecycle::close(&self.app, &self.connection, self.epoch),
            Flow::Drop => lifecycle::suspend(&self.app, &self.connection, self.epoch),
            Flow::Continue => {}
        }
        let _ = self.tx.send(Outbound::Close);
    }
}
