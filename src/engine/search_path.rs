//! A session's `search_path`, as PostgreSQL resolves names with it.
//!
//! The path is a list of schema names (`"$user"` standing for the session's role); names that
//! do not exist are skipped, and `pg_catalog` is searched first unless the path names it
//! elsewhere. DataFusion resolves an unqualified name in one default schema only, so a
//! statement is prepared in two steps (see [`SearchPath::resolver`]):
//! - the session's default schema becomes the first existing schema of the path, where
//!   `CREATE TABLE t` creates and where most names are found;
//! - a name found earlier in the path than that (in `pg_catalog`) or only later in the path is
//!   written qualified into the statement before it is planned (`server::compat`).

use std::sync::{Arc, RwLock};

use datafusion::arrow::array::{ArrayRef, ListBuilder, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::catalog::{CatalogProvider, SchemaProvider};
use datafusion::common::{exec_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::scalar::ScalarValue;

/// PostgreSQL's default `search_path`.
const DEFAULT_PATH: [&str; 2] = ["$user", "public"];
/// The schema PostgreSQL searches first when the path does not name it.
pub const PG_CATALOG: &str = "pg_catalog";

/// Schemas semsql provides itself, never a role's own schema.
const SYSTEM_SCHEMAS: [&str; 3] = [
    PG_CATALOG,
    "information_schema",
    crate::engine::system::SYSTEM_SCHEMA,
];

/// One session's `search_path` (shared by the clones of its state DataFusion makes per
/// statement, so it lives in the session config as an extension).
#[derive(Debug)]
pub struct SearchPath {
    entries: RwLock<Vec<String>>,
    /// What `"$user"` stands for.
    role: String,
}

impl SearchPath {
    pub fn new(role: &str) -> Self {
        SearchPath {
            entries: RwLock::new(DEFAULT_PATH.map(str::to_owned).to_vec()),
            role: role.to_owned(),
        }
    }

    /// The session's path, if the session has one (every client session does).
    pub fn of(config: &SessionConfig) -> Option<Arc<SearchPath>> {
        config.get_extension::<SearchPath>()
    }

    pub fn set(&self, entries: Vec<String>) {
        *self.entries.write().expect("search_path lock") = entries;
    }

    pub fn reset(&self) {
        self.set(DEFAULT_PATH.map(str::to_owned).to_vec());
    }

    pub fn entries(&self) -> Vec<String> {
        self.entries.read().expect("search_path lock").clone()
    }

    /// The path as `SHOW search_path` prints it: each name quoted where PostgreSQL's
    /// `quote_ident` would quote it (`"$user", public`).
    pub fn display(&self) -> String {
        self.entries()
            .iter()
            .map(|name| quote_ident(name))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The schemas of the path that exist in `catalog`, in order, `"$user"` replaced by the
    /// role; with `implicit`, `pg_catalog` first when the path does not name it
    /// (`current_schemas(true)`).
    pub fn schemas(&self, catalog: &dyn CatalogProvider, implicit: bool) -> Vec<String> {
        let existing = catalog.schema_names();
        let mut schemas: Vec<String> = Vec::new();
        for entry in self.entries() {
            let name = if entry == "$user" {
                // A role named like one of semsql's own schemas (the demo's `semsql`) does
                // not make that schema its own.
                if SYSTEM_SCHEMAS.contains(&self.role.as_str()) {
                    continue;
                }
                self.role.clone()
            } else {
                entry
            };
            if existing.contains(&name) && !schemas.contains(&name) {
                schemas.push(name);
            }
        }
        if implicit && !schemas.iter().any(|name| name == PG_CATALOG) {
            schemas.insert(0, PG_CATALOG.to_owned());
        }
        schemas
    }

    /// Prepares `ctx` for a statement: its default schema becomes the path's first existing
    /// schema (left as it is when none exists, so an unqualified name then fails to resolve
    /// as PostgreSQL's does), and the answer says in which schema an unqualified name lies
    /// when DataFusion would not find it there itself.
    pub fn resolver(&self, ctx: &SessionContext) -> Option<PathResolver> {
        let state = ctx.state_ref();
        let catalog_name = state
            .read()
            .config()
            .options()
            .catalog
            .default_catalog
            .clone();
        let catalog = ctx.catalog(&catalog_name)?;
        let searched = self.schemas(catalog.as_ref(), true);
        let default_schema = searched
            .iter()
            .find(|name| name.as_str() != PG_CATALOG)
            .cloned();
        if let Some(default_schema) = &default_schema {
            let mut state = state.write();
            let options = state.config_mut().options_mut();
            if &options.catalog.default_schema != default_schema {
                options.catalog.default_schema = default_schema.clone();
            }
        }
        let default_schema = state
            .read()
            .config()
            .options()
            .catalog
            .default_schema
            .clone();
        Some(PathResolver {
            schemas: searched
                .into_iter()
                .filter_map(|name| catalog.schema(&name).map(|schema| (name, schema)))
                .collect(),
            default_schema,
        })
    }
}

/// Finds the schema of an unqualified relation name along a session's path.
pub struct PathResolver {
    schemas: Vec<(String, Arc<dyn SchemaProvider>)>,
    default_schema: String,
}

impl PathResolver {
    /// The schema to qualify `table` with, when the first schema of the path that holds it is
    /// not the default schema DataFusion looks in; `None` otherwise (also when no schema holds
    /// it: DataFusion then reports the missing relation).
    pub fn schema_of(&self, table: &str) -> Option<&str> {
        let (schema, _) = self
            .schemas
            .iter()
            .find(|(_, provider)| provider.table_exist(table))?;
        (schema != &self.default_schema).then_some(schema.as_str())
    }
}

/// PostgreSQL's `quote_ident`: a name of lowercase letters, digits and underscores not
/// starting with a digit stays bare; anything else is double-quoted.
pub fn quote_ident(name: &str) -> String {
    let bare = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if bare {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// `current_schema()` and `current_schemas(include_implicit)`, answered from the session's
/// path and catalog.
#[derive(Debug)]
struct CurrentSchemas {
    name: &'static str,
    signature: Signature,
    path: Arc<SearchPath>,
    catalog: Arc<dyn CatalogProvider>,
}

impl PartialEq for CurrentSchemas {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(&self.path, &other.path)
    }
}
impl Eq for CurrentSchemas {}
impl std::hash::Hash for CurrentSchemas {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for CurrentSchemas {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(if self.name == "current_schemas" {
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
        } else {
            DataType::Utf8
        })
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if self.name == "current_schema" {
            let first = self
                .path
                .schemas(self.catalog.as_ref(), false)
                .into_iter()
                .next();
            return Ok(ColumnarValue::Scalar(ScalarValue::Utf8(first)));
        }
        let implicit = match args.args.first() {
            Some(ColumnarValue::Scalar(ScalarValue::Boolean(Some(flag)))) => *flag,
            Some(ColumnarValue::Scalar(ScalarValue::Boolean(None))) => {
                return Ok(ColumnarValue::Scalar(ScalarValue::try_from(
                    &self.return_type(&[])?,
                )?))
            }
            _ => return exec_err!("current_schemas takes one boolean constant"),
        };
        let mut builder = ListBuilder::new(StringBuilder::new());
        for schema in self.path.schemas(self.catalog.as_ref(), implicit) {
            builder.values().append_value(schema);
        }
        builder.append(true);
        let list: ArrayRef = Arc::new(builder.finish());
        Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
            &list, 0,
        )?))
    }
}

/// Registers `current_schema()` and `current_schemas(bool)` for a session with `path`.
pub fn register(ctx: &SessionContext, path: Arc<SearchPath>, catalog: Arc<dyn CatalogProvider>) {
    for (name, signature) in [
        ("current_schema", Signature::nullary(Volatility::Stable)),
        (
            "current_schemas",
            Signature::exact(vec![DataType::Boolean], Volatility::Stable),
        ),
    ] {
        ctx.register_udf(ScalarUDF::new_from_impl(CurrentSchemas {
            name,
            signature,
            path: path.clone(),
            catalog: catalog.clone(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_as_postgres_quotes_them() {
        assert_eq!(quote_ident("public"), "public");
        assert_eq!(quote_ident("$user"), "\"$user\"");
        assert_eq!(quote_ident("Mixed"), "\"Mixed\"");
        assert_eq!(quote_ident("a b"), "\"a b\"");
        assert_eq!(quote_ident("1a"), "\"1a\"");
        assert_eq!(SearchPath::new("x").display(), "\"$user\", public");
    }
}
