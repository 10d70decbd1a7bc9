//! Keeping rules and their triggers consistent through DDL: event triggers.
//!
//! `ably.adopt_triggers()` runs at the end of every CREATE TRIGGER, whoever
//! issues it (`ably.publish_table()` or pg_restore): it ties each new
//! `ably.capture()` trigger to the extension (so DROP EXTENSION removes it),
//! compiles the rule's condition (so a restored database compiles it against
//! its own objects) and records what the rule depends on (the columns it
//! reads, the functions and operators its condition calls), so that none of
//! them can be dropped from under it.
//!
//! Event triggers run as whoever issued the DDL; their SQL runs with the
//! search path pinned and every name qualified.

use crate::catalog;
use crate::channel::Template;
use crate::condition;
use crate::identity::with_pinned_search_path;
use crate::rule_store;
use pgrx::prelude::*;
use std::collections::HashSet;
use std::ffi::CString;

#[pg_extern(
    sql = r#"
CREATE FUNCTION ably.adopt_triggers() RETURNS event_trigger
LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
"#
)]
fn adopt_triggers() {
    let Some(extension) = catalog::extension() else { return };
    let Some(capture) = capture_function(extension.namespace) else { return };
    let triggers: Vec<(pg_sys::Oid, pg_sys::Oid, Vec<u8>)> = with_pinned_search_path(|| {
        Spi::connect(|client| {
            client
                .select(
                    "SELECT t.oid, t.tgrelid, t.tgargs \
                     FROM pg_catalog.pg_event_trigger_ddl_commands() c \
                     JOIN pg_catalog.pg_trigger t ON t.oid OPERATOR(pg_catalog.=) c.objid \
                     WHERE c.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_trigger'::pg_catalog.regclass \
                       AND t.tgfoid OPERATOR(pg_catalog.=) $1 \
                       AND t.tgparentid OPERATOR(pg_catalog.=) 0::pg_catalog.oid \
                       AND t.tgnargs OPERATOR(pg_catalog.>) 0::pg_catalog.int2",
                    None,
                    &[capture.into()],
                )
                .map(|rows| {
                    rows.filter_map(|r| {
                        Some((r.get::<pg_sys::Oid>(1).ok()??, r.get::<pg_sys::Oid>(2).ok()??, r.get::<Vec<u8>>(3).ok()??))
                    })
                    .collect()
                })
                .unwrap_or_default()
        })
    });
    let mut compiled = HashSet::new();
    for (trigger_oid, relid, args) in triggers {
        let Some(rule_id) = first_argument(&args).and_then(|a| a.parse::<i64>().ok()) else { continue };
        let trigger = pg_sys::ObjectAddress { classId: pg_sys::TriggerRelationId, objectId: trigger_oid, objectSubId: 0 };
        let owner = pg_sys::ObjectAddress { classId: pg_sys::ExtensionRelationId, objectId: extension.oid, objectSubId: 0 };
        unsafe { pg_sys::recordDependencyOn(&trigger, &owner, pg_sys::DependencyType::DEPENDENCY_AUTO) };
        let Some(rule) = rule_store::load(rule_id) else { continue };
        for attnum in used_columns(&rule, relid) {
            let column = pg_sys::ObjectAddress { classId: pg_sys::RelationRelationId, objectId: relid, objectSubId: attnum as i32 };
            unsafe { pg_sys::recordDependencyOn(&trigger, &column, pg_sys::DependencyType::DEPENDENCY_NORMAL) };
        }
        if let Some(text) = &rule.condition {
            let parsed = condition::parse(rule.relid, text);
            if compiled.insert(rule_id) {
                rule_store::store_condition(rule_id, &parsed.tree);
            }
            let tree = CString::new(parsed.tree).expect("node trees have no NUL");
            unsafe {
                let expr = pg_sys::stringToNode(tree.as_ptr()) as *mut pg_sys::Node;
                pg_sys::recordDependencyOnSingleRelExpr(
                    &trigger,
                    expr,
                    rule.relid,
                    pg_sys::DependencyType::DEPENDENCY_NORMAL,
                    pg_sys::DependencyType::DEPENDENCY_NORMAL,
                    false,
                );
            }
        }
    }
    unsafe { pg_sys::CommandCounterIncrement() };
}

/// `ably.capture()`, found in the extension's schema through the catalog.
fn capture_function(namespace: pg_sys::Oid) -> Option<pg_sys::Oid> {
    unsafe {
        let list = pg_sys::lappend(std::ptr::null_mut(), pg_sys::makeString(pg_sys::get_namespace_name(namespace)) as *mut _);
        let list = pg_sys::lappend(list, pg_sys::makeString(pg_sys::pstrdup(c"capture".as_ptr())) as *mut _);
        let oid = pg_sys::LookupFuncName(list, 0, std::ptr::null(), true);
        (oid != pg_sys::InvalidOid).then_some(oid)
    }
}

/// The first trigger argument (`tgargs` holds NUL-terminated strings).
fn first_argument(args: &[u8]) -> Option<String> {
    let end = args.iter().position(|b| *b == 0).unwrap_or(args.len());
    std::str::from_utf8(&args[..end]).ok().map(str::to_string)
}

/// Attribute numbers of the columns a rule reads by name (templates and
/// `columns`); the condition's columns are recorded from its tree.
fn used_columns(rule: &rule_store::Rule, relid: pg_sys::Oid) -> Vec<i16> {
    let mut names: Vec<String> = Vec::new();
    for template in std::iter::once(&rule.channel).chain(rule.name.iter()) {
        if let Ok(t) = Template::parse(template) {
            names.extend(t.columns().map(str::to_string));
        }
    }
    names.extend(rule.columns.iter().flatten().cloned());
    names.sort();
    names.dedup();
    names
        .iter()
        .filter_map(|n| CString::new(n.as_str()).ok())
        .map(|n| unsafe { pg_sys::get_attnum(relid, n.as_ptr()) })
        .filter(|a| *a > 0)
        .collect()
}
