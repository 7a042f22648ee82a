//! Analyzer rule: integer arithmetic typed as PostgreSQL types it.
//!
//! DataFusion types every integer literal `int8`, so `int4_column * 2` (and `$1::int * 2`) is
//! computed and answered in `int8`, where PostgreSQL computes it in `int4`: it fails with 22003
//! past 2^31 and answers an `int4`, which node-postgres reads as a number (an `int8` comes back
//! as a string). This rule, run after DataFusion's type coercion:
//!
//! - computes `+ - * / %` between an `int2`/`int4` value and a literal that fits `int4` (or two
//!   such values) in `int4`, cast back to `int8` where the plan expects it, so every operator
//!   above sees the types it was planned with; the checked arithmetic of
//!   `engine::checked_arithmetic` then fails on `int4` overflow as PostgreSQL does;
//! - drops that cast in the columns the statement answers, so the client sees `int4`;
//! - checks arithmetic between constants now, because DataFusion folds constants with
//!   wrapping arithmetic while planning (`SELECT 2147483647 + 1` answered -2147483648).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, DataFusionError};
use datafusion::error::Result;
use datafusion::logical_expr::expr::{Alias, Cast};
use datafusion::logical_expr::{
    BinaryExpr, Expr, ExprSchemable, LogicalPlan, Operator, Projection,
};
use datafusion::optimizer::analyzer::type_coercion::TypeCoercion;
use datafusion::optimizer::AnalyzerRule;
use datafusion::scalar::ScalarValue;

/// Marks the casts back to `int8` this rule adds, so only they are dropped from the output
/// (a cast the user wrote, `(a * b)::int8`, stays).
const WIDENED: &str = "semsql.widened_int4";

/// The rule's name, which DataFusion puts before the errors it raises.
pub const RULE_NAME: &str = "postgres_integer_arithmetic";

#[derive(Debug, Default)]
pub struct PostgresIntegerArithmetic;

impl AnalyzerRule for PostgresIntegerArithmetic {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        let plan = super::rewrite_expressions(plan, narrow)?;
        answer_in_int4(plan)
    }

    fn name(&self) -> &str {
        RULE_NAME
    }
}

/// The cast back to `int8`, marked.
fn widened(expr: Expr) -> Expr {
    let field: FieldRef = Arc::new(
        Field::new("", DataType::Int64, true)
            .with_metadata(HashMap::from([(WIDENED.to_owned(), "true".to_owned())])),
    );
    Expr::Cast(Cast::new_from_field(Box::new(expr), field))
}

fn is_widened(field: &FieldRef) -> bool {
    field.metadata().contains_key(WIDENED)
}

