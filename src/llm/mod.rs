//! The LM runtime: named models over OpenAI-compatible endpoints, batching and dedup, a
//! two-tier answer cache, per-model admission (concurrency, rate limits, retries), and per-query
//! accounting and budgets. SQL functions reach it through [`semsql_udfs::lm::LmRuntime`].
//!
//! - `models`: options, `CREATE MODEL` persistence;
//! - `client`: one HTTP request to `/chat/completions` or `/embeddings`;
//! - `scheduler`: admission and retries per model;
//! - `batch`: the batched prompt format and strict answer parsing;
//! - `cache`: moka over redb;
//! - `activity`: recent requests and queries for the system tables.

pub mod activity;
pub mod batch;
pub mod bert;
pub mod cache;
pub mod calibration;
pub mod client;
pub mod local_embed;
pub mod model_files;
pub mod models;
pub mod scheduler;
pub mod secrets;
pub mod statements;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use async_trait::async_trait;
use datafusion::error::Result;
use futures::stream::{self, StreamExt, TryStreamExt};
use semsql_udfs::lm::{CacheMode, LmError, LmRuntime, LmSettings, LmTask, OnLmError, QueryUsage};
use serde_json::Value;
use tokio::sync::watch;

use activity::{Activity, QueryRecord, RequestRecord};
use batch::RowOutcome;
use cache::{AnswerCache, CacheKey};
use client::{estimate_tokens, CallError, ChatAnswer, Client};
use models::{ModelFile, ModelOptions, RawOptions, RowsPerRequest};
use scheduler::{Attempt, Lane, Spent};

/// Runtime-wide settings from the configuration file's `[llm]` table.
#[derive(Debug, Clone)]
pub struct LlmConfig {
    /// Models defined in the configuration file (read-only from SQL).
    pub models: BTreeMap<String, RawOptions>,
    /// The model used when a session has not chosen one.
    pub default_model: Option<String>,
    /// The memory tier's size.
    pub cache_memory_bytes: u64,
    /// Where the local embedding model is (default: looked for by `model_files::find`).
    pub local_model_dir: Option<std::path::PathBuf>,
    /// When not empty, the prefixes a model's `base_url` must start with.
    pub allowed_base_urls: Vec<String>,
    /// Most background rewrite searches at once.
    pub rewrite_max_background: usize,
    /// Secrets defined in the configuration file.
    pub secrets: BTreeMap<String, secrets::SecretSource>,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            models: BTreeMap::new(),
            default_model: None,
            cache_memory_bytes: 64 << 20,
            local_model_dir: None,
            allowed_base_urls: Vec::new(),
            rewrite_max_background: 2,
            secrets: BTreeMap::new(),
        }
    }
}

/// Where a model was defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelSource {
    ConfigFile,
    Sql,
}

impl ModelSource {
    pub fn name(self) -> &'static str {
        match self {
            ModelSource::ConfigFile => "config file",
            ModelSource::Sql => "CREATE MODEL",
        }
    }
}

/// A usable model: its options, HTTP client and admission lane.
#[derive(Debug)]
pub struct Model {
    pub name: String,
    pub raw: RawOptions,
    pub options: ModelOptions,
    pub source: ModelSource,
    client: Client,
    lane: Lane,
}

impl Model {
    fn new(
        name: &str,
        raw: RawOptions,
        source: ModelSource,
        secrets: &Arc<secrets::Secrets>,
    ) -> Result<Self, LmError> {
        let options = ModelOptions::parse(name, &raw)?;
        if let Some(secret) = &options.api_key_secret {
            if !secrets.exists(secret) {
                return Err(LmError::new(
                    "42704",
                    format!("model \"{name}\": secret \"{secret}\" does not exist"),
                ));
            }
        }
        let client = Client::new(&options, secrets)
            .map_err(|message| LmError::new("22023", format!("model \"{name}\": {message}")))?;
        Ok(Model {
            name: name.to_owned(),
            lane: Lane::new(&options),
            client,
            options,
            raw,
            source,
        })
    }
}

#[derive(Debug)]
pub struct Runtime {
    models: RwLock<BTreeMap<String, Arc<Model>>>,
    /// Serializes changes to the SQL-made models and their file.
    model_file: Option<std::sync::Mutex<ModelFile>>,
    default_model: Option<String>,
    /// `llm.allowed_base_urls`: when not empty, where SQL-made models may send requests.
    allowed_base_urls: Vec<String>,
    /// Where models' API keys come from.
    pub secrets: Arc<secrets::Secrets>,
    pub cache: AnswerCache,
    /// `rows_per_request = 'auto'`: batch sizes found per model and function.
    pub calibrations: calibration::Calibrations,
    calibrating: tokio::sync::Mutex<()>,
    pub activity: Activity,
    next_query_id: AtomicU64,
    /// Rows being asked about right now, by cache key (see [`Claim`]).
    inflight: Inflight,
    /// The local embedding model's folder, and the model once loaded.
    local_dir: std::path::PathBuf,
    local: tokio::sync::OnceCell<Arc<local_embed::LocalEmbedder>>,
}

impl std::fmt::Debug for ModelFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ModelFile")
    }
}

