//! The type-erased faces of typed graph parts.
//!
//! The DSL knows every record type; the runtime wires tasks without knowing
//! them. Each typed part (an edge carrying `T`, an output slot of type `T`, an
//! operator from `In` to `Out`, a source, a sink) is stored behind one of the
//! object-safe traits here, and hands the runtime boxed values (`dyn Any`) that
//! the next typed part downcasts back. A failed downcast is a bug in Eddy and
//! reported as [`EngineError::Internal`].

use std::any::{type_name, Any};
use std::marker::PhantomData;
use std::sync::Arc;

use crate::context::RuntimeContext;
use crate::element::{Data, Element};
use crate::error::{EngineError, Location};
use crate::operator::{Operator, SideChannel, SideOutputs, TypedSide};
use crate::runtime::chain::{
    connector_error, guarded, Control, Downstream, FanOut, OperatorStage, SinkStage,
};
use crate::runtime::enumerator::{Assigner, SplitAssigner};
use crate::runtime::exchange::{InputChannel, OutputChannel, RemoteInput, RemoteOutput};
use crate::runtime::network::{KeyHasher, NetworkOutput, Partitioner};
use crate::runtime::source_task::{
    run_source_task, SourceChain, FINISHED_SPLITS_STATE, SPLITS_STATE,
};
use crate::runtime::stats::StageStats;
use crate::runtime::task::{run_input_task, TaskEnv};
use crate::sink::Sink;
use crate::source::{DeadLetter, Source};
use crate::time::WatermarkStrategy;

/// A boxed value that may cross threads (channel ends).
pub(crate) type SendAny = Box<dyn Any + Send>;
/// A boxed chain stage, built and used on one task thread.
pub(crate) type StageAny = Box<dyn Any>;

pub(crate) fn downcast<T: 'static>(value: Box<dyn Any>, what: &str) -> Result<T, EngineError> {
    value
        .downcast::<T>()
        .map(|b| *b)
        .map_err(|_| EngineError::Internal(format!("{what} is not a {}", type_name::<T>())))
}

fn downcast_send<T: 'static>(value: SendAny, what: &str) -> Result<T, EngineError> {
    value
        .downcast::<T>()
        .map(|b| *b)
        .map_err(|_| EngineError::Internal(format!("{what} is not a {}", type_name::<T>())))
}

/// How an edge spreads records, as resolved by the job graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Partitioning {
    /// One-to-one; only between operators of equal parallelism.
    Forward,
    /// Batches round-robin over downstream subtasks.
    Rebalance,
    /// Every record to every downstream subtask.
    Broadcast,
    /// By key group of the record's key.
    Hash,
}

/// An edge carrying records of one type.
pub(crate) trait EdgeFactory: Send + Sync {
    /// A bounded local channel of this edge's element type: its sending
    /// and receiving ends.
    fn channel(&self, capacity: usize) -> (SendAny, SendAny);
    /// The typed ends of a network channel of this edge.
    fn remote(&self, output: RemoteOutput, input: RemoteInput) -> (SendAny, SendAny);
    /// The sending side of this edge in one upstream subtask.
    fn output(
        &self,
        partitioning: Partitioning,
        senders: Vec<SendAny>,
        downstream_max_parallelism: usize,
        location: &Location,
        node: usize,
        env: &TaskEnv,
    ) -> Result<StageAny, EngineError>;
}

/// An edge carrying `T`, with its key hasher when it is keyed.
pub(crate) struct TypedEdge<T> {
    pub key_hash: Option<KeyHasher<T>>,
}

impl<T: Data> EdgeFactory for TypedEdge<T> {
    fn channel(&self, capacity: usize) -> (SendAny, SendAny) {
        let (tx, rx) = crossbeam_channel::bounded::<Element<T>>(capacity);
        (
            Box::new(OutputChannel::Local(tx)),
            Box::new(InputChannel::Local(rx)),
        )
    }

    fn remote(&self, output: RemoteOutput, input: RemoteInput) -> (SendAny, SendAny) {
        (
            Box::new(OutputChannel::<T>::Remote(output)),
            Box::new(InputChannel::<T>::Remote(input, PhantomData)),
        )
    }

