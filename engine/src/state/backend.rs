//! The heap keyed-state backend: typed values in hash maps, one map per key
//! group of the subtask's key-group range.

use std::any::{type_name, Any};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use hashbrown::{Equivalent, HashMap};

use crate::clock::Clock;
use crate::element::{Key, Timestamp};
use crate::error::StateError;
use crate::keygroup::{KeyGroup, KeyGroupRange};
use crate::state::handles::{StateDescriptor, StateScope};
use crate::state::Namespace;

/// All keyed state of one operator subtask, on the heap.
pub struct KeyedStateBackend<K> {
    range: KeyGroupRange,
    tables: Vec<NamedTable>,
    clock: Arc<dyn Clock>,
    _key: std::marker::PhantomData<fn() -> K>,
}

struct NamedTable {
    name: &'static str,
    type_name: &'static str,
    table: Box<dyn AnyTable>,
}

/// The object-safe face of a [`StateTable`] of any type.
trait AnyTable: Send {
    fn len(&self) -> usize;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<K: Key, N: Namespace, S: Send + 'static> AnyTable for StateTable<K, N, S> {
    fn len(&self) -> usize {
        StateTable::len(self)
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

impl<K: Key> KeyedStateBackend<K> {
    /// An empty backend for the key groups in `range`.
    pub fn new(range: KeyGroupRange, clock: Arc<dyn Clock>) -> Self {
        KeyedStateBackend {
            range,
            tables: Vec::new(),
            clock,
            _key: std::marker::PhantomData,
        }
    }

    /// The key groups this backend holds.
    pub fn key_groups(&self) -> KeyGroupRange {
        self.range
    }

    /// Binds the state described by `desc` to `key` (in key group `kg`) and
    /// namespace `ns`.
    pub fn state<'a, D: StateDescriptor, N: Namespace>(
        &'a mut self,
        desc: &'a D,
        key: &'a K,
        key_group: KeyGroup,
        ns: &'a N,
    ) -> D::Handle<'a, K, N> {
        desc.bind(StateScope {
            backend: self,
            key,
            key_group,
            ns,
        })
    }

    /// The table named `name` holding values of type `S` per (key, namespace);
    /// created empty on first use.
    ///
    /// # Errors
    /// [`StateError::TypeMismatch`] when `name` already holds another type.
    pub fn table<N: Namespace, S: Send + 'static>(
        &mut self,
        name: &'static str,
    ) -> Result<&mut StateTable<K, N, S>, StateError> {
        let idx = match self.tables.iter().position(|t| t.name == name) {
            Some(i) => i,
            None => {
                self.tables.push(NamedTable {
                    name,
                    type_name: type_name::<StateTable<K, N, S>>(),
                    table: Box::new(StateTable::<K, N, S>::new(self.range)),
                });
                self.tables.len() - 1
            }
        };
        let entry = &mut self.tables[idx];
        let existing = entry.type_name;
        entry
            .table
            .as_any_mut()
            .downcast_mut::<StateTable<K, N, S>>()
            .ok_or_else(|| StateError::TypeMismatch {
                name: name.to_owned(),
                existing,
            })
    }

    /// Current processing time (for TTL).
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Total number of (key, namespace) entries over all states.
    pub fn entry_count(&self) -> usize {
        self.tables.iter().map(|t| t.table.len()).sum()
    }
}

/// Values of one state, per key group, keyed by (key, namespace).
pub struct StateTable<K, N, S> {
    start: KeyGroup,
    groups: Vec<HashMap<(K, N), S>>,
}

/// Borrowed form of a (key, namespace) pair, so lookups need no clone.
struct KeyRef<'a, K, N>(&'a K, &'a N);

impl<K: Hash, N: Hash> Hash for KeyRef<'_, K, N> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Must match the derived Hash of the tuple (K, N).
        self.0.hash(state);
        self.1.hash(state);
    }
}

impl<K: Eq, N: Eq> Equivalent<(K, N)> for KeyRef<'_, K, N> {
    fn equivalent(&self, key: &(K, N)) -> bool {
        *self.0 == key.0 && *self.1 == key.1
    }
}

impl<K: Key, N: Namespace, S> StateTable<K, N, S> {
    fn new(range: KeyGroupRange) -> Self {
        StateTable {
            start: range.start,
            groups: (0..range.len()).map(|_| HashMap::new()).collect(),
        }
    }

    #[inline]
    fn group(&self, kg: KeyGroup) -> &HashMap<(K, N), S> {
        &self.groups[(kg - self.start) as usize]
    }

    #[inline]
    fn group_mut(&mut self, kg: KeyGroup) -> &mut HashMap<(K, N), S> {
        &mut self.groups[(kg - self.start) as usize]
    }

    /// The value for (key, ns), if any.
    #[inline]
    pub fn get(&self, kg: KeyGroup, key: &K, ns: &N) -> Option<&S> {
        self.group(kg).get(&KeyRef(key, ns))
    }

    /// The value for (key, ns), mutably, if any.
    #[inline]
    pub fn get_mut(&mut self, kg: KeyGroup, key: &K, ns: &N) -> Option<&mut S> {
        self.group_mut(kg).get_mut(&KeyRef(key, ns))
    }

    /// Sets the value for (key, ns).
    #[inline]
    pub fn insert(&mut self, kg: KeyGroup, key: &K, ns: &N, value: S) {
        let group = self.group_mut(kg);
        if let Some(slot) = group.get_mut(&KeyRef(key, ns)) {
            *slot = value;
        } else {
            group.insert((key.clone(), ns.clone()), value);
        }
    }

    /// The value for (key, ns), inserting `make()` first when absent.
    #[inline]
    pub fn get_or_insert_with(
        &mut self,
        kg: KeyGroup,
        key: &K,
        ns: &N,
        make: impl FnOnce() -> S,
    ) -> &mut S {
        let group = self.group_mut(kg);
        let probe = KeyRef(key, ns);
        if !group.contains_key(&probe) {
            group.insert((key.clone(), ns.clone()), make());
        }
        group
            .get_mut(&probe)
            .expect("the entry was present or has just been inserted")
    }

    /// Removes and returns the value for (key, ns).
    #[inline]
    pub fn remove(&mut self, kg: KeyGroup, key: &K, ns: &N) -> Option<S> {
        self.group_mut(kg).remove(&KeyRef(key, ns))
    }

    /// Number of entries over all key groups.
    pub fn len(&self) -> usize {
        self.groups.iter().map(HashMap::len).sum()
    }

    /// True when no entry is stored.
    pub fn is_empty(&self) -> bool {
        self.groups.iter().all(HashMap::is_empty)
    }

    /// Every (key, namespace, value) of one key group.
    pub fn iter_group(&self, kg: KeyGroup) -> impl Iterator<Item = (&K, &N, &S)> {
        self.group(kg).iter().map(|((k, n), s)| (k, n, s))
    }
}