impl Runtime {
    /// The runtime for a data folder (`None`: nothing persisted, for tests).
    pub fn open(data_dir: Option<&Path>, config: &LlmConfig) -> Result<Runtime, LmError> {
        let secrets = Arc::new(secrets::Secrets::open(data_dir, &config.secrets)?);
        let mut models = BTreeMap::new();
        for (name, raw) in &config.models {
            let model = Model::new(name, raw.clone(), ModelSource::ConfigFile, &secrets)?;
            models.insert(name.clone(), Arc::new(model));
        }
        let model_file = data_dir.map(ModelFile::new);
        if let Some(file) = &model_file {
            for (name, raw) in file.load()? {
                if models.contains_key(&name) {
                    tracing::warn!(%name, "a model made with CREATE MODEL is shadowed by the config file's");
                    continue;
                }
                match Model::new(&name, raw, ModelSource::Sql, &secrets) {
                    Ok(model) => {
                        models.insert(name, Arc::new(model));
                    }
                    Err(err) => tracing::warn!(%name, %err, "a stored model is not usable"),
                }
            }
        }
        if let Some(default) = &config.default_model {
            if !models.contains_key(default) {
                return Err(LmError::new(
                    "F0000",
                    format!(
                        "llm.default_model names \"{default}\", which no [models.*] table defines"
                    ),
                ));
            }
        }
        Ok(Runtime {
            models: RwLock::new(models),
            model_file: model_file.map(std::sync::Mutex::new),
            default_model: config.default_model.clone(),
            allowed_base_urls: config.allowed_base_urls.clone(),
            secrets,
            cache: AnswerCache::open(data_dir, config.cache_memory_bytes),
            calibrations: calibration::Calibrations::open(data_dir),
            calibrating: tokio::sync::Mutex::new(()),
            activity: Activity::default(),
            next_query_id: AtomicU64::new(1),
            inflight: Inflight::default(),
            local_dir: model_files::find(config.local_model_dir.as_deref(), data_dir),
            local: tokio::sync::OnceCell::new(),
        })
    }

    /// The cached embeddings of `keys` (when the session caches), and the positions still to
    /// compute; under `semsql.cache = 'replay'` a miss is an error.
    async fn cached_embeddings(
        &self,
        settings: &LmSettings,
        usage: &QueryUsage,
        keys: &[CacheKey],
    ) -> Result<(Vec<Option<Vec<f32>>>, Vec<usize>)> {
        let mut vectors: Vec<Option<Vec<f32>>> = vec![None; keys.len()];
        if settings.cache != CacheMode::Off {
            for (id, cached) in self.cache.get_many(keys).await.into_iter().enumerate() {
                if let Some(vector) = cached.and_then(|bytes| decode_vector(&bytes)) {
                    vectors[id] = Some(vector);
                    usage.add(|u| &u.cache_hits, 1);
                }
            }
        }
        let missing: Vec<usize> = (0..keys.len())
            .filter(|&id| vectors[id].is_none())
            .collect();
        if settings.cache == CacheMode::Replay && !missing.is_empty() {
            return Err(LmError::new(
                "55000",
                format!(
                    "embed: semsql.cache = 'replay' and {} of {} distinct texts have no cached embedding",
                    missing.len(),
                    keys.len()
                ),
            )
            .into_datafusion());
        }
        Ok((vectors, missing))
    }

    /// Embeds `unique` texts with the in-process model: cached like remote embeddings (keyed by
    /// the model's folder), computed in batches off the async threads.
    async fn embed_locally(
        &self,
        settings: &LmSettings,
        usage: &QueryUsage,
        unique: &[String],
    ) -> Result<Vec<Vec<f32>>> {
        usage.note_model(local_embed::LOCAL_MODEL);
        let embedder = self
            .local
            .get_or_try_init(|| async {
                let dir = self.local_dir.clone();
                tokio::task::spawn_blocking(move || local_embed::LocalEmbedder::load(&dir))
                    .await
                    .map_err(|err| LmError::service(format!("loading the local model: {err}")))?
                    .map(Arc::new)
            })
            .await
            .map_err(LmError::into_datafusion)?
            .clone();
        let cacheable = settings.cache != CacheMode::Off;
        let identity = self.local_dir.display().to_string();
        let keys: Vec<CacheKey> = unique
            .iter()
            .map(|text| batch::local_embedding_key(&identity, text))
            .collect();
        let (mut vectors, missing) = self.cached_embeddings(settings, usage, &keys).await?;
        for ids in missing.chunks(local_embed::BATCH) {
            let texts: Vec<String> = ids.iter().map(|&id| unique[id].clone()).collect();
            let model = Arc::clone(&embedder);
            let embedded = tokio::task::spawn_blocking(move || model.embed(&texts))
                .await
                .map_err(|err| LmError::service(format!("local embedding model: {err}")))
                .and_then(|result| result)
                .map_err(LmError::into_datafusion)?;
            usage.add(|u| &u.rows_sent, ids.len() as u64);
            if cacheable {
                let entries = ids
                    .iter()
                    .zip(&embedded)
                    .map(|(&id, vector)| (keys[id], encode_vector(vector)))
                    .collect();
                self.cache.put_many(entries).await;
            }
            for (&id, vector) in ids.iter().zip(embedded) {
                vectors[id] = Some(vector);
            }
        }
        Ok(vectors.into_iter().map(|v| v.unwrap_or_default()).collect())
    }

    pub fn models(&self) -> Vec<Arc<Model>> {
        self.models
            .read()
            .expect("models lock")
            .values()
            .cloned()
            .collect()
    }

    pub fn model(&self, name: &str) -> Option<Arc<Model>> {
        self.models.read().expect("models lock").get(name).cloned()
    }

    pub fn default_model(&self) -> Option<&str> {
        self.default_model.as_deref()
    }

    /// The model a call uses: the task's, else the session's, else the server's default.
    fn resolve(
        &self,
        settings: &LmSettings,
        requested: Option<&str>,
    ) -> Result<Arc<Model>, LmError> {
        let name = requested
            .filter(|name| !name.is_empty())
            .or(Some(settings.model.as_str()).filter(|name| !name.is_empty()))
            .or(self.default_model.as_deref());
        match name {
            Some(name) => {
                let model = self
                    .model(name)
                    .ok_or_else(|| LmError::undefined_model(name))?;
                if let Some(caller) = &settings.caller {
                    caller.may_use_model(name)?;
                }
                Ok(model)
            }
            None => Err(LmError::new(
                "42704",
                "no model chosen: CREATE MODEL one, then SET semsql.model = 'name' \
                 (or set llm.default_model in the config file)",
            )),
        }
    }

