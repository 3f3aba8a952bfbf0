//! The RocksDB materialized view, built only from the log. One column family per
//! [`Table`]; each event is applied in one WriteBatch together with its partition's applied
//! position, so a crash never leaves an event half-applied. Queries (resolve, time travel,
//! listings) read only from here, through a [`Reader`]: [`View::consistent`] gives one
//! RocksDB snapshot, whose records and applied positions (so its `view_version`) belong to
//! the same WriteBatch boundary. [`store`] is the processor's state store, built the
//! same way.

pub mod plan;
mod query;
pub mod store;

use std::collections::HashMap;
use std::path::Path;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, DBIteratorWithThreadMode,
    DBPinnableSlice, IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions,
};
use sha2::{Digest, Sha256};

use crate::domain::event::{LogId, ScopeRef};
use crate::domain::state::{Applied, BundleRecord, Chain, GapError, SlotRecord, chain_check};
use crate::domain::{BundleId, BundleVersion, CommandResult, ErrorCode, RegistryEvent, StateRead};
pub use plan::{AppliedPosition, Change, HistoryEntry, Table, Write};
pub use query::{BundleFilter, CanaryAnswer, Page, ResolveAt, Resolved};

/// View failures.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// RocksDB failed.
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// A stored record did not parse: the store is corrupt or from another version.
    #[error("corrupt record in {table}: {detail}")]
    Corrupt {
        /// Table.
        table: &'static str,
        /// What failed.
        detail: String,
    },
    /// The view on disk was written by a build with another storage layout.
    #[error(
        "the view has storage layout {found}, this build reads layout {expected}; it is a cache \
         of the log: stop the registry, remove the view's directory and let it rebuild (or run \
         `mpr view rebuild`)"
    )]
    Layout {
        /// Layout on disk.
        found: String,
        /// Layout of this build.
        expected: String,
    },
    /// An event arrived out of order.
    #[error("event seq {got} does not follow applied seq {last} in {log:?}/{partition}")]
    Gap {
        /// Log.
        log: LogId,
        /// Partition.
        partition: i32,
        /// Last applied.
        last: u64,
        /// Offered.
        got: u64,
    },
}

impl From<GapError> for ViewError {
    fn from(g: GapError) -> Self {
        ViewError::Gap {
            log: g.log,
            partition: g.partition,
            last: g.last,
            got: g.got,
        }
    }
}

impl ViewError {
    /// Stable code.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::Internal
    }
    /// Whether a retry may help.
    pub fn retryable(&self) -> bool {
        matches!(self, ViewError::Rocks(_))
    }
}

/// Orders view states: the applied seq of the catalog log, then of each events partition.
/// Rendered as an opaque token `v1.C.P0.P1...`; one token is at least another when every
/// component is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ViewVersion(pub Vec<u64>);

impl ViewVersion {
    /// The token string.
    pub fn token(&self) -> String {
        let parts: Vec<String> = self.0.iter().map(u64::to_string).collect();
        format!("v1.{}", parts.join("."))
    }

    /// Parses a token.
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix("v1.")?;
        rest.split('.')
            .map(|p| p.parse().ok())
            .collect::<Option<Vec<u64>>>()
            .map(Self)
    }

    /// Whether this state includes everything `other` does.
    pub fn covers(&self, other: &ViewVersion) -> bool {
        other
            .0
            .iter()
            .enumerate()
            .all(|(i, s)| self.0.get(i).is_some_and(|m| m >= s))
    }
}

/// The view.
pub struct View {
    db: DB,
    partitions: i32,
    positions: RwLock<Vec<Option<AppliedPosition>>>,
    /// Moves on every change of `positions`, under its write lock: equal generations mean
    /// the cached positions (so [`View::version`]) did not change in between.
    generation: AtomicU64,
    /// How writes are made: without a write-ahead log (see [`View::open`]).
    write_opts: WriteOptions,
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View")
            .field("partitions", &self.partitions)
            .finish()
    }
}

