//! The row trigger: turns one row change into one queue entry.
//!
//! This is the hot path of every write on a published table, so everything
//! that does not depend on the row is compiled once per backend and rule
//! (templates resolved to attribute numbers and output functions, the column
//! projection's tuple descriptor, the condition's saved plan) and kept until
//! the table's relcache entry is invalidated (each compiled rule owns its
//! memory and is freed when dropped). The rule is read with index calls
//! (src/rule_store.rs) and its condition is a stored expression tree
//! (src/condition.rs), so nothing a writer controls — its search_path, its
//! functions — takes part. Per row, the trigger renders the
//! channel and name, builds the JSON with PostgreSQL's own `row_to_json` (so
//! every type is rendered exactly as in SQL), and appends one queue row
//! (src/queue.rs writes it with heap_insert + index_insert, no SPI).

use crate::catalog;
use crate::channel::{Segment, Template};
use crate::condition::{self, Evaluator};
use crate::errors::{raise, Code};
use crate::queue;
use crate::rule_store;
use pgrx::prelude::*;
use pgrx::{pg_sys, PgTrigger};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Event {
    Insert,
    Update,
    Delete,
    Truncate,
}

impl Event {
    fn label(self) -> &'static str {
        match self {
            Event::Insert => "insert",
            Event::Update => "update",
            Event::Delete => "delete",
            Event::Truncate => "truncate",
        }
    }
}

enum Part {
    Literal(String),
    Column { attnum: i32, name: String, output: Box<pg_sys::FmgrInfo> },
}

struct CompiledTemplate {
    parts: Vec<Part>,
}

/// A rule compiled against one relation (a partition has its own entry,
/// since its attribute numbers may differ from the parent's). Dropping it
/// frees everything it allocated, so recompiling never accumulates memory.
struct CompiledRule {
    /// The rule's table and the relation this entry serves (a partition of
    /// it, or the table itself): an invalidation of either drops the entry.
    table: pg_sys::Oid,
    relation: pg_sys::Oid,
    schema_json: String,
    table_json: String,
    table_name: String,
    channel: CompiledTemplate,
    name: Option<CompiledTemplate>,
    /// Attribute numbers and blessed descriptor of `columns`, if restricted.
    projection: Option<(Vec<i32>, pg_sys::TupleDesc)>,
    condition: Option<Evaluator>,
    /// Holds the output functions' and the projection's allocations.
    context: pg_sys::MemoryContext,
}

impl Drop for CompiledRule {
    fn drop(&mut self) {
        self.condition = None;
        unsafe { pg_sys::MemoryContextDelete(self.context) };
    }
}

thread_local! {
    /// Compiled rules by (rule id, relation). A trigger call holds its own
    /// reference, so an invalidation during the call (a condition that
    /// writes, say) frees the entry only when the call is done.
    static CACHE: RefCell<HashMap<(i64, u32), Rc<CompiledRule>>> = RefCell::new(HashMap::new());
    static CALLBACKS_REGISTERED: Cell<bool> = const { Cell::new(false) };
}

#[pg_guard]
unsafe extern "C-unwind" fn on_relcache_invalidation(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    let dropped: Vec<Rc<CompiledRule>> = CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if relid == pg_sys::InvalidOid {
            c.drain().map(|(_, v)| v).collect()
        } else {
            let keys: Vec<(i64, u32)> =
                c.iter().filter(|(_, r)| r.table == relid || r.relation == relid).map(|(k, _)| *k).collect();
            keys.into_iter().filter_map(|k| c.remove(&k)).collect()
        }
    });
    drop(dropped);
}

