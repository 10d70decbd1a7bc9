//! The delivery worker: one per database with ably_pg installed, started by
//! the launcher (src/launcher.rs). It moves the queue to Ably; it never
//! deletes or updates a queue row.
//!
//! A round, on the worker's only PostgreSQL thread:
//! 1. Apply what the publisher threads reported (src/lanes.rs says what):
//!    acknowledged batches are settled in memory (a recorded one's row is
//!    deleted); refused messages move to `ably.dead_letters` and batches
//!    that must change are replaced by recorded ones, each together with
//!    the tick's `settled` in the same transaction.
//! 2. Take a tick when new rows may have committed (src/tick.rs), and cut
//!    the rows of the oldest uncut ticks into batches (src/batch.rs): one
//!    `ably.ticks` row per cut, committed synchronously, so a batch's ids
//!    are durable before it is first sent.
//! 3. Load the rows of the batches to send now (and of the batch behind
//!    each request in flight) and hand them to the publisher threads, at
//!    most one request per channel.
//! 4. Every 250 ms: write the settled batches of ticks that stay and delete
//!    the ticks that are done, then rotate the queue parts and TRUNCATE a
//!    drained one (in that order, in one transaction: a part is never
//!    emptied while a stored tick that needs its rows is not settled).
//!
//! A round runs steps 1–4 in one transaction only when it has something to
//! do there; a round that follows acknowledgements of cut batches (settled
//! in memory, written by step 4) and sends batches already loaded needs
//! none. Ticks are taken at most every [`tick_spacing`] (the first after a
//! quiet moment at once), so that under load a round carries the rows of
//! many commits: 2 ms up to 2,000 rows a second, then 1 ms per 1,000 rows a
//! second, at most 8 ms. A tick's fixed cost (a transaction, a stored row,
//! a synchronous commit, an index probe per running writer) is then paid
//! for at least a few dozen rows, and batches carry more than one message
//! per channel, while at low rates a commit waits at most 2 ms.
//!
//! Crash cases (each re-reads `ably.queue_state`, `ably.ticks` and
//! `ably.batches`, cuts every unsettled stored tick again and continues):
//! - before step 2 commits: the tick is gone; its rows are cut into a
//!   later tick, into batches that were never sent.
//! - after step 2, before or during sending: the tick's cut is repeated and
//!   gives the same batches and ids (src/batch.rs); Ably de-duplicates what
//!   it already had. Recorded batches are re-sent from their rows.
//! - after Ably acknowledged, before step 4 wrote it: the same.
//! - after a replacement or a dead letter: the tick's `settled` and the rows
//!   that replace the batch were committed together; neither or both.
//! - during rotation: see src/queue.rs; a part is truncated only when every
//!   transaction that could write to it has ended and its rows are settled
//!   in memory and in `ably.ticks`.
//!
//! The worker sleeps on its latch and on a pipe the publisher threads write
//! to: a COMMIT that queued something wakes it (`ably.poll_interval` is only
//! a fallback), and so does every outcome. It exits within a second of
//! postmaster death, SIGTERM (the launcher starts it again unless the server
//! is shutting down) or DROP EXTENSION (without an ERROR), and leaves a
//! database that is being dropped.

use crate::batch::{self, Origin, Record};
use crate::catalog;
use crate::guc;
use crate::identity;
use crate::lanes::{Action, Lanes, Pending};
use crate::publisher::{self, display_channel, Batch, Job, OutMessage, Outcome, PublishError, Publisher, PublisherConfig};
use crate::queue::PARTS;
use crate::queue_state::{self, QueueState};
use crate::shared::{ExitReason, WorkerSlot, WorkerState};
use crate::tick::{self, Event, Tick};
use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::prelude::*;
use pgrx::PgTryBuilder;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// While delivery is paused by an auth failure, how often to try again even
/// without a configuration reload (a revoked key may be re-enabled).
const AUTH_RETRY: Duration = Duration::from_secs(60);

/// Queue rotation, truncation and the DROP DATABASE check run this often.
const MAINTENANCE_EVERY: Duration = Duration::from_millis(250);

/// While batches cannot be cut (too many pending), a tick is taken at most
/// this often, so that uncut ticks stay small and few.
const IDLE_TICK_EVERY: Duration = Duration::from_secs(1);

/// Ticks are taken at most this often (the first commit after a pause is
/// ticked at once): under load, rows committed meanwhile share one round,
/// one stored tick and one synchronous commit instead of a round each.
/// The spacing grows with the rate of rows cut, see [`tick_spacing`].
const TICK_SPACING: Duration = Duration::from_millis(2);
const MAX_TICK_SPACING: Duration = Duration::from_millis(8);
/// The rate of rows cut is measured over windows this long.
const RATE_WINDOW: Duration = Duration::from_millis(100);

/// The spacing of ticks at `rows_per_second` rows cut: [`TICK_SPACING`] up
/// to 2,000 rows a second, then 1 ms per 1,000 rows a second, at most
/// [`MAX_TICK_SPACING`].
fn tick_spacing(rows_per_second: f64) -> Duration {
    // 1 ms per 1,000 rows a second is one microsecond per row a second.
    Duration::from_secs_f64((rows_per_second / 1e6).clamp(TICK_SPACING.as_secs_f64(), MAX_TICK_SPACING.as_secs_f64()))
}

unsafe extern "C-unwind" {
    fn PostmasterIsAliveInternal() -> bool;
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn ably_pg_worker_main(arg: pg_sys::Datum) {
    let index = arg.value();
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let dboid = pg_sys::Oid::from(BackgroundWorker::get_extra().parse::<u32>().unwrap_or(0));
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(dboid), None);
    // The worker runs as the bootstrap superuser: no search_path that a
    // database or role setting (the database owner's) could supply.
    identity::pin_search_path_for_session();
    let Some(slot) = WorkerSlot::attach(index) else {
        log!("ably_pg: worker slot {index} is not for this database; exiting");
        return;
    };
    let (database, installed) = BackgroundWorker::transaction(|| {
        (unsafe { catalog::cstr(pg_sys::get_database_name(dboid)) }, catalog::extension().is_some())
    });
    if !installed {
        slot.set_state(WorkerState::NoExtension);
        slot.set_exit_reason(ExitReason::NoExtension);
        slot.release();
        return;
    }
    log!("ably_pg worker started for database {database}");
    let mut worker = Worker::new(slot);
    let reason = worker.run();
    worker.slot.set_exit_reason(reason);
    worker.publisher = None;
    worker.slot.release();
    match reason {
        ExitReason::None => log!("ably_pg worker for database {database} stopped"),
        ExitReason::NoExtension => log!("ably_pg worker for database {database} stopped: the extension was dropped"),
        ExitReason::DatabaseDropping => log!("ably_pg worker for database {database} stopped: the database is being dropped"),
        ExitReason::NeedsUpdate => {}
    }
}

