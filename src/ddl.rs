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
        compile_condition(&rule, &trigger, &mut compiled);
    }
    unsafe { pg_sys::CommandCounterIncrement() };
}

/// Compiles a rule's condition (once per rule in a command), stores it and
/// makes `trigger` depend on what it calls.
fn compile_condition(rule: &rule_store::Rule, trigger: &pg_sys::ObjectAddress, compiled: &mut HashSet<i64>) {
    let Some(text) = &rule.condition else { return };
    let parsed = condition::parse(rule.relid, text);
    if compiled.insert(rule.id) {
        rule_store::store_condition(rule.id, &parsed.tree);
    }
    let tree = CString::new(parsed.tree).expect("node trees have no NUL");
    unsafe {
        let expr = pg_sys::stringToNode(tree.as_ptr()) as *mut pg_sys::Node;
        pg_sys::recordDependencyOnSingleRelExpr(
            trigger,
            expr,
            rule.relid,
            pg_sys::DependencyType::DEPENDENCY_NORMAL,
            pg_sys::DependencyType::DEPENDENCY_NORMAL,
            false,
        );
    }
}

/// Compiles the conditions of every rule again, as the triggers' creation
/// does: for `ALTER EXTENSION ... UPDATE` from a version that stored them as
/// text, and after `pg_upgrade` (whose object ids differ). Returns how many.
#[pg_extern(
    volatile,
    sql = r#"
CREATE FUNCTION ably.compile_conditions() RETURNS integer
VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', '@FUNCTION_NAME@';
COMMENT ON FUNCTION ably.compile_conditions() IS
    'Compile every rule''s condition again (after pg_upgrade); returns how many';
"#
)]
fn compile_conditions() -> i32 {
    let Some(extension) = catalog::extension() else { return 0 };
    let Some(capture) = capture_function(extension.namespace) else { return 0 };
    let mut compiled = HashSet::new();
    let rules: Vec<rule_store::Rule> = all_rules().into_iter().filter(|r| r.condition.is_some()).collect();
    for rule in &rules {
        let name = CString::new(crate::rules::trigger_name(rule.id, false)).expect("no NUL");
        let trigger_oid = unsafe { pg_sys::get_trigger_oid(rule.relid, name.as_ptr(), true) };
        if trigger_oid == pg_sys::InvalidOid || unsafe { trigger_function(trigger_oid) } != Some(capture) {
            continue;
        }
        let trigger = pg_sys::ObjectAddress { classId: pg_sys::TriggerRelationId, objectId: trigger_oid, objectSubId: 0 };
        compile_condition(rule, &trigger, &mut compiled);
    }
    unsafe { pg_sys::CommandCounterIncrement() };
    compiled.len() as i32
}

fn all_rules() -> Vec<rule_store::Rule> {
    let mut ids = Vec::new();
    crate::store::Table::open("rules", pg_sys::AccessShareLock).scan_all(|row| {
        ids.extend(row.get::<i64>("id"));
        false
    });
    ids.into_iter().filter_map(rule_store::load).collect()
}

/// The function a trigger runs.
unsafe fn trigger_function(trigger: pg_sys::Oid) -> Option<pg_sys::Oid> {
    unsafe {
        let rel = pg_sys::table_open(pg_sys::TriggerRelationId, pg_sys::AccessShareLock as i32);
        let mut key: pg_sys::ScanKeyData = std::mem::zeroed();
        pg_sys::ScanKeyInit(&mut key, pg_sys::Anum_pg_trigger_oid as i16, pg_sys::BTEqualStrategyNumber as u16, pg_sys::F_OIDEQ.into(), pg_sys::Datum::from(trigger));
        let scan = pg_sys::systable_beginscan(rel, pg_sys::Oid::from(pg_sys::TriggerOidIndexId), true, std::ptr::null_mut(), 1, &mut key);
        let tuple = pg_sys::systable_getnext(scan);
        let found = (!tuple.is_null()).then(|| (*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_trigger>(tuple)).tgfoid);
        pg_sys::systable_endscan(scan);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as i32);
        found
    }
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

