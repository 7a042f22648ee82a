//! Per-connection session state and transactions.

use crate::support::{connect, sqlstate, TestServer};

async fn show(client: &tokio_postgres::Client, name: &str) -> String {
    let messages = client.simple_query(&format!("SHOW {name}")).await.unwrap();
    messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .expect("SHOW returns a row")
}

#[tokio::test]
async fn settings_stay_with_their_connection() {
    let server = TestServer::start().await;
    let first = server.client().await;
    let second = server.client().await;
    let before = show(&second, "datafusion.execution.batch_size").await;
    first
        .batch_execute("SET datafusion.execution.batch_size = 123")
        .await
        .unwrap();
    assert_eq!(show(&first, "datafusion.execution.batch_size").await, "123");
    assert_eq!(
        show(&second, "datafusion.execution.batch_size").await,
        before
    );
    let third = server.client().await;
    assert_eq!(
        show(&third, "datafusion.execution.batch_size").await,
        before
    );
    server.stop().await;
}

#[tokio::test]
async fn identity_answers_as_postgres_15() {
    let server = TestServer::start().await;
    let client = connect(&format!(
        "host=127.0.0.1 port={} user=tester dbname=analytics",
        server.addr.port()
    ))
    .await;
    assert_eq!(show(&client, "server_version").await, "15.18");
    assert_eq!(show(&client, "server_version_num").await, "150018");
    let version: String = client
        .query_one("SELECT version()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        version.starts_with("PostgreSQL 15.18 (semsql "),
        "{version}"
    );
    let database: String = client
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(database, "analytics");
    server.stop().await;
}

async fn count(client: &tokio_postgres::Client, table: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn rollback_discards_and_commit_publishes() {
    let server = TestServer::start().await;
    let writer = server.client().await;
    let reader = server.client().await;
    writer
        .batch_execute("CREATE TABLE accounts (id INT, balance INT); INSERT INTO accounts VALUES (1, 100), (2, 50)")
        .await
        .unwrap();

    writer
        .batch_execute(
            "BEGIN; INSERT INTO accounts VALUES (3, 10); DELETE FROM accounts WHERE id = 1",
        )
        .await
        .unwrap();
    assert_eq!(
        count(&writer, "accounts").await,
        2,
        "the transaction sees its own writes"
    );
    assert_eq!(count(&reader, "accounts").await, 2);
    let ids: Vec<i32> = reader
        .query("SELECT id FROM accounts ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, vec![1, 2], "others do not see uncommitted writes");
    writer.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(count(&writer, "accounts").await, 2);
    let ids: Vec<i32> = writer
        .query("SELECT id FROM accounts ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, vec![1, 2], "rolled-back writes are gone");

    writer
        .batch_execute("BEGIN; UPDATE accounts SET balance = balance - 30 WHERE id = 1; UPDATE accounts SET balance = balance + 30 WHERE id = 2; COMMIT")
        .await
        .unwrap();
    let balances: Vec<(i32, i32)> = reader
        .query("SELECT id, balance FROM accounts ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(balances, vec![(1, 70), (2, 80)]);
    server.stop().await;
}

#[tokio::test]
async fn an_error_aborts_the_transaction_until_rollback() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE t (a INT); BEGIN; INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    assert!(client.batch_execute("SELECT * FROM missing").await.is_err());
    let err = client.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(sqlstate(&err), "25P02");
    client.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(count(&client, "t").await, 0);
    server.stop().await;
}

#[tokio::test]
async fn conflicting_rewrites_fail_with_serialization_failure() {
    let server = TestServer::start().await;
    let first = server.client().await;
    let second = server.client().await;
    first
        .batch_execute("CREATE TABLE c (a INT); INSERT INTO c VALUES (1), (2)")
        .await
        .unwrap();
    first
        .batch_execute("BEGIN; DELETE FROM c WHERE a = 1")
        .await
        .unwrap();
    second
        .batch_execute("DELETE FROM c WHERE a = 2")
        .await
        .unwrap();
    let err = first.batch_execute("COMMIT").await.unwrap_err();
    assert_eq!(sqlstate(&err), "40001");
    first.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(count(&first, "c").await, 1);
    server.stop().await;
}
