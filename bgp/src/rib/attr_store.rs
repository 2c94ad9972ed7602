//! Interned attribute sets: each distinct `PathAttributes` is stored once and referred to
//! by a 4-byte id, so a route in the table costs 8 bytes of path (attribute id + peer id).

use std::collections::HashMap;
use std::sync::Arc;

use crate::message::PathAttributes;

/// Index of an interned attribute set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct AttrId(pub(crate) u32);

#[derive(Debug)]
struct Slot {
    attrs: Option<Arc<PathAttributes>>,
    refs: u32,
}

/// Reference-counted interning table.
#[derive(Debug, Default)]
pub(crate) struct AttrStore {
    slots: Vec<Slot>,
    free: Vec<u32>,
    index: HashMap<Arc<PathAttributes>, u32>,
}

impl AttrStore {
    /// Finds or adds `attrs`; the caller then takes references with [`AttrStore::incref`].
    pub(crate) fn intern(&mut self, attrs: &Arc<PathAttributes>) -> AttrId {
        if let Some(&id) = self.index.get(attrs) {
            return AttrId(id);
        }
        let slot = Slot {
            attrs: Some(attrs.clone()),
            refs: 0,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = slot;
                id
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(attrs.clone(), id);
        AttrId(id)
    }

    pub(crate) fn get(&self, id: AttrId) -> &Arc<PathAttributes> {
        // Ids only come from `intern` and live while referenced, so the slot is filled.
        match self.slots.get(id.0 as usize).and_then(|s| s.attrs.as_ref()) {
            Some(a) => a,
            None => unreachable_attrs(),
        }
    }

    pub(crate) fn incref(&mut self, id: AttrId) {
        if let Some(s) = self.slots.get_mut(id.0 as usize) {
            s.refs += 1;
        }
    }

    /// Drops one reference; the set is forgotten at zero.
    pub(crate) fn decref(&mut self, id: AttrId) {
        let Some(s) = self.slots.get_mut(id.0 as usize) else {
            return;
        };
        s.refs = s.refs.saturating_sub(1);
        if s.refs == 0 {
            if let Some(a) = s.attrs.take() {
                self.index.remove(&a);
            }
            self.free.push(id.0);
        }
    }

    /// Drops an interned set nobody referenced (interned for a call that stored nothing).
    pub(crate) fn release_if_unused(&mut self, id: AttrId) {
        if self
            .slots
            .get(id.0 as usize)
            .is_some_and(|s| s.refs == 0 && s.attrs.is_some())
        {
            self.incref(id);
            self.decref(id);
        }
    }

    /// Number of distinct attribute sets held.
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }
}

#[cold]
fn unreachable_attrs() -> &'static Arc<PathAttributes> {
    // A dangling id would be a bug in this module; answer with an empty set, not a panic.
    static EMPTY: std::sync::OnceLock<Arc<PathAttributes>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| Arc::new(PathAttributes::default()))
}
