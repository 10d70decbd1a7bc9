//! What happened to a batch, and what the worker should do about it.
//!
//! Invariants:
//! - Only a reply that is recognisably Ably's counts: a success needs Ably's
//!   status and response body, and a refusal needs an Ably error (a JSON
//!   `error` object with a numeric code, or the `X-Ably-Errorcode` header).
//!   Anything else — a proxy's 200 "ok", a load balancer's 404 page, a 414
//!   from a gateway — is retried, never taken as delivered or refused.
//! - Only credential errors (40100–40149) pause delivery; a capability
//!   refusal (40160–40169) or another refusal of one message concerns that
//!   message; a 429 or another refusal of a channel backs off that channel.

use std::fmt;
use std::time::Duration;

use rand::Rng;
use serde_json::Value;

const BACKOFF_BASE_MS: u64 = 100;
const BACKOFF_CAP_MS: u64 = 30_000;

/// What the caller should do with a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Ably accepted every message of the batch.
    Delivered,
    /// No answer, a timeout, a 5xx after the fallbacks, or a reply that is
    /// not Ably's: Ably may or may not have the messages. Resend the same
    /// messages with the same ids after a [`backoff`].
    Retry { error: PublishError },
    /// 429 (or another refusal of the channel, such as a bare 403): nothing
    /// was published; back off this channel only, and send less at once.
    RateLimited { error: PublishError },
    /// A credential error (40100–40149: bad, expired or revoked key):
    /// nothing will succeed until the configuration changes.
    AuthFailed { error: PublishError },
    /// Ably refused the batch for good (too large, invalid channel or data,
    /// no capability for the channel): resending fails the same way.
    Rejected { error: PublishError },
}

impl Outcome {
    pub fn error(&self) -> Option<&PublishError> {
        match self {
            Outcome::Delivered => None,
            Outcome::Retry { error }
            | Outcome::RateLimited { error }
            | Outcome::AuthFailed { error }
            | Outcome::Rejected { error } => Some(error),
        }
    }

    /// Sorts an Ably error into the action it calls for. Ably codes are
    /// `status * 100 + n`, so a code also tells the class when the HTTP
    /// status is generic (e.g. 42922 arrives with headers only). An error
    /// without an Ably code is not Ably's and is retried.
    pub fn from_ably_error(error: PublishError) -> Outcome {
        // Whoever says it, a 429 means "slower": back the channel off.
        if error.status == Some(429) {
            return Outcome::RateLimited { error };
        }
        let Some(code) = error.code else {
            return Outcome::Retry { error };
        };
        let class = code / 100;
        let is = |s: u16| error.status == Some(s) || class == u32::from(s);
        if is(429) {
            Outcome::RateLimited { error }
        } else if (40160..=40169).contains(&code) {
            // The key may not publish to this channel: that message, not
            // the whole database, is refused.
            Outcome::Rejected { error }
        } else if (40100..=40149).contains(&code) {
            Outcome::AuthFailed { error }
        } else if is(401) || is(403) {
            Outcome::RateLimited { error }
        } else if matches!(error.status, Some(400..=499)) && class < 500 && error.status != Some(408) {
            Outcome::Rejected { error }
        } else {
            Outcome::Retry { error }
        }
    }
}

/// An error from Ably or the network. Its message has been stripped of the
/// key and shortened, so it can be logged and shown to users as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishError {
    /// HTTP status, or `None` when no response arrived.
    pub status: Option<u16>,
    /// Ably error code (e.g. 40009), from the body or `X-Ably-Errorcode`.
    pub code: Option<u32>,
    pub message: String,
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        match (self.status, self.code) {
            (Some(s), Some(c)) => write!(f, " (HTTP {s}, Ably error {c})"),
            (Some(s), None) => write!(f, " (HTTP {s})"),
            (None, Some(c)) => write!(f, " (Ably error {c})"),
            (None, None) => Ok(()),
        }
    }
}

impl std::error::Error for PublishError {}

