//! One channel's state: its message sequence, bounded history, deduplication
//! window, rate window, presence set and attached connections. All of it is
//! changed under the registry's lock, so a serial is assigned, stored and
//! queued to every subscriber in one step: subscribers see publish order, and
//! a connection's ATTACHED is queued before the first message it receives.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc::UnboundedSender;

use crate::error::AblyError;
use crate::history::{HistoryQuery, Stored};
use crate::idempotency::{IdempotencyWindow, Recorded};
use crate::message::{presence_action, Message, PresenceMessage};
use crate::message_id::random_base;
use crate::presence::PresenceSet;
use crate::publish::Prepared;
use crate::rate_limit::RateWindow;
use crate::realtime::protocol::{action, flag, Outbound, ProtocolMessage};

#[derive(Debug, Clone, Copy)]
pub struct ChannelLimits {
    pub history: usize,
    pub rate_per_second: Option<u32>,
}

/// An attached realtime connection.
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub tx: UnboundedSender<Outbound>,
    /// Channel modes granted on ATTACHED (`flag::SUBSCRIBE`, …).
    pub modes: i64,
    /// `false` when the connection asked for `echo=false`.
    pub echo: bool,
}

/// Who published, for the fields set on delivery and for `echo=false`.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub connection_id: Option<String>,
    /// `<connectionId>:<msgSerial>` of a realtime publish.
    pub protocol_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub serials: Vec<Option<String>>,
    /// Seen before within the idempotency window: nothing was stored or sent.
    pub duplicate: bool,
}

fn serial_of(seq: u64) -> String {
    format!("{seq:016}")
}

pub struct Channel {
    name: String,
    /// Sequence of the last stored message; also the channelSerial.
    last_seq: u64,
    history: VecDeque<Stored<Message>>,
    dedupe: IdempotencyWindow,
    rate: RateWindow,
    presence: PresenceSet,
    subscribers: HashMap<String, Subscriber>,
    limits: ChannelLimits,
}

impl Channel {
    pub fn new(name: &str, limits: ChannelLimits) -> Self {
        Self {
            name: name.to_string(),
            last_seq: 0,
            history: VecDeque::new(),
            dedupe: IdempotencyWindow::default(),
            rate: RateWindow::new(Instant::now()),
            presence: PresenceSet::default(),
            subscribers: HashMap::new(),
            limits,
        }
    }

    pub fn channel_serial(&self) -> String {
        serial_of(self.last_seq)
    }

    /// Queues `pm` to every subscriber `wants` picks; forgets closed ones.
    fn fanout(&mut self, pm: ProtocolMessage, wants: impl Fn(&str, &Subscriber) -> bool) {
        let pm = Arc::new(pm);
        let mut dead = Vec::new();
        for (conn, sub) in &self.subscribers {
            if wants(conn, sub) && sub.tx.send(Outbound::Frame(pm.clone())).is_err() {
                dead.push(conn.clone());
            }
        }
        for conn in dead {
            self.subscribers.remove(&conn);
        }
    }

    pub fn publish(&mut self, prepared: Prepared, origin: &Origin, now_ms: i64) -> Result<Published, AblyError> {
        let now = Instant::now();
        let key = prepared.ids.dedupe_key().map(str::to_string);
        if let Some(key) = &key {
            if let Some(recorded) = self.dedupe.lookup(key, now) {
                return Ok(Published { serials: recorded.serials, duplicate: true });
            }
        }
        if let Some(limit) = self.limits.rate_per_second {
            let n = u32::try_from(prepared.messages.len()).unwrap_or(u32::MAX);
            if !self.rate.admit(n, limit, now) {
                return Err(AblyError::channel_rate_exceeded(limit));
            }
        }
        let mut delivered = Vec::with_capacity(prepared.messages.len());
        let mut serials = Vec::with_capacity(prepared.messages.len());
        for mut m in prepared.messages {
            self.last_seq += 1;
            let serial = serial_of(self.last_seq);
            m.serial = Some(serial.clone());
            m.timestamp = Some(m.timestamp.unwrap_or(now_ms));
            m.action = Some(0);
            if m.connection_id.is_none() {
                m.connection_id = origin.connection_id.clone();
            }
            serials.push(Some(serial));
            self.history.push_back(Stored { seq: self.last_seq, timestamp: m.timestamp.unwrap_or(now_ms), item: m.clone() });
            delivered.push(m);
        }
        while self.history.len() > self.limits.history {
            self.history.pop_front();
        }
        if let Some(key) = &key {
            self.dedupe.record(key, Recorded { serials: serials.clone() }, now);
        }
        let pm = ProtocolMessage {
            channel: Some(self.name.clone()),
            channel_serial: Some(self.channel_serial()),
            id: origin.protocol_id.clone(),
            connection_id: origin.connection_id.clone(),
            timestamp: Some(now_ms),
            messages: Some(delivered),
            ..ProtocolMessage::new(action::MESSAGE)
        };
        let publisher = origin.connection_id.as_deref();
        self.fanout(pm, |conn, sub| {
            sub.modes & flag::SUBSCRIBE != 0 && (sub.echo || Some(conn) != publisher)
        });
        Ok(Published { serials, duplicate: false })
    }

