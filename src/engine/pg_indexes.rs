//! semsql's indexes in PostgreSQL's catalogs: HNSW indexes as pgvector's appear there, and
//! the unique btree index PostgreSQL builds for each PRIMARY KEY and UNIQUE constraint (see
//! `engine::unique_keys`; semsql checks the keys without one, but drivers and psql find a
//! key's columns through its index). Each has a `pg_class` row (relkind `i`), a `pg_index`
//! row and a `pg_indexes` row, and `pg_get_indexdef` prints it; keys have `pg_constraint`
//! rows and `pg_get_constraintdef`. So `\d t` lists them under "Indexes:", and drivers'
//! reflection (SQLAlchemy, pgjdbc's getPrimaryKeys and getIndexInfo) finds them.
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
use datafusion::scalar::ScalarValue;

use super::catalog::DurableSchema;
use super::pg_relation_catalogs::rows_in_schema;
use super::search_path::quote_ident;

/// PostgreSQL's OID for the btree access method.
pub const BTREE_AM_OID: i32 = 403;
/// The `hnsw` access method's OID in `pg_am` (pgvector's is assigned at CREATE EXTENSION;
/// ours is fixed).
pub const HNSW_AM_OID: i32 = 16_300;

/// How an index is built.
#[derive(Debug, Clone)]
pub enum IndexMethod {
    /// An HNSW graph over one `vector(n)` column.
    Hnsw {
        operator_class: String,
        m: usize,
        ef_construction: usize,
    },
    /// A PRIMARY KEY's or UNIQUE constraint's index.
    UniqueKey { primary: bool },
}

/// One index, as the manifest records it.
#[derive(Debug, Clone)]
pub struct IndexDefinition {
    pub schema: String,
    pub name: String,
    pub table: String,
    pub columns: Vec<String>,
    pub method: IndexMethod,
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

    /// The OID of the key constraint this index belongs to (none for HNSW indexes): another
    /// hash, so that it differs from the index's own.
    pub fn constraint_oid(&self) -> Option<i32> {
        matches!(self.method, IndexMethod::UniqueKey { .. }).then(|| {
            let bytes = b"constraint:"
                .iter()
                .copied()
                .chain(self.schema.bytes())
                .chain([b'.'])
                .chain(self.name.bytes());
            super::pg_catalog_access::stable_oid(bytes, 1_000_000_000)
        })
    }

    pub fn is_unique(&self) -> bool {
        matches!(self.method, IndexMethod::UniqueKey { .. })
    }

    pub fn is_primary(&self) -> bool {
        matches!(self.method, IndexMethod::UniqueKey { primary: true })
    }

    pub fn access_method_oid(&self) -> i32 {
        match self.method {
            IndexMethod::Hnsw { .. } => HNSW_AM_OID,
            IndexMethod::UniqueKey { .. } => BTREE_AM_OID,
        }
    }

    fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|column| quote_ident(column))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The statement, as PostgreSQL's `pg_get_indexdef` prints it.
    pub fn sql(&self) -> String {
        let table = format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.table));
        let name = quote_ident(&self.name);
        match &self.method {
            IndexMethod::Hnsw {
                operator_class,
                m,
                ef_construction,
            } => format!(
                "CREATE INDEX {name} ON {table} USING hnsw ({} {operator_class}) \
                 WITH (m='{m}', ef_construction='{ef_construction}')",
                self.column_list()
            ),
            IndexMethod::UniqueKey { .. } => format!(
                "CREATE UNIQUE INDEX {name} ON {table} USING btree ({})",
                self.column_list()
            ),
        }
    }

    /// The constraint, as `pg_get_constraintdef` prints it (None for HNSW indexes).
    pub fn constraint_sql(&self) -> Option<String> {
        match self.method {
            IndexMethod::UniqueKey { primary: true } => {
                Some(format!("PRIMARY KEY ({})", self.column_list()))
            }
            IndexMethod::UniqueKey { primary: false } => {
                Some(format!("UNIQUE ({})", self.column_list()))
            }
            IndexMethod::Hnsw { .. } => None,
        }
    }
}

