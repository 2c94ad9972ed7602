//! Interning with reuse: values a route names by a 4-byte id instead of holding them (next
//! hops, sets of next hops, kernel targets, see [`super::table`]).
//!
//! An [`Interner`] owns the id of each value it holds and nothing else: it does not know who
//! uses an id. Its owner counts the uses and calls [`Interner::remove`] when the last one goes;
//! the id then goes to a free list and is the next one handed out, so the ids in use stay
//! below the largest number of values ever in use at once, not the number ever seen. Without
//! that, a cluster whose node IPs are never reused (nodes replaced over months) or whose ECMP
//! sets change as routers come and go grows these tables without bound.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

/// Values of type `K` by id, each with its owner's data `E` (use counts, resolution).
#[derive(Debug)]
pub(super) struct Interner<K, E> {
    /// By id; `None` for a freed id (listed in `free`).
    entries: Vec<Option<(K, E)>>,
    ids: HashMap<K, u32, foldhash::fast::RandomState>,
    /// Freed ids, the last freed handed out first.
    free: Vec<u32>,
}

impl<K, E> Default for Interner<K, E> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            ids: HashMap::default(),
            free: Vec::new(),
        }
    }
}

impl<K: Clone + Eq + Hash, E> Interner<K, E> {
    /// The id of `key`, if held.
    pub(super) fn id<Q>(&self, key: &Q) -> Option<u32>
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        self.ids.get(key).copied()
    }

    /// The id of `key`, added with `entry()` (a freed id if there is one) if not held.
    pub(super) fn intern(&mut self, key: &K, entry: impl FnOnce() -> E) -> u32 {
        if let Some(id) = self.ids.get(key) {
            return *id;
        }
        let value = Some((key.clone(), entry()));
        let id = match self.free.pop() {
            Some(id) => {
                self.entries[id as usize] = value;
                id
            }
            None => {
                self.entries.push(value);
                // More than 2^32 values at once do not fit any node's memory.
                u32::try_from(self.entries.len() - 1).unwrap_or(u32::MAX)
            }
        };
        self.ids.insert(key.clone(), id);
        id
    }

    /// Frees `id` for reuse: nothing may name it any more. Returns what it held.
    pub(super) fn remove(&mut self, id: u32) -> Option<(K, E)> {
        let (key, entry) = self.entries.get_mut(id as usize)?.take()?;
        self.ids.remove(&key);
        self.free.push(id);
        Some((key, entry))
    }

    /// The value of `id`. Panics on a freed id: the owner's use counts are wrong.
    #[inline]
    pub(super) fn key(&self, id: u32) -> &K {
        &self.held(id).0
    }

    /// The owner's data of `id`. Panics on a freed id, like [`Self::key`].
    #[inline]
    pub(super) fn get(&self, id: u32) -> &E {
        &self.held(id).1
    }

    /// The owner's data of `id`, mutably. Panics on a freed id, like [`Self::key`].
    #[inline]
    pub(super) fn get_mut(&mut self, id: u32) -> &mut E {
        match self.entries.get_mut(id as usize) {
            Some(Some((_, entry))) => entry,
            _ => freed(id),
        }
    }

    #[inline]
    fn held(&self, id: u32) -> &(K, E) {
        match self.entries.get(id as usize) {
            Some(Some(held)) => held,
            _ => freed(id),
        }
    }

    /// True if `id` names a value (is not freed).
    #[cfg(test)]
    pub(super) fn holds(&self, id: u32) -> bool {
        matches!(self.entries.get(id as usize), Some(Some(_)))
    }

    /// Every value held, with its id.
    pub(super) fn iter(&self) -> impl Iterator<Item = (u32, &K, &E)> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(id, held)| held.as_ref().map(|(k, e)| (id as u32, k, e)))
    }

    /// Values held.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.ids.len()
    }

    /// Ids ever handed out at once: held plus freed. Bounded by the most values held at a
    /// time.
    #[cfg(test)]
    pub(super) fn id_space(&self) -> usize {
        self.entries.len()
    }
}

/// A freed id used: a bug in its owner's counts, never a consequence of input.
#[cold]
#[inline(never)]
fn freed(id: u32) -> ! {
    panic!("interned id {id} used after it was freed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_freed_id_is_handed_out_again_for_a_new_value() {
        let mut interner: Interner<&str, u32> = Interner::default();
        let a = interner.intern(&"a", || 1);
        let b = interner.intern(&"b", || 2);
        assert_eq!(interner.intern(&"a", || 9), a, "held: the same id");
        assert_eq!(interner.remove(a), Some(("a", 1)));
        assert_eq!(interner.id("a"), None);
        assert!(!interner.holds(a));
        let c = interner.intern(&"c", || 3);
        assert_eq!(c, a, "the freed id is reused");
        assert_eq!((interner.key(c), interner.get(c)), (&"c", &3));
        assert_eq!(*interner.get(b), 2);
        assert_eq!(interner.len(), 2);
        assert_eq!(interner.id_space(), 2);
        assert_eq!(interner.remove(a), Some(("c", 3)));
        assert_eq!(interner.remove(a), None, "freed twice: nothing to free");
    }
}