fn slot_of(log: LogId, partition: i32) -> usize {
    match log {
        LogId::Catalog => 0,
        LogId::Events => partition as usize + 1,
    }
}

/// The view's storage layout, kept in RocksDB's default column family: outside the tables,
/// so outside the content digest and `state`. Bumped whenever a table's key or value format
/// changes. 2: the events table holds each event's Avro log record (MPR3-OPS-10b). 3:
/// events and receipts carry signatures (MPR2 §8); earlier records are not the registry's.
const LAYOUT: &[u8] = b"3";
const LAYOUT_KEY: &[u8] = b"mpr.view.layout";

/// Set by benchmarks only: tables stay uncompressed, to measure what compression saves.
static UNCOMPRESSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Benchmarks only: the view and state stores opened after this call keep their tables
/// uncompressed (`on`), or LZ4-compressed as the product does (`!on`).
#[cfg(feature = "testkit")]
pub fn store_uncompressed(on: bool) {
    UNCOMPRESSED.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// How the view's and the state store's tables are compressed: LZ4, every level. JSON
/// records and Avro events compress about 3x, which the rebuild's compactions then write
/// and read less of, at a small CPU cost per block.
pub(crate) fn compression() -> rocksdb::DBCompressionType {
    if UNCOMPRESSED.load(std::sync::atomic::Ordering::Relaxed) {
        rocksdb::DBCompressionType::None
    } else {
        rocksdb::DBCompressionType::Lz4
    }
}

impl View {
    /// Opens (or creates) the view at `path` for `partitions` events partitions.
    pub fn open(path: &Path, partitions: i32) -> Result<Self, ViewError> {
        Self::open_with(path, partitions, 64)
    }

    /// Opens the view for an offline rebuild (`mpr view rebuild`): the same layout and
    /// records, with 256 MiB of memtables instead of 64, so a pass that writes the whole
    /// view flushes and compacts less. Measured on 200,034 events: 6 % faster, 7 % less
    /// CPU, about 120 MiB more memory (BENCHMARKS.md, session 12). A serving registry
    /// reopens the result with [`View::open`].
    pub fn open_for_rebuild(path: &Path, partitions: i32) -> Result<Self, ViewError> {
        Self::open_with(path, partitions, 256)
    }

    fn open_with(path: &Path, partitions: i32, memtable_mib: usize) -> Result<Self, ViewError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.increase_parallelism(2);
        // Bounded memory whatever the view's size: all memtables together stay under
        // `memtable_mib` (64 MiB when serving; RocksDB's default is 64 MiB per column
        // family, eight of them here), and every table shares one 64 MiB block cache.
        // Bloom filters spare point reads (bundles, slots) a disk probe for absent keys.
        opts.set_db_write_buffer_size(memtable_mib << 20);
        // The view is a cache of the log, so it writes without a write-ahead log: the log
        // is the durability. Atomic flushes keep what a crash leaves on disk a consistent
        // prefix (every table and the positions as of one WriteBatch); the applier resumes
        // from those positions and re-applies the rest from the log. A clean close flushes.
        opts.set_atomic_flush(true);
        let cache = Cache::new_lru_cache(64 << 20);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_bloom_filter(10.0, false);
        let cfs = Table::ALL.map(|t| {
            let mut o = Options::default();
            o.set_write_buffer_size((memtable_mib / 4) << 20);
            o.set_block_based_table_factory(&table);
            o.set_compression_type(compression());
            ColumnFamilyDescriptor::new(t.name(), o)
        });
        let db = DB::open_cf_descriptors(&opts, path, cfs)?;
        let view = Self {
            db,
            partitions,
            positions: RwLock::new(vec![None; partitions as usize + 1]),
            generation: AtomicU64::new(0),
            write_opts: {
                let mut w = WriteOptions::default();
                w.disable_wal(true);
                w
            },
        };
        view.check_layout()?;
        view.load_positions()?;
        Ok(view)
    }

    /// Refuses a view written with another storage layout (one without a layout mark is
    /// layout 1, the first); marks a new, empty view with this build's layout.
    fn check_layout(&self) -> Result<(), ViewError> {
        let found = self.db.get(LAYOUT_KEY)?;
        if found.as_deref() == Some(LAYOUT) {
            return Ok(());
        }
        let empty = Table::ALL.iter().all(|t| {
            self.db
                .iterator_cf(self.cf(*t), rocksdb::IteratorMode::Start)
                .next()
                .is_none()
        });
        if found.is_some() || !empty {
            return Err(ViewError::Layout {
                found: found.map_or_else(|| "1".to_owned(), |f| String::from_utf8_lossy(&f).into()),
                expected: String::from_utf8_lossy(LAYOUT).into(),
            });
        }
        // With the write-ahead log (the tables write without it), so that the mark is
        // durable before any table record is.
        self.db.put(LAYOUT_KEY, LAYOUT)?;
        Ok(())
    }

    fn load_positions(&self) -> Result<(), ViewError> {
        let mut pos = vec![None; self.partitions as usize + 1];
        pos[0] = self.position(LogId::Catalog, 0)?;
        for p in 0..self.partitions {
            pos[p as usize + 1] = self.position(LogId::Events, p)?;
        }
        let mut cached = self.positions.write().expect("positions lock");
        *cached = pos;
        self.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    fn cf(&self, t: Table) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(t.name())
            .expect("every table's column family is opened")
    }

    fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        t: Table,
        key: &[u8],
    ) -> Result<Option<T>, ViewError> {
        get_json(&self.db, self.cf(t), t, key)
    }

    /// Number of events partitions.
    pub fn partitions(&self) -> i32 {
        self.partitions
    }

    /// The applied position of a log partition.
    pub fn position(
        &self,
        log: LogId,
        partition: i32,
    ) -> Result<Option<AppliedPosition>, ViewError> {
        self.get_json(Table::Offsets, &plan::offset_key(log, partition))
    }

    /// The cached applied position (no I/O).
    pub fn cached_position(&self, log: LogId, partition: i32) -> Option<AppliedPosition> {
        self.positions.read().expect("positions lock")[slot_of(log, partition)].clone()
    }

    /// A number that moves whenever [`View::version`] may have: a cache keyed by it needs
    /// no lock and no allocation to tell that the view did not change (no I/O).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current view version.
    pub fn version(&self) -> ViewVersion {
        let pos = self.positions.read().expect("positions lock");
        ViewVersion(
            pos.iter()
                .map(|p| p.as_ref().map_or(0, |p| p.seq))
                .collect(),
        )
    }

    /// Applies one event read at Kafka `offset`, in one WriteBatch with its position.
    /// Events at or below the applied seq are skipped.
    pub fn apply(&self, e: &RegistryEvent, offset: i64) -> Result<Applied, ViewError> {
        let encoded = crate::codec::encode_event(e);
        Ok(self.apply_batch(&[(e, encoded.as_slice(), offset)])?[0])
    }

    /// Applies events, each with the bytes of its log record and read at its Kafka offset,
    /// in log order and in one WriteBatch together with the positions they reach: the view
    /// moves from one applied event to a later one, never to a state in between. Each event
    /// is planned against the view as the earlier events of the batch leave it. Bundle and
    /// slot records are written once per batch, at their last value, so the view holds the
    /// bytes that applying the events one at a time would leave.
    pub fn apply_batch(
        &self,
        events: &[(&RegistryEvent, &[u8], i64)],
    ) -> Result<Vec<Applied>, ViewError> {
        let mut heads: HashMap<usize, Chain> = HashMap::new();
        let mut reached: HashMap<usize, AppliedPosition> = HashMap::new();
        let mut overlay = Overlay {
            view: self,
            bundles: HashMap::new(),
            slots: HashMap::new(),
        };
        let mut batch = WriteBatch::default();
        let mut out = Vec::with_capacity(events.len());
        for (e, encoded, offset) in events {
            let slot = slot_of(e.log, e.partition);
            let head = heads.entry(slot).or_insert_with(|| {
                self.cached_position(e.log, e.partition).map_or_else(
                    || Chain::new(e.log, e.partition),
                    |p| Chain {
                        log: e.log,
                        partition: e.partition,
                        last_seq: p.seq,
                        last_hash: p.hash,
                    },
                )
            });
            if let Some(skip) = chain_check(head, e)? {
                out.push(skip);
                continue;
            }
            for c in plan::plan_changes(e, encoded, &overlay)? {
                match c {
                    Change::Write(w) => batch.put_cf(self.cf(w.table), &w.key, &w.value),
                    Change::Bundle(key, rec) => {
                        overlay.bundles.insert(key, rec);
                    }
                    Change::Slot(key, rec) => {
                        overlay.slots.insert(key, *rec);
                    }
                }
            }
            head.last_seq = e.seq;
            head.last_hash = e.hash.clone();
            reached.insert(
                slot,
                AppliedPosition {
                    seq: e.seq,
                    hash: e.hash.clone(),
                    next_offset: offset + 1,
                    observed_at_utc: e.observed_at_utc,
                },
            );
            out.push(Applied::Applied);
        }
        if reached.is_empty() {
            return Ok(out);
        }
        // Each bundle and slot record the batch changed, as the batch leaves it: the bytes
        // the last of its per-event writes would have put.
        let Overlay { bundles, slots, .. } = overlay;
        let changed = (bundles.into_iter().map(|(k, r)| Change::Bundle(k, r)))
            .chain(slots.into_iter().map(|(k, r)| Change::Slot(k, Box::new(r))));
        for w in changed.map(Change::into_write) {
            batch.put_cf(self.cf(w.table), &w.key, &w.value);
        }
        // The last applied event of each log partition sets its position; a skipped
        // duplicate read at a later offset does not.
        for (slot, pos) in &reached {
            let head = &heads[slot];
            let w = plan::applied_position_write(head.log, head.partition, pos);
            batch.put_cf(self.cf(w.table), &w.key, &w.value);
        }
        self.db.write_opt(batch, &self.write_opts)?;
        let mut cached = self.positions.write().expect("positions lock");
        for (slot, pos) in reached {
            cached[slot] = Some(pos);
        }
        self.generation.fetch_add(1, Ordering::Release);
        Ok(out)
    }

    /// Reads the latest state: each read sees what is applied when it runs.
    pub fn reader(&self) -> Reader<'_> {
        Reader {
            view: self,
            snapshot: None,
        }
    }

    /// Runs `read` on one snapshot of the view, with the `view_version` of that snapshot:
    /// the records it reads are exactly those of that version, since each WriteBatch holds
    /// its records and the positions they reach. No write is waited for.
    pub fn consistent<T>(
        &self,
        read: impl FnOnce(&Reader<'_>, ViewVersion) -> T,
    ) -> Result<T, ViewError> {
        let reader = Reader {
            view: self,
            snapshot: Some(self.db.snapshot()),
        };
        let version = reader.version()?;
        Ok(read(&reader, version))
    }

    /// Writes planned writes atomically (also used to bootstrap from the `state` topic).
    pub fn write(&self, writes: &[Write]) -> Result<(), ViewError> {
        let mut batch = WriteBatch::default();
        for w in writes {
            batch.put_cf(self.cf(w.table), &w.key, &w.value);
        }
        self.db.write_opt(batch, &self.write_opts)?;
        Ok(())
    }

    /// Reloads cached positions after a bulk [`View::write`].
    pub fn refresh(&self) -> Result<(), ViewError> {
        self.load_positions()
    }

    /// SHA-256 over every table's keys and values, in order: equal digests mean equal views.
    pub fn content_digest(&self) -> Result<String, ViewError> {
        let mut h = Sha256::new();
        for t in Table::ALL {
            h.update([t as u8]);
            for item in self.db.iterator_cf(self.cf(t), IteratorMode::Start) {
                let (k, v) = item?;
                h.update((k.len() as u64).to_be_bytes());
                h.update(&k);
                h.update((v.len() as u64).to_be_bytes());
                h.update(&v);
            }
        }
        Ok(hex::encode(h.finalize()))
    }

    /// Where this view and `other` differ, table by table in key order: the number of keys
    /// that differ, and the first `limit` of them. Equal views (equal
    /// [`View::content_digest`]s) have none; for two replicas or a rebuild that disagree,
    /// it names the keys (`mpr view diff`).
    pub fn diff(&self, other: &View, limit: usize) -> Result<(u64, Vec<KeyDiff>), ViewError> {
        let (mut count, mut shown) = (0u64, Vec::new());
        for t in Table::ALL {
            let mut ours = self
                .db
                .iterator_cf(self.cf(t), IteratorMode::Start)
                .peekable();
            let mut theirs = other
                .db
                .iterator_cf(other.cf(t), IteratorMode::Start)
                .peekable();
            loop {
                let a = ours
                    .peek()
                    .map(|r| r.as_ref().map_err(Clone::clone))
                    .transpose()?;
                let b = theirs
                    .peek()
                    .map(|r| r.as_ref().map_err(Clone::clone))
                    .transpose()?;
                let d = match (a, b) {
                    (None, None) => break,
                    (Some((ka, va)), Some((kb, vb))) => match ka.cmp(kb) {
                        std::cmp::Ordering::Equal => {
                            let d = (va != vb).then(|| KeyDiff {
                                table: t,
                                key: ka.to_vec(),
                                ours: Some(va.to_vec()),
                                theirs: Some(vb.to_vec()),
                            });
                            ours.next();
                            theirs.next();
                            d
                        }
                        std::cmp::Ordering::Less => {
                            let d = KeyDiff::only_ours(t, ka, va);
                            ours.next();
                            Some(d)
                        }
                        std::cmp::Ordering::Greater => {
                            let d = KeyDiff::only_theirs(t, kb, vb);
                            theirs.next();
                            Some(d)
                        }
                    },
                    (Some((ka, va)), None) => {
                        let d = KeyDiff::only_ours(t, ka, va);
                        ours.next();
                        Some(d)
                    }
                    (None, Some((kb, vb))) => {
                        let d = KeyDiff::only_theirs(t, kb, vb);
                        theirs.next();
                        Some(d)
                    }
                };
                if let Some(d) = d {
                    count += 1;
                    if shown.len() < limit {
                        shown.push(d);
                    }
                }
            }
        }
        Ok((count, shown))
    }

    /// Flushes every table's memtable in one atomic flush: what is on disk then holds all
    /// applied events (end of a rebuild, footprint measurements; a clean close also flushes).
    pub fn flush(&self) -> Result<(), ViewError> {
        let cfs: Vec<_> = Table::ALL.iter().map(|t| self.cf(*t)).collect();
        self.db
            .flush_cfs_opt(&cfs, &rocksdb::FlushOptions::default())?;
        Ok(())
    }
}

