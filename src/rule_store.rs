//! Publish rules as stored in `ably.rules`, and their compiled conditions in
//! `ably.conditions`, read and written with heap/index calls (src/store.rs).
//!
//! The row trigger reads its rule here on a writer's behalf, so no SQL — and
//! no name a writer could shadow — is involved.

use crate::store::{text_datum, Table};
use pgrx::pg_sys;
use pgrx::IntoDatum;

/// One row of `ably.rules`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub id: i64,
    pub relid: pg_sys::Oid,
    pub events: Vec<String>,
    pub channel: String,
    pub name: Option<String>,
    pub columns: Option<Vec<String>>,
    /// The condition as deparsed from its compiled form.
    pub condition: Option<String>,
}

fn from_row(row: &crate::store::Row) -> Option<Rule> {
    Some(Rule {
        id: row.get::<i64>("id")?,
        relid: row.get::<pg_sys::Oid>("relid")?,
        events: row.get::<Vec<Option<String>>>("events")?.into_iter().flatten().collect(),
        channel: row.get::<String>("channel")?,
        name: row.get::<String>("name"),
        columns: row.get::<Vec<Option<String>>>("columns").map(|c| c.into_iter().flatten().collect()),
        condition: row.get::<String>("condition"),
    })
}

/// The rule with this id.
pub fn load(id: i64) -> Option<Rule> {
    let table = Table::open("rules", pg_sys::AccessShareLock);
    let mut found = None;
    table.scan_int8("rules_pkey", "id", id, |row| {
        found = from_row(row);
        false
    });
    found
}

/// Every rule of a table, by id.
pub fn of_table(relid: pg_sys::Oid) -> Vec<Rule> {
    let table = Table::open("rules", pg_sys::AccessShareLock);
    let mut rules = Vec::new();
    table.scan_oid("rules_relid_idx", "relid", relid, |row| {
        rules.extend(from_row(row));
        false
    });
    rules.sort_by_key(|r| r.id);
    rules
}

unsafe extern "C-unwind" {
    /// commands/sequence.h: `nextval()` without a permission check.
    fn nextval_internal(relid: pg_sys::Oid, check_permissions: bool) -> i64;
}

/// Adds a rule (already validated) and returns its id.
pub fn insert(relid: pg_sys::Oid, events: &[String], channel: &str, name: Option<&str>, columns: Option<&[String]>, condition: Option<&str>) -> i64 {
    let Some(sequence) = crate::catalog::ably_relation("rules_id_seq") else {
        crate::errors::raise(crate::errors::Code::ERRCODE_UNDEFINED_OBJECT, "ably_pg's sequence ably.rules_id_seq does not exist", "Reinstall the extension.");
    };
    let id = unsafe { pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| nextval_internal(sequence, false)) };
    let table = Table::open("rules", pg_sys::RowExclusiveLock);
    let text_array = |items: &[String]| items.to_vec().into_datum();
    table.insert(&[
        ("id", Some(pg_sys::Datum::from(id))),
        ("relid", Some(pg_sys::Datum::from(relid))),
        ("events", text_array(events)),
        ("channel", Some(text_datum(channel))),
        ("name", name.map(text_datum)),
        ("columns", columns.and_then(text_array)),
        ("condition", condition.map(text_datum)),
        ("created_at", Some(pg_sys::Datum::from(unsafe { pg_sys::GetCurrentTransactionStartTimestamp() }))),
    ]);
    unsafe { pg_sys::CommandCounterIncrement() };
    id
}

/// Removes a rule and its compiled condition.
pub fn delete(id: i64) {
    Table::open("rules", pg_sys::RowExclusiveLock).scan_int8("rules_pkey", "id", id, |_| true);
    delete_condition(id);
}

/// Replaces the stored channel, name, columns and condition text of a rule
/// (to follow a column rename).
pub fn update(rule: &Rule) {
    let table = Table::open("rules", pg_sys::RowExclusiveLock);
    let mut created_at = None;
    table.scan_int8("rules_pkey", "id", rule.id, |row| {
        created_at = row.get::<pgrx::datum::TimestampWithTimeZone>("created_at");
        true
    });
    unsafe { pg_sys::CommandCounterIncrement() };
    let text_array = |items: &[String]| items.to_vec().into_datum();
    let created = created_at
        .and_then(|t| t.into_datum())
        .unwrap_or_else(|| pg_sys::Datum::from(unsafe { pg_sys::GetCurrentTransactionStartTimestamp() }));
    table.insert(&[
        ("id", Some(pg_sys::Datum::from(rule.id))),
        ("relid", Some(pg_sys::Datum::from(rule.relid))),
        ("events", text_array(&rule.events)),
        ("channel", Some(text_datum(&rule.channel))),
        ("name", rule.name.as_deref().map(text_datum)),
        ("columns", rule.columns.as_deref().and_then(text_array)),
        ("condition", rule.condition.as_deref().map(text_datum)),
        ("created_at", Some(created)),
    ]);
    unsafe { pg_sys::CommandCounterIncrement() };
}

/// The compiled condition of a rule, if it was compiled in this cluster.
pub fn condition_tree(rule_id: i64) -> Option<String> {
    let system_identifier = unsafe { pg_sys::GetSystemIdentifier() } as i64;
    // A 0.1.0 catalog (before ALTER EXTENSION UPDATE) has no ably.conditions.
    crate::catalog::ably_relation("conditions")?;
    let table = Table::open("conditions", pg_sys::AccessShareLock);
    let mut tree = None;
    table.scan_int8("conditions_pkey", "rule_id", rule_id, |row| {
        if row.get::<i64>("system_identifier") == Some(system_identifier) {
            tree = row.get::<String>("expr");
        }
        false
    });
    tree
}

pub fn store_condition(rule_id: i64, tree: &str) {
    if crate::catalog::ably_relation("conditions").is_none() {
        return;
    }
    delete_condition(rule_id);
    let table = Table::open("conditions", pg_sys::RowExclusiveLock);
    table.insert(&[
        ("rule_id", Some(pg_sys::Datum::from(rule_id))),
        ("expr", Some(text_datum(tree))),
        ("system_identifier", Some(pg_sys::Datum::from(unsafe { pg_sys::GetSystemIdentifier() } as i64))),
    ]);
    unsafe { pg_sys::CommandCounterIncrement() };
}

fn delete_condition(rule_id: i64) {
    Table::open("conditions", pg_sys::RowExclusiveLock).scan_int8("conditions_pkey", "rule_id", rule_id, |_| true);
}
