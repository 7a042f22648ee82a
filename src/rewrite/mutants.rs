//! Automatic mutants of a query, for the verifier's result check (V3): test databases are good
//! enough only when they tell the original apart from each of its mutants; otherwise a
//! candidate's equal results prove nothing and the verdict is "untested".
//!
//! The mutants are the mistakes LLM rewrites make most: a dropped conjunct of a WHERE clause, a
//! comparison conjunct with its boundary moved (`>` and `>=`, `<` and `<=`), a LEFT JOIN turned
//! INNER, a dropped DISTINCT. They are made in every SELECT of the query
//! (subqueries and CTEs included), one change per mutant.

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, JoinOperator, Query, Select, SetExpr, Statement,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// One mutant: what was changed, and the mutated SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutant {
    pub change: String,
    pub sql: String,
}

/// Every single-change mutant of `sql` (one query), or an error when it does not parse.
pub fn mutants(sql: &str) -> Result<Vec<Mutant>, String> {
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).map_err(|e| e.to_string())?;
    let [Statement::Query(query)] = statements.as_slice() else {
        return Err("mutants are made of one query".into());
    };
    let mut selects = 0;
    for_each_select(&mut query.as_ref().clone(), &mut |_| selects += 1);
    let mut out = Vec::new();
    for target in 0..selects {
        for kind in [
            Kind::DropConjunct,
            Kind::FlipBoundary,
            Kind::LeftToInner,
            Kind::DropDistinct,
        ] {
            // A kind may apply several times in one SELECT (each conjunct, each join).
            for occurrence in 0.. {
                let mut copy = query.as_ref().clone();
                let mut index = 0;
                let mut change = None;
                for_each_select(&mut copy, &mut |select| {
                    if index == target {
                        change = kind.apply(select, occurrence);
                    }
                    index += 1;
                });
                let Some(change) = change else { break };
                out.push(Mutant {
                    change: format!("{change} (in SELECT {})", target + 1),
                    sql: copy.to_string(),
                });
            }
        }
    }
    Ok(out)
}

#[derive(Clone, Copy)]
enum Kind {
    DropConjunct,
    FlipBoundary,
    LeftToInner,
    DropDistinct,
}

impl Kind {
    /// Makes the `occurrence`-th change of this kind in `select`; what it did, or `None` when
    /// there is no such occurrence.
    fn apply(self, select: &mut Select, occurrence: usize) -> Option<String> {
        match self {
            Kind::DropConjunct => {
                let mut conjuncts = Vec::new();
                split_and(select.selection.take()?, &mut conjuncts);
                if occurrence >= conjuncts.len() {
                    select.selection = join_and(conjuncts);
                    return None;
                }
                let dropped = conjuncts.remove(occurrence);
                select.selection = join_and(conjuncts);
                Some(format!("dropped the conjunct {dropped}"))
            }
            Kind::FlipBoundary => {
                let mut conjuncts = Vec::new();
                split_and(select.selection.take()?, &mut conjuncts);
                let found = conjuncts
                    .iter_mut()
                    .filter_map(|conjunct| match conjunct {
                        Expr::BinaryOp { op, .. } => flipped(op).map(|_| op),
                        _ => None,
                    })
                    .nth(occurrence)
                    .map(|op| {
                        *op = flipped(op).expect("filtered above");
                        format!("moved a boundary to {op}")
                    });
                let found = found.map(|change| {
                    let conjunct = conjuncts
                        .iter()
                        .filter(|c| matches!(c, Expr::BinaryOp { op, .. } if flipped(op).is_some()))
                        .nth(occurrence)
                        .map(ToString::to_string)
                        .unwrap_or_default();
                    format!("{change}: {conjunct}")
                });
                select.selection = join_and(conjuncts);
                found
            }
            Kind::LeftToInner => {
                let join = select
                    .from
                    .iter_mut()
                    .flat_map(|table| table.joins.iter_mut())
                    .filter(|join| {
                        matches!(
                            join.join_operator,
                            JoinOperator::Left(_) | JoinOperator::LeftOuter(_)
                        )
                    })
                    .nth(occurrence)?;
                let (JoinOperator::Left(constraint) | JoinOperator::LeftOuter(constraint)) =
                    join.join_operator.clone()
                else {
                    return None;
                };
                join.join_operator = JoinOperator::Inner(constraint);
                Some(format!("LEFT JOIN {} made INNER", join.relation))
            }
            Kind::DropDistinct => {
                if occurrence > 0 || select.distinct.is_none() {
                    return None;
                }
                select.distinct = None;
                Some("dropped DISTINCT".into())
            }
        }
    }
}

/// The comparison with the other boundary: `>` and `>=`, `<` and `<=`.
fn flipped(op: &BinaryOperator) -> Option<BinaryOperator> {
    Some(match op {
        BinaryOperator::Gt => BinaryOperator::GtEq,
        BinaryOperator::GtEq => BinaryOperator::Gt,
        BinaryOperator::Lt => BinaryOperator::LtEq,
        BinaryOperator::LtEq => BinaryOperator::Lt,
        _ => return None,
    })
}

