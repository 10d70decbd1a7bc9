//! The protocol state of one realtime connection: who it is, which channels it
//! has attached, and how each client action is answered (§B7–B12). Every
//! MESSAGE and PRESENCE gets exactly one ACK or NACK carrying its msgSerial;
//! nothing else is ever acknowledged. When the session closes, its channels
//! forget it and its presence members leave.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

use super::protocol::{action, flag, modes_for, ConnectionDetails, Outbound, ProtocolMessage, PublishResult};
use super::ConnectParams;
use crate::app::{now_ms, App, Stats};
use crate::auth::{Principal, Surface};
use crate::capability::op;
use crate::channel::{Origin, Subscriber};
use crate::channel_name;
use crate::error::AblyError;
use crate::format::Format;
use crate::message::{presence_action, PresenceMessage};
use crate::message_id::random_base;
use crate::publish::{self, check_capability};

const CONNECTION_STATE_TTL_MS: u64 = 120_000;
const MAX_IDLE_INTERVAL_MS: u64 = 15_000;
const MAX_INBOUND_RATE: u32 = 50;
/// Ask for a fresh token this long before the current one expires.
const REAUTH_LEAD: Duration = Duration::from_secs(30);

pub enum Flow {
    Continue,
    Close,
}

/// The next token-lifetime event of a token-authenticated connection.
#[derive(Debug, Clone, Copy)]
pub enum AuthTimer {
    None,
    /// Send AUTH so the client renews in place.
    RequestReauth(Instant),
    /// Token expired without renewal: DISCONNECTED 40142.
    Expire(Instant),
}

pub struct Session {
    app: Arc<App>,
    id: String,
    key: String,
    principal: Principal,
    /// The `clientId` connection parameter, re-applied when the token changes.
    requested_client_id: Option<String>,
    echo: bool,
    tx: UnboundedSender<Outbound>,
    attached: BTreeSet<String>,
    /// Channels where this connection entered presence, attached or not, so
    /// its members leave when it goes away.
    present_in: BTreeSet<String>,
    reauth_requested: bool,
}

fn authenticate(app: &App, params: &ConnectParams, token: Option<&str>) -> Result<Principal, AblyError> {
    let auth = app.authenticator();
    let principal = match (token.or(params.access_token.as_deref()), params.key.as_deref()) {
        (Some(token), _) => auth.with_token(token, now_ms(), Surface::Realtime)?,
        (None, Some(_)) if app.settings.require_tls_for_basic => return Err(AblyError::basic_auth_needs_tls()),
        (None, Some(key)) => auth.with_key(key)?,
        (None, None) => return Err(AblyError::invalid_credentials("Invalid credentials: no key or token given")),
    };
    principal.with_requested_client_id(params.client_id.as_deref())
}

impl Session {
    /// Authenticates and sends CONNECTED. A `resume`/`recover` request gets a
    /// new connection with error 80008: state is not kept across connections.
    pub fn open(app: Arc<App>, params: &ConnectParams, tx: UnboundedSender<Outbound>) -> Result<Session, AblyError> {
        let principal = authenticate(&app, params, None)?;
        let id = random_base().replace(['-', '_'], "x");
        let session = Session {
            key: format!("{}!{}", random_base(), id),
            id,
            principal,
            requested_client_id: params.client_id.clone(),
            echo: params.echo,
            tx,
            attached: BTreeSet::new(),
            present_in: BTreeSet::new(),
            reauth_requested: false,
            app,
        };
        session.app.connections.lock().unwrap_or_else(|p| p.into_inner()).insert(session.id.clone(), session.tx.clone());
        let resume_error = params.resume.as_ref().map(|_| AblyError::connection_resume_failed());
        tracing::debug!(
            connection_id = %session.id,
            key = %session.principal.key_name,
            client_id = ?session.principal.client_id,
            resumed_from = ?params.resume.as_ref().map(|k| k.rsplit('!').next().unwrap_or("")),
            "connection opened"
        );
        session.send_connected(resume_error);
        Ok(session)
    }

    pub fn send(&self, pm: ProtocolMessage) {
        let _ = self.tx.send(Outbound::Frame(Arc::new(pm)));
    }

    fn send_connected(&self, error: Option<AblyError>) {
        let settings = &self.app.settings;
        self.send(ProtocolMessage {
            connection_id: Some(self.id.clone()),
            connection_details: Some(ConnectionDetails {
                connection_key: self.key.clone(),
                client_id: self.principal.client_id.clone(),
                max_message_size: settings.max_message_size,
                max_frame_size: settings.max_frame_size,
                max_inbound_rate: MAX_INBOUND_RATE,
                connection_state_ttl: CONNECTION_STATE_TTL_MS,
                max_idle_interval: MAX_IDLE_INTERVAL_MS,
                server_id: settings.server_id.clone(),
            }),
            error: error.map(|e| e.info()),
            ..ProtocolMessage::new(action::CONNECTED)
        });
    }

