//! The `semsql` schema: read-only tables computed on each scan from the LM runtime.
//!
//! - `semsql.models`: every model, its source and options (header values and keys never shown);
//! - `semsql.llm_requests`: the last requests sent to models (prompt text only for sessions with
//!   `semsql.log_prompts = on`);
//! - `semsql.llm_queries`: per-query usage of the last queries that called a model;
//! - `semsql.llm_cache`: the answer cache's hits, misses and sizes;
//! - `semsql.secrets`: the named secrets, where each is read from and which models use it
//!   (superusers only: other roles see no rows; no value is ever shown).

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider, Session, TableProvider};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableType;
use datafusion::error::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use crate::llm::models::displayed_options;
use crate::llm::Runtime;

pub const SYSTEM_SCHEMA: &str = "semsql";

/// Which table.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Models,
    Requests,
    Queries,
    Cache,
    Secrets,
}

#[derive(Debug)]
struct SystemTable {
    kind: Kind,
    schema: SchemaRef,
    runtime: Arc<Runtime>,
}

fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
}

fn micros(at: SystemTime) -> i64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_micros() as i64)
}

impl Kind {
    fn schema(self) -> SchemaRef {
        let text = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
        let int = |name: &str| Field::new(name, DataType::Int64, false);
        let float = |name: &str| Field::new(name, DataType::Float64, false);
        Arc::new(Schema::new(match self {
            Kind::Models => vec![
                text("name", false),
                text("source", false),
                text("base_url", false),
                text("model", false),
                text("api_key_env", true),
                text("rows_per_request", false),
                text("calibration", true),
                int("concurrency"),
                Field::new("is_default", DataType::Boolean, false),
                text("options", false),
            ],
            Kind::Requests => vec![
                Field::new("at", timestamp_type(), false),
                int("query_id"),
                text("model", false),
                text("endpoint", false),
                text("function", false),
                int("rows"),
                int("attempt"),
                text("status", false),
                Field::new("http_status", DataType::Int64, true),
                float("latency_ms"),
                int("input_tokens"),
                int("output_tokens"),
                text("prompt", true),
            ],
            Kind::Queries => vec![
                Field::new("finished", timestamp_type(), false),
                int("query_id"),
                text("models", false),
                int("rows"),
                int("requests"),
                int("rows_sent"),
                int("cache_hits"),
                int("input_tokens"),
                int("output_tokens"),
                int("retries"),
                float("estimated_cost"),
                float("lm_wait_ms"),
                float("elapsed_ms"),
                text("sql", true),
            ],
            Kind::Secrets => vec![
                text("name", false),
                text("source", false),
                text("kind", false),
                text("location", false),
                text("used_by", true),
            ],
            Kind::Cache => vec![
                text("tier", false),
                Field::new("entries", DataType::Int64, true),
                Field::new("bytes", DataType::Int64, true),
                int("hits"),
                int("misses"),
                int("writes"),
                int("corrupt_values"),
                int("rebuilds"),
            ],
        }))
    }

