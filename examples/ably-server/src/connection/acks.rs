//! The answers a connection gave to its recent MESSAGE and PRESENCE frames,
//! by msgSerial. After a resume ably-js re-sends every frame it saw no ACK
//! for, under the same msgSerial; the server answers those from here instead
//! of publishing them twice. Bounded: a client never has more in flight.

use std::collections::VecDeque;

use crate::error::AblyError;
use crate::protocol::PublishResult;

/// How many answers are remembered per connection.
const REMEMBERED: usize = 1024;

/// The answer to one client frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Ack(Option<PublishResult>),
    Nack(AblyError),
}

#[derive(Debug, Default)]
pub struct AckLog {
    answers: VecDeque<(i64, Outcome)>,
}

impl AckLog {
    /// The answer already given to `msg_serial`, if any.
    pub fn answered(&self, msg_serial: i64) -> Option<&Outcome> {
        self.answers.iter().rev().find(|(s, _)| *s == msg_serial).map(|(_, o)| o)
    }

    pub fn record(&mut self, msg_serial: i64, outcome: Outcome) {
        if self.answers.len() == REMEMBERED {
            self.answers.pop_front();
        }
        self.answers.push_back((msg_serial, outcome));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_recent_answers_only() {
        let mut log = AckLog::default();
        log.record(0, Outcome::Ack(None));
        log.record(1, Outcome::Nack(AblyError::bad_request("no")));
        assert_eq!(log.answered(0), Some(&Outcome::Ack(None)));
        assert!(matches!(log.answered(1), Some(Outcome::Nack(_))));
        assert_eq!(log.answered(2), None);
        for s in 2..(REMEMBERED as i64 + 2) {
            log.record(s, Outcome::Ack(None));
        }
        assert_eq!(log.answered(0), None);
        assert!(log.answered(REMEMBERED as i64 + 1).is_some());
    }
}
