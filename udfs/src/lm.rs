//! The language-model interface the SQL functions are written against.
//!
//! A function hands the runtime a whole column of rows at once ([`LmRuntime::complete_rows`]);
//! the runtime (semsql's `src/llm/`) drops duplicates, answers from its cache, packs many rows
//! per request, retries, rate-limits and accounts. Functions never see HTTP: they depend on this
//! trait only, so the same function works against any provider the runtime knows.

use std::any::Any;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use datafusion::common::config::{ConfigEntry, ConfigExtension, ExtensionOptions};
use datafusion::error::{DataFusionError, Result};
use serde_json::Value;

/// What a model must answer for each row; the runtime validates every answer against it.
#[derive(Debug, Clone, PartialEq)]
pub enum AnswerKind {
    /// `true` or `false`.
    Boolean,
    /// Free text.
    Text,
    /// A number within `[min, max]`.
    Number { min: f64, max: f64 },
    /// Exactly one of the labels.
    Label(Vec<String>),
    /// A JSON object with the given JSON schema.
    Object(Value),
    /// The row's arguments are candidates: the 0-based positions of its best `top` arguments
    /// (all of them when it has fewer), best first, each once.
    Ranking { top: usize },
}

/// One semantic task over many rows.
#[derive(Debug, Clone)]
pub struct LmTask {
    /// The SQL function asking, for logs and errors.
    pub function: &'static str,
    /// A model name; `None` uses the session's `semsql.model`.
    pub model: Option<String>,
    /// The user's prompt; `{0}`, `{1}`, ... stand for a row's arguments.
    pub instruction: String,
    pub answer: AnswerKind,
    /// Overrides the model's sampling temperature.
    pub temperature: Option<f64>,
    /// Overrides the model's output limit per answer.
    pub max_tokens: Option<u32>,
}

/// The runtime every LM-backed function calls.
#[async_trait]
pub trait LmRuntime: Send + Sync + fmt::Debug {
    /// Answers `task` for every row, in row order. A `None` row (a NULL argument) is answered
    /// `None` without a request; so is a row the model could not answer when the session chose
    /// `semsql.on_llm_error = 'null'`. Any other failure is an error naming the row.
    async fn complete_rows(
        &self,
        settings: &LmSettings,
        task: &LmTask,
        rows: Vec<Option<Vec<String>>>,
    ) -> Result<Vec<Option<Value>>>;

    /// Embeds every text, in order; `None` stays `None`.
    async fn embed(
        &self,
        settings: &LmSettings,
        model: Option<&str>,
        texts: Vec<Option<String>>,
    ) -> Result<Vec<Option<Vec<f32>>>>;
}

/// Who runs a query, as the server's access control knows them: set by the server on each
/// connection's session, never by SQL (it is not one of [`LmSettings::NAMES`]). A session
/// without one is the server's own (restoring views at start, benchmarks).
pub trait Caller: std::fmt::Debug + Send + Sync {
    /// The role the connection logged in as.
    fn role(&self) -> &str;
    /// Whether the role is a superuser right now (roles can be altered while connected).
    fn is_superuser(&self) -> bool;
    /// `Ok` when the role may call `model` (its owner, USAGE granted, or a superuser);
    /// otherwise the 42501 error to report.
    fn may_use_model(&self, model: &str) -> std::result::Result<(), LmError>;
    /// For the server to reach its own implementation.
    fn as_any(&self) -> &dyn Any;
}

/// An LM failure, with the SQLSTATE the server reports for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LmError {
    pub sqlstate: &'static str,
    pub message: String,
}

impl LmError {
    /// The model service failed or refused (PostgreSQL's class 38, external routine exception).
    pub fn service(message: impl Into<String>) -> Self {
        Self::new("38000", message)
    }

    /// A model's answer could not be parsed or did not fit the task.
    pub fn unparseable(message: impl Into<String>) -> Self {
        Self::new("22P02", message)
    }

    /// A per-query budget would be exceeded.
    pub fn budget(message: impl Into<String>) -> Self {
        Self::new("53400", message)
    }

    pub fn undefined_model(name: &str) -> Self {
        Self::new(
            "42704",
            format!(
                "model \"{name}\" does not exist (CREATE MODEL adds one; SHOW MODELS lists them)"
            ),
        )
    }

