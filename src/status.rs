//! `ably.status()`: what a DBA needs to know at a glance — is a worker
//! delivering for this database (and if not, what the launcher knows), is
//! delivery paused and why, how deep and how old is the queue.
//!
//! Read with catalog and heap calls (no SQL, no right on ably's tables
//! needed), from the durable state and the worker's shared-memory slot.
//! Never shows the API key: errors recorded by the worker never contain it.

use crate::batch;
use crate::guc;
use crate::shared;
use crate::store::Table;
use crate::tick;
use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::prelude::*;
use std::collections::HashMap;

/// One row of `ably.status()`, in the order of its columns (named in
/// `status`'s signature, which is what pgrx reads).
type Row = (
    Option<i32>,
    String,
    i64,
    Option<Interval>,
    i64,
    Option<i64>,
    Option<i64>,
    i64,
    Option<TimestampWithTimeZone>,
    Option<i32>,
    Option<i32>,
    Option<String>,
    Option<TimestampWithTimeZone>,
);

#[pg_extern(volatile)]
fn status() -> TableIterator<
    'static,
    (
        name!(worker_pid, Option<i32>),
        name!(state, String),
        name!(queue_depth, i64),
        name!(oldest_age, Option<Interval>),
        name!(in_flight_batches, i64),
        name!(messages_delivered, Option<i64>),
        name!(requests, Option<i64>),
        name!(dead_letters, i64),
        name!(last_error_at, Option<TimestampWithTimeZone>),
        name!(last_error_status, Option<i32>),
        name!(last_error_code, Option<i32>),
        name!(last_error_message, Option<String>),
        name!(started_at, Option<TimestampWithTimeZone>),
    ),
> {
    if crate::catalog::extension().is_some_and(|e| !e.current) {
        return TableIterator::once(needs_update());
    }
    let backlog = backlog();
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    let oldest = backlog.oldest_since.map(|at| Interval::from_micros(now - at));
    let mut dead = 0i64;
    Table::open("dead_letters", pg_sys::AccessShareLock).scan_all(|_| {
        dead += 1;
        false
    });

    let dboid = unsafe { pg_sys::MyDatabaseId };
    let view = shared::view(dboid);
    let state = match &view {
        _ if !shared::preloaded() => "not-loaded".to_string(),
        Some(v) => v.state.label().to_string(),
        None => launcher_state(dboid).to_string(),
    };
    let ts = |micros: i64| TimestampWithTimeZone::try_from(micros).ok();
    let row: Row = match view {
        Some(v) => {
            let (err_at, err_status, err_code, err_msg) = match v.last_error {
                Some((at, status, code, msg)) => (ts(at), status, code, Some(msg)),
                None => (None, None, None, None),
            };
            (
                (v.pid != 0).then_some(v.pid),
                state,
                backlog.messages,
                oldest,
                backlog.batches,
                Some(v.messages as i64),
                Some(v.requests as i64),
                dead,
                err_at,
                err_status,
                err_code,
                err_msg,
                ts(v.started_at_micros),
            )
        }
        None => (None, state, backlog.messages, oldest, backlog.batches, None, None, dead, None, None, None, None, None),
    };
    TableIterator::once(row)
}

/// The status while the library is newer than the installed SQL objects
/// (before ALTER EXTENSION ably_pg UPDATE): the old queue keeps only
/// undelivered rows, so counting them is the depth.
fn needs_update() -> Row {
    let count = |table: &str| {
        let mut n = 0i64;
        Table::open(table, pg_sys::AccessShareLock).scan_all(|_| {
            n += 1;
            false
        });
        n
    };
    let depth = (0..crate::queue::PARTS).map(|p| count(&format!("queue_{p}"))).sum();
    let message = format!(
        "the ably_pg library is version {} and the extension's objects are older: run ALTER EXTENSION ably_pg UPDATE",
        env!("CARGO_PKG_VERSION")
    );
    (None, "needs-update".to_string(), depth, None, count("batches"), None, None, count("dead_letters"), None, None, None, Some(message), None)
}

/// What is committed and not yet settled, read from the durable state.
struct Backlog {
    messages: i64,
    batches: i64,
    /// When the tick before the oldest unsettled row's was taken: that row
    /// committed after it.
    oldest_since: Option<i64>,
}

/// The unsettled batches of stored ticks (their cut repeated, src/batch.rs),
/// the recorded batches, and the rows not cut into batches yet. The worker
/// writes acknowledgements of cut batches within a maintenance pass
/// (250 ms), so this lags delivery by about that much.
fn backlog() -> Backlog {
    let ticks = tick::load_all();
    let records = batch::load_all();
    let mut messages: i64 = records.iter().map(|b| i64::from(b.count)).sum();
    let mut batches = records.len() as i64;
    let mut oldest_tick = records.iter().map(|b| b.tick - 1).min();
    let mut channels = HashMap::new();
    for (i, t) in ticks.iter().enumerate() {
        let Some(cut) = &t.cut else { continue };
        if cut.settled.len() >= cut.batch_count.max(0) as usize {
            continue;
        }
        let Some(prev) = tick::previous(&ticks, i) else { continue };
        let events = tick::events(&prev.snapshot, &t.snapshot, &mut channels);
        for (k, run) in batch::repeat_cut(cut, &events).iter().enumerate() {
            if cut.settled.binary_search(&(k as i32)).is_err() {
                messages += run.len() as i64;
                batches += 1;
                oldest_tick = Some(oldest_tick.map_or(t.id - 1, |o| o.min(t.id - 1)));
            }
        }
    }
    let newest = ticks.last();
    let uncut = newest.map_or(0, |c| tick::count_after(&c.snapshot));
    if oldest_tick.is_none() && uncut > 0 {
        oldest_tick = newest.map(|t| t.id);
    }
    let oldest_since = oldest_tick.and_then(|id| ticks.iter().find(|t| t.id == id)).map(|t| t.created_at);
    Backlog { messages: messages + uncut, batches, oldest_since }
}

/// Messages committed and not yet acknowledged by Ably.
pub fn undelivered() -> i64 {
    backlog().messages
}

/// Why no worker serves this database, as far as the launcher tells.
fn launcher_state(dboid: pg_sys::Oid) -> &'static str {
    let (launcher, exhausted) = shared::launcher_view();
    let name = unsafe { crate::catalog::cstr(pg_sys::get_database_name(dboid)) };
    if guc::allowed_databases().is_some_and(|list| !list.iter().any(|d| *d == name)) {
        "not-in-ably.database"
    } else if !launcher {
        "not-running"
    } else if exhausted {
        "no-worker-slot"
    } else {
        "starting"
    }
}
