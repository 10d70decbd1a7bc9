//! ably_pg: publish PostgreSQL row changes to Ably from inside the database.
//!
//! The path of a change, one module each:
//! rules (SQL surface) → trigger (row capture) → queue (durable, same
//! transaction) → worker (background process) → publisher (HTTP threads) →
//! Ably REST. `guc`, `shared` and `status` hold configuration and what the
//! worker reports; `auth` signs Ably token requests from SQL.

use pgrx::prelude::*;

mod auth;
mod batch;
mod catalog;
mod channel;
mod condition;
mod ddl;
mod dead_letters;
mod errors;
mod grants;
mod guc;
mod identity;
mod lanes;
mod launcher;
mod publisher;
mod queue;
mod queue_state;
mod redact;
mod rule_store;
mod rules;
mod shared;
mod status;
mod store;
mod tick;
mod token;
mod trigger;
mod worker;

#[cfg(any(test, feature = "pg_test"))]
mod tests;

::pgrx::pg_module_magic!();

extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    guc::define();
    redact::install();
    // Shared memory and the background worker only exist when loaded from
    // shared_preload_libraries; without it the extension still queues
    // changes, and ably.status() says that nothing delivers them.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        shared::init();
        launcher::register();
    }
}

/// Configuration for `cargo pgrx test`: the test cluster preloads ably_pg so
/// the worker and shared memory are exercised too.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![
            "shared_preload_libraries = 'ably_pg'",
            "ably.poll_interval = '1s'",
        ]
    }
}