/// An operand PostgreSQL computes in `int4`, as an `int4` expression: an `int2`/`int4` value
/// that type coercion widened to `int8`, or an `int8` literal that fits `int4`.
fn as_int4(expr: &Expr, schema: &DFSchema) -> Option<Expr> {
    match expr {
        // PostgreSQL folds the sign into the literal too: `-2147483648` is an `int4`.
        Expr::Literal(ScalarValue::Int64(Some(value)), _) => i32::try_from(*value)
            .ok()
            .map(|value| Expr::Literal(ScalarValue::Int32(Some(value)), None)),
        Expr::Cast(Cast { expr: inner, field }) if field.data_type() == &DataType::Int64 => {
            // Type coercion's own steps for temporal arithmetic (`date + time` becomes the
            // time's seconds, cast through int4 to int8, times 10^9) are not the user's int4
            // arithmetic: narrowing them overflowed into a wrong timestamp.
            if let Expr::Cast(Cast { expr: source, .. }) = inner.as_ref() {
                if !source.get_type(schema).ok()?.is_integer() {
                    return None;
                }
            }
            match inner.get_type(schema).ok()? {
                DataType::Int32 => Some(inner.as_ref().clone()),
                DataType::Int16 | DataType::Int8 => {
                    Some(Expr::Cast(Cast::new(inner.clone(), DataType::Int32)))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

fn is_arithmetic(op: &Operator) -> bool {
    matches!(
        op,
        Operator::Plus | Operator::Minus | Operator::Multiply | Operator::Divide | Operator::Modulo
    )
}

fn narrow(expr: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &expr else {
        return Ok(Transformed::no(expr));
    };
    if !is_arithmetic(op) {
        return Ok(Transformed::no(expr));
    }
    // Two int8 literals are `int8` arithmetic only if one of them does not fit int4, and
    // one side must have been narrowed from int4/int2 or be a literal.
    let (Some(left_int4), Some(right_int4)) = (as_int4(left, schema), as_int4(right, schema))
    else {
        // `int8` constants: checked now too.
        if let (Expr::Literal(l @ ScalarValue::Int64(_), _), Expr::Literal(r, _)) =
            (left.as_ref(), right.as_ref())
        {
            check_constant(l, op, r)?;
        }
        return Ok(Transformed::no(expr));
    };
    // Two literals: computed now, checked (DataFusion would fold them wrapping around).
    if let (Expr::Literal(l, _), Expr::Literal(r, _)) = (&left_int4, &right_int4) {
        check_constant(l, op, r)?;
    }
    let narrowed = Expr::BinaryExpr(BinaryExpr::new(
        Box::new(left_int4),
        *op,
        Box::new(right_int4),
    ));
    Ok(Transformed::yes(widened(narrowed)))
}

/// PostgreSQL's error for `int4` arithmetic between constants that overflows.
fn check_constant(left: &ScalarValue, op: &Operator, right: &ScalarValue) -> Result<()> {
    let result = match op {
        Operator::Plus => left.add_checked(right),
        Operator::Minus => left.sub_checked(right),
        Operator::Multiply => left.mul_checked(right),
        _ => return Ok(()),
    };
    let int8 = matches!(left, ScalarValue::Int64(_));
    result.map(|_| ()).map_err(|_| {
        DataFusionError::ArrowError(
            Box::new(datafusion::arrow::error::ArrowError::ArithmeticOverflow(
                if int8 {
                    "bigint out of range"
                } else {
                    "integer out of range"
                }
                .to_owned(),
            )),
            None,
        )
    })
}

/// The statement's own output columns: an `int4` computation this rule cast back to `int8` is
/// answered as the `int4` it is.
fn answer_in_int4(plan: LogicalPlan) -> Result<LogicalPlan> {
    match plan {
        LogicalPlan::Projection(projection) => {
            let mut changed = false;
            let exprs: Vec<Expr> = projection
                .expr
                .iter()
                .map(|expr| {
                    let (inner, alias) = match expr {
                        Expr::Alias(Alias { expr, .. }) => (expr.as_ref(), true),
                        other => (other, false),
                    };
                    let Expr::Cast(Cast {
                        expr: narrowed,
                        field,
                    }) = inner
                    else {
                        return expr.clone();
                    };
                    if !is_widened(field) {
                        return expr.clone();
                    }
                    changed = true;
                    match expr {
                        Expr::Alias(Alias {
                            relation,
                            name,
                            metadata,
                            ..
                        }) if alias => Expr::Alias(Alias {
                            expr: narrowed.clone(),
                            relation: relation.clone(),
                            name: name.clone(),
                            metadata: metadata.clone(),
                        }),
                        _ => {
                            let (relation, name) = expr.qualified_name();
                            narrowed.as_ref().clone().alias_qualified(relation, name)
                        }
                    }
                })
                .collect();
            if !changed {
                return Ok(LogicalPlan::Projection(projection));
            }
            Ok(LogicalPlan::Projection(Projection::try_new(
                exprs,
                projection.input,
            )?))
        }
        // Through what passes the columns on unchanged.
        LogicalPlan::Sort(_) | LogicalPlan::Limit(_) => {
            let rewritten =
                plan.map_children(|child| answer_in_int4(child).map(Transformed::yes))?;
            rewritten.data.recompute_schema()
        }
        other => Ok(other),
    }
}

/// The output columns of a planned (not yet analyzed) statement that this rule answers in
/// `int4` where the plan says `int8`: what a client is told when it describes the statement
/// must be what the executed plan sends.
pub fn int4_columns(plan: &LogicalPlan) -> Vec<usize> {
    if !matches!(
        plan,
        LogicalPlan::Projection(_) | LogicalPlan::Sort(_) | LogicalPlan::Limit(_)
    ) {
        return Vec::new();
    }
    // Only an `int8` column can be one this rule narrows: most statements are not analyzed.
    if !plan
        .schema()
        .fields()
        .iter()
        .any(|field| field.data_type() == &DataType::Int64)
    {
        return Vec::new();
    }
    let config = ConfigOptions::default();
    let analyzed = TypeCoercion::new()
        .analyze(plan.clone(), &config)
        .and_then(|plan| PostgresIntegerArithmetic.analyze(plan, &config));
    let Ok(analyzed) = analyzed else {
        return Vec::new();
    };
    let before = plan.schema();
    let after = analyzed.schema();
    if before.fields().len() != after.fields().len() {
        return Vec::new();
    }
    before
        .fields()
        .iter()
        .zip(after.fields().iter())
        .enumerate()
        .filter(|(_, (was, is))| {
            was.data_type() == &DataType::Int64 && is.data_type() == &DataType::Int32
        })
        .map(|(index, _)| index)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::prelude::SessionContext;

    fn context() -> SessionContext {
        let state = SessionStateBuilder::new()
            .with_default_features()
            .with_analyzer_rule(Arc::new(PostgresIntegerArithmetic))
            .with_physical_optimizer_rule(Arc::new(
                crate::engine::checked_arithmetic::CheckedArithmetic,
            ))
            .build();
        SessionContext::new_with_state(state)
    }

    async fn run(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>> {
        ctx.sql(sql).await?.collect().await
    }

    #[tokio::test]
    async fn temporal_arithmetic_is_left_to_datafusion() {
        // Coercion turns the time into its seconds through int4 and multiplies by 10^9: in
        // int4 that overflowed into 2001-09-27 23:59:58.157.
        let ctx = context();
        let batches = run(
            &ctx,
            "SELECT arrow_cast('2001-09-28', 'Date32') + arrow_cast('03:00', 'Time32(Second)') AS t",
        )
        .await
        .unwrap();
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        assert!(text.contains("2001-09-28T03:00:00"), "{text}");
    }

    #[tokio::test]
    async fn int4_arithmetic_answers_int4_and_fails_past_its_range() {
        let ctx = context();
        run(&ctx, "CREATE TABLE t AS SELECT CAST(2147483647 AS INT) AS i, CAST(6 AS INT) AS six, CAST(3 AS SMALLINT) AS s, CAST(10 AS BIGINT) AS big")
            .await
            .unwrap();
        let batches = run(
            &ctx,
            "SELECT six * 2 AS a, six + 1 - 3 AS b, s * 2 AS c, big * 2 AS d, six * 3000000000 AS e, CAST(six * 2 AS BIGINT) AS f FROM t",
        )
        .await
        .unwrap();
        let schema = batches[0].schema();
        let types: Vec<&DataType> = schema.fields().iter().map(|f| f.data_type()).collect();
        assert_eq!(
            types,
            [
                &DataType::Int32,
                &DataType::Int32,
                &DataType::Int32,
                &DataType::Int64,
                &DataType::Int64,
                // A cast the user wrote stays.
                &DataType::Int64
            ]
        );
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        assert!(
            text.contains("| 12 | 4 | 6 | 20 | 18000000000 | 12 |"),
            "{text}"
        );
        // Sorted and limited, and through a subquery.
        let batches = run(
            &ctx,
            "SELECT x FROM (SELECT six * 2 AS x FROM t) s WHERE x > 5 ORDER BY x LIMIT 1",
        )
        .await
        .unwrap();
        assert_eq!(batches[0].num_rows(), 1);

        for sql in [
            "SELECT i * 2 FROM t",
            "SELECT i + 1 FROM t",
            "SELECT 2147483647 + 1",
            "SELECT 9223372036854775807 + 1",
            // PostgreSQL 15 says `integer out of range` too.
            "SELECT -2147483648 - 1",
        ] {
            let err = run(&ctx, sql).await.expect_err(sql);
            assert_eq!(crate::error::sqlstate_of(&err), "22003", "{sql}: {err}");
        }
    }

    #[tokio::test]
    async fn described_columns_match_the_executed_types() {
        let ctx = context();
        run(
            &ctx,
            "CREATE TABLE t AS SELECT CAST(6 AS INT) AS six, CAST(10 AS BIGINT) AS big",
        )
        .await
        .unwrap();
        let plan = ctx
            .state()
            .create_logical_plan("SELECT six * 2 AS a, big * 2 AS b, six AS c FROM t ORDER BY a")
            .await
            .unwrap();
        assert_eq!(int4_columns(&plan), vec![0]);
    }
}
