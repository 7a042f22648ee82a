//! Parameter types of a statement prepared with the extended protocol, decided as PostgreSQL
//! decides them: the type a client declares in Parse wins; a parameter without one takes the
//! type of an explicit cast on it (`$1::bigint`), else the type its context gives it
//! (`$1 + 1`, `WHERE id = $1`); one that nothing types (`SELECT $1`, `$1 || $2`) is `text`, as
//! PostgreSQL resolves an unknown-typed value.
//!
//! DataFusion plans placeholders with given types only through `PREPARE name(types) AS ...`,
//! and only for a prefix of the parameters, so the statement is planned inside a `PREPARE`
//! and the inner plan kept: first with the declared types, then, if some parameter is still
//! untyped (or the first plan could not infer one), with every type filled in.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;

use datafusion::common::DataFusionError;
use datafusion::logical_expr::{LogicalPlan, Statement as PlanStatement};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    DataType as SqlType, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, Statement,
    Value, Visit, Visitor,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use std::sync::Arc;

use bytes::Bytes;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::stmt::StoredStatement;
use pgwire::api::Type;

/// The SQL name of a declared parameter type that DataFusion can plan, or `None` for a type
/// it has no equivalent for (the parameter is then typed from its context).
fn sql_type_name(declared: &Type) -> Option<&'static str> {
    Some(match *declared {
        Type::BOOL => "boolean",
        Type::INT2 => "smallint",
        Type::INT4 => "integer",
        Type::INT8 => "bigint",
        Type::FLOAT4 => "real",
        Type::FLOAT8 => "double precision",
        Type::NUMERIC => "numeric",
        // uuid and json values are decoded as their text.
        Type::TEXT
        | Type::VARCHAR
        | Type::BPCHAR
        | Type::NAME
        | Type::UUID
        | Type::JSON
        | Type::JSONB => "text",
        Type::BYTEA => "bytea",
        Type::DATE => "date",
        Type::TIME => "time",
        Type::TIMESTAMP => "timestamp",
        Type::TIMESTAMPTZ => "timestamptz",
        Type::INTERVAL => "interval",
        Type::BOOL_ARRAY => "boolean[]",
        Type::INT2_ARRAY => "smallint[]",
        Type::INT4_ARRAY => "integer[]",
        Type::INT8_ARRAY => "bigint[]",
        Type::FLOAT4_ARRAY => "real[]",
        Type::FLOAT8_ARRAY => "double precision[]",
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY => "text[]",
        _ => return None,
    })
}

fn sql_type(name: &str) -> Option<SqlType> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(name)
        .ok()?
        .parse_data_type()
        .ok()
}

/// The SQL type for an Arrow type DataFusion inferred, so a re-plan keeps it.
fn sql_type_of(data_type: &datafusion::arrow::datatypes::DataType) -> Option<SqlType> {
    use datafusion::arrow::datatypes::DataType as Arrow;
    let name = match data_type {
        Arrow::Boolean => "boolean",
        Arrow::Int8 | Arrow::Int16 | Arrow::UInt8 => "smallint",
        Arrow::Int32 | Arrow::UInt16 => "integer",
        Arrow::Int64 | Arrow::UInt32 | Arrow::UInt64 => "bigint",
        Arrow::Float16 | Arrow::Float32 => "real",
        Arrow::Float64 => "double precision",
        Arrow::Decimal128(precision, scale) | Arrow::Decimal256(precision, scale) => {
            return sql_type(&format!("numeric({precision}, {scale})"))
        }
        Arrow::Utf8 | Arrow::LargeUtf8 | Arrow::Utf8View => "text",
        Arrow::Binary | Arrow::LargeBinary | Arrow::BinaryView => "bytea",
        Arrow::Date32 | Arrow::Date64 => "date",
        Arrow::Timestamp(_, None) => "timestamp",
        Arrow::Timestamp(_, Some(_)) => "timestamptz",
        Arrow::Time32(_) | Arrow::Time64(_) => "time",
        Arrow::Interval(_) => "interval",
        Arrow::List(element) | Arrow::LargeList(element) => {
            return array_of(sql_type_of(element.data_type())?)
        }
        _ => return None,
    };
    sql_type(name)
}

