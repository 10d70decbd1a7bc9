//! One channel's state: its bounded, time-limited history, deduplication
//! window, rate window, presence set and attachments. All of it is changed
//! under the registry's lock, so a serial is assigned, stored and queued to
//! every subscriber in one step: subscribers see publish order, and an
//! ATTACHED (with any backlog) is queued before the first live message.
//! Serials come from one counter shared by every channel, so they never
//! repeat, even after an idle channel is freed and used again.

mod attach;
mod subscribers;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use attach::{Attach, Start};
pub use subscribers::Subscriber;

use crate::error::AblyError;
use crate::history::{HistoryQuery, Stored};
use crate::idempotency::{IdempotencyWindow, Recorded};
use crate::message::{presence_action, Message, PresenceMessage};
use crate::message_id::random_base;
use crate::presence::PresenceSet;
use crate::protocol::{action, flag, ProtocolMessage};
use crate::publish::Prepared;
use crate::rate_limit::RateWindow;
use subscribers::Subscribers;

#[derive(Debug, Clone, Copy)]
pub struct ChannelLimits {
    pub history: usize,
    /// How long a message stays in history.
    pub history_ttl: Duration,
    pub rate_per_second: Option<u32>,
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

pub fn serial_of(seq: u64) -> String {
    format!("{seq:016}")
}

/// The position a channelSerial names, if it is one of ours.
pub fn parse_serial(serial: &str) -> Option<u64> {
    serial.parse().ok()
}

/// A stored message and what delivery needs to know about it later.
#[derive(Debug)]
struct Entry {
    stored: Stored<Message>,
    /// Server time of storage; retention counts from here, not from the
    /// (client-settable) message timestamp.
    stored_at: Instant,
    /// The realtime connection that published it, for `echo=false` on replay.
    publisher: Option<String>,
}

pub struct Channel {
    name: String,
    serials: Arc<AtomicU64>,
    /// Serial of the last message stored, or of the channel's creation.
    position: u64,
    /// The highest serial dropped from history: a client that saw less
    /// than this cannot be brought up to date.
    trimmed_upto: u64,
    history: VecDeque<Entry>,
    dedupe: IdempotencyWindow,
    rate: RateWindow,
    presence: PresenceSet,
    subscribers: Subscribers,
    limits: ChannelLimits,
    /// Whether the registry's sweeper has this channel queued.
    pub(crate) sweep_queued: bool,
}

impl Channel {
    pub fn new(name: &str, limits: ChannelLimits, serials: Arc<AtomicU64>) -> Self {
        let position = serials.load(Ordering::Relaxed);
        Self {
            name: name.to_string(),
            serials,
            position,
            trimmed_upto: position,
            history: VecDeque::new(),
            dedupe: IdempotencyWindow::default(),
            rate: RateWindow::new(Instant::now()),
            presence: PresenceSet::default(),
            subscribers: Subscribers::default(),
            limits,
            sweep_queued: false,
        }
    }

    pub fn channel_serial(&self) -> String {
        serial_of(self.position)
    }

    /// A frame about this channel at its current position, from `origin`:
    /// the shape MESSAGE and PRESENCE deliveries share.
    fn event(&self, action: i64, origin: &Origin, now_ms: i64) -> ProtocolMessage {
        ProtocolMessage {
            id: origin.protocol_id.clone(),
            connection_id: origin.connection_id.clone(),
            timestamp: Some(now_ms),
            ..ProtocolMessage::for_channel(action, &self.name, Some(self.channel_serial()))
        }
    }

    /// Drops messages older than the retention time, and forgotten ids.
    pub fn expire(&mut self, now: Instant) {
        while let Some(entry) = self.history.front() {
            if now.duration_since(entry.stored_at) < self.limits.history_ttl {
                break;
            }
            self.trimmed_upto = entry.stored.seq;
            self.history.pop_front();
        }
        self.dedupe.expire(now);
    }

    /// Nobody attached and nobody present: only time can free the channel.
    pub fn unattended(&self) -> bool {
        self.subscribers.is_empty() && self.presence.is_empty()
    }

    /// Holds nothing a client could observe: safe to free.
    pub fn idle(&self) -> bool {
        self.unattended() && self.history.is_empty() && self.dedupe.is_empty()
    }

