//! OIDs of schemas, relations and databases that are the same on every connection and after a
//! restart, as PostgreSQL's are.
//!
//! datafusion-pg-catalog numbers these objects from a counter in the order its catalogs first
//! meet them, so a table's OID depended on which catalog query ran first since the server
//! started: `'t'::regclass` gave one number before a restart and another after, and a client
//! that kept an OID (pgjdbc's and SQLAlchemy's reflection caches, a BI tool's saved dataset)
//! found another table or none. This layer sits under the rest of pg_catalog and replaces
//! those numbers where they appear (`pg_namespace.oid`, `pg_class.oid` and `relnamespace`,
//! `pg_attribute.attrelid`, `pg_database.oid`), so every catalog built on them (`pg_index`,
//! `pg_constraint`, `pg_attrdef`, `regclass` casts, which read `pg_class`) agrees:
//!
//! - a relation's OID is a hash of its schema and name, above PostgreSQL's reserved range;
//!   two names with the same hash are told apart by taking the next free number, in name
//!   order;
//! - `pg_catalog` keeps 11 and `public` takes 2200, PostgreSQL's numbers for them; other
//!   schemas and databases hash their names.
//!
//! A table dropped and made again under the same name gets the same OID, where PostgreSQL
//! would give a new one; docs/sql.md says so.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableType;
use datafusion::error::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use super::pg_catalog_access::{
    all_rows, int64_column, namespace_names_of, relations_of, stable_oid, string_column,
};

/// PostgreSQL's OID of `pg_catalog`.
const PG_CATALOG_OID: i64 = 11;
/// PostgreSQL's OID of `public`.
const PUBLIC_OID: i64 = 2200;
/// The first OID PostgreSQL hands to objects users make.
const FIRST_USER_OID: u32 = 16_384;

/// The pg_catalog schema with stable OIDs (see the module documentation).
#[derive(Debug)]
pub struct StableOids {
    inner: Arc<dyn SchemaProvider>,
}

impl StableOids {
    pub fn new(inner: Arc<dyn SchemaProvider>) -> Self {
        Self { inner }
    }
}

/// The tables whose OID columns this layer replaces.
#[derive(Debug, Clone, Copy)]
enum Renumbered {
    Namespace,
    Class,
    Attribute,
    Database,
}

