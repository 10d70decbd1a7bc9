//! The worker's durable position in `ably.queue_state` (one row): which
//! part writers use, when each other part was left, and the epoch that
//! message ids start with. (How far ticks are cut is the newest row of
//! `ably.ticks`.)

use crate::store::{text_datum, Table};
use pgrx::pg_sys;
use pgrx::IntoDatum;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueState {
    pub current_part: i16,
    /// Per part: the next transaction id when writers moved off it.
    pub retired_xid: [Option<u64>; 3],
    pub rotations: i64,
    pub epoch: String,
    pub epoch_timeline: i32,
}

pub fn load() -> Option<QueueState> {
    let mut state = None;
    Table::open("queue_state", pg_sys::AccessShareLock).scan_all(|row| {
        let retired: Vec<Option<i64>> = row.get("retired_xid").unwrap_or_default();
        let retired_at = |i: usize| retired.get(i).copied().flatten().map(|x| x as u64);
        state = Some(QueueState {
            current_part: row.get::<i16>("current_part").unwrap_or(0),
            retired_xid: [retired_at(0), retired_at(1), retired_at(2)],
            rotations: row.get::<i64>("rotations").unwrap_or(0),
            epoch: row.get::<String>("epoch").unwrap_or_default(),
            epoch_timeline: row.get::<i32>("epoch_timeline").unwrap_or(0),
        });
        false
    });
    state
}

/// Writes the row (an in-place update of its columns; `rotated` stamps
/// `rotated_at`).
pub fn save(state: &QueueState, rotated: bool) {
    let table = Table::open("queue_state", pg_sys::RowExclusiveLock);
    let retired: Vec<Option<i64>> = state.retired_xid.iter().map(|x| x.map(|v| v as i64)).collect();
    let mut values = vec![
        ("current_part", Some(pg_sys::Datum::from(state.current_part))),
        ("retired_xid", retired.into_datum()),
        ("epoch", Some(text_datum(&state.epoch))),
        ("epoch_timeline", Some(pg_sys::Datum::from(state.epoch_timeline))),
    ];
    if rotated {
        values.push(("rotated_at", Some(pg_sys::Datum::from(unsafe { pg_sys::GetCurrentTimestamp() }))));
        values.push(("rotations", Some(pg_sys::Datum::from(state.rotations))));
    }
    table.update_all(&values);
}

/// A fresh random epoch (12 hex digits).
pub fn new_epoch() -> String {
    format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}
