//! Lanes: the worker's in-memory view of recorded batches, one lane per
//! channel, and the rules that keep each channel in order.
//!
//! Invariants:
//! - A lane sends only its head batch, and only one request at a time, so a
//!   channel's messages reach Ably in queue order, across retries too.
//! - A batch that must change (split after Ably refused it whole, or made
//!   smaller after a 429) is replaced *in place* at the head of its lane, and
//!   the lane waits for the replacement to be recorded; nothing behind it
//!   overtakes it.
//! - A batch is re-cut into new batches (new ids) only when Ably surely does
//!   not hold it under its old ids: every attempt so far was answered with a
//!   refusal, or the first attempt without a definite answer is older than
//!   Ably's two-minute idempotency window (after which its ids would not be
//!   de-duplicated anyway). Otherwise it is re-sent whole, with its ids.
//! - New ticks wait while some channel has fewer than a batch's worth of
//!   messages queued behind its request in flight (for at most
//!   [`TICK_HOLD`]): cutting then would only queue one more small batch
//!   behind them. Rows committed meanwhile go into the next
//!   tick, so under load batches grow with the rate instead of piling up a
//!   row or two each (one request at a time per channel would then cap a
//!   channel at a row or two per round trip).
//!
//! Nothing here touches PostgreSQL: the worker turns [`Action`]s into
//! changes of `ably.ticks` and `ably.batches` (src/batch.rs) and calls back
//! with the results. Batches are named by their in-memory key.

use crate::batch::{Origin, Record};
use crate::publisher::{backoff, OutMessage, Outcome, PublishError};
use crate::tick::Event;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Ably de-duplicates message ids for two minutes.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(120);

/// How long a request in flight may hold back new ticks (see the header): a
/// slower request (a hanging host) holds nothing back after this.
pub const TICK_HOLD: Duration = Duration::from_millis(100);

/// A recorded batch that Ably has not acknowledged yet.
#[derive(Debug)]
pub struct Pending {
    pub record: Record,
    pub events: Vec<Event>,
    /// The messages, loaded before the batch is first sent (while the
    /// batch ahead of it is in flight) and kept across retries.
    pub messages: Option<std::sync::Arc<[OutMessage]>>,
    pub attempts: u32,
    pub not_before: Instant,
    /// When an attempt first ended without a definite answer: from then on
    /// Ably may hold the batch under its ids.
    pub uncertain_since: Option<Instant>,
    /// Being replaced by smaller batches (the worker records them before
    /// anything is sent).
    recutting: bool,
}

impl Pending {
    pub fn new(record: Record, events: Vec<Event>, now: Instant) -> Pending {
        Pending { record, events, messages: None, attempts: 0, not_before: now, uncertain_since: None, recutting: false }
    }

    fn may_recut(&self, now: Instant) -> bool {
        self.uncertain_since.is_none_or(|t| now.duration_since(t) >= IDEMPOTENCY_WINDOW)
    }
}

#[derive(Debug)]
struct Lane {
    batches: VecDeque<Pending>,
    /// Since when the head is with the publisher, if it is.
    in_flight: Option<Instant>,
    backoff_until: Option<Instant>,
    /// 429s in a row, for the channel's back-off.
    rate_limited: u32,
    /// Messages per batch on this channel: the configured batch size, less
    /// after the channel was rate limited, growing back as batches pass.
    limit: usize,
    /// The head is being re-cut or moved to the dead letters.
    waiting: bool,
}

impl Lane {
    /// Whether batches wait behind the head but hold fewer messages than
    /// one batch may: a tick now would add a small batch to them. (Full
    /// batches behind the head, as in a large backlog, hold nothing back:
    /// the channel is busy anyway, and other channels must not wait for it.)
    fn queued_behind_head_is_small(&self) -> bool {
        let mut queued = 0;
        for pending in self.batches.iter().skip(1) {
            queued += pending.events.len();
            if queued >= self.limit {
                return false;
            }
        }
        queued > 0
    }
}

/// What the worker must make durable (src/batch.rs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Ably acknowledged the batch (gone from its lane): settle it.
    Acked { batch: i64, tick: i64, origin: Origin },
    /// Ably refused the batch's single message for good.
    DeadLetter { batch: i64, error: PublishError },
    /// Replace the batch by batches of at most `limit` messages (new ids).
    Recut { batch: i64, limit: usize },
}

