//! Ticks: snapshots that cut the queue into consecutive sets of rows, as in
//! PgQ. The rows of tick n are the queue rows whose writer (top-level
//! transaction `txid`) is committed in tick n's snapshot and was not in tick
//! n-1's. Every committed row belongs to exactly one tick, whenever it was
//! written and however long its transaction ran; a later change of a row is
//! in the same tick as an earlier one or in a later tick (the later writer
//! waited for the earlier one's commit), and within a tick rows are ordered
//! by queue id, which writers draw while holding the row lock.
//!
//! A tick is stored in `ably.ticks` when its rows are cut into batches,
//! with what makes that cut repeatable ([`Cut`], src/batch.rs), and kept
//! while one of its batches is unsettled or the next tick needs it as its
//! lower bound, so a batch can be read again, unchanged, after a crash.
//! Ticks taken but not cut yet live only in the worker's memory: lost in a
//! crash, their rows are simply cut into a later tick. Rows are found
//! through the `txid` index of each part: the transactions that were running
//! at tick n-1, and the range of transaction ids started since.

use crate::catalog;
use crate::store::{text_datum, Table};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::IntoDatum;
use std::collections::HashMap;
use std::rc::Rc;

/// A snapshot reduced to top-level transaction ids (64-bit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub xmin: u64,
    pub xmax: u64,
    /// Transactions running when the snapshot was taken, sorted.
    pub xip: Vec<u64>,
}

impl Snapshot {
    /// Whether a transaction that is committed now had committed when this
    /// snapshot was taken.
    pub fn saw(&self, txid: u64) -> bool {
        txid < self.xmin || (txid < self.xmax && self.xip.binary_search(&txid).is_err())
    }

    /// The snapshot of the current transaction.
    pub fn current() -> Snapshot {
        unsafe {
            let snap = pg_sys::GetTransactionSnapshot();
            let next = pg_sys::ReadNextFullTransactionId().value;
            let full = |xid: pg_sys::TransactionId| widen(next, xid.into_inner());
            let mut xip: Vec<u64> = (0..(*snap).xcnt as usize).map(|i| full(*(*snap).xip.add(i))).collect();
            xip.sort_unstable();
            Snapshot { xmin: full((*snap).xmin), xmax: full((*snap).xmax), xip }
        }
    }
}

/// A 32-bit transaction id made 64-bit relative to the next one (it is
/// within 2^31 of it, as every id still in use is).
pub fn widen(next: u64, xid: u32) -> u64 {
    let candidate = (next & !0xffff_ffff) | u64::from(xid);
    if candidate > next {
        candidate.wrapping_sub(1 << 32)
    } else {
        candidate
    }
}

#[derive(Debug, Clone)]
pub struct Tick {
    pub id: i64,
    pub snapshot: Snapshot,
    /// Microseconds since 2000-01-01 (a timestamptz).
    pub created_at: i64,
    /// How the tick's rows were cut (None: not cut yet, tick 0, or a tick
    /// cut by 0.2.0, whose batches are all rows of `ably.batches`).
    pub cut: Option<Cut>,
}

/// What makes a tick's cut repeatable, and which of its batches are
/// settled (need no sending any more).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    pub epoch: String,
    pub batch_size: i32,
    pub max_bytes: i32,
    pub row_count: i32,
    pub batch_count: i32,
    /// Ordinals of settled batches, ascending.
    pub settled: Vec<i32>,
}

/// A new tick with the current snapshot, unless it equals `last` (then
/// nothing could have committed since). Stored only when it is cut.
pub fn take_if_new(id: i64, last: &Snapshot) -> Option<Tick> {
    let snapshot = Snapshot::current();
    if snapshot == *last {
        return None;
    }
    Some(Tick { id, snapshot, created_at: unsafe { pg_sys::GetCurrentTimestamp() }, cut: None })
}

/// Stores a tick that has just been cut.
pub fn store(tick: &Tick) {
    let table = Table::open("ticks", pg_sys::RowExclusiveLock);
    let xip: Vec<i64> = tick.snapshot.xip.iter().map(|x| *x as i64).collect();
    let mut values = vec![
        ("id", Some(pg_sys::Datum::from(tick.id))),
        ("snap_xmin", Some(pg_sys::Datum::from(tick.snapshot.xmin as i64))),
        ("snap_xmax", Some(pg_sys::Datum::from(tick.snapshot.xmax as i64))),
        ("snap_xip", xip.into_datum()),
        ("created_at", Some(pg_sys::Datum::from(tick.created_at))),
    ];
    if let Some(cut) = &tick.cut {
        values.extend([
            ("epoch", Some(text_datum(&cut.epoch))),
            ("batch_size", Some(pg_sys::Datum::from(cut.batch_size))),
            ("max_bytes", Some(pg_sys::Datum::from(cut.max_bytes))),
            ("row_count", Some(pg_sys::Datum::from(cut.row_count))),
            ("batch_count", Some(pg_sys::Datum::from(cut.batch_count))),
            ("settled", cut.settled.clone().into_datum()),
        ]);
    }
    table.insert(&values);
}