/// The publisher and what it was started from. The fingerprint holds the
/// key, so it is never logged.
struct Active {
    fingerprint: String,
    publisher: Publisher,
}

struct Worker {
    slot: WorkerSlot,
    publisher: Option<Active>,
    wake: WakePipe,
    /// The latch, the wake pipe and postmaster death, registered once
    /// (WaitLatchOrSocket builds and closes an epoll set on every call).
    wait_set: *mut pg_sys::WaitEventSet,
    lanes: Lanes,
    actions: Vec<Action>,
    state: Option<QueueState>,
    /// The last tick cut into batches (the lower bound of the next one) and
    /// the ticks taken since, oldest first (in memory only).
    cut: Option<Tick>,
    uncut: VecDeque<Tick>,
    /// The stored ticks and how far their batches are settled.
    stored: BTreeMap<i64, Stored>,
    /// The next in-memory batch key.
    next_key: i64,
    /// A tick was due but waits for the tick spacing.
    tick_deferred: bool,
    /// What ensure_publisher found, until the next reload.
    configured: Option<bool>,
    channels: HashMap<String, Rc<str>>,
    /// Committed rows cut from each part since the worker started (for
    /// rotation).
    rows_in_part: [u64; PARTS as usize],
    paused_since: Option<Instant>,
    last_maintenance: Instant,
    last_tick_at: Instant,
    /// Rows cut since `rate_since`, the start of the current rate window.
    rate_rows: usize,
    rate_since: Instant,
    /// The tick spacing set from the last full window's rate.
    spacing: Duration,
    jobs_in_flight: usize,
    batch_size: usize,
    /// Transaction ids of the worker's own recent rounds (they queue
    /// nothing, so they are no reason for a new tick).
    own_xids: Vec<u64>,
    /// The extension the in-memory state belongs to.
    extension_oid: Option<pg_sys::Oid>,
}

/// A stored tick, as the worker tracks it (src/batch.rs).
#[derive(Debug, Default)]
struct Stored {
    /// Batches of its cut (0: not cut by this scheme).
    batch_count: i32,
    settled: BTreeSet<i32>,
    /// Its recorded batches not yet acknowledged.
    recorded_pending: usize,
    /// `settled` changed since it was last written.
    dirty: bool,
    /// The queue parts its rows are in (bit n: `ably.queue_n`). A part is
    /// not truncated while an unsettled tick has rows in it: repeating the
    /// cut needs all of the tick's rows.
    parts: u8,
}

fn parts_of(events: &[Event]) -> u8 {
    events.iter().fold(0, |mask, e| mask | (1u8 << e.part))
}

impl Stored {
    fn is_settled(&self) -> bool {
        self.recorded_pending == 0 && self.settled.len() >= self.batch_count.max(0) as usize
    }
}

fn poll_interval() -> Duration {
    Duration::from_millis(guc::POLL_INTERVAL_MS.get().max(10) as u64)
}

/// Messages cut ahead of delivery at most (more are cut only as these are
/// acknowledged), so memory stays bounded whatever the backlog.
fn cut_ahead() -> usize {
    let batch = guc::BATCH_SIZE.get().max(1) as usize;
    let in_flight = guc::MAX_IN_FLIGHT.get().max(1) as usize;
    (batch * in_flight * 4).max(20_000)
}

impl Worker {
    fn new(slot: WorkerSlot) -> Worker {
        Worker {
            slot,
            publisher: None,
            wake: WakePipe::new(),
            wait_set: std::ptr::null_mut(),
            lanes: Lanes::new(guc::BATCH_SIZE.get().max(1) as usize),
            actions: Vec::new(),
            state: None,
            cut: None,
            uncut: VecDeque::new(),
            channels: HashMap::new(),
            rows_in_part: [0; PARTS as usize],
            paused_since: None,
            last_maintenance: Instant::now() - MAINTENANCE_EVERY,
            last_tick_at: Instant::now(),
            rate_rows: 0,
            rate_since: Instant::now(),
            spacing: TICK_SPACING,
            jobs_in_flight: 0,
            batch_size: guc::BATCH_SIZE.get().max(1) as usize,
            stored: BTreeMap::new(),
            next_key: 1,
            tick_deferred: false,
            configured: None,
            own_xids: Vec::new(),
            extension_oid: None,
        }
    }

    /// Runs rounds until asked to stop; says why it stopped.
    fn run(&mut self) -> ExitReason {
        let mut sleep = Duration::ZERO;
        loop {
            if !sleep.is_zero() {
                self.wait(sleep);
            }
            if !unsafe { PostmasterIsAliveInternal() } {
                unsafe { pg_sys::proc_exit(1) };
            }
            // Absorb what other backends ask of every process, such as the
            // ProcSignalBarrier of DROP DATABASE: an idle round may touch
            // nothing that would check for interrupts on its own.
            pgrx::check_for_interrupts!();
            if BackgroundWorker::sigterm_received() {
                return ExitReason::None;
            }
            if BackgroundWorker::sighup_received() {
                self.reload();
            }
            match self.step() {
                Ok(next) => sleep = next,
                Err(ExitReason::NeedsUpdate) => {
                    self.slot.set_state(WorkerState::NeedsUpdate);
                    sleep = poll_interval();
                }
                Err(reason) => return reason,
            }
        }
    }

    /// Sleeps until the latch is set (a commit, a signal), a publisher
    /// thread reports, or `timeout` passes. Exits at once if the postmaster
    /// dies.
    fn wait(&mut self, timeout: Duration) {
        unsafe {
            if self.wait_set.is_null() {
                // Lives as long as the process (TopMemoryContext, no
                // resource owner).
                #[cfg(any(feature = "pg15", feature = "pg16"))]
                let set = pg_sys::CreateWaitEventSet(pg_sys::TopMemoryContext, 3);
                #[cfg(not(any(feature = "pg15", feature = "pg16")))]
                let set = pg_sys::CreateWaitEventSet(std::ptr::null_mut(), 3);
                pg_sys::AddWaitEventToSet(set, pg_sys::WL_LATCH_SET, pg_sys::PGINVALID_SOCKET, pg_sys::MyLatch, std::ptr::null_mut());
                pg_sys::AddWaitEventToSet(set, pg_sys::WL_EXIT_ON_PM_DEATH, pg_sys::PGINVALID_SOCKET, std::ptr::null_mut(), std::ptr::null_mut());
                pg_sys::AddWaitEventToSet(set, pg_sys::WL_SOCKET_READABLE, self.wake.read_fd(), std::ptr::null_mut(), std::ptr::null_mut());
                self.wait_set = set;
            }
            let mut event: pg_sys::WaitEvent = std::mem::zeroed();
            pg_sys::WaitEventSetWait(self.wait_set, timeout.as_millis().max(1) as _, &mut event, 1, pg_sys::PG_WAIT_EXTENSION);
            pg_sys::ResetLatch(pg_sys::MyLatch);
        }
        self.wake.drain();
    }

