//! The pgwire handlers: each connection gets its own DataFusion session (settings, transaction,
//! prepared statements) on first use, kept in pgwire's per-connection extensions; the query
//! work itself is datafusion-postgres's `DfSessionService`, run against that session.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use datafusion::sql::sqlparser;
use datafusion_postgres::{DfSessionService, QueryHook};
use futures::channel::oneshot;
use futures::{stream, Sink, SinkExt, StreamExt};
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionHandle, ConnectionManager, ErrorHandler,
    PgWireServerHandlers, Type, METADATA_DATABASE,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::PgWireBackendMessage;

use super::auth::Authenticator;
use super::copy::{self, CopyCommand, CopyFormat};
use crate::config::Config;
use crate::engine::{Engine, CATALOG};
use crate::error::to_error_info;

/// Where datafusion-postgres's `SET statement_timeout` keeps the value, in milliseconds.
const STATEMENT_TIMEOUT_MS: &str = "statement_timeout_ms";

/// What the extended protocol keeps per prepared statement (datafusion-postgres's shape).
pub type PreparedStatement = (String, Option<(sqlparser::ast::Statement, LogicalPlan)>);

/// One connection's session.
struct ConnectionSession {
    ctx: Arc<SessionContext>,
    service: DfSessionService,
    /// A `COPY ... FROM STDIN` waiting for its data.
    copy_in: Mutex<Option<PendingCopy>>,
}

struct PendingCopy {
    table: String,
    columns: Vec<String>,
    format: CopyFormat,
    data: Vec<u8>,
}

/// Creates and finds connection sessions.
struct Sessions {
    engine: Engine,
    hooks: Vec<Arc<dyn QueryHook>>,
}

impl Sessions {
    fn of<C: ClientInfo + ?Sized>(&self, client: &C) -> Arc<ConnectionSession> {
        client.session_extensions().get_or_insert_with(|| {
            let database = client
                .metadata()
                .get(METADATA_DATABASE)
                .cloned()
                .unwrap_or_else(|| CATALOG.to_owned());
            let ctx = Arc::new(self.engine.session(&database));
            ConnectionSession {
                service: DfSessionService::new_with_hooks(ctx.clone(), self.hooks.clone()),
                ctx,
                copy_in: Mutex::new(None),
            }
        })
    }
}

pub struct QueryHandler {
    sessions: Arc<Sessions>,
    parser: Arc<SessionParser>,
}

/// Parses with the connection's own session, so names resolve against its settings.
pub struct SessionParser {
    sessions: Arc<Sessions>,
    /// For the steps that only read a plan already made (parameter and result types).
    any_session: DfSessionService,
}

#[async_trait]
impl QueryParser for SessionParser {
    type Statement = PreparedStatement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        if copy::parse(sql).is_some() {
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "ERROR".to_owned(),
                "0A000".to_owned(),
                "COPY FROM STDIN and COPY TO STDOUT work in the simple query protocol only"
                    .to_owned(),
            ))));
        }
        let session = self.sessions.of(client);
        let rewritten = super::compat::rewrite(sql);
        session
            .service
            .query_parser()
            .parse_sql(client, rewritten.as_deref().unwrap_or(sql), types)
            .await
    }

    fn get_parameter_types(&self, stmt: &Self::Statement) -> PgWireResult<Vec<Type>> {
        self.any_session.query_parser().get_parameter_types(stmt)
    }

    fn get_result_schema(
        &self,
        stmt: &Self::Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        self.any_session
            .query_parser()
            .get_result_schema(stmt, column_format)
    }
}

