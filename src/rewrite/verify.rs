//! The rewriter's verifier, first part: the checks that need neither data nor a model.
//!
//! - V0 syntax: the candidate is one query (SELECT / WITH / VALUES) reading no table the original
//!   does not read, and calling exactly the volatile and LM functions the original calls (a
//!   rewrite may not add or drop a `random()` or an `llm_filter`).
//! - V1 plan: the candidate plans; its output schema equals the original's (names and
//!   types); its outermost ORDER BY and LIMIT/OFFSET are kept.
//! - V2 no-op: a candidate whose optimized plan is the original's is useless.
//!
//! A candidate failing any check is rejected; the later checks (results on sampled data, timed
//! runs) are not implemented yet.

use std::collections::BTreeSet;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema};
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, LogicalPlan, SortExpr, Volatility};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// One check's outcome for one candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail(String),
    /// The check could not vouch either way (V3's databases could not tell the original from
    /// one of its mutants): not an acceptance.
    Untested(String),
}

/// The verdicts of V0, V1 and V2, in order; the first failure ends the list.
#[derive(Debug, Clone)]
pub struct StaticChecks {
    pub verdicts: Vec<(&'static str, Verdict)>,
}

impl StaticChecks {
    pub fn passed(&self) -> bool {
        self.verdicts.iter().all(|(_, v)| *v == Verdict::Pass)
    }
}

/// What a plan reads and calls, and how its output is ordered and cut.
#[derive(Debug, PartialEq)]
struct Footprint {
    tables: BTreeSet<String>,
    /// Volatile and LM (async) functions called, by name.
    side_effects: BTreeSet<String>,
    /// The outermost sort's keys, as text over the output, and LIMIT's (skip, fetch).
    order: Option<Vec<String>>,
    limit: Option<(String, String)>,
}

fn footprint(plan: &LogicalPlan) -> Result<Footprint> {
    let mut tables = BTreeSet::new();
    let mut side_effects = BTreeSet::new();
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            tables.insert(scan.table_name.to_string());
        }
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Expr::ScalarFunction(call) = e {
                    let volatile = call.func.signature().volatility == Volatility::Volatile;
                    if volatile || call.func.as_async().is_some() {
                        side_effects.insert(call.func.name().to_owned());
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })?;
        Ok(TreeNodeRecursion::Continue)
    })?;
    let (mut order, mut limit) = (None, None);
    let mut node = plan;
    loop {
        match node {
            LogicalPlan::Projection(p) => node = &p.input,
            LogicalPlan::SubqueryAlias(a) => node = &a.input,
            LogicalPlan::Limit(l) if limit.is_none() && order.is_none() => {
                let show =
                    |e: &Option<Box<Expr>>| e.as_ref().map_or(String::new(), |e| e.to_string());
                limit = Some((show(&l.skip), show(&l.fetch)));
                node = &l.input;
            }
            LogicalPlan::Sort(s) if order.is_none() => {
                order = Some(
                    s.expr
                        .iter()
                        .map(|e| sort_key(e, s.input.schema()))
                        .collect(),
                );
                if let Some(fetch) = s.fetch {
                    limit.get_or_insert((String::new(), fetch.to_string()));
                }
                node = &s.input;
            }
            _ => break,
        }
    }
    Ok(Footprint {
        tables,
        side_effects,
        order,
        limit,
    })
}

/// A sort key as compared between original and candidate: a column of the sorted rows by its
/// position (`#2 DESC NULLS FIRST`), since a rewrite may name the table differently (`supplier.x`
/// in one, `e.x` in the other); any other expression by its text without table qualifiers.
fn sort_key(key: &SortExpr, input: &DFSchema) -> String {
    let direction = format!(
        "{} NULLS {}",
        if key.asc { "ASC" } else { "DESC" },
        if key.nulls_first { "FIRST" } else { "LAST" }
    );
    if let Expr::Column(column) = &key.expr {
        if let Some(index) = input.maybe_index_of_column(column) {
            return format!("#{index} {direction}");
        }
    }
    let unqualified = key
        .expr
        .clone()
        .transform(|e| {
            Ok(match e {
                Expr::Column(c) => Transformed::yes(Expr::Column(Column::new_unqualified(c.name))),
                other => Transformed::no(other),
            })
        })
        .map(|t| t.data.to_string())
        .unwrap_or_else(|_| key.expr.to_string());
    format!("{unqualified} {direction}")
}

