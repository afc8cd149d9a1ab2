//! The commands a Redis sink applies.

use serde::{Deserialize, Serialize};

/// One write to Redis, made from a record by the sink's mapping.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RedisCommand {
    /// `SET key value [PX ttl_ms]`.
    Set {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Time to live in milliseconds.
        ttl_ms: Option<u64>,
    },
    /// `HSET key field value`.
    HSet {
        /// The hash.
        key: String,
        /// The field.
        field: String,
        /// The value.
        value: String,
    },
    /// `HINCRBY key field by` (not idempotent: exactly once needs
    /// [`RedisSink::exactly_once`](super::RedisSink::exactly_once)).
    HIncrBy {
        /// The hash.
        key: String,
        /// The field.
        field: String,
        /// The increment.
        by: i64,
    },
    /// `ZADD key score member`.
    ZAdd {
        /// The sorted set.
        key: String,
        /// The score.
        score: f64,
        /// The member.
        member: String,
    },
    /// `XADD key * field value …` (not idempotent).
    XAdd {
        /// The stream.
        key: String,
        /// The entry's fields.
        fields: Vec<(String, String)>,
    },
    /// `DEL key` (a changelog's delete).
    Del {
        /// The key.
        key: String,
    },
    /// `PEXPIRE key ttl_ms`.
    Expire {
        /// The key.
        key: String,
        /// Time to live in milliseconds.
        ttl_ms: u64,
    },
}

impl RedisCommand {
    /// The command's words: its name, then its arguments.
    pub(crate) fn words(&self) -> Vec<String> {
        let mut w: Vec<String> = match self {
            RedisCommand::Set { key, value, ttl_ms } => {
                let mut w = vec!["SET".into(), key.clone(), value.clone()];
                if let Some(ttl) = ttl_ms {
                    w.extend(["PX".into(), ttl.to_string()]);
                }
                w
            }
            RedisCommand::HSet { key, field, value } => {
                vec!["HSET".into(), key.clone(), field.clone(), value.clone()]
            }
            RedisCommand::HIncrBy { key, field, by } => {
                vec!["HINCRBY".into(), key.clone(), field.clone(), by.to_string()]
            }
            RedisCommand::ZAdd { key, score, member } => {
                vec![
                    "ZADD".into(),
                    key.clone(),
                    score.to_string(),
                    member.clone(),
                ]
            }
            RedisCommand::XAdd { key, fields } => {
                let mut w = vec!["XADD".into(), key.clone(), "*".into()];
                for (f, v) in fields {
                    w.extend([f.clone(), v.clone()]);
                }
                w
            }
            RedisCommand::Del { key } => vec!["DEL".into(), key.clone()],
            RedisCommand::Expire { key, ttl_ms } => {
                vec!["PEXPIRE".into(), key.clone(), ttl_ms.to_string()]
            }
        };
        w.shrink_to_fit();
        w
    }

    /// About how many bytes the command takes in memory.
    pub(crate) fn size(&self) -> usize {
        let text = match self {
            RedisCommand::Set { key, value, .. } => key.len() + value.len(),
            RedisCommand::HSet { key, field, value } => key.len() + field.len() + value.len(),
            RedisCommand::HIncrBy { key, field, .. } => key.len() + field.len(),
            RedisCommand::ZAdd { key, member, .. } => key.len() + member.len(),
            RedisCommand::XAdd { key, fields } => {
                key.len()
                    + fields
                        .iter()
                        .map(|(f, v)| f.len() + v.len() + 48)
                        .sum::<usize>()
            }
            RedisCommand::Del { key } | RedisCommand::Expire { key, .. } => key.len(),
        };
        std::mem::size_of::<Self>() + text
    }

    /// A malformed command, before anything is sent: Redis cannot roll a
    /// script back, so every command is checked before it runs.
    pub(crate) fn check(&self) -> Result<(), String> {
        match self {
            RedisCommand::XAdd { fields, .. } if fields.is_empty() => {
                Err("XADD needs at least one field".into())
            }
            RedisCommand::ZAdd { score, .. } if score.is_nan() => {
                Err("ZADD needs a score that is a number, not NaN".into())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_spell_out_as_redis_words() {
        let set = RedisCommand::Set {
            key: "k".into(),
            value: "v".into(),
            ttl_ms: Some(5),
        };
        assert_eq!(set.words(), ["SET", "k", "v", "PX", "5"]);
        let xadd = RedisCommand::XAdd {
            key: "s".into(),
            fields: vec![("a".into(), "1".into())],
        };
        assert_eq!(xadd.words(), ["XADD", "s", "*", "a", "1"]);
        assert!(RedisCommand::XAdd {
            key: "s".into(),
            fields: vec![]
        }
        .check()
        .is_err());
    }
}