/// What the worker needs to report about an outcome.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub actions: Vec<Action>,
    pub delivered_messages: u64,
    pub auth_failed: bool,
}

#[derive(Debug, Default)]
pub struct Lanes {
    lanes: HashMap<Rc<str>, Lane>,
    /// batch id → channel, for the batches in some lane.
    owner: HashMap<i64, Rc<str>>,
    batch_size: usize,
    messages: usize,
}

impl Lanes {
    pub fn new(batch_size: usize) -> Lanes {
        Lanes { batch_size: batch_size.max(1), ..Lanes::default() }
    }

    /// Recorded messages not yet acknowledged.
    pub fn pending_messages(&self) -> usize {
        self.messages
    }

    /// The channel's current batch limit (for cutting new batches).
    pub fn limit(&self, channel: &str) -> usize {
        self.lanes.get(channel).map_or(self.batch_size, |l| l.limit)
    }

    /// Pending rows in a queue part (the part cannot be truncated before
    /// they are delivered).
    pub fn pending_in_part(&self, part: u8) -> usize {
        self.lanes.values().flat_map(|l| l.batches.iter()).flat_map(|p| p.events.iter()).filter(|e| e.part == part).count()
    }

    /// Appends a batch at the end of its channel's lane.
    pub fn push(&mut self, pending: Pending) {
        let channel = pending.record.channel.clone();
        self.messages += pending.events.len();
        self.owner.insert(pending.record.key, channel.clone());
        let batch_size = self.batch_size;
        self.lanes
            .entry(channel)
            .or_insert_with(|| Lane {
                batches: VecDeque::new(),
                in_flight: None,
                backoff_until: None,
                rate_limited: 0,
                limit: batch_size,
                waiting: false,
            })
            .batches
            .push_back(pending);
    }

    /// A new configured batch size. Batches larger than it that were never
    /// sent are re-cut (they never reached Ably, so new ids are safe).
    pub fn set_batch_size(&mut self, batch_size: usize) -> Vec<Action> {
        self.batch_size = batch_size.max(1);
        let mut actions = Vec::new();
        for lane in self.lanes.values_mut() {
            lane.limit = lane.limit.min(self.batch_size);
            let limit = lane.limit;
            let skip_head = lane.in_flight.is_some() || lane.waiting;
            for (i, pending) in lane.batches.iter_mut().enumerate() {
                if i == 0 && skip_head {
                    continue;
                }
                if pending.attempts == 0 && pending.uncertain_since.is_none() && !pending.recutting && pending.events.len() > limit {
                    actions.push(Action::Recut { batch: pending.record.key, limit });
                    pending.recutting = true;
                }
            }
        }
        actions
    }

    /// Heads that may be sent now: not in flight, not waiting for the
    /// database, not backing off. At most `max` of them, oldest batch first.
    pub fn ready(&self, now: Instant, max: usize) -> Vec<i64> {
        let mut heads: Vec<i64> = self
            .lanes
            .values()
            .filter(|l| l.in_flight.is_none() && !l.waiting && l.backoff_until.is_none_or(|t| t <= now))
            .filter_map(|l| l.batches.front())
            .filter(|p| p.not_before <= now && !p.recutting)
            .map(|p| p.record.key)
            .collect();
        heads.sort_unstable();
        heads.truncate(max);
        heads
    }

    /// The batches that go next, oldest first, at most `max`: the head of
    /// each lane that is not in flight, and the batch behind each head that
    /// is (its rows are loaded ahead, while the head's request runs).
    pub fn upcoming(&self, max: usize) -> Vec<i64> {
        let mut keys: Vec<i64> = self
            .lanes
            .values()
            .filter(|l| !l.waiting)
            .filter_map(|l| if l.in_flight.is_some() { l.batches.get(1) } else { l.batches.front() })
            .filter(|p| !p.recutting)
            .map(|p| p.record.key)
            .collect();
        keys.sort_unstable();
        keys.truncate(max);
        keys
    }

