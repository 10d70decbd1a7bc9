//! The durable queue: where a change waits between its transaction's COMMIT
//! and Ably's acknowledgement. This is the writer's side; src/tick.rs reads
//! the queue and src/worker.rs rotates it.
//!
//! Invariants:
//! - A queue row is written in the writer's transaction, so ROLLBACK (also to
//!   a savepoint) leaves nothing and COMMIT keeps it through a crash: the
//!   tables are ordinary, WAL-logged tables.
//! - Each row carries its writer's top-level transaction id (`txid`, the
//!   part's only index), by which the worker finds rows between ticks.
//! - Queue ids come from one sequence, drawn while the writer holds the row
//!   lock, so later changes of a row always have larger ids than earlier ones.
//! - Rows are never updated or deleted: a part has no dead rows and needs no
//!   VACUUM. Writers append with `heap_insert` + `index_insert`: no SQL, no
//!   plan, no permission check on ably's tables (writers have no right on
//!   them).
//!
//! Rotation (the PgQ approach, with partitions): writers insert into the
//! *current* part, published by the worker in shared memory (and in
//! `ably.queue_state`). Every `ably.queue_rotate_rows` rows the worker moves
//! writers to the next, empty part; it publishes the new part first and only
//! then reads the next transaction id, X, and records it as the old part's
//! retiring point. A writer takes its transaction id before it reads the
//! part, so any writer that still saw the old part has an id below X. Once
//! every transaction below X has ended, been cut into batches and delivered,
//! and no stored tick with rows in the part has unsettled batches (repeating
//! a tick's cut after a crash needs all its rows, src/batch.rs), the old
//! part is truncated as a whole (heap_truncate_one_rel: WAL-logged, and it
//! keeps the part's files, so writers' cached relations stay valid).

use crate::catalog;
use crate::shared;
use crate::store::{text_datum, Table};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};

pub const PARTS: i16 = 3;

thread_local! {
    /// Where queue rows go, resolved once per backend.
    static TARGET: RefCell<Option<Target>> = const { RefCell::new(None) };
    /// (local transaction id, part) of the last lookup without shared memory.
    static PART_CACHE: Cell<(u32, i16)> = const { Cell::new((u32::MAX, 0)) };
    static XACT_CALLBACK_REGISTERED: Cell<bool> = const { Cell::new(false) };
    static TARGET_CALLBACK_REGISTERED: Cell<bool> = const { Cell::new(false) };
    static WAKE_AT_COMMIT: Cell<bool> = const { Cell::new(false) };
}

unsafe extern "C-unwind" {
    /// commands/sequence.h; `nextval()` without its per-call permission check
    /// (the writer needs no right on ably's sequence).
    fn nextval_internal(relid: pg_sys::Oid, check_permissions: bool) -> i64;
}

/// The queue's relations and column positions, so that a row is written with
/// `heap_insert` + `index_insert` directly: no SPI, no executor, no plan,
/// no permission check on ably's tables (writers have no rights on them).
#[derive(Clone, Copy)]
struct Target {
    sequence: pg_sys::Oid,
    parts: [pg_sys::Oid; PARTS as usize],
    indexes: [pg_sys::Oid; PARTS as usize],
    /// Built once in TopMemoryContext; depends only on the index definition.
    index_infos: [*mut pg_sys::IndexInfo; PARTS as usize],
    /// 0-based positions of id, part, rule_id, channel, name, data,
    /// enqueued_at, txid (none in a 0.1.0 queue, before ALTER EXTENSION
    /// UPDATE).
    columns: [Option<usize>; 8],
    /// Whether the parts' index is on txid (0.2.0) or on id (0.1.0).
    index_on_txid: bool,
}

const COLUMNS: [&str; 8] = ["id", "part", "rule_id", "channel", "name", "data", "enqueued_at", "txid"];

