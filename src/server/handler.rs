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
use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use datafusion_postgres::{DfSessionService, QueryHook};
use futures::channel::oneshot;
use futures::{stream, Sink, SinkExt, StreamExt};
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionHandle, ConnectionManager, ErrorHandler,
    PgWireServerHandlers, Type, DEFAULT_NAME, METADATA_DATABASE,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::PgWireBackendMessage;

use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use pgwire::api::results::DataRowEncoder;
use pgwire::messages::data::DataRow;
use pgwire::messages::extendedquery::Execute;
use pgwire::messages::response::{NoticeResponse, TransactionStatus};
use pgwire::messages::simplequery::Query;
use semsql_udfs::lm::{LmError, LmSettings, QueryUsage};

use super::auth::Authenticator;
use super::copy::{self, CopyCommand, CopyFormat};
use super::explain_rewrite;
use super::hooks::transactions;
use super::parameters;
use crate::access::{caller_of, FileUse, Object, Privilege};
use crate::config::Config;
use crate::engine::search_path::{PathResolver, SearchPath};
use crate::engine::{Engine, CATALOG};
use crate::error::{lm_user_error, to_error_info};
use crate::llm::{statements as model_statements, Runtime};
use crate::rewrite::cache::Entry as RewriteEntry;
use crate::rewrite::{Mode as RewriteMode, Rewriter};

/// Where datafusion-postgres's `SET statement_timeout` keeps the value, in milliseconds.
pub const STATEMENT_TIMEOUT_MS: &str = "statement_timeout_ms";

/// What the extended protocol keeps per prepared statement (datafusion-postgres's shape).
pub type PreparedStatement = (String, Option<(sqlparser::ast::Statement, LogicalPlan)>);

/// One connection's session.
struct ConnectionSession {
    ctx: Arc<SessionContext>,
    service: DfSessionService,
    /// A `COPY ... FROM STDIN` waiting for its data.
    copy_in: Mutex<Option<PendingCopy>>,
}

impl ConnectionSession {
    /// Readies the session's default schema for a statement and finds the names it must
    /// qualify (see `engine::search_path`).
    fn path_resolver(&self) -> Option<PathResolver> {
        let path = SearchPath::of(self.ctx.state_ref().read().config())?;
        path.resolver(&self.ctx)
    }
}

struct PendingCopy {
    table: String,
    columns: Vec<String>,
    format: CopyFormat,
    data: Vec<u8>,
    /// The input's share of the execution memory (`--memory-limit`).
    reservation: MemoryReservation,
    /// Set when the input outgrew the memory limit: the rest is read and dropped, and
    /// CopyDone answers with this error (as PostgreSQL keeps reading until the copy ends).
    overflow: Option<String>,
}

/// COPY holds its input about this many times over while parsing it into rows and columns.
const COPY_MEMORY_FACTOR: usize = 4;

/// Creates and finds connection sessions.
struct Sessions {
    engine: Engine,
    hooks: Vec<Arc<dyn QueryHook>>,
    rewriter: Arc<Rewriter>,
    /// Permits for background rewrite searches (`llm.rewrite_max_background`): each holds
    /// a query's plans and LM requests for up to `semsql.rewrite_timeout_ms`, so they are few.
    background_searches: Arc<tokio::sync::Semaphore>,
}

