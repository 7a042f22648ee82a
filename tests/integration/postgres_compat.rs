//! PostgreSQL 15's behaviour where clients look first (issue 14): `search_path`, SET that is
//! never silently ignored, and the text output of floats, times and bytea. Each expected value
//! is what PostgreSQL 15 answers to the same statement.

use crate::support::{connect_with_notices, rows, sqlstate, text_rows, TestServer};

fn one(value: &str) -> Vec<Vec<Option<String>>> {
    vec![vec![Some(value.to_owned())]]
}

#[tokio::test]
async fn search_path_decides_where_names_resolve_and_where_tables_are_made() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE SCHEMA s1; CREATE TABLE s1.only_s1 (a int); INSERT INTO s1.only_s1 VALUES (1);
             CREATE TABLE s1.both (a int); INSERT INTO s1.both VALUES (10);
             CREATE TABLE both (a int); INSERT INTO both VALUES (20)",
        )
        .await
        .unwrap();
    assert_eq!(
        rows(&client, "SHOW search_path").await,
        one("\"$user\", public")
    );
    let err = client
        .simple_query("SELECT a FROM only_s1")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42P01", "{err:?}");

    client
        .batch_execute("SET search_path = s1, public")
        .await
        .unwrap();
    assert_eq!(rows(&client, "SHOW search_path").await, one("s1, public"));
    assert_eq!(rows(&client, "SELECT a FROM only_s1").await, one("1"));
    // The first schema of the path that holds the name wins.
    assert_eq!(rows(&client, "SELECT a FROM both").await, one("10"));
    // pg_catalog is searched first, implicitly.
    assert_eq!(
        rows(
            &client,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 's1'"
        )
        .await,
        one("1")
    );
    assert_eq!(
        rows(
            &client,
            "SELECT current_schema(), current_schemas(true), current_schemas(false)"
        )
        .await,
        vec![vec![
            Some("s1".to_owned()),
            Some("{pg_catalog,s1,public}".to_owned()),
            Some("{s1,public}".to_owned()),
        ]]
    );
    // A new table goes to the path's first schema.
    client
        .batch_execute("CREATE TABLE made_here (b int)")
        .await
        .unwrap();
    assert_eq!(
        rows(
            &client,
            "SELECT table_schema FROM information_schema.tables WHERE table_name = 'made_here'"
        )
        .await,
        one("s1")
    );
    // A WITH name shadows a table of the path, as in PostgreSQL.
    assert_eq!(
        rows(
            &client,
            "WITH only_s1 AS (SELECT 7 AS a) SELECT a FROM only_s1"
        )
        .await,
        one("7")
    );
    // The extended protocol resolves along the path too.
    let row = client
        .query_one("SELECT a FROM only_s1 WHERE a = $1", &[&1i32])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 1);

    // Superset's form, and a path followed by a query in one message.
    client
        .batch_execute("SET search_path = \"public\"")
        .await
        .unwrap();
    assert_eq!(rows(&client, "SELECT a FROM both").await, one("20"));
    assert_eq!(
        rows(&client, "SET search_path TO s1; SELECT a FROM both").await,
        one("10")
    );
    client.batch_execute("RESET search_path").await.unwrap();
    assert_eq!(
        rows(&client, "SHOW search_path").await,
        one("\"$user\", public")
    );
    assert_eq!(rows(&client, "SELECT a FROM both").await, one("20"));

    // Another connection keeps its own path.
    let other = server.client().await;
    client.batch_execute("SET search_path = s1").await.unwrap();
    assert_eq!(rows(&other, "SELECT a FROM both").await, one("20"));
    client.batch_execute("RESET ALL").await.unwrap();
    assert_eq!(rows(&client, "SELECT a FROM both").await, one("20"));
    server.stop().await;
}

