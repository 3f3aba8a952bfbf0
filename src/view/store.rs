//! The processor's state store: the records `decide` reads (bundle versions, scope slots,
//! command results) for the partitions this processor owns, kept in RocksDB instead of
//! memory so that the processor's footprint does not grow with the registry. It is built
//! only from the `events` log, with the same planner as the view, so its records are the
//! view's records byte for byte.
//!
//! It survives restarts: each partition's [`Position`] (chain head, last command offset,
//! next `events` offset) is written in the same WriteBatch as the records it reflects, so
//! a new owner catches up from there instead of replaying the partition from offset 0.
//! Every event applied but not yet committed also leaves an *outbox* entry in that batch:
//! its planned writes (to re-derive its outputs after a crash) and the previous values of
//! the keys it wrote (to undo it if it never landed on the log). A store whose mark names
//! another layout, cluster or topic is discarded at open.
//!
//! Keys are `partition(4, big-endian)` followed by the view table's key; outbox keys are
//! `partition(4) seq(8)`.

use std::path::Path;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options,
    WriteBatch, WriteOptions,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ViewError;
use super::plan::{self, Table, Write};
use crate::domain::event::{CommandResult, LogId, ScopeRef};
use crate::domain::state::{Applied, BundleRecord, Chain, SlotRecord, chain_check};
use crate::domain::{BundleId, BundleVersion, RegistryEvent, StateRead};

/// The view tables the processor keeps.
const TABLES: [Table; 3] = [Table::Bundles, Table::Slots, Table::Results];
/// Column family of partition positions: `partition(4)` -> [`Position`] JSON.
const META: &str = "meta";
/// Column family of the outbox: `partition(4) seq(8)` -> [`OutboxEntry`] JSON.
const OUTBOX: &str = "outbox";
/// Key of the store's mark in the default column family.
const MARK_KEY: &[u8] = b"mpr.processor.mark";
/// Storage layout of this build's state store.
/// 3: events carry signatures (MPR2 §8); a store of layout 2 is rebuilt from `events`.
pub const LAYOUT: u32 = 3;

/// Which log a store reflects. A store marked with another identity is discarded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreIdentity {
    /// Storage layout.
    pub layout: u32,
    /// The Kafka cluster id (empty when the broker gives none).
    pub cluster_id: String,
    /// The `events` topic.
    pub events_topic: String,
}

impl StoreIdentity {
    /// The identity of a store not tied to a broker (benchmarks, tests).
    pub fn scratch() -> Self {
        Self {
            layout: LAYOUT,
            cluster_id: String::new(),
            events_topic: String::new(),
        }
    }
}

/// How far a partition's records reflect its `events` log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Head of its `events` chain.
    pub chain: Chain,
    /// Highest `commands` offset recorded in an applied event.
    pub last_command_offset: Option<i64>,
    /// `events` offset of the head event (-1 before the first).
    pub head_offset: i64,
    /// Next `events` offset to read or to expect an append at: every record below it is
    /// applied or was skipped (a loser's fork, a duplicate).
    pub events_next: i64,
}

impl Position {
    /// Before the first event of partition `p`.
    pub fn new(p: i32) -> Self {
        Self {
            chain: Chain::new(LogId::Events, p),
            last_command_offset: None,
            head_offset: -1,
            events_next: 0,
        }
    }

    /// Advances past `e`, applied at `events_offset`.
    fn advance(&mut self, e: &RegistryEvent, events_offset: i64) {
        self.head_offset = events_offset;
        self.chain.advance(e);
        self.last_command_offset = Some(
            self.last_command_offset
                .map_or(e.source.offset, |o| o.max(e.source.offset)),
        );
        self.events_next = events_offset + 1;
    }
}

/// Bytes stored as hex in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Bytes(#[serde(with = "hex")] Vec<u8>);

/// A write, as the outbox keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredWrite {
    table: u8,
    key: Bytes,
    value: Bytes,
}

/// The value a key held before an event wrote it (`None`: absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Undo {
    table: u8,
    key: Bytes,
    old: Option<Bytes>,
}

/// An applied event whose command offset is not committed yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredOutbox {
    /// The event's log bytes.
    event: Bytes,
    /// The `events` offset it was applied at.
    events_offset: i64,
    /// Its planned view writes (all tables), for its derived outputs.
    writes: Vec<StoredWrite>,
    /// How to undo it in this store; empty for an event read from the log (it landed).
    undo: Vec<Undo>,
    /// The position before it.
    before: Position,
}

