//! asyncpg's type introspection query, answered in a form DataFusion can plan.
//!
//! asyncpg looks up every type it has no built-in codec for (`int4[]`, `vector`, ...) with one
//! query whose derived table `ti` computes each type's base type and a composite type's
//! attributes with correlated scalar subqueries inside `CASE` (one a recursive CTE), which
//! DataFusion cannot plan ("Physical plan does not support logical expression
//! ScalarSubquery"). So an asyncpg client failed on its first `WHERE id = ANY($1)` with a list
//! of integers. That derived table is swapped for one with the same columns and rows, written
//! with joins: the attributes come from one grouped join, and a domain's base type is its
//! `typbasetype` (semsql's domains, those of `information_schema`, are each over a base type).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Query, SelectItem, SetExpr, TableFactor, VisitorMut};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// The columns of asyncpg's derived table, in order.
const COLUMNS: [&str; 10] = [
    "oid",
    "ns",
    "name",
    "kind",
    "basetype",
    "elemtype",
    "elemdelim",
    "range_subtype",
    "attrtypoids",
    "attrnames",
];

/// The replacement: the same columns, rows and types, without correlated subqueries.
const TYPE_INFO: &str = "\
SELECT t.oid AS oid, ns.nspname AS ns, t.typname AS name, t.typtype AS kind,
    CASE WHEN t.typtype = 'd' THEN t.typbasetype END AS basetype,
    t.typelem AS elemtype, elem_t.typdelim AS elemdelim, range_t.rngsubtype AS range_subtype,
    CASE WHEN t.typtype = 'c' THEN attrs.attrtypoids END AS attrtypoids,
    CASE WHEN t.typtype = 'c' THEN attrs.attrnames END AS attrnames
FROM pg_catalog.pg_type AS t
    INNER JOIN pg_catalog.pg_namespace ns ON ns.oid = t.typnamespace
    LEFT JOIN pg_catalog.pg_type elem_t
        ON t.typlen = -1 AND t.typelem != 0 AND t.typelem = elem_t.oid
    LEFT JOIN pg_catalog.pg_range range_t ON t.oid = range_t.rngtypid
    LEFT JOIN (
        SELECT c.reltype AS reltype,
            array_agg(ia.atttypid ORDER BY ia.attnum) AS attrtypoids,
            array_agg(ia.attname::text ORDER BY ia.attnum) AS attrnames
        FROM pg_catalog.pg_attribute ia INNER JOIN pg_catalog.pg_class c ON ia.attrelid = c.oid
        WHERE ia.attnum > 0 AND NOT ia.attisdropped
        GROUP BY c.reltype
    ) attrs ON attrs.reltype = t.oid";

/// The visitor: true in `changed` when asyncpg's derived table was swapped.
pub struct AsyncpgTypeInfo {
    pub changed: bool,
}

impl VisitorMut for AsyncpgTypeInfo {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::Derived { subquery, .. } = factor {
            if is_asyncpg_type_info(subquery) {
                if let Some(replacement) = type_info() {
                    **subquery = replacement;
                    self.changed = true;
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// Whether `query` is asyncpg's derived table: a select of exactly its ten named columns.
fn is_asyncpg_type_info(query: &Query) -> bool {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return false;
    };
    select.projection.len() == COLUMNS.len()
        && select.projection.iter().zip(COLUMNS).all(|(item, name)| {
            matches!(item, SelectItem::ExprWithAlias { alias, .. } if alias.value == name)
        })
}

fn type_info() -> Option<Query> {
    let mut parser = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(TYPE_INFO)
        .ok()?;
    parser.parse_query().ok().map(|query| *query)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replacement_parses_and_is_recognised_as_the_same_table() {
        let query = type_info().expect("the replacement parses");
        assert!(is_asyncpg_type_info(&query));
    }
}
