//! Where a run's subtasks go: the workers' slots, shared as Flink shares
//! them — one slot runs one subtask of every vertex, so a job needs as many
//! slots as its highest parallelism.

use crate::graph::job::JobGraph;

/// The slots of one run's workers, in the order subtasks take them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SlotPlan {
    /// Slot `i`, taken by subtask `i` of every vertex, is on worker
    /// `owner[i]`.
    owner: Vec<usize>,
}

impl SlotPlan {
    /// Workers with `slots[w]` slots each. The slots are dealt in turns, one
    /// from each worker that has one left, so that a job spreads over the
    /// cluster before it fills a worker: with equal slots, subtask `s` runs
    /// on worker `s mod workers`.
    pub(crate) fn new(slots: &[usize]) -> Self {
        let most = slots.iter().copied().max().unwrap_or(0);
        let owner = (0..most)
            .flat_map(|turn| (0..slots.len()).filter(move |&w| slots[w] > turn))
            .collect();
        SlotPlan { owner }
    }

    /// `workers` workers with a slot for each of `subtasks` subtasks each:
    /// subtask `s` on worker `s mod workers` (`--loopback-workers`).
    pub(crate) fn even(workers: usize, subtasks: usize) -> Self {
        SlotPlan::new(&vec![subtasks; workers.max(1)])
    }

    /// How many slots there are.
    pub(crate) fn slots(&self) -> usize {
        self.owner.len()
    }

    /// The worker subtask `subtask` (of any vertex) runs on. A plan with
    /// fewer slots than subtasks is never deployed ([`slots_needed`]); it
    /// would wrap around.
    pub(crate) fn worker_of(&self, subtask: usize) -> usize {
        match self.owner.len() {
            0 => 0,
            n => self.owner[subtask % n],
        }
    }

    /// Task index → worker, in the order every process numbers tasks: by
    /// vertex, then subtask.
    pub(crate) fn tasks(&self, job: &JobGraph) -> Vec<usize> {
        job.vertices
            .iter()
            .flat_map(|v| (0..v.parallelism).map(|s| self.worker_of(s)))
            .collect()
    }

    /// How many of worker `worker`'s slots a job of highest parallelism
    /// `parallelism` uses.
    pub(crate) fn used(&self, worker: usize, parallelism: usize) -> usize {
        self.owner
            .iter()
            .take(parallelism)
            .filter(|&&w| w == worker)
            .count()
    }
}

/// The slots `job` needs: one per subtask of its widest vertex.
pub(crate) fn slots_needed(job: &JobGraph) -> usize {
    job.vertices
        .iter()
        .map(|v| v.parallelism)
        .max()
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_slots_spread_subtasks_round_robin() {
        let plan = SlotPlan::new(&[2, 2, 2]);
        assert_eq!(plan.slots(), 6);
        let workers: Vec<usize> = (0..6).map(|s| plan.worker_of(s)).collect();
        assert_eq!(workers, [0, 1, 2, 0, 1, 2]);
        assert_eq!(plan, SlotPlan::even(3, 2));
    }

    #[test]
    fn unequal_slots_fill_the_larger_worker_last_and_never_overfill_one() {
        let plan = SlotPlan::new(&[3, 1, 0]);
        let workers: Vec<usize> = (0..4).map(|s| plan.worker_of(s)).collect();
        assert_eq!(workers, [0, 1, 0, 0]);
        assert_eq!(
            (plan.used(0, 4), plan.used(1, 4), plan.used(2, 4)),
            (3, 1, 0)
        );
        assert_eq!((plan.used(0, 2), plan.used(1, 2)), (1, 1));
        // Every worker runs at most as many subtasks of a vertex as it has
        // slots, whatever the mix.
        for slots in [[1, 4, 2], [5, 5, 1], [0, 2, 7]] {
            let plan = SlotPlan::new(&slots);
            for (w, &n) in slots.iter().enumerate() {
                let taken = (0..plan.slots())
                    .filter(|&s| plan.worker_of(s) == w)
                    .count();
                assert_eq!(taken, n, "{slots:?}");
            }
        }
    }
}