#[tokio::test]
async fn set_is_never_silently_ignored() {
    let server = TestServer::start().await;
    let (client, notices) = connect_with_notices(&server.connection_string()).await;
    for (sql, code) in [
        ("SET no_such_setting = 1", "42704"),
        ("SHOW no_such_setting", "42704"),
        ("RESET no_such_setting", "42704"),
        ("SET ROLE somebody", "0A000"),
        ("SET client_encoding = 'LATIN1'", "0A000"),
        ("SET LOCAL search_path = s1", "0A000"),
        ("SET timezone = 'Not/AZone'", "22023"),
    ] {
        let err = client.simple_query(sql).await.unwrap_err();
        assert_eq!(sqlstate(&err), code, "{sql}: {err:?}");
    }
    assert_eq!(
        client
            .simple_query("SET no_such_setting = 1")
            .await
            .unwrap_err()
            .as_db_error()
            .unwrap()
            .message(),
        "unrecognized configuration parameter \"no_such_setting\""
    );

    // Accepted with the one value semsql has.
    client
        .batch_execute("SET client_encoding = 'UTF8'")
        .await
        .unwrap();
    // Kept for SHOW, with a NOTICE saying semsql does not act on it.
    client
        .batch_execute("SET client_min_messages = warning")
        .await
        .unwrap();
    assert_eq!(
        rows(&client, "SHOW client_min_messages").await,
        one("warning")
    );
    assert!(
        notices
            .lock()
            .unwrap()
            .iter()
            .any(|notice| notice.contains("client_min_messages")),
        "{:?}",
        notices.lock().unwrap()
    );
    // Acted on: the time zone and the date style, reported as PostgreSQL reports them.
    client
        .batch_execute("SET timezone = 'America/New_York'")
        .await
        .unwrap();
    assert_eq!(
        rows(&client, "SHOW timezone").await,
        one("America/New_York")
    );
    assert_eq!(
        rows(&client, "SELECT '2020-01-02 03:04:05+00'::timestamptz").await,
        one("2020-01-01 22:04:05-05")
    );
    // PostgreSQL reads '+05:00' as a POSIX zone (five hours west), a number and an interval as
    // hours east; now() follows the zone as current_date does (it kept the first zone before).
    for (set, shown) in [
        ("SET TIME ZONE '+05:00'", "2020-01-01 22:04:05-05"),
        ("SET TIME ZONE 5", "2020-01-02 08:04:05+05"),
        (
            "SET TIME ZONE INTERVAL '-03:00' HOUR TO MINUTE",
            "2020-01-02 00:04:05-03",
        ),
        (
            "SET TIME ZONE 'Pacific/Kiritimati'",
            "2020-01-02 17:04:05+14",
        ),
    ] {
        client.batch_execute(set).await.unwrap();
        assert_eq!(
            rows(
                &client,
                "SELECT '2020-01-02 03:04:05+00'::timestamptz, now()::date = current_date"
            )
            .await,
            vec![vec![Some(shown.to_owned()), Some("t".to_owned())]],
            "{set}"
        );
    }
    client.batch_execute("SET TIME ZONE DEFAULT").await.unwrap();
    assert_eq!(rows(&client, "SHOW timezone").await, one("UTC"));
    // Functions clients call: pgcli's regexp_split_to_table, SQLAlchemy's LIKE ... ESCAPE.
    assert_eq!(
        rows(&client, "SELECT regexp_split_to_table('a,b,,c', ',')").await,
        [["a"], ["b"], [""], ["c"]]
            .map(|row| row.map(|value| Some(value.to_owned())).to_vec())
            .to_vec()
    );
    assert_eq!(
        rows(
            &client,
            "SELECT count(*) FROM regexp_split_to_table('x y z', '\\s+')"
        )
        .await,
        one("3")
    );
    assert_eq!(
        rows(
            &client,
            "SELECT 'a_b' LIKE 'a/_b' ESCAPE '/', 'axb' LIKE 'a/_b' ESCAPE '/', 'a\\b' LIKE 'a\\b' ESCAPE ''"
        )
        .await,
        vec![vec![
            Some("t".to_owned()),
            Some("f".to_owned()),
            Some("t".to_owned())
        ]]
    );
    assert_eq!(
        rows(
            &client,
            "SELECT pg_typeof(1::int4), pg_typeof('x'::text), pg_typeof(now())"
        )
        .await,
        vec![vec![
            Some("integer".to_owned()),
            Some("text".to_owned()),
            Some("timestamp with time zone".to_owned())
        ]]
    );
    let err = client
        .simple_query("SELECT regexp_split_to_array('a', '(')")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "2201B", "{err:?}");
    client.batch_execute("SET DateStyle = ISO").await.unwrap();
    assert_eq!(rows(&client, "SHOW DateStyle").await, one("ISO, MDY"));
    server.stop().await;
}