/// An outbox entry, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    /// The event.
    pub event: RegistryEvent,
    /// The `events` offset it was applied at.
    pub events_offset: i64,
    /// Its planned view writes.
    pub writes: Vec<Write>,
    /// The position before it.
    pub before: Position,
}

/// The state store of one processor.
pub struct StateStore {
    db: DB,
    write: WriteOptions,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore").finish_non_exhaustive()
    }
}

fn prefixed(p: i32, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 4);
    k.extend_from_slice(&p.to_be_bytes());
    k.extend_from_slice(key);
    k
}

fn outbox_key(p: i32, seq: u64) -> Vec<u8> {
    prefixed(p, &seq.to_be_bytes())
}

fn corrupt(table: &'static str, e: impl std::fmt::Display) -> ViewError {
    ViewError::Corrupt {
        table,
        detail: e.to_string(),
    }
}

impl StateStore {
    /// Opens the store at `path`, keeping what it holds when its mark equals `identity`;
    /// a store of another layout, cluster or topic (or an unmarked one) is discarded.
    /// `cache_mib` bounds its block cache; its memtables stay under the same amount.
    pub fn open(
        path: &Path,
        cache_mib: usize,
        identity: &StoreIdentity,
    ) -> Result<Self, ViewError> {
        let mark = serde_json::to_vec(identity).map_err(|e| corrupt("mark", e))?;
        if path.exists() {
            let keep = match Self::open_db(path, cache_mib) {
                Ok(s) => s.db.get(MARK_KEY)?.as_deref() == Some(&mark[..]),
                Err(_) => false,
            };
            if !keep {
                tracing::info!(path = %path.display(), "state store of another layout, cluster or topic; starting empty");
                DB::destroy(&Options::default(), path)?;
            }
        }
        std::fs::create_dir_all(path).map_err(|e| {
            corrupt(
                "state store",
                format!("cannot create {}: {e}", path.display()),
            )
        })?;
        let s = Self::open_db(path, cache_mib)?;
        s.db.put(MARK_KEY, &mark)?;
        Ok(s)
    }

    /// Creates an empty store at `path`, discarding whatever a previous run left there.
    pub fn open_empty(
        path: &Path,
        cache_mib: usize,
        identity: &StoreIdentity,
    ) -> Result<Self, ViewError> {
        if path.exists() {
            DB::destroy(&Options::default(), path)?;
        }
        Self::open(path, cache_mib, identity)
    }