impl Sessions {
    fn of<C: ClientInfo + ?Sized>(&self, client: &C) -> Arc<ConnectionSession> {
        client.session_extensions().get_or_insert_with(|| {
            let database = client
                .metadata()
                .get(METADATA_DATABASE)
                .cloned()
                .unwrap_or_else(|| CATALOG.to_owned());
            let user = client
                .metadata()
                .get(pgwire::api::METADATA_USER)
                .cloned()
                .unwrap_or_default();
            let ctx = Arc::new(self.engine.session_for(&database, &user));
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
    /// datafusion-postgres's parser, with its rewrites of PostgreSQL-only syntax.
    sql_parser: PostgresCompatibilityParser,
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
        if model_statements::parse_statement(sql).is_some() || is_create_external_table(sql) {
            // Checked and run when executed (see `QueryHandler::model_statement` and
            // `create_external_table`).
            return Ok(Some((sql.to_owned(), None)));
        }
        if explain_rewrite::target(sql).is_some() {
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "ERROR".to_owned(),
                "0A000".to_owned(),
                "EXPLAIN REWRITE works in the simple query protocol only".to_owned(),
            ))));
        }
        if copy::parse(sql).is_some() {
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "ERROR".to_owned(),
                "0A000".to_owned(),
                "COPY FROM STDIN and COPY TO STDOUT work in the simple query protocol only"
                    .to_owned(),
            ))));
        }
        let session = self.sessions.of(client);
        let rewritten = super::compat::rewrite_in(sql, session.path_resolver().as_ref());
        let sql = rewritten.as_deref().unwrap_or(sql);
        let api_error = |err: DataFusionError| PgWireError::ApiError(Box::new(err));
        let mut statements = self
            .sql_parser
            .parse(sql)
            .map_err(|err| api_error(err.into()))?;
        if statements.is_empty() {
            return Ok(None);
        }
        let statement = statements.remove(0);
        if runs_as_simple_query(&statement) {
            return Ok(Some((sql.to_owned(), None)));
        }
        let query = statement.to_string();
        if let Statement::Execute { .. } = &statement {
            // SQL `EXECUTE name(args)`: DataFusion resolves it to the prepared plan with the
            // arguments bound, whose columns Describe then reports (planned as an `EXECUTE`
            // statement it had none, and its rows were lost).
            let frame = session.ctx.sql(sql).await.map_err(api_error)?;
            let plan = frame.logical_plan().clone();
            return Ok(Some((query, Some((statement, plan)))));
        }
        for hook in &self.sessions.hooks {
            if let Some(plan) = hook
                .handle_extended_parse_query(&statement, &session.ctx, client)
                .await
            {
                return Ok(Some((query, Some((statement, plan?)))));
            }
        }
        let plan =
            match parameters::plan_with_parameter_types(&session.ctx, &statement, types).await {
                Ok(plan) => plan,
                Err(err) => {
                    return Err(super::missing_function::with_argument_types(
                        &session.ctx,
                        &query,
                        api_error(err),
                    )
                    .await)
                }
            };
        Ok(Some((query, Some((statement, plan)))))
    }

    fn get_parameter_types(&self, stmt: &Self::Statement) -> PgWireResult<Vec<Type>> {
        let mut types = self.any_session.query_parser().get_parameter_types(stmt)?;
        // `$1::vector` is planned as text (see `parameters`) but is a `vector` to the client.
        if let Some((statement, _)) = &stmt.1 {
            for position in parameters::vector_parameters(statement) {
                if let Some(ty) = types.get_mut(position - 1) {
                    *ty = datafusion_postgres::arrow_pg::datatypes::pg_vector_type();
                }
            }
            for (position, described) in parameters::oid_parameters(statement) {
                if let Some(ty) = types.get_mut(position - 1) {
                    *ty = described;
                }
            }
        }
        Ok(types)
    }

    fn get_result_schema(
        &self,
        stmt: &Self::Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        // Described as `result_encoding` sends them (as datafusion-postgres' parser would,
        // except for the types only semsql's encoder sends).
        let fields = match &stmt.1 {
            Some((_, plan)) if !matches!(plan, LogicalPlan::Ddl(_) | LogicalPlan::Dml(_)) => {
                super::result_encoding::result_fields(
                    plan.schema().as_arrow(),
                    column_format.unwrap_or(&Format::UnifiedText),
                    None,
                )
            }
            _ => Vec::new(),
        };
        // The plan kept at Parse is not analyzed yet; the columns our analysis answers in
        // `int4` (`$1::int * 2`) are described as such, or binary clients would read 8 bytes.
        let narrowed = match &stmt.1 {
            Some((_, plan)) => crate::planner::integer_arithmetic::int4_columns(plan),
            None => Vec::new(),
        };
        Ok(fields
            .iter()
            .enumerate()
            .map(|(index, field)| {
                let field = client_field(field);
                let described = if narrowed.contains(&index) && field.datatype() == &Type::INT8 {
                    Type::INT4
                } else if field.name() == ASYNCPG_OID_LIST && field.datatype() == &Type::INT4_ARRAY
                {
                    Type::OID_ARRAY
                } else {
                    return field;
                };
                FieldInfo::new(
                    field.name().to_owned(),
                    field.table_id(),
                    field.column_id(),
                    described,
                    field.format(),
                )
                .with_format_options(field.format_options().clone())
            })
            .collect())
    }
}

#[async_trait]
impl SimpleQueryHandler for QueryHandler {
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if client.transaction_status() == TransactionStatus::Error {
            // Parsed here only in a failed block, where the one statement that can run is
            // ROLLBACK (TO).
            let first = Parser::parse_sql(&PostgreSqlDialect {}, &query.query)
                .ok()
                .and_then(|statements| statements.into_iter().next());
            if let Some(statement) = first {
                self.leave_aborted_state(client, &statement);
            }
        }
        self._on_query(client, query).await
    }

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
                    let reservation = MemoryConsumer::new("COPY FROM STDIN")
                        .register(&session.ctx.runtime_env().memory_pool);
                    *session.copy_in.lock().expect("copy lock") = Some(PendingCopy {
                        table,
                        columns,
                        format,
                        data: Vec::new(),
                        reservation,
                        overflow: None,
                    });
                    response
                }
            };
            return Ok(vec![response]);
        }
        if let Some(response) = create_external_table(&session.ctx, query).await {
            return Ok(vec![response?]);
        }
        if model_statements::any_model_statement(query) {
            // A script mixing model statements with others: one statement at a time, in order,
            // stopping at the first error as PostgreSQL does.
            let mut responses = Vec::new();
            for statement in model_statements::split_statements(query) {
                match model_statements::parse_statement(statement) {
                    Some(parsed) => responses.push(self.lm_statement(&session, parsed)?),
                    None => responses.extend(
                        Box::pin(SimpleQueryHandler::do_query(self, client, statement)).await?,
                    ),
                }
            }
            return Ok(responses);
        }
        let statements: Vec<&str> = model_statements::split_statements(query)
            .into_iter()
            .filter(|statement| !statement.trim().is_empty())
            .collect();
        if statements.len() > 1 && query.to_ascii_lowercase().contains("search_path") {
            // The names after a `SET search_path` resolve along the new path: one statement
            // at a time, stopping at the first error.
            let mut responses = Vec::new();
            for statement in statements {
                responses
                    .extend(Box::pin(SimpleQueryHandler::do_query(self, client, statement)).await?);
            }
            return Ok(responses);
        }
        if let Some(target) = explain_rewrite::target(query) {
            return Ok(vec![self.explain_rewrite(client, &session, target).await?]);
        }
        let rewritten = super::compat::rewrite_in(query, session.path_resolver().as_ref());
        let sql = rewritten.unwrap_or_else(|| query.to_owned());
        let plan = self.rewrite_plan(client, &session, &sql).await?;
        let usage = self.start_lm_query(&session, query);
        let to_run = match &plan {
            RewritePlan::Rewritten(rewrite) => rewrite.as_str(),
            _ => sql.as_str(),
        };
        let responses = match SimpleQueryHandler::do_query(&session.service, client, to_run).await {
            Ok(responses) => responses,
            Err(err) => {
                self.sessions.engine.runtime().finish_query(&usage);
                return Err(
                    super::missing_function::with_argument_types(&session.ctx, &sql, err).await,
                );
            }
        };
        let mut reported = Vec::with_capacity(responses.len());
        let zone = super::hooks::query_results::display_zone(&session.ctx);
        for response in responses {
            let response =
                super::text_output::postgres_text(client_names(response), zone.as_deref());
            let response = self
                .report_lm_usage(client, query, response, &usage)
                .await?;
            reported.push(match &plan {
                RewritePlan::SearchIfSlow(min_ms) => {
                    self.search_when_slow(&session, &sql, *min_ms, response)
                }
                _ => response,
            });
        }
        Ok(reported)
    }
}

