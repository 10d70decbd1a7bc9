//! How ably_pg reports a user's mistake: a real SQLSTATE, a message naming
//! the offending value, and a HINT saying what to do. Never a panic message,
//! never a secret.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

pub use pgrx::PgSqlErrorCode as Code;

/// Raises an ERROR with a hint. Does not return.
pub fn raise(code: Code, message: impl Into<String>, hint: impl Into<String>) -> ! {
    ErrorReport::new(code, message.into(), "ably_pg")
        .set_hint(hint.into())
        .report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Raises an ERROR with a detail and a hint. Does not return.
pub fn raise_detail(
    code: Code,
    message: impl Into<String>,
    detail: impl Into<String>,
    hint: impl Into<String>,
) -> ! {
    ErrorReport::new(code, message.into(), "ably_pg")
        .set_detail(detail.into())
        .set_hint(hint.into())
        .report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}
