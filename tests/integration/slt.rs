//! Runs every `sqllogictest/*.slt` file twice: in-process against the engine (rows encoded by the
//! same text encoder the wire uses) and over the wire against a started server, so a wire-level
//! type or format regression shows up as a difference between the two runs.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion_postgres::arrow_pg::datatypes::df::encode_dataframe;
use futures::StreamExt;
use pgwire::api::portal::Format;
use semsql::engine::Engine;
use semsql::server::copy::text_fields;
use sqllogictest::{DBOutput, DefaultColumnType, Runner};
use tokio_postgres::SimpleQueryMessage;

use semsql::config::{Config, FileConfig};
use semsql::fake_llm::{Behaviour, FakeLlm};

use crate::support::TestServer;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct SltError(String);

/// The engine without the network.
struct InProcess {
    ctx: SessionContext,
    _dir: tempfile::TempDir,
}

/// A text-format DataRow as .slt values (`NULL` for NULL).
fn decode_text_row(data: &[u8], fields: usize) -> Vec<String> {
    text_fields(data, fields)
        .iter()
        .map(|value| {
            value
                .as_deref()
                .map_or_else(|| "NULL".to_owned(), normalize)
        })
        .collect()
}

/// Empty strings are written `(empty)` in .slt files.
fn normalize(value: &str) -> String {
    if value.is_empty() {
        "(empty)".to_owned()
    } else {
        value.to_owned()
    }
}

#[async_trait]
impl sqllogictest::AsyncDB for InProcess {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        let err = |e: &dyn std::fmt::Display| SltError(e.to_string());
        // The server's rewrites of the SQL text apply here too.
        let rewritten = semsql::server::compat::rewrite(sql);
        let sql = rewritten.as_deref().unwrap_or(sql);
        let with_vectors = semsql::server::hooks::vector_insert::rewrite_sql(&self.ctx, sql).await;
        let sql = with_vectors.as_deref().unwrap_or(sql);
        let frame = self.ctx.sql(sql).await.map_err(|e| err(&e))?;
        if matches!(
            frame.logical_plan(),
            LogicalPlan::Ddl(_) | LogicalPlan::Dml(_) | LogicalPlan::Statement(_)
        ) {
            let batches = frame.collect().await.map_err(|e| err(&e))?;
            let count = batches
                .iter()
                .filter_map(|b| b.column_by_name("count"))
                .filter_map(|c| {
                    c.as_any()
                        .downcast_ref::<datafusion::arrow::array::UInt64Array>()
                        .map(|a| a.value(0))
                })
                .sum();
            return Ok(DBOutput::StatementComplete(count));
        }
        let width = frame.schema().fields().len();
        let response = encode_dataframe(frame, &Format::UnifiedText, None)
            .await
            .map_err(|e| err(&e))?;
        // PostgreSQL's text for floats and times, as the server prints it.
        let pgwire::api::results::Response::Query(mut response) =
            semsql::server::text_output::postgres_text(
                pgwire::api::results::Response::Query(response),
                Some("+00:00"),
            )
        else {
            unreachable!("a query stays a query");
        };
        let mut rows = Vec::new();
        while let Some(row) = response.data_rows().next().await {
            let row = row.map_err(|e| err(&e))?;
            rows.push(decode_text_row(&row.data, width));
        }
        Ok(DBOutput::Rows {
            types: vec![DefaultColumnType::Any; width],
            rows,
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "in-process"
    }
}

/// A tokio-postgres client over the wire.
struct OverWire {
    client: tokio_postgres::Client,
}

#[async_trait]
impl sqllogictest::AsyncDB for OverWire {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        let messages = self.client.simple_query(sql).await.map_err(|e| {
            SltError(
                e.as_db_error()
                    .map_or_else(|| e.to_string(), |db| db.message().to_owned()),
            )
        })?;
        let mut rows = Vec::new();
        let mut width = None;
        let mut complete = None;
        for message in messages {
            match message {
                SimpleQueryMessage::RowDescription(columns) => width = Some(columns.len()),
                SimpleQueryMessage::Row(row) => {
                    width = Some(row.len());
                    rows.push(
                        (0..row.len())
                            .map(|i| row.get(i).map_or_else(|| "NULL".to_owned(), normalize))
                            .collect(),
                    );
                }
                SimpleQueryMessage::CommandComplete(count) => complete = Some(count),
                _ => {}
            }
        }
        match width {
            Some(width) => Ok(DBOutput::Rows {
                types: vec![DefaultColumnType::Any; width],
                rows,
            }),
            None => Ok(DBOutput::StatementComplete(complete.unwrap_or(0))),
        }
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "wire"
    }
}

fn slt_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sqllogictest");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("sqllogictest folder")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    files
}

/// The fake model server every file may use as the default model `fake`.
async fn fake_model() -> (FakeLlm, String) {
    let fake = FakeLlm::start("127.0.0.1:0", Behaviour::default())
        .await
        .expect("fake LM starts");
    let config = format!(
        "[llm]\ndefault_model = 'fake'\n[models.fake]\nbase_url = '{}'\nmodel = 'fake-1'\nrows_per_request = 16\n",
        fake.base_url()
    );
    (fake, config)
}

#[tokio::test]
async fn sqllogictest_in_process() {
    let (_fake, config) = fake_model().await;
    let file_config: FileConfig = toml::from_str(&config).unwrap();
    let llm = Config::resolve(file_config, Default::default())
        .unwrap()
        .llm;
    for file in slt_files() {
        let llm = llm.clone();
        let mut runner = Runner::new(move || {
            let llm = llm.clone();
            async move {
                let dir = tempfile::tempdir().map_err(|e| SltError(e.to_string()))?;
                let engine = Engine::open(dir.path(), &llm)
                    .await
                    .map_err(|e| SltError(e.to_string()))?;
                Ok(InProcess {
                    ctx: engine.session("semsql"),
                    _dir: dir,
                })
            }
        });
        if let Err(err) = runner.run_file_async(&file).await {
            panic!("{} (in-process): {err}", file.display());
        }
    }
}

#[tokio::test]
async fn sqllogictest_over_the_wire() {
    let (_fake, config) = fake_model().await;
    for file in slt_files() {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start_in(dir.path(), toml::from_str(&config).unwrap()).await;
        let connection_string = server.connection_string();
        let mut runner = Runner::new(move || {
            let connection_string = connection_string.clone();
            async move {
                Ok::<_, SltError>(OverWire {
                    client: crate::support::connect(&connection_string).await,
                })
            }
        });
        if let Err(err) = runner.run_file_async(&file).await {
            panic!("{} (wire): {err}", file.display());
        }
        server.stop().await;
    }
}
