//! The rows semsql adds to datafusion-pg-catalog's `pg_index`, `pg_constraint`, `pg_am` and
//! `pg_attrdef`, which otherwise hold only PostgreSQL's own system objects:
//!
//! - `pg_index`: a row per index of semsql's (HNSW indexes and the unique btree index of
//!   each PRIMARY KEY and UNIQUE constraint, see `engine::pg_indexes`);
//! - `pg_constraint`: a row per PRIMARY KEY (`p`) and UNIQUE (`u`) constraint;
//! - `pg_am`: the `hnsw` access method, as pgvector adds it;
//! - `pg_attrdef`: a row per column default, with the default's SQL as `adbin` (which
//!   `pg_get_expr` prints as it is).
//!
//! Tables are found by schema and name in `pg_class`, so the OIDs are the ones every other
//! catalog shows for them.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{CatalogProvider, Session, TableProvider};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableType;
use datafusion::error::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::scalar::ScalarValue;

use super::catalog::DurableSchema;
use super::pg_catalog_access::{all_rows, namespace_names_of, relations_of, stable_oid};
use super::pg_indexes::{
    indexes_of, pg_constraint_rows, pg_index_rows, session_catalog, IndexDefinition, HNSW_AM_OID,
};

/// Which catalog gets rows.
#[derive(Debug, Clone, Copy)]
pub enum Augmented {
    Index,
    Constraint,
    AccessMethod,
    Attrdef,
}

impl Augmented {
    /// The catalog table `name` (unqualified, any case) is one of these.
    pub fn of(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "pg_index" => Augmented::Index,
            "pg_constraint" => Augmented::Constraint,
            "pg_am" => Augmented::AccessMethod,
            "pg_attrdef" => Augmented::Attrdef,
            _ => return None,
        })
    }
}

/// A datafusion-pg-catalog table with semsql's rows after its own.
#[derive(Debug)]
pub struct AugmentedTable {
    augmented: Augmented,
    inner: Arc<dyn TableProvider>,
    namespaces: Option<Arc<dyn TableProvider>>,
    classes: Option<Arc<dyn TableProvider>>,
}

/// A relation's OID and its schema's OID.
#[derive(Debug, Clone, Copy)]
struct RelationOids {
    relation: i32,
    namespace: i32,
}

impl AugmentedTable {
    pub fn new(
        augmented: Augmented,
        inner: Arc<dyn TableProvider>,
        namespaces: Option<Arc<dyn TableProvider>>,
        classes: Option<Arc<dyn TableProvider>>,
    ) -> Self {
        Self {
            augmented,
            inner,
            namespaces,
            classes,
        }
    }

    /// (schema, relation name) → OIDs, from `pg_class` and `pg_namespace`.
    async fn relations(
        &self,
        state: &dyn Session,
    ) -> Result<HashMap<(String, String), RelationOids>> {
        let mut relations = HashMap::new();
        let (Some(namespaces), Some(classes)) = (&self.namespaces, &self.classes) else {
            return Ok(relations);
        };
        let schema_names = namespace_names_of(namespaces.as_ref(), state).await?;
        for relation in relations_of(classes.as_ref(), &schema_names, state).await? {
            let (Ok(oid), Ok(namespace)) = (
                i32::try_from(relation.oid),
                i32::try_from(relation.namespace),
            ) else {
                continue;
            };
            relations.insert(
                (relation.schema, relation.name),
                RelationOids {
                    relation: oid,
                    namespace,
                },
            );
        }
        Ok(relations)
    }

    /// Each index of semsql's whose table `pg_class` knows, with the table's OIDs and the
    /// indexed columns' numbers.
    async fn located_indexes(
        &self,
        state: &dyn Session,
        catalog: &dyn CatalogProvider,
    ) -> Result<Vec<(IndexDefinition, RelationOids, Vec<i32>)>> {
        let relations = self.relations(state).await?;
        let mut located = Vec::new();
        for index in indexes_of(catalog) {
            let Some(oids) = relations.get(&(index.schema.clone(), index.table.clone())) else {
                continue;
            };
            let Some(numbers) =
                column_numbers(catalog, &index.schema, &index.table, &index.columns).await?
            else {
                continue;
            };
            located.push((index, *oids, numbers));
        }
        Ok(located)
    }

    async fn added_rows(&self, state: &dyn Session) -> Result<Option<RecordBatch>> {
        let schema = self.inner.schema();
        if let Augmented::AccessMethod = self.augmented {
            return Ok(Some(hnsw_access_method(&schema)?));
        }
        let Some(catalog) = session_catalog(state) else {
            return Ok(None);
        };
        let batch = match self.augmented {
            Augmented::Index => {
                let rows: Vec<_> = self
                    .located_indexes(state, catalog.as_ref())
                    .await?
                    .into_iter()
                    .map(|(index, oids, numbers)| (index, oids.relation, numbers))
                    .collect();
                pg_index_rows(&schema, &rows)?
            }
            Augmented::Constraint => {
                let rows: Vec<_> = self
                    .located_indexes(state, catalog.as_ref())
                    .await?
                    .into_iter()
                    .map(|(index, oids, numbers)| (index, oids.relation, numbers, oids.namespace))
                    .collect();
                pg_constraint_rows(&schema, &rows)?
            }
            Augmented::Attrdef => self.attrdef_rows(state, catalog.as_ref(), &schema).await?,
            Augmented::AccessMethod => return Ok(None),
        };
        Ok(Some(batch))
    }