    fn open_db(path: &Path, cache_mib: usize) -> Result<Self, ViewError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let budget = cache_mib.max(8) << 20;
        opts.set_db_write_buffer_size(budget);
        let cache = Cache::new_lru_cache(budget);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_bloom_filter(10.0, false);
        // Results are probed for every command, almost always for an id never seen.
        table.set_cache_index_and_filter_blocks(true);
        let mut cfs: Vec<ColumnFamilyDescriptor> = TABLES
            .iter()
            .map(|t| {
                let mut o = Options::default();
                o.set_write_buffer_size(budget / 4);
                o.set_block_based_table_factory(&table);
                o.set_compression_type(super::compression());
                ColumnFamilyDescriptor::new(t.name(), o)
            })
            .collect();
        cfs.push(ColumnFamilyDescriptor::new(META, Options::default()));
        cfs.push(ColumnFamilyDescriptor::new(OUTBOX, Options::default()));
        let db = DB::open_cf_descriptors(&opts, path, cfs)?;
        // The write-ahead log is on (not synced): a killed process keeps every batch, so a
        // position never runs ahead of, or behind, the records it describes.
        Ok(Self {
            db,
            write: WriteOptions::default(),
        })
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(name).expect("column family exists")
    }

    /// Empties partition `p`: records, position and outbox.
    pub fn clear(&self, p: i32) -> Result<(), ViewError> {
        let (from, to) = (p.to_be_bytes(), (p + 1).to_be_bytes());
        let mut b = WriteBatch::default();
        for t in TABLES {
            b.delete_range_cf(self.cf(t.name()), from, to);
        }
        b.delete_cf(self.cf(META), from);
        b.delete_range_cf(self.cf(OUTBOX), from, to);
        self.db.write_opt(b, &self.write)?;
        Ok(())
    }

    /// The stored position of partition `p` (a fresh one when it holds nothing).
    pub fn position(&self, p: i32) -> Result<Position, ViewError> {
        match self.db.get_pinned_cf(self.cf(META), p.to_be_bytes())? {
            Some(b) => serde_json::from_slice(&b).map_err(|e| corrupt(META, e)),
            None => Ok(Position::new(p)),
        }
    }

    /// Records partition `p`'s position (after a catch-up skipped records past its head).
    pub fn set_position(&self, p: i32, pos: &Position) -> Result<(), ViewError> {
        self.db
            .put_cf_opt(self.cf(META), p.to_be_bytes(), json(pos)?, &self.write)?;
        Ok(())
    }

    /// Partition `p` of the store.
    pub fn partition(&self, p: i32) -> PartitionStore<'_> {
        PartitionStore { store: self, p }
    }

    /// Partition `p`'s outbox entries as stored, oldest first. A value is the command's
    /// offset (8 bytes, big-endian) followed by the entry's JSON.
    fn outbox_raw(&self, p: i32) -> Result<Vec<(Vec<u8>, StoredOutbox)>, ViewError> {
        let start = p.to_be_bytes();
        let mut out = Vec::new();
        let it = self.db.iterator_cf(
            self.cf(OUTBOX),
            IteratorMode::From(&start, Direction::Forward),
        );
        for kv in it {
            let (k, v) = kv?;
            if !k.starts_with(&start) {
                break;
            }
            out.push((k.to_vec(), outbox_value(&v)?));
        }
        Ok(out)
    }

    /// Partition `p`'s newest outbox entry.
    fn outbox_last(&self, p: i32) -> Result<Option<(Vec<u8>, StoredOutbox)>, ViewError> {
        let prefix = p.to_be_bytes();
        // Every key of `p` is longer than, and so sorts before, the bare prefix of `p + 1`.
        let end = (p + 1).to_be_bytes();
        let mut it = self.db.iterator_cf(
            self.cf(OUTBOX),
            IteratorMode::From(&end, Direction::Reverse),
        );
        match it.next().transpose()? {
            Some((k, v)) if k.starts_with(&prefix) => Ok(Some((k.to_vec(), outbox_value(&v)?))),
            _ => Ok(None),
        }
    }

    /// Partition `p`'s outbox, oldest first.
    pub fn outbox(&self, p: i32) -> Result<Vec<OutboxEntry>, ViewError> {
        self.outbox_raw(p)?
            .into_iter()
            .map(|(_, s)| {
                let event =
                    crate::codec::decode_event(&s.event.0).map_err(|e| corrupt(OUTBOX, e))?;
                let writes = s
                    .writes
                    .into_iter()
                    .map(|w| {
                        Ok(Write {
                            table: Table::from_id(w.table)
                                .ok_or_else(|| corrupt(OUTBOX, "table id"))?,
                            key: w.key.0,
                            value: w.value.0,
                        })
                    })
                    .collect::<Result<_, ViewError>>()?;
                Ok(OutboxEntry {
                    event,
                    events_offset: s.events_offset,
                    writes,
                    before: s.before,
                })
            })
            .collect()
    }

    /// Drops partition `p`'s outbox entries of commands below `committed` (their outputs
    /// are delivered and their offsets committed).
    pub fn prune(&self, p: i32, committed: i64) -> Result<(), ViewError> {
        let start = p.to_be_bytes();
        let mut b = WriteBatch::default();
        let it = self.db.iterator_cf(
            self.cf(OUTBOX),
            IteratorMode::From(&start, Direction::Forward),
        );
        for kv in it {
            let (k, v) = kv?;
            if !k.starts_with(&start) {
                break;
            }
            if source_offset(&v)? < committed {
                b.delete_cf(self.cf(OUTBOX), k);
            }
        }
        if !b.is_empty() {
            self.db.write_opt(b, &self.write)?;
        }
        Ok(())
    }

    /// Undoes partition `p`'s newest outbox entry, restoring the values its event
    /// overwrote and the position before it. Returns that position, or `None` when the
    /// outbox is empty or the entry was read from the log (it cannot be undone).
    pub fn undo_last(&self, p: i32) -> Result<Option<Position>, ViewError> {
        let Some((k, e)) = self.outbox_last(p)? else {
            return Ok(None);
        };
        if e.undo.is_empty() {
            return Ok(None);
        }
        let mut b = WriteBatch::default();
        for u in e.undo.iter().rev() {
            let t = Table::from_id(u.table).ok_or_else(|| corrupt(OUTBOX, "table id"))?;
            let key = prefixed(p, &u.key.0);
            match &u.old {
                Some(v) => b.put_cf(self.cf(t.name()), key, &v.0),
                None => b.delete_cf(self.cf(t.name()), key),
            }
        }
        b.delete_cf(self.cf(OUTBOX), k);
        b.put_cf(self.cf(META), p.to_be_bytes(), json(&e.before)?);
        self.db.write_opt(b, &self.write)?;
        Ok(Some(e.before))
    }

    fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        t: Table,
        key: &[u8],
    ) -> Result<Option<T>, ViewError> {
        super::get_json(&self.db, self.cf(t.name()), t, key)
    }
}