/// A function a condition calls (or inlined) changed: compile again.
#[pg_guard]
unsafe extern "C-unwind" fn on_function_invalidation(_arg: pg_sys::Datum, _cacheid: i32, _hash: u32) {
    let dropped: Vec<Rc<CompiledRule>> = CACHE.with(|c| c.borrow_mut().drain().map(|(_, v)| v).collect());
    drop(dropped);
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

unsafe fn compile_template(template: &Template, tupdesc: pg_sys::TupleDesc, context: pg_sys::MemoryContext) -> CompiledTemplate {
    let mut parts = Vec::new();
    for segment in &template.segments {
        match segment {
            Segment::Literal(l) => parts.push(Part::Literal(l.clone())),
            Segment::Column(name) => {
                let attnum = attnum_of(tupdesc, name).unwrap_or_else(|| {
                    raise(
                        Code::ERRCODE_UNDEFINED_COLUMN,
                        format!("column \"{name}\" used by an ably_pg rule no longer exists"),
                        "Unpublish and publish the table again.",
                    )
                });
                let attr = tupdesc_attr(tupdesc, attnum);
                let mut output_fn = pg_sys::InvalidOid;
                let mut is_varlena = false;
                pg_sys::getTypeOutputInfo((*attr).atttypid, &mut output_fn, &mut is_varlena);
                let mut output: Box<pg_sys::FmgrInfo> = Box::new(std::mem::zeroed());
                pg_sys::fmgr_info_cxt(output_fn, &mut *output, context);
                parts.push(Part::Column { attnum, name: name.clone(), output });
            }
        }
    }
    CompiledTemplate { parts }
}

unsafe fn tupdesc_attr(tupdesc: pg_sys::TupleDesc, attnum: i32) -> *mut pg_sys::FormData_pg_attribute {
    catalog::attr(tupdesc, (attnum - 1) as usize)
}

unsafe fn attnum_of(tupdesc: pg_sys::TupleDesc, name: &str) -> Option<i32> {
    for i in 0..(*tupdesc).natts {
        let attr = tupdesc_attr(tupdesc, i + 1);
        if (*attr).attisdropped {
            continue;
        }
        let attname = std::ffi::CStr::from_ptr((*attr).attname.data.as_ptr());
        if attname.to_bytes() == name.as_bytes() {
            return Some(i + 1);
        }
    }
    None
}

unsafe fn compile(rule_id: i64, relation: pg_sys::Relation) -> CompiledRule {
    let Some(rule) = rule_store::load(rule_id) else {
        raise(
            Code::ERRCODE_UNDEFINED_OBJECT,
            format!("ably_pg rule {rule_id} does not exist"),
            "The trigger outlived its rule; drop the trigger or publish the table again.",
        );
    };
    let schema = catalog::cstr(pg_sys::get_namespace_name(pg_sys::get_rel_namespace(rule.relid)));
    let table = catalog::cstr(pg_sys::get_rel_name(rule.relid));
    let tupdesc = (*relation).rd_att;
    let context = pg_sys::AllocSetContextCreateExtended(
        pg_sys::TopMemoryContext,
        c"ably_pg rule".as_ptr(),
        pg_sys::ALLOCSET_SMALL_MINSIZE as usize,
        pg_sys::ALLOCSET_SMALL_INITSIZE as usize,
        pg_sys::ALLOCSET_SMALL_MAXSIZE as usize,
    );
    // From here on, an error frees the context with the half-built entry.
    let mut compiled = CompiledRule {
        table: rule.relid,
        relation: (*relation).rd_id,
        schema_json: json_string(&schema),
        table_json: json_string(&table),
        table_name: table,
        channel: CompiledTemplate { parts: Vec::new() },
        name: None,
        projection: None,
        condition: None,
        context,
    };
    let parse = |text: &str| Template::parse(text).unwrap_or_else(|e| raise(Code::ERRCODE_DATA_CORRUPTED, e, "Unpublish and publish the table again."));
    compiled.channel = compile_template(&parse(&rule.channel), tupdesc, context);
    compiled.name = rule.name.as_deref().map(|n| compile_template(&parse(n), tupdesc, context));

    let old_context = pg_sys::MemoryContextSwitchTo(context);
    compiled.projection = rule.columns.as_ref().map(|columns| {
        let attnums: Vec<i32> = columns
            .iter()
            .map(|c| {
                attnum_of(tupdesc, c).unwrap_or_else(|| {
                    raise(
                        Code::ERRCODE_UNDEFINED_COLUMN,
                        format!("column \"{c}\" used by ably_pg rule {rule_id} no longer exists"),
                        "Unpublish and publish the table again.",
                    )
                })
            })
            .collect();
        let desc = pg_sys::CreateTemplateTupleDesc(attnums.len() as i32);
        for (i, attnum) in attnums.iter().enumerate() {
            let attr = tupdesc_attr(tupdesc, *attnum);
            pg_sys::TupleDescInitEntry(desc, (i + 1) as i16, (*attr).attname.data.as_ptr(), (*attr).atttypid, (*attr).atttypmod, 0);
        }
        (attnums, pg_sys::BlessTupleDesc(desc))
    });
    pg_sys::MemoryContextSwitchTo(old_context);

    if let Some(text) = &rule.condition {
        // Compiled when the trigger was created; a tree copied from another
        // cluster (pg_upgrade) is compiled again here, the same way.
        let tree = rule_store::condition_tree(rule_id).unwrap_or_else(|| {
            let parsed = condition::parse(rule.relid, text);
            rule_store::store_condition(rule_id, &parsed.tree);
            parsed.tree
        });
        compiled.condition = Some(Evaluator::new(&tree, rule.relid, relation));
    }
    compiled
}

fn compiled_rule(rule_id: i64, relation: pg_sys::Relation) -> Rc<CompiledRule> {
    let relid = unsafe { (*relation).rd_id };
    if !CALLBACKS_REGISTERED.with(|r| r.replace(true)) {
        unsafe {
            pg_sys::CacheRegisterRelcacheCallback(Some(on_relcache_invalidation), pg_sys::Datum::from(0));
            pg_sys::CacheRegisterSyscacheCallback(pg_sys::SysCacheIdentifier::PROCOID as i32, Some(on_function_invalidation), pg_sys::Datum::from(0));
        }
    }
    if let Some(rule) = CACHE.with(|c| c.borrow().get(&(rule_id, relid.to_u32())).cloned()) {
        return rule;
    }
    let rule = Rc::new(unsafe { compile(rule_id, relation) });
    CACHE.with(|c| c.borrow_mut().insert((rule_id, relid.to_u32()), rule.clone()));
    rule
}

/// Renders a template from a row; `Err(column)` if a placeholder column is
/// NULL (there is then no channel to publish to).
unsafe fn render(template: &CompiledTemplate, tuple: pg_sys::HeapTuple, tupdesc: pg_sys::TupleDesc) -> Result<String, String> {
    let mut out = String::new();
    for part in &template.parts {
        match part {
            Part::Literal(l) => out.push_str(l),
            Part::Column { attnum, name, output } => {
                if tuple.is_null() {
                    return Err(name.clone());
                }
                let mut isnull = false;
                let datum = pg_sys::heap_getattr(tuple, *attnum, tupdesc, &mut isnull);
                if isnull {
                    return Err(name.clone());
                }
                let text = pg_sys::OutputFunctionCall(output.as_ref() as *const _ as *mut _, datum);
                out.push_str(&std::ffi::CStr::from_ptr(text).to_string_lossy());
            }
        }
    }
    Ok(out)
}

/// The row as JSON text, via row_to_json (restricted to the rule's columns).
unsafe fn row_json(rule: &CompiledRule, tuple: pg_sys::HeapTuple, tupdesc: pg_sys::TupleDesc) -> String {
    let datum = match &rule.projection {
        None => pg_sys::heap_copy_tuple_as_datum(tuple, tupdesc),
        Some((attnums, desc)) => {
            let mut values = Vec::with_capacity(attnums.len());
            let mut nulls = Vec::with_capacity(attnums.len());
            for attnum in attnums {
                let mut isnull = false;
                values.push(pg_sys::heap_getattr(tuple, *attnum, tupdesc, &mut isnull));
                nulls.push(isnull);
            }
            let projected = pg_sys::heap_form_tuple(*desc, values.as_mut_ptr(), nulls.as_mut_ptr());
            pg_sys::heap_copy_tuple_as_datum(projected, *desc)
        }
    };
    let json = pgrx::fcinfo::direct_function_call_as_datum(pg_sys::row_to_json, &[Some(datum)])
        .expect("row_to_json returns a value");
    match pgrx::varlena::text_to_rust_str(json.cast_mut_ptr()) {
        Ok(s) => s.to_string(),
        Err(_) => raise(
            Code::ERRCODE_CHARACTER_NOT_IN_REPERTOIRE,
            "ably_pg needs a UTF8 database",
            "Create the database with ENCODING 'UTF8'.",
        ),
    }
}

#[pg_trigger]
fn capture<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, pgrx::AllocatedByPostgres>>, std::convert::Infallible> {
    unsafe { capture_row(trigger) };
    Ok(None)
}

unsafe fn capture_row(trigger: &PgTrigger<'_>) {
    let data = trigger.trigger_data();
    let tg = trigger.trigger();
    if tg.tgnargs < 1 {
        raise(Code::ERRCODE_TRIGGERED_ACTION_EXCEPTION, "ably.capture() needs the rule id as its argument", "Create rules with ably.publish_table().");
    }
    let arg = std::ffi::CStr::from_ptr(*tg.tgargs).to_string_lossy();
    let Ok(rule_id) = arg.parse::<i64>() else {
        raise(Code::ERRCODE_TRIGGERED_ACTION_EXCEPTION, format!("invalid ably_pg rule id \"{arg}\""), "Create rules with ably.publish_table().");
    };
    let event_bits = data.tg_event & pg_sys::TRIGGER_EVENT_OPMASK;
    let event = match event_bits {
        pg_sys::TRIGGER_EVENT_INSERT => Event::Insert,
        pg_sys::TRIGGER_EVENT_UPDATE => Event::Update,
        pg_sys::TRIGGER_EVENT_DELETE => Event::Delete,
        _ => Event::Truncate,
    };
    let relation = data.tg_relation;
    let rule = compiled_rule(rule_id, relation);
    let rule = &*rule;
    let tupdesc = (*relation).rd_att;

    if event == Event::Truncate {
        let channel = render(&rule.channel, std::ptr::null_mut(), tupdesc).unwrap_or_default();
        let name = message_name(rule, event, std::ptr::null_mut(), tupdesc);
        let payload = format!(
            "{{\"event\":\"truncate\",\"schema\":{},\"table\":{}}}",
            rule.schema_json, rule.table_json
        );
        queue::enqueue_text(Some(rule_id), &channel, Some(name.as_str()), &payload);
        return;
    }

    let (new, old) = match event {
        Event::Insert => (data.tg_trigtuple, std::ptr::null_mut()),
        Event::Update => (data.tg_newtuple, data.tg_trigtuple),
        _ => (std::ptr::null_mut(), data.tg_trigtuple),
    };
    let source = if new.is_null() { old } else { new };

    if let Some(condition) = &rule.condition {
        if !condition.holds(source) {
            return;
        }
    }

    let mut payload = String::with_capacity(256);
    payload.push_str("{\"event\":\"");
    payload.push_str(event.label());
    payload.push_str("\",\"schema\":");
    payload.push_str(&rule.schema_json);
    payload.push_str(",\"table\":");
    payload.push_str(&rule.table_json);
    payload.push_str(",\"new\":");
    if new.is_null() {
        payload.push_str("null");
    } else {
        payload.push_str(&row_json(rule, new, tupdesc));
    }
    payload.push_str(",\"old\":");
    if old.is_null() {
        payload.push_str("null");
    } else {
        payload.push_str(&row_json(rule, old, tupdesc));
    }
    payload.push('}');

    let name = message_name(rule, event, source, tupdesc);
    match render(&rule.channel, source, tupdesc) {
        Ok(channel) => {
            queue::enqueue_text(Some(rule_id), &channel, Some(name.as_str()), &payload);
        }
        Err(column) => queue::dead_letter_now(
            rule_id,
            Some(name.as_str()),
            &payload,
            &format!("channel template column \"{column}\" is NULL"),
        ),
    }
}

/// The message name: the rule's template, or `<table>.<event>` when there is
/// none (or a placeholder column is NULL).
unsafe fn message_name(rule: &CompiledRule, event: Event, tuple: pg_sys::HeapTuple, tupdesc: pg_sys::TupleDesc) -> String {
    rule.name
        .as_ref()
        .and_then(|template| render(template, tuple, tupdesc).ok())
        .unwrap_or_else(|| format!("{}.{}", rule.table_name, event.label()))
}
