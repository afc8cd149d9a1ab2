//! [`ClickHouseSink`] and its exactly-once form.

use std::sync::Arc;
use std::time::Duration;

use eddy_engine::context::RuntimeContext;
use eddy_engine::element::{CheckpointId, Data, Record};
use eddy_engine::error::BoxError;
use eddy_engine::sink::{Sink, SinkWriter};
use eddy_engine::two_phase::{ExactlyOnce, TwoPhaseCommitSink, TwoPhaseCommitWriter};
use serde::{Deserialize, Serialize};

use crate::error::ConnectorError;
use crate::run_id::writer_label;

/// Where a ClickHouse sink writes.
#[derive(Clone)]
struct Settings {
    url: String,
    table: String,
    timeout: Duration,
    name: Option<String>,
    /// Exactly-once: add the identity columns (`false` for upsert tables).
    identity: bool,
    agent: ureq::Agent,
}

impl Settings {
    fn error(&self, reason: String) -> ConnectorError {
        ConnectorError::ClickHouse {
            url: self.url.clone(),
            reason,
        }
    }

    /// Inserts `rows` (JSON objects, one per line) in one request, as one
    /// block: all or nothing unless the connection breaks mid-body.
    fn insert(&self, rows: &str, count: usize) -> Result<(), ConnectorError> {
        let query = format!("INSERT INTO {} FORMAT JSONEachRow", self.table);
        let block = count.max(1_048_576).to_string();
        let mut response = self
            .agent
            .post(&self.url)
            .query("query", &query)
            .query("max_insert_block_size", &block)
            .send(rows)
            .map_err(|e| {
                self.error(format!(
                    "cannot reach the server within {:?}: {e}; check that it is up",
                    self.timeout
                ))
            })?;
        if response.status().is_success() {
            return Ok(());
        }
        let body = response.body_mut().read_to_string().unwrap_or_default();
        Err(self.error(format!(
            "inserting into {} failed ({}): {}",
            self.table,
            response.status(),
            body.trim()
        )))
    }
}

/// Runs one statement (DDL such as `CREATE TABLE`, or a query) on the
/// server at `url` (the HTTP interface); returns its output.
///
/// # Errors
/// [`ConnectorError::ClickHouse`] naming the server, with its reply.
pub fn execute(url: &str, sql: &str) -> Result<String, ConnectorError> {
    let settings = Settings {
        url: url.to_owned(),
        table: String::new(),
        timeout: Duration::from_secs(30),
        name: None,
        identity: true,
        agent: agent(Duration::from_secs(30)),
    };
    let mut response = settings.agent.post(url).send(sql).map_err(|e| {
        settings.error(format!("cannot reach the server: {e}; check that it is up"))
    })?;
    let body = response.body_mut().read_to_string().unwrap_or_default();
    if response.status().is_success() {
        Ok(body)
    } else {
        Err(settings.error(format!(
            "`{sql}` failed ({}): {}",
            response.status(),
            body.trim()
        )))
    }
}

/// The JSON object of a record, one line.
fn json_row<T: Serialize>(value: &T) -> Result<String, BoxError> {
    let row = serde_json::to_string(value)?;
    if !row.starts_with('{') {
        return Err(format!(
            "ClickHouse rows must be structs or maps, not {}",
            std::any::type_name::<T>()
        )
        .into());
    }
    Ok(row)
}

/// A sink inserting records into a ClickHouse table (`url` is the HTTP
/// interface, e.g. `http://127.0.0.1:8123/`). As built, at least once: one
/// INSERT per batch; a restarted job inserts again what it inserted after
/// its checkpoint. See [`exactly_once`](Self::exactly_once).
pub struct ClickHouseSink<T> {
    settings: Arc<Settings>,
    _type: std::marker::PhantomData<fn(T)>,
}

impl<T: Data> ClickHouseSink<T> {
    /// Inserts into `table` on the server at `url`.
    pub fn new(url: impl Into<String>, table: impl Into<String>) -> Self {
        let timeout = Duration::from_secs(30);
        ClickHouseSink {
            settings: Arc::new(Settings {
                url: url.into(),
                table: table.into(),
                timeout,
                name: None,
                identity: true,
                agent: agent(timeout),
            }),
            _type: std::marker::PhantomData,
        }
    }

    fn with(mut self, change: impl FnOnce(&mut Settings)) -> Self {
        change(Arc::make_mut(&mut self.settings));
        self
    }

    /// How long a request may take (default 30 s).
    pub fn timeout(self, timeout: Duration) -> Self {
        self.with(|s| {
            s.timeout = timeout;
            s.agent = agent(timeout);
        })
    }

    /// Exactly-once: the name in the rows' batch ids (default
    /// `<job>/<sink uid>`).
    pub fn name(self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.with(|s| s.name = Some(name))
    }

    /// Exactly-once into an upsert table: the rows carry their own key and
    /// a version that grows with every change of that key, in a
    /// `ReplacingMergeTree(version)` table ordered by that key, so the sink
    /// adds no identity columns: a replayed row equals the one already
    /// there and `FINAL` keeps the newest version of each key (see the
    /// module docs).
    pub fn upserts(self) -> Self {
        self.with(|s| s.identity = false)
    }

