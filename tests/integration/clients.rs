//! Startup and metadata queries that real clients send (psql, the PostgreSQL JDBC driver,
//! DBeaver, SQLAlchemy, pgcli, Metabase), replayed over the wire against a server with tables:
//! each must succeed, and the catalog answers must name our tables.

use crate::support::TestServer;

/// Queries each client sends at connect time or to list tables and columns.
const CLIENT_QUERIES: &[(&str, &str)] = &[
    ("jdbc", "SET extra_float_digits = 3"),
    ("jdbc", "SET application_name = 'PostgreSQL JDBC Driver'"),
    (
        "jdbc getTables",
        "SELECT NULL AS TABLE_CAT, n.nspname AS TABLE_SCHEM, c.relname AS TABLE_NAME, \
         CASE n.nspname ~ '^pg_' OR n.nspname = 'information_schema' WHEN true THEN \
         CASE WHEN n.nspname = 'pg_catalog' OR n.nspname = 'information_schema' THEN \
         CASE c.relkind WHEN 'r' THEN 'SYSTEM TABLE' WHEN 'v' THEN 'SYSTEM VIEW' WHEN 'i' THEN 'SYSTEM INDEX' ELSE NULL END \
         ELSE NULL END ELSE CASE c.relkind WHEN 'r' THEN 'TABLE' WHEN 'p' THEN 'PARTITIONED TABLE' \
         WHEN 'v' THEN 'VIEW' WHEN 'i' THEN 'INDEX' ELSE NULL END END AS TABLE_TYPE, d.description AS REMARKS \
         FROM pg_catalog.pg_namespace n, pg_catalog.pg_class c \
         LEFT JOIN pg_catalog.pg_description d ON (c.oid = d.objoid AND d.objsubid = 0) \
         WHERE c.relnamespace = n.oid AND c.relname LIKE '%' \
         ORDER BY TABLE_TYPE, TABLE_SCHEM, TABLE_NAME",
    ),
    (
        "jdbc getColumns",
        "SELECT n.nspname, c.relname, a.attname, a.atttypid, a.attnotnull, a.atttypmod, a.attlen, a.attnum \
         FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_class c ON (c.relnamespace = n.oid) \
         JOIN pg_catalog.pg_attribute a ON (a.attrelid = c.oid) \
         WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relname LIKE 'reviews' \
         ORDER BY nspname, c.relname, attnum",
    ),
    ("dbeaver", "SELECT current_schema(),session_user"),
    ("dbeaver", "SHOW search_path"),
    ("dbeaver", "SELECT db.oid,db.* FROM pg_catalog.pg_database db WHERE datname='semsql'"),
    (
        "dbeaver",
        "SELECT * FROM pg_catalog.pg_settings where name='standard_conforming_strings'",
    ),
    (
        "sqlalchemy has_table",
        "SELECT pg_catalog.pg_class.relname FROM pg_catalog.pg_class JOIN pg_catalog.pg_namespace \
         ON pg_catalog.pg_namespace.oid = pg_catalog.pg_class.relnamespace \
         WHERE pg_catalog.pg_class.relname = 'reviews' AND pg_catalog.pg_class.relkind = ANY (ARRAY['r', 'p', 'f', 'v', 'm']) \
         AND pg_catalog.pg_table_is_visible(pg_catalog.pg_class.oid) AND pg_catalog.pg_namespace.nspname != 'pg_catalog'",
    ),
    ("sqlalchemy", "select pg_catalog.version()"),
    ("sqlalchemy", "select current_schema()"),
    ("sqlalchemy", "show standard_conforming_strings"),
    (
        "information_schema",
        "SELECT table_schema, table_name, table_type FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name",
    ),
    (
        "information_schema",
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_name = 'movies' ORDER BY ordinal_position",
    ),
    (
        "pgcli",
        "SELECT n.nspname schema_name, c.relname table_name FROM pg_catalog.pg_class c \
         LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = ANY(array['r','p']) ORDER BY 1,2",
    ),
    (
        "metabase",
        "SELECT nspname AS schema FROM pg_catalog.pg_namespace WHERE nspname NOT LIKE 'pg_%' AND nspname <> 'information_schema'",
    ),
];

use crate::support::text_rows as rows;

#[tokio::test]
async fn client_startup_and_metadata_queries_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let overrides = semsql::config::Overrides {
        listen: Some("127.0.0.1:0".into()),
        data_dir: Some(dir.path().to_owned()),
        demo: true,
        ..Default::default()
    };
    let config =
        semsql::config::Config::resolve(semsql::config::FileConfig::default(), overrides).unwrap();
    let server = TestServer::start_with(config).await;
    let client = server.client().await;
    let mut failures = Vec::new();
    let mut answers = Vec::new();
    for (who, sql) in CLIENT_QUERIES {
        match client.simple_query(sql).await {
            Ok(messages) => answers.push((*who, sql, rows(&messages))),
            Err(err) => failures.push(format!("{who}: {sql}\n  -> {err:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    let find = |who: &str| {
        answers
            .iter()
            .filter(|(w, _, _)| *w == who)
            .flat_map(|(_, _, rows)| rows.clone())
            .collect::<Vec<_>>()
    };
    let tables = find("jdbc getTables");
    assert!(
        tables
            .iter()
            .any(|r| r[2].as_deref() == Some("reviews") && r[3].as_deref() == Some("TABLE")),
        "{tables:?}"
    );
    let columns: Vec<String> = find("jdbc getColumns")
        .iter()
        .filter_map(|r| r[2].clone())
        .collect();
    assert_eq!(
        columns,
        vec![
            "id",
            "product",
            "category",
            "stars",
            "review_date",
            "body",
            "embedding"
        ]
    );
    assert_eq!(
        find("sqlalchemy has_table"),
        vec![vec![Some("reviews".to_owned())]]
    );
    let version = find("sqlalchemy");
    assert!(
        version[0][0]
            .as_deref()
            .unwrap()
            .starts_with("PostgreSQL 15.18"),
        "{version:?}"
    );
    let info_tables: Vec<String> = find("information_schema")
        .iter()
        .filter(|r| r.len() == 3 && r[0].as_deref() == Some("public"))
        .filter_map(|r| r[1].clone())
        .collect();
    assert_eq!(info_tables, vec!["movies", "reviews"]);
    server.stop().await;
}
