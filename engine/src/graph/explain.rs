//! The job graph as text and as Graphviz dot, for `Env::explain()`.

use std::fmt::{self, Write};

use crate::graph::erased::Partitioning;
use crate::graph::job::JobGraph;

/// A printable description of a job graph.
#[derive(Clone, Debug)]
pub struct Explain {
    /// One line per task (chain of operators) and per edge between tasks.
    pub text: String,
    /// The same graph in Graphviz dot; chained operators share a cluster.
    pub dot: String,
}

fn partitioning_name(p: Partitioning) -> &'static str {
    match p {
        Partitioning::Forward => "FORWARD",
        Partitioning::Rebalance => "REBALANCE",
        Partitioning::Broadcast => "BROADCAST",
        Partitioning::Hash => "HASH",
    }
}

impl Explain {
    pub(crate) fn of(job: &JobGraph) -> Self {
        let mut text = String::new();
        for (v, vertex) in job.vertices.iter().enumerate() {
            let _ = writeln!(
                text,
                "task {v}: {} [parallelism {}]",
                job.vertex_name(v),
                vertex.parallelism
            );
            for &n in &vertex.nodes {
                let node = &job.nodes[n];
                let kind = if node.is_source {
                    "source"
                } else if node.is_sink {
                    "sink"
                } else if node.keyed {
                    "keyed operator"
                } else {
                    "operator"
                };
                let _ = writeln!(
                    text,
                    "  - {} ({kind}, uid '{}', max parallelism {})",
                    node.name, node.uid, node.max_parallelism
                );
            }
        }
        for e in job.edges.iter().filter(|e| !e.chained) {
            let _ = writeln!(
                text,
                "edge: task {} ({}) -> task {} ({}) {}{}",
                job.nodes[e.from].vertex,
                job.nodes[e.from].name,
                job.nodes[e.to].vertex,
                job.nodes[e.to].name,
                partitioning_name(e.partitioning),
                if e.slot > 0 { " [side output]" } else { "" }
            );
        }

        let mut dot = String::from("digraph job {\n  rankdir=LR;\n  node [shape=box];\n");
        for (v, vertex) in job.vertices.iter().enumerate() {
            let _ = writeln!(
                dot,
                "  subgraph cluster_{v} {{\n    label=\"task {v} (p={})\";",
                vertex.parallelism
            );
            for &n in &vertex.nodes {
                let _ = writeln!(
                    dot,
                    "    n{n} [label=\"{}\\nuid {}\"];",
                    escape(&job.nodes[n].name),
                    escape(&job.nodes[n].uid)
                );
            }
            dot.push_str("  }\n");
        }
        for e in &job.edges {
            let style = if e.chained { ", style=dashed" } else { "" };
            let _ = writeln!(
                dot,
                "  n{} -> n{} [label=\"{}\"{style}];",
                e.from,
                e.to,
                if e.chained {
                    "chained"
                } else {
                    partitioning_name(e.partitioning)
                }
            );
        }
        dot.push_str("}\n");
        Explain { text, dot }
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

impl fmt::Display for Explain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\n{}", self.text, self.dot)
    }
}
