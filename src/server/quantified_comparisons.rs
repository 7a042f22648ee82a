//! PostgreSQL's `x = ANY(...)` and `x <> ALL(...)`, written so that datafusion-postgres's
//! parser leaves them alone. Its rule lowers both to `array_contains`, which loses two things:
//!
//! - over a subquery (`id = ANY (SELECT ...)`) the plan fails, as `array_contains` wants an
//!   array: these become `x IN (subquery)` and `x NOT IN (subquery)`, which PostgreSQL defines
//!   them to be (NULLs included);
//! - over an array, a NULL element makes a miss unknown in PostgreSQL (`2 = ANY(ARRAY[1, NULL])`
//!   is NULL), where `array_contains` says false: these become `semsql_any_equal(a, x)` and
//!   `NOT semsql_any_equal(a, x)` (see `engine::any_equal`), or `x [NOT] IN (1, NULL)` for an
//!   array written out, which PostgreSQL defines the same way.
//!
//! An array written as a string literal (`relkind = ANY('{r,v}')`, catalog queries) is left to
//! datafusion-postgres's rule, which reads the literal. The other operators over an array
//! (`x < ANY(a)`, `x = ALL(a)`, ...) are left to DataFusion, which plans them with PostgreSQL's
//! NULL rules.
//!
//! The other operators over a subquery (`x > ALL (SELECT ...)`) are written with the
//! subquery's count, count of non-NULL values, minimum and maximum, each a scalar subquery:
//! DataFusion's own plan for them compares the outer and inner columns inside the subquery,
//! where `t.id > t.id` (the same table inside and out, as users write it) compares the inner
//! column with itself, and it cannot plan one in a select list at all.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, GroupByExpr, Query, SelectItem, SetExpr, Value, VisitorMut,
};

use crate::engine::any_equal::ANY_EQUAL;

/// The visitor: true in `changed` when a comparison was respelled.
pub struct QuantifiedComparisons {
    pub changed: bool,
}

impl VisitorMut for QuantifiedComparisons {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Some(respelled) = by_aggregates(expr) {
            *expr = respelled;
            self.changed = true;
            return ControlFlow::Continue(());
        }
        let (left, right, negated) = match expr {
            Expr::AnyOp {
                left,
                compare_op: BinaryOperator::Eq,
                right,
                ..
            } => (left, right, false),
            Expr::AllOp {
                left,
                compare_op: BinaryOperator::NotEq,
                right,
            } => (left, right, true),
            _ => return ControlFlow::Continue(()),
        };
        let respelled = match right.as_ref() {
            Expr::Value(value) if matches!(value.value, Value::SingleQuotedString(_)) => None,
            Expr::Subquery(query) => Some(Expr::Nested(Box::new(Expr::InSubquery {
                expr: left.clone(),
                subquery: query.clone(),
                negated,
            }))),
            // `x = ANY(ARRAY[a, b])` is `x IN (a, b)` in PostgreSQL, NULLs included, which
            // DataFusion answers with a hash set.
            // (Not for a parameter, whose type DataFusion infers from an equality but not
            // from an IN list: the membership function's is inferred, see `parameters`.)
            Expr::Array(array)
                if !array.elem.is_empty() && super::parameters::position(left).is_none() =>
            {
                Some(Expr::Nested(Box::new(Expr::InList {
                    expr: left.clone(),
                    list: array.elem.clone(),
                    negated,
                })))
            }
            array => {
                let not = if negated { "NOT " } else { "" };
                super::compat::parse_expr(&format!("({not}{ANY_EQUAL}({array}, {left}))"))
            }
        };
        if let Some(respelled) = respelled {
            *expr = respelled;
            self.changed = true;
        }
        ControlFlow::Continue(())
    }
}

/// `x op ANY (subquery)` or `x op ALL (subquery)` for the operators not answered by `IN`,
/// written as PostgreSQL defines them: ANY is true when some row's value satisfies the
/// comparison, ALL false when some row's does not; otherwise the answer is NULL when `x` or a
/// value is NULL, else false for ANY and true for ALL. An empty subquery gives false for ANY
/// and true for ALL whatever `x` is.
fn by_aggregates(expr: &Expr) -> Option<Expr> {
    let (left, op, query, any) = match expr {
        Expr::AnyOp {
            left,
            compare_op,
            right,
            ..
        } if *compare_op != BinaryOperator::Eq => (left, compare_op, right, true),
        Expr::AllOp {
            left,
            compare_op,
            right,
        } if *compare_op != BinaryOperator::NotEq => (left, compare_op, right, false),
        _ => return None,
    };
    let Expr::Subquery(query) = query.as_ref() else {
        return None;
    };
    let aggregate = |function: &str| aggregate_of(query, function);
    let (count, values, min, max) = (
        aggregate("count(*)")?,
        aggregate("count")?,
        aggregate("min")?,
        aggregate("max")?,
    );
    // The comparison that decides: for ANY, one that makes it true; for ALL, one that makes
    // it false (`x > ALL` is false when x <= max).
    let decisive = match (op, any) {
        (BinaryOperator::Lt, true) => format!("({left}) < {max}"),
        (BinaryOperator::LtEq, true) => format!("({left}) <= {max}"),
        (BinaryOperator::Gt, true) => format!("({left}) > {min}"),
        (BinaryOperator::GtEq, true) => format!("({left}) >= {min}"),
        (BinaryOperator::NotEq, true) | (BinaryOperator::Eq, false) => {
            format!("(({left}) <> {min} OR ({left}) <> {max})")
        }
        (BinaryOperator::Lt, false) => format!("({left}) >= {min}"),
        (BinaryOperator::LtEq, false) => format!("({left}) > {min}"),
        (BinaryOperator::Gt, false) => format!("({left}) <= {max}"),
        (BinaryOperator::GtEq, false) => format!("({left}) < {max}"),
        _ => return None,
    };
    let (empty, decided) = if any {
        ("false", "true")
    } else {
        ("true", "false")
    };
    super::compat::parse_expr(&format!(
        "(CASE WHEN {count} = 0 THEN {empty} WHEN ({left}) IS NULL THEN NULL \
         WHEN {decisive} THEN {decided} WHEN {values} < {count} THEN NULL ELSE {empty} END)"
    ))
}

