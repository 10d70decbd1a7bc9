//! The background worker: one per database named in `ably.database`. It
//! moves the queue to Ably and is the only code that deletes from it.
//!
//! A delivery round, all in one process:
//! 1. In one transaction: delete what Ably acknowledged in the last round,
//!    move refused messages to `ably.dead_letters`, read the oldest queued
//!    rows of channels that are not busy or backing off, cut them into
//!    batches and record each batch in `ably.batches`; COMMIT.
//! 2. Hand the batches to the publisher threads (at most one batch per
//!    channel per round, so a channel's messages are sent in queue order) and
//!    wait for every outcome.
//!
//! Because a batch is committed before it is sent and deleted only after it
//! is acknowledged, a crash at any point re-sends exactly the same batch
//! with the same message ids, which Ably de-duplicates: nothing is lost and
//! nothing is delivered twice. A retried batch keeps its place at the head
//! of its channel, so a later change of a row is never published first.
//!
//! The worker sleeps on its latch: writers set it at COMMIT, so delivery
//! starts at once, and an idle database costs no CPU. On a standby it waits
//! for promotion; on SIGHUP it reloads `ably.*` and resumes after an auth
//! failure.

use crate::guc;
use crate::publisher::{self, Batch, Job, OutMessage, Outcome, PublishError, Publisher, PublisherConfig};
use crate::queue::PARTS;
use crate::shared::{self, WorkerSlot, WorkerState};
use crate::sql::{select_one, select_two};
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags};
use pgrx::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

/// While delivery is paused by an auth failure, how often to try again even
/// without a configuration reload (a revoked key may be re-enabled).
const AUTH_RETRY: Duration = Duration::from_secs(60);

/// Batches of one channel sent one after the other in a round (a "chain"),
/// so a single busy channel is not limited to one request per round.
const CHAIN: usize = 8;

/// Queue rotation and truncation are checked at most this often.
const MAINTENANCE_EVERY: Duration = Duration::from_millis(250);

pub fn register() {
    for (index, database) in guc::databases().iter().enumerate().take(shared::MAX_DATABASES) {
        BackgroundWorkerBuilder::new(&format!("ably_pg worker for {database}"))
            .set_type("ably_pg worker")
            .set_function("ably_pg_worker_main")
            .set_library("ably_pg")
            .set_argument(Some(pg_sys::Datum::from(index as i64)))
            .set_extra(database)
            .enable_spi_access()
            .set_start_time(BgWorkerStartTime::ConsistentState)
            .set_restart_time(Some(Duration::from_secs(5)))
            .load();
    }
}

/// A batch recorded in `ably.batches` and not yet acknowledged.
struct Pending {
    channel: String,
    queue_ids: Vec<i64>,
    messages: Vec<OutMessage>,
    attempts: u32,
    not_before: Instant,
}

/// What happened to last round's batches, applied in the next transaction.
#[derive(Default)]
struct Settled {
    delivered: Vec<i64>,
    dead: Vec<(i64, PublishError)>,
    /// Multi-message batches Ably refused as a whole: forgotten, so that
    /// their rows are sent again one per request to find the bad one.
    split: Vec<i64>,
}

impl Settled {
    fn is_pending(&self) -> bool {
        !(self.delivered.is_empty() && self.dead.is_empty() && self.split.is_empty())
    }
}

struct Worker {
    slot: WorkerSlot,
    id_prefix: String,
    pending: BTreeMap<i64, Pending>,
    settled: Settled,
    /// Channels whose rows go one per request (after a refused batch).
    single: HashSet<String>,
    /// Channels backing off after 429, until the given instant.
    channel_backoff: HashMap<String, Instant>,
    paused_since: Option<Instant>,
    publisher: Option<(String, Publisher)>,
    part: i16,
    rotated_id: i64,
    loaded: bool,
    last_maintenance: Instant,
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn ably_pg_worker_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let database = BackgroundWorker::get_extra().to_string();
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    // The worker runs as the bootstrap superuser: no search_path that a
    // database or role setting (the database owner's) could supply.
    crate::identity::pin_search_path_for_session();
    let Some(slot) = WorkerSlot::claim(unsafe { pg_sys::MyDatabaseId }) else {
        log!("ably_pg: no free worker slot for database {database}");
        return;
    };
    log!("ably_pg worker started for database {database}");
    let system_id = unsafe { pg_sys::GetSystemIdentifier() };
    let mut worker = Worker {
        slot,
        id_prefix: format!("{system_id:x}-{}", unsafe { pg_sys::MyDatabaseId }.to_u32()),
        pending: BTreeMap::new(),
        settled: Settled::default(),
        single: HashSet::new(),
        channel_backoff: HashMap::new(),
        paused_since: None,
        publisher: None,
        part: 0,
        rotated_id: 0,
        loaded: false,
        last_maintenance: Instant::now(),
    };
    worker.run();
    worker.slot.release();
    if let Some((_, publisher)) = worker.publisher.take() {
        publisher.shutdown();
    }
    log!("ably_pg worker for database {database} stopped");
}