    fn output(
        &self,
        partitioning: Partitioning,
        senders: Vec<SendAny>,
        downstream_max_parallelism: usize,
        location: &Location,
        node: usize,
        env: &TaskEnv,
    ) -> Result<StageAny, EngineError> {
        let senders = senders
            .into_iter()
            .map(|s| downcast_send::<OutputChannel<T>>(s, "edge sender"))
            .collect::<Result<Vec<_>, _>>()?;
        let partitioner = match partitioning {
            Partitioning::Forward => Partitioner::Forward,
            Partitioning::Rebalance => Partitioner::Rebalance { next: 0 },
            Partitioning::Broadcast => Partitioner::Broadcast,
            Partitioning::Hash => Partitioner::Hash {
                key_hash: self
                    .key_hash
                    .clone()
                    .ok_or_else(|| EngineError::Internal("hash edge without a key".into()))?,
                max_parallelism: downstream_max_parallelism,
            },
        };
        let out: Box<dyn Downstream<T>> = Box::new(NetworkOutput::new(
            senders,
            partitioner,
            env.settings.batch_size,
            Arc::clone(&env.cancel),
            location.clone(),
            node,
        ));
        Ok(Box::new(out))
    }
}

/// An output slot (main or side output) of one type.
pub(crate) trait SlotFactory: Send + Sync {
    /// Combines the stages fed by this slot into one.
    fn combine(&self, targets: Vec<StageAny>) -> Result<StageAny, EngineError>;
    /// Wraps a combined stage as a side channel.
    fn side(&self, combined: StageAny) -> Result<Box<dyn SideChannel>, EngineError>;
    /// The slot's record type, for error messages.
    fn type_name(&self) -> &'static str;
}

/// A slot of type `T`.
pub(crate) struct TypedSlot<T>(pub PhantomData<fn() -> T>);

impl<T: Data> TypedSlot<T> {
    pub(crate) fn shared() -> Arc<dyn SlotFactory> {
        Arc::new(TypedSlot::<T>(PhantomData))
    }
}

impl<T: Data> SlotFactory for TypedSlot<T> {
    fn combine(&self, targets: Vec<StageAny>) -> Result<StageAny, EngineError> {
        let mut targets = targets
            .into_iter()
            .map(|t| downcast::<Box<dyn Downstream<T>>>(t, "slot target"))
            .collect::<Result<Vec<_>, _>>()?;
        let combined: Box<dyn Downstream<T>> = if targets.len() == 1 {
            targets.pop().expect("one target")
        } else {
            Box::new(FanOut::new(targets))
        };
        Ok(Box::new(combined))
    }

    fn side(&self, combined: StageAny) -> Result<Box<dyn SideChannel>, EngineError> {
        let target = downcast::<Box<dyn Downstream<T>>>(combined, "side target")?;
        Ok(Box::new(TypedSide {
            buf: Vec::new(),
            target,
        }))
    }

    fn type_name(&self) -> &'static str {
        type_name::<T>()
    }
}

/// An operator or sink: a stage with one input type.
pub(crate) trait StageNode: Send + Sync {
    /// Builds the stage for one subtask in front of `main` (None for sinks).
    fn build(
        &self,
        ctx: &RuntimeContext,
        node: usize,
        main: Option<StageAny>,
        sides: SideOutputs,
    ) -> Result<StageAny, EngineError>;

    /// Runs a task with this stage at its head, reading `inputs`; returns the
    /// statistics of the chain.
    fn run_head(
        &self,
        stage: StageAny,
        inputs: Vec<SendAny>,
        env: &TaskEnv,
    ) -> Result<Vec<StageStats>, EngineError>;
}

pub(crate) fn run_typed_head<T: Data>(
    stage: StageAny,
    inputs: Vec<SendAny>,
    env: &TaskEnv,
) -> Result<Vec<StageStats>, EngineError> {
    let head = downcast::<Box<dyn Downstream<T>>>(stage, "head stage")?;
    let inputs = inputs
        .into_iter()
        .map(|r| downcast_send::<InputChannel<T>>(r, "edge receiver"))
        .collect::<Result<Vec<_>, _>>()?;
    let head = run_input_task(head, inputs, env)?;
    let mut stats = Vec::new();
    head.collect_stats(&mut stats);
    Ok(stats)
}

/// Makes one operator instance per subtask.
pub(crate) struct OperatorNode<Op, F> {
    pub make: F,
    pub _op: PhantomData<fn() -> Op>,
}

impl<Op, F> StageNode for OperatorNode<Op, F>
where
    Op: Operator,
    F: Fn(&RuntimeContext) -> Op + Send + Sync + 'static,
{
    fn build(
        &self,
        ctx: &RuntimeContext,
        node: usize,
        main: Option<StageAny>,
        sides: SideOutputs,
    ) -> Result<StageAny, EngineError> {
        let next = match main {
            Some(m) => downcast::<Box<dyn Downstream<Op::Out>>>(m, "main output")?,
            None => Box::new(FanOut::<Op::Out>::new(Vec::new())),
        };
        let op = guarded(ctx.location(), crate::runtime::chain::user_error, || {
            Ok((self.make)(ctx))
        })?;
        let stage: Box<dyn Downstream<Op::In>> =
            Box::new(OperatorStage::open(op, ctx, node, next, sides)?);
        Ok(Box::new(stage))
    }

    fn run_head(
        &self,
        stage: StageAny,
        inputs: Vec<SendAny>,
        env: &TaskEnv,
    ) -> Result<Vec<StageStats>, EngineError> {
        run_typed_head::<Op::In>(stage, inputs, env)
    }
}