#[async_trait]
impl SimpleQueryHandler for QueryHandler {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = self.sessions.of(client);
        if let Some(command) = copy::parse(query) {
            let response = match command? {
                CopyCommand::Out { query, format } => {
                    copy::copy_out(&session.ctx, &query, format).await?
                }
                CopyCommand::In {
                    table,
                    columns,
                    format,
                } => {
                    let response = copy::copy_in_response(&session.ctx, &table, &columns).await?;
                    *session.copy_in.lock().expect("copy lock") = Some(PendingCopy {
                        table,
                        columns,
                        format,
                        data: Vec::new(),
                    });
                    response
                }
            };
            return Ok(vec![response]);
        }
        if let Some(response) = create_external_table(&session.ctx, query).await {
            return Ok(vec![response?]);
        }
        let rewritten = super::compat::rewrite(query);
        let responses = SimpleQueryHandler::do_query(
            &session.service,
            client,
            rewritten.as_deref().unwrap_or(query),
        )
        .await?;
        Ok(responses
            .into_iter()
            .map(|response| cancellable(client, response))
            .collect())
    }
}

#[async_trait]
impl ExtendedQueryHandler for QueryHandler {
    type Statement = PreparedStatement;
    type QueryParser = SessionParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = self.sessions.of(client);
        let response =
            ExtendedQueryHandler::do_query(&session.service, client, portal, max_rows).await?;
        Ok(cancellable(client, response))
    }
}

/// `CREATE EXTERNAL TABLE` is DataFusion's own statement, which the PostgreSQL parser does not
/// know: it goes straight to DataFusion, and its statement into the durable catalog.
async fn create_external_table(
    ctx: &SessionContext,
    query: &str,
) -> Option<PgWireResult<Response>> {
    let opening = query
        .split_whitespace()
        .take(4)
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_uppercase();
    if !(opening.starts_with("CREATE EXTERNAL TABLE ")
        || opening.starts_with("CREATE UNBOUNDED EXTERNAL TABLE"))
    {
        return None;
    }
    let api_error = |err: DataFusionError| PgWireError::ApiError(Box::new(err));
    let result = async {
        let mut statements = DFParser::parse_sql(query).map_err(api_error)?;
        let (Some(DFStatement::CreateExternalTable(create)), None) =
            (statements.pop_front(), statements.pop_front())
        else {
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "ERROR".to_owned(),
                "0A000".to_owned(),
                "send CREATE EXTERNAL TABLE as a statement of its own".to_owned(),
            ))));
        };
        let sql = create.to_string();
        ctx.sql(&sql)
            .await
            .map_err(api_error)?
            .collect()
            .await
            .map_err(api_error)?;
        Engine::record_definition(ctx, &create.name.to_string(), &sql).map_err(api_error)?;
        Ok(Response::Execution(Tag::new("CREATE EXTERNAL TABLE")))
    };
    Some(result.await)
}

#[async_trait]
impl CopyHandler for QueryHandler {
    async fn on_copy_data<C>(&self, client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = self.sessions.of(client);
        let mut pending = session.copy_in.lock().expect("copy lock");
        match pending.as_mut() {
            Some(pending) => {
                pending.data.extend_from_slice(&copy_data.data);
                Ok(())
            }
            None => Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "ERROR".to_owned(),
                "08P01".to_owned(),
                "CopyData without a COPY FROM STDIN in progress".to_owned(),
            )))),
        }
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = self.sessions.of(client);
        let pending = session.copy_in.lock().expect("copy lock").take();
        let Some(pending) = pending else {
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "ERROR".to_owned(),
                "08P01".to_owned(),
                "CopyDone without a COPY FROM STDIN in progress".to_owned(),
            ))));
        };
        let rows = copy::copy_in_finish(
            &session.ctx,
            &pending.table,
            &pending.columns,
            &pending.format,
            &pending.data,
        )
        .await?;
        let tag = Tag::new("COPY").with_rows(rows);
        client
            .send(PgWireBackendMessage::CommandComplete(tag.into()))
            .await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = self.sessions.of(client);
        session.copy_in.lock().expect("copy lock").take();
        PgWireError::UserError(Box::new(ErrorInfo::new(
            "ERROR".to_owned(),
            "57014".to_owned(),
            format!("COPY from stdin failed: {}", fail.message),
        )))
    }
}

