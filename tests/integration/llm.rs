//! The LM runtime end to end: a real semsql server, a real Postgres client, and the fake
//! OpenAI-compatible server over real HTTP on 127.0.0.1.

use std::time::{Duration, Instant};

use semsql::config::FileConfig;
use semsql::fake_llm::{Behaviour, FakeLlm, Fault};
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::support::{connect_with_notices, sqlstate, TestServer};

async fn fake(behaviour: Behaviour) -> FakeLlm {
    FakeLlm::start("127.0.0.1:0", behaviour)
        .await
        .expect("fake LM starts")
}

/// Creates model `name` on `fake` with the given extra options and makes it the session's.
async fn use_model(client: &Client, fake: &FakeLlm, name: &str, extra: &str) {
    // A fixed batch size unless the test says otherwise: 'auto' would add calibration
    // requests to the counts these tests check (the calibration has its own test).
    let extra = match extra {
        "" => ", rows_per_request = 16".to_owned(),
        extra if extra.contains("rows_per_request") => format!(", {extra}"),
        extra => format!(", rows_per_request = 16, {extra}"),
    };
    client
        .batch_execute(&format!(
            "CREATE MODEL {name} WITH (base_url = '{}', model = 'fake-1', retry_base_ms = 20{extra}); \
             SET semsql.model = '{name}'",
            fake.base_url()
        ))
        .await
        .expect("model created");
}

/// A table `items(id int, body text)` holding `bodies` in order.
async fn items(client: &Client, bodies: &[String]) {
    client
        .batch_execute("CREATE TABLE items (id INT, body TEXT)")
        .await
        .unwrap();
    for chunk in bodies.chunks(500).enumerate() {
        let (chunk_index, chunk) = chunk;
        let values: Vec<String> = chunk
            .iter()
            .enumerate()
            .map(|(i, body)| {
                format!(
                    "({}, '{}')",
                    chunk_index * 500 + i,
                    body.replace('\'', "''")
                )
            })
            .collect();
        client
            .batch_execute(&format!("INSERT INTO items VALUES {}", values.join(", ")))
            .await
            .unwrap();
    }
}

async fn texts(client: &Client, sql: &str) -> Vec<Option<String>> {
    client
        .query(sql, &[])
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err:?}"))
        .iter()
        .map(|row| row.get::<_, Option<String>>(0))
        .collect()
}

