//! Catch-up of one `commands` partition before its owner decides again (blocking: run it
//! on a blocking thread). It brings the state store's records of the partition up to the
//! end of its `events` log, starting from the position the store kept, not from offset 0:
//!
//! 1. The stored position is checked against the log. Events this processor appended but
//!    that did not land where expected (a crash before delivery, or another writer won)
//!    are undone from the outbox, newest first, until the stored head is the log's record
//!    at that offset. A store that still does not match (another log, a gap) is emptied
//!    and the partition is replayed from offset 0.
//! 2. Events after the position are applied.
//! 3. The `catalog` log is read from where the shared catalog stands.
//!
//! Events whose command is at or after the committed offset are handed back for their
//! outputs to be produced again: the store's outbox holds those it applied earlier.

use std::collections::BTreeMap;

use tracing::{info, warn};

use super::catalog::{CatalogHandle, apply_catalog_event, skip_untrusted};
use super::driver::{Loaded, NoSnapshot};
use super::reader::{Record, read_to_end};
use super::verify::trusted_event;
use super::{LogError, Topics};
use crate::config::KafkaConfig;
use crate::domain::RegistryEvent;
use crate::domain::state::{Applied, infallible};
use crate::domain::trust::KeySet;
use crate::view::plan::{self, Write};
use crate::view::store::{Outbox, Position, StateStore};

/// Reads a log partition from an offset to the high watermark seen at the start, calling
/// `f` per record; returns that watermark. The port through which catch-up reads.
pub trait LogRead {
    /// Reads `topic`/`partition` from `from`.
    fn read_to_end(
        &mut self,
        topic: &str,
        partition: i32,
        from: i64,
        f: &mut dyn FnMut(Record) -> Result<(), LogError>,
    ) -> Result<i64, LogError>;
}

/// The Kafka cluster of `cfg`.
#[derive(Debug)]
pub struct KafkaLog<'a>(pub &'a KafkaConfig);

impl LogRead for KafkaLog<'_> {
    fn read_to_end(
        &mut self,
        topic: &str,
        partition: i32,
        from: i64,
        f: &mut dyn FnMut(Record) -> Result<(), LogError>,
    ) -> Result<i64, LogError> {
        read_to_end(self.0, topic, partition, from, f)
    }
}

/// Catches partition `p` up; `committed` is its committed `commands` offset.
pub fn catch_up(
    log: &mut dyn LogRead,
    topics: &Topics,
    store: &StateStore,
    catalog: &CatalogHandle,
    keys: &KeySet,
    p: i32,
    committed: i64,
) -> Result<Loaded, LogError> {
    let mut a = Applier {
        store,
        keys,
        committed,
        applied: 0,
        rederive: Vec::new(),
    };
    let pos = match from_stored(log, topics, &mut a, p)? {
        Stored::CaughtUp(pos) => pos,
        stored => {
            if stored == Stored::Mismatch {
                warn!(
                    partition = p,
                    "state store does not match the events log; replaying the partition from offset 0"
                );
            }
            store.clear(p)?;
            a.applied = 0;
            a.rederive.clear();
            let mut pos = Position::new(p);
            log.read_to_end(&topics.events, p, 0, &mut |r| a.apply_record(&mut pos, &r))?;
            pos
        }
    };
    store.set_position(p, &pos)?;
    // The whole catalog log (a small one: platform commands only), so that this
    // partition's uncommitted catalog events are handed back for their outputs wherever the
    // shared cursor stands: another partition's catch-up or the view applier may have
    // applied them to the shared catalog already.
    let from = catalog.read().expect("catalog lock").next_offset;
    let catalog_end = log.read_to_end(&topics.catalog, 0, 0, &mut |r| {
        let Ok(e) = trusted_event(keys, &r) else {
            if r.offset >= from {
                skip_untrusted(catalog, r.offset);
            }
            return Ok(());
        };
        if r.offset >= from {
            apply_catalog_event(catalog, &e, r.offset)?;
        }
        let on_chain = || {
            catalog
                .read()
                .expect("catalog lock")
                .state
                .commands
                .get(&e.command_id)
                .is_some_and(|res| res.event_id == e.event_id && res.seq == e.seq)
        };
        if e.source.partition == p && e.source.offset >= committed && on_chain() {
            let encoded = r.payload.as_deref().unwrap_or_default();
            let w = infallible(plan::plan(&e, encoded, &NoSnapshot));
            a.rederive.push((e, w, r.offset));
        }
        Ok(())
    })?;
    store.prune(p, committed)?;
    Ok(Loaded {
        pos,
        committed,
        rederive: a.rederive,
        catalog_end,
        applied: a.applied,
    })
}