/// An optimized plan as text, for comparing two plans: the names the optimizer makes up
/// (`__correlated_sq_3`, `__common_expr_1`) count up across plannings, so their numbers are
/// dropped.
pub fn plan_text(plan: &LogicalPlan) -> String {
    let text = plan.display_indent().to_string();
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find("__") {
        out.push_str(&rest[..at + 2]);
        rest = &rest[at + 2..];
        let word = rest
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(rest.len());
        out.push_str(&rest[..word]);
        rest = &rest[word..];
        if out.ends_with('_') {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits > 0 {
                out.push('N');
                rest = &rest[digits..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// V0: one query statement.
fn one_query(sql: &str) -> std::result::Result<(), String> {
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .map_err(|e| format!("does not parse: {e}"))?;
    match statements.as_slice() {
        [Statement::Query(_)] => Ok(()),
        [_] => Err("is not a query".into()),
        _ => Err(format!("is {} statements, not one", statements.len())),
    }
}

/// Runs V0, V1 and V2 for `candidate` against `original` in `ctx` (which holds the tables).
pub async fn static_checks(ctx: &SessionContext, original: &str, candidate: &str) -> StaticChecks {
    let mut verdicts = Vec::new();
    let fail = |check: &'static str, why: String, verdicts: &mut Vec<_>| {
        verdicts.push((check, Verdict::Fail(why)));
        StaticChecks {
            verdicts: verdicts.clone(),
        }
    };
    if let Err(why) = one_query(candidate) {
        return fail("V0 syntax", format!("the candidate {why}"), &mut verdicts);
    }
    let state = ctx.state();
    let (original_plan, candidate_plan) = match (
        state.create_logical_plan(original).await,
        state.create_logical_plan(candidate).await,
    ) {
        (Ok(o), Ok(c)) => (o, c),
        (Err(e), _) => {
            return fail(
                "V1 plan",
                format!("the original does not plan: {e}"),
                &mut verdicts,
            )
        }
        (_, Err(e)) => {
            return fail(
                "V1 plan",
                format!("the candidate does not plan: {e}"),
                &mut verdicts,
            )
        }
    };
    let (before, after) = match (footprint(&original_plan), footprint(&candidate_plan)) {
        (Ok(b), Ok(a)) => (b, a),
        (Err(e), _) | (_, Err(e)) => return fail("V1 plan", e.to_string(), &mut verdicts),
    };
    if let Some(extra) = after.tables.difference(&before.tables).next() {
        return fail(
            "V0 syntax",
            format!("the candidate reads {extra}, which the original does not"),
            &mut verdicts,
        );
    }
    if after.side_effects != before.side_effects {
        return fail(
            "V0 syntax",
            format!(
                "volatile or LM functions differ: {:?} instead of {:?}",
                after.side_effects, before.side_effects
            ),
            &mut verdicts,
        );
    }
    verdicts.push(("V0 syntax", Verdict::Pass));

    let fields = |plan: &LogicalPlan| {
        plan.schema()
            .fields()
            .iter()
            // Names and types, not nullability: a candidate that knows a column cannot be
            // NULL (an outer join made inner by a WHERE) returns the same rows, and clients
            // are not told nullability.
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect::<Vec<_>>()
    };
    if fields(&original_plan) != fields(&candidate_plan) {
        return fail(
            "V1 plan",
            format!(
                "the output differs: {:?} instead of {:?}",
                fields(&candidate_plan),
                fields(&original_plan)
            ),
            &mut verdicts,
        );
    }
    if after.order != before.order || after.limit != before.limit {
        return fail(
            "V1 plan",
            format!(
                "ORDER BY / LIMIT differ: {:?} {:?} instead of {:?} {:?}",
                after.order, after.limit, before.order, before.limit
            ),
            &mut verdicts,
        );
    }
    verdicts.push(("V1 plan", Verdict::Pass));

    let optimized = |plan: LogicalPlan| state.optimize(&plan).map(|p| plan_text(&p));
    match (optimized(original_plan), optimized(candidate_plan)) {
        (Ok(o), Ok(c)) if o == c => {
            return fail(
                "V2 no-op",
                "the optimized plans are identical".into(),
                &mut verdicts,
            )
        }
        (Ok(_), Ok(_)) => verdicts.push(("V2 no-op", Verdict::Pass)),
        (Err(e), _) | (_, Err(e)) => return fail("V2 no-op", e.to_string(), &mut verdicts),
    }
    StaticChecks { verdicts }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn context() -> SessionContext {
        let ctx = SessionContext::new();
        ctx.sql(
            "CREATE TABLE orders (id INT NOT NULL, customer INT, total DOUBLE) AS VALUES \
             (1, 10, 5.0), (2, 11, 7.5)",
        )
        .await
        .unwrap();
        ctx.sql("CREATE TABLE customers (id INT NOT NULL, name TEXT) AS VALUES (10, 'a')")
            .await
            .unwrap();
        ctx
    }

    fn failed_check(checks: &StaticChecks) -> Option<&'static str> {
        checks
            .verdicts
            .iter()
            .find(|(_, v)| *v != Verdict::Pass)
            .map(|(name, _)| *name)
    }

    #[tokio::test]
    async fn order_by_compares_columns_by_position_not_by_table_name() {
        let ctx = context().await;
        let original = "SELECT orders.id, orders.total FROM orders JOIN customers \
                        ON orders.customer = customers.id ORDER BY orders.total DESC, orders.id";
        let renamed =
            "SELECT o.id, o.total FROM (SELECT * FROM orders WHERE customer IS NOT NULL) o \
                       JOIN customers c ON o.customer = c.id ORDER BY o.total DESC, o.id";
        let checks = static_checks(&ctx, original, renamed).await;
        assert!(checks.passed(), "{checks:?}");
        let flipped = "SELECT o.id, o.total FROM orders o JOIN customers c \
                       ON o.customer = c.id ORDER BY o.total, o.id";
        let checks = static_checks(&ctx, original, flipped).await;
        assert_eq!(failed_check(&checks), Some("V1 plan"), "{checks:?}");
    }

    #[tokio::test]
    async fn the_same_subquery_planned_twice_is_a_no_op() {
        let ctx = context().await;
        let sql = "SELECT id FROM orders o WHERE NOT EXISTS \
                   (SELECT 1 FROM orders p WHERE p.id > o.id)";
        let checks = static_checks(&ctx, sql, sql).await;
        assert_eq!(failed_check(&checks), Some("V2 no-op"), "{checks:?}");
    }

    #[tokio::test]
    async fn a_real_rewrite_passes_the_static_checks() {
        let ctx = context().await;
        let checks = static_checks(
            &ctx,
            // A redundant key self-join, dropped (one of LITHE's rules).
            "SELECT id FROM orders WHERE id IN (SELECT id FROM orders WHERE total > 1) \
             ORDER BY id LIMIT 5",
            "SELECT id FROM orders WHERE total > 1 ORDER BY id LIMIT 5",
        )
        .await;
        assert!(checks.passed(), "{checks:?}");
    }

    #[tokio::test]
    async fn what_the_optimizer_already_does_is_a_no_op() {
        let ctx = context().await;
        let checks = static_checks(
            &ctx,
            "SELECT id FROM orders WHERE total > 1 AND total > 2",
            "SELECT id FROM orders WHERE total > 2",
        )
        .await;
        assert_eq!(failed_check(&checks), Some("V2 no-op"), "{checks:?}");
    }

    #[tokio::test]
    async fn wrong_candidates_fail_the_right_check() {
        let ctx = context().await;
        let original = "SELECT id, total FROM orders WHERE total > 1 ORDER BY id LIMIT 5";
        let cases = [
            ("DELETE FROM orders", "V0 syntax"),
            ("SELECT 1; SELECT 2", "V0 syntax"),
            (
                "SELECT id, total FROM orders JOIN customers USING (id) ORDER BY id LIMIT 5",
                "V0 syntax",
            ),
            (
                "SELECT id, total FROM orders WHERE random() < 2 ORDER BY id LIMIT 5",
                "V0 syntax",
            ),
            ("SELECT id, total FROM nowhere", "V1 plan"),
            (
                "SELECT id, total, 1 AS extra FROM orders ORDER BY id LIMIT 5",
                "V1 plan",
            ),
            (
                "SELECT id, CAST(total AS INT) AS total FROM orders ORDER BY id LIMIT 5",
                "V1 plan",
            ),
            (
                "SELECT id, total FROM orders WHERE total > 1 ORDER BY id LIMIT 6",
                "V1 plan",
            ),
            (
                "SELECT id, total FROM orders WHERE total > 1 ORDER BY total LIMIT 5",
                "V1 plan",
            ),
            (
                "select id, total from orders where total > 1 order by id limit 5",
                "V2 no-op",
            ),
        ];
        for (candidate, check) in cases {
            let checks = static_checks(&ctx, original, candidate).await;
            assert_eq!(
                failed_check(&checks),
                Some(check),
                "{candidate}: {checks:?}"
            );
        }
    }
}
