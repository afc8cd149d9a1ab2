//! What an operator writes when a checkpoint barrier passes it, and the
//! encoding of state values.
//!
//! Keyed state is written per state and key group; every entry keeps the
//! hash of its key next to the self-describing (MessagePack, fields by name)
//! encoding of `(key, namespace, value)`. The hash lets a restore move entries
//! to new key groups without knowing their types, which is how a restore can
//! change `max_parallelism`; the encoding lets a value type gain
//! `#[serde(default)]` fields. Operator (non-keyed) state is a named list of
//! items, split or copied over the subtasks of a restored job.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::element::CheckpointId;
use crate::error::StateError;
use crate::keygroup::KeyGroup;

/// How the items of an operator list state are spread over the subtasks of
/// a job restored at another parallelism.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Redistribution {
    /// The items of all old subtasks are dealt round-robin to the new ones
    /// (source splits, ids of finished splits).
    Split,
    /// Every new subtask gets the items of all old subtasks (broadcast
    /// state; pending sink commits, which each subtask then filters by the
    /// subtask that made them).
    Union,
}

/// The captured state of one operator subtask.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct OperatorSnapshot {
    pub keyed: Vec<KeyedBlob>,
    pub lists: Vec<ListBlob>,
    /// A RocksDB instance's own files (incremental checkpoints).
    pub native: Option<NativeRocks>,
    /// Files the coordinator copies into shared storage before the
    /// snapshot counts as written (not stored).
    #[serde(skip)]
    pub uploads: Vec<Upload>,
    /// A scratch directory to delete once the uploads are done.
    #[serde(skip)]
    pub scratch: Option<std::path::PathBuf>,
}

/// A RocksDB instance as an incremental checkpoint: its immutable SST files
/// by reference to shared storage, its small private files inline.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct NativeRocks {
    /// The key groups `[start, end)` it holds, of `max_parallelism`.
    pub key_groups: (KeyGroup, KeyGroup),
    pub max_parallelism: u32,
    /// Column families: state name and recorded type name.
    pub states: Vec<(String, String)>,
    /// (file name in the instance, id in shared storage).
    pub shared: Vec<(String, String)>,
    /// (file name, contents) of the instance's small mutable files.
    pub private: Vec<(String, Vec<u8>)>,
}

/// A file to copy into shared storage, then the scratch copy to delete.
#[derive(Clone, Debug)]
pub(crate) struct Upload {
    pub from: std::path::PathBuf,
    pub shared_id: String,
}

/// The entries of one keyed state in one key group.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct KeyedBlob {
    pub state: String,
    pub type_name: String,
    pub max_parallelism: u32,
    pub key_group: KeyGroup,
    /// Framed entries: `[key hash u64 LE][length u32 LE][encoded entry]…`.
    pub entries: Vec<u8>,
}

/// The items of one operator list state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ListBlob {
    pub name: String,
    pub mode: Redistribution,
    pub items: Vec<Vec<u8>>,
}

/// Encodes `value` self-describingly (MessagePack, struct fields by name).
pub(crate) fn encode_value<T: Serialize + ?Sized>(
    name: &str,
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), StateError> {
    rmp_serde::encode::write_named(out, value).map_err(|e| StateError::Encode {
        name: name.to_owned(),
        reason: e.to_string(),
    })
}

/// Decodes a value written by [`encode_value`].
pub(crate) fn decode_value<T: DeserializeOwned>(
    name: &str,
    stored: &str,
    bytes: &[u8],
) -> Result<T, StateError> {
    rmp_serde::from_slice(bytes).map_err(|e| incompatible::<T>(name, stored, e))
}

/// The error for a stored value that does not decode as `T`.
pub(crate) fn incompatible<T>(
    name: &str,
    stored: &str,
    reason: impl std::fmt::Display,
) -> StateError {
    StateError::Incompatible {
        name: name.to_owned(),
        reason: format!(
            "was saved as {stored} and does not decode as {}: {reason}",
            std::any::type_name::<T>()
        ),
    }
}

/// Appends one framed entry: the key's hash and `entry` encoded.
pub(crate) fn push_entry<E: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    name: &str,
    hash: u64,
    entry: &E,
) -> Result<(), StateError> {
    out.extend_from_slice(&hash.to_le_bytes());
    let len_at = out.len();
    out.extend_from_slice(&0u32.to_le_bytes());
    encode_value(name, entry, out)?;
    let len = (out.len() - len_at - 4) as u32;
    out[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// Iterates the framed entries of `bytes`: `(key hash, whole frame, body)`.
/// Stops at the first malformed frame, which it reports as `Err(())`.
pub(crate) fn frames(bytes: &[u8]) -> impl Iterator<Item = Result<(u64, &[u8], &[u8]), ()>> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        if rest.len() < 12 {
            rest = &[];
            return Some(Err(()));
        }
        let hash = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(rest[8..12].try_into().expect("4 bytes")) as usize;
        if rest.len() < 12 + len {
            rest = &[];
            return Some(Err(()));
        }
        let (frame, tail) = rest.split_at(12 + len);
        rest = tail;
        Some(Ok((hash, frame, &frame[12..])))
    })
}

