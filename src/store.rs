//! Reading and writing ably's own tables without SQL: heap and index calls,
//! like PostgreSQL's catalog code (`CatalogTupleInsert`, `systable_*`).
//!
//! Used wherever a caller other than the extension owner, or the worker,
//! touches ably's tables: no statement is parsed, so no name is resolved
//! through anyone's `search_path`, and no permission of the caller is
//! needed (these are the extension's own rows, written on its behalf).
//! Indexes of these tables are plain column indexes, which is what
//! `CatalogTupleInsert` supports.

use crate::catalog;
use crate::errors::{raise, Code};
use pgrx::pg_sys;
use pgrx::prelude::*;

/// One of ably's tables, opened for the duration of a call.
pub struct Table {
    rel: pg_sys::Relation,
    lock: i32,
}

impl Table {
    /// Opens `ably.<name>`; an ERROR (with a hint) if the extension's
    /// objects are missing.
    pub fn open(name: &str, lock: u32) -> Table {
        let Some(relid) = catalog::ably_relation(name) else {
            raise(
                Code::ERRCODE_UNDEFINED_TABLE,
                format!("ably_pg's table ably.{name} does not exist"),
                "Is the extension installed in this database? CREATE EXTENSION ably_pg;",
            );
        };
        let rel = unsafe { pg_sys::table_open(relid, lock as i32) };
        Table { rel, lock: lock as i32 }
    }

    pub fn relid(&self) -> pg_sys::Oid {
        unsafe { (*self.rel).rd_id }
    }

    pub fn desc(&self) -> pg_sys::TupleDesc {
        unsafe { (*self.rel).rd_att }
    }

    /// 1-based attribute number of a column.
    pub fn attnum(&self, column: &str) -> i16 {
        let name = std::ffi::CString::new(column).expect("column names have no NUL");
        let attnum = unsafe { pg_sys::get_attnum(self.relid(), name.as_ptr()) };
        if attnum <= 0 {
            raise(
                Code::ERRCODE_UNDEFINED_COLUMN,
                format!("ably_pg's table has no column {column}"),
                "The extension's objects do not match its library; run ALTER EXTENSION ably_pg UPDATE.",
            );
        }
        attnum
    }

    /// Inserts a row given as (column, value) pairs; other columns are NULL
    /// (table defaults do not apply: pass every value).
    pub fn insert(&self, values: &[(&str, Option<pg_sys::Datum>)]) {
        unsafe {
            let natts = (*self.desc()).natts as usize;
            let mut datums = vec![pg_sys::Datum::from(0); natts];
            let mut nulls = vec![true; natts];
            for (column, value) in values {
                let i = (self.attnum(column) - 1) as usize;
                if let Some(v) = value {
                    datums[i] = *v;
                    nulls[i] = false;
                }
            }
            let tuple = pg_sys::heap_form_tuple(self.desc(), datums.as_mut_ptr(), nulls.as_mut_ptr());
            pg_sys::CatalogTupleInsert(self.rel, tuple);
            pg_sys::heap_freetuple(tuple);
        }
    }

    /// Sets columns of every row (a table of one row, in practice), as an
    /// update of the heap tuple in place (HOT when no index column changes).
    pub fn update_all(&self, values: &[(&str, Option<pg_sys::Datum>)]) {
        let mut change = Change::new(self, values);
        self.scan_all(|row| {
            change.apply(row);
            false
        });
    }

    /// Sets columns of the rows whose `column` equals the int8 `key`, found
    /// through `index` (HOT when no indexed column changes).
    pub fn update_int8(&self, index: &str, column: &str, key: i64, values: &[(&str, Option<pg_sys::Datum>)]) {
        let mut change = Change::new(self, values);
        self.scan_int8(index, column, key, |row| {
            change.apply(row);
            false
        });
    }

    /// Deletes the rows whose `column` equals one of `keys`, found through
    /// `index`.
    pub fn delete_int8(&self, index: &str, column: &str, keys: &[i64]) {
        for key in keys {
            self.scan_int8(index, column, *key, |_| true);
        }
    }

    /// Calls `each` for every row whose `column` equals the int8 `key`,
    /// found through `index` (an index on that column). `each` gets the
    /// tuple (valid during the call) and returns whether to delete it.
    pub fn scan_int8(&self, index: &str, column: &str, key: i64, each: impl FnMut(&Row) -> bool) {
        self.scan(index, column, pg_sys::F_INT8EQ, pg_sys::Datum::from(key), each)
    }

    pub fn scan_oid(&self, index: &str, column: &str, key: pg_sys::Oid, each: impl FnMut(&Row) -> bool) {
        self.scan(index, column, pg_sys::F_OIDEQ, pg_sys::Datum::from(key), each)
    }