#[tokio::test]
async fn text_output_is_postgres_text_output() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let cases = [
        ("SELECT 1500::float8", "1500"),
        ("SELECT 1.5::float8", "1.5"),
        ("SELECT 1e20::float8", "1e+20"),
        ("SELECT 0.00001::float8", "1e-05"),
        ("SELECT 'Infinity'::float8", "Infinity"),
        ("SELECT '-Infinity'::float8", "-Infinity"),
        ("SELECT 'NaN'::float8", "NaN"),
        ("SELECT 0.1::float4", "0.1"),
        ("SELECT 1000000::float4", "1e+06"),
        (
            "SELECT '2020-01-02 03:04:05'::timestamp",
            "2020-01-02 03:04:05",
        ),
        (
            "SELECT '2020-01-02 03:04:05.5'::timestamp",
            "2020-01-02 03:04:05.5",
        ),
        (
            "SELECT '2020-01-02 03:04:05+00'::timestamptz",
            "2020-01-02 03:04:05+00",
        ),
        ("SELECT '03:04:05'::time", "03:04:05"),
        ("SELECT '\\x00ff'::bytea", "\\x00ff"),
        ("SELECT bytea '\\x01'", "\\x01"),
    ];
    for (sql, expected) in cases {
        assert_eq!(rows(&client, sql).await, one(expected), "{sql}");
    }
    // Stored values print the same way, and binary results are untouched.
    client
        .batch_execute(
            "CREATE TABLE measures (x float8, at timestamp);
             INSERT INTO measures VALUES (2.5e-7, '2021-06-01 12:00:00')",
        )
        .await
        .unwrap();
    assert_eq!(
        rows(&client, "SELECT x, at FROM measures").await,
        vec![vec![
            Some("2.5e-07".to_owned()),
            Some("2021-06-01 12:00:00".to_owned())
        ]]
    );
    let row = client
        .query_one("SELECT x FROM measures", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, f64>(0), 2.5e-7);
    server.stop().await;
}

/// A scalar subquery in a select list answers as in PostgreSQL, correlated or not: it was
/// answered NULL (correlated) or from its first row (uncorrelated) without a word.
#[tokio::test]
async fn scalar_subqueries_answer_as_postgres() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE genres (id int, genre text);
             INSERT INTO genres VALUES (1, 'western'), (2, 'comedy'), (2, 'drama');
             CREATE TABLE picks (id int);
             INSERT INTO picks VALUES (1), (3)",
        )
        .await
        .unwrap();
    let messages = client
        .simple_query(
            "SELECT p.id, (SELECT g.genre FROM genres g WHERE g.id = p.id) FROM picks p ORDER BY p.id",
        )
        .await
        .unwrap();
    let names: Vec<String> = match &messages[0] {
        tokio_postgres::SimpleQueryMessage::RowDescription(columns) => columns
            .iter()
            .map(|column| column.name().to_owned())
            .collect(),
        other => panic!("{other:?}"),
    };
    assert_eq!(names, ["id", "genre"]);
    assert_eq!(
        text_rows(&messages),
        vec![
            vec![Some("1".to_owned()), Some("western".to_owned())],
            vec![Some("3".to_owned()), None],
        ]
    );
    for sql in [
        "SELECT (SELECT genre FROM genres)",
        "SELECT p.id, (SELECT g.genre FROM genres g WHERE g.id = p.id + 1) FROM picks p",
        "SELECT p.id, (SELECT g.genre || p.id FROM genres g WHERE g.id = p.id + 1) FROM picks p",
    ] {
        let err = client.simple_query(sql).await.unwrap_err();
        assert_eq!(sqlstate(&err), "21000", "{sql}: {err:?}");
    }
    assert_eq!(
        rows(
            &client,
            "SELECT (SELECT genre FROM genres WHERE id = 1) AS only_one"
        )
        .await,
        one("western")
    );
    // SQLAlchemy's column reflection: a condition on the outer row only, and the outer row
    // in the subquery's select list (DataFusion decorrelates neither as written).
    let outer_condition = client
        .simple_query(
            "SELECT p.id, coalesce((SELECT g.genre FROM genres g \
             WHERE p.id < 2 AND g.id = p.id), 'none') FROM picks p ORDER BY p.id",
        )
        .await
        .unwrap();
    assert_eq!(
        text_rows(&outer_condition),
        vec![
            vec![Some("1".to_owned()), Some("western".to_owned())],
            vec![Some("3".to_owned()), Some("none".to_owned())],
        ]
    );
    let outer_item = client
        .simple_query(
            "SELECT p.id, CASE WHEN p.id > 0 THEN (SELECT g.genre || '#' || p.id \
             FROM genres g WHERE g.id = p.id) END FROM picks p ORDER BY p.id",
        )
        .await
        .unwrap();
    assert_eq!(
        text_rows(&outer_item),
        vec![
            vec![Some("1".to_owned()), Some("western#1".to_owned())],
            vec![Some("3".to_owned()), None],
        ]
    );
    // A subquery whose column is an expression over an aggregate is an aggregate already
    // (TPC-H Q11's HAVING): it was wrapped again and refused as a nested aggregate.
    assert_eq!(
        rows(
            &client,
            "SELECT id, count(*) FROM genres GROUP BY id \
             HAVING count(*) > (SELECT count(*) * 0.5 FROM genres) ORDER BY id"
        )
        .await,
        vec![vec![Some("2".to_owned()), Some("2".to_owned())]]
    );
    server.stop().await;
}