    async fn attrdef_rows(
        &self,
        state: &dyn Session,
        catalog: &dyn CatalogProvider,
        schema: &SchemaRef,
    ) -> Result<RecordBatch> {
        let relations = self.relations(state).await?;
        let mut rows: Vec<(i32, i32, i16, String)> = Vec::new();
        let mut schema_names = catalog.schema_names();
        schema_names.sort();
        for schema_name in schema_names {
            let Some(durable) = catalog.schema(&schema_name) else {
                continue;
            };
            let Some(durable) = durable.downcast_ref::<DurableSchema>() else {
                continue;
            };
            for (table, column, sql) in durable.defaults() {
                let field = durable
                    .managed_table(&table)
                    .and_then(|t| t.schema.field_with_name(&column).ok().cloned());
                let sql = match field {
                    Some(field) => stored_form(&sql, &field),
                    None => sql,
                };
                let Some(oids) = relations.get(&(schema_name.clone(), table.clone())) else {
                    continue;
                };
                let Some(numbers) =
                    column_numbers(catalog, &schema_name, &table, std::slice::from_ref(&column))
                        .await?
                else {
                    continue;
                };
                let number = i16::try_from(numbers[0]).unwrap_or(i16::MAX);
                let key = format!("attrdef:{schema_name}.{table}.{column}");
                let oid = stable_oid(key.bytes(), 1_000_000_000);
                rows.push((oid, oids.relation, number, sql));
            }
        }
        rows_in_schema(schema, rows.len(), |name, row| {
            let (oid, relation, number, sql) = &rows[row];
            match name {
                "oid" => ScalarValue::Int32(Some(*oid)),
                "adrelid" => ScalarValue::Int32(Some(*relation)),
                "adnum" => ScalarValue::Int16(Some(*number)),
                "adbin" => ScalarValue::Utf8(Some(sql.clone())),
                _ => ScalarValue::Null,
            }
        })
    }
}

/// A default as PostgreSQL stores and prints it: a string constant is coerced to the column's
/// type when the table is made, so `DEFAULT 'x'` on a text column reads back `'x'::text`
/// (`'x'::character varying` on a varchar, `'2020-01-01'::date` on a date). Other
/// expressions are kept as written.
fn stored_form(sql: &str, field: &datafusion::arrow::datatypes::Field) -> String {
    use datafusion::arrow::datatypes::DataType;
    use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, Value};
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    let parsed = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut parser| parser.parse_expr());
    let Ok(SqlExpr::Value(value)) = parsed else {
        return sql.to_owned();
    };
    if !matches!(value.value, Value::SingleQuotedString(_)) {
        return sql.to_owned();
    }
    let type_name = match field.data_type() {
        _ if super::character_types::varchar_length(field).is_some() => {
            "character varying".to_owned()
        }
        _ if super::character_types::char_length(field).is_some() => "bpchar".to_owned(),
        _ if super::uuid_type::is_uuid(field) => "uuid".to_owned(),
        DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Date32
        | DataType::Date64
        | DataType::Time32(_)
        | DataType::Time64(_)
        | DataType::Timestamp(..)
        | DataType::Interval(_)
        | DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView => {
            match super::pg_functions::postgres_type_name(field.data_type()) {
                Ok(name) => name,
                Err(_) => return sql.to_owned(),
            }
        }
        _ => return sql.to_owned(),
    };
    format!("{value}::{type_name}")
}

/// `pg_am`'s row for `hnsw`.
fn hnsw_access_method(schema: &SchemaRef) -> Result<RecordBatch> {
    rows_in_schema(schema, 1, |name, _| match name {
        "oid" => ScalarValue::Int32(Some(HNSW_AM_OID)),
        "amname" => ScalarValue::Utf8(Some("hnsw".to_owned())),
        "amhandler" => ScalarValue::Utf8(Some("hnswhandler".to_owned())),
        "amtype" => ScalarValue::Utf8(Some("i".to_owned())),
        _ => ScalarValue::Null,
    })
}

/// A batch of `count` rows in `schema`'s columns, each value from `value(column, row)`
/// (cast to the column's type; `ScalarValue::Null` for NULL).
pub fn rows_in_schema(
    schema: &SchemaRef,
    count: usize,
    value: impl Fn(&str, usize) -> ScalarValue,
) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| {
            if count == 0 {
                return Ok(datafusion::arrow::array::new_empty_array(field.data_type()));
            }
            let values = (0..count)
                .map(|row| {
                    let value = value(field.name(), row);
                    if value.is_null() {
                        ScalarValue::try_from(field.data_type())
                    } else {
                        value.cast_to(field.data_type())
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            ScalarValue::iter_to_array(values)
        })
        .collect::<Result<Vec<ArrayRef>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// The numbers (`attnum`, from 1) of `columns` in a table, or None when one is missing.
async fn column_numbers(
    catalog: &dyn CatalogProvider,
    schema: &str,
    table: &str,
    columns: &[String],
) -> Result<Option<Vec<i32>>> {
    let Some(provider) = catalog.schema(schema) else {
        return Ok(None);
    };
    let Some(table) = provider.table(table).await? else {
        return Ok(None);
    };
    let fields = table.schema();
    Ok(columns
        .iter()
        .map(|column| {
            fields
                .index_of(column)
                .ok()
                .and_then(|at| i32::try_from(at + 1).ok())
        })
        .collect())
}

#[async_trait]
impl TableProvider for AugmentedTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
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
        let mut batches = all_rows(self.inner.as_ref(), state).await?;
        if let Some(added) = self.added_rows(state).await? {
            batches.push(added);
        }
        Ok(MemorySourceConfig::try_new_exec(
            &[batches],
            self.inner.schema(),
            projection.cloned(),
        )?)
    }
}