    fn reload(&mut self) {
        unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        self.configured = None;
        crate::launcher::apply_database_settings();
        self.paused_since = None;
        self.lanes.reset_in_flight();
        let batch_size = guc::BATCH_SIZE.get().max(1) as usize;
        if batch_size != self.batch_size {
            self.batch_size = batch_size;
            let actions = self.lanes.set_batch_size(batch_size);
            self.actions.extend(actions);
        }
    }

    /// One round; returns how long to sleep before the next one, or why
    /// the worker must stop.
    fn step(&mut self) -> Result<Duration, ExitReason> {
        if unsafe { pg_sys::RecoveryInProgress() } {
            self.slot.set_state(WorkerState::Standby);
            return Ok(poll_interval().max(Duration::from_secs(1)));
        }
        let configured = self.ensure_publisher();
        self.collect_outcomes();
        let paused = self.paused_since.is_some_and(|since| since.elapsed() < AUTH_RETRY);
        if !paused && self.paused_since.is_some() {
            self.paused_since = None;
            self.lanes.reset_in_flight();
        }

        // Ask to be woken before looking: a commit after the look sets the
        // latch. A worker that cannot deliver (no key, paused) is not woken
        // by commits: it looks every poll interval, and a reload wakes it.
        let deliver = configured && !paused;
        self.slot.set_wants_wake(deliver);
        self.settle_acknowledged();
        let ready = match self.ready_without_database(deliver) {
            Some(ready) => ready,
            None => self.guarded(|w| w.database_round(deliver))?,
        };
        if deliver {
            self.dispatch(ready);
        }
        self.report_state(configured, paused);

        let now = Instant::now();
        // Not woken by commits when something else wakes it anyway: a
        // reply of a request in flight, work left for the next round, or a
        // tick held back by the tick spacing (its timeout takes the tick, and
        // everything committed meanwhile is in it).
        if self.jobs_in_flight > 0 || !self.actions.is_empty() || self.tick_deferred {
            self.slot.set_wants_wake(false);
        }
        let mut next = poll_interval();
        if let Some(t) = self.lanes.next_wake(now) {
            next = next.min(t - now);
        }
        if let Some(t) = self.lanes.ticks_held_until(now) {
            next = next.min(t - now);
        }
        if self.tick_deferred {
            next = next.min((self.last_tick_at + self.spacing).saturating_duration_since(now));
        }
        if self.settlements_pending() {
            next = next.min(MAINTENANCE_EVERY.saturating_sub(self.last_maintenance.elapsed()));
        }
        if paused {
            next = next.min(AUTH_RETRY.saturating_sub(self.paused_since.map_or(Duration::ZERO, |s| s.elapsed())));
        }
        if !self.actions.is_empty() {
            next = Duration::ZERO;
        }
        Ok(next.max(if self.actions.is_empty() { Duration::from_millis(1) } else { Duration::ZERO }))
    }

    /// Runs `f` in a transaction of its own. If the extension is dropped
    /// under it, or the database is being dropped, the worker stops quietly
    /// instead of raising an ERROR; any other error ends the worker (the
    /// launcher starts it again), which is safe: nothing is acknowledged or
    /// deleted outside a committed transaction.
    fn guarded<R>(&mut self, f: impl FnOnce(&mut Worker) -> R) -> Result<R, ExitReason> {
        unsafe {
            pg_sys::SetCurrentStatementStartTimestamp();
            pg_sys::StartTransactionCommand();
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        }
        match catalog::extension() {
            None => {
                unsafe {
                    pg_sys::PopActiveSnapshot();
                    pg_sys::AbortCurrentTransaction();
                }
                return Err(ExitReason::NoExtension);
            }
            Some(e) if !e.current => {
                // A new library with the old version's tables: wait for
                // ALTER EXTENSION ably_pg UPDATE; touch nothing.
                unsafe {
                    pg_sys::PopActiveSnapshot();
                    pg_sys::AbortCurrentTransaction();
                }
                self.forget();
                return Err(ExitReason::NeedsUpdate);
            }
            Some(e) => {
                // Dropped and created again between two rounds: a new
                // extension, whose state is not this worker's memory.
                if self.extension_oid.is_some_and(|oid| oid != e.oid) {
                    self.forget();
                }
                self.extension_oid = Some(e.oid);
            }
        }
        if database_being_dropped() {
            unsafe {
                pg_sys::PopActiveSnapshot();
                pg_sys::AbortCurrentTransaction();
            }
            return Err(ExitReason::DatabaseDropping);
        }
        let this = &mut *self;
        let result: Result<R, ExitReason> = PgTryBuilder::new(std::panic::AssertUnwindSafe(move || Ok(f(this))))
        .catch_others(|e| {
            // Was the extension dropped under the round? Then stop quietly.
            unsafe {
                pg_sys::AbortCurrentTransaction();
                pg_sys::FlushErrorState();
                pg_sys::StartTransactionCommand();
            }
            let gone = catalog_gone();
            unsafe { pg_sys::CommitTransactionCommand() };
            if gone {
                return Err(ExitReason::NoExtension);
            }
            e.rethrow()
        })
        .execute();
        match result {
            Ok(r) => {
                unsafe {
                    pg_sys::PopActiveSnapshot();
                    pg_sys::CommitTransactionCommand();
                    // A background worker reports its table statistics
                    // itself (at most once a second); without them
                    // autovacuum never sees the dead rows of ably.batches
                    // and ably.ticks.
                    pg_sys::pgstat_report_stat(false);
                }
                Ok(r)
            }
            Err(reason) => {
                // The transaction was aborted: forget what it would have
                // recorded and read the durable state again.
                self.forget();
                Err(reason)
            }
        }
    }

    /// Drops everything in memory that mirrors durable state.
    fn forget(&mut self) {
        self.lanes.clear();
        self.actions.clear();
        self.state = None;
        self.cut = None;
        self.uncut.clear();
        self.publisher = None;
        self.jobs_in_flight = 0;
        self.stored.clear();
        self.own_xids.clear();
        self.rows_in_part = [0; PARTS as usize];
    }

