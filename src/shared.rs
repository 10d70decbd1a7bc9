//! Shared memory: the launcher's mailbox and one slot per served database,
//! written by the launcher and that database's worker and read by every
//! backend (to wake the worker at commit, to pick the queue part, and for
//! `ably.status()`).
//!
//! Plain atomics, no locks on the hot path. Text fields (the last error) are
//! behind an LWLock. Only present when ably_pg is in shared_preload_libraries.
//! Slot ownership: the launcher claims and frees slots (`dboid`); the worker
//! of a slot writes everything else.

use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgAtomic, PgLwLock};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU32, AtomicU64, Ordering};

/// Slots compiled in; `ably.max_workers` says how many are used.
pub const MAX_SLOTS: usize = 64;
const ERROR_TEXT: usize = 512;

/// What a worker is doing, as shown by `ably.status()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum WorkerState {
    Starting = 0,
    Running = 1,
    PausedAuth = 2,
    BackingOff = 3,
    Standby = 4,
    NoApiKey = 5,
    NoExtension = 6,
    Stopped = 7,
    InvalidConfig = 8,
    NeedsUpdate = 9,
}

impl WorkerState {
    pub fn label(self) -> &'static str {
        match self {
            WorkerState::Starting => "starting",
            WorkerState::Running => "running",
            WorkerState::PausedAuth => "paused-auth",
            WorkerState::BackingOff => "backing-off",
            WorkerState::Standby => "standby",
            WorkerState::NoApiKey => "no-api-key",
            WorkerState::NoExtension => "no-extension",
            WorkerState::Stopped => "stopped",
            WorkerState::InvalidConfig => "invalid-config",
            WorkerState::NeedsUpdate => "needs-update",
        }
    }

    fn from_i32(v: i32) -> WorkerState {
        match v {
            1 => WorkerState::Running,
            2 => WorkerState::PausedAuth,
            3 => WorkerState::BackingOff,
            4 => WorkerState::Standby,
            5 => WorkerState::NoApiKey,
            6 => WorkerState::NoExtension,
            7 => WorkerState::Stopped,
            8 => WorkerState::InvalidConfig,
            9 => WorkerState::NeedsUpdate,
            _ => WorkerState::Starting,
        }
    }
}

/// Why a worker stopped, so that the launcher knows whether to start it
/// again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum ExitReason {
    /// Still running, or it died without saying (crash, terminate): restart.
    None = 0,
    /// ably_pg is not installed in the database: start again only when a
    /// CREATE EXTENSION asks for it.
    NoExtension = 1,
    /// The database is being dropped: leave it alone.
    DatabaseDropping = 2,
    /// (Never an exit: the worker waits.) The extension's tables are an
    /// older version's, until ALTER EXTENSION ably_pg UPDATE.
    NeedsUpdate = 3,
}

#[derive(Default)]
pub struct Slot {
    /// Database served; 0 = free slot.
    dboid: AtomicU32,
    pid: AtomicI32,
    /// PGPROC number of the worker, -1 when it is not running; its latch is
    /// what a committing writer sets.
    procno: AtomicI32,
    state: AtomicI32,
    exit_reason: AtomicI32,
    /// Set by the worker just before it looks at the queue for the last time
    /// and goes to sleep; writers set its latch at COMMIT only then, so a
    /// busy worker is not signalled thousands of times a second.
    wants_wake: AtomicBool,
    /// Queue part writers insert into; -1 until the worker has read it.
    part: AtomicI32,
    started_at: AtomicI64,
    messages: AtomicU64,
    requests: AtomicU64,
    last_error_at: AtomicI64,
    last_error_status: AtomicI32,
    last_error_code: AtomicI32,
    has_error: AtomicBool,
}

pub struct Slots {
    /// The launcher's PGPROC number (-1: not running) and its pid.
    launcher_procno: AtomicI32,
    launcher_pid: AtomicI32,
    /// Databases that asked for a worker (CREATE EXTENSION); the launcher
    /// takes them out.
    requests: [AtomicU32; 8],
    /// Set when the launcher found no free slot for some database.
    exhausted: AtomicBool,
    slots: [Slot; MAX_SLOTS],
}