/// `rows_per_request = 'auto'` (the default): the first call of a function on a model asks a
/// sample alone and in batches and keeps the largest batch size that answers as one row at a
/// time does; `SHOW MODELS` and `EXPLAIN` show it, and later calls use it. The fake here gets
/// every answer after the 4th item of a request wrong.
#[tokio::test]
async fn auto_batch_size_is_calibrated_per_function() {
    let fake = fake(Behaviour::default()).await;
    let server = TestServer::start().await;
    let (client, _notices) = connect_with_notices(&server.connection_string()).await;
    client
        .batch_execute(&format!(
            "CREATE MODEL small WITH (base_url = '{}', model = 'fake-1', retry_base_ms = 20); \
             SET semsql.model = 'small'; SET semsql.cache = 'off'",
            fake.base_url()
        ))
        .await
        .unwrap();
    let bodies: Vec<String> = (0..40)
        .map(|i| format!("parcel {i} {}", if i % 3 == 0 { "late" } else { "fine" }))
        .collect();
    items(&client, &bodies).await;
    let explain = |sql: String| {
        let client = &client;
        async move {
            let rows = client.query(&format!("EXPLAIN {sql}"), &[]).await.unwrap();
            rows.iter()
                .map(|row| row.get::<_, String>(1))
                .collect::<String>()
        }
    };
    let filter = "SELECT id FROM items \
                  WHERE llm_filter('FAKE:batch-limit=4 Is it ''late''? {0}', body) ORDER BY id";
    let plan = explain(filter.to_owned()).await;
    assert!(
        plan.contains("rows/request auto, calibrated on first use"),
        "{plan}"
    );

    let rows = client.query(filter, &[]).await.unwrap();
    let ids: Vec<i32> = rows.iter().map(|row| row.get(0)).collect();
    let expected: Vec<i32> = (0..40).filter(|i| i % 3 == 0).collect();
    assert_eq!(
        ids, expected,
        "answers are right although batches of 16 and 8 were not"
    );
    // 16 rows alone, the same 16 in batches of 16, 8 and 4 (1 + 2 + 4 requests), then the
    // other 24 rows in batches of 4.
    assert_eq!(fake.stats().chat_requests, 16 + 1 + 2 + 4 + 24 / 4);
    let shown = texts(&client, "SELECT calibration FROM semsql.models").await;
    let shown = shown[0].clone().unwrap_or_default();
    assert!(shown.starts_with("llm_filter: 4 (agreement "), "{shown}");
    assert!(shown.contains("1.00 at 4"), "{shown}");
    assert!(explain(filter.to_owned())
        .await
        .contains("4 rows/request, calibrated"));

    // The calibration is kept: the same function asks in fours at once.
    fake.reset();
    client.query(filter, &[]).await.unwrap();
    assert_eq!(fake.stats().chat_requests, 40 / 4);
    // Another function calibrates on its own, and this model answers it well at 16.
    fake.reset();
    let mapped = texts(
        &client,
        "SELECT llm_map('Repeat {0}', body) FROM items ORDER BY id",
    )
    .await;
    assert_eq!(mapped[1].as_deref(), Some("PARCEL 1 FINE"));
    assert_eq!(fake.stats().chat_requests, 16 + 1 + 24_u64.div_ceil(16));
    // Fewer rows than a sample: one row per request, nothing calibrated.
    fake.reset();
    client
        .query(
            "SELECT llm_score('How ''late''? {0}', body) FROM items WHERE id < 3",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(fake.stats().chat_requests, 3);
    let shown = texts(&client, "SELECT calibration FROM semsql.models").await;
    assert!(!shown[0].clone().unwrap_or_default().contains("llm_score"));
}

#[tokio::test]
async fn batches_dedup_and_cache_keep_row_order() {
    let fake = fake(Behaviour::default()).await;
    let server = TestServer::start().await;
    let (client, notices) = connect_with_notices(&server.connection_string()).await;
    use_model(&client, &fake, "fake", "rows_per_request = 16").await;
    // 100 rows, 80 distinct: every fifth row repeats the one before it.
    let bodies: Vec<String> = (0..100)
        .map(|i| {
            let n = if i % 5 == 4 { i - 1 } else { i };
            format!("item {n} naïve ☕")
        })
        .collect();
    items(&client, &bodies).await;

    let sql = "SELECT llm_map('Repeat {0}', body) FROM items ORDER BY id";
    let answers = texts(&client, sql).await;
    let expected: Vec<Option<String>> = bodies.iter().map(|b| Some(b.to_uppercase())).collect();
    assert_eq!(answers, expected);
    let first = fake.stats();
    assert_eq!(first.rows, 80, "each distinct row is sent once");
    assert!(
        first.chat_requests <= 80_u64.div_ceil(16) + 1,
        "{} requests for 80 distinct rows",
        first.chat_requests
    );
    let notice = notices.lock().unwrap().last().cloned().unwrap_or_default();
    assert!(notice.starts_with("LM usage:"), "{notice}");

    // Again: answered from the cache, in the same order, with no request.
    assert_eq!(texts(&client, sql).await, expected);
    assert_eq!(fake.stats().chat_requests, first.chat_requests);
    let row = client
        .query_one(
            "SELECT requests, cache_hits, rows FROM semsql.llm_queries ORDER BY query_id DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 0);
    assert_eq!(row.get::<_, i64>(1), 80);
    assert_eq!(row.get::<_, i64>(2), 100);

    // Filters follow the fake's rule (a quoted keyword), NULL stays NULL without a request.
    let before = fake.stats().chat_requests;
    let rows = client
        .query(
            "SELECT id FROM items WHERE llm_filter('Does it mention ''item 1''? {0}', body) ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let ids: Vec<i32> = rows.iter().map(|row| row.get(0)).collect();
    let expected_ids: Vec<i32> = bodies
        .iter()
        .enumerate()
        .filter(|(_, b)| b.contains("item 1"))
        .map(|(i, _)| i as i32)
        .collect();
    assert_eq!(ids, expected_ids);
    assert!(fake.stats().chat_requests > before);
    let nulls = texts(&client, "SELECT llm_map('Repeat {0}', CAST(NULL AS TEXT))").await;
    assert_eq!(nulls, vec![None]);
}

#[tokio::test]
async fn every_injected_fault_is_retried_to_the_right_answer() {
    let fake = fake(Behaviour::default()).await;
    let server = TestServer::start().await;
    let client = server.client().await;
    use_model(
        &client,
        &fake,
        "fake",
        "rows_per_request = 8, timeout_ms = 400",
    )
    .await;
    client
        .batch_execute("SET semsql.cache = 'off'")
        .await
        .unwrap();
    let bodies: Vec<String> = (0..8).map(|i| format!("row {i} is late")).collect();
    items(&client, &bodies).await;
    let expected: Vec<Option<String>> = bodies.iter().map(|b| Some(b.to_uppercase())).collect();
    let sql = "SELECT llm_map('Repeat {0}', body) FROM items ORDER BY id";
    for fault in [
        Fault::RateLimited { retry_after: 0.0 },
        Fault::ServerError,
        Fault::Hang,
        Fault::Prose,
        Fault::Fences,
        Fault::MissingId,
        Fault::WrongCount,
        Fault::Truncated,
        Fault::NotJson,
    ] {
        fake.reset();
        fake.script(&[fault]);
        assert_eq!(texts(&client, sql).await, expected, "after {fault:?}");
        let stats = fake.stats();
        assert_eq!(stats.faults, 1, "{fault:?}");
        assert!(
            stats.chat_requests >= 2 || matches!(fault, Fault::Prose | Fault::Fences),
            "{fault:?}: {stats:?}"
        );
    }
    let retries: i64 = client
        .query_one("SELECT sum(retries) FROM semsql.llm_queries", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        retries >= 3,
        "429, 500 and the hang were retried: {retries}"
    );
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let fake = fake(Behaviour::default()).await;
    let server = TestServer::start().await;
    let client = server.client().await;
    use_model(&client, &fake, "fake", "").await;
    fake.script(&[Fault::RateLimited { retry_after: 1.0 }]);
    let started = Instant::now();
    assert_eq!(
        texts(&client, "SELECT llm_map('Repeat {0}', 'a')").await,
        vec![Some("A".to_owned())]
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(fake.stats().chat_requests, 2);
}

#[tokio::test]
async fn unusable_answers_fail_or_become_null_never_a_default() {
    let fake = fake(Behaviour::default()).await;
    let server = TestServer::start().await;
    let client = server.client().await;
    use_model(&client, &fake, "fake", "").await;
    let bodies: Vec<String> = vec![
        "late parcel".into(),
        "FAKE:omit late too".into(),
        "FAKE:garbage late".into(),
        "on time".into(),
    ];
    items(&client, &bodies).await;
    let sql = "SELECT id, llm_filter('Is it ''late''? {0}', body) FROM items ORDER BY id";
    let err = client.query(sql, &[]).await.unwrap_err();
    assert_eq!(sqlstate(&err), "22P02", "{err:?}");
    let message = err.as_db_error().unwrap().message().to_owned();
    assert!(
        message.contains("FAKE:garbage late"),
        "names the row: {message}"
    );

    client
        .batch_execute("SET semsql.on_llm_error = 'null'")
        .await
        .unwrap();
    let rows = client.query(sql, &[]).await.unwrap();
    let answers: Vec<Option<bool>> = rows.iter().map(|row| row.get(1)).collect();
    // The omitted row is asked again alone and answered; the garbage row is NULL, not false.
    assert_eq!(answers, vec![Some(true), Some(true), None, Some(false)]);
    let err = client
        .batch_execute("SET semsql.on_llm_error = 'maybe'")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "22023");
}

#[tokio::test]
async fn budgets_stop_spending_before_the_request() {
    let fake = fake(Behaviour::default()).await;
    let server = TestServer::start().await;
    let client = server.client().await;
    use_model(
        &client,
        &fake,
        "fake",
        "rows_per_request = 4, concurrency = 8",
    )
    .await;
    let bodies: Vec<String> = (0..40).map(|i| format!("text {i}")).collect();
    items(&client, &bodies).await;
    client
        .batch_execute("SET semsql.max_llm_requests = 3")
        .await
        .unwrap();
    let sql = "SELECT llm_map('Repeat {0}', body) FROM items";
    let err = client.query(sql, &[]).await.unwrap_err();
    assert_eq!(sqlstate(&err), "53400", "{err:?}");
    assert!(fake.stats().chat_requests <= 3, "{:?}", fake.stats());

    fake.reset();
    client
        .batch_execute("SET semsql.max_llm_requests = 0; SET semsql.max_llm_tokens = 500; SET semsql.cache = 'off'")
        .await
        .unwrap();
    let err = client.query(sql, &[]).await.unwrap_err();
    assert_eq!(sqlstate(&err), "53400", "{err:?}");
    assert!(err
        .as_db_error()
        .unwrap()
        .message()
        .contains("max_llm_tokens"));
    let spent: i64 = client
        .query_one(
            "SELECT coalesce(sum(input_tokens + output_tokens), 0) FROM semsql.llm_requests",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        fake.stats().chat_requests < 10,
        "stopped early: {:?}",
        fake.stats()
    );
    assert!(spent > 0);
}

#[tokio::test]
async fn cancelling_a_query_stops_its_requests() {
    let fake = fake(Behaviour {
        latency_ms: 1500,
        ..Behaviour::default()
    })
    .await;
    let server = TestServer::start().await;
    let client = server.client().await;
    use_model(
        &client,
        &fake,
        "fake",
        "rows_per_request = 1, concurrency = 2",
    )
    .await;
    let bodies: Vec<String> = (0..20).map(|i| format!("slow {i}")).collect();
    items(&client, &bodies).await;
    let cancel = client.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        cancel.cancel_query(tokio_postgres::NoTls).await.unwrap();
    });
    let err = client
        .query("SELECT llm_map('Repeat {0}', body) FROM items", &[])
        .await
        .unwrap_err();
    canceller.await.unwrap();
    assert_eq!(sqlstate(&err), "57014", "{err:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_cancel = fake.stats();
    assert!(after_cancel.chat_requests <= 2, "{after_cancel:?}");
    // The fake answers after 1.5 s; 0.3 s after the cancel its requests are already gone.
    assert_eq!(after_cancel.in_flight, 0, "in-flight requests were dropped");
    assert_eq!(
        after_cancel.abandoned, after_cancel.chat_requests,
        "{after_cancel:?}"
    );
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(
        fake.stats().chat_requests,
        after_cancel.chat_requests,
        "no new request"
    );
    // The connection still works.
    assert_eq!(
        texts(&client, "SELECT 'ok'").await,
        vec![Some("ok".to_owned())]
    );
}

#[tokio::test]
async fn the_cache_survives_a_restart_and_a_damaged_file_is_rebuilt() {
    let fake = fake(Behaviour::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let sql = "SELECT llm_map('Repeat {0}', body) FROM items ORDER BY id";
    let bodies: Vec<String> = (0..10).map(|i| format!("kept {i}")).collect();
    let expected: Vec<Option<String>> = bodies.iter().map(|b| Some(b.to_uppercase())).collect();
    {
        let server = TestServer::start_in(dir.path(), FileConfig::default()).await;
        let client = server.client().await;
        use_model(&client, &fake, "fake", "").await;
        items(&client, &bodies).await;
        assert_eq!(texts(&client, sql).await, expected);
        drop(client);
        server.stop().await;
    }
    let sent = fake.stats().chat_requests;
    {
        let server = TestServer::start_in(dir.path(), FileConfig::default()).await;
        let client = server.client().await;
        client
            .batch_execute("SET semsql.model = 'fake'")
            .await
            .unwrap();
        assert_eq!(texts(&client, sql).await, expected);
        assert_eq!(
            fake.stats().chat_requests,
            sent,
            "answered from the disk cache"
        );
        client
            .batch_execute("SET semsql.cache = 'replay'")
            .await
            .unwrap();
        assert_eq!(texts(&client, sql).await, expected);
        let err = client
            .query("SELECT llm_map('Repeat {0}', 'never asked')", &[])
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&err), "55000", "{err:?}");
        drop(client);
        server.stop().await;
    }
    let cache = dir.path().join("llm-cache.redb");
    let len = std::fs::metadata(&cache).unwrap().len() as usize;
    std::fs::write(&cache, vec![0x5A; len]).unwrap();
    let server = TestServer::start_in(dir.path(), FileConfig::default()).await;
    let client = server.client().await;
    client
        .batch_execute("SET semsql.model = 'fake'")
        .await
        .unwrap();
    assert_eq!(texts(&client, sql).await, expected);
    assert!(
        fake.stats().chat_requests > sent,
        "nothing served from the damaged file"
    );
    let rebuilds: i64 = client
        .query_one(
            "SELECT rebuilds FROM semsql.llm_cache WHERE tier = 'disk'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(rebuilds, 1);
}

#[tokio::test]
async fn models_are_managed_in_sql_and_never_show_secrets() {
    let fake = fake(Behaviour {
        api_key: Some("sk-right-4242".into()),
        ..Behaviour::default()
    })
    .await;
    std::env::set_var("SEMSQL_TEST_RIGHT_KEY", "sk-right-4242");
    std::env::set_var("SEMSQL_TEST_WRONG_KEY", "sk-wrong-7777");
    let dir = tempfile::tempdir().unwrap();
    {
        let server = TestServer::start_in(dir.path(), FileConfig::default()).await;
        let client = server.client().await;
        client
            .batch_execute(&format!(
                "CREATE MODEL keyed WITH (base_url = '{}', model = 'fake-1', rows_per_request = 16, api_key_env = 'SEMSQL_TEST_WRONG_KEY', \
                 headers = '{{\"X-Secret-Header\": \"hdr-secret-99\"}}', price_per_1k_input = 0.5)",
                fake.base_url()
            ))
            .await
            .unwrap();
        let err = client
            .batch_execute("CREATE MODEL keyed WITH (base_url = 'http://x', model = 'y')")
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&err), "42710");
        let err = client
            .batch_execute(
                "CREATE MODEL bad WITH (base_url = 'http://x', model = 'y', concurency = 2)",
            )
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&err), "22023");
        client
            .batch_execute("SET semsql.model = 'keyed'")
            .await
            .unwrap();
        let err = client
            .query("SELECT llm_map('Repeat {0}', 'x')", &[])
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&err), "38000", "{err:?}");
        let message = err.as_db_error().unwrap().message().to_owned();
        assert!(message.contains("401"), "{message}");
        assert!(!message.contains("sk-wrong-7777"), "{message}");

        client
            .batch_execute("ALTER MODEL keyed SET (api_key_env = 'SEMSQL_TEST_RIGHT_KEY')")
            .await
            .unwrap();
        assert_eq!(
            texts(&client, "SELECT llm_map('Repeat {0}', 'x')").await,
            vec![Some("X".to_owned())]
        );
        // Over the simple protocol as psql sends it, and then the extended one.
        let shown = client.simple_query("SHOW MODELS").await.unwrap();
        let mut text = String::new();
        for message in &shown {
            if let SimpleQueryMessage::Row(row) = message {
                for i in 0..row.len() {
                    text.push_str(row.get(i).unwrap_or(""));
                    text.push('|');
                }
            }
        }
        assert!(text.starts_with("keyed|CREATE MODEL|"), "{text}");
        assert!(text.contains("SEMSQL_TEST_RIGHT_KEY"), "{text}");
        let everything = format!(
            "{text}{:?}{:?}",
            client
                .query("SELECT * FROM semsql.llm_requests", &[])
                .await
                .unwrap(),
            client.query("SHOW MODELS", &[]).await.unwrap()
        );
        for secret in ["sk-right-4242", "sk-wrong-7777", "hdr-secret-99"] {
            assert!(!everything.contains(secret), "{secret} leaked");
        }
        let cost: f64 = client
            .query_one(
                "SELECT estimated_cost FROM semsql.llm_queries ORDER BY query_id DESC LIMIT 1",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(cost > 0.0);
        drop(client);
        server.stop().await;
    }
    // Persisted; then dropped.
    let server = TestServer::start_in(dir.path(), FileConfig::default()).await;
    let client = server.client().await;
    client
        .batch_execute("SET semsql.model = 'keyed'")
        .await
        .unwrap();
    client.batch_execute("DROP MODEL keyed").await.unwrap();
    let err = client
        .batch_execute("SET semsql.model = 'keyed'")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42704");
    let err = client
        .query("SELECT llm_map('Repeat {0}', 'x')", &[])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42704", "{err:?}");
    client
        .batch_execute("DROP MODEL IF EXISTS keyed")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_small_query_is_not_starved_by_a_large_one() {
    let fake = fake(Behaviour {
        latency_ms: 100,
        ..Behaviour::default()
    })
    .await;
    let server = TestServer::start().await;
    let big = server.client().await;
    use_model(&big, &fake, "fake", "rows_per_request = 4, concurrency = 2").await;
    let bodies: Vec<String> = (0..120).map(|i| format!("bulk {i}")).collect();
    items(&big, &bodies).await;
    let big_query = tokio::spawn(async move {
        big.query("SELECT llm_map('Repeat {0}', body) FROM items", &[])
            .await
            .unwrap();
        Instant::now()
    });
    tokio::time::sleep(Duration::from_millis(250)).await;
    let small = server.client().await;
    small
        .batch_execute("SET semsql.model = 'fake'")
        .await
        .unwrap();
    assert_eq!(
        texts(&small, "SELECT llm_map('Repeat {0}', 'quick')").await,
        vec![Some("QUICK".to_owned())]
    );
    let small_done = Instant::now();
    let big_done = big_query.await.unwrap();
    assert!(
        small_done < big_done,
        "the small query waited for the whole large one"
    );
    assert!(fake.stats().max_in_flight <= 2, "{:?}", fake.stats());
}

