//! A vector index on one `vector(n)` column of a managed table: an HNSW graph whose nodes are
//! the table's rows, kept in step with every commit and saved to the data folder.
//!
//! Rows have no stable ids: they are numbered in scan order, and a DELETE renumbers those after
//! it. The index therefore keeps, for the table version it covers, each row's node and each
//! node's row, and replays each commit's [`RowChange`]s: appended rows are inserted, removed
//! rows' nodes are marked deleted, rows whose vector was assigned get a new node. When deleted
//! nodes outnumber live ones the graph is rebuilt.
//!
//! The saved file is only a cache. It records the table's data files it covers: when they are
//! a prefix of the table's files (the table was only appended to since), the rest is inserted;
//! otherwise, or when the file is missing or damaged (its SHA-256 does not match), the graph is rebuilt
//! from the table at start.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Float32Type, Schema};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::hnsw::{Hnsw, Scored};
use super::Metric;
use crate::engine::storage::{write_atomically, IndexEntry};
use crate::engine::table::TableData;
use crate::engine::transaction::RowChange;
use crate::error::SemsqlError;

const NO_NODE: u32 = u32::MAX;
const FILE_MAGIC: &[u8; 12] = b"SEMSQL-HNSW1";
/// How long after a change the graph is saved (changes in between share one save).
const SAVE_DELAY: Duration = Duration::from_millis(500);

/// pgvector's operator classes for `hnsw`, and the distance each orders by.
pub fn metric_of(operator_class: &str) -> Option<Metric> {
    match operator_class {
        "vector_l2_ops" => Some(Metric::L2),
        "vector_cosine_ops" => Some(Metric::Cosine),
        "vector_ip_ops" => Some(Metric::InnerProduct),
        _ => None,
    }
}

/// The size of a `vector(n)` column, if `column` is one.
pub fn vector_column_dims(schema: &Schema, column: usize) -> Option<usize> {
    match schema.field(column).data_type() {
        DataType::FixedSizeList(element, dims) if element.data_type() == &DataType::Float32 => {
            Some(*dims as usize)
        }
        _ => None,
    }
}

#[derive(Debug)]
pub struct VectorIndex {
    name: String,
    entry: IndexEntry,
    column: usize,
    dims: usize,
    metric: Metric,
    path: PathBuf,
    state: RwLock<IndexState>,
    save_scheduled: AtomicBool,
    /// Held while the file is written or removed; `true` once the index is dropped.
    file_lock: Mutex<bool>,
}

/// The graph for one committed version of the table, and the rows it was built from.
#[derive(Debug)]
pub struct IndexState {
    graph: Hnsw,
    /// Per row (scan order), its node; `NO_NODE` for a NULL vector.
    row_nodes: Vec<u32>,
    /// Per node, its row; `NO_NODE` for a deleted node.
    node_rows: Vec<u32>,
    version: u64,
    files: Vec<String>,
    batches: Vec<RecordBatch>,
}

/// What the saved file says about the graph after it.
#[derive(Debug, Serialize, Deserialize)]
struct FileHeader {
    entry: IndexEntry,
    files: Vec<String>,
    rows: usize,
}

impl VectorIndex {
    /// Builds the index `name` over `data` (CREATE INDEX).
    pub fn build(
        name: &str,
        entry: IndexEntry,
        schema: &Schema,
        data: &TableData,
        path: PathBuf,
    ) -> Result<VectorIndex, SemsqlError> {
        let index = Self::empty(name, entry, schema, data, path)?;
        {
            let mut state = index.state.write().expect("index lock");
            index.rebuild(&mut state, data);
        }
        Ok(index)
    }

    /// Opens the index at start: from its file when that still fits the table, else rebuilt.
    pub fn open(
        name: &str,
        entry: IndexEntry,
        schema: &Schema,
        data: &TableData,
        path: PathBuf,
    ) -> Result<VectorIndex, SemsqlError> {
        let index = Self::empty(name, entry, schema, data, path)?;
        let started = Instant::now();
        let loaded = index.load(data);
        let mut state = index.state.write().expect("index lock");
        match loaded {
            Ok(loaded) => {
                *state = loaded;
                tracing::info!(index = %name, rows = state.row_nodes.len(), "index loaded");
            }
            Err(reason) => {
                index.rebuild(&mut state, data);
                tracing::info!(
                    index = %name,
                    %reason,
                    seconds = started.elapsed().as_secs_f64(),
                    "index rebuilt from its table"
                );
                drop(state);
                index.save_now();
                return Ok(index);
            }
        }
        drop(state);
        Ok(index)
    }

