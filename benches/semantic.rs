//! Semantic SQL benchmark on the shapes of issue 4, against the fake OpenAI-compatible server at
//! 20 ms latency (the LOTUS anchor was measured with a 20 ms endpoint), over the wire with
//! tokio-postgres, cache off. The baseline, measured in the same run with the same HTTP client,
//! is one request per row or pair, one after another (what LOTUS does for these shapes).
//!
//! Shapes: a filter over 200 rows; top-5 of 50 by `ORDER BY llm_score(...) DESC LIMIT 5` and by
//! the `llm_rerank` tournament; a
//! semantic join 20 × 3; `WHERE cheap AND llm_filter(...) LIMIT 10` against an oracle that asks
//! rows in scan order until the tenth match; overhead per row: 10,000 distinct rows through
//! `llm_filter` with the fake at 0 ms latency.
//!
//! Run: `cargo bench --bench semantic` (prints a Markdown table for docs/benchmarks.md).

#[path = "support/mod.rs"]
mod support;

use std::time::Instant;

use semsql::fake_llm::{Behaviour, FakeLlm};
use semsql::llm::batch;
use semsql::llm::client::Client;
use semsql::llm::models::ModelOptions;
use semsql_udfs::lm::{AnswerKind, LmTask};

const LATENCY_MS: u64 = 20;

/// Row `i`'s text: every third row is about a late parcel.
fn body(i: usize) -> String {
    if i.is_multiple_of(3) {
        format!("Review {i}: the parcel arrived late, box dented.")
    } else {
        format!("Review {i}: arrived on time, works as described.")
    }
}

