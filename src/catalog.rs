//! Catalog look-ups without SQL: the extension's row, its schema and its
//! relations, found through the system caches and catalog indexes.
//!
//! Invariant: nothing here resolves a name through `search_path`, so no
//! caller-planted object can change what ably_pg finds; these functions are
//! safe in a writer's trigger, under a switched identity and in the worker.

use pgrx::pg_sys;
use pgrx::FromDatum;
use std::ffi::CString;

/// What ably_pg needs to know about its own `pg_extension` row.
#[derive(Clone, Copy)]
pub struct Extension {
    pub oid: pg_sys::Oid,
    pub owner: pg_sys::Oid,
    pub namespace: pg_sys::Oid,
    /// Whether the installed SQL objects are this library's version (they
    /// are not between installing a new release and ALTER EXTENSION UPDATE).
    pub current: bool,
}

thread_local! {
    /// The extension's row as read in the current transaction.
    static CACHED: std::cell::Cell<Option<(u32, Extension)>> = const { std::cell::Cell::new(None) };
}

/// The installed ably_pg extension in this database, if any (read once per
/// transaction: there is no cache invalidation for pg_extension).
pub fn extension() -> Option<Extension> {
    let lxid = local_transaction_id();
    if let Some((cached_lxid, extension)) = CACHED.with(|c| c.get()) {
        if cached_lxid == lxid {
            return Some(extension);
        }
    }
    let found = read_extension();
    CACHED.with(|c| c.set(found.map(|e| (lxid, e))));
    found
}

/// This backend's current local transaction id.
pub fn local_transaction_id() -> u32 {
    unsafe {
        #[cfg(any(feature = "pg15", feature = "pg16"))]
        {
            (*pg_sys::MyProc).lxid
        }
        #[cfg(not(any(feature = "pg15", feature = "pg16")))]
        {
            (*pg_sys::MyProc).vxid.lxid
        }
    }
}

/// One scan of pg_extension's name index (the worker does this once per
/// round, so it is kept to a single index probe).
fn read_extension() -> Option<Extension> {
    unsafe {
        let rel = pg_sys::table_open(pg_sys::ExtensionRelationId, pg_sys::AccessShareLock as i32);
        let mut key: pg_sys::ScanKeyData = std::mem::zeroed();
        pg_sys::ScanKeyInit(
            &mut key,
            pg_sys::Anum_pg_extension_extname as i16,
            pg_sys::BTEqualStrategyNumber as u16,
            pg_sys::F_NAMEEQ.into(),
            pg_sys::Datum::from(c"ably_pg".as_ptr()),
        );
        let scan = pg_sys::systable_beginscan(rel, pg_sys::Oid::from(pg_sys::ExtensionNameIndexId), true, std::ptr::null_mut(), 1, &mut key);
        let tuple = pg_sys::systable_getnext(scan);
        let found = (!tuple.is_null()).then(|| {
            let form = pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_extension>(tuple);
            let mut isnull = false;
            let version = pg_sys::heap_getattr(tuple, pg_sys::Anum_pg_extension_extversion as i32, (*rel).rd_att, &mut isnull);
            let version = if isnull { String::new() } else { String::from_datum(version, false).unwrap_or_default() };
            Extension { oid: (*form).oid, owner: (*form).extowner, namespace: (*form).extnamespace, current: version == env!("CARGO_PKG_VERSION") }
        });
        pg_sys::systable_endscan(scan);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as i32);
        found
    }
}

pub fn extension_owner() -> Option<pg_sys::Oid> {
    extension().map(|e| e.owner)
}

/// A relation of the extension's own schema, by name.
pub fn ably_relation(name: &str) -> Option<pg_sys::Oid> {
    let namespace = extension()?.namespace;
    relation_in(namespace, name)
}

pub fn relation_in(namespace: pg_sys::Oid, name: &str) -> Option<pg_sys::Oid> {
    let name = CString::new(name).ok()?;
    let oid = unsafe { pg_sys::get_relname_relid(name.as_ptr(), namespace) };
    (oid != pg_sys::InvalidOid).then_some(oid)
}

/// Whether the current user owns `relid` (or is a superuser).
pub fn owns_relation(relid: pg_sys::Oid) -> bool {
    unsafe {
        #[cfg(feature = "pg15")]
        {
            pg_sys::pg_class_ownercheck(relid, pg_sys::GetUserId())
        }
        #[cfg(not(feature = "pg15"))]
        {
            pg_sys::object_ownercheck(pg_sys::RelationRelationId, relid, pg_sys::GetUserId())
        }
    }
}

/// Whether `member` has the privileges of `role` (directly or through
/// membership with INHERIT); superusers have every role's privileges.
pub fn has_privileges_of(member: pg_sys::Oid, role: pg_sys::Oid) -> bool {
    unsafe { pg_sys::has_privs_of_role(member, role) }
}

/// The text of a `name` or C string pointer.
pub unsafe fn cstr(ptr: *const std::ffi::c_char) -> String {
    if ptr.is_null() {
        return String::new();
    }
    unsafe { std::ffi::CStr::from_ptr(ptr) }.to_string_lossy().into_owned()
}

/// Attribute `i` (0-based) of a tuple descriptor (PostgreSQL 18 moved the
/// attribute array behind the compact attributes).
pub unsafe fn attr(desc: pg_sys::TupleDesc, i: usize) -> *mut pg_sys::FormData_pg_attribute {
    unsafe {
        #[cfg(any(feature = "pg15", feature = "pg16"))]
        {
            (*desc).attrs.as_mut_ptr().add(i)
        }
        #[cfg(not(any(feature = "pg15", feature = "pg16")))]
        {
            pg_sys::TupleDescAttr(desc, i as i32)
        }
    }
}
