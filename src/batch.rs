//! Batches: what one publish request carries for one channel, and how
//! their message ids survive a crash.
//!
//! A batch is a run of one channel's rows within one tick, sent as one
//! atomic publish whose messages have ids `<base>:0..count-1`. Ably
//! de-duplicates ids for two minutes, so a batch re-sent after a crash must
//! have the same members under the same base. Two kinds guarantee that:
//!
//! - **Cut batches** (nearly all). A tick's rows are fixed once the tick is
//!   taken: they are the rows of transactions committed in its snapshot and
//!   not in the previous tick's (src/tick.rs), and queue rows are never
//!   updated or deleted before they are settled. [`cut_tick`] cuts them by
//!   a pure function of those rows and of (`batch_size`, `max_bytes`): per
//!   channel in order of first appearance, runs under both limits. The k-th
//!   run is batch k of the tick, with base `<epoch>-t<tick>-<k>`. The tick
//!   row stores the epoch, both limits and the row and batch counts, and is
//!   committed synchronously before any of its batches is first sent; after
//!   a crash the cut is repeated from the stored tick and gives the same
//!   batches and ids. One row per tick, not per batch: this is what keeps
//!   the worker's cost per message low.
//! - **Recorded batches**, rows of `ably.batches` committed before their
//!   first attempt: the replacements of a cut batch that must change (made
//!   smaller after a 429, split after Ably refused it whole, a smaller
//!   `ably.batch_size`, or a channel still rate limited when its tick is
//!   cut), and those 0.2.0 recorded. Base `<epoch>-<batch id>` from a
//!   sequence; the two kinds of base never meet (`t` never starts a number).
//!
//! A cut batch is *settled* when it needs no sending any more: acknowledged,
//! dead-lettered, or replaced by recorded batches. Replacement and dead
//! letters record the ordinal in the tick's `settled` in the same
//! transaction as the rows that take its place; acknowledgements are
//! written lazily (src/worker.rs, every maintenance pass, asynchronously),
//! and a tick is deleted once all its batches are settled and the next tick
//! no longer needs it as its lower bound. A crash can thus lose the record of
//! acknowledgements of the last moments: those batches are sent again under
//! the same ids and Ably drops them (as before this scheme, when the
//! deletion of an acknowledged batch's row was committed asynchronously).
//!
//! Cutting bounds: a row larger than `max_bytes` gets a batch of its own, so
//! Ably refuses that row alone.

use crate::store::{text_datum, Table};
use crate::tick::Event;
use pgrx::pg_sys;
use std::collections::HashMap;
use std::rc::Rc;

/// Where a batch comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The `ordinal`-th batch of its tick's cut.
    Cut { ordinal: i32 },
    /// A row of `ably.batches`.
    Recorded { id: i64 },
}

/// A batch. `key` identifies it in the worker's memory (in creation order);
/// it is never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: i64,
    pub origin: Origin,
    pub base: String,
    pub tick: i64,
    pub channel: Rc<str>,
    pub first_id: i64,
    pub last_id: i64,
    pub count: i32,
}

/// The base of a cut batch's message ids.
pub fn cut_base(epoch: &str, tick: i64, ordinal: i32) -> String {
    format!("{epoch}-t{tick}-{ordinal}")
}

/// A recorded batch's base.
pub fn recorded_base(epoch: &str, id: i64) -> String {
    format!("{epoch}-{id}")
}

/// A stored tick's cut repeated: the same batches, in the same order, as
/// when it was first cut.
pub fn repeat_cut(cut: &crate::tick::Cut, events: &[Event]) -> Vec<Vec<Event>> {
    cut_tick(events, cut.batch_size.max(1) as usize, cut.max_bytes.max(1) as usize)
}

/// The repeatable cut of a tick's rows (ordered by queue id): per channel,
/// in order of the channel's first row, runs of at most `batch_size` rows
/// and `max_bytes` bytes. The k-th run is the tick's batch k.
pub fn cut_tick(events: &[Event], batch_size: usize, max_bytes: usize) -> Vec<Vec<Event>> {
    let mut order: Vec<Rc<str>> = Vec::new();
    let mut groups: HashMap<Rc<str>, Vec<Event>> = HashMap::new();
    for event in events {
        groups
            .entry(event.channel.clone())
            .or_insert_with(|| {
                order.push(event.channel.clone());
                Vec::new()
            })
            .push(event.clone());
    }
    let mut batches = Vec::new();
    for channel in order {
        let rows = groups.remove(&channel).unwrap_or_default();
        for run in cut(&rows, batch_size, max_bytes) {
            batches.push(run.to_vec());
        }
    }
    batches
}

unsafe extern "C-unwind" {
    fn nextval_internal(relid: pg_sys::Oid, check_permissions: bool) -> i64;
}

/// A new batch id (only the worker draws them).
pub fn next_id() -> i64 {
    let Some(sequence) = crate::catalog::ably_relation("batch_id_seq") else {
        pgrx::error!("ably_pg's sequence ably.batch_id_seq is missing");
    };
    unsafe { pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| nextval_internal(sequence, false)) }
}

