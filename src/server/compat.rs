//! Rewrites of the SQL text before it is planned, where PostgreSQL clients expect an answer
//! that DataFusion's planning would give differently.
//!
//! - A bare integer literal in a SELECT list (`SELECT 1`, `SELECT 42 AS answer`) is typed `int4`,
//!   as PostgreSQL types it; DataFusion types every integer literal `int8`, which node-postgres
//!   returns as a string and tokio-postgres refuses to read as `i32`. Arithmetic on literals is
//!   typed by `planner::integer_arithmetic` instead.
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
    visit_relations_mut, AccessExpr, CastKind, DataType, Expr, FunctionArg, FunctionArgExpr,
    FunctionArguments, GroupByExpr, Ident, ObjectName, ObjectNamePart, Query, SelectItem, SetExpr,
    Statement, Subscript, TableFactor, UnaryOperator, Value, Visit, VisitMut, Visitor, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::engine::pg_functions::backslash_pattern;
use crate::engine::search_path::PathResolver;

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
    rewrite_in(sql, None)
}

/// [`rewrite`], with unqualified relation names resolved along a session's `search_path`
/// (see `engine::search_path`).
pub fn rewrite_in(sql: &str, path: Option<&PathResolver>) -> Option<String> {
    let rewritten = rewrite_text(sql, path)?;
    // A rewrite must keep every parameter: one that lost or invented a `$n` would bind the
    // client's values to other places. Such a rewrite is a bug of ours; the statement then
    // goes on as the client wrote it.
    if placeholders(&rewritten) != placeholders(sql) {
        tracing::warn!(
            statement = sql,
            "a compatibility rewrite changed the statement's parameters; it is not used"
        );
        return None;
    }
    Some(rewritten)
}

/// The statement's distinct parameters (`$1`, `$2`, …), in order.
fn placeholders(sql: &str) -> std::collections::BTreeSet<String> {
    match Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() {
        Ok(tokens) => tokens
            .into_iter()
            .filter_map(|token| match token {
                Token::Placeholder(name) => Some(name),
                _ => None,
            })
            .collect(),
        Err(_) => std::collections::BTreeSet::new(),
    }
}

fn rewrite_text(sql: &str, path: Option<&PathResolver>) -> Option<String> {
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
    // datafusion-postgres answers some of psql's catalog queries that use `ARRAY(subquery)` by
    // swapping in a whole replacement query it matches on the text; that must see the text as
    // psql sent it. So such a query is taken as datafusion-postgres's parser leaves it, and
    // only the ARRAY subqueries it left are rewritten here.
    let mut arrays = ArraySubqueries { changed: false };
    let mut outer_unnests = UnnestOfOuterArrays { changed: false };
    let mut arrays_left = false;
    if statements.iter().any(has_array_subquery) {
        let parser =
            datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser::new();
        if let Ok(parsed) = parser.parse(sql) {
            if parsed.iter().any(has_array_subquery) {
                statements = parsed;
                arrays_left = true;
            }
        }
    }
    let mut visitor = NarrowIntegerLiterals { changed: false };
    let mut fields = FieldSelection { changed: false };
    let mut named = false;
    let mut qualified = false;
    let mut bytea = ByteaHexLiterals { changed: false };
    let mut likes = LikeEscapes { changed: false };
    let mut splits = SplitToTable { changed: false };
    let mut catalog_changed = false;
    let mut function_aliases = ScalarFunctionAliases { changed: false };
    let mut varchar_casts = VarcharCasts { changed: false };
    let mut regtypes = RegtypeText { changed: false };
    let mut subqueries = ScalarSubqueries {
        changed: false,
        quantified: Vec::new(),
    };
    let mut quantified = super::quantified_comparisons::QuantifiedComparisons { changed: false };
    let mut asyncpg_types = super::asyncpg_introspection::AsyncpgTypeInfo { changed: false };
    let mut protected = ProtectSubqueryItems { changed: false };
    let mut no_column_acls = NoColumnPrivilegesOrPolicies { changed: false };
    let mut templates = super::datetime_templates::DatetimeTemplates { changed: false };
    let mut intervals = super::interval_literals::IntervalLiterals { changed: false };
    // Catalog queries (psql's \d, drivers' reflection) name their columns themselves, and
    // datafusion-postgres rewrites some of their forms (`ARRAY(subquery)`) only where they
    // stand unnamed: they are left as they are.
    let upper = sql.to_ascii_uppercase();
    let catalog_query = upper.contains("PG_CATALOG") || statements.iter().any(has_array_subquery);
    for statement in &mut statements {
        // Before the narrowing, which turns `1` into a cast PostgreSQL would name otherwise.
        if !catalog_query {
            named |= name_select_items(statement);
        }
        if catalog_query {
            let _ = statement.visit(&mut asyncpg_types);
        }
        let _ = statement.visit(&mut visitor);
        let _ = statement.visit(&mut fields);
        let _ = statement.visit(&mut bytea);
        let _ = statement.visit(&mut likes);
        let _ = statement.visit(&mut splits);
        let _ = statement.visit(&mut function_aliases);
        let _ = statement.visit(&mut varchar_casts);
        let mut catalog_arrays = CatalogArrays::new(statement);
        let _ = statement.visit(&mut catalog_arrays);
        catalog_changed |= catalog_arrays.changed;
        // After the catalog arrays, which rewrite `ANY(c.conkey)`'s array. Catalog queries
        // keep datafusion-postgres's lowering, whose text its parser matches against the
        // queries it answers itself.
        if !catalog_query {
            let _ = statement.visit(&mut quantified);
        }
        let _ = statement.visit(&mut regtypes);
        let _ = statement.visit(&mut templates);
        let _ = statement.visit(&mut intervals);
        if catalog_query {
            let _ = statement.visit(&mut no_column_acls);
        }
        // After \dp's lists, which are answered without planning their subqueries.
        if arrays_left {
            let _ = statement.visit(&mut outer_unnests);
            let _ = statement.visit(&mut arrays);
        }
        // Catalog queries keep datafusion-postgres's handling of select items, which psql's
        // rely on; their WHERE clauses get ours (pgcli's type list filters on a correlated
        // scalar subquery).
        if catalog_query {
            let _ = statement.visit(&mut CatalogSubqueries(&mut subqueries));
        } else {
            let _ = statement.visit(&mut subqueries);
            let _ = statement.visit(&mut protected);
        }
        if let Some(path) = path {
            qualified |= qualify_relations(statement, path);
        }
    }
    (respelled.is_some()
        || visitor.changed
        || fields.changed
        || named
        || qualified
        || bytea.changed
        || likes.changed
        || splits.changed
        || function_aliases.changed
        || varchar_casts.changed
        || catalog_changed
        || regtypes.changed
        || templates.changed
        || intervals.changed
        || no_column_acls.changed
        || arrays.changed
        || outer_unnests.changed
        || subqueries.changed
        || quantified.changed
        || asyncpg_types.changed
        || protected.changed)
        .then(|| {
            statements
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(";\n")
        })
}