/// NOT NULL as in PostgreSQL: a NULL into a NOT NULL column is 23502 with PostgreSQL's message
/// (it was an Arrow error naming `column1`), and CREATE TABLE ... AS never makes a column
/// NOT NULL (a table made from `SELECT 1 AS a` refused a later NULL).
#[tokio::test]
async fn not_null_columns_answer_as_postgres() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE nn (a int NOT NULL, b text)")
        .await
        .unwrap();
    let err = client
        .batch_execute("INSERT INTO nn VALUES (NULL, 'x')")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "23502", "{err:?}");
    assert_eq!(
        err.as_db_error().unwrap().message(),
        "null value in column \"a\" of relation \"nn\" violates not-null constraint"
    );
    client
        .batch_execute(
            "CREATE TABLE made AS SELECT 1 AS a, 'x' AS b; \
             INSERT INTO made VALUES (NULL, NULL)",
        )
        .await
        .unwrap();
    assert_eq!(
        rows(&client, "SELECT count(*) FROM made WHERE a IS NULL").await,
        one("1")
    );
    server.stop().await;
}

/// PRIMARY KEY and UNIQUE as in PostgreSQL 15 (the same statements there give the same
/// errors): a second row with a key is 23505 with PostgreSQL's message and DETAIL, from
/// INSERT, UPDATE and a transaction's COMMIT alike; a primary key's columns are NOT NULL;
/// NULLs never conflict in a UNIQUE key; the keys survive a restart.
#[tokio::test]
async fn primary_and_unique_keys_answer_as_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = TestServer::start_in(&data, semsql::config::FileConfig::default()).await;
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE keyed (id INT PRIMARY KEY, code TEXT UNIQUE, note TEXT); \
             INSERT INTO keyed VALUES (1, 'a', 'one'); \
             INSERT INTO keyed VALUES (2, NULL, 'two'), (3, NULL, 'three')",
        )
        .await
        .unwrap();
    let refused = |sql: &'static str| {
        let client = &client;
        async move { client.batch_execute(sql).await.unwrap_err() }
    };
    let err = refused("INSERT INTO keyed VALUES (1, 'b', 'again')").await;
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code().code(), "23505");
    assert_eq!(
        db.message(),
        "duplicate key value violates unique constraint \"keyed_pkey\""
    );
    assert_eq!(db.detail(), Some("Key (id)=(1) already exists."));
    let err = refused("INSERT INTO keyed VALUES (4, 'a', 'same code')").await;
    assert_eq!(
        err.as_db_error().unwrap().detail(),
        Some("Key (code)=(a) already exists.")
    );
    let err = refused("UPDATE keyed SET id = 1 WHERE id = 2").await;
    assert_eq!(sqlstate(&err), "23505");
    let err = refused("INSERT INTO keyed VALUES (NULL, 'n', 'no id')").await;
    assert_eq!(sqlstate(&err), "23502");
    // Two transactions that each add the same key: the second to commit is refused.
    let other = server.client().await;
    client
        .batch_execute("BEGIN; INSERT INTO keyed VALUES (5, 'e', 'first')")
        .await
        .unwrap();
    other
        .batch_execute("BEGIN; INSERT INTO keyed VALUES (5, 'f', 'second')")
        .await
        .unwrap();
    client.batch_execute("COMMIT").await.unwrap();
    let err = other.batch_execute("COMMIT").await.unwrap_err();
    assert_eq!(sqlstate(&err), "23505", "{err:?}");
    assert_eq!(
        rows(
            &client,
            "SELECT string_agg(CAST(id AS TEXT), ',' ORDER BY id) FROM keyed"
        )
        .await,
        one("1,2,3,5")
    );
    drop(other);
    server.stop().await;

    let server = TestServer::start_in(&data, semsql::config::FileConfig::default()).await;
    let client = server.client().await;
    let err = client
        .batch_execute("INSERT INTO keyed VALUES (3, 'z', 'after restart')")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "23505");
    server.stop().await;
}