/// Where an operator writes its state while a checkpoint barrier passes it.
/// Keyed operators hand it to their state backend and timer service
/// (`KeyedStateBackend::snapshot`, `TimerService::snapshot`); sources and
/// sinks write list state.
#[derive(Clone)]
pub struct StateSnapshot {
    pub(crate) checkpoint: CheckpointId,
    pub(crate) max_parallelism: usize,
    pub(crate) data: OperatorSnapshot,
    /// Only the canonical format will do (savepoints).
    pub(crate) canonical: bool,
}

impl StateSnapshot {
    /// An empty snapshot for checkpoint `checkpoint` of an operator with
    /// `max_parallelism` key groups (for harnesses and tools).
    pub fn new(checkpoint: CheckpointId, max_parallelism: usize) -> Self {
        StateSnapshot {
            checkpoint,
            max_parallelism,
            data: OperatorSnapshot::default(),
            canonical: true,
        }
    }

    /// The snapshot for `barrier`: backends may write their own incremental
    /// format unless it is a savepoint.
    pub(crate) fn for_barrier(barrier: &crate::element::Barrier, max_parallelism: usize) -> Self {
        let mut snapshot = StateSnapshot::new(barrier.id, max_parallelism);
        snapshot.canonical = barrier.savepoint;
        snapshot
    }

    /// The checkpoint being taken.
    pub fn checkpoint_id(&self) -> CheckpointId {
        self.checkpoint
    }

    /// The number of key groups of the operator.
    pub fn max_parallelism(&self) -> usize {
        self.max_parallelism
    }

    /// True when nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.data.keyed.is_empty() && self.data.lists.is_empty() && self.data.native.is_none()
    }

    /// Writes the entries of keyed state `state` in `key_group`: each entry
    /// is its key's hash and a value to encode (usually `(key, namespace,
    /// value)`). `type_name` is recorded for error messages on restore.
    ///
    /// # Errors
    /// [`StateError::Encode`] when a value cannot be encoded.
    pub fn keyed_group<E: Serialize>(
        &mut self,
        state: &str,
        type_name: &str,
        key_group: KeyGroup,
        entries: impl IntoIterator<Item = (u64, E)>,
    ) -> Result<(), StateError> {
        let mut bytes = Vec::new();
        for (hash, entry) in entries {
            push_entry(&mut bytes, state, hash, &entry)?;
        }
        if !bytes.is_empty() {
            self.push_keyed(KeyedBlob {
                state: state.to_owned(),
                type_name: type_name.to_owned(),
                max_parallelism: self.max_parallelism as u32,
                key_group,
                entries: bytes,
            });
        }
        Ok(())
    }

    pub(crate) fn push_keyed(&mut self, blob: KeyedBlob) {
        self.data.keyed.push(blob);
    }

    /// Writes operator list state `name`; on a restore at another
    /// parallelism its items are spread as `mode` says.
    ///
    /// # Errors
    /// [`StateError::Encode`] when an item cannot be encoded.
    pub fn list<T: Serialize>(
        &mut self,
        name: &str,
        mode: Redistribution,
        items: impl IntoIterator<Item = T>,
    ) -> Result<(), StateError> {
        let items = items
            .into_iter()
            .map(|item| {
                let mut bytes = Vec::new();
                encode_value(name, &item, &mut bytes).map(|()| bytes)
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.data.lists.push(ListBlob {
            name: name.to_owned(),
            mode,
            items,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_report_truncation() {
        let mut bytes = Vec::new();
        push_entry(&mut bytes, "s", 7, "abc").unwrap();
        push_entry(&mut bytes, "s", 9, "").unwrap();
        let read: Vec<_> = frames(&bytes)
            .map(|f| f.map(|(h, _, b)| (h, decode_value::<String>("s", "str", b).unwrap())))
            .collect();
        assert_eq!(
            read,
            vec![Ok((7, "abc".to_owned())), Ok((9, String::new()))]
        );
        let cut = &bytes[..bytes.len() - 1];
        assert_eq!(frames(cut).last(), Some(Err(())));
    }

    #[test]
    fn a_field_with_serde_default_decodes_from_the_old_encoding() {
        #[derive(Serialize)]
        struct Old {
            count: u64,
        }
        #[derive(Deserialize, Debug, PartialEq)]
        struct New {
            count: u64,
            #[serde(default)]
            label: String,
        }
        let mut bytes = Vec::new();
        encode_value("s", &Old { count: 3 }, &mut bytes).unwrap();
        let new: New = decode_value("s", "Old", &bytes).unwrap();
        assert_eq!(
            new,
            New {
                count: 3,
                label: String::new()
            }
        );
        let err = decode_value::<(u8, u8)>("s", "Old", &bytes).unwrap_err();
        assert!(err.to_string().contains("was saved as Old"), "{err}");
    }
}