/// Applies events read from the log to the store, counting them and keeping those whose
/// command is not committed for their outputs to be produced again.
struct Applier<'a> {
    store: &'a StateStore,
    /// Registry keys: records they did not sign are skipped.
    keys: &'a KeySet,
    committed: i64,
    applied: u64,
    rederive: Vec<(RegistryEvent, Vec<Write>, i64)>,
}

impl Applier<'_> {
    /// Applies the event in `r` after `pos` if the registry signed it; otherwise only
    /// moves past it.
    fn apply_record(&mut self, pos: &mut Position, r: &Record) -> Result<(), LogError> {
        match trusted_event(self.keys, r) {
            Ok(e) => self.apply(pos, &e, r.payload.as_deref().unwrap_or_default(), r.offset),
            Err(_) => {
                pos.events_next = pos.events_next.max(r.offset + 1);
                Ok(())
            }
        }
    }

    /// Applies `e`, read at `offset`, after `pos`.
    fn apply(
        &mut self,
        pos: &mut Position,
        e: &RegistryEvent,
        encoded: &[u8],
        offset: i64,
    ) -> Result<(), LogError> {
        let pending = e.source.offset >= self.committed;
        let outbox = if pending {
            Outbox::Landed
        } else {
            Outbox::None
        };
        let (applied, w) = self
            .store
            .partition(pos.chain.partition)
            .apply(pos, e, encoded, offset, outbox)?;
        if applied == Applied::Applied {
            self.applied += 1;
            if pending {
                self.rederive.push((e.clone(), w, offset));
            }
        }
        // A skipped record (a loser's fork, a duplicate) is behind us too: the next append
        // is expected after it.
        pos.events_next = pos.events_next.max(offset + 1);
        Ok(())
    }
}

/// What the stored position of a partition turned out to be worth.
#[derive(Debug, PartialEq)]
enum Stored {
    /// Nothing stored.
    Empty,
    /// The stored head is not the log's record at its offset, even after undoing.
    Mismatch,
    /// Caught up from the stored position.
    CaughtUp(Position),
}

/// Undoes, newest first, the stored events whose records are not in `seen` at their
/// offsets, until the stored head is. False when the outbox runs out first.
fn undo_unlanded(
    store: &StateStore,
    p: i32,
    pos: &mut Position,
    seen: &BTreeMap<i64, (RegistryEvent, Vec<u8>)>,
) -> Result<bool, LogError> {
    let mut undone = 0;
    while pos.chain.last_seq > 0 {
        let head = seen.get(&pos.head_offset);
        if head.is_some_and(|(e, _)| e.seq == pos.chain.last_seq && e.hash == pos.chain.last_hash) {
            break;
        }
        match store.undo_last(p)? {
            Some(before) => {
                *pos = before;
                undone += 1;
            }
            None => return Ok(false),
        }
    }
    if undone > 0 {
        info!(
            partition = p,
            undone, "undid appended events that did not land"
        );
    }
    Ok(true)
}