    /// `viewer`: who may read the prompt and SQL texts of a record's role (`None`: everyone's,
    /// for superusers and the server's own sessions).
    fn batch(
        self,
        runtime: &Runtime,
        schema: SchemaRef,
        viewer: Option<&str>,
    ) -> Result<RecordBatch> {
        // As PostgreSQL's pg_stat_activity hides other roles' query text.
        let visible = |role: &Option<String>, text: &Option<String>| match viewer {
            Some(viewer) if role.as_deref() != Some(viewer) => None,
            _ => text.clone(),
        };
        let columns: Vec<ArrayRef> = match self {
            Kind::Models => {
                let models = runtime.models();
                let default = runtime.default_model();
                vec![
                    strings(models.iter().map(|m| Some(m.name.clone()))),
                    strings(models.iter().map(|m| Some(m.source.name().to_owned()))),
                    strings(models.iter().map(|m| Some(m.options.base_url.clone()))),
                    strings(models.iter().map(|m| Some(m.options.model.clone()))),
                    strings(models.iter().map(|m| m.options.api_key_env.clone())),
                    strings(
                        models
                            .iter()
                            .map(|m| Some(m.options.rows_per_request.to_string())),
                    ),
                    strings(models.iter().map(|m| {
                        let calibrations = runtime.calibrations.of_model(&m.name, &m.options);
                        (!calibrations.is_empty()).then(|| {
                            calibrations
                                .iter()
                                .map(|(function, c)| format!("{function}: {}", c.summary()))
                                .collect::<Vec<_>>()
                                .join("; ")
                        })
                    })),
                    ints(models.iter().map(|m| m.options.concurrency as i64)),
                    Arc::new(BooleanArray::from_iter(
                        models
                            .iter()
                            .map(|m| Some(Some(m.name.as_str()) == default)),
                    )),
                    strings(models.iter().map(|m| Some(displayed_options(&m.raw)))),
                ]
            }
            Kind::Requests => {
                let log = runtime.activity.requests();
                vec![
                    timestamps(log.iter().map(|r| r.at)),
                    ints(log.iter().map(|r| r.query_id as i64)),
                    strings(log.iter().map(|r| Some(r.model.clone()))),
                    strings(log.iter().map(|r| Some(r.endpoint.to_owned()))),
                    strings(log.iter().map(|r| Some(r.function.clone()))),
                    ints(log.iter().map(|r| r.rows as i64)),
                    ints(log.iter().map(|r| r.attempt as i64)),
                    strings(log.iter().map(|r| Some(r.status.clone()))),
                    Arc::new(Int64Array::from_iter(
                        log.iter().map(|r| r.http_status.map(i64::from)),
                    )),
                    floats(log.iter().map(|r| r.latency_ms)),
                    ints(log.iter().map(|r| r.input_tokens as i64)),
                    ints(log.iter().map(|r| r.output_tokens as i64)),
                    strings(log.iter().map(|r| visible(&r.role, &r.prompt))),
                ]
            }
            Kind::Queries => {
                let log = runtime.activity.queries();
                vec![
                    timestamps(log.iter().map(|q| q.finished)),
                    ints(log.iter().map(|q| q.usage.query_id as i64)),
                    strings(log.iter().map(|q| Some(q.usage.models.join(", ")))),
                    ints(log.iter().map(|q| q.usage.rows_total as i64)),
                    ints(log.iter().map(|q| q.usage.requests as i64)),
                    ints(log.iter().map(|q| q.usage.rows_sent as i64)),
                    ints(log.iter().map(|q| q.usage.cache_hits as i64)),
                    ints(log.iter().map(|q| q.usage.input_tokens as i64)),
                    ints(log.iter().map(|q| q.usage.output_tokens as i64)),
                    ints(log.iter().map(|q| q.usage.retries as i64)),
                    floats(log.iter().map(|q| q.usage.cost)),
                    floats(log.iter().map(|q| q.usage.lm_wait_ms)),
                    floats(log.iter().map(|q| q.usage.elapsed_ms)),
                    strings(log.iter().map(|q| visible(&q.role, &q.sql))),
                ]
            }
            Kind::Secrets => {
                let secrets = match viewer {
                    Some(_) => Vec::new(),
                    None => runtime.secrets.list(),
                };
                let models = runtime.models();
                let users = |name: &str| {
                    let users: Vec<&str> = models
                        .iter()
                        .filter(|model| model.options.api_key_secret.as_deref() == Some(name))
                        .map(|model| model.name.as_str())
                        .collect();
                    (!users.is_empty()).then(|| users.join(", "))
                };
                vec![
                    strings(secrets.iter().map(|(name, _)| Some(name.clone()))),
                    strings(
                        secrets
                            .iter()
                            .map(|(_, secret)| Some(secret.origin_name().to_owned())),
                    ),
                    strings(
                        secrets
                            .iter()
                            .map(|(_, secret)| Some(secret.source.kind().to_owned())),
                    ),
                    strings(
                        secrets
                            .iter()
                            .map(|(_, secret)| Some(secret.source.location())),
                    ),
                    strings(secrets.iter().map(|(name, _)| users(name))),
                ]
            }
            Kind::Cache => {
                use std::sync::atomic::Ordering::Relaxed;
                let counters = &runtime.cache.counters;
                let (memory_entries, memory_bytes, disk_entries) = runtime.cache.sizes();
                vec![
                    strings(
                        ["memory", "disk"]
                            .map(|tier| Some(tier.to_owned()))
                            .into_iter(),
                    ),
                    Arc::new(Int64Array::from(vec![
                        Some(memory_entries as i64),
                        disk_entries.map(|entries| entries as i64),
                    ])),
                    Arc::new(Int64Array::from(vec![Some(memory_bytes as i64), None])),
                    ints(
                        [
                            counters.memory_hits.load(Relaxed),
                            counters.disk_hits.load(Relaxed),
                        ]
                        .map(|n| n as i64)
                        .into_iter(),
                    ),
                    // A miss in memory that the disk answered is a disk hit, not a miss.
                    ints(
                        [
                            counters.disk_hits.load(Relaxed) + counters.misses.load(Relaxed),
                            counters.misses.load(Relaxed),
                        ]
                        .map(|n| n as i64)
                        .into_iter(),
                    ),
                    ints(
                        [counters.writes.load(Relaxed); 2]
                            .map(|n| n as i64)
                            .into_iter(),
                    ),
                    ints(
                        [0, counters.corrupt_values.load(Relaxed)]
                            .map(|n| n as i64)
                            .into_iter(),
                    ),
                    ints(
                        [0, counters.rebuilds.load(Relaxed)]
                            .map(|n| n as i64)
                            .into_iter(),
                    ),
                ]
            }
        };
        Ok(RecordBatch::try_new(schema, columns)?)
    }
}

