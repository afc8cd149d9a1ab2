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
use crate::staging::{self, Staged, StagingBuffer};

use super::command::RedisCommand;
use super::compact::Compacted;
use super::sink::RedisSettings;

/// The hash where every exactly-once Redis sink records its applied epochs.
pub const COMMITS_KEY: &str = "eddy:sink-commits";

/// The stream where exactly-once Redis sinks keep the commands Redis
/// refused, with its reply.
pub const DEAD_LETTERS_KEY: &str = "eddy:dead-letters";

/// Applies a part of a checkpoint's commands, but those Redis has recorded
/// as applied already, and records how far it got: a field of KEYS[1]
/// holds the epoch once its last part is applied, and `epoch:n` (its first
/// n commands applied) before. So a replay resumes where an interrupted
/// commit stopped, however its parts are cut. A command Redis refuses
/// goes, with the reply, to the dead-letter stream (KEYS[2]); the rest
/// still apply. ARGV: marker field, epoch, the place of the part's first
/// command in the checkpoint, `1` when it is the last part, then per
/// command its word count and words. Returns `{applied, refused, first
/// refused command and reply}`.
const APPLY: &str = r"
local epoch, first = tonumber(ARGV[2]), tonumber(ARGV[3])
local skip = 0
local done = redis.call('HGET', KEYS[1], ARGV[1])
if done then
  local colon = string.find(done, ':', 1, true)
  local done_epoch, done_commands = tonumber(done), math.huge
  if colon then
    done_epoch = tonumber(string.sub(done, 1, colon - 1))
    done_commands = tonumber(string.sub(done, colon + 1))
  end
  if done_epoch > epoch then return {0, 0, ''} end
  if done_epoch == epoch then skip = done_commands - first end
end
local refused, first_refused, place, applied = 0, '', first, 0
local i = 5
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  if place >= first + skip then
    applied = applied + 1
    local reply = redis.pcall(unpack(ARGV, i + 1, i + n))
    if type(reply) == 'table' and reply.err then
      local command = table.concat({unpack(ARGV, i + 1, i + n)}, ' ')
      refused = refused + 1
      if refused == 1 then first_refused = string.sub(command, 1, 200) .. ': ' .. reply.err end
      redis.call('XADD', KEYS[2], '*', 'sink', ARGV[1], 'checkpoint', ARGV[2],
        'command', command, 'reply', reply.err)
    end
  end
  place = place + 1
  i = i + n + 1
end
if applied == 0 then return {0, 0, ''} end
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. place)
end
return {1, refused, first_refused}
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
    /// they leave Redis as the checkpoint's commands as made would. In a
    /// staging file when they outgrew the sink's memory bound; then
    /// compacted per part that fitted.
    pub commands: Staged<RedisCommand>,
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
            staged: StagingBuffer::new(ctx, self.settings.buffer_bytes),
        })
    }

    fn commit(&self, epoch: &RedisEpoch) -> Result<(), BoxError> {
        let id = (epoch.marker.clone(), epoch.epoch);
        if let Some(reason) = self.refused.lock().map_err(|_| "poisoned")?.get(&id) {
            return Err(self.settings.error(reason.clone()).into());
        }
        let found = epoch.commands.for_each_chunk(
            self.settings.buffer_bytes,
            RedisCommand::size,
            |first, commands, last| self.apply(epoch, first, commands, last),
        )?;
        if !found {
            tracing::info!(sink = %epoch.marker, checkpoint = epoch.epoch,
                "checkpoint applied before: its staging file is gone");
        }
        Ok(epoch.commands.discard()?)
    }

    fn clean_up_after_restore(
        &self,
        ctx: &RuntimeContext,
        restored: &[&RedisEpoch],
    ) -> Result<(), BoxError> {
        Ok(staging::clean_up_after_restore(
            ctx,
            restored.iter().map(|e| &e.commands),
        )?)
    }
}

impl<T: Data> TransactionalRedisSink<T> {
    /// Applies `commands`, the part of those of `epoch` from place `first`
    /// on, in one script, but those Redis has recorded as applied.
    fn apply(
        &self,
        epoch: &RedisEpoch,
        first: u64,
        commands: &[RedisCommand],
        last: bool,
    ) -> Result<(), BoxError> {
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
            .key(DEAD_LETTERS_KEY)
            .arg(&epoch.marker)
            .arg(epoch.epoch.to_string())
            .arg(first.to_string())
            .arg(if last { "1" } else { "0" });
        for command in commands {
            let words = command.words();
            invocation.arg(words.len());
            for w in words {
                invocation.arg(w);
            }
        }
        match invocation.invoke::<(i64, u64, String)>(c) {
            Ok((_, 0, _)) => Ok(()),
            Ok((_, refused, first_refused)) => {
                let reason = format!(
                    "Redis refused {refused} command(s) of checkpoint {} (first: {first_refused}); \
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
                    .insert((epoch.marker.clone(), epoch.epoch), reason.clone());
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
/// commands of the current checkpoint, compacted, and moves them to its
/// staging file whenever they outgrow the sink's memory bound.
pub struct TransactionalRedisWriter<T> {
    settings: Arc<RedisSettings<T>>,
    marker: String,
    commands: Compacted,
    staged: StagingBuffer<RedisCommand>,
}

impl<T> TransactionalRedisWriter<T> {
    /// Moves the compacted commands into the staging buffer.
    fn stage(&mut self) -> Result<(), BoxError> {
        for command in self.commands.take() {
            let size = command.size();
            self.staged.push(command, size)?;
        }
        Ok(())
    }
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
        if self.commands.bytes() > self.settings.buffer_bytes {
            self.stage()?;
            self.staged.spill()?;
        }
        Ok(())
    }

    fn prepare(&mut self, id: CheckpointId) -> Result<Option<RedisEpoch>, BoxError> {
        self.stage()?;
        Ok(self.staged.prepare()?.map(|commands| RedisEpoch {
            marker: self.marker.clone(),
            epoch: id.0,
            commands,
        }))
    }
}
