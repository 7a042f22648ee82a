//! `CREATE INDEX ... USING hnsw` and `DROP INDEX`, with pgvector's syntax:
//!
//! ```sql
//! CREATE INDEX items_embedding_idx ON items USING hnsw (embedding vector_cosine_ops)
//!     WITH (m = 16, ef_construction = 64);
//! DROP INDEX items_embedding_idx;
//! ```
//!
//! Only HNSW indexes on `vector(n)` columns exist; any other index is refused with 0A000
//! rather than accepted and ignored, so nobody believes a B-tree speeds up their query.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::Schema;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, CreateIndex, Expr, Ident, IndexType, ObjectName, ObjectType, Statement, Value,
};
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::QueryHook;
use pgwire::api::results::{Response, Tag};
use pgwire::api::ClientInfo;
use pgwire::error::PgWireResult;

use super::placeholder_plan;
use crate::engine::catalog::{DurableCatalog, DurableSchema};
use crate::engine::storage::IndexEntry;
use crate::engine::CATALOG;
use crate::error::{user_error, SemsqlError};
use crate::vector::index::metric_of;

#[derive(Debug)]
pub struct IndexHook;

/// An identifier as PostgreSQL folds it: unquoted names are lower case.
fn fold(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

/// `schema.name` or `name` → (schema if given, name).
fn split_name(name: &ObjectName) -> Result<(Option<String>, String), SemsqlError> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|part| part.as_ident().map(fold))
        .collect::<Option<_>>()
        .ok_or_else(|| SemsqlError::NotSupported(format!("unsupported name {name}")))?;
    match parts.as_slice() {
        [name] => Ok((None, name.clone())),
        [schema, name] => Ok((Some(schema.clone()), name.clone())),
        [_, schema, name] => Ok((Some(schema.clone()), name.clone())),
        _ => Err(SemsqlError::NotSupported(format!(
            "improper qualified name {name}"
        ))),
    }
}

fn schema_of(
    ctx: &SessionContext,
    schema: Option<String>,
) -> Result<Arc<dyn datafusion::catalog::SchemaProvider>, SemsqlError> {
    let name = schema.unwrap_or_else(|| {
        ctx.state()
            .config()
            .options()
            .catalog
            .default_schema
            .clone()
    });
    let catalog = ctx
        .catalog(CATALOG)
        .ok_or_else(|| SemsqlError::SchemaNotFound(name.clone()))?;
    if catalog.downcast_ref::<DurableCatalog>().is_none() {
        return Err(SemsqlError::NotSupported(
            "indexes need the durable catalog".into(),
        ));
    }
    catalog
        .schema(&name)
        .ok_or(SemsqlError::SchemaNotFound(name))
}

fn durable(
    schema: &Arc<dyn datafusion::catalog::SchemaProvider>,
) -> Result<&DurableSchema, SemsqlError> {
    schema.downcast_ref::<DurableSchema>().ok_or_else(|| {
        SemsqlError::NotSupported("indexes are only supported on managed tables".into())
    })
}

/// A whole number from `WITH (name = value)`, within `range`.
fn whole_number(
    name: &str,
    value: &Expr,
    range: std::ops::RangeInclusive<usize>,
) -> Result<usize, SemsqlError> {
    let number = match value {
        Expr::Value(value) => match &value.value {
            Value::Number(text, _) => text.parse::<usize>().ok(),
            Value::SingleQuotedString(text) => text.trim().parse::<usize>().ok(),
            _ => None,
        },
        _ => None,
    };
    match number {
        Some(n) if range.contains(&n) => Ok(n),
        _ => Err(SemsqlError::InvalidParameter(format!(
            "value {value} for \"{name}\" is out of range or not a whole number: it must be \
             from {} to {}",
            range.start(),
            range.end()
        ))),
    }
}

