//! `DataStream<T>`: a typed stream of records and the transformations on it.
//!
//! Transformations take `&self`, so one stream can feed several operators;
//! property setters (`uid`, `name`, `parallelism`, …) take `self` and apply to
//! the operator that produced the stream.

use std::marker::PhantomData;
use std::sync::Arc;

use crate::context::RuntimeContext;
use crate::dsl::env::Env;
use crate::dsl::keyed::KeyedStream;
use crate::element::{Data, Key};
use crate::error::EngineError;
use crate::graph::erased::{OperatorNode, Partitioning, SinkNode, StageNode, TypedEdge, TypedSlot};
use crate::graph::stream::{Chaining, NodeBody, NodeId, OutputSlot, StreamEdge, StreamNode};
use crate::keygroup::key_hash;
use crate::operator::{Operator, OutputTag};
use crate::process::KeySelector;
use crate::runtime::executor::DEAD_LETTER_SLOT;
use crate::runtime::network::KeyHasher;
use crate::runtime::timestamps::TimestampNode;
use crate::sink::Sink;
use crate::source::DeadLetter;
use crate::time::{WatermarkEmission, WatermarkStrategy};
use crate::transform::{FilterOp, FlatMapOp, MapOp};

/// The tag of a source's dead-letter stream.
pub const DEAD_LETTERS: OutputTag<DeadLetter> = OutputTag::new(DEAD_LETTER_SLOT);

/// A stream of records of type `T`.
pub struct DataStream<T> {
    env: Env,
    /// The outputs this stream reads: one, or several after `union`, each
    /// with how the next operator's input from it is partitioned.
    ports: Vec<Port<T>>,
}

/// One output read by a stream, and how it is partitioned downstream.
struct Port<T> {
    node: NodeId,
    slot: usize,
    /// `None`: forward when parallelism matches, else rebalance.
    partitioning: Option<Partitioning>,
    key_hash: Option<KeyHasher<T>>,
}

impl<T> Clone for Port<T> {
    fn clone(&self) -> Self {
        Port {
            node: self.node,
            slot: self.slot,
            partitioning: self.partitioning,
            key_hash: self.key_hash.clone(),
        }
    }
}

impl<T> Clone for DataStream<T> {
    fn clone(&self) -> Self {
        DataStream {
            env: self.env.clone(),
            ports: self.ports.clone(),
        }
    }
}

impl<T: Data> DataStream<T> {
    pub(crate) fn of_node(env: Env, node: NodeId) -> Self {
        Self::of_port(env, node, 0)
    }

    fn of_port(env: Env, node: NodeId, slot: usize) -> Self {
        DataStream {
            env,
            ports: vec![Port {
                node,
                slot,
                partitioning: None,
                key_hash: None,
            }],
        }
    }

    /// The environment this stream belongs to.
    pub fn env(&self) -> &Env {
        &self.env
    }

    fn single_node(&self, what: &str) -> Option<NodeId> {
        match self.ports.as_slice() {
            [port] => Some(port.node),
            _ => {
                self.env.graph().errors.push(EngineError::InvalidJob {
                    node: "union".into(),
                    reason: format!("{what} was called on a union of streams; call it on each operator before the union"),
                });
                None
            }
        }
    }

    fn edit(self, what: &str, f: impl FnOnce(&mut StreamNode)) -> Self {
        if let Some(node) = self.single_node(what) {
            f(&mut self.env.graph().nodes[node]);
        }
        self
    }

    /// Sets the stable id that state is matched by on restore.
    pub fn uid(self, uid: &str) -> Self {
        let uid = uid.to_owned();
        self.edit("uid()", |n| n.uid = Some(uid))
    }

    /// Sets the operator's display name.
    pub fn name(self, name: &str) -> Self {
        let name = name.to_owned();
        self.edit("name()", |n| n.name = name)
    }

    /// Sets the operator's parallelism.
    pub fn parallelism(self, p: usize) -> Self {
        self.edit("parallelism()", |n| n.parallelism = Some(p))
    }

    /// Gives this stream's operator the parallelism and max parallelism set
    /// on `other`'s operator (its first input for a union), so that a
    /// per-record step added by an extension trait chains to its input
    /// instead of reshuffling it.
    pub fn with_parallelism_of<U>(self, other: &DataStream<U>) -> Self {
        let Some(from) = other.ports.first().map(|p| p.node) else {
            return self;
        };
        let (p, max) = {
            let graph = self.env.graph();
            (
                graph.nodes[from].parallelism,
                graph.nodes[from].max_parallelism,
            )
        };
        self.edit("with_parallelism_of()", |n| {
            n.parallelism = p;
            n.max_parallelism = max;
        })
    }

    /// Sets the operator's max parallelism (its number of key groups).
    pub fn max_parallelism(self, p: usize) -> Self {
        self.edit("max_parallelism()", |n| n.max_parallelism = Some(p))
    }

