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

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hashbrown::HashMap;
use rocksdb::checkpoint::Checkpoint;
use rocksdb::{
    ColumnFamilyDescriptor, DBWithThreadMode, IteratorMode, MultiThreaded, Options, WriteBatch,
    WriteOptions,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::checkpoint::snapshot::{
    decode_value, frames, incompatible, push_entry, KeyedBlob, NativeRocks, StateSnapshot, Upload,
};
use crate::element::Key;
use crate::error::StateError;
use crate::keygroup::{key_hash, KeyGroup};
use crate::state::backend::KeyRef;
use crate::state::Namespace;

type Db = DBWithThreadMode<MultiThreaded>;

/// Cached entries per table before they are written back.
const CACHE_ENTRIES: usize = 65_536;

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
    // State is read by key: a block cache with bloom filters.
    opts.optimize_for_point_lookup(64);
    opts
}

/// The RocksDB instance of one operator subtask, in its own directory,
/// deleted (with its checkpoint scratch space) when the instance is dropped.
pub(crate) struct RocksInstance {
    db: Arc<Db>,
    dir: PathBuf,
    /// Names this instance's SST files in shared storage.
    token: String,
    /// Column families: state name and recorded type name.
    states: Mutex<Vec<(String, String)>>,
}

fn io_error(path: &Path, e: std::io::Error) -> StateError {
    db_error(&path.display().to_string(), e)
}

impl RocksInstance {
    /// Opens a fresh instance in `dir` (which must not exist yet).
    pub(crate) fn open(dir: PathBuf) -> Result<Self, StateError> {
        Self::open_with(dir, Vec::new())
    }

    fn open_with(dir: PathBuf, states: Vec<(String, String)>) -> Result<Self, StateError> {
        let context = format!("RocksDB in {}", dir.display());
        std::fs::create_dir_all(&dir).map_err(|e| db_error(&context, e))?;
        let families = states
            .iter()
            .map(|(name, _)| ColumnFamilyDescriptor::new(name, options()));
        let db = Db::open_cf_descriptors(&options(), &dir, families)
            .map_err(|e| db_error(&context, e))?;
        let token = format!(
            "{:x}{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        );
        Ok(RocksInstance {
            db: Arc::new(db),
            dir,
            token,
            states: Mutex::new(states),
        })
    }

    /// Opens the instance that an incremental checkpoint describes, in
    /// `dir`, from the files in `shared`.
    pub(crate) fn restore(
        dir: PathBuf,
        native: &NativeRocks,
        shared: &Path,
    ) -> Result<Self, StateError> {
        std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        for (name, id) in &native.shared {
            let (from, to) = (shared.join(id), dir.join(name));
            if std::fs::hard_link(&from, &to).is_err() {
                std::fs::copy(&from, &to).map_err(|e| io_error(&from, e))?;
            }
        }
        for (name, bytes) in &native.private {
            let to = dir.join(name);
            std::fs::write(&to, bytes).map_err(|e| io_error(&to, e))?;
        }
        Self::open_with(dir, native.states.clone())
    }

    /// The table of state `name`, with its column family created if needed.
    pub(crate) fn table<K, N, S>(
        &self,
        name: &str,
        type_name: &str,
    ) -> Result<RocksTable<K, N, S>, StateError> {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let len = if states.iter().any(|(n, _)| n == name) {
            // Restored: count what is there.
            let cf = self
                .db
                .cf_handle(name)
                .ok_or_else(|| db_error(name, "column family missing"))?;
            let mut n = 0;
            for item in self.db.iterator_cf(&cf, IteratorMode::Start) {
                item.map_err(|e| db_error(name, e))?;
                n += 1;
            }
            n
        } else {
            self.db
                .create_cf(name, &options())
                .map_err(|e| db_error(name, e))?;
            states.push((name.to_owned(), type_name.to_owned()));
            0
        };
        Ok(RocksTable {
            db: Arc::clone(&self.db),
            name: name.to_owned(),
            cache: HashMap::new(),
            len,
            key: Vec::new(),
        })
    }

    /// Where the instance keeps its files.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes its states take: SST files plus memtables, over every column
    /// family (RocksDB's own accounting; values still in the write-back
    /// caches are not in it).
    pub(crate) fn bytes(&self) -> u64 {
        let Ok(states) = self.states.lock() else {
            return 0;
        };
        let db = &self.db;
        states
            .iter()
            .filter_map(|(name, _)| db.cf_handle(name))
            .map(|cf| {
                [
                    "rocksdb.total-sst-files-size",
                    "rocksdb.cur-size-all-mem-tables",
                ]
                .iter()
                .filter_map(|p| db.property_int_value_cf(&cf, *p).ok().flatten())
                .sum::<u64>()
            })
            .sum()
    }

    fn scratch_root(&self) -> PathBuf {
        let mut name = self.dir.file_name().unwrap_or_default().to_os_string();
        name.push("-checkpoints");
        self.dir.with_file_name(name)
    }

    /// Writes every column family, per key group, in the canonical format
    /// (savepoints, and conversions of incremental checkpoints).
    pub(crate) fn snapshot_canonical(&self, out: &mut StateSnapshot) -> Result<(), StateError> {
        let states = self
            .states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for (name, type_name) in &states {
            scan(&self.db, name, type_name, out)?;
        }
        Ok(())
    }

    /// An incremental checkpoint: a RocksDB checkpoint (hard links, taken on
    /// the task thread after the caches were written back), whose SST files
    /// the coordinator copies to shared storage unless they are there from an
    /// earlier checkpoint.
    pub(crate) fn snapshot_native(
        &self,
        key_groups: (KeyGroup, KeyGroup),
        out: &mut StateSnapshot,
    ) -> Result<(), StateError> {
        let scratch = self
            .scratch_root()
            .join(format!("chk-{}", out.checkpoint_id().0));
        let _ = std::fs::remove_dir_all(&scratch);
        if let Some(parent) = scratch.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
        }
        Checkpoint::new(&*self.db)
            .and_then(|c| c.create_checkpoint(&scratch))
            .map_err(|e| db_error(&scratch.display().to_string(), e))?;
        let mut native = NativeRocks {
            key_groups,
            max_parallelism: out.max_parallelism() as u32,
            states: self
                .states
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            shared: Vec::new(),
            private: Vec::new(),
        };
        let entries = std::fs::read_dir(&scratch).map_err(|e| io_error(&scratch, e))?;
        for entry in entries {
            let path = entry.map_err(|e| io_error(&scratch, e))?.path();
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            if name.ends_with(".sst") {
                let shared_id = format!("{}-{name}", self.token);
                native.shared.push((name, shared_id.clone()));
                out.data.uploads.push(Upload {
                    from: path,
                    shared_id,
                });
            } else {
                let bytes = std::fs::read(&path).map_err(|e| io_error(&path, e))?;
                native.private.push((name, bytes));
            }
        }
        out.data.native = Some(native);
        out.data.scratch = Some(scratch);
        Ok(())
    }
}

