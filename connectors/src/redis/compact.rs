//! [`Compacted`]: one checkpoint's Redis commands with the ones a later
//! command makes moot left out, so an upsert stream (a materialized view,
//! a profile rewritten by every window) holds and applies one write per key
//! and field per checkpoint, however many changes it had.
//!
//! The exactly-once sink applies a checkpoint's commands in one Lua script,
//! which Redis runs atomically: no client sees a state in between, so only
//! each key's final state counts, and commands on different keys may be
//! applied in any order. Per key, in arrival order:
//!
//! - `DEL` and `SET` replace the whole key: every earlier command on it goes.
//! - `HSET key field` replaces an earlier `HSET` of that field; an earlier
//!   `HINCRBY` of that field goes too (the `HSET` overwrites it).
//! - `HINCRBY key field by` after an `HINCRBY` of that field adds into it.
//! - `ZADD key score member` replaces an earlier `ZADD` of that member.
//! - `PEXPIRE key` replaces an earlier `PEXPIRE` of the key.
//! - `XADD` always stays.
//!
//! Except for `DEL`, `SET` and `PEXPIRE`, a command leaves alone what came
//! before a `PEXPIRE` of its key: that `PEXPIRE` sets a time to live only if
//! the key exists by then.

use std::collections::HashMap;

use super::command::RedisCommand;

/// A checkpoint's commands, compacted as they arrive.
#[derive(Default)]
pub(crate) struct Compacted {
    /// In arrival order; `None` where a later command made one moot.
    commands: Vec<Option<RedisCommand>>,
    /// Per key, the places in `commands` of its commands still there.
    by_key: HashMap<String, Vec<usize>>,
    /// About how much memory the pushed commands took (replaced ones
    /// included: their slots stay until [`take`](Self::take)).
    bytes: usize,
}

/// What a new command does to an earlier one on the same key.
enum Effect {
    /// The earlier one goes.
    Replaces,
    /// The new one is added into the earlier one (and not kept itself).
    MergesInto,
    /// Nothing.
    Keeps,
}

fn effect(new: &RedisCommand, old: &RedisCommand) -> Effect {
    use RedisCommand as C;
    match (new, old) {
        (C::Del { .. } | C::Set { .. }, _) => Effect::Replaces,
        (C::HSet { field: f, .. }, C::HSet { field: g, .. } | C::HIncrBy { field: g, .. })
            if f == g =>
        {
            Effect::Replaces
        }
        (C::HIncrBy { field: f, .. }, C::HIncrBy { field: g, .. }) if f == g => Effect::MergesInto,
        (C::ZAdd { member: m, .. }, C::ZAdd { member: n, .. }) if m == n => Effect::Replaces,
        (C::Expire { .. }, C::Expire { .. }) => Effect::Replaces,
        _ => Effect::Keeps,
    }
}

fn key(c: &RedisCommand) -> &str {
    match c {
        RedisCommand::Set { key, .. }
        | RedisCommand::HSet { key, .. }
        | RedisCommand::HIncrBy { key, .. }
        | RedisCommand::ZAdd { key, .. }
        | RedisCommand::XAdd { key, .. }
        | RedisCommand::Del { key }
        | RedisCommand::Expire { key, .. } => key,
    }
}

impl Compacted {
    /// Adds `command` after the ones before it.
    pub(crate) fn push(&mut self, command: RedisCommand) {
        self.bytes += command.size() + std::mem::size_of::<usize>();
        let places = self.by_key.entry(key(&command).to_owned()).or_default();
        // A `PEXPIRE` acts only if the key exists then: what made the key
        // exist before one must stay before it.
        let wipes = matches!(
            command,
            RedisCommand::Del { .. } | RedisCommand::Set { .. } | RedisCommand::Expire { .. }
        );
        let last_expire = places
            .iter()
            .copied()
            .filter(|&i| matches!(self.commands[i], Some(RedisCommand::Expire { .. })))
            .max();
        let mut merged = false;
        places.retain(|&i| {
            let Some(old) = self.commands[i].as_mut() else {
                return false;
            };
            if !wipes && last_expire.is_some_and(|e| i < e) {
                return true;
            }
            match effect(&command, old) {
                Effect::Replaces => {
                    self.commands[i] = None;
                    false
                }
                Effect::MergesInto => {
                    if let (
                        RedisCommand::HIncrBy { by: into, .. },
                        RedisCommand::HIncrBy { by, .. },
                    ) = (old, &command)
                    {
                        *into = into.saturating_add(*by);
                        merged = true;
                    }
                    true
                }
                Effect::Keeps => true,
            }
        });
        if !merged {
            places.push(self.commands.len());
            self.commands.push(Some(command));
        }
    }

