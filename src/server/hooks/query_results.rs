//! Queries (`SELECT`, `VALUES`, `WITH`, set operations): run here, last of the hooks, so their
//! rows are encoded by [`crate::server::result_encoding`], which sends every type a query can
//! give (nested arrays, `Decimal256`, NULL intervals, maps, ...) where the default path of
//! datafusion-postgres fails or sends a wrong value.
//!
//! The extended protocol's hook is not told the result formats the client bound; the handler
//! leaves them in [`PortalResultFormat`] before each Execute.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{DataFrame, SessionContext};
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::QueryHook;
use pgwire::api::portal::Format;
use pgwire::api::results::Response;
use pgwire::api::ClientInfo;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::types::format::FormatOptions;

use crate::server::handler::{statement_deadline, statement_timeout_error};
use crate::server::result_encoding::encode_dataframe;

#[derive(Debug)]
pub struct QueryResultsHook;

/// The result formats of the portal being executed, for [`QueryResultsHook`].
#[derive(Debug, Default)]
pub struct PortalResultFormat(pub Mutex<Option<Format>>);

fn api_error(err: DataFusionError) -> PgWireError {
    PgWireError::ApiError(Box::new(err))
}

/// Waits for `planning` no longer than the session's `statement_timeout` (57014 after it).
async fn within_timeout(
    client: &dyn HookClient,
    planning: impl std::future::Future<Output = datafusion::error::Result<DataFrame>>,
) -> PgWireResult<DataFrame> {
    match statement_deadline(client) {
        Some(deadline) => tokio::time::timeout_at(deadline, planning)
            .await
            .map_err(|_| statement_timeout_error())?
            .map_err(api_error),
        None => planning.await.map_err(api_error),
    }
}

/// The session's time zone, in which timestamptz values are shown; UTC when the session has
/// none (after `RESET datafusion.execution.time_zone`), as a PostgreSQL session always has one.
pub(crate) fn display_zone(ctx: &SessionContext) -> Option<String> {
    let zone = ctx
        .state_ref()
        .read()
        .config()
        .options()
        .execution
        .time_zone
        .clone();
    Some(zone.unwrap_or_else(|| "UTC".to_owned()))
}

#[async_trait]
impl QueryHook for QueryResultsHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        if !matches!(statement, Statement::Query(_)) {
            return None;
        }
        let result = async {
            let sql = statement.to_string();
            let frame = within_timeout(client, session_context.sql(&sql)).await?;
            let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
            let zone = display_zone(session_context);
            let response =
                encode_dataframe(frame, &Format::UnifiedText, Some(options), zone.as_deref())
                    .await?;
            Ok(Response::Query(response))
        }
        .await;
        Some(result)
    }

    async fn handle_extended_parse_query(
        &self,
        _statement: &Statement,
        _session_context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        None
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        logical_plan: &LogicalPlan,
        params: &ParamValues,
        session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        if !matches!(statement, Statement::Query(_)) {
            return None;
        }
        // Without the bound formats (a portal the handler did not see), the default path runs.
        let format = client
            .session_extensions()
            .get::<PortalResultFormat>()?
            .0
            .lock()
            .expect("format lock")
            .take()?;
        let result = async {
            let plan = logical_plan
                .clone()
                .replace_params_with_values(params)
                .map_err(api_error)?;
            let frame = within_timeout(client, session_context.execute_logical_plan(plan)).await?;
            let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
            let zone = display_zone(session_context);
            let response = encode_dataframe(frame, &format, Some(options), zone.as_deref()).await?;
            Ok(Response::Query(response))
        }
        .await;
        Some(result)
    }
}