/// Catches up from the stored position. Events it rolled back are re-derived from its
/// outbox (those applied earlier whose commands are not committed) before those it reads.
fn from_stored(
    log: &mut dyn LogRead,
    topics: &Topics,
    a: &mut Applier<'_>,
    p: i32,
) -> Result<Stored, LogError> {
    let store = a.store;
    let mut pos = store.position(p)?;
    let outbox = store.outbox(p)?;
    if pos.chain.last_seq == 0 && outbox.is_empty() {
        return Ok(Stored::Empty);
    }
    // Read from the oldest offset the store must check: its head and every event it
    // appended that may not have landed.
    let check_from = outbox
        .iter()
        .flat_map(|o| [o.events_offset, o.before.head_offset])
        .chain([pos.head_offset])
        .min()
        .expect("non-empty")
        .max(0);
    let stored_next = pos.events_next;
    // Records below the stored next offset, kept until the store is checked against them.
    let mut seen: BTreeMap<i64, (RegistryEvent, Vec<u8>)> = BTreeMap::new();
    let mut checked: Option<bool> = None;
    // Checks the store against `seen`, then applies what another writer put at offsets
    // the undone events had claimed.
    let check = |pos: &mut Position,
                 seen: &BTreeMap<i64, (RegistryEvent, Vec<u8>)>,
                 a: &mut Applier<'_>|
     -> Result<bool, LogError> {
        if !undo_unlanded(store, p, pos, seen)? {
            return Ok(false);
        }
        for (off, (e, bytes)) in seen.range(pos.events_next..) {
            a.apply(pos, e, bytes, *off)?;
        }
        Ok(true)
    };
    log.read_to_end(&topics.events, p, check_from, &mut |r| {
        if checked == Some(false) {
            return Ok(());
        }
        if r.offset < stored_next {
            // An untrusted record never counts as landed: what the store expected there
            // is undone.
            if let Ok(e) = trusted_event(a.keys, &r) {
                seen.insert(r.offset, (e, r.payload.unwrap_or_default()));
            }
            return Ok(());
        }
        if checked.is_none() {
            checked = Some(check(&mut pos, &seen, a)?);
            if checked == Some(false) {
                return Ok(());
            }
        }
        a.apply_record(&mut pos, &r)
    })?;
    let trusted = match checked {
        Some(t) => t,
        None => check(&mut pos, &seen, a)?,
    };
    if !trusted {
        return Ok(Stored::Mismatch);
    }
    let read = std::mem::take(&mut a.rederive);
    let mut earlier: Vec<(RegistryEvent, Vec<Write>, i64)> = store
        .outbox(p)?
        .into_iter()
        .filter(|o| {
            o.event.source.offset >= a.committed
                && o.events_offset < stored_next.min(pos.events_next)
                && !read.iter().any(|(r, _, _)| r.seq == o.event.seq)
        })
        .map(|o| (o.event, o.writes, o.events_offset))
        .collect();
    earlier.extend(read);
    a.rederive = earlier;
    Ok(Stored::CaughtUp(pos))
}

#[cfg(test)]
mod tests {
    //! Catch-up against an in-memory log and a real RocksDB state store.

    use std::collections::HashMap;

    use super::*;
    use crate::codec;
    use crate::domain::StateRead;
    use crate::domain::{Catalog, Decision, Grants, PartitionState};
    use crate::log::catalog::new_catalog;
    use crate::testkit;
    use crate::view::store::StoreIdentity;

    #[derive(Default)]
    struct MemLog {
        logs: HashMap<(String, i32), Vec<Record>>,
        /// Every read of `events`: its start offset.
        reads: Vec<i64>,
    }

    impl MemLog {
        fn append(&mut self, topic: &str, e: &RegistryEvent) {
            let log = self
                .logs
                .entry((topic.to_owned(), e.partition))
                .or_default();
            log.push(Record {
                topic: topic.to_owned(),
                partition: e.partition,
                offset: log.len() as i64,
                key: None,
                payload: Some(codec::encode_event(e)),
                timestamp_ms: None,
                headers: Vec::new(),
            });
        }
    }

