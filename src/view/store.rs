//! The processor's state store: the records `decide` reads (bundle versions, scope slots,
//! command results) for the partitions this processor owns, kept in RocksDB instead of
//! memory so that the processor's footprint does not grow with the registry. It is built
//! only from the `events` log, with the same planner as the view, so its records are the
//! view's records byte for byte.
//!
//! It is a scratch store, not a source of truth: it is emptied when it opens and each
//! partition's range is emptied before the partition is (re)loaded from the log. That is
//! why it writes without a write-ahead log. Keys are `partition(4, big-endian)` followed
//! by the view table's key.

use std::path::Path;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, Options, WriteBatch, WriteOptions,
};
use uuid::Uuid;

use super::ViewError;
use super::plan::{self, Table, Write};
use crate::domain::event::{CommandResult, ScopeRef};
use crate::domain::state::{Applied, BundleRecord, Chain, SlotRecord, chain_check};
use crate::domain::{BundleId, BundleVersion, RegistryEvent, StateRead};

/// The view tables the processor keeps.
const TABLES: [Table; 3] = [Table::Bundles, Table::Slots, Table::Results];

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

impl StateStore {
    /// Creates an empty store at `path`, discarding whatever a previous run left there.
    /// `cache_mib` bounds its block cache; its memtables stay under the same amount.
    pub fn open_empty(path: &Path, cache_mib: usize) -> Result<Self, ViewError> {
        if path.exists() {
            DB::destroy(&Options::default(), path)?;
        }
        std::fs::create_dir_all(path).map_err(|e| ViewError::Corrupt {
            table: "state store",
            detail: format!("cannot create {}: {e}", path.display()),
        })?;
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
        let cfs = TABLES.map(|t| {
            let mut o = Options::default();
            o.set_write_buffer_size(budget / 4);
            o.set_block_based_table_factory(&table);
            ColumnFamilyDescriptor::new(t.name(), o)
        });
        let db = DB::open_cf_descriptors(&opts, path, cfs)?;
        let mut write = WriteOptions::default();
        write.disable_wal(true);
        Ok(Self { db, write })
    }

    fn cf(&self, t: Table) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(t.name()).expect("column family exists")
    }

    /// Empties partition `p`.
    pub fn clear(&self, p: i32) -> Result<(), ViewError> {
        let (from, to) = (p.to_be_bytes(), (p + 1).to_be_bytes());
        let mut b = WriteBatch::default();
        for t in TABLES {
            b.delete_range_cf(self.cf(t), from, to);
        }
        self.db.write_opt(b, &self.write)?;
        Ok(())
    }

    /// Partition `p` of the store.
    pub fn partition(&self, p: i32) -> PartitionStore<'_> {
        PartitionStore { store: self, p }
    }

    fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        t: Table,
        key: &[u8],
    ) -> Result<Option<T>, ViewError> {
        super::get_json(&self.db, self.cf(t), t, key)
    }
}

/// One partition of a [`StateStore`]: reads for `decide` and the planner.
#[derive(Clone, Copy)]
pub struct PartitionStore<'a> {
    store: &'a StateStore,
    p: i32,
}

impl PartitionStore<'_> {
    /// Replays `e` by the log-order rule of [`chain_check`]: when it is the next event of
    /// `chain`, writes what it changes and advances `chain`. Returns the planned view writes
    /// of an applied event (for its derived outputs).
    pub fn apply(
        &self,
        chain: &mut Chain,
        e: &RegistryEvent,
        encoded: &[u8],
    ) -> Result<(Applied, Vec<Write>), ViewError> {
        if let Some(skip) = chain_check(chain, e)? {
            return Ok((skip, Vec::new()));
        }
        let writes = plan::plan(e, encoded, self)?;
        let mut b = WriteBatch::default();
        for w in writes.iter().filter(|w| TABLES.contains(&w.table)) {
            b.put_cf(self.store.cf(w.table), prefixed(self.p, &w.key), &w.value);
        }
        self.store.db.write_opt(b, &self.store.write)?;
        chain.advance(e);
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
