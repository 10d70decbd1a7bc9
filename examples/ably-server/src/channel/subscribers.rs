//! The realtime attachments of one channel and fan-out to them. An attachment
//! is keyed by connection and by the name the client attached with (a channel
//! may be attached plainly and as `[?rewind=1]name` at once), and every frame
//! it receives carries that name, since ably-js routes frames by name. An
//! attachment whose connection dropped stays, suspended, for as long as the
//! connection may resume; it holds the channel but receives nothing.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc::UnboundedSender;

use crate::outbound::{Frame, Outbound};
use crate::protocol::ProtocolMessage;

/// An attached realtime connection.
#[derive(Debug, Clone)]
pub struct Subscriber {
    /// The connection's queue; `None` while the connection is suspended.
    pub tx: Option<UnboundedSender<Outbound>>,
    /// Channel modes granted on ATTACHED (`flag::SUBSCRIBE`, …).
    pub modes: i64,
    /// `false` when the connection asked for `echo=false`.
    pub echo: bool,
}

impl Subscriber {
    /// Queues `frame`; `false` if the connection is gone or suspended.
    pub fn send(&self, frame: Arc<Frame>) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.send(Outbound::Frame(frame)).is_ok())
    }
}

/// (connectionId, name the client attached with).
pub type SubscriberKey = (String, String);

#[derive(Debug, Default)]
pub struct Subscribers {
    by_key: HashMap<SubscriberKey, Subscriber>,
}

impl Subscribers {
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    pub fn get(&self, connection_id: &str, name: &str) -> Option<&Subscriber> {
        self.by_key.get(&(connection_id.to_string(), name.to_string()))
    }

    pub fn insert(&mut self, connection_id: &str, name: &str, sub: Subscriber) {
        self.by_key.insert((connection_id.to_string(), name.to_string()), sub);
    }

    pub fn remove(&mut self, connection_id: &str, name: &str) {
        self.by_key.remove(&(connection_id.to_string(), name.to_string()));
    }

    /// Does the connection still have any attachment here?
    pub fn has_connection(&self, connection_id: &str) -> bool {
        self.by_key.keys().any(|(c, _)| c == connection_id)
    }

    /// Stops delivery to one attachment until the connection re-attaches it.
    pub fn suspend(&mut self, connection_id: &str, name: &str) {
        if let Some(sub) = self.by_key.get_mut(&(connection_id.to_string(), name.to_string())) {
            sub.tx = None;
        }
    }

    /// Queues `pm` (written for `canonical`, the channel's own name) to every
    /// attachment `wants` picks, renamed for attachments made under another
    /// name. Each distinct name is built and encoded once.
    pub fn fanout(&self, pm: ProtocolMessage, canonical: &str, wants: impl Fn(&str, &Subscriber) -> bool) {
        let mut pm = Some(pm);
        let mut plain: Option<Arc<Frame>> = None;
        let mut renamed: HashMap<&str, Arc<Frame>> = HashMap::new();
        for ((conn, name), sub) in &self.by_key {
            if sub.tx.is_none() || !wants(conn, sub) {
                continue;
            }
            let plain = plain.get_or_insert_with(|| Frame::new(pm.take().unwrap_or_default()));
            let frame = if name == canonical {
                plain.clone()
            } else {
                renamed
                    .entry(name.as_str())
                    .or_insert_with(|| Frame::new(ProtocolMessage { channel: Some(name.clone()), ..plain.message.clone() }))
                    .clone()
            };
            sub.send(frame);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::action;
    use tokio::sync::mpsc;

    #[test]
    fn fanout_renames_for_qualified_attachments_and_skips_suspended_ones() {
        let (tx1, mut rx1) = mpsc::unbounded_channel();
        let (tx2, mut rx2) = mpsc::unbounded_channel();
        let mut subs = Subscribers::default();
        subs.insert("c1", "room", Subscriber { tx: Some(tx1.clone()), modes: 0, echo: true });
        subs.insert("c1", "[?rewind=1]room", Subscriber { tx: Some(tx1), modes: 0, echo: true });
        subs.insert("c2", "room", Subscriber { tx: Some(tx2), modes: 0, echo: true });
        subs.suspend("c2", "room");
        let pm = ProtocolMessage::for_channel(action::MESSAGE, "room", None);
        subs.fanout(pm, "room", |_, _| true);
        let mut names = Vec::new();
        while let Ok(Outbound::Frame(f)) = rx1.try_recv() {
            names.push(f.message.channel.clone().unwrap());
        }
        names.sort();
        assert_eq!(names, ["[?rewind=1]room", "room"]);
        assert!(rx2.try_recv().is_err(), "a suspended attachment receives nothing");
        assert!(subs.has_connection("c2"));
    }
}
