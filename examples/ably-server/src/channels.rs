//! The registry of channels. One lock guards all of them: operations are short
//! and never await while holding it, and a single lock keeps cross-channel
//! work (a connection leaving every channel) simple for a local server.
//! A channel nobody is attached to or present on is queued for the sweeper
//! (at most once), which frees it when its last message and idempotency key
//! have expired: memory follows the channels in use, not every name ever seen.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::channel::{Channel, ChannelLimits};

#[derive(Default)]
struct Registry {
    channels: HashMap<String, Channel>,
    /// Unattended channels by when they may next be freeable.
    due: BinaryHeap<Reverse<(Instant, String)>>,
}

impl Registry {
    /// Gives back table space after a wave of channels went: a hash map
    /// keeps its largest size otherwise, with every channel's slot in it.
    fn shrink(&mut self) {
        if self.channels.capacity() > 1024 && self.channels.len() < self.channels.capacity() / 4 {
            self.channels.shrink_to(self.channels.len() * 2);
        }
        if self.due.capacity() > 1024 && self.due.len() < self.due.capacity() / 4 {
            self.due.shrink_to(self.due.len() * 2);
        }
    }

    /// Queues `name` for the sweeper if nobody holds it and it is not queued.
    fn schedule(&mut self, name: &str, now: Instant) {
        let Some(channel) = self.channels.get_mut(name) else { return };
        if channel.sweep_queued || !channel.unattended() {
            return;
        }
        channel.sweep_queued = true;
        let due = channel.next_expiry().unwrap_or(now);
        self.due.push(Reverse((due, name.to_string())));
    }
}

pub struct Channels {
    registry: Mutex<Registry>,
    limits: ChannelLimits,
    /// The last serial handed out, shared by every channel.
    serials: Arc<AtomicU64>,
}

impl Channels {
    pub fn new(limits: ChannelLimits) -> Self {
        Self { registry: Mutex::default(), limits, serials: Arc::new(AtomicU64::new(0)) }
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the named channel, creating it if needed.
    pub fn with<R>(&self, name: &str, f: impl FnOnce(&mut Channel) -> R) -> R {
        let mut registry = self.lock();
        let channel = registry
            .channels
            .entry(name.to_string())
            .or_insert_with(|| Channel::new(name, self.limits, self.serials.clone()));
        let result = f(channel);
        registry.schedule(name, Instant::now());
        result
    }

    /// Runs `f` on the named channel if it exists, without creating it.
    pub fn read<R>(&self, name: &str, f: impl FnOnce(Option<&Channel>) -> R) -> R {
        f(self.lock().channels.get(name))
    }

    /// Runs `f` on each named channel that exists.
    pub fn each(&self, names: &[String], mut f: impl FnMut(&mut Channel)) {
        let mut registry = self.lock();
        let now = Instant::now();
        for name in names {
            if let Some(channel) = registry.channels.get_mut(name) {
                f(channel);
                registry.schedule(name, now);
            }
        }
    }

    /// Frees the queued channels that became idle by `now`; re-queues the
    /// ones still holding messages. Returns how many were freed.
    pub fn sweep(&self, now: Instant) -> usize {
        let mut registry = self.lock();
        let mut freed = 0;
        while registry.due.peek().is_some_and(|Reverse((due, _))| *due <= now) {
            let Some(Reverse((_, name))) = registry.due.pop() else { break };
            let Some(channel) = registry.channels.get_mut(&name) else { continue };
            channel.sweep_queued = false;
            channel.expire(now);
            if channel.idle() {
                registry.channels.remove(&name);
                freed += 1;
            } else {
                registry.schedule(&name, now);
            }
        }
        if freed > 0 {
            registry.shrink();
        }
        freed
    }

    pub fn len(&self) -> usize {
        self.lock().channels.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::Origin;
    use crate::message::Message;
    use crate::message_id::IdPlan;
    use crate::publish::Prepared;
    use std::time::Duration;

    fn channels(ttl_ms: u64) -> Channels {
        Channels::new(ChannelLimits {
            history: 100,
            history_ttl: Duration::from_millis(ttl_ms),
            rate_per_second: None,
        })
    }

    fn publish(c: &Channels, name: &str) -> String {
        let prepared = Prepared {
            messages: vec![Message { id: Some("x:0".into()), ..Default::default() }],
            ids: IdPlan::Generated { base: "x".into() },
        };
        c.with(name, |ch| ch.publish(prepared, &Origin::default(), 0)).unwrap().serials[0].clone().unwrap()
    }

    #[test]
    fn unused_channels_are_freed_once_their_messages_expire() {
        let c = channels(50);
        c.read("never", |ch| assert!(ch.is_none()));
        c.with("touched", |_| ());
        publish(&c, "busy");
        assert_eq!(c.len(), 2);
        assert_eq!(c.sweep(Instant::now()), 1, "an empty channel goes at once");
        assert_eq!(c.len(), 1);
        assert_eq!(c.sweep(Instant::now() + Duration::from_millis(60)), 1, "then the one whose message expired");
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn serials_never_repeat_across_a_channel_being_freed() {
        let c = channels(1);
        let first = publish(&c, "a");
        c.sweep(Instant::now() + Duration::from_millis(5));
        assert_eq!(c.len(), 0);
        let second = publish(&c, "a");
        assert!(second > first, "{second} > {first}");
    }
}
