//! Attaching and detaching realtime connections. ATTACHED, the messages the
//! attachment must see first (a resume's missed messages or a rewind) and the
//! presence SYNC are queued under the registry lock before the attachment
//! joins the fan-out, so nothing is missed or seen twice in between.

use std::collections::BTreeMap;
use std::time::Instant;

use super::{serial_of, Channel, Entry, Subscriber};
use crate::channel_params::{Rewind, MAX_REWIND};
use crate::error::AblyError;
use crate::outbound::Frame;
use crate::protocol::{action, flag, ProtocolMessage};

/// Where an attachment starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// From now on. A re-attach of a live attachment keeps continuity.
    Now,
    /// From now on, after the messages a rewind asks for.
    Rewind(Rewind),
    /// Right after the message with this serial: the connection resumed.
    After(u64),
}

/// One ATTACH, as the connection decided it.
pub struct Attach<'a> {
    pub connection_id: &'a str,
    /// The name the client attached with (with its `[?…]` qualifier, if any).
    pub name: &'a str,
    pub subscriber: Subscriber,
    pub start: Start,
    /// Params applied, echoed in ATTACHED.
    pub params: BTreeMap<String, String>,
}

impl Channel {
    /// The messages an attachment must receive before live ones, whether
    /// continuity holds, and why not when it does not.
    fn backlog(&mut self, a: &Attach, now: Instant) -> (Vec<&Entry>, bool, Option<AblyError>) {
        self.expire(now);
        let sub = &a.subscriber;
        let visible = |e: &&Entry| sub.echo || e.publisher.as_deref() != Some(a.connection_id);
        let receives = sub.modes & flag::SUBSCRIBE != 0;
        match a.start {
            Start::Now => {
                let live = self.subscribers.get(a.connection_id, a.name).is_some_and(|s| s.tx.is_some());
                (Vec::new(), live, None)
            }
            Start::After(seq) if seq > self.position => (
                Vec::new(),
                false,
                Some(AblyError::new(80012, 400, "Channel continuity not guaranteed: unknown channelSerial")),
            ),
            Start::After(seq) if seq < self.trimmed_upto => (
                Vec::new(),
                false,
                Some(AblyError::new(80006, 400, "Channel continuity not guaranteed: missed messages have expired")),
            ),
            Start::After(seq) => {
                let missed = self.history.iter().filter(|e| e.stored.seq > seq).filter(visible);
                (if receives { missed.collect() } else { Vec::new() }, true, None)
            }
            Start::Rewind(_) if !receives => (Vec::new(), false, None),
            Start::Rewind(Rewind::Count(n)) => {
                let all: Vec<&Entry> = self.history.iter().filter(visible).collect();
                let skip = all.len().saturating_sub(n.min(MAX_REWIND));
                (all.into_iter().skip(skip).collect(), false, None)
            }
            Start::Rewind(Rewind::Since(span)) => {
                let recent: Vec<&Entry> = self
                    .history
                    .iter()
                    .filter(|e| now.duration_since(e.stored_at) <= span)
                    .filter(visible)
                    .collect();
                let skip = recent.len().saturating_sub(MAX_REWIND);
                (recent.into_iter().skip(skip).collect(), false, None)
            }
        }
    }

    /// Registers an attachment and queues ATTACHED, its backlog and a presence
    /// SYNC (when there are members it may see) to it.
    pub fn attach(&mut self, a: Attach) {
        let now = Instant::now();
        let sync = a.subscriber.modes & flag::PRESENCE_SUBSCRIBE != 0 && !self.presence.is_empty();
        let position = self.channel_serial();
        let (backlog, resumed, error) = self.backlog(&a, now);
        let mut flags = a.subscriber.modes;
        if sync {
            flags |= flag::HAS_PRESENCE;
        }
        if resumed {
            flags |= flag::RESUMED;
        }
        if !backlog.is_empty() {
            flags |= flag::HAS_BACKLOG;
        }
        let mut frames = vec![ProtocolMessage {
            flags: Some(flags),
            params: (!a.params.is_empty()).then(|| a.params.clone()),
            error: error.map(|e| e.info()),
            ..ProtocolMessage::for_channel(action::ATTACHED, a.name, Some(position))
        }];
        frames.extend(backlog.into_iter().map(|e| ProtocolMessage {
            messages: Some(vec![e.stored.item.clone()]),
            timestamp: e.stored.item.timestamp,
            ..ProtocolMessage::for_channel(action::MESSAGE, a.name, Some(serial_of(e.stored.seq)))
        }));
        if sync {
            frames.push(self.sync_message(a.name));
        }
        for pm in frames {
            a.subscriber.send(Frame::new(pm));
        }
        self.subscribers.insert(a.connection_id, a.name, a.subscriber);
    }