    /// `CREATE MODEL`, `ALTER MODEL` (`replace = true` merges into the existing options) and
    /// `DROP MODEL` all end here: the file is written first, then the running set changes.
    pub fn change_model(
        &self,
        name: &str,
        change: statements::ModelChange,
    ) -> Result<&'static str, LmError> {
        let Some(file) = &self.model_file else {
            return Err(LmError::new(
                "0A000",
                "this server keeps no models (no data folder)",
            ));
        };
        let file = file.lock().expect("model file lock");
        let existing = self.model(name);
        if let Some(model) = &existing {
            if model.source == ModelSource::ConfigFile {
                return Err(LmError::new(
                    "42501",
                    format!("model \"{name}\" is defined in the config file; change it there"),
                ));
            }
        }
        let mut stored = file.load()?;
        let (tag, next) = match change {
            statements::ModelChange::Create {
                options,
                if_not_exists,
            } => {
                if existing.is_some() {
                    if if_not_exists {
                        return Ok("CREATE MODEL");
                    }
                    return Err(LmError::new(
                        "42710",
                        format!("model \"{name}\" already exists"),
                    ));
                }
                ("CREATE MODEL", Some(options))
            }
            statements::ModelChange::Alter { options, reset } => {
                let Some(model) = existing else {
                    return Err(LmError::undefined_model(name));
                };
                let mut merged = model.raw.clone();
                merged.extend(options);
                for key in reset {
                    merged.remove(&key);
                }
                ("ALTER MODEL", Some(merged))
            }
            statements::ModelChange::Grant { .. } => {
                return Err(LmError::new(
                    "XX000",
                    "grants on models are kept by the access layer, not the runtime",
                ))
            }
            statements::ModelChange::Drop { if_exists } => {
                if existing.is_none() {
                    if if_exists {
                        return Ok("DROP MODEL");
                    }
                    return Err(LmError::undefined_model(name));
                }
                ("DROP MODEL", None)
            }
        };
        match next {
            Some(raw) => {
                let model = Model::new(name, raw.clone(), ModelSource::Sql, &self.secrets)?;
                self.check_base_url(&model.options.base_url)?;
                stored.insert(name.to_owned(), raw);
                file.save(&stored)?;
                self.models
                    .write()
                    .expect("models lock")
                    .insert(name.to_owned(), Arc::new(model));
            }
            None => {
                stored.remove(name);
                file.save(&stored)?;
                self.models.write().expect("models lock").remove(name);
            }
        }
        Ok(tag)
    }

    /// `CREATE SECRET` and `DROP SECRET` (a secret a model uses cannot be dropped).
    pub fn change_secret(
        &self,
        statement: &statements::SecretStatement,
    ) -> Result<&'static str, LmError> {
        let name = statement.name.as_str();
        match &statement.change {
            statements::SecretChange::Create {
                source,
                if_not_exists,
            } => self.secrets.create(name, source.clone(), *if_not_exists),
            statements::SecretChange::Drop { if_exists } => {
                // Holding the models' lock: no model can take up the secret meanwhile.
                let _models = self
                    .model_file
                    .as_ref()
                    .map(|file| file.lock().expect("model file lock"));
                let used_by = self
                    .models()
                    .into_iter()
                    .find(|model| model.options.api_key_secret.as_deref() == Some(name))
                    .map(|model| model.name.clone());
                self.secrets.drop_secret(name, *if_exists, used_by)
            }
        }
    }

    /// Whether `llm.allowed_base_urls` limits where models may point.
    pub fn restricts_base_urls(&self) -> bool {
        !self.allowed_base_urls.is_empty()
    }

    /// Refuses a model address outside `llm.allowed_base_urls`, when that list is set.
    fn check_base_url(&self, base_url: &str) -> Result<(), LmError> {
        let allowed = &self.allowed_base_urls;
        if allowed.is_empty() || allowed.iter().any(|prefix| url_within(base_url, prefix)) {
            Ok(())
        } else {
            Err(LmError::new(
                "42501",
                format!(
                    "base_url {base_url} is not allowed: the server's llm.allowed_base_urls \
                     lists the addresses models may use"
                ),
            ))
        }
    }

    /// A new query's usage record.
    pub fn start_query(
        &self,
        sql: Option<String>,
        progress_interval_ms: u64,
        role: Option<String>,
    ) -> Arc<QueryUsage> {
        let id = self.next_query_id.fetch_add(1, Ordering::Relaxed);
        let mut usage = QueryUsage::new(id, sql, progress_interval_ms);
        usage.role = role;
        Arc::new(usage)
    }

    /// The usage record of the running query, or a throwaway one for a call made outside a
    /// server query (a bare DataFusion session).
    fn usage_of(&self, settings: &LmSettings) -> Arc<QueryUsage> {
        settings
            .usage
            .clone()
            .unwrap_or_else(|| self.start_query(None, 0, None))
    }

    /// Remembers a finished query that used a model.
    pub fn finish_query(&self, usage: &QueryUsage) {
        if usage.used() {
            self.activity.record_query(QueryRecord {
                finished: SystemTime::now(),
                usage: usage.snapshot(),
                sql: usage.sql.clone(),
                role: usage.role().map(str::to_owned),
            });
        }
    }

    fn log_request(
        &self,
        (model, endpoint, function): (&Model, &'static str, &str),
        usage: &QueryUsage,
        rows: usize,
        attempt: Attempt<'_>,
        prompt: Option<&str>,
    ) {
        let (status, http_status, spent) = match attempt.outcome {
            Ok(spent) => ("ok".to_owned(), Some(200), Some(spent)),
            Err(error) => (error.message.clone(), error.status, None),
        };
        tracing::debug!(
            query_id = usage.query_id,
            model = %model.name,
            endpoint,
            function,
            rows,
            attempt = attempt.attempt,
            latency_ms = attempt.latency.as_millis() as u64,
            input_tokens = spent.map_or(0, |spent| spent.input_tokens),
            output_tokens = spent.map_or(0, |spent| spent.output_tokens),
            %status,
            "LM request"
        );
        self.activity.record_request(RequestRecord {
            at: SystemTime::now(),
            query_id: usage.query_id,
            model: model.name.clone(),
            endpoint,
            function: function.to_owned(),
            rows: rows as u64,
            attempt: attempt.attempt,
            status,
            http_status,
            latency_ms: attempt.latency.as_secs_f64() * 1000.0,
            input_tokens: spent.map_or(0, |spent| spent.input_tokens),
            output_tokens: spent.map_or(0, |spent| spent.output_tokens),
            prompt: prompt.map(str::to_owned),
            role: usage.role().map(str::to_owned),
        });
    }

    fn charge(&self, model: &Model, usage: &QueryUsage, spent: &Spent) {
        let cost = (spent.input_tokens as f64 * model.options.price_per_1k_input
            + spent.output_tokens as f64 * model.options.price_per_1k_output)
            / 1000.0;
        usage.add(|u| &u.cost_micros, (cost * 1e6).round() as u64);
    }

    /// One free-form chat request (not a batch of rows), for the query rewriter: the model the
    /// settings choose, its admission lane, retries and budgets, and the query's accounting and
    /// request log under `function`.
    pub async fn chat(
        &self,
        settings: &LmSettings,
        function: &str,
        request: &client::ChatRequest,
    ) -> Result<ChatAnswer, LmError> {
        let model = self.resolve(settings, None)?;
        let usage = self.usage_of(settings);
        self.send_chat(&model, settings, &usage, (function, 0), request)
            .await
    }

    /// Sends one chat request through `model`'s lane (admission, retries, budgets), charging
    /// and logging every attempt as `function` asking about `rows` rows.
    async fn send_chat(
        &self,
        model: &Model,
        settings: &LmSettings,
        usage: &QueryUsage,
        (function, rows): (&str, usize),
        request: &client::ChatRequest,
    ) -> Result<ChatAnswer, LmError> {
        let estimated = estimate_tokens(&request.system) + estimate_tokens(&request.user);
        let prompt = settings
            .log_prompts
            .then(|| format!("{}\n\n{}", request.system, request.user));
        model
            .lane
            .call(
                settings,
                usage,
                estimated,
                || async {
                    let answer = model.client.chat(&model.options.model, request).await?;
                    let spent = Spent {
                        input_tokens: answer.input_tokens,
                        output_tokens: answer.output_tokens,
                    };
                    Ok::<_, CallError>((answer, spent))
                },
                |attempt| {
                    if let Ok(spent) = attempt.outcome {
                        self.charge(model, usage, spent);
                    }
                    self.log_request(
                        (model, "chat", function),
                        usage,
                        rows,
                        attempt,
                        prompt.as_deref(),
                    )
                },
            )
            .await
    }

    /// The name of the model a call with these settings uses, if any.
    pub fn chosen_model(&self, settings: &LmSettings) -> Option<String> {
        self.resolve(settings, None)
            .ok()
            .map(|model| model.name.clone())
    }

    /// Sends one batch of rows (ids index `unique`) and reads what it can of the answer.
    async fn ask_batch(
        &self,
        model: &Model,
        settings: &LmSettings,
        usage: &QueryUsage,
        task: &LmTask,
        unique: &[Vec<String>],
        ids: &[usize],
    ) -> Result<(Vec<RowOutcome>, bool), LmError> {
        let rows: Vec<(usize, &[String])> =
            ids.iter().map(|&id| (id, unique[id].as_slice())).collect();
        let request = batch::chat_request(task, &model.options, &rows);
        let answer = self
            .send_chat(model, settings, usage, (task.function, ids.len()), &request)
            .await?;
        usage.add(|u| &u.rows_sent, ids.len() as u64);
        let truncated = answer.finish_reason.as_deref() == Some("length");
        match batch::parse_answers(&answer.content, &rows, &task.answer) {
            Ok(outcomes) => Ok((outcomes, truncated)),
            Err(reason) => Ok((
                ids.iter()
                    .map(|_| RowOutcome::Missing(reason.clone()))
                    .collect(),
                truncated,
            )),
        }
    }

    /// Answers the rows `ids` (indexes into `unique`): one request for all, then each row the
    /// answer left out or got wrong alone. A truncated answer of several rows is split in halves
    /// instead, since the rows did not fit the output limit together. A row asked alone whose
    /// answer is missing or not JSON is asked again, up to the model's `max_retries`; one whose
    /// answer is well-formed but of the wrong type is final (asking again at temperature 0 gets
    /// the same answer).
    async fn answer_group(
        &self,
        model: &Model,
        settings: &LmSettings,
        usage: &QueryUsage,
        task: &LmTask,
        unique: &[Vec<String>],
        ids: Vec<usize>,
    ) -> Result<Vec<(usize, Answer)>, LmError> {
        // Each entry: rows asked together, and how many times they were asked alone before.
        let mut pending = vec![(ids, 0u32)];
        let mut done = Vec::new();
        while let Some((ids, alone_before)) = pending.pop() {
            let (outcomes, truncated) = self
                .ask_batch(model, settings, usage, task, unique, &ids)
                .await?;
            let alone = ids.len() == 1;
            let mut retry = Vec::new();
            for (&id, outcome) in ids.iter().zip(outcomes) {
                match outcome {
                    RowOutcome::Answered(value) => done.push((id, Ok(value))),
                    RowOutcome::Invalid(reason) if alone => done.push((id, Err(reason))),
                    RowOutcome::Missing(reason) if alone => {
                        if alone_before < model.options.max_retries {
                            usage.add(|u| &u.retries, 1);
                            pending.push((vec![id], alone_before + 1));
                        } else {
                            done.push((id, Err(reason)));
                        }
                    }
                    RowOutcome::Invalid(_) | RowOutcome::Missing(_) => retry.push(id),
                }
            }
            if truncated && retry.len() > 1 {
                let half = retry.split_off(retry.len() / 2);
                pending.push((half, 0));
                pending.push((retry, 0));
            } else {
                pending.extend(retry.into_iter().map(|id| (vec![id], 0)));
            }
        }
        Ok(done)
    }

    /// Asks the model about rows `ids` of a job: packed into requests, run concurrently up to
    /// the model's concurrency, answers cached and published to waiting calls as they come.
    async fn send_rows(
        &self,
        job: &RowJob<'_>,
        ids: Vec<usize>,
        claim: &Claim<'_>,
    ) -> Result<Vec<(usize, Answer)>> {
        let groups = self.pack(job, ids);
        let mut results = stream::iter(groups)
            .map(|ids| async move {
                let answered = self
                    .answer_group(
                        job.model,
                        job.settings,
                        job.usage,
                        job.task,
                        job.unique,
                        ids,
                    )
                    .await?;
                if job.cacheable {
                    let entries = answered
                        .iter()
                        .filter_map(|(id, answer)| {
                            let value = answer.as_ref().ok()?;
                            Some((job.keys[*id], serde_json::to_vec(value).ok()?))
                        })
                        .collect();
                    self.cache.put_many(entries).await;
                }
                for (id, answer) in &answered {
                    claim.publish(*id, answer);
                }
                let done: u64 = answered.iter().map(|(id, _)| job.multiplicity[*id]).sum();
                job.usage.add(|u| &u.rows_done, done);
                Ok::<_, LmError>(answered)
            })
            .buffer_unordered(job.model.options.concurrency);
        let mut all = Vec::new();
        while let Some(answered) = results.try_next().await.map_err(LmError::into_datafusion)? {
            all.extend(answered);
        }
        Ok(all)
    }

    /// Splits `ids` into requests of at most `rows_per_request` rows that fit the context.
    fn pack(&self, job: &RowJob<'_>, ids: Vec<usize>) -> Vec<Vec<usize>> {
        let (task, unique) = (job.task, job.unique);
        let options = &job.model.options;
        let fixed = estimate_tokens(&batch::system_prompt(task)) + 16;
        let per_answer = batch::expected_answer_tokens(task, options);
        // Leave a tenth of the context for the estimate's error.
        let budget = options.context_tokens.saturating_mul(9) / 10;
        let mut groups = Vec::new();
        let mut current = Vec::new();
        let mut used = fixed;
        for id in ids {
            let row_tokens = unique[id]
                .iter()
                .map(|arg| estimate_tokens(arg) + 4)
                .sum::<u64>()
                + 8
                + per_answer;
            if !current.is_empty()
                && (current.len() >= job.rows_per_request || used + row_tokens > budget)
            {
                groups.push(std::mem::take(&mut current));
                used = fixed;
            }
            used += row_tokens;
            current.push(id);
        }
        if !current.is_empty() {
            groups.push(current);
        }
        groups
    }

    /// Fills `answers` of rows `ids` from the cache under `keys`; a cached value that does not
    /// parse or fit the task is treated as a miss.
    #[allow(clippy::too_many_arguments)]
    async fn fill_from_cache(
        &self,
        task: &LmTask,
        unique: &[Vec<String>],
        keys: &[CacheKey],
        ids: &[usize],
        multiplicity: &[u64],
        usage: &QueryUsage,
        answers: &mut [Option<Answer>],
    ) {
        if ids.is_empty() {
            return;
        }
        let wanted: Vec<CacheKey> = ids.iter().map(|&id| keys[id]).collect();
        for (&id, cached) in ids.iter().zip(self.cache.get_many(&wanted).await) {
            let Some(bytes) = cached else { continue };
            let value = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|value| batch::validate(&value, &task.answer, unique[id].len()).ok());
            if let Some(value) = value {
                answers[id] = Some(Ok(value));
                usage.add(|u| &u.cache_hits, 1);
                usage.add(|u| &u.rows_done, multiplicity[id]);
            }
        }
    }

    /// Calibrates `rows_per_request = 'auto'` for the job's model and function on `sample`
    /// (rows not yet answered): each asked alone (their answers, returned, are the rows'
    /// answers), then in batches of each candidate size, largest first, until one agrees with
    /// the one-row answers well enough (see `calibration`). Every request is a real one,
    /// counted in the query's usage.
    async fn calibrate(
        &self,
        job: &RowJob<'_>,
        sample: &[usize],
    ) -> Result<(usize, Vec<(usize, Answer)>)> {
        let alone = self.send_rows(job, sample.to_vec(), &Claim::none()).await?;
        let reference: HashMap<usize, &Value> = alone
            .iter()
            .filter_map(|(id, answer)| Some((*id, answer.as_ref().ok()?)))
            .collect();
        let mut agreement = Vec::new();
        for size in calibration::CANDIDATE_SIZES {
            if size > sample.len() {
                continue;
            }
            let mut agreeing = 0usize;
            for chunk in sample.chunks(size) {
                let (outcomes, _) = self
                    .ask_batch(
                        job.model,
                        job.settings,
                        job.usage,
                        job.task,
                        job.unique,
                        chunk,
                    )
                    .await
                    .map_err(LmError::into_datafusion)?;
                agreeing += chunk
                    .iter()
                    .zip(outcomes)
                    .filter(|(id, outcome)| match (outcome, reference.get(id)) {
                        (RowOutcome::Answered(batched), Some(alone)) => {
                            calibration::agrees(batched, alone, &job.task.answer)
                        }
                        _ => false,
                    })
                    .count();
            }
            let share = agreeing as f64 / reference.len().max(1) as f64;
            agreement.push((size, share));
            if share >= calibration::MIN_AGREEMENT {
                break;
            }
        }
        let chosen = calibration::choose(sample.len(), agreement);
        tracing::info!(
            model = %job.model.name,
            function = job.task.function,
            "rows_per_request = 'auto' calibrated: {}",
            chosen.summary()
        );
        let rows_per_request = chosen.rows_per_request;
        self.calibrations.store(
            &job.model.name,
            &job.model.options,
            job.task.function,
            chosen,
        );
        Ok((rows_per_request, alone))
    }
}