    pub fn new(sqlstate: &'static str, message: impl Into<String>) -> Self {
        Self {
            sqlstate,
            message: message.into(),
        }
    }

    pub fn into_datafusion(self) -> DataFusionError {
        DataFusionError::External(Box::new(self))
    }
}

impl fmt::Display for LmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for LmError {}

/// `semsql.cache`: whether answers are read from and written to the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    On,
    Off,
    /// Answers only from the cache; a miss is an error (reproducible runs).
    Replay,
}

/// `semsql.on_llm_error`: what a row whose answer cannot be parsed becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnLmError {
    /// The query fails, naming the row.
    Error,
    /// The row's result is NULL.
    Null,
}

/// The `semsql.*` session settings (`SET semsql.model = 'fast'`), kept in DataFusion's config so
/// that every function call sees the values its query was planned with.
#[derive(Debug, Clone)]
pub struct LmSettings {
    /// The default model of the session; empty means the server's default.
    pub model: String,
    pub cache: CacheMode,
    /// Cache answers of requests with a temperature above 0 too.
    pub cache_nondeterministic: bool,
    pub on_llm_error: OnLmError,
    /// At most this many requests per query; 0 is unlimited.
    pub max_llm_requests: u64,
    /// At most this many tokens (input and output) per query; 0 is unlimited.
    pub max_llm_tokens: u64,
    /// Keep prompt text in `semsql.llm_requests`.
    pub log_prompts: bool,
    /// How often a running query reports progress, in milliseconds; 0 never.
    pub progress_interval_ms: u64,
    /// The model `embed()` uses when the call names none: `local` (the in-process model) by
    /// default.
    pub embedding_model: String,
    /// In a semantic join, ask about each left row's this many nearest right rows by
    /// embedding only; 0 asks about every pair.
    pub join_candidates: u64,
    /// `hnsw.ef_search` (pgvector's name): the beam width of an HNSW index search, 1 to 1000.
    pub hnsw_ef_search: u64,
    /// `hnsw.iterative_scan`: accepted for pgvector scripts (`off`, `relaxed_order`,
    /// `strict_order`) and shown back; searches always widen in strict order.
    pub hnsw_iterative_scan: String,
    /// `semsql.rewrite`: `off` (no LM query rewriting at all), `advise` (EXPLAIN REWRITE, and a
    /// NOTICE when a verified rewrite of a query is known) or `auto` (slow queries get a
    /// background search; later runs use the accepted rewrite).
    pub rewrite: String,
    /// In `auto`, a query running longer than this many milliseconds gets a rewrite search.
    pub rewrite_min_ms: u64,
    /// Caps on one rewrite search: LM requests, tokens (input and output) and wall time.
    pub rewrite_max_requests: u64,
    pub rewrite_max_tokens: u64,
    pub rewrite_timeout_ms: u64,
    /// The running query's usage. Set by the server for each query; shared by every call of
    /// the query (clones share it on purpose: it is the query's accounting, not a setting).
    pub usage: Option<Arc<QueryUsage>>,
    /// Who runs the session's queries (see [`Caller`]); like `usage`, not a setting.
    pub caller: Option<Arc<dyn Caller>>,
}

impl Default for LmSettings {
    fn default() -> Self {
        Self {
            model: String::new(),
            cache: CacheMode::On,
            cache_nondeterministic: false,
            on_llm_error: OnLmError::Error,
            max_llm_requests: 0,
            max_llm_tokens: 0,
            log_prompts: false,
            progress_interval_ms: 5000,
            join_candidates: 0,
            hnsw_ef_search: 40,
            hnsw_iterative_scan: "off".to_owned(),
            rewrite: "advise".to_owned(),
            rewrite_min_ms: 1000,
            rewrite_max_requests: 8,
            rewrite_max_tokens: 40_000,
            rewrite_timeout_ms: 120_000,
            embedding_model: "local".to_owned(),
            usage: None,
            caller: None,
        }
    }
}

impl LmSettings {
    /// The role of the session's [`Caller`], if the server set one.
    pub fn caller_role(&self) -> Option<String> {
        self.caller.as_ref().map(|caller| caller.role().to_owned())
    }

