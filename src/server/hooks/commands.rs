//! Statements that answer with a command tag rather than rows (`UPDATE 3`, `CREATE TABLE`,
//! `DROP TABLE`, ...): psql and drivers read the affected-row count from the tag, while
//! DataFusion returns it as a `count` column or an empty result. Views are also recorded in
//! the durable catalog here, once created.

use async_trait::async_trait;
use datafusion::arrow::array::{Array, UInt64Array};
use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ParamValues;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    ColumnOption, ObjectType, Reset, ResetStatement, SchemaName, Statement,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::QueryHook;
use pgwire::api::results::{Response, Tag};
use pgwire::api::ClientInfo;
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::response::NoticeResponse;
use pgwire::messages::PgWireBackendMessage;

use super::access::relation_of;
use super::placeholder_plan;
use crate::access::{caller_of, Object};
use crate::engine::{Engine, StartingOptions};
use crate::server::handler::STATEMENT_TIMEOUT_MS;

#[derive(Debug)]
pub struct CommandTagHook;

/// The tag PostgreSQL answers `statement` with, and whether it carries a row count.
fn tag_of(statement: &Statement) -> Option<(&'static str, bool)> {
    let tag = match statement {
        Statement::Update(_) => ("UPDATE", true),
        Statement::Delete(_) => ("DELETE", true),
        Statement::CreateTable(create) if create.query.is_some() => ("SELECT", true),
        Statement::CreateTable(_) => ("CREATE TABLE", false),
        Statement::CreateSchema { .. } => ("CREATE SCHEMA", false),
        Statement::CreateView(_) => ("CREATE VIEW", false),
        Statement::Truncate(_) => ("TRUNCATE TABLE", false),
        Statement::Reset(_) => ("RESET", false),
        Statement::Drop { object_type, .. } => match object_type {
            ObjectType::Table => ("DROP TABLE", false),
            ObjectType::View => ("DROP VIEW", false),
            ObjectType::Schema => ("DROP SCHEMA", false),
            _ => return None,
        },
        _ => return None,
    };
    Some(tag)
}

/// PostgreSQL's NOTICE for each object a `DROP ... IF EXISTS` finds missing
/// (`table "t" does not exist, skipping`), so such a drop is never silently a no-op.
async fn notice_missing_drops(
    statement: &Statement,
    ctx: &SessionContext,
    client: &mut dyn HookClient,
) -> PgWireResult<()> {
    let Statement::Drop {
        object_type,
        if_exists: true,
        names,
        ..
    } = statement
    else {
        return Ok(());
    };
    let kind = match object_type {
        ObjectType::Table => "table",
        ObjectType::View => "view",
        ObjectType::Schema => "schema",
        _ => return Ok(()),
    };
    for name in names {
        let exists = match object_type {
            ObjectType::Schema => ctx
                .catalog(crate::engine::CATALOG)
                .and_then(|catalog| {
                    catalog.schema(&name.to_string().trim_matches('"').to_lowercase())
                })
                .is_some(),
            _ => ctx.table_exist(name.to_string().as_str()).unwrap_or(true),
        };
        if exists {
            continue;
        }
        let bare = name
            .0
            .last()
            .and_then(|part| part.as_ident())
            .map_or_else(|| name.to_string(), |ident| ident.value.clone());
        let notice = ErrorInfo::new(
            "NOTICE".to_owned(),
            "00000".to_owned(),
            format!("{kind} \"{bare}\" does not exist, skipping"),
        );
        client
            .send_message(PgWireBackendMessage::NoticeResponse(NoticeResponse::from(
                notice,
            )))
            .await?;
    }
    Ok(())
}

/// `DROP TABLE a, b` as one statement per object, since DataFusion drops one at a time.
fn split_drop(statement: &Statement) -> Vec<Statement> {
    match statement {
        Statement::Drop { names, .. } if names.len() > 1 => names
            .iter()
            .map(|name| {
                let mut single = statement.clone();
                if let Statement::Drop { names, .. } = &mut single {
                    *names = vec![name.clone()];
                }
                single
            })
            .collect(),
        _ => vec![statement.clone()],
    }
}