/// The SQL array type of elements of type `element` (`text` → `text[]`).
fn array_of(element: SqlType) -> Option<SqlType> {
    match element {
        SqlType::Array(_) => Some(element),
        element => sql_type(&format!("{element}[]")),
    }
}

/// Plans `statement` with its parameters typed as described in the module docs.
pub async fn plan_with_parameter_types(
    ctx: &SessionContext,
    statement: &Statement,
    declared: &[Option<Type>],
) -> Result<LogicalPlan, DataFusionError> {
    let Placeholders {
        highest: count,
        casts,
        arrays,
    } = placeholders(statement);
    let declared: Vec<Option<SqlType>> = (1..=count.max(declared.len()))
        .map(|position| {
            declared
                .get(position - 1)
                .cloned()
                .flatten()
                .and_then(|ty| sql_type_name(&ty))
                .and_then(sql_type)
                .or_else(|| casts.get(&position).cloned().flatten())
        })
        .collect();
    let prefix: Vec<SqlType> = declared.iter().map_while(Clone::clone).collect();
    // A type known past the first untyped parameter is not in the first plan.
    let all_known_used = prefix.len() == declared.iter().flatten().count();
    let first = plan_prepared(ctx, statement, prefix.clone()).await;
    let first_inferred = match &first {
        Ok(plan) => plan.get_parameter_types()?,
        Err(_) => Default::default(),
    };
    let first_typed_all = first_inferred.values().all(Option::is_some);
    // DataFusion infers no placeholder's type from a function's arguments; the membership
    // tests compat writes for `x = ANY(a)` are planned once more as the equality each element
    // is tested with, which it does infer.
    let inferred = match membership_as_equality(statement) {
        Some(probe) => match plan_prepared(ctx, &probe, prefix).await {
            Ok(plan) => {
                let mut from_probe = plan.get_parameter_types()?;
                for (name, ty) in first_inferred {
                    if ty.is_some() {
                        from_probe.insert(name, ty);
                    }
                }
                from_probe
            }
            Err(_) => first_inferred,
        },
        None => first_inferred,
    };
    // DataFusion types `x = ANY($1)` as if `$1` were one value, not an array of them.
    let untyped_arrays = arrays
        .iter()
        .any(|position| declared.get(position - 1).cloned().flatten().is_none());
    if count == 0 || (first.is_ok() && all_known_used && !untyped_arrays && first_typed_all) {
        return first;
    }
    let text = sql_type("text").expect("text is a type");
    let mut all = Vec::with_capacity(count);
    for position in 1..=count {
        let array = arrays.contains(&position);
        let known = declared.get(position - 1).cloned().flatten().or_else(|| {
            let element = inferred
                .get(&format!("${position}"))
                .cloned()
                .flatten()
                .and_then(|ty| sql_type_of(&ty))
                .or_else(|| array.then(|| text.clone()))?;
            if array {
                array_of(element)
            } else {
                Some(element)
            }
        });
        match known {
            Some(ty) => all.push(ty),
            // Cast to a type only our rules plan: typed by them, not here.
            None if casts.contains_key(&position) => return first,
            None => all.push(text.clone()),
        }
    }
    match plan_prepared(ctx, statement, all).await {
        Ok(plan) => Ok(plan),
        // The first error says what the user wrote wrong; the second only what our guess broke.
        Err(second) => first.map_err(|_| second),
    }
}

/// Whether `function` is one of the membership tests `x = ANY(a)` is written as, whose
/// arguments are `(a, x)`.
fn is_membership_test(function: &datafusion::sql::sqlparser::ast::Function) -> bool {
    let name = function.name.to_string();
    [
        "array_contains",
        "array_has",
        crate::engine::any_equal::ANY_EQUAL,
    ]
    .iter()
    .any(|wanted| name.eq_ignore_ascii_case(wanted))
}