#[async_trait]
impl ExtendedQueryHandler for QueryHandler {
    type Statement = PreparedStatement;
    type QueryParser = SessionParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if client.transaction_status() == TransactionStatus::Error {
            let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
            if let Some(Entry::Value(portal)) = client.portal_store().get_portal(name) {
                if let Some((statement, _)) = &portal.statement.statement.1 {
                    self.leave_aborted_state(client, statement);
                }
            }
        }
        self._on_execute(client, message).await
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
        let sql = portal.statement.statement.0.clone();
        if let Some(statement) = model_statements::parse_statement(&sql) {
            return self.lm_statement(&session, statement);
        }
        if portal.statement.statement.1.is_none() {
            // A statement DataFusion runs only from its own parser (see `runs_as_simple_query`),
            // without parameters or rows: as the simple protocol runs it.
            let mut responses = Box::pin(SimpleQueryHandler::do_query(self, client, &sql)).await?;
            return responses.pop().ok_or_else(|| {
                PgWireError::ApiError(Box::new(DataFusionError::Internal(
                    "a statement gave no response".to_owned(),
                )))
            });
        }
        let usage = self.start_lm_query(&session, &sql);
        *client
            .session_extensions()
            .get_or_insert_with(super::hooks::query_results::PortalResultFormat::default)
            .0
            .lock()
            .expect("format lock") = Some(portal.result_column_format.clone());
        let text_typed = super::parameters::as_text_parameters(portal);
        let portal = text_typed.as_ref().unwrap_or(portal);
        let zone = super::hooks::query_results::display_zone(&session.ctx);
        let iso_datetimes = if portal.parameters.is_empty() {
            None
        } else {
            // The plan's inference is asked only for a text value the client did not type.
            let declared = &portal.statement.parameter_types;
            let undeclared_text = portal.parameters.iter().enumerate().any(|(index, value)| {
                value.is_some()
                    && !portal.parameter_format.is_binary(index)
                    && !matches!(declared.get(index), Some(Some(ty)) if *ty != Type::UNKNOWN)
            });
            let types = if undeclared_text {
                self.parser
                    .get_parameter_types(&portal.statement.statement)
                    .unwrap_or_default()
            } else {
                declared
                    .iter()
                    .map(|ty| ty.clone().unwrap_or(Type::UNKNOWN))
                    .collect()
            };
            match super::datetime_parameters::with_iso_datetimes(portal, &types, zone.as_deref()) {
                Ok(rewritten) => rewritten,
                Err(err) => {
                    self.sessions.engine.runtime().finish_query(&usage);
                    return Err(err);
                }
            }
        };
        let portal = iso_datetimes.as_ref().unwrap_or(portal);
        let response = match ExtendedQueryHandler::do_query(
            &session.service,
            client,
            portal,
            max_rows,
        )
        .await
        {
            Ok(response) => {
                super::text_output::postgres_text(client_names(response), zone.as_deref())
            }
            Err(err) => {
                self.sessions.engine.runtime().finish_query(&usage);
                return Err(err);
            }
        };
        self.report_lm_usage(client, &sql, response, &usage).await
    }
}

/// What the rewriter does for a query about to run (see `semsql.rewrite`).
enum RewritePlan {
    /// Run it as written.
    AsWritten,
    /// Run this statement instead: the query's proven rewrite (under the same EXPLAIN, if any).
    Rewritten(String),
    /// Run it as written, and search for a rewrite if it takes longer than this many
    /// milliseconds (`auto`, nothing known yet).
    SearchIfSlow(u64),
}

impl QueryHandler {
    fn runtime(&self) -> &Arc<Runtime> {
        self.sessions.engine.runtime()
    }