impl Default for Slots {
    fn default() -> Self {
        Slots {
            launcher_procno: AtomicI32::new(-1),
            launcher_pid: AtomicI32::new(0),
            requests: std::array::from_fn(|_| AtomicU32::new(0)),
            exhausted: AtomicBool::new(false),
            slots: std::array::from_fn(|_| Slot::default()),
        }
    }
}

unsafe impl PGRXSharedMemory for Slots {}

#[derive(Clone, Copy)]
pub struct ErrorTexts {
    texts: [[u8; ERROR_TEXT]; MAX_SLOTS],
    lens: [u16; MAX_SLOTS],
}

impl Default for ErrorTexts {
    fn default() -> Self {
        ErrorTexts { texts: [[0; ERROR_TEXT]; MAX_SLOTS], lens: [0; MAX_SLOTS] }
    }
}

unsafe impl PGRXSharedMemory for ErrorTexts {}

static SLOTS: PgAtomic<Slots> = unsafe { PgAtomic::new(c"ably_pg_slots") };
static ERRORS: PgLwLock<ErrorTexts> = unsafe { PgLwLock::new(c"ably_pg_errors") };

/// Set in the postmaster before forking, so every backend inherits it.
static mut PRELOADED: bool = false;

pub fn init() {
    pg_shmem_init!(SLOTS);
    pg_shmem_init!(ERRORS);
    unsafe { PRELOADED = true };
}

pub fn preloaded() -> bool {
    unsafe { PRELOADED }
}

fn slot_of(dboid: pg_sys::Oid) -> Option<&'static Slot> {
    slot_index(dboid).map(|i| &SLOTS.get().slots[i])
}

fn slot_index(dboid: pg_sys::Oid) -> Option<usize> {
    if !preloaded() || dboid == pg_sys::InvalidOid {
        return None;
    }
    SLOTS.get().slots.iter().position(|s| s.dboid.load(Ordering::Acquire) == dboid.to_u32())
}

/// The queue part writers of this database use, if a worker published it.
pub fn current_part(dboid: pg_sys::Oid) -> Option<i16> {
    slot_of(dboid).map(|s| s.part.load(Ordering::Acquire)).filter(|p| *p >= 0).map(|p| p as i16)
}

unsafe fn set_latch_of(procno: i32) {
    if procno >= 0 {
        unsafe {
            let proc_ = (*pg_sys::ProcGlobal).allProcs.add(procno as usize);
            pg_sys::SetLatch(&mut (*proc_).procLatch);
        }
    }
}

pub fn wake_worker(dboid: pg_sys::Oid) {
    let Some(slot) = slot_of(dboid) else { return };
    if !slot.wants_wake.swap(false, Ordering::SeqCst) {
        return;
    }
    unsafe { set_latch_of(slot.procno.load(Ordering::Acquire)) };
}

/// Asks the launcher to start a worker for this database (after CREATE
/// EXTENSION commits).
pub fn request_worker(dboid: pg_sys::Oid) {
    if !preloaded() {
        return;
    }
    let shared = SLOTS.get();
    let mine = dboid.to_u32();
    if !shared.requests.iter().any(|r| r.load(Ordering::Acquire) == mine) {
        for r in &shared.requests {
            if r.compare_exchange(0, mine, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                break;
            }
        }
    }
    unsafe { set_latch_of(shared.launcher_procno.load(Ordering::Acquire)) };
}

/// The launcher's side of the shared state.
pub mod launcher {
    use super::*;

    pub fn register_self() {
        let shared = SLOTS.get();
        shared.launcher_pid.store(unsafe { pg_sys::MyProcPid }, Ordering::Release);
        shared.launcher_procno.store(unsafe { my_procno() }, Ordering::Release);
    }

    pub fn unregister_self() {
        let shared = SLOTS.get();
        shared.launcher_procno.store(-1, Ordering::Release);
        shared.launcher_pid.store(0, Ordering::Release);
    }

