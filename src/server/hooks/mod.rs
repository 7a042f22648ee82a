//! Statement hooks: each looks at a parsed statement and either answers it or returns `None`
//! ("not mine") so the next hook, and finally DataFusion, gets it.

pub mod access;
pub mod commands;
pub mod indexes;
pub mod postgres_settings;
pub mod query_results;
pub mod settings;
pub mod show;
pub mod transactions;
pub mod vector_insert;

use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use datafusion::common::ToDFSchema;
use datafusion::logical_expr::{EmptyRelation, LogicalPlan};
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::QueryHook;
use futures::stream;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response};
use pgwire::api::Type;
use pgwire::error::{PgWireError, PgWireResult};

/// The hooks every connection runs, in order.
pub fn all(
    runtime: Arc<crate::llm::Runtime>,
    _access: Arc<crate::access::Access>,
) -> Vec<Arc<dyn QueryHook>> {
    vec![
        Arc::new(transactions::TransactionHook),
        Arc::new(access::AccessHook),
        Arc::new(settings::LmSettingsHook { runtime }),
        Arc::new(show::ServerVersionHook),
        Arc::new(postgres_settings::PostgresSettingsHook),
        Arc::new(indexes::IndexHook),
        Arc::new(commands::CommandTagHook),
        Arc::new(CursorStatementHook),
        Arc::new(SetShowHook),
        Arc::new(vector_insert::VectorInsertHook),
        // Last: it answers every query the hooks before it leave.
        Arc::new(query_results::QueryResultsHook),
    ]
}

/// A one-row, one-column text result, as `SHOW` returns.
pub fn single_text_row(name: &str, value: &str) -> PgWireResult<Response> {
    let fields = Arc::new(vec![FieldInfo::new(
        name.to_owned(),
        None,
        None,
        Type::TEXT,
        FieldFormat::Text,
    )]);
    let mut encoder = DataRowEncoder::new(fields.clone());
    encoder.encode_field(&Some(value))?;
    let row = encoder.take_row();
    Ok(Response::Query(QueryResponse::new(
        fields,
        Box::pin(stream::once(async move { Ok(row) })),
    )))
}

/// The plan a hook hands the extended protocol for a statement it answers itself.
pub fn placeholder_plan(schema: Schema) -> PgWireResult<LogicalPlan> {
    let schema = schema
        .to_dfschema_ref()
        .map_err(|err| PgWireError::ApiError(Box::new(err)))?;
    Ok(LogicalPlan::EmptyRelation(EmptyRelation {
        produce_one_row: false,
        schema,
    }))
}
