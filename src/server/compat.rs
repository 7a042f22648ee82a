//! Rewrites of the SQL text before it is planned, where PostgreSQL clients expect an answer
//! that DataFusion's planning would give differently.
//!
//! - A bare integer literal in a SELECT list (`SELECT 1`, `SELECT 42 AS answer`) is typed `int4`,
//!   as PostgreSQL types it; DataFusion types every integer literal `int8`, which node-postgres
//!   returns as a string and tokio-postgres refuses to read as `i32`. Only bare literals are
//!   narrowed: arithmetic stays in `int8`, because DataFusion's integer arithmetic wraps on
//!   overflow instead of failing, and in `int4` that would happen at 2^31.
//! - `(expression).field` (PostgreSQL's field selection from a composite value, e.g.
//!   `(llm_extract(...)).year`) becomes `(expression)['field']`, which DataFusion plans; it
//!   refuses the dot form on anything but a column.
//! - pgvector's `<+>` (L1 distance) is respelled `<~+>`: sqlparser reads `<+` as `<` then `+`,
//!   while `<~+>` is a custom operator it keeps whole (planned as `l1_distance`).
//! - `SHOW MODELS` is a query over `semsql.models`, so it works in both protocols and can be
//!   filtered like any table.
//! - Select items without a name get PostgreSQL's (`SELECT 1` is `?column?`, `count(*)` is
//!   `count`, `1::int` is `int4`), and a repeated output name (`SELECT 1 AS x, 2 AS x`, which
//!   DataFusion refuses) is made unique for DataFusion and shown as written
//!   ([`DUPLICATE_MARK`]).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    AccessExpr, CastKind, DataType, Expr, Query, SelectItem, SetExpr, Statement, Subscript,
    UnaryOperator, Value, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

/// How `<+>` is spelled for the parser (see the module docs).
pub const L1_OPERATOR: &str = "<~+>";

/// `sql` with every `<+>` operator (outside strings and comments) respelled [`L1_OPERATOR`].
fn respell_l1_operator(sql: &str) -> Option<String> {
    if !sql.contains("<+>") {
        return None;
    }
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()?;
    let mut out = String::with_capacity(sql.len());
    let mut changed = false;
    let mut index = 0;
    while index < tokens.len() {
        if matches!(
            (&tokens[index], tokens.get(index + 1), tokens.get(index + 2)),
            (Token::Lt, Some(Token::Plus), Some(Token::Gt))
        ) {
            out.push_str(L1_OPERATOR);
            changed = true;
            index += 3;
            continue;
        }
        out.push_str(&tokens[index].to_string());
        index += 1;
    }
    changed.then_some(out)
}

/// PostgreSQL's role statements in the spelling sqlparser reads: `CREATE USER` is
/// `CREATE ROLE ... LOGIN`, `ALTER USER` / `DROP USER` are the ROLE forms, and a membership
/// grant `GRANT group TO member` (no `ON`) is `GRANT ROLE group TO member` (likewise REVOKE).
fn respell_role_statement(words: &[String], sql: &str) -> Option<String> {
    let first = words.first()?.as_str();
    let second = words.get(1)?.as_str();
    let body = sql.trim().trim_end_matches(';').trim_end();
    let after = |count: usize| -> &str {
        let mut rest = body;
        for _ in 0..count {
            rest = rest.trim_start();
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            rest = &rest[end..];
        }
        rest
    };
    match (first, second) {
        ("CREATE", "USER") => {
            let login = words.iter().any(|w| w == "LOGIN" || w == "NOLOGIN");
            Some(format!(
                "CREATE ROLE{}{}",
                after(2),
                if login { "" } else { " LOGIN" }
            ))
        }
        ("ALTER", "USER") => Some(format!("ALTER ROLE{}", after(2))),
        ("DROP", "USER") => Some(format!("DROP ROLE{}", after(2))),
        ("GRANT", _) | ("REVOKE", _)
            if !words.iter().any(|w| w == "ON") && second != "ROLE" && words.len() >= 4 =>
        {
            Some(format!("{first} ROLE{}", after(1)))
        }
        _ => None,
    }
}