fn poll_interval() -> Duration {
    Duration::from_millis(guc::POLL_INTERVAL_MS.get().max(10) as u64)
}

impl Worker {
    fn run(&mut self) {
        let mut sleep = Duration::ZERO;
        loop {
            if !sleep.is_zero() && !BackgroundWorker::wait_latch(Some(sleep)) {
                return;
            }
            if BackgroundWorker::sigterm_received() {
                return;
            }
            if BackgroundWorker::sighup_received() {
                unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
                self.paused_since = None;
            }
            sleep = self.step();
        }
    }

    /// One pass: returns how long to sleep before the next one (zero when
    /// there is more to do right away).
    fn step(&mut self) -> Duration {
        if unsafe { pg_sys::RecoveryInProgress() } {
            self.slot.set_state(WorkerState::Standby);
            return poll_interval().max(Duration::from_secs(1));
        }
        if !self.loaded {
            if !in_transaction(extension_installed) {
                self.slot.set_state(WorkerState::NoExtension);
                return poll_interval().max(Duration::from_secs(1));
            }
            in_transaction(|| self.load());
        }
        if !self.ensure_publisher() {
            self.slot.set_state(WorkerState::NoApiKey);
            return poll_interval();
        }
        if let Some(since) = self.paused_since {
            if since.elapsed() < AUTH_RETRY {
                self.slot.set_state(WorkerState::PausedAuth);
                return AUTH_RETRY - since.elapsed();
            }
            self.paused_since = None;
        }

        // Ask to be woken before looking: a commit after the look sets the latch.
        self.slot.set_wants_wake(true);
        if self.settled.is_pending() {
            in_transaction(|| self.settle());
        }
        in_transaction(|| self.read());
        if self.last_maintenance.elapsed() >= MAINTENANCE_EVERY {
            in_transaction(|| self.maintain_queue());
            self.last_maintenance = Instant::now();
        }

        // Per channel, the oldest pending batches while they are ready (up
        // to CHAIN); a channel whose oldest batch waits sends nothing.
        let now = Instant::now();
        let mut chains: Vec<Vec<Batch>> = Vec::new();
        let mut chain_of: HashMap<&str, Option<usize>> = HashMap::new();
        for (key, batch) in &self.pending {
            let slot = chain_of.entry(batch.channel.as_str()).or_insert_with(|| {
                let blocked = self.channel_backoff.get(&batch.channel).is_some_and(|t| *t > now);
                (!blocked).then(|| {
                    chains.push(Vec::new());
                    chains.len() - 1
                })
            });
            let Some(index) = *slot else { continue };
            let chain = &mut chains[index];
            if batch.not_before > now || chain.len() >= CHAIN {
                *slot = None;
                continue;
            }
            chain.push(Batch { key: *key, channel: batch.channel.clone(), messages: batch.messages.clone() });
        }
        chains.retain(|c| !c.is_empty());
        let ready = chains;
        if ready.is_empty() {
            let next = self
                .pending
                .values()
                .map(|p| p.not_before)
                .chain(self.channel_backoff.values().copied())
                .filter(|t| *t > now)
                .min()
                .map(|t| t - now);
            if self.pending.is_empty() {
                self.slot.set_state(WorkerState::Running);
            }
            return next.map_or(poll_interval(), |n| n.min(poll_interval()).max(Duration::from_millis(1)));
        }
        // Busy: the next round starts right after this one, no wake-ups needed.
        self.slot.set_wants_wake(false);
        self.publish(ready);
        Duration::ZERO
    }

