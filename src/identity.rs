//! Acting as another role, safely.
//!
//! Writers of a published table have no rights on ably's tables, yet their
//! changes must be queued; a rule's condition runs with the table owner's
//! rights whoever writes. Like PostgreSQL's foreign-key triggers, ably_pg
//! switches identity for exactly the work it does itself.
//!
//! Invariant: whenever the identity is switched (and in the background
//! worker), `search_path` is pinned to `pg_catalog, pg_temp` for the same
//! scope, and the security context is restricted, so nothing a caller
//! planted in a schema of its own — a function, an operator, a cast — can be
//! picked up by name resolution and run with the borrowed rights. (PostgreSQL
//! never looks up functions or operators in pg_temp.) SQL that ably_pg runs
//! additionally schema-qualifies what it names.

use pgrx::prelude::*;

/// The only search path ably_pg's own SQL ever runs under.
pub const PINNED_SEARCH_PATH: &std::ffi::CStr = c"pg_catalog, pg_temp";

/// The role that owns the ably_pg extension, found through the catalog.
pub fn extension_owner() -> pg_sys::Oid {
    crate::catalog::extension_owner().unwrap_or(pg_sys::Oid::from(pg_sys::BOOTSTRAP_SUPERUSERID))
}

/// Runs `f` as the extension owner; see [`as_role`].
pub fn as_extension_owner<R>(f: impl FnOnce() -> R) -> R {
    as_role(extension_owner(), f)
}

/// Runs `f` as `role` in a restricted security context with the search path
/// pinned, and restores the caller's identity and search path afterwards,
/// also when `f` raises an error.
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
    PgTryBuilder::new(std::panic::AssertUnwindSafe(|| with_pinned_search_path(f)))
        .finally(|| unsafe { pg_sys::SetUserIdAndSecContext(saved_user, saved_context) })
        .execute()
}

/// Runs `f` with `search_path = pg_catalog, pg_temp`, as PostgreSQL 17+
/// does for maintenance commands: a new GUC nesting level, restored on the
/// way out (an error is cleaned up the same way by the abort that follows).
pub fn with_pinned_search_path<R>(f: impl FnOnce() -> R) -> R {
    let level = unsafe { pg_sys::NewGUCNestLevel() };
    unsafe {
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            PINNED_SEARCH_PATH.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
    }
    PgTryBuilder::new(std::panic::AssertUnwindSafe(f))
        .finally(|| unsafe { pg_sys::AtEOXact_GUC(false, level) })
        .execute()
}

/// Pins the search path for the rest of the session (the background worker,
/// which connects as the bootstrap superuser: database- and role-level
/// `search_path` settings, which the database owner controls, must not
/// reach it). PGC_S_OVERRIDE outranks every other source, also on reload.
pub fn pin_search_path_for_session() {
    unsafe {
        pg_sys::SetConfigOption(
            c"search_path".as_ptr(),
            PINNED_SEARCH_PATH.as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_OVERRIDE,
        );
    }
}