/// Writes the schema into each unqualified relation name that the session's path finds
/// elsewhere than in its default schema; true when any changed. A name a `WITH` clause
/// defines is never qualified, nor the name a CREATE statement creates (PostgreSQL creates
/// in the path's first schema, which is the default schema).
fn qualify_relations(statement: &mut Statement, path: &PathResolver) -> bool {
    let mut ctes = std::collections::HashSet::new();
    collect_cte_names(statement, &mut ctes);
    let mut changed = false;
    let mut qualify = |name: &mut ObjectName| {
        if let [ObjectNamePart::Identifier(ident)] = name.0.as_slice() {
            let table = fold(ident);
            if !ctes.contains(&table) {
                if let Some(schema) = path.schema_of(&table) {
                    name.0.insert(
                        0,
                        ObjectNamePart::Identifier(Ident::with_quote('"', schema)),
                    );
                    changed = true;
                }
            }
        }
        ControlFlow::<()>::Continue(())
    };
    match statement {
        Statement::CreateTable(create) => {
            if let Some(query) = create.query.as_mut() {
                let _ = visit_relations_mut(query, &mut qualify);
            }
        }
        Statement::CreateView(view) => {
            let _ = visit_relations_mut(&mut view.query, &mut qualify);
        }
        Statement::CreateSchema { .. }
        | Statement::CreateRole(_)
        | Statement::CreateFunction(_)
        | Statement::CreateSequence { .. }
        | Statement::CreateType { .. } => {}
        _ => {
            let _ = visit_relations_mut(statement, &mut qualify);
        }
    }
    changed
}

/// The names `WITH` clauses anywhere in `statement` define.
fn collect_cte_names(statement: &Statement, names: &mut std::collections::HashSet<String>) {
    struct Ctes<'a>(&'a mut std::collections::HashSet<String>);
    impl Visitor for Ctes<'_> {
        type Break = ();
        fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
            if let Some(with) = &query.with {
                for cte in &with.cte_tables {
                    self.0.insert(fold(&cte.alias.name));
                }
            }
            ControlFlow::Continue(())
        }
    }
    let _ = statement.visit(&mut Ctes(names));
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
            // A name that is only a type's (the argument is itself a cast, `x::regtype::text`)
            // gives way to this cast's type, as in PostgreSQL.
            Some(name) if name != "?column?" && !names_by_type(expr) => Some(name),
            _ => Some(type_name(data_type)),
        },
        Expr::Nested(inner) => postgres_name(inner),
        // `(f(x)).year` is named after the field.
        Expr::CompoundFieldAccess { access_chain, .. } => match access_chain.last() {
            Some(AccessExpr::Dot(Expr::Identifier(field))) => Some(fold(field)),
            _ => Some("?column?".to_owned()),
        },
        Expr::Case { .. } => Some("case".to_owned()),
        Expr::Interval(_) => Some("interval".to_owned()),
        Expr::TypedString(typed) => Some(type_name(&typed.data_type)),
        Expr::Exists { .. } => Some("exists".to_owned()),
        Expr::Array(_) => Some("array".to_owned()),
        // A scalar subquery is named after its one column, as PostgreSQL names it.
        Expr::Subquery(query) => match query.body.as_ref() {
            SetExpr::Select(select) => match select.projection.as_slice() {
                [SelectItem::ExprWithAlias { alias, .. }] => Some(fold(alias)),
                [SelectItem::UnnamedExpr(inner)] => postgres_name(inner),
                _ => Some("?column?".to_owned()),
            },
            _ => Some("?column?".to_owned()),
        },
        _ => Some("?column?".to_owned()),
    }
}

