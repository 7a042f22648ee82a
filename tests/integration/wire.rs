//! The wire protocol with tokio-postgres: simple and extended queries, typed parameters, binary
//! results, portals, errors and their SQLSTATEs, cancellation.

use std::time::Duration;

use tokio_postgres::types::Type;
use tokio_postgres::SimpleQueryMessage;

use crate::support::{sqlstate, TestServer};

#[tokio::test]
async fn simple_and_extended_queries_with_typed_parameters() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE items (id INT NOT NULL, name TEXT, price DOUBLE, active BOOLEAN, added DATE);
             INSERT INTO items VALUES (1, 'lamp', 19.5, true, DATE '2025-01-02'),
                                      (2, 'chair', 45.0, false, DATE '2025-02-03'),
                                      (3, 'desk', 120.0, true, NULL);",
        )
        .await
        .unwrap();

    // Extended protocol: parameters typed from the plan, results in binary.
    let statement = client
        .prepare("SELECT id, name, price FROM items WHERE price > $1 AND active = $2 ORDER BY id")
        .await
        .unwrap();
    assert_eq!(statement.params(), &[Type::FLOAT8, Type::BOOL]);
    assert_eq!(statement.columns()[0].type_(), &Type::INT4);
    assert_eq!(statement.columns()[1].type_(), &Type::TEXT);
    let rows = client.query(&statement, &[&10.0f64, &true]).await.unwrap();
    let found: Vec<(i32, String, f64)> = rows
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    assert_eq!(
        found,
        vec![(1, "lamp".into(), 19.5), (3, "desk".into(), 120.0)]
    );

    // The same prepared statement again, with other values.
    let rows = client.query(&statement, &[&40.0f64, &false]).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, i32>(0), 2);

    // Simple protocol: text results.
    let messages = client
        .simple_query("SELECT name FROM items WHERE id = 2")
        .await
        .unwrap();
    let texts: Vec<String> = messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .collect();
    assert_eq!(texts, vec!["chair"]);

    // Parameters in INSERT, then read back NULL and dates in binary.
    client
        .execute(
            "INSERT INTO items VALUES ($1, $2, $3, $4, NULL)",
            &[&4i32, &"rug", &5.25f64, &false],
        )
        .await
        .unwrap();
    let row = client
        .query_one("SELECT name, added FROM items WHERE id = $1", &[&4i32])
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>(0), "rug");
    assert_eq!(row.get::<_, Option<chrono::NaiveDate>>(1), None);
    server.stop().await;
}

#[tokio::test]
async fn column_names_match_postgres() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE named (a int, b text); INSERT INTO named VALUES (1, 'x')")
        .await
        .unwrap();
    let sql = "SELECT 1, count(*), a, named.b, 1::int, a::text, 2 AS x, 3 AS x, a FROM named GROUP BY a, named.b";
    // Both protocols: the simple one (RowDescription of the result) and the extended one
    // (Describe of the prepared statement).
    let prepared = client.prepare(sql).await.unwrap();
    let described: Vec<&str> = prepared.columns().iter().map(|c| c.name()).collect();
    let expected = ["?column?", "count", "a", "b", "int4", "a", "x", "x", "a"];
    assert_eq!(described, expected);
    let rows = client.simple_query(sql).await.unwrap();
    let Some(tokio_postgres::SimpleQueryMessage::RowDescription(columns)) = rows.first() else {
        panic!("no row description: {rows:?}");
    };
    let simple: Vec<&str> = columns.iter().map(|c| c.name()).collect();
    assert_eq!(simple, expected);
    let row = client.query_one(&prepared, &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(6), 2);
    assert_eq!(row.get::<_, i32>(7), 3);
    server.stop().await;
}

#[tokio::test]
async fn result_types_match_postgres() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let row = client
        .query_one(
            "SELECT 1 AS i4, CAST(1 AS BIGINT) AS i8, CAST(1 AS SMALLINT) AS i2, 1.5 AS f8, \
             CAST(1.5 AS REAL) AS f4, 'x' AS t, true AS b, DATE '2024-02-29' AS d, \
             TIMESTAMP '2024-02-29 12:34:56' AS ts, CAST(12.34 AS DECIMAL(10, 2)) AS n, \
             [1, 2, 3] AS arr",
            &[],
        )
        .await
        .unwrap();
    let types: Vec<&Type> = row.columns().iter().map(|c| c.type_()).collect();
    assert_eq!(
        types,
        vec![
            &Type::INT4,
            &Type::INT8,
            &Type::INT2,
            &Type::FLOAT8,
            &Type::FLOAT4,
            &Type::TEXT,
            &Type::BOOL,
            &Type::DATE,
            &Type::TIMESTAMP,
            &Type::NUMERIC,
            &Type::INT8_ARRAY,
        ]
    );
    assert_eq!(row.get::<_, i32>(0), 1);
    assert_eq!(row.get::<_, i64>(1), 1);
    assert_eq!(row.get::<_, i16>(2), 1);
    assert_eq!(row.get::<_, f32>(4), 1.5);
    assert_eq!(
        row.get::<_, chrono::NaiveDateTime>(8).to_string(),
        "2024-02-29 12:34:56"
    );
    assert_eq!(row.get::<_, Vec<i64>>(10), vec![1, 2, 3]);
    server.stop().await;
}