/// `ably.guard_ddl()`, at the start of DROP EXTENSION and ALTER TABLE:
/// - refuses DROP EXTENSION ably_pg while messages are undelivered, unless
///   CASCADE says to discard them;
/// - refuses ALTER COLUMN ... TYPE of a column a rule reads, with a HINT,
///   instead of PostgreSQL's bare "used in a trigger definition".
///
/// A raw V1 function: it needs the event trigger's parse tree.
#[pg_guard]
#[no_mangle]
pub unsafe extern "C-unwind" fn ably_guard_ddl(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    unsafe {
        let context = (*fcinfo).context as *mut pg_sys::EventTriggerData;
        if context.is_null() || (*context).type_ != pg_sys::NodeTag::T_EventTriggerData {
            crate::errors::raise(
                crate::errors::Code::ERRCODE_E_R_I_E_EVENT_TRIGGER_PROTOCOL_VIOLATED,
                "ably.guard_ddl() must be called as an event trigger",
                "It is ably_pg's own event trigger; do not call it.",
            );
        }
        let tree = (*context).parsetree;
        if tree.is_null() {
            return pg_sys::Datum::from(0);
        }
        match (*tree).type_ {
            pg_sys::NodeTag::T_DropStmt => with_pinned_search_path(|| guard_drop_extension(tree as *mut pg_sys::DropStmt)),
            pg_sys::NodeTag::T_AlterTableStmt => {
                // The table as the command itself will find it (the
                // caller's search_path); everything after that is pinned.
                let stmt = tree as *mut pg_sys::AlterTableStmt;
                if (*stmt).relation.is_null() {
                    return pg_sys::Datum::from(0);
                }
                let relid = pg_sys::RangeVarGetRelidExtended((*stmt).relation, pg_sys::NoLock as i32, pg_sys::RVROption::RVR_MISSING_OK, None, std::ptr::null_mut());
                if relid != pg_sys::InvalidOid {
                    with_pinned_search_path(|| guard_alter_type(stmt, relid));
                }
            }
            _ => {}
        }
        pg_sys::Datum::from(0)
    }
}

#[no_mangle]
pub extern "C" fn pg_finfo_ably_guard_ddl() -> &'static pg_sys::Pg_finfo_record {
    static V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

unsafe fn guard_drop_extension(stmt: *mut pg_sys::DropStmt) {
    unsafe {
        if (*stmt).removeType != pg_sys::ObjectType::OBJECT_EXTENSION || (*stmt).behavior == pg_sys::DropBehavior::DROP_CASCADE {
            return;
        }
        let objects = (*stmt).objects;
        let names: Vec<String> = (0..if objects.is_null() { 0 } else { (*objects).length as usize })
            .map(|i| condition::list_nth(objects, i) as *mut pg_sys::String)
            .map(|s| crate::catalog::cstr((*s).sval))
            .collect();
        if !names.iter().any(|n| n == "ably_pg") {
            return;
        }
    }
    let undelivered = crate::status::undelivered();
    if undelivered > 0 {
        crate::errors::raise_detail(
            crate::errors::Code::ERRCODE_OBJECT_IN_USE,
            format!("cannot drop extension ably_pg while {undelivered} message(s) are not delivered"),
            "Dropping the extension drops its queue.",
            "Wait until SELECT queue_depth FROM ably.status is 0 (see its state and last_error_message if it does not fall), or DROP EXTENSION ably_pg CASCADE to discard them.",
        );
    }
}