    /// Steps 1–4 of a round in one transaction; returns the batches to send.
    fn database_round(&mut self, deliver: bool) -> Vec<i64> {
        let mut durable = false;
        if self.state.is_none() {
            self.load();
        }
        durable |= self.apply_actions();
        self.maybe_tick();
        // While delivery is paused (no key, refused credentials) nothing is
        // cut: batches would only wait, and a large backlog is cut in
        // pieces once delivery resumes.
        if deliver {
            durable |= self.cut_ticks();
        }
        let ready = if deliver { self.prepare_ready() } else { Vec::new() };
        if self.last_maintenance.elapsed() >= MAINTENANCE_EVERY {
            self.maintain();
            self.last_maintenance = Instant::now();
        }
        // Batches must be durable before they are sent; everything else
        // (acknowledgements, ticks) may be lost in a crash and is redone.
        set_synchronous_commit(durable);
        let xid = unsafe { pg_sys::GetTopTransactionIdIfAny() }.into_inner();
        if xid != 0 {
            let oldest = self.uncut.back().or(self.cut.as_ref()).map_or(0, |t| t.snapshot.xmax);
            self.own_xids.retain(|x| *x >= oldest);
            self.own_xids.push(tick::widen(unsafe { pg_sys::ReadNextFullTransactionId() }.value, xid));
        }
        ready
    }

    /// Reads the durable state: the queue position, the uncut ticks and the
    /// recorded batches (whose rows are read again from their ticks).
    fn load(&mut self) {
        let Some(mut state) = queue_state::load() else {
            pgrx::error!("ably_pg: ably.queue_state is empty; reinstall the extension");
        };
        let timeline = unsafe { pg_sys::GetWALInsertionTimeLine() } as i32;
        if state.epoch_timeline != timeline {
            if state.epoch_timeline != 0 {
                // A new timeline (promotion, point-in-time recovery): the
                // batch sequence may have moved back, so new batches get
                // ids under a new epoch. Recorded batches keep theirs.
                state.epoch = queue_state::new_epoch();
                log!("ably_pg: new timeline {timeline}; message ids continue under a new epoch");
            }
            state.epoch_timeline = timeline;
            queue_state::save(&state, false);
        }
        // A part that is neither current nor retired but holds rows was
        // written during a rotation that did not finish: retire it now.
        for part in 0..PARTS {
            if part != state.current_part && state.retired_xid[part as usize].is_none() && part_blocks(part) > 0 {
                state.retired_xid[part as usize] = Some(unsafe { pg_sys::ReadNextFullTransactionId() }.value);
                queue_state::save(&state, false);
            }
        }
        self.slot.set_part(state.current_part);
        let ticks = tick::load_all();
        let Some(newest) = ticks.last().cloned() else {
            pgrx::error!("ably_pg: ably.ticks is empty; reinstall the extension");
        };
        let mut recorded_of: HashMap<i64, Vec<Record>> = HashMap::new();
        for record in batch::load_all() {
            recorded_of.entry(record.tick).or_default().push(record);
        }
        self.lanes = Lanes::new(self.batch_size);
        self.stored.clear();
        let now = Instant::now();
        let mut resent = 0;
        for (i, t) in ticks.iter().enumerate() {
            let recorded = recorded_of.remove(&t.id).unwrap_or_default();
            let mut entry = Stored {
                batch_count: t.cut.as_ref().map_or(0, |c| c.batch_count),
                settled: t.cut.as_ref().map(|c| c.settled.iter().copied().collect()).unwrap_or_default(),
                recorded_pending: recorded.len(),
                dirty: false,
                parts: 0,
            };
            if !entry.is_settled() {
                match tick::previous(&ticks, i) {
                    None => warning!("ably_pg: the tick before tick {} is missing; its batches cannot be re-sent", t.id),
                    Some(prev) => resent += self.resume_tick(prev, t, &mut entry, recorded, now),
                }
            }
            self.stored.insert(t.id, entry);
        }
        if resent > 0 {
            log!("ably_pg: re-sending {resent} unacknowledged batches");
        }
        self.cut = Some(newest);
        self.uncut.clear();
        self.state = Some(state);
    }

    /// Puts the unsettled batches of a stored tick back in their lanes: its
    /// cut repeated (the same batches and ids, src/batch.rs) and its
    /// recorded batches. Returns how many.
    fn resume_tick(&mut self, prev: &Tick, t: &Tick, entry: &mut Stored, recorded: Vec<Record>, now: Instant) -> usize {
        let events = tick::events(&prev.snapshot, &t.snapshot, &mut self.channels);
        entry.parts = parts_of(&events);
        let mut pendings = Vec::new();
        if let Some(cut) = &t.cut {
            if events.len() != cut.row_count.max(0) as usize {
                warning!("ably_pg: tick {} has {} of its {} rows; sending those", t.id, events.len(), cut.row_count);
            }
            let runs = batch::repeat_cut(cut, &events);
            for (k, run) in runs.into_iter().enumerate() {
                if !entry.settled.contains(&(k as i32)) {
                    pendings.push(self.cut_pending(t.id, &cut.epoch, k as i32, run, now));
                }
            }
        }
        for record in recorded {
            let members = batch::members(&record, &events);
            if members.len() != record.count as usize {
                warning!(
                    "ably_pg: batch {} on channel {} has {} of its {} rows; sending those",
                    record.base,
                    display_channel(&record.channel),
                    members.len(),
                    record.count
                );
            }
            let channel = self.intern(&record.channel);
            let key = self.new_key();
            pendings.push(Pending::new(Record { key, channel, ..record }, members, now));
        }
        // Queue order within each channel.
        pendings.sort_by_key(|p| p.record.first_id);
        let n = pendings.len();
        for pending in pendings {
            self.lanes.push(pending);
        }
        n
    }

    fn new_key(&mut self) -> i64 {
        let key = self.next_key;
        self.next_key += 1;
        key
    }

    /// The `ordinal`-th batch of tick `tick`'s cut.
    fn cut_pending(&mut self, tick: i64, epoch: &str, ordinal: i32, run: Vec<Event>, now: Instant) -> Pending {
        let record = Record {
            key: self.new_key(),
            origin: Origin::Cut { ordinal },
            base: batch::cut_base(epoch, tick, ordinal),
            tick,
            channel: run[0].channel.clone(),
            first_id: run[0].id,
            last_id: run[run.len() - 1].id,
            count: run.len() as i32,
        };
        Pending::new(record, run, now)
    }