fn target() -> Target {
    if let Some(t) = TARGET.with(|t| *t.borrow()) {
        return t;
    }
    let t = unsafe { resolve_target() };
    TARGET.with(|cell| *cell.borrow_mut() = Some(t));
    t
}

/// Finds the queue's relations in the catalog (no SQL: this runs in every
/// writer's first enqueue, whatever its search_path).
unsafe fn resolve_target() -> Target {
    let missing = || -> ! { pgrx::error!("ably_pg's queue tables are missing; reinstall the extension") };
    let Some(extension) = catalog::extension() else { missing() };
    let Some(sequence) = catalog::relation_in(extension.namespace, "queue_id_seq") else { missing() };
    let mut parts = [pg_sys::InvalidOid; PARTS as usize];
    let mut indexes = [pg_sys::InvalidOid; PARTS as usize];
    let mut index_infos = [std::ptr::null_mut(); PARTS as usize];
    let mut columns = [None; 8];
    let mut index_on_txid = true;
    for p in 0..PARTS as usize {
        let Some(part) = catalog::relation_in(extension.namespace, &format!("queue_{p}")) else { missing() };
        parts[p] = part;
        let rel = pg_sys::table_open(part, pg_sys::AccessShareLock as i32);
        let list = pg_sys::RelationGetIndexList(rel);
        if list.is_null() || (*list).length != 1 {
            missing();
        }
        indexes[p] = (*(*list).elements).oid_value;
        if p == 0 {
            for (i, name) in COLUMNS.iter().enumerate() {
                let name = std::ffi::CString::new(*name).expect("column names have no NUL");
                let attnum = pg_sys::get_attnum(part, name.as_ptr());
                columns[i] = (attnum > 0).then(|| (attnum - 1) as usize);
            }
            // Every column but txid is needed.
            if columns[..7].iter().any(Option::is_none) {
                missing();
            }
        }
        pg_sys::table_close(rel, pg_sys::AccessShareLock as i32);
        let old = pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
        let index = pg_sys::index_open(indexes[p], pg_sys::AccessShareLock as i32);
        index_infos[p] = pg_sys::BuildIndexInfo(index);
        let key_attnum = *(*(*index).rd_index).indkey.values.as_ptr();
        index_on_txid = columns[7].is_some_and(|c| c + 1 == key_attnum as usize);
        pg_sys::index_close(index, pg_sys::AccessShareLock as i32);
        pg_sys::MemoryContextSwitchTo(old);
    }
    // The callback list has a handful of slots for the whole backend:
    // register once, however often the target is resolved again.
    if !TARGET_CALLBACK_REGISTERED.with(|r| r.replace(true)) {
        pg_sys::CacheRegisterRelcacheCallback(Some(forget_target), pg_sys::Datum::from(0));
    }
    Target { sequence, parts, indexes, index_infos, columns, index_on_txid }
}

/// Any change to a queue relation (TRUNCATE by the worker, DROP EXTENSION)
/// makes the backend resolve the target again.
#[pg_guard]
unsafe extern "C-unwind" fn forget_target(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    TARGET.with(|t| {
        let mut t = t.borrow_mut();
        if let Some(target) = *t {
            if relid == pg_sys::InvalidOid || target.parts.contains(&relid) || target.indexes.contains(&relid) {
                *t = None;
            }
        }
    });
}

/// The part writers insert into now.
fn current_part() -> i16 {
    if let Some(part) = shared::current_part(unsafe { pg_sys::MyDatabaseId }) {
        return part;
    }
    let lxid = catalog::local_transaction_id();
    let (cached_lxid, part) = PART_CACHE.with(|c| c.get());
    if cached_lxid == lxid {
        return part;
    }
    let mut part = 0;
    Table::open("queue_state", pg_sys::AccessShareLock).scan_all(|row| {
        part = row.get::<i16>("current_part").unwrap_or(0);
        false
    });
    PART_CACHE.with(|c| c.set((lxid, part)));
    part
}