    /// Moves a failed transaction block back to "in a block" when `statement` is a
    /// `ROLLBACK TO` one of its savepoints (see `hooks::transactions`).
    fn leave_aborted_state<C: ClientInfo>(&self, client: &mut C, statement: &Statement) {
        let session = self.sessions.of(client);
        if transactions::leaves_aborted_state(statement, &session.ctx) {
            client.set_transaction_status(TransactionStatus::Transaction);
        }
    }

    /// `EXPLAIN REWRITE <query>`.
    async fn explain_rewrite<C>(
        &self,
        client: &mut C,
        session: &ConnectionSession,
        target: &str,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let settings = LmSettings::of(session.ctx.state().config().options());
        if RewriteMode::of(&settings) == RewriteMode::Off {
            return Err(lm_user_error(LmError::new(
                "55000",
                "the query rewriter is off: SET semsql.rewrite = 'advise' (or 'auto') to use \
                 EXPLAIN REWRITE",
            )));
        }
        let rewritten = super::compat::rewrite_in(target, session.path_resolver().as_ref());
        let sql = rewritten.as_deref().unwrap_or(target);
        let report = self
            .sessions
            .rewriter
            .search(&session.ctx, sql)
            .await
            .map_err(|err| PgWireError::ApiError(Box::new(err)))?;
        client
            .send(notice(explain_rewrite::summary(&report)))
            .await?;
        explain_rewrite::response(&report)
    }