    /// Databases that asked for a worker since the last call.
    pub fn take_requests() -> Vec<pg_sys::Oid> {
        SLOTS
            .get()
            .requests
            .iter()
            .map(|r| r.swap(0, Ordering::AcqRel))
            .filter(|d| *d != 0)
            .map(pg_sys::Oid::from)
            .collect()
    }

    /// Claims a free slot (among the first `limit`) for `dboid`.
    pub fn claim(dboid: pg_sys::Oid, limit: usize) -> Option<usize> {
        let slots = &SLOTS.get().slots;
        if let Some(existing) = slot_index(dboid) {
            release(existing);
        }
        let index = slots.iter().take(limit.min(MAX_SLOTS)).position(|s| {
            s.dboid.compare_exchange(0, dboid.to_u32(), Ordering::AcqRel, Ordering::Acquire).is_ok()
        });
        SLOTS.get().exhausted.store(index.is_none(), Ordering::Release);
        let index = index?;
        let slot = &slots[index];
        slot.pid.store(0, Ordering::Release);
        slot.procno.store(-1, Ordering::Release);
        slot.part.store(-1, Ordering::Release);
        slot.state.store(WorkerState::Starting as i32, Ordering::Release);
        slot.exit_reason.store(ExitReason::None as i32, Ordering::Release);
        slot.has_error.store(false, Ordering::Release);
        Some(index)
    }

    pub fn release(index: usize) {
        let slot = &SLOTS.get().slots[index];
        slot.procno.store(-1, Ordering::Release);
        slot.pid.store(0, Ordering::Release);
        slot.part.store(-1, Ordering::Release);
        slot.dboid.store(0, Ordering::Release);
    }

    /// Whether the worker of a slot is running (by its published pid).
    pub fn alive(index: usize) -> bool {
        let pid = SLOTS.get().slots[index].pid.load(Ordering::Acquire);
        pid != 0 && unsafe { libc::kill(pid, 0) } == 0
    }

    /// The slot of a running worker for `dboid`, if any; a slot left by a
    /// worker that is gone is freed.
    pub fn running_slot_of(dboid: pg_sys::Oid) -> Option<usize> {
        let index = slot_index(dboid)?;
        if alive(index) {
            Some(index)
        } else {
            release(index);
            None
        }
    }

    pub fn exit_reason(index: usize) -> ExitReason {
        match SLOTS.get().slots[index].exit_reason.load(Ordering::Acquire) {
            1 => ExitReason::NoExtension,
            2 => ExitReason::DatabaseDropping,
            _ => ExitReason::None,
        }
    }

    /// Before a restart: the previous run's reason no longer applies.
    pub fn clear_exit_reason(index: usize) {
        SLOTS.get().slots[index].exit_reason.store(ExitReason::None as i32, Ordering::Release);
    }
}

unsafe fn my_procno() -> i32 {
    unsafe {
        #[cfg(any(feature = "pg15", feature = "pg16"))]
        {
            (*pg_sys::MyProc).pgprocno
        }
        #[cfg(not(any(feature = "pg15", feature = "pg16")))]
        {
            pg_sys::MyProcNumber
        }
    }
}

/// The worker's handle on its own slot.
pub struct WorkerSlot {
    index: usize,
}

impl WorkerSlot {
    /// Takes over slot `index`, which the launcher claimed for this database.
    pub fn attach(index: usize) -> Option<WorkerSlot> {
        let slot = SLOTS.get().slots.get(index)?;
        if slot.dboid.load(Ordering::Acquire) != unsafe { pg_sys::MyDatabaseId }.to_u32() {
            return None;
        }
        slot.pid.store(unsafe { pg_sys::MyProcPid }, Ordering::Release);
        slot.procno.store(unsafe { my_procno() }, Ordering::Release);
        slot.part.store(-1, Ordering::Release);
        slot.started_at.store(now_micros(), Ordering::Release);
        slot.messages.store(0, Ordering::Release);
        slot.requests.store(0, Ordering::Release);
        slot.exit_reason.store(ExitReason::None as i32, Ordering::Release);
        Some(WorkerSlot { index })
    }

