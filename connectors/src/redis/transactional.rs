//! [`TransactionalRedisSink`]: a checkpoint's commands applied once, in one
//! Lua script that records the epoch with them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use eddy_engine::context::RuntimeContext;
use eddy_engine::element::{CheckpointId, Data, Record};
use eddy_engine::error::BoxError;
use eddy_engine::two_phase::{TwoPhaseCommitSink, TwoPhaseCommitWriter};
use serde::{Deserialize, Serialize};

use crate::rejected::OnRejected;
use crate::run_id::writer_label;

use super::command::RedisCommand;
use super::compact::Compacted;
use super::sink::RedisSettings;

/// The hash where every exactly-once Redis sink records its applied epochs.
pub const COMMITS_KEY: &str = "eddy:sink-commits";

/// The stream where exactly-once Redis sinks keep the commands Redis
/// refused, with its reply.
pub const DEAD_LETTERS_KEY: &str = "eddy:dead-letters";

/// Applies a checkpoint's commands unless its epoch is recorded already,
/// and records it. A command Redis refuses goes, with the reply, to the
/// dead-letter stream (KEYS[2]); the rest still apply. ARGV: marker field,
/// epoch, then per command its word count and words. Returns
/// `{applied, refused, first refused command and reply}`.
const APPLY: &str = r"
local done = redis.call('HGET', KEYS[1], ARGV[1])
if done and tonumber(done) >= tonumber(ARGV[2]) then
  return {0, 0, ''}
end
local refused, first = 0, ''
local i = 3
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  local reply = redis.pcall(unpack(ARGV, i + 1, i + n))
  if type(reply) == 'table' and reply.err then
    local command = table.concat({unpack(ARGV, i + 1, i + n)}, ' ')
    refused = refused + 1
    if refused == 1 then first = string.sub(command, 1, 200) .. ': ' .. reply.err end
    redis.call('XADD', KEYS[2], '*', 'sink', ARGV[1], 'checkpoint', ARGV[2],
      'command', command, 'reply', reply.err)
  end
  i = i + n + 1
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return {1, refused, first}
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
    /// Epochs with refused commands whose commit failed the job (with
    /// [`OnRejected::FailJob`]): committing one again fails again, though
    /// Redis has recorded it.
    refused: Mutex<HashMap<(String, u64), String>>,
}

impl<T: Data> TransactionalRedisSink<T> {
    pub(crate) fn new(settings: Arc<RedisSettings<T>>) -> Self {
        TransactionalRedisSink {
            settings,
            script: redis::Script::new(APPLY),
            con: Mutex::new(None),
            refused: Mutex::new(HashMap::new()),
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
        let id = (epoch.marker.clone(), epoch.epoch);
        if let Some(reason) = self.refused.lock().map_err(|_| "poisoned")?.get(&id) {
            return Err(self.settings.error(reason.clone()).into());
        }
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(COMMITS_KEY)
            .key(DEAD_LETTERS_KEY)
            .arg(&epoch.marker)
            .arg(epoch.epoch.to_string());
        for command in &epoch.commands {
            let words = command.words();
            invocation.arg(words.len());
            for w in words {
                invocation.arg(w);
            }
        }
        match invocation.invoke::<(i64, u64, String)>(c) {
            Ok((_, 0, _)) => Ok(()),
            Ok((_, refused, first)) => {
                let reason = format!(
                    "Redis refused {refused} command(s) of checkpoint {} (first: {first}); \
                     they are in the stream {DEAD_LETTERS_KEY} with Redis's replies, the other \
                     commands applied",
                    epoch.epoch
                );
                tracing::warn!(sink = %epoch.marker, "{reason}");
                if self.settings.on_rejected == OnRejected::DeadLetter {
                    return Ok(());
                }
                self.refused
                    .lock()
                    .map_err(|_| "poisoned")?
                    .insert(id, reason.clone());
                Err(self.settings.error(reason).into())
            }
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