/// Records which of a stored tick's batches are settled.
pub fn save_settled(id: i64, settled: &[i32]) {
    let table = Table::open("ticks", pg_sys::RowExclusiveLock);
    table.update_int8("ticks_pkey", "id", id, &[("settled", settled.to_vec().into_datum())]);
}

/// Forgets stored ticks (settled, and not needed by the next one).
pub fn delete(ids: &[i64]) {
    if ids.is_empty() {
        return;
    }
    Table::open("ticks", pg_sys::RowExclusiveLock).delete_int8("ticks_pkey", "id", ids);
}

/// The tick before `ticks[i]` (its lower bound), if it is stored; `ticks`
/// as [`load_all`] returns them.
pub fn previous(ticks: &[Tick], i: usize) -> Option<&Tick> {
    let prev = ticks.get(i.checked_sub(1)?)?;
    (prev.id == ticks[i].id - 1).then_some(prev)
}

/// Every stored tick, by id.
pub fn load_all() -> Vec<Tick> {
    let mut ticks = Vec::new();
    Table::open("ticks", pg_sys::AccessShareLock).scan_all(|row| {
        let mut xip: Vec<u64> = row.get::<Vec<Option<i64>>>("snap_xip").unwrap_or_default().into_iter().flatten().map(|x| x as u64).collect();
        xip.sort_unstable();
        let cut = match (row.get::<String>("epoch"), row.get::<i32>("batch_size"), row.get::<i32>("max_bytes"), row.get::<i32>("row_count"), row.get::<i32>("batch_count")) {
            (Some(epoch), Some(batch_size), Some(max_bytes), Some(row_count), Some(batch_count)) => {
                let mut settled: Vec<i32> = row.get::<Vec<Option<i32>>>("settled").unwrap_or_default().into_iter().flatten().collect();
                settled.sort_unstable();
                settled.dedup();
                Some(Cut { epoch, batch_size, max_bytes, row_count, batch_count, settled })
            }
            _ => None,
        };
        ticks.push(Tick {
            id: row.get::<i64>("id").unwrap_or(-1),
            snapshot: Snapshot {
                xmin: row.get::<i64>("snap_xmin").unwrap_or(0) as u64,
                xmax: row.get::<i64>("snap_xmax").unwrap_or(0) as u64,
                xip,
            },
            created_at: row.get::<pgrx::datum::TimestampWithTimeZone>("created_at").map(i64::from).unwrap_or(0),
            cut,
        });
        false
    });
    ticks.sort_by_key(|t| t.id);
    ticks
}

/// Where a queue row is, and what the worker needs to cut batches.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: i64,
    pub part: u8,
    pub tid: pg_sys::ItemPointerData,
    pub channel: Rc<str>,
    /// Bytes Ably counts: name plus data.
    pub size: usize,
}

/// Column positions of the queue parts (the same in every part).
struct Columns {
    txid: i32,
    id: i32,
    channel: i32,
    name: i32,
    data: i32,
}

/// The rows of the tick after `prev` up to `cur`, ordered by queue id.
/// `channels` interns channel names across calls.
pub fn events(prev: &Snapshot, cur: &Snapshot, channels: &mut HashMap<String, Rc<str>>) -> Vec<Event> {
    let mut out = Vec::new();
    let Some(extension) = catalog::extension() else { return out };
    for part in 0..crate::queue::PARTS as u8 {
        let Some(relid) = catalog::relation_in(extension.namespace, &format!("queue_{part}")) else { continue };
        unsafe { scan_part(relid, part, prev, cur, channels, &mut out) };
    }
    out.sort_unstable_by_key(|e| e.id);
    out
}

