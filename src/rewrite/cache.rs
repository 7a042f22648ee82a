//! The rewrite cache: what a search found for a query, so it is searched once.
//!
//! The key is the normalized query text (parsed and printed back, so spacing and keyword case
//! do not matter), the catalog part of the tables it reads (their names, schemas and, for
//! managed tables, their ids: any DDL on them changes it, and so drops what was found), the
//! model and the prompt version. Each entry also records the state of the data it was found on,
//! and a lookup drops an entry whose verdict rests on that data:
//!
//! - a **proven** rewrite is equivalent on every database: it survives data changes and goes
//!   only with DDL (a new key);
//! - a **tested** rewrite only agreed with the query on the test databases made from the data:
//!   any commit to a table the query reads drops it (each managed table counts its commits;
//!   for other tables the row count stands in);
//! - a **rejected** search (nothing was accepted) is kept while each table's size stays in its
//!   statistics epoch (its row count on a √2 scale), so a query with no good rewrite is not
//!   searched after every commit.
//!
//! Entries live in memory: a restart searches again.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use sha2::{Digest, Sha256};

use super::prompts::PROMPT_VERSION;
use super::results::scanned_tables;
use crate::engine::table::DurableTable;

/// What a search decided for a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// The fastest candidate proven equivalent (and faster on the data): `auto` runs it in the
    /// query's place.
    Proven {
        sql: String,
        speedup: f64,
    },
    /// The fastest candidate that agreed with the query on every test database. Tested is not
    /// proven: `auto` never runs it in the query's place (see docs/rewrite.md).
    Tested {
        sql: String,
        speedup: f64,
    },
    Rejected,
}

/// The state of the data a query reads, as the cache compares it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DataState {
    /// Each table's commit count (managed tables) or row count (others).
    pub versions: String,
    /// Each table's statistics epoch.
    pub epochs: String,
}

/// The query's text as the cache sees it: one query, printed back by the parser. A syntax
/// error is 42601; another statement, or several, 0A000.
pub fn normalize(sql: &str) -> Result<String> {
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .map_err(|err| DataFusionError::SQL(Box::new(err), None))?;
    match statements.as_slice() {
        [statement @ Statement::Query(_)] => Ok(statement.to_string()),
        _ => Err(DataFusionError::NotImplemented(
            "EXPLAIN REWRITE takes one SELECT query".into(),
        )),
    }
}

/// The catalog part of the key (each table's name, schema and id) and the state of its data.
pub async fn data_key(ctx: &SessionContext, sql: &str) -> Result<(String, DataState)> {
    let plan = ctx.state().create_logical_plan(sql).await?;
    let mut catalog = Vec::new();
    let mut state = DataState::default();
    for table in scanned_tables(ctx, &plan)? {
        let reference = datafusion::common::TableReference::from(table.clone());
        let provider = ctx.table_provider(reference.clone()).await?;
        let schema = format!("{:?}", provider.schema());
        let (id, version, rows) = match provider.downcast_ref::<DurableTable>() {
            Some(durable) => {
                let shared = durable.shared();
                let data = shared.committed();
                let rows: usize = data.batches.iter().map(|b| b.num_rows()).sum();
                (shared.id.clone(), format!("v{}", data.version), rows)
            }
            None => {
                let rows = ctx.table(reference).await?.count().await?;
                (String::new(), format!("r{rows}"), rows)
            }
        };
        let epoch = ((rows as f64 + 1.0).log2() * 2.0).floor() as u64;
        catalog.push(format!("{table}|{schema}|{id}"));
        state.versions.push_str(&format!("{table}:{version};"));
        state.epochs.push_str(&format!("{table}:{epoch};"));
    }
    Ok((catalog.join("\n"), state))
}

