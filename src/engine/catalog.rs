//! The durable catalog: schemas and tables that DataFusion's DDL creates are written to the data
//! folder's manifest before DataFusion sees them registered.
//!
//! DataFusion builds `CREATE TABLE` and `CREATE TABLE AS` results as a `MemTable` and hands it to
//! [`SchemaProvider::register_table`]; we persist its rows and keep a [`DurableTable`] instead.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{
    CatalogProvider, MemTable, MemorySchemaProvider, SchemaProvider, TableProvider,
};
use datafusion::common::{DFSchema, Result};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::Expr;
use datafusion::prelude::SessionContext;
use datafusion::sql::unparser::expr_to_sql;

use super::storage::{Definition, IndexEntry, Manifest, SchemaEntry, Store, TableEntry};
use super::table::{ColumnRules, DurableTable, TableData, TableShared};
use super::unique_keys::{check_keys, keys_from_constraints};
use crate::error::SemsqlError;
use crate::vector::index::VectorIndex;

/// Schemas that live in memory only and are rebuilt at every start (pg_catalog and the like).
const SYSTEM_SCHEMAS: &[&str] = &[
    "pg_catalog",
    "information_schema",
    super::system::SYSTEM_SCHEMA,
];

#[derive(Debug)]
pub struct DurableCatalog {
    store: Arc<Store>,
    schemas: RwLock<BTreeMap<String, Arc<dyn SchemaProvider>>>,
}

impl DurableCatalog {
    /// Loads every managed table named in `manifest`.
    pub fn load(store: Arc<Store>, manifest: &Manifest) -> Result<Self> {
        let mut schemas: BTreeMap<String, Arc<dyn SchemaProvider>> = BTreeMap::new();
        for (schema_name, entry) in &manifest.schemas {
            let schema = DurableSchema::load(schema_name, store.clone(), entry)?;
            schemas.insert(schema_name.clone(), Arc::new(schema));
        }
        Ok(DurableCatalog {
            store,
            schemas: RwLock::new(schemas),
        })
    }
}

impl DurableCatalog {
    /// Records the statement that created the view or external table `schema.name`, so it is
    /// recreated at the next start.
    pub fn record_definition(
        &self,
        schema: &str,
        name: &str,
        definition: Definition,
    ) -> Result<()> {
        self.store
            .commit(|manifest| {
                let entry = manifest
                    .schemas
                    .get_mut(schema)
                    .ok_or_else(|| SemsqlError::SchemaNotFound(schema.to_owned()))?;
                entry.definitions.insert(name.to_owned(), definition);
                Ok(())
            })
            .map_err(SemsqlError::into_datafusion)
    }
}

impl CatalogProvider for DurableCatalog {
    fn schema_names(&self) -> Vec<String> {
        self.schemas
            .read()
            .expect("catalog lock")
            .keys()
            .cloned()
            .collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        self.schemas
            .read()
            .expect("catalog lock")
            .get(name)
            .cloned()
    }

    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> Result<Option<Arc<dyn SchemaProvider>>> {
        if SYSTEM_SCHEMAS.contains(&name) || !schema.is::<MemorySchemaProvider>() {
            return Ok(self
                .schemas
                .write()
                .expect("catalog lock")
                .insert(name.to_owned(), schema));
        }
        let mut schemas = self.schemas.write().expect("catalog lock");
        if schemas.contains_key(name) {
            return Err(SemsqlError::DuplicateSchema(name.to_owned()).into_datafusion());
        }
        self.store
            .commit(|manifest| {
                manifest
                    .schemas
                    .insert(name.to_owned(), SchemaEntry::default());
                Ok(())
            })
            .map_err(SemsqlError::into_datafusion)?;
        let durable = DurableSchema::load(name, self.store.clone(), &SchemaEntry::default())?;
        Ok(schemas.insert(name.to_owned(), Arc::new(durable)))
    }