    fn intern(&mut self, channel: &str) -> Rc<str> {
        if let Some(c) = self.channels.get(channel) {
            return c.clone();
        }
        let c: Rc<str> = Rc::from(channel);
        self.channels.insert(channel.to_string(), c.clone());
        c
    }

    /// Step 1: makes the outcomes' consequences durable. Returns whether
    /// the round must commit synchronously: a re-cut recorded new batches
    /// (their ids must be durable before they are sent), or a dead letter
    /// was written (so that one seen is never sent again after a crash).
    fn apply_actions(&mut self) -> bool {
        let actions = std::mem::take(&mut self.actions);
        let mut deleted = Vec::new();
        // Ticks whose `settled` must be written in this transaction.
        let mut write_now = BTreeSet::new();
        let mut recorded = false;
        for action in actions {
            match action {
                Action::Acked { tick, origin, .. } => self.settle(tick, origin, &mut deleted),
                Action::DeadLetter { batch, error } => {
                    if let Some(pending) = self.lanes.get(batch) {
                        move_to_dead_letters(&pending.events, &error);
                        warning!(
                            "ably_pg: {} message(s) on channel {} moved to ably.dead_letters: {error}",
                            pending.events.len(),
                            display_channel(&pending.record.channel)
                        );
                        let (tick, origin) = (pending.record.tick, pending.record.origin);
                        self.settle(tick, origin, &mut deleted);
                        write_now.insert(tick);
                        recorded = true;
                    }
                    self.lanes.dead_lettered(batch);
                }
                Action::Recut { batch, limit } => {
                    let Some(pending) = self.lanes.get(batch) else { continue };
                    let record = pending.record.clone();
                    let events = pending.events.clone();
                    let replacement = self.record_batches(record.tick, &events, limit);
                    if let Some(entry) = self.stored.get_mut(&record.tick) {
                        entry.recorded_pending += replacement.len();
                    }
                    self.settle(record.tick, record.origin, &mut deleted);
                    write_now.insert(record.tick);
                    recorded = true;
                    self.lanes.recut(batch, replacement);
                }
            }
        }
        batch::delete(&deleted);
        for tick in write_now {
            self.write_settled(tick);
        }
        recorded
    }

    /// A batch needs no sending any more: a recorded one's row goes (into
    /// `deleted`), a cut one is settled in memory (written by the caller or
    /// by the next maintenance pass).
    fn settle(&mut self, tick: i64, origin: Origin, deleted: &mut Vec<i64>) {
        if let Origin::Recorded { id } = origin {
            deleted.push(id);
        }
        let Some(entry) = self.stored.get_mut(&tick) else { return };
        match origin {
            Origin::Recorded { .. } => entry.recorded_pending = entry.recorded_pending.saturating_sub(1),
            Origin::Cut { ordinal } => entry.dirty |= entry.settled.insert(ordinal),
        }
    }

    /// Writes a stored tick's settled batches if they changed.
    fn write_settled(&mut self, tick: i64) {
        let Some(entry) = self.stored.get_mut(&tick) else { return };
        if entry.dirty && entry.batch_count > 0 {
            let settled: Vec<i32> = entry.settled.iter().copied().collect();
            tick::save_settled(tick, &settled);
        }
        entry.dirty = false;
    }

    /// Cuts one channel's rows of a tick into batches of at most `limit`,
    /// records them and returns them (in order).
    fn record_batches(&mut self, tick: i64, events: &[Event], limit: usize) -> Vec<Pending> {
        let max_bytes = guc::MAX_MESSAGE_SIZE.get().max(1) as usize;
        let epoch = self.state.as_ref().map(|s| s.epoch.clone()).unwrap_or_default();
        let now = Instant::now();
        let mut out = Vec::new();
        let mut records = Vec::new();
        for run in batch::cut(events, limit, max_bytes) {
            let id = batch::next_id();
            let record = Record {
                key: self.new_key(),
                origin: Origin::Recorded { id },
                base: batch::recorded_base(&epoch, id),
                tick,
                channel: run[0].channel.clone(),
                first_id: run[0].id,
                last_id: run[run.len() - 1].id,
                count: run.len() as i32,
            };
            records.push(record.clone());
            out.push(Pending::new(record, run.to_vec(), now));
        }
        batch::insert(&records);
        out
    }

    /// Whether a tick should be taken now: rows may have committed since
    /// the last one, and nothing holds it back. Needs no transaction.
    fn tick_due(&mut self, now: Instant) -> bool {
        self.tick_deferred = false;
        let Some(cut) = &self.cut else { return false };
        let last = self.uncut.back().unwrap_or(cut);
        let next_xid = unsafe { pg_sys::ReadNextFullTransactionId() }.value;
        // Nothing was running at the last tick, and no transaction but the
        // worker's own started since: nothing new.
        let own = self.own_xids.iter().filter(|x| **x >= last.snapshot.xmax && **x < next_xid).count() as u64;
        // A retired part waits for a tick whose xmin passed its retiring
        // point: take one even if nothing is new.
        let retiring = self.state.as_ref().is_some_and(|s| s.retired_xid.iter().flatten().any(|x| last.snapshot.xmin < *x));
        if !retiring && last.snapshot.xip.is_empty() && next_xid.saturating_sub(last.snapshot.xmax) <= own {
            return false;
        }
        // Held back while a channel has less than a batch queued behind its
        // request in flight (src/lanes.rs): what commits meanwhile makes the
        // next tick's batches larger. And at most one tick per tick spacing:
        // under load every commit wakes the worker, and a round per commit
        // would cost a round's work for a row or two.
        let held = !retiring && self.lanes.ticks_held_until(now).is_some();
        let spaced = retiring || now.duration_since(self.last_tick_at) >= self.spacing;
        let room = self.uncut.is_empty() && self.lanes.pending_messages() < cut_ahead();
        if !held && room && !spaced {
            self.tick_deferred = true;
        }
        let cutting = !held && spaced && room;
        cutting || now.duration_since(self.last_tick_at) >= IDLE_TICK_EVERY
    }

    /// Takes a tick when one is due.
    fn maybe_tick(&mut self) {
        if !self.tick_due(Instant::now()) {
            return;
        }
        let Some(cut) = &self.cut else { return };
        let last = self.uncut.back().unwrap_or(cut);
        let Some(tick) = tick::take_if_new(last.id + 1, &last.snapshot) else { return };
        self.last_tick_at = Instant::now();
        self.uncut.push_back(tick);
    }

