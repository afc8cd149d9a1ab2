//! `KeyedStream<K, T>`: a stream partitioned by key, on which keyed state and
//! timers are available.

use std::marker::PhantomData;
use std::sync::Arc;

use crate::context::RuntimeContext;
use crate::dsl::stream::DataStream;
use crate::element::{Data, Key};
use crate::graph::erased::OperatorNode;
use crate::operator::Operator;
use crate::process::{KeySelector, KeyedProcessFunction, KeyedProcessOperator};

/// A stream partitioned by a key of type `K`.
pub struct KeyedStream<K, T> {
    stream: DataStream<T>,
    unkeyed: DataStream<T>,
    key: KeySelector<T, K>,
}

impl<K, T> Clone for KeyedStream<K, T> {
    fn clone(&self) -> Self {
        KeyedStream {
            stream: self.stream.clone(),
            unkeyed: self.unkeyed.clone(),
            key: Arc::clone(&self.key),
        }
    }
}

impl<K: Key, T: Data> KeyedStream<K, T> {
    pub(crate) fn new(
        stream: DataStream<T>,
        unkeyed: DataStream<T>,
        key: KeySelector<T, K>,
    ) -> Self {
        KeyedStream {
            stream,
            unkeyed,
            key,
        }
    }

    /// The key selector.
    pub fn key_selector(&self) -> KeySelector<T, K> {
        Arc::clone(&self.key)
    }

    /// The partitioned stream underneath (for extension traits).
    pub fn stream(&self) -> &DataStream<T> {
        &self.stream
    }

    /// The stream before `key_by` (for extension traits that transform the
    /// records before partitioning them, e.g. joins).
    pub fn unkeyed(&self) -> &DataStream<T> {
        &self.unkeyed
    }

    /// Adds a custom keyed [`Operator`]; `make` builds one instance per
    /// subtask and receives the key selector.
    pub fn transform<Op, F>(&self, name: &str, make: F) -> DataStream<Op::Out>
    where
        Op: Operator<In = T>,
        F: Fn(&RuntimeContext, KeySelector<T, K>) -> Op + Send + Sync + 'static,
    {
        let key = Arc::clone(&self.key);
        let node = OperatorNode {
            make: move |ctx: &RuntimeContext| make(ctx, Arc::clone(&key)),
            _op: PhantomData,
        };
        self.stream.add_stage(name, Arc::new(node), true)
    }

    /// Runs `f` on every record with keyed state and timers.
    pub fn process<O: Data, F>(&self, f: F) -> DataStream<O>
    where
        F: KeyedProcessFunction<K, T, O> + Clone + Sync,
    {
        self.transform("KeyedProcess", move |ctx, key| {
            KeyedProcessOperator::new(f.clone(), key, ctx)
        })
    }
}
