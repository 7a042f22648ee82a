//! pg_catalog's ownership and privilege columns, answered from the access layer.
//!
//! datafusion-pg-catalog builds `pg_class` with every `relowner` 0 and no `relacl` column,
//! gives every role in `pg_roles` the OID 0, and answers `pg_get_userbyid` with `postgres` for
//! any OID. So `\dt` showed `postgres` as every table's owner and `\dp` failed. This module
//! wraps those two tables (their rows are datafusion-pg-catalog's, with these columns
//! replaced) and replaces `pg_get_userbyid`:
//!
//! - a role's OID is a stable hash of its name (the same on every connection and after a
//!   restart); objects no role owns (made by the server, or before roles existed) belong to
//!   the bootstrap superuser, OID 10, named [`BOOTSTRAP_SUPERUSER`];
//! - `pg_class.reloptions` is there, NULL (no storage options);
//! - `pg_class.relam` is `heap` (2) for tables, as PostgreSQL says of its default table access
//!   method;
//! - `pg_class.relowner` is the owner's OID and `pg_class.relacl` PostgreSQL's `aclitem[]`
//!   text items (`{owner=arwdDxt/owner,alice=ar/owner,=r/owner}`), NULL when nothing was
//!   granted (as PostgreSQL's default privileges);
//! - `pg_auth_members` holds semsql's role memberships (`GRANT group TO member`);
//! - `pg_attribute` types a `vector(n)` column as pgvector's `vector` with typmod `n`
//!   (datafusion-pg-catalog says `text`), so `\d t` and `format_type` show `vector(3)`;
//! - `pg_user` (which datafusion-pg-catalog lacks) lists the roles that may log in, as
//!   PostgreSQL's view over `pg_authid` does, with the password shown as `********`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int32Array, ListBuilder, RecordBatch, StringBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::common::{plan_err, DataFusionError};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableType;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::physical_plan::{collect, ExecutionPlan};

use crate::access::{Access, Object};

/// The name shown for OID 10, the owner of what no role owns.
pub const BOOTSTRAP_SUPERUSER: &str = "semsql";

/// OID 10, as PostgreSQL's bootstrap superuser.
const BOOTSTRAP_OID: i32 = 10;

/// PostgreSQL's OID for `interval`.
const INTERVAL_OID: i32 = 1186;

/// A role's OID: FNV-1a of its name, above PostgreSQL's reserved range (16384), so the same
/// role has the same OID on every connection and after every restart.
pub fn role_oid(name: &str) -> i32 {
    stable_oid(name.bytes(), 16_384)
}

/// FNV-1a of `bytes`, mapped to `first..i32::MAX`: an OID that is the same wherever and
/// whenever it is computed.
pub fn stable_oid(bytes: impl IntoIterator<Item = u8>, first: u32) -> i32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in bytes {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    (first + hash % (i32::MAX as u32 - first)) as i32
}

/// Wraps the `pg_catalog` schema datafusion-pg-catalog made.
#[derive(Debug)]
pub struct AccessAwareCatalog {
    inner: Arc<dyn SchemaProvider>,
    access: Arc<Access>,
}

impl AccessAwareCatalog {
    pub fn new(inner: Arc<dyn SchemaProvider>, access: Arc<Access>) -> Self {
        Self { inner, access }
    }
}

