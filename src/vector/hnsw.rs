//! A hierarchical navigable small world graph (Malkov & Yashunin, 2016) over `f32` vectors:
//! nodes are numbered in insertion order, each sits on layers `0..=level` (levels drawn with
//! probability `1/m` per layer up), and keeps up to `m` neighbours per layer (`2m` on layer 0)
//! chosen with the paper's diversity heuristic. Search descends greedily from the top entry
//! point, then explores layer 0 with a beam of `ef` candidates.
//!
//! Filtered search (for `WHERE ... ORDER BY distance LIMIT k`) widens the beam until `k`
//! accepted nodes are found or every node was seen, as pgvector 0.8's iterative scans do.
//! Deleted nodes stay in the graph as stepping stones and are never returned.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::vector::Metric;

/// A distance with a total order (NaN sorts last), for the heaps (also the index's exact
/// search, where `node` is a row).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Scored {
    pub(crate) distance: f32,
    pub(crate) node: u32,
}

impl Eq for Scored {}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.distance
            .total_cmp(&other.distance)
            .then(self.node.cmp(&other.node))
    }
}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Marks visited nodes per search without clearing an array each time.
#[derive(Debug, Default, Clone)]
struct Visited {
    marks: Vec<u32>,
    epoch: u32,
}

impl Visited {
    fn start(&mut self, nodes: usize) {
        if self.marks.len() < nodes {
            self.marks.resize(nodes, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.marks.iter_mut().for_each(|m| *m = 0);
            self.epoch = 1;
        }
    }

    /// Whether `node` is new to this search (and marks it).
    fn first_visit(&mut self, node: u32) -> bool {
        let mark = &mut self.marks[node as usize];
        if *mark == self.epoch {
            false
        } else {
            *mark = self.epoch;
            true
        }
    }
}

#[derive(Debug, Clone)]
pub struct Hnsw {
    dims: usize,
    metric: Metric,
    m: usize,
    ef_construction: usize,
    /// The vectors, `dims` per node (unit length for cosine).
    vectors: Vec<f32>,
    /// Each node's top layer.
    levels: Vec<u8>,
    /// Layer-0 neighbours: `2m` slots per node, `u32::MAX` when empty.
    layer0: Vec<u32>,
    /// Neighbours on layers 1..: per node, one list per layer above 0.
    upper: Vec<Vec<Vec<u32>>>,
    deleted: Vec<bool>,
    entry: Option<u32>,
    max_level: usize,
    seed: u64,
    visited: Visited,
}

const EMPTY: u32 = u32::MAX;

/// The first `len` bytes of `bytes`, advancing it past them.
fn take<'a>(bytes: &mut &'a [u8], len: usize) -> Option<&'a [u8]> {
    if bytes.len() < len {
        return None;
    }
    let (head, rest) = bytes.split_at(len);
    *bytes = rest;
    Some(head)
}

