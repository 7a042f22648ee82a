//! Physical optimizer rule: `ORDER BY col <-> constant LIMIT k` (also `<=>` and `<#>`) over a
//! table with an HNSW index on `col` for that distance searches the index instead of computing
//! every row's distance.
//!
//! DataFusion plans the query as `SortExec: TopK(fetch=k)` over projections, row movers and at
//! most one filter, down to the table scan. A table with indexes is scanned as an
//! [`IndexedScanExec`] (the usual memory scan, marked with its table). The rule follows the
//! sort expression down (through projections) to that scan and, when it is a distance between
//! an indexed column and a constant, replaces the scan by an [`HnswSearchExec`] that returns
//! the k nearest rows (that pass the filter). Everything above stays: the filter and the TopK
//! run again on those k rows, so the answer's order and columns are exactly the plan's.
//!
//! With a filter, the search widens its beam until k rows pass (or every node was seen); when
//! so few rows pass that computing their distances is cheaper than walking the graph, it
//! computes them exactly instead. Rows without a vector come last (NULLS LAST), as in the scan.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray, RecordBatch};
use datafusion::arrow::compute::interleave_record_batch;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::expressions::{Column, Literal, NegativeExpr};
use datafusion::physical_expr::{
    EquivalenceProperties, Partitioning, PhysicalExpr, ScalarFunctionExpr,
};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::execution_plan::{
    Boundedness, ChildrenPropertiesMode, EmissionType, ReplaceChildrenOptions,
};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::statistics::StatisticsArgs;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, Statistics,
};
use semsql_udfs::lm::LmSettings;

use super::is_row_mover;
use crate::engine::table::TableShared;
use crate::vector::index::VectorIndex;
use crate::vector::Metric;

/// A managed table's scan, marked so that [`VectorIndexSearch`] can find the table's indexes.
/// It runs the memory scan it wraps.
#[derive(Debug)]
pub struct IndexedScanExec {
    scan: Arc<dyn ExecutionPlan>,
    table: Arc<TableShared>,
    projection: Option<Vec<usize>>,
}

impl IndexedScanExec {
    pub fn new(
        scan: Arc<dyn ExecutionPlan>,
        table: Arc<TableShared>,
        projection: Option<Vec<usize>>,
    ) -> Self {
        IndexedScanExec {
            scan,
            table,
            projection,
        }
    }

    /// The table column behind output column `column`.
    fn table_column(&self, column: usize) -> usize {
        self.projection.as_ref().map_or(column, |p| p[column])
    }
}

impl DisplayAs for IndexedScanExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "IndexedScanExec: table={}, ", self.table.display_name())?;
        self.scan.fmt_as(t, f)
    }
}

impl ExecutionPlan for IndexedScanExec {
    fn name(&self) -> &str {
        "IndexedScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.scan.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.scan.execute(partition, context)
    }

    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        self.scan.statistics_from_inputs(input_stats, args)
    }
}

/// The k nearest rows by one index, with the scan's columns; one partition.
#[derive(Debug, Clone)]
pub struct HnswSearchExec {
    index: Arc<VectorIndex>,
    table: String,
    projection: Option<Vec<usize>>,
    query: Vec<f32>,
    k: usize,
    ef_search: usize,
    filter: Option<Arc<dyn PhysicalExpr>>,
    properties: Arc<PlanProperties>,
    /// For EXPLAIN ANALYZE: `matching_rows` (rows that passed the filter), `exact_searches` or
    /// `graph_searches` (which way the k rows were found), `output_rows`.
    metrics: ExecutionPlanMetricsSet,
}

