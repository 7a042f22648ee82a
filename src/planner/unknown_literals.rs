//! Analyzer rule, run before DataFusion's type coercion: a quoted literal compared with a
//! boolean (`indisprimary = 'f'`) is read as a boolean, as PostgreSQL types a quoted literal
//! from its context (an `unknown` until then). DataFusion types it as text and refuses the
//! comparison ("Cannot infer common argument type ... Boolean = Utf8"); SQLAlchemy's index
//! reflection, which Superset runs on every new dataset, compares that way.
//!
//! The literal is read with PostgreSQL's boolean input rules (`t`, `true`, `yes`, `on`, `1`,
//! any case and prefix of them, and their opposites); anything else is PostgreSQL's 22P02
//! `invalid input syntax for type boolean`.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, DataFusionError};
use datafusion::error::Result;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{BinaryExpr, Expr, ExprSchemable, LogicalPlan, Operator};
use datafusion::optimizer::AnalyzerRule;
use datafusion::scalar::ScalarValue;

#[derive(Debug, Default)]
pub struct UnknownLiterals;

impl AnalyzerRule for UnknownLiterals {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        Ok(plan
            .transform_up_with_subqueries(|node| {
                let schema = super::inputs_schema(&node);
                let preserver = NamePreserver::new(&node);
                node.map_expressions(|expr| {
                    let saved = preserver.save(&expr);
                    let rewritten = expr.transform_up(|e| as_boolean(e, &schema))?;
                    Ok(rewritten.update_data(|e| saved.restore(e)))
                })
            })?
            .data)
    }

    fn name(&self) -> &str {
        "postgres_unknown_literals"
    }
}

fn is_comparison(op: &Operator) -> bool {
    matches!(
        op,
        Operator::Eq
            | Operator::NotEq
            | Operator::Lt
            | Operator::LtEq
            | Operator::Gt
            | Operator::GtEq
            | Operator::IsDistinctFrom
            | Operator::IsNotDistinctFrom
    )
}

fn as_boolean(expr: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &expr else {
        return Ok(Transformed::no(expr));
    };
    if !is_comparison(op) {
        return Ok(Transformed::no(expr));
    }
    let boolean = |side: &Expr| matches!(side.get_type(schema), Ok(DataType::Boolean));
    let text = |side: &Expr| match side {
        Expr::Literal(ScalarValue::Utf8(Some(text)), _) => Some(text.clone()),
        _ => None,
    };
    let (new_left, new_right) = match (text(left), text(right)) {
        (None, Some(literal)) if boolean(left) => (left.as_ref().clone(), read_boolean(&literal)?),
        (Some(literal), None) if boolean(right) => {
            (read_boolean(&literal)?, right.as_ref().clone())
        }
        _ => return Ok(Transformed::no(expr)),
    };
    Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
        Box::new(new_left),
        *op,
        Box::new(new_right),
    ))))
}

/// PostgreSQL's `boolin`: a unique prefix of `true`/`false`/`yes`/`no`, `on`/`off`, `1`/`0`.
fn read_boolean(text: &str) -> Result<Expr> {
    let word = text.trim().to_ascii_lowercase();
    let prefix_of = |full: &str| !word.is_empty() && full.starts_with(&word);
    let value = if prefix_of("true") || prefix_of("yes") || word == "on" || word == "1" {
        true
    } else if prefix_of("false") || prefix_of("no") || word == "off" || word == "0" {
        false
    } else {
        return Err(DataFusionError::Execution(format!(
            "invalid input syntax for type boolean: \"{text}\""
        )));
    };
    Ok(Expr::Literal(ScalarValue::Boolean(Some(value)), None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boolean_spellings_read_as_postgres_reads_them() {
        for (text, value) in [
            ("t", true),
            ("TRUE", true),
            (" yes ", true),
            ("on", true),
            ("1", true),
            ("f", false),
            ("fal", false),
            ("n", false),
            ("off", false),
            ("0", false),
        ] {
            assert_eq!(
                read_boolean(text).unwrap(),
                Expr::Literal(ScalarValue::Boolean(Some(value)), None),
                "{text}"
            );
        }
        for text in ["o", "", "maybe", "2"] {
            let err = read_boolean(text).unwrap_err();
            assert_eq!(crate::error::sqlstate_of(&err), "22P02", "{text}");
        }
    }
}
