//! The per-channel deduplication window: a publish whose idempotency key was
//! seen on the same channel less than two minutes ago is acknowledged with the
//! original result and neither stored nor delivered again.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

pub const WINDOW: Duration = Duration::from_secs(120);

/// What a publish was answered with, replayed to its duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub serials: Vec<Option<String>>,
}

#[derive(Debug, Default)]
pub struct IdempotencyWindow {
    seen: HashMap<String, Recorded>,
    /// Keys in first-seen order, so expiry pops from the front.
    order: VecDeque<(Instant, String)>,
}

impl IdempotencyWindow {
    /// Forgets keys older than the window.
    pub fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) < WINDOW {
                break;
            }
            if let Some((_, key)) = self.order.pop_front() {
                self.seen.remove(&key);
            }
        }
    }

    /// The earlier result if `key` was published within the window.
    pub fn lookup(&mut self, key: &str, now: Instant) -> Option<Recorded> {
        self.expire(now);
        self.seen.get(key).cloned()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// When the oldest remembered key is forgotten.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.order.front().map(|(at, _)| *at + WINDOW)
    }

    pub fn record(&mut self, key: &str, result: Recorded, now: Instant) {
        self.expire(now);
        if self.seen.insert(key.to_string(), result).is_none() {
            self.order.push_back((now, key.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_inside_the_window_are_found_and_expire_after_it() {
        let mut w = IdempotencyWindow::default();
        let t0 = Instant::now();
        let rec = Recorded { serials: vec![Some("s1".into())] };
        assert_eq!(w.lookup("base", t0), None);
        w.record("base", rec.clone(), t0);
        assert_eq!(w.lookup("base", t0 + Duration::from_secs(119)), Some(rec));
        assert_eq!(w.lookup("other", t0), None);
        assert_eq!(w.lookup("base", t0 + WINDOW), None);
        // After expiry the key is new again.
        w.record("base", Recorded { serials: vec![] }, t0 + WINDOW);
        assert!(w.lookup("base", t0 + WINDOW).is_some());
    }
}