impl Drop for RocksInstance {
    fn drop(&mut self) {
        // Files of a dropped instance are scratch: state lives in checkpoints.
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(self.scratch_root());
    }
}

/// Converts an incremental checkpoint into canonical keyed blobs (to
/// restore at another parallelism or onto the heap), opening it in
/// `scratch`, which is deleted afterwards.
pub(crate) fn native_to_canonical(
    native: &NativeRocks,
    shared: &Path,
    scratch: PathBuf,
) -> Result<Vec<KeyedBlob>, StateError> {
    let instance = RocksInstance::restore(scratch, native, shared)?;
    let mut out = StateSnapshot::new(
        crate::element::CheckpointId(0),
        native.max_parallelism as usize,
    );
    instance.snapshot_canonical(&mut out)?;
    Ok(out.data.keyed)
}

/// Appends column family `name`, per key group, to `out`: the stored
/// values are the snapshot entries, so this copies bytes.
fn scan(db: &Db, name: &str, type_name: &str, out: &mut StateSnapshot) -> Result<(), StateError> {
    let cf = db
        .cf_handle(name)
        .ok_or_else(|| db_error(name, "column family missing"))?;
    let max_parallelism = out.max_parallelism() as u32;
    let mut current: Option<(KeyGroup, Vec<u8>)> = None;
    let emit = |out: &mut StateSnapshot, (key_group, entries): (KeyGroup, Vec<u8>)| {
        out.push_keyed(KeyedBlob {
            state: name.to_owned(),
            type_name: type_name.to_owned(),
            max_parallelism,
            key_group,
            entries,
        })
    };
    for item in db.iterator_cf(&cf, IteratorMode::Start) {
        let (key, value) = item.map_err(|e| db_error(name, e))?;
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
                self.write_back()?;
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
        let fresh = matches!(self.slot(kg, key, ns)?, Slot::Absent | Slot::Deleted);
        self.len += usize::from(fresh);
        let slot = self.slot(kg, key, ns)?;
        let value = match std::mem::replace(slot, Slot::Absent) {
            Slot::Clean(v) | Slot::Dirty(v) => v,
            Slot::Absent | Slot::Deleted => make(),
        };
        *slot = Slot::Dirty(value);
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

    /// Writes every changed entry back in one batch and empties the cache
    /// (when full, and before a snapshot scans the store).
    pub(crate) fn write_back(&mut self) -> Result<(), StateError> {
        let cf = self
            .db
            .cf_handle(&self.name)
            .ok_or_else(|| db_error(&self.name, "column family missing"))?;
        // (key, value; None deletes), sorted: RocksDB's memtable takes keys
        // in order far faster than in hash order.
        let mut writes: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        for ((k, n), (kg, slot)) in self.cache.drain() {
            let value = match slot {
                Slot::Dirty(s) => {
                    let mut value = Vec::new();
                    push_entry(&mut value, &self.name, key_hash(&k), &(&k, &n, &s))?;
                    Some(value)
                }
                Slot::Deleted => None,
                Slot::Clean(_) | Slot::Absent => continue,
            };
            let mut key = Vec::new();
            db_key(&mut key, kg, &k, &n);
            writes.push((key, value));
        }
        writes.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut batch = WriteBatch::default();
        for (key, value) in &writes {
            match value {
                Some(v) => batch.put_cf(&cf, key, v),
                None => batch.delete_cf(&cf, key),
            }
        }
        // Durability comes from checkpoints, not from RocksDB's log.
        let mut write = WriteOptions::default();
        write.disable_wal(true);
        self.db
            .write_opt(batch, &write)
            .map_err(|e| db_error(&self.name, e))
    }
}
