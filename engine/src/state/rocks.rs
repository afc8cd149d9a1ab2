//! The RocksDB keyed-state backend (feature `rocksdb`): one RocksDB instance
//! per keyed operator subtask, one column family per state.
//!
//! Keys are `key group (u16 big-endian) | bincode(key) | bincode(namespace)`,
//! so one key group is one contiguous range. Values are stored as the
//! snapshot entry itself — `[key hash][length][MessagePack of (key,
//! namespace, value)]` — so a snapshot in the canonical format is a scan that
//! copies bytes, whatever the state's type.
//!
//! Operators get `&mut` access to values, so each table keeps a write-back
//! cache in front of its column family: values are decoded into the cache on
//! first access, changed there, and written back in one batch when the cache
//! is full and before every snapshot. Memory is bounded by the cache size, not
//! the state size. Timers stay on the heap (as Flink's `HEAP` timer option).

use std::path::PathBuf;
use std::sync::Arc;

use hashbrown::HashMap;
use rocksdb::{
    ColumnFamilyDescriptor, DBWithThreadMode, IteratorMode, MultiThreaded, Options, WriteBatch,
    WriteOptions,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::checkpoint::snapshot::{
    decode_value, encode_value, frames, incompatible, push_frame, KeyedBlob, StateSnapshot,
};
use crate::element::Key;
use crate::error::StateError;
use crate::keygroup::{key_hash, KeyGroup};
use crate::state::backend::KeyRef;
use crate::state::Namespace;

type Db = DBWithThreadMode<MultiThreaded>;

/// Cached entries per table before they are written back.
const CACHE_ENTRIES: usize = 16_384;

fn db_error(name: &str, e: impl std::fmt::Display) -> StateError {
    StateError::Backend {
        name: name.to_owned(),
        reason: e.to_string(),
    }
}

fn options() -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts
}

/// The RocksDB instance of one operator subtask, in its own directory,
/// deleted when the instance is dropped.
pub(crate) struct RocksInstance {
    db: Arc<Db>,
    dir: PathBuf,
}

impl RocksInstance {
    /// Opens a fresh instance in `dir` (which must not exist yet).
    pub(crate) fn open(dir: PathBuf) -> Result<Self, StateError> {
        let context = format!("RocksDB in {}", dir.display());
        std::fs::create_dir_all(&dir).map_err(|e| db_error(&context, e))?;
        let db = Db::open_cf_descriptors(&options(), &dir, Vec::<ColumnFamilyDescriptor>::new())
            .map_err(|e| db_error(&context, e))?;
        Ok(RocksInstance {
            db: Arc::new(db),
            dir,
        })
    }

    /// The table of state `name`, with its column family created if needed.
    pub(crate) fn table<K, N, S>(&self, name: &str) -> Result<RocksTable<K, N, S>, StateError> {
        if self.db.cf_handle(name).is_none() {
            self.db
                .create_cf(name, &options())
                .map_err(|e| db_error(name, e))?;
        }
        Ok(RocksTable {
            db: Arc::clone(&self.db),
            name: name.to_owned(),
            cache: HashMap::new(),
            len: 0,
            key: Vec::new(),
        })
    }
}