    impl LogRead for MemLog {
        fn read_to_end(
            &mut self,
            topic: &str,
            partition: i32,
            from: i64,
            f: &mut dyn FnMut(Record) -> Result<(), LogError>,
        ) -> Result<i64, LogError> {
            if topic.ends_with("events") {
                self.reads.push(from);
            }
            let log = self
                .logs
                .get(&(topic.to_owned(), partition))
                .cloned()
                .unwrap_or_default();
            for r in log.iter().filter(|r| r.offset >= from) {
                f(r.clone())?;
            }
            Ok(log.len() as i64)
        }
    }

    /// Publishes of `fam` 1.0.`from`.. decided in order on `state`.
    fn publish(
        state: &mut PartitionState,
        fam: &str,
        versions: std::ops::Range<i64>,
    ) -> Vec<RegistryEvent> {
        versions
            .map(|i| {
                let input = testkit::input(testkit::publish("mf", fam, &format!("1.0.{i}")), i);
                let Decision::Append(mut e) =
                    state.decide(&Catalog::default(), &Grants::default(), &input)
                else {
                    panic!("publish appends");
                };
                e.sign(&testkit::registry_signer());
                state.apply(&e).unwrap();
                e
            })
            .collect()
    }

    struct H {
        log: MemLog,
        topics: Topics,
        store: StateStore,
        catalog: CatalogHandle,
        _dir: tempfile::TempDir,
    }