    /// Never chains this operator with its neighbours.
    pub fn disable_chaining(self) -> Self {
        self.edit("disable_chaining()", |n| n.chaining = Chaining::Never)
    }

    /// Starts a new chain (task) at this operator.
    pub fn start_new_chain(self) -> Self {
        self.edit("start_new_chain()", |n| n.chaining = Chaining::Head)
    }

    fn with_partitioning(&self, p: Partitioning, key_hash: Option<KeyHasher<T>>) -> Self {
        let mut s = self.clone();
        for port in &mut s.ports {
            port.partitioning = Some(p);
            port.key_hash = key_hash.clone();
        }
        s
    }

    /// Sends the next operator's input round-robin over its subtasks.
    pub fn rebalance(&self) -> Self {
        self.with_partitioning(Partitioning::Rebalance, None)
    }

    /// Sends every record to every subtask of the next operator.
    pub fn broadcast(&self) -> Self {
        self.with_partitioning(Partitioning::Broadcast, None)
    }

    /// Sends subtask i's records to subtask i of the next operator (equal
    /// parallelism required).
    pub fn forward(&self) -> Self {
        self.with_partitioning(Partitioning::Forward, None)
    }

    /// One stream of the records of `self` and `others`. Each keeps its own
    /// partitioning (e.g. one side keyed, the other broadcast).
    pub fn union(&self, others: &[&DataStream<T>]) -> Self {
        let mut s = self.clone();
        for o in others {
            s.ports.extend(o.ports.iter().cloned());
        }
        s
    }

    /// Adds a node reading this stream.
    pub(crate) fn add_node(
        &self,
        name: &str,
        body: NodeBody,
        keyed: bool,
        slots: Vec<OutputSlot>,
    ) -> NodeId {
        let inputs = self
            .ports
            .iter()
            .map(|port| StreamEdge {
                from: port.node,
                slot: port.slot,
                partitioning: port.partitioning,
                factory: Arc::new(TypedEdge::<T> {
                    key_hash: port.key_hash.clone(),
                }),
            })
            .collect();
        self.env.graph().add(StreamNode {
            name: name.to_owned(),
            uid: None,
            parallelism: None,
            max_parallelism: None,
            chaining: Chaining::Always,
            keyed,
            body,
            inputs,
            slots,
            strategy: None,
        })
    }

    pub(crate) fn add_stage<O: Data>(
        &self,
        name: &str,
        stage: Arc<dyn StageNode>,
        keyed: bool,
    ) -> DataStream<O> {
        let slots = vec![OutputSlot {
            name: "",
            factory: TypedSlot::<O>::shared(),
        }];
        let id = self.add_node(name, NodeBody::Operator(stage), keyed, slots);
        DataStream::of_node(self.env.clone(), id)
    }

    /// Adds a custom [`Operator`]; `make` builds one instance per subtask.
    pub fn transform<Op, F>(&self, name: &str, make: F) -> DataStream<Op::Out>
    where
        Op: Operator<In = T>,
        F: Fn(&RuntimeContext) -> Op + Send + Sync + 'static,
    {
        let node = OperatorNode {
            make,
            _op: PhantomData,
        };
        self.add_stage(name, Arc::new(node), false)
    }

    /// Applies `f` to every record.
    pub fn map<O: Data, F>(&self, f: F) -> DataStream<O>
    where
        F: FnMut(T) -> O + Clone + Send + Sync + 'static,
    {
        self.transform("Map", move |_| MapOp::new(f.clone()))
    }

    /// Keeps the records for which `f` is true.
    pub fn filter<F>(&self, f: F) -> DataStream<T>
    where
        F: FnMut(&T) -> bool + Clone + Send + Sync + 'static,
    {
        self.transform("Filter", move |_| FilterOp::new(f.clone()))
    }

    /// Replaces every record by the records of the iterator `f` returns.
    pub fn flat_map<O: Data, I, F>(&self, f: F) -> DataStream<O>
    where
        I: IntoIterator<Item = O>,
        F: FnMut(T) -> I + Clone + Send + Sync + 'static,
    {
        self.transform("FlatMap", move |_| FlatMapOp::new(f.clone()))
    }

    /// Partitions the stream by the key `f` extracts.
    pub fn key_by<K: Key, F>(&self, f: F) -> KeyedStream<K, T>
    where
        F: Fn(&T) -> K + Send + Sync + 'static,
    {
        let selector: KeySelector<T, K> = Arc::new(f);
        let hash_key = Arc::clone(&selector);
        let hasher: KeyHasher<T> = Arc::new(move |t: &T| key_hash(&hash_key(t)));
        let stream = self.with_partitioning(Partitioning::Hash, Some(hasher));
        KeyedStream::new(stream, self.clone(), selector)
    }