#[tokio::test]
async fn progress_and_usage_reach_the_client() {
    let fake = fake(Behaviour {
        latency_ms: 120,
        ..Behaviour::default()
    })
    .await;
    let server = TestServer::start().await;
    let (client, notices) = connect_with_notices(&server.connection_string()).await;
    use_model(
        &client,
        &fake,
        "fake",
        "rows_per_request = 2, concurrency = 1",
    )
    .await;
    client
        .batch_execute("SET semsql.progress_interval_ms = 100")
        .await
        .unwrap();
    let bodies: Vec<String> = (0..10).map(|i| format!("step {i}")).collect();
    items(&client, &bodies).await;
    client
        .query("SELECT llm_map('Repeat {0}', body) FROM items", &[])
        .await
        .unwrap();
    let seen = notices.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|n| n.starts_with("semsql progress:") && n.contains("of 10 rows")),
        "{seen:?}"
    );
    assert!(
        seen.last().unwrap().starts_with("LM usage: 5 requests"),
        "{seen:?}"
    );

    let plan = client
        .simple_query("EXPLAIN ANALYZE SELECT llm_filter('is it ''step''? {0}', body) FROM items")
        .await
        .unwrap();
    let lines: Vec<String> = plan
        .iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(format!(
                "{} {}",
                row.get(0).unwrap_or(""),
                row.get(1).unwrap_or("")
            )),
            _ => None,
        })
        .collect();
    assert!(
        lines.iter().any(|line| line.starts_with("LM usage")),
        "{lines:?}"
    );
    assert_eq!(
        client
            .query_one("SHOW semsql.progress_interval_ms", &[])
            .await
            .unwrap()
            .get::<_, String>(0),
        "100"
    );
}