    /// The exactly-once sink (see the module docs for the table it needs).
    pub fn exactly_once(self) -> ExactlyOnce<TransactionalClickHouseSink<T>> {
        ExactlyOnce::new(self.transactional())
    }

    /// The two-phase-commit sink under [`exactly_once`](Self::exactly_once),
    /// for tests and custom adapters.
    pub fn transactional(self) -> TransactionalClickHouseSink<T> {
        TransactionalClickHouseSink {
            settings: self.settings,
            _type: std::marker::PhantomData,
        }
    }
}

/// An HTTP client whose error statuses come back as responses (their body
/// is ClickHouse's explanation).
fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

impl<T: Data> Sink for ClickHouseSink<T> {
    type In = T;
    type Writer = ClickHouseWriter<T>;

    fn create_writer(&self, _ctx: &RuntimeContext) -> Result<ClickHouseWriter<T>, BoxError> {
        Ok(ClickHouseWriter {
            settings: Arc::clone(&self.settings),
            _type: std::marker::PhantomData,
        })
    }
}

/// The writer of one at-least-once [`ClickHouseSink`] subtask.
pub struct ClickHouseWriter<T> {
    settings: Arc<Settings>,
    _type: std::marker::PhantomData<fn(T)>,
}

impl<T: Data> SinkWriter for ClickHouseWriter<T> {
    type In = T;

    fn write(&mut self, batch: &mut Vec<Record<T>>) -> Result<(), BoxError> {
        let mut rows = String::new();
        for record in batch.iter() {
            rows.push_str(&json_row(&record.value)?);
            rows.push('\n');
        }
        self.settings.insert(&rows, batch.len())?;
        batch.clear();
        Ok(())
    }

    fn finish(&mut self) -> Result<(), BoxError> {
        Ok(())
    }
}

/// One subtask's rows of one checkpoint, waiting for their insert.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClickHouseBatch {
    /// The rows' `_eddy_batch`: `<name>/<subtask>/<writer run>/<checkpoint>`.
    pub batch: String,
    /// The rows as JSON objects, in order (their `_eddy_seq`).
    pub rows: Vec<String>,
}

impl ClickHouseBatch {
    /// The request body: each row with its identity columns added.
    fn body(&self) -> Result<String, serde_json::Error> {
        let batch = serde_json::to_string(&self.batch)?;
        let mut body = String::new();
        for (seq, row) in self.rows.iter().enumerate() {
            let rest = &row[1..];
            let comma = if rest.trim_start().starts_with('}') {
                ""
            } else {
                ","
            };
            body.push_str(&format!(
                "{{\"_eddy_batch\":{batch},\"_eddy_seq\":{seq}{comma}{rest}\n"
            ));
        }
        Ok(body)
    }
}

/// The exactly-once ClickHouse sink; made by [`ClickHouseSink::exactly_once`].
pub struct TransactionalClickHouseSink<T> {
    settings: Arc<Settings>,
    _type: std::marker::PhantomData<fn(T)>,
}

impl<T: Data> TwoPhaseCommitSink for TransactionalClickHouseSink<T> {
    type In = T;
    type Committable = ClickHouseBatch;
    type Writer = TransactionalClickHouseWriter<T>;

    fn create_writer(&self, ctx: &RuntimeContext) -> Result<Self::Writer, BoxError> {
        Ok(TransactionalClickHouseWriter {
            prefix: writer_label(self.settings.name.as_deref(), ctx),
            rows: Vec::new(),
            _type: std::marker::PhantomData,
        })
    }

    fn commit(&self, batch: &ClickHouseBatch) -> Result<(), BoxError> {
        let body = if self.settings.identity {
            batch.body()?
        } else {
            batch.rows.iter().flat_map(|r| [r.as_str(), "\n"]).collect()
        };
        Ok(self.settings.insert(&body, batch.rows.len())?)
    }
}

/// The writer of one exactly-once ClickHouse sink subtask: it collects the
/// rows of the current checkpoint.
pub struct TransactionalClickHouseWriter<T> {
    prefix: String,
    rows: Vec<String>,
    _type: std::marker::PhantomData<fn(T)>,
}

impl<T: Data> TwoPhaseCommitWriter for TransactionalClickHouseWriter<T> {
    type In = T;
    type Committable = ClickHouseBatch;

    fn write(&mut self, batch: &mut Vec<Record<T>>) -> Result<(), BoxError> {
        for record in batch.drain(..) {
            self.rows.push(json_row(&record.value)?);
        }
        Ok(())
    }

    fn prepare(&mut self, id: CheckpointId) -> Result<Option<ClickHouseBatch>, BoxError> {
        if self.rows.is_empty() {
            return Ok(None);
        }
        Ok(Some(ClickHouseBatch {
            batch: format!("{}/{}", self.prefix, id.0),
            rows: std::mem::take(&mut self.rows),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_get_their_identity_columns_first() -> Result<(), BoxError> {
        let b = ClickHouseBatch {
            batch: "s/0/ab/3".into(),
            rows: vec![r#"{"a":1}"#.into(), "{}".into()],
        };
        assert_eq!(
            b.body()?,
            "{\"_eddy_batch\":\"s/0/ab/3\",\"_eddy_seq\":0,\"a\":1}\n{\"_eddy_batch\":\"s/0/ab/3\",\"_eddy_seq\":1}\n"
        );
        assert!(json_row(&5u32).is_err());
        Ok(())
    }
}