#[tokio::test]
async fn portal_row_limits_fetch_in_pieces() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    client
        .batch_execute("CREATE TABLE numbers AS SELECT value AS n FROM generate_series(1, 1000)")
        .await
        .unwrap();
    let transaction = client.transaction().await.unwrap();
    let statement = transaction
        .prepare("SELECT n FROM numbers ORDER BY n")
        .await
        .unwrap();
    let portal = transaction.bind(&statement, &[]).await.unwrap();
    let mut seen = Vec::new();
    loop {
        let rows = transaction.query_portal(&portal, 300).await.unwrap();
        if rows.is_empty() {
            break;
        }
        assert!(rows.len() <= 300);
        seen.extend(rows.iter().map(|row| row.get::<_, i64>(0)));
    }
    transaction.commit().await.unwrap();
    assert_eq!(seen, (1..=1000).collect::<Vec<i64>>());
    server.stop().await;
}

#[tokio::test]
async fn errors_carry_their_sqlstate_and_the_connection_survives() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE t (a INT, b TEXT)")
        .await
        .unwrap();
    let cases = [
        ("SELEC 1", "42601"),
        ("SELECT * FROM no_such_table", "42P01"),
        ("SELECT no_such_column FROM t", "42703"),
        ("SELECT no_such_function(1)", "42883"),
        ("SELECT 1 / 0", "22012"),
        ("SELECT CAST('abc' AS INT)", "22P02"),
        ("CREATE TABLE t (a INT)", "42P07"),
    ];
    for (sql, expected) in cases {
        let err = client.simple_query(sql).await.unwrap_err();
        assert_eq!(sqlstate(&err), expected, "{sql}: {err:?}");
        // The extended protocol reports the same code.
        let err = client.query(sql, &[]).await.unwrap_err();
        assert_eq!(sqlstate(&err), expected, "{sql} (extended): {err:?}");
    }
    // PostgreSQL's words, with the argument types as PostgreSQL names them, in both protocols.
    for (sql, message) in [
        (
            "SELECT no_such_function(1, 'x', 2.5, a) FROM t",
            "function no_such_function(integer, unknown, numeric, integer) does not exist",
        ),
        (
            "SELECT no_such_function()",
            "function no_such_function() does not exist",
        ),
        (
            "SELECT * FROM t WHERE frobnicate(b, CAST(1 AS BIGINT))",
            "function frobnicate(text, bigint) does not exist",
        ),
    ] {
        for err in [
            client.simple_query(sql).await.unwrap_err(),
            client.query(sql, &[]).await.unwrap_err(),
        ] {
            let db = err.as_db_error().expect("a server error");
            assert_eq!(db.code().code(), "42883", "{sql}: {err:?}");
            assert_eq!(db.message(), message, "{sql}");
            assert!(db
                .hint()
                .is_some_and(|hint| hint.contains("explicit type casts")));
        }
    }
    let row = client.query_one("SELECT 42", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    server.stop().await;
}

#[tokio::test]
async fn wrong_parameters_are_refused_cleanly() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let statement = client.prepare("SELECT $1::BIGINT + 1").await.unwrap();
    // tokio-postgres checks parameter counts itself; bad_input.rs sends raw Binds.
    let err = client
        .query("SELECT CAST(CAST($1 AS TEXT) AS INT)", &[&"not a number"])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "22P02", "{err:?}");
    let row = client.query_one(&statement, &[&1i64]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 2);
    server.stop().await;
}

#[tokio::test]
async fn cancel_request_stops_a_running_query() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let cancel = client.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        cancel.cancel_query(tokio_postgres::NoTls).await
    });
    let started = std::time::Instant::now();
    let err = client
        .simple_query("SELECT sum(value % 7) FROM generate_series(1, 10000000000)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "57014", "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(60));
    canceller.await.unwrap().unwrap();
    let row = client.query_one("SELECT 1", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 1);
    server.stop().await;
}

#[tokio::test]
async fn more_types_in_row_descriptions_and_values() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let row = client
        .query_one(
            "SELECT decode('0102ff', 'hex') AS b, TIME '13:14:15' AS t, \
             CAST('2024-05-06 07:08:09+00' AS TIMESTAMPTZ) AS tz, INTERVAL '1 day 2 hours' AS i, \
             ['a', 'b'] AS texts",
            &[],
        )
        .await
        .unwrap();
    let types: Vec<&Type> = row.columns().iter().map(|c| c.type_()).collect();
    assert_eq!(
        types,
        vec![
            &Type::BYTEA,
            &Type::TIME,
            &Type::TIMESTAMPTZ,
            &Type::INTERVAL,
            &Type::TEXT_ARRAY
        ]
    );
    assert_eq!(row.get::<_, Vec<u8>>(0), vec![1u8, 2, 255]);
    assert_eq!(row.get::<_, chrono::NaiveTime>(1).to_string(), "13:14:15");
    assert_eq!(
        row.get::<_, chrono::DateTime<chrono::Utc>>(2).to_rfc3339(),
        "2024-05-06T07:08:09+00:00"
    );
    assert_eq!(row.get::<_, Vec<String>>(4), vec!["a", "b"]);
    server.stop().await;
}

#[tokio::test]
async fn pipelined_queries_on_one_connection() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let statement = client.prepare("SELECT $1::BIGINT * 10").await.unwrap();
    // tokio-postgres pipelines concurrent requests on one connection.
    let results = futures::future::join_all((0..50i64).map(|i| {
        let client = &client;
        let statement = &statement;
        async move {
            client
                .query_one(statement, &[&i])
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    }))
    .await;
    assert_eq!(results, (0..50i64).map(|i| i * 10).collect::<Vec<_>>());
    server.stop().await;
}

#[tokio::test]
async fn statement_timeout_stops_a_running_query() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute("SET statement_timeout = '300ms'")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let err = client
        .simple_query("SELECT sum(value % 7) FROM generate_series(1, 10000000000)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "57014", "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(60));
    client
        .batch_execute("SET statement_timeout = 0")
        .await
        .unwrap();
    let row = client.query_one("SELECT 7", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 7);
    server.stop().await;
}