/// The index's name and definition, checked as pgvector checks them.
fn definition(create: &CreateIndex) -> Result<(Option<String>, String, IndexEntry), SemsqlError> {
    let method = match &create.using {
        Some(IndexType::Custom(name)) => fold(name),
        Some(other) => other.to_string().to_lowercase(),
        None => "btree".to_owned(),
    };
    if method != "hnsw" {
        return Err(SemsqlError::NotSupported(format!(
            "index access method \"{method}\" is not supported: semsql has HNSW indexes on \
             vector columns only (CREATE INDEX ... USING hnsw (column vector_l2_ops))"
        )));
    }
    if create.unique || create.predicate.is_some() || !create.include.is_empty() {
        return Err(SemsqlError::NotSupported(
            "UNIQUE, partial (WHERE) and INCLUDE hnsw indexes are not supported".into(),
        ));
    }
    let [column] = create.columns.as_slice() else {
        return Err(SemsqlError::NotSupported(
            "an hnsw index is on exactly one column".into(),
        ));
    };
    let Expr::Identifier(column_name) = &column.column.expr else {
        return Err(SemsqlError::NotSupported(format!(
            "an hnsw index is on a column, not the expression {}",
            column.column.expr
        )));
    };
    let operator_class = match &column.operator_class {
        Some(name) => name.to_string().to_lowercase(),
        None => "vector_l2_ops".to_owned(),
    };
    if metric_of(&operator_class).is_none() {
        return Err(SemsqlError::NotSupported(format!(
            "operator class \"{operator_class}\" does not exist for access method \"hnsw\" \
             (semsql has vector_l2_ops, vector_cosine_ops and vector_ip_ops)"
        )));
    }
    let (mut m, mut ef_construction) = (16, 64);
    for option in &create.with {
        let Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } = option
        else {
            return Err(SemsqlError::InvalidParameter(format!(
                "unrecognized parameter {option}"
            )));
        };
        let name = match left.as_ref() {
            Expr::Identifier(ident) => fold(ident),
            other => other.to_string(),
        };
        match name.as_str() {
            "m" => m = whole_number("m", right, 2..=100)?,
            "ef_construction" => {
                ef_construction = whole_number("ef_construction", right, 4..=1000)?
            }
            _ => {
                return Err(SemsqlError::InvalidParameter(format!(
                    "unrecognized parameter \"{name}\" (hnsw takes m and ef_construction)"
                )))
            }
        }
    }
    if ef_construction < 2 * m {
        return Err(SemsqlError::InvalidParameter(
            "ef_construction must be greater than or equal to 2 * m".into(),
        ));
    }
    let (schema, table) = split_name(&create.table_name)?;
    let column = fold(column_name);
    let name = match &create.name {
        Some(name) => split_name(name)?.1,
        None => format!("{table}_{column}_idx"),
    };
    Ok((
        schema,
        name,
        IndexEntry {
            table,
            column,
            operator_class,
            m,
            ef_construction,
            file: format!("{}.hnsw", uuid::Uuid::new_v4().simple()),
        },
    ))
}

async fn create_index(ctx: &SessionContext, create: &CreateIndex) -> Result<Response, SemsqlError> {
    let (schema, name, entry) = definition(create)?;
    let schema = schema_of(ctx, schema)?;
    durable(&schema)?
        .create_index(&name, entry, create.if_not_exists)
        .await?;
    Ok(Response::Execution(Tag::new("CREATE INDEX")))
}

/// Runs one `CREATE INDEX` statement given as text (the demo's).
pub async fn create_index_from_sql(ctx: &SessionContext, sql: &str) -> Result<(), SemsqlError> {
    let statements = datafusion::sql::sqlparser::parser::Parser::parse_sql(
        &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
        sql,
    )
    .map_err(|err| SemsqlError::Config(format!("{sql}: {err}")))?;
    match statements.as_slice() {
        [Statement::CreateIndex(create)] => create_index(ctx, create).await.map(|_| ()),
        _ => Err(SemsqlError::Config(format!("not one CREATE INDEX: {sql}"))),
    }
}

fn drop_indexes(
    ctx: &SessionContext,
    names: &[ObjectName],
    if_exists: bool,
) -> Result<Response, SemsqlError> {
    for name in names {
        let (schema, index) = split_name(name)?;
        let schema = schema_of(ctx, schema)?;
        if !durable(&schema)?.drop_index(&index)? && !if_exists {
            return Err(SemsqlError::IndexNotFound(index));
        }
    }
    Ok(Response::Execution(Tag::new("DROP INDEX")))
}

async fn run(statement: &Statement, ctx: &SessionContext) -> Option<PgWireResult<Response>> {
    let result = match statement {
        Statement::CreateIndex(create) => create_index(ctx, create).await,
        Statement::Drop {
            object_type: ObjectType::Index,
            names,
            if_exists,
            ..
        } => drop_indexes(ctx, names, *if_exists),
        _ => return None,
    };
    Some(result.map_err(user_error))
}

fn is_ours(statement: &Statement) -> bool {
    matches!(
        statement,
        Statement::CreateIndex(_)
            | Statement::Drop {
                object_type: ObjectType::Index,
                ..
            }
    )
}

#[async_trait]
impl QueryHook for IndexHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        run(statement, session_context).await
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        is_ours(statement).then(|| placeholder_plan(Schema::empty()))
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _logical_plan: &LogicalPlan,
        _params: &ParamValues,
        session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        run(statement, session_context).await
    }
}
