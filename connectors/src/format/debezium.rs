//! Debezium change events (JSON, without the schema envelope, i.e.
//! `value.converter.schemas.enable=false`):
//! `{"before": {...}, "after": {...}, "op": "c" | "u" | "d" | "r", "ts_ms": 1700000000000}`.
//!
//! Read them with any JSON source, e.g. `FileSource::<Change<Customer>>::json_lines(path)`;
//! feed them to a temporal join with `|c: &Change<Customer>| c.row().cloned()`.

use serde::{Deserialize, Serialize};

/// What happened to a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChangeOp {
    /// A row was inserted.
    #[serde(rename = "c")]
    Create,
    /// A row was updated.
    #[serde(rename = "u")]
    Update,
    /// A row was deleted.
    #[serde(rename = "d")]
    Delete,
    /// A row read by the initial snapshot.
    #[serde(rename = "r")]
    Read,
}

/// One change of a row of type `V`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change<V> {
    /// The row before the change (updates and deletes).
    #[serde(default = "none")]
    pub before: Option<V>,
    /// The row after the change (creates, updates, snapshot reads).
    #[serde(default = "none")]
    pub after: Option<V>,
    /// The kind of change.
    pub op: ChangeOp,
    /// When the connector processed the change, ms since the epoch.
    #[serde(default)]
    pub ts_ms: Option<i64>,
}

fn none<V>() -> Option<V> {
    None
}

impl<V> Change<V> {
    /// The row as it is after the change; `None` after a delete.
    pub fn row(&self) -> Option<&V> {
        match self.op {
            ChangeOp::Delete => None,
            _ => self.after.as_ref(),
        }
    }

    /// The row that identifies the key: `after`, or `before` for deletes.
    pub fn keyed_row(&self) -> Option<&V> {
        self.after.as_ref().or(self.before.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    struct Customer {
        id: u64,
        tier: String,
    }

    #[test]
    fn debezium_events_decode_and_say_which_row_is_current() {
        let update: Change<Customer> = serde_json::from_str(
            r#"{"before":{"id":7,"tier":"bronze"},"after":{"id":7,"tier":"gold"},"op":"u","ts_ms":1700000000000}"#,
        )
        .unwrap();
        assert_eq!(update.row().unwrap().tier, "gold");
        let delete: Change<Customer> =
            serde_json::from_str(r#"{"before":{"id":7,"tier":"gold"},"after":null,"op":"d"}"#)
                .unwrap();
        assert_eq!(delete.row(), None);
        assert_eq!(delete.keyed_row().unwrap().id, 7);
        let bad =
            serde_json::from_str::<Change<Customer>>(r#"{"after":{"id":1,"tier":"x"},"op":"z"}"#);
        assert!(
            bad.is_err(),
            "unknown op is a decode error (a dead letter in a source)"
        );
    }
}
