//! The HTTP side of the background worker: plain threads that publish
//! batches to Ably's REST API and report one [`Outcome`] per batch.
//!
//! Invariants: these threads never call into Postgres and block every
//! signal, since they live inside a backend process; the API key never
//! appears in a `Debug` output, an error or a message built here.
//!
//! How the worker uses it: it hands over [`Job`]s (one channel's batch, or
//! batches of distinct channels for one batch publish) with
//! [`Publisher::submit`], never more than one batch per channel at a time,
//! and drains [`Publisher::results`] when the `wake` callback (run on the
//! publishing thread) tells it a result is ready.
//!
//! Files: `config` (key and hosts), `wire` (messages, bodies, size rules),
//! `http` (requests and fallbacks), `outcome` (what a reply means).

mod config;
mod http;
mod outcome;
mod queue;
mod resolver;
mod wire;
#[cfg(test)]
mod tests;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::{fmt, thread};

use crossbeam_channel::{Receiver, Sender};

pub use config::{check_endpoint, check_host, PublisherConfig, PublisherError};
pub use outcome::{backoff, display_channel, Outcome, PublishError};
pub use wire::{message_id, pack, Batch, Job, OutMessage, MAX_BATCH_CHANNELS, MAX_MESSAGE_SIZE};

use config::validate_host;
use http::Shared;
use queue::JobQueue;

/// One `(batch key, outcome)` per batch of a submitted job, in job order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobResult {
    pub outcomes: Vec<(i64, Outcome)>,
}

/// Runs the HTTP threads. Dropping it behaves like [`Publisher::shutdown`].
pub struct Publisher {
    jobs: Arc<JobQueue>,
    results_tx: Sender<JobResult>,
    results: Receiver<JobResult>,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("primary", &self.shared.primary)
            .field("threads", &self.threads.len())
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Spawns `cfg.threads` (at least one) HTTP threads sharing one
    /// keep-alive connection pool. The threads are created with every
    /// signal blocked, so Postgres's handlers only ever run on the
    /// backend's main thread.
    pub fn start(cfg: PublisherConfig) -> Result<Publisher, PublisherError> {
        // The fields are public, so check again what from_options checked:
        // a bad value here would otherwise fail every request forever.
        if !cfg.agent.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(PublisherError::InvalidAgent);
        }
        if cfg.port == 0 {
            return Err(PublisherError::InvalidPort);
        }
        validate_host(&cfg.rest_host)?;
        for host in &cfg.fallback_hosts {
            validate_host(host)?;
        }
        let threads = cfg.threads.max(1);
        let shared = Arc::new(Shared::new(cfg, threads));
        let jobs = Arc::new(JobQueue::default());
        let (results_tx, results_rx) = crossbeam_channel::unbounded::<JobResult>();
        let mut publisher = Publisher {
            jobs: Arc::clone(&jobs),
            results_tx: results_tx.clone(),
            results: results_rx,
            shared: Arc::clone(&shared),
            threads: Vec::with_capacity(threads),
        };
        // New threads inherit the creator's mask, so block here first:
        // that closes the window before the thread blocks signals itself.
        let _mask = SignalMaskGuard::block_all();
        for i in 0..threads {
            let shared = Arc::clone(&shared);
            let jobs = Arc::clone(&jobs);
            let results = results_tx.clone();
            let spawned = thread::Builder::new()
                .name(format!("ably-publish-{i}"))
                .spawn(move || worker_loop(&shared, &jobs, &results));
            match spawned {
                Ok(handle) => publisher.threads.push(handle),
                // Dropping `publisher` stops the threads already started.
                Err(e) => return Err(PublisherError::Spawn(e)),
            }
        }
        Ok(publisher)
    }

    /// Queues jobs for the threads; never blocks.
    pub fn submit(&self, jobs: Vec<Job>) {
        if let Err(jobs) = self.jobs.push(jobs) {
            // No thread is left to run them; report it rather than let the
            // caller wait for results that never come.
            let error = PublishError { status: None, code: None, message: "The publisher threads have stopped".into() };
            for job in jobs {
                let outcomes = job.keys().into_iter().map(|k| (k, Outcome::Retry { error: error.clone() })).collect();
                let _ = self.results_tx.send(JobResult { outcomes });
            }
        }
    }

    pub fn results(&self) -> &Receiver<JobResult> {
        &self.results
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        self.jobs.close();
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
    }
}

/// Blocks every signal on the current thread and restores the previous
/// mask when dropped.
struct SignalMaskGuard {
    previous: libc::sigset_t,
}

impl SignalMaskGuard {
    fn block_all() -> SignalMaskGuard {
        // SAFETY: sigset_t is plain data; sigfillset initialises it and
        // pthread_sigmask only reads `all` and writes `previous`.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut previous: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut previous);
            SignalMaskGuard { previous }
        }
    }
}

impl Drop for SignalMaskGuard {
    fn drop(&mut self) {
        // SAFETY: restores a mask obtained from pthread_sigmask above.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.previous, std::ptr::null_mut());
        }
    }
}

fn worker_loop(shared: &Shared, jobs: &JobQueue, results: &Sender<JobResult>) {
    // Already inherited from `start`; repeated so the invariant holds
    // even if the spawning code changes. Never restored: the thread ends.
    std::mem::forget(SignalMaskGuard::block_all());
    while let Some(job) = jobs.pop() {
        if shared.stopping.load(Ordering::Acquire) {
            break;
        }
        let keys = job.keys();
        let result = catch_unwind(AssertUnwindSafe(|| shared.run(job))).unwrap_or_else(|_| {
            let error = PublishError {
                status: None,
                code: None,
                message: "Internal error in the publisher thread".into(),
            };
            let outcomes = keys.into_iter().map(|k| {
                (
                    k,
                    Outcome::Retry {
                        error: error.clone(),
                    },
                )
            });
            JobResult {
                outcomes: outcomes.collect(),
            }
        });
        if results.send(result).is_err() {
            break;
        }
        if let Some(wake) = &shared.wake {
            wake();
        }
    }
}