unsafe fn guard_alter_type(stmt: *mut pg_sys::AlterTableStmt, relid: pg_sys::Oid) {
    unsafe {
        let cmds = (*stmt).cmds;
        if cmds.is_null() {
            return;
        }
        for i in 0..(*cmds).length as usize {
            let cmd = condition::list_nth(cmds, i) as *mut pg_sys::AlterTableCmd;
            if (*cmd).subtype != pg_sys::AlterTableType::AT_AlterColumnType || (*cmd).name.is_null() {
                continue;
            }
            let column = crate::catalog::cstr((*cmd).name);
            let name = CString::new(column.as_str()).unwrap_or_default();
            let attnum = pg_sys::get_attnum(relid, name.as_ptr());
            if attnum <= 0 {
                continue;
            }
            if let Some(rule) = rule_using_column(relid, attnum) {
                let table = crate::catalog::cstr(pg_sys::get_rel_name(relid));
                crate::errors::raise_detail(
                    crate::errors::Code::ERRCODE_FEATURE_NOT_SUPPORTED,
                    format!("cannot change the type of column \"{column}\": ably_pg rule {rule} reads it"),
                    "A rule's channel, name, columns and condition are compiled against the column's type.",
                    format!(
                        "Remove the rule with SELECT ably.unpublish_table('{}', {rule}), change the type, then publish the table again.",
                        table.replace('\'', "''")
                    ),
                );
            }
        }
    }
}

/// The rule whose trigger depends on column `attnum` of `relid` (via the
/// dependencies `adopt_triggers` records).
fn rule_using_column(relid: pg_sys::Oid, attnum: i16) -> Option<i64> {
    let rules = rule_store::of_table(relid);
    rules.into_iter().find(|rule| {
        let mut used = used_columns(rule, relid);
        if rule.condition.is_some() {
            if let Some(tree) = rule_store::condition_tree(rule.id) {
                used.extend(condition::columns_of(&tree));
            }
        }
        used.contains(&attnum)
    }).map(|r| r.id)
}

/// `ably.follow_renames()`, at the end of ALTER TABLE ... RENAME COLUMN:
/// rules name columns in their templates and column lists, so they follow
/// the rename (the condition, stored as a tree, needs only its text
/// deparsed again).
#[pg_guard]
#[no_mangle]
pub unsafe extern "C-unwind" fn ably_follow_renames(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    unsafe {
        let context = (*fcinfo).context as *mut pg_sys::EventTriggerData;
        if context.is_null() || (*context).type_ != pg_sys::NodeTag::T_EventTriggerData {
            return pg_sys::Datum::from(0);
        }
        let tree = (*context).parsetree;
        if tree.is_null() || (*tree).type_ != pg_sys::NodeTag::T_RenameStmt {
            return pg_sys::Datum::from(0);
        }
        let stmt = tree as *mut pg_sys::RenameStmt;
        if (*stmt).renameType != pg_sys::ObjectType::OBJECT_COLUMN || (*stmt).relation.is_null() {
            return pg_sys::Datum::from(0);
        }
        let old = crate::catalog::cstr((*stmt).subname);
        let new = crate::catalog::cstr((*stmt).newname);
        let relid = pg_sys::RangeVarGetRelidExtended((*stmt).relation, pg_sys::NoLock as i32, pg_sys::RVROption::RVR_MISSING_OK, None, std::ptr::null_mut());
        if relid != pg_sys::InvalidOid {
            with_pinned_search_path(|| follow_rename(relid, &old, &new));
        }
        pg_sys::Datum::from(0)
    }
}

#[no_mangle]
pub extern "C" fn pg_finfo_ably_follow_renames() -> &'static pg_sys::Pg_finfo_record {
    static V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

fn follow_rename(relid: pg_sys::Oid, old: &str, new: &str) {
    for mut rule in rule_store::of_table(relid) {
        let mut changed = false;
        for template in std::iter::once(&mut rule.channel).chain(rule.name.iter_mut()) {
            if let Ok(t) = Template::parse(template) {
                if t.columns().any(|c| c == old) {
                    *template = t.renamed(old, new).to_string();
                    changed = true;
                }
            }
        }
        if let Some(columns) = rule.columns.as_mut() {
            for c in columns.iter_mut().filter(|c| *c == old) {
                *c = new.to_string();
                changed = true;
            }
        }
        if rule.condition.is_some() {
            if let Some(tree) = rule_store::condition_tree(rule.id) {
                let text = condition::deparse(relid, &tree);
                if rule.condition.as_deref() != Some(text.as_str()) {
                    rule.condition = Some(text);
                    changed = true;
                }
            }
        }
        if changed {
            rule_store::update(&rule);
        }
    }
}