pub(super) fn affected_rows(batches: &[RecordBatch]) -> usize {
    batches
        .iter()
        .filter_map(|batch| batch.column_by_name("count"))
        .filter_map(|column| column.as_any().downcast_ref::<UInt64Array>().cloned())
        .flat_map(|counts| (0..counts.len()).map(move |i| counts.value(i) as usize))
        .sum()
}

fn api_error(err: DataFusionError) -> PgWireError {
    PgWireError::ApiError(Box::new(err))
}

/// `CREATE TABLE t (x int NOT NULL, ...) AS query` (DataFusion's form; PostgreSQL's takes
/// column names only) as the CREATE TABLE without its query, then `INSERT INTO t query`: a
/// table made from a query takes every column as nullable (as PostgreSQL's CREATE TABLE AS
/// makes them), which would drop the declared NOT NULL without a word. `None` for any other
/// statement.
fn create_then_insert(statement: &Statement) -> Option<(Statement, Statement)> {
    let Statement::CreateTable(create) = statement else {
        return None;
    };
    let query = create.query.as_ref()?;
    let declares_not_null = create.columns.iter().any(|column| {
        column
            .options
            .iter()
            .any(|option| matches!(option.option, ColumnOption::NotNull))
    });
    if !declares_not_null || create.if_not_exists || create.or_replace {
        return None;
    }
    let mut empty = create.clone();
    empty.query = None;
    let insert = Parser::parse_sql(
        &PostgreSqlDialect {},
        &format!("INSERT INTO {} {query}", create.name),
    )
    .ok()?
    .pop()?;
    Some((Statement::CreateTable(empty), insert))
}

async fn run_sql(ctx: &SessionContext, statement: &Statement) -> PgWireResult<Vec<RecordBatch>> {
    if let Some((create, insert)) = create_then_insert(statement) {
        ctx.sql(&create.to_string())
            .await
            .map_err(api_error)?
            .collect()
            .await
            .map_err(api_error)?;
        let inserted = match ctx.sql(&insert.to_string()).await {
            Ok(frame) => frame.collect().await,
            Err(err) => Err(err),
        };
        if let Err(err) = inserted {
            // The statement fails whole: no table is left behind.
            if let Statement::CreateTable(create) = &create {
                if let Ok(frame) = ctx.sql(&format!("DROP TABLE {}", create.name)).await {
                    let _ = frame.collect().await;
                }
            }
            return Err(api_error(err));
        }
        return Ok(Vec::new());
    }
    let mut batches = Vec::new();
    for single in split_drop(statement) {
        let frame = ctx.sql(&single.to_string()).await.map_err(api_error)?;
        batches.extend(frame.collect().await.map_err(api_error)?);
    }
    Ok(batches)
}

async fn rows_created(ctx: &SessionContext, statement: &Statement) -> PgWireResult<usize> {
    let Statement::CreateTable(create) = statement else {
        return Ok(0);
    };
    let frame = ctx
        .table(create.name.to_string())
        .await
        .map_err(api_error)?;
    frame.count().await.map_err(api_error)
}

/// Makes a new view outlive the server: its statement goes into the catalog.
fn persist_definition(ctx: &SessionContext, statement: &Statement) -> PgWireResult<()> {
    if let Statement::CreateView(view) = statement {
        Engine::record_definition(ctx, &view.name.to_string(), &statement.to_string())
            .map_err(api_error)?;
    }
    Ok(())
}

/// Makes the session's role the owner of what the statement created.
fn claim_ownership(ctx: &SessionContext, statement: &Statement) -> PgWireResult<()> {
    let Some((access, role)) = caller_of(ctx.state().config().options()) else {
        return Ok(());
    };
    let claimed = match statement {
        Statement::CreateTable(create) => {
            let (schema, name) = relation_of(ctx, &create.name);
            access.claim(
                &role,
                Object::Relation {
                    schema: &schema,
                    name: &name,
                },
            )
        }
        Statement::CreateView(view) => {
            let (schema, name) = relation_of(ctx, &view.name);
            access.claim(
                &role,
                Object::Relation {
                    schema: &schema,
                    name: &name,
                },
            )
        }
        Statement::CreateSchema { schema_name, .. } => {
            let schema = match schema_name {
                SchemaName::Simple(name) | SchemaName::NamedAuthorization(name, _) => {
                    relation_of(ctx, name).1
                }
                SchemaName::UnnamedAuthorization(_) => return Ok(()),
            };
            access.claim(&role, Object::Schema(&schema))
        }
        _ => return Ok(()),
    };
    Ok(claimed?)
}

