//! Ably's error model: every failure a client can see carries an Ably code, an
//! HTTP status and a message, serialised as `ErrorInfo`. Constructors exist for
//! exactly the codes this server emits, so a code is never typed twice.

use serde::{Deserialize, Serialize};

/// A protocol-level failure, reported to the client as Ably's `ErrorInfo`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (code {code}, status {status})")]
pub struct AblyError {
    pub code: u32,
    pub status: u16,
    pub message: String,
}

impl AblyError {
    pub fn new(code: u32, status: u16, message: impl Into<String>) -> Self {
        Self { code, status, message: message.into() }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(40000, 400, message)
    }
    pub fn invalid_body(message: impl Into<String>) -> Self {
        Self::new(40001, 400, message)
    }
    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new(40003, 400, message)
    }
    pub fn message_too_large(size: usize, max: usize) -> Self {
        Self::new(
            40009,
            413,
            format!("Maximum message length exceeded (size {size} bytes, limit {max} bytes)"),
        )
    }
    pub fn invalid_channel_name(message: impl Into<String>) -> Self {
        Self::new(40010, 400, message)
    }
    pub fn invalid_client_id(message: impl Into<String>) -> Self {
        Self::new(40012, 400, message)
    }
    pub fn invalid_message_id(message: impl Into<String>) -> Self {
        Self::new(40031, 400, message)
    }
    pub fn invalid_credentials(message: impl Into<String>) -> Self {
        Self::new(40101, 401, message)
    }
    pub fn incompatible_credentials(message: impl Into<String>) -> Self {
        Self::new(40102, 401, message)
    }
    pub fn basic_auth_needs_tls() -> Self {
        Self::new(40103, 401, "Invalid use of Basic authentication over non-TLS transport")
    }
    pub fn timestamp_not_current() -> Self {
        Self::new(40104, 401, "Timestamp not current")
    }
    pub fn nonce_reused() -> Self {
        Self::new(40105, 401, "Nonce value replayed")
    }
    pub fn token_expired() -> Self {
        Self::new(40142, 401, "Token expired")
    }
    pub fn capability_denied(message: impl Into<String>) -> Self {
        Self::new(40160, 401, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(40400, 404, message)
    }
    pub fn channel_rate_exceeded(limit: u32) -> Self {
        Self::new(
            42913,
            429,
            format!("Rate limit exceeded; request rejected (nonfatal); channel limit {limit} messages per second"),
        )
    }
    pub fn connection_resume_failed() -> Self {
        Self::new(80008, 400, "Unable to recover connection (connection state not retained)")
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(50000, 500, message)
    }

    pub fn info(&self) -> ErrorInfo {
        ErrorInfo {
            message: self.message.clone(),
            code: self.code,
            status_code: self.status,
            href: format!("https://help.ably.io/error/{}", self.code),
        }
    }
}

/// The wire form of an error: the value of `error` in REST bodies and in
/// ERROR / NACK / DISCONNECTED protocol messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorInfo {
    pub message: String,
    pub code: u32,
    pub status_code: u16,
    pub href: String,
}

/// REST error body: `{"error": {...}}`.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub error: ErrorInfo,
}