/// What one call asks, shared by its requests.
struct RowJob<'a> {
    model: &'a Model,
    settings: &'a LmSettings,
    usage: &'a QueryUsage,
    task: &'a LmTask,
    unique: &'a [Vec<String>],
    keys: &'a [CacheKey],
    cacheable: bool,
    multiplicity: &'a [u64],
    /// Rows per request for this call (the model's, or its calibration's).
    rows_per_request: usize,
}

type Answer = std::result::Result<Value, String>;
type Inflight = std::sync::Mutex<HashMap<CacheKey, watch::Receiver<Option<Answer>>>>;

/// The rows a call asks about itself (announced in the in-flight table, so that other calls
/// wait for them) and the rows it waits for. Dropping the claim withdraws the announcements;
/// a waiter whose asker went away asks itself.
struct Claim<'a> {
    inflight: Option<&'a Inflight>,
    owned: Vec<usize>,
    announced: Vec<CacheKey>,
    senders: HashMap<usize, watch::Sender<Option<Answer>>>,
    waiting: Vec<(usize, watch::Receiver<Option<Answer>>)>,
}

impl<'a> Claim<'a> {
    fn none() -> Self {
        Claim {
            inflight: None,
            owned: Vec::new(),
            announced: Vec::new(),
            senders: HashMap::new(),
            waiting: Vec::new(),
        }
    }