fn strings(values: impl Iterator<Item = Option<String>>) -> ArrayRef {
    Arc::new(values.collect::<StringArray>())
}

fn ints(values: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(values.map(Some).collect::<Int64Array>())
}

fn floats(values: impl Iterator<Item = f64>) -> ArrayRef {
    Arc::new(values.map(Some).collect::<Float64Array>())
}

fn timestamps(values: impl Iterator<Item = SystemTime>) -> ArrayRef {
    Arc::new(
        values
            .map(|at| Some(micros(at)))
            .collect::<TimestampMicrosecondArray>()
            .with_timezone("+00:00"),
    )
}

#[async_trait]
impl TableProvider for SystemTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if matches!(self.kind, Kind::Cache) {
            self.runtime.cache.settle().await;
        }
        let viewer = crate::access::caller_of(state.config_options())
            .filter(|(access, role)| !access.is_superuser(role))
            .map(|(_, role)| role);
        let batch = self
            .kind
            .batch(&self.runtime, self.schema.clone(), viewer.as_deref())?;
        let exec = MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.schema.clone(),
            projection.cloned(),
        )?;
        Ok(exec)
    }
}

/// The `semsql` schema over `runtime`.
pub fn schema(runtime: Arc<Runtime>) -> Result<Arc<dyn SchemaProvider>> {
    let schema = MemorySchemaProvider::new();
    for (name, kind) in [
        ("models", Kind::Models),
        ("llm_requests", Kind::Requests),
        ("llm_queries", Kind::Queries),
        ("llm_cache", Kind::Cache),
        ("secrets", Kind::Secrets),
    ] {
        schema.register_table(
            name.to_owned(),
            Arc::new(SystemTable {
                kind,
                schema: kind.schema(),
                runtime: runtime.clone(),
            }),
        )?;
    }
    Ok(Arc::new(schema))
}
