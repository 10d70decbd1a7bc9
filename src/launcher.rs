//! The launcher: one background worker, started with the server, that keeps
//! one delivery worker running per database with ably_pg installed (the
//! TimescaleDB pattern). No setting and no restart: CREATE EXTENSION in a
//! new database starts its worker within a second; DROP EXTENSION or DROP
//! DATABASE stops it.
//!
//! Invariants:
//! - A worker runs only in a database that allows connections, is not a
//!   template, and is in `ably.database` when that allow-list is set.
//! - A worker that stopped is started again a second later, unless it said
//!   the extension is gone (then only a CREATE EXTENSION, which asks at
//!   commit, starts it again), or that the database is being dropped.
//! - At most `ably.max_workers` workers; when no slot is free the launcher
//!   says so in the log (once per database) and in that database's
//!   `ably.status()`.
//!
//! The launcher connects to no database: it reads the shared catalog
//! pg_database only. Workers are dynamic background workers it starts and
//! watches; after the launcher restarts, running workers are adopted by the
//! pid they published.

use crate::catalog::cstr;
use crate::guc;
use crate::shared::{self, ExitReason};
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, DynamicBackgroundWorker, SignalWakeFlags};
use pgrx::prelude::*;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How soon a stopped worker is started again.
const RESTART_DELAY: Duration = Duration::from_secs(1);
/// How long a database that was being dropped is left alone.
const DROPPING_DELAY: Duration = Duration::from_secs(10);
/// How often the launcher looks at the list of databases without a request.
const RESCAN_EVERY: Duration = Duration::from_secs(1);

pub fn register() {
    BackgroundWorkerBuilder::new("ably_pg launcher")
        .set_type("ably_pg launcher")
        .set_function("ably_pg_launcher_main")
        .set_library("ably_pg")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::ConsistentState)
        .set_restart_time(Some(Duration::from_secs(1)))
        .load();
}

/// What the launcher knows about one database.
struct Database {
    name: String,
    slot: Option<usize>,
    handle: Option<DynamicBackgroundWorker>,
    /// The worker said ably_pg is not installed here.
    no_extension: bool,
    /// A CREATE EXTENSION asked for a worker since the last start: a worker
    /// that found no extension before that commit does not count.
    requested: bool,
    not_before: Instant,
    warned_no_slot: bool,
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn ably_pg_launcher_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi(None, None);
    shared::launcher::register_self();
    log!("ably_pg launcher started");
    let mut databases: HashMap<pg_sys::Oid, Database> = HashMap::new();
    let mut last_scan = Instant::now() - RESCAN_EVERY;
    loop {
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
            last_scan = Instant::now() - RESCAN_EVERY;
        }
        if BackgroundWorker::sigterm_received() {
            break;
        }
        let requested = shared::launcher::take_requests();
        for dboid in &requested {
            if let Some(db) = databases.get_mut(dboid) {
                db.no_extension = false;
                db.requested = true;
                db.not_before = Instant::now();
            }
        }
        if !requested.is_empty() || last_scan.elapsed() >= RESCAN_EVERY {
            supervise(&mut databases);
            last_scan = Instant::now();
        }
        if !BackgroundWorker::wait_latch(Some(Duration::from_millis(250))) {
            break;
        }
    }
    shared::launcher::unregister_self();
    log!("ably_pg launcher stopped");
}

/// One pass: start, restart and stop workers to match the databases.
fn supervise(databases: &mut HashMap<pg_sys::Oid, Database>) {
    let listed = BackgroundWorker::transaction(list_databases);
    let allowed = guc::allowed_databases();
    let wanted: HashMap<pg_sys::Oid, String> = listed
        .into_iter()
        .filter(|(_, name)| allowed.as_ref().is_none_or(|list| list.iter().any(|a| a == name)))
        .collect();
    // Databases gone or no longer allowed: stop their workers, free slots.
    let gone: Vec<pg_sys::Oid> = databases.keys().filter(|oid| !wanted.contains_key(oid)).copied().collect();
    for oid in gone {
        if let Some(db) = databases.remove(&oid) {
            if let Some(handle) = db.handle {
                let _ = handle.terminate();
            }
            if let Some(slot) = db.slot {
                shared::launcher::release(slot);
            }
        }
    }
    let limit = guc::MAX_WORKERS.get().max(1) as usize;
    let now = Instant::now();
    for (oid, name) in wanted {
        let db = databases.entry(oid).or_insert_with(|| Database {
            name: name.clone(),
            slot: None,
            handle: None,
            no_extension: false,
            requested: false,
            not_before: now,
            warned_no_slot: false,
        });
        db.name = name;
        // A worker that stopped: learn why.
        let stopped = match (&db.handle, db.slot) {
            (Some(handle), _) => handle.pid().is_err(),
            (None, Some(slot)) => !shared::launcher::alive(slot),
            (None, None) => false,
        };
        if stopped {
            let slot = db.slot.take().expect("a started worker has a slot");
            db.handle = None;
            match shared::launcher::exit_reason(slot) {
                ExitReason::NoExtension => db.no_extension = !db.requested,
                ExitReason::DatabaseDropping => db.not_before = now + DROPPING_DELAY,
                ExitReason::None | ExitReason::NeedsUpdate => db.not_before = now + RESTART_DELAY,
            }
            shared::launcher::release(slot);
        }
        if db.slot.is_none() {
            // A worker started by an earlier launcher: adopt it.
            db.slot = shared::launcher::running_slot_of(oid);
        }
        if db.slot.is_some() || db.no_extension || now < db.not_before {
            continue;
        }
        let Some(slot) = shared::launcher::claim(oid, limit) else {
            if !db.warned_no_slot {
                warning!(
                    "ably_pg: no free worker slot for database \"{}\"; raise ably.max_workers (now {limit}) and restart",
                    db.name
                );
                db.warned_no_slot = true;
            }
            continue;
        };
        db.warned_no_slot = false;
        match launch(oid, &db.name, slot) {
            Some(handle) => {
                db.slot = Some(slot);
                db.handle = Some(handle);
                db.requested = false;
            }
            None => {
                shared::launcher::release(slot);
                db.not_before = now + RESTART_DELAY;
            }
        }
    }
}