#[tokio::test]
async fn embeddings_are_batched_deduplicated_and_cached() {
    use semsql::llm::{LlmConfig, Runtime};
    use semsql_udfs::lm::{LmRuntime, LmSettings};
    let fake = fake(Behaviour {
        embedding_dims: Some(8),
        ..Behaviour::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = LlmConfig::default();
    config.models.insert(
        "emb".into(),
        [
            ("base_url", fake.base_url()),
            ("model", "fake-embed".to_owned()),
            ("embed_batch", "2".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
    );
    let runtime = Runtime::open(Some(dir.path()), &config).unwrap();
    let settings = LmSettings {
        embedding_model: "emb".into(),
        ..LmSettings::default()
    };
    let texts = vec![
        Some("a red apple".to_owned()),
        None,
        Some("a red apple".to_owned()),
        Some("green lime".to_owned()),
        Some("blue sky".to_owned()),
    ];
    let vectors = runtime.embed(&settings, None, texts.clone()).await.unwrap();
    assert_eq!(vectors[0], vectors[2]);
    assert_eq!(vectors[1], None);
    assert_eq!(
        vectors[3].as_deref(),
        Some(&semsql::fake_llm::rules::embedding("green lime", 8)[..])
    );
    let stats = fake.stats();
    assert_eq!(
        (stats.embedding_requests, stats.rows),
        (2, 3),
        "3 distinct texts, 2 per request"
    );
    let again = runtime.embed(&settings, None, texts).await.unwrap();
    assert_eq!(again, vectors);
    assert_eq!(
        fake.stats().embedding_requests,
        2,
        "answered from the cache"
    );
}

#[tokio::test]
async fn models_from_the_config_file_are_read_only() {
    let fake = fake(Behaviour::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let file: FileConfig = toml::from_str(&format!(
        "[llm]\ndefault_model = 'house'\n[models.house]\nbase_url = '{}'\nmodel = 'fake-1'\nrows_per_request = 16\n",
        fake.base_url()
    ))
    .unwrap();
    let server = TestServer::start_in(dir.path(), file).await;
    let client = server.client().await;
    // The default model answers without SET semsql.model.
    assert_eq!(
        texts(&client, "SELECT llm_map('Repeat {0}', 'hi')").await,
        vec![Some("HI".to_owned())]
    );
    let row = client
        .query_one(
            "SELECT source, is_default FROM semsql.models WHERE name = 'house'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "config file");
    assert!(row.get::<_, bool>(1));
    let err = client
        .batch_execute("ALTER MODEL house SET (concurrency = 1)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42501");
    assert_eq!(
        client
            .query_one("SHOW semsql.model", &[])
            .await
            .unwrap()
            .get::<_, String>(0),
        "house"
    );
}

// psql blocks its thread; the server needs another one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_shows_models_and_usage() {
    crate::support::require_tool("psql", "--version", "apt-get install postgresql-client");
    let fake = fake(Behaviour::default()).await;
    std::env::set_var("SEMSQL_TEST_PSQL_KEY", "sk-psql-0000");
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), FileConfig::default()).await;
    let script = dir.path().join("script.sql");
    std::fs::write(
        &script,
        format!(
            "CREATE MODEL fake WITH (base_url = '{}', model = 'fake-1', rows_per_request = 16, api_key_env = 'SEMSQL_TEST_PSQL_KEY');\n\
             SET semsql.model = 'fake';\n\
             CREATE TABLE notes (body TEXT);\n\
             INSERT INTO notes VALUES ('late again'), ('fine'), ('late again');\n\
             SELECT body, llm_filter('Is it ''late''? {{0}}', body) AS late FROM notes ORDER BY body;\n\
             SHOW MODELS;\n\
             SELECT requests, cache_hits, input_tokens > 0 AS counted FROM semsql.llm_queries;\n",
            fake.base_url()
        ),
    )
    .unwrap();
    let port = server.addr.port().to_string();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "semsql",
                "-d",
                "semsql",
                "-X",
            ])
            .args(["-v", "ON_ERROR_STOP=1", "-f"])
            .arg(&script)
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("NOTICE:  LM usage: 1 request, 2 rows sent"),
        "{stderr}"
    );
    assert!(stdout.contains("late again | t"), "{stdout}");
    assert!(stdout.contains("fine       | f"), "{stdout}");
    assert!(stdout.contains("SEMSQL_TEST_PSQL_KEY"), "{stdout}");
    assert!(!stdout.contains("sk-psql-0000") && !stderr.contains("sk-psql-0000"));
    assert!(stdout.contains("        1 |          0 | t"), "{stdout}");
}

