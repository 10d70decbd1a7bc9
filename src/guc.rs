//! The `ably.*` settings. Names follow Ably's client options (`endpoint`,
//! `restHost`, `port`, `tls`, `fallbackHosts`) so that a value can be copied
//! from an `ably` SDK configuration. All but `ably.max_workers` reload on
//! SIGHUP; `ably.api_key` may also be set per database (ALTER DATABASE, as
//! a superuser), so two applications on one server use two Ably apps.
//!
//! Invariant: host settings are checked when they are set (check hooks), so
//! an invalid value is refused with a message and the previous one stays in
//! force; delivery never stops over a typo in a reload.

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;
use std::ffi::{CStr, CString};

/// The API key: superuser-only and hidden from SHOW / pg_settings for others.
pub static API_KEY: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static ENDPOINT: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static REST_HOST: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static PORT: GucSetting<i32> = GucSetting::<i32>::new(0);
pub static TLS: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static FALLBACK_HOSTS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static DATABASE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static MAX_WORKERS: GucSetting<i32> = GucSetting::<i32>::new(8);
pub static BATCH_SIZE: GucSetting<i32> = GucSetting::<i32>::new(500);
pub static MAX_IN_FLIGHT: GucSetting<i32> = GucSetting::<i32>::new(8);
pub static REQUEST_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(10_000);
pub static POLL_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(1_000);
pub static MAX_MESSAGE_SIZE: GucSetting<i32> =
    GucSetting::<i32>::new(crate::publisher::MAX_MESSAGE_SIZE as i32);
pub static KEY_CAPABILITY: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"{\"*\":[\"*\"]}"));
pub static ROTATE_ROWS: GucSetting<i32> = GucSetting::<i32>::new(100_000);

pub fn define() {
    // A postmaster-level setting can only be defined while preloading.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        GucRegistry::define_int_guc(
            c"ably.max_workers",
            c"Delivery workers at most (one per database with ably_pg installed).",
            c"Each also takes one of max_worker_processes. Requires a restart.",
            &MAX_WORKERS,
            1,
            crate::shared::MAX_SLOTS as i32,
            GucContext::Postmaster,
            GucFlags::default(),
        );
    }
    GucRegistry::define_string_guc(
        c"ably.database",
        c"Optional allow-list: comma-separated databases that may have a delivery worker.",
        c"Empty (the default): every database with ably_pg installed.",
        &DATABASE,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"ably.api_key",
        c"Ably API key (appId.keyId:secret) used by the background worker.",
        c"Visible to superusers only. Never logged. May be set per database with ALTER DATABASE.",
        &API_KEY,
        GucContext::Suset,
        GucFlags::SUPERUSER_ONLY,
    );
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            c"ably.endpoint",
            c"Ably endpoint, as the SDK's endpoint option: a routing policy id or a hostname.",
            c"Default 'main' (main.realtime.ably.net with fallback hosts). A value containing a dot, or 'localhost', is a hostname without fallbacks.",
            &ENDPOINT,
            GucContext::Sighup,
            GucFlags::default(),
            Some(check_endpoint),
            None,
            None,
        );
        GucRegistry::define_string_guc_with_hooks(
            c"ably.rest_host",
            c"Ably REST host (deprecated SDK option restHost); overrides ably.endpoint.",
            c"",
            &REST_HOST,
            GucContext::Sighup,
            GucFlags::default(),
            Some(check_host),
            None,
            None,
        );
    }
    GucRegistry::define_int_guc(
        c"ably.port",
        c"TCP port of the Ably REST endpoint; 0 means 443 with TLS, 80 without.",
        c"",
        &PORT,
        0,
        65535,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"ably.tls",
        c"Use HTTPS to reach Ably.",
        c"",
        &TLS,
        GucContext::Sighup,
        GucFlags::default(),
    );
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            c"ably.fallback_hosts",
            c"Comma-separated fallback hosts; empty string disables fallbacks.",
            c"Unset: Ably's defaults for the endpoint.",
            &FALLBACK_HOSTS,
            GucContext::Sighup,
            GucFlags::default(),
            Some(check_hosts),
            None,
            None,
        );
    }
    GucRegistry::define_int_guc(
        c"ably.batch_size",
        c"Maximum messages per publish request.",
        c"",
        &BATCH_SIZE,
        1,
        1000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"ably.max_in_flight",
        c"Publish requests in flight at once (one per channel).",
        c"",
        &MAX_IN_FLIGHT,
        1,
        64,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"ably.request_timeout",
        c"Timeout of one HTTP request to Ably.",
        c"",
        &REQUEST_TIMEOUT_MS,
        100,
        600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"ably.poll_interval",
        c"How often the worker looks at the queue when nothing wakes it.",
        c"Commits that queue a message wake the worker at once; this is a fallback.",
        &POLL_INTERVAL_MS,
        10,
        3_600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"ably.max_message_size",
        c"Ably's maximum size of one publish (the account's limit).",
        c"",
        &MAX_MESSAGE_SIZE,
        1024,
        16 * 1024 * 1024,
        GucContext::Sighup,
        GucFlags::UNIT_BYTE,
    );
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            c"ably.key_capability",
            c"The capability of ably.api_key, as JSON; token requests may not ask for more.",
            c"",
            &KEY_CAPABILITY,
            GucContext::Sighup,
            GucFlags::default(),
            Some(check_capability),
            None,
            None,
        );
    }
    GucRegistry::define_int_guc(
        c"ably.queue_rotate_rows",
        c"Queue rows after which the worker switches writers to the next queue part.",
        c"",
        &ROTATE_ROWS,
        1000,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::default(),
    );
}