/// `varchar(n)` as in PostgreSQL 15 (the same statements there give the same answers): it
/// keeps its length through a restart and into `CREATE TABLE AS`, the catalogs describe it as
/// `character varying(n)`, and a longer value is 22001 from INSERT, UPDATE and COPY alike.
#[tokio::test]
async fn varchar_keeps_its_length() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = TestServer::start_in(&data, semsql::config::FileConfig::default()).await;
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE sized (id INT, name VARCHAR(5), note CHARACTER VARYING(3)); \
             INSERT INTO sized VALUES (1, 'abcde', 'é€x')",
        )
        .await
        .unwrap();
    for sql in [
        "INSERT INTO sized VALUES (2, 'abcdef', NULL)",
        "UPDATE sized SET note = 'long' WHERE id = 1",
    ] {
        let err = client.batch_execute(sql).await.unwrap_err();
        let db = err.as_db_error().unwrap();
        assert_eq!(db.code().code(), "22001", "{sql}");
        assert!(
            db.message()
                .starts_with("value too long for type character varying("),
            "{}",
            db.message()
        );
    }
    // Spaces past the length are cut off, not refused (PostgreSQL stores 'ab' for 'ab   '),
    // on INSERT and UPDATE.
    client
        .batch_execute(
            "INSERT INTO sized VALUES (3, 'abcde   ', 'xy     '); \
             UPDATE sized SET note = 'é€x  ' WHERE id = 3",
        )
        .await
        .unwrap();
    assert_eq!(
        rows(
            &client,
            "SELECT name || '|' || note FROM sized WHERE id = 3"
        )
        .await,
        one("abcde|é€x")
    );
    client
        .batch_execute("DELETE FROM sized WHERE id = 3")
        .await
        .unwrap();
    let types = "SELECT string_agg(format_type(atttypid, atttypmod), ', ' ORDER BY attnum) \
                 FROM pg_attribute WHERE attrelid = CAST('{table}' AS regclass) AND attnum > 0";
    assert_eq!(
        rows(&client, &types.replace("{table}", "sized")).await,
        one("integer, character varying(5), character varying(3)")
    );
    // An explicit cast cuts, as PostgreSQL's does.
    assert_eq!(
        rows(
            &client,
            "SELECT CAST('é€xyz' AS VARCHAR(2)) || '|' || 'abcdef'::varchar(3)"
        )
        .await,
        one("é€|abc")
    );
    client
        .batch_execute("CREATE TABLE copied AS SELECT * FROM sized")
        .await
        .unwrap();
    server.stop().await;

    let server = TestServer::start_in(&data, semsql::config::FileConfig::default()).await;
    let client = server.client().await;
    for table in ["sized", "copied"] {
        assert_eq!(
            rows(&client, &types.replace("{table}", table)).await,
            one("integer, character varying(5), character varying(3)"),
            "{table}"
        );
    }
    let err = client
        .batch_execute("INSERT INTO copied VALUES (3, 'abcdef', NULL)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "22001");
    server.stop().await;
}