impl Hnsw {
    pub fn new(dims: usize, metric: Metric, m: usize, ef_construction: usize) -> Self {
        let m = m.clamp(2, 100);
        Self {
            dims,
            metric,
            m,
            ef_construction: ef_construction.max(m),
            vectors: Vec::new(),
            levels: Vec::new(),
            layer0: Vec::new(),
            upper: Vec::new(),
            deleted: Vec::new(),
            entry: None,
            max_level: 0,
            seed: 0x5eed_5eed_5eed_5eed,
            visited: Visited::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.levels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    pub fn dims(&self) -> usize {
        self.dims
    }

    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// Bytes held, for the benchmark's memory figure.
    pub fn memory_bytes(&self) -> usize {
        self.vectors.len() * 4
            + self.layer0.len() * 4
            + self.levels.len()
            + self.deleted.len()
            + self
                .upper
                .iter()
                .map(|layers| layers.iter().map(|l| l.len() * 4 + 24).sum::<usize>() + 24)
                .sum::<usize>()
    }

    fn vector(&self, node: u32) -> &[f32] {
        let start = node as usize * self.dims;
        &self.vectors[start..start + self.dims]
    }

    fn distance_to(&self, query: &[f32], node: u32) -> f32 {
        self.metric.distance(query, self.vector(node))
    }

    fn max_neighbours(&self, layer: usize) -> usize {
        if layer == 0 {
            2 * self.m
        } else {
            self.m
        }
    }

    fn neighbours(&self, node: u32, layer: usize) -> &[u32] {
        if layer == 0 {
            let start = node as usize * 2 * self.m;
            let slots = &self.layer0[start..start + 2 * self.m];
            let len = slots
                .iter()
                .position(|&n| n == EMPTY)
                .unwrap_or(slots.len());
            &slots[..len]
        } else {
            &self.upper[node as usize][layer - 1]
        }
    }

    fn set_neighbours(&mut self, node: u32, layer: usize, neighbours: &[u32]) {
        if layer == 0 {
            let width = 2 * self.m;
            let start = node as usize * width;
            let slots = &mut self.layer0[start..start + width];
            slots.fill(EMPTY);
            slots[..neighbours.len()].copy_from_slice(neighbours);
        } else {
            self.upper[node as usize][layer - 1] = neighbours.to_vec();
        }
    }

    /// A level drawn with `P(level ≥ l) = m^-l`.
    fn draw_level(&mut self) -> usize {
        let z = splitmix64(&mut self.seed);
        let uniform = ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let level = (-uniform.ln() / (self.m as f64).ln()).floor() as usize;
        level.min(16)
    }

    /// Adds a vector (of `dims` values); returns its node number.
    pub fn insert(&mut self, vector: &[f32]) -> u32 {
        assert_eq!(vector.len(), self.dims, "vector size");
        let node = self.levels.len() as u32;
        let stored = self.metric.prepare(vector);
        self.vectors.extend_from_slice(&stored);
        let level = self.draw_level();
        self.levels.push(level as u8);
        self.layer0.extend(std::iter::repeat_n(EMPTY, 2 * self.m));
        self.upper.push(vec![Vec::new(); level]);
        self.deleted.push(false);
        let Some(mut entry) = self.entry else {
            self.entry = Some(node);
            self.max_level = level;
            return node;
        };
        let query = stored;
        for layer in (level + 1..=self.max_level).rev() {
            entry = self.greedy(&query, entry, layer);
        }
        for layer in (0..=level.min(self.max_level)).rev() {
            let found = self.search_layer(&query, &[entry], self.ef_construction, layer);
            // The new node links to `m` neighbours on every layer; theirs may grow to the
            // layer's limit.
            let chosen = self.select(&found, self.m);
            self.set_neighbours(node, layer, &chosen);
            for &neighbour in &chosen {
                self.connect(neighbour, node, layer);
            }
            entry = found.first().map_or(entry, |s| s.node);
        }
        if level > self.max_level {
            self.max_level = level;
            self.entry = Some(node);
        }
        node
    }

    /// Adds `new` to `node`'s neighbours on `layer`, pruning with the heuristic when full.
    fn connect(&mut self, node: u32, new: u32, layer: usize) {
        let limit = self.max_neighbours(layer);
        let current = self.neighbours(node, layer);
        if current.len() < limit {
            let mut list = current.to_vec();
            list.push(new);
            self.set_neighbours(node, layer, &list);
            return;
        }
        let base = self.vector(node).to_vec();
        let mut candidates: Vec<Scored> = current
            .iter()
            .chain(std::iter::once(&new))
            .map(|&n| Scored {
                distance: self.metric.distance(&base, self.vector(n)),
                node: n,
            })
            .collect();
        candidates.sort();
        let kept = self.select(&candidates, limit);
        self.set_neighbours(node, layer, &kept);
    }

    /// The paper's heuristic: walk the candidates nearest first and keep one only if it is
    /// nearer to the base than to every one kept, so neighbours spread in directions; then top
    /// up with the nearest skipped ones (hnswlib's `keepPrunedConnections`).
    fn select(&self, sorted: &[Scored], limit: usize) -> Vec<u32> {
        let mut kept: Vec<Scored> = Vec::with_capacity(limit);
        let mut skipped = Vec::new();
        for candidate in sorted {
            if kept.len() == limit {
                break;
            }
            let diverse = kept.iter().all(|k| {
                self.metric
                    .distance(self.vector(candidate.node), self.vector(k.node))
                    > candidate.distance
            });
            if diverse {
                kept.push(*candidate);
            } else {
                skipped.push(candidate.node);
            }
        }
        let mut out: Vec<u32> = kept.into_iter().map(|s| s.node).collect();
        for node in skipped {
            if out.len() == limit {
                break;
            }
            out.push(node);
        }
        out
    }

    /// The nearest node to `query` reachable greedily from `entry` on `layer`.
    fn greedy(&self, query: &[f32], mut entry: u32, layer: usize) -> u32 {
        let mut best = self.distance_to(query, entry);
        loop {
            let mut moved = false;
            for &neighbour in self.neighbours(entry, layer) {
                let d = self.distance_to(query, neighbour);
                if d < best {
                    best = d;
                    entry = neighbour;
                    moved = true;
                }
            }
            if !moved {
                return entry;
            }
        }
    }

    /// A beam search of width `ef` on `layer`: the nearest nodes found, nearest first.
    fn search_layer(
        &mut self,
        query: &[f32],
        entries: &[u32],
        ef: usize,
        layer: usize,
    ) -> Vec<Scored> {
        let mut visited = std::mem::take(&mut self.visited);
        let found = self.beam(query, entries, ef, layer, &mut visited);
        self.visited = visited;
        found
    }

    fn beam(
        &self,
        query: &[f32],
        entries: &[u32],
        ef: usize,
        layer: usize,
        visited: &mut Visited,
    ) -> Vec<Scored> {
        visited.start(self.len());
        // Candidates to expand, nearest first; results so far, farthest on top.
        let mut candidates: BinaryHeap<std::cmp::Reverse<Scored>> = BinaryHeap::new();
        let mut results: BinaryHeap<Scored> = BinaryHeap::new();
        for &entry in entries {
            if visited.first_visit(entry) {
                let scored = Scored {
                    distance: self.distance_to(query, entry),
                    node: entry,
                };
                candidates.push(std::cmp::Reverse(scored));
                results.push(scored);
            }
        }
        while let Some(std::cmp::Reverse(nearest)) = candidates.pop() {
            let farthest = results.peek().map_or(f32::INFINITY, |s| s.distance);
            if nearest.distance > farthest && results.len() >= ef {
                break;
            }
            for &neighbour in self.neighbours(nearest.node, layer) {
                if !visited.first_visit(neighbour) {
                    continue;
                }
                let distance = self.distance_to(query, neighbour);
                let farthest = results.peek().map_or(f32::INFINITY, |s| s.distance);
                if results.len() < ef || distance < farthest {
                    let scored = Scored {
                        distance,
                        node: neighbour,
                    };
                    candidates.push(std::cmp::Reverse(scored));
                    results.push(scored);
                    if results.len() > ef {
                        results.pop();
                    }
                }
            }
        }
        results.into_sorted_vec()
    }

    /// How many nodes are marked deleted.
    pub fn deleted_count(&self) -> usize {
        self.deleted.iter().filter(|&&d| d).count()
    }

    /// Appends the graph's bytes (little-endian) to `out`; [`Hnsw::decode`] reads them back.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let metric: u8 = match self.metric {
            Metric::L2 => 0,
            Metric::Cosine => 1,
            Metric::InnerProduct => 2,
        };
        for value in [
            self.dims as u64,
            self.m as u64,
            self.ef_construction as u64,
            self.levels.len() as u64,
            self.max_level as u64,
            self.entry.map_or(u64::MAX, u64::from),
            self.seed,
        ] {
            out.extend_from_slice(&value.to_le_bytes());
        }
        out.push(metric);
        out.extend(self.vectors.iter().flat_map(|v| v.to_le_bytes()));
        out.extend_from_slice(&self.levels);
        out.extend(self.deleted.iter().map(|&d| d as u8));
        out.extend(self.layer0.iter().flat_map(|n| n.to_le_bytes()));
        for layers in &self.upper {
            for list in layers {
                out.extend_from_slice(&(list.len() as u32).to_le_bytes());
                out.extend(list.iter().flat_map(|n| n.to_le_bytes()));
            }
        }
    }