/// One key where two views differ ([`View::diff`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDiff {
    /// Its table.
    pub table: Table,
    /// The key.
    pub key: Vec<u8>,
    /// Its value in the view `diff` was called on; `None` when absent there.
    pub ours: Option<Vec<u8>>,
    /// Its value in the other view; `None` when absent there.
    pub theirs: Option<Vec<u8>>,
}

impl KeyDiff {
    fn only_ours(table: Table, key: &[u8], value: &[u8]) -> Self {
        Self {
            table,
            key: key.to_vec(),
            ours: Some(value.to_vec()),
            theirs: None,
        }
    }

    fn only_theirs(table: Table, key: &[u8], value: &[u8]) -> Self {
        Self {
            table,
            key: key.to_vec(),
            ours: None,
            theirs: Some(value.to_vec()),
        }
    }
}

/// Reads of the view: the latest state ([`View::reader`]) or one snapshot of it
/// ([`View::consistent`]). The queries are in `query.rs`.
pub struct Reader<'a> {
    view: &'a View,
    snapshot: Option<rocksdb::Snapshot<'a>>,
}

impl std::fmt::Debug for Reader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("snapshot", &self.snapshot.is_some())
            .finish()
    }
}

impl Reader<'_> {
    fn opts(&self) -> ReadOptions {
        let mut o = ReadOptions::default();
        if let Some(s) = &self.snapshot {
            o.set_snapshot(s);
        }
        o
    }

    fn cf(&self, t: Table) -> &rocksdb::ColumnFamily {
        self.view.cf(t)
    }

    fn get_raw(&self, t: Table, key: &[u8]) -> Result<Option<DBPinnableSlice<'_>>, ViewError> {
        Ok(self
            .view
            .db
            .get_pinned_cf_opt(self.cf(t), key, &self.opts())?)
    }

    fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        t: Table,
        key: &[u8],
    ) -> Result<Option<T>, ViewError> {
        self.get_raw(t, key)?
            .map(|bytes| from_json(t, &bytes))
            .transpose()
    }

    fn iter(&self, t: Table, mode: IteratorMode<'_>) -> DBIteratorWithThreadMode<'_, DB> {
        self.view.db.iterator_cf_opt(self.cf(t), self.opts(), mode)
    }

    /// The applied position of a log partition, as this reader sees it.
    pub fn position(
        &self,
        log: LogId,
        partition: i32,
    ) -> Result<Option<AppliedPosition>, ViewError> {
        self.get_json(Table::Offsets, &plan::offset_key(log, partition))
    }

    /// The view version of what this reader sees (from the stored applied positions).
    pub fn version(&self) -> Result<ViewVersion, ViewError> {
        let catalog = std::iter::once((LogId::Catalog, 0));
        let events = (0..self.view.partitions).map(|p| (LogId::Events, p));
        catalog
            .chain(events)
            .map(|(log, p)| Ok(self.position(log, p)?.map_or(0, |pos| pos.seq)))
            .collect::<Result<Vec<u64>, ViewError>>()
            .map(ViewVersion)
    }
}