    fn slot(&self) -> &'static Slot {
        &SLOTS.get().slots[self.index]
    }

    pub fn set_state(&self, state: WorkerState) {
        self.slot().state.store(state as i32, Ordering::Release);
    }

    pub fn set_exit_reason(&self, reason: ExitReason) {
        self.slot().exit_reason.store(reason as i32, Ordering::Release);
    }

    /// See [`Slot::wants_wake`]: call with `true` before the last look at
    /// the queue, so that a commit after that look always wakes the worker.
    pub fn set_wants_wake(&self, wants: bool) {
        self.slot().wants_wake.store(wants, Ordering::SeqCst);
    }

    pub fn set_part(&self, part: i16) {
        self.slot().part.store(part as i32, Ordering::Release);
    }

    pub fn count_delivery(&self, messages: u64, requests: u64) {
        self.slot().messages.fetch_add(messages, Ordering::AcqRel);
        self.slot().requests.fetch_add(requests, Ordering::AcqRel);
    }

    /// Records the last delivery error. `message` must not contain secrets
    /// (the publisher's errors never do).
    pub fn set_error(&self, status: Option<u16>, code: Option<u32>, message: &str) {
        let slot = self.slot();
        slot.last_error_at.store(now_micros(), Ordering::Release);
        slot.last_error_status.store(status.map(i32::from).unwrap_or(0), Ordering::Release);
        slot.last_error_code.store(code.map(|c| c as i32).unwrap_or(0), Ordering::Release);
        let mut errors = ERRORS.exclusive();
        let bytes = message.as_bytes();
        let mut len = bytes.len().min(ERROR_TEXT);
        while !message.is_char_boundary(len) {
            len -= 1;
        }
        errors.texts[self.index][..len].copy_from_slice(&bytes[..len]);
        errors.lens[self.index] = len as u16;
        slot.has_error.store(true, Ordering::Release);
    }

    pub fn clear_error(&self) {
        self.slot().has_error.store(false, Ordering::Release);
    }

    pub fn release(&self) {
        let slot = self.slot();
        slot.procno.store(-1, Ordering::Release);
        slot.pid.store(0, Ordering::Release);
        slot.part.store(-1, Ordering::Release);
        slot.state.store(WorkerState::Stopped as i32, Ordering::Release);
    }
}

/// A consistent-enough copy of a slot for `ably.status()`.
pub struct SlotView {
    pub pid: i32,
    pub state: WorkerState,
    pub started_at_micros: i64,
    pub messages: u64,
    pub requests: u64,
    pub last_error: Option<(i64, Option<i32>, Option<i32>, String)>,
}

pub fn view(dboid: pg_sys::Oid) -> Option<SlotView> {
    let index = slot_index(dboid)?;
    let slot = &SLOTS.get().slots[index];
    let last_error = slot.has_error.load(Ordering::Acquire).then(|| {
        let errors = ERRORS.share();
        let text = String::from_utf8_lossy(&errors.texts[index][..errors.lens[index] as usize]).into_owned();
        let status = slot.last_error_status.load(Ordering::Acquire);
        let code = slot.last_error_code.load(Ordering::Acquire);
        (slot.last_error_at.load(Ordering::Acquire), (status != 0).then_some(status), (code != 0).then_some(code), text)
    });
    Some(SlotView {
        pid: slot.pid.load(Ordering::Acquire),
        state: WorkerState::from_i32(slot.state.load(Ordering::Acquire)),
        started_at_micros: slot.started_at.load(Ordering::Acquire),
        messages: slot.messages.load(Ordering::Acquire),
        requests: slot.requests.load(Ordering::Acquire),
        last_error,
    })
}

/// Whether the launcher is running, and whether it ran out of slots.
pub fn launcher_view() -> (bool, bool) {
    if !preloaded() {
        return (false, false);
    }
    let shared = SLOTS.get();
    (shared.launcher_pid.load(Ordering::Acquire) != 0, shared.exhausted.load(Ordering::Acquire))
}

/// Microseconds since the PostgreSQL epoch (2000-01-01), i.e. a timestamptz.
fn now_micros() -> i64 {
    unsafe { pg_sys::GetCurrentTimestamp() }
}