/// `(SELECT function(value) FROM ...)` for the subquery's one column: the subquery's own
/// select with its item replaced when it is a plain one, else the subquery as a derived
/// table. `function` is a name, or a whole call such as `count(*)`.
fn aggregate_of(query: &Query, function: &str) -> Option<Expr> {
    let call = |value: &str| {
        if function.contains('(') {
            function.to_owned()
        } else {
            format!("{function}({value})")
        }
    };
    let plain = query.with.is_none()
        && query.order_by.is_none()
        && query.limit_clause.is_none()
        && query.fetch.is_none();
    if let (true, SetExpr::Select(select)) = (plain, query.body.as_ref()) {
        let grouped = !matches!(
            &select.group_by,
            GroupByExpr::Expressions(exprs, modifiers) if exprs.is_empty() && modifiers.is_empty()
        );
        if let (
            [SelectItem::UnnamedExpr(value) | SelectItem::ExprWithAlias { expr: value, .. }],
            false,
            None,
            None,
        ) = (
            select.projection.as_slice(),
            grouped,
            &select.having,
            &select.distinct,
        ) {
            let mut query = query.clone();
            if let SetExpr::Select(select) = query.body.as_mut() {
                let item = super::compat::parse_expr(&call(&value.to_string()))?;
                select.projection = vec![SelectItem::UnnamedExpr(item)];
            }
            return Some(Expr::Subquery(Box::new(query)));
        }
    }
    super::compat::parse_expr(&format!(
        "(SELECT {} FROM ({query}) AS semsql_quantified(semsql_value))",
        call("semsql_quantified.semsql_value")
    ))
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::ast::VisitMut;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn respelled(sql: &str) -> String {
        let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        let mut visitor = QuantifiedComparisons { changed: false };
        let _ = statements[0].visit(&mut visitor);
        statements[0].to_string()
    }

    #[test]
    fn subqueries_become_in_and_arrays_keep_postgres_null_rules() {
        assert_eq!(
            respelled("SELECT 1 WHERE a = ANY (SELECT b FROM t) AND c <> ALL (SELECT d FROM u)"),
            "SELECT 1 WHERE (a IN (SELECT b FROM t)) AND (c NOT IN (SELECT d FROM u))"
        );
        assert_eq!(
            respelled("SELECT x = ANY(arr), x <> ALL(arr), x < ANY(arr)"),
            "SELECT (semsql_any_equal(arr, x)), (NOT semsql_any_equal(arr, x)), x < ANY(arr)"
        );
        assert_eq!(
            respelled("SELECT x = ANY(ARRAY[1, NULL]), x <> ALL(ARRAY['a']), x = ANY(ARRAY[])"),
            "SELECT (x IN (1, NULL)), (x NOT IN ('a')), (semsql_any_equal(ARRAY[], x))"
        );
        assert_eq!(
            respelled("SELECT 1 WHERE x > ALL (SELECT v FROM t WHERE k = 1)"),
            "SELECT 1 WHERE (CASE WHEN (SELECT count(*) FROM t WHERE k = 1) = 0 THEN true \
             WHEN (x) IS NULL THEN NULL WHEN (x) <= (SELECT max(v) FROM t WHERE k = 1) THEN false \
             WHEN (SELECT count(v) FROM t WHERE k = 1) < (SELECT count(*) FROM t WHERE k = 1) \
             THEN NULL ELSE true END)"
        );
        assert!(
            respelled("SELECT 1 WHERE x < ANY (SELECT DISTINCT v FROM t)").contains(
                "(SELECT max(semsql_quantified.semsql_value) FROM (SELECT DISTINCT v FROM t) \
             AS semsql_quantified (semsql_value))"
            )
        );
        assert_eq!(
            respelled("SELECT 1 WHERE relkind = ANY('{r,v}')"),
            "SELECT 1 WHERE relkind = ANY('{r,v}')"
        );
    }
}