    /// `keys` empty: nothing is shared (uncacheable requests), every row is the call's own.
    fn new(inflight: &'a Inflight, keys: &[CacheKey], missing: Vec<usize>) -> Self {
        let mut claim = Claim::none();
        if keys.is_empty() {
            claim.owned = missing;
            return claim;
        }
        claim.inflight = Some(inflight);
        let mut table = inflight.lock().expect("inflight lock");
        for id in missing {
            match table.get(&keys[id]) {
                Some(receiver) => claim.waiting.push((id, receiver.clone())),
                None => {
                    let (sender, receiver) = watch::channel(None);
                    table.insert(keys[id], receiver);
                    claim.announced.push(keys[id]);
                    claim.senders.insert(id, sender);
                    claim.owned.push(id);
                }
            }
        }
        claim
    }

    fn publish(&self, id: usize, answer: &Answer) {
        if let Some(sender) = self.senders.get(&id) {
            let _ = sender.send(Some(answer.clone()));
        }
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if let Some(inflight) = self.inflight {
            let mut table = inflight.lock().expect("inflight lock");
            for key in &self.announced {
                table.remove(key);
            }
        }
    }
}

/// The rows (indexes into a call's distinct rows) with no answer yet.
fn unanswered(answers: &[Option<Answer>]) -> Vec<usize> {
    (0..answers.len())
        .filter(|&id| answers[id].is_none())
        .collect()
}

