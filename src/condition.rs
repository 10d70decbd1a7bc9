//! Rule conditions, handled like CHECK constraints.
//!
//! A condition is one boolean expression over the table's columns. It is
//! parsed once, when the rule is made (and again when pg_restore recreates
//! the rule's trigger), as the table's owner with `search_path` pinned to
//! `pg_catalog, pg_temp`; the resolved expression is stored as a node tree
//! in `ably.conditions` and shown (deparsed) in `ably.rules.condition`.
//! At write time the stored tree is evaluated with no name look-up, as the
//! table's owner with the path pinned: what a condition calls is fixed when
//! it is made, and a writer can neither change it nor lend it rights.
//!
//! Invariant: a [`Evaluator`] lives in its own memory context, freed when
//! the trigger's compiled rule is dropped, so recompiling after an
//! invalidation never accumulates memory.

use crate::catalog::cstr;
use crate::errors::{raise, raise_detail, Code};
use crate::identity::as_role;
use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::PgTryBuilder;
use std::ffi::CString;

/// A condition parsed against a table.
pub struct Parsed {
    /// `nodeToString` of the boolean expression.
    pub tree: String,
    /// The expression deparsed (what `ably.rules.condition` shows and
    /// pg_dump carries); parsing it again gives the same tree.
    pub text: String,
}

const HINT: &str = "A condition is one boolean expression over the table's columns, e.g. status = 'public'. \
It is parsed with search_path = pg_catalog, pg_temp: name your own functions and operators with their schema, \
e.g. app.is_public(room_id).";

/// Parses `text` as a condition on `relid` (as the table's owner, path
/// pinned). Raises the parser's error, naming the condition, on failure.
pub fn parse(relid: pg_sys::Oid, text: &str) -> Parsed {
    let owner = unsafe {
        let rel = pg_sys::relation_open(relid, pg_sys::AccessShareLock as i32);
        let owner = (*(*rel).rd_rel).relowner;
        pg_sys::relation_close(rel, pg_sys::AccessShareLock as i32);
        owner
    };
    let condition = text.to_string();
    let condition_for_error = text.to_string();
    PgTryBuilder::new(move || as_role(owner, || unsafe { parse_as_owner(relid, &condition) }))
        .catch_others(move |e| {
            let (code, message, detail) = match &e {
                CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) | CaughtError::RustPanic { ereport: r, .. } => {
                    (r.sql_error_code(), r.message().to_string(), r.detail().map(str::to_string))
                }
            };
            let message = format!("invalid condition \"{condition_for_error}\": {message}");
            match detail {
                Some(detail) => raise_detail(code, message, detail, HINT),
                None => raise(code, message, HINT),
            }
        })
        .execute()
}

unsafe fn parse_as_owner(relid: pg_sys::Oid, text: &str) -> Parsed {
    unsafe {
        let raw = single_expression(text);
        let rel = pg_sys::relation_open(relid, pg_sys::AccessShareLock as i32);
        let pstate = pg_sys::make_parsestate(std::ptr::null_mut());
        let nsitem = pg_sys::addRangeTableEntryForRelation(pstate, rel, pg_sys::AccessShareLock as i32, std::ptr::null_mut(), false, true);
        pg_sys::addNSItemToQuery(pstate, nsitem, true, true, true);
        let mut expr = pg_sys::transformExpr(pstate, raw, pg_sys::ParseExprKind::EXPR_KIND_CHECK_CONSTRAINT);
        expr = pg_sys::coerce_to_boolean(pstate, expr, c"condition".as_ptr());
        pg_sys::assign_expr_collations(pstate, expr);
        if pg_sys::expression_returns_set(expr) {
            raise(Code::ERRCODE_INVALID_PARAMETER_VALUE, "a condition must not return a set", HINT);
        }
        let tree = cstr(pg_sys::nodeToString(expr as *const _));
        let relname = pg_sys::get_rel_name(relid);
        let context = pg_sys::deparse_context_for(relname, relid);
        let text = cstr(pg_sys::deparse_expression(expr, context, false, false));
        pg_sys::free_parsestate(pstate);
        pg_sys::relation_close(rel, pg_sys::AccessShareLock as i32);
        Parsed { tree, text }
    }
}