/// Reads and parses the record of table `t` (in column family `cf` of `db`) at `key`.
fn get_json<T: serde::de::DeserializeOwned>(
    db: &DB,
    cf: &rocksdb::ColumnFamily,
    t: Table,
    key: &[u8],
) -> Result<Option<T>, ViewError> {
    db.get_pinned_cf(cf, key)?
        .map(|bytes| from_json(t, &bytes))
        .transpose()
}

/// Parses a stored record of table `t`.
fn from_json<T: serde::de::DeserializeOwned>(t: Table, bytes: &[u8]) -> Result<T, ViewError> {
    serde_json::from_slice(bytes).map_err(|e| ViewError::Corrupt {
        table: t.name(),
        detail: e.to_string(),
    })
}

/// The view as a batch being applied leaves it: the bundle and slot records the batch has
/// changed so far, typed, over the stored ones.
struct Overlay<'a> {
    view: &'a View,
    bundles: HashMap<Vec<u8>, Box<BundleRecord>>,
    slots: HashMap<Vec<u8>, SlotRecord>,
}

impl StateRead for Overlay<'_> {
    type Error = ViewError;
    fn bundle(&self, id: &BundleId, v: &BundleVersion) -> Result<Option<BundleRecord>, ViewError> {
        match self.bundles.get(&plan::bundle_key(id, v)) {
            Some(r) => Ok(Some(BundleRecord::clone(r))),
            None => StateRead::bundle(self.view, id, v),
        }
    }
    fn slot(&self, id: &BundleId, scope: &ScopeRef) -> Result<Option<SlotRecord>, ViewError> {
        match self.slots.get(&plan::slot_key(id, scope)) {
            Some(r) => Ok(Some(r.clone())),
            None => StateRead::slot(self.view, id, scope),
        }
    }
    fn result(&self, command_id: &uuid::Uuid) -> Result<Option<CommandResult>, ViewError> {
        View::result(self.view, *command_id)
    }
}