/// Whether an expression's column name is a type's: a cast of something nameless, or a typed
/// literal.
fn names_by_type(expr: &Expr) -> bool {
    match expr {
        Expr::Nested(inner) => names_by_type(inner),
        Expr::Cast { expr, .. } => {
            names_by_type(expr) || matches!(postgres_name(expr).as_deref(), None | Some("?column?"))
        }
        Expr::TypedString(_) => true,
        _ => false,
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

/// Whether `expr` is `unnest(unnest(...))`.
fn is_nested_unnest(expr: &Expr) -> bool {
    let unnest_argument = |expr: &Expr| -> Option<Expr> {
        let Expr::Function(function) = expr else {
            return None;
        };
        if !is_named(&function.name, "unnest") {
            return None;
        }
        let FunctionArguments::List(list) = &function.args else {
            return None;
        };
        match list.args.as_slice() {
            [FunctionArg::Unnamed(FunctionArgExpr::Expr(argument))] => Some(argument.clone()),
            _ => None,
        }
    };
    unnest_argument(expr).is_some_and(|inner| unnest_argument(&inner).is_some())
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
            // `unnest(unnest(c))`, which has no PostgreSQL counterpart (PostgreSQL's unnest
            // flattens every dimension at once), keeps DataFusion's names: under an alias
            // DataFusion cannot expand the struct the outer unnest may give into its fields.
            SelectItem::UnnamedExpr(expr) if is_nested_unnest(expr) => continue,
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
     calibration, \
     concurrency, is_default, options FROM semsql.models ORDER BY name";

/// `'\x00ff'::bytea` (PostgreSQL's hex input for bytea) becomes `decode('00ff', 'hex')`:
/// DataFusion's cast keeps the text's own bytes (`\`, `x`, `0`, ...).
struct ByteaHexLiterals {
    changed: bool,
}

impl VisitorMut for ByteaHexLiterals {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let hex = match expr {
            Expr::Cast {
                expr: inner,
                data_type: DataType::Bytea,
                array: false,
                ..
            } => match inner.as_ref() {
                Expr::Value(value) => match &value.value {
                    Value::SingleQuotedString(text) | Value::EscapedStringLiteral(text) => {
                        text.strip_prefix("\\x").map(str::to_owned)
                    }
                    _ => None,
                },
                _ => None,
            },
            Expr::TypedString(typed) if typed.data_type == DataType::Bytea => {
                match &typed.value.value {
                    Value::SingleQuotedString(text) => text.strip_prefix("\\x").map(str::to_owned),
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some(hex) = hex {
            let call = format!("decode('{}', 'hex')", hex.replace('\'', "''"));
            if let Some(parsed) = parse_expr(&call) {
                *expr = parsed;
                self.changed = true;
            }
        }
        ControlFlow::Continue(())
    }
}

/// `LIKE 'a/_b' ESCAPE '/'` (SQLAlchemy's reflection sends it) becomes `LIKE 'a\_b'`:
/// DataFusion takes backslash as the only escape character. The pattern is rewritten for the
/// backslash (a backslash in it becomes an escaped backslash); `ESCAPE ''` (no escape
/// character) likewise. A pattern that is not a constant is respelled while the query runs,
/// by PostgreSQL's `like_escape(pattern, escape)`.
struct LikeEscapes {
    changed: bool,
}

impl VisitorMut for LikeEscapes {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let (pattern, escape_char) = match expr {
            Expr::Like {
                pattern,
                escape_char,
                any: false,
                ..
            }
            | Expr::ILike {
                pattern,
                escape_char,
                any: false,
                ..
            } => (pattern, escape_char),
            _ => return ControlFlow::Continue(()),
        };
        let escape = match escape_char.as_ref().map(|value| &value.value) {
            Some(Value::SingleQuotedString(text)) if text != "\\" => text.chars().next(),
            _ => return ControlFlow::Continue(()),
        };
        if let Expr::Value(literal) = pattern.as_mut() {
            if let Value::SingleQuotedString(text) = &literal.value {
                if let Some(respelled) = backslash_pattern(text, escape) {
                    literal.value = Value::SingleQuotedString(respelled);
                    *escape_char = None;
                    self.changed = true;
                }
                return ControlFlow::Continue(());
            }
        }
        // A pattern made while the query runs (`$1 || '%'`): respelled then.
        let call = format!(
            "like_escape({pattern}, '{}')",
            escape
                .map(String::from)
                .unwrap_or_default()
                .replace('\'', "''")
        );
        if let Some(respelled) = parse_expr(&call) {
            **pattern = respelled;
            *escape_char = None;
            self.changed = true;
        }
        ControlFlow::Continue(())
    }
}

/// `regexp_split_to_table(s, p [, flags])` (pgcli's completion queries call it) becomes
/// `unnest(regexp_split_to_array(s, p [, flags]))`, in a select list and in FROM alike:
/// DataFusion has no set-returning scalar functions, but unnests an array.
struct SplitToTable {
    changed: bool,
}

const SPLIT_TO_TABLE: &str = "regexp_split_to_table";

fn is_named(name: &ObjectName, wanted: &str) -> bool {
    matches!(name.0.as_slice(), [ObjectNamePart::Identifier(ident)]
        if ident.value.eq_ignore_ascii_case(wanted))
}

/// `unnest(regexp_split_to_array(<args>))`.
fn unnest_split(args: &str) -> Option<Expr> {
    parse_expr(&format!("unnest(regexp_split_to_array({args}))"))
}

impl VisitorMut for SplitToTable {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Function(function) = expr {
            if is_named(&function.name, SPLIT_TO_TABLE) {
                if let FunctionArguments::List(list) = &function.args {
                    let args = list
                        .args
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ");
                    if let Some(unnest) = unnest_split(&args) {
                        *expr = unnest;
                        self.changed = true;
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table {
            name,
            args: Some(args),
            ..
        } = factor
        {
            if is_named(name, SPLIT_TO_TABLE) {
                let inner = args
                    .args
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ");
                if let Some(Expr::Function(unnest)) = unnest_split(&inner) {
                    if let FunctionArguments::List(list) = unnest.args {
                        *name = ObjectName::from(vec![Ident::new("unnest")]);
                        args.args = list.args;
                        self.changed = true;
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// The catalogs keep `int2vector` and `int2[]` columns (`pg_index.indkey`,
/// `pg_constraint.conkey`) as their text; where a query takes them apart
/// (`unnest(indkey)`, `x = ANY(conkey)`) they are read through
/// `semsql_int2_list` first, and `generate_subscripts(a, 1)` becomes
/// `unnest(generate_series(1, cardinality(a)))` (SQLAlchemy's and pgjdbc's reflection).
///
/// A subscript of such a column (`indoption[n]`, or pgjdbc's `getIndexInfo`, which names it
/// `I_INDOPTION` in a derived table and reads `tmp.I_INDOPTION[n]`) reads the list too; the
/// `int2vector`/`oidvector` columns count from 0 as in PostgreSQL, the arrays from 1.
struct CatalogArrays {
    changed: bool,
    /// Select-item aliases of catalog vector columns (folded alias → the column's name).
    aliases: std::collections::HashMap<String, String>,
}

/// The catalogs' `int2vector` and `oidvector` columns, whose subscripts start at 0.
const ZERO_BASED_CATALOG_COLUMNS: [&str; 7] = [
    "indkey",
    "indoption",
    "indclass",
    "indcollation",
    "stxkeys",
    "partattrs",
    "proargtypes",
];

impl CatalogArrays {
    fn new(statement: &Statement) -> Self {
        struct Aliases(std::collections::HashMap<String, String>);
        impl Visitor for Aliases {
            type Break = ();
            fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
                if let SetExpr::Select(select) = query.body.as_ref() {
                    for item in &select.projection {
                        if let SelectItem::ExprWithAlias { expr, alias } = item {
                            if catalog_list_function(expr).is_some() {
                                let column = match expr {
                                    Expr::Identifier(ident) => fold(ident),
                                    Expr::CompoundIdentifier(parts) => {
                                        parts.last().map(fold).unwrap_or_default()
                                    }
                                    _ => continue,
                                };
                                self.0.insert(fold(alias), column);
                            }
                        }
                    }
                }
                ControlFlow::Continue(())
            }
        }
        let mut aliases = Aliases(std::collections::HashMap::new());
        let _ = statement.visit(&mut aliases);
        Self {
            changed: false,
            aliases: aliases.0,
        }
    }

    /// `root[index]` of a catalog vector column (or an alias of one) as a list subscript.
    fn subscript(&mut self, expr: &mut Expr) {
        let Expr::CompoundFieldAccess { root, access_chain } = expr else {
            return;
        };
        // `tmp.x[i]` parses as `tmp` with the accesses `.x` and `[i]`.
        let Some((AccessExpr::Subscript(Subscript::Index { index }), path)) =
            access_chain.split_last()
        else {
            return;
        };
        let mut parts = match root.as_ref() {
            Expr::Identifier(ident) => vec![ident.clone()],
            Expr::CompoundIdentifier(parts) => parts.clone(),
            _ => return,
        };
        for access in path {
            match access {
                AccessExpr::Dot(Expr::Identifier(ident)) => parts.push(ident.clone()),
                _ => return,
            }
        }
        let Some(name) = parts.last().map(fold) else {
            return;
        };
        let root = Expr::CompoundIdentifier(parts);
        let column = self.aliases.get(&name).cloned().unwrap_or(name);
        let as_column = Expr::Identifier(Ident::new(column.clone()));
        let Some(function) = catalog_list_function(&as_column) else {
            return;
        };
        let index = if ZERO_BASED_CATALOG_COLUMNS.contains(&column.as_str()) {
            format!("({index}) + 1")
        } else {
            index.to_string()
        };
        if let Some(read) = parse_expr(&format!("{function}({root})[{index}]")) {
            *expr = read;
            self.changed = true;
        }
    }
}

const INT2_CATALOG_COLUMNS: [&str; 6] = [
    "indkey",
    "indoption",
    "conkey",
    "confkey",
    "stxkeys",
    "partattrs",
];
const OID_CATALOG_COLUMNS: [&str; 8] = [
    "indclass",
    "indcollation",
    "proargtypes",
    "proallargtypes",
    "conpfeqop",
    "conppeqop",
    "conffeqop",
    "conexclop",
];

/// The function that reads `expr` as an array, if it is a catalog vector column.
fn catalog_list_function(expr: &Expr) -> Option<&'static str> {
    let name = match expr {
        Expr::Identifier(ident) => ident,
        Expr::CompoundIdentifier(parts) => parts.last()?,
        _ => return None,
    };
    let name = fold(name);
    if INT2_CATALOG_COLUMNS.contains(&name.as_str()) {
        Some(crate::engine::pg_functions::INT2_LIST)
    } else if OID_CATALOG_COLUMNS.contains(&name.as_str()) {
        Some(crate::engine::pg_functions::OID_LIST)
    } else {
        None
    }
}

/// One query parsed as PostgreSQL writes it, for the rewrites that build one as text.
fn parse_query(sql: &str) -> Option<Query> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut parser| parser.parse_query())
        .ok()
        .map(|query| *query)
}

/// Whether `function` is `ARRAY(subquery)`.
fn is_array_subquery(function: &datafusion::sql::sqlparser::ast::Function) -> bool {
    function.name.to_string().eq_ignore_ascii_case("array")
        && matches!(function.args, FunctionArguments::Subquery(_))
}

/// The subquery of `ARRAY(subquery)`, when `expr` is one.
fn array_subquery(expr: &mut Expr) -> Option<&mut Box<Query>> {
    match expr {
        Expr::Function(function) if is_array_subquery(function) => match &mut function.args {
            FunctionArguments::Subquery(query) => Some(query),
            _ => None,
        },
        _ => None,
    }
}

/// One expression parsed as PostgreSQL writes it, for the rewrites that build one as text.
pub(crate) fn parse_expr(sql: &str) -> Option<Expr> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut parser| parser.parse_expr())
        .ok()
}

impl CatalogArrays {
    /// `semsql_int2_list(<column>)` in place of a catalog column.
    fn as_list(&mut self, expr: &mut Expr) {
        if let Some(function) = catalog_list_function(expr) {
            if let Some(list) = parse_expr(&format!("{function}({expr})")) {
                *expr = list;
                self.changed = true;
            }
        }
    }
}

impl VisitorMut for CatalogArrays {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        self.subscript(expr);
        match expr {
            // `proargtypes::regtype[]`, which prints as the types' names.
            Expr::Cast {
                expr: column,
                data_type,
                ..
            } if catalog_list_function(column) == Some(crate::engine::pg_functions::OID_LIST)
                && matches!(
                    data_type.to_string().to_ascii_lowercase().as_str(),
                    "regtype[]" | "pg_catalog.regtype[]"
                ) =>
            {
                if let Some(names) = parse_expr(&format!(
                    "{}({column})",
                    crate::engine::functions::REGTYPE_NAMES
                )) {
                    *expr = names;
                    self.changed = true;
                    return ControlFlow::Continue(());
                }
            }
            Expr::Function(function) if is_named(&function.name, "generate_subscripts") => {
                if let FunctionArguments::List(list) = &function.args {
                    if let [array, dimension] = list.args.as_slice() {
                        // Every array semsql has is one-dimensional: dimension 1 has the
                        // subscripts, any other none. The dimension stays in the query, as
                        // clients pass it as a parameter (`$1::INTEGER`) that must still be
                        // there to bind.
                        let mut array = parse_expr(&array.to_string());
                        if let Some(array) = array.as_mut() {
                            self.as_list(array);
                            if let Some(subscripts) = parse_expr(&format!(
                                "unnest(generate_series(1, CASE WHEN ({dimension}) = 1 \
                                 THEN CAST(cardinality({array}) AS BIGINT) ELSE 0 END))"
                            )) {
                                *expr = subscripts;
                                self.changed = true;
                                // Its column is already rewritten; nothing below to visit.
                                return ControlFlow::Continue(());
                            }
                        }
                    }
                }
            }
            Expr::Function(function) if is_named(&function.name, "unnest") => {
                if let FunctionArguments::List(list) = &mut function.args {
                    if let [FunctionArg::Unnamed(FunctionArgExpr::Expr(array))] =
                        list.args.as_mut_slice()
                    {
                        self.as_list(array);
                    }
                }
            }
            Expr::AnyOp { right, .. } | Expr::AllOp { right, .. } => self.as_list(right),
            // `information_schema._pg_expandarray(a)`: the set of records `(x, n)`.
            Expr::Function(function)
                if function
                    .name
                    .0
                    .last()
                    .and_then(|part| part.as_ident())
                    .is_some_and(|ident| ident.value.eq_ignore_ascii_case("_pg_expandarray")) =>
            {
                if let FunctionArguments::List(list) = &function.args {
                    if let [FunctionArg::Unnamed(FunctionArgExpr::Expr(array))] =
                        list.args.as_slice()
                    {
                        let mut array = array.clone();
                        self.as_list(&mut array);
                        if let Some(expanded) = parse_expr(&format!(
                            "unnest({}({array}))",
                            crate::engine::pg_functions::EXPAND_ARRAY
                        )) {
                            *expr = expanded;
                            self.changed = true;
                            return ControlFlow::Continue(());
                        }
                    }
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// A scalar subquery `(SELECT c FROM ...)` becomes
/// `semsql_single_value_of((SELECT semsql_single_value(c) FROM ...))`: DataFusion plans a
/// correlated scalar subquery only when its column is an aggregate, and these keep
/// PostgreSQL's meaning (the one row's value, NULL for none, 21000 for more; see
/// `engine::pg_functions`). Subqueries that already aggregate, group, sort or limit are left
/// as they are.
struct ScalarSubqueries {
    changed: bool,
    /// The subqueries of `x < ALL (SELECT ...)` and the like, seen before their own visit:
    /// they are sets of rows, which DataFusion plans as such, not scalars.
    quantified: Vec<*const Query>,
}

/// Aggregates a scalar subquery's column may already be (the common ones; another aggregate
/// is wrapped too, which DataFusion then refuses as a nested aggregate).
const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
    "every",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "variance",
    "var_pop",
    "var_samp",
    "llm_agg",
    "llm_rerank",
    "first_value",
    "last_value",
    "median",
];

fn is_aggregate_call(expr: &Expr) -> bool {
    match expr {
        Expr::Function(function) => {
            function.over.is_none() && AGGREGATES.iter().any(|name| is_named(&function.name, name))
                || function
                    .name
                    .0
                    .last()
                    .and_then(|part| part.as_ident())
                    .is_some_and(|ident| {
                        ident
                            .value
                            .eq_ignore_ascii_case(crate::engine::pg_functions::SINGLE_VALUE)
                    })
        }
        Expr::Nested(inner) | Expr::Cast { expr: inner, .. } => is_aggregate_call(inner),
        _ => false,
    }
}

/// Whether an aggregate is called anywhere in `expr` outside a nested subquery
/// (`sum(a) * 0.1` is an aggregate already, and wrapping it again nests aggregates).
fn contains_aggregate(expr: &Expr) -> bool {
    struct Finder {
        depth: usize,
        found: bool,
    }
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.depth += 1;
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.depth -= 1;
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            if self.depth == 0 && matches!(expr, Expr::Function(_)) && is_aggregate_call(expr) {
                self.found = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
    }
    let mut finder = Finder {
        depth: 0,
        found: false,
    };
    let _ = expr.visit(&mut finder);
    finder.found
}

impl VisitorMut for ScalarSubqueries {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::AnyOp { right, .. } | Expr::AllOp { right, .. } = expr {
            if let Expr::Subquery(query) = right.as_ref() {
                self.quantified.push(&**query);
            }
        }
        let Expr::Subquery(query) = expr else {
            return ControlFlow::Continue(());
        };
        if self.quantified.contains(&(&**query as *const Query)) {
            return ControlFlow::Continue(());
        }
        if query.with.is_some()
            || query.order_by.is_some()
            || query.limit_clause.is_some()
            || query.fetch.is_some()
        {
            return ControlFlow::Continue(());
        }
        let SetExpr::Select(select) = query.body.as_mut() else {
            return ControlFlow::Continue(());
        };
        let grouped = !matches!(
            &select.group_by,
            GroupByExpr::Expressions(exprs, modifiers) if exprs.is_empty() && modifiers.is_empty()
        );
        if grouped || select.having.is_some() || select.distinct.is_some() {
            return ControlFlow::Continue(());
        }
        let [item] = select.projection.as_slice() else {
            return ControlFlow::Continue(());
        };
        let column = match item {
            SelectItem::UnnamedExpr(column) | SelectItem::ExprWithAlias { expr: column, .. } => {
                column.clone()
            }
            _ => return ControlFlow::Continue(()),
        };
        if contains_aggregate(&column) {
            return ControlFlow::Continue(());
        }
        let inner_names = relation_names(select);
        let outer_only = inner_names
            .as_deref()
            .and_then(|names| take_outer_only_conjuncts(select, names));
        let names_outer = inner_names.as_deref().is_some_and(|names| {
            let used = column_use(&column, names);
            !used.unknown && used.outer > 0
        });
        let value = if names_outer {
            // DataFusion decorrelates no subquery whose select list names an outer column
            // (SQLAlchemy's `json_build_object('always', pg_attribute.attidentity = 'a', ...)`):
            // the item is computed outside, each inner column fetched by a subquery of its
            // own, and a subquery of `1` says whether there is a row (NULL for none, 21000 for
            // more, as PostgreSQL).
            let names = inner_names.as_deref().unwrap_or_default();
            lifted(query, &column, names)
        } else {
            single_value_of(query, &column)
        };
        let Some(value) = value else {
            return ControlFlow::Continue(());
        };
        let replaced = match outer_only {
            Some(condition) => parse_expr(&format!("CASE WHEN {condition} THEN {value} END")),
            None => Some(value),
        };
        if let Some(replaced) = replaced {
            *expr = replaced;
            self.changed = true;
        }
        ControlFlow::Continue(())
    }
}

/// `semsql_single_value_of((SELECT semsql_single_value(<column>) FROM ...))`: the subquery
/// `query` with `column` as its one item.
fn single_value_of(query: &Query, column: &Expr) -> Option<Expr> {
    let mut query = query.clone();
    let SetExpr::Select(select) = query.body.as_mut() else {
        return None;
    };
    let item = parse_expr(&format!(
        "{}({column})",
        crate::engine::pg_functions::SINGLE_VALUE
    ))?;
    select.projection = vec![SelectItem::UnnamedExpr(item)];
    parse_expr(&format!(
        "{}({})",
        crate::engine::pg_functions::SINGLE_VALUE_OF,
        Expr::Subquery(Box::new(query))
    ))
}

/// `CASE WHEN <a row> IS NOT NULL THEN <column with each inner column a subquery> END`.
fn lifted(query: &Query, column: &Expr, inner_names: &[String]) -> Option<Expr> {
    struct InnerColumns<'a> {
        query: &'a Query,
        inner_names: &'a [String],
        failed: bool,
    }
    impl VisitorMut for InnerColumns<'_> {
        type Break = ();
        fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
            if let Expr::CompoundIdentifier(parts) = expr {
                if parts.len() >= 2 && self.inner_names.contains(&fold(&parts[parts.len() - 2])) {
                    match single_value_of(self.query, expr) {
                        Some(value) => *expr = value,
                        None => {
                            self.failed = true;
                            return ControlFlow::Break(());
                        }
                    }
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut computed = column.clone();
    let mut inner = InnerColumns {
        query,
        inner_names,
        failed: false,
    };
    let _ = VisitMut::visit(&mut computed, &mut inner);
    if inner.failed {
        return None;
    }
    let row = single_value_of(query, &Expr::value(Value::Number("1".into(), false)))?;
    parse_expr(&format!("CASE WHEN {row} IS NOT NULL THEN {computed} END"))
}

/// The names a subquery's relations are known by (alias, else the table's own name); None
/// when one has neither.
fn relation_names(select: &datafusion::sql::sqlparser::ast::Select) -> Option<Vec<String>> {
    let mut names = Vec::new();
    for table in &select.from {
        let factors =
            std::iter::once(&table.relation).chain(table.joins.iter().map(|join| &join.relation));
        for factor in factors {
            let name = match factor {
                TableFactor::Table {
                    alias: Some(alias), ..
                }
                | TableFactor::Derived {
                    alias: Some(alias), ..
                }
                | TableFactor::Function {
                    alias: Some(alias), ..
                } => fold(&alias.name),
                TableFactor::Table { name, .. } => fold(name.0.last()?.as_ident()?),
                _ => return None,
            };
            names.push(name);
        }
    }
    Some(names)
}

/// Takes out of a scalar subquery's WHERE the conjuncts that name only the outer query's
/// columns (SQLAlchemy asks `(SELECT ... FROM pg_attrdef WHERE pg_attribute.atthasdef AND
/// ...)`) and returns them joined by AND. DataFusion decorrelates an aggregated subquery only
/// when each correlated conjunct is an equality with an inner column, so such a conjunct
/// leaves the subquery unplanned; `CASE WHEN <conjuncts> THEN (subquery) END` is the same
/// value (no rows, so NULL, when they do not hold).
fn take_outer_only_conjuncts(
    select: &mut datafusion::sql::sqlparser::ast::Select,
    inner_names: &[String],
) -> Option<Expr> {
    use datafusion::sql::sqlparser::ast::BinaryOperator;

    let selection = select.selection.take()?;
    let mut conjuncts = Vec::new();
    split_and(selection, &mut conjuncts);
    let (outer, inner): (Vec<Expr>, Vec<Expr>) = conjuncts.into_iter().partition(|conjunct| {
        let used = column_use(conjunct, inner_names);
        !used.unknown && used.inner == 0 && used.outer > 0
    });
    let join = |parts: Vec<Expr>| {
        parts.into_iter().reduce(|left, right| Expr::BinaryOp {
            left: Box::new(left),
            op: BinaryOperator::And,
            right: Box::new(right),
        })
    };
    select.selection = join(inner);
    join(outer).map(|condition| Expr::Nested(Box::new(condition)))
}

fn split_and(expr: Expr, into: &mut Vec<Expr>) {
    use datafusion::sql::sqlparser::ast::BinaryOperator;
    match expr {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            split_and(*left, into);
            split_and(*right, into);
        }
        Expr::Nested(inner)
            if matches!(
                inner.as_ref(),
                Expr::BinaryOp {
                    op: BinaryOperator::And,
                    ..
                }
            ) =>
        {
            split_and(*inner, into)
        }
        other => into.push(other),
    }
}

/// Whether DataFusion can decorrelate `query` once [`ScalarSubqueries`] has rewritten it:
/// a plain SELECT whose WHERE conjuncts each name only its own columns, only the outer
/// query's, or are an equality of one of its columns with an outer expression.
fn decorrelatable(query: &Query) -> bool {
    use datafusion::sql::sqlparser::ast::BinaryOperator;

    let SetExpr::Select(select) = query.body.as_ref() else {
        return false;
    };
    let Some(names) = relation_names(select) else {
        return false;
    };
    let Some(selection) = select.selection.clone() else {
        return true;
    };
    let mut conjuncts = Vec::new();
    split_and(selection, &mut conjuncts);
    conjuncts.iter().all(|conjunct| {
        let used = column_use(conjunct, &names);
        if used.unknown {
            return false;
        }
        if used.inner == 0 || used.outer == 0 {
            return true;
        }
        let Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } = conjunct
        else {
            return false;
        };
        let (left, right) = (column_use(left, &names), column_use(right, &names));
        (left.outer == 0 && right.inner == 0) || (left.inner == 0 && right.outer == 0)
    })
}

/// The columns an expression names, as a subquery whose relations are `inner_names` sees
/// them: qualified by one of its relations (inner), qualified otherwise (outer), or not to
/// be told apart (an unqualified column, a subquery).
#[derive(Default)]
struct ColumnUse {
    inner: usize,
    outer: usize,
    unknown: bool,
}

fn column_use(expr: &Expr, inner_names: &[String]) -> ColumnUse {
    struct Columns<'a> {
        inner_names: &'a [String],
        used: ColumnUse,
    }
    impl Visitor for Columns<'_> {
        type Break = ();
        fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.used.unknown = true;
            ControlFlow::Break(())
        }
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            match expr {
                Expr::Identifier(_) => {
                    self.used.unknown = true;
                    return ControlFlow::Break(());
                }
                Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                    if self.inner_names.contains(&fold(&parts[parts.len() - 2])) {
                        self.used.inner += 1;
                    } else {
                        self.used.outer += 1;
                    }
                }
                _ => {}
            }
            ControlFlow::Continue(())
        }
    }
    let mut columns = Columns {
        inner_names,
        used: ColumnUse::default(),
    };
    let _ = expr.visit(&mut columns);
    columns.used
}

/// [`ScalarSubqueries`] applied to a catalog query: to the WHERE clause of every SELECT and
/// to subqueries inside a select item (SQLAlchemy's column reflection asks for a column's
/// default in `CASE WHEN atthasdef THEN (SELECT pg_get_expr(...) FROM pg_attrdef WHERE ...)`),
/// but not to a select item that is a whole subquery, which datafusion-postgres handles
/// its own way and psql's queries rely on.
struct CatalogSubqueries<'a>(&'a mut ScalarSubqueries);

impl VisitorMut for CatalogSubqueries<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let SetExpr::Select(select) = query.body.as_mut() {
            if let Some(selection) = select.selection.as_mut() {
                let _ = selection.visit(self.0);
            }
            for item in &mut select.projection {
                if let SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } = item
                {
                    if !matches!(expr, Expr::Subquery(_)) {
                        let _ = expr.visit(self.0);
                    } else if let Expr::Subquery(query) = expr {
                        // psql's `\d t` asks for each column's default so; those whose
                        // conditions DataFusion can plan once rewritten are rewritten, the
                        // rest keep datafusion-postgres's handling.
                        if decorrelatable(query) {
                            let _ = expr.visit(self.0);
                            if !matches!(expr, Expr::Subquery(_)) {
                                *expr = Expr::Nested(Box::new(std::mem::replace(
                                    expr,
                                    Expr::Value(Value::Null.into()),
                                )));
                            }
                        }
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// `x::varchar(n)`: an explicit cast cuts the value to `n` characters in PostgreSQL (a value
/// stored into a `varchar(n)` column that is too long is refused instead, see
/// `engine::character_types`); it becomes `CAST(left(CAST(x AS TEXT), n) AS VARCHAR(n))`.
struct VarcharCasts {
    changed: bool,
}

impl VisitorMut for VarcharCasts {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        use datafusion::sql::sqlparser::ast::CharacterLength;
        let Expr::Cast {
            expr: value,
            data_type:
                DataType::Varchar(Some(CharacterLength::IntegerLength { length, .. }))
                | DataType::CharacterVarying(Some(CharacterLength::IntegerLength { length, .. }))
                | DataType::CharVarying(Some(CharacterLength::IntegerLength { length, .. })),
            ..
        } = expr
        else {
            return ControlFlow::Continue(());
        };
        let already_cut =
            matches!(value.as_ref(), Expr::Function(function) if is_named(&function.name, "left"));
        if already_cut {
            return ControlFlow::Continue(());
        }
        if let Some(cut) = parse_expr(&format!(
            "CAST(left(CAST({value} AS TEXT), {length}) AS VARCHAR({length}))"
        )) {
            *expr = cut;
            self.changed = true;
        }
        ControlFlow::Continue(())
    }
}

/// `FROM unnest(a) x`: PostgreSQL names the one column of a function returning a scalar
/// after the table alias (psql's `\d+` reads `'toast.' || x FROM unnest(reloptions) x`), and
/// DataFusion after the function; the alias gets that column name, `x(x)`.
struct ScalarFunctionAliases {
    changed: bool,
}

const SINGLE_COLUMN_FUNCTIONS: [&str; 3] = ["unnest", "generate_series", "generate_subscripts"];

impl VisitorMut for ScalarFunctionAliases {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        use datafusion::sql::sqlparser::ast::{TableAlias, TableAliasColumnDef};
        let name_column = |alias: &mut TableAlias| {
            alias.columns = vec![TableAliasColumnDef {
                name: alias.name.clone(),
                data_type: None,
            }];
        };
        match factor {
            TableFactor::UNNEST {
                alias: Some(alias),
                array_exprs,
                with_offset: false,
                with_ordinality: false,
                ..
            } if alias.columns.is_empty() && array_exprs.len() == 1 => {
                name_column(alias);
                self.changed = true;
            }
            TableFactor::Table {
                name,
                args: Some(args),
                alias: Some(alias),
                with_ordinality: false,
                ..
            } if alias.columns.is_empty()
                && SINGLE_COLUMN_FUNCTIONS
                    .iter()
                    .any(|function| is_named(name, function))
                && (!is_named(name, "unnest") || args.args.len() == 1) =>
            {
                name_column(alias);
                self.changed = true;
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// Puts each scalar subquery that is a whole select item in parentheses
/// (`(SELECT ...)` → `((SELECT ...))`, the same query): datafusion-postgres's parser replaces
/// such an item with NULL when it is correlated, and adds `LIMIT 1` when it is not, which
/// answers wrongly without a word; an item in parentheses is left alone.
struct ProtectSubqueryItems {
    changed: bool,
}

impl VisitorMut for ProtectSubqueryItems {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let SetExpr::Select(select) = query.body.as_mut() {
            for item in &mut select.projection {
                if let SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } = item
                {
                    if matches!(expr, Expr::Subquery(_)) {
                        let subquery = std::mem::replace(expr, Expr::Value(Value::Null.into()));
                        *expr = Expr::Nested(Box::new(subquery));
                        self.changed = true;
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// `ARRAY(SELECT e FROM ... [ORDER BY ...])`, PostgreSQL's array of a subquery's rows (psql's
/// `\du` lists each role's groups so), which DataFusion does not plan: it becomes
/// `coalesce((SELECT array_agg(e [ORDER BY ...]) FROM ...), make_array())`, the same array,
/// correlated or not (`{}` when there are no rows). Only a plain one-column SELECT is
/// rewritten; others are left for DataFusion to refuse.
struct ArraySubqueries {
    changed: bool,
}

impl ArraySubqueries {
    fn aggregated(query: &Query) -> Option<Expr> {
        let SetExpr::Select(select) = query.body.as_ref() else {
            return None;
        };
        let plain = select.distinct.is_none()
            && select.having.is_none()
            && matches!(&select.group_by, GroupByExpr::Expressions(by, _) if by.is_empty())
            && query.limit_clause.is_none()
            && query.fetch.is_none();
        let item = match select.projection.as_slice() {
            [SelectItem::UnnamedExpr(item) | SelectItem::ExprWithAlias { expr: item, .. }]
                if plain =>
            {
                item.clone()
            }
            _ => return None,
        };
        let order = match &query.order_by {
            None => String::new(),
            Some(order_by) => {
                // `ORDER BY 1` is the select item itself.
                let text = order_by.to_string();
                let positional = text.trim().eq_ignore_ascii_case("ORDER BY 1");
                if positional {
                    format!(" ORDER BY {item}")
                } else {
                    format!(" {text}")
                }
            }
        };
        let mut inner = query.clone();
        inner.order_by = None;
        if let SetExpr::Select(select) = inner.body.as_mut() {
            select.projection = vec![SelectItem::UnnamedExpr(parse_expr(&format!(
                "array_agg({item}{order})"
            ))?)];
        }
        parse_expr(&format!("coalesce(({inner}), make_array())"))
    }
}

impl VisitorMut for ArraySubqueries {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Some(aggregated) = array_subquery(expr).and_then(|query| Self::aggregated(query)) {
            *expr = aggregated;
            self.changed = true;
        }
        ControlFlow::Continue(())
    }
}

/// `ARRAY(SELECT e(x) FROM unnest(t.col) x)` where `t` is a catalog table of the outer query
/// (psql's `\d+` lists the toast table's options so: `'toast.' || x FROM
/// unnest(tc.reloptions) x`). DataFusion cannot unnest a column of the outer query, so the
/// unnest moves into a derived table of that catalog keyed by its oid, correlated by equality,
/// which DataFusion decorrelates: `FROM (SELECT oid AS __oid, unnest(col) AS x FROM
/// pg_catalog.pg_class) x WHERE x.__oid = t.oid`. Only catalogs whose rows have an oid qualify.
struct UnnestOfOuterArrays {
    changed: bool,
}

const OID_KEYED_CATALOGS: [&str; 10] = [
    "pg_class",
    "pg_type",
    "pg_proc",
    "pg_namespace",
    "pg_roles",
    "pg_authid",
    "pg_database",
    "pg_constraint",
    "pg_am",
    "pg_tablespace",
];

impl UnnestOfOuterArrays {
    /// The subquery rewritten, when it is `SELECT … FROM unnest(t.col) [x]` over a catalog
    /// table `t` of `outer` (alias → table name).
    fn rewritten(
        query: &Query,
        outer: &std::collections::HashMap<String, String>,
    ) -> Option<Query> {
        let SetExpr::Select(select) = query.body.as_ref() else {
            return None;
        };
        let [from] = select.from.as_slice() else {
            return None;
        };
        let TableFactor::Table {
            name,
            alias,
            args: Some(args),
            ..
        } = &from.relation
        else {
            return None;
        };
        let function = name.0.last()?.as_ident()?.value.to_ascii_lowercase();
        if function != "unnest" || !from.joins.is_empty() {
            return None;
        }
        let [FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::CompoundIdentifier(parts)))] =
            args.args.as_slice()
        else {
            return None;
        };
        let [table_alias, column] = parts.as_slice() else {
            return None;
        };
        let table = outer.get(&table_alias.value.to_ascii_lowercase())?;
        let alias_name = alias
            .as_ref()
            .map_or_else(|| "unnest".to_owned(), |a| a.name.to_string());
        let column_name = alias
            .as_ref()
            .and_then(|a| a.columns.first())
            .map_or_else(|| alias_name.clone(), |c| c.name.to_string());
        let items = select
            .projection
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let mut condition = format!("{alias_name}.__oid = {table_alias}.oid");
        if let Some(selection) = &select.selection {
            condition = format!("{condition} AND ({selection})");
        }
        let order = query
            .order_by
            .as_ref()
            .map_or(String::new(), |o| format!(" {o}"));
        let text = format!(
            "SELECT {items} FROM (SELECT oid AS __oid, unnest({column}) AS {column_name} \
             FROM {table}) {alias_name} WHERE {condition}{order}"
        );
        parse_query(&text)
    }
}

impl VisitorMut for UnnestOfOuterArrays {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        let SetExpr::Select(select) = query.body.as_mut() else {
            return ControlFlow::Continue(());
        };
        let mut outer = std::collections::HashMap::new();
        for from in &select.from {
            let factors =
                std::iter::once(&from.relation).chain(from.joins.iter().map(|j| &j.relation));
            for factor in factors {
                if let TableFactor::Table {
                    name,
                    alias,
                    args: None,
                    ..
                } = factor
                {
                    let Some(last) = name.0.last().and_then(|p| p.as_ident()) else {
                        continue;
                    };
                    let table = last.value.to_ascii_lowercase();
                    if OID_KEYED_CATALOGS.contains(&table.as_str()) {
                        let key = alias
                            .as_ref()
                            .map_or(table.clone(), |a| a.name.value.to_ascii_lowercase());
                        outer.insert(key, name.to_string());
                    }
                }
            }
        }
        if outer.is_empty() {
            return ControlFlow::Continue(());
        }
        let mut changed = false;
        for item in &mut select.projection {
            if let SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } = item {
                let _ = datafusion::sql::sqlparser::ast::visit_expressions_mut(expr, |e| {
                    if let Some(inner) = array_subquery(e) {
                        if let Some(rewritten) = Self::rewritten(inner, &outer) {
                            **inner = rewritten;
                            changed = true;
                        }
                    }
                    ControlFlow::<()>::Continue(())
                });
            }
        }
        self.changed |= changed;
        ControlFlow::Continue(())
    }
}

/// Whether `statement` holds an `ARRAY(subquery)`.
fn has_array_subquery(statement: &Statement) -> bool {
    struct Finder(bool);
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            if let Expr::Function(function) = expr {
                if is_array_subquery(function) {
                    self.0 = true;
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut finder = Finder(false);
    let _ = statement.visit(&mut finder);
    finder.0
}

/// psql's `\dp` lists column privileges (`pg_attribute.attacl`) and row-security policies
/// (`pg_policy`) through `ARRAY(subquery)` select items DataFusion cannot plan. semsql has
/// neither column privileges nor policies, so those lists are always empty: such an item
/// becomes the empty text PostgreSQL prints for an empty list.
struct NoColumnPrivilegesOrPolicies {
    changed: bool,
}

impl VisitorMut for NoColumnPrivilegesOrPolicies {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let SetExpr::Select(select) = query.body.as_mut() {
            for item in &mut select.projection {
                if let SelectItem::ExprWithAlias { expr, .. } = item {
                    let text = expr.to_string().to_ascii_lowercase();
                    let lists_nothing = text.contains("array(")
                        && (text.contains("attacl") || text.contains("pg_policy"));
                    if lists_nothing {
                        if let Some(empty) = parse_expr("CAST('' AS TEXT)") {
                            *expr = empty;
                            self.changed = true;
                        }
                    }
                }
            }
        }
        ControlFlow::Continue(())
    }
}

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

/// `'name'::regproc` → `'name'` (see below), and
/// `oid::regtype::text` → `format_type(oid, NULL)`: a `regtype` prints as its type's name,
/// which is what `format_type` gives; semsql keeps a `regtype` as the bare OID, which would
/// print as a number (pgcli's column list, psycopg's `TypeInfo`).
struct RegtypeText {
    changed: bool,
}

fn is_type_named(data_type: &DataType, wanted: &str) -> bool {
    match data_type {
        DataType::Custom(name, modifiers) if modifiers.is_empty() => name
            .0
            .last()
            .and_then(|part| part.as_ident())
            .is_some_and(|ident| ident.value.eq_ignore_ascii_case(wanted)),
        DataType::Text => wanted == "text",
        _ => false,
    }
}

impl VisitorMut for RegtypeText {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let Expr::Cast {
            expr: inner,
            data_type,
            ..
        } = expr
        else {
            return ControlFlow::Continue(());
        };
        // `'pg_catalog.array_in'::regproc`: the catalogs keep a `regproc` as the function's
        // name (`pg_type.typinput` is `array_in`), so the literal is that name (pgjdbc's type
        // cache compares them).
        if is_type_named(data_type, "regproc") {
            if let Expr::Value(value) = inner.as_ref() {
                if let Value::SingleQuotedString(name) = &value.value {
                    let name = name.strip_prefix("pg_catalog.").unwrap_or(name).to_owned();
                    *expr = Expr::Value(Value::SingleQuotedString(name).into());
                    self.changed = true;
                    return ControlFlow::Continue(());
                }
            }
        }
        if !is_type_named(data_type, "text") {
            return ControlFlow::Continue(());
        }
        let Expr::Cast {
            expr: oid,
            data_type: regtype,
            ..
        } = inner.as_ref()
        else {
            return ControlFlow::Continue(());
        };
        if !is_type_named(regtype, "regtype") {
            return ControlFlow::Continue(());
        }
        // A type's name (`'int4'::regtype`) is looked up first.
        let oid = match oid.as_ref() {
            Expr::Value(value) if matches!(value.value, Value::SingleQuotedString(_)) => {
                format!("to_regtype({oid})")
            }
            other => other.to_string(),
        };
        if let Some(formatted) = parse_expr(&format!("format_type({oid}, NULL)")) {
            *expr = formatted;
            self.changed = true;
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
    fn catalog_int2_arrays_are_read_as_arrays() {
        assert_eq!(
            rewrite("SELECT unnest(i.indkey) AS a, generate_subscripts(i.indkey, 1) AS o FROM pg_index i")
                .as_deref(),
            Some(
                "SELECT unnest(semsql_int2_list(i.indkey)) AS a, \
                 unnest(generate_series(1, CASE WHEN (1) = 1 \
                 THEN CAST(cardinality(semsql_int2_list(i.indkey)) AS BIGINT) ELSE 0 END)) AS o \
                 FROM pg_index i"
            )
        );
        // pgjdbc's getIndexInfo: an int2vector counts from 0, an array from 1.
        let rewritten = rewrite(
            "SELECT tmp.I_INDOPTION[tmp.ORDINAL_POSITION - 1], c.conkey[1] \
             FROM (SELECT i.indoption AS I_INDOPTION, 1 AS ORDINAL_POSITION FROM pg_index i) tmp, \
             pg_constraint c",
        )
        .unwrap();
        assert!(
            rewritten.contains("semsql_int2_list(tmp.I_INDOPTION)[(tmp.ORDINAL_POSITION - 1) + 1]")
                && rewritten.contains("semsql_int2_list(c.conkey)[1]"),
            "{rewritten}"
        );
        assert_eq!(
            rewrite("SELECT c.conname FROM pg_constraint c WHERE 2 = ANY(c.conkey)").as_deref(),
            Some(
                "SELECT c.conname FROM pg_constraint c \
                 WHERE (semsql_any_equal(semsql_int2_list(c.conkey), 2))"
            )
        );
    }

    #[test]
    fn array_subqueries_become_aggregates() {
        let rewritten =
            rewrite("SELECT s.a, ARRAY(SELECT t.x FROM t WHERE t.a = s.a ORDER BY 1) AS xs FROM s")
                .unwrap();
        assert!(
            rewritten.contains(
                "coalesce((SELECT array_agg(t.x ORDER BY t.x) FROM t WHERE t.a = s.a), make_array()) AS xs"
            ),
            "{rewritten}"
        );
        // Not a plain one-column SELECT: left for DataFusion to refuse.
        let grouped = rewrite("SELECT ARRAY(SELECT count(*) FROM t GROUP BY a) FROM s");
        assert!(
            !grouped.unwrap_or_default().contains("array_agg"),
            "a grouped subquery is not rewritten"
        );
    }

    #[test]
    fn like_escapes_are_respelled_for_backslash() {
        assert_eq!(
            rewrite("SELECT x LIKE $1 || '%' ESCAPE '/' FROM t").as_deref(),
            Some("SELECT x LIKE like_escape($1 || '%', '/') AS \"?column?\" FROM t")
        );
        assert_eq!(
            rewrite("SELECT 'a_b' LIKE 'a/_b' ESCAPE '/'").as_deref(),
            Some("SELECT 'a_b' LIKE 'a\\_b' AS \"?column?\"")
        );
    }

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
        // A cast of a cast is named after the outer type, a cast of a column after it.
        let casts = rewrite("SELECT 23::regtype::text, a::int8::text FROM t").unwrap();
        assert!(casts.contains(r#"AS "text""#), "{casts}");
        assert!(casts.contains(r#"AS "a""#), "{casts}");
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

    #[test]
    fn a_rewrite_keeps_every_parameter() {
        // Rewritten, with its parameters where they were.
        let rewritten = rewrite("SELECT $1 AS a, 5 AS b FROM t WHERE x = $2").unwrap();
        assert!(
            rewritten.contains("$1") && rewritten.contains("$2"),
            "{rewritten}"
        );
        assert_eq!(
            placeholders("SELECT $1, '$2', $1 -- $3"),
            placeholders("SELECT $1")
        );
        // \d+'s ARRAY subquery over an outer catalog table is decorrelated.
        let described = rewrite(
            "SELECT array_to_string(c.reloptions || array(select 'toast.' || x \
             from pg_catalog.unnest(tc.reloptions) x), ', ') FROM pg_catalog.pg_class c \
             LEFT JOIN pg_catalog.pg_class tc ON (c.reltoastrelid = tc.oid)",
        )
        .unwrap();
        assert!(
            described.contains("x.__oid = tc.oid") && described.contains("unnest(reloptions) AS x"),
            "{described}"
        );
    }
}