    /// Partitions the next operator's input by `hash`, which must be
    /// [`crate::keygroup::key_hash`] of the key the consuming keyed operator
    /// computes for the record (for extension traits whose inputs carry keys
    /// only on some records, e.g. broadcast joins).
    pub fn partition_by_key_hash<F>(&self, hash: F) -> DataStream<T>
    where
        F: Fn(&T) -> u64 + Send + Sync + 'static,
    {
        self.with_partitioning(Partitioning::Hash, Some(Arc::new(hash)))
    }

    /// Assigns event time and generates watermarks.
    ///
    /// Directly on a source that nothing else reads yet, the strategy runs
    /// inside the source, per split (a slow split holds the watermark back,
    /// an idle one does not). Anywhere else it adds an operator that
    /// re-stamps the records and replaces upstream watermarks.
    pub fn assign_timestamps(&self, strategy: WatermarkStrategy<T>) -> DataStream<T>
    where
        T: Sync,
    {
        let mut graph = self.env.graph();
        if let [port] = self.ports.as_slice() {
            let node = &port.node;
            let n = &graph.nodes[*node];
            let is_source = matches!(n.body, NodeBody::Source(_));
            if is_source
                && port.slot == 0
                && n.strategy.is_none()
                && port.partitioning.is_none()
                && graph.consumers(*node) == 0
            {
                graph.nodes[*node].strategy = Some(Arc::new(strategy));
                return self.clone();
            }
        }
        drop(graph);
        let interval = match strategy.emission() {
            WatermarkEmission::Periodic(Some(d)) => d,
            _ => self.env.config().watermark_interval,
        };
        let node = TimestampNode { strategy, interval };
        self.add_stage("Timestamps/Watermarks", Arc::new(node), false)
    }

    /// The side output `tag` of the operator that produced this stream.
    pub fn side_output<S: Data>(&self, tag: &OutputTag<S>) -> DataStream<S> {
        let Some(node) = self.single_node("side_output()") else {
            return DataStream::of_port(self.env.clone(), self.ports[0].node, 0);
        };
        let mut graph = self.env.graph();
        if matches!(graph.nodes[node].body, NodeBody::Source(_)) && tag.name() != DEAD_LETTER_SLOT {
            let name = graph.nodes[node].name.clone();
            graph.errors.push(EngineError::InvalidJob {
                node: name,
                reason: format!(
                    "side_output('{}') on a source: sources have only dead_letters(); add an operator that emits the side output",
                    tag.name()
                ),
            });
        }
        let slot = match graph.slot(node, tag.name()) {
            Some(slot) => {
                let existing = graph.nodes[node].slots[slot].factory.type_name();
                if existing != std::any::type_name::<S>() {
                    let reason = format!(
                        "side output '{}' is used with two types: {existing} and {}",
                        tag.name(),
                        std::any::type_name::<S>()
                    );
                    let name = graph.nodes[node].name.clone();
                    graph
                        .errors
                        .push(EngineError::InvalidJob { node: name, reason });
                }
                slot
            }
            None => {
                graph.nodes[node].slots.push(OutputSlot {
                    name: tag.name(),
                    factory: TypedSlot::<S>::shared(),
                });
                graph.nodes[node].slots.len() - 1
            }
        };
        drop(graph);
        DataStream::of_port(self.env.clone(), node, slot)
    }

    /// The records the source producing this stream could not decode, with
    /// the reason and position. Only valid directly on a source.
    pub fn dead_letters(&self) -> DataStream<DeadLetter> {
        if let Some(node) = self.single_node("dead_letters()") {
            let mut graph = self.env.graph();
            if !matches!(graph.nodes[node].body, NodeBody::Source(_)) {
                let name = graph.nodes[node].name.clone();
                graph.errors.push(EngineError::InvalidJob {
                    node: name,
                    reason: "dead_letters() is only available on a source".into(),
                });
            }
        }
        self.side_output(&DEAD_LETTERS)
    }

    /// Writes the stream to `sink`.
    pub fn sink<S: Sink<In = T>>(&self, sink: S) -> StreamSink {
        let name = format!("Sink: {}", sink.name());
        let id = self.add_node(
            &name,
            NodeBody::Sink(Arc::new(SinkNode(sink))),
            false,
            Vec::new(),
        );
        StreamSink {
            stream: DataStream::<()>::of_node(self.env.clone(), id),
        }
    }
}

/// The end of a stream at a sink; sets the sink's properties.
pub struct StreamSink {
    stream: DataStream<()>,
}

impl StreamSink {
    /// Sets the sink's stable uid.
    pub fn uid(self, uid: &str) -> Self {
        StreamSink {
            stream: self.stream.uid(uid),
        }
    }

    /// Sets the sink's display name.
    pub fn name(self, name: &str) -> Self {
        StreamSink {
            stream: self.stream.name(name),
        }
    }

    /// Sets the sink's parallelism.
    pub fn parallelism(self, p: usize) -> Self {
        StreamSink {
            stream: self.stream.parallelism(p),
        }
    }

    /// Never chains the sink with its input.
    pub fn disable_chaining(self) -> Self {
        StreamSink {
            stream: self.stream.disable_chaining(),
        }
    }
}
