//! The catalog as every processor (and the view applier) of one process sees it: the
//! state of the single-partition `catalog` log, with the next offset to read. The view
//! applier feeds it with every catalog event it reads; a processor catching up a
//! partition applies the log from `next_offset` (and hands back its own uncommitted catalog
//! events from anywhere in it); a processor applies its own catalog
//! events before they land (and resets it when another writer wins).

use std::sync::{Arc, RwLock};

use super::LogError;
use crate::domain::state::Applied;
use crate::domain::{CatalogState, RegistryEvent};

/// The catalog log's state, with the next `catalog` offset to read.
#[derive(Debug)]
pub struct SharedCatalog {
    /// The catalog log's state.
    pub state: CatalogState,
    /// Next offset of the `catalog` topic: every record below it is reflected in `state`.
    pub next_offset: i64,
}

/// Shared handle on the catalog.
pub type CatalogHandle = Arc<RwLock<SharedCatalog>>;

/// A new, empty catalog handle.
pub fn new_catalog() -> CatalogHandle {
    Arc::new(RwLock::new(SharedCatalog {
        state: CatalogState::new(),
        next_offset: 0,
    }))
}

/// Moves `next_offset` past an untrusted record at `offset`: it is never applied, so the
/// state reflects everything below it as much as before.
pub fn skip_untrusted(cat: &CatalogHandle, offset: i64) {
    let mut c = cat.write().expect("catalog lock");
    if offset == c.next_offset {
        c.next_offset = offset + 1;
    }
}

/// Applies catalog event `e`, read at `offset`, to the shared catalog. True when it changed
/// the catalog (false for one already applied or not chaining).
///
/// `next_offset` moves past `offset` only when the state now reflects the event (applied,
/// or its seq already applied). An event that does not chain onto the state, as after a
/// reset that a concurrent reader has not seen, leaves `next_offset` alone, so that a
/// catch-up starting at `next_offset` never starts beyond an event it never applied.
pub fn apply_catalog_event(
    cat: &CatalogHandle,
    e: &RegistryEvent,
    offset: i64,
) -> Result<bool, LogError> {
    let mut c = cat.write().expect("catalog lock");
    let applied = c.state.apply(e).map_err(|g| LogError::Gap(g.to_string()))?;
    // A loser's fork at a seq the state holds is behind it; one beyond the state (after a
    // reset) is not.
    let reflected = applied != Applied::Forked || e.seq <= c.state.chain.last_seq;
    if reflected && offset == c.next_offset {
        c.next_offset = offset + 1;
    }
    Ok(applied == Applied::Applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Decision, Grants};
    use crate::testkit;

    /// Catalog events of one chain, seq 1..=n.
    fn chain_of(n: usize) -> Vec<RegistryEvent> {
        let grants = Grants::default();
        let mut state = CatalogState::new();
        (0..n)
            .map(|i| {
                let env = format!("env{i}");
                let input = testkit::input(testkit::set_catalog("admin", &env), i as i64);
                let Decision::Append(e) = state.decide(&grants, &input) else {
                    panic!("a catalog change appends");
                };
                state.apply(&e).unwrap();
                e
            })
            .collect()
    }

    /// A reset while a reader is mid-log: the reader's later events do not chain onto the
    /// empty state, and must not move `next_offset` past the events the state lacks.
    #[test]
    fn a_reset_never_lets_next_offset_skip_unapplied_events() {
        let cat = new_catalog();
        let events = chain_of(4);
        for (i, e) in events.iter().take(2).enumerate() {
            assert!(apply_catalog_event(&cat, e, i as i64).unwrap());
        }
        assert_eq!(cat.read().unwrap().next_offset, 2);
        // Reset (another writer won), then the reader goes on at offset 2.
        {
            let mut c = cat.write().unwrap();
            c.state = CatalogState::new();
            c.next_offset = 0;
        }
        assert!(!apply_catalog_event(&cat, &events[2], 2).unwrap());
        assert_eq!(
            cat.read().unwrap().next_offset,
            0,
            "a catch-up must start at 0"
        );
        // The catch-up applies everything from 0, in order.
        for (i, e) in events.iter().enumerate() {
            apply_catalog_event(&cat, e, i as i64).unwrap();
        }
        let c = cat.read().unwrap();
        assert_eq!((c.next_offset, c.state.chain.last_seq), (4, 4));
    }
}