/// The full key.
pub fn key(normalized: &str, catalog: &str, model: &str) -> String {
    let mut digest = Sha256::new();
    for part in [normalized, catalog, model, &PROMPT_VERSION.to_string()] {
        digest.update(part.as_bytes());
        digest.update([0]);
    }
    digest
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// An entry and the data it was found on.
#[derive(Debug, Clone)]
struct Stored {
    entry: Entry,
    data: DataState,
}

impl Stored {
    /// Whether the entry still holds on data in `now`'s state (see the module's rules).
    fn holds(&self, now: &DataState) -> bool {
        match self.entry {
            Entry::Proven { .. } => true,
            Entry::Tested { .. } => self.data.versions == now.versions,
            Entry::Rejected => self.data.epochs == now.epochs,
        }
    }
}

#[derive(Debug, Default)]
pub struct RewriteCache {
    /// By normalized text, then by full key: a query with no entry at all is skipped without
    /// computing the data part of its key.
    entries: Mutex<HashMap<String, HashMap<String, Stored>>>,
    /// Full keys being searched now (a query is searched once at a time).
    searching: Mutex<HashSet<String>>,
}

impl RewriteCache {
    pub fn is_empty(&self) -> bool {
        self.entries.lock().expect("rewrite cache lock").is_empty()
    }

    pub fn has_text(&self, normalized: &str) -> bool {
        self.entries
            .lock()
            .expect("rewrite cache lock")
            .contains_key(normalized)
    }

    /// The entry for `key` if it still holds on data in state `now`; one that does not is
    /// dropped.
    pub fn get(&self, normalized: &str, key: &str, now: &DataState) -> Option<Entry> {
        let mut entries = self.entries.lock().expect("rewrite cache lock");
        let by_key = entries.get_mut(normalized)?;
        let stored = by_key.get(key)?;
        if stored.holds(now) {
            return Some(stored.entry.clone());
        }
        by_key.remove(key);
        if by_key.is_empty() {
            entries.remove(normalized);
        }
        None
    }

    pub fn put(&self, normalized: &str, key: &str, entry: Entry, data: DataState) {
        self.entries
            .lock()
            .expect("rewrite cache lock")
            .entry(normalized.to_owned())
            .or_default()
            .insert(key.to_owned(), Stored { entry, data });
    }

    /// Marks `key` as being searched; false when a search of it is already running.
    pub fn start_search(&self, key: &str) -> bool {
        self.searching
            .lock()
            .expect("rewrite cache lock")
            .insert(key.to_owned())
    }

    pub fn end_search(&self, key: &str) {
        self.searching
            .lock()
            .expect("rewrite cache lock")
            .remove(key);
    }

    /// How many entries: proven, tested and rejected.
    pub fn counts(&self) -> (usize, usize, usize) {
        let entries = self.entries.lock().expect("rewrite cache lock");
        let all = entries.values().flat_map(|by_key| by_key.values());
        all.fold(
            (0, 0, 0),
            |(proven, tested, rejected), stored| match stored.entry {
                Entry::Proven { .. } => (proven + 1, tested, rejected),
                Entry::Tested { .. } => (proven, tested + 1, rejected),
                Entry::Rejected => (proven, tested, rejected + 1),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_key_follows_text_and_schema_and_entries_follow_the_data() {
        assert_eq!(
            normalize("select  a from t where a>1").ok(),
            normalize("SELECT a FROM t WHERE a > 1").ok()
        );
        assert_eq!(normalize("SELECT 1; SELECT 2").ok(), None);
        let ctx = SessionContext::new();
        let run = |sql: &'static str| {
            let ctx = ctx.clone();
            async move { ctx.sql(sql).await.unwrap().collect().await.unwrap() }
        };
        run("CREATE TABLE t (a INT)").await;
        run("INSERT INTO t VALUES (1), (2), (3)").await;
        let (catalog, first) = data_key(&ctx, "SELECT a FROM t").await.unwrap();
        let cache = RewriteCache::default();
        let proven = Entry::Proven {
            sql: "SELECT a FROM t".into(),
            speedup: 2.0,
        };
        let tested = Entry::Tested {
            sql: "SELECT a FROM t".into(),
            speedup: 2.0,
        };
        cache.put("p", "k", proven.clone(), first.clone());
        cache.put("t", "k", tested.clone(), first.clone());
        cache.put("r", "k", Entry::Rejected, first.clone());
        assert_eq!(cache.get("t", "k", &first), Some(tested));
        run("INSERT INTO t VALUES (4)").await;
        let (same_catalog, after) = data_key(&ctx, "SELECT a FROM t").await.unwrap();
        assert_eq!(same_catalog, catalog);
        // 3 → 4 rows: the same epoch (log2 4 * 2 = 4, log2 5 * 2 = 4.6), another version.
        assert_eq!(after.epochs, first.epochs);
        assert_ne!(after.versions, first.versions);
        assert_eq!(cache.get("p", "k", &after), Some(proven));
        assert_eq!(
            cache.get("t", "k", &after),
            None,
            "a tested rewrite rests on the data"
        );
        assert_eq!(cache.get("r", "k", &after), Some(Entry::Rejected));
        run("INSERT INTO t SELECT * FROM generate_series(1, 100)").await;
        let (_, grown) = data_key(&ctx, "SELECT a FROM t").await.unwrap();
        assert_eq!(
            cache.get("r", "k", &grown),
            None,
            "a new epoch searches again"
        );
        run("DROP TABLE t").await;
        run("CREATE TABLE t (a BIGINT)").await;
        let (remade, _) = data_key(&ctx, "SELECT a FROM t").await.unwrap();
        assert_ne!(remade, catalog);
        assert_ne!(key("q", &catalog, "m"), key("q", &remade, "m"));
        assert_ne!(key("q", &catalog, "m"), key("q", &catalog, "other"));
    }
}