    pub fn get(&self, batch: i64) -> Option<&Pending> {
        let channel = self.owner.get(&batch)?;
        self.lanes.get(channel)?.batches.iter().find(|p| p.record.key == batch)
    }

    pub fn get_mut(&mut self, batch: i64) -> Option<&mut Pending> {
        let channel = self.owner.get(&batch)?;
        self.lanes.get_mut(channel)?.batches.iter_mut().find(|p| p.record.key == batch)
    }

    /// Marks a head as handed to the publisher.
    pub fn sent(&mut self, batch: i64) {
        if let Some(lane) = self.owner.get(&batch).and_then(|c| self.lanes.get_mut(c)) {
            lane.in_flight = Some(Instant::now());
        }
    }

    /// Applies one outcome; returns the database work it calls for.
    pub fn outcome(&mut self, batch: i64, outcome: &Outcome, now: Instant) -> Applied {
        let mut applied = Applied::default();
        let Some(channel) = self.owner.get(&batch).cloned() else { return applied };
        let batch_size = self.batch_size;
        let Some(lane) = self.lanes.get_mut(&channel) else { return applied };
        lane.in_flight = None;
        let Some(head) = lane.batches.front_mut().filter(|p| p.record.key == batch) else { return applied };
        match outcome {
            Outcome::Delivered => {
                applied.delivered_messages = head.events.len() as u64;
                applied.actions.push(Action::Acked { batch, tick: head.record.tick, origin: head.record.origin });
                lane.rate_limited = 0;
                if lane.limit < batch_size {
                    lane.limit = (lane.limit + (lane.limit / 4).max(1)).min(batch_size);
                }
                self.remove_head(&channel);
            }
            Outcome::Retry { .. } => {
                head.attempts += 1;
                head.not_before = now + backoff(head.attempts);
                head.uncertain_since.get_or_insert(now);
            }
            Outcome::RateLimited { .. } => {
                lane.rate_limited += 1;
                lane.backoff_until = Some(now + backoff(lane.rate_limited).max(Duration::from_millis(100)));
                lane.limit = (lane.limit.min(head.events.len()) / 2).max(1);
                if head.events.len() > lane.limit && head.may_recut(now) {
                    applied.actions.push(Action::Recut { batch, limit: lane.limit });
                    lane.waiting = true;
                }
            }
            Outcome::AuthFailed { .. } => {
                applied.auth_failed = true;
            }
            Outcome::Rejected { error } => {
                if head.events.len() == 1 {
                    applied.actions.push(Action::DeadLetter { batch, error: error.clone() });
                } else {
                    // Refused as a whole: one message per request finds the
                    // bad one; the split batches take this one's place.
                    applied.actions.push(Action::Recut { batch, limit: 1 });
                }
                lane.waiting = true;
            }
        }
        applied
    }

    fn remove_head(&mut self, channel: &Rc<str>) {
        if let Some(lane) = self.lanes.get_mut(channel) {
            if let Some(head) = lane.batches.pop_front() {
                self.messages -= head.events.len();
                self.owner.remove(&head.record.key);
            }
            lane.waiting = false;
            // An empty lane is kept while it remembers a lowered limit.
            if lane.batches.is_empty() && lane.in_flight.is_none() && lane.limit >= self.batch_size && lane.rate_limited == 0 {
                self.lanes.remove(channel);
            }
        }
    }

    /// The head `batch` was moved to the dead letters.
    pub fn dead_lettered(&mut self, batch: i64) {
        if let Some(channel) = self.owner.get(&batch).cloned() {
            self.remove_head(&channel);
        }
    }

    /// `batch` was replaced by `replacement` (in order), in its place.
    pub fn recut(&mut self, batch: i64, replacement: Vec<Pending>) {
        let Some(channel) = self.owner.get(&batch).cloned() else { return };
        let Some(lane) = self.lanes.get_mut(&channel) else { return };
        let Some(position) = lane.batches.iter().position(|p| p.record.key == batch) else { return };
        let Some(old) = lane.batches.remove(position) else { return };
        self.owner.remove(&old.record.key);
        self.messages -= old.events.len();
        for (offset, pending) in replacement.into_iter().enumerate() {
            self.messages += pending.events.len();
            self.owner.insert(pending.record.key, channel.clone());
            lane.batches.insert(position + offset, pending);
        }
        if position == 0 {
            lane.waiting = false;
        }
    }