    /// Ends one attachment. When it was the connection's last here, the
    /// connection's presence members leave.
    pub fn detach(&mut self, connection_id: &str, name: &str, now_ms: i64) {
        self.subscribers.remove(connection_id, name);
        if !self.subscribers.has_connection(connection_id) {
            self.leave_connection(connection_id, now_ms);
        }
    }

    /// Keeps an attachment of a dropped connection without delivering to it.
    pub fn suspend(&mut self, connection_id: &str, name: &str) {
        self.subscribers.suspend(connection_id, name);
    }

    /// Narrows a live attachment to `modes` (after re-authentication) and
    /// tells the client with an ATTACHED that keeps continuity.
    pub fn restrict(&mut self, connection_id: &str, name: &str, modes: i64) {
        let Some(sub) = self.subscribers.get(connection_id, name).cloned() else { return };
        let updated = Subscriber { modes, ..sub };
        let attached = ProtocolMessage {
            flags: Some(modes | flag::RESUMED),
            ..ProtocolMessage::for_channel(action::ATTACHED, name, Some(self.channel_serial()))
        };
        updated.send(Frame::new(attached));
        self.subscribers.insert(connection_id, name, updated);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::mpsc;

    use super::*;
    use crate::channel::{ChannelLimits, Origin};
    use crate::message::Message;
    use crate::message_id::IdPlan;
    use crate::outbound::Outbound;
    use crate::publish::Prepared;

    fn channel() -> Channel {
        let limits = ChannelLimits { history: 3, history_ttl: Duration::from_secs(60), rate_per_second: None };
        let mut c = Channel::new("ch", limits, Arc::new(AtomicU64::new(0)));
        for i in 1..=5 {
            let m = Message { name: Some(format!("m{i}")), id: Some(format!("x{i}:0")), ..Default::default() };
            let prepared = Prepared { messages: vec![m], ids: IdPlan::Generated { base: format!("x{i}") } };
            c.publish(prepared, &Origin::default(), 0).unwrap();
        }
        c
    }

    /// Attaches and returns (ATTACHED flags, error code, names of the messages that followed).
    fn attach(c: &mut Channel, start: Start) -> (i64, Option<u32>, Vec<String>) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let subscriber = Subscriber { tx: Some(tx), modes: flag::SUBSCRIBE, echo: true };
        c.attach(Attach { connection_id: "conn", name: "ch", subscriber, start, params: BTreeMap::new() });
        let mut frames = Vec::new();
        while let Ok(Outbound::Frame(f)) = rx.try_recv() {
            frames.push(f.message.clone());
        }
        let attached = frames.remove(0);
        let names = frames.iter().flat_map(|f| f.messages.iter().flatten()).filter_map(|m| m.name.clone()).collect();
        (attached.flags.unwrap_or(0), attached.error.map(|e| e.code), names)
    }

    #[test]
    fn a_resume_replays_what_followed_its_serial_while_history_still_has_it() {
        let mut c = channel();
        let (flags, error, names) = attach(&mut c, Start::After(3));
        assert_eq!(flags & (flag::RESUMED | flag::HAS_BACKLOG), flag::RESUMED | flag::HAS_BACKLOG);
        assert_eq!((error, names), (None, vec!["m4".to_string(), "m5".to_string()]));
        // Messages 2..5 followed serial 1, but only 3..5 are still kept (limit 3).
        let (flags, error, names) = attach(&mut c, Start::After(1));
        assert_eq!((flags & flag::RESUMED, error, names.len()), (0, Some(80006), 0));
        let (flags, error, _) = attach(&mut c, Start::After(99));
        assert_eq!((flags & flag::RESUMED, error), (0, Some(80012)));
    }

    #[test]
    fn a_rewind_sends_the_last_messages_before_live_ones() {
        let mut c = channel();
        let (flags, error, names) = attach(&mut c, Start::Rewind(Rewind::Count(2)));
        assert_eq!((flags & (flag::RESUMED | flag::HAS_BACKLOG), error), (flag::HAS_BACKLOG, None));
        assert_eq!(names, ["m4", "m5"]);
        let (flags, _, names) = attach(&mut c, Start::Now);
        assert_eq!((flags & flag::RESUMED, names.len()), (flag::RESUMED, 0), "re-attach of a live attachment");
    }
}