    fn deregister_schema(
        &self,
        name: &str,
        cascade: bool,
    ) -> Result<Option<Arc<dyn SchemaProvider>>> {
        let mut schemas = self.schemas.write().expect("catalog lock");
        let Some(schema) = schemas.get(name).cloned() else {
            return Ok(None);
        };
        if let Some(durable) = schema.downcast_ref::<DurableSchema>() {
            if !cascade && !durable.table_names().is_empty() {
                return Err(SemsqlError::SchemaNotEmpty(name.to_owned()).into_datafusion());
            }
            let removed = self
                .store
                .commit(|manifest| {
                    Ok(manifest
                        .schemas
                        .remove(name)
                        .map(|entry| {
                            entry
                                .tables
                                .into_values()
                                .flat_map(|table| table.files)
                                .collect::<Vec<_>>()
                        })
                        .unwrap_or_default())
                })
                .map_err(SemsqlError::into_datafusion)?;
            self.store.remove_data_files(&removed);
            for table in durable.table_names() {
                if let Some(shared) = durable.managed_table(&table) {
                    shared
                        .indexes()
                        .iter()
                        .for_each(|index| index.remove_file());
                }
            }
        }
        Ok(schemas.remove(name))
    }
}

#[derive(Debug)]
pub struct DurableSchema {
    name: String,
    store: Arc<Store>,
    tables: RwLock<BTreeMap<String, Arc<dyn TableProvider>>>,
}

impl DurableSchema {
    fn load(name: &str, store: Arc<Store>, entry: &SchemaEntry) -> Result<Self> {
        let mut tables: BTreeMap<String, Arc<dyn TableProvider>> = BTreeMap::new();
        for (table_name, table) in &entry.tables {
            let schema = Arc::new(table.schema.clone());
            let mut batches = Vec::new();
            for file in &table.files {
                batches.extend(
                    store
                        .read_data_file(file, &schema)
                        .map_err(SemsqlError::into_datafusion)?,
                );
            }
            let defaults = parse_defaults(&table.defaults, &schema)?;
            let data = TableData {
                version: table.version,
                batches,
                files: table.files.clone(),
            };
            tables.insert(
                table_name.clone(),
                Arc::new(DurableTable::new(
                    table.id.clone(),
                    name,
                    table_name,
                    schema,
                    store.clone(),
                    ColumnRules {
                        defaults,
                        keys: table.keys.clone(),
                    },
                    data,
                )),
            );
        }
        for (index_name, index) in &entry.indexes {
            let Some(table) = tables
                .get(&index.table)
                .and_then(|t| t.downcast_ref::<DurableTable>())
                .map(|t| t.shared().clone())
            else {
                tracing::warn!(index = %index_name, table = %index.table, "an index's table is missing; index skipped");
                continue;
            };
            let opened = VectorIndex::open(
                index_name,
                index.clone(),
                &table.schema,
                &table.committed(),
                store.index_path(&index.file),
            )
            .map_err(SemsqlError::into_datafusion)?;
            table.attach_index(Arc::new(opened));
        }
        Ok(DurableSchema {
            name: name.to_owned(),
            store,
            tables: RwLock::new(tables),
        })
    }

    /// The managed table `name`, if there is one.
    pub fn managed_table(&self, name: &str) -> Option<Arc<TableShared>> {
        let tables = self.tables.read().expect("schema lock");
        let table = tables.get(name)?.downcast_ref::<DurableTable>()?;
        Some(table.shared().clone())
    }

    /// `CREATE INDEX`: builds the graph over the committed rows, holding the table's writer
    /// lock so no commit slips in between, saves it, then records the index. `Ok(false)` when
    /// `if_not_exists` and an index of that name exists.
    pub async fn create_index(
        &self,
        name: &str,
        entry: IndexEntry,
        if_not_exists: bool,
    ) -> Result<bool, SemsqlError> {
        let exists = |manifest: &Manifest| {
            manifest.schemas.get(&self.name).is_some_and(|schema| {
                schema.indexes.contains_key(name) || schema.tables.contains_key(name)
            })
        };
        if exists(&self.store.manifest()) {
            if if_not_exists {
                return Ok(false);
            }
            return Err(SemsqlError::DuplicateTable(name.to_owned()));
        }
        let table = self
            .managed_table(&entry.table)
            .ok_or_else(|| SemsqlError::TableNotFound(entry.table.clone()))?;
        let _writer = table.writer.clone().lock_owned().await;
        let data = table.committed();
        let path = self.store.index_path(&entry.file);
        let (name_owned, entry_owned, schema) =
            (name.to_owned(), entry.clone(), table.schema.clone());
        let index = tokio::task::spawn_blocking(move || {
            let index = VectorIndex::build(&name_owned, entry_owned, &schema, &data, path)?;
            index.save_now();
            Ok::<_, SemsqlError>(index)
        })
        .await
        .map_err(|err| SemsqlError::Storage(format!("index build failed: {err}")))??;
        let committed = self.store.commit(|manifest| {
            if exists(manifest) {
                return Err(SemsqlError::DuplicateTable(name.to_owned()));
            }
            let schema = manifest
                .schemas
                .get_mut(&self.name)
                .ok_or_else(|| SemsqlError::SchemaNotFound(self.name.clone()))?;
            // The table may have been dropped while the graph was being built.
            if !schema.tables.contains_key(&entry.table) {
                return Err(SemsqlError::TableNotFound(entry.table.clone()));
            }
            schema.indexes.insert(name.to_owned(), entry);
            Ok(())
        });
        if let Err(err) = committed {
            index.remove_file();
            return Err(err);
        }
        table.attach_index(Arc::new(index));
        Ok(true)
    }