/// `statement` with each membership test `f(a, x)` that has a placeholder for `a` or `x`
/// written as an equality DataFusion infers types from: `x = $n` (the parameter then has the
/// element's type; the caller makes it an array) or `$n = a[1]`; `None` when there is none.
fn membership_as_equality(statement: &Statement) -> Option<Statement> {
    struct Equalities {
        changed: bool,
    }
    impl datafusion::sql::sqlparser::ast::VisitorMut for Equalities {
        type Break = ();
        fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
            let Expr::Function(function) = expr else {
                return ControlFlow::Continue(());
            };
            if !is_membership_test(function) {
                return ControlFlow::Continue(());
            }
            let FunctionArguments::List(list) = &function.args else {
                return ControlFlow::Continue(());
            };
            let [FunctionArg::Unnamed(FunctionArgExpr::Expr(array)), FunctionArg::Unnamed(FunctionArgExpr::Expr(value))] =
                list.args.as_slice()
            else {
                return ControlFlow::Continue(());
            };
            let equality = if position(array).is_some() {
                format!("({value}) = {array}")
            } else if position(value).is_some() {
                format!("{value} = ({array})[1]")
            } else {
                return ControlFlow::Continue(());
            };
            if let Ok(equality) = Parser::new(&PostgreSqlDialect {})
                .try_with_sql(&equality)
                .and_then(|mut parser| parser.parse_expr())
            {
                *expr = Expr::Nested(Box::new(equality));
                self.changed = true;
            }
            ControlFlow::Continue(())
        }
    }
    let mut probe = statement.clone();
    let mut equalities = Equalities { changed: false };
    let _ = datafusion::sql::sqlparser::ast::VisitMut::visit(&mut probe, &mut equalities);
    equalities.changed.then_some(probe)
}

/// The inner plan of `PREPARE p(types) AS statement`.
async fn plan_prepared(
    ctx: &SessionContext,
    statement: &Statement,
    data_types: Vec<SqlType>,
) -> Result<LogicalPlan, DataFusionError> {
    let prepare = Statement::Prepare {
        name: Ident::new("semsql_parse"),
        data_types,
        statement: Box::new(statement.clone()),
    };
    let plan = ctx
        .state()
        .statement_to_plan(DFStatement::Statement(Box::new(prepare)))
        .await?;
    match plan {
        LogicalPlan::Statement(PlanStatement::Prepare(prepared)) => {
            Ok(prepared.input.as_ref().clone())
        }
        other => Ok(other),
    }
}

/// Whether a SQL type is pgvector's `vector` (with or without a dimension count).
pub fn is_vector_type(data_type: &SqlType) -> bool {
    matches!(data_type, SqlType::Custom(name, _) if name.to_string().eq_ignore_ascii_case("vector"))
}

/// The parameters the statement casts to `oid` or `oid[]` (`$1::oid[]`), with those types.
/// DataFusion plans them as `int4` and `int4[]`, and PostgreSQL describes them as `oid` and
/// `oid[]`: asyncpg decodes `oid[]` with a codec of its own but has to look `int4[]` up with a
/// query of its own, whose `$1::oid[]` it would then have to look up again, without end.
pub fn oid_parameters(statement: &Statement) -> Vec<(usize, Type)> {
    cast_parameters(statement, |data_type| {
        match data_type.to_string().to_ascii_lowercase().as_str() {
            "oid" | "pg_catalog.oid" => Some(Type::OID),
            "oid[]" | "pg_catalog.oid[]" => Some(Type::OID_ARRAY),
            _ => None,
        }
    })
}

/// The positions (from 1) of the parameters the statement casts to `vector` (`$1::vector`),
/// which are described to clients as pgvector's `vector`, as PostgreSQL with pgvector does.
pub fn vector_parameters(statement: &Statement) -> Vec<usize> {
    cast_parameters(statement, |data_type| {
        is_vector_type(data_type).then_some(())
    })
    .into_iter()
    .map(|(at, ())| at)
    .collect()
}

