//! Which channels a role may publish to: `ably.channel_grants`, managed with
//! `ably.grant_channels()` / `ably.revoke_channels()`.
//!
//! Invariant: a rule's channel template is checked when the rule is made
//! (every channel it can render must be covered), and `ably.publish()`
//! checks its channel on every call, against the patterns granted to any
//! role whose privileges the caller has. Where no grant applies (and for
//! superusers), the key's own capability (`ably.key_capability`) is the
//! limit, so a DBA who never grants anything sees the key's rules.

use crate::channel::{pattern_covers, pattern_problem, Template};
use crate::errors::{raise, raise_detail, Code};
use crate::guc;
use crate::store::{text_datum, Table};
use pgrx::prelude::*;

#[pg_extern(
    volatile,
    sql = r#"
CREATE FUNCTION ably.grant_channels(role regrole, patterns text[])
RETURNS integer VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION ably.grant_channels(regrole, text[]) IS
    'Allow a role''s rules and ably.publish() to target channels matching these Ably capability patterns (''*'', ''ns:*'' or a name); returns how many were added';
"#
)]
fn grant_channels(role: Option<pg_sys::Oid>, patterns: Option<Vec<Option<String>>>) -> i32 {
    let Some(role) = role else {
        raise(Code::ERRCODE_NULL_VALUE_NOT_ALLOWED, "role must not be NULL", "Pass a role name, e.g. 'app'.");
    };
    let patterns = validated(patterns);
    let existing = granted_to(role);
    let table = Table::open("channel_grants", pg_sys::RowExclusiveLock);
    let mut added = 0;
    for pattern in patterns {
        if existing.contains(&pattern) {
            continue;
        }
        table.insert(&[
            ("role", Some(pg_sys::Datum::from(role))),
            ("pattern", Some(text_datum(&pattern))),
            ("granted_at", Some(pg_sys::Datum::from(unsafe { pg_sys::GetCurrentTransactionStartTimestamp() }))),
        ]);
        added += 1;
    }
    unsafe { pg_sys::CommandCounterIncrement() };
    added
}

#[pg_extern(
    volatile,
    sql = r#"
CREATE FUNCTION ably.revoke_channels(role regrole, patterns text[] DEFAULT NULL)
RETURNS integer VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION ably.revoke_channels(regrole, text[]) IS
    'Remove channel patterns granted to a role (all of them when patterns is NULL); returns how many were removed';
"#
)]
fn revoke_channels(role: Option<pg_sys::Oid>, patterns: Option<Vec<Option<String>>>) -> i32 {
    let Some(role) = role else {
        raise(Code::ERRCODE_NULL_VALUE_NOT_ALLOWED, "role must not be NULL", "Pass a role name, e.g. 'app'.");
    };
    let patterns: Option<Vec<String>> = patterns.map(|p| p.into_iter().flatten().collect());
    let table = Table::open("channel_grants", pg_sys::RowExclusiveLock);
    let mut removed = 0;
    table.scan_all(|row| {
        let hit = row.get::<pg_sys::Oid>("role") == Some(role)
            && patterns
                .as_ref()
                .is_none_or(|p| row.get::<String>("pattern").is_some_and(|x| p.contains(&x)));
        removed += hit as i32;
        hit
    });
    removed
}

fn validated(patterns: Option<Vec<Option<String>>>) -> Vec<String> {
    let hint = "Patterns are Ably capability resources: '*' (every channel), 'ns:*' (channels starting with 'ns:') or a channel name.";
    let patterns: Vec<String> = patterns.unwrap_or_default().into_iter().flatten().collect();
    if patterns.is_empty() {
        raise(Code::ERRCODE_INVALID_PARAMETER_VALUE, "patterns must not be empty", hint);
    }
    for pattern in &patterns {
        if let Some(problem) = pattern_problem(pattern) {
            raise(Code::ERRCODE_INVALID_PARAMETER_VALUE, format!("invalid channel pattern \"{pattern}\": {problem}"), hint);
        }
    }
    patterns
}

fn granted_to(role: pg_sys::Oid) -> Vec<String> {
    let mut out = Vec::new();
    Table::open("channel_grants", pg_sys::AccessShareLock).scan_all(|row| {
        if row.get::<pg_sys::Oid>("role") == Some(role) {
            out.extend(row.get::<String>("pattern"));
        }
        false
    });
    out
}

/// The patterns that limit the current user, and where they come from.
struct Limits {
    patterns: Vec<String>,
    from_grants: bool,
}

fn limits() -> Limits {
    let user = unsafe { pg_sys::GetUserId() };
    if !unsafe { pg_sys::superuser_arg(user) } {
        let mut patterns = Vec::new();
        Table::open("channel_grants", pg_sys::AccessShareLock).scan_all(|row| {
            if let (Some(role), Some(pattern)) = (row.get::<pg_sys::Oid>("role"), row.get::<String>("pattern")) {
                if crate::catalog::has_privileges_of(user, role) {
                    patterns.push(pattern);
                }
            }
            false
        });
        if !patterns.is_empty() {
            return Limits { patterns, from_grants: true };
        }
    }
    Limits { patterns: key_publish_patterns(), from_grants: false }
}

/// Resources of `ably.key_capability` that allow publishing.
fn key_publish_patterns() -> Vec<String> {
    let Some(text) = guc::string(&guc::KEY_CAPABILITY) else {
        return vec!["*".into()];
    };
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(&text) else {
        raise(
            Code::ERRCODE_INVALID_PARAMETER_VALUE,
            "ably.key_capability is not a JSON object",
            "Set it to the key's capability, e.g. {\"*\":[\"*\"]}.",
        );
    };
    map.into_iter()
        .filter(|(_, ops)| ops.as_array().is_some_and(|ops| ops.iter().any(|o| o == "publish" || o == "*")))
        .map(|(resource, _)| resource)
        .collect()
}

fn refuse(what: String, limits: &Limits) -> ! {
    let hint = if limits.from_grants {
        "A superuser can allow more with ably.grant_channels(role, patterns); see SELECT * FROM ably.channel_grants."
    } else {
        "The key's capability (ably.key_capability) does not allow publishing there."
    };
    raise_detail(
        Code::ERRCODE_INSUFFICIENT_PRIVILEGE,
        what,
        format!("Allowed channel patterns: {}.", limits.patterns.join(", ")),
        hint,
    )
}

/// Refuses a rule whose channel template could render a channel the
/// current user may not publish to.
pub fn check_template(template: &Template, text: &str) {
    let limits = limits();
    if !limits.patterns.iter().any(|p| template.fits(p)) {
        refuse(format!("not allowed to publish to channel \"{text}\""), &limits);
    }
}

/// Refuses a channel the current user may not publish to.
pub fn check_channel(channel: &str) {
    let limits = limits();
    if !limits.patterns.iter().any(|p| pattern_covers(p, channel)) {
        refuse(format!("not allowed to publish to channel \"{channel}\""), &limits);
    }
}
