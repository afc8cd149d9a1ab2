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
use crate::rejected::OnRejected;
use crate::run_id::writer_label;
use crate::staging::{self, Staged, StagingBuffer, DEFAULT_BUFFER_BYTES};

/// Where a ClickHouse sink writes.
#[derive(Clone)]
struct Settings {
    url: String,
    table: String,
    timeout: Duration,
    name: Option<String>,
    /// Exactly-once: add the identity columns (`false` for upsert tables).
    identity: bool,
    /// What a row the server refuses does.
    on_rejected: OnRejected,
    /// Exactly-once: the bytes of rows a subtask holds in memory per
    /// checkpoint, and about the size of one insert of a staged file.
    buffer_bytes: usize,
    agent: ureq::Agent,
}

/// Why an insert failed.
enum InsertError {
    /// The server refused the data (a row it cannot parse into the table).
    Refused(String),
    /// Anything else: the server, the network, the table.
    Failed(ConnectorError),
}

/// ClickHouse's error codes for data it cannot take into a table (parse
/// errors, type mismatches, values out of range, unknown fields).
const DATA_ERRORS: [u32; 15] = [
    6, 26, 27, 32, 38, 41, 53, 69, 70, 72, 117, 131, 321, 349, 354,
];

/// Whether ClickHouse's reply (`Code: N, e.displayText() = …`) refuses the
/// data rather than failing otherwise.
fn refuses_data(reply: &str) -> bool {
    reply
        .split_once("Code: ")
        .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|code| code.parse::<u32>().ok())
        .is_some_and(|code| DATA_ERRORS.contains(&code))
}

/// The table refused rows are kept in under [`OnRejected::DeadLetter`].
pub const DEAD_LETTERS_TABLE: &str = "eddy_dead_letters";

const CREATE_DEAD_LETTERS: &str = "CREATE TABLE IF NOT EXISTS eddy_dead_letters \
     (table String, row String, reason String, _eddy_batch String, _eddy_seq UInt64) \
     ENGINE = ReplacingMergeTree ORDER BY (_eddy_batch, _eddy_seq)";

/// One row as refused: the row, its place in the batch, the reply.
struct Refused<'a> {
    row: &'a str,
    seq: usize,
    reason: String,
}

impl Settings {
    fn error(&self, reason: String) -> ConnectorError {
        ConnectorError::ClickHouse {
            url: self.url.clone(),
            reason,
        }
    }

    /// Inserts `rows`, places `from..` of the batch `label` (identity
    /// columns added when the sink has them and the batch a label). Rows
    /// the server refuses go where [`OnRejected`] says; finding them takes
    /// at most two requests per row.
    fn insert_rows(
        &self,
        label: Option<&str>,
        from: usize,
        rows: &[String],
    ) -> Result<(), ConnectorError> {
        let mut refused = Vec::new();
        self.insert_or_split(label, rows, from, &mut refused)?;
        if refused.is_empty() {
            return Ok(());
        }
        let first = &refused[0];
        let row: String = first.row.chars().take(300).collect();
        if self.on_rejected == OnRejected::FailJob {
            return Err(self.error(format!(
                "{} refused {} row(s), the first {row}: {}; fix the row or the table, or keep refused \
                 rows in {DEAD_LETTERS_TABLE} with .on_rejected(OnRejected::DeadLetter)",
                self.table,
                refused.len(),
                first.reason
            )));
        }
        tracing::warn!(table = %self.table, refused = refused.len(), first = %row, reason = %first.reason,
            "ClickHouse refused rows; they are in {DEAD_LETTERS_TABLE}");
        self.keep_refused(label, &refused)
    }