fn launch(dboid: pg_sys::Oid, name: &str, slot: usize) -> Option<DynamicBackgroundWorker> {
    shared::launcher::clear_exit_reason(slot);
    let started = BackgroundWorkerBuilder::new(&format!("ably_pg worker for {name}"))
        .set_type("ably_pg worker")
        .set_function("ably_pg_worker_main")
        .set_library("ably_pg")
        .set_argument(Some(pg_sys::Datum::from(slot)))
        .set_extra(&dboid.to_u32().to_string())
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::ConsistentState)
        .set_restart_time(None)
        .set_notify_pid(unsafe { pg_sys::MyProcPid })
        .load_dynamic();
    match started {
        Ok(handle) => Some(handle),
        Err(_) => {
            warning!("ably_pg: could not start a worker for database \"{name}\"; raise max_worker_processes");
            None
        }
    }
}

/// Databases that may have a worker: they allow connections and are not
/// templates (read from the shared catalog, no database needed).
fn list_databases() -> Vec<(pg_sys::Oid, String)> {
    let mut out = Vec::new();
    unsafe {
        let rel = pg_sys::table_open(pg_sys::DatabaseRelationId, pg_sys::AccessShareLock as i32);
        let scan = pg_sys::systable_beginscan(rel, pg_sys::InvalidOid, false, std::ptr::null_mut(), 0, std::ptr::null_mut());
        loop {
            let tuple = pg_sys::systable_getnext(scan);
            if tuple.is_null() {
                break;
            }
            let form = pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_database>(tuple);
            if (*form).datallowconn && !(*form).datistemplate {
                out.push(((*form).oid, cstr((*form).datname.data.as_ptr())));
            }
        }
        pg_sys::systable_endscan(scan);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as i32);
    }
    out
}

thread_local! {
    static START_AT_COMMIT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static CALLBACK_REGISTERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[pg_extern(
    volatile,
    sql = r#"
CREATE FUNCTION ably.start_worker() RETURNS void
VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION ably.start_worker() IS
    'Ask the launcher to start this database''s delivery worker when the transaction commits (CREATE EXTENSION does)';
"#
)]
fn start_worker() {
    START_AT_COMMIT.with(|s| s.set(true));
    if !CALLBACK_REGISTERED.with(|r| r.replace(true)) {
        unsafe { pg_sys::RegisterXactCallback(Some(on_xact_event), std::ptr::null_mut()) };
    }
}

/// After COMMIT the extension's objects are visible to the new worker.
#[pg_guard]
unsafe extern "C-unwind" fn on_xact_event(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_COMMIT => {
            if START_AT_COMMIT.with(|s| s.replace(false)) {
                shared::request_worker(unsafe { pg_sys::MyDatabaseId });
            }
        }
        pg_sys::XactEvent::XACT_EVENT_ABORT => START_AT_COMMIT.with(|s| s.set(false)),
        _ => {}
    }
}

/// pg_db_role_setting (catalog/pg_db_role_setting.h; its header is not in
/// pgrx's bindings).
const DB_ROLE_SETTING: pg_sys::Oid = pg_sys::Oid::from_u32(2964);

/// Re-applies `ALTER DATABASE ... SET ably.*` values (a worker's reload:
/// PostgreSQL applies them only at connection).
pub fn apply_database_settings() {
    unsafe extern "C-unwind" {
        fn ApplySetting(
            snapshot: pg_sys::Snapshot,
            databaseid: pg_sys::Oid,
            roleid: pg_sys::Oid,
            relsetting: pg_sys::Relation,
            source: pg_sys::GucSource::Type,
        );
    }
    BackgroundWorker::transaction(|| unsafe {
        let rel = pg_sys::table_open(DB_ROLE_SETTING, pg_sys::AccessShareLock as i32);
        let snapshot = pg_sys::RegisterSnapshot(pg_sys::GetCatalogSnapshot(DB_ROLE_SETTING));
        pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| {
            ApplySetting(snapshot, pg_sys::MyDatabaseId, pg_sys::InvalidOid, rel, pg_sys::GucSource::PGC_S_DATABASE)
        });
        pg_sys::UnregisterSnapshot(snapshot);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as i32);
    });
    // The worker's own search path stays pinned whatever a database setting says.
    crate::identity::pin_search_path_for_session();
}