/// Each parameter the statement casts (`$n::type`) to a type `described` knows, with what it
/// says of that type.
fn cast_parameters<T>(
    statement: &Statement,
    described: impl Fn(&SqlType) -> Option<T>,
) -> Vec<(usize, T)> {
    struct Found<T, F> {
        described: F,
        found: Vec<(usize, T)>,
    }
    impl<T, F: Fn(&SqlType) -> Option<T>> Visitor for Found<T, F> {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            if let Expr::Cast {
                expr, data_type, ..
            } = expr
            {
                if let Some(at) = position(expr) {
                    if let Some(described) = (self.described)(data_type) {
                        self.found.push((at, described));
                    }
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut found = Found {
        described,
        found: Vec::new(),
    };
    let _ = statement.visit(&mut found);
    found.found
}

/// The `$n` a placeholder expression stands for.
pub(crate) fn position(expr: &Expr) -> Option<usize> {
    match expr {
        Expr::Value(value) => match &value.value {
            Value::Placeholder(name) => name.strip_prefix('$')?.parse().ok(),
            _ => None,
        },
        Expr::Nested(inner) => position(inner),
        _ => None,
    }
}

/// What the statement's text says of its placeholders (see [`placeholders`]).
struct Placeholders {
    /// The highest `$n`.
    highest: usize,
    /// The type of each one written with an explicit cast.
    casts: HashMap<usize, Option<SqlType>>,
    /// Those compared with `= ANY($n)` or `<> ALL($n)`: arrays of the compared value's type.
    arrays: HashSet<usize>,
}

/// What the statement's text says of its placeholders: the highest `$n`; the type of each one
/// written with an explicit cast (`$1::bigint`, `CAST($2 AS date)`), which PostgreSQL takes as
/// the parameter's type (a cast to `vector` types it `text`, our rules cast it; casts to other
/// types DataFusion plans only through our own rules are left out); and those that are the
/// array of `= ANY(...)`/`<> ALL(...)`.
fn placeholders(statement: &Statement) -> Placeholders {
    type Found = Placeholders;
    impl Visitor for Found {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            if let Some(at) = position(expr) {
                self.highest = self.highest.max(at);
            }
            if let Expr::Cast {
                expr, data_type, ..
            } = expr
            {
                if let Some(at) = position(expr) {
                    let planned = match data_type {
                        // `$1::vector` is read as its text and cast by our rules: typed as
                        // `vector`, DataFusion would take it for a `real[]` in `{...}` form.
                        _ if is_vector_type(data_type) => sql_type("text"),
                        SqlType::Custom(..) => None,
                        other => Some(other.clone()),
                    };
                    self.casts.entry(at).or_insert(planned);
                }
            }
            if let Expr::AnyOp { right, .. } | Expr::AllOp { right, .. } = expr {
                if let Some(at) = position(right) {
                    self.arrays.insert(at);
                }
            }
            // datafusion-postgres's parser writes `x = ANY(a)` as `array_contains(a, x)`, and
            // compat as `semsql_any_equal(a, x)`.
            if let Expr::Function(function) = expr {
                if is_membership_test(function) {
                    if let FunctionArguments::List(list) = &function.args {
                        if let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(array))) =
                            list.args.first()
                        {
                            if let Some(at) = position(array) {
                                self.arrays.insert(at);
                            }
                        }
                    }
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut found = Found {
        highest: 0,
        casts: HashMap::new(),
        arrays: HashSet::new(),
    };
    let _ = statement.visit(&mut found);
    found
}

/// The portal with its `uuid`, `json` and `jsonb` parameters declared `text` and sent as text
/// (their binary forms turned into their text), or `None` when it has none. semsql keeps these
/// types as text, and the parameter decoder reads a value declared `uuid` or `json` only as
/// one of those types, so psycopg's `execute("... %s", (uuid4(),))` failed to bind.
pub fn as_text_parameters<S: Clone + Default>(portal: &Portal<S>) -> Option<Portal<S>> {
    let declared = &portal.statement.parameter_types;
    let textual = |ty: &Option<Type>| matches!(ty, Some(ty) if *ty == Type::UUID || *ty == Type::JSON || *ty == Type::JSONB);
    if !declared.iter().any(textual) {
        return None;
    }
    let mut parameters = portal.parameters.clone();
    let mut formats = Vec::with_capacity(parameters.len());
    for (index, value) in parameters.iter_mut().enumerate() {
        let binary = portal.parameter_format.is_binary(index);
        let ty = declared.get(index).cloned().flatten();
        if binary && textual(&ty) {
            if let Some(bytes) = value.as_ref() {
                *value = Some(Bytes::from(binary_as_text(ty.as_ref(), bytes)?));
            }
            formats.push(0);
        } else {
            formats.push(i16::from(binary));
        }
    }
    let types = declared
        .iter()
        .map(|ty| {
            if textual(ty) {
                Some(Type::TEXT)
            } else {
                ty.clone()
            }
        })
        .collect();
    // `Portal` is non-exhaustive: made from its default, then filled in.
    let mut text_typed = Portal::default();
    text_typed.name = portal.name.clone();
    text_typed.statement = Arc::new(StoredStatement::new(
        portal.statement.id.clone(),
        portal.statement.statement.clone(),
        types,
    ));
    text_typed.parameter_format = Format::Individual(formats);
    text_typed.parameters = parameters;
    text_typed.result_column_format = portal.result_column_format.clone();
    text_typed.state = portal.state.clone();
    Some(text_typed)
}

/// A binary `uuid`, `json` or `jsonb` value as its text; `None` when it is malformed (the
/// portal is then left as it was, and the decoder reports the error).
fn binary_as_text(ty: Option<&Type>, bytes: &[u8]) -> Option<Vec<u8>> {
    match ty {
        Some(ty) if *ty == Type::UUID => {
            let bytes: [u8; 16] = bytes.try_into().ok()?;
            Some(
                uuid::Uuid::from_bytes(bytes)
                    .hyphenated()
                    .to_string()
                    .into_bytes(),
            )
        }
        // jsonb's binary form is a version byte (1) and the text.
        Some(ty) if *ty == Type::JSONB => match bytes.split_first() {
            Some((1, text)) => Some(text.to_vec()),
            _ => None,
        },
        _ => Some(bytes.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::DataType;

    fn parse(sql: &str) -> Statement {
        Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0)
    }

    async fn types(sql: &str, declared: &[Option<Type>]) -> Vec<Option<DataType>> {
        let ctx = SessionContext::new();
        ctx.sql("CREATE TABLE t (id INT, name TEXT)").await.unwrap();
        let plan = plan_with_parameter_types(&ctx, &parse(sql), declared)
            .await
            .unwrap();
        let mut found: Vec<_> = plan.get_parameter_types().unwrap().into_iter().collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found.into_iter().map(|(_, ty)| ty).collect()
    }

    #[tokio::test]
    async fn declared_types_win() {
        assert_eq!(
            types("SELECT $1", &[Some(Type::INT2)]).await,
            [Some(DataType::Int16)]
        );
        assert_eq!(
            types("SELECT $1, $2", &[Some(Type::TIMESTAMP), Some(Type::BOOL)]).await,
            [
                Some(DataType::Timestamp(
                    datafusion::arrow::datatypes::TimeUnit::Nanosecond,
                    None
                )),
                Some(DataType::Boolean)
            ]
        );
    }

    #[tokio::test]
    async fn context_then_text() {
        assert_eq!(
            types("SELECT $1 || $2", &[]).await,
            [Some(DataType::Utf8View), Some(DataType::Utf8View)]
        );
        assert_eq!(
            types("SELECT $1", &[None]).await,
            [Some(DataType::Utf8View)]
        );
        assert_eq!(
            types("SELECT name FROM t WHERE id = $1 AND name = $2", &[]).await,
            [Some(DataType::Int32), Some(DataType::Utf8View)]
        );
        assert_eq!(
            types("SELECT $1::bigint * 2, CAST($2 AS date)", &[]).await,
            [Some(DataType::Int64), Some(DataType::Date32)]
        );
        // An unknown declared type leaves the parameter to its context.
        assert_eq!(
            types("SELECT * FROM t WHERE id = $1", &[Some(Type::UNKNOWN)]).await,
            [Some(DataType::Int32)]
        );
    }

    #[test]
    fn binary_uuid_and_jsonb_values_become_their_text() {
        let uuid = [
            0x12, 0x34, 0x56, 0x78, 0x12, 0x34, 0x56, 0x78, 0x12, 0x34, 0x56, 0x78, 0x12, 0x34,
            0x56, 0x78,
        ];
        assert_eq!(
            binary_as_text(Some(&Type::UUID), &uuid).unwrap(),
            b"12345678-1234-5678-1234-567812345678"
        );
        assert_eq!(binary_as_text(Some(&Type::UUID), &uuid[..3]), None);
        assert_eq!(
            binary_as_text(Some(&Type::JSONB), b"\x01{}").unwrap(),
            b"{}"
        );
        assert_eq!(binary_as_text(Some(&Type::JSONB), b"\x02{}"), None);
        assert_eq!(binary_as_text(Some(&Type::JSON), b"[1]").unwrap(), b"[1]");
    }
}
