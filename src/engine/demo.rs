//! The bundled demo dataset (`semsql serve --demo`): product reviews and movies with plots,
//! text a newcomer can try semantic SQL on at once.

use datafusion::error::Result;

use super::Engine;

const DEMO_SQL: &str = include_str!("../../data/demo/demo.sql");
const DEMO_TABLES: &[&str] = &["reviews", "movies"];

/// Creates the demo tables unless a table of that name already exists (then it is left alone,
/// so restarting with `--demo` never duplicates or overwrites data).
pub async fn load(engine: &Engine) -> Result<()> {
    let session = engine.session(super::CATALOG);
    let mut present = Vec::new();
    for table in DEMO_TABLES {
        present.push(session.table_exist(*table)?);
    }
    if present.iter().all(|exists| *exists) {
        return Ok(());
    }
    let mut current: Option<&str> = None;
    for statement in DEMO_SQL
        .split(";\n")
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let statement = strip_comments(statement);
        if let Some(table) = DEMO_TABLES
            .iter()
            .find(|t| statement.starts_with(&format!("CREATE TABLE {t} ")))
        {
            current = Some(table);
        }
        let skip = current
            .and_then(|table| DEMO_TABLES.iter().position(|t| *t == table))
            .is_some_and(|index| present[index]);
        if !skip {
            session.sql(&statement).await?.collect().await?;
        }
    }
    tracing::info!("demo tables loaded: {}", DEMO_TABLES.join(", "));
    Ok(())
}

fn strip_comments(statement: &str) -> String {
    statement
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
}
