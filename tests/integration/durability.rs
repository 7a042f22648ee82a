//! Committed data survives restarts and `kill -9`; an interrupted write leaves all or nothing.

use std::time::Duration;

use semsql::config::FileConfig;

use crate::support::{connect, ServerProcess, TestServer};

#[tokio::test]
async fn tables_schemas_and_changes_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("prices.csv");
    std::fs::write(&csv, "item,price\nwidget,2.5\ngadget,4\n").unwrap();
    // A column list and OPTIONS other than the defaults must be kept as written.
    let piped = dir.path().join("piped.tbl");
    std::fs::write(&piped, "widget|2.5\ngadget|4\n").unwrap();
    let server = TestServer::start_in(&dir.path().join("data"), FileConfig::default()).await;
    let client = server.client().await;
    client
        .batch_execute(&format!(
            "CREATE EXTERNAL TABLE prices STORED AS CSV LOCATION '{}' OPTIONS ('format.has_header' 'true')",
            csv.display()
        ))
        .await
        .unwrap();
    client
        .batch_execute(&format!(
            "CREATE EXTERNAL TABLE piped (item VARCHAR, price DOUBLE) STORED AS CSV LOCATION '{}' \
             OPTIONS ('format.delimiter' '|', 'format.has_header' 'false')",
            piped.display()
        ))
        .await
        .unwrap();
    client
        .batch_execute(
            "CREATE SCHEMA shop;
             CREATE TABLE shop.orders (id INT NOT NULL, item TEXT DEFAULT 'widget', qty INT);
             INSERT INTO shop.orders (id, qty) VALUES (1, 5), (2, 7), (3, 9);
             UPDATE shop.orders SET qty = 70 WHERE id = 2;
             DELETE FROM shop.orders WHERE id = 3;
             CREATE TABLE totals AS SELECT sum(qty) AS total FROM shop.orders;
             CREATE TABLE dropped (x INT);
             DROP TABLE dropped;
             CREATE VIEW shop.big_orders AS SELECT id FROM shop.orders WHERE qty > 6;
             CREATE VIEW gone AS SELECT 1 AS one;
             DROP VIEW gone;",
        )
        .await
        .unwrap();
    drop(client);
    server.stop().await;

    let server = TestServer::start_in(&dir.path().join("data"), FileConfig::default()).await;
    let client = server.client().await;
    let rows: Vec<(i32, String, i32)> = client
        .query("SELECT id, item, qty FROM shop.orders ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        vec![(1, "widget".into(), 5), (2, "widget".into(), 70)]
    );
    let total: i64 = client
        .query_one("SELECT total FROM totals", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(total, 75);
    assert!(client.query("SELECT * FROM dropped", &[]).await.is_err());
    assert!(client.query("SELECT * FROM gone", &[]).await.is_err());
    let big: Vec<i32> = client
        .query("SELECT id FROM shop.big_orders", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(big, vec![2]);
    let price: f64 = client
        .query_one("SELECT price FROM prices WHERE item = 'widget'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(price, 2.5);
    let piped: Vec<(String, f64)> = client
        .query("SELECT item, price FROM piped ORDER BY item", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        piped,
        vec![("gadget".to_owned(), 4.0), ("widget".to_owned(), 2.5)]
    );
    // Defaults are restored too.
    client
        .execute("INSERT INTO shop.orders (id, qty) VALUES (4, 1)", &[])
        .await
        .unwrap();
    let item: String = client
        .query_one("SELECT item FROM shop.orders WHERE id = 4", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(item, "widget");
    server.stop().await;
}

/// Kills the server with SIGKILL while a large INSERT is being written, again and again at
/// different moments; after each restart the table holds every row of a statement or none.
#[tokio::test]
async fn kill_9_during_insert_leaves_all_or_nothing() {
    const BATCH: i64 = 400_000;
    let dir = tempfile::tempdir().unwrap();
    {
        let process = ServerProcess::start(dir.path()).await;
        let client = connect(&process.connection_string()).await;
        client
            .batch_execute("CREATE TABLE big (id BIGINT, payload TEXT)")
            .await
            .unwrap();
        process.kill();
    }
    let mut committed = 0i64;
    let mut interrupted = 0;
    for attempt in 0..6u64 {
        let process = ServerProcess::start(dir.path()).await;
        let client = connect(&process.connection_string()).await;
        let count: i64 = client
            .query_one("SELECT count(*) FROM big", &[])
            .await
            .unwrap()
            .get(0);
        assert!(
            count == committed || count == committed + BATCH,
            "after kill {attempt}: {count} rows, expected {committed} or {}",
            committed + BATCH
        );
        committed = count;
        let insert = format!(
            "INSERT INTO big SELECT value, repeat('x', 20) || CAST(value AS TEXT) FROM generate_series(1, {BATCH})"
        );
        let writer = tokio::spawn(async move { client.batch_execute(&insert).await });
        tokio::time::sleep(Duration::from_millis(50 + attempt * 150)).await;
        process.kill();
        if writer.await.unwrap().is_err() {
            interrupted += 1;
        }
    }
    let process = ServerProcess::start(dir.path()).await;
    let client = connect(&process.connection_string()).await;
    let count: i64 = client
        .query_one("SELECT count(*) FROM big", &[])
        .await
        .unwrap()
        .get(0);
    assert!(count == committed || count == committed + BATCH);
    assert_eq!(count % BATCH, 0);
    assert!(
        interrupted > 0,
        "no kill landed during a write; the test proved nothing"
    );
    let distinct: i64 = client
        .query_one("SELECT count(DISTINCT id) FROM big", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(distinct, count.min(BATCH));
    process.kill();
}

/// The types whose storage or defaults semsql handles itself come back after a restart:
/// intervals (a struct in the data files), char(n), uuid with a gen_random_uuid() default.
#[tokio::test]
async fn intervals_uuids_and_char_columns_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(&dir.path().join("data"), FileConfig::default()).await;
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE kept (id uuid DEFAULT gen_random_uuid(), c char(4), i interval, n int);
             INSERT INTO kept (c, i, n) VALUES ('ab', interval '1 year 2 mons 3 days 04:05:06.000007', 1), (NULL, NULL, 2);",
        )
        .await
        .unwrap();
    drop(client);
    server.stop().await;

    let server = TestServer::start_in(&dir.path().join("data"), FileConfig::default()).await;
    let client = server.client().await;
    client
        .batch_execute("INSERT INTO kept (c, n) VALUES ('xyz', 3)")
        .await
        .unwrap();
    let rows: Vec<(Option<String>, Option<String>, i32)> = client
        .query("SELECT c, i::text, n FROM kept ORDER BY n", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    assert_eq!(
        rows,
        vec![
            // char(4) comes back padded, as PostgreSQL sends it.
            (
                Some("ab  ".into()),
                Some("1 year 2 mons 3 days 04:05:06.000007".into()),
                1
            ),
            (None, None, 2),
            (Some("xyz ".into()), None, 3),
        ]
    );
    let distinct_ids: i64 = client
        .query_one(
            "SELECT count(DISTINCT id) FROM kept WHERE id IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(distinct_ids, 3);
}