/// Makes one sink writer per subtask.
pub(crate) struct SinkNode<S>(pub S);

impl<S: Sink> StageNode for SinkNode<S> {
    fn build(
        &self,
        ctx: &RuntimeContext,
        node: usize,
        _main: Option<StageAny>,
        _sides: SideOutputs,
    ) -> Result<StageAny, EngineError> {
        let writer = guarded(ctx.location(), connector_error, || {
            self.0.create_writer(ctx)
        })?;
        let stage: Box<dyn Downstream<S::In>> = Box::new(SinkStage::new(writer, ctx, node));
        Ok(Box::new(stage))
    }

    fn run_head(
        &self,
        stage: StageAny,
        inputs: Vec<SendAny>,
        env: &TaskEnv,
    ) -> Result<Vec<StageStats>, EngineError> {
        run_typed_head::<S::In>(stage, inputs, env)
    }
}

/// A source in the graph.
pub(crate) trait SourceNode: Send + Sync {
    /// Creates the source's enumerator for `parallelism` readers; `restored`
    /// holds the contexts of its subtasks when the run restores it.
    fn create_assigner(
        &self,
        parallelism: usize,
        ctx: &RuntimeContext,
        restored: &[RuntimeContext],
    ) -> Result<Box<dyn SplitAssigner>, EngineError>;

    /// See [`Source::expected_records`].
    fn expected_records(&self) -> Option<u64>;

    /// Runs one source subtask.
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        strategy: Option<&(dyn Any + Send + Sync)>,
        ctx: &RuntimeContext,
        node: usize,
        main: Option<StageAny>,
        dead_letters: Option<StageAny>,
        env: &TaskEnv,
    ) -> Result<Vec<StageStats>, EngineError>;
}

/// A typed source.
pub(crate) struct SourceNodeImpl<S>(pub S);

impl<S: Source> SourceNode for SourceNodeImpl<S> {
    fn expected_records(&self) -> Option<u64> {
        self.0.expected_records()
    }

    fn create_assigner(
        &self,
        parallelism: usize,
        ctx: &RuntimeContext,
        restored: &[RuntimeContext],
    ) -> Result<Box<dyn SplitAssigner>, EngineError> {
        let enumerator = guarded(ctx.location(), connector_error, || {
            self.0.create_enumerator(parallelism)
        })?;
        Ok(Box::new(Assigner::new(enumerator, parallelism, restored)?))
    }

    fn run(
        &self,
        strategy: Option<&(dyn Any + Send + Sync)>,
        ctx: &RuntimeContext,
        node: usize,
        main: Option<StageAny>,
        dead_letters: Option<StageAny>,
        env: &TaskEnv,
    ) -> Result<Vec<StageStats>, EngineError> {
        // A restored subtask resumes its snapshotted splits; the enumerator
        // sends the others.
        let (splits, finished) = match ctx.restored_state() {
            Some(restored) => {
                let state_error = |source| EngineError::State {
                    location: ctx.location().clone(),
                    source,
                };
                (
                    restored
                        .list::<S::Split>(SPLITS_STATE)
                        .map_err(state_error)?,
                    restored
                        .list::<String>(FINISHED_SPLITS_STATE)
                        .map_err(state_error)?,
                )
            }
            None => (Vec::new(), Vec::new()),
        };
        let strategy = match strategy {
            Some(s) => Some(
                s.downcast_ref::<WatermarkStrategy<S::Out>>()
                    .cloned()
                    .ok_or_else(|| EngineError::Internal("watermark strategy type".into()))?,
            ),
            None => None,
        };
        let main: Box<dyn Downstream<S::Out>> = match main {
            Some(m) => downcast(m, "source output")?,
            None => Box::new(FanOut::new(Vec::new())),
        };
        let dead_letters = dead_letters
            .map(|d| downcast::<Box<dyn Downstream<DeadLetter>>>(d, "dead-letter output"))
            .transpose()?;
        let mut chain = SourceChain { main, dead_letters };
        let mut own = StageStats {
            node,
            ..StageStats::default()
        };
        run_source_task(
            &self.0, splits, finished, strategy, ctx, &mut chain, &mut own, env,
        )?;
        let mut stats = vec![own];
        chain.collect_stats(&mut stats);
        Ok(stats)
    }
}