impl StateRead for View {
    type Error = ViewError;
    fn bundle(&self, id: &BundleId, v: &BundleVersion) -> Result<Option<BundleRecord>, ViewError> {
        self.get_json(Table::Bundles, &plan::bundle_key(id, v))
    }
    fn slot(&self, id: &BundleId, scope: &ScopeRef) -> Result<Option<SlotRecord>, ViewError> {
        self.get_json(Table::Slots, &plan::slot_key(id, scope))
    }
    fn result(&self, command_id: &uuid::Uuid) -> Result<Option<CommandResult>, ViewError> {
        View::result(self, *command_id)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::domain::{Catalog, Decision, Grants, PartitionState};
    use crate::testkit;

    /// The events of `n` publishes of one family, decided in order on partition 0.
    fn publishes(n: i64) -> Vec<RegistryEvent> {
        let grants = Grants {
            enforce: false,
            ..Grants::default()
        };
        let mut state = PartitionState::new(0);
        let mut events = Vec::new();
        for i in 0..n {
            let input = testkit::input(testkit::publish("mf", "fam", &format!("1.0.{i}")), i);
            let Decision::Append(e) = state.decide(&Catalog::default(), &grants, &input) else {
                panic!("publish appends");
            };
            state.apply(&e).unwrap();
            events.push(e);
        }
        events
    }

    /// A view written with another storage layout, or before layouts were marked, is
    /// refused with a message that says how to recover; a new view is marked and reopens.
    #[test]
    fn a_view_of_another_layout_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v");
        {
            let view = View::open(&path, 1).unwrap();
            view.apply(&publishes(1)[0], 0).unwrap();
            view.flush().unwrap();
        }
        let reopened = View::open(&path, 1).unwrap();
        assert_eq!(reopened.version().0[1], 1);
        reopened.db.put(LAYOUT_KEY, b"1").unwrap();
        drop(reopened);
        let Err(err) = View::open(&path, 1) else {
            panic!("layout 1 is refused");
        };
        assert!(matches!(&err, ViewError::Layout { found, .. } if found == "1"));
        assert!(err.to_string().contains("mpr view rebuild"), "{err}");
        // A view from before layouts were marked holds records but no mark.
        {
            let db = rocksdb::DB::open_cf(&Options::default(), &path, Table::ALL.map(|t| t.name()))
                .unwrap();
            db.delete(LAYOUT_KEY).unwrap();
        }
        assert!(matches!(
            View::open(&path, 1),
            Err(ViewError::Layout { found, .. }) if found == "1"
        ));
    }

