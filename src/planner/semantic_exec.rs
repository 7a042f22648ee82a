//! `SemanticExec`: the plan node that runs LM calls, in place of DataFusion's `AsyncFuncExec`.
//!
//! Its output is the same (the input's columns, then one column per call), but it decides how
//! much work to do:
//!
//! - **Gates.** When a filter sits right above the node, the node knows its conjuncts. It runs
//!   the calls one after another, cheapest first, and after each one drops the rows a conjunct
//!   already rejects: `WHERE llm_filter(a) AND llm_filter(b)` asks the second question only about
//!   the rows that passed the first. A row the filter will drop gets NULL for the calls it was
//!   not asked; nobody above the filter can see it.
//! - **Early stop.** Under a `LIMIT n` (with nothing between but filters it gates, projections
//!   and repartitioning), the node works in chunks, the first of `n` rows and each next one
//!   sized by the share of rows that passed so far, and ends once `n` rows have passed: it never
//!   asks about rows the limit would not need.
//! - **Accounting.** Its calls count into a usage record of their own, shown by `EXPLAIN
//!   ANALYZE` as the node's `lm_requests`, `lm_cache_hits`, ... metrics; the query's totals
//!   include them.
//!
//! Without a limit it coalesces small input batches to `datafusion.execution.batch_size` rows
//! before calling, as `AsyncFuncExec` does, so that requests stay full.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{new_null_array, Array, ArrayRef, BooleanArray, UInt32Array};
use datafusion::arrow::compute::kernels::boolean::and;
use datafusion::arrow::compute::{
    concat_batches, filter_record_batch, prep_null_mask_filter, take,
};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::async_scalar_function::AsyncFuncExpr;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::async_func::AsyncFuncExec;
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;
use semsql_udfs::lm::{LmSettings, QueryUsage, UsageSnapshot};

/// A conjunct of the filter above, and after which call (position in the evaluation order) it
/// can be evaluated; `None`: before any call.
#[derive(Debug, Clone)]
pub struct Gate {
    pub predicate: Arc<dyn PhysicalExpr>,
    pub after: Option<usize>,
}

/// What EXPLAIN shows about one call.
#[derive(Debug, Clone)]
pub struct CallDescription {
    pub model: String,
    /// Known when the model has a fixed batch size or a calibration for the function.
    pub rows_per_request: Option<usize>,
    /// The model's `rows_per_request` is 'auto'.
    pub auto: bool,
}

#[derive(Debug)]
struct Work {
    calls: Vec<Arc<AsyncFuncExpr>>,
    /// Evaluation order: indexes into `calls`.
    order: Vec<usize>,
    gates: Vec<Gate>,
    fetch: Option<usize>,
    input_width: usize,
    /// The output: the input's columns, then one per call.
    schema: SchemaRef,
}

