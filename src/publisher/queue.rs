//! The jobs waiting for a publisher thread: a mutex and a condition
//! variable. An idle thread sleeps until a job or shutdown comes, without
//! spinning (a spinning channel cost the worker measurable CPU on every
//! wake-up of its eight threads).

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};

use super::wire::Job;

#[derive(Default)]
pub(super) struct JobQueue {
    state: Mutex<State>,
    ready: Condvar,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    closed: bool,
}

impl JobQueue {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues jobs; hands them back if the queue was closed.
    pub(super) fn push(&self, jobs: Vec<Job>) -> Result<(), Vec<Job>> {
        let mut state = self.lock();
        if state.closed {
            return Err(jobs);
        }
        let n = jobs.len();
        state.jobs.extend(jobs);
        drop(state);
        if n == 1 {
            self.ready.notify_one();
        } else if n > 1 {
            self.ready.notify_all();
        }
        Ok(())
    }

    /// The next job, waiting for one; `None` once closed.
    pub(super) fn pop(&self) -> Option<Job> {
        let mut state = self.lock();
        loop {
            if state.closed {
                return None;
            }
            if let Some(job) = state.jobs.pop_front() {
                return Some(job);
            }
            state = self.ready.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Wakes every thread; queued jobs are dropped.
    pub(super) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.jobs.clear();
        drop(state);
        self.ready.notify_all();
    }
}