/// The raw expression of `text`, refusing anything but a single
/// expression: a second statement, FROM, WHERE, set operations, aliases.
unsafe fn single_expression(text: &str) -> *mut pg_sys::Node {
    let not_single = |what: &str| -> ! {
        raise_detail(
            Code::ERRCODE_INVALID_PARAMETER_VALUE,
            "a condition must be a single boolean expression",
            format!("It contains {what}."),
            HINT,
        )
    };
    let Ok(query) = CString::new(format!("SELECT {text}")) else {
        not_single("a NUL character");
    };
    unsafe {
        let statements = pg_sys::raw_parser(query.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
        if statements.is_null() || (*statements).length != 1 {
            not_single("more than one statement");
        }
        let raw_stmt = list_nth(statements, 0) as *mut pg_sys::RawStmt;
        let stmt = (*raw_stmt).stmt;
        if (*stmt).type_ != pg_sys::NodeTag::T_SelectStmt {
            not_single("a statement");
        }
        let select = stmt as *mut pg_sys::SelectStmt;
        let s = &*select;
        if s.op != pg_sys::SetOperation::SETOP_NONE {
            not_single("a set operation");
        }
        if !s.fromClause.is_null() {
            not_single("a FROM clause");
        }
        if !(s.whereClause.is_null()
            && s.groupClause.is_null()
            && s.havingClause.is_null()
            && s.windowClause.is_null()
            && s.sortClause.is_null()
            && s.limitCount.is_null()
            && s.limitOffset.is_null()
            && s.lockingClause.is_null()
            && s.withClause.is_null()
            && s.intoClause.is_null()
            && s.distinctClause.is_null()
            && s.valuesLists.is_null())
        {
            not_single("a clause other than the expression");
        }
        if s.targetList.is_null() || (*s.targetList).length != 1 {
            not_single("more than one expression");
        }
        let target = list_nth(s.targetList, 0) as *mut pg_sys::ResTarget;
        if !(*target).name.is_null() {
            not_single("an alias");
        }
        (*target).val
    }
}

/// Attribute numbers of the table's columns a stored condition reads.
pub fn columns_of(tree: &str) -> Vec<i16> {
    let Ok(tree) = CString::new(tree) else { return Vec::new() };
    let mut out = Vec::new();
    unsafe {
        let expr = pg_sys::stringToNode(tree.as_ptr()) as *mut pg_sys::Node;
        let mut attnos: *mut pg_sys::Bitmapset = std::ptr::null_mut();
        pg_sys::pull_varattnos(expr, 1, &mut attnos);
        let mut member = -1;
        loop {
            member = pg_sys::bms_next_member(attnos, member);
            if member < 0 {
                break;
            }
            let attnum = member + pg_sys::FirstLowInvalidHeapAttributeNumber;
            if attnum > 0 {
                out.push(attnum as i16);
            }
        }
    }
    out
}

/// A stored condition as text, with the table's current column names.
pub fn deparse(relid: pg_sys::Oid, tree: &str) -> String {
    let Ok(tree) = CString::new(tree) else { return String::new() };
    unsafe {
        let expr = pg_sys::stringToNode(tree.as_ptr()) as *mut pg_sys::Node;
        let context = pg_sys::deparse_context_for(pg_sys::get_rel_name(relid), relid);
        cstr(pg_sys::deparse_expression(expr, context, false, false))
    }
}

pub unsafe fn list_nth(list: *mut pg_sys::List, n: usize) -> *mut std::ffi::c_void {
    unsafe { (*(*list).elements.add(n)).ptr_value }
}

/// A stored condition ready to evaluate against rows of one relation (the
/// rule's table or one of its partitions).
pub struct Evaluator {
    context: pg_sys::MemoryContext,
    state: *mut pg_sys::ExprState,
    econtext: *mut pg_sys::ExprContext,
    slot: *mut pg_sys::TupleTableSlot,
    /// Partition rows → the rule table's row type (NULL when identical).
    map: *mut pg_sys::TupleConversionMap,
    owner: pg_sys::Oid,
}

impl Evaluator {
    /// Prepares `tree` (stored for table `table`) for rows of `relation`.
    /// Permission checks of what the expression calls are made for the
    /// table's owner, who evaluates it.
    pub unsafe fn new(tree: &str, table: pg_sys::Oid, relation: pg_sys::Relation) -> Evaluator {
        unsafe {
            let context = pg_sys::AllocSetContextCreateExtended(
                pg_sys::TopMemoryContext,
                c"ably_pg condition".as_ptr(),
                pg_sys::ALLOCSET_SMALL_MINSIZE as usize,
                pg_sys::ALLOCSET_SMALL_INITSIZE as usize,
                pg_sys::ALLOCSET_SMALL_MAXSIZE as usize,
            );
            let old = pg_sys::MemoryContextSwitchTo(context);
            let parent = pg_sys::relation_open(table, pg_sys::AccessShareLock as i32);
            let owner = (*(*parent).rd_rel).relowner;
            let parent_desc = pg_sys::CreateTupleDescCopy((*parent).rd_att);
            let map = if (*relation).rd_id == table {
                std::ptr::null_mut()
            } else {
                pg_sys::convert_tuples_by_name((*relation).rd_att, parent_desc)
            };
            pg_sys::relation_close(parent, pg_sys::AccessShareLock as i32);
            let tree = CString::new(tree).expect("node trees have no NUL");
            let expr = pg_sys::stringToNode(tree.as_ptr()) as *mut pg_sys::Expr;
            let state = as_role(owner, || {
                let planned = pg_sys::expression_planner(expr);
                pg_sys::ExecInitExpr(planned, std::ptr::null_mut())
            });
            let econtext = pg_sys::CreateStandaloneExprContext();
            let slot = pg_sys::MakeSingleTupleTableSlot(parent_desc, &pg_sys::TTSOpsHeapTuple);
            pg_sys::MemoryContextSwitchTo(old);
            Evaluator { context, state, econtext, slot, map, owner }
        }
    }

    /// Whether the condition is true for `tuple` (a row of the relation the
    /// evaluator was made for). NULL counts as false.
    pub unsafe fn holds(&self, tuple: pg_sys::HeapTuple) -> bool {
        unsafe {
            let tuple = if self.map.is_null() { tuple } else { pg_sys::execute_attr_map_tuple(tuple, self.map) };
            pg_sys::ExecStoreHeapTuple(tuple, self.slot, false);
            (*self.econtext).ecxt_scantuple = self.slot;
            let (state, econtext) = (self.state, self.econtext);
            let result = as_role(self.owner, || {
                let mut isnull = false;
                let value = pg_sys::ExecEvalExprSwitchContext(state, econtext, &mut isnull);
                !isnull && value.value() != 0
            });
            pg_sys::ExecClearTuple(self.slot);
            pg_sys::MemoryContextReset((*self.econtext).ecxt_per_tuple_memory);
            result
        }
    }
}

impl Drop for Evaluator {
    fn drop(&mut self) {
        unsafe {
            pg_sys::ExecDropSingleTupleTableSlot(self.slot);
            pg_sys::MemoryContextDelete(self.context);
        }
    }
}