/// A script with each role statement respelled (see [`respell_role_statement`]).
fn respell_role_statements(sql: &str) -> Option<String> {
    let upper = sql.to_ascii_uppercase();
    if !(upper.contains("USER") || upper.contains("GRANT") || upper.contains("REVOKE")) {
        return None;
    }
    let statements = crate::llm::statements::split_statements(sql);
    let mut changed = false;
    let respelled: Vec<String> = statements
        .iter()
        .map(|statement| {
            let words: Vec<String> = statement
                .split_whitespace()
                .map(str::to_ascii_uppercase)
                .collect();
            match respell_role_statement(&words, statement) {
                Some(respelled) => {
                    changed = true;
                    respelled
                }
                None => statement.to_string(),
            }
        })
        .collect();
    changed.then(|| respelled.join(";"))
}

/// The rewritten SQL, or `None` when nothing needed rewriting (or it does not parse: then the
/// normal path reports the syntax error).
pub fn rewrite(sql: &str) -> Option<String> {
    let words: Vec<String> = sql
        .trim()
        .trim_end_matches(';')
        .split_whitespace()
        .map(str::to_ascii_uppercase)
        .collect();
    if words == ["SHOW", "MODELS"] {
        return Some(SHOW_MODELS.to_owned());
    }
    if let Some(role_statements) = respell_role_statements(sql) {
        return Some(role_statements);
    }
    let respelled = respell_l1_operator(sql);
    let sql = respelled.as_deref().unwrap_or(sql);
    let mut statements = match Parser::parse_sql(&PostgreSqlDialect {}, sql) {
        Ok(statements) => statements,
        Err(_) => return respelled,
    };
    let mut visitor = NarrowIntegerLiterals { changed: false };
    let mut fields = FieldSelection { changed: false };
    let mut named = false;
    // Catalog queries (psql's \d, drivers' reflection) name their columns themselves, and
    // datafusion-postgres rewrites some of their forms (`ARRAY(subquery)`) only where they
    // stand unnamed: they are left as they are.
    let upper = sql.to_ascii_uppercase();
    let catalog_query = upper.contains("PG_CATALOG") || upper.contains("ARRAY");
    for statement in &mut statements {
        // Before the narrowing, which turns `1` into a cast PostgreSQL would name otherwise.
        if !catalog_query {
            named |= name_select_items(statement);
        }
        let _ = statement.visit(&mut visitor);
        let _ = statement.visit(&mut fields);
    }
    (respelled.is_some() || visitor.changed || fields.changed || named).then(|| {
        statements
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(";\n")
    })
}

/// Marks a select item's name made unique for DataFusion (which refuses two output columns of
/// one name); the wire shows the name before the mark (see [`client_column_name`]).
pub const DUPLICATE_MARK: &str = "__semsql_dup_";

/// The column name a client sees: the name before a [`DUPLICATE_MARK`].
pub fn client_column_name(name: &str) -> &str {
    name.find(DUPLICATE_MARK).map_or(name, |at| &name[..at])
}

use super::hooks::access::fold;

/// PostgreSQL's name for an unnamed select item (its `FigureColname`): a column's name, a
/// function's, a cast's argument's (else the type's), `case`, `exists`, `array`, and
/// `?column?` for the rest. `None`: keep DataFusion's (scalar subqueries, where PostgreSQL
/// looks inside).
fn postgres_name(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Identifier(ident) => Some(fold(ident)),
        Expr::CompoundIdentifier(parts) => parts.last().map(fold),
        Expr::Function(function) => function
            .name
            .0
            .last()
            .and_then(|part| part.as_ident())
            .map(|ident| ident.value.to_lowercase()),
        Expr::Cast {
            expr, data_type, ..
        } => match postgres_name(expr) {
            Some(name) if name != "?column?" => Some(name),
            _ => Some(type_name(data_type)),
        },
        Expr::Nested(inner) => postgres_name(inner),
        // `(f(x)).year` is named after the field.
        Expr::CompoundFieldAccess { access_chain, .. } => match access_chain.last() {
            Some(AccessExpr::Dot(Expr::Identifier(field))) => Some(fold(field)),
            _ => Some("?column?".to_owned()),
        },
        Expr::Case { .. } => Some("case".to_owned()),
        Expr::Exists { .. } => Some("exists".to_owned()),
        Expr::Array(_) => Some("array".to_owned()),
        Expr::Subquery(_) => None,
        _ => Some("?column?".to_owned()),
    }
}