#[tokio::test]
async fn long_rows_are_packed_under_the_context_limit() {
    let fake = fake(Behaviour::default()).await;
    let server = TestServer::start().await;
    let client = server.client().await;
    use_model(
        &client,
        &fake,
        "small",
        "rows_per_request = 16, context_tokens = 600",
    )
    .await;
    // About 100 tokens each: three fit in what the small context leaves after the instructions.
    let bodies: Vec<String> = (0..12)
        .map(|i| format!("{i} {}", "word ".repeat(80)))
        .collect();
    items(&client, &bodies).await;
    let rows = client
        .query(
            "SELECT llm_filter('Is it ''word''? {0}', body) FROM items",
            &[],
        )
        .await
        .unwrap();
    assert!(rows.iter().all(|row| row.get::<_, bool>(0)));
    let stats = fake.stats();
    assert_eq!(stats.rows, 12);
    assert!(
        stats.chat_requests >= 4,
        "12 long rows in one request would overflow: {stats:?}"
    );
}

#[tokio::test]
async fn a_row_asked_alone_is_asked_again_when_its_answer_is_lost() {
    let fake = fake(Behaviour::default()).await;
    let server = TestServer::start().await;
    let client = server.client().await;
    // Over the extended protocol too.
    client
        .execute(
            &format!(
                "CREATE MODEL fake WITH (base_url = '{}', model = 'fake-1', rows_per_request = 16, retry_base_ms = 20)",
                fake.base_url()
            ),
            &[],
        )
        .await
        .unwrap();
    client
        .execute("SET semsql.model = 'fake'", &[])
        .await
        .unwrap();
    fake.script(&[Fault::NotJson, Fault::MissingId]);
    assert_eq!(
        texts(&client, "SELECT llm_map('Repeat {0}', 'solo')").await,
        vec![Some("SOLO".to_owned())]
    );
    assert_eq!(fake.stats().chat_requests, 3);
    client.execute("DROP MODEL fake", &[]).await.unwrap();
}