    /// Forgets everything (the publisher was replaced, or the extension
    /// went away); in-flight outcomes that still arrive are ignored.
    pub fn clear(&mut self) {
        self.lanes.clear();
        self.owner.clear();
        self.messages = 0;
    }

    /// Lets every lane send again (a configuration reload after an auth
    /// failure): outcomes of requests that never completed will not come.
    pub fn reset_in_flight(&mut self) {
        for lane in self.lanes.values_mut() {
            lane.in_flight = None;
        }
    }

    /// Whether new ticks are held back (see the header), as the earliest
    /// moment a hold expires: the worker looks again then, if no outcome
    /// woke it before.
    pub fn ticks_held_until(&self, now: Instant) -> Option<Instant> {
        self.lanes
            .values()
            .filter(|l| !l.waiting && l.queued_behind_head_is_small())
            .filter_map(|l| l.in_flight.map(|since| since + TICK_HOLD))
            .filter(|t| *t > now)
            .min()
    }

    /// When the earliest back-off ends, if any lane is waiting for one.
    pub fn next_wake(&self, now: Instant) -> Option<Instant> {
        self.lanes
            .values()
            .filter(|l| l.in_flight.is_none() && !l.waiting)
            .filter_map(|l| {
                let head = l.batches.front()?;
                Some(l.backoff_until.unwrap_or(now).max(head.not_before))
            })
            .filter(|t| *t > now)
            .min()
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    fn pending(id: i64, channel: &str, n: usize, now: Instant) -> Pending {
        let channel: Rc<str> = Rc::from(channel);
        let events = (0..n)
            .map(|i| Event { id: id * 1000 + i as i64, part: 0, tid: unsafe { std::mem::zeroed() }, channel: channel.clone(), size: 10 })
            .collect();
        let record = Record { key: id, origin: Origin::Recorded { id }, base: format!("e-{id}"), tick: 1, channel, first_id: id * 1000, last_id: id * 1000 + n as i64 - 1, count: n as i32 };
        Pending::new(record, events, now)
    }

    fn err(code: u32) -> PublishError {
        PublishError { status: Some((code / 100) as u16), code: Some(code), message: "x".into() }
    }

    #[test]
    fn one_request_per_channel_head_first() {
        let now = Instant::now();
        let mut lanes = Lanes::new(500);
        lanes.push(pending(1, "a", 2, now));
        lanes.push(pending(2, "a", 2, now));
        lanes.push(pending(3, "b", 2, now));
        assert_eq!(lanes.ready(now, 10), vec![1, 3]);
        lanes.sent(1);
        assert_eq!(lanes.ready(now, 10), vec![3]);
        let applied = lanes.outcome(1, &Outcome::Delivered, now);
        assert_eq!(applied.actions, vec![Action::Acked { batch: 1, tick: 1, origin: Origin::Recorded { id: 1 } }]);
        assert_eq!(applied.delivered_messages, 2);
        assert_eq!(lanes.ready(now, 10), vec![2, 3]);
    }

    #[test]
    fn a_batch_refused_whole_is_split_in_place_and_holds_its_lane() {
        let now = Instant::now();
        let mut lanes = Lanes::new(500);
        lanes.push(pending(1, "a", 3, now));
        lanes.push(pending(2, "a", 1, now));
        lanes.sent(1);
        let applied = lanes.outcome(1, &Outcome::Rejected { error: err(40013) }, now);
        assert_eq!(applied.actions, vec![Action::Recut { batch: 1, limit: 1 }]);
        assert!(lanes.ready(now, 10).is_empty(), "batch 2 must not overtake");
        lanes.recut(1, vec![pending(10, "a", 1, now), pending(11, "a", 1, now), pending(12, "a", 1, now)]);
        assert_eq!(lanes.ready(now, 10), vec![10]);
        lanes.sent(10);
        let applied = lanes.outcome(10, &Outcome::Rejected { error: err(40013) }, now);
        assert!(matches!(applied.actions[0], Action::DeadLetter { batch: 10, .. }));
        lanes.dead_lettered(10);
        assert_eq!(lanes.ready(now, 10), vec![11]);
    }

    #[test]
    fn ticks_wait_while_a_batch_is_queued_behind_a_request_in_flight() {
        let now = Instant::now();
        let mut lanes = Lanes::new(500);
        lanes.push(pending(1, "a", 1, now));
        lanes.push(pending(2, "b", 1, now));
        lanes.sent(1);
        lanes.sent(2);
        assert_eq!(lanes.ticks_held_until(Instant::now()), None, "one batch per channel holds nothing");
        lanes.push(pending(3, "a", 1, now));
        let until = lanes.ticks_held_until(Instant::now()).expect("a batch queued behind one in flight");
        assert!(until <= Instant::now() + TICK_HOLD);
        assert_eq!(lanes.ticks_held_until(until + Duration::from_millis(1)), None, "a slow request holds only TICK_HOLD");
        lanes.outcome(1, &Outcome::Delivered, Instant::now());
        assert_eq!(lanes.ticks_held_until(Instant::now()), None, "its head is answered");

        // A full batch's worth behind the head (a backlog) holds nothing back.
        let mut backlog = Lanes::new(2);
        backlog.push(pending(20, "c", 2, now));
        backlog.push(pending(21, "c", 2, now));
        backlog.sent(20);
        assert_eq!(backlog.ticks_held_until(Instant::now()), None);

        // A channel backing off (its head not in flight) holds nothing back.
        lanes.sent(3);
        lanes.push(pending(4, "a", 1, now));
        assert!(lanes.ticks_held_until(Instant::now()).is_some());
        lanes.outcome(3, &Outcome::Retry { error: err(50000) }, Instant::now());
        assert_eq!(lanes.ticks_held_until(Instant::now()), None);
    }

    #[test]
    fn rate_limits_shrink_batches_only_when_safe() {
        let now = Instant::now();
        let mut lanes = Lanes::new(500);
        lanes.push(pending(1, "a", 500, now));
        lanes.sent(1);
        let applied = lanes.outcome(1, &Outcome::RateLimited { error: err(42913) }, now);
        assert_eq!(applied.actions, vec![Action::Recut { batch: 1, limit: 250 }]);
        assert_eq!(lanes.limit("a"), 250);

        // A batch whose earlier attempt may have reached Ably keeps its ids.
        let mut lanes = Lanes::new(500);
        lanes.push(pending(1, "a", 500, now));
        lanes.sent(1);
        lanes.outcome(1, &Outcome::Retry { error: err(50000) }, now);
        lanes.sent(1);
        let applied = lanes.outcome(1, &Outcome::RateLimited { error: err(42913) }, now);
        assert!(applied.actions.is_empty(), "{applied:?}");
        // ... until Ably's idempotency window has passed.
        lanes.sent(1);
        let later = now + IDEMPOTENCY_WINDOW + Duration::from_secs(1);
        let applied = lanes.outcome(1, &Outcome::RateLimited { error: err(42913) }, later);
        assert!(matches!(applied.actions[0], Action::Recut { batch: 1, .. }));
    }

    #[test]
    fn a_smaller_batch_size_recuts_unsent_batches() {
        let now = Instant::now();
        let mut lanes = Lanes::new(500);
        lanes.push(pending(1, "a", 400, now));
        lanes.push(pending(2, "b", 400, now));
        lanes.push(pending(3, "b", 400, now));
        lanes.sent(2);
        let mut actions = lanes.set_batch_size(100);
        actions.sort_by_key(|a| match a {
            Action::Recut { batch, .. } => *batch,
            _ => 0,
        });
        // batch 2 is in flight: it keeps its ids; 3, behind it, is re-cut.
        assert_eq!(actions, vec![Action::Recut { batch: 1, limit: 100 }, Action::Recut { batch: 3, limit: 100 }]);
        assert!(lanes.ready(now, 10).is_empty(), "nothing goes out before the re-cut is recorded");
        lanes.recut(3, vec![pending(30, "b", 100, now), pending(31, "b", 100, now)]);
        lanes.outcome(2, &Outcome::Delivered, now);
        assert_eq!(lanes.ready(now, 10), vec![30]);
    }
}