    /// Sends a connection-level error and closes: the client goes FAILED.
    fn fail(&self, error: &AblyError) -> Flow {
        tracing::debug!(connection_id = %self.id, code = error.code, "connection failed");
        self.send(ProtocolMessage { error: Some(error.info()), ..ProtocolMessage::new(action::ERROR) });
        let _ = self.tx.send(Outbound::Close);
        Flow::Close
    }

    pub fn auth_timer(&self) -> AuthTimer {
        let Some(expires) = self.principal.expires else { return AuthTimer::None };
        let remaining = Duration::from_millis(u64::try_from(expires - now_ms()).unwrap_or(0));
        let expiry = Instant::now() + remaining;
        if !self.reauth_requested && remaining > REAUTH_LEAD {
            AuthTimer::RequestReauth(expiry - REAUTH_LEAD)
        } else {
            AuthTimer::Expire(expiry)
        }
    }

    pub fn on_auth_timer(&mut self, timer: AuthTimer) -> Flow {
        match timer {
            AuthTimer::None => Flow::Continue,
            AuthTimer::RequestReauth(_) => {
                self.reauth_requested = true;
                self.send(ProtocolMessage::new(action::AUTH));
                Flow::Continue
            }
            AuthTimer::Expire(_) => {
                if self.principal.expires.is_some_and(|e| e > now_ms()) {
                    return Flow::Continue; // renewed meanwhile
                }
                tracing::debug!(connection_id = %self.id, "token expired; disconnecting");
                self.send(ProtocolMessage {
                    error: Some(AblyError::token_expired().info()),
                    ..ProtocolMessage::new(action::DISCONNECTED)
                });
                let _ = self.tx.send(Outbound::Close);
                Flow::Close
            }
        }
    }

    pub fn handle_frame(&mut self, format: Format, bytes: &[u8]) -> Flow {
        let pm: ProtocolMessage = match format.decode(bytes) {
            Ok(pm) => pm,
            Err(e) => {
                tracing::debug!(connection_id = %self.id, error = %e, "ignoring undecodable frame");
                return Flow::Continue;
            }
        };
        match pm.action {
            Some(action::HEARTBEAT) => {
                self.send(ProtocolMessage { id: pm.id, ..ProtocolMessage::new(action::HEARTBEAT) });
                Flow::Continue
            }
            Some(action::CLOSE) => {
                self.send(ProtocolMessage::new(action::CLOSED));
                let _ = self.tx.send(Outbound::Close);
                Flow::Close
            }
            Some(action::DISCONNECT) => {
                let _ = self.tx.send(Outbound::Close);
                Flow::Close
            }
            Some(action::ATTACH) => {
                self.attach(pm);
                Flow::Continue
            }
            Some(action::DETACH) => {
                self.detach(pm);
                Flow::Continue
            }
            Some(action::MESSAGE) => {
                self.publish(pm);
                Flow::Continue
            }
            Some(action::PRESENCE) => {
                self.presence(pm);
                Flow::Continue
            }
            Some(action::SYNC) => {
                if let Some(channel) = pm.channel.filter(|c| self.attached.contains(c)) {
                    let sync = self.app.channels.with(&channel, |c| c.sync_message());
                    self.send(sync);
                }
                Flow::Continue
            }
            Some(action::AUTH) => self.reauthenticate(pm),
            Some(action::OBJECT) | Some(action::ANNOTATION) => {
                self.nack(pm.msg_serial, &AblyError::bad_request("This local server does not support objects or annotations"));
                Flow::Continue
            }
            _ => Flow::Continue,
        }
    }

    fn ack(&self, msg_serial: Option<i64>, res: Option<PublishResult>) {
        if let Some(serial) = msg_serial {
            self.send(ProtocolMessage {
                msg_serial: Some(serial),
                count: Some(1),
                res: res.map(|r| vec![r]),
                ..ProtocolMessage::new(action::ACK)
            });
        }
    }

    fn nack(&self, msg_serial: Option<i64>, error: &AblyError) {
        tracing::debug!(connection_id = %self.id, code = error.code, "nack");
        if let Some(serial) = msg_serial {
            self.send(ProtocolMessage {
                msg_serial: Some(serial),
                count: Some(1),
                error: Some(error.info()),
                ..ProtocolMessage::new(action::NACK)
            });
        }
    }

    fn attach(&mut self, pm: ProtocolMessage) {
        let Some(channel) = pm.channel else { return };
        if let Err(e) = channel_name::validate(&channel) {
            self.send(ProtocolMessage::channel_error(&channel, e.info()));
            return;
        }
        if !self.principal.capability.allows_any(&channel) {
            let e = AblyError::capability_denied(format!(
                "Channel denied access based on given capability (channel \"{channel}\")"
            ));
            tracing::debug!(connection_id = %self.id, channel, "attach denied");
            self.send(ProtocolMessage::channel_error(&channel, e.info()));
            return;
        }
        let mut modes = modes_for(&self.principal.capability, &channel);
        if let Some(requested) = pm.flags.map(|f| f & flag::MODES).filter(|f| *f != 0) {
            modes &= requested;
        }
        let resumed = !self.attached.insert(channel.clone());
        let sub = Subscriber { tx: self.tx.clone(), modes, echo: self.echo };
        tracing::debug!(connection_id = %self.id, channel, modes, "attach");
        self.app.channels.with(&channel, |c| c.attach(&self.id, sub, resumed));
    }