unsafe fn scan_part(
    relid: pg_sys::Oid,
    part: u8,
    prev: &Snapshot,
    cur: &Snapshot,
    channels: &mut HashMap<String, Rc<str>>,
    out: &mut Vec<Event>,
) {
    unsafe {
        let rel = pg_sys::table_open(relid, pg_sys::AccessShareLock as i32);
        // A part with no pages has no row (a committed row's page exists
        // before its writer commits): truncated parts cost no index probe.
        if pg_sys::RelationGetNumberOfBlocksInFork(rel, pg_sys::ForkNumber::MAIN_FORKNUM) == 0 {
            pg_sys::table_close(rel, pg_sys::AccessShareLock as i32);
            return;
        }
        let list = pg_sys::RelationGetIndexList(rel);
        if list.is_null() || (*list).length < 1 {
            pg_sys::table_close(rel, pg_sys::AccessShareLock as i32);
            return;
        }
        let index = pg_sys::index_open((*(*list).elements).oid_value, pg_sys::AccessShareLock as i32);
        let desc = (*rel).rd_att;
        let attnum = |name: &std::ffi::CStr| pg_sys::get_attnum(relid, name.as_ptr()) as i32;
        let cols = Columns {
            txid: attnum(c"txid"),
            id: attnum(c"id"),
            channel: attnum(c"channel"),
            name: attnum(c"name"),
            data: attnum(c"data"),
        };
        let snapshot = pg_sys::GetTransactionSnapshot();
        let slot = pg_sys::table_slot_create(rel, std::ptr::null_mut());
        #[cfg(any(feature = "pg15", feature = "pg16"))]
        let scan = pg_sys::index_beginscan(rel, index, snapshot, 2, 0);
        #[cfg(not(any(feature = "pg15", feature = "pg16")))]
        let scan = pg_sys::index_beginscan(rel, index, snapshot, std::ptr::null_mut(), 2, 0);
        let mut visit = |lo: u64, hi: u64| {
            let mut keys: [pg_sys::ScanKeyData; 2] = std::mem::zeroed();
            pg_sys::ScanKeyInit(&mut keys[0], 1, pg_sys::BTGreaterEqualStrategyNumber as u16, pg_sys::F_INT8GE.into(), pg_sys::Datum::from(lo as i64));
            pg_sys::ScanKeyInit(&mut keys[1], 1, pg_sys::BTLessStrategyNumber as u16, pg_sys::F_INT8LT.into(), pg_sys::Datum::from(hi as i64));
            pg_sys::index_rescan(scan, keys.as_mut_ptr(), 2, std::ptr::null_mut(), 0);
            while pg_sys::index_getnext_slot(scan, pg_sys::ScanDirection::ForwardScanDirection, slot) {
                let mut isnull = false;
                let txid = pg_sys::slot_getattr(slot, cols.txid, &mut isnull).value() as u64;
                // Visible now (committed, not from an aborted subtransaction);
                // in this tick if committed at `cur` and not at `prev`.
                if !cur.saw(txid) || prev.saw(txid) {
                    continue;
                }
                let id = pg_sys::slot_getattr(slot, cols.id, &mut isnull).value() as i64;
                let channel_datum = pg_sys::slot_getattr(slot, cols.channel, &mut isnull);
                let channel_text = pgrx::varlena::text_to_rust_str_unchecked(pg_sys::pg_detoast_datum_packed(channel_datum.cast_mut_ptr()));
                let channel = match channels.get(channel_text) {
                    Some(c) => c.clone(),
                    None => {
                        let c: Rc<str> = Rc::from(channel_text);
                        channels.insert(channel_text.to_string(), c.clone());
                        c
                    }
                };
                let name = pg_sys::slot_getattr(slot, cols.name, &mut isnull);
                let name_size = if isnull { 0 } else { raw_size(name) };
                let data = pg_sys::slot_getattr(slot, cols.data, &mut isnull);
                let data_size = if isnull { 0 } else { raw_size(data) };
                out.push(Event { id, part, tid: (*slot).tts_tid, channel, size: name_size + data_size });
            }
        };
        // Transactions that were running at `prev` and committed by `cur`
        // (one still running at `cur` has no row in this tick), then those
        // that started after `prev`, up to `cur`.
        for x in &prev.xip {
            if cur.saw(*x) {
                visit(*x, x + 1);
            }
        }
        if prev.xmax < cur.xmax {
            visit(prev.xmax, cur.xmax);
        }
        let _ = desc;
        pg_sys::index_endscan(scan);
        pg_sys::ExecDropSingleTupleTableSlot(slot);
        pg_sys::index_close(index, pg_sys::AccessShareLock as i32);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as i32);
    }
}

/// Rows visible now that `after` had not seen (for `ably.status()`).
pub fn count_after(after: &Snapshot) -> i64 {
    let now = Snapshot { xmin: i64::MAX as u64, xmax: i64::MAX as u64, xip: Vec::new() };
    let mut channels = HashMap::new();
    // `now` saw every transaction that is committed now.
    events(after, &now, &mut channels).len() as i64
}