    /// Reads the part writers use and the batches a previous run left
    /// unacknowledged; those are re-sent first, unchanged.
    fn load(&mut self) {
        let (part, rotated) = select_two::<i16, i64>("SELECT current_part, rotated_id FROM ably.queue_state", &[])
            .unwrap_or((Some(0), Some(0)));
        self.part = part.unwrap_or(0);
        self.rotated_id = rotated.unwrap_or(0);
        self.slot.set_part(self.part);
        self.pending.clear();
        let batches: Vec<(i64, String, Vec<i64>)> = Spi::connect(|client| {
            client
                .select("SELECT id, channel, queue_ids FROM ably.batches ORDER BY id", None, &[])
                .map(|rows| {
                    rows.filter_map(|r| Some((r.get::<i64>(1).ok()??, r.get::<String>(2).ok()??, r.get::<Vec<i64>>(3).ok()??)))
                        .collect()
                })
                .unwrap_or_default()
        });
        for (key, channel, ids) in batches {
            let rows = read_rows("WHERE id OPERATOR(pg_catalog.=) ANY ($1) ORDER BY id", &[ids.clone().into()]);
            let messages = rows
                .into_iter()
                .enumerate()
                .map(|(i, row)| OutMessage { id: publisher::message_id(&self.base(key), i), name: row.name, data: row.data })
                .collect();
            self.pending.insert(key, Pending { channel, queue_ids: ids, messages, attempts: 0, not_before: Instant::now() });
        }
        if !self.pending.is_empty() {
            log!("ably_pg: re-sending {} unacknowledged batches", self.pending.len());
        }
        self.loaded = true;
    }

    fn base(&self, batch: i64) -> String {
        format!("{}-{batch}", self.id_prefix)
    }

    /// (Re)creates the publisher when the configuration changed. The
    /// fingerprint holds the key, so it is never logged.
    fn ensure_publisher(&mut self) -> bool {
        let Some(key) = guc::string(&guc::API_KEY) else {
            self.publisher = None;
            return false;
        };
        let endpoint = guc::string(&guc::ENDPOINT);
        let rest_host = guc::string(&guc::REST_HOST);
        let port = guc::PORT.get();
        let tls = guc::TLS.get();
        let fallbacks = guc::FALLBACK_HOSTS.get().map(|s| s.to_string_lossy().split(',').map(str::to_string).collect::<Vec<_>>());
        let timeout = guc::REQUEST_TIMEOUT_MS.get();
        let threads = guc::MAX_IN_FLIGHT.get();
        let fingerprint = format!("{key}|{endpoint:?}|{rest_host:?}|{port}|{tls}|{fallbacks:?}|{timeout}|{threads}");
        if self.publisher.as_ref().is_some_and(|(f, _)| *f == fingerprint) {
            return true;
        }
        if let Some((_, old)) = self.publisher.take() {
            old.shutdown();
        }
        let config = PublisherConfig::from_options(
            &key,
            endpoint.as_deref(),
            rest_host.as_deref(),
            (port > 0).then_some(port as u16),
            tls,
            fallbacks,
        );
        let mut config = match config {
            Ok(c) => c,
            Err(e) => {
                self.slot.set_error(None, None, &format!("invalid configuration: {e}"));
                warning!("ably_pg: invalid configuration: {e}");
                return false;
            }
        };
        config.request_timeout = Duration::from_millis(timeout as u64);
        config.threads = threads as usize;
        match Publisher::start(config) {
            Ok(p) => {
                self.publisher = Some((fingerprint, p));
                true
            }
            Err(e) => {
                warning!("ably_pg: could not start publisher threads: {e}");
                false
            }
        }
    }