#[derive(Debug)]
pub struct SemanticExec {
    input: Arc<dyn ExecutionPlan>,
    work: Arc<Work>,
    descriptions: Vec<CallDescription>,
    estimated_rows: Option<usize>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl SemanticExec {
    /// `calls` as `AsyncFuncExec` holds them; `order` the order to run them in; `gates` the
    /// conjuncts of a filter right above (over this node's output); `fetch` the rows a limit
    /// above needs to pass the gates.
    pub fn try_new(
        calls: Vec<Arc<AsyncFuncExpr>>,
        input: Arc<dyn ExecutionPlan>,
        order: Vec<usize>,
        gates: Vec<Gate>,
        fetch: Option<usize>,
        descriptions: Vec<CallDescription>,
    ) -> Result<Self> {
        // The same output and properties as the node it replaces.
        let equivalent = AsyncFuncExec::try_new(calls.clone(), Arc::clone(&input))?;
        let properties = Arc::clone(equivalent.properties());
        // Only shown by EXPLAIN; the accessor's replacement needs a statistics context this
        // node has no use for.
        #[allow(deprecated)]
        let estimated_rows = input
            .partition_statistics(None)
            .ok()
            .and_then(|stats| stats.num_rows.get_value().copied());
        Ok(Self {
            work: Arc::new(Work {
                input_width: input.schema().fields().len(),
                schema: equivalent.schema(),
                calls,
                order,
                gates,
                fetch,
            }),
            input,
            descriptions,
            estimated_rows,
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }
}

impl DisplayAs for SemanticExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let calls: Vec<String> = self
            .work
            .order
            .iter()
            .map(|&index| {
                let call = &self.work.calls[index];
                let about = &self.descriptions[index];
                let estimate = match (self.estimated_rows, about.rows_per_request) {
                    (Some(rows), Some(per_request)) if self.work.fetch.is_none() => {
                        format!(", ≤ {} requests", rows.div_ceil(per_request))
                    }
                    _ => String::new(),
                };
                let batch = match (about.rows_per_request, about.auto) {
                    (Some(rows), false) => format!("{rows} rows/request"),
                    (Some(rows), true) => format!("{rows} rows/request, calibrated"),
                    (None, _) => "rows/request auto, calibrated on first use".to_owned(),
                };
                format!("{} (model {}, {batch}{estimate})", call.func, about.model)
            })
            .collect();
        let rows = self
            .estimated_rows
            .map(|rows| format!(", input_rows≈{rows}"))
            .unwrap_or_default();
        let fetch = self
            .work
            .fetch
            .map(|fetch| format!(", stop_after={fetch} passing rows"))
            .unwrap_or_default();
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => write!(
                f,
                "SemanticExec: calls=[{}], gates={}{fetch}{rows}",
                calls.join(", "),
                self.work.gates.len()
            ),
            DisplayFormatType::TreeRender => {
                writeln!(f, "calls={}", calls.join(", "))?;
                writeln!(f, "gates={}{fetch}{rows}", self.work.gates.len())
            }
        }
    }
}