#[async_trait]
impl SchemaProvider for AccessAwareCatalog {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        names.push(PG_USER.to_owned());
        names.push(PG_INDEXES.to_owned());
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if name.eq_ignore_ascii_case(PG_USER) {
            return Ok(Some(Arc::new(UsersTable {
                access: self.access.clone(),
                schema: UsersTable::schema(),
            })));
        }
        if name.eq_ignore_ascii_case(PG_INDEXES) {
            return Ok(Some(Arc::new(super::pg_indexes::PgIndexesView::new())));
        }
        let Some(table) = self.inner.table(name).await? else {
            return Ok(None);
        };
        if let Some(augmented) = super::pg_relation_catalogs::Augmented::of(name) {
            return Ok(Some(Arc::new(
                super::pg_relation_catalogs::AugmentedTable::new(
                    augmented,
                    table,
                    self.inner.table("pg_namespace").await?,
                    self.inner.table("pg_class").await?,
                ),
            )));
        }
        let kind = match name.to_ascii_lowercase().as_str() {
            "pg_class" => Kind::Class,
            "pg_roles" => Kind::Roles,
            "pg_auth_members" => Kind::Members,
            "pg_attribute" => Kind::Attribute,
            _ => return Ok(Some(table)),
        };
        // pg_class needs the schema names, to find each relation's ACL; pg_attribute the
        // relations too, to find each column's table.
        let (namespaces, classes) = match kind {
            Kind::Class => (self.inner.table("pg_namespace").await?, None),
            Kind::Attribute => (
                self.inner.table("pg_namespace").await?,
                self.inner.table("pg_class").await?,
            ),
            Kind::Roles | Kind::Members => (None, None),
        };
        let mut wrapped = AccessAwareTable::new(kind, table, namespaces, self.access.clone());
        wrapped.classes = classes;
        Ok(Some(Arc::new(wrapped)))
    }

    fn table_exist(&self, name: &str) -> bool {
        name.eq_ignore_ascii_case(PG_USER)
            || name.eq_ignore_ascii_case(PG_INDEXES)
            || self.inner.table_exist(name)
    }
}

const PG_USER: &str = "pg_user";
const PG_INDEXES: &str = "pg_indexes";

/// `pg_user`: the roles that may log in.
#[derive(Debug)]
struct UsersTable {
    access: Arc<Access>,
    schema: SchemaRef,
}

impl UsersTable {
    fn schema() -> SchemaRef {
        let flag = |name: &str| Field::new(name, DataType::Boolean, false);
        Arc::new(Schema::new(vec![
            Field::new("usename", DataType::Utf8, false),
            Field::new("usesysid", DataType::Int32, false),
            flag("usecreatedb"),
            flag("usesuper"),
            flag("userepl"),
            flag("usebypassrls"),
            Field::new("passwd", DataType::Utf8, false),
            Field::new(
                "valuntil",
                DataType::Timestamp(
                    datafusion::arrow::datatypes::TimeUnit::Microsecond,
                    Some("+00:00".into()),
                ),
                true,
            ),
            Field::new("useconfig", acl_type(), true),
        ]))
    }

    fn batch(&self) -> Result<RecordBatch> {
        use datafusion::arrow::array::{BooleanArray, StringArray, TimestampMicrosecondArray};
        let users: Vec<_> = self
            .access
            .role_names()
            .into_iter()
            .filter_map(|name| self.access.role(&name))
            .filter(|role| role.login)
            .collect();
        let flags = |flag: &dyn Fn(&crate::access::RoleInfo) -> bool| -> ArrayRef {
            Arc::new(
                users
                    .iter()
                    .map(|u| Some(flag(u)))
                    .collect::<BooleanArray>(),
            )
        };
        let mut config = ListBuilder::new(StringBuilder::new());
        for _ in &users {
            config.append(false);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                users.iter().map(|u| u.name.as_str()),
            )),
            Arc::new(Int32Array::from_iter_values(
                users.iter().map(|u| role_oid(&u.name)),
            )),
            flags(&|u| u.superuser),
            flags(&|u| u.superuser),
            flags(&|_| false),
            flags(&|u| u.superuser),
            Arc::new(StringArray::from_iter_values(
                users.iter().map(|_| "********"),
            )),
            Arc::new(
                TimestampMicrosecondArray::from(vec![None; users.len()]).with_timezone("+00:00"),
            ),
            Arc::new(config.finish()),
        ];
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