#[tokio::test]
async fn cheap_predicates_run_before_the_model_is_asked() {
    let fake = fake(Behaviour::default()).await;
    let server = TestServer::start().await;
    let client = server.client().await;
    use_model(&client, &fake, "fake", "").await;
    let bodies: Vec<String> = (0..200).map(|i| format!("late parcel {i}")).collect();
    items(&client, &bodies).await;
    let rows = client
        .query(
            "SELECT id FROM items WHERE id >= 190 AND llm_filter('Is it ''late''? {0}', body) AND id % 2 = 0 ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let ids: Vec<i32> = rows.iter().map(|row| row.get(0)).collect();
    assert_eq!(ids, vec![190, 192, 194, 196, 198]);
    let asked = fake.stats().rows;
    let plan = client
        .simple_query("EXPLAIN SELECT id FROM items WHERE id >= 190 AND llm_filter('Is it ''late''? {0}', body)")
        .await
        .unwrap();
    let text: Vec<String> = plan
        .iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => row.get(1).map(str::to_owned),
            _ => None,
        })
        .collect();
    let physical = text.last().cloned().unwrap_or_default();
    let async_at = physical.find("SemanticExec").expect("a SemanticExec");
    let cheap_at = physical
        .rfind("FilterExec: id@0 >= 190")
        .expect("the cheap filter");
    assert!(
        cheap_at > async_at,
        "the cheap filter runs below the LM call:\n{physical}"
    );
    assert_eq!(
        asked, 5,
        "only the rows passing the cheap conjuncts are asked"
    );
}