pub fn string(setting: &GucSetting<Option<CString>>) -> Option<String> {
    setting.get().and_then(|s| s.into_string().ok()).filter(|s| !s.is_empty())
}

/// The `ably.database` allow-list; `None` when every database may have a
/// worker.
pub fn allowed_databases() -> Option<Vec<String>> {
    let list: Vec<String> = string(&DATABASE)?.split(',').map(|d| d.trim().to_string()).filter(|d| !d.is_empty()).collect();
    (!list.is_empty()).then_some(list)
}

/// `ably.fallback_hosts`: `None` when unset (Ably's defaults), else the
/// list (empty disables fallbacks).
pub fn fallback_hosts() -> Option<Vec<String>> {
    FALLBACK_HOSTS.get().map(|s| s.to_string_lossy().split(',').map(str::to_string).collect())
}

/// Reports why a value is refused (GUC_check_errdetail) and refuses it.
unsafe fn refuse(detail: String) -> bool {
    let detail = CString::new(detail).unwrap_or_default();
    unsafe { pg_sys::GUC_check_errdetail_string = pg_sys::pstrdup(detail.as_ptr()) };
    false
}

unsafe fn value<'a>(newval: *mut *mut std::ffi::c_char) -> Option<&'a str> {
    unsafe {
        if newval.is_null() || (*newval).is_null() {
            return None;
        }
        CStr::from_ptr(*newval).to_str().ok().map(str::trim).filter(|v| !v.is_empty())
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn check_endpoint(newval: *mut *mut std::ffi::c_char, _extra: *mut *mut std::ffi::c_void, _source: pg_sys::GucSource::Type) -> bool {
    match unsafe { value(newval) }.map(crate::publisher::check_endpoint) {
        Some(Err(e)) => unsafe { refuse(format!("{e}. Examples: 'main', 'nonprod:sandbox', 'localhost' or a host name such as 'rest.example.com'.")) },
        _ => true,
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn check_host(newval: *mut *mut std::ffi::c_char, _extra: *mut *mut std::ffi::c_void, _source: pg_sys::GucSource::Type) -> bool {
    match unsafe { value(newval) }.map(crate::publisher::check_host) {
        Some(Err(e)) => unsafe { refuse(format!("{e}. A host name or IP address, without scheme, port or path.")) },
        _ => true,
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn check_hosts(newval: *mut *mut std::ffi::c_char, _extra: *mut *mut std::ffi::c_void, _source: pg_sys::GucSource::Type) -> bool {
    let Some(list) = (unsafe { value(newval) }) else { return true };
    for host in list.split(',').map(str::trim).filter(|h| !h.is_empty()) {
        if let Err(e) = crate::publisher::check_host(host) {
            return unsafe { refuse(format!("{e}. A comma-separated list of host names, or '' for none.")) };
        }
    }
    true
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn check_capability(newval: *mut *mut std::ffi::c_char, _extra: *mut *mut std::ffi::c_void, _source: pg_sys::GucSource::Type) -> bool {
    let Some(text) = (unsafe { value(newval) }) else { return true };
    match serde_json::from_str::<serde_json::Value>(text).map_err(|e| e.to_string()).and_then(|v| {
        crate::token::canonical_capability(&v).map(|_| ()).map_err(|e| e.to_string())
    }) {
        Ok(()) => true,
        Err(e) => unsafe { refuse(format!("{e}. The key's capability as JSON, e.g. {{\"*\":[\"*\"]}}.")) },
    }
}