    /// Step 1a: applies last round's outcomes. Committed without waiting for
    /// the WAL flush: if a crash loses it, the batches are simply re-sent
    /// with their recorded ids and Ably drops the duplicates (the next
    /// batch record's synchronous commit flushes it anyway).
    fn settle(&mut self) {
        Spi::run("SET LOCAL synchronous_commit = off").expect("set synchronous_commit");
        let settled = std::mem::take(&mut self.settled);
        if !settled.delivered.is_empty() {
            let ids: Vec<i64> = settled
                .delivered
                .iter()
                .filter_map(|k| self.pending.remove(k))
                .flat_map(|p| p.queue_ids)
                .collect();
            Spi::run_with_args("DELETE FROM ably.queue WHERE id OPERATOR(pg_catalog.=) ANY ($1)", &[ids.into()]).expect("delete delivered rows");
            Spi::run_with_args("DELETE FROM ably.batches WHERE id OPERATOR(pg_catalog.=) ANY ($1)", &[settled.delivered.into()])
                .expect("delete delivered batches");
        }
        for (key, error) in settled.dead {
            let Some(batch) = self.pending.remove(&key) else { continue };
            Spi::run_with_args(
                "WITH moved AS (DELETE FROM ably.queue WHERE id OPERATOR(pg_catalog.=) ANY ($1) RETURNING *) \
                 INSERT INTO ably.dead_letters (id, rule_id, channel, name, data, enqueued_at, http_status, error_code, error_message) \
                 SELECT id, rule_id, channel, name, data, enqueued_at, $2, $3, $4 FROM moved",
                &[
                    batch.queue_ids.clone().into(),
                    error.status.map(i32::from).into(),
                    error.code.map(|c| c as i32).into(),
                    error.message.clone().into(),
                ],
            )
            .expect("move to dead letters");
            Spi::run_with_args("DELETE FROM ably.batches WHERE id OPERATOR(pg_catalog.=) $1", &[key.into()]).expect("delete dead batch");
            warning!("ably_pg: {} message(s) on channel {} moved to ably.dead_letters: {error}", batch.queue_ids.len(), batch.channel);
        }
        for key in settled.split {
            if self.pending.remove(&key).is_some() {
                Spi::run_with_args("DELETE FROM ably.batches WHERE id OPERATOR(pg_catalog.=) $1", &[key.into()]).expect("forget refused batch");
            }
        }

    }

    /// Step 1b: reads new rows, forms batches and records them; this commit
    /// is synchronous, so a batch is durable before it is sent.
    fn read(&mut self) {
        // New rows, oldest first, of channels with no batch in flight.
        let now = Instant::now();
        self.channel_backoff.retain(|_, t| *t > now);
        let mut skip: Vec<String> = self.pending.values().map(|p| p.channel.clone()).collect();
        skip.extend(self.channel_backoff.keys().cloned());
        skip.sort();
        skip.dedup();
        let batch_size = guc::BATCH_SIZE.get().max(1) as usize;
        let limit = (batch_size * guc::MAX_IN_FLIGHT.get().max(1) as usize * 2) as i64;
        let rows = read_rows(
            "WHERE channel OPERATOR(pg_catalog.<>) ALL ($1) ORDER BY id LIMIT $2",
            &[skip.into(), limit.into()],
        );
        if rows.is_empty() {
            return;
        }
        let mut by_channel: Vec<(String, Vec<Row>)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for row in rows {
            let i = *index.entry(row.channel.clone()).or_insert_with(|| {
                by_channel.push((row.channel.clone(), Vec::new()));
                by_channel.len() - 1
            });
            by_channel[i].1.push(row);
        }
        let max_bytes = guc::MAX_MESSAGE_SIZE.get().max(1) as usize;
        let mut formed: Vec<(String, Vec<Row>)> = Vec::new();
        for (channel, rows) in by_channel {
            let count = if self.single.contains(&channel) { 1 } else { batch_size };
            let sizes: Vec<usize> = rows.iter().map(|r| publisher::message_size(r.name.as_deref(), &r.data)).collect();
            let mut rows = rows.into_iter();
            for chunk in publisher::chunk_by_size(sizes, max_bytes, count).into_iter().take(CHAIN) {
                formed.push((channel.clone(), rows.by_ref().take(chunk.len()).collect()));
            }
        }
        // One sequence call for the whole round: the worker is the only
        // user of ably.batch_id_seq.
        let last = Spi::get_one_with_args::<i64>(
            "SELECT pg_catalog.setval('ably.batch_id_seq'::pg_catalog.regclass, \
             pg_catalog.nextval('ably.batch_id_seq'::pg_catalog.regclass) OPERATOR(pg_catalog.+) $1 OPERATOR(pg_catalog.-) 1)",
            &[(formed.len() as i64).into()],
        )
        .ok()
        .flatten()
        .expect("batch ids");
        let keys: Vec<i64> = (last - formed.len() as i64 + 1..=last).collect();
        let mut channels = Vec::with_capacity(formed.len());
        let mut members = Vec::with_capacity(formed.len());
        for ((channel, rows), key) in formed.into_iter().zip(keys.iter().copied()) {
            let base = self.base(key);
            let queue_ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            members.push(queue_ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(","));
            channels.push(channel.clone());
            let messages = rows
                .into_iter()
                .enumerate()
                .map(|(i, r)| OutMessage { id: publisher::message_id(&base, i), name: r.name, data: r.data })
                .collect();
            self.pending.insert(key, Pending { channel, queue_ids, messages, attempts: 0, not_before: now });
        }
        Spi::run_with_args(
            "INSERT INTO ably.batches (id, channel, queue_ids) \
             SELECT k, c, pg_catalog.string_to_array(m, ',')::pg_catalog.int8[] \
             FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int8[]), pg_catalog.unnest($2::pg_catalog.text[]), \
                            pg_catalog.unnest($3::pg_catalog.text[])) AS u(k, c, m)",
            &[keys.into(), channels.into(), members.into()],
        )
        .expect("record batches");
    }