    fn scan(&self, index: &str, column: &str, proc_: u32, key: pg_sys::Datum, each: impl FnMut(&Row) -> bool) {
        let Some(index_oid) = catalog::ably_relation(index) else {
            raise(
                Code::ERRCODE_UNDEFINED_OBJECT,
                format!("ably_pg's index ably.{index} does not exist"),
                "The extension's objects do not match its library; run ALTER EXTENSION ably_pg UPDATE.",
            );
        };
        let mut scankey: pg_sys::ScanKeyData = unsafe { std::mem::zeroed() };
        unsafe {
            pg_sys::ScanKeyInit(&mut scankey, self.attnum(column), pg_sys::BTEqualStrategyNumber as u16, proc_.into(), key);
        }
        self.scan_with(index_oid, Some(&mut scankey), each)
    }

    /// Calls `each` for every row of the table (a small one); see
    /// [`Table::scan_int8`].
    pub fn scan_all(&self, each: impl FnMut(&Row) -> bool) {
        self.scan_with(pg_sys::InvalidOid, None, each)
    }

    fn scan_with(&self, index_oid: pg_sys::Oid, key: Option<&mut pg_sys::ScanKeyData>, mut each: impl FnMut(&Row) -> bool) {
        unsafe {
            let (nkeys, key) = match key {
                Some(k) => (1, k as *mut pg_sys::ScanKeyData),
                None => (0, std::ptr::null_mut()),
            };
            // The latest snapshot: rows committed by others until now and
            // this transaction's own earlier commands, as catalog look-ups see.
            let snapshot = pg_sys::RegisterSnapshot(pg_sys::GetLatestSnapshot());
            let scan = pg_sys::systable_beginscan(self.rel, index_oid, nkeys > 0, snapshot, nkeys, key);
            loop {
                let tuple = pg_sys::systable_getnext(scan);
                if tuple.is_null() {
                    break;
                }
                let row = Row { tuple, table: self };
                if each(&row) {
                    pg_sys::simple_heap_delete(self.rel, &mut (*tuple).t_self);
                }
            }
            pg_sys::systable_endscan(scan);
            pg_sys::UnregisterSnapshot(snapshot);
            pg_sys::CommandCounterIncrement();
        }
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        // During an ERROR unwind the relation is released by the abort.
        if !std::thread::panicking() {
            unsafe { pg_sys::table_close(self.rel, self.lock) };
        }
    }
}

/// New values for some columns, applied to the rows of a scan.
struct Change<'a> {
    table: &'a Table,
    datums: Vec<pg_sys::Datum>,
    nulls: Vec<bool>,
    replace: Vec<bool>,
}

impl<'a> Change<'a> {
    fn new(table: &'a Table, values: &[(&str, Option<pg_sys::Datum>)]) -> Change<'a> {
        let natts = unsafe { (*table.desc()).natts } as usize;
        let mut change = Change { table, datums: vec![pg_sys::Datum::from(0); natts], nulls: vec![false; natts], replace: vec![false; natts] };
        for (column, value) in values {
            let i = (table.attnum(column) - 1) as usize;
            change.replace[i] = true;
            match value {
                Some(v) => change.datums[i] = *v,
                None => change.nulls[i] = true,
            }
        }
        change
    }

    /// Replaces the row met by a scan with its changed version.
    fn apply(&mut self, row: &Row) {
        unsafe {
            let new = pg_sys::heap_modify_tuple(row.tuple, self.table.desc(), self.datums.as_mut_ptr(), self.nulls.as_mut_ptr(), self.replace.as_mut_ptr());
            pg_sys::CatalogTupleUpdate(self.table.rel, &mut (*row.tuple).t_self, new);
            pg_sys::heap_freetuple(new);
        }
    }
}

/// A row met during a scan.
pub struct Row<'a> {
    tuple: pg_sys::HeapTuple,
    table: &'a Table,
}

impl Row<'_> {
    pub fn get<T: FromDatum>(&self, column: &str) -> Option<T> {
        unsafe {
            let mut isnull = false;
            let datum = pg_sys::heap_getattr(self.tuple, self.table.attnum(column) as i32, self.table.desc(), &mut isnull);
            T::from_polymorphic_datum(datum, isnull, pg_sys::InvalidOid)
        }
    }
}

/// A text datum in the current memory context.
pub fn text_datum(s: &str) -> pg_sys::Datum {
    unsafe { pg_sys::Datum::from(pg_sys::cstring_to_text_with_len(s.as_ptr() as *const _, s.len() as i32)) }
}

/// `s` as an SQL string literal ('…' with quotes doubled; an E'' literal
/// when it holds a backslash, so standard_conforming_strings does not
/// matter).
pub fn quote_literal(s: &str) -> String {
    let body = s.replace('\'', "''");
    if s.contains('\\') {
        format!("E'{}'", body.replace('\\', "\\\\"))
    } else {
        format!("'{body}'")
    }
}