/// Every index of every schema of `catalog`, in schema, table and name order (a table's
/// primary key first).
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
        let mut found = Vec::new();
        for (table, key) in durable.keys() {
            found.push(IndexDefinition {
                schema: schema_name.clone(),
                name: key.name,
                table,
                columns: key.columns,
                method: IndexMethod::UniqueKey {
                    primary: key.primary,
                },
            });
        }
        for (name, entry) in durable.indexes() {
            found.push(IndexDefinition {
                schema: schema_name.clone(),
                name,
                table: entry.table,
                columns: vec![entry.column],
                method: IndexMethod::Hnsw {
                    operator_class: entry.operator_class,
                    m: entry.m,
                    ef_construction: entry.ef_construction,
                },
            });
        }
        found.sort_by(|a, b| {
            (&a.table, !a.is_primary(), &a.name).cmp(&(&b.table, !b.is_primary(), &b.name))
        });
        out.extend(found);
    }
    out
}

/// `pg_index` rows for `indexes`, in `schema`'s columns. Each comes with its table's OID and
/// its columns' numbers.
pub fn pg_index_rows(
    schema: &SchemaRef,
    indexes: &[(IndexDefinition, i32, Vec<i32>)],
) -> Result<RecordBatch> {
    rows_in_schema(schema, indexes.len(), |column, row| {
        let (index, table_oid, attnums) = &indexes[row];
        let count = i16::try_from(attnums.len()).unwrap_or(i16::MAX);
        match column {
            "indexrelid" => ScalarValue::Int32(Some(index.oid())),
            "indrelid" => ScalarValue::Int32(Some(*table_oid)),
            "indnatts" | "indnkeyatts" => ScalarValue::Int16(Some(count)),
            "indisunique" | "indimmediate" => ScalarValue::Boolean(Some(index.is_unique())),
            "indisprimary" => ScalarValue::Boolean(Some(index.is_primary())),
            "indisvalid" | "indisready" | "indislive" => ScalarValue::Boolean(Some(true)),
            "indkey" => ScalarValue::Utf8(Some(joined(attnums, " "))),
            "indcollation" | "indclass" | "indoption" => {
                ScalarValue::Utf8(Some(vec!["0"; attnums.len()].join(" ")))
            }
            "indexprs" | "indpred" => ScalarValue::Null,
            name if name.starts_with("ind") => ScalarValue::Boolean(Some(false)),
            _ => ScalarValue::Null,
        }
    })
}

/// `pg_constraint` rows for the key indexes among `indexes`, in `schema`'s columns. Each comes
/// with its table's OID, its columns' numbers and its schema's OID.
pub fn pg_constraint_rows(
    schema: &SchemaRef,
    indexes: &[(IndexDefinition, i32, Vec<i32>, i32)],
) -> Result<RecordBatch> {
    let keys: Vec<_> = indexes
        .iter()
        .filter(|(index, ..)| index.is_unique())
        .collect();
    rows_in_schema(schema, keys.len(), |column, row| {
        let (index, table_oid, attnums, namespace_oid) = keys[row];
        let text = |value: &str| ScalarValue::Utf8(Some(value.to_owned()));
        match column {
            "oid" => ScalarValue::Int32(index.constraint_oid()),
            "conname" => text(&index.name),
            "connamespace" => ScalarValue::Int32(Some(*namespace_oid)),
            "contype" => text(if index.is_primary() { "p" } else { "u" }),
            "condeferrable" | "condeferred" => ScalarValue::Boolean(Some(false)),
            "convalidated" | "conislocal" | "connoinherit" => ScalarValue::Boolean(Some(true)),
            "conrelid" => ScalarValue::Int32(Some(*table_oid)),
            "conindid" => ScalarValue::Int32(Some(index.oid())),
            "contypid" | "conparentid" | "confrelid" => ScalarValue::Int32(Some(0)),
            "confupdtype" | "confdeltype" | "confmatchtype" => text(" "),
            "coninhcount" => ScalarValue::Int16(Some(0)),
            "conkey" => text(&format!("{{{}}}", joined(attnums, ","))),
            _ => ScalarValue::Null,
        }
    })
}

