//! The stream graph: one node per transformation, as the DSL recorded it.

use std::any::Any;
use std::sync::Arc;

use crate::error::EngineError;
use crate::graph::erased::{EdgeFactory, Partitioning, SlotFactory, SourceNode, StageNode};

/// Index of a node in the stream graph.
pub(crate) type NodeId = usize;

/// Whether an operator may be chained with its neighbours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Chaining {
    /// Chain with the upstream operator when possible (default).
    Always,
    /// Start a new chain here; later operators may chain to this one.
    Head,
    /// Never chain with anything.
    Never,
}

/// What a node runs.
pub(crate) enum NodeBody {
    Source(Arc<dyn SourceNode>),
    Operator(Arc<dyn StageNode>),
    Sink(Arc<dyn StageNode>),
}

/// An output of a node: slot 0 is the main output, others are side outputs.
pub(crate) struct OutputSlot {
    pub name: &'static str,
    pub factory: Arc<dyn SlotFactory>,
}

/// An input edge of a node.
pub(crate) struct StreamEdge {
    pub from: NodeId,
    pub slot: usize,
    /// `None`: not specified, forward when parallelism matches, else rebalance.
    pub partitioning: Option<Partitioning>,
    pub factory: Arc<dyn EdgeFactory>,
}

/// One transformation.
pub(crate) struct StreamNode {
    pub name: String,
    pub uid: Option<String>,
    pub parallelism: Option<usize>,
    pub max_parallelism: Option<usize>,
    pub chaining: Chaining,
    pub keyed: bool,
    pub body: NodeBody,
    pub inputs: Vec<StreamEdge>,
    pub slots: Vec<OutputSlot>,
    /// For sources: the `WatermarkStrategy<Out>` applied per split.
    pub strategy: Option<Arc<dyn Any + Send + Sync>>,
}

/// Every node of a job, in creation order (which is topological).
#[derive(Default)]
pub(crate) struct StreamGraph {
    pub nodes: Vec<StreamNode>,
    /// Misuse of the DSL found while building; reported by `execute`.
    pub errors: Vec<EngineError>,
}

impl StreamGraph {
    pub(crate) fn add(&mut self, node: StreamNode) -> NodeId {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// The slot of `node` named `name`, if it has one.
    pub(crate) fn slot(&self, node: NodeId, name: &str) -> Option<usize> {
        self.nodes[node].slots.iter().position(|s| s.name == name)
    }

    /// How many edges read from `node`.
    pub(crate) fn consumers(&self, node: NodeId) -> usize {
        self.nodes
            .iter()
            .flat_map(|n| &n.inputs)
            .filter(|e| e.from == node)
            .count()
    }
}