fn split_and(expr: Expr, out: &mut Vec<Expr>) {
    match expr {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            split_and(*left, out);
            split_and(*right, out);
        }
        Expr::Nested(inner)
            if matches!(
                *inner,
                Expr::BinaryOp {
                    op: BinaryOperator::And,
                    ..
                }
            ) =>
        {
            split_and(*inner, out)
        }
        other => out.push(other),
    }
}

fn join_and(conjuncts: Vec<Expr>) -> Option<Expr> {
    conjuncts.into_iter().reduce(|left, right| Expr::BinaryOp {
        left: Box::new(left),
        op: BinaryOperator::And,
        right: Box::new(right),
    })
}

/// Calls `f` on every SELECT of `query` in a fixed order: CTEs, then the body (set operations
/// left to right), then subqueries in FROM and in WHERE.
fn for_each_select(query: &mut Query, f: &mut dyn FnMut(&mut Select)) {
    if let Some(with) = &mut query.with {
        for cte in &mut with.cte_tables {
            for_each_select(&mut cte.query, f);
        }
    }
    in_set_expr(&mut query.body, f);
}

fn in_set_expr(body: &mut SetExpr, f: &mut dyn FnMut(&mut Select)) {
    match body {
        SetExpr::Select(select) => {
            f(select);
            for table in &mut select.from {
                in_table(&mut table.relation, f);
                for join in &mut table.joins {
                    in_table(&mut join.relation, f);
                }
            }
            if let Some(selection) = &mut select.selection {
                in_expr(selection, f);
            }
        }
        SetExpr::Query(query) => for_each_select(query, f),
        SetExpr::SetOperation { left, right, .. } => {
            in_set_expr(left, f);
            in_set_expr(right, f);
        }
        _ => {}
    }
}

fn in_table(
    table: &mut datafusion::sql::sqlparser::ast::TableFactor,
    f: &mut dyn FnMut(&mut Select),
) {
    if let datafusion::sql::sqlparser::ast::TableFactor::Derived { subquery, .. } = table {
        for_each_select(subquery, f);
    }
}

fn in_expr(expr: &mut Expr, f: &mut dyn FnMut(&mut Select)) {
    match expr {
        Expr::Subquery(query)
        | Expr::Exists {
            subquery: query, ..
        } => for_each_select(query, f),
        Expr::InSubquery { subquery, expr, .. } => {
            in_expr(expr, f);
            for_each_select(subquery, f);
        }
        Expr::BinaryOp { left, right, .. } => {
            in_expr(left, f);
            in_expr(right, f);
        }
        Expr::UnaryOp { expr, .. } | Expr::Nested(expr) => in_expr(expr, f),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(sql: &str) -> Vec<String> {
        mutants(sql)
            .unwrap()
            .into_iter()
            .map(|m| {
                assert!(
                    Parser::parse_sql(&PostgreSqlDialect {}, &m.sql).is_ok(),
                    "{}",
                    m.sql
                );
                assert_ne!(m.sql, sql);
                m.change
            })
            .collect()
    }

    #[test]
    fn one_mutant_per_conjunct_left_join_and_distinct() {
        let found = changes(
            "SELECT DISTINCT o.id FROM orders o LEFT JOIN customers c ON o.customer = c.id \
             WHERE o.total > 1 AND c.name IS NOT NULL AND o.id < 100",
        );
        assert_eq!(
            found,
            vec![
                "dropped the conjunct o.total > 1 (in SELECT 1)",
                "dropped the conjunct c.name IS NOT NULL (in SELECT 1)",
                "dropped the conjunct o.id < 100 (in SELECT 1)",
                "moved a boundary to >=: o.total >= 1 (in SELECT 1)",
                "moved a boundary to <=: o.id <= 100 (in SELECT 1)",
                "LEFT JOIN customers c made INNER (in SELECT 1)",
                "dropped DISTINCT (in SELECT 1)",
            ]
        );
    }

    #[test]
    fn subqueries_are_mutated_too() {
        let found = changes(
            "SELECT id FROM orders WHERE id IN (SELECT DISTINCT id FROM orders WHERE total > 1)",
        );
        assert_eq!(
            found,
            vec![
                "dropped the conjunct id IN (SELECT DISTINCT id FROM orders WHERE total > 1) (in SELECT 1)",
                "dropped the conjunct total > 1 (in SELECT 2)",
                "moved a boundary to >=: total >= 1 (in SELECT 2)",
                "dropped DISTINCT (in SELECT 2)",
            ]
        );
        let mutants = mutants(
            "SELECT id FROM orders WHERE id IN (SELECT DISTINCT id FROM orders WHERE total > 1)",
        )
        .unwrap();
        assert_eq!(
            mutants[1].sql,
            "SELECT id FROM orders WHERE id IN (SELECT DISTINCT id FROM orders)"
        );
    }

    #[test]
    fn a_plain_query_has_no_mutants_and_bad_input_is_refused() {
        assert!(changes("SELECT id FROM orders").is_empty());
        assert!(mutants("DELETE FROM orders").is_err());
        assert!(mutants("SELEC id").is_err());
    }
}