/// The number after `name=` in an EXPLAIN ANALYZE line.
fn metric(plan: &str, name: &str) -> u64 {
    let at = plan
        .find(&format!("{name}="))
        .unwrap_or_else(|| panic!("{name} in {plan}"));
    plan[at + name.len() + 1..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn lm_predicates_are_gated_and_limits_stop_early() {
    let fake = fake(Behaviour::default()).await;
    let server = TestServer::start().await;
    let client = server.client().await;
    use_model(&client, &fake, "fake", "").await;
    client
        .batch_execute("SET semsql.cache = 'off'")
        .await
        .unwrap();
    let bodies: Vec<String> = (0..400)
        .map(|i| match i % 4 {
            0 => format!("late parcel {i}"),
            1 => format!("parcel {i}"),
            _ => format!("fine {i}"),
        })
        .collect();
    items(&client, &bodies).await;

    // Two LM predicates: the cheaper-looking one runs on every row, the other only on the
    // 100 rows that passed it.
    let both = "SELECT id FROM items WHERE llm_filter('Does this long row of text mention a ''parcel''? {0}', body) AND llm_filter('Is it ''late''? {0}', body)";
    let rows = client.query(both, &[]).await.unwrap();
    assert_eq!(rows.len(), 100);
    assert_eq!(
        fake.stats().rows,
        400 + 100,
        "the second question only about survivors"
    );

    // EXPLAIN ANALYZE counts what the fake server saw.
    fake.reset();
    let plan = client
        .simple_query(&format!("EXPLAIN ANALYZE {both}"))
        .await
        .unwrap();
    let text: String = plan
        .iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => row.get(1).map(str::to_owned),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let node = text
        .lines()
        .find(|line| line.contains("SemanticExec"))
        .expect("a SemanticExec line");
    assert!(node.contains("model fake, 16 rows/request"), "{node}");
    assert_eq!(metric(node, "lm_rows_sent"), fake.stats().rows);
    assert_eq!(metric(node, "lm_requests"), fake.stats().chat_requests);

    // LIMIT: an oracle reading rows 100.. in order would ask 37 rows to find 10 late ones.
    fake.reset();
    let rows = client
        .query(
            "SELECT id FROM items WHERE id >= 100 AND llm_filter('Is it ''late''? {0}', body) LIMIT 10",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 10);
    assert!(rows.iter().all(|row| row.get::<_, i32>(0) % 4 == 0));
    let asked = fake.stats().rows;
    assert!(
        asked <= 2 * 37,
        "LIMIT 10 asked {asked} rows; an oracle asks 37"
    );
}

/// `SET semsql.join_candidates = k`: each left row is asked about with its k nearest right rows
/// by embedding only, and every other pair is never sent.
#[tokio::test]
async fn join_candidates_limit_pairs_to_nearest_by_embedding() {
    let fake = fake(Behaviour::default()).await;
    let server = TestServer::start().await;
    let client = server.client().await;
    use_model(&client, &fake, "fake", "").await;
    client
        .batch_execute(
            "SET semsql.cache = 'off'; SET semsql.embedding_model = 'fake'; \
             CREATE TABLE desserts (id INT, body TEXT); CREATE TABLE fruits (name TEXT); \
             INSERT INTO desserts VALUES (1, 'apple pie'), (2, 'banana bread'), (3, 'cherry tart'), \
               (4, 'grape jelly'), (5, 'peach cobbler'), (6, 'apple pie'); \
             INSERT INTO fruits VALUES ('apple'), ('banana'), ('cherry'), ('grape'), ('peach')",
        )
        .await
        .unwrap();
    // The fake model says yes to every pair (each contains an 'e'), so the result is exactly
    // the pairs that were asked about.
    let join = "SELECT d.id, f.name FROM desserts d JOIN fruits f \
                ON llm_filter('Is {0} made of {1}? ''e''', d.body, f.name) ORDER BY d.id, f.name";
    let pairs = |rows: Vec<tokio_postgres::Row>| -> Vec<(i32, String)> {
        rows.iter().map(|row| (row.get(0), row.get(1))).collect()
    };

    let all = pairs(client.query(join, &[]).await.unwrap());
    assert_eq!(all.len(), 30);
    // 25 distinct pairs: the two 'apple pie' rows ask the same questions.
    assert_eq!(fake.stats().rows, 25);

    fake.reset();
    client
        .batch_execute("SET semsql.join_candidates = 1")
        .await
        .unwrap();
    let nearest = pairs(client.query(join, &[]).await.unwrap());
    let expected: Vec<(i32, String)> = [
        (1, "apple"),
        (2, "banana"),
        (3, "cherry"),
        (4, "grape"),
        (5, "peach"),
        (6, "apple"),
    ]
    .iter()
    .map(|(id, name)| (*id, (*name).to_owned()))
    .collect();
    assert_eq!(nearest, expected);
    let stats = fake.stats();
    // Five distinct pairs asked, and the ten distinct texts embedded.
    assert_eq!(stats.rows, 5 + 10, "{stats:?}");

    fake.reset();
    client
        .batch_execute("SET semsql.join_candidates = 2")
        .await
        .unwrap();
    let two = pairs(client.query(join, &[]).await.unwrap());
    assert_eq!(two.len(), 12);
    assert!(expected.iter().all(|pair| two.contains(pair)));
    assert!(two.iter().all(|pair| all.contains(pair)));

    let plan: Vec<String> = client
        .query(&format!("EXPLAIN {join}"), &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<_, String>(1))
        .collect();
    let plan = plan.join("\n");
    assert!(plan.contains("embed("), "{plan}");
    assert!(plan.contains("__semsql_lm_rank <= "), "{plan}");
    server.stop().await;
}