/// The name PostgreSQL gives a cast's column when its argument has none (`1::int` → `int4`).
fn type_name(data_type: &DataType) -> String {
    let text = data_type.to_string().to_lowercase();
    let base = text.split('(').next().unwrap_or(&text).trim().to_owned();
    match base.as_str() {
        "int" | "integer" | "int4" => "int4",
        "bigint" | "int8" => "int8",
        "smallint" | "int2" => "int2",
        "real" | "float4" => "float4",
        "double precision" | "float8" | "double" | "float" => "float8",
        "boolean" | "bool" => "bool",
        "character varying" | "varchar" => "varchar",
        "character" | "char" => "bpchar",
        "decimal" | "numeric" => "numeric",
        "timestamp with time zone" | "timestamptz" => "timestamptz",
        other => return other.to_owned(),
    }
    .to_owned()
}

/// Names the outermost query's select items as PostgreSQL does and makes repeated names
/// unique (see [`DUPLICATE_MARK`]); true when anything changed.
fn name_select_items(statement: &mut Statement) -> bool {
    let Statement::Query(query) = statement else {
        return false;
    };
    let SetExpr::Select(select) = query.body.as_mut() else {
        return false;
    };
    let has_wildcard = select.projection.iter().any(|item| {
        matches!(
            item,
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
        )
    });
    let mut changed = false;
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for item in select.projection.iter_mut() {
        let name = match item {
            SelectItem::UnnamedExpr(expr) => {
                let Some(name) = postgres_name(expr) else {
                    continue;
                };
                let bare = matches!(expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_));
                if !bare {
                    *item = SelectItem::ExprWithAlias {
                        expr: expr.clone(),
                        alias: datafusion::sql::sqlparser::ast::Ident::with_quote('"', &name),
                    };
                    changed = true;
                }
                name
            }
            SelectItem::ExprWithAlias { alias, .. } => fold(alias),
            _ => continue,
        };
        if has_wildcard {
            continue;
        }
        let count = seen.entry(name.clone()).or_insert(0);
        *count += 1;
        if *count > 1 {
            let unique = format!("{name}{DUPLICATE_MARK}{count}");
            let expr = match item {
                SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => {
                    expr.clone()
                }
                _ => continue,
            };
            *item = SelectItem::ExprWithAlias {
                expr,
                alias: datafusion::sql::sqlparser::ast::Ident::with_quote('"', &unique),
            };
            changed = true;
        }
    }
    changed
}

const SHOW_MODELS: &str = "SELECT name, source, base_url, model, api_key_env, rows_per_request, \
     concurrency, is_default, options FROM semsql.models ORDER BY name";

struct NarrowIntegerLiterals {
    changed: bool,
}