    /// Inserts `rows` (the batch's from place `from` on), or, when the
    /// server refuses some, each half on its own, down to single rows.
    fn insert_or_split<'a>(
        &self,
        label: Option<&str>,
        rows: &'a [String],
        from: usize,
        refused: &mut Vec<Refused<'a>>,
    ) -> Result<(), ConnectorError> {
        let body = match (label, self.identity) {
            (Some(label), true) => with_identity(label, from, rows),
            _ => rows.iter().flat_map(|r| [r.as_str(), "\n"]).collect(),
        };
        match self.insert(&body, rows.len()) {
            Ok(()) => Ok(()),
            Err(InsertError::Failed(e)) => Err(e),
            Err(InsertError::Refused(reason)) if rows.len() == 1 => {
                refused.push(Refused {
                    row: &rows[0],
                    seq: from,
                    reason,
                });
                Ok(())
            }
            Err(InsertError::Refused(_)) => {
                let half = rows.len() / 2;
                self.insert_or_split(label, &rows[..half], from, refused)?;
                self.insert_or_split(label, &rows[half..], from + half, refused)
            }
        }
    }

    /// Inserts the refused rows into [`DEAD_LETTERS_TABLE`] (created when
    /// missing), with the identity of the batch they came in.
    fn keep_refused(
        &self,
        label: Option<&str>,
        refused: &[Refused<'_>],
    ) -> Result<(), ConnectorError> {
        execute(&self.url, CREATE_DEAD_LETTERS)?;
        let batch = label.unwrap_or_default();
        let mut body = String::new();
        for r in refused {
            let line = serde_json::json!({
                "table": self.table,
                "row": r.row,
                "reason": r.reason,
                "_eddy_batch": batch,
                "_eddy_seq": r.seq,
            });
            body.push_str(&line.to_string());
            body.push('\n');
        }
        let query = format!("INSERT INTO {DEAD_LETTERS_TABLE} FORMAT JSONEachRow");
        self.post(&query, &body, refused.len())
            .map_err(|e| match e {
                InsertError::Refused(reason) => self.error(format!(
                    "{DEAD_LETTERS_TABLE} refused the refused rows: {reason}"
                )),
                InsertError::Failed(e) => e,
            })
    }

    /// Inserts `rows` (JSON objects, one per line) in one request, as one
    /// block: all or nothing unless the connection breaks mid-body.
    fn insert(&self, rows: &str, count: usize) -> Result<(), InsertError> {
        let query = format!("INSERT INTO {} FORMAT JSONEachRow", self.table);
        self.post(&query, rows, count)
    }

    /// Posts `body` for `query`, as one block of `count` rows.
    fn post(&self, query: &str, body: &str, count: usize) -> Result<(), InsertError> {
        let block = count.max(1_048_576).to_string();
        let mut response = self
            .agent
            .post(&self.url)
            .query("query", query)
            .query("max_insert_block_size", &block)
            .send(body)
            .map_err(|e| {
                InsertError::Failed(self.error(format!(
                    "cannot reach the server within {:?}: {e}; check that it is up",
                    self.timeout
                )))
            })?;
        if response.status().is_success() {
            return Ok(());
        }
        let reply = response.body_mut().read_to_string().unwrap_or_default();
        let reply = reply.trim();
        if refuses_data(reply) {
            return Err(InsertError::Refused(reply.to_owned()));
        }
        Err(InsertError::Failed(self.error(format!(
            "inserting into {} failed ({}): {reply}",
            self.table,
            response.status(),
        ))))
    }
}

