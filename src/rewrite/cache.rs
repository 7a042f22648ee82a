//! The rewrite cache: what a search found for a query, so it is searched once.
//!
//! The key is the normalized query text (parsed and printed back, so spacing and keyword case
//! do not matter), the catalog version of the tables it reads (their names and schemas: any DDL
//! on them changes it), a statistics epoch (each table's row count on a √2 scale: a large change
//! of size starts a new epoch), the model and the prompt version. Entries are positive (the
//! accepted rewrite and its speedup) or negative (nothing was accepted), so a query with no good
//! rewrite is not searched again and again. Entries live in memory: a restart searches again.

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

/// What a search decided for a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// The fastest candidate that agreed with the query on every test database. Tested is not
    /// proven: `auto` never runs it in the query's place (see docs/rewrite.md).
    Tested {
        sql: String,
        speedup: f64,
    },
    Rejected,
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

/// The part of the key that follows the data: catalog version and statistics epoch.
pub async fn data_key(ctx: &SessionContext, sql: &str) -> Result<String> {
    let plan = ctx.state().create_logical_plan(sql).await?;
    let mut parts = Vec::new();
    for table in scanned_tables(ctx, &plan)? {
        let frame = ctx
            .table(datafusion::common::TableReference::from(table.clone()))
            .await?;
        let schema = format!("{:?}", frame.schema().as_arrow());
        let rows = frame.count().await?;
        let epoch = ((rows as f64 + 1.0).log2() * 2.0).floor() as u64;
        parts.push(format!("{table}|{schema}|{epoch}"));
    }
    Ok(parts.join("\n"))
}

/// The full key.
pub fn key(normalized: &str, data_key: &str, model: &str) -> String {
    let mut digest = Sha256::new();
    for part in [normalized, data_key, model, &PROMPT_VERSION.to_string()] {
        digest.update(part.as_bytes());
        digest.update([0]);
    }
    digest
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[derive(Debug, Default)]
pub struct RewriteCache {
    /// By normalized text, then by full key: a query with no entry at all is skipped without
    /// computing the data part of its key.
    entries: Mutex<HashMap<String, HashMap<String, Entry>>>,
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

    pub fn get(&self, normalized: &str, key: &str) -> Option<Entry> {
        self.entries
            .lock()
            .expect("rewrite cache lock")
            .get(normalized)?
            .get(key)
            .cloned()
    }

    pub fn put(&self, normalized: &str, key: &str, entry: Entry) {
        self.entries
            .lock()
            .expect("rewrite cache lock")
            .entry(normalized.to_owned())
            .or_default()
            .insert(key.to_owned(), entry);
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

    /// How many entries, positive and negative.
    pub fn counts(&self) -> (usize, usize) {
        let entries = self.entries.lock().expect("rewrite cache lock");
        let all = entries.values().flat_map(|by_key| by_key.values());
        all.fold((0, 0), |(accepted, rejected), entry| match entry {
            Entry::Tested { .. } => (accepted + 1, rejected),
            Entry::Rejected => (accepted, rejected + 1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_key_follows_text_schema_and_size() {
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
        let first = data_key(&ctx, "SELECT a FROM t").await.unwrap();
        run("INSERT INTO t VALUES (4)").await;
        // 3 → 4 rows: the same epoch (log2 4 * 2 = 4, log2 5 * 2 = 4.6).
        assert_eq!(data_key(&ctx, "SELECT a FROM t").await.unwrap(), first);
        run("INSERT INTO t SELECT * FROM generate_series(1, 100)").await;
        assert_ne!(data_key(&ctx, "SELECT a FROM t").await.unwrap(), first);
        let grown = data_key(&ctx, "SELECT a FROM t").await.unwrap();
        run("DROP TABLE t").await;
        run("CREATE TABLE t (a BIGINT)").await;
        run("INSERT INTO t SELECT * FROM generate_series(1, 104)").await;
        assert_ne!(data_key(&ctx, "SELECT a FROM t").await.unwrap(), grown);
        assert_ne!(key("q", &first, "m"), key("q", &first, "other"));
    }
}