    /// Looks the query up in the rewrite cache, as `semsql.rewrite` asks: in `auto`, a known
    /// rewrite replaces it and an unknown query is searched if slow; in `advise`, a known
    /// rewrite is pointed out in a NOTICE. Any failure here runs the query as written.
    async fn rewrite_plan<C>(
        &self,
        client: &mut C,
        session: &ConnectionSession,
        sql: &str,
    ) -> PgWireResult<RewritePlan>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let settings = LmSettings::of(session.ctx.state().config().options());
        let mode = RewriteMode::of(&settings);
        // EXPLAIN shows the plan that would run: the rewrite's, when `auto` would use it.
        let (explain, query) = split_explain(sql);
        if mode == RewriteMode::Off || !is_single_query(query) {
            return Ok(RewritePlan::AsWritten);
        }
        let cached = self.sessions.rewriter.cached(&session.ctx, query).await;
        if !explain.is_empty() {
            // EXPLAIN shows the plan that would run: a proven rewrite's under `auto`.
            return Ok(match (mode, cached) {
                (RewriteMode::Auto, Some(RewriteEntry::Proven { sql, .. })) => {
                    RewritePlan::Rewritten(format!("{} {sql}", explain.trim_end()))
                }
                _ => RewritePlan::AsWritten,
            });
        }
        Ok(match (mode, cached) {
            (RewriteMode::Auto, None) => RewritePlan::SearchIfSlow(settings.rewrite_min_ms),
            // Proven equivalent: the same rows on every database, so it runs in the query's
            // place.
            (RewriteMode::Auto, Some(RewriteEntry::Proven { sql, .. })) => {
                RewritePlan::Rewritten(sql)
            }
            (_, Some(RewriteEntry::Proven { speedup, .. })) => {
                client
                    .send(notice(format!(
                        "a rewrite of this query proven equivalent ran {speedup:.2}× faster; \
                         SET semsql.rewrite = 'auto' to use it (EXPLAIN REWRITE shows it)"
                    )))
                    .await?;
                RewritePlan::AsWritten
            }
            // A tested rewrite agreed with the query on every test database, which does not
            // make it equivalent: running it could return another answer on other data. It is
            // pointed out, never used in the query's place.
            (mode, Some(RewriteEntry::Tested { speedup, .. })) => {
                let advice = if mode == RewriteMode::Auto {
                    "auto runs only rewrites proven equivalent, and this one is not"
                } else {
                    "it is not proven equivalent, so check it before using it"
                };
                client
                    .send(notice(format!(
                        "a tested rewrite of this query ran {speedup:.2}× faster on the test \
                         databases; {advice} (EXPLAIN REWRITE shows it)"
                    )))
                    .await?;
                RewritePlan::AsWritten
            }
            _ => RewritePlan::AsWritten,
        })
    }

    /// Times the query's rows to their end; if that took `min_ms` or more, a rewrite search
    /// starts in the background on a copy of the session (its settings and data as now).
    fn search_when_slow(
        &self,
        session: &ConnectionSession,
        sql: &str,
        min_ms: u64,
        response: Response,
    ) -> Response {
        let Response::Query(query) = response else {
            return response;
        };
        let started = std::time::Instant::now();
        let rewriter = self.sessions.rewriter.clone();
        let ctx = SessionContext::new_with_state(session.ctx.state());
        let sql = sql.to_owned();
        let permits = self.sessions.background_searches.clone();
        let mut on_end = Some(move || {
            if started.elapsed() < Duration::from_millis(min_ms) {
                return;
            }
            let Ok(permit) = permits.try_acquire_owned() else {
                tracing::debug!("every background rewrite search slot is busy; not searching");
                return;
            };
            tokio::spawn(async move {
                let _permit = permit;
                let Ok(keys) = rewriter.key(&ctx, &sql).await else {
                    return;
                };
                let (normalized, key) = (&keys.normalized, &keys.key);
                if !rewriter.cache.start_search(key) {
                    return;
                }
                // The query chose to search when it started; a search that ended meanwhile
                // has already answered.
                if rewriter.cache.get(normalized, key, &keys.data).is_some() {
                    rewriter.cache.end_search(key);
                    return;
                }
                match rewriter.search_keyed(&ctx, &sql, &keys).await {
                    Ok(report) => tracing::info!(
                        accepted = report.chosen.is_some(),
                        candidates = report.candidates.len(),
                        requests = report.requests,
                        seconds = report.seconds,
                        "background rewrite search finished"
                    ),
                    Err(err) => {
                        tracing::warn!(error = %err, "background rewrite search failed");
                        let data = keys.data.clone();
                        rewriter
                            .cache
                            .put(normalized, key, RewriteEntry::Rejected, data);
                    }
                }
                rewriter.cache.end_search(key);
            });
        });
        let QueryResponse {
            command_tag,
            row_schema,
            mut data_rows,
            ..
        } = query;
        let rows = stream::poll_fn(move |cx| {
            let polled = data_rows.poll_next_unpin(cx);
            if let std::task::Poll::Ready(None) = polled {
                if let Some(on_end) = on_end.take() {
                    on_end();
                }
            }
            polled
        });
        let mut wrapped = QueryResponse::new(row_schema, rows);
        wrapped.command_tag = command_tag;
        Response::Query(wrapped)
    }

    /// A model or secret statement.
    fn lm_statement(
        &self,
        session: &ConnectionSession,
        statement: Result<model_statements::Statement, LmError>,
    ) -> PgWireResult<Response> {
        match statement.map_err(lm_user_error)? {
            model_statements::Statement::Model(model) => self.model_statement(session, Ok(model)),
            model_statements::Statement::Secret(secret) => {
                // Secrets are the administrator's: only a superuser defines or drops one.
                let caller = caller_of(session.ctx.state().config().options());
                if let Some((access, me)) = &caller {
                    if !access.is_superuser(me) {
                        return Err(PgWireError::from(
                            crate::error::SemsqlError::InsufficientPrivilege(
                                "must be superuser to create or drop secrets".into(),
                            ),
                        ));
                    }
                }
                let tag = self
                    .runtime()
                    .change_secret(&secret)
                    .map_err(lm_user_error)?;
                Ok(Response::Execution(Tag::new(tag)))
            }
        }
    }

    /// `CREATE MODEL`, `ALTER MODEL`, `DROP MODEL`, `GRANT/REVOKE USAGE ON MODEL`, checked
    /// against the session's role: a model's owner (or a superuser) may alter, drop and grant
    /// it, and only superusers may give a model a key (`api_key_env`), since its requests
    /// would carry the server's secret wherever the model points.
    fn model_statement(
        &self,
        session: &ConnectionSession,
        statement: Result<model_statements::ModelStatement, LmError>,
    ) -> PgWireResult<Response> {
        let statement = statement.map_err(lm_user_error)?;
        let caller = caller_of(session.ctx.state().config().options());
        let name = statement.name.as_str();
        if let Some((access, me)) = &caller {
            let exists = self.runtime().model(name).is_some();
            let superuser = access.is_superuser(me);
            match &statement.change {
                model_statements::ModelChange::Create { options, .. }
                | model_statements::ModelChange::Alter { options, .. } => {
                    if exists {
                        access.check_owner(me, Object::Model(name))?;
                    }
                    let carries_key = |options: &crate::llm::models::RawOptions| {
                        options.keys().any(|key| key.starts_with("api_key"))
                    };
                    if !superuser && carries_key(options) {
                        return Err(PgWireError::from(
                            crate::error::SemsqlError::InsufficientPrivilege(
                                "only superusers may give a model an API key (api_key_secret, \
                             api_key_env); \
                             ask one to create the model and GRANT USAGE ON MODEL to you"
                                    .into(),
                            ),
                        ));
                    }
                    // Outbound addresses are the administrator's to give: an ordinary role may
                    // point a model only inside llm.allowed_base_urls (checked by the runtime).
                    if !superuser
                        && options.contains_key("base_url")
                        && !self.runtime().restricts_base_urls()
                    {
                        return Err(PgWireError::from(crate::error::SemsqlError::InsufficientPrivilege(
                            "only superusers may choose a model's base_url while the server has \
                             no llm.allowed_base_urls; ask one to create the model and GRANT \
                             USAGE ON MODEL to you"
                                .into(),
                        )));
                    }
                    let keyed = self
                        .runtime()
                        .model(name)
                        .is_some_and(|model| carries_key(&model.raw));
                    if !superuser && keyed && options.contains_key("base_url") {
                        return Err(PgWireError::from(
                            crate::error::SemsqlError::InsufficientPrivilege(
                                "only superusers may repoint a model that carries an API key"
                                    .into(),
                            ),
                        ));
                    }
                }
                model_statements::ModelChange::Drop { .. } if exists => {
                    access.check_owner(me, Object::Model(name))?;
                }
                model_statements::ModelChange::Drop { .. } => {}
                model_statements::ModelChange::Grant { .. } => {
                    if !exists {
                        return Err(lm_user_error(LmError::undefined_model(name)));
                    }
                    access.check_owner(me, Object::Model(name))?;
                }
            }
        }
        if let model_statements::ModelChange::Grant { grantees, revoke } = &statement.change {
            let Some((access, _)) = &caller else {
                return Err(PgWireError::ApiError(
                    "grants need a connection's session".into(),
                ));
            };
            let grantees: Vec<String> = grantees.clone();
            access.change_grants(Object::Model(name), &[Privilege::Usage], &grantees, *revoke)?;
            return Ok(Response::Execution(Tag::new(if *revoke {
                "REVOKE"
            } else {
                "GRANT"
            })));
        }
        let dropping = matches!(statement.change, model_statements::ModelChange::Drop { .. });
        let creating = matches!(
            statement.change,
            model_statements::ModelChange::Create { .. }
        );
        let tag = self
            .runtime()
            .change_model(&statement.name, statement.change)
            .map_err(lm_user_error)?;
        if let Some((access, me)) = &caller {
            if creating {
                access.claim(me, Object::Model(name))?;
            }
        }
        if dropping {
            self.sessions.engine.access().forget_model(name)?;
        }
        Ok(Response::Execution(Tag::new(tag)))
    }

    /// Gives the query a fresh LM usage record, which every LM function it calls adds to.
    fn start_lm_query(&self, session: &ConnectionSession, sql: &str) -> Arc<QueryUsage> {
        let state = session.ctx.state_ref();
        let mut state = state.write();
        let settings = LmSettings::of_mut(state.config_mut().options_mut());
        let usage = self.runtime().start_query(
            settings.log_prompts.then(|| sql.to_owned()),
            settings.progress_interval_ms,
            settings.caller_role(),
        );
        settings.usage = Some(usage.clone());
        usage
    }

    /// For a query that calls an LM function: runs it to the end here, sending progress NOTICEs
    /// every `semsql.progress_interval_ms` and a closing NOTICE with its usage (and, for EXPLAIN
    /// ANALYZE, a row with it), then hands the rows on. NOTICEs must come before the rows'
    /// CommandComplete, and pgwire sends that as soon as the row stream ends, so the rows are
    /// held until then; LM queries answer few rows slowly, so holding them is cheap. Other
    /// queries stream as usual and are only recorded when they end.
    async fn report_lm_usage<C>(
        &self,
        client: &mut C,
        sql: &str,
        response: Response,
        usage: &Arc<QueryUsage>,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let runtime = self.runtime().clone();
        if !mentions_lm_function(sql) {
            let query = match cancellable(client, response) {
                Response::Query(query) => query,
                other => {
                    runtime.finish_query(usage);
                    return Ok(other);
                }
            };
            let QueryResponse {
                command_tag,
                row_schema,
                data_rows,
                ..
            } = query;
            let guard = FinishOnDrop {
                runtime,
                usage: usage.clone(),
            };
            let rows = data_rows.inspect(move |_| {
                let _ = &guard;
            });
            let mut response = QueryResponse::new(row_schema, rows);
            response.command_tag = command_tag;
            return Ok(Response::Query(response));
        }
        let Response::Query(query) = response else {
            runtime.finish_query(usage);
            return Ok(response);
        };
        let QueryResponse {
            command_tag,
            row_schema,
            mut data_rows,
            ..
        } = query;
        // pgwire listens for a CancelRequest while `do_query` runs, and this runs inside it;
        // the statement timeout is ours to keep.
        let deadline = statement_deadline(client);
        let timed_out = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(timed_out);
        let interval_ms = usage.progress_interval_ms;
        let mut ticker = (interval_ms > 0).then(|| {
            let period = Duration::from_millis(interval_ms);
            tokio::time::interval_at(tokio::time::Instant::now() + period, period)
        });
        let mut rows: Vec<DataRow> = Vec::new();
        // The held rows count against the execution memory (`--memory-limit`).
        let held = MemoryConsumer::new("LM query rows held for NOTICEs")
            .register(&self.sessions.engine.runtime_env().memory_pool);
        loop {
            let tick = async {
                match ticker.as_mut() {
                    Some(ticker) => ticker.tick().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                item = data_rows.next() => match item {
                    Some(Ok(row)) => {
                        if let Err(err) = held.try_grow(row.data.len() + 64) {
                            runtime.finish_query(usage);
                            return Err(PgWireError::ApiError(Box::new(err)));
                        }
                        rows.push(row)
                    }
                    Some(Err(err)) => {
                        runtime.finish_query(usage);
                        return Err(err);
                    }
                    None => break,
                },
                _ = &mut timed_out => {
                    runtime.finish_query(usage);
                    return Err(statement_timeout_error());
                }
                _ = tick => {
                    let now = usage.snapshot();
                    let message = format!(
                        "semsql progress: {} of {} rows answered, {} requests, {} cache hits, {:.1} s",
                        now.rows_done, now.rows_total, now.requests, now.cache_hits, now.elapsed_ms / 1000.0
                    );
                    client.send(notice(message)).await?;
                }
            }
        }
        runtime.finish_query(usage);
        if usage.used() {
            let summary = usage.snapshot().to_string();
            if is_explain_analyze(sql) && row_schema.len() == 2 {
                let mut encoder = DataRowEncoder::new(row_schema.clone());
                encoder.encode_field(&Some("LM usage"))?;
                encoder.encode_field(&Some(summary.as_str()))?;
                rows.push(encoder.take_row());
            }
            client.send(notice(summary)).await?;
        }
        let mut response = QueryResponse::new(row_schema, stream::iter(rows.into_iter().map(Ok)));
        response.command_tag = command_tag;
        Ok(Response::Query(response))
    }
}