    fn empty(
        name: &str,
        entry: IndexEntry,
        schema: &Schema,
        data: &TableData,
        path: PathBuf,
    ) -> Result<VectorIndex, SemsqlError> {
        let column = schema
            .index_of(&entry.column)
            .map_err(|_| SemsqlError::ColumnNotFound {
                column: entry.column.clone(),
                table: entry.table.clone(),
            })?;
        let dims = vector_column_dims(schema, column)
            .ok_or_else(|| SemsqlError::NoVectorDimensions(entry.column.clone()))?;
        let metric = metric_of(&entry.operator_class).ok_or_else(|| {
            SemsqlError::NotSupported(format!(
                "operator class \"{}\" does not exist for access method \"hnsw\"",
                entry.operator_class
            ))
        })?;
        let graph = Hnsw::new(dims, metric, entry.m, entry.ef_construction);
        Ok(VectorIndex {
            name: name.to_owned(),
            column,
            dims,
            metric,
            path,
            state: RwLock::new(IndexState {
                graph,
                row_nodes: Vec::new(),
                node_rows: Vec::new(),
                version: data.version,
                files: data.files.clone(),
                batches: Vec::new(),
            }),
            entry,
            save_scheduled: AtomicBool::new(false),
            file_lock: Mutex::new(false),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn entry(&self) -> &IndexEntry {
        &self.entry
    }

    /// The indexed column's position in the table.
    pub fn column(&self) -> usize {
        self.column
    }

    pub fn metric(&self) -> Metric {
        self.metric
    }

    pub fn dims(&self) -> usize {
        self.dims
    }

    /// The graph and the rows it covers, for a search.
    pub fn read(&self) -> RwLockReadGuard<'_, IndexState> {
        self.state.read().expect("index lock")
    }

    fn rebuild(&self, state: &mut IndexState, data: &TableData) {
        state.graph = Hnsw::new(
            self.dims,
            self.metric,
            self.entry.m,
            self.entry.ef_construction,
        );
        state.row_nodes.clear();
        state.node_rows.clear();
        let rows = data.batches.iter().map(RecordBatch::num_rows).sum();
        self.insert_missing(state, &data.batches, vec![NO_NODE; rows]);
        state.version = data.version;
        state.files = data.files.clone();
        state.batches = data.batches.clone();
    }

    /// Gives every row in `row_nodes` still without a node (and with a vector) one, and
    /// renumbers nodes' rows.
    fn insert_missing(
        &self,
        state: &mut IndexState,
        batches: &[RecordBatch],
        mut row_nodes: Vec<u32>,
    ) {
        for (row, vector) in column_vectors(batches, self.column, self.dims).enumerate() {
            if let (NO_NODE, Some(vector)) = (row_nodes[row], vector) {
                row_nodes[row] = state.graph.insert(vector);
            }
        }
        state.node_rows = vec![NO_NODE; state.graph.len()];
        for (row, &node) in row_nodes.iter().enumerate() {
            if node != NO_NODE {
                state.node_rows[node as usize] = row as u32;
            }
        }
        state.row_nodes = row_nodes;
    }

    /// Brings the index from the table's version `from_version` to `data` by replaying
    /// `changes`; rebuilds when it was not at `from_version` or the changes do not add up.
    pub fn follow(self: &Arc<Self>, from_version: u64, changes: &[RowChange], data: &TableData) {
        let mut state = self.state.write().expect("index lock");
        let replayed = state.version == from_version && self.replay(&mut state, changes, data);
        if !replayed {
            tracing::info!(index = %self.name, "rebuilding an index that fell out of step");
            self.rebuild(&mut state, data);
        } else if state.graph.deleted_count() > state.graph.len() / 2 && state.graph.len() > 64 {
            self.rebuild(&mut state, data);
        }
        drop(state);
        self.schedule_save();
    }

    fn replay(&self, state: &mut IndexState, changes: &[RowChange], data: &TableData) -> bool {
        let mut rows = std::mem::take(&mut state.row_nodes);
        for change in changes {
            match change {
                RowChange::Appended(count) => rows.extend(std::iter::repeat_n(NO_NODE, *count)),
                RowChange::Removed(removed) => {
                    if removed.len() != rows.len() {
                        return false;
                    }
                    for (&node, _) in rows.iter().zip(removed).filter(|(_, &gone)| gone) {
                        if node != NO_NODE {
                            state.graph.delete(node);
                        }
                    }
                    let mut flags = removed.iter();
                    rows.retain(|_| !flags.next().copied().unwrap_or(false));
                }
                RowChange::Changed {
                    rows: changed,
                    columns,
                } => {
                    if changed.len() != rows.len() {
                        return false;
                    }
                    if !columns.contains(&self.column) {
                        continue;
                    }
                    for (node, _) in rows.iter_mut().zip(changed).filter(|(_, &c)| c) {
                        if *node != NO_NODE {
                            state.graph.delete(*node);
                        }
                        *node = NO_NODE;
                    }
                }
            }
        }
        let total: usize = data.batches.iter().map(RecordBatch::num_rows).sum();
        if rows.len() != total {
            return false;
        }
        self.insert_missing(state, &data.batches, rows);
        state.version = data.version;
        state.files = data.files.clone();
        state.batches = data.batches.clone();
        true
    }

    /// Saves the graph soon, on a thread of its own: commits do not wait for the write.
    fn schedule_save(self: &Arc<Self>) {
        if self.save_scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let index = Arc::clone(self);
        std::thread::spawn(move || {
            std::thread::sleep(SAVE_DELAY);
            index.save_scheduled.store(false, Ordering::Release);
            index.save_now();
        });
    }

    /// Writes the file now; a failure is logged (the graph is rebuilt at the next start).
    pub fn save_now(&self) {
        let dropped = self.file_lock.lock().expect("index file lock");
        if *dropped {
            return;
        }
        let bytes = self.encode();
        if let Err(err) = write_atomically(&self.path, &bytes) {
            tracing::warn!(index = %self.name, %err, "could not save an index; it will be rebuilt at the next start");
        }
    }

    /// Removes the file for good (DROP INDEX, DROP TABLE); later saves are skipped.
    pub fn remove_file(&self) {
        let mut dropped = self.file_lock.lock().expect("index file lock");
        *dropped = true;
        let _ = std::fs::remove_file(&self.path);
    }

    fn encode(&self) -> Vec<u8> {
        let state = self.read();
        let header = FileHeader {
            entry: self.entry.clone(),
            files: state.files.clone(),
            rows: state.row_nodes.len(),
        };
        let header = serde_json::to_vec(&header).expect("an index header encodes");
        let mut out = Vec::with_capacity(state.graph.memory_bytes() + state.row_nodes.len() * 4);
        out.extend_from_slice(FILE_MAGIC);
        out.extend_from_slice(&(header.len() as u64).to_le_bytes());
        out.extend_from_slice(&header);
        out.extend(state.row_nodes.iter().flat_map(|n| n.to_le_bytes()));
        state.graph.encode(&mut out);
        let checksum = Sha256::digest(&out);
        out.extend_from_slice(&checksum);
        out
    }

    /// Reads the file and catches it up with `data`; the error says why it cannot be used.
    fn load(&self, data: &TableData) -> Result<IndexState, String> {
        let bytes = std::fs::read(&self.path).map_err(|err| format!("no usable file ({err})"))?;
        let (body, checksum) = bytes
            .split_last_chunk::<32>()
            .ok_or("the file is truncated")?;
        if Sha256::digest(body).as_slice() != checksum.as_slice() {
            return Err("the file's checksum does not match (damaged)".into());
        }
        let damaged = || "the file is damaged".to_owned();
        let mut rest = body
            .strip_prefix(FILE_MAGIC.as_slice())
            .ok_or_else(damaged)?;
        let header_len = rest
            .split_first_chunk::<8>()
            .map(|(len, tail)| {
                rest = tail;
                u64::from_le_bytes(*len) as usize
            })
            .ok_or_else(damaged)?;
        if rest.len() < header_len {
            return Err(damaged());
        }
        let header: FileHeader =
            serde_json::from_slice(&rest[..header_len]).map_err(|_| damaged())?;
        rest = &rest[header_len..];
        if header.entry != self.entry {
            return Err("the file is of another index definition".into());
        }
        if !data.files.starts_with(&header.files) {
            return Err("the table was rewritten since the file was saved".into());
        }
        let total: usize = data.batches.iter().map(RecordBatch::num_rows).sum();
        if header.rows > total || rest.len() < header.rows * 4 {
            return Err(damaged());
        }
        let (row_bytes, mut graph_bytes) = rest.split_at(header.rows * 4);
        let row_nodes: Vec<u32> = row_bytes
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        let graph = Hnsw::decode(&mut graph_bytes).ok_or_else(damaged)?;
        if !graph_bytes.is_empty()
            || graph.dims() != self.dims
            || graph.metric() != self.metric
            || row_nodes
                .iter()
                .any(|&n| n != NO_NODE && n as usize >= graph.len())
        {
            return Err(damaged());
        }
        let mut state = IndexState {
            graph,
            row_nodes: Vec::new(),
            node_rows: Vec::new(),
            version: data.version,
            files: data.files.clone(),
            batches: data.batches.clone(),
        };
        let mut rows = row_nodes;
        rows.resize(total, NO_NODE);
        self.insert_missing(&mut state, &data.batches, rows);
        Ok(state)
    }
}

/// Each row's vector of the `vector(dims)` column `column`, in scan order (`None` for NULL).
fn column_vectors(
    batches: &[RecordBatch],
    column: usize,
    dims: usize,
) -> impl Iterator<Item = Option<&[f32]>> {
    batches.iter().flat_map(move |batch| {
        let vectors = batch.column(column).as_fixed_size_list();
        let values = vectors.values().as_primitive::<Float32Type>().values();
        (0..batch.num_rows()).map(move |i| {
            let start = vectors.value_offset(i) as usize;
            vectors.is_valid(i).then(|| &values[start..start + dims])
        })
    })
}

impl IndexState {
    /// The rows (scan order) this state covers.
    pub fn batches(&self) -> &[RecordBatch] {
        &self.batches
    }

    pub fn rows(&self) -> usize {
        self.row_nodes.len()
    }

    /// The `k` nearest rows with a vector whose flag in `accepted` (one per row) is set, by
    /// the graph with a beam of `ef` widened until `k` are found.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        accepted: Option<&[bool]>,
    ) -> Vec<usize> {
        self.graph
            .search(query, k, ef, |node| {
                let row = self.node_rows[node as usize];
                row != NO_NODE && accepted.is_none_or(|flags| flags[row as usize])
            })
            .into_iter()
            .map(|(node, _)| self.node_rows[node as usize] as usize)
            .collect()
    }

    /// The `k` nearest accepted rows by computing every accepted row's distance: cheaper than
    /// the graph when few rows pass the filter.
    pub fn exact(
        &self,
        index: &VectorIndex,
        query: &[f32],
        k: usize,
        accepted: Option<&[bool]>,
    ) -> Vec<usize> {
        let metric = index.metric;
        let query = metric.prepare(query);
        let mut nearest: std::collections::BinaryHeap<Scored> =
            std::collections::BinaryHeap::with_capacity(k + 1);
        let vectors = column_vectors(&self.batches, index.column, index.dims);
        for (row, vector) in vectors.enumerate() {
            let Some(vector) = vector else { continue };
            if accepted.is_some_and(|flags| !flags[row]) {
                continue;
            }
            let scored = Scored {
                distance: match metric {
                    Metric::Cosine => metric.distance(&query, &metric.prepare(vector)),
                    _ => metric.distance(&query, vector),
                },
                node: row as u32,
            };
            if nearest.len() < k {
                nearest.push(scored);
            } else if nearest.peek().is_some_and(|worst| scored < *worst) {
                nearest.pop();
                nearest.push(scored);
            }
        }
        nearest
            .into_sorted_vec()
            .into_iter()
            .map(|scored| scored.node as usize)
            .collect()
    }

    /// Accepted rows without a vector, in scan order: they sort last (NULLS LAST) and fill a
    /// result that has fewer than k rows with a vector.
    pub fn rows_without_vector(&self, accepted: Option<&[bool]>, limit: usize) -> Vec<usize> {
        self.row_nodes
            .iter()
            .enumerate()
            .filter(|(row, &node)| node == NO_NODE && accepted.is_none_or(|flags| flags[*row]))
            .map(|(row, _)| row)
            .take(limit)
            .collect()
    }

    pub fn memory_bytes(&self) -> usize {
        self.graph.memory_bytes() + (self.row_nodes.len() + self.node_rows.len()) * 4
    }
}