#[async_trait]
impl TableProvider for UsersTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![self.batch()?]],
            self.schema.clone(),
            projection.cloned(),
        )?)
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Class,
    Roles,
    /// `pg_auth_members`: datafusion-pg-catalog's is PostgreSQL's own export (its predefined
    /// roles' memberships); semsql's memberships replace it.
    Members,
    /// `pg_attribute`: datafusion-pg-catalog describes a `vector(n)` column as `text`; it is
    /// pgvector's `vector` with `n` as its typmod (`\d t` shows `vector(3)`).
    Attribute,
}

#[derive(Debug)]
struct AccessAwareTable {
    kind: Kind,
    inner: Arc<dyn TableProvider>,
    namespaces: Option<Arc<dyn TableProvider>>,
    /// `pg_class`, for `pg_attribute`.
    classes: Option<Arc<dyn TableProvider>>,
    access: Arc<Access>,
    schema: SchemaRef,
}

fn acl_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

impl AccessAwareTable {
    fn new(
        kind: Kind,
        inner: Arc<dyn TableProvider>,
        namespaces: Option<Arc<dyn TableProvider>>,
        access: Arc<Access>,
    ) -> Self {
        let inner_schema = inner.schema();
        let schema = match kind {
            Kind::Class => {
                let mut fields: Vec<Field> = inner_schema
                    .fields()
                    .iter()
                    .map(|field| field.as_ref().clone())
                    .collect();
                fields.push(Field::new("relacl", acl_type(), true));
                // Storage options (`WITH (fillfactor = ...)`): semsql keeps none, so NULL, as
                // PostgreSQL shows a relation created without any. SQLAlchemy's index
                // reflection reads it.
                fields.push(Field::new("reloptions", acl_type(), true));
                Arc::new(Schema::new_with_metadata(
                    fields,
                    inner_schema.metadata().clone(),
                ))
            }
            Kind::Roles | Kind::Members | Kind::Attribute => inner_schema,
        };
        Self {
            kind,
            inner,
            namespaces,
            classes: None,
            access,
            schema,
        }
    }

    /// OID → schema name, from `pg_namespace`.
    async fn namespace_names(&self, state: &dyn Session) -> Result<HashMap<i64, String>> {
        match &self.namespaces {
            Some(namespaces) => namespace_names_of(namespaces.as_ref(), state).await,
            None => Ok(HashMap::new()),
        }
    }

    fn owner_oid(owner: Option<&str>) -> i32 {
        owner.map_or(BOOTSTRAP_OID, role_oid)
    }

    fn class_rows(
        &self,
        namespaces: &HashMap<i64, String>,
        batch: RecordBatch,
    ) -> Result<RecordBatch> {
        let relnames = string_column(&batch, "relname")?;
        let relnames = relnames.as_string::<i32>();
        let relnamespaces = int64_column(&batch, "relnamespace")?;
        let mut owners = Vec::with_capacity(batch.num_rows());
        let mut acls = ListBuilder::new(StringBuilder::new());
        for row in 0..batch.num_rows() {
            let schema = namespaces
                .get(&relnamespaces.value(row))
                .map(String::as_str)
                .unwrap_or_default();
            let object = Object::Relation {
                schema,
                name: relnames.value(row),
            };
            let acl = self.access.acl_of(object);
            owners.push(Self::owner_oid(
                acl.as_ref().and_then(|acl| acl.owner.as_deref()),
            ));
            match acl.filter(|acl| !acl.grants.is_empty()) {
                Some(acl) => {
                    // As PostgreSQL lists a granted table's ACL: the owner's own privileges
                    // first (all of a table's), then the grants.
                    let owner = acl.owner.as_deref().unwrap_or(BOOTSTRAP_SUPERUSER);
                    acls.values()
                        .append_value(format!("{owner}=arwdDxt/{owner}"));
                    for item in acl.items() {
                        acls.values().append_value(item);
                    }
                    acls.append(true);
                }
                None => acls.append(false),
            }
        }
        let mut columns = batch.columns().to_vec();
        let owner_at = batch.schema().index_of("relowner")?;
        columns[owner_at] = Arc::new(Int32Array::from(owners));
        // Tables use PostgreSQL's default table access method, as PostgreSQL reports it
        // (`heap`, OID 2: psql's `\d+` prints "Access method: heap"); views and the rest none.
        let kinds = string_column(&batch, "relkind")?;
        let kinds = kinds.as_string::<i32>();
        let am_at = batch.schema().index_of("relam")?;
        let current = cast(batch.column(am_at), &DataType::Int32)?;
        let current = current.as_primitive::<datafusion::arrow::datatypes::Int32Type>();
        let methods: Int32Array = (0..batch.num_rows())
            .map(|row| match (kinds.is_null(row), kinds.value(row)) {
                (false, "r" | "m") if current.is_null(row) || current.value(row) == 0 => {
                    Some(HEAP_AM_OID)
                }
                _ => (!current.is_null(row)).then(|| current.value(row)),
            })
            .collect();
        columns[am_at] = cast(
            &(Arc::new(methods) as ArrayRef),
            batch.schema().field(am_at).data_type(),
        )?;
        columns.push(Arc::new(acls.finish()));
        columns.push(datafusion::arrow::array::new_null_array(
            &acl_type(),
            batch.num_rows(),
        ));
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }

