//! Shared memory: one slot per served database, written by that database's
//! worker and read by every backend (to wake the worker at commit, to pick
//! the queue part, and for `ably.status()`).
//!
//! Plain atomics, no locks on the hot path. Text fields (the last error) are
//! behind an LWLock. Only present when ably_pg is in shared_preload_libraries.

use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgAtomic, PgLwLock};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU32, AtomicU64, Ordering};

pub const MAX_DATABASES: usize = 8;
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
            _ => WorkerState::Starting,
        }
    }
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
    slots: [Slot; MAX_DATABASES],
}

impl Default for Slots {
    fn default() -> Self {
        Slots { slots: std::array::from_fn(|_| Slot::default()) }
    }
}

unsafe impl PGRXSharedMemory for Slots {}

#[derive(Clone, Copy)]
pub struct ErrorTexts {
    texts: [[u8; ERROR_TEXT]; MAX_DATABASES],
    lens: [u16; MAX_DATABASES],
}

impl Default for ErrorTexts {
    fn default() -> Self {
        ErrorTexts { texts: [[0; ERROR_TEXT]; MAX_DATABASES], lens: [0; MAX_DATABASES] }
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
    if !preloaded() {
        return None;
    }
    let dboid = dboid.to_u32();
    SLOTS.get().slots.iter().find(|s| s.dboid.load(Ordering::Acquire) == dboid)
}

fn slot_index(dboid: pg_sys::Oid) -> Option<usize> {
    if !preloaded() {
        return None;
    }
    SLOTS.get().slots.iter().position(|s| s.dboid.load(Ordering::Acquire) == dboid.to_u32())
}

/// The queue part writers of this database use, if a worker published it.
pub fn current_part(dboid: pg_sys::Oid) -> Option<i16> {
    slot_of(dboid)
        .map(|s| s.part.load(Ordering::Acquire))
        .filter(|p| *p >= 0)
        .map(|p| p as i16)
}

pub fn wake_worker(dboid: pg_sys::Oid) {
    let Some(slot) = slot_of(dboid) else { return };
    if !slot.wants_wake.swap(false, Ordering::SeqCst) {
        return;
    }
    let procno = slot.procno.load(Ordering::Acquire);
    if procno >= 0 {
        unsafe {
            let proc_ = (*pg_sys::ProcGlobal).allProcs.add(procno as usize);
            pg_sys::SetLatch(&mut (*proc_).procLatch);
        }
    }
}

/// The worker's handle on its own slot.
pub struct WorkerSlot {
    index: usize,
}

impl WorkerSlot {
    /// Claims the slot for `dboid` (reusing it after a restart).
    pub fn claim(dboid: pg_sys::Oid) -> Option<WorkerSlot> {
        let slots = &SLOTS.get().slots;
        let index = slot_index(dboid).or_else(|| {
            slots.iter().position(|s| {
                s.dboid.compare_exchange(0, dboid.to_u32(), Ordering::AcqRel, Ordering::Acquire).is_ok()
            })
        })?;
        let slot = &slots[index];
        slot.pid.store(unsafe { pg_sys::MyProcPid }, Ordering::Release);
        slot.procno.store(unsafe { (*pg_sys::MyProc).pgprocno }, Ordering::Release);
        slot.part.store(-1, Ordering::Release);
        slot.started_at.store(now_micros(), Ordering::Release);
        slot.messages.store(0, Ordering::Release);
        slot.requests.store(0, Ordering::Release);
        Some(WorkerSlot { index })
    }

    fn slot(&self) -> &'static Slot {
        &SLOTS.get().slots[self.index]
    }

    pub fn set_state(&self, state: WorkerState) {
        self.slot().state.store(state as i32, Ordering::Release);
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

    pub fn release(&self) {
        let slot = self.slot();
        slot.procno.store(-1, Ordering::Release);
        slot.pid.store(0, Ordering::Release);
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
        (
            slot.last_error_at.load(Ordering::Acquire),
            (status != 0).then_some(status),
            (code != 0).then_some(code),
            text,
        )
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

/// Microseconds since the PostgreSQL epoch (2000-01-01), i.e. a timestamptz.
fn now_micros() -> i64 {
    unsafe { pg_sys::GetCurrentTimestamp() }
}
