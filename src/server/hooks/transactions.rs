//! `BEGIN`, `COMMIT`, `ROLLBACK`: real transactions over managed tables (see
//! `engine::transaction` for the semantics), and PostgreSQL's aborted-transaction rule: after an
//! error inside a block, everything but `ROLLBACK`/`COMMIT` is refused with 25P02.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::Schema;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::QueryHook;
use pgwire::api::results::{Response, Tag};
use pgwire::api::ClientInfo;
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::response::{NoticeResponse, TransactionStatus};
use pgwire::messages::PgWireBackendMessage;

use super::placeholder_plan;
use crate::engine::transaction::Transaction;

#[derive(Debug)]
pub struct TransactionHook;

fn transaction_of(ctx: &SessionContext) -> PgWireResult<Arc<Transaction>> {
    ctx.state()
        .config()
        .get_extension::<Transaction>()
        .ok_or_else(|| PgWireError::ApiError("session has no transaction state".into()))
}

fn is_transaction_statement(statement: &Statement) -> bool {
    matches!(
        statement,
        Statement::StartTransaction { .. } | Statement::Commit { .. } | Statement::Rollback { .. }
    )
}

async fn warn(client: &mut dyn HookClient, code: &str, message: &str) -> PgWireResult<()> {
    let notice = ErrorInfo::new("WARNING".to_owned(), code.to_owned(), message.to_owned());
    client
        .send_message(PgWireBackendMessage::NoticeResponse(NoticeResponse::from(
            notice,
        )))
        .await
}

async fn respond(
    statement: &Statement,
    ctx: &SessionContext,
    client: &mut dyn HookClient,
) -> Option<PgWireResult<Response>> {
    let transaction = match transaction_of(ctx) {
        Ok(transaction) => transaction,
        Err(err) => return Some(Err(err)),
    };
    // pgwire updates the client's status only after a whole simple query, so within
    // `BEGIN; ...; COMMIT` our own record of the block is the one to trust; an aborted block
    // is only known to pgwire (it marks it after the error).
    let status = match client.transaction_status() {
        TransactionStatus::Error => TransactionStatus::Error,
        _ if transaction.in_explicit_block() => TransactionStatus::Transaction,
        _ => TransactionStatus::Idle,
    };
    if !is_transaction_statement(statement) {
        if status == TransactionStatus::Error {
            return Some(Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "ERROR".to_owned(),
                "25P02".to_owned(),
                "current transaction is aborted, commands ignored until end of transaction block"
                    .to_owned(),
            )))));
        }
        return None;
    }
    let result = match statement {
        Statement::StartTransaction { .. } => match status {
            TransactionStatus::Idle => {
                transaction.begin();
                Ok(Response::TransactionStart(Tag::new("BEGIN")))
            }
            TransactionStatus::Transaction => warn(
                client,
                "25001",
                "there is already a transaction in progress",
            )
            .await
            .map(|_| Response::Execution(Tag::new("BEGIN"))),
            TransactionStatus::Error => Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "ERROR".to_owned(),
                "25P02".to_owned(),
                "current transaction is aborted, commands ignored until end of transaction block"
                    .to_owned(),
            )))),
        },
        Statement::Commit { .. } => match status {
            TransactionStatus::Transaction => match transaction.commit().await {
                Ok(()) => Ok(Response::TransactionEnd(Tag::new("COMMIT"))),
                Err(err) => Err(PgWireError::ApiError(Box::new(err))),
            },
            // PostgreSQL answers COMMIT of a failed transaction by rolling it back.
            TransactionStatus::Error => {
                transaction.rollback();
                Ok(Response::TransactionEnd(Tag::new("ROLLBACK")))
            }
            TransactionStatus::Idle => {
                transaction.rollback();
                warn(client, "25P01", "there is no transaction in progress")
                    .await
                    .map(|_| Response::TransactionEnd(Tag::new("COMMIT")))
            }
        },
        _ => {
            transaction.rollback();
            if status == TransactionStatus::Idle {
                warn(client, "25P01", "there is no transaction in progress")
                    .await
                    .map(|_| Response::TransactionEnd(Tag::new("ROLLBACK")))
            } else {
                Ok(Response::TransactionEnd(Tag::new("ROLLBACK")))
            }
        }
    };
    Some(result)
}

#[async_trait]
impl QueryHook for TransactionHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        respond(statement, session_context, client).await
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        is_transaction_statement(statement).then(|| placeholder_plan(Schema::empty()))
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _logical_plan: &LogicalPlan,
        _params: &ParamValues,
        session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        respond(statement, session_context, client).await
    }
}