    /// Rotation and truncation of queue parts (see src/queue.rs).
    fn maintain_queue(&mut self) {
        let rotate_rows = guc::ROTATE_ROWS.get() as i64;
        let last = select_one::<i64>("SELECT last_value FROM ably.queue_id_seq", &[]).unwrap_or(0);
        if last - self.rotated_id >= rotate_rows {
            let next = (self.part + 1) % PARTS;
            let next_empty =
                select_one::<bool>(&format!("SELECT NOT EXISTS (SELECT 1 FROM ably.queue_{next})"), &[]).unwrap_or(false);
            if next_empty {
                Spi::run_with_args(
                    "UPDATE ably.queue_state SET current_part = $1, rotated_id = $2, rotated_at = pg_catalog.now()",
                    &[next.into(), last.into()],
                )
                .expect("rotate queue");
                self.part = next;
                self.rotated_id = last;
                self.slot.set_part(next);
            }
        }
        // ably.batches churns by a row per batch; with nothing in flight
        // it can be emptied wholesale (only this worker writes it).
        let batch_bytes = select_one::<i64>("SELECT pg_catalog.pg_relation_size('ably.batches'::pg_catalog.regclass)", &[]).unwrap_or(0);
        if self.pending.is_empty() && batch_bytes > 1 << 20 {
            truncate_if_empty("ably.batches");
        }
        for part in 0..PARTS {
            if part == self.part {
                continue;
            }
            let name = format!("ably.queue_{part}");
            let size = select_one::<i64>(&format!("SELECT pg_catalog.pg_relation_size('{name}'::pg_catalog.regclass)"), &[]).unwrap_or(0);
            if size == 0 {
                continue;
            }
            truncate_if_empty(&name);
        }
    }