    /// One row per (member, group) of semsql's roles, in the table's own column types.
    fn member_rows(&self) -> Result<RecordBatch> {
        use datafusion::arrow::array::{BooleanArray, Int64Array};
        let mut pairs = Vec::new();
        for name in self.access.role_names() {
            if let Some(role) = self.access.role(&name) {
                for group in role.member_of {
                    pairs.push((name.clone(), group));
                }
            }
        }
        let ids = |value: &dyn Fn(&(String, String)) -> i64| -> ArrayRef {
            Arc::new(pairs.iter().map(value).collect::<Int64Array>())
        };
        let flags =
            |value: bool| -> ArrayRef { Arc::new(BooleanArray::from(vec![value; pairs.len()])) };
        let mut columns = Vec::new();
        for field in self.schema.fields() {
            let column = match field.name().as_str() {
                "oid" => {
                    ids(&|(member, group)| i64::from(role_oid(&format!("{member}\u{0}{group}"))))
                }
                "roleid" => ids(&|(_, group)| i64::from(role_oid(group))),
                "member" => ids(&|(member, _)| i64::from(role_oid(member))),
                "grantor" => ids(&|_| i64::from(BOOTSTRAP_OID)),
                "admin_option" => flags(false),
                "inherit_option" | "set_option" => flags(true),
                other => {
                    return Err(DataFusionError::Internal(format!(
                        "pg_auth_members has an unexpected column {other}"
                    )))
                }
            };
            columns.push(cast(&column, field.data_type())?);
        }
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }

