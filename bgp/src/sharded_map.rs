//! A hash map split into a fixed number of independently growing shards, for tables of a
//! million prefixes.
//!
//! A single open-addressing table grows by allocating a table twice its size and moving
//! every entry: for a moment both exist, so the process's peak memory is 1.5× the table's
//! (at a million IPv4 routes, 66 MB for the agent's route table's 44 MB). With 16 shards, each
//! shard grows on its own and only one sixteenth of the data is ever held twice. Lookups
//! hash once more to pick the shard (a few nanoseconds) and the steady-state size is the
//! same as one table's. The RIB ([`crate::rib`]) and the agent's kernel route table use it.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasher, Hash};

/// Number of shards: a power of two, small enough that an empty map stays small.
const SHARDS: usize = 16;

/// A `HashMap` of [`SHARDS`] shards (see the module docs).
#[derive(Debug, Clone)]
pub struct ShardedMap<K, V, S> {
    shards: Box<[HashMap<K, V, S>]>,
    hasher: S,
}

impl<K, V, S: BuildHasher + Clone + Default> Default for ShardedMap<K, V, S> {
    fn default() -> Self {
        let hasher = S::default();
        Self {
            shards: (0..SHARDS)
                .map(|_| HashMap::with_hasher(hasher.clone()))
                .collect(),
            hasher,
        }
    }
}

impl<K: Hash + Eq, V, S: BuildHasher + Clone + Default> ShardedMap<K, V, S> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// The shard of `key`: bits 32–35 of its hash, which the shard's own table uses neither
    /// for the bucket (low bits) nor for the tag (top seven bits) below 2³² buckets.
    fn shard(&self, key: &K) -> usize {
        ((self.hasher.hash_one(key) >> 32) as usize) & (SHARDS - 1)
    }

    /// The entry of `key`, as [`HashMap::entry`].
    pub fn entry(&mut self, key: K) -> Entry<'_, K, V> {
        let shard = self.shard(&key);
        self.shards[shard].entry(key)
    }

    /// The value of `key`.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.shards[self.shard(key)].get(key)
    }

    /// The value of `key`, mutably.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let shard = self.shard(key);
        self.shards[shard].get_mut(key)
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let shard = self.shard(key);
        self.shards[shard].remove(key)
    }

    /// Keeps the entries for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        for shard in self.shards.iter_mut() {
            shard.retain(&mut keep);
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.shards.iter().map(HashMap::len).sum()
    }

    /// True if there is no entry.
    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(HashMap::is_empty)
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.shards.iter().flat_map(HashMap::iter)
    }

    /// Every entry with its value mutable, in no particular order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut V)> {
        self.shards.iter_mut().flat_map(HashMap::iter_mut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::hash_map::RandomState;

    type Map = ShardedMap<u64, u64, RandomState>;

    #[test]
    fn behaves_like_a_map() {
        let mut map = Map::new();
        assert!(map.is_empty());
        for k in 0..10_000u64 {
            *map.entry(k).or_default() += k;
        }
        assert_eq!(map.len(), 10_000);
        assert_eq!(map.get(&77), Some(&77));
        *map.get_mut(&77).expect("present") = 1;
        assert_eq!(map.remove(&77), Some(1));
        assert_eq!(map.get(&77), None);
        map.retain(|k, _| k % 2 == 0);
        assert_eq!(map.len(), 5_000);
        assert!(map.iter().all(|(k, v)| k % 2 == 0 && k == v));
        for (_, v) in map.iter_mut() {
            *v = 0;
        }
        assert!(map.iter().all(|(_, v)| *v == 0));
    }

    #[test]
    fn spreads_keys_over_every_shard() {
        let mut map = Map::new();
        for k in 0..16_000u64 {
            map.entry(k << 8 | 24).or_default();
        }
        for shard in map.shards.iter() {
            assert!(shard.len() > 500, "a shard holds only {}", shard.len());
        }
    }
}