impl Renumbered {
    fn of(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "pg_namespace" => Self::Namespace,
            "pg_class" => Self::Class,
            "pg_attribute" => Self::Attribute,
            "pg_database" => Self::Database,
            _ => return None,
        })
    }

    /// The columns replaced, each with the map its values go through.
    fn columns(self) -> &'static [(&'static str, MapKind)] {
        match self {
            Self::Namespace => &[("oid", MapKind::Namespace)],
            Self::Class => &[
                ("oid", MapKind::Relation),
                ("relnamespace", MapKind::Namespace),
            ],
            Self::Attribute => &[("attrelid", MapKind::Relation)],
            Self::Database => &[("oid", MapKind::Database)],
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum MapKind {
    Namespace,
    Relation,
    Database,
}

#[async_trait]
impl SchemaProvider for StableOids {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let Some(table) = self.inner.table(name).await? else {
            return Ok(None);
        };
        let Some(kind) = Renumbered::of(name) else {
            return Ok(Some(table));
        };
        let source = |name: &'static str| self.inner.table(name);
        Ok(Some(Arc::new(StableOidTable {
            kind,
            inner: table,
            namespaces: source("pg_namespace").await?,
            classes: source("pg_class").await?,
            databases: source("pg_database").await?,
        })))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

#[derive(Debug)]
struct StableOidTable {
    kind: Renumbered,
    inner: Arc<dyn TableProvider>,
    namespaces: Option<Arc<dyn TableProvider>>,
    classes: Option<Arc<dyn TableProvider>>,
    databases: Option<Arc<dyn TableProvider>>,
}

/// datafusion-pg-catalog's OIDs → stable ones, per kind of object.
#[derive(Debug, Default)]
struct OidMaps {
    namespaces: HashMap<i64, i64>,
    relations: HashMap<i64, i64>,
    databases: HashMap<i64, i64>,
}

impl OidMaps {
    fn get(&self, kind: MapKind) -> &HashMap<i64, i64> {
        match kind {
            MapKind::Namespace => &self.namespaces,
            MapKind::Relation => &self.relations,
            MapKind::Database => &self.databases,
        }
    }
}

/// Stable OIDs for `objects` (each an object's identity and its counter OID; an identity may
/// come with several), hashed from the identity; a hash another object already took moves to
/// the next free number, in identity order, so the outcome does not depend on the order the
/// rows came in.
fn hashed_oids(
    objects: impl IntoIterator<Item = (String, i64)>,
    taken: &mut HashSet<i64>,
) -> HashMap<i64, i64> {
    let mut by_identity: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (identity, counter_oid) in objects {
        by_identity.entry(identity).or_default().push(counter_oid);
    }
    let mut map = HashMap::new();
    for (identity, counter_oids) in by_identity {
        let mut oid = i64::from(stable_oid(identity.bytes(), FIRST_USER_OID));
        while !taken.insert(oid) {
            oid = if oid >= i64::from(i32::MAX) {
                i64::from(FIRST_USER_OID)
            } else {
                oid + 1
            };
        }
        for counter_oid in counter_oids {
            map.insert(counter_oid, oid);
        }
    }
    map
}

impl StableOidTable {
    async fn maps(&self, state: &dyn Session) -> Result<OidMaps> {
        let mut maps = OidMaps::default();
        let mut namespace_names = HashMap::new();
        // OIDs are unique within a catalog table (as in PostgreSQL), not across them.
        let needs_relations = matches!(self.kind, Renumbered::Class | Renumbered::Attribute);
        let needs_namespaces = needs_relations || matches!(self.kind, Renumbered::Namespace);
        if let (true, Some(namespaces)) = (needs_namespaces, &self.namespaces) {
            namespace_names = namespace_names_of(namespaces.as_ref(), state).await?;
            let mut hashed = Vec::new();
            for (oid, name) in &namespace_names {
                match name.as_str() {
                    "pg_catalog" => _ = maps.namespaces.insert(*oid, PG_CATALOG_OID),
                    "public" => _ = maps.namespaces.insert(*oid, PUBLIC_OID),
                    _ => hashed.push((format!("namespace\0{name}"), *oid)),
                }
            }
            let mut taken = HashSet::from([PG_CATALOG_OID, PUBLIC_OID]);
            maps.namespaces.extend(hashed_oids(hashed, &mut taken));
        }
        if let (true, Some(classes)) = (needs_relations, &self.classes) {
            let relations = relations_of(classes.as_ref(), &namespace_names, state).await?;
            maps.relations = hashed_oids(
                relations.into_iter().map(|relation| {
                    (
                        format!("{}\0{}", relation.schema, relation.name),
                        relation.oid,
                    )
                }),
                &mut HashSet::new(),
            );
        }
        if let (Renumbered::Database, Some(databases)) = (self.kind, &self.databases) {
            let mut hashed = Vec::new();
            for batch in all_rows(databases.as_ref(), state).await? {
                let oids = int64_column(&batch, "oid")?;
                let names = string_column(&batch, "datname")?;
                let names = names.as_string::<i32>();
                hashed.extend(
                    (0..batch.num_rows())
                        .filter(|&row| !oids.is_null(row) && !names.is_null(row))
                        .map(|row| (format!("database\0{}", names.value(row)), oids.value(row))),
                );
            }
            maps.databases = hashed_oids(hashed, &mut HashSet::new());
        }
        Ok(maps)
    }

    fn renumber(&self, maps: &OidMaps, batch: RecordBatch) -> Result<RecordBatch> {
        let mut columns = batch.columns().to_vec();
        for (name, kind) in self.kind.columns() {
            let Ok(at) = batch.schema().index_of(name) else {
                continue;
            };
            let map = maps.get(*kind);
            let values = int64_column(&batch, name)?;
            let renumbered: Int64Array = values
                .iter()
                .map(|value| value.map(|oid| map.get(&oid).copied().unwrap_or(oid)))
                .collect();
            columns[at] = cast(
                &(Arc::new(renumbered) as ArrayRef),
                batch.schema().field(at).data_type(),
            )?;
        }
        Ok(RecordBatch::try_new(batch.schema(), columns)?)
    }
}

#[async_trait]
impl TableProvider for StableOidTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let maps = self.maps(state).await?;
        let batches = all_rows(self.inner.as_ref(), state)
            .await?
            .into_iter()
            .map(|batch| self.renumber(&maps, batch))
            .collect::<Result<Vec<_>>>()?;
        Ok(MemorySourceConfig::try_new_exec(
            &[batches],
            self.schema(),
            projection.cloned(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colliding_hashes_take_the_next_number_in_name_order() {
        let mut taken = HashSet::new();
        let first = i64::from(stable_oid("s\0a".bytes(), FIRST_USER_OID));
        // Another object already holds a's number: a moves on, deterministically.
        taken.insert(first);
        let objects = [("s\0b".to_owned(), 16_401), ("s\0a".to_owned(), 16_400)];
        let map = hashed_oids(objects, &mut taken);
        assert_eq!(map[&16_400], first + 1);
        assert_ne!(map[&16_401], map[&16_400]);
        assert_eq!(taken.len(), 3);
    }
}