    /// Reads a graph written by [`Hnsw::encode`] from the front of `bytes`, advancing it; `None`
    /// when the bytes do not hold a consistent graph.
    pub fn decode(bytes: &mut &[u8]) -> Option<Hnsw> {
        let mut header = [0u64; 7];
        for value in header.iter_mut() {
            *value = u64::from_le_bytes(take(bytes, 8)?.try_into().ok()?);
        }
        let [dims, m, ef_construction, nodes, max_level, entry, seed] = header;
        let (dims, m, nodes) = (dims as usize, m as usize, nodes as usize);
        if dims == 0 || !(2..=100).contains(&m) || nodes > u32::MAX as usize {
            return None;
        }
        let metric = match take(bytes, 1)?[0] {
            0 => Metric::L2,
            1 => Metric::Cosine,
            2 => Metric::InnerProduct,
            _ => return None,
        };
        let vectors = take(bytes, nodes.checked_mul(dims)?.checked_mul(4)?)?
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        let levels = take(bytes, nodes)?.to_vec();
        let deleted = take(bytes, nodes)?.iter().map(|&d| d != 0).collect();
        let read_nodes = |raw: &[u8]| -> Vec<u32> {
            raw.chunks_exact(4)
                .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
                .collect()
        };
        let layer0 = read_nodes(take(bytes, nodes.checked_mul(2 * m)?.checked_mul(4)?)?);
        let mut upper = Vec::with_capacity(nodes);
        for &level in &levels {
            let mut layers = Vec::with_capacity(level as usize);
            for _ in 0..level {
                let len = u32::from_le_bytes(take(bytes, 4)?.try_into().ok()?) as usize;
                layers.push(read_nodes(take(bytes, len.checked_mul(4)?)?));
            }
            upper.push(layers);
        }
        let entry = (entry != u64::MAX).then_some(entry as u32);
        let in_range = |n: &u32| *n == EMPTY || (*n as usize) < nodes;
        let consistent = entry.is_none_or(|e| (e as usize) < nodes)
            && (nodes == 0) == entry.is_none()
            && layer0.iter().all(in_range)
            && upper.iter().flatten().flatten().all(in_range)
            && levels.iter().all(|&l| (l as u64) <= max_level);
        consistent.then_some(Hnsw {
            dims,
            metric,
            m,
            ef_construction: ef_construction as usize,
            vectors,
            levels,
            layer0,
            upper,
            deleted,
            entry,
            max_level: max_level as usize,
            seed,
            visited: Visited::default(),
        })
    }

