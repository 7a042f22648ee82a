//! Physical optimizer rule: in `WHERE cheap AND llm_filter(...)`, the cheap conjuncts run before
//! the LM call, so only the rows that pass them are sent to the model.
//!
//! DataFusion plans an async function (every LM function is one) as an `AsyncFuncExec` that
//! computes it for every input row, under a `FilterExec` holding the whole predicate: without
//! this rule `WHERE price > 100 AND llm_filter(...)` asks the model about every row. The rule
//! splits the filter's conjuncts: those that read only the `AsyncFuncExec`'s input columns move
//! into a new `FilterExec` below it (the input columns keep their positions, since the async
//! results are appended after them), below any repartitioning in between; the rest stay above.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::error::Result;
use datafusion::physical_expr::utils::{collect_columns, conjunction, split_conjunction};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::async_func::AsyncFuncExec;
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};
use datafusion::physical_plan::ExecutionPlan;

use super::is_row_mover;

type Conjuncts = Vec<Arc<dyn PhysicalExpr>>;

#[derive(Debug, Default)]
pub struct CheapPredicatesFirst;

impl PhysicalOptimizerRule for CheapPredicatesFirst {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(filter) = node.downcast_ref::<FilterExec>() else {
                return Ok(Transformed::no(node));
            };
            // Between the filter and the LM call there may be nodes that only move rows
            // (repartitioning, coalescing); the cheap filter goes below all of them.
            let mut passing = Vec::new();
            let mut below_filter = Arc::clone(filter.input());
            while is_row_mover(&below_filter) {
                let child = Arc::clone(below_filter.children()[0]);
                passing.push(below_filter);
                below_filter = child;
            }
            let Some(async_exec) = below_filter.downcast_ref::<AsyncFuncExec>() else {
                return Ok(Transformed::no(node));
            };
            let input_width = async_exec.input().schema().fields().len();
            let (cheap, rest): (Conjuncts, Conjuncts) = split_conjunction(filter.predicate())
                .into_iter()
                .cloned()
                .partition(|conjunct| {
                    collect_columns(conjunct)
                        .iter()
                        .all(|column| column.index() < input_width)
                });
            if cheap.is_empty() {
                return Ok(Transformed::no(node));
            }
            let cheap_filter: Arc<dyn ExecutionPlan> = Arc::new(FilterExec::try_new(
                conjunction(cheap),
                Arc::clone(async_exec.input()),
            )?);
            let mut rebuilt = Arc::clone(&below_filter).replace_children(
                vec![cheap_filter],
                ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
            )?;
            for mover in passing.into_iter().rev() {
                rebuilt = mover.replace_children(
                    vec![rebuilt],
                    ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
                )?;
            }
            let above = FilterExecBuilder::from(filter)
                .with_input(rebuilt)
                .with_predicate(conjunction(rest))
                .build()?;
            Ok(Transformed::yes(Arc::new(above) as Arc<dyn ExecutionPlan>))
        })
        .data()
    }

    fn name(&self) -> &str {
        "cheap_predicates_first"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
