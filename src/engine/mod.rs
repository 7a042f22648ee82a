//! The engine: one shared catalog over durable storage, and a DataFusion session per connection
//! built from a template so that settings never leak between connections.

pub mod advisory_locks;
pub mod any_equal;
pub mod argument_types;
pub mod catalog;
pub mod character_types;
pub mod checked_arithmetic;
pub mod demo;
pub mod file_types;
pub mod functions;
pub mod gen_random_uuid;
pub mod pg_catalog_access;
pub mod pg_functions;
pub mod pg_indexes;
pub mod pg_relation_catalogs;
pub mod search_path;
pub mod settings_functions;
pub mod stable_oids;
pub mod storage;
pub mod system;
pub mod table;
pub mod text_format;
pub mod transaction;
pub mod unique_keys;
pub mod uuid_type;

use std::path::Path;
use std::sync::Arc;

use datafusion::catalog::{CatalogProvider, CatalogProviderList, MemoryCatalogProviderList};
use datafusion::error::Result;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::{
    create_current_database_udf, setup_pg_catalog,
};

use crate::access::plan_check::AccessCheck;
use crate::access::{Access, ConfiguredRole, FileAccess, SessionCaller};
use crate::error::SemsqlError;
use crate::llm::{LlmConfig, Runtime};
use catalog::DurableCatalog;
use datafusion::common::TableReference;
use datafusion::optimizer::Analyzer;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::{
    PgCatalogContextProvider, Role as PgRole,
};
use search_path::SearchPath;
use semsql_udfs::lm::LmSettings;
use std::collections::BTreeMap;
use storage::{Definition, Manifest, Store};
use transaction::Transaction;

/// The name of our single DataFusion catalog; clients see it through `current_catalog`.
pub const CATALOG: &str = "semsql";
pub const DEFAULT_SCHEMA: &str = "public";

/// A session's options as it started, which `RESET ALL` goes back to.
#[derive(Debug)]
pub struct StartingOptions(pub datafusion::config::ConfigOptions);

/// Everything connections share: the durable catalog and a template session.
#[derive(Clone)]
pub struct Engine {
    template: SessionState,
    runtime: Arc<Runtime>,
    advisory_locks: Arc<advisory_locks::AdvisoryLockTable>,
    access: Arc<Access>,
}

/// How the engine is set up: the access layer (see `crate::access`) and execution memory.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// Bytes query execution may hold at once (`None`: no limit). Operators that can spill
    /// (sorts, aggregations, joins) spill to the system's temporary folder beyond it; what
    /// cannot fails with 53200.
    pub memory_limit: Option<usize>,
    /// The config file's `[[users]]`.
    pub configured: BTreeMap<String, ConfiguredRole>,
    /// Loopback trust: a user name no role has is a superuser.
    pub unknown_are_superusers: bool,
    pub files: FileAccess,
}

impl EngineOptions {
    /// Loopback trust, no roles configured: every connection a superuser, as before roles.
    pub fn trusting() -> Self {
        EngineOptions {
            unknown_are_superusers: true,
            ..EngineOptions::default()
        }
    }
}

/// `pg_roles` from the access layer.
#[derive(Debug, Clone)]
struct RolesProvider(Arc<Access>);

#[async_trait::async_trait]
impl PgCatalogContextProvider for RolesProvider {
    async fn roles(&self) -> Vec<String> {
        self.0.role_names()
    }