    /// Marks a node deleted: it still routes searches but is never returned.
    pub fn delete(&mut self, node: u32) {
        if let Some(flag) = self.deleted.get_mut(node as usize) {
            *flag = true;
        }
    }

    /// The `k` nearest live nodes accepted by `accept`, nearest first, with their distances.
    /// Starts with a beam of `max(ef, k)` and doubles it while fewer than `k` were accepted and
    /// unseen nodes remain.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        mut accept: impl FnMut(u32) -> bool,
    ) -> Vec<(u32, f32)> {
        let Some(mut entry) = self.entry else {
            return Vec::new();
        };
        if k == 0 {
            return Vec::new();
        }
        let query = self.metric.prepare(query);
        for layer in (1..=self.max_level).rev() {
            entry = self.greedy(&query, entry, layer);
        }
        let mut visited = Visited::default();
        let mut ef = ef.max(k);
        loop {
            let found = self.beam(&query, &[entry], ef, 0, &mut visited);
            let seen_all = found.len() >= self.len() || ef >= self.len();
            let accepted: Vec<(u32, f32)> = found
                .iter()
                .filter(|s| !self.deleted[s.node as usize] && accept(s.node))
                .take(k)
                .map(|s| (s.node, s.distance))
                .collect();
            if accepted.len() >= k || seen_all {
                return accepted;
            }
            ef = (ef * 2).min(self.len());
        }
    }
}

