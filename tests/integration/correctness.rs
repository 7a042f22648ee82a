//! Wrong or lost data that a review found (issue 15, item 7).

use crate::support::{rows, sqlstate, TestServer};
use semsql::config::FileConfig;
use semsql::fake_llm::{Behaviour, FakeLlm, ScriptedAnswer};

/// A transaction that wrote to a table dropped and made again meanwhile must not commit its
/// rows (or the old table's files) into the new table: 40001, and the folder still opens.
#[tokio::test]
async fn a_commit_into_a_table_made_again_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), FileConfig::default()).await;
    let first = server.client().await;
    let second = server.client().await;
    first
        .batch_execute("CREATE TABLE t (a int); INSERT INTO t VALUES (0)")
        .await
        .unwrap();
    first
        .batch_execute("BEGIN; INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    second
        .batch_execute("DROP TABLE t; CREATE TABLE t (a int); INSERT INTO t VALUES (2)")
        .await
        .unwrap();
    let err = first.batch_execute("COMMIT").await.unwrap_err();
    assert_eq!(sqlstate(&err), "40001", "{err:?}");
    assert_eq!(
        rows(&second, "SELECT a FROM t").await,
        [[Some("2".to_owned())]]
    );
    server.stop().await;
    let server = TestServer::start_in(dir.path(), FileConfig::default()).await;
    let client = server.client().await;
    assert_eq!(
        rows(&client, "SELECT a FROM t").await,
        [[Some("2".to_owned())]]
    );
    server.stop().await;
}

/// SET is evaluated on the matched rows only, and UPDATE/DELETE arithmetic is checked.
#[tokio::test]
async fn update_computes_only_matched_rows_and_checks_overflow() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE u (d int, r int); INSERT INTO u VALUES (0, 0), (5, 0);
             CREATE TABLE o (x bigint); INSERT INTO o VALUES (9223372036854775807);",
        )
        .await
        .unwrap();
    let updated = client
        .execute("UPDATE u SET r = 100 / d WHERE d <> 0", &[])
        .await
        .unwrap();
    assert_eq!(updated, 1);
    assert_eq!(
        rows(&client, "SELECT d, r FROM u ORDER BY d").await,
        [
            [Some("0".to_owned()), Some("0".to_owned())],
            [Some("5".to_owned()), Some("20".to_owned())]
        ]
    );
    for statement in [
        "UPDATE o SET x = x + 1",
        "UPDATE o SET x = x * 2 WHERE x > 0",
        "DELETE FROM o WHERE x + 1 > 0",
    ] {
        let err = client.batch_execute(statement).await.unwrap_err();
        assert_eq!(sqlstate(&err), "22003", "{statement}: {err:?}");
    }
    assert_eq!(
        rows(&client, "SELECT x FROM o").await,
        [[Some("9223372036854775807".to_owned())]]
    );
    server.stop().await;
}

async fn fake_model(client: &tokio_postgres::Client, fake: &FakeLlm, options: &str) {
    let options = if options.contains("rows_per_request") {
        options.to_owned()
    } else {
        format!(", rows_per_request = 16{options}")
    };
    client
        .batch_execute(&format!(
            "CREATE MODEL m WITH (base_url = '{}', model = 'fake-1', retry_base_ms = 10{options});
             SET semsql.model = 'm'; SET semsql.cache = 'off'",
            fake.base_url()
        ))
        .await
        .unwrap();
}

/// `semsql.max_llm_requests` is checked and counted in one step: requests sent concurrently
/// cannot all pass a budget that has room for fewer of them. (The old check and count had no
/// await between them, so within one task they could not interleave; plan nodes on other
/// threads could. This test holds the property; it did not fail before the change.)
#[tokio::test]
async fn the_request_budget_holds_under_concurrency() {
    let fake = FakeLlm::start(
        "127.0.0.1:0",
        Behaviour {
            latency_ms: 200,
            ..Behaviour::default()
        },
    )
    .await
    .unwrap();
    let server = TestServer::start().await;
    let client = server.client().await;
    fake_model(&client, &fake, ", rows_per_request = 1, concurrency = 16").await;
    client
        .batch_execute(
            "CREATE TABLE items AS SELECT 'item ' || CAST(value AS TEXT) AS body FROM generate_series(1, 24);
             SET semsql.max_llm_requests = 3",
        )
        .await
        .unwrap();
    let err = client
        .batch_execute("SELECT llm_map('Repeat: {0}', body) FROM items")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "53400", "{err:?}");
    let sent = fake.stats().chat_requests;
    assert!(sent <= 3, "{sent} requests passed a budget of 3");
    server.stop().await;
}

/// `llm_agg` under `semsql.on_llm_error = 'null'`: a group one of whose parts cannot be
/// summarised answers NULL, not an answer from the other parts.
#[tokio::test]
async fn llm_agg_answers_null_when_a_part_fails() {
    let fake = FakeLlm::start(
        "127.0.0.1:0",
        Behaviour {
            answers: vec![ScriptedAnswer {
                when: vec!["Do not answer yet".into(), "POISON".into()],
                answer: "this is not the JSON that was asked for".into(),
            }],
            ..Behaviour::default()
        },
    )
    .await
    .unwrap();
    let server = TestServer::start().await;
    let client = server.client().await;
    fake_model(&client, &fake, ", rows_per_request = 1").await;
    // Three values of 5,000 characters: three parts, each summarised on its own.
    client
        .batch_execute(
            "CREATE TABLE notes (g text, body text);
             INSERT INTO notes VALUES
               ('a', repeat('fine ', 1000)), ('a', repeat('POISON ', 715)), ('a', repeat('good ', 1000)),
               ('b', 'short and sweet');
             SET semsql.on_llm_error = 'null'",
        )
        .await
        .unwrap();
    let answers = rows(
        &client,
        "SELECT g, llm_agg('Summarise: {0}', body) FROM notes GROUP BY g ORDER BY g",
    )
    .await;
    assert_eq!(answers.len(), 2);
    assert_eq!(answers[0][1], None, "group a: {:?}", answers[0]);
    assert!(answers[1][1].is_some(), "group b: {:?}", answers[1]);
    server.stop().await;
}
