//! semsql's HNSW indexes in PostgreSQL's catalogs, as pgvector's indexes appear there:
//! `pg_indexes`, a `pg_class` row (relkind `i`) per index, and `pg_get_indexdef`, so `\di`
//! lists them (not yet `pg_index`: see docs/vectors.md).
//!
//! An index's OID is a stable hash of its schema and name (the same on every connection and
//! after a restart), kept above the range datafusion-pg-catalog counts relations in.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{CatalogProvider, Session, TableProvider};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableType;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use datafusion::physical_plan::ExecutionPlan;

use super::catalog::DurableSchema;
use super::search_path::quote_ident;

/// One HNSW index, as the manifest records it.
#[derive(Debug, Clone)]
pub struct IndexDefinition {
    pub schema: String,
    pub name: String,
    pub table: String,
    pub column: String,
    pub operator_class: String,
    pub m: usize,
    pub ef_construction: usize,
}

/// FNV-1a of `schema.name`, from 1,000,000,000 up: far above the OIDs datafusion-pg-catalog
/// hands out one by one from 16384.
pub fn index_oid(schema: &str, name: &str) -> i32 {
    let bytes = schema.bytes().chain([b'.']).chain(name.bytes());
    super::pg_catalog_access::stable_oid(bytes, 1_000_000_000)
}

impl IndexDefinition {
    pub fn oid(&self) -> i32 {
        index_oid(&self.schema, &self.name)
    }

    /// The statement, as PostgreSQL's `pg_get_indexdef` prints a pgvector index.
    pub fn sql(&self) -> String {
        format!(
            "CREATE INDEX {} ON {}.{} USING hnsw ({} {}) WITH (m='{}', ef_construction='{}')",
            quote_ident(&self.name),
            quote_ident(&self.schema),
            quote_ident(&self.table),
            quote_ident(&self.column),
            self.operator_class,
            self.m,
            self.ef_construction
        )
    }
}

/// Every HNSW index of every schema of `catalog`, in schema and name order.
pub fn indexes_of(catalog: &dyn CatalogProvider) -> Vec<IndexDefinition> {
    let mut names = catalog.schema_names();
    names.sort();
    let mut out = Vec::new();
    for schema_name in names {
        let Some(schema) = catalog.schema(&schema_name) else {
            continue;
        };
        let Some(durable) = schema.downcast_ref::<DurableSchema>() else {
            continue;
        };
        for (name, entry) in durable.indexes() {
            out.push(IndexDefinition {
                schema: schema_name.clone(),
                name,
                table: entry.table,
                column: entry.column,
                operator_class: entry.operator_class,
                m: entry.m,
                ef_construction: entry.ef_construction,
            });
        }
    }
    out
}

/// The session's semsql catalog, from a scan's state.
pub fn session_catalog(state: &dyn Session) -> Option<Arc<dyn CatalogProvider>> {
    state
        .as_any()
        .downcast_ref::<datafusion::execution::SessionState>()
        .and_then(|state| state.catalog_list().catalog(super::CATALOG))
}

/// `pg_get_indexdef(oid [, column [, pretty]])`: the index's `CREATE INDEX` statement, or
/// with a column number its key column; NULL for an OID that is no index of semsql's.
#[derive(Debug)]
pub struct PgGetIndexdef {
    catalog: Arc<dyn CatalogProvider>,
    signature: Signature,
}

impl PgGetIndexdef {
    pub fn new(catalog: Arc<dyn CatalogProvider>) -> Self {
        Self {
            catalog,
            signature: Signature::one_of(
                (1..=3).map(TypeSignature::Any).collect(),
                Volatility::Stable,
            ),
        }
    }
}

impl PartialEq for PgGetIndexdef {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl Eq for PgGetIndexdef {}

impl std::hash::Hash for PgGetIndexdef {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        "pg_get_indexdef".hash(state);
    }
}

impl ScalarUDFImpl for PgGetIndexdef {
    fn name(&self) -> &str {
        "pg_get_indexdef"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let oids = cast(&arrays[0], &DataType::Int64)?;
        let oids = oids.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        let columns = match arrays.get(1) {
            Some(array) => Some(cast(array, &DataType::Int64)?),
            None => None,
        };
        let indexes = indexes_of(self.catalog.as_ref());
        let definitions: StringArray = (0..rows)
            .map(|row| {
                if oids.is_null(row) {
                    return None;
                }
                let index = indexes
                    .iter()
                    .find(|index| i64::from(index.oid()) == oids.value(row))?;
                let column = columns.as_ref().map_or(Some(0), |columns| {
                    let columns = columns.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
                    (!columns.is_null(row)).then(|| columns.value(row))
                })?;
                match column {
                    0 => Some(index.sql()),
                    1 => Some(quote_ident(&index.column)),
                    _ => None,
                }
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(definitions)))
    }
}

/// `pg_indexes`: schemaname, tablename, indexname, tablespace, indexdef.
#[derive(Debug)]
pub struct PgIndexesView {
    schema: SchemaRef,
}

impl PgIndexesView {
    pub fn new() -> Self {
        let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
        Self {
            schema: Arc::new(Schema::new(vec![
                text("schemaname", false),
                text("tablename", false),
                text("indexname", false),
                text("tablespace", true),
                text("indexdef", false),
            ])),
        }
    }
}

impl Default for PgIndexesView {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl TableProvider for PgIndexesView {
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
        let indexes = session_catalog(state)
            .map(|catalog| indexes_of(catalog.as_ref()))
            .unwrap_or_default();
        let column = |value: &dyn Fn(&IndexDefinition) -> String| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(indexes.iter().map(value)))
        };
        let columns = vec![
            column(&|index| index.schema.clone()),
            column(&|index| index.table.clone()),
            column(&|index| index.name.clone()),
            Arc::new(StringArray::from(vec![None::<&str>; indexes.len()])) as ArrayRef,
            column(&|index| index.sql()),
        ];
        let batch = RecordBatch::try_new(self.schema.clone(), columns)?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.schema.clone(),
            projection.cloned(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_read_as_postgres_prints_them() {
        let index = IndexDefinition {
            schema: "public".into(),
            name: "items_hnsw".into(),
            table: "Items".into(),
            column: "embedding".into(),
            operator_class: "vector_cosine_ops".into(),
            m: 16,
            ef_construction: 64,
        };
        assert_eq!(
            index.sql(),
            "CREATE INDEX items_hnsw ON public.\"Items\" USING hnsw (embedding vector_cosine_ops) \
             WITH (m='16', ef_construction='64')"
        );
        assert_eq!(index.oid(), index_oid("public", "items_hnsw"));
        assert!(index.oid() >= 1_000_000_000);
        assert_ne!(index_oid("public", "a"), index_oid("other", "a"));
    }
}