/// Makes a result's rows stop with 57014 when the client sends a CancelRequest or the
/// connection's `statement_timeout` passes.
///
/// pgwire watches for cancellation only until `do_query` returns, but DataFusion does its work
/// while the rows are streamed; so the stream itself listens, from its first poll (after
/// pgwire has stopped listening). Dropping the DataFusion stream stops the query.
fn cancellable<C: ClientInfo>(client: &C, response: Response) -> Response {
    let Response::Query(query) = response else {
        return response;
    };
    let handle = client.session_extensions().get::<Arc<ConnectionHandle>>();
    let deadline = client
        .metadata()
        .get(STATEMENT_TIMEOUT_MS)
        .and_then(|ms| ms.parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms));
    let QueryResponse {
        command_tag,
        row_schema,
        data_rows,
        ..
    } = query;
    enum Watch {
        NotStarted,
        Listening(oneshot::Receiver<()>),
        /// No cancel signal: none registered, or another query took it over (interleaved portals).
        Detached,
    }
    let start = if handle.is_some() {
        Watch::NotStarted
    } else {
        Watch::Detached
    };
    let rows = stream::unfold(
        (data_rows, start, false),
        move |(mut rows, watch, finished)| {
            let handle = handle.clone();
            async move {
                if finished {
                    return None;
                }
                let mut receiver = match (watch, &handle) {
                    (Watch::NotStarted, Some(handle)) => Some(handle.start_query().await),
                    (Watch::Listening(receiver), _) => Some(receiver),
                    _ => None,
                };
                let cancelled = async {
                    match receiver.as_mut() {
                        Some(receiver) => receiver.await.is_ok(),
                        None => std::future::pending().await,
                    }
                };
                let timed_out = async {
                    match deadline {
                        Some(deadline) => tokio::time::sleep_until(deadline).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    item = rows.next() => {
                        let item = item?;
                        let watch = receiver.map_or(Watch::Detached, Watch::Listening);
                        Some((item, (rows, watch, false)))
                    }
                    true = cancelled => Some((Err(PgWireError::QueryCanceled), (rows, Watch::Detached, true))),
                    _ = timed_out => Some((
                        Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                            "ERROR".to_owned(),
                            "57014".to_owned(),
                            "canceling statement due to statement timeout".to_owned(),
                        )))),
                        (rows, Watch::Detached, true),
                    )),
                }
            }
        },
    );
    let mut wrapped = QueryResponse::new(row_schema, rows);
    wrapped.command_tag = command_tag;
    Response::Query(wrapped)
}

/// Gives every error its SQLSTATE before pgwire sends it (see `crate::error`).
pub struct SqlstateErrors;

impl ErrorHandler for SqlstateErrors {
    fn on_error<C>(&self, _client: &C, error: &mut PgWireError)
    where
        C: ClientInfo,
    {
        if let Some(info) = to_error_info(error) {
            *error = PgWireError::UserError(Box::new(info));
        }
        tracing::debug!(%error, "query failed");
    }
}

/// Everything pgwire needs to serve a connection.
pub struct Handlers {
    query: Arc<QueryHandler>,
    authenticator: Authenticator,
    cancel: Arc<DefaultCancelHandler>,
}

impl Handlers {
    pub fn new(engine: Engine, config: &Config) -> Self {
        let hooks = super::hooks::all();
        let any_session =
            DfSessionService::new_with_hooks(Arc::new(engine.session(CATALOG)), hooks.clone());
        let sessions = Arc::new(Sessions { engine, hooks });
        let connections = Arc::new(ConnectionManager::new());
        Handlers {
            query: Arc::new(QueryHandler {
                sessions: sessions.clone(),
                parser: Arc::new(SessionParser {
                    sessions,
                    any_session,
                }),
            }),
            authenticator: Authenticator::new(config, connections.clone()),
            cancel: Arc::new(DefaultCancelHandler::new(connections)),
        }
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.query.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.query.clone()
    }

    /// pgwire asks once per connection.
    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        Arc::new(self.authenticator.for_connection())
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(SqlstateErrors)
    }

    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        self.query.clone()
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.cancel.clone()
    }
}
