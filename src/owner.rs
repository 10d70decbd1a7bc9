//! Acting as the extension's owner. The queue, batches and rules are not
//! writable by PUBLIC, yet every writer of a published table must be able to
//! queue its change: like PostgreSQL's own foreign-key triggers, ably_pg
//! switches to the owner for exactly the statements it runs itself, with a
//! restricted security context so nothing the user controls runs as owner.

use pgrx::prelude::*;
use std::cell::Cell;

thread_local! {
    static OWNER: Cell<pg_sys::Oid> = const { Cell::new(pg_sys::InvalidOid) };
}

/// The role that owns the ably_pg extension (cached for the backend).
pub fn extension_owner() -> pg_sys::Oid {
    let cached = OWNER.with(|o| o.get());
    if cached != pg_sys::InvalidOid {
        return cached;
    }
    let owner = crate::sql::select_one::<pg_sys::Oid>(
        "SELECT extowner FROM pg_catalog.pg_extension WHERE extname = 'ably_pg'",
        &[],
    )
    .unwrap_or(pg_sys::Oid::from(pg_sys::BOOTSTRAP_SUPERUSERID));
    OWNER.with(|o| o.set(owner));
    owner
}

/// Runs `f` as the extension owner and restores the caller's identity, also
/// when `f` raises an error.
pub fn as_extension_owner<R>(f: impl FnOnce() -> R) -> R {
    as_role(extension_owner(), f)
}

/// Runs `f` as `role` with a restricted security context (used to evaluate a
/// rule's condition as the table's owner, never as the writer).
pub fn as_role<R>(role: pg_sys::Oid, f: impl FnOnce() -> R) -> R {
    let mut saved_user = pg_sys::InvalidOid;
    let mut saved_context = 0;
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context);
        pg_sys::SetUserIdAndSecContext(
            role,
            saved_context
                | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
                | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
        );
    }
    PgTryBuilder::new(std::panic::AssertUnwindSafe(f))
        .finally(|| unsafe { pg_sys::SetUserIdAndSecContext(saved_user, saved_context) })
        .execute()
}
