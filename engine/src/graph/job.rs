//! The job graph: validated nodes with resolved parallelism and uids, edges
//! with resolved partitioning, and operators chained into vertices.
//!
//! Chaining rule (as in Flink): node B joins the chain of its input A when B
//! has exactly one input, the edge is forward, both have the same
//! parallelism, B allows chaining, and A is not marked "never chain".
//! A keyed edge between two operators of parallelism 1 counts as forward: all
//! keys land on the single subtask anyway, so the hop is saved.

use std::collections::HashSet;
use std::sync::Arc;

use crate::error::EngineError;
use crate::graph::erased::{EdgeFactory, Partitioning};
use crate::graph::stream::{Chaining, NodeBody, NodeId, StreamGraph};
use crate::keygroup::MAX_MAX_PARALLELISM;

/// Defaults applied to nodes that do not set their own values.
#[derive(Clone, Copy, Debug)]
pub(crate) struct JobDefaults {
    pub parallelism: usize,
    pub max_parallelism: usize,
    pub chaining: bool,
}

/// A node with everything resolved.
#[derive(Clone)]
pub(crate) struct JobNode {
    pub name: String,
    pub uid: String,
    pub parallelism: usize,
    pub max_parallelism: usize,
    pub vertex: usize,
    pub keyed: bool,
    pub is_source: bool,
    pub is_sink: bool,
}

/// An edge with its partitioning resolved.
#[derive(Clone)]
pub(crate) struct JobEdge {
    pub from: NodeId,
    pub slot: usize,
    pub to: NodeId,
    pub partitioning: Partitioning,
    pub chained: bool,
    pub factory: Arc<dyn EdgeFactory>,
}

/// Chained operators that run together in one task per subtask.
#[derive(Clone)]
pub(crate) struct Vertex {
    /// Nodes of the chain, head first, in topological order.
    pub nodes: Vec<NodeId>,
    pub parallelism: usize,
}

/// The resolved job.
#[derive(Clone)]
pub(crate) struct JobGraph {
    pub nodes: Vec<JobNode>,
    pub edges: Vec<JobEdge>,
    pub vertices: Vec<Vertex>,
}

fn describe(name: &str, uid: &str) -> String {
    format!("operator '{name}' (uid '{uid}')")
}

impl JobGraph {
    /// Resolves and validates `graph`.
    pub(crate) fn build(graph: &StreamGraph, defaults: JobDefaults) -> Result<Self, EngineError> {
        if let Some(first) = graph.errors.first() {
            return Err(match first {
                EngineError::InvalidJob { node, reason } => EngineError::InvalidJob {
                    node: node.clone(),
                    reason: reason.clone(),
                },
                other => EngineError::InvalidJob {
                    node: "job".into(),
                    reason: other.to_string(),
                },
            });
        }
        if graph.nodes.is_empty() {
            return Err(EngineError::InvalidJob {
                node: "job".into(),
                reason: "the job has no operators; add a source and a sink".into(),
            });
        }
        let mut nodes = Vec::with_capacity(graph.nodes.len());
        let mut uids = HashSet::new();
        for (id, n) in graph.nodes.iter().enumerate() {
            let uid = n.uid.clone().unwrap_or_else(|| derived_uid(id, &n.name));
            let parallelism = n.parallelism.unwrap_or(defaults.parallelism);
            let max_parallelism = n.max_parallelism.unwrap_or(defaults.max_parallelism);
            let node = describe(&n.name, &uid);
            if !uids.insert(uid.clone()) {
                return Err(EngineError::InvalidJob {
                    node,
                    reason: "this uid is used by another operator; uids must be unique".into(),
                });
            }
            if !(1..=MAX_MAX_PARALLELISM).contains(&max_parallelism) {
                return Err(EngineError::InvalidJob {
                    node,
                    reason: format!(
                        "max parallelism {max_parallelism} must be in 1..={MAX_MAX_PARALLELISM}"
                    ),
                });
            }
            if parallelism == 0 || parallelism > max_parallelism {
                return Err(EngineError::InvalidJob {
                    node,
                    reason: format!(
                        "parallelism {parallelism} must be in 1..={max_parallelism} (its max parallelism)"
                    ),
                });
            }
            if !matches!(n.body, NodeBody::Source(_)) && n.inputs.is_empty() {
                return Err(EngineError::InvalidJob {
                    node,
                    reason: "operator has no input".into(),
                });
            }
            nodes.push(JobNode {
                name: n.name.clone(),
                uid,
                parallelism,
                max_parallelism,
                vertex: usize::MAX,
                keyed: n.keyed,
                is_source: matches!(n.body, NodeBody::Source(_)),
                is_sink: matches!(n.body, NodeBody::Sink(_)),
            });
        }

        let mut edges = Vec::new();
        for (to, n) in graph.nodes.iter().enumerate() {
            for e in &n.inputs {
                let (up, down) = (&nodes[e.from], &nodes[to]);
                let same = up.parallelism == down.parallelism;
                let partitioning = match e.partitioning {
                    None if same => Partitioning::Forward,
                    None => Partitioning::Rebalance,
                    Some(Partitioning::Forward) if !same => {
                        return Err(EngineError::InvalidJob {
                            node: describe(&down.name, &down.uid),
                            reason: format!(
                                "forward() needs equal parallelism, but upstream '{}' has {} and this has {}; use rebalance()",
                                up.name, up.parallelism, down.parallelism
                            ),
                        })
                    }
                    Some(Partitioning::Hash) if up.parallelism == 1 && down.parallelism == 1 => {
                        Partitioning::Forward
                    }
                    Some(p) => p,
                };
                let chained = defaults.chaining
                    && n.inputs.len() == 1
                    && partitioning == Partitioning::Forward
                    && same
                    && n.chaining == Chaining::Always
                    && graph.nodes[e.from].chaining != Chaining::Never;
                edges.push(JobEdge {
                    from: e.from,
                    slot: e.slot,
                    to,
                    partitioning,
                    chained,
                    factory: Arc::clone(&e.factory),
                });
            }
        }

        let mut vertices: Vec<Vertex> = Vec::new();
        for id in 0..nodes.len() {
            let chained_from = edges
                .iter()
                .find(|e| e.to == id && e.chained)
                .map(|e| e.from);
            match chained_from {
                Some(up) => {
                    let v = nodes[up].vertex;
                    nodes[id].vertex = v;
                    vertices[v].nodes.push(id);
                }
                None => {
                    nodes[id].vertex = vertices.len();
                    vertices.push(Vertex {
                        nodes: vec![id],
                        parallelism: nodes[id].parallelism,
                    });
                }
            }
        }
        Ok(JobGraph {
            nodes,
            edges,
            vertices,
        })
    }

    /// Display name of a vertex: its operators joined by arrows.
    pub(crate) fn vertex_name(&self, v: usize) -> String {
        self.vertices[v]
            .nodes
            .iter()
            .map(|&n| self.nodes[n].name.as_str())
            .collect::<Vec<_>>()
            .join(" -> ")
    }
}

/// A uid derived from the node's position and name, stable as long as the
/// job's operators are declared in the same order.
fn derived_uid(id: NodeId, name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    format!("{id}-{}", words.join("-"))
}