    fn harness() -> H {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("s"), 8, &StoreIdentity::scratch()).unwrap();
        H {
            log: MemLog::default(),
            topics: Topics::new("mpr."),
            store,
            catalog: new_catalog(),
            _dir: dir,
        }
    }

    impl H {
        fn catch_up(&mut self, committed: i64) -> Loaded {
            catch_up(
                &mut self.log,
                &self.topics,
                &self.store,
                &self.catalog,
                &testkit::registry_keys(),
                0,
                committed,
            )
            .unwrap()
        }
        fn has(&self, v: &str) -> bool {
            let id = "fam".parse().unwrap();
            self.store
                .partition(0)
                .bundle(&id, &v.parse().unwrap())
                .unwrap()
                .is_some()
        }
        /// Applies `e` as the driver does for an event it appends, expected at `at`.
        fn decided(&self, pos: &mut Position, e: &RegistryEvent) {
            let at = pos.events_next;
            self.store
                .partition(0)
                .apply(pos, e, &codec::encode_event(e), at, Outbox::Undoable)
                .unwrap();
        }
    }

    #[test]
    fn a_new_owner_resumes_from_the_stored_position() {
        let mut h = harness();
        let mut state = PartitionState::new(0);
        for e in publish(&mut state, "fam", 0..5) {
            h.log.append(&h.topics.events, &e);
        }
        let first = h.catch_up(5);
        assert_eq!(h.log.reads, vec![0]);
        assert_eq!(first.pos.chain.last_seq, 5);
        for e in publish(&mut state, "fam", 5..7) {
            h.log.append(&h.topics.events, &e);
        }
        let second = h.catch_up(5);
        assert_eq!(
            h.log.reads,
            vec![0, 4],
            "the second catch-up reads from its head"
        );
        assert_eq!((second.pos.chain.last_seq, second.pos.events_next), (7, 7));
        // Commands 5 and 6 are not committed: their outputs are produced again.
        let re: Vec<i64> = second
            .rederive
            .iter()
            .map(|(e, _, _)| e.source.offset)
            .collect();
        assert_eq!(re, vec![5, 6]);
        assert!(h.has("1.0.6"));
    }

    #[test]
    fn an_appended_event_that_never_landed_is_undone() {
        let mut h = harness();
        let mut state = PartitionState::new(0);
        for e in publish(&mut state, "fam", 0..3) {
            h.log.append(&h.topics.events, &e);
        }
        let mut pos = h.catch_up(3).pos;
        // Decided and applied here, then the process died before it landed.
        let lost = publish(&mut state, "fam", 3..4);
        h.decided(&mut pos, &lost[0]);
        assert!(h.has("1.0.3"));
        let after = h.catch_up(3);
        assert_eq!((after.pos.chain.last_seq, after.pos.events_next), (3, 3));
        assert!(!h.has("1.0.3"), "the undone event's record is gone");
        assert!(h.store.outbox(0).unwrap().is_empty());
        assert!(after.rederive.is_empty());
    }

    #[test]
    fn another_writers_event_wins_and_ours_is_skipped_as_a_fork() {
        let mut h = harness();
        let mut state = PartitionState::new(0);
        for e in publish(&mut state, "fam", 0..3) {
            h.log.append(&h.topics.events, &e);
        }
        let mut pos = h.catch_up(3).pos;
        let mut theirs = state.clone();
        let ours = publish(&mut state, "fam", 3..5);
        let other = publish(&mut theirs, "fam", 10..11);
        for e in &ours {
            h.decided(&mut pos, e);
        }
        // The other writer's seq 4 landed first, then ours (4 and 5).
        h.log.append(&h.topics.events, &other[0]);
        for e in &ours {
            h.log.append(&h.topics.events, e);
        }
        let after = h.catch_up(3);
        assert_eq!(after.pos.chain.last_hash, other[0].hash);
        assert_eq!(after.pos.chain.last_seq, 4);
        assert_eq!(
            after.pos.events_next, 6,
            "the next append is expected after the fork"
        );
        assert!(h.has("1.0.10") && !h.has("1.0.3") && !h.has("1.0.4"));
        let re: Vec<u64> = after.rederive.iter().map(|(e, _, _)| e.seq).collect();
        assert_eq!(re, vec![4], "only the winner's event gets outputs");
    }

    #[test]
    fn a_store_that_does_not_match_the_log_is_replayed_from_zero() {
        let mut h = harness();
        let mut state = PartitionState::new(0);
        for e in publish(&mut state, "fam", 0..3) {
            h.log.append(&h.topics.events, &e);
        }
        h.catch_up(3);
        // The log is replaced by another history (a recreated topic).
        h.log = MemLog::default();
        let mut other = PartitionState::new(0);
        for e in publish(&mut other, "fam", 20..24) {
            h.log.append(&h.topics.events, &e);
        }
        let after = h.catch_up(0);
        // The new log's reads: the stored head (offset 2) does not match, then a replay.
        assert_eq!(h.log.reads, vec![2, 0]);
        assert_eq!(after.pos.chain.last_hash, other.chain.last_hash);
        assert!(!h.has("1.0.0") && h.has("1.0.23"));
    }

    /// A catalog event of this partition's commands that is not committed is handed back
    /// for its outputs even when another reader (the view applier, another partition's
    /// catch-up) applied it to the shared catalog first.
    #[test]
    fn an_uncommitted_catalog_event_applied_elsewhere_is_handed_back() {
        let mut h = harness();
        let input = testkit::input(testkit::set_catalog("admin", "prod"), 5);
        let Decision::Append(mut e) =
            crate::domain::CatalogState::new().decide(&Grants::default(), &input)
        else {
            panic!("a catalog change appends");
        };
        e.sign(&testkit::registry_signer());
        h.log.append(&h.topics.catalog.clone(), &e);
        crate::log::catalog::apply_catalog_event(&h.catalog, &e, 0).unwrap();
        let handed_back = |l: &Loaded| l.rederive.iter().any(|(r, _, _)| r.event_id == e.event_id);
        assert!(
            handed_back(&h.catch_up(3)),
            "command offset 5 is not committed at 3"
        );
        assert!(!handed_back(&h.catch_up(6)), "committed past it");
    }
}