    /// `DROP INDEX`: `Ok(false)` when there is no index `name`.
    pub fn drop_index(&self, name: &str) -> Result<bool, SemsqlError> {
        let removed = self.store.commit(|manifest| {
            Ok(manifest
                .schemas
                .get_mut(&self.name)
                .and_then(|schema| schema.indexes.remove(name)))
        })?;
        let Some(entry) = removed else {
            return Ok(false);
        };
        match self
            .managed_table(&entry.table)
            .and_then(|table| table.detach_index(name))
        {
            Some(index) => index.remove_file(),
            None => {
                let _ = std::fs::remove_file(self.store.index_path(&entry.file));
            }
        }
        Ok(true)
    }

    /// What `each` makes of every managed table's manifest entry, in table name order.
    fn collect_table_entries<T>(&self, each: impl Fn(&str, &TableEntry) -> Vec<T>) -> Vec<T> {
        self.store
            .manifest()
            .schemas
            .get(&self.name)
            .map(|schema| {
                schema
                    .tables
                    .iter()
                    .flat_map(|(table, entry)| each(table, entry))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The schema's PRIMARY KEY and UNIQUE constraints, each with its table's name.
    pub fn keys(&self) -> Vec<(String, super::unique_keys::KeyEntry)> {
        self.collect_table_entries(|table, entry| {
            entry
                .keys
                .iter()
                .map(|key| (table.to_owned(), key.clone()))
                .collect()
        })
    }

    /// The schema's columns with defaults: table, column and the default's SQL.
    pub fn defaults(&self) -> Vec<(String, String, String)> {
        self.collect_table_entries(|table, entry| {
            entry
                .defaults
                .iter()
                .map(|(column, sql)| (table.to_owned(), column.clone(), sql.clone()))
                .collect()
        })
    }

    /// The names of the schema's vector indexes, with their definitions.
    pub fn indexes(&self) -> Vec<(String, IndexEntry)> {
        self.store
            .manifest()
            .schemas
            .get(&self.name)
            .map(|schema| schema.indexes.clone().into_iter().collect())
            .unwrap_or_default()
    }

    /// Persists a table DataFusion built in memory and returns its durable replacement.
    fn persist_memory_table(&self, name: &str, table: &MemTable) -> Result<DurableTable> {
        let schema = table.schema();
        let mut batches: Vec<RecordBatch> = Vec::new();
        for partition in &table.batches {
            let partition = partition.try_read().map_err(|_| {
                DataFusionError::Internal("new table is still being written".into())
            })?;
            batches.extend(partition.iter().filter(|b| b.num_rows() > 0).cloned());
        }
        // PostgreSQL's CREATE TABLE ... AS never makes a column NOT NULL, while DataFusion
        // keeps the query's nullability (a literal is never NULL, so `AS SELECT 1 AS a` would
        // refuse a later NULL). A table that arrives with rows was made from a query: its
        // columns become nullable. A plain CREATE TABLE arrives empty, with what it declared.
        let (schema, batches) = if batches.is_empty() {
            (schema, batches)
        } else {
            let nullable: SchemaRef = Arc::new(Schema::new_with_metadata(
                schema
                    .fields()
                    .iter()
                    .map(|field| field.as_ref().clone().with_nullable(true))
                    .collect::<Vec<_>>(),
                schema.metadata().clone(),
            ));
            let batches = batches
                .into_iter()
                .map(|batch| batch.with_schema(nullable.clone()))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            (nullable, batches)
        };
        let keys = table
            .constraints()
            .map(|constraints| keys_from_constraints(name, &schema, constraints))
            .unwrap_or_default();
        // A primary key's columns are NOT NULL, as in PostgreSQL.
        let schema = match keys.iter().find(|key| key.primary) {
            Some(primary) => Arc::new(Schema::new_with_metadata(
                schema
                    .fields()
                    .iter()
                    .map(|field| {
                        let key_column = primary.columns.contains(field.name());
                        let field = field.as_ref().clone();
                        if key_column {
                            field.with_nullable(false)
                        } else {
                            field
                        }
                    })
                    .collect::<Vec<_>>(),
                schema.metadata().clone(),
            )),
            None => schema,
        };
        // Checked like every later write (`CREATE TABLE t (..., PRIMARY KEY (x)) AS VALUES ...`).
        let batches = batches
            .into_iter()
            .map(|batch| {
                for (column, field) in batch.columns().iter().zip(schema.fields()) {
                    if !field.is_nullable() && column.null_count() > 0 {
                        return Err(SemsqlError::NotNullViolation {
                            column: field.name().clone(),
                            table: name.to_owned(),
                        }
                        .into_datafusion());
                    }
                }
                Ok(RecordBatch::try_new(
                    schema.clone(),
                    batch.columns().to_vec(),
                )?)
            })
            .collect::<Result<Vec<_>>>()?;
        check_keys(name, &schema, &keys, &batches).map_err(SemsqlError::into_datafusion)?;
        let mut defaults = HashMap::new();
        let mut default_sql = BTreeMap::new();
        for field in schema.fields() {
            if let Some(expr) = table.get_column_default(field.name()) {
                default_sql.insert(field.name().clone(), expr_to_sql(expr)?.to_string());
                defaults.insert(field.name().clone(), expr.clone());
            }
        }
        let file = self
            .store
            .write_data_file(&schema, &batches)
            .map_err(SemsqlError::into_datafusion)?;
        let files: Vec<String> = file.into_iter().collect();
        let id = uuid::Uuid::new_v4().to_string();
        let committed = self.store.commit(|manifest| {
            let entry = manifest
                .schemas
                .get_mut(&self.name)
                .ok_or_else(|| SemsqlError::SchemaNotFound(self.name.clone()))?;
            if entry.tables.contains_key(name) {
                return Err(SemsqlError::DuplicateTable(name.to_owned()));
            }
            entry.tables.insert(
                name.to_owned(),
                TableEntry {
                    schema: schema.as_ref().clone(),
                    files: files.clone(),
                    defaults: default_sql,
                    keys: keys.clone(),
                    version: 1,
                    id: id.clone(),
                },
            );
            Ok(())
        });
        if let Err(err) = committed {
            self.store.remove_data_files(&files);
            return Err(err.into_datafusion());
        }
        let data = TableData {
            version: 1,
            batches,
            files,
        };
        Ok(DurableTable::new(
            id,
            &self.name,
            name,
            schema,
            self.store.clone(),
            ColumnRules { defaults, keys },
            data,
        ))
    }
}

fn parse_defaults(
    defaults: &BTreeMap<String, String>,
    schema: &datafusion::arrow::datatypes::SchemaRef,
) -> Result<HashMap<String, Expr>> {
    if defaults.is_empty() {
        return Ok(HashMap::new());
    }
    // The functions a default may call that DataFusion does not have: a default is checked
    // against the full session when the table is made, and this context must read it back.
    let ctx = SessionContext::new();
    super::pg_functions::register(&ctx);
    ctx.register_udf(datafusion::logical_expr::ScalarUDF::new_from_impl(
        super::gen_random_uuid::GenRandomUuid::default(),
    ));
    let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
    defaults
        .iter()
        .map(|(column, sql)| {
            let expr = match ctx.parse_sql_expr(sql, &df_schema) {
                Ok(expr) => expr,
                Err(err) => {
                    // The table still loads (its rows and the manifest's text of the default
                    // are untouched); only an INSERT that needs this default fails, saying why.
                    tracing::error!(%column, default = %sql, %err, "a column default cannot be read back");
                    let data_type = schema
                        .field_with_name(column)
                        .map(|field| field.data_type().clone())
                        .unwrap_or(datafusion::arrow::datatypes::DataType::Null);
                    unreadable_default(column, sql, &err.to_string(), data_type)
                }
            };
            Ok((column.clone(), expr))
        })
        .collect()
}

/// A default standing in for one that could not be read back at start: evaluating it fails
/// with the column, the default's text and the reason.
fn unreadable_default(
    column: &str,
    sql: &str,
    reason: &str,
    data_type: datafusion::arrow::datatypes::DataType,
) -> Expr {
    let message =
        format!("the default of column \"{column}\" ({sql}) cannot be read back: {reason}");
    let udf = datafusion::logical_expr::create_udf(
        "semsql_unreadable_default",
        vec![],
        data_type,
        datafusion::logical_expr::Volatility::Volatile,
        Arc::new(move |_| Err(DataFusionError::Execution(message.clone()))),
    );
    udf.call(vec![])
}

#[async_trait]
impl SchemaProvider for DurableSchema {
    fn table_names(&self) -> Vec<String> {
        self.tables
            .read()
            .expect("schema lock")
            .keys()
            .cloned()
            .collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        Ok(self.tables.read().expect("schema lock").get(name).cloned())
    }

    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> Result<Option<Arc<dyn TableProvider>>> {
        let mut tables = self.tables.write().expect("schema lock");
        if tables.contains_key(&name) {
            return Err(SemsqlError::DuplicateTable(name).into_datafusion());
        }
        let stored: Arc<dyn TableProvider> = match table.downcast_ref::<MemTable>() {
            Some(memory) => Arc::new(self.persist_memory_table(&name, memory)?),
            // Views and external tables: kept for this run; their definitions are persisted by
            // the statement hooks that create them. A view's plan is marked for the access
            // check (see `access::plan_check`).
            None => crate::access::plan_check::MarkedView::wrap(&self.name, &name, table),
        };
        tables.insert(name, stored);
        Ok(None)
    }

    fn deregister_table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let mut tables = self.tables.write().expect("schema lock");
        let Some(table) = tables.get(name).cloned() else {
            return Ok(None);
        };
        let removed = self
            .store
            .commit(|manifest| {
                let entry = manifest
                    .schemas
                    .get_mut(&self.name)
                    .ok_or_else(|| SemsqlError::SchemaNotFound(self.name.clone()))?;
                entry.definitions.remove(name);
                entry.relation_acls.remove(name);
                entry.indexes.retain(|_, index| index.table != name);
                Ok(entry
                    .tables
                    .remove(name)
                    .map(|t| t.files)
                    .unwrap_or_default())
            })
            .map_err(SemsqlError::into_datafusion)?;
        self.store.remove_data_files(&removed);
        if let Some(durable) = table.downcast_ref::<DurableTable>() {
            for index in durable.shared().indexes() {
                index.remove_file();
            }
        }
        tables.remove(name);
        Ok(Some(table))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables.read().expect("schema lock").contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field};
    use datafusion::logical_expr::LogicalPlanBuilder;
    use datafusion::prelude::DataFrame;

    #[tokio::test]
    async fn a_default_that_cannot_be_read_back_fails_only_when_used() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int32, true),
            Field::new("b", DataType::Utf8, true),
        ]));
        let defaults = BTreeMap::from([
            ("a".to_owned(), "no_such_function()".to_owned()),
            ("b".to_owned(), "'x'".to_owned()),
        ]);
        let parsed = parse_defaults(&defaults, &schema).unwrap();
        let ctx = SessionContext::new();
        let one_row = LogicalPlanBuilder::empty(true).build().unwrap();
        let evaluate = |expr: &Expr| {
            DataFrame::new(ctx.state(), one_row.clone())
                .select(vec![expr.clone().alias("v")])
                .unwrap()
                .collect()
        };
        let err = evaluate(&parsed["a"]).await.unwrap_err().to_string();
        assert!(
            err.contains("the default of column \"a\" (no_such_function()) cannot be read back"),
            "{err}"
        );
        let readable = evaluate(&parsed["b"]).await.unwrap();
        assert_eq!(readable[0].num_rows(), 1);
    }
}