    /// `diff` names every key two views disagree on: one only in either view, and one in
    /// both with different values; equal views (equal digests) have none.
    #[test]
    fn diff_names_the_keys_two_views_disagree_on() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (
            View::open(&dir.path().join("a"), 1).unwrap(),
            View::open(&dir.path().join("b"), 1).unwrap(),
        );
        let events = publishes(3);
        for (i, e) in events.iter().enumerate() {
            a.apply(e, i as i64).unwrap();
            b.apply(e, i as i64).unwrap();
        }
        assert_eq!(a.content_digest().unwrap(), b.content_digest().unwrap());
        assert_eq!(a.diff(&b, 10).unwrap(), (0, Vec::new()));
        let w = |table, key: &[u8], value: &[u8]| Write {
            table,
            key: key.to_vec(),
            value: value.to_vec(),
        };
        a.write(&[
            w(Table::Catalog, b"only-a", b"1"),
            w(Table::Slots, b"both", b"a"),
        ])
        .unwrap();
        b.write(&[
            w(Table::Catalog, b"only-b", b"2"),
            w(Table::Slots, b"both", b"b"),
        ])
        .unwrap();
        let (n, shown) = a.diff(&b, 10).unwrap();
        assert_eq!(n, 3);
        let got: Vec<_> = shown
            .iter()
            .map(|d| {
                (
                    d.table,
                    d.key.as_slice(),
                    d.ours.as_deref(),
                    d.theirs.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (Table::Slots, &b"both"[..], Some(&b"a"[..]), Some(&b"b"[..])),
                (Table::Catalog, &b"only-a"[..], Some(&b"1"[..]), None),
                (Table::Catalog, &b"only-b"[..], None, Some(&b"2"[..])),
            ],
            "table by table in key order"
        );
        assert_eq!(
            a.diff(&b, 1).unwrap().0,
            3,
            "the count is whole when few are shown"
        );
        assert_eq!(a.diff(&b, 1).unwrap().1.len(), 1);
    }