    /// When the next message or idempotency key expires.
    pub fn next_expiry(&self) -> Option<Instant> {
        let history = self.history.front().map(|e| e.stored_at + self.limits.history_ttl);
        match (history, self.dedupe.next_expiry()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn publish(&mut self, prepared: Prepared, origin: &Origin, now_ms: i64) -> Result<Published, AblyError> {
        let now = Instant::now();
        self.expire(now);
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
        if self.history.capacity() == 0 {
            // Most channels hold a message or two: start exact, not at VecDeque's minimum of four.
            self.history.reserve_exact(prepared.messages.len());
        }
        let mut delivered = Vec::with_capacity(prepared.messages.len());
        let mut serials = Vec::with_capacity(prepared.messages.len());
        for mut m in prepared.messages {
            let seq = self.serials.fetch_add(1, Ordering::Relaxed) + 1;
            self.position = seq;
            let serial = serial_of(seq);
            m.serial = Some(serial.clone());
            m.timestamp = Some(m.timestamp.unwrap_or(now_ms));
            m.action = Some(0);
            if m.connection_id.is_none() {
                m.connection_id = origin.connection_id.clone();
            }
            serials.push(Some(serial));
            self.history.push_back(Entry {
                stored: Stored { seq, timestamp: m.timestamp.unwrap_or(now_ms), item: m.clone() },
                stored_at: now,
                publisher: origin.connection_id.clone(),
            });
            delivered.push(m);
        }
        while self.history.len() > self.limits.history {
            if let Some(dropped) = self.history.pop_front() {
                self.trimmed_upto = dropped.stored.seq;
            }
        }
        if let Some(key) = &key {
            self.dedupe.record(key, Recorded { serials: serials.clone() }, now);
        }
        let pm = ProtocolMessage { messages: Some(delivered), ..self.event(action::MESSAGE, origin, now_ms) };
        let publisher = origin.connection_id.as_deref();
        self.subscribers.fanout(pm, &self.name, |conn, sub| {
            sub.modes & flag::SUBSCRIBE != 0 && (sub.echo || Some(conn) != publisher)
        });
        Ok(Published { serials, duplicate: false })
    }

    /// A complete presence SYNC in one message (empty cursor ends the sync).
    pub fn sync_message(&self, name: &str) -> ProtocolMessage {
        let sync_id = random_base().replace(['+', '/', '_'], "-");
        ProtocolMessage {
            presence: Some(self.presence.members()),
            ..ProtocolMessage::for_channel(action::SYNC, name, Some(format!("{sync_id}:")))
        }
    }

    /// Applies presence events (carrying clientId, connectionId, timestamp
    /// and the id the client gave, if any) and broadcasts them to presence
    /// subscribers and to the publishing connection itself (RTP17a). An
    /// event that re-states a member under the id that made it, as ably-js
    /// re-enters after a resume, changes nothing and is not broadcast.
    /// Broadcast events get ids `<id_base>:<index>`.
    pub fn presence(&mut self, events: Vec<PresenceMessage>, id_base: &str, origin: &Origin, now_ms: i64) {
        let mut applied = Vec::with_capacity(events.len());
        for (i, mut e) in events.into_iter().enumerate() {
            let restated = e.action != Some(presence_action::LEAVE)
                && e.id.as_deref().is_some_and(|id| {
                    let conn = e.connection_id.as_deref().unwrap_or_default();
                    self.presence.is_current(conn, e.client_id.as_deref().unwrap_or_default(), id)
                });
            if restated {
                continue;
            }
            e.id = Some(format!("{id_base}:{i}"));
            self.presence.apply(&mut e);
            applied.push(e);
        }
        if applied.is_empty() {
            return;
        }
        let pm = ProtocolMessage { presence: Some(applied), ..self.event(action::PRESENCE, origin, now_ms) };
        let publisher = origin.connection_id.as_deref();
        self.subscribers
            .fanout(pm, &self.name, |conn, sub| sub.modes & flag::PRESENCE_SUBSCRIBE != 0 || Some(conn) == publisher);
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
        let pm = ProtocolMessage { presence: Some(events), ..self.event(action::PRESENCE, &Origin::default(), now_ms) };
        self.subscribers
            .fanout(pm, &self.name, |conn, sub| conn != connection_id && sub.modes & flag::PRESENCE_SUBSCRIBE != 0);
    }

    /// One page of the messages still retained.
    pub fn history(&self, query: &HistoryQuery) -> (Vec<Message>, Option<u64>) {
        let now = Instant::now();
        let retained = self
            .history
            .iter()
            .filter(|e| now.duration_since(e.stored_at) < self.limits.history_ttl)
            .map(|e| &e.stored);
        let (page, next) = query.page(retained);
        (page.into_iter().cloned().collect(), next)
    }

    pub fn presence_members(&self) -> Vec<PresenceMessage> {
        self.presence.members()
    }
}