/// The command offset at the head of an outbox value.
fn source_offset(v: &[u8]) -> Result<i64, ViewError> {
    let head: [u8; 8] = v
        .get(..8)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| corrupt(OUTBOX, "value shorter than its offset"))?;
    Ok(i64::from_be_bytes(head))
}

/// An outbox value: the command offset, then the entry's JSON.
fn outbox_value(v: &[u8]) -> Result<StoredOutbox, ViewError> {
    source_offset(v)?;
    serde_json::from_slice(&v[8..]).map_err(|e| corrupt(OUTBOX, e))
}

fn json<T: Serialize>(v: &T) -> Result<Vec<u8>, ViewError> {
    serde_json::to_vec(v).map_err(|e| corrupt("state store", e))
}

/// How an applied event is remembered until its command offset is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outbox {
    /// Not at all: its command offset is already committed.
    None,
    /// Read from the log: it landed, only its outputs may need re-deriving.
    Landed,
    /// Decided here and not yet known to have landed: keep what undoes it.
    Undoable,
}

/// One partition of a [`StateStore`]: reads for `decide` and the planner.
#[derive(Clone, Copy)]
pub struct PartitionStore<'a> {
    store: &'a StateStore,
    p: i32,
}

impl PartitionStore<'_> {
    /// Replays `e`, at `events_offset`, by the log-order rule of [`chain_check`]: when it
    /// is the next event of `pos`, writes what it changes together with the advanced
    /// position (and an outbox entry as `outbox` says), and advances `pos`. Returns the
    /// planned view writes of an applied event (for its derived outputs).
    pub fn apply(
        &self,
        pos: &mut Position,
        e: &RegistryEvent,
        encoded: &[u8],
        events_offset: i64,
        outbox: Outbox,
    ) -> Result<(Applied, Vec<Write>), ViewError> {
        if let Some(skip) = chain_check(&pos.chain, e)? {
            return Ok((skip, Vec::new()));
        }
        let writes = plan::plan(e, encoded, self)?;
        let s = self.store;
        let mut b = WriteBatch::default();
        let mut undo = Vec::new();
        for w in writes.iter().filter(|w| TABLES.contains(&w.table)) {
            let key = prefixed(self.p, &w.key);
            if outbox == Outbox::Undoable {
                let old = s.db.get_pinned_cf(s.cf(w.table.name()), &key)?;
                undo.push(Undo {
                    table: w.table as u8,
                    key: Bytes(w.key.clone()),
                    old: old.map(|v| Bytes(v.to_vec())),
                });
            }
            b.put_cf(s.cf(w.table.name()), key, &w.value);
        }
        let before = pos.clone();
        pos.advance(e, events_offset);
        if outbox != Outbox::None {
            let entry = StoredOutbox {
                event: Bytes(encoded.to_vec()),
                events_offset,
                writes: writes
                    .iter()
                    .map(|w| StoredWrite {
                        table: w.table as u8,
                        key: Bytes(w.key.clone()),
                        value: Bytes(w.value.clone()),
                    })
                    .collect(),
                undo,
                before,
            };
            let mut value = e.source.offset.to_be_bytes().to_vec();
            value.extend(json(&entry)?);
            b.put_cf(s.cf(OUTBOX), outbox_key(self.p, e.seq), value);
        }
        b.put_cf(s.cf(META), self.p.to_be_bytes(), json(pos)?);
        s.db.write_opt(b, &s.write)?;
        Ok((Applied::Applied, writes))
    }
}

impl StateRead for PartitionStore<'_> {
    type Error = ViewError;
    fn bundle(&self, id: &BundleId, v: &BundleVersion) -> Result<Option<BundleRecord>, ViewError> {
        self.store
            .get_json(Table::Bundles, &prefixed(self.p, &plan::bundle_key(id, v)))
    }
    fn slot(&self, id: &BundleId, scope: &ScopeRef) -> Result<Option<SlotRecord>, ViewError> {
        self.store
            .get_json(Table::Slots, &prefixed(self.p, &plan::slot_key(id, scope)))
    }
    fn result(&self, command_id: &Uuid) -> Result<Option<CommandResult>, ViewError> {
        self.store
            .get_json(Table::Results, &prefixed(self.p, command_id.as_bytes()))
    }
}
