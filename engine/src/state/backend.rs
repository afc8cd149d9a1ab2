//! The heap keyed-state backend: typed values in hash maps, one map per key
//! group of the subtask's key-group range.

use std::any::{type_name, Any};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use hashbrown::{Equivalent, HashMap};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::checkpoint::restore::{RestoredKeyed, RestoredState};
use crate::checkpoint::snapshot::{decode_value, frames, incompatible, KeyedBlob, StateSnapshot};
use crate::clock::Clock;
use crate::element::{CheckpointId, Key, Timestamp};
use crate::error::StateError;
use crate::keygroup::{key_hash, KeyGroup, KeyGroupRange};
use crate::state::handles::{StateDescriptor, StateScope};
use crate::state::Namespace;

/// All keyed state of one operator subtask, on the heap.
pub struct KeyedStateBackend<K> {
    range: KeyGroupRange,
    tables: Vec<NamedTable>,
    /// Restored states not yet touched: decoded when first used, written
    /// back unchanged by snapshots until then.
    pending: std::collections::HashMap<String, RestoredKeyed>,
    /// Set when the state lives in RocksDB (declared after `tables`, which
    /// are dropped first).
    #[cfg(feature = "rocksdb")]
    rocks: Option<super::rocks::RocksInstance>,
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
    fn snapshot(
        &mut self,
        name: &str,
        type_name: &str,
        out: &mut StateSnapshot,
    ) -> Result<(), StateError>;
    /// Writes cached changes to a disk-based store.
    #[cfg(feature = "rocksdb")]
    fn write_back(&mut self) -> Result<(), StateError>;
}

