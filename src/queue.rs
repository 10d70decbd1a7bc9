//! The durable queue: where a change waits between its transaction's COMMIT
//! and Ably's acknowledgement.
//!
//! Invariants:
//! - A queue row is written in the writer's transaction, so ROLLBACK (also to
//!   a savepoint) leaves nothing and COMMIT keeps it through a crash: the
//!   tables are ordinary, WAL-logged tables.
//! - Queue ids come from one sequence, drawn while the writer holds the row
//!   lock, so later changes of a row always have larger ids than earlier ones.
//! - A row leaves the queue only after Ably acknowledged it (or it was moved
//!   to `ably.dead_letters`).
//!
//! Bloat: `ably.queue` is partitioned into three parts. Writers insert into
//! the *current* part (kept in shared memory, mirrored in `ably.queue_state`).
//! The worker deletes delivered rows, and every `ably.queue_rotate_rows` rows
//! it moves writers on to the next part once that part is empty. A part that
//! is not current, holds no undelivered row and can be locked without waiting
//! is then TRUNCATEd, which returns its space at once — so dead rows never
//! pile up and no VACUUM is needed (the PgQ approach, with partitions). A
//! writer that read the old part number just before a switch still inserts
//! into the old part; that is harmless because the worker reads all parts.

use crate::owner::as_extension_owner;
use crate::shared;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};
use std::ffi::CString;

pub const PARTS: i16 = 3;

/// The query that evaluates a rule's condition against one row (`$1`, of the
/// table's row type). Shared by `ably.publish_table` (to check it) and the
/// trigger (to run it) so both see exactly the same expression.
pub fn condition_query(condition: &str, _rowtype: pg_sys::Oid) -> String {
    format!("SELECT ({condition})::boolean FROM (SELECT ($1).*) AS ably_row")
}

thread_local! {
    /// Saved INSERT plans, one per part, prepared on first use in a backend.
    static INSERT_PLANS: RefCell<[Option<pg_sys::SPIPlanPtr>; PARTS as usize]> = const { RefCell::new([None; PARTS as usize]) };
    /// (local transaction id, part) of the last lookup without shared memory.
    static PART_CACHE: Cell<(u32, i16)> = const { Cell::new((u32::MAX, 0)) };
    static XACT_CALLBACK_REGISTERED: Cell<bool> = const { Cell::new(false) };
    static WAKE_AT_COMMIT: Cell<bool> = const { Cell::new(false) };
}

/// The part writers insert into now.
fn current_part() -> i16 {
    if let Some(part) = shared::current_part(unsafe { pg_sys::MyDatabaseId }) {
        return part;
    }
    let lxid = unsafe { (*pg_sys::MyProc).lxid };
    let (cached_lxid, part) = PART_CACHE.with(|c| c.get());
    if cached_lxid == lxid {
        return part;
    }
    let part = crate::sql::select_one::<i16>("SELECT current_part FROM ably.queue_state", &[]).unwrap_or(0);
    PART_CACHE.with(|c| c.set((lxid, part)));
    part
}

unsafe fn insert_plan(part: i16) -> pg_sys::SPIPlanPtr {
    INSERT_PLANS.with(|plans| {
        let mut plans = plans.borrow_mut();
        if let Some(plan) = plans[part as usize] {
            return plan;
        }
        let sql = CString::new(format!(
            "INSERT INTO ably.queue_{part} (part, rule_id, channel, name, data) \
             VALUES ({part}, $1, $2, $3, $4) RETURNING id"
        ))
        .expect("no NUL in query");
        let mut argtypes = [pg_sys::INT8OID, pg_sys::TEXTOID, pg_sys::TEXTOID, pg_sys::JSONOID];
        let plan = pg_sys::SPI_prepare(sql.as_ptr(), 4, argtypes.as_mut_ptr());
        if plan.is_null() {
            pgrx::error!("could not prepare the ably queue insert: SPI error {}", pg_sys::SPI_result);
        }
        pg_sys::SPI_keepplan(plan);
        plans[part as usize] = Some(plan);
        plan
    })
}