    /// pg_attribute's rows, with what datafusion-pg-catalog does not know of semsql's tables:
    /// `vector(n)` columns typed as pgvector's `vector` with typmod `n` (it says `text`),
    /// `numeric(p, s)` with its typmod, and `atthasdef` for columns with a default.
    async fn attribute_rows(&self, state: &dyn Session) -> Result<Vec<RecordBatch>> {
        let batches = all_rows(self.inner.as_ref(), state).await?;
        let (Some(classes), Some(catalog)) =
            (&self.classes, super::pg_indexes::session_catalog(state))
        else {
            return Ok(batches);
        };
        let namespaces = self.namespace_names(state).await?;
        let relations: HashMap<i64, (String, String)> =
            relations_of(classes.as_ref(), &namespaces, state)
                .await?
                .into_iter()
                .map(|relation| (relation.oid, (relation.schema, relation.name)))
                .collect();
        let mut defaults: HashSet<(String, String, String)> = HashSet::new();
        for schema_name in catalog.schema_names() {
            if let Some(durable) = catalog
                .schema(&schema_name)
                .as_ref()
                .and_then(|schema| schema.downcast_ref::<super::catalog::DurableSchema>())
            {
                for (table, column, _) in durable.defaults() {
                    defaults.insert((schema_name.clone(), table, column));
                }
            }
        }
        let vector_oid = datafusion_postgres::arrow_pg::datatypes::PG_VECTOR_TYPE_OID as i32;
        let mut schemas: HashMap<i64, Option<SchemaRef>> = HashMap::new();
        let mut patched = Vec::with_capacity(batches.len());
        for batch in batches {
            let relids = int64_column(&batch, "attrelid")?;
            let names = string_column(&batch, "attname")?;
            let names = names.as_string::<i32>();
            let types_at = batch.schema().index_of("atttypid")?;
            let modifiers_at = batch.schema().index_of("atttypmod")?;
            let defaults_at = batch.schema().index_of("atthasdef")?;
            let int32s = |at: usize| -> Result<Vec<Option<i32>>> {
                Ok(cast(batch.column(at), &DataType::Int32)?
                    .as_primitive::<datafusion::arrow::datatypes::Int32Type>()
                    .iter()
                    .collect())
            };
            let mut types = int32s(types_at)?;
            let mut modifiers = int32s(modifiers_at)?;
            let mut has_default: Vec<Option<bool>> =
                batch.column(defaults_at).as_boolean().iter().collect();
            let mut changed = false;
            for row in 0..batch.num_rows() {
                if relids.is_null(row) || names.is_null(row) {
                    continue;
                }
                let relid = relids.value(row);
                let Some((schema_name, table_name)) = relations.get(&relid) else {
                    continue;
                };
                let column = names.value(row);
                if defaults.contains(&(schema_name.clone(), table_name.clone(), column.to_owned()))
                {
                    has_default[row] = Some(true);
                    changed = true;
                }
                // Only the types datafusion-pg-catalog describes without what semsql knows.
                if !matches!(types[row], Some(25) | Some(1700)) {
                    continue;
                }
                if let std::collections::hash_map::Entry::Vacant(slot) = schemas.entry(relid) {
                    let table_schema = match catalog.schema(schema_name) {
                        Some(schema) => schema.table(table_name).await?.map(|table| table.schema()),
                        None => None,
                    };
                    slot.insert(table_schema);
                }
                let Some(Some(table_schema)) = schemas.get(&relid) else {
                    continue;
                };
                let Ok(field) = table_schema.field_with_name(column) else {
                    continue;
                };
                let tagged = field
                    .metadata()
                    .get(semsql_udfs::vector::VECTOR_METADATA_KEY)
                    .is_some_and(|kind| kind == "vector");
                if let Some(length) = super::character_types::varchar_length(field) {
                    types[row] = Some(super::character_types::VARCHAR_OID);
                    modifiers[row] = i32::try_from(length).ok().map(|length| length + 4);
                    changed = true;
                    continue;
                }
                if super::uuid_type::is_uuid(field) {
                    types[row] = Some(super::uuid_type::UUID_OID);
                    changed = true;
                    continue;
                }
                if let Some(length) = super::character_types::char_length(field) {
                    types[row] = Some(super::character_types::BPCHAR_OID);
                    modifiers[row] = i32::try_from(length).ok().map(|length| length + 4);
                    changed = true;
                    continue;
                }
                match field.data_type() {
                    DataType::FixedSizeList(_, dims) if tagged => {
                        types[row] = Some(vector_oid);
                        modifiers[row] = Some(*dims);
                    }
                    _ if tagged => {
                        types[row] = Some(vector_oid);
                        modifiers[row] = Some(-1);
                    }
                    // datafusion-pg-catalog describes intervals as text.
                    DataType::Interval(_) => types[row] = Some(INTERVAL_OID),
                    // PostgreSQL's typmod for numeric(p, s): ((p << 16) | s) + 4.
                    DataType::Decimal128(precision, scale)
                    | DataType::Decimal256(precision, scale)
                        if *scale >= 0 =>
                    {
                        modifiers[row] =
                            Some(((i32::from(*precision) << 16) | i32::from(*scale)) + 4);
                    }
                    _ => continue,
                }
                changed = true;
            }
            if !changed {
                patched.push(batch);
                continue;
            }
            let mut columns = batch.columns().to_vec();
            columns[types_at] = cast(
                &Int32Array::from(types),
                batch.schema().field(types_at).data_type(),
            )?;
            columns[modifiers_at] = cast(
                &Int32Array::from(modifiers),
                batch.schema().field(modifiers_at).data_type(),
            )?;
            columns[defaults_at] =
                Arc::new(datafusion::arrow::array::BooleanArray::from(has_default));
            patched.push(RecordBatch::try_new(batch.schema(), columns)?);
        }
        Ok(patched)
    }

