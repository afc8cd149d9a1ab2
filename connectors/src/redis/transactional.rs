//! [`TransactionalRedisSink`]: a checkpoint's commands applied once, in one
//! Lua script that records the epoch with them.

use std::sync::{Arc, Mutex};

use eddy_engine::context::RuntimeContext;
use eddy_engine::element::{CheckpointId, Data, Record};
use eddy_engine::error::BoxError;
use eddy_engine::two_phase::{TwoPhaseCommitSink, TwoPhaseCommitWriter};
use serde::{Deserialize, Serialize};

use crate::run_id::writer_label;

use super::command::RedisCommand;
use super::compact::Compacted;
use super::sink::RedisSettings;

/// The hash where every exactly-once Redis sink records its applied epochs.
pub const COMMITS_KEY: &str = "eddy:sink-commits";

/// Applies a checkpoint's commands unless its epoch is recorded already,
/// and records it. ARGV: marker field, epoch, then per command its word
/// count and words.
const APPLY: &str = r"
local done = redis.call('HGET', KEYS[1], ARGV[1])
if done and tonumber(done) >= tonumber(ARGV[2]) then
  return 0
end
local i = 3
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
";

/// One subtask's commands of one checkpoint, waiting for their commit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RedisEpoch {
    /// The field of `eddy:sink-commits` that records this writer run's
    /// applied epochs: `<sink>/<subtask>/<lineage>`.
    pub marker: String,
    /// The checkpoint.
    pub epoch: u64,
    /// The commands, compacted (see `compact.rs`): applied in this order,
    /// they leave Redis as the checkpoint's commands as made would.
    pub commands: Vec<RedisCommand>,
}

/// The exactly-once Redis sink; made by [`RedisSink::exactly_once`](super::RedisSink::exactly_once).
pub struct TransactionalRedisSink<T> {
    settings: Arc<RedisSettings<T>>,
    script: redis::Script,
    con: Mutex<Option<redis::Connection>>,
}

impl<T: Data> TransactionalRedisSink<T> {
    pub(crate) fn new(settings: Arc<RedisSettings<T>>) -> Self {
        TransactionalRedisSink {
            settings,
            script: redis::Script::new(APPLY),
            con: Mutex::new(None),
        }
    }
}

impl<T: Data> TwoPhaseCommitSink for TransactionalRedisSink<T> {
    type In = T;
    type Committable = RedisEpoch;
    type Writer = TransactionalRedisWriter<T>;

    fn create_writer(&self, ctx: &RuntimeContext) -> Result<Self::Writer, BoxError> {
        Ok(TransactionalRedisWriter {
            settings: Arc::clone(&self.settings),
            marker: writer_label(self.settings.name.as_deref(), ctx),
            commands: Compacted::default(),
        })
    }

    fn commit(&self, epoch: &RedisEpoch) -> Result<(), BoxError> {
        let mut con = self.con.lock().map_err(|_| "connection poisoned")?;
        if con.is_none() {
            *con = Some(self.settings.connect()?);
        }
        let Some(c) = con.as_mut() else {
            return Err("no connection".into());
        };
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(COMMITS_KEY)
            .arg(&epoch.marker)
            .arg(epoch.epoch.to_string());
        for command in &epoch.commands {
            let words = command.words();
            invocation.arg(words.len());
            for w in words {
                invocation.arg(w);
            }
        }
        match invocation.invoke::<i64>(c) {
            Ok(_) => Ok(()),
            Err(e) => {
                // A fresh connection for the retry.
                *con = None;
                Err(self
                    .settings
                    .error(format!("applying checkpoint {} failed: {e}", epoch.epoch))
                    .into())
            }
        }
    }
}

/// The writer of one exactly-once Redis sink subtask: it collects the
/// commands of the current checkpoint.
pub struct TransactionalRedisWriter<T> {
    settings: Arc<RedisSettings<T>>,
    marker: String,
    commands: Compacted,
}

impl<T: Data> TwoPhaseCommitWriter for TransactionalRedisWriter<T> {
    type In = T;
    type Committable = RedisEpoch;

    fn write(&mut self, batch: &mut Vec<Record<T>>) -> Result<(), BoxError> {
        for record in batch.drain(..) {
            for command in self.settings.commands(&record.value)? {
                self.commands.push(command);
            }
        }
        Ok(())
    }

    fn prepare(&mut self, id: CheckpointId) -> Result<Option<RedisEpoch>, BoxError> {
        if self.commands.len() == 0 {
            return Ok(None);
        }
        Ok(Some(RedisEpoch {
            marker: self.marker.clone(),
            epoch: id.0,
            commands: self.commands.take(),
        }))
    }
}
