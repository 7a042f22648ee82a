//! Physical optimizer rule: every `AsyncFuncExec` (the node DataFusion plans for LM calls)
//! becomes a [`SemanticExec`] that knows the filter above it (its gates), the limit above it
//! (when to stop) and the cheapest order to run its calls in.
//!
//! Walking down from the root, the rule carries what the consumer above needs:
//! - a limit (`LIMIT n OFFSET m`, or a fetch DataFusion pushed into a filter or a coalesce)
//!   means `n + m` rows; it passes down through nodes that keep every row (projections,
//!   repartitioning, coalescing, LM nodes without gates) and through a filter only into the LM
//!   node right below it, which then counts the rows passing that filter's conjuncts itself;
//! - a filter right above an LM node (through repartitioning or coalescing only) hands it its
//!   conjuncts as gates.
//!
//! Anything else (sorts, aggregates, joins) needs all of its input: nothing passes below it.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::error::Result;
use datafusion::physical_expr::expressions::Literal;
use datafusion::physical_expr::utils::{collect_columns, split_conjunction};
use datafusion::physical_expr::{PhysicalExpr, ScalarFunctionExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::async_func::AsyncFuncExec;
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::limit::GlobalLimitExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::ExecutionPlan;
use semsql_udfs::lm::LmSettings;

use super::is_row_mover;
use super::semantic_exec::{CallDescription, Gate, SemanticExec};
use crate::llm::models::RowsPerRequest;
use crate::llm::Runtime;

#[derive(Debug)]
pub struct SemanticNodes {
    runtime: Arc<Runtime>,
}

impl SemanticNodes {
    pub fn new(runtime: Arc<Runtime>) -> Self {
        Self { runtime }
    }
}

impl PhysicalOptimizerRule for SemanticNodes {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut has_lm_node = false;
        let _ = plan.apply(|node| {
            has_lm_node |= node.downcast_ref::<AsyncFuncExec>().is_some();
            Ok(if has_lm_node {
                TreeNodeRecursion::Stop
            } else {
                TreeNodeRecursion::Continue
            })
        });
        if !has_lm_node {
            return Ok(plan);
        }
        self.rewrite(plan, None, None, config)
    }

    fn name(&self) -> &str {
        "semantic_nodes"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

fn min_fetch(a: Option<usize>, b: Option<usize>) -> Option<usize> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// The LM node right below `plan` through row movers, if any.
fn lm_node_below(plan: &Arc<dyn ExecutionPlan>) -> bool {
    let mut node = Arc::clone(plan);
    while is_row_mover(&node) {
        node = Arc::clone(node.children()[0]);
    }
    node.downcast_ref::<AsyncFuncExec>().is_some()
}

impl SemanticNodes {
    fn rewrite(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        fetch: Option<usize>,
        gates: Option<Vec<Arc<dyn PhysicalExpr>>>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if let Some(async_exec) = plan.downcast_ref::<AsyncFuncExec>() {
            // Below a gated node fewer rows pass than enter: the limit cannot go further.
            let below_fetch = if gates.is_some() { None } else { fetch };
            let input = self.rewrite(Arc::clone(async_exec.input()), below_fetch, None, config)?;
            #[allow(deprecated)] // the accessor is deprecated without a replacement
            let calls = async_exec.async_exprs().to_vec();
            return Ok(Arc::new(self.semantic_exec(
                calls,
                input,
                gates.unwrap_or_default(),
                fetch,
                config,
            )?));
        }
        let (child_fetch, child_gates) = if let Some(limit) = plan.downcast_ref::<GlobalLimitExec>()
        {
            let needed = limit.fetch().map(|fetch| fetch + limit.skip());
            (min_fetch(fetch, needed), None)
        } else if let Some(filter) = plan.downcast_ref::<FilterExec>() {
            if lm_node_below(filter.input()) {
                let conjuncts = split_conjunction(filter.predicate())
                    .into_iter()
                    .cloned()
                    .collect();
                (min_fetch(fetch, filter.fetch()), Some(conjuncts))
            } else {
                (None, None)
            }
        } else if is_row_mover(&plan) || plan.name() == "LocalLimitExec" {
            (min_fetch(fetch, plan.fetch()), gates)
        } else if plan.downcast_ref::<ProjectionExec>().is_some() {
            (fetch, None)
        } else {
            (None, None)
        };
        let children = plan
            .children()
            .into_iter()
            .map(|child| self.rewrite(Arc::clone(child), child_fetch, child_gates.clone(), config))
            .collect::<Result<Vec<_>>>()?;
        if children.is_empty() {
            return Ok(plan);
        }
        plan.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn semantic_exec(
        &self,
        calls: Vec<Arc<datafusion::physical_expr::async_scalar_function::AsyncFuncExpr>>,
        input: Arc<dyn ExecutionPlan>,
        conjuncts: Vec<Arc<dyn PhysicalExpr>>,
        fetch: Option<usize>,
        config: &ConfigOptions,
    ) -> Result<SemanticExec> {
        let input_width = input.schema().fields().len();
        let calls_of = |conjunct: &Arc<dyn PhysicalExpr>| -> Vec<usize> {
            collect_columns(conjunct)
                .iter()
                .filter(|column| column.index() >= input_width)
                .map(|column| column.index() - input_width)
                .collect()
        };
        // Calls a gate needs run first, cheapest first; the rest run last, on the rows that
        // passed every gate.
        let gated: Vec<bool> = (0..calls.len())
            .map(|index| conjuncts.iter().any(|c| calls_of(c).contains(&index)))
            .collect();
        let mut order: Vec<usize> = (0..calls.len()).collect();
        order.sort_by_key(|&index| (!gated[index], estimated_cost(&calls[index].func)));
        let gates = conjuncts
            .iter()
            .map(|conjunct| Gate {
                after: calls_of(conjunct)
                    .iter()
                    .filter_map(|call| order.iter().position(|i| i == call))
                    .max(),
                predicate: Arc::clone(conjunct),
            })
            .collect();
        let settings = LmSettings::of(config);
        let descriptions = calls
            .iter()
            .map(|call| self.describe(&settings, &call.func))
            .collect();
        SemanticExec::try_new(calls, input, order, gates, fetch, descriptions)
    }

    /// The model a call would use and how many rows it packs per request.
    fn describe(&self, settings: &LmSettings, call: &Arc<dyn PhysicalExpr>) -> CallDescription {
        let name = if let Some(chosen) = chosen_model(call) {
            chosen
        } else if settings.model.is_empty() {
            self.runtime.default_model().unwrap_or("(none)").to_owned()
        } else {
            settings.model.clone()
        };
        let Some(model) = self.runtime.model(&name) else {
            return CallDescription {
                model: name,
                rows_per_request: None,
                auto: false,
            };
        };
        let (rows_per_request, auto) = match model.options.rows_per_request {
            RowsPerRequest::Fixed(rows) => (Some(rows), false),
            RowsPerRequest::Auto => {
                let function = call
                    .downcast_ref::<ScalarFunctionExpr>()
                    .map_or("", |function| function.name());
                let calibrated =
                    self.runtime
                        .calibrations
                        .current(&model.name, &model.options, function);
                (calibrated.map(|c| c.rows_per_request), true)
            }
        };
        CallDescription {
            model: name,
            rows_per_request,
            auto,
        }
    }
}

/// The model a call names with `llm_model(...)`, if any.
fn chosen_model(call: &Arc<dyn PhysicalExpr>) -> Option<String> {
    let function = call.downcast_ref::<ScalarFunctionExpr>()?;
    function.args().iter().find_map(|arg| {
        let literal = arg.downcast_ref::<Literal>()?;
        if !semsql_udfs::semantic::is_options_type(&literal.value().data_type()) {
            return None;
        }
        semsql_udfs::semantic::CallOptions::from_scalar(literal.value())
            .ok()?
            .model
    })
}

/// A planning-time guess at a call's cost per row: its prompt's length plus a typical size for
/// each per-row argument. Only the order matters.
fn estimated_cost(call: &Arc<dyn PhysicalExpr>) -> usize {
    let Some(function) = call.downcast_ref::<ScalarFunctionExpr>() else {
        return usize::MAX;
    };
    function
        .args()
        .iter()
        .map(|arg| match arg.downcast_ref::<Literal>() {
            Some(literal) => literal.value().to_string().len(),
            None => 200,
        })
        .sum()
}
