//! semsql's functions against a real local model (Qwen2.5-Coder 1.5B Instruct through
//! llama.cpp), end to end over the wire: every answer parses and has the type and labels asked
//! for, `rows_per_request = 'auto'` calibrates, budgets and cancellation stop real requests.
//!
//! Slow (a few minutes on 2 cores), so ignored by `cargo test`; `scripts/real-model-tests.sh`
//! (or `.ci/run` with `SEMSQL_REAL_MODEL=1`) serves the model and runs them. The model's URL is
//! `SEMSQL_REAL_MODEL_URL` (default `http://127.0.0.1:8089/v1`); an unreachable model fails
//! the tests rather than skipping them.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::support::{connect_with_notices, sqlstate, TestServer};

fn model_url() -> String {
    std::env::var("SEMSQL_REAL_MODEL_URL").unwrap_or_else(|_| "http://127.0.0.1:8089/v1".into())
}

/// A server whose session uses the real model as `local`, with `options`.
async fn session(options: &str) -> (TestServer, Client) {
    let url = model_url();
    let reachable = tokio::net::TcpStream::connect(
        url.trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default(),
    )
    .await;
    assert!(
        reachable.is_ok(),
        "no model answers at {url}: start one with scripts/real-model.sh start"
    );
    let server = TestServer::start().await;
    let (client, _notices) = connect_with_notices(&server.connection_string()).await;
    client
        .batch_execute(&format!(
            "CREATE MODEL local WITH (base_url = '{url}', model = 'qwen', concurrency = 1, \
             timeout_ms = 600000{options}); SET semsql.model = 'local'; \
             CREATE TABLE reviews (id int, body text); \
             INSERT INTO reviews VALUES \
             (1, 'I returned the blender and they refunded me within three days.'), \
             (2, 'The blender is powerful and crushes ice in seconds.'), \
             (3, 'The package showed up a week after the promised date.'), \
             (4, 'Absolutely love it, best purchase I have made this year.'), \
             (5, 'Terrible. It broke on the first day.'), \
             (6, 'Please send 3 boxes of green tea to our office in Lisbon.')"
        ))
        .await
        .unwrap();
    (server, client)
}

#[tokio::test]
#[ignore = "needs a real model: scripts/real-model-tests.sh"]
async fn every_function_answers_in_the_type_asked_for() {
    let (_server, client) = session(", rows_per_request = 4").await;
    let rows = client
        .query(
            "SELECT id, llm_filter('Does this review mention a refund? {0}', body), \
                    llm_classify(body, ARRAY['praise', 'complaint', 'order']), \
                    llm_score('How positive is this review? {0}', body), \
                    llm_map('Summarise in at most five words: {0}', body) \
             FROM reviews ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 6);
    for row in &rows {
        let id: i32 = row.get(0);
        // The answers are NOT NULL: an unparseable answer would have failed the query.
        let _refund: bool = row.get(1);
        let label: String = row.get(2);
        assert!(
            ["praise", "complaint", "order"].contains(&label.as_str()),
            "{id}: {label}"
        );
        let score: f64 = row.get(3);
        assert!((0.0..=1.0).contains(&score), "{id}: {score}");
        let summary: String = row.get(4);
        assert!(!summary.trim().is_empty(), "{id}");
    }
    // A refund review is a refund review, even for a 1.5B model.
    assert!(rows[0].get::<_, bool>(1), "row 1 mentions a refund");

    let order = client
        .query_one(
            "SELECT (e).quantity, (e).city FROM (SELECT llm_extract('From the order: {0}', body, \
             'quantity int, city text') AS e FROM reviews WHERE id = 6) t",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(order.get::<_, Option<i64>>(0), Some(3));
    assert_eq!(order.get::<_, Option<String>>(1).as_deref(), Some("Lisbon"));

    let ranked = client
        .query_one(
            "SELECT llm_rerank('Which review is most positive?', body, 2) FROM reviews",
            &[],
        )
        .await
        .unwrap();
    let ranked: Vec<String> = ranked
        .try_get(0)
        .unwrap_or_else(|error| panic!("{error:?}: {:?}", ranked.columns()));
    assert_eq!(ranked.len(), 2);
    let bodies: Vec<String> = client
        .query("SELECT body FROM reviews", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(
        ranked.iter().all(|value| bodies.contains(value)),
        "{ranked:?}"
    );
}

#[tokio::test]
#[ignore = "needs a real model: scripts/real-model-tests.sh"]
async fn auto_batch_size_calibrates_against_the_real_model() {
    let (_server, client) = session("").await;
    // 12 more distinct rows: enough for a calibration sample.
    client
        .batch_execute(
            "INSERT INTO reviews SELECT 100 + g, 'Order ' || g || ': ' || \
             CASE WHEN g % 2 = 0 THEN 'they refunded me' ELSE 'it works fine' END \
             FROM generate_series(1, 12) g",
        )
        .await
        .unwrap();
    let refunds = client
        .query(
            "SELECT id FROM reviews WHERE llm_filter('Does this review mention a refund? {0}', body)",
            &[],
        )
        .await
        .unwrap();
    assert!(!refunds.is_empty());
    let calibration: Option<String> = client
        .query_one(
            "SELECT calibration FROM semsql.models WHERE name = 'local'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let calibration = calibration.expect("calibrated");
    assert!(calibration.starts_with("llm_filter: "), "{calibration}");
    // The sample is the call's rows, up to 16 (here one INSERT's 12 rows).
    assert!(calibration.contains("(agreement "), "{calibration}");
    let plan: String = client
        .query(
            "EXPLAIN SELECT id FROM reviews WHERE llm_filter('Does this review mention a refund? {0}', body)",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<_, String>(1))
        .collect();
    assert!(plan.contains("rows/request, calibrated"), "{plan}");
}

#[tokio::test]
#[ignore = "needs a real model: scripts/real-model-tests.sh"]
async fn budgets_and_cancellation_stop_real_requests() {
    let (_server, client) = session(", rows_per_request = 1").await;
    client
        .batch_execute(
            "SET semsql.cache = 'off'; SET semsql.max_llm_requests = 2; \
             INSERT INTO reviews SELECT 100 + g, 'Review number ' || g FROM generate_series(1, 20) g",
        )
        .await
        .unwrap();
    let over = client
        .query(
            "SELECT llm_filter('Is it positive? {0}', body) FROM reviews",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&over), "53400", "{over:?}");

    // 26 one-row requests take far longer than a second: the timeout cancels the query, the
    // requests in flight are dropped, and the connection and the model go on working.
    client
        .batch_execute("SET semsql.max_llm_requests = 0; SET statement_timeout = '1s'")
        .await
        .unwrap();
    let started = Instant::now();
    let cancelled = client
        .query(
            "SELECT llm_map('Write a long poem about {0}', body) FROM reviews",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&cancelled), "57014", "{cancelled:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
    client
        .batch_execute("SET statement_timeout = 0")
        .await
        .unwrap();
    let answer: bool = client
        .query_one(
            "SELECT llm_filter('Does this review mention a refund? {0}', body) FROM reviews WHERE id = 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(answer);
}