/// A row named in an error: its arguments, shortened.
fn describe_row(args: &[String]) -> String {
    let shown: Vec<String> = args
        .iter()
        .map(|arg| {
            let mut short: String = arg.chars().take(60).collect();
            if short.len() < arg.len() {
                short.push('…');
            }
            format!("{short:?}")
        })
        .collect();
    format!("({})", shown.join(", "))
}

/// Distinct rows in first-seen order, and for each input row its distinct row.
fn dedup<T: Clone + Eq + std::hash::Hash>(rows: &[Option<T>]) -> (Vec<T>, Vec<Option<usize>>) {
    let mut index: HashMap<&T, usize> = HashMap::new();
    let mut unique = Vec::new();
    let positions = rows
        .iter()
        .map(|row| {
            row.as_ref().map(|value| {
                *index.entry(value).or_insert_with(|| {
                    unique.push(value.clone());
                    unique.len() - 1
                })
            })
        })
        .collect();
    (unique, positions)
}

#[async_trait]
impl LmRuntime for Runtime {
    async fn complete_rows(
        &self,
        settings: &LmSettings,
        task: &LmTask,
        rows: Vec<Option<Vec<String>>>,
    ) -> Result<Vec<Option<Value>>> {
        let usage = self.usage_of(settings);
        let usage = usage.as_ref();
        let (unique, positions) = dedup(&rows);
        usage.add(|u| &u.rows_total, rows.len() as u64);
        if unique.is_empty() {
            usage.add(|u| &u.rows_done, rows.len() as u64);
            return Ok(vec![None; rows.len()]);
        }
        let model = self
            .resolve(settings, task.model.as_deref())
            .map_err(LmError::into_datafusion)?;
        usage.note_model(&model.name);
        let mut multiplicity = vec![0u64; unique.len()];
        for position in positions.iter().flatten() {
            multiplicity[*position] += 1;
        }
        usage.add(
            |u| &u.rows_done,
            (rows.len() - positions.iter().flatten().count()) as u64,
        );

        let temperature = task.temperature.unwrap_or(model.options.temperature);
        let cacheable = settings.cache != CacheMode::Off
            && (temperature == 0.0 || settings.cache_nondeterministic);
        let identity =
            |rows_per_request| batch::task_identity(task, &model.options, rows_per_request);
        let mut answers: Vec<Option<Answer>> = vec![None; unique.len()];
        // The batch size: the model's, or under 'auto' its calibration for this function.
        let mut rows_per_request = match model.options.rows_per_request {
            RowsPerRequest::Fixed(rows) => Some(rows),
            RowsPerRequest::Auto => self
                .calibrations
                .current(&model.name, &model.options, task.function)
                .map(|calibration| calibration.rows_per_request),
        };
        // One-row answers are the reference, so one cached from a one-row request serves
        // whatever the batch size; an answer from a batch only serves that batch size.
        let single_keys: Vec<CacheKey> = if cacheable {
            let identity = identity(1);
            unique
                .iter()
                .map(|args| batch::row_key(&identity, args))
                .collect()
        } else {
            Vec::new()
        };
        if cacheable {
            let all: Vec<usize> = (0..unique.len()).collect();
            self.fill_from_cache(
                task,
                &unique,
                &single_keys,
                &all,
                &multiplicity,
                usage,
                &mut answers,
            )
            .await;
        }
        // One calibration at a time: a call that waited uses the one just made.
        let _calibrating = match rows_per_request {
            None => {
                let guard = self.calibrating.lock().await;
                rows_per_request = self
                    .calibrations
                    .current(&model.name, &model.options, task.function)
                    .map(|calibration| calibration.rows_per_request);
                Some(guard)
            }
            Some(_) => None,
        };
        if rows_per_request.is_none() {
            let missing = unanswered(&answers);
            if missing.len() >= calibration::MIN_SAMPLE_ROWS && settings.cache != CacheMode::Replay
            {
                // Spread over the call's rows: the first rows of a table are often alike
                // (loaded in order), and a sample of one kind agrees too easily.
                let take = missing.len().min(calibration::SAMPLE_ROWS);
                let sample: Vec<usize> = (0..take)
                    .map(|i| missing[i * missing.len() / take])
                    .collect();
                let job = RowJob {
                    model: &model,
                    settings,
                    usage,
                    task,
                    unique: &unique,
                    keys: &single_keys,
                    cacheable,
                    multiplicity: &multiplicity,
                    rows_per_request: 1,
                };
                let (chosen, alone) = self.calibrate(&job, &sample).await?;
                for (id, answer) in alone {
                    answers[id] = Some(answer);
                }
                rows_per_request = Some(chosen);
            } else {
                // Too few rows to learn from: one row per request is right, if not cheapest.
                rows_per_request = Some(1);
            }
        }
        drop(_calibrating);
        let rows_per_request = rows_per_request.unwrap_or(1);
        if model.options.rows_per_request == RowsPerRequest::Auto {
            self.calibrations.count_rows(
                &model.name,
                &model.options,
                task.function,
                unique.len() as u64,
            );
        }
        let keys: Vec<CacheKey> = if !cacheable {
            Vec::new()
        } else if rows_per_request == 1 {
            single_keys.clone()
        } else {
            let identity = identity(rows_per_request);
            unique
                .iter()
                .map(|args| batch::row_key(&identity, args))
                .collect()
        };
        if cacheable && rows_per_request != 1 {
            let missing = unanswered(&answers);
            self.fill_from_cache(
                task,
                &unique,
                &keys,
                &missing,
                &multiplicity,
                usage,
                &mut answers,
            )
            .await;
        }
        let missing = unanswered(&answers);
        if settings.cache == CacheMode::Replay {
            if let Some(&id) = missing.first() {
                return Err(LmError::new(
                    "55000",
                    format!(
                        "{}: semsql.cache = 'replay' and no cached answer exists for the row {} \
                         ({} of {} distinct rows are missing)",
                        task.function,
                        describe_row(&unique[id]),
                        missing.len(),
                        unique.len()
                    ),
                )
                .into_datafusion());
            }
        }

        // Rows another call is already asking about (an earlier batch of this query, or
        // another query) are not asked twice: this call waits for that answer instead.
        let claim = Claim::new(&self.inflight, if cacheable { &keys } else { &[] }, missing);
        let job = RowJob {
            model: &model,
            settings,
            usage,
            task,
            unique: &unique,
            keys: &keys,
            cacheable,
            multiplicity: &multiplicity,
            rows_per_request,
        };
        for (id, answer) in self.send_rows(&job, claim.owned.clone(), &claim).await? {
            answers[id] = Some(answer);
        }
        let mut orphaned = Vec::new();
        for (id, mut receiver) in claim.waiting.clone() {
            match receiver.wait_for(Option::is_some).await {
                Ok(answer) => {
                    answers[id] = answer.clone();
                    usage.add(|u| &u.cache_hits, 1);
                    usage.add(|u| &u.rows_done, multiplicity[id]);
                }
                // The other call failed or was cancelled: ask ourselves.
                Err(_) => orphaned.push(id),
            }
        }
        if !orphaned.is_empty() {
            for (id, answer) in self.send_rows(&job, orphaned, &Claim::none()).await? {
                answers[id] = Some(answer);
            }
        }
        drop(claim);

        let mut values = Vec::with_capacity(unique.len());
        for (id, answer) in answers.into_iter().enumerate() {
            match answer {
                Some(Ok(value)) => values.push(Some(value)),
                Some(Err(reason)) if settings.on_llm_error == OnLmError::Null => {
                    tracing::debug!(function = task.function, %reason, "an unusable answer became NULL");
                    values.push(None)
                }
                Some(Err(reason)) => {
                    return Err(LmError::unparseable(format!(
                        "{}: the model's answer for the row {} is unusable even when asked \
                         alone: {reason} (SET semsql.on_llm_error = 'null' makes such rows NULL)",
                        task.function,
                        describe_row(&unique[id])
                    ))
                    .into_datafusion())
                }
                None => {
                    return Err(LmError::new(
                        "XX000",
                        format!(
                            "{}: the row {} was never answered",
                            task.function,
                            describe_row(&unique[id])
                        ),
                    )
                    .into_datafusion())
                }
            }
        }
        Ok(positions
            .into_iter()
            .map(|position| position.and_then(|id| values[id].clone()))
            .collect())
    }