/// Records a streamed query's LM usage when its rows are done with (sent, failed or dropped).
struct FinishOnDrop {
    runtime: Arc<Runtime>,
    usage: Arc<QueryUsage>,
}

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        self.runtime.finish_query(&self.usage);
    }
}

/// A NOTICE message (severity NOTICE, SQLSTATE 00000).
pub(crate) fn notice(message: String) -> PgWireBackendMessage {
    PgWireBackendMessage::NoticeResponse(NoticeResponse::from(ErrorInfo::new(
        "NOTICE".to_owned(),
        "00000".to_owned(),
        message,
    )))
}

/// Whether the query text calls an LM function by name (a name followed by `(`). A string
/// literal that happens to match only costs holding that query's rows until it ends.
fn mentions_lm_function(sql: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    semsql_udfs::lm_function_names().iter().any(|name| {
        lower.match_indices(name).any(|(at, _)| {
            let before_ok = lower[..at]
                .chars()
                .next_back()
                .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
            before_ok && lower[at + name.len()..].trim_start().starts_with('(')
        })
    })
}

/// `(EXPLAIN and its options, the query)`: the leading `EXPLAIN [ANALYZE] [VERBOSE]` words of
/// `sql` (empty when there are none) and what follows them.
fn split_explain(sql: &str) -> (&str, &str) {
    let trimmed = sql.trim_start();
    let mut end = 0;
    let mut rest = trimmed;
    for (position, word) in ["EXPLAIN", "ANALYZE", "VERBOSE"].into_iter().enumerate() {
        let Some(head) = rest.get(..word.len()) else {
            break;
        };
        let after = &rest[word.len()..];
        if !head.eq_ignore_ascii_case(word) || !after.starts_with(char::is_whitespace) {
            if position == 0 {
                return ("", sql);
            }
            continue;
        }
        rest = after.trim_start();
        end = trimmed.len() - rest.len();
    }
    (trimmed[..end].trim_end(), &trimmed[end..])
}