    /// Every setting's name, for `SHOW` and error messages.
    pub const NAMES: [&'static str; 17] = [
        "model",
        "cache",
        "cache_nondeterministic",
        "on_llm_error",
        "max_llm_requests",
        "max_llm_tokens",
        "log_prompts",
        "progress_interval_ms",
        "join_candidates",
        "embedding_model",
        "hnsw.ef_search",
        "hnsw.iterative_scan",
        "rewrite",
        "rewrite_min_ms",
        "rewrite_max_requests",
        "rewrite_max_tokens",
        "rewrite_timeout_ms",
    ];

    /// A setting's full name: ours carry `semsql.`, pgvector's keep theirs (`hnsw.ef_search`).
    pub fn qualified(name: &str) -> String {
        if name.starts_with("hnsw.") {
            name.to_owned()
        } else {
            format!("semsql.{name}")
        }
    }

    /// The settings of a running function call (defaults when the session set none).
    pub fn of(options: &datafusion::config::ConfigOptions) -> LmSettings {
        options
            .extensions
            .get::<LmSettings>()
            .cloned()
            .unwrap_or_default()
    }

    /// The session's settings, to change them (registered with their defaults if missing).
    pub fn of_mut(options: &mut datafusion::config::ConfigOptions) -> &mut LmSettings {
        if options.extensions.get::<LmSettings>().is_none() {
            options.extensions.insert(LmSettings::default());
        }
        options
            .extensions
            .get_mut::<LmSettings>()
            .expect("registered above")
    }

    /// The value of one setting, as `SHOW` prints it.
    pub fn get(&self, name: &str) -> Option<String> {
        Some(match name {
            "model" => self.model.clone(),
            "cache" => match self.cache {
                CacheMode::On => "on",
                CacheMode::Off => "off",
                CacheMode::Replay => "replay",
            }
            .to_owned(),
            "cache_nondeterministic" => on_off(self.cache_nondeterministic),
            "on_llm_error" => match self.on_llm_error {
                OnLmError::Error => "error",
                OnLmError::Null => "null",
            }
            .to_owned(),
            "max_llm_requests" => self.max_llm_requests.to_string(),
            "max_llm_tokens" => self.max_llm_tokens.to_string(),
            "log_prompts" => on_off(self.log_prompts),
            "progress_interval_ms" => self.progress_interval_ms.to_string(),
            "join_candidates" => self.join_candidates.to_string(),
            "embedding_model" => self.embedding_model.clone(),
            "hnsw.ef_search" => self.hnsw_ef_search.to_string(),
            "hnsw.iterative_scan" => self.hnsw_iterative_scan.clone(),
            "rewrite" => self.rewrite.clone(),
            "rewrite_min_ms" => self.rewrite_min_ms.to_string(),
            "rewrite_max_requests" => self.rewrite_max_requests.to_string(),
            "rewrite_max_tokens" => self.rewrite_max_tokens.to_string(),
            "rewrite_timeout_ms" => self.rewrite_timeout_ms.to_string(),
            _ => return None,
        })
    }