    /// Registers `sub` and queues ATTACHED (and a presence SYNC when there are
    /// members the connection may see) to it. `resumed` marks a re-attach of a
    /// channel this connection already had attached.
    pub fn attach(&mut self, connection_id: &str, sub: Subscriber, resumed: bool) {
        let sync = sub.modes & flag::PRESENCE_SUBSCRIBE != 0 && !self.presence.is_empty();
        let mut flags = sub.modes;
        if sync {
            flags |= flag::HAS_PRESENCE;
        }
        if resumed {
            flags |= flag::RESUMED;
        }
        let attached = ProtocolMessage {
            channel: Some(self.name.clone()),
            channel_serial: Some(self.channel_serial()),
            flags: Some(flags),
            ..ProtocolMessage::new(action::ATTACHED)
        };
        let _ = sub.tx.send(Outbound::Frame(Arc::new(attached)));
        if sync {
            let _ = sub.tx.send(Outbound::Frame(Arc::new(self.sync_message())));
        }
        self.subscribers.insert(connection_id.to_string(), sub);
    }

    /// A complete presence SYNC in one message (empty cursor ends the sync).
    pub fn sync_message(&self) -> ProtocolMessage {
        ProtocolMessage {
            channel: Some(self.name.clone()),
            channel_serial: Some(format!("{}:", random_base().replace(['+', '/', '_'], "-"))),
            presence: Some(self.presence.members()),
            ..ProtocolMessage::new(action::SYNC)
        }
    }

    /// Detaches a connection: its presence members leave.
    pub fn detach(&mut self, connection_id: &str, now_ms: i64) {
        self.leave_connection(connection_id, now_ms);
        self.subscribers.remove(connection_id);
    }

    /// Applies presence events (already carrying ids, clientId, connectionId
    /// and timestamp) and broadcasts them to presence subscribers and to the
    /// publishing connection itself (RTP17a).
    pub fn presence(&mut self, mut events: Vec<PresenceMessage>, origin: &Origin, now_ms: i64) {
        for e in &mut events {
            self.presence.apply(e);
        }
        let pm = ProtocolMessage {
            channel: Some(self.name.clone()),
            channel_serial: Some(self.channel_serial()),
            id: origin.protocol_id.clone(),
            connection_id: origin.connection_id.clone(),
            timestamp: Some(now_ms),
            presence: Some(events),
            ..ProtocolMessage::new(action::PRESENCE)
        };
        let publisher = origin.connection_id.as_deref();
        self.fanout(pm, |conn, sub| sub.modes & flag::PRESENCE_SUBSCRIBE != 0 || Some(conn) == publisher);
    }

    /// Synthesised LEAVEs for every member of a connection that went away.
    /// Their ids do not start with the member's connectionId (§B6), so clients
    /// compare them by timestamp.
    pub fn leave_connection(&mut self, connection_id: &str, now_ms: i64) {
        let gone = self.presence.remove_connection(connection_id);
        if gone.is_empty() {
            return;
        }
        let base = random_base();
        let events: Vec<PresenceMessage> = gone
            .into_iter()
            .enumerate()
            .map(|(i, mut m)| {
                m.action = Some(presence_action::LEAVE);
                m.id = Some(format!("{base}:0:{i}"));
                m.timestamp = Some(now_ms);
                m
            })
            .collect();
        let pm = ProtocolMessage {
            channel: Some(self.name.clone()),
            channel_serial: Some(self.channel_serial()),
            timestamp: Some(now_ms),
            presence: Some(events),
            ..ProtocolMessage::new(action::PRESENCE)
        };
        self.fanout(pm, |conn, sub| conn != connection_id && sub.modes & flag::PRESENCE_SUBSCRIBE != 0);
    }

    pub fn history(&self, query: &HistoryQuery) -> (Vec<Message>, Option<u64>) {
        let (page, next) = query.page(self.history.iter());
        (page.into_iter().cloned().collect(), next)
    }

    pub fn presence_members(&self) -> Vec<PresenceMessage> {
        self.presence.members()
    }
}