/// Whether `sql` is one SELECT (or WITH … SELECT) statement, the only kind the rewriter takes.
fn is_single_query(sql: &str) -> bool {
    let first = sql
        .trim_start()
        .split(|c: char| c.is_whitespace() || c == '(')
        .next()
        .unwrap_or("");
    (first.eq_ignore_ascii_case("select") || first.eq_ignore_ascii_case("with"))
        && !sql.trim().trim_end_matches(';').contains(';')
}

fn is_explain_analyze(sql: &str) -> bool {
    let words: Vec<String> = sql
        .split_whitespace()
        .take(2)
        .map(str::to_ascii_uppercase)
        .collect();
    words.len() == 2 && words[0] == "EXPLAIN" && words[1] == "ANALYZE"
}

/// Statements DataFusion plans only from its own parser's form (`RESET` of its options, SQL
/// `PREPARE`/`DEALLOCATE`), which the extended protocol's planner refuses: they take no
/// parameters and return no rows, so Execute runs them as the simple protocol does.
fn runs_as_simple_query(statement: &Statement) -> bool {
    matches!(
        statement,
        Statement::Reset(_) | Statement::Prepare { .. } | Statement::Deallocate { .. }
    )
}

fn is_create_external_table(query: &str) -> bool {
    let opening = query
        .split_whitespace()
        .take(4)
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_uppercase();
    opening.starts_with("CREATE EXTERNAL TABLE ")
        || opening.starts_with("CREATE UNBOUNDED EXTERNAL TABLE")
}

/// `CREATE EXTERNAL TABLE` is DataFusion's own statement, which the PostgreSQL parser does not
/// know: it goes straight to DataFusion, and its statement into the durable catalog.
async fn create_external_table(
    ctx: &SessionContext,
    query: &str,
) -> Option<PgWireResult<Response>> {
    if !is_create_external_table(query) {
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
        // It reads server files: a superuser's, or pg_read_server_files', and only inside
        // the configured directories; it also makes a table, so CREATE on the schema, and its
        // maker owns it.
        let caller = caller_of(ctx.state().config().options());
        let (schema, table) = super::hooks::access::relation_of(ctx, &create.name);
        if let Some((access, me)) = &caller {
            for location in &create.locations {
                access.check_server_file(me, location, FileUse::Read)?;
            }
            access.check(me, Object::Schema(&schema), Privilege::Create)?;
        }
        // The statement as the user wrote it: DataFusion's printed form drops the column list
        // and the OPTIONS (a `|` delimiter came back as `,`).
        let sql = query.trim().trim_end_matches(';').trim_end().to_owned();
        ctx.sql(&sql)
            .await
            .map_err(api_error)?
            .collect()
            .await
            .map_err(api_error)?;
        Engine::record_definition(ctx, &create.name.to_string(), &sql).map_err(api_error)?;
        if let Some((access, me)) = &caller {
            let object = Object::Relation {
                schema: &schema,
                name: &table,
            };
            access.claim(me, object)?;
        }
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
            Some(pending) if pending.overflow.is_some() => Ok(()),
            Some(pending) => {
                let grow = copy_data.data.len() * COPY_MEMORY_FACTOR;
                if let Err(err) = pending.reservation.try_grow(grow) {
                    pending.overflow = Some(format!(
                        "out of memory: COPY FROM STDIN stopped after {} MB of input, past the \
                         server's memory limit ({err}); load it in smaller pieces",
                        pending.data.len() >> 20
                    ));
                    pending.data = Vec::new();
                    pending.reservation.free();
                    return Ok(());
                }
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
        if let Some(message) = pending.overflow {
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "ERROR".to_owned(),
                "53200".to_owned(),
                message,
            ))));
        }
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

