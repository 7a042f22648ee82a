//! `embed('late delivery')`: an embedding of a constant is computed once per query, before the
//! physical plan is made, and planned as a literal vector. Left to the LM node, it would be
//! one more column of the scan, the same vector copied into every row, and `ORDER BY embedding
//! <=> embed('...') LIMIT k` could not be a plain top-k over a distance.
//!
//! The logical rules leave such calls where they are (`lm_positions` does not move them), and
//! [`SemsqlQueryPlanner`] evaluates them asynchronously, which no optimizer rule can, then
//! hands the plan to DataFusion's planner.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::Field;
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, LogicalPlan, ScalarFunctionArgs,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};

/// The LM functions whose constant calls are computed before the query runs.
const PRECOMPUTED: [&str; 1] = ["embed"];

/// Whether `expr` is `embed(...)` over constants only.
pub fn is_constant_lm_call(expr: &Expr) -> bool {
    match expr {
        Expr::ScalarFunction(call)
            if call.func.as_async().is_some() && PRECOMPUTED.contains(&call.func.name()) =>
        {
            call.args.iter().all(|arg| {
                !arg.exists(|e| {
                    Ok(matches!(
                        e,
                        Expr::Column(_)
                            | Expr::OuterReferenceColumn(..)
                            | Expr::ScalarSubquery(_)
                            | Expr::Exists(_)
                            | Expr::InSubquery(_)
                    ) || matches!(e, Expr::ScalarFunction(inner) if inner.func.as_async().is_some()))
                })
                .unwrap_or(true)
            })
        }
        _ => false,
    }
}

#[derive(Debug, Default)]
pub struct SemsqlQueryPlanner;

#[async_trait]
impl QueryPlanner for SemsqlQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session_state: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let plan = precompute(logical_plan.clone(), session_state).await?;
        DefaultPhysicalPlanner::default()
            .create_physical_plan(&plan, session_state)
            .await
    }
}

/// `plan` with every constant LM call replaced by its value.
async fn precompute(plan: LogicalPlan, state: &dyn Session) -> Result<LogicalPlan> {
    let mut calls: Vec<Expr> = Vec::new();
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if is_constant_lm_call(e) && !calls.contains(e) {
                    calls.push(e.clone());
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    if calls.is_empty() {
        return Ok(plan);
    }
    let mut values = Vec::with_capacity(calls.len());
    for call in &calls {
        values.push(evaluate(call, state).await?);
    }
    plan.transform_up_with_subqueries(|node| {
        node.map_expressions(|expr| {
            expr.transform_up(|e| match calls.iter().position(|call| call == &e) {
                Some(index) => Ok(Transformed::yes(Expr::Literal(values[index].clone(), None))),
                None => Ok(Transformed::no(e)),
            })
        })
    })
    .map(|transformed| transformed.data)
}

/// One constant call's value, through the function's own async path (so the runtime batches,
/// caches and accounts it like any other call).
async fn evaluate(call: &Expr, state: &dyn Session) -> Result<ScalarValue> {
    let Expr::ScalarFunction(function) = call else {
        unreachable!("only calls are collected");
    };
    let empty = datafusion::common::DFSchema::empty();
    let mut args = Vec::with_capacity(function.args.len());
    let mut arg_fields = Vec::with_capacity(function.args.len());
    // The arguments read no columns: one row of nothing to evaluate them on.
    let batch = datafusion::arrow::record_batch::RecordBatch::try_new_with_options(
        Arc::new(datafusion::arrow::datatypes::Schema::empty()),
        vec![],
        &datafusion::arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(1)),
    )?;
    for arg in &function.args {
        let physical = state.create_physical_expr(arg.clone(), &empty)?;
        let value = match physical.evaluate(&batch)? {
            ColumnarValue::Scalar(value) => value,
            ColumnarValue::Array(array) => ScalarValue::try_from_array(&array, 0)?,
        };
        arg_fields.push(Arc::new(Field::new("arg", value.data_type(), true)));
        args.push(ColumnarValue::Scalar(value));
    }
    let (_, return_field) = call.to_field(&empty)?;
    let async_udf = function
        .func
        .as_async()
        .ok_or_else(|| DataFusionError::Internal("not an async function".to_owned()))?;
    let result = async_udf
        .invoke_async_with_args(ScalarFunctionArgs {
            args,
            arg_fields,
            number_rows: 1,
            return_field,
            config_options: Arc::new(state.config_options().clone()),
        })
        .await?;
    match result {
        ColumnarValue::Scalar(value) => Ok(value),
        ColumnarValue::Array(array) => ScalarValue::try_from_array(&array, 0),
    }
}