impl<K: Key, N: Namespace, S: Serialize + DeserializeOwned + Send + 'static> AnyTable
    for StateTable<K, N, S>
{
    fn len(&self) -> usize {
        StateTable::len(self)
    }

    fn snapshot(
        &mut self,
        name: &str,
        type_name: &str,
        out: &mut StateSnapshot,
    ) -> Result<(), StateError> {
        for (i, group) in self.groups.iter().enumerate() {
            let entries = group.iter().map(|((k, n), s)| (key_hash(k), (k, n, s)));
            out.keyed_group(name, type_name, self.start + i as KeyGroup, entries)?;
        }
        Ok(())
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    #[cfg(feature = "rocksdb")]
    fn write_back(&mut self) -> Result<(), StateError> {
        match self.rocks.as_mut() {
            Some(r) => r.write_back(),
            None => Ok(()),
        }
    }
}

impl<K: Key> KeyedStateBackend<K> {
    /// An empty backend for the key groups in `range`.
    pub fn new(range: KeyGroupRange, clock: Arc<dyn Clock>) -> Self {
        KeyedStateBackend {
            range,
            tables: Vec::new(),
            pending: Default::default(),
            #[cfg(feature = "rocksdb")]
            rocks: None,
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
    pub fn table<N: Namespace, S: Serialize + DeserializeOwned + Send + 'static>(
        &mut self,
        name: &'static str,
    ) -> Result<&mut StateTable<K, N, S>, StateError> {
        let idx = match self.tables.iter().position(|t| t.name == name) {
            Some(i) => i,
            None if name.starts_with('@') => {
                return Err(StateError::Backend {
                    name: name.to_owned(),
                    reason: "names starting with '@' are reserved for Eddy's own state; rename it"
                        .into(),
                })
            }
            None => {
                let mut table = self.new_table::<N, S>(name)?;
                if let Some(restored) = self.pending.remove(name) {
                    table.load(name, &restored)?;
                }
                self.tables.push(NamedTable {
                    name,
                    type_name: type_name::<StateTable<K, N, S>>(),
                    table: Box::new(table),
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

    fn new_table<N: Namespace, S: Serialize + DeserializeOwned + Send + 'static>(
        &self,
        _name: &str,
    ) -> Result<StateTable<K, N, S>, StateError> {
        #[cfg(feature = "rocksdb")]
        if let Some(rocks) = &self.rocks {
            let type_name = type_name::<StateTable<K, N, S>>();
            return Ok(StateTable::in_rocks(rocks.table(_name, type_name)?));
        }
        Ok(StateTable::new(self.range))
    }

    /// Keeps the state in a RocksDB instance in `dir` (a new directory,
    /// deleted when the backend is dropped) instead of on the heap. Call
    /// before any state is used.
    ///
    /// # Errors
    /// [`StateError::Backend`] when RocksDB cannot be opened there, or when
    /// Eddy was built without the `rocksdb` feature.
    pub fn use_rocksdb(&mut self, dir: std::path::PathBuf) -> Result<(), StateError> {
        #[cfg(feature = "rocksdb")]
        {
            self.rocks = Some(super::rocks::RocksInstance::open(dir)?);
            Ok(())
        }
        #[cfg(not(feature = "rocksdb"))]
        Err(StateError::Backend {
            name: dir.display().to_string(),
            reason: "this build has no RocksDB backend; build with `--features rocksdb`".into(),
        })
    }

    /// Current processing time (for TTL).
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Takes this subtask's share of restored keyed state. Each state is
    /// decoded when the operator first uses it (its type is known then).
    ///
    /// # Errors
    /// [`StateError::Backend`] when an incremental RocksDB checkpoint
    /// cannot be opened.
    pub fn restore(&mut self, restored: &RestoredState) -> Result<(), StateError> {
        if let Some((_native, _shared)) = &restored.native {
            #[cfg(feature = "rocksdb")]
            if let Some(old) = self.rocks.take() {
                let dir = old.dir().to_path_buf();
                drop(old);
                self.rocks = Some(super::rocks::RocksInstance::restore(dir, _native, _shared)?);
            }
            #[cfg(feature = "rocksdb")]
            let restored_into_rocks = self.rocks.is_some();
            #[cfg(not(feature = "rocksdb"))]
            let restored_into_rocks = false;
            if !restored_into_rocks {
                return Err(StateError::Backend {
                    name: "(restore)".into(),
                    reason: "an incremental RocksDB snapshot reached a heap backend".into(),
                });
            }
        }
        self.pending = restored
            .keyed
            .iter()
            .filter(|(name, _)| !name.starts_with('@'))
            .map(|(name, state)| (name.clone(), state.clone()))
            .collect();
        Ok(())
    }

    /// Writes every state, per key group, into `out`.
    ///
    /// # Errors
    /// [`StateError::Encode`] when a value cannot be encoded.
    pub fn snapshot(&mut self, out: &mut StateSnapshot) -> Result<(), StateError> {
        #[cfg(feature = "rocksdb")]
        if let Some(rocks) = &self.rocks {
            for t in &mut self.tables {
                t.table.write_back()?;
            }
            if out.canonical {
                rocks.snapshot_canonical(out)?;
            } else {
                rocks.snapshot_native((self.range.start, self.range.end), out)?;
            }
            self.snapshot_pending(out);
            return Ok(());
        }
        for t in &mut self.tables {
            t.table.snapshot(t.name, t.type_name, out)?;
        }
        self.snapshot_pending(out);
        Ok(())
    }

    /// Restored states not used yet go back unchanged.
    fn snapshot_pending(&self, out: &mut StateSnapshot) {
        for (name, state) in &self.pending {
            for (kg, entries) in &state.groups {
                out.push_keyed(KeyedBlob {
                    state: name.clone(),
                    type_name: state.type_name.clone(),
                    max_parallelism: out.max_parallelism as u32,
                    key_group: *kg,
                    entries: entries.clone(),
                });
            }
        }
    }

    /// Encodes every state as one blob: for state that is the same on every
    /// subtask (broadcast state), saved once and restored everywhere.
    ///
    /// # Errors
    /// [`StateError::Encode`] when a value cannot be encoded.
    pub fn snapshot_whole(&mut self) -> Result<Vec<u8>, StateError> {
        let mut out = StateSnapshot::new(CheckpointId(0), self.range.end as usize);
        self.snapshot(&mut out)?;
        bincode::serialize(&out.data.keyed).map_err(|e| StateError::Encode {
            name: "(whole backend)".into(),
            reason: e.to_string(),
        })
    }

    /// Restores a blob written by [`Self::snapshot_whole`] of a backend with
    /// the same key groups.
    ///
    /// # Errors
    /// [`StateError::Incompatible`] when the blob does not decode.
    pub fn restore_whole(&mut self, bytes: &[u8]) -> Result<(), StateError> {
        let blobs: Vec<KeyedBlob> =
            bincode::deserialize(bytes).map_err(|e| StateError::Incompatible {
                name: "(whole backend)".into(),
                reason: format!("is damaged: {e}"),
            })?;
        self.restore(&RestoredState::from_blobs(blobs))
    }

    /// Bytes the state takes on disk and in RocksDB's memory, when it lives
    /// in RocksDB (`None` on the heap, where sizes are not tracked).
    pub fn state_bytes(&self) -> Option<u64> {
        #[cfg(feature = "rocksdb")]
        if let Some(rocks) = &self.rocks {
            return Some(rocks.bytes());
        }
        None
    }

    /// Total number of (key, namespace) entries over all states.
    pub fn entry_count(&self) -> usize {
        let restored: usize = self
            .pending
            .values()
            .flat_map(|state| &state.groups)
            .map(|(_, bytes)| frames(bytes).count())
            .sum();
        self.tables.iter().map(|t| t.table.len()).sum::<usize>() + restored
    }
}

/// Values of one state, per key group, keyed by (key, namespace): in hash
/// maps on the heap, or in a RocksDB column family behind a write-back cache.
///
/// Every access is fallible because a disk-based store can fail; on the heap
/// nothing does.
pub struct StateTable<K, N, S> {
    start: KeyGroup,
    groups: Vec<HashMap<(K, N), S>>,
    #[cfg(feature = "rocksdb")]
    rocks: Option<super::rocks::RocksTable<K, N, S>>,
}

/// Borrowed form of a (key, namespace) pair, so lookups need no clone.
pub(crate) struct KeyRef<'a, K, N>(pub &'a K, pub &'a N);

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

impl<K: Key, N: Namespace, S: Serialize + DeserializeOwned> StateTable<K, N, S> {
    fn new(range: KeyGroupRange) -> Self {
        StateTable {
            start: range.start,
            groups: (0..range.len()).map(|_| HashMap::new()).collect(),
            #[cfg(feature = "rocksdb")]
            rocks: None,
        }
    }

    #[cfg(feature = "rocksdb")]
    fn in_rocks(rocks: super::rocks::RocksTable<K, N, S>) -> Self {
        StateTable {
            start: 0,
            groups: Vec::new(),
            rocks: Some(rocks),
        }
    }

    #[inline]
    fn group_mut(&mut self, kg: KeyGroup) -> &mut HashMap<(K, N), S> {
        &mut self.groups[(kg - self.start) as usize]
    }

    /// The value for (key, ns), if any.
    ///
    /// # Errors
    /// When the store fails.
    #[inline]
    pub fn get(&mut self, kg: KeyGroup, key: &K, ns: &N) -> Result<Option<&S>, StateError> {
        #[cfg(feature = "rocksdb")]
        if let Some(r) = self.rocks.as_mut() {
            return r.get_mut(kg, key, ns, false).map(|v| v.map(|v| &*v));
        }
        Ok(self.groups[(kg - self.start) as usize].get(&KeyRef(key, ns)))
    }

    /// The value for (key, ns), mutably, if any.
    ///
    /// # Errors
    /// When the store fails.
    #[inline]
    pub fn get_mut(&mut self, kg: KeyGroup, key: &K, ns: &N) -> Result<Option<&mut S>, StateError> {
        #[cfg(feature = "rocksdb")]
        if let Some(r) = self.rocks.as_mut() {
            return r.get_mut(kg, key, ns, true);
        }
        Ok(self.groups[(kg - self.start) as usize].get_mut(&KeyRef(key, ns)))
    }

    /// Sets the value for (key, ns).
    ///
    /// # Errors
    /// When the store fails.
    #[inline]
    pub fn insert(&mut self, kg: KeyGroup, key: &K, ns: &N, value: S) -> Result<(), StateError> {
        #[cfg(feature = "rocksdb")]
        if let Some(r) = self.rocks.as_mut() {
            return r.insert(kg, key, ns, value);
        }
        let group = self.group_mut(kg);
        if let Some(slot) = group.get_mut(&KeyRef(key, ns)) {
            *slot = value;
        } else {
            group.insert((key.clone(), ns.clone()), value);
        }
        Ok(())
    }

    /// The value for (key, ns), inserting `make()` first when absent.
    ///
    /// # Errors
    /// When the store fails.
    #[inline]
    pub fn get_or_insert_with(
        &mut self,
        kg: KeyGroup,
        key: &K,
        ns: &N,
        make: impl FnOnce() -> S,
    ) -> Result<&mut S, StateError> {
        #[cfg(feature = "rocksdb")]
        if let Some(r) = self.rocks.as_mut() {
            return r.get_or_insert_with(kg, key, ns, make);
        }
        let group = &mut self.groups[(kg - self.start) as usize];
        let probe = KeyRef(key, ns);
        if !group.contains_key(&probe) {
            group.insert((key.clone(), ns.clone()), make());
        }
        Ok(group
            .get_mut(&probe)
            .expect("the entry was present or has just been inserted"))
    }

    /// Removes and returns the value for (key, ns).
    ///
    /// # Errors
    /// When the store fails.
    #[inline]
    pub fn remove(&mut self, kg: KeyGroup, key: &K, ns: &N) -> Result<Option<S>, StateError> {
        #[cfg(feature = "rocksdb")]
        if let Some(r) = self.rocks.as_mut() {
            return r.remove(kg, key, ns);
        }
        Ok(self.group_mut(kg).remove(&KeyRef(key, ns)))
    }

    /// Number of entries over all key groups.
    pub fn len(&self) -> usize {
        #[cfg(feature = "rocksdb")]
        if let Some(r) = self.rocks.as_ref() {
            return r.len();
        }
        self.groups.iter().map(HashMap::len).sum()
    }

    /// True when no entry is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Inserts the restored entries of state `name`.
    fn load(&mut self, name: &str, restored: &RestoredKeyed) -> Result<(), StateError> {
        for (kg, bytes) in &restored.groups {
            for frame in frames(bytes) {
                let (_, _, body) = frame.map_err(|()| {
                    incompatible::<S>(name, &restored.type_name, "truncated entry")
                })?;
                let (k, n, s): (K, N, S) = decode_value(name, &restored.type_name, body)?;
                self.insert(*kg, &k, &n, s)?;
            }
        }
        Ok(())
    }
}