#[tokio::main]
async fn main() {
    let fake = FakeLlm::start(
        "127.0.0.1:0",
        Behaviour {
            latency_ms: LATENCY_MS,
            ..Behaviour::default()
        },
    )
    .await
    .expect("fake server");

    // Baseline: one request per row, sequential.
    let options = ModelOptions::parse(
        "baseline",
        &[("base_url", fake.base_url()), ("model", "fake-1".into())]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
    .expect("options");
    let client = Client::new(
        &options,
        &std::sync::Arc::new(
            semsql::llm::secrets::Secrets::open(None, &Default::default()).expect("secrets"),
        ),
    )
    .expect("client");
    let task = LmTask {
        function: "llm_filter",
        model: None,
        instruction: "Is {0} about a 'late' delivery?".to_owned(),
        answer: AnswerKind::Boolean,
        temperature: None,
        max_tokens: None,
    };
    let started = Instant::now();
    for i in 0..200 {
        let args = [body(i)];
        let request = batch::chat_request(&task, &options, &[(0, &args[..])]);
        client.chat("fake-1", &request).await.expect("answer");
    }
    let baseline_filter = started.elapsed().as_secs_f64();

    let server = support::start().await;
    let db = &server.client;
    db.batch_execute(&format!(
        "CREATE MODEL fake WITH (base_url = '{}', model = 'fake-1', rows_per_request = 16); SET semsql.model = 'fake'; \
         SET semsql.cache = 'off'; SET semsql.progress_interval_ms = 0; \
         CREATE TABLE r200 (id INT, body TEXT); CREATE TABLE r50 (id INT, body TEXT); \
         CREATE TABLE left20 (id INT, body TEXT); CREATE TABLE topics (name TEXT); \
         CREATE TABLE r10k (id INT, body TEXT); \
         INSERT INTO topics VALUES ('late'), ('dented'), ('refund')",
        fake.base_url()
    ))
    .await
    .expect("setup");
    for (table, rows) in [("r200", 200), ("r50", 50), ("left20", 20), ("r10k", 10_000)] {
        for chunk in (0..rows).collect::<Vec<_>>().chunks(1000) {
            let values: Vec<String> = chunk
                .iter()
                .map(|&i| format!("({i}, '{}')", body(i)))
                .collect();
            db.batch_execute(&format!("INSERT INTO {table} VALUES {}", values.join(",")))
                .await
                .expect("insert");
        }
    }
    let measure = |sql: String| {
        let fake = &fake;
        async move {
            fake.reset();
            let started = Instant::now();
            let rows = db.query(sql.as_str(), &[]).await.expect("query").len();
            let wall = started.elapsed().as_secs_f64();
            let stats = fake.stats();
            (rows, stats.chat_requests, stats.rows, wall)
        }
    };

    let (filter_rows, filter_requests, _, filter_wall) = measure(
        "SELECT id FROM r200 WHERE llm_filter('Is {0} about a ''late'' delivery?', body)".into(),
    )
    .await;
    assert_eq!(filter_rows, 67);
    let (top_rows, top_requests, _, top_wall) = measure(
        "SELECT id FROM r50 ORDER BY llm_score('How much is {0} about ''late'' or ''dented''?', body) DESC, id LIMIT 5"
            .into(),
    )
    .await;
    assert_eq!(top_rows, 5);
    let (_, rerank_requests, _, rerank_wall) = measure(
        "SELECT llm_rerank('Which review is most about ''late'' or ''dented''?', body, 5) FROM r50"
            .into(),
    )
    .await;
    let (join_rows, join_requests, join_pairs, join_wall) = measure(
        "SELECT l.id, t.name FROM left20 l JOIN topics t ON llm_filter('Does {0} mention ''dented''? Topic: {1}', l.body, t.name)"
            .into(),
    )
    .await;
    // Seven dented rows match every topic; the others match the topic "dented" itself.
    assert_eq!(join_rows, 7 * 3 + 13);
    // Oracle: rows from id 60 in order until the tenth late one (every third row is late).
    let oracle_rows = 28;
    let (limit_rows, limit_requests, limit_sent, limit_wall) = measure(
        "SELECT id FROM r200 WHERE id >= 60 AND llm_filter('Is {0} about a ''late'' delivery?', body) LIMIT 10"
            .into(),
    )
    .await;
    assert_eq!(limit_rows, 10);

    fake.configure(Behaviour::default()).expect("no latency");
    let (_, overhead_requests, _, overhead_wall) = measure(
        "SELECT id FROM r10k WHERE llm_filter('Is {0} about a ''late'' delivery?', body)".into(),
    )
    .await;

    println!("| shape | LOTUS 1.2.4 (anchor) | baseline, this run | semsql | target |");
    println!("|---|---|---|---|---|");
    println!(
        "| filter, 200 rows | 200 requests, 2.0 s | 200 requests, {baseline_filter:.2} s | {filter_requests} requests, {filter_wall:.3} s ({:.0}× faster) | ≤ 15 requests, ≤ 0.2 s |",
        baseline_filter / filter_wall
    );
    println!(
        "| top-5 of 50 | 77–126 requests | 50 requests | {top_requests} requests, {top_wall:.3} s (pointwise llm_score) | ≤ 40 requests |"
    );
    println!(
        "| top-5 of 50, listwise | 77–126 requests | — | {rerank_requests} requests, {rerank_wall:.3} s (llm_rerank tournament) | ≤ 40 requests |"
    );
    println!(
        "| join 20 × 3 | 60 requests | 60 requests | {join_requests} requests for {join_pairs} pairs, {join_wall:.3} s | ≤ 6 requests |"
    );
    println!(
        "| `WHERE cheap AND llm_filter LIMIT 10` | — | oracle: {oracle_rows} rows | {limit_sent} rows in {limit_requests} requests, {limit_wall:.3} s ({:.2}× the oracle) | ≤ 2× the oracle |",
        limit_sent as f64 / oracle_rows as f64
    );
    println!(
        "| overhead per row (10,000 rows, 0 ms model) | ~6 ms | — | {:.3} ms per row ({overhead_requests} requests, {overhead_wall:.2} s) | < 0.1 ms |",
        overhead_wall * 1000.0 / 10_000.0
    );
}