impl ExecutionPlan for SemanticExec {
    fn name(&self) -> &str {
        "SemanticExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        for call in &self.work.calls {
            if f(&(Arc::clone(call) as Arc<dyn PhysicalExpr>))? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        for gate in &self.work.gates {
            if f(&gate.predicate)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        datafusion::common::assert_eq_or_internal_err!(
            children.len(),
            1,
            "SemanticExec has one input"
        );
        Ok(Arc::new(SemanticExec::try_new(
            self.work.calls.clone(),
            children.swap_remove(0),
            self.work.order.clone(),
            self.work.gates.clone(),
            self.work.fetch,
            self.descriptions.clone(),
        )?))
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, Arc::clone(&context))?;
        let mut options = context.session_config().options().as_ref().clone();
        let settings = LmSettings::of_mut(&mut options);
        let query_usage = settings
            .usage
            .clone()
            .unwrap_or_else(|| Arc::new(QueryUsage::new(0, None, 0)));
        let usage = Arc::new(QueryUsage::child_of(&query_usage));
        settings.usage = Some(Arc::clone(&usage));
        let batch_size: usize = options.execution.batch_size.into();
        let state = ChunkState {
            work: Arc::clone(&self.work),
            input,
            pending: VecDeque::new(),
            pending_rows: 0,
            input_done: false,
            rows_in: 0,
            rows_passed: 0,
            batch_size,
            options: Arc::new(options),
            usage,
            metrics: NodeMetrics::new(&self.metrics, partition),
            reported: None,
        };
        let stream = futures::stream::unfold(state, |mut state| async move {
            match state.next_output().await {
                Ok(Some(batch)) => Some((Ok(batch), state)),
                Ok(None) => None,
                Err(error) => {
                    // End the stream after an error.
                    state.input_done = true;
                    state.pending.clear();
                    state.pending_rows = 0;
                    Some((Err(error), state))
                }
            }
        })
        .fuse();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            stream,
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// The node's metrics in one partition.
struct NodeMetrics {
    rows_in: Count,
    output_rows: Count,
    requests: Count,
    rows_sent: Count,
    cache_hits: Count,
    input_tokens: Count,
    output_tokens: Count,
}

impl NodeMetrics {
    fn new(metrics: &ExecutionPlanMetricsSet, partition: usize) -> Self {
        let counter = |name: &'static str| MetricBuilder::new(metrics).counter(name, partition);
        Self {
            rows_in: counter("rows_in"),
            output_rows: MetricBuilder::new(metrics).output_rows(partition),
            requests: counter("lm_requests"),
            rows_sent: counter("lm_rows_sent"),
            cache_hits: counter("lm_cache_hits"),
            input_tokens: counter("lm_input_tokens"),
            output_tokens: counter("lm_output_tokens"),
        }
    }

    /// Adds what was spent since `before`.
    fn record(&self, now: &UsageSnapshot, before: Option<&UsageSnapshot>) {
        let delta =
            |pick: fn(&UsageSnapshot) -> u64| (pick(now) - before.map(pick).unwrap_or(0)) as usize;
        self.requests.add(delta(|u| u.requests));
        self.rows_sent.add(delta(|u| u.rows_sent));
        self.cache_hits.add(delta(|u| u.cache_hits));
        self.input_tokens.add(delta(|u| u.input_tokens));
        self.output_tokens.add(delta(|u| u.output_tokens));
    }
}

struct ChunkState {
    work: Arc<Work>,
    input: SendableRecordBatchStream,
    pending: VecDeque<RecordBatch>,
    pending_rows: usize,
    input_done: bool,
    /// Rows taken from the input so far, and how many of them passed every gate.
    rows_in: usize,
    rows_passed: usize,
    batch_size: usize,
    options: Arc<ConfigOptions>,
    usage: Arc<QueryUsage>,
    metrics: NodeMetrics,
    reported: Option<UsageSnapshot>,
}

impl ChunkState {
    /// How many rows the next chunk takes.
    fn chunk_target(&self) -> usize {
        let Some(fetch) = self.work.fetch else {
            return self.batch_size;
        };
        let needed = fetch.saturating_sub(self.rows_passed).max(1);
        let target = if self.rows_in == 0 {
            needed
        } else if self.rows_passed == 0 {
            // Nothing passed yet: look at as many rows again as so far.
            self.rows_in
        } else {
            // The rows that, at the share passed so far, should give the ones still needed.
            (needed * self.rows_in).div_ceil(self.rows_passed)
        };
        target.clamp(needed.min(self.batch_size), self.batch_size)
    }

    async fn next_output(&mut self) -> Result<Option<RecordBatch>> {
        if let Some(fetch) = self.work.fetch {
            if self.rows_passed >= fetch {
                return Ok(None);
            }
        }
        let target = self.chunk_target();
        while self.pending_rows < target && !self.input_done {
            match self.input.next().await {
                Some(batch) => {
                    let batch = batch?;
                    if batch.num_rows() > 0 {
                        self.pending_rows += batch.num_rows();
                        self.pending.push_back(batch);
                    }
                }
                None => self.input_done = true,
            }
        }
        if self.pending_rows == 0 {
            return Ok(None);
        }
        let chunk = self.take_rows(target.min(self.pending_rows))?;
        self.rows_in += chunk.num_rows();
        self.metrics.rows_in.add(chunk.num_rows());
        let (output, passed) = evaluate(&self.work, chunk, &self.options).await?;
        self.rows_passed += passed;
        self.metrics.output_rows.add(output.num_rows());
        let now = self.usage.snapshot();
        self.metrics.record(&now, self.reported.as_ref());
        self.reported = Some(now);
        Ok(Some(output))
    }

    /// The next `rows` pending rows as one batch.
    fn take_rows(&mut self, rows: usize) -> Result<RecordBatch> {
        let mut parts = Vec::new();
        let mut still = rows;
        while still > 0 {
            let batch = self.pending.pop_front().expect("pending rows are counted");
            if batch.num_rows() <= still {
                still -= batch.num_rows();
                parts.push(batch);
            } else {
                parts.push(batch.slice(0, still));
                self.pending
                    .push_front(batch.slice(still, batch.num_rows() - still));
                still = 0;
            }
        }
        self.pending_rows -= rows;
        if parts.len() == 1 {
            return Ok(parts.pop().expect("one part"));
        }
        Ok(concat_batches(&parts[0].schema(), &parts)?)
    }
}

/// Runs the calls over one chunk in order, narrowing the rows by the gates after each; returns
/// the output and how many rows passed every gate.
async fn evaluate(
    work: &Work,
    chunk: RecordBatch,
    options: &Arc<ConfigOptions>,
) -> Result<(RecordBatch, usize)> {
    let rows = chunk.num_rows();
    let output_schema = &work.schema;
    let mut results: Vec<Option<ArrayRef>> = vec![None; work.calls.len()];
    let mut alive: Option<BooleanArray> = None;

    let assemble = |results: &[Option<ArrayRef>]| -> Result<RecordBatch> {
        let mut columns = chunk.columns().to_vec();
        for (index, result) in results.iter().enumerate() {
            columns.push(match result {
                Some(array) => Arc::clone(array),
                None => new_null_array(
                    output_schema.field(work.input_width + index).data_type(),
                    rows,
                ),
            });
        }
        Ok(RecordBatch::try_new(Arc::clone(output_schema), columns)?)
    };
    let narrow = |alive: &mut Option<BooleanArray>,
                  results: &[Option<ArrayRef>],
                  after: Option<usize>|
     -> Result<()> {
        let gates: Vec<&Gate> = work.gates.iter().filter(|g| g.after == after).collect();
        if gates.is_empty() {
            return Ok(());
        }
        let batch = assemble(results)?;
        for gate in gates {
            let verdict = gate.predicate.evaluate(&batch)?.into_array(rows)?;
            let verdict = verdict
                .as_any()
                .downcast_ref::<BooleanArray>()
                .cloned()
                .ok_or_else(|| {
                    datafusion::error::DataFusionError::Internal(
                        "a filter conjunct is not boolean".to_owned(),
                    )
                })?;
            // NULL does not pass a filter.
            let verdict = if verdict.null_count() > 0 {
                prep_null_mask_filter(&verdict)
            } else {
                verdict
            };
            *alive = Some(match alive.take() {
                Some(previous) => and(&previous, &verdict)?,
                None => verdict,
            });
        }
        Ok(())
    };

    narrow(&mut alive, &results, None)?;
    for (position, &index) in work.order.iter().enumerate() {
        let call = &work.calls[index];
        let living = alive.as_ref().map_or(rows, |mask| mask.true_count());
        if living > 0 {
            let input = match &alive {
                Some(mask) if living < rows => filter_record_batch(&chunk, mask)?,
                _ => chunk.clone(),
            };
            let value = call
                .invoke_with_args(&input, Arc::clone(options))
                .await?
                .to_array(input.num_rows())?;
            results[index] = Some(match &alive {
                Some(mask) if living < rows => scatter(&value, mask)?,
                _ => value,
            });
        }
        narrow(&mut alive, &results, Some(position))?;
    }
    let passed = alive.as_ref().map_or(rows, |mask| mask.true_count());
    Ok((assemble(&results)?, passed))
}

/// Spreads the values computed for the rows `mask` keeps back to every row; the others NULL.
fn scatter(values: &ArrayRef, mask: &BooleanArray) -> Result<ArrayRef> {
    let mut next = 0u32;
    let indices: UInt32Array = (0..mask.len())
        .map(|row| {
            mask.value(row).then(|| {
                next += 1;
                next - 1
            })
        })
        .collect();
    Ok(take(values.as_ref(), &indices, None)?)
}
