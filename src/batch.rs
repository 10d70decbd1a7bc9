//! Batches: what one publish request carries, recorded in `ably.batches`
//! before it is sent.
//!
//! A batch is the rows of one tick on one channel with queue ids
//! `first_id..=last_id` (`count` of them), sent as one atomic publish whose
//! messages have ids `<base>:0..count-1`. The base is `<epoch>-<batch id>`:
//! batch ids come from a sequence and the epoch changes whenever that
//! sequence could move back (a new extension, a new timeline), so a base is
//! never reused for other rows. Because the record is committed before the
//! first attempt and deleted only after Ably's acknowledgement, a batch
//! re-sent after a crash has the same members and ids, and Ably drops the
//! duplicate.
//!
//! Cutting: a tick's rows are grouped by channel in queue-id order and cut
//! into runs under the channel's message-count limit and Ably's size limit
//! (a row larger than the limit gets a batch of its own, so Ably refuses that
//! row alone).

use crate::store::{text_datum, Table};
use crate::tick::Event;
use pgrx::pg_sys;
use std::rc::Rc;

/// One row of `ably.batches`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub id: i64,
    pub base: String,
    pub tick: i64,
    pub channel: Rc<str>,
    pub first_id: i64,
    pub last_id: i64,
    pub count: i32,
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
        table.insert(&[
            ("id", Some(pg_sys::Datum::from(r.id))),
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
    let table = Table::open("batches", pg_sys::RowExclusiveLock);
    for id in ids {
        table.scan_int8("batches_pkey", "id", *id, |_| true);
    }
}

/// Every recorded batch, by id (oldest first).
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
            out.push(Record { id, base, tick, channel: Rc::from(channel.as_str()), first_id, last_id, count });
        }
        false
    });
    out.sort_by_key(|r| r.id);
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
}
