//! `ably.status()`: what a DBA needs to know at a glance — is the worker
//! running, is delivery paused and why, how deep and how old is the queue.
//! Never shows the API key: errors recorded by the worker never contain it.

use crate::identity::as_extension_owner;
use crate::shared;
use crate::sql::{select_one, select_two};
use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::prelude::*;


#[pg_extern(volatile)]
fn status() -> TableIterator<'static, (
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
)> {
    // Read as the extension owner (callers need no right on ably's tables),
    // with the search path pinned and every name qualified.
    let ((depth, oldest), in_flight, dead) = as_extension_owner(|| {
        (
            select_two::<i64, Interval>(
                "SELECT pg_catalog.count(*), pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.min(enqueued_at) FROM ably.queue",
                &[],
            )
            .unwrap_or((Some(0), None)),
            select_one::<i64>("SELECT pg_catalog.count(*) FROM ably.batches", &[]).unwrap_or(0),
            select_one::<i64>("SELECT pg_catalog.count(*) FROM ably.dead_letters", &[]).unwrap_or(0),
        )
    });
    let view = shared::view(unsafe { pg_sys::MyDatabaseId });
    let state = match (&view, shared::preloaded()) {
        (_, false) => "not-loaded".to_string(),
        (None, true) => "not-running".to_string(),
        (Some(v), true) => v.state.label().to_string(),
    };
    let ts = |micros: i64| TimestampWithTimeZone::try_from(micros).ok();
    let row = match view {
        Some(v) => {
            let (err_at, err_status, err_code, err_msg) = match v.last_error {
                Some((at, status, code, msg)) => (ts(at), status, code, Some(msg)),
                None => (None, None, None, None),
            };
            (
                (v.pid != 0).then_some(v.pid),
                state,
                depth.unwrap_or(0),
                oldest,
                in_flight,
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
        None => (None, state, depth.unwrap_or(0), oldest, in_flight, None, None, dead, None, None, None, None, None),
    };
    TableIterator::once(row)
}
