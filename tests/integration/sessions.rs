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

/// A DataFusion option that does not exist, or a value it cannot take, is an error: both were
/// answered `SET` and ignored. `RESET` of one works in the extended protocol too.
#[tokio::test]
async fn datafusion_options_refuse_what_they_cannot_take() {
    let server = TestServer::start().await;
    let client = server.client().await;
    for (sql, code) in [
        ("SET datafusion.execution.batch_size = abc", "22023"),
        ("SET datafusion.execution.batch_size TO -1", "22023"),
        ("SET datafusion.execution.no_such_option = 1", "42704"),
    ] {
        let err = client.batch_execute(sql).await.unwrap_err();
        assert_eq!(sqlstate(&err), code, "{sql}: {err:?}");
    }
    let default = show(&client, "datafusion.execution.batch_size").await;
    client
        .batch_execute(
            "SET datafusion.execution.batch_size = 100; \
             SET datafusion.optimizer.prefer_hash_join = off",
        )
        .await
        .unwrap();
    assert_eq!(
        show(&client, "datafusion.execution.batch_size").await,
        "100"
    );
    assert_eq!(
        show(&client, "datafusion.optimizer.prefer_hash_join").await,
        "false"
    );
    // tokio-postgres's execute sends Parse, Bind, Execute.
    client
        .execute("RESET datafusion.execution.batch_size", &[])
        .await
        .unwrap();
    assert_eq!(
        show(&client, "datafusion.execution.batch_size").await,
        default
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

async fn ids(client: &tokio_postgres::Client) -> Vec<i32> {
    client
        .query("SELECT id FROM sp ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Savepoints as psycopg 3 and SQLAlchemy's nested transactions use them: in the simple
/// protocol (`batch_execute`) and the extended one (`execute`), including recovery from an
/// error inside the block with `ROLLBACK TO`.
#[tokio::test]
async fn savepoints_roll_back_part_of_a_transaction() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE sp (id INT)")
        .await
        .unwrap();
    client
        .batch_execute(
            "BEGIN; INSERT INTO sp VALUES (1); SAVEPOINT a; INSERT INTO sp VALUES (2); \
             SAVEPOINT \"B\"; INSERT INTO sp VALUES (3); ROLLBACK TO SAVEPOINT \"B\"",
        )
        .await
        .unwrap();
    assert_eq!(ids(&client).await, [1, 2]);
    client.execute("ROLLBACK TO a", &[]).await.unwrap();
    assert_eq!(ids(&client).await, [1]);
    // The savepoint stays open after ROLLBACK TO; RELEASE keeps what was done since.
    client
        .execute("INSERT INTO sp VALUES (4)", &[])
        .await
        .unwrap();
    client.execute("RELEASE SAVEPOINT a", &[]).await.unwrap();
    let err = client.execute("ROLLBACK TO a", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&err), "3B001");
    assert_eq!(
        err.as_db_error().unwrap().message(),
        "savepoint \"a\" does not exist"
    );
    // That error aborted the block; only ROLLBACK (TO) gets out of it.
    client.execute("SAVEPOINT c", &[]).await.unwrap_err();
    client.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(ids(&client).await, Vec::<i32>::new());

    // An error after a savepoint: ROLLBACK TO brings the block back, earlier work kept.
    client
        .batch_execute("BEGIN; INSERT INTO sp VALUES (10); SAVEPOINT s")
        .await
        .unwrap();
    client
        .execute("INSERT INTO sp VALUES (11)", &[])
        .await
        .unwrap();
    let err = client.execute("SELECT 1/0", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&err), "22012");
    let err = client.query("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&err), "25P02");
    client
        .execute("ROLLBACK TO SAVEPOINT s", &[])
        .await
        .unwrap();
    client
        .execute("INSERT INTO sp VALUES (12)", &[])
        .await
        .unwrap();
    client.batch_execute("COMMIT").await.unwrap();
    assert_eq!(ids(&client).await, [10, 12]);

    // Also from the simple protocol in a failed block.
    client
        .batch_execute("BEGIN; SAVEPOINT s1; INSERT INTO sp VALUES (20)")
        .await
        .unwrap();
    client
        .batch_execute("SELECT * FROM missing")
        .await
        .unwrap_err();
    client.batch_execute("ROLLBACK TO s1").await.unwrap();
    client
        .batch_execute("INSERT INTO sp VALUES (21); COMMIT")
        .await
        .unwrap();
    assert_eq!(ids(&client).await, [10, 12, 21]);

    let err = client.batch_execute("SAVEPOINT outside").await.unwrap_err();
    assert_eq!(sqlstate(&err), "25P01");
    server.stop().await;
}

/// Advisory locks are held per connection, wait for each other, and go with the connection;
/// `RESET ALL` brings the session's options back.
#[tokio::test]
async fn advisory_locks_and_reset_all() {
    let server = TestServer::start().await;
    let first = server.client().await;
    let second = server.client().await;
    let try_lock = "SELECT pg_try_advisory_lock(42)";
    let get = |row: tokio_postgres::Row| row.get::<_, bool>(0);
    assert!(get(first.query_one(try_lock, &[]).await.unwrap()));
    assert!(!get(second.query_one(try_lock, &[]).await.unwrap()));
    // A waiting pg_advisory_lock returns once the holder lets go.
    let waiter = tokio::spawn(async move {
        second
            .batch_execute("SELECT pg_advisory_lock(42)")
            .await
            .unwrap();
        second
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!waiter.is_finished(), "waits while the lock is held");
    first
        .batch_execute("SELECT pg_advisory_unlock_all()")
        .await
        .unwrap();
    let second = tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
        .await
        .expect("the waiter gets the lock")
        .unwrap();
    assert!(!get(first.query_one(try_lock, &[]).await.unwrap()));
    drop(second);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        get(first.query_one(try_lock, &[]).await.unwrap()),
        "released when the holder's connection closed"
    );

    first
        .batch_execute("SET datafusion.execution.batch_size = 17; RESET ALL")
        .await
        .unwrap();
    assert_eq!(
        show(&first, "datafusion.execution.batch_size").await,
        show(&server.client().await, "datafusion.execution.batch_size").await
    );
    server.stop().await;
}