pub fn insert(records: &[Record]) {
    if records.is_empty() {
        return;
    }
    let table = Table::open("batches", pg_sys::RowExclusiveLock);
    let now = pg_sys::Datum::from(unsafe { pg_sys::GetCurrentTimestamp() });
    for r in records {
        let Origin::Recorded { id } = r.origin else { continue };
        table.insert(&[
            ("id", Some(pg_sys::Datum::from(id))),
            ("base", Some(text_datum(&r.base))),
            ("tick", Some(pg_sys::Datum::from(r.tick))),
            ("channel", Some(text_datum(&r.channel))),
            ("first_id", Some(pg_sys::Datum::from(r.first_id))),
            ("last_id", Some(pg_sys::Datum::from(r.last_id))),
            ("count", Some(pg_sys::Datum::from(r.count))),
            ("created_at", Some(now)),
        ]);
    }
}

pub fn delete(ids: &[i64]) {
    if ids.is_empty() {
        return;
    }
    Table::open("batches", pg_sys::RowExclusiveLock).delete_int8("batches_pkey", "id", ids);
}

/// Every recorded batch, by id (oldest first); keys are the ids.
pub fn load_all() -> Vec<Record> {
    let mut out = Vec::new();
    Table::open("batches", pg_sys::AccessShareLock).scan_all(|row| {
        if let (Some(id), Some(base), Some(tick), Some(channel), Some(first_id), Some(last_id), Some(count)) = (
            row.get::<i64>("id"),
            row.get::<String>("base"),
            row.get::<i64>("tick"),
            row.get::<String>("channel"),
            row.get::<i64>("first_id"),
            row.get::<i64>("last_id"),
            row.get::<i32>("count"),
        ) {
            out.push(Record { key: id, origin: Origin::Recorded { id }, base, tick, channel: Rc::from(channel.as_str()), first_id, last_id, count });
        }
        false
    });
    out.sort_by_key(|r| r.key);
    out
}

/// Consecutive runs of one channel's rows, each under `max_count` rows and
/// `max_bytes` bytes (a single larger row is a run of its own).
pub fn cut<'a>(events: &'a [Event], max_count: usize, max_bytes: usize) -> Vec<&'a [Event]> {
    let max_count = max_count.max(1);
    let mut runs = Vec::new();
    let mut start = 0;
    let mut bytes = 0usize;
    for (i, event) in events.iter().enumerate() {
        let count = i - start;
        if count > 0 && (count >= max_count || bytes.saturating_add(event.size) > max_bytes) {
            runs.push(&events[start..i]);
            start = i;
            bytes = 0;
        }
        bytes = bytes.saturating_add(event.size);
    }
    if start < events.len() {
        runs.push(&events[start..]);
    }
    runs
}

/// The members of a batch among a tick's events.
pub fn members(record: &Record, tick_events: &[Event]) -> Vec<Event> {
    tick_events
        .iter()
        .filter(|e| *e.channel == *record.channel && e.id >= record.first_id && e.id <= record.last_id)
        .cloned()
        .collect()
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    fn events(sizes: &[usize]) -> Vec<Event> {
        let channel: Rc<str> = Rc::from("c");
        sizes
            .iter()
            .enumerate()
            .map(|(i, s)| Event { id: i as i64, part: 0, tid: unsafe { std::mem::zeroed() }, channel: channel.clone(), size: *s })
            .collect()
    }

    #[test]
    fn runs_respect_count_and_bytes() {
        let e = events(&[10, 10, 10, 10, 10]);
        let lens: Vec<usize> = cut(&e, 2, 1000).iter().map(|r| r.len()).collect();
        assert_eq!(lens, vec![2, 2, 1]);
        let lens: Vec<usize> = cut(&e, 100, 25).iter().map(|r| r.len()).collect();
        assert_eq!(lens, vec![2, 2, 1]);
        let e = events(&[5, 100, 5]);
        let lens: Vec<usize> = cut(&e, 100, 50).iter().map(|r| r.len()).collect();
        assert_eq!(lens, vec![1, 1, 1], "an oversized row is alone");
        let e = events(&[5, 5, 5]);
        let lens: Vec<usize> = cut(&e, 100, 10).iter().map(|r| r.len()).collect();
        assert_eq!(lens, vec![2, 1], "a batch may be exactly the limit");
        assert!(cut(&[], 10, 10).is_empty());
    }

    #[test]
    fn a_tick_is_cut_per_channel_in_order_of_first_appearance() {
        let a: Rc<str> = Rc::from("a");
        let b: Rc<str> = Rc::from("b");
        let e = |id: i64, c: &Rc<str>| Event { id, part: 0, tid: unsafe { std::mem::zeroed() }, channel: c.clone(), size: 1 };
        let events = vec![e(1, &b), e(2, &a), e(3, &b), e(4, &b), e(5, &a)];
        let batches = cut_tick(&events, 2, 100);
        let ids: Vec<Vec<i64>> = batches.iter().map(|r| r.iter().map(|e| e.id).collect()).collect();
        assert_eq!(ids, vec![vec![1, 3], vec![4], vec![2, 5]]);
        assert_eq!(cut_tick(&events, 2, 100).len(), 3, "the same rows, the same cut");
    }
}