impl HnswSearchExec {
    fn new(
        scan: &IndexedScanExec,
        index: Arc<VectorIndex>,
        query: Vec<f32>,
        k: usize,
        ef_search: usize,
        filter: Option<Arc<dyn PhysicalExpr>>,
    ) -> Self {
        let schema = scan.schema();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        HnswSearchExec {
            index,
            table: scan.table.display_name(),
            projection: scan.projection.clone(),
            query,
            k,
            ef_search,
            filter,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    /// Whether computing the distance of every accepted row costs less than the graph search:
    /// a beam must hold about `k × total / accepted` nodes before k of them pass, and each
    /// costs a few dozen distance computations.
    fn exact_is_cheaper(&self, accepted: usize, total: usize) -> bool {
        const DISTANCES_PER_BEAM_NODE: usize = 32;
        let beam = self
            .ef_search
            .max(self.k.saturating_mul(total) / accepted.max(1));
        accepted <= beam.saturating_mul(DISTANCES_PER_BEAM_NODE)
    }

    fn search(&self) -> Result<RecordBatch> {
        let state = self.index.read();
        let batches = state
            .batches()
            .iter()
            .map(|batch| match &self.projection {
                Some(columns) => batch.project(columns),
                None => Ok(batch.clone()),
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let accepted = match &self.filter {
            Some(filter) => {
                let mut flags = Vec::with_capacity(state.rows());
                for batch in &batches {
                    let mask = filter.evaluate(batch)?.into_array(batch.num_rows())?;
                    let mask = mask
                        .as_any()
                        .downcast_ref::<BooleanArray>()
                        .ok_or_else(|| {
                            DataFusionError::Plan("argument of WHERE must be type boolean".into())
                        })?;
                    flags.extend((0..mask.len()).map(|i| mask.is_valid(i) && mask.value(i)));
                }
                Some(flags)
            }
            None => None,
        };
        let accepted_count = accepted
            .as_ref()
            .map_or(state.rows(), |flags| flags.iter().filter(|&&f| f).count());
        let flags = accepted.as_deref();
        let counter = |name: &'static str| MetricBuilder::new(&self.metrics).counter(name, 0);
        counter("matching_rows").add(accepted_count);
        let mut rows = if accepted_count == 0 {
            Vec::new()
        } else if self.exact_is_cheaper(accepted_count, state.rows()) {
            counter("exact_searches").add(1);
            state.exact(&self.index, &self.query, self.k, flags)
        } else {
            counter("graph_searches").add(1);
            state.search(&self.query, self.k, self.ef_search, flags)
        };
        if rows.len() < self.k {
            rows.extend(state.rows_without_vector(flags, self.k - rows.len()));
        }
        let schema = self.schema();
        if rows.is_empty() || batches.is_empty() {
            return Ok(RecordBatch::new_empty(schema));
        }
        // Row numbers → (batch, row in batch).
        let mut starts = Vec::with_capacity(batches.len());
        let mut offset = 0;
        for batch in &batches {
            starts.push(offset);
            offset += batch.num_rows();
        }
        let positions: Vec<(usize, usize)> = rows
            .iter()
            .map(|&row| {
                let batch = starts.partition_point(|&start| start <= row) - 1;
                (batch, row - starts[batch])
            })
            .collect();
        let sources: Vec<&RecordBatch> = batches.iter().collect();
        MetricBuilder::new(&self.metrics)
            .output_rows(0)
            .add(positions.len());
        Ok(interleave_record_batch(&sources, &positions)?)
    }
}

impl DisplayAs for HnswSearchExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let operator_class = &self.index.entry().operator_class;
        write!(
            f,
            "HnswSearchExec: index={} ({operator_class}) on {}, k={}, ef_search={}",
            self.index.name(),
            self.table,
            self.k,
            self.ef_search
        )?;
        if let Some(filter) = &self.filter {
            write!(f, ", filter={filter}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for HnswSearchExec {
    fn name(&self) -> &str {
        "HnswSearchExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        match &self.filter {
            Some(filter) => f(filter),
            None => Ok(TreeNodeRecursion::Continue),
        }
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "HnswSearchExec has one partition, not {partition}"
            )));
        }
        let search = self.clone();
        let stream = futures::stream::once(async move {
            tokio::task::spawn_blocking(move || search.search())
                .await
                .map_err(|err| DataFusionError::External(Box::new(err)))?
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            stream,
        )))
    }
}

#[derive(Debug, Default)]
pub struct VectorIndexSearch;

