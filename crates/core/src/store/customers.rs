//! A tenant's customers: a concurrent map that starts small and is re-sharded once, when the
//! tenant grows, so that a tenant with a handful of customers costs a few hundred bytes rather
//! than the 64 KiB of shards a large one needs for ingest contention (issue 15, D5).

use super::Map;
use crate::scoring::CustomerHistory;
use std::sync::OnceLock;

/// Shards of a small tenant's map: 512 bytes (each shard is a cache-padded lock).
const SMALL_SHARDS: usize = 4;

/// Shards once the tenant has grown: a ranking pass holds one shard's read lock while it
/// evaluates that shard, and ingest blocks on it, so more shards mean shorter waits for writers
/// (about 2k customers, ~1 ms of evaluation, per shard at 1M). 64 KiB per tenant; 128 shards gave
/// ack p99 23 ms against 9 ms at 100k events/s (BENCHMARKS.md).
const GROWN_SHARDS: usize = 512;

/// Customers at which the small map is re-sharded into the grown one (256 per small shard).
pub(super) const GROW_AT_CUSTOMERS: usize = 1_024;

/// The customer histories of one tenant, keyed by customer id.
pub(super) struct CustomerMap {
    /// Set once, by [`CustomerMap::grow`]; from then on every access goes here without a lock.
    grown: OnceLock<Map<Box<CustomerHistory>>>,
    /// The small map until the tenant grows (`None` after). Readers hold the read lock for the
    /// length of one access (recursively: a nested access never waits for a queued grower);
    /// growing takes the write lock, so no access sees a half-moved map.
    small: parking_lot::RwLock<Option<Map<Box<CustomerHistory>>>>,
}

impl Default for CustomerMap {
    fn default() -> Self {
        Self {
            grown: OnceLock::new(),
            small: parking_lot::RwLock::new(Some(Map::with_hasher_and_shard_amount(
                ahash::RandomState::new(),
                SMALL_SHARDS,
            ))),
        }
    }
}

impl CustomerMap {
    /// Runs `access` on the map in use. Guards taken from the map must not outlive the call.
    pub(super) fn with<R>(&self, access: impl FnOnce(&Map<Box<CustomerHistory>>) -> R) -> R {
        if let Some(grown) = self.grown.get() {
            return access(grown);
        }
        let small = self.small.read_recursive();
        match small.as_ref() {
            Some(map) => access(map),
            None => {
                drop(small);
                access(self.grown.get().expect("set before the small map is taken"))
            }
        }
    }

    /// Whether the map has been re-sharded for a large tenant.
    pub(super) fn is_grown(&self) -> bool {
        self.grown.get().is_some()
    }

    /// Moves every customer into the grown map (once; later calls do nothing). Call it with no
    /// guard of this map held: it waits for the accesses in progress to finish.
    pub(super) fn grow(&self) {
        if self.is_grown() {
            return;
        }
        let mut small = self.small.write();
        let Some(map) = small.take() else {
            return;
        };
        let grown = Map::with_capacity_and_hasher_and_shard_amount(
            map.len(),
            ahash::RandomState::new(),
            GROWN_SHARDS,
        );
        for (customer_id, history) in map {
            grown.insert(customer_id, history);
        }
        // Set before the write lock is released: a reader finding no small map finds this one.
        if self.grown.set(grown).is_err() {
            unreachable!("only the holder of the write lock that took the small map sets it");
        }
    }
}
