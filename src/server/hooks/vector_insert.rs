//! `INSERT ... VALUES` into `vector` columns and `UPDATE ... SET col = value` of them: each value
//! there is read with
//! `vector_parse(value, n)`, so pgvector's text form (`'[1,2,3]'`), float arrays and
//! parameters all go in, and a wrong size says which sizes (`expected 3 dimensions, not 2`, as
//! pgvector) rather than DataFusion's "no valid cast exists".
//!
//! `INSERT ... SELECT` also gets its unnamed select items named after their target columns:
//! DataFusion names the casts it adds after their input, so `INSERT INTO t SELECT 1, 1` failed
//! with "Projections require unique expression names".
//!
//! The rewrite needs the target table's columns, which only a hook with the session has.

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    AssignmentTarget, Expr as SqlExpr, Function, FunctionArg, FunctionArgExpr,
    FunctionArgumentList, FunctionArguments, Ident, ObjectName, ObjectNamePart, SelectItem,
    SetExpr, Statement, TableFactor, TableObject, Value,
};
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::QueryHook;
use pgwire::api::results::{Response, Tag};
use pgwire::api::ClientInfo;
use pgwire::error::{PgWireError, PgWireResult};

use super::commands::affected_rows;
use crate::planner::vector_syntax::vector_size;

#[derive(Debug)]
pub struct VectorInsertHook;