    async fn role(&self, name: &str) -> Option<PgRole> {
        let role = self.0.role(name)?;
        Some(PgRole {
            name: role.name,
            is_superuser: role.superuser,
            can_login: role.login,
            can_create_db: role.superuser,
            can_create_role: role.superuser,
            can_create_user: role.superuser,
            can_replication: false,
            grants: Vec::new(),
            inherited_roles: role.member_of.into_iter().collect(),
        })
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

impl Engine {
    /// Opens the data folder with every connection a superuser (loopback trust).
    pub async fn open(data_dir: &Path, llm: &LlmConfig) -> Result<Engine> {
        Self::open_with(data_dir, llm, EngineOptions::trusting()).await
    }

    /// Opens the data folder, loads its tables and models and prepares the template session.
    pub async fn open_with(
        data_dir: &Path,
        llm: &LlmConfig,
        options: EngineOptions,
    ) -> Result<Engine> {
        let (store, manifest) = Store::open(data_dir).map_err(SemsqlError::into_datafusion)?;
        let mut runtime_env = RuntimeEnvBuilder::new();
        if let Some(limit) = options.memory_limit {
            // A fair share per spilling operator, so one query's sort cannot starve another's.
            runtime_env = runtime_env.with_memory_pool(Arc::new(FairSpillPool::new(limit)));
        }
        let runtime_env = runtime_env.build_arc()?;
        let access = options;
        let access = Arc::new(Access::new(
            store.clone(),
            access.configured,
            access.unknown_are_superusers,
            access.files,
        ));
        let runtime =
            Arc::new(Runtime::open(Some(data_dir), llm).map_err(|err| err.into_datafusion())?);
        let catalog: Arc<dyn CatalogProvider> = Arc::new(DurableCatalog::load(store, &manifest)?);
        let catalogs = Arc::new(MemoryCatalogProviderList::new());
        catalogs.register_catalog(CATALOG.to_owned(), catalog.clone());

        // With a session time zone, `timestamptz` values carry one and reach clients as
        // PostgreSQL's timestamptz; PostgreSQL's own default is UTC too.
        let config = SessionConfig::new()
            .with_option_extension(LmSettings::default())
            .set_str("datafusion.execution.time_zone", "+00:00")
            // pgvector's operators are only tokenised by the PostgreSQL dialect.
            .set_str("datafusion.sql_parser.dialect", "postgres")
            .with_information_schema(true)
            .with_create_default_catalog_and_schema(false)
            .with_default_catalog_and_schema(CATALOG, DEFAULT_SCHEMA);
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime_env)
            .with_catalog_list(catalogs)
            .with_default_features()
            .with_query_planner(Arc::new(crate::planner::constant_calls::SemsqlQueryPlanner))
            .with_optimizer_rule(Arc::new(
                crate::planner::lm_positions::LmCallPositions::new(
                    semsql_udfs::semantic::list_reducers(runtime.clone()),
                    Some(semsql_udfs::vector::embed_function(runtime.clone())),
                ),
            ))
            // First, so it sees views before anything rewrites the plan.
            .with_analyzer_rules(
                std::iter::once(Arc::new(AccessCheck) as _)
                    .chain([
                        Arc::new(crate::planner::unknown_literals::UnknownLiterals) as _,
                        Arc::new(crate::planner::nullable_insert_values::NullableInsertValues) as _,
                    ])
                    .chain(Analyzer::new().rules)
                    .chain([
                        Arc::new(crate::planner::integer_arithmetic::PostgresIntegerArithmetic)
                            as _,
                        Arc::new(crate::planner::postgres_casts::PostgresCasts) as _,
                        Arc::new(crate::planner::vector_syntax::VectorCasts::new()) as _,
                    ])
                    .collect(),
            )
            .with_physical_optimizer_rule(Arc::new(checked_arithmetic::CheckedArithmetic))
            .with_physical_optimizer_rule(Arc::new(
                crate::planner::cheap_first::CheapPredicatesFirst,
            ))
            .with_physical_optimizer_rule(Arc::new(
                crate::planner::semantic_nodes::SemanticNodes::new(runtime.clone()),
            ))
            .with_physical_optimizer_rule(Arc::new(crate::planner::vector_index::VectorIndexSearch))
            .build();
        let ctx = SessionContext::new_with_state(state);
        setup_pg_catalog(&ctx, CATALOG, RolesProvider(access.clone())).map_err(|err| *err)?;
        // pgvector's operators (`<->`, `<=>`, `<#>`, `<+>`) and casts, planned onto our functions.
        let mut planners = ctx.state().expr_planners().to_vec();
        planners.insert(
            0,
            Arc::new(crate::planner::vector_syntax::VectorOperators::default()),
        );
        let with_vectors = SessionStateBuilder::new_from_existing(ctx.state())
            .with_expr_planners(planners)
            .with_type_planner(Arc::new(character_types::SemsqlTypePlanner::default()))
            .build();
        let ctx = SessionContext::new_with_state(with_vectors);
        functions::register(&ctx, runtime.clone());
        // Owners, grants and role OIDs in pg_catalog come from the access layer.
        if let Some(pg_catalog) = catalog.schema(search_path::PG_CATALOG) {
            catalog.register_schema(
                search_path::PG_CATALOG,
                Arc::new(pg_catalog_access::AccessAwareCatalog::new(
                    Arc::new(stable_oids::StableOids::new(pg_catalog)),
                    access.clone(),
                )),
            )?;
        }
        ctx.register_udf(pg_catalog_access::PgGetUserById::udf(access.clone()));
        catalog.register_schema(system::SYSTEM_SCHEMA, system::schema(runtime.clone())?)?;

        let engine = Engine {
            template: ctx.state(),
            runtime,
            advisory_locks: Arc::default(),
            access,
        };
        engine.restore_definitions(&manifest).await;
        Ok(engine)
    }

    /// Recreates views and external tables from their statements. A view may name another, so
    /// failures are retried while each round makes progress; what still fails is logged (an
    /// external table whose files are gone, say) and left out rather than stopping the server.
    async fn restore_definitions(&self, manifest: &Manifest) {
        let mut pending: Vec<(String, String, &Definition)> = manifest
            .schemas
            .iter()
            .flat_map(|(schema, entry)| {
                entry
                    .definitions
                    .iter()
                    .map(move |(name, definition)| (schema.clone(), name.clone(), definition))
            })
            .collect();
        let mut last_errors = Vec::new();
        while !pending.is_empty() {
            let mut failed = Vec::new();
            last_errors.clear();
            for (schema, name, definition) in pending.iter() {
                let session = self.session(CATALOG);
                session
                    .state_ref()
                    .write()
                    .config_mut()
                    .options_mut()
                    .catalog
                    .default_schema = definition.default_schema.clone();
                let restored = match session.sql(&definition.sql).await {
                    Ok(frame) => frame.collect().await.map(|_| ()),
                    Err(err) => Err(err),
                };
                if let Err(err) = restored {
                    failed.push((schema.clone(), name.clone(), *definition));
                    last_errors.push(format!("{schema}.{name}: {err}"));
                }
            }
            if failed.len() == pending.len() {
                break;
            }
            pending = failed;
        }
        for error in last_errors {
            tracing::warn!(%error, "a view or external table could not be restored");
        }
    }

    /// Records the statement that created a view or external table; `table` is the name as the
    /// statement gave it, resolved against `ctx`'s default schema.
    pub fn record_definition(ctx: &SessionContext, table: &str, sql: &str) -> Result<()> {
        let default_schema = ctx
            .state()
            .config()
            .options()
            .catalog
            .default_schema
            .clone();
        let reference = TableReference::from(table);
        let schema = reference.schema().unwrap_or(&default_schema).to_owned();
        let catalog = ctx.catalog(CATALOG).ok_or_else(|| {
            datafusion::error::DataFusionError::Internal("no semsql catalog".into())
        })?;
        let Some(durable) = catalog.downcast_ref::<DurableCatalog>() else {
            return Ok(());
        };
        durable.record_definition(
            &schema,
            reference.table(),
            Definition {
                sql: sql.to_owned(),
                default_schema,
            },
        )
    }

    /// The LM runtime every session's functions call.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// The memory pool and disk manager every session's queries share.
    pub fn runtime_env(&self) -> Arc<datafusion::execution::runtime_env::RuntimeEnv> {
        self.template.runtime_env().clone()
    }

    /// The server's roles and privileges.
    pub fn access(&self) -> &Arc<Access> {
        &self.access
    }

    /// A session of the server's own, which may do anything (restoring views, benchmarks).
    pub fn session(&self, database: &str) -> SessionContext {
        self.new_session(database, None)
    }

    /// A new session for a connection that logged in as `role`: its own settings and
    /// transaction, shared tables, and only what `role` was granted.
    pub fn session_for(&self, database: &str, role: &str) -> SessionContext {
        self.new_session(database, Some(role))
    }

    fn new_session(&self, database: &str, role: Option<&str>) -> SessionContext {
        let mut config = self
            .template
            .config()
            .clone()
            .with_extension(Transaction::new())
            .with_extension(Arc::new(SearchPath::new(role.unwrap_or_default())));
        if let Some(role) = role {
            LmSettings::of_mut(config.options_mut()).caller = Some(Arc::new(SessionCaller {
                role: role.to_owned(),
                access: self.access.clone(),
            }));
        }
        let starting = StartingOptions(config.options().as_ref().clone());
        let config = config.with_extension(Arc::new(starting));
        let state = SessionStateBuilder::new_from_existing(self.template.clone())
            .with_session_id(uuid::Uuid::new_v4().to_string())
            .with_config(config)
            .build();
        let ctx = SessionContext::new_with_state(state);
        ctx.register_udf(create_current_database_udf(database));
        if let Some(role) = role {
            functions::register_role_functions(&ctx, role, self.access.clone());
        }
        advisory_locks::register(&ctx, self.advisory_locks.session());
        let path = SearchPath::of(ctx.state_ref().read().config());
        if let (Some(path), Some(catalog)) = (path, ctx.catalog(database)) {
            search_path::register(&ctx, path, catalog);
        }
        ctx
    }
}

/// Re-creates the functions whose behaviour depends on a session option (`now()` and
/// `current_date` read the time zone, the `to_timestamp` family too) after an option changed.
/// DataFusion's own `SET` does this; semsql sets options itself, so it must too, or `now()`
/// keeps the zone the session started with while `current_date` follows the new one.
pub fn refresh_option_dependent_functions(state: &mut SessionState) {
    let options = state.config().options().clone();
    let updated: Vec<_> = state
        .scalar_functions()
        .values()
        .filter_map(|udf| udf.inner().with_updated_config(&options))
        .collect();
    for udf in updated {
        // Registering replaces the function of the same name; it cannot fail for scalar ones.
        let _ = datafusion::execution::FunctionRegistry::register_udf(state, Arc::new(udf));
    }
}