fn joined(numbers: &[i32], separator: &str) -> String {
    numbers
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(separator)
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
/// `pg_get_constraintdef(oid [, pretty])`: a key constraint's `PRIMARY KEY (...)` or
/// `UNIQUE (...)`; NULL for an OID that is no constraint of semsql's.
#[derive(Debug)]
pub struct PgGetIndexdef {
    catalog: Arc<dyn CatalogProvider>,
    signature: Signature,
    constraint: bool,
}

impl PgGetIndexdef {
    pub fn new(catalog: Arc<dyn CatalogProvider>) -> Self {
        Self {
            catalog,
            signature: Signature::one_of(
                (1..=3).map(TypeSignature::Any).collect(),
                Volatility::Stable,
            ),
            constraint: false,
        }
    }

    /// `pg_get_constraintdef`.
    pub fn constraintdef(catalog: Arc<dyn CatalogProvider>) -> Self {
        Self {
            catalog,
            signature: Signature::one_of(
                (1..=2).map(TypeSignature::Any).collect(),
                Volatility::Stable,
            ),
            constraint: true,
        }
    }
}

impl PartialEq for PgGetIndexdef {
    fn eq(&self, other: &Self) -> bool {
        self.constraint == other.constraint
    }
}

impl Eq for PgGetIndexdef {}

impl std::hash::Hash for PgGetIndexdef {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name().hash(state);
    }
}

impl ScalarUDFImpl for PgGetIndexdef {
    fn name(&self) -> &str {
        if self.constraint {
            "pg_get_constraintdef"
        } else {
            "pg_get_indexdef"
        }
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
            Some(array) if !self.constraint => Some(cast(array, &DataType::Int64)?),
            _ => None,
        };
        let indexes = indexes_of(self.catalog.as_ref());
        let definitions: StringArray = (0..rows)
            .map(|row| {
                if oids.is_null(row) {
                    return None;
                }
                let oid = oids.value(row);
                if self.constraint {
                    return indexes
                        .iter()
                        .find(|index| index.constraint_oid().map(i64::from) == Some(oid))?
                        .constraint_sql();
                }
                let index = indexes.iter().find(|index| i64::from(index.oid()) == oid)?;
                let column = columns.as_ref().map_or(Some(0), |columns| {
                    let columns = columns.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
                    (!columns.is_null(row)).then(|| columns.value(row))
                })?;
                match usize::try_from(column).ok()? {
                    0 => Some(index.sql()),
                    number => index.columns.get(number - 1).map(|name| quote_ident(name)),
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
            columns: vec!["embedding".into()],
            method: IndexMethod::Hnsw {
                operator_class: "vector_cosine_ops".into(),
                m: 16,
                ef_construction: 64,
            },
        };
        assert_eq!(
            index.sql(),
            "CREATE INDEX items_hnsw ON public.\"Items\" USING hnsw (embedding vector_cosine_ops) \
             WITH (m='16', ef_construction='64')"
        );
        assert_eq!(index.oid(), index_oid("public", "items_hnsw"));
        assert!(index.oid() >= 1_000_000_000);
        assert_ne!(index_oid("public", "a"), index_oid("other", "a"));
        assert_eq!(index.constraint_sql(), None);
        let key = IndexDefinition {
            schema: "public".into(),
            name: "items_pkey".into(),
            table: "items".into(),
            columns: vec!["id".into(), "Kind".into()],
            method: IndexMethod::UniqueKey { primary: true },
        };
        assert_eq!(
            key.sql(),
            "CREATE UNIQUE INDEX items_pkey ON public.items USING btree (id, \"Kind\")"
        );
        assert_eq!(
            key.constraint_sql().as_deref(),
            Some("PRIMARY KEY (id, \"Kind\")")
        );
        assert_ne!(key.constraint_oid(), Some(key.oid()));
    }
}