impl PhysicalOptimizerRule for VectorIndexSearch {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let ef_search = LmSettings::of(config).hnsw_ef_search as usize;
        plan.transform_down(|node| {
            let Some(sort) = node.downcast_ref::<SortExec>() else {
                return Ok(Transformed::no(node));
            };
            let (Some(k), [order]) = (sort.fetch(), sort.expr().as_ref()) else {
                return Ok(Transformed::no(node));
            };
            if order.options.descending || order.options.nulls_first {
                return Ok(Transformed::no(node));
            }
            let search = Search {
                k,
                ef_search,
                filter: None,
            };
            match search.rewrite(sort.input(), Arc::clone(&order.expr))? {
                Some(input) => {
                    let node = with_child(&node, input)?;
                    Ok(Transformed::new(node, true, TreeNodeRecursion::Jump))
                }
                None => Ok(Transformed::no(node)),
            }
        })
        .map(|transformed| transformed.data)
    }

    fn name(&self) -> &str {
        "vector_index_search"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

struct Search {
    k: usize,
    ef_search: usize,
    filter: Option<Arc<dyn PhysicalExpr>>,
}

/// `node` over a new input, its properties recomputed (the search has one partition).
fn with_child(
    node: &Arc<dyn ExecutionPlan>,
    child: Arc<dyn ExecutionPlan>,
) -> Result<Arc<dyn ExecutionPlan>> {
    Arc::clone(node).replace_children(
        vec![child],
        ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
    )
}

/// `expr` with every column replaced by the projection's expression for it.
fn through_projection(
    expr: &Arc<dyn PhysicalExpr>,
    projection: &ProjectionExec,
) -> Result<Arc<dyn PhysicalExpr>> {
    Arc::clone(expr)
        .transform(|e| match e.downcast_ref::<Column>() {
            Some(column) => Ok(Transformed::yes(Arc::clone(
                &projection.expr()[column.index()].expr,
            ))),
            None => Ok(Transformed::no(e)),
        })
        .map(|t| t.data)
}

impl Search {
    /// `node` with its scan replaced by an index search for `order` (an expression over
    /// `node`'s output), or `None` when the plan does not have that shape.
    fn rewrite(
        mut self,
        node: &Arc<dyn ExecutionPlan>,
        order: Arc<dyn PhysicalExpr>,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        if let Some(scan) = node.downcast_ref::<IndexedScanExec>() {
            return Ok(self.search_exec(scan, &order));
        }
        let (child, order) = if let Some(projection) = node.downcast_ref::<ProjectionExec>() {
            if let Some(filter) = &self.filter {
                self.filter = Some(through_projection(filter, projection)?);
            }
            (projection.input(), through_projection(&order, projection)?)
        } else if let Some(filter) = node.downcast_ref::<FilterExec>() {
            if self.filter.is_some() {
                return Ok(None);
            }
            self.filter = Some(Arc::clone(filter.predicate()));
            // A filter may also drop columns: output column i is input column projection[i].
            let order = match filter.projection() {
                Some(projection) => {
                    Arc::clone(&order)
                        .transform(|e| match e.downcast_ref::<Column>() {
                            Some(column) => {
                                let input = projection[column.index()];
                                Ok(Transformed::yes(
                                    Arc::new(Column::new(column.name(), input))
                                        as Arc<dyn PhysicalExpr>,
                                ))
                            }
                            None => Ok(Transformed::no(e)),
                        })?
                        .data
                }
                None => order,
            };
            (filter.input(), order)
        } else if is_row_mover(node) {
            (node.children()[0], order)
        } else {
            return Ok(None);
        };
        match self.rewrite(child, order)? {
            Some(new_child) => Ok(Some(with_child(node, new_child)?)),
            None => Ok(None),
        }
    }

    fn search_exec(
        self,
        scan: &IndexedScanExec,
        order: &Arc<dyn PhysicalExpr>,
    ) -> Option<Arc<dyn ExecutionPlan>> {
        let (metric, column, constant) = distance_to_constant(order)?;
        let query = semsql_udfs::vector::constant_vector(constant).ok()??;
        let table_column = scan.table_column(column);
        let index = scan.table.indexes().into_iter().find(|index| {
            index.column() == table_column
                && index.metric() == metric
                && index.dims() == query.len()
        })?;
        Some(Arc::new(HnswSearchExec::new(
            scan,
            index,
            query,
            self.k,
            self.ef_search,
            self.filter,
        )))
    }
}

/// `l2_distance(col, constant)`, `cosine_distance(...)` or `-inner_product(...)` (either
/// argument order): the distance, the column and the constant.
fn distance_to_constant(expr: &Arc<dyn PhysicalExpr>) -> Option<(Metric, usize, &ScalarValue)> {
    let (call, negated) = match expr.downcast_ref::<NegativeExpr>() {
        Some(negative) => (negative.arg().downcast_ref::<ScalarFunctionExpr>()?, true),
        None => (expr.downcast_ref::<ScalarFunctionExpr>()?, false),
    };
    let metric = match (call.name(), negated) {
        ("l2_distance", false) => Metric::L2,
        ("cosine_distance", false) => Metric::Cosine,
        ("inner_product", true) => Metric::InnerProduct,
        _ => return None,
    };
    let [left, right] = call.args() else {
        return None;
    };
    fn column_and_constant<'a>(
        a: &Arc<dyn PhysicalExpr>,
        b: &'a Arc<dyn PhysicalExpr>,
    ) -> Option<(usize, &'a ScalarValue)> {
        Some((
            a.downcast_ref::<Column>()?.index(),
            b.downcast_ref::<Literal>()?.value(),
        ))
    }
    let (column, constant) =
        column_and_constant(left, right).or_else(|| column_and_constant(right, left))?;
    Some((metric, column, constant))
}