    fn detach(&mut self, pm: ProtocolMessage) {
        let Some(channel) = pm.channel else { return };
        if self.attached.remove(&channel) {
            self.app.channels.with(&channel, |c| c.detach(&self.id, now_ms()));
        }
        self.send(ProtocolMessage { channel: Some(channel), ..ProtocolMessage::new(action::DETACHED) });
    }

    fn origin(&self, msg_serial: Option<i64>) -> Origin {
        Origin {
            connection_id: Some(self.id.clone()),
            protocol_id: msg_serial.map(|s| format!("{}:{s}", self.id)),
        }
    }

    fn publish(&mut self, pm: ProtocolMessage) {
        let channel = pm.channel.unwrap_or_default();
        let origin = self.origin(pm.msg_serial);
        let result = publish::prepare(
            &channel,
            pm.messages.unwrap_or_default(),
            &self.principal,
            self.app.settings.max_message_size,
            origin.protocol_id.clone(),
        )
        .and_then(|prepared| {
            let count = prepared.messages.len();
            let published = self.app.channels.with(&channel, |c| c.publish(prepared, &origin, now_ms()))?;
            if !published.duplicate {
                Stats::bump(&self.app.stats.messages_stored, count as u64);
            }
            Ok(published)
        });
        match result {
            Ok(published) => {
                tracing::debug!(connection_id = %self.id, channel, duplicate = published.duplicate, "realtime publish");
                self.ack(pm.msg_serial, Some(PublishResult { serials: published.serials }));
            }
            Err(e) => self.nack(pm.msg_serial, &e),
        }
    }

    fn presence(&mut self, pm: ProtocolMessage) {
        let channel = pm.channel.unwrap_or_default();
        let origin = self.origin(pm.msg_serial);
        let now = now_ms();
        let events = (|| -> Result<Vec<PresenceMessage>, AblyError> {
            channel_name::validate(&channel)?;
            check_capability(&self.principal, &channel, op::PRESENCE)?;
            let events = pm.presence.unwrap_or_default();
            let size: usize = events.iter().map(PresenceMessage::size).sum();
            if size > self.app.settings.max_message_size {
                return Err(AblyError::message_too_large(size, self.app.settings.max_message_size));
            }
            let base = origin.protocol_id.clone().unwrap_or_else(|| format!("{}:{}", self.id, random_base()));
            events
                .into_iter()
                .enumerate()
                .map(|(i, mut e)| {
                    let client_id = self.principal.client_id_for(e.client_id.as_deref())?.ok_or_else(|| {
                        AblyError::invalid_client_id("Presence requires an identified client (a clientId)")
                    })?;
                    match e.action {
                        Some(presence_action::ENTER | presence_action::UPDATE | presence_action::LEAVE) => {}
                        Some(presence_action::PRESENT) => e.action = Some(presence_action::ENTER),
                        other => {
                            return Err(AblyError::bad_request(format!("Invalid presence action {other:?}")))
                        }
                    }
                    e.client_id = Some(client_id);
                    e.connection_id = Some(self.id.clone());
                    e.id = Some(format!("{base}:{i}"));
                    e.timestamp = Some(now);
                    Ok(e)
                })
                .collect()
        })();
        match events {
            Ok(events) => {
                tracing::debug!(connection_id = %self.id, channel, count = events.len(), "presence");
                self.app.channels.with(&channel, |c| c.presence(events, &origin, now));
                self.present_in.insert(channel);
                self.ack(pm.msg_serial, None);
            }
            Err(e) => self.nack(pm.msg_serial, &e),
        }
    }

    /// Client AUTH with a new token: same connection, updated details.
    fn reauthenticate(&mut self, pm: ProtocolMessage) -> Flow {
        let Some(token) = pm.auth.and_then(|a| a.access_token) else {
            return self.fail(&AblyError::invalid_credentials("AUTH without an accessToken"));
        };
        let params = ConnectParams {
            key: None,
            access_token: Some(token),
            format: Format::Json,
            client_id: self.requested_client_id.clone(),
            echo: self.echo,
            resume: None,
        };
        match authenticate(&self.app, &params, None) {
            Ok(p) if p.client_id != self.principal.client_id => self.fail(&AblyError::incompatible_credentials(
                "The new token's clientId does not match the connection's clientId",
            )),
            Ok(p) => {
                tracing::debug!(connection_id = %self.id, "reauthenticated");
                self.principal = p;
                self.reauth_requested = false;
                self.send_connected(None);
                Flow::Continue
            }
            Err(e) => self.fail(&e),
        }
    }

    /// Leaves every attached channel (presence members get synthesised LEAVEs).
    pub fn close(&mut self) {
        let mut channels = std::mem::take(&mut self.attached);
        channels.append(&mut self.present_in);
        let channels: Vec<String> = channels.into_iter().collect();
        let now = now_ms();
        let id = self.id.clone();
        self.app.channels.each(&channels, |c| c.detach(&id, now));
        self.app.connections.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        tracing::debug!(connection_id = %self.id, "connection closed");
    }
}