    /// Sets one setting from its SQL text, checking the value.
    pub fn set_value(&mut self, name: &str, value: &str) -> std::result::Result<(), LmError> {
        let invalid = |expected: &str| {
            LmError::new(
                "22023",
                format!(
                    "invalid value for parameter \"{}\": \"{value}\" (expected {expected})",
                    Self::qualified(name)
                ),
            )
        };
        let lowered = value.trim().to_ascii_lowercase();
        let number = || {
            lowered
                .parse::<u64>()
                .map_err(|_| invalid("a whole number ≥ 0"))
        };
        let boolean = || match lowered.as_str() {
            "on" | "true" | "yes" | "1" => Ok(true),
            "off" | "false" | "no" | "0" => Ok(false),
            _ => Err(invalid("on or off")),
        };
        match name {
            "model" => self.model = value.trim().to_owned(),
            "cache" => {
                self.cache = match lowered.as_str() {
                    "on" => CacheMode::On,
                    "off" => CacheMode::Off,
                    "replay" => CacheMode::Replay,
                    _ => return Err(invalid("'on', 'off' or 'replay'")),
                }
            }
            "cache_nondeterministic" => self.cache_nondeterministic = boolean()?,
            "on_llm_error" => {
                self.on_llm_error = match lowered.as_str() {
                    "error" => OnLmError::Error,
                    "null" => OnLmError::Null,
                    _ => return Err(invalid("'error' or 'null'")),
                }
            }
            "max_llm_requests" => self.max_llm_requests = number()?,
            "max_llm_tokens" => self.max_llm_tokens = number()?,
            "log_prompts" => self.log_prompts = boolean()?,
            "progress_interval_ms" => self.progress_interval_ms = number()?,
            "join_candidates" => self.join_candidates = number()?,
            "embedding_model" => self.embedding_model = value.trim().to_owned(),
            "hnsw.ef_search" => match number()? {
                width @ 1..=1000 => self.hnsw_ef_search = width,
                _ => return Err(invalid("a whole number from 1 to 1000")),
            },
            "hnsw.iterative_scan" => match lowered.as_str() {
                "off" | "relaxed_order" | "strict_order" => {
                    self.hnsw_iterative_scan = lowered.clone()
                }
                _ => return Err(invalid("'off', 'relaxed_order' or 'strict_order'")),
            },
            "rewrite" => match lowered.as_str() {
                "off" | "advise" | "auto" => self.rewrite = lowered.clone(),
                _ => return Err(invalid("'off', 'advise' or 'auto'")),
            },
            "rewrite_min_ms" => self.rewrite_min_ms = number()?,
            "rewrite_max_requests" => match number()? {
                0 => return Err(invalid("a whole number ≥ 1")),
                n => self.rewrite_max_requests = n,
            },
            "rewrite_max_tokens" => self.rewrite_max_tokens = number()?,
            "rewrite_timeout_ms" => match number()? {
                0 => return Err(invalid("a whole number ≥ 1")),
                n => self.rewrite_timeout_ms = n,
            },
            _ => {
                return Err(LmError::new(
                    "42704",
                    format!(
                        "unrecognized configuration parameter \"{}\" (known: {})",
                        Self::qualified(name),
                        Self::NAMES.map(Self::qualified).join(", ")
                    ),
                ))
            }
        }
        Ok(())
    }
}

fn on_off(value: bool) -> String {
    if value { "on" } else { "off" }.to_owned()
}

impl ExtensionOptions for LmSettings {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        Box::new(self.clone())
    }

    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        self.set_value(key, value)
            .map_err(|err| DataFusionError::Configuration(err.message))
    }

    fn entries(&self) -> Vec<ConfigEntry> {
        Self::NAMES
            .iter()
            .map(|name| ConfigEntry {
                key: Self::qualified(name),
                value: self.get(name),
                description: "",
            })
            .collect()
    }
}

impl ConfigExtension for LmSettings {
    const PREFIX: &'static str = "semsql";
}

/// What one query spent on language models. Counters only grow; readers take a
/// [`UsageSnapshot`].
#[derive(Debug)]
pub struct QueryUsage {
    pub query_id: u64,
    pub started: Instant,
    /// The query text, kept only when the session logs prompts.
    pub sql: Option<String>,
    /// How often the server reports this query's progress (`semsql.progress_interval_ms`).
    pub progress_interval_ms: u64,
    pub requests: AtomicU64,
    pub rows_sent: AtomicU64,
    pub cache_hits: AtomicU64,
    pub input_tokens: AtomicU64,
    pub output_tokens: AtomicU64,
    pub retries: AtomicU64,
    /// Estimated cost in millionths of the price unit.
    pub cost_micros: AtomicU64,
    /// Time requests spent waiting on the model, summed over requests, in microseconds.
    pub lm_wait_micros: AtomicU64,
    /// Rows handed to LM functions, and rows answered, for progress reports.
    pub rows_total: AtomicU64,
    pub rows_done: AtomicU64,
    /// The models this query used.
    pub models: Mutex<Vec<String>>,
    /// The query's record when this one counts a part of it (one plan node): every count
    /// added here is added there too.
    pub parent: Option<Arc<QueryUsage>>,
    /// The role that ran the query, for the system tables' privacy (see [`Caller`]).
    pub role: Option<String>,
}