    /// Counts rows cut; at the end of each [`RATE_WINDOW`] sets the tick
    /// spacing from the window's rate.
    fn measure_rate(&mut self, rows: usize) {
        self.rate_rows += rows;
        let elapsed = self.rate_since.elapsed();
        if elapsed >= RATE_WINDOW {
            self.spacing = tick_spacing(self.rate_rows as f64 / elapsed.as_secs_f64());
            self.rate_rows = 0;
            self.rate_since = Instant::now();
        }
    }

    /// Step 2: cuts uncut ticks into batches while not too much is pending,
    /// one stored tick each (src/batch.rs). Returns whether batches were
    /// cut (the round must then commit synchronously).
    fn cut_ticks(&mut self) -> bool {
        let mut cut_any = false;
        let batch_size = self.batch_size;
        let max_bytes = guc::MAX_MESSAGE_SIZE.get().max(1) as usize;
        while self.lanes.pending_messages() < cut_ahead() {
            let Some(mut next) = self.uncut.pop_front() else { break };
            let Some(prev) = self.cut.take() else { break };
            let events = tick::events(&prev.snapshot, &next.snapshot, &mut self.channels);
            self.measure_rate(events.len());
            for event in &events {
                self.rows_in_part[event.part as usize] += 1;
            }
            let epoch = self.state.as_ref().map(|s| s.epoch.clone()).unwrap_or_default();
            let runs = batch::cut_tick(&events, batch_size, max_bytes);
            let mut entry = Stored { batch_count: runs.len() as i32, parts: parts_of(&events), ..Stored::default() };
            let now = Instant::now();
            for (k, run) in runs.into_iter().enumerate() {
                let limit = self.lanes.limit(&run[0].channel);
                if run.len() > limit {
                    // The channel is still rate limited: smaller batches,
                    // recorded, take this one's place before it is sent.
                    entry.settled.insert(k as i32);
                    let replacement = self.record_batches(next.id, &run, limit);
                    entry.recorded_pending += replacement.len();
                    for pending in replacement {
                        self.lanes.push(pending);
                    }
                } else {
                    let pending = self.cut_pending(next.id, &epoch, k as i32, run, now);
                    self.lanes.push(pending);
                }
            }
            cut_any |= entry.batch_count > 0;
            next.cut = Some(tick::Cut {
                epoch,
                batch_size: batch_size as i32,
                max_bytes: max_bytes as i32,
                row_count: events.len() as i32,
                batch_count: entry.batch_count,
                settled: entry.settled.iter().copied().collect(),
            });
            tick::store(&next);
            self.stored.insert(next.id, entry);
            self.cut = Some(next);
            if !unsafe { PostmasterIsAliveInternal() } {
                unsafe { pg_sys::proc_exit(1) };
            }
        }
        cut_any
    }

    /// Step 3a: loads the rows of the batches that go next: the heads that
    /// may be sent, and the batch behind each head in flight (so that its
    /// acknowledgement can be followed without a transaction). Returns the
    /// batches to send now.
    fn prepare_ready(&mut self) -> Vec<i64> {
        let ready = self.ready_now();
        self.load_messages(&ready);
        let bound = guc::MAX_IN_FLIGHT.get().max(1) as usize * publisher::MAX_BATCH_CHANNELS;
        let upcoming = self.lanes.upcoming(bound);
        self.load_messages(&upcoming);
        ready
    }

    /// Reads the rows of batches whose messages are not loaded yet.
    fn load_messages(&mut self, keys: &[i64]) {
        let mut reader: Option<tick::Reader> = None;
        for key in keys {
            let Some(pending) = self.lanes.get_mut(*key) else { continue };
            if pending.messages.is_some() {
                continue;
            }
            let rows = reader.get_or_insert_with(tick::Reader::new).fetch(&pending.events);
            let base = pending.record.base.clone();
            pending.messages = Some(
                rows.into_iter()
                    .enumerate()
                    .map(|(i, row)| OutMessage { id: publisher::message_id(&base, i), name: row.name, data: row.data })
                    .collect::<Vec<_>>()
                    .into(),
            );
        }
    }

    /// The heads that may be sent now, as many as free threads can carry.
    fn ready_now(&self) -> Vec<i64> {
        let threads = guc::MAX_IN_FLIGHT.get().max(1) as usize;
        if self.jobs_in_flight >= threads {
            return Vec::new();
        }
        let max = (threads - self.jobs_in_flight) * publisher::MAX_BATCH_CHANNELS;
        self.lanes.ready(Instant::now(), max)
    }

    /// The batches to send now if this round needs no transaction, or None
    /// if it needs one: anything to make durable, a tick to take or cut,
    /// rows to load, maintenance due. A round that only follows
    /// acknowledgements of cut batches (settled in memory) and sends batches
    /// already loaded needs none.
    fn ready_without_database(&mut self, deliver: bool) -> Option<Vec<i64>> {
        if self.state.is_none() || !self.actions.is_empty() || self.last_maintenance.elapsed() >= MAINTENANCE_EVERY {
            return None;
        }
        if self.tick_due(Instant::now()) {
            return None;
        }
        if !deliver {
            return Some(Vec::new());
        }
        if !self.uncut.is_empty() && self.lanes.pending_messages() < cut_ahead() {
            return None;
        }
        let ready = self.ready_now();
        let loaded = ready.iter().all(|key| self.lanes.get(*key).is_none_or(|p| p.messages.is_some()));
        loaded.then_some(ready)
    }

    /// Settles acknowledged cut batches in memory (no transaction needed:
    /// they are written by the next maintenance pass).
    fn settle_acknowledged(&mut self) {
        let mut deleted = Vec::new();
        let actions = std::mem::take(&mut self.actions);
        for action in actions {
            match action {
                Action::Acked { tick, origin: origin @ Origin::Cut { .. }, .. } => self.settle(tick, origin, &mut deleted),
                other => self.actions.push(other),
            }
        }
    }

    /// Step 3b: hands the ready batches to the publisher threads.
    fn dispatch(&mut self, ready: Vec<i64>) {
        if ready.is_empty() {
            return;
        }
        let Some(active) = self.publisher.as_ref() else { return };
        let mut batches: Vec<Batch> = Vec::with_capacity(ready.len());
        for id in &ready {
            let Some(pending) = self.lanes.get(*id) else { continue };
            let Some(messages) = pending.messages.clone() else { continue };
            batches.push(Batch { key: *id, channel: pending.record.channel.to_string(), messages });
        }
        for batch in &batches {
            self.lanes.sent(batch.key);
        }
        // As few requests as Ably's limits allow: one batch publish carries
        // up to 100 channels (src/publisher/wire.rs), and every request
        // costs the worker a thread hand-off and a round; a large backlog
        // still fills every thread, because its batches fill the requests.
        let jobs: Vec<Job> = publisher::pack(batches);
        self.jobs_in_flight += jobs.len();
        active.publisher.submit(jobs);
    }