/// `vector_parse(value [, n])` in SQL. A parameter's cast to `vector` (`$2::vector`) is
/// dropped: `vector_parse` reads the parameter's text itself, and the cast would have the
/// parameter taken for a `real[]` in PostgreSQL's `{...}` array form.
fn parse_call(value: SqlExpr, size: Option<i32>) -> SqlExpr {
    let value = match value {
        SqlExpr::Cast {
            expr, data_type, ..
        } if crate::server::parameters::is_vector_type(&data_type)
            && matches!(expr.as_ref(), SqlExpr::Value(v) if matches!(v.value, Value::Placeholder(_))) =>
        {
            *expr
        }
        other => other,
    };
    let mut args = vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(value))];
    if let Some(size) = size {
        args.push(FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::value(
            Value::Number(size.to_string(), false),
        ))));
    }
    SqlExpr::Function(Function {
        name: ObjectName(vec![ObjectNamePart::Identifier(Ident::new("vector_parse"))]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args,
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

/// Wraps the values an INSERT or UPDATE binds to vector columns; whether anything changed.
pub async fn rewrite_vector_values(ctx: &SessionContext, statement: &mut Statement) -> bool {
    match statement {
        Statement::Update(_) => rewrite_update(ctx, statement).await,
        _ => rewrite_insert(ctx, statement).await,
    }
}

async fn rewrite_update(ctx: &SessionContext, statement: &mut Statement) -> bool {
    let Statement::Update(update) = statement else {
        return false;
    };
    let TableFactor::Table { name, .. } = &update.table.relation else {
        return false;
    };
    let Ok(provider) = ctx.table_provider(name.to_string()).await else {
        return false;
    };
    let schema = provider.schema();
    let mut changed = false;
    for assignment in &mut update.assignments {
        let AssignmentTarget::ColumnName(column) = &assignment.target else {
            continue;
        };
        let Some(column) = column.0.last().and_then(|part| part.as_ident()) else {
            continue;
        };
        let size = schema
            .fields()
            .iter()
            .find(|field| field.name().eq_ignore_ascii_case(&column.value))
            .and_then(|field| vector_size(field.data_type()));
        if let Some(size) = size {
            let original = std::mem::replace(&mut assignment.value, SqlExpr::value(Value::Null));
            assignment.value = parse_call(original, size);
            changed = true;
        }
    }
    changed
}

async fn rewrite_insert(ctx: &SessionContext, statement: &mut Statement) -> bool {
    let Statement::Insert(insert) = statement else {
        return false;
    };
    let TableObject::TableName(table) = &insert.table else {
        return false;
    };
    let Ok(provider) = ctx.table_provider(table.to_string()).await else {
        return false;
    };
    let schema = provider.schema();
    let targets: Vec<String> = if insert.columns.is_empty() {
        schema.fields().iter().map(|f| f.name().clone()).collect()
    } else {
        insert
            .columns
            .iter()
            .map(|c| c.to_string().trim_matches('"').to_owned())
            .collect()
    };
    let named = name_select_items(insert.source.as_deref_mut(), &targets);
    let sizes: Vec<Option<Option<i32>>> = if insert.columns.is_empty() {
        schema
            .fields()
            .iter()
            .map(|field| vector_size(field.data_type()))
            .collect()
    } else {
        insert
            .columns
            .iter()
            .map(|column| {
                let name = column.to_string();
                schema
                    .fields()
                    .iter()
                    .find(|field| field.name().eq_ignore_ascii_case(name.trim_matches('"')))
                    .and_then(|field| vector_size(field.data_type()))
            })
            .collect()
    };
    if sizes.iter().all(Option::is_none) {
        return named;
    }
    let Some(SetExpr::Values(values)) = insert.source.as_mut().map(|query| query.body.as_mut())
    else {
        return named;
    };
    let mut changed = named;
    for row in &mut values.rows {
        for (value, size) in row.iter_mut().zip(&sizes) {
            let Some(size) = size else { continue };
            let original = std::mem::replace(value, SqlExpr::value(Value::Null));
            *value = parse_call(original, *size);
            changed = true;
        }
    }
    changed
}

/// Names each unnamed expression of `INSERT ... SELECT` after its target column (plain column
/// references keep their names); whether anything changed.
fn name_select_items(
    source: Option<&mut datafusion::sql::sqlparser::ast::Query>,
    targets: &[String],
) -> bool {
    let Some(SetExpr::Select(select)) = source.map(|query| query.body.as_mut()) else {
        return false;
    };
    if select.projection.len() != targets.len() {
        return false;
    }
    let mut changed = false;
    for (item, target) in select.projection.iter_mut().zip(targets) {
        let SelectItem::UnnamedExpr(expr) = item else {
            continue;
        };
        if matches!(
            expr,
            SqlExpr::Identifier(_) | SqlExpr::CompoundIdentifier(_)
        ) {
            continue;
        }
        *item = SelectItem::ExprWithAlias {
            expr: expr.clone(),
            alias: Ident::with_quote('"', target),
        };
        changed = true;
    }
    changed
}

/// The same rewrite over SQL text (for callers without hooks, such as the in-process test
/// runner): `None` when the text holds no INSERT into vector columns.
pub async fn rewrite_sql(ctx: &SessionContext, sql: &str) -> Option<String> {
    let dialect = datafusion::sql::sqlparser::dialect::PostgreSqlDialect {};
    let mut statements =
        datafusion::sql::sqlparser::parser::Parser::parse_sql(&dialect, sql).ok()?;
    let mut changed = false;
    for statement in &mut statements {
        changed |= rewrite_vector_values(ctx, statement).await;
    }
    changed.then(|| {
        statements
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(";\n")
    })
}

fn api_error(err: datafusion::error::DataFusionError) -> PgWireError {
    PgWireError::ApiError(Box::new(err))
}

#[async_trait]
impl QueryHook for VectorInsertHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let mut statement = statement.clone();
        if !rewrite_insert(session_context, &mut statement).await {
            return None;
        }
        let result = async {
            let frame = session_context
                .sql(&statement.to_string())
                .await
                .map_err(api_error)?;
            let batches = frame.collect().await.map_err(api_error)?;
            Ok(Response::Execution(
                Tag::new("INSERT")
                    .with_oid(0)
                    .with_rows(affected_rows(&batches)),
            ))
        };
        Some(result.await)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        session_context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        let mut statement = statement.clone();
        if !rewrite_vector_values(session_context, &mut statement).await {
            return None;
        }
        // Parameters typed as PostgreSQL types them (`$2::vector` is read as its text). The
        // types a client declared do not reach hooks: the context types each parameter.
        let plan =
            crate::server::parameters::plan_with_parameter_types(session_context, &statement, &[])
                .await
                .map_err(api_error);
        Some(plan)
    }

    async fn handle_extended_query(
        &self,
        _statement: &Statement,
        _logical_plan: &LogicalPlan,
        _params: &ParamValues,
        _session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        None
    }
}