    /// About how many bytes the commands pushed since the last
    /// [`take`](Self::take) hold.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Takes the commands, in an order that leaves Redis as the commands as
    /// pushed would.
    pub(crate) fn take(&mut self) -> Vec<RedisCommand> {
        self.by_key.clear();
        self.bytes = 0;
        std::mem::take(&mut self.commands)
            .into_iter()
            .flatten()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    /// What a key holds in the model below.
    #[derive(Clone, Debug, PartialEq)]
    enum Value {
        Str(String),
        Hash(BTreeMap<String, String>),
        ZSet(BTreeMap<String, u64>),
        Stream(Vec<Vec<(String, String)>>),
    }

    /// A brute-force Redis: every key's value and TTL; `Err` for a command
    /// on a key of another type (Redis's WRONGTYPE) or a non-integer field.
    #[derive(Debug, Default, PartialEq)]
    struct Model {
        keys: BTreeMap<String, (Value, Option<u64>)>,
    }

    impl Model {
        fn apply(&mut self, c: &RedisCommand) -> Result<(), ()> {
            use RedisCommand as C;
            match c {
                C::Set { key, value, ttl_ms } => {
                    self.keys
                        .insert(key.clone(), (Value::Str(value.clone()), *ttl_ms));
                }
                C::Del { key } => {
                    self.keys.remove(key);
                }
                C::Expire { key, ttl_ms } => {
                    if let Some(entry) = self.keys.get_mut(key) {
                        entry.1 = Some(*ttl_ms);
                    }
                }
                C::HSet { key, field, value } => {
                    match self.entry(key, Value::Hash(BTreeMap::new())) {
                        Value::Hash(h) => {
                            h.insert(field.clone(), value.clone());
                        }
                        _ => return Err(()),
                    }
                }
                C::HIncrBy { key, field, by } => {
                    match self.entry(key, Value::Hash(BTreeMap::new())) {
                        Value::Hash(h) => {
                            let now: i64 =
                                h.get(field).map_or(Ok(0), |v| v.parse()).map_err(|_| ())?;
                            h.insert(field.clone(), (now + by).to_string());
                        }
                        _ => return Err(()),
                    }
                }
                C::ZAdd { key, score, member } => {
                    match self.entry(key, Value::ZSet(BTreeMap::new())) {
                        Value::ZSet(z) => {
                            z.insert(member.clone(), score.to_bits());
                        }
                        _ => return Err(()),
                    }
                }
                C::XAdd { key, fields } => match self.entry(key, Value::Stream(Vec::new())) {
                    Value::Stream(s) => s.push(fields.clone()),
                    _ => return Err(()),
                },
            }
            Ok(())
        }

        fn entry(&mut self, key: &str, empty: Value) -> &mut Value {
            &mut self.keys.entry(key.to_owned()).or_insert((empty, None)).0
        }
    }

    fn command() -> impl Strategy<Value = RedisCommand> {
        let key = prop::sample::select(vec!["a", "b", "c"]).prop_map(str::to_owned);
        let field = prop::sample::select(vec!["x", "y"]).prop_map(str::to_owned);
        let value = (0u8..4).prop_map(|v| v.to_string());
        prop_oneof![
            (key.clone(), value.clone(), prop::option::of(1u64..3))
                .prop_map(|(key, value, ttl_ms)| RedisCommand::Set { key, value, ttl_ms }),
            (key.clone(), field.clone(), value.clone())
                .prop_map(|(key, field, value)| RedisCommand::HSet { key, field, value }),
            (key.clone(), field.clone(), -3i64..4)
                .prop_map(|(key, field, by)| RedisCommand::HIncrBy { key, field, by }),
            (key.clone(), 0u8..3, field.clone()).prop_map(|(key, s, member)| RedisCommand::ZAdd {
                key,
                score: f64::from(s),
                member
            }),
            (key.clone(), value).prop_map(|(key, v)| RedisCommand::XAdd {
                key,
                fields: vec![("v".into(), v)]
            }),
            key.clone().prop_map(|key| RedisCommand::Del { key }),
            (key, 1u64..3).prop_map(|(key, ttl_ms)| RedisCommand::Expire { key, ttl_ms }),
        ]
    }

    proptest! {
        /// Whatever the commands, the compacted ones leave the model as the
        /// originals do — or the originals failed (a script that fails is
        /// not an outcome to keep).
        #[test]
        fn compacted_commands_leave_redis_as_the_originals(
            commands in prop::collection::vec(command(), 0..40)
        ) {
            let mut want = Model::default();
            let failed = commands.iter().any(|c| want.apply(c).is_err());
            let mut buffer = Compacted::default();
            for c in &commands {
                buffer.push(c.clone());
            }
            let compacted = buffer.take();
            prop_assert!(compacted.len() <= commands.len());
            if !failed {
                let mut got = Model::default();
                for c in &compacted {
                    prop_assert!(got.apply(c).is_ok(), "{:?} failed", c);
                }
                prop_assert_eq!(got, want);
            }
        }
    }

    #[test]
    fn an_upsert_stream_holds_one_write_per_key_and_field() {
        let mut buffer = Compacted::default();
        for i in 0..1_000 {
            buffer.push(RedisCommand::HSet {
                key: format!("customer:{}", i % 10),
                field: "total".into(),
                value: i.to_string(),
            });
        }
        buffer.push(RedisCommand::Del {
            key: "customer:3".into(),
        });
        let commands = buffer.take();
        assert_eq!(commands.len(), 10);
        assert!(commands.contains(&RedisCommand::HSet {
            key: "customer:9".into(),
            field: "total".into(),
            value: "999".into(),
        }));
    }
}