/// After a statement ran: records what must outlive the server, and answers with the tag.
async fn finish(
    ctx: &SessionContext,
    statement: &Statement,
    batches: &[RecordBatch],
) -> PgWireResult<Response> {
    let (tag, counted) = tag_of(statement).expect("only tagged statements run here");
    persist_definition(ctx, statement)?;
    claim_ownership(ctx, statement)?;
    let rows = if tag == "SELECT" {
        rows_created(ctx, statement).await?
    } else {
        affected_rows(batches)
    };
    let tag = Tag::new(tag);
    Ok(Response::Execution(if counted {
        tag.with_rows(rows)
    } else {
        tag
    }))
}

/// `UNLISTEN`: semsql has no `LISTEN` (it is refused with 0A000), so no session listens to a
/// channel and there is nothing to stop, as for a PostgreSQL session that never listened.
/// asyncpg's pools send `UNLISTEN *` whenever they take a connection back.
fn unlisten(statement: &Statement) -> Option<PgWireResult<Response>> {
    matches!(statement, Statement::UNLISTEN { .. })
        .then(|| Ok(Response::Execution(Tag::new("UNLISTEN"))))
}

/// `RESET ALL`: every DataFusion and `semsql.*` option back to its value when the session
/// started, and no statement timeout (asyncpg's pools send it whenever they take a connection
/// back). DataFusion itself resets only one option at a time.
fn reset_all(
    statement: &Statement,
    ctx: &SessionContext,
    client: &mut dyn HookClient,
) -> Option<PgWireResult<Response>> {
    let Statement::Reset(ResetStatement { reset: Reset::ALL }) = statement else {
        return None;
    };
    let state = ctx.state_ref();
    let mut state = state.write();
    let Some(starting) = state.config().get_extension::<StartingOptions>() else {
        return Some(Err(PgWireError::ApiError(
            "session has no starting options".into(),
        )));
    };
    *state.config_mut().options_mut() = starting.0.clone();
    crate::engine::refresh_option_dependent_functions(&mut state);
    client.metadata_mut().remove(STATEMENT_TIMEOUT_MS);
    Some(Ok(Response::Execution(Tag::new("RESET"))))
}

#[async_trait]
impl QueryHook for CommandTagHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        if let Some(response) = unlisten(statement) {
            return Some(response);
        }
        if let Some(response) = reset_all(statement, session_context, client) {
            return Some(response);
        }
        tag_of(statement)?;
        let result = async {
            notice_missing_drops(statement, session_context, client).await?;
            let mut statement = statement.clone();
            super::vector_insert::rewrite_vector_values(session_context, &mut statement).await;
            let batches = run_sql(session_context, &statement).await?;
            finish(session_context, &statement, &batches).await
        };
        Some(result.await)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        // DataFusion cannot plan a multi-object DROP; we run it ourselves at execute time.
        (split_drop(statement).len() > 1
            || matches!(
                statement,
                Statement::UNLISTEN { .. } | Statement::Reset(ResetStatement { reset: Reset::ALL })
            ))
        .then(|| placeholder_plan(Schema::empty()))
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        logical_plan: &LogicalPlan,
        params: &ParamValues,
        session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        if let Some(response) = unlisten(statement) {
            return Some(response);
        }
        if let Some(response) = reset_all(statement, session_context, client) {
            return Some(response);
        }
        tag_of(statement)?;
        let result = async {
            notice_missing_drops(statement, session_context, client).await?;
            let batches =
                if split_drop(statement).len() > 1 || create_then_insert(statement).is_some() {
                    run_sql(session_context, statement).await?
                } else {
                    let plan = logical_plan
                        .clone()
                        .replace_params_with_values(params)
                        .map_err(api_error)?;
                    let frame = session_context
                        .execute_logical_plan(plan)
                        .await
                        .map_err(api_error)?;
                    frame.collect().await.map_err(api_error)?
                };
            finish(session_context, statement, &batches).await
        };
        Some(result.await)
    }
}