impl QueryUsage {
    /// The role that ran the query (a plan node's record asks its query's).
    pub fn role(&self) -> Option<&str> {
        self.role
            .as_deref()
            .or_else(|| self.parent.as_ref().and_then(|parent| parent.role()))
    }

    pub fn new(query_id: u64, sql: Option<String>, progress_interval_ms: u64) -> Self {
        Self {
            query_id,
            started: Instant::now(),
            sql,
            progress_interval_ms,
            requests: AtomicU64::new(0),
            rows_sent: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            input_tokens: AtomicU64::new(0),
            output_tokens: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            cost_micros: AtomicU64::new(0),
            lm_wait_micros: AtomicU64::new(0),
            rows_total: AtomicU64::new(0),
            rows_done: AtomicU64::new(0),
            models: Mutex::new(Vec::new()),
            parent: None,
            role: None,
        }
    }

    /// A record for one part of the query `parent` counts (a plan node's calls).
    pub fn child_of(parent: &Arc<QueryUsage>) -> Self {
        Self {
            parent: Some(Arc::clone(parent)),
            ..Self::new(parent.query_id, None, 0)
        }
    }

    /// The whole query's record.
    pub fn root(&self) -> &QueryUsage {
        let mut usage = self;
        while let Some(parent) = &usage.parent {
            usage = parent;
        }
        usage
    }

    /// Adds `n` to one counter here and in every enclosing record; returns the previous value
    /// here.
    pub fn add(&self, counter: impl Fn(&QueryUsage) -> &AtomicU64, n: u64) -> u64 {
        let previous = counter(self).fetch_add(n, Ordering::Relaxed);
        let mut usage = self;
        while let Some(parent) = &usage.parent {
            counter(parent).fetch_add(n, Ordering::Relaxed);
            usage = parent;
        }
        previous
    }

    pub fn note_model(&self, name: &str) {
        let mut usage = Some(self);
        while let Some(record) = usage {
            let mut models = record.models.lock().expect("usage lock");
            if !models.iter().any(|known| known == name) {
                models.push(name.to_owned());
            }
            usage = record.parent.as_deref();
        }
    }

    pub fn snapshot(&self) -> UsageSnapshot {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        UsageSnapshot {
            query_id: self.query_id,
            elapsed_ms: self.started.elapsed().as_secs_f64() * 1000.0,
            requests: load(&self.requests),
            rows_sent: load(&self.rows_sent),
            cache_hits: load(&self.cache_hits),
            input_tokens: load(&self.input_tokens),
            output_tokens: load(&self.output_tokens),
            retries: load(&self.retries),
            cost: load(&self.cost_micros) as f64 / 1e6,
            lm_wait_ms: load(&self.lm_wait_micros) as f64 / 1000.0,
            rows_total: load(&self.rows_total),
            rows_done: load(&self.rows_done),
            models: self.models.lock().expect("usage lock").clone(),
        }
    }

    /// Whether any LM function ran in this query.
    pub fn used(&self) -> bool {
        self.rows_total.load(Ordering::Relaxed) > 0
    }
}

/// A point-in-time copy of a [`QueryUsage`].
#[derive(Debug, Clone, PartialEq)]
pub struct UsageSnapshot {
    pub query_id: u64,
    pub elapsed_ms: f64,
    pub requests: u64,
    pub rows_sent: u64,
    pub cache_hits: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub retries: u64,
    pub cost: f64,
    pub lm_wait_ms: f64,
    pub rows_total: u64,
    pub rows_done: u64,
    pub models: Vec<String>,
}

impl fmt::Display for UsageSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count =
            |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        write!(
            f,
            "LM usage: {}, {} sent, {}, {} input + {} output tokens, {}, estimated cost {:.4}, \
             {:.0} ms waiting on the model ({})",
            count(self.requests, "request", "requests"),
            count(self.rows_sent, "row", "rows"),
            count(self.cache_hits, "cache hit", "cache hits"),
            self.input_tokens,
            self.output_tokens,
            count(self.retries, "retry", "retries"),
            self.cost,
            self.lm_wait_ms,
            if self.models.is_empty() {
                "no model called".to_owned()
            } else {
                self.models.join(", ")
            }
        )
    }
}