    fn role_rows(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let names = string_column(&batch, "rolname")?;
        let names = names.as_string::<i32>();
        let oids: Int32Array = (0..batch.num_rows())
            .map(|row| (!names.is_null(row)).then(|| role_oid(names.value(row))))
            .collect();
        let mut columns = batch.columns().to_vec();
        let oid_at = batch.schema().index_of("oid")?;
        let target = batch.schema().field(oid_at).data_type().clone();
        columns[oid_at] = cast(&oids, &target)?;
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

/// A batch with column `name` replaced by `values` (cast to the column's type).
fn replace_column(batch: &RecordBatch, name: &str, values: ArrayRef) -> Result<RecordBatch> {
    let at = batch.schema().index_of(name)?;
    let mut columns = batch.columns().to_vec();
    columns[at] = cast(&values, batch.schema().field(at).data_type())?;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// `pg_am.oid` of `heap`, PostgreSQL's default table access method.
const HEAP_AM_OID: i32 = 2;

/// `pg_class` with a row per index of semsql's (relkind `i`, made from its table's row: same
/// schema and owner), and `relhasindex` true on the tables that have one, so `\di` lists
/// them and `pg_get_indexdef` finds them by OID.
fn with_index_classes(
    state: &dyn Session,
    namespaces: &HashMap<i64, String>,
    batches: Vec<RecordBatch>,
) -> Result<Vec<RecordBatch>> {
    use datafusion::arrow::array::BooleanArray;

    let Some(catalog) = super::pg_indexes::session_catalog(state) else {
        return Ok(batches);
    };
    let indexes = super::pg_indexes::indexes_of(catalog.as_ref());
    if indexes.is_empty() {
        return Ok(batches);
    }
    let mut out = Vec::with_capacity(batches.len() + 1);
    let mut index_rows = Vec::new();
    for batch in batches {
        let names = string_column(&batch, "relname")?;
        let names = names.as_string::<i32>();
        let spaces = int64_column(&batch, "relnamespace")?;
        let relation = |row: usize| -> Option<(String, String)> {
            if names.is_null(row) || spaces.is_null(row) {
                return None;
            }
            let space = namespaces.get(&spaces.value(row))?;
            Some((space.clone(), names.value(row).to_owned()))
        };
        let mut has_index: Vec<bool> = batch
            .column(batch.schema().index_of("relhasindex")?)
            .as_boolean()
            .iter()
            .map(|value| value.unwrap_or(false))
            .collect();
        for index in &indexes {
            let key = (index.schema.clone(), index.table.clone());
            let Some(row) = (0..batch.num_rows()).find(|&row| relation(row) == Some(key.clone()))
            else {
                continue;
            };
            has_index[row] = true;
            let mut row_batch = batch.slice(row, 1);
            let text = |value: &str| -> ArrayRef {
                Arc::new(datafusion::arrow::array::StringArray::from(vec![value]))
            };
            let int = |value: i32| -> ArrayRef { Arc::new(Int32Array::from(vec![value])) };
            let columns = i32::try_from(index.columns.len()).unwrap_or(i32::MAX);
            row_batch = replace_column(&row_batch, "oid", int(index.oid()))?;
            row_batch = replace_column(&row_batch, "relname", text(&index.name))?;
            row_batch = replace_column(&row_batch, "relkind", text("i"))?;
            row_batch = replace_column(&row_batch, "reltype", int(0))?;
            row_batch = replace_column(&row_batch, "relam", int(index.access_method_oid()))?;
            row_batch = replace_column(&row_batch, "relnatts", int(columns))?;
            row_batch = replace_column(
                &row_batch,
                "relhasindex",
                Arc::new(BooleanArray::from(vec![false])),
            )?;
            let mut options = ListBuilder::new(StringBuilder::new());
            match &index.method {
                super::pg_indexes::IndexMethod::Hnsw {
                    m, ef_construction, ..
                } => options.append_value([
                    Some(format!("m={m}")),
                    Some(format!("ef_construction={ef_construction}")),
                ]),
                super::pg_indexes::IndexMethod::UniqueKey { .. } => options.append(false),
            }
            row_batch = replace_column(&row_batch, "reloptions", Arc::new(options.finish()))?;
            index_rows.push(row_batch);
        }
        out.push(replace_column(
            &batch,
            "relhasindex",
            Arc::new(BooleanArray::from(has_index)),
        )?);
    }
    out.extend(index_rows);
    Ok(out)
}

/// OID → schema name, from `pg_namespace`.
pub async fn namespace_names_of(
    namespaces: &dyn TableProvider,
    state: &dyn Session,
) -> Result<HashMap<i64, String>> {
    let mut names = HashMap::new();
    for batch in all_rows(namespaces, state).await? {
        let oids = int64_column(&batch, "oid")?;
        let nspnames = string_column(&batch, "nspname")?;
        let nspnames = nspnames.as_string::<i32>();
        for row in 0..batch.num_rows() {
            if !oids.is_null(row) && !nspnames.is_null(row) {
                names.insert(oids.value(row), nspnames.value(row).to_owned());
            }
        }
    }
    Ok(names)
}

/// A `pg_class` row whose schema `pg_namespace` knows.
pub struct Relation {
    pub oid: i64,
    pub namespace: i64,
    pub schema: String,
    pub name: String,
}

/// The relations of `pg_class`, with their schemas' names from `namespaces`.
pub async fn relations_of(
    classes: &dyn TableProvider,
    namespaces: &HashMap<i64, String>,
    state: &dyn Session,
) -> Result<Vec<Relation>> {
    let mut relations = Vec::new();
    for batch in all_rows(classes, state).await? {
        let oids = int64_column(&batch, "oid")?;
        let names = string_column(&batch, "relname")?;
        let names = names.as_string::<i32>();
        let spaces = int64_column(&batch, "relnamespace")?;
        for row in 0..batch.num_rows() {
            if oids.is_null(row) || names.is_null(row) || spaces.is_null(row) {
                continue;
            }
            if let Some(schema) = namespaces.get(&spaces.value(row)) {
                relations.push(Relation {
                    oid: oids.value(row),
                    namespace: spaces.value(row),
                    schema: schema.clone(),
                    name: names.value(row).to_owned(),
                });
            }
        }
    }
    Ok(relations)
}

pub async fn all_rows(table: &dyn TableProvider, state: &dyn Session) -> Result<Vec<RecordBatch>> {
    let plan = table.scan(state, None, &[], None).await?;
    collect(plan, state.task_ctx()).await
}

pub fn string_column(batch: &RecordBatch, name: &str) -> Result<ArrayRef> {
    let column = batch.column(batch.schema().index_of(name)?);
    Ok(cast(column, &DataType::Utf8)?)
}

pub fn int64_column(
    batch: &RecordBatch,
    name: &str,
) -> Result<datafusion::arrow::array::Int64Array> {
    let column = batch.column(batch.schema().index_of(name)?);
    let column = cast(column, &DataType::Int64)?;
    column
        .as_any()
        .downcast_ref::<datafusion::arrow::array::Int64Array>()
        .cloned()
        .ok_or_else(|| DataFusionError::Internal(format!("{name} is not an integer column")))
}

#[async_trait]
impl TableProvider for AccessAwareTable {
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
        let mut batches = Vec::new();
        if matches!(self.kind, Kind::Members) {
            batches.push(self.member_rows()?);
        } else if matches!(self.kind, Kind::Attribute) {
            batches = self.attribute_rows(state).await?;
        } else {
            // Read once per scan, not per batch.
            let namespaces = match self.kind {
                Kind::Class => self.namespace_names(state).await?,
                Kind::Roles | Kind::Members | Kind::Attribute => HashMap::new(),
            };
            for batch in all_rows(self.inner.as_ref(), state).await? {
                batches.push(match self.kind {
                    Kind::Class => self.class_rows(&namespaces, batch)?,
                    Kind::Roles | Kind::Members | Kind::Attribute => self.role_rows(batch)?,
                });
            }
            if matches!(self.kind, Kind::Class) {
                batches = with_index_classes(state, &namespaces, batches)?;
            }
        }
        Ok(MemorySourceConfig::try_new_exec(
            &[batches],
            self.schema.clone(),
            projection.cloned(),
        )?)
    }
}

/// `pg_get_userbyid(oid)`: the role's name, as PostgreSQL answers it (`unknown (OID=n)` for
/// an OID no role has).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PgGetUserById {
    signature: Signature,
    access: AccessHandle,
}

/// Compares by identity, so the UDF can derive `PartialEq`.
#[derive(Debug, Clone)]
struct AccessHandle(Arc<Access>);

impl PartialEq for AccessHandle {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for AccessHandle {}

impl std::hash::Hash for AccessHandle {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (Arc::as_ptr(&self.0) as usize).hash(state);
    }
}

impl PgGetUserById {
    pub fn udf(access: Arc<Access>) -> ScalarUDF {
        ScalarUDF::new_from_impl(Self {
            signature: Signature::any(1, Volatility::Stable),
            access: AccessHandle(access),
        })
    }
}

impl ScalarUDFImpl for PgGetUserById {
    fn name(&self) -> &str {
        "pg_get_userbyid"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [oid] = args.args.as_slice() else {
            return plan_err!("pg_get_userbyid takes one argument");
        };
        let oids = oid.to_array(args.number_rows)?;
        let oids = cast(&oids, &DataType::Int64)?;
        let oids = oids
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Int64Array>()
            .ok_or_else(|| DataFusionError::Internal("pg_get_userbyid: not an oid".into()))?;
        let names: HashMap<i64, String> = self
            .access
            .0
            .owner_names()
            .into_iter()
            .map(|name| (i64::from(role_oid(&name)), name))
            .chain([(i64::from(BOOTSTRAP_OID), BOOTSTRAP_SUPERUSER.to_owned())])
            .collect();
        let mut out = StringBuilder::new();
        for row in 0..oids.len() {
            if oids.is_null(row) {
                out.append_null();
                continue;
            }
            let oid = oids.value(row);
            match names.get(&oid) {
                Some(name) => out.append_value(name),
                None => out.append_value(format!("unknown (OID={oid})")),
            }
        }
        let array: ArrayRef = Arc::new(out.finish());
        if matches!(oid, ColumnarValue::Scalar(_)) {
            return Ok(ColumnarValue::Scalar(
                datafusion::common::ScalarValue::try_from_array(&array, 0)?,
            ));
        }
        Ok(ColumnarValue::Array(array))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_oids_are_stable_and_outside_the_reserved_range() {
        assert_eq!(role_oid("alice"), role_oid("alice"));
        assert_ne!(role_oid("alice"), role_oid("bob"));
        for name in ["", "a", "semsql", "pg_read_server_files"] {
            assert!(role_oid(name) >= 16_384, "{name}");
        }
    }
}