/// SQL `PREPARE`/`EXECUTE`: an `EXECUTE` sent with the extended protocol (as drivers send every
/// statement) returns its rows, described; it returned none.
#[tokio::test]
async fn sql_execute_returns_rows_in_the_extended_protocol() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute("PREPARE greet(text) AS SELECT 'hello ' || $1 AS greeting")
        .await
        .unwrap();
    let rows = client.query("EXECUTE greet('world')", &[]).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].columns()[0].name(), "greeting");
    assert_eq!(rows[0].get::<_, String>(0), "hello world");
    server.stop().await;
}

/// PostgreSQL's date/time templates: `to_char(ts, 'YYYY-MM-DD')` answered the template itself,
/// and `to_timestamp`/`to_date` with a template failed. DataFusion's own `%` formats still work.
#[tokio::test]
async fn datetime_templates_as_postgres() {
    let server = TestServer::start().await;
    let client = server.client().await;
    for (sql, expected) in [
        (
            "SELECT to_char(TIMESTAMP '2024-03-05 14:07:09', 'YYYY-MM-DD HH24:MI:SS')",
            "2024-03-05 14:07:09",
        ),
        (
            "SELECT to_char(TIMESTAMP '2024-03-05 14:07:09', 'FMDD/FMMM/YY HH12 PM')",
            "5/3/24 02 PM",
        ),
        (
            "SELECT to_char(to_timestamp('05.03.2024 14:07', 'DD.MM.YYYY HH24:MI'), 'YYYY-MM-DD\"T\"HH24:MI')",
            "2024-03-05T14:07",
        ),
        (
            "SELECT CAST(to_date('2024-03-05', 'YYYY-MM-DD') AS TEXT)",
            "2024-03-05",
        ),
        (
            "SELECT to_char(TIMESTAMP '2024-03-05 14:07:09', '%Y/%m')",
            "2024/03",
        ),
    ] {
        assert_eq!(rows(&client, sql).await, one(expected), "{sql}");
    }
    server.stop().await;
}

/// Casts between text and dates, times, intervals and floats, and timestamptz values in a zone
/// whose offset has minutes, as PostgreSQL 15 answers them (each expected value is its answer).
#[tokio::test]
async fn datetime_text_casts_as_postgres() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute("SET TIME ZONE 'Asia/Kolkata'")
        .await
        .unwrap();
    for (sql, expected) in [
        // Printed.
        (
            "SELECT '2020-01-02 03:04:05+00'::timestamptz",
            "2020-01-02 08:34:05+05:30",
        ),
        (
            "SELECT '2020-01-02 03:04:05+00'::timestamptz::text",
            "2020-01-02 08:34:05+05:30",
        ),
        (
            "SELECT '2020-01-02 03:04:05.5'::timestamp::text",
            "2020-01-02 03:04:05.5",
        ),
        ("SELECT '1 day 2 hours'::interval::text", "1 day 02:00:00"),
        ("SELECT 1e20::float8::text", "1e+20"),
        ("SELECT '12:00:00.5'::time::text", "12:00:00.5"),
        ("SELECT 'a' || 1.5::float8", "a1.5"),
        // Read.
        (
            "SELECT '2020-01-02 03:04'::timestamp",
            "2020-01-02 03:04:00",
        ),
        (
            "SELECT '2020-1-2 3:04:05'::timestamp",
            "2020-01-02 03:04:05",
        ),
        ("SELECT 'Jan 2 2020'::date", "2020-01-02"),
        ("SELECT '2020-01-02 03:04:05'::date", "2020-01-02"),
        ("SELECT 'epoch'::timestamp", "1970-01-01 00:00:00"),
        ("SELECT 'epoch'::timestamptz", "1970-01-01 05:30:00+05:30"),
        ("SELECT 'today'::date = current_date", "t"),
        (
            "SELECT '2020-01-02 03:04 +5:30'::timestamptz",
            "2020-01-02 03:04:00+05:30",
        ),
    ] {
        assert_eq!(rows(&client, sql).await, one(expected), "{sql}");
    }
    for (sql, code, message) in [
        (
            "SELECT 'soon'::timestamp",
            "22007",
            "invalid input syntax for type timestamp: \"soon\"",
        ),
        (
            "SELECT '2020-13-01'::date",
            "22008",
            "date/time field value out of range: \"2020-13-01\"",
        ),
    ] {
        let err = client.simple_query(sql).await.unwrap_err();
        assert_eq!(sqlstate(&err), code, "{sql}");
        assert_eq!(err.as_db_error().unwrap().message(), message, "{sql}");
    }
    // Columns of text are read row by row; comparisons with stored values read their constant.
    client
        .batch_execute(
            "CREATE TABLE moments (t timestamp, z timestamptz, s text);
             INSERT INTO moments VALUES ('2020-01-02 03:04', '2020-01-02 03:04', '2021-2-3 4:05')",
        )
        .await
        .unwrap();
    assert_eq!(
        rows(
            &client,
            "SELECT t, z, s::timestamp FROM moments \
             WHERE t > '2020-01-02 03:03' AND z < '2020-01-02 3:05'"
        )
        .await,
        vec![vec![
            Some("2020-01-02 03:04:00".to_owned()),
            Some("2020-01-02 03:04:00+05:30".to_owned()),
            Some("2021-02-03 04:05:00".to_owned()),
        ]]
    );
    server.stop().await;
}