    /// A filtered event listing reads at most `max_scanned` events per call: a filter that
    /// matches nothing answers empty pages that move the cursor on, and says where the end
    /// of the log is, instead of reading the whole table in one request.
    #[test]
    fn filtered_event_listings_scan_a_bounded_number() {
        let dir = tempfile::tempdir().unwrap();
        let view = View::open(dir.path(), 1).unwrap();
        for (i, e) in publishes(50).iter().enumerate() {
            view.apply(e, i as i64).unwrap();
        }
        let mut cursor: Option<String> = None;
        let mut calls = 0;
        loop {
            let page = view
                .events(None, cursor.as_deref(), 10, 20, |_| false)
                .unwrap();
            calls += 1;
            assert!(page.items.is_empty());
            assert!(page.next_cursor.is_some(), "the cursor moves on");
            cursor = page.next_cursor;
            if page.at_end == Some(true) {
                break;
            }
            assert_eq!(page.at_end, Some(false));
        }
        assert_eq!(calls, 3, "50 events, 20 per call");
        let all = view.events(None, None, 100, 20, |_| true).unwrap();
        assert_eq!(
            (all.items.len(), all.at_end),
            (20, Some(false)),
            "matches count against the bound too"
        );
    }

    /// A reader inside `consistent` reads one snapshot: its records match its version
    /// while batches land, and a write after the snapshot stays invisible to it.
    #[test]
    fn consistent_reads_match_their_version() {
        let events = publishes(3000);
        let dir = tempfile::tempdir().unwrap();
        let view = Arc::new(View::open(dir.path(), 1).unwrap());
        let done = Arc::new(AtomicBool::new(false));
        let (first, rest) = events.split_at(1);
        view.apply(&first[0], 0).unwrap();
        let rest = rest.to_vec();
        // A write landing between the snapshot and the reads is not seen.
        let (seen, later) = view
            .consistent(|r, v| {
                view.apply(&rest[0], 1).unwrap();
                (v, r.position(LogId::Events, 0).unwrap().map(|p| p.seq))
            })
            .unwrap();
        assert_eq!((seen.0[1], later), (1, Some(1)));
        assert_eq!(view.version().0[1], 2);
        let writer = {
            let (view, done) = (view.clone(), done.clone());
            std::thread::spawn(move || {
                let encoded: Vec<_> = rest.iter().map(crate::codec::encode_event).collect();
                let all: Vec<_> = rest
                    .iter()
                    .zip(&encoded)
                    .zip(1..)
                    .map(|((e, b), o)| (e, b.as_slice(), o))
                    .collect();
                for chunk in all.chunks(3) {
                    view.apply_batch(chunk).unwrap();
                }
                done.store(true, std::sync::atomic::Ordering::SeqCst);
            })
        };
        let mut reads = 0u64;
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            let (v, stored, last, next) = view
                .consistent(|r, v| {
                    let fam: BundleId = "fam".parse().unwrap();
                    let at = |i: u64| {
                        let ver: BundleVersion = format!("1.0.{i}").parse().unwrap();
                        r.bundle(&fam, &ver).unwrap().is_some()
                    };
                    let seq = v.0[1];
                    (
                        v,
                        r.position(LogId::Events, 0).unwrap(),
                        at(seq - 1),
                        at(seq),
                    )
                })
                .unwrap();
            assert_eq!(
                v.0[1],
                stored.map_or(0, |p| p.seq),
                "positions of another batch"
            );
            assert!(last && !next, "records of another batch than the version's");
            reads += 1;
        }
        writer.join().unwrap();
        assert!(
            reads > 100,
            "the reader ran alongside the writer ({reads} reads)"
        );
    }
}
