//! Identity merges as a union-find whose canonical id is the smallest id of each set. Every node
//! applies the same merge records, in whatever order they reach it, and so agrees on every
//! canonical id: union by smallest root is commutative and associative.

use std::collections::BTreeMap;

/// The merges a node knows of.
#[derive(Debug, Default, Clone)]
pub struct Merges {
    /// Parent of every merged-away id (always smaller than the id).
    parent: BTreeMap<u64, u64>,
    /// Every id merged into each canonical id (not the canonical id itself).
    members: BTreeMap<u64, Vec<u64>>,
}

impl Merges {
    /// The canonical id of `id` (itself when never merged).
    pub fn canonical(&self, mut id: u64) -> u64 {
        while let Some(&p) = self.parent.get(&id) {
            id = p;
        }
        id
    }

    /// Joins the sets of `a` and `b`; returns the canonical id and the previous canonical id
    /// that stopped being one (`None` when they were already joined).
    pub fn union(&mut self, a: u64, b: u64) -> (u64, Option<u64>) {
        let (ra, rb) = (self.canonical(a), self.canonical(b));
        if ra == rb {
            return (ra, None);
        }
        let (root, gone) = (ra.min(rb), ra.max(rb));
        self.parent.insert(gone, root);
        let mut moved = self.members.remove(&gone).unwrap_or_default();
        moved.push(gone);
        self.members.entry(root).or_default().extend(moved);
        (root, Some(gone))
    }

    /// Every id merged (directly or not) into `canonical`, except itself.
    pub fn merged_into(&self, canonical: u64) -> &[u64] {
        self.members.get(&canonical).map_or(&[], Vec::as_slice)
    }

    /// Merge records applied.
    pub fn len(&self) -> usize {
        self.parent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parent.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic shuffles without a dependency: a linear congruential generator.
    fn shuffled<T: Clone>(items: &[T], seed: u64) -> Vec<T> {
        let mut v = items.to_vec();
        let mut s = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        for i in (1..v.len()).rev() {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            v.swap(i, (s >> 33) as usize % (i + 1));
        }
        v
    }

    #[test]
    fn every_order_of_the_same_records_gives_the_same_canonical_ids() {
        // Two conflicting merges made concurrently at two nodes, plus a chain.
        let records = [(40, 17), (17, 90), (90, 40), (33, 25), (25, 60), (60, 12), (8, 77)];
        let ids = [8, 12, 17, 25, 33, 40, 60, 77, 90, 5];
        let reference = {
            let mut m = Merges::default();
            for &(a, b) in &records {
                m.union(a, b);
            }
            ids.map(|id| m.canonical(id))
        };
        assert_eq!(reference, [8, 12, 17, 12, 12, 17, 12, 8, 17, 5]);
        for seed in 0..50 {
            let mut m = Merges::default();
            for (a, b) in shuffled(&records, seed) {
                // Either direction of a record means the same.
                if seed % 2 == 0 {
                    m.union(a, b)
                } else {
                    m.union(b, a)
                };
            }
            assert_eq!(ids.map(|id| m.canonical(id)), reference, "order {seed}");
        }
    }

    #[test]
    fn union_reports_the_id_that_stopped_being_canonical() {
        let mut m = Merges::default();
        assert_eq!(m.union(9, 4), (4, Some(9)));
        assert_eq!(m.union(4, 9), (4, None));
        assert_eq!(m.union(9, 2), (2, Some(4)));
        let mut merged = m.merged_into(2).to_vec();
        merged.sort_unstable();
        assert_eq!(merged, [4, 9]);
        assert!(m.merged_into(9).is_empty());
        assert_eq!(m.len(), 2);
    }
}