/// A relation's OID is the same on every connection and after a restart, whatever catalog
/// query ran first, and every catalog that names it agrees (PostgreSQL keeps OIDs on disk;
/// clients cache them).
#[tokio::test]
async fn relation_and_schema_oids_are_stable_across_connections_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let oids_query = "SELECT c.relname, c.oid::bigint, n.oid::bigint, \
                             (SELECT count(*) FROM pg_attribute a WHERE a.attrelid = c.oid) \
                      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                      WHERE n.nspname = 's1' AND c.relkind = 'r' ORDER BY 1";
    let server = TestServer::start_in(&data, semsql::config::FileConfig::default()).await;
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE SCHEMA s1; CREATE TABLE s1.first (a int, b text); \
             CREATE TABLE s1.second (c int PRIMARY KEY)",
        )
        .await
        .unwrap();
    let before = rows(&client, oids_query).await;
    // A table made after a catalog query must not move the others.
    client
        .batch_execute("CREATE TABLE s1.another (d int)")
        .await
        .unwrap();
    let after_create = rows(&client, oids_query).await;
    assert_eq!(after_create.len(), 3, "{after_create:?}");
    for row in &before {
        assert!(
            after_create.contains(row),
            "{row:?} moved: {after_create:?}"
        );
    }
    for row in &after_create {
        let relation = row[1].as_deref().unwrap();
        let regclass = format!(
            "SELECT 's1.{}'::regclass::oid::bigint",
            row[0].as_deref().unwrap()
        );
        assert_eq!(
            rows(&client, &regclass).await,
            vec![vec![row[1].clone()]],
            "regclass agrees"
        );
        assert_ne!(row[3].as_deref(), Some("0"), "pg_attribute agrees: {row:?}");
        assert!(relation.parse::<i64>().unwrap() >= 16_384, "{row:?}");
    }
    assert_eq!(
        rows(&client, "SELECT oid::bigint FROM pg_namespace WHERE nspname IN ('pg_catalog', 'public') ORDER BY 1").await,
        vec![vec![Some("11".to_owned())], vec![Some("2200".to_owned())]]
    );
    // The primary key's catalog names the table by the same OID.
    let key_table = rows(
        &client,
        "SELECT conrelid::bigint FROM pg_constraint WHERE conname = 'second_pkey'",
    )
    .await;
    let second = after_create
        .iter()
        .find(|row| row[0].as_deref() == Some("second"))
        .unwrap();
    assert_eq!(key_table, vec![vec![second[1].clone()]]);
    let other = server.client().await;
    assert_eq!(rows(&other, oids_query).await, after_create);
    drop((client, other));
    server.stop().await;

    // After a restart, whose first catalog query reads another table first.
    let server = TestServer::start_in(&data, semsql::config::FileConfig::default()).await;
    let client = server.client().await;
    rows(&client, "SELECT 's1.another'::regclass::oid").await;
    assert_eq!(rows(&client, oids_query).await, after_create);
    server.stop().await;
}
