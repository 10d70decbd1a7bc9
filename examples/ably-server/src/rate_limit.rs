//! Per-channel inbound message rate limit (`--channel-rate-limit`): a fixed
//! one-second window; a publish that would take the window over the limit is
//! refused whole with 42913 and does not count.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct RateWindow {
    started: Instant,
    count: u32,
}

impl RateWindow {
    pub fn new(now: Instant) -> Self {
        Self { started: now, count: 0 }
    }

    /// Admits `n` messages if that keeps this second within `limit`.
    pub fn admit(&mut self, n: u32, limit: u32, now: Instant) -> bool {
        if now.duration_since(self.started) >= Duration::from_secs(1) {
            self.started = now;
            self.count = 0;
        }
        if self.count.saturating_add(n) > limit {
            return false;
        }
        self.count += n;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_each_second() {
        let t0 = Instant::now();
        let mut w = RateWindow::new(t0);
        assert!(w.admit(3, 5, t0));
        assert!(w.admit(2, 5, t0));
        assert!(!w.admit(1, 5, t0 + Duration::from_millis(999)));
        assert!(w.admit(5, 5, t0 + Duration::from_secs(1)));
        assert!(!w.admit(6, 5, t0 + Duration::from_secs(3)));
    }
}