/// Delay before the `attempt`-th retry (0-based): uniform in
/// `[0, min(30 s, 100 ms × 2^attempt)]` ("full jitter"), so many channels
/// failing together do not retry in lock-step.
pub fn backoff(attempt: u32) -> Duration {
    let cap = BACKOFF_BASE_MS.saturating_mul(1u64 << attempt.min(20)).min(BACKOFF_CAP_MS);
    Duration::from_millis(rand::rng().random_range(0..=cap))
}

/// Whether a successful single-channel publish reply is Ably's: 201 with a
/// JSON object naming the channel and the message id base (or serials).
pub fn is_publish_response(status: u16, body: &str) -> bool {
    if status != 201 && status != 200 {
        return false;
    }
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(doc)) => {
            doc.get("channel").is_some_and(Value::is_string)
                && (doc.get("messageId").is_some_and(Value::is_string) || doc.get("serials").is_some_and(Value::is_array))
        }
        _ => false,
    }
}

/// Reads an Ably ErrorInfo object, tolerating missing or oddly typed
/// fields. Without `statusCode`, the status is derived from the code.
pub fn error_from_json(v: &Value) -> PublishError {
    let number = |field: &str| match v.get(field) {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    let code = number("code").and_then(|c| u32::try_from(c).ok()).filter(|c| (10000..100000).contains(c));
    let status = number("statusCode")
        .and_then(|s| u16::try_from(s).ok())
        .filter(|s| (100..600).contains(s))
        .or_else(|| code.map(|c| c / 100).and_then(|s| u16::try_from(s).ok()).filter(|s| (100..600).contains(s)));
    let message = v
        .get("message")
        .and_then(Value::as_str)
        .map(String::from)
        .unwrap_or_else(|| "Ably reported an error without a message".into());
    PublishError { status, code, message }
}

/// A channel name as it may appear in a log line or an error: at most 100
/// characters, then how long it really is.
pub fn display_channel(name: &str) -> String {
    const MAX: usize = 100;
    match name.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}… ({} bytes)", &name[..cut], name.len()),
        None => name.to_string(),
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    fn err(status: Option<u16>, code: Option<u32>) -> PublishError {
        PublishError { status, code, message: "x".into() }
    }

    #[test]
    fn only_ably_errors_refuse_or_pause() {
        assert!(matches!(Outcome::from_ably_error(err(Some(404), None)), Outcome::Retry { .. }));
        assert!(matches!(Outcome::from_ably_error(err(Some(401), None)), Outcome::Retry { .. }));
        assert!(matches!(Outcome::from_ably_error(err(Some(414), None)), Outcome::Retry { .. }));
        assert!(matches!(Outcome::from_ably_error(err(Some(401), Some(40101))), Outcome::AuthFailed { .. }));
        assert!(matches!(Outcome::from_ably_error(err(Some(401), Some(40142))), Outcome::AuthFailed { .. }));
        assert!(matches!(Outcome::from_ably_error(err(Some(401), Some(40160))), Outcome::Rejected { .. }));
        assert!(matches!(Outcome::from_ably_error(err(Some(403), Some(40300))), Outcome::RateLimited { .. }));
        assert!(matches!(Outcome::from_ably_error(err(Some(429), Some(42913))), Outcome::RateLimited { .. }));
        assert!(matches!(Outcome::from_ably_error(err(None, Some(42922))), Outcome::RateLimited { .. }));
        assert!(matches!(Outcome::from_ably_error(err(Some(413), Some(40009))), Outcome::Rejected { .. }));
        assert!(matches!(Outcome::from_ably_error(err(Some(500), Some(50000))), Outcome::Retry { .. }));
    }

    #[test]
    fn a_success_must_look_like_ablys() {
        assert!(is_publish_response(201, r#"{"channel":"c","messageId":"b","serials":["s"]}"#));
        assert!(!is_publish_response(200, "ok"));
        assert!(!is_publish_response(200, "{}"));
        assert!(!is_publish_response(204, ""));
        assert!(!is_publish_response(201, "<html>"));
    }

    #[test]
    fn long_channel_names_are_cut_for_display() {
        let long = "x".repeat(70_000);
        let shown = display_channel(&long);
        assert!(shown.len() < 200, "{shown}");
        assert!(shown.ends_with("(70000 bytes)"));
        assert_eq!(display_channel("chat:1"), "chat:1");
    }
}