impl Drop for RocksInstance {
    fn drop(&mut self) {
        // Files of a dropped instance are scratch: state lives in checkpoints.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A cached entry: what is known about one (key, namespace).
enum Slot<S> {
    /// As in the database.
    Clean(S),
    /// Changed (or possibly changed): to be written back.
    Dirty(S),
    /// Not in the database.
    Absent,
    /// Removed: to be deleted from the database.
    Deleted,
}

/// One state in a column family, behind a write-back cache.
pub(crate) struct RocksTable<K, N, S> {
    db: Arc<Db>,
    name: String,
    cache: HashMap<(K, N), (KeyGroup, Slot<S>)>,
    /// Live entries (database and cache together).
    len: usize,
    key: Vec<u8>,
}

fn db_key<K: Serialize, N: Serialize>(out: &mut Vec<u8>, kg: KeyGroup, key: &K, ns: &N) {
    out.clear();
    out.extend_from_slice(&kg.to_be_bytes());
    // Plain data into a Vec: cannot fail.
    let _ = bincode::serialize_into(&mut *out, key);
    let _ = bincode::serialize_into(&mut *out, ns);
}

impl<K: Key, N: Namespace, S: Serialize + DeserializeOwned> RocksTable<K, N, S> {
    fn read(&mut self, kg: KeyGroup, key: &K, ns: &N) -> Result<Option<S>, StateError> {
        db_key(&mut self.key, kg, key, ns);
        let cf = self
            .db
            .cf_handle(&self.name)
            .ok_or_else(|| db_error(&self.name, "column family missing"))?;
        let Some(bytes) = self
            .db
            .get_pinned_cf(&cf, &self.key)
            .map_err(|e| db_error(&self.name, e))?
        else {
            return Ok(None);
        };
        let (_, _, body) = frames(&bytes)
            .next()
            .and_then(Result::ok)
            .ok_or_else(|| incompatible::<S>(&self.name, "a RocksDB entry", "truncated entry"))?;
        let (_, _, value): (K, N, S) = decode_value(&self.name, "a RocksDB entry", body)?;
        Ok(Some(value))
    }

    /// The cached slot of (key, ns), read from the database on a miss.
    fn slot(&mut self, kg: KeyGroup, key: &K, ns: &N) -> Result<&mut Slot<S>, StateError> {
        if !self.cache.contains_key(&KeyRef(key, ns)) {
            if self.cache.len() >= CACHE_ENTRIES {
                self.flush()?;
            }
            let slot = match self.read(kg, key, ns)? {
                Some(v) => Slot::Clean(v),
                None => Slot::Absent,
            };
            self.cache.insert((key.clone(), ns.clone()), (kg, slot));
        }
        Ok(&mut self
            .cache
            .get_mut(&KeyRef(key, ns))
            .expect("cached just now")
            .1)
    }

    pub(crate) fn get_mut(
        &mut self,
        kg: KeyGroup,
        key: &K,
        ns: &N,
        will_change: bool,
    ) -> Result<Option<&mut S>, StateError> {
        let slot = self.slot(kg, key, ns)?;
        if will_change {
            if let Slot::Clean(_) = slot {
                let Slot::Clean(v) = std::mem::replace(slot, Slot::Absent) else {
                    unreachable!("matched Clean")
                };
                *slot = Slot::Dirty(v);
            }
        }
        Ok(match slot {
            Slot::Clean(v) | Slot::Dirty(v) => Some(v),
            Slot::Absent | Slot::Deleted => None,
        })
    }

    pub(crate) fn insert(
        &mut self,
        kg: KeyGroup,
        key: &K,
        ns: &N,
        value: S,
    ) -> Result<(), StateError> {
        let slot = self.slot(kg, key, ns)?;
        let existed = matches!(slot, Slot::Clean(_) | Slot::Dirty(_));
        *slot = Slot::Dirty(value);
        self.len += usize::from(!existed);
        Ok(())
    }

    pub(crate) fn get_or_insert_with(
        &mut self,
        kg: KeyGroup,
        key: &K,
        ns: &N,
        make: impl FnOnce() -> S,
    ) -> Result<&mut S, StateError> {
        let slot = self.slot(kg, key, ns)?;
        let fresh = matches!(slot, Slot::Absent | Slot::Deleted);
        let value = match std::mem::replace(slot, Slot::Absent) {
            Slot::Clean(v) | Slot::Dirty(v) => v,
            Slot::Absent | Slot::Deleted => make(),
        };
        *slot = Slot::Dirty(value);
        self.len += usize::from(fresh);
        match slot {
            Slot::Dirty(v) => Ok(v),
            _ => unreachable!("set to Dirty just now"),
        }
    }

    pub(crate) fn remove(
        &mut self,
        kg: KeyGroup,
        key: &K,
        ns: &N,
    ) -> Result<Option<S>, StateError> {
        let slot = self.slot(kg, key, ns)?;
        let old = match std::mem::replace(slot, Slot::Absent) {
            Slot::Clean(v) | Slot::Dirty(v) => Some(v),
            other => {
                *slot = other;
                return Ok(None);
            }
        };
        *slot = Slot::Deleted;
        self.len -= 1;
        Ok(old)
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Writes every changed entry back in one batch and empties the cache.
    fn flush(&mut self) -> Result<(), StateError> {
        let cf = self
            .db
            .cf_handle(&self.name)
            .ok_or_else(|| db_error(&self.name, "column family missing"))?;
        let mut batch = WriteBatch::default();
        let mut value = Vec::new();
        for ((k, n), (kg, slot)) in self.cache.drain() {
            match slot {
                Slot::Dirty(s) => {
                    db_key(&mut self.key, kg, &k, &n);
                    value.clear();
                    let mut failure = None;
                    push_frame(&mut value, key_hash(&k), |out| {
                        failure = encode_value(&self.name, &(&k, &n, &s), out).err();
                    });
                    if let Some(e) = failure {
                        return Err(e);
                    }
                    batch.put_cf(&cf, &self.key, &value);
                }
                Slot::Deleted => {
                    db_key(&mut self.key, kg, &k, &n);
                    batch.delete_cf(&cf, &self.key);
                }
                Slot::Clean(_) | Slot::Absent => {}
            }
        }
        // Durability comes from checkpoints, not from RocksDB's log.
        let mut write = WriteOptions::default();
        write.disable_wal(true);
        self.db
            .write_opt(batch, &write)
            .map_err(|e| db_error(&self.name, e))
    }

    /// Writes the state, per key group, into `out` (a scan copying bytes).
    pub(crate) fn snapshot(
        &mut self,
        name: &str,
        type_name: &str,
        out: &mut StateSnapshot,
    ) -> Result<(), StateError> {
        self.flush()?;
        let cf = self
            .db
            .cf_handle(&self.name)
            .ok_or_else(|| db_error(&self.name, "column family missing"))?;
        let mut current: Option<(KeyGroup, Vec<u8>)> = None;
        let max_parallelism = out.max_parallelism() as u32;
        let mut emit = |out: &mut StateSnapshot, (kg, entries): (KeyGroup, Vec<u8>)| {
            out.push_keyed(KeyedBlob {
                state: name.to_owned(),
                type_name: type_name.to_owned(),
                max_parallelism,
                key_group: kg,
                entries,
            })
        };
        for item in self.db.iterator_cf(&cf, IteratorMode::Start) {
            let (key, value) = item.map_err(|e| db_error(&self.name, e))?;
            let kg = KeyGroup::from_be_bytes([key[0], key[1]]);
            match current.as_mut() {
                Some((g, entries)) if *g == kg => entries.extend_from_slice(&value),
                _ => {
                    if let Some(done) = current.take() {
                        emit(out, done);
                    }
                    current = Some((kg, value.to_vec()));
                }
            }
        }
        if let Some(done) = current {
            emit(out, done);
        }
        Ok(())
    }
}