    /// Reads what the publisher threads reported (never blocks).
    fn collect_outcomes(&mut self) {
        let Some(active) = self.publisher.as_ref() else { return };
        let mut delivered = 0;
        let mut requests = 0;
        let now = Instant::now();
        let results: Vec<_> = active.publisher.results().try_iter().collect();
        for result in results {
            self.jobs_in_flight = self.jobs_in_flight.saturating_sub(1);
            requests += 1;
            for (batch, outcome) in result.outcomes {
                if let Some(error) = outcome.error() {
                    self.note_error(batch, &outcome, error);
                }
                let applied = self.lanes.outcome(batch, &outcome, now);
                delivered += applied.delivered_messages;
                if applied.auth_failed && self.paused_since.is_none() {
                    self.paused_since = Some(now);
                    if let Some(error) = outcome.error() {
                        warning!("ably_pg: delivery paused, Ably refused the credentials: {error}");
                    }
                }
                self.actions.extend(applied.actions);
            }
        }
        if requests > 0 {
            self.slot.count_delivery(delivered, requests);
        }
    }

    fn note_error(&self, batch: i64, outcome: &Outcome, error: &PublishError) {
        self.slot.set_error(error.status, error.code, &error.message);
        let channel = self.lanes.get(batch).map(|p| display_channel(&p.record.channel)).unwrap_or_default();
        match outcome {
            Outcome::Retry { .. } => log!("ably_pg: publish to channel {channel} failed, will retry: {error}"),
            Outcome::RateLimited { .. } => debug1!("ably_pg: channel {channel} backs off: {error}"),
            _ => {}
        }
    }

    fn report_state(&self, configured: bool, paused: bool) {
        let state = if !configured {
            if guc::string(&guc::API_KEY).is_none() {
                WorkerState::NoApiKey
            } else {
                WorkerState::InvalidConfig
            }
        } else if paused {
            WorkerState::PausedAuth
        } else if self.lanes.next_wake(Instant::now()).is_some() {
            WorkerState::BackingOff
        } else {
            WorkerState::Running
        };
        self.slot.set_state(state);
    }

    /// Step 4: settled batches written and finished ticks forgotten, then
    /// rotation and truncation of queue parts (see src/queue.rs).
    fn maintain(&mut self) {
        let Some(mut state) = self.state.clone() else { return };
        let Some(cut) = self.cut.clone() else { return };
        // First, in this transaction: a part is truncated below only if no
        // stored tick still names its rows as unsettled.
        self.write_settlements(cut.id);
        let mut changed = false;
        for part in 0..PARTS {
            let Some(retired) = state.retired_xid[part as usize] else { continue };
            // Every transaction that could write to the part has ended and
            // been cut, none of its rows is still pending, and no stored
            // tick with rows in it is unsettled.
            let needed = self.stored.values().any(|e| !e.is_settled() && e.parts & (1 << part) != 0);
            if cut.snapshot.xmin >= retired && !needed && self.lanes.pending_in_part(part as u8) == 0 && truncate_part(part) {
                state.retired_xid[part as usize] = None;
                self.rows_in_part[part as usize] = 0;
                changed = true;
                debug1!("ably_pg: truncated ably.queue_{part}");
            }
        }
        let current = state.current_part;
        let next = (current + 1) % PARTS;
        let rotate_rows = guc::ROTATE_ROWS.get().max(1) as u64;
        if self.rows_in_part[current as usize] >= rotate_rows && state.retired_xid[next as usize].is_none() {
            if part_blocks(next) > 0 {
                // Rows left from an interrupted rotation: retire it first.
                state.retired_xid[next as usize] = Some(unsafe { pg_sys::ReadNextFullTransactionId() }.value);
            } else {
                // Writers move first; only then is the retiring point read,
                // so every writer of the old part has a smaller transaction id.
                self.slot.set_part(next);
                std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
                state.retired_xid[current as usize] = Some(unsafe { pg_sys::ReadNextFullTransactionId() }.value);
                state.current_part = next;
                state.rotations += 1;
                self.rows_in_part[next as usize] = 0;
                queue_state::save(&state, true);
                self.state = Some(state);
                return;
            }
            changed = true;
        }
        if changed {
            queue_state::save(&state, false);
        }
        self.state = Some(state);
    }

    /// Deletes the stored ticks that are settled and that the next tick
    /// does not need as its lower bound (any but the newest, whose
    /// successor is settled too), and writes the settled batches of the
    /// others where they changed.
    fn write_settlements(&mut self, newest: i64) {
        let mut done = Vec::new();
        let ids: Vec<i64> = self.stored.keys().copied().collect();
        for id in ids {
            let settled = self.stored.get(&id).is_some_and(|e| e.is_settled());
            let next_settled = self.stored.get(&(id + 1)).is_none_or(|e| e.is_settled());
            if id != newest && settled && next_settled {
                done.push(id);
            } else {
                self.write_settled(id);
            }
        }
        tick::delete(&done);
        for id in done {
            self.stored.remove(&id);
        }
    }

    /// Whether settled batches wait to be written (the next maintenance
    /// pass should not wait for a poll interval).
    fn settlements_pending(&self) -> bool {
        self.stored.values().any(|e| e.dirty)
    }

    /// (Re)creates the publisher when the configuration changed.
    fn ensure_publisher(&mut self) -> bool {
        // Settings change only with a reload (which clears this).
        if let Some(configured) = self.configured {
            if !configured || self.publisher.is_some() {
                return configured;
            }
        }
        let mut failed_to_start = false;
        let configured = self.check_publisher(&mut failed_to_start);
        // A publisher that could not start is tried again next round.
        self.configured = (!failed_to_start).then_some(configured);
        configured
    }