/// Runs one statement (DDL such as `CREATE TABLE`, or a query) on the
/// server at `url` (the HTTP interface); returns its output.
///
/// # Errors
/// [`ConnectorError::ClickHouse`] naming the server, with its reply.
pub fn execute(url: &str, sql: &str) -> Result<String, ConnectorError> {
    let error = |reason: String| ConnectorError::ClickHouse {
        url: url.to_owned(),
        reason,
    };
    let mut response = agent(Duration::from_secs(30))
        .post(url)
        .send(sql)
        .map_err(|e| error(format!("cannot reach the server: {e}; check that it is up")))?;
    let body = response.body_mut().read_to_string().unwrap_or_default();
    if response.status().is_success() {
        Ok(body)
    } else {
        Err(error(format!(
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
                on_rejected: OnRejected::FailJob,
                buffer_bytes: DEFAULT_BUFFER_BYTES,
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

    /// What a row the server refuses (one it cannot parse into the table: a
    /// value out of range, a string where a number goes) does: with
    /// [`OnRejected::FailJob`] (the default) the job fails naming the table,
    /// the row and the server's reply; with [`OnRejected::DeadLetter`] the
    /// row goes, with the reply, to the table `eddy_dead_letters` (`table`,
    /// `row`, `reason`, and the batch identity, so replays collapse; created
    /// when missing) and the rest of the batch is inserted.
    pub fn on_rejected(self, policy: OnRejected) -> Self {
        self.with(|s| s.on_rejected = policy)
    }

    /// Exactly-once: how many bytes of rows (as JSON) a subtask holds in
    /// memory per checkpoint (default 32 MiB). Beyond that it writes them
    /// to a staging file in checkpoint storage (see
    /// [`RuntimeContext::staging_dir`]) and the commit inserts the file in
    /// INSERTs of about this size; the identity columns make a replay of
    /// any of them collapse into the rows already there.
    pub fn max_buffered_bytes(self, bytes: usize) -> Self {
        self.with(|s| s.buffer_bytes = bytes)
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
        let rows = batch
            .iter()
            .map(|record| json_row(&record.value))
            .collect::<Result<Vec<_>, _>>()?;
        self.settings.insert_rows(None, 0, &rows)?;
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
    /// The rows as JSON objects, in order (their `_eddy_seq`), in a staging
    /// file when they outgrew the sink's memory bound.
    pub rows: Staged<String>,
}

/// The request body of `rows`, places `from..` of the batch `label`: each
/// row with its identity columns added.
fn with_identity(label: &str, from: usize, rows: &[String]) -> String {
    let batch = serde_json::Value::from(label).to_string();
    let mut body = String::new();
    for (i, row) in rows.iter().enumerate() {
        let rest = &row[1..];
        let comma = if rest.trim_start().starts_with('}') {
            ""
        } else {
            ","
        };
        let seq = from + i;
        body.push_str(&format!(
            "{{\"_eddy_batch\":{batch},\"_eddy_seq\":{seq}{comma}{rest}\n"
        ));
    }
    body
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
            rows: StagingBuffer::new(ctx, self.settings.buffer_bytes),
            _type: std::marker::PhantomData,
        })
    }

    fn commit(&self, batch: &ClickHouseBatch) -> Result<(), BoxError> {
        let found = batch.rows.for_each_chunk(
            self.settings.buffer_bytes,
            String::len,
            |from, rows, _| {
                self.settings
                    .insert_rows(Some(&batch.batch), from as usize, rows)
            },
        )?;
        if !found {
            tracing::info!(batch = %batch.batch, "batch inserted before: its staging file is gone");
        }
        Ok(batch.rows.discard()?)
    }

    fn clean_up_after_restore(
        &self,
        ctx: &RuntimeContext,
        restored: &[&ClickHouseBatch],
    ) -> Result<(), BoxError> {
        Ok(staging::clean_up_after_restore(
            ctx,
            restored.iter().map(|b| &b.rows),
        )?)
    }
}

/// The writer of one exactly-once ClickHouse sink subtask: it collects the
/// rows of the current checkpoint, in memory up to the sink's bound and in
/// its staging file beyond it.
pub struct TransactionalClickHouseWriter<T> {
    prefix: String,
    rows: StagingBuffer<String>,
    _type: std::marker::PhantomData<fn(T)>,
}

impl<T: Data> TwoPhaseCommitWriter for TransactionalClickHouseWriter<T> {
    type In = T;
    type Committable = ClickHouseBatch;

    fn write(&mut self, batch: &mut Vec<Record<T>>) -> Result<(), BoxError> {
        for record in batch.drain(..) {
            let row = json_row(&record.value)?;
            let size = row.len();
            self.rows.push(row, size)?;
        }
        Ok(())
    }

    fn prepare(&mut self, id: CheckpointId) -> Result<Option<ClickHouseBatch>, BoxError> {
        Ok(self.rows.prepare()?.map(|rows| ClickHouseBatch {
            batch: format!("{}/{}", self.prefix, id.0),
            rows,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_get_their_identity_columns_first() -> Result<(), BoxError> {
        let rows = vec![r#"{"a":1}"#.into(), "{}".into()];
        assert_eq!(
            with_identity("s/0/ab/3", 0, &rows),
            "{\"_eddy_batch\":\"s/0/ab/3\",\"_eddy_seq\":0,\"a\":1}\n{\"_eddy_batch\":\"s/0/ab/3\",\"_eddy_seq\":1}\n"
        );
        assert!(json_row(&5u32).is_err());
        Ok(())
    }

    #[test]
    fn data_errors_are_told_from_other_failures_by_their_code() {
        assert!(refuses_data(
            "Code: 27, e.displayText() = DB::Exception: Cannot parse input: expected , before: x"
        ));
        assert!(!refuses_data(
            "Code: 60, e.displayText() = DB::Exception: Table default.t doesn't exist."
        ));
        assert!(!refuses_data("connection reset"));
    }
}
