//! The row trigger: turns one row change into one queue entry.
//!
//! This is the hot path of every write on a published table, so everything
//! that does not depend on the row is compiled once per backend and rule
//! (templates resolved to attribute numbers and output functions, the column
//! projection's tuple descriptor, the condition's saved plan) and kept until
//! the table's relcache entry is invalidated. Per row, the trigger renders the
//! channel and name, builds the JSON with PostgreSQL's own `row_to_json` (so
//! every type is rendered exactly as in SQL), and appends one queue row
//! (src/queue.rs writes it with heap_insert + index_insert, no SPI).

use crate::channel::{Segment, Template};
use crate::errors::{raise, Code};
use crate::owner::as_role;
use crate::queue;
use pgrx::prelude::*;
use pgrx::{pg_sys, PgTrigger};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::CString;

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
/// since its attribute numbers may differ from the parent's).
struct CompiledRule {
    schema_json: String,
    table_json: String,
    table_name: String,
    channel: CompiledTemplate,
    name: Option<CompiledTemplate>,
    /// Attribute numbers and blessed descriptor of `columns`, if restricted.
    projection: Option<(Vec<i32>, pg_sys::TupleDesc)>,
    condition: Option<pg_sys::SPIPlanPtr>,
    owner: pg_sys::Oid,
}

thread_local! {
    static CACHE: RefCell<HashMap<(i64, u32), &'static CompiledRule>> = RefCell::new(HashMap::new());
    static CALLBACK_REGISTERED: Cell<bool> = const { Cell::new(false) };
}

#[pg_guard]
unsafe extern "C-unwind" fn on_relcache_invalidation(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    // Entries are leaked, not freed: they are small, and a plan or descriptor
    // may still be referenced by a trigger call further up the stack.
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if relid == pg_sys::InvalidOid {
            c.clear();
        } else {
            c.retain(|(_, r), _| *r != relid.to_u32());
        }
    });
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

unsafe fn compile_template(template: &Template, tupdesc: pg_sys::TupleDesc) -> CompiledTemplate {
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
                pg_sys::fmgr_info_cxt(output_fn, &mut *output, pg_sys::TopMemoryContext);
                parts.push(Part::Column { attnum, name: name.clone(), output });
            }
        }
    }
    CompiledTemplate { parts }
}

unsafe fn tupdesc_attr(tupdesc: pg_sys::TupleDesc, attnum: i32) -> *mut pg_sys::FormData_pg_attribute {
    (*tupdesc).attrs.as_mut_ptr().add((attnum - 1) as usize)
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

unsafe fn compile(rule_id: i64, relation: pg_sys::Relation) -> &'static CompiledRule {
    let row = Spi::connect(|client| {
        let row = client
            .select(
                "SELECT n.nspname::text, c.relname::text, r.channel, r.name, r.columns, r.condition \
                 FROM ably.rules r JOIN pg_catalog.pg_class c ON c.oid = r.relid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE r.id = $1",
                Some(1),
                &[rule_id.into()],
            )
            .ok()?
            .first();
        if row.is_empty() {
            return None;
        }
        Some((
            row.get::<String>(1).ok()??,
            row.get::<String>(2).ok()??,
            row.get::<String>(3).ok()??,
            row.get::<String>(4).ok()?,
            row.get::<Vec<String>>(5).ok()?,
            row.get::<String>(6).ok()?,
        ))
    });
    let Some((schema, table, channel, name, columns, condition)) = row else {
        raise(
            Code::ERRCODE_UNDEFINED_OBJECT,
            format!("ably_pg rule {rule_id} does not exist"),
            "The trigger outlived its rule; drop the trigger or publish the table again.",
        );
    };
    let tupdesc = (*relation).rd_att;
    let channel = compile_template(&Template::parse(&channel).unwrap_or_else(|e| raise(Code::ERRCODE_DATA_CORRUPTED, e, "")), tupdesc);
    let name = name.map(|n| compile_template(&Template::parse(&n).unwrap_or_else(|e| raise(Code::ERRCODE_DATA_CORRUPTED, e, "")), tupdesc));

    let old_context = pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
    let projection = columns.map(|columns| {
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

    let condition = condition.map(|condition| {
        let sql = CString::new(queue::condition_query(&condition)).unwrap_or_else(|_| {
            raise(Code::ERRCODE_INVALID_PARAMETER_VALUE, "condition contains a NUL byte", "")
        });
        let mut argtypes = [(*(*relation).rd_rel).reltype];
        if pg_sys::SPI_connect() < 0 {
            pgrx::error!("could not connect to SPI");
        }
        let plan = pg_sys::SPI_prepare(sql.as_ptr(), 1, argtypes.as_mut_ptr());
        if plan.is_null() {
            pgrx::error!("could not prepare the condition of ably_pg rule {rule_id}");
        }
        pg_sys::SPI_keepplan(plan);
        pg_sys::SPI_finish();
        plan
    });

    let compiled = Box::leak(Box::new(CompiledRule {
        schema_json: json_string(&schema),
        table_json: json_string(&table),
        table_name: table,
        channel,
        name,
        projection,
        condition,
        owner: (*(*relation).rd_rel).relowner,
    }));
    compiled
}

fn compiled_rule(rule_id: i64, relation: pg_sys::Relation) -> &'static CompiledRule {
    let relid = unsafe { (*relation).rd_id };
    if !CALLBACK_REGISTERED.with(|r| r.replace(true)) {
        unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(on_relcache_invalidation), pg_sys::Datum::from(0)) };
    }
    if let Some(rule) = CACHE.with(|c| c.borrow().get(&(rule_id, relid.to_u32())).copied()) {
        return rule;
    }
    let rule = unsafe { compile(rule_id, relation) };
    CACHE.with(|c| c.borrow_mut().insert((rule_id, relid.to_u32()), rule));
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

unsafe fn condition_holds(rule: &CompiledRule, plan: pg_sys::SPIPlanPtr, tuple: pg_sys::HeapTuple, tupdesc: pg_sys::TupleDesc) -> bool {
    let datum = pg_sys::heap_copy_tuple_as_datum(tuple, tupdesc);
    as_role(rule.owner, || {
        if pg_sys::SPI_connect() < 0 {
            pgrx::error!("could not connect to SPI");
        }
        let mut values = [datum];
        let nulls = [b' ' as std::ffi::c_char];
        let rc = pg_sys::SPI_execute_plan(plan, values.as_mut_ptr(), nulls.as_ptr(), true, 1);
        let mut result = false;
        if rc == pg_sys::SPI_OK_SELECT as i32 && pg_sys::SPI_processed == 1 {
            let table = pg_sys::SPI_tuptable;
            let mut isnull = false;
            let value = pg_sys::SPI_getbinval(*(*table).vals, (*table).tupdesc, 1, &mut isnull);
            result = !isnull && value.value() != 0;
        }
        pg_sys::SPI_finish();
        result
    })
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

    if let Some(plan) = rule.condition {
        if !condition_holds(rule, plan, source, tupdesc) {
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
