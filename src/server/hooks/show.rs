//! `SHOW server_version` and friends: answered as PostgreSQL 15 would, because drivers parse them
//! (the generic SET/SHOW hook would answer with DataFusion's version); and `SHOW` of DataFusion's
//! own settings, which that hook does not know.

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::QueryHook;
use pgwire::api::results::Response;
use pgwire::api::ClientInfo;
use pgwire::error::PgWireResult;

use super::{placeholder_plan, single_text_row};
use crate::engine::functions::{POSTGRES_VERSION, POSTGRES_VERSION_NUM};

#[derive(Debug)]
pub struct ServerVersionHook;

/// The variable a `SHOW` statement names and the value we answer, if it is one of ours.
fn answer(statement: &Statement, ctx: &SessionContext) -> Option<(String, String)> {
    let Statement::ShowVariable { variable } = statement else {
        return None;
    };
    let name = variable
        .iter()
        .map(|ident| ident.value.to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(" ");
    let dotted = variable
        .iter()
        .map(|ident| ident.value.to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(".");
    let value = match name.as_str() {
        "server_version" => POSTGRES_VERSION.to_owned(),
        "server_version_num" => POSTGRES_VERSION_NUM.to_owned(),
        "transaction_isolation" | "transaction isolation level" => "read committed".to_owned(),
        // DataFusion's own settings (`SET datafusion.execution.batch_size = ...`).
        _ if dotted.starts_with("datafusion.") => {
            let entry = ctx
                .state()
                .config()
                .options()
                .entries()
                .into_iter()
                .find(|entry| entry.key == dotted)?;
            return Some((dotted, entry.value.unwrap_or_default()));
        }
        _ => return None,
    };
    let column = if name.starts_with("transaction") {
        "transaction_isolation".to_owned()
    } else {
        name
    };
    Some((column, value))
}

#[async_trait]
impl QueryHook for ServerVersionHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        answer(statement, session_context).map(|(name, value)| single_text_row(&name, &value))
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        session_context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        answer(statement, session_context).map(|(name, _)| {
            placeholder_plan(Schema::new(vec![Field::new(name, DataType::Utf8, false)]))
        })
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _logical_plan: &LogicalPlan,
        _params: &ParamValues,
        session_context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        answer(statement, session_context).map(|(name, value)| single_text_row(&name, &value))
    }
}