fn text_datum(s: &str) -> pg_sys::Datum {
    unsafe {
        pg_sys::Datum::from(pg_sys::cstring_to_text_with_len(s.as_ptr() as *const _, s.len() as i32))
    }
}

/// Queues one message in the current transaction; returns its queue id.
/// `data` is JSON text.
pub fn enqueue_text(rule_id: Option<i64>, channel: &str, name: Option<&str>, data: &str) -> i64 {
    enqueue_datum(rule_id, channel, name, text_datum(data))
}

/// Queues one message whose JSON data is already a `json`/`text` datum.
pub fn enqueue_datum(rule_id: Option<i64>, channel: &str, name: Option<&str>, data: pg_sys::Datum) -> i64 {
    let channel = text_datum(channel);
    let name_datum = name.map(text_datum);
    let id = as_extension_owner(|| unsafe {
        if pg_sys::SPI_connect() < 0 {
            pgrx::error!("could not connect to SPI");
        }
        let part = current_part();
        let plan = insert_plan(part);
        let mut values = [
            pg_sys::Datum::from(rule_id.unwrap_or(0)),
            channel,
            name_datum.unwrap_or(pg_sys::Datum::from(0)),
            data,
        ];
        let nulls = [
            if rule_id.is_some() { b' ' } else { b'n' } as std::ffi::c_char,
            b' ' as std::ffi::c_char,
            if name_datum.is_some() { b' ' } else { b'n' } as std::ffi::c_char,
            b' ' as std::ffi::c_char,
        ];
        let rc = pg_sys::SPI_execute_plan(plan, values.as_mut_ptr(), nulls.as_ptr(), false, 1);
        if rc != pg_sys::SPI_OK_INSERT_RETURNING as i32 {
            pgrx::error!("could not queue the message: SPI error {rc}");
        }
        let table = pg_sys::SPI_tuptable;
        let mut isnull = false;
        let id = pg_sys::SPI_getbinval(*(*table).vals, (*table).tupdesc, 1, &mut isnull);
        pg_sys::SPI_finish();
        id.value() as i64
    });
    request_wake_at_commit();
    id
}

/// Records a change that could not be queued as a message (for example a
/// channel template column that is NULL) in `ably.dead_letters`, so that it
/// is visible and can be retried instead of being silently lost.
pub fn dead_letter_now(rule_id: i64, name: Option<&str>, data: &str, reason: &str) {
    as_extension_owner(|| {
        Spi::run_with_args(
            "INSERT INTO ably.dead_letters (id, rule_id, channel, name, data, enqueued_at, error_message) \
             VALUES (nextval('ably.queue_id_seq'), $1, NULL, $2, $3::json, now(), $4)",
            &[rule_id.into(), name.into(), data.into(), reason.into()],
        )
        .unwrap_or_else(|e| pgrx::error!("could not record dead letter: {e}"));
    });
}

fn request_wake_at_commit() {
    WAKE_AT_COMMIT.with(|w| w.set(true));
    if !XACT_CALLBACK_REGISTERED.with(|r| r.replace(true)) {
        unsafe { pg_sys::RegisterXactCallback(Some(on_xact_event), std::ptr::null_mut()) };
    }
}

/// Wakes the database's worker once the queued rows are visible, so that
/// delivery starts within a millisecond of COMMIT and an idle database costs
/// nothing.
#[pg_guard]
unsafe extern "C-unwind" fn on_xact_event(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_COMMIT | pg_sys::XactEvent::XACT_EVENT_PARALLEL_COMMIT => {
            if WAKE_AT_COMMIT.with(|w| w.replace(false)) {
                shared::wake_worker(unsafe { pg_sys::MyDatabaseId });
            }
        }
        pg_sys::XactEvent::XACT_EVENT_ABORT | pg_sys::XactEvent::XACT_EVENT_PARALLEL_ABORT => {
            WAKE_AT_COMMIT.with(|w| w.set(false));
        }
        _ => {}
    }
}