fn fits_int4(expr: &Expr) -> bool {
    match expr {
        Expr::Value(value) => match &value.value {
            Value::Number(text, false) => text.parse::<i32>().is_ok(),
            _ => false,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match expr.as_ref() {
            Expr::Value(value) => match &value.value {
                Value::Number(text, false) => format!("-{text}").parse::<i32>().is_ok(),
                _ => false,
            },
            _ => false,
        },
        _ => false,
    }
}

fn as_int4(expr: &mut Expr) {
    let literal = std::mem::replace(expr, Expr::Value(Value::Null.into()));
    *expr = Expr::Cast {
        kind: CastKind::Cast,
        expr: Box::new(literal),
        data_type: DataType::Int(None),
        array: false,
        format: None,
    };
}

impl VisitorMut for NarrowIntegerLiterals {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let SetExpr::Select(select) = query.body.as_mut() {
            for item in &mut select.projection {
                let expr = match item {
                    SelectItem::UnnamedExpr(expr) => expr,
                    SelectItem::ExprWithAlias { expr, .. } => expr,
                    _ => continue,
                };
                if fits_int4(expr) {
                    as_int4(expr);
                    self.changed = true;
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// `(expr).field` → `(expr)['field']`.
struct FieldSelection {
    changed: bool,
}

impl VisitorMut for FieldSelection {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::CompoundFieldAccess { root, access_chain } = expr {
            if matches!(root.as_ref(), Expr::Nested(_)) {
                for access in access_chain.iter_mut() {
                    if let AccessExpr::Dot(Expr::Identifier(field)) = access {
                        *access = AccessExpr::Subscript(Subscript::Index {
                            index: Expr::Value(
                                Value::SingleQuotedString(field.value.clone()).into(),
                            ),
                        });
                        self.changed = true;
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unnamed_items_get_postgres_names_and_repeats_are_made_unique() {
        let rewritten = rewrite(
            "SELECT 1, count(*), a, t.b, 1::int, a::text, CASE WHEN a THEN 1 END, a + 1, 2 AS x, 3 AS x, a FROM t",
        )
        .unwrap();
        for expected in [
            r#"AS "?column?""#,
            r#"AS "count""#,
            r#"AS "int4""#,
            r#"AS "case""#,
            r#"AS "?column?__semsql_dup_2""#,
            r#"AS "x__semsql_dup_2""#,
            r#"AS "a__semsql_dup_3""#,
        ] {
            assert!(rewritten.contains(expected), "{expected} in {rewritten}");
        }
        assert_eq!(client_column_name("x__semsql_dup_2"), "x");
        assert_eq!(client_column_name("x"), "x");
        // Names are left alone under a wildcard, and where nothing needs a name.
        assert!(rewrite("SELECT a, b FROM t").is_none());
        assert!(!rewrite("SELECT *, 1 FROM t").unwrap().contains("dup"));
    }

    #[test]
    fn the_l1_operator_is_respelled_outside_strings() {
        let sql = "SELECT a <+> '[1,2]', '<+>' FROM t -- <+>\nORDER BY a<+>b";
        let rewritten = rewrite(sql).unwrap();
        assert!(rewritten.contains("a <~+> '[1,2]'"), "{rewritten}");
        assert!(rewritten.contains("'<+>'"), "{rewritten}");
        assert!(rewritten.contains("a <~+> b"), "{rewritten}");
        assert!(!rewrite("SELECT 1 < +2").unwrap().contains("<~+>"));
    }

    #[test]
    fn bare_integer_literals_become_int4() {
        assert_eq!(
            rewrite("SELECT 1").as_deref(),
            Some(r#"SELECT CAST(1 AS INT) AS "?column?""#)
        );
        assert_eq!(
            rewrite("select -5 as x, 'a'").as_deref(),
            Some(r#"SELECT CAST(-5 AS INT) AS x, 'a' AS "?column?""#)
        );
    }

    #[test]
    fn field_selection_from_an_expression_uses_brackets() {
        assert_eq!(
            rewrite("SELECT (f(x)).year, t.a FROM t").as_deref(),
            Some(r#"SELECT (f(x))['year'] AS "year", t.a FROM t"#)
        );
        assert_eq!(rewrite("SELECT t.a.b FROM t"), None);
    }

    #[test]
    fn everything_else_is_left_alone() {
        assert_eq!(rewrite("SELECT a FROM t ORDER BY 1 LIMIT 5"), None);
        assert_eq!(rewrite("SELECT a, t.b AS c FROM t"), None);
        assert_eq!(rewrite("INSERT INTO t VALUES (1)"), None);
        assert_eq!(rewrite("SELEC 1"), None);
    }
}