/// SplitMix64: the next value of a small seeded generator whose whole state is `state`, so a
/// run can be reproduced from its seed (index levels, the rewriter's test databases).
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(n: usize, dims: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                (0..dims)
                    .map(|_| {
                        state = state
                            .wrapping_mul(6_364_136_223_846_793_005)
                            .wrapping_add(1_442_695_040_888_963_407);
                        ((state >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
                    })
                    .collect()
            })
            .collect()
    }

    fn exact(data: &[Vec<f32>], query: &[f32], k: usize, metric: Metric) -> Vec<u32> {
        let query = metric.prepare(query);
        let mut scored: Vec<(f32, u32)> = data
            .iter()
            .enumerate()
            .map(|(i, v)| (metric.distance(&query, &metric.prepare(v)), i as u32))
            .collect();
        scored.sort_by(|a, b| a.0.total_cmp(&b.0));
        scored.into_iter().take(k).map(|(_, i)| i).collect()
    }

    #[test]
    fn recall_is_high_for_every_metric() {
        let data = points(3000, 16, 1);
        let queries = points(50, 16, 2);
        for metric in [Metric::L2, Metric::Cosine, Metric::InnerProduct] {
            let mut index = Hnsw::new(16, metric, 16, 64);
            for v in &data {
                index.insert(v);
            }
            let mut hits = 0;
            for q in &queries {
                let truth = exact(&data, q, 10, metric);
                let found: Vec<u32> = index
                    .search(q, 10, 64, |_| true)
                    .iter()
                    .map(|r| r.0)
                    .collect();
                hits += found.iter().filter(|n| truth.contains(n)).count();
            }
            let recall = hits as f64 / (queries.len() * 10) as f64;
            assert!(recall > 0.9, "{metric:?}: recall {recall}");
        }
    }

    #[test]
    fn filtered_search_widens_until_k_rows_pass() {
        let data = points(2000, 8, 3);
        let mut index = Hnsw::new(8, Metric::L2, 8, 32);
        for v in &data {
            index.insert(v);
        }
        // Only 1 node in 100 passes: a beam of 40 would find none of them.
        let found = index.search(&data[0], 5, 40, |n| n % 100 == 7);
        assert_eq!(found.len(), 5);
        assert!(found.iter().all(|(n, _)| n % 100 == 7));
        let truth: Vec<u32> = exact(&data, &data[0], 2000, Metric::L2)
            .into_iter()
            .filter(|n| n % 100 == 7)
            .take(5)
            .collect();
        let found: Vec<u32> = found.iter().map(|r| r.0).collect();
        assert_eq!(found, truth);
        // Fewer matching nodes than k: all of them.
        assert_eq!(
            index.search(&data[0], 5, 40, |n| n == 3 || n == 1999).len(),
            2
        );
    }

    #[test]
    fn deleted_nodes_are_never_returned() {
        let data = points(500, 4, 4);
        let mut index = Hnsw::new(4, Metric::L2, 8, 32);
        for v in &data {
            index.insert(v);
        }
        index.delete(0);
        let found = index.search(&data[0], 3, 32, |_| true);
        assert!(found.iter().all(|(n, _)| *n != 0));
        assert_eq!(found.len(), 3);
    }

    #[test]
    fn a_graph_survives_encoding_and_damage_is_refused() {
        let data = points(500, 8, 7);
        let mut index = Hnsw::new(8, Metric::Cosine, 8, 32);
        for v in &data {
            index.insert(v);
        }
        index.delete(3);
        let mut bytes = Vec::new();
        index.encode(&mut bytes);
        let decoded = Hnsw::decode(&mut bytes.as_slice()).expect("decodes");
        let query = &data[10];
        assert_eq!(
            decoded.search(query, 5, 40, |_| true),
            index.search(query, 5, 40, |_| true)
        );
        assert_eq!(decoded.deleted_count(), 1);
        assert!(Hnsw::decode(&mut &bytes[..bytes.len() - 3]).is_none());
    }
}