/// Size of a text/json value without detoasting it.
unsafe fn raw_size(datum: pg_sys::Datum) -> usize {
    unsafe { pg_sys::toast_raw_datum_size(datum).saturating_sub(pg_sys::VARHDRSZ) }
}

/// A queue row as it is sent (or moved to the dead letters).
#[derive(Debug, Clone)]
pub struct Row {
    pub id: i64,
    pub rule_id: Option<i64>,
    pub channel: String,
    pub name: Option<String>,
    pub data: String,
    pub enqueued_at: i64,
}

/// Fetches the rows of `events` (visible to the current transaction).
pub fn fetch(events: &[Event]) -> Vec<Row> {
    Reader::new().fetch(events)
}

/// Reads queue rows by their place in the heap, opening each part once for
/// all the batches of a round.
pub struct Reader {
    namespace: Option<pg_sys::Oid>,
    /// Per part: the relation and the positions of id, rule_id, channel,
    /// name, data, enqueued_at.
    parts: [Option<(pg_sys::Relation, [i32; 6])>; crate::queue::PARTS as usize],
}

impl Reader {
    pub fn new() -> Reader {
        Reader { namespace: catalog::extension().map(|e| e.namespace), parts: [None; crate::queue::PARTS as usize] }
    }

    fn part(&mut self, part: u8) -> Option<(pg_sys::Relation, [i32; 6])> {
        let slot = self.parts.get_mut(part as usize)?;
        if slot.is_none() {
            let relid = catalog::relation_in(self.namespace?, &format!("queue_{part}"))?;
            unsafe {
                let rel = pg_sys::table_open(relid, pg_sys::AccessShareLock as i32);
                let attnum = |name: &std::ffi::CStr| pg_sys::get_attnum(relid, name.as_ptr()) as i32;
                *slot = Some((rel, [attnum(c"id"), attnum(c"rule_id"), attnum(c"channel"), attnum(c"name"), attnum(c"data"), attnum(c"enqueued_at")]));
            }
        }
        *slot
    }

    /// The rows of `events` visible to the current transaction, in order.
    pub fn fetch(&mut self, events: &[Event]) -> Vec<Row> {
        let mut rows = Vec::with_capacity(events.len());
        unsafe {
            let snapshot = pg_sys::GetTransactionSnapshot();
            for event in events {
                let Some((rel, cols)) = self.part(event.part) else { continue };
                let mut tuple: pg_sys::HeapTupleData = std::mem::zeroed();
                tuple.t_self = event.tid;
                let mut buffer: pg_sys::Buffer = 0;
                if !pg_sys::heap_fetch(rel, snapshot, &mut tuple, &mut buffer, false) {
                    continue;
                }
                let desc = (*rel).rd_att;
                let mut get = |attnum: i32| {
                    let mut isnull = false;
                    let datum = pg_sys::heap_getattr(&mut tuple, attnum, desc, &mut isnull);
                    (datum, isnull)
                };
                let text = |(datum, isnull): (pg_sys::Datum, bool)| -> Option<String> {
                    (!isnull).then(|| String::from_datum(datum, false)).flatten()
                };
                let (id, _) = get(cols[0]);
                let (rule_id, rule_null) = get(cols[1]);
                let (enqueued_at, _) = get(cols[5]);
                rows.push(Row {
                    id: id.value() as i64,
                    rule_id: (!rule_null).then(|| rule_id.value() as i64),
                    channel: text(get(cols[2])).unwrap_or_default(),
                    name: text(get(cols[3])),
                    data: text(get(cols[4])).unwrap_or_else(|| "null".into()),
                    enqueued_at: enqueued_at.value() as i64,
                });
                pg_sys::ReleaseBuffer(buffer);
            }
        }
        rows
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        // During an ERROR unwind the relations are released by the abort.
        if std::thread::panicking() {
            return;
        }
        for (rel, _) in self.parts.iter().flatten() {
            unsafe { pg_sys::table_close(*rel, pg_sys::AccessShareLock as i32) };
        }
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn a_snapshot_saw_what_committed_before_it() {
        let s = Snapshot { xmin: 100, xmax: 110, xip: vec![100, 104] };
        assert!(s.saw(99));
        assert!(!s.saw(100));
        assert!(s.saw(101));
        assert!(!s.saw(104));
        assert!(s.saw(109));
        assert!(!s.saw(110));
    }

    #[test]
    fn widening_keeps_ids_near_the_next_one() {
        assert_eq!(widen((5 << 32) | 1000, 900), (5 << 32) | 900);
        assert_eq!(widen((5 << 32) | 10, 0xffff_fff0), (4 << 32) | 0xffff_fff0);
    }
}