    fn check_publisher(&mut self, failed_to_start: &mut bool) -> bool {
        let Some(key) = guc::string(&guc::API_KEY) else {
            self.publisher = None;
            return false;
        };
        let endpoint = guc::string(&guc::ENDPOINT);
        let rest_host = guc::string(&guc::REST_HOST);
        let port = guc::PORT.get();
        let tls = guc::TLS.get();
        let fallbacks = guc::fallback_hosts();
        let timeout = guc::REQUEST_TIMEOUT_MS.get();
        let threads = guc::MAX_IN_FLIGHT.get();
        let fingerprint = format!("{key}|{endpoint:?}|{rest_host:?}|{port}|{tls}|{fallbacks:?}|{timeout}|{threads}");
        if self.publisher.as_ref().is_some_and(|a| a.fingerprint == fingerprint) {
            return true;
        }
        // Outcomes of the old publisher's requests will not arrive.
        self.publisher = None;
        self.jobs_in_flight = 0;
        self.lanes.reset_in_flight();
        let config = PublisherConfig::from_options(&key, endpoint.as_deref(), rest_host.as_deref(), (port > 0).then_some(port as u16), tls, fallbacks);
        let mut config = match config {
            Ok(c) => c,
            Err(e) => {
                self.slot.set_error(None, None, &format!("invalid configuration: {e}"));
                return false;
            }
        };
        config.request_timeout = Duration::from_millis(timeout as u64);
        config.threads = threads as usize;
        let notify = self.wake.notifier();
        config.wake = Some(Arc::new(move || notify.notify()));
        match Publisher::start(config) {
            Ok(publisher) => {
                self.publisher = Some(Active { fingerprint, publisher });
                self.slot.clear_error();
                true
            }
            Err(e) => {
                warning!("ably_pg: could not start publisher threads: {e}");
                *failed_to_start = true;
                false
            }
        }
    }
}

/// Moves the rows of `events` to `ably.dead_letters` with the reason.
fn move_to_dead_letters(events: &[Event], error: &PublishError) {
    let rows = tick::fetch(events);
    let table = crate::store::Table::open("dead_letters", pg_sys::RowExclusiveLock);
    let now = pg_sys::Datum::from(unsafe { pg_sys::GetCurrentTimestamp() });
    for row in rows {
        table.insert(&[
            ("id", Some(pg_sys::Datum::from(row.id))),
            ("rule_id", row.rule_id.map(pg_sys::Datum::from)),
            ("channel", Some(crate::store::text_datum(&row.channel))),
            ("name", row.name.as_deref().map(crate::store::text_datum)),
            ("data", Some(crate::store::text_datum(&row.data))),
            ("enqueued_at", Some(pg_sys::Datum::from(row.enqueued_at))),
            ("failed_at", Some(now)),
            ("http_status", error.status.map(|s| pg_sys::Datum::from(i32::from(s)))),
            ("error_code", error.code.map(|c| pg_sys::Datum::from(c as i32))),
            ("error_message", Some(crate::store::text_datum(&error.message))),
        ]);
    }
}

fn set_synchronous_commit(on: bool) {
    unsafe {
        pg_sys::set_config_option(
            c"synchronous_commit".as_ptr(),
            if on { c"on".as_ptr() } else { c"off".as_ptr() },
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_LOCAL,
            true,
            0,
            false,
        );
    }
}

/// Blocks in a queue part (0 after TRUNCATE).
fn part_blocks(part: i16) -> u32 {
    let Some(relid) = catalog::ably_relation(&format!("queue_{part}")) else { return 0 };
    unsafe {
        let rel = pg_sys::table_open(relid, pg_sys::AccessShareLock as i32);
        let blocks = pg_sys::RelationGetNumberOfBlocksInFork(rel, pg_sys::ForkNumber::MAIN_FORKNUM);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as i32);
        blocks
    }
}

/// Empties a drained part (and its index) if it can be locked without
/// waiting. The truncation is WAL-logged and keeps the relation's files, so
/// writers' cached relation entries stay valid.
fn truncate_part(part: i16) -> bool {
    let Some(relid) = catalog::ably_relation(&format!("queue_{part}")) else { return false };
    unsafe {
        if !pg_sys::ConditionalLockRelationOid(relid, pg_sys::AccessExclusiveLock as i32) {
            return false;
        }
        let rel = pg_sys::table_open(relid, pg_sys::NoLock as i32);
        pg_sys::heap_truncate_one_rel(rel);
        pg_sys::table_close(rel, pg_sys::NoLock as i32);
    }
    true
}

/// Whether a DROP DATABASE is waiting for this database (it holds the
/// database's lock while it waits for sessions to leave).
fn database_being_dropped() -> bool {
    unsafe {
        let mut tag: pg_sys::LOCKTAG = std::mem::zeroed();
        tag.locktag_field1 = 0;
        tag.locktag_field2 = pg_sys::DatabaseRelationId.into();
        tag.locktag_field3 = pg_sys::MyDatabaseId.to_u32();
        tag.locktag_field4 = 0;
        tag.locktag_type = pg_sys::LockTagType::LOCKTAG_OBJECT as u8;
        tag.locktag_lockmethodid = pg_sys::DEFAULT_LOCKMETHOD as u8;
        let result = pg_sys::LockAcquire(&tag, pg_sys::AccessShareLock as i32, false, true);
        if result == pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL {
            return true;
        }
        pg_sys::LockRelease(&tag, pg_sys::AccessShareLock as i32, false);
        false
    }
}

/// Whether the extension disappeared (checked after an error, outside the
/// failed transaction's snapshot).
fn catalog_gone() -> bool {
    unsafe {
        let oid = pg_sys::get_extension_oid(c"ably_pg".as_ptr(), true);
        oid == pg_sys::InvalidOid
    }
}

/// A pipe the publisher threads write a byte to when a result is ready, so
/// the worker can sleep on it together with its latch.
struct WakePipe {
    read: i32,
    write: Arc<WriteEnd>,
}

struct WriteEnd(i32);

impl WriteEnd {
    /// Async-signal- and thread-safe: one non-blocking write(2).
    fn notify(&self) {
        let byte = [1u8];
        unsafe { libc::write(self.0, byte.as_ptr() as *const _, 1) };
    }
}

impl Drop for WriteEnd {
    fn drop(&mut self) {
        unsafe { libc::close(self.0) };
    }
}

impl WakePipe {
    fn new() -> WakePipe {
        let mut fds = [0i32; 2];
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc != 0 {
            pgrx::error!("ably_pg: could not create a pipe: {}", std::io::Error::last_os_error());
        }
        WakePipe { read: fds[0], write: Arc::new(WriteEnd(fds[1])) }
    }

    fn read_fd(&self) -> i32 {
        self.read
    }

    fn notifier(&self) -> Arc<WriteEnd> {
        self.write.clone()
    }

    fn drain(&self) {
        let mut buf = [0u8; 256];
        while unsafe { libc::read(self.read, buf.as_mut_ptr() as *mut _, buf.len()) } > 0 {}
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn ticks_are_spaced_by_the_rate_of_rows() {
        assert_eq!(tick_spacing(0.0), Duration::from_millis(2));
        assert_eq!(tick_spacing(1_000.0), Duration::from_millis(2));
        assert_eq!(tick_spacing(5_000.0), Duration::from_millis(5));
        assert_eq!(tick_spacing(100_000.0), Duration::from_millis(8));
    }
}