    async fn embed(
        &self,
        settings: &LmSettings,
        model: Option<&str>,
        texts: Vec<Option<String>>,
    ) -> Result<Vec<Option<Vec<f32>>>> {
        let usage = self.usage_of(settings);
        let usage = usage.as_ref();
        let (unique, positions) = dedup(&texts);
        usage.add(|u| &u.rows_total, texts.len() as u64);
        if unique.is_empty() {
            return Ok(vec![None; texts.len()]);
        }
        // The call's model, else the session's embedding model (the local one by default).
        let name = model
            .filter(|name| !name.is_empty())
            .or(Some(settings.embedding_model.as_str()).filter(|name| !name.is_empty()))
            .unwrap_or(local_embed::LOCAL_MODEL);
        if name == local_embed::LOCAL_MODEL && self.model(name).is_none() {
            let vectors = self.embed_locally(settings, usage, &unique).await?;
            usage.add(|u| &u.rows_done, texts.len() as u64);
            return Ok(positions
                .into_iter()
                .map(|position| position.map(|id| vectors[id].clone()))
                .collect());
        }
        let model = self
            .resolve(settings, Some(name))
            .map_err(LmError::into_datafusion)?;
        usage.note_model(&model.name);
        let cacheable = settings.cache != CacheMode::Off;
        let keys: Vec<CacheKey> = unique
            .iter()
            .map(|text| batch::embedding_key(&model.options, text))
            .collect();
        let (mut vectors, missing) = self.cached_embeddings(settings, usage, &keys).await?;
        let model_ref = &model;
        let unique_ref = &unique;
        let keys_ref = &keys;
        let mut results = stream::iter(
            missing
                .chunks(model.options.embed_batch)
                .map(<[usize]>::to_vec),
        )
        .map(|ids| async move {
            let inputs: Vec<String> = ids.iter().map(|&id| unique_ref[id].clone()).collect();
            let estimated: u64 = inputs.iter().map(|text| estimate_tokens(text)).sum();
            let embedded = model_ref
                .lane
                .call(
                    settings,
                    usage,
                    estimated,
                    || async {
                        let (vectors, tokens) = model_ref
                            .client
                            .embed(&model_ref.options.embedding_model, &inputs)
                            .await?;
                        Ok::<_, CallError>((
                            vectors,
                            Spent {
                                input_tokens: tokens,
                                output_tokens: 0,
                            },
                        ))
                    },
                    |attempt| {
                        if let Ok(spent) = attempt.outcome {
                            self.charge(model_ref, usage, spent);
                        }
                        self.log_request(
                            (model_ref, "embeddings", "embed"),
                            usage,
                            ids.len(),
                            attempt,
                            None,
                        )
                    },
                )
                .await?;
            usage.add(|u| &u.rows_sent, ids.len() as u64);
            if cacheable {
                let entries = ids
                    .iter()
                    .zip(&embedded)
                    .map(|(&id, vector)| (keys_ref[id], encode_vector(vector)))
                    .collect();
                self.cache.put_many(entries).await;
            }
            Ok::<_, LmError>(ids.into_iter().zip(embedded).collect::<Vec<_>>())
        })
        .buffer_unordered(model.options.concurrency);
        while let Some(embedded) = results.try_next().await.map_err(LmError::into_datafusion)? {
            for (id, vector) in embedded {
                vectors[id] = Some(vector);
            }
        }
        drop(results);
        let dims = vectors.iter().flatten().map(Vec::len).next().unwrap_or(0);
        if vectors.iter().flatten().any(|vector| vector.len() != dims) {
            return Err(LmError::service(format!(
                "embed: model \"{}\" returned vectors of different lengths",
                model.name
            ))
            .into_datafusion());
        }
        usage.add(|u| &u.rows_done, texts.len() as u64);
        Ok(positions
            .into_iter()
            .map(|position| position.and_then(|id| vectors[id].clone()))
            .collect())
    }
}

fn encode_vector(vector: &[f32]) -> Vec<u8> {
    vector
        .iter()
        .flat_map(|value| value.to_le_bytes())
        .collect()
}

fn decode_vector(bytes: &[u8]) -> Option<Vec<f32>> {
    bytes.len().is_multiple_of(4).then(|| {
        bytes
            .chunks_exact(4)
            .map(|chunk| f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
            .collect()
    })
}

/// Whether `url` is `prefix` or below it: the prefix must end where a path segment ends, so
/// `http://10.0.0.5:8000/v1` does not allow `http://10.0.0.5:8000/v1evil` or
/// `http://10.0.0.5:80001`.
fn url_within(url: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    url == prefix
        || url
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod url_tests {
    #[test]
    fn allowed_urls_match_whole_segments() {
        use super::url_within;
        assert!(url_within("http://h:8000/v1", "http://h:8000/v1/"));
        assert!(url_within("http://h:8000/v1/x", "http://h:8000/v1"));
        assert!(!url_within("http://h:8000/v1evil", "http://h:8000/v1"));
        assert!(!url_within("http://h:80001/v1", "http://h:8000"));
        assert!(!url_within("http://h.evil.com/v1", "http://h"));
    }
}