/// A field as the client sees it: a name made unique for DataFusion shown as written
/// (see `compat::DUPLICATE_MARK`).
/// The `oid[]` column of asyncpg's type introspection query (`array_agg(atttypid)`, NULL for
/// every type but a composite one, which semsql has none of). semsql's catalogs keep OIDs as
/// `int4`, and an aggregate keeps no mark that its values are OIDs, so it would be described
/// as `int4[]`. asyncpg decodes `oid[]` with a codec of its own but must introspect `int4[]`
/// with this very query, which would then need `int4[]` again: every `int4[]` parameter
/// (`WHERE id = ANY($1)`) failed with "maximum recursion depth exceeded".
const ASYNCPG_OID_LIST: &str = "attrtypoids";

fn client_field(field: &FieldInfo) -> FieldInfo {
    let name = super::compat::client_column_name(field.name());
    if name.len() == field.name().len() {
        return field.clone();
    }
    FieldInfo::new(
        name.to_owned(),
        field.table_id(),
        field.column_id(),
        field.datatype().clone(),
        field.format(),
    )
    .with_format_options(field.format_options().clone())
    .with_type_size(field.type_size())
    .with_type_modifier(field.type_modifier())
}

/// A query result whose column names are the client's (see [`client_field`]).
fn client_names(response: Response) -> Response {
    let Response::Query(query) = response else {
        return response;
    };
    if !query
        .row_schema
        .iter()
        .any(|field| field.name().contains(super::compat::DUPLICATE_MARK))
    {
        return Response::Query(query);
    }
    let QueryResponse {
        command_tag,
        row_schema,
        data_rows,
        ..
    } = query;
    let renamed = Arc::new(row_schema.iter().map(client_field).collect::<Vec<_>>());
    let mut response = QueryResponse::new(renamed, data_rows);
    response.command_tag = command_tag;
    Response::Query(response)
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
    let deadline = statement_deadline(client);
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
                        Err(statement_timeout_error()),
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

/// When the connection's `statement_timeout`, if any, ends a query starting now.
pub(crate) fn statement_deadline<C: ClientInfo + ?Sized>(
    client: &C,
) -> Option<tokio::time::Instant> {
    client
        .metadata()
        .get(STATEMENT_TIMEOUT_MS)
        .and_then(|ms| ms.parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms))
}

pub(crate) fn statement_timeout_error() -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        "57014".to_owned(),
        "canceling statement due to statement timeout".to_owned(),
    )))
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
    /// A session on the server's engine, as a connection to `database` gets, without the wire.
    pub fn session(&self, database: &str) -> datafusion::prelude::SessionContext {
        self.query.sessions.engine.session(database)
    }

    pub fn new(engine: Engine, config: &Config) -> Self {
        let hooks = super::hooks::all(engine.runtime().clone(), engine.access().clone());
        let access = engine.access().clone();
        let any_session =
            DfSessionService::new_with_hooks(Arc::new(engine.session(CATALOG)), hooks.clone());
        let rewriter = Arc::new(Rewriter::new(engine.runtime().clone()));
        let sessions = Arc::new(Sessions {
            engine,
            hooks,
            rewriter,
            background_searches: Arc::new(tokio::sync::Semaphore::new(
                config.llm.rewrite_max_background,
            )),
        });
        let connections = Arc::new(ConnectionManager::new());
        Handlers {
            query: Arc::new(QueryHandler {
                sessions: sessions.clone(),
                parser: Arc::new(SessionParser {
                    sessions,
                    any_session,
                    sql_parser: PostgresCompatibilityParser::new(),
                }),
            }),
            authenticator: Authenticator::new(config, access, connections.clone()),
            cancel: Arc::new(DefaultCancelHandler::new(connections)),
        }
    }
}

impl Handlers {
    /// Releases what outlives connections (the LM cache file), once they are all closed.
    pub fn close(&self) {
        self.query.runtime().cache.close();
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

#[cfg(test)]
mod rewrite_text_tests {
    use super::*;

    #[test]
    fn explain_prefixes_are_split_off() {
        assert_eq!(split_explain("SELECT 1"), ("", "SELECT 1"));
        assert_eq!(split_explain("explain select 1"), ("explain", "select 1"));
        assert_eq!(
            split_explain("EXPLAIN ANALYZE VERBOSE WITH a AS (SELECT 1) SELECT * FROM a"),
            (
                "EXPLAIN ANALYZE VERBOSE",
                "WITH a AS (SELECT 1) SELECT * FROM a"
            )
        );
        assert_eq!(
            split_explain("EXPLAIN VERBOSE SELECT 1"),
            ("EXPLAIN VERBOSE", "SELECT 1")
        );
        assert!(is_single_query("WITH a AS (SELECT 1) SELECT * FROM a;"));
        assert!(!is_single_query("SELECT 1; SELECT 2"));
        assert!(!is_single_query("INSERT INTO t SELECT 1"));
    }
}
