//! Physical optimizer rule: integer `+`, `-` and `*` in projections and filters fail with
//! SQLSTATE 22003 on overflow, as in PostgreSQL, instead of wrapping around.
//!
//! DataFusion's `BinaryExpr` can check for overflow but its planner never asks it to, so
//! `SELECT 9223372036854775807 + 1` would answer a negative number: a silent wrong result.
//! Not covered yet: arithmetic inside aggregate arguments and join conditions, and arithmetic on
//! constants alone, which DataFusion folds while planning (`SELECT 9223372036854775807 + 1`).

use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::error::Result;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::BinaryExpr;
use datafusion::physical_expr::projection::ProjectionExpr;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::ExecutionPlan;

#[derive(Debug, Default)]
pub struct CheckedArithmetic;

/// `expr` with its integer arithmetic overflow-checked, for expressions evaluated outside a
/// plan (UPDATE's SET and WHERE, DELETE's WHERE).
pub fn checked_expr(expr: Arc<dyn PhysicalExpr>, schema: &Schema) -> Result<Arc<dyn PhysicalExpr>> {
    Ok(checked(&expr, schema)?.data)
}

fn checked(
    expr: &Arc<dyn PhysicalExpr>,
    schema: &Schema,
) -> Result<Transformed<Arc<dyn PhysicalExpr>>> {
    Arc::clone(expr).transform_up(|node| {
        let Some(binary) = node.downcast_ref::<BinaryExpr>() else {
            return Ok(Transformed::no(node));
        };
        let arithmetic = matches!(
            binary.op(),
            Operator::Plus | Operator::Minus | Operator::Multiply
        );
        let integers = binary.left().data_type(schema)?.is_integer()
            && binary.right().data_type(schema)?.is_integer();
        if !arithmetic || !integers {
            return Ok(Transformed::no(node));
        }
        let rewritten = BinaryExpr::new(
            Arc::clone(binary.left()),
            *binary.op(),
            Arc::clone(binary.right()),
        )
        .with_fail_on_overflow(true);
        Ok(Transformed::yes(
            Arc::new(rewritten) as Arc<dyn PhysicalExpr>
        ))
    })
}

impl PhysicalOptimizerRule for CheckedArithmetic {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            if let Some(projection) = node.downcast_ref::<ProjectionExec>() {
                let schema = projection.input().schema();
                let mut changed = false;
                let mut exprs = Vec::with_capacity(projection.expr().len());
                for item in projection.expr() {
                    let expr = checked(&item.expr, &schema)?;
                    changed |= expr.transformed;
                    exprs.push(ProjectionExpr {
                        expr: expr.data,
                        alias: item.alias.clone(),
                    });
                }
                if changed {
                    let rebuilt = ProjectionExec::try_new(exprs, Arc::clone(projection.input()))?;
                    return Ok(Transformed::yes(Arc::new(rebuilt) as Arc<dyn ExecutionPlan>));
                }
            } else if let Some(filter) = node.downcast_ref::<FilterExec>() {
                let predicate = checked(filter.predicate(), &filter.input().schema())?;
                if predicate.transformed {
                    let rebuilt = FilterExecBuilder::from(filter)
                        .with_predicate(predicate.data)
                        .build()?;
                    return Ok(Transformed::yes(Arc::new(rebuilt) as Arc<dyn ExecutionPlan>));
                }
            }
            Ok(Transformed::no(node))
        })
        .data()
    }

    fn name(&self) -> &str {
        "checked_arithmetic"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use datafusion::execution::session_state::SessionStateBuilder;
    use datafusion::prelude::SessionContext;

    use super::*;

    fn context() -> SessionContext {
        let state = SessionStateBuilder::new()
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(CheckedArithmetic))
            .build();
        SessionContext::new_with_state(state)
    }

    async fn run(
        ctx: &SessionContext,
        sql: &str,
    ) -> Result<Vec<datafusion::arrow::record_batch::RecordBatch>> {
        ctx.sql(sql).await?.collect().await
    }

    #[tokio::test]
    async fn integer_overflow_fails_instead_of_wrapping() {
        let ctx = context();
        run(&ctx, "CREATE TABLE t AS SELECT CAST(9223372036854775807 AS BIGINT) AS big, CAST(2147483647 AS INT) AS i")
            .await
            .unwrap();
        for sql in [
            "SELECT big + 1 FROM t",
            "SELECT big * 2 FROM t",
            "SELECT i + i FROM t",
            "SELECT i FROM t WHERE big + 1 > 0",
        ] {
            let err = run(&ctx, sql).await.expect_err(sql);
            assert_eq!(crate::error::sqlstate_of(&err), "22003", "{sql}: {err}");
        }
        let ok = run(&ctx, "SELECT big - 1, i - 1, CAST(i AS DOUBLE) * 2 FROM t")
            .await
            .unwrap();
        assert_eq!(ok[0].num_rows(), 1);
    }
}
