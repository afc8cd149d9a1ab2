//! [`RedisSink`]: maps records to commands and applies them, pipelined per
//! batch, at least once.

use std::sync::Arc;
use std::time::Duration;

use eddy_engine::context::RuntimeContext;
use eddy_engine::element::{Data, Record};
use eddy_engine::error::BoxError;
use eddy_engine::sink::{Sink, SinkWriter};
use eddy_engine::two_phase::ExactlyOnce;

use super::command::RedisCommand;
use super::transactional::TransactionalRedisSink;
use crate::error::ConnectorError;
use crate::rejected::OnRejected;
use crate::staging::DEFAULT_BUFFER_BYTES;

type Mapping<T> = Arc<dyn Fn(&T) -> Vec<RedisCommand> + Send + Sync>;

/// Where and how a Redis sink writes; shared by both guarantees.
#[derive(Clone)]
pub(crate) struct RedisSettings<T> {
    pub url: String,
    pub mapping: Mapping<T>,
    pub timeout: Duration,
    /// Names this sink's epochs in `eddy:sink-commits`.
    pub name: Option<String>,
    /// Exactly-once: what a command Redis refuses does.
    pub on_rejected: OnRejected,
    /// Exactly-once: the bytes of commands a subtask holds in memory per
    /// checkpoint before it moves them to its staging file, and about the
    /// size of one script that applies them.
    pub buffer_bytes: usize,
}

impl<T> RedisSettings<T> {
    /// An error naming the server.
    pub(crate) fn error(&self, reason: String) -> ConnectorError {
        ConnectorError::Redis {
            url: self.url.clone(),
            reason,
        }
    }

    /// A connection, or an error naming the server and what to check.
    pub(crate) fn connect(&self) -> Result<redis::Connection, ConnectorError> {
        let client = redis::Client::open(self.url.as_str())
            .map_err(|e| self.error(format!("not a Redis URL: {e}")))?;
        let con = client
            .get_connection_with_timeout(self.timeout)
            .map_err(|e| {
                self.error(format!(
                    "cannot connect within {:?}: {e}; check that the server is up",
                    self.timeout
                ))
            })?;
        con.set_read_timeout(Some(self.timeout))
            .and_then(|()| con.set_write_timeout(Some(self.timeout)))
            .map_err(|e| self.error(e.to_string()))?;
        Ok(con)
    }

    /// The commands for `record`, checked.
    pub(crate) fn commands(&self, record: &T) -> Result<Vec<RedisCommand>, ConnectorError> {
        let commands = (self.mapping)(record);
        for c in &commands {
            c.check()
                .map_err(|reason| self.error(format!("{reason}: {c:?}")))?;
        }
        Ok(commands)
    }
}

/// A sink that applies the [`RedisCommand`]s `mapping` makes of each
/// record. As built it writes at least once (a restarted job applies again
/// what it applied after its checkpoint): use idempotent commands (`SET`,
/// `HSET`, `ZADD`, `DEL`, `PEXPIRE`), or [`exactly_once`](Self::exactly_once).
pub struct RedisSink<T> {
    settings: Arc<RedisSettings<T>>,
}

impl<T: Data> RedisSink<T> {
    /// Writes to the server at `url` (`redis://host:port[/db]`).
    pub fn new(
        url: impl Into<String>,
        mapping: impl Fn(&T) -> Vec<RedisCommand> + Send + Sync + 'static,
    ) -> Self {
        RedisSink {
            settings: Arc::new(RedisSettings {
                url: url.into(),
                mapping: Arc::new(mapping),
                timeout: Duration::from_secs(10),
                name: None,
                on_rejected: OnRejected::FailJob,
                buffer_bytes: DEFAULT_BUFFER_BYTES,
            }),
        }
    }

    fn with(mut self, change: impl FnOnce(&mut RedisSettings<T>)) -> Self {
        change(Arc::make_mut(&mut self.settings));
        self
    }

    /// How long connecting and each request may take (default 10 s).
    pub fn timeout(self, timeout: Duration) -> Self {
        self.with(|s| s.timeout = timeout)
    }

    /// Exactly-once: the name under which this sink records its epochs
    /// (default `<job>/<sink uid>`). Two jobs writing at the same time must
    /// not share one.
    pub fn name(self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.with(|s| s.name = Some(name))
    }

    /// Exactly-once: what a command Redis refuses (e.g. `HINCRBY` on a
    /// field that is not a number, a hash command on a string) does. Either
    /// way the script applies the checkpoint's other commands, records the
    /// epoch, and adds the refused command with Redis's reply to the stream
    /// `eddy:dead-letters` (fields `sink`, `checkpoint`, `command`,
    /// `reply`), in the same atomic script. With [`OnRejected::FailJob`]
    /// (the default) the commit then fails the job, naming the command and
    /// the reply; with [`OnRejected::DeadLetter`] it goes on.
    pub fn on_rejected(self, policy: OnRejected) -> Self {
        self.with(|s| s.on_rejected = policy)
    }

    /// Exactly-once: how many bytes of commands (about) a subtask holds in
    /// memory per checkpoint (default 32 MiB, compacted). Beyond that it
    /// writes them to a staging file in checkpoint storage (see
    /// [`RuntimeContext::staging_dir`](eddy_engine::context::RuntimeContext::staging_dir))
    /// and the commit applies the file in scripts of about this size, each
    /// recorded as it applies, so a replay resumes after the last one. Other
    /// clients can then see a checkpoint's changes part applied while it
    /// commits; with them in memory they see all or none.
    pub fn max_buffered_bytes(self, bytes: usize) -> Self {
        self.with(|s| s.buffer_bytes = bytes)
    }

    /// The exactly-once sink writing where this one would.
    pub fn exactly_once(self) -> ExactlyOnce<TransactionalRedisSink<T>> {
        ExactlyOnce::new(self.transactional())
    }

    /// The two-phase-commit sink under [`exactly_once`](Self::exactly_once),
    /// for tests and custom adapters.
    pub fn transactional(self) -> TransactionalRedisSink<T> {
        TransactionalRedisSink::new(self.settings)
    }
}

impl<T: Data> Sink for RedisSink<T> {
    type In = T;
    type Writer = RedisWriter<T>;

    fn create_writer(&self, _ctx: &RuntimeContext) -> Result<RedisWriter<T>, BoxError> {
        Ok(RedisWriter {
            con: self.settings.connect()?,
            settings: Arc::clone(&self.settings),
        })
    }
}

/// The writer of one at-least-once [`RedisSink`] subtask.
pub struct RedisWriter<T> {
    con: redis::Connection,
    settings: Arc<RedisSettings<T>>,
}

impl<T: Data> SinkWriter for RedisWriter<T> {
    type In = T;

    fn write(&mut self, batch: &mut Vec<Record<T>>) -> Result<(), BoxError> {
        let mut pipe = redis::pipe();
        for record in batch.drain(..) {
            for command in self.settings.commands(&record.value)? {
                let mut words = command.words().into_iter();
                let mut cmd = redis::cmd(&words.next().unwrap_or_default());
                for w in words {
                    cmd.arg(w);
                }
                pipe.add_command(cmd).ignore();
            }
        }
        pipe.query::<()>(&mut self.con)
            .map_err(|e| self.settings.error(format!("writing failed: {e}")))?;
        Ok(())
    }

    fn finish(&mut self) -> Result<(), BoxError> {
        Ok(())
    }
}