/// Queues one message in the current transaction; returns its queue id.
/// `data` is JSON text.
pub fn enqueue_text(rule_id: Option<i64>, channel: &str, name: Option<&str>, data: &str) -> i64 {
    // The transaction id first, the part second: a writer that still sees
    // the old part after a rotation has an id below the part's retiring
    // point (see the module comment).
    let txid = unsafe { pg_sys::GetTopFullTransactionId() }.value;
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    let part = current_part();
    let mut target = target();
    let id = unsafe {
        let id = pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| nextval_internal(target.sequence, false));
        // The part may have been replaced while this writer waited for its
        // lock (ALTER EXTENSION UPDATE): then find the queue again.
        let mut rel = pg_sys::try_relation_open(target.parts[part as usize], pg_sys::RowExclusiveLock as i32);
        if rel.is_null() {
            TARGET.with(|t| *t.borrow_mut() = None);
            target = self::target();
            rel = pg_sys::table_open(target.parts[part as usize], pg_sys::RowExclusiveLock as i32);
        }
        let natts = (*(*rel).rd_att).natts as usize;
        let mut values = vec![pg_sys::Datum::from(0); natts];
        let mut nulls = vec![true; natts];
        let mut set = |column: usize, value: Option<pg_sys::Datum>| {
            if let (Some(v), Some(position)) = (value, target.columns[column]) {
                values[position] = v;
                nulls[position] = false;
            }
        };
        set(0, Some(pg_sys::Datum::from(id)));
        set(1, Some(pg_sys::Datum::from(part)));
        set(2, rule_id.map(pg_sys::Datum::from));
        set(3, Some(text_datum(channel)));
        set(4, name.map(text_datum));
        set(5, Some(text_datum(data)));
        set(6, Some(pg_sys::Datum::from(pg_sys::GetCurrentTransactionStartTimestamp())));
        set(7, Some(pg_sys::Datum::from(txid as i64)));
        let tuple = pg_sys::heap_form_tuple((*rel).rd_att, values.as_mut_ptr(), nulls.as_mut_ptr());
        pg_sys::simple_heap_insert(rel, tuple);
        let index = pg_sys::index_open(target.indexes[part as usize], pg_sys::RowExclusiveLock as i32);
        let mut key = [pg_sys::Datum::from(if target.index_on_txid { txid as i64 } else { id })];
        let mut key_null = [false];
        pg_sys::index_insert(
            index,
            key.as_mut_ptr(),
            key_null.as_mut_ptr(),
            &mut (*tuple).t_self,
            rel,
            pg_sys::IndexUniqueCheck::UNIQUE_CHECK_NO,
            false,
            target.index_infos[part as usize],
        );
        pg_sys::index_close(index, pg_sys::NoLock as i32);
        pg_sys::table_close(rel, pg_sys::NoLock as i32);
        pg_sys::heap_freetuple(tuple);
        id
    };
    request_wake_at_commit();
    id
}

/// Records a change that could not be queued as a message (for example a
/// channel template column that is NULL) in `ably.dead_letters`, so that it
/// is visible and can be retried instead of being silently lost.
pub fn dead_letter_now(rule_id: i64, name: Option<&str>, data: &str, reason: &str) {
    let id = unsafe { pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| nextval_internal(target().sequence, false)) };
    let now = pg_sys::Datum::from(unsafe { pg_sys::GetCurrentTransactionStartTimestamp() });
    Table::open("dead_letters", pg_sys::RowExclusiveLock).insert(&[
        ("id", Some(pg_sys::Datum::from(id))),
        ("rule_id", Some(pg_sys::Datum::from(rule_id))),
        ("channel", None),
        ("name", name.map(text_datum)),
        ("data", Some(text_datum(data))),
        ("enqueued_at", Some(now)),
        ("failed_at", Some(now)),
        ("error_message", Some(text_datum(reason))),
    ]);
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