    /// Step 2 of a round: send and wait for every outcome.
    fn publish(&mut self, ready: Vec<Vec<Batch>>) {
        let Some((_, publisher)) = self.publisher.as_ref() else { return };
        let threads = guc::MAX_IN_FLIGHT.get().max(1) as usize;
        // A channel with several batches is a chain (sent in order by one
        // thread); single batches are spread over the threads, and each
        // bucket uses batch publish when it holds several channels.
        let (chains, singles): (Vec<Vec<Batch>>, Vec<Vec<Batch>>) = ready.into_iter().partition(|c| c.len() > 1);
        let mut jobs: Vec<Job> = chains.into_iter().map(Job::Chain).collect();
        let singles: Vec<Batch> = singles.into_iter().flatten().collect();
        if !singles.is_empty() {
            let mut buckets: Vec<Vec<Batch>> = (0..threads.min(singles.len())).map(|_| Vec::new()).collect();
            let n = buckets.len();
            for (i, batch) in singles.into_iter().enumerate() {
                buckets[i % n].push(batch);
            }
            jobs.extend(buckets.into_iter().flat_map(publisher::pack));
        }
        let mut outstanding = jobs.len();
        let requests = jobs.iter().map(|j| if let Job::Chain(c) = j { c.len() as u64 } else { 1 }).sum();
        publisher.submit(jobs);
        let mut outcomes = Vec::new();
        while outstanding > 0 {
            match publisher.results().recv_timeout(Duration::from_millis(100)) {
                Ok(result) => {
                    outstanding -= 1;
                    outcomes.extend(result.outcomes);
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    if BackgroundWorker::sigterm_received() {
                        return;
                    }
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
            }
        }
        let mut delivered_messages = 0u64;
        let mut state = WorkerState::Running;
        for (key, outcome) in outcomes {
            let Some(batch) = self.pending.get_mut(&key) else { continue };
            if let Some(error) = outcome.error() {
                self.slot.set_error(error.status, error.code, &error.message);
            }
            match outcome {
                Outcome::Delivered => {
                    delivered_messages += batch.messages.len() as u64;
                    if batch.messages.len() == 1 {
                        self.single.remove(&batch.channel);
                    }
                    self.settled.delivered.push(key);
                }
                Outcome::Retry { error } => {
                    batch.attempts += 1;
                    batch.not_before = Instant::now() + publisher::backoff(batch.attempts);
                    state = WorkerState::BackingOff;
                    log!("ably_pg: publish to channel {} failed, will retry: {error}", batch.channel);
                }
                Outcome::RateLimited { error } => {
                    batch.attempts += 1;
                    let until = Instant::now() + publisher::backoff(batch.attempts).max(Duration::from_millis(100));
                    self.channel_backoff.insert(batch.channel.clone(), until);
                    state = WorkerState::BackingOff;
                    debug1!("ably_pg: channel {} rate limited: {error}", batch.channel);
                }
                Outcome::AuthFailed { error } => {
                    self.paused_since = Some(Instant::now());
                    state = WorkerState::PausedAuth;
                    warning!("ably_pg: delivery paused, Ably refused the credentials: {error}");
                }
                Outcome::NotSent => batch.not_before = Instant::now(),
                Outcome::Rejected { error } => {
                    if batch.messages.len() == 1 {
                        self.settled.dead.push((key, error));
                    } else {
                        self.single.insert(batch.channel.clone());
                        self.settled.split.push(key);
                    }
                }
            }
        }
        if self.paused_since.is_some() {
            state = WorkerState::PausedAuth;
        }
        self.slot.set_state(state);
        self.slot.count_delivery(delivered_messages, requests);
    }
}

/// TRUNCATEs `table` if it holds no row and can be locked without waiting
/// (a writer still inserting into an old queue part holds a lock on it).
fn truncate_if_empty(table: &str) {
    let Some(relid) = select_one::<pg_sys::Oid>(&format!("SELECT '{table}'::pg_catalog.regclass::pg_catalog.oid"), &[]) else { return };
    if !unsafe { pg_sys::ConditionalLockRelationOid(relid, pg_sys::AccessExclusiveLock as i32) } {
        return;
    }
    if select_one::<bool>(&format!("SELECT NOT EXISTS (SELECT 1 FROM {table})"), &[]).unwrap_or(false) {
        Spi::run(&format!("TRUNCATE {table}")).expect("truncate");
        debug1!("ably_pg: truncated {table}");
    }
}

struct Row {
    id: i64,
    channel: String,
    name: Option<String>,
    data: String,
}

fn read_rows(clause: &str, args: &[pgrx::datum::DatumWithOid]) -> Vec<Row> {
    Spi::connect(|client| {
        client
            .select(&format!("SELECT id, channel, name, data::pg_catalog.text FROM ably.queue {clause}"), None, args)
            .map(|rows| {
                rows.filter_map(|r| {
                    Some(Row {
                        id: r.get::<i64>(1).ok()??,
                        channel: r.get::<String>(2).ok()??,
                        name: r.get::<String>(3).ok()?,
                        data: r.get::<String>(4).ok()??,
                    })
                })
                .collect()
            })
            .expect("read queue")
    })
}

/// Runs `f` in a transaction of its own. An ERROR inside ends the worker
/// (the postmaster restarts it), which is safe: nothing is acknowledged or
/// deleted outside a committed transaction.
fn in_transaction<R>(f: impl FnOnce() -> R) -> R {
    BackgroundWorker::transaction(std::panic::AssertUnwindSafe(f))
}

fn extension_installed() -> bool {
    crate::catalog::extension().is_some()
}
