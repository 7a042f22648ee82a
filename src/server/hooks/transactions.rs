//! `BEGIN`, `COMMIT`, `ROLLBACK`, `SAVEPOINT`, `RELEASE`, `ROLLBACK TO`: real transactions over
//! managed tables (see `engine::transaction` for the semantics), and PostgreSQL's
//! aborted-transaction rule: after an error inside a block, everything but `ROLLBACK`, `COMMIT`
//! and `ROLLBACK TO` an open savepoint is refused with 25P02.
//!
//! `ROLLBACK TO` is the one statement that leaves the aborted state without ending the block.
//! pgwire cannot make that move from a statement's response (an aborted block stays aborted
//! until it ends), so the query handler moves the connection back to "in a block" before the
//! statement runs, when [`leaves_aborted_state`] says it will (see `server::handler`).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::Schema;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{Ident, Statement};
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::QueryHook;
use pgwire::api::results::{Response, Tag};
use pgwire::api::ClientInfo;
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::response::{NoticeResponse, TransactionStatus};
use pgwire::messages::PgWireBackendMessage;

use super::placeholder_plan;
use crate::engine::transaction::{SavepointError, Transaction};

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
        Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Savepoint { .. }
            | Statement::ReleaseSavepoint { .. }
    )
}

/// A savepoint's name as PostgreSQL keeps it: unquoted names fold to lower case.
fn savepoint_name(name: &Ident) -> String {
    super::access::fold(name)
}

/// Whether `statement`, run on a connection whose transaction block has failed, is a
/// `ROLLBACK TO` an open savepoint, which brings the block back to working order.
pub fn leaves_aborted_state(statement: &Statement, ctx: &SessionContext) -> bool {
    let Statement::Rollback {
        savepoint: Some(name),
        ..
    } = statement
    else {
        return false;
    };
    transaction_of(ctx).is_ok_and(|transaction| transaction.has_savepoint(&savepoint_name(name)))
}

fn aborted_error() -> PgWireError {
    user_error(
        "25P02",
        "current transaction is aborted, commands ignored until end of transaction block",
    )
}

fn user_error(code: &str, message: &str) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        code.to_owned(),
        message.to_owned(),
    )))
}

fn savepoint_error(statement: &str, err: SavepointError) -> PgWireError {
    match err {
        SavepointError::NoTransaction => user_error(
            "25P01",
            &format!("{statement} can only be used in transaction blocks"),
        ),
        SavepointError::NotFound(name) => {
            user_error("3B001", &format!("savepoint \"{name}\" does not exist"))
        }
    }
}

/// `SAVEPOINT`, `RELEASE` and `ROLLBACK TO`, given the block's status.
fn savepoint_statement(
    statement: &Statement,
    transaction: &Transaction,
    status: TransactionStatus,
) -> Option<PgWireResult<Response>> {
    let result = match statement {
        Statement::Savepoint { name } => {
            if status == TransactionStatus::Error {
                return Some(Err(aborted_error()));
            }
            transaction
                .savepoint(&savepoint_name(name))
                .map(|()| Response::Execution(Tag::new("SAVEPOINT")))
                .map_err(|err| savepoint_error("SAVEPOINT", err))
        }
        Statement::ReleaseSavepoint { name } => {
            if status == TransactionStatus::Error {
                return Some(Err(aborted_error()));
            }
            transaction
                .release(&savepoint_name(name))
                .map(|()| Response::Execution(Tag::new("RELEASE")))
                .map_err(|err| savepoint_error("RELEASE SAVEPOINT", err))
        }
        Statement::Rollback {
            savepoint: Some(name),
            ..
        } => transaction
            .rollback_to(&savepoint_name(name))
            .map(|()| Response::Execution(Tag::new("ROLLBACK")))
            .map_err(|err| savepoint_error("ROLLBACK TO SAVEPOINT", err)),
        _ => return None,
    };
    Some(result)
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
            return Some(Err(aborted_error()));
        }
        return None;
    }
    if let Some(result) = savepoint_statement(statement, &transaction, status) {
        return Some(result);
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
            TransactionStatus::Error => Err(aborted_error()),
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
