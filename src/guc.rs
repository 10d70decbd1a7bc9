//! The `ably.*` settings. Names follow Ably's client options (`endpoint`,
//! `restHost`, `port`, `tls`, `fallbackHosts`) so that a value can be copied
//! from an `ably` SDK configuration. All but `ably.database` reload on SIGHUP.

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use std::ffi::CString;

/// The API key: superuser-only and hidden from SHOW / pg_settings for others.
pub static API_KEY: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static ENDPOINT: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static REST_HOST: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static PORT: GucSetting<i32> = GucSetting::<i32>::new(0);
pub static TLS: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static FALLBACK_HOSTS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static DATABASE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"postgres"));
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
    if unsafe { pgrx::pg_sys::process_shared_preload_libraries_in_progress } {
        GucRegistry::define_string_guc(
            c"ably.database",
            c"Comma-separated databases whose queues the background worker delivers.",
            c"One worker per database. Requires a restart.",
            &DATABASE,
            GucContext::Postmaster,
            GucFlags::default(),
        );
    }
    GucRegistry::define_string_guc(
        c"ably.api_key",
        c"Ably API key (appId.keyId:secret) used by the background worker.",
        c"Visible to superusers only. Never logged.",
        &API_KEY,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_string_guc(
        c"ably.endpoint",
        c"Ably endpoint, as the SDK's endpoint option: a routing policy id or a hostname.",
        c"Default 'main' (main.realtime.ably.net with fallback hosts). A value containing a dot, or 'localhost', is a hostname without fallbacks.",
        &ENDPOINT,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"ably.rest_host",
        c"Ably REST host (deprecated SDK option restHost); overrides ably.endpoint.",
        c"",
        &REST_HOST,
        GucContext::Sighup,
        GucFlags::default(),
    );
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
    GucRegistry::define_string_guc(
        c"ably.fallback_hosts",
        c"Comma-separated fallback hosts; empty string disables fallbacks.",
        c"Unset: Ably's defaults for the endpoint.",
        &FALLBACK_HOSTS,
        GucContext::Sighup,
        GucFlags::default(),
    );
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
    GucRegistry::define_string_guc(
        c"ably.key_capability",
        c"The capability of ably.api_key, as JSON; token requests may not ask for more.",
        c"",
        &KEY_CAPABILITY,
        GucContext::Sighup,
        GucFlags::default(),
    );
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

/// Databases the worker serves, from `ably.database`.
pub fn databases() -> Vec<String> {
    string(&DATABASE)
        .map(|s| s.split(',').map(|d| d.trim().to_string()).filter(|d| !d.is_empty()).collect())
        .unwrap_or_default()
}
