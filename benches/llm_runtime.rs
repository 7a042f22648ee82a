//! LM runtime benchmark: 10,000 rows with 20% duplicates through `llm_map`, against the fake
//! OpenAI-compatible server at 50 ms latency, over the wire with tokio-postgres.
//!
//! (a) baseline: one row per request, sequential (what a per-row UDF does), measured on the
//!     first 1,000 rows with the same HTTP client and extrapolated to 10,000;
//! (b) semsql, cold cache: dedup, 16 rows per request, 8 requests at a time;
//! (c) semsql, warm cache: the same query again;
//! (d) semsql, cache off, with faults: 5% of requests answered 429, 2% malformed answers.
//!
//! Run: `cargo bench --bench llm_runtime` (prints a Markdown table for docs/benchmarks.md).

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use semsql::fake_llm::{Behaviour, FakeLlm};
use semsql::llm::batch;
use semsql::llm::client::Client;
use semsql::llm::models::ModelOptions;
use semsql_udfs::lm::{AnswerKind, LmTask};

const ROWS: usize = 10_000;
const DUPLICATE_SHARE: f64 = 0.2;
const LATENCY_MS: u64 = 50;
const BASELINE_ROWS: usize = 1_000;
const ROWS_PER_REQUEST: usize = 16;
const CONCURRENCY: usize = 8;
const PROMPT: &str = "Summarize this review in five words: {0}";

/// The rows: 8,000 distinct texts, and 2,000 copies of earlier rows at seeded random places.
fn bodies() -> Vec<String> {
    let mut state: u64 = 42;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        state >> 33
    };
    let mut rows: Vec<String> = Vec::with_capacity(ROWS);
    let mut distinct = 0;
    for i in 0..ROWS {
        let duplicate = i > 0 && (next() % 1000) < (DUPLICATE_SHARE * 1000.0) as u64;
        if duplicate {
            let earlier = (next() as usize) % rows.len();
            rows.push(rows[earlier].clone());
        } else {
            rows.push(format!(
                "Review {distinct}: the parcel arrived {} days late and the box was {}.",
                distinct % 9,
                ["dented", "fine", "wet", "torn"][distinct % 4]
            ));
            distinct += 1;
        }
    }
    rows
}

#[tokio::main]
async fn main() {
    let rows = bodies();
    let unique = rows.iter().collect::<std::collections::HashSet<_>>().len();
    let fake = FakeLlm::start(
        "127.0.0.1:0",
        Behaviour {
            latency_ms: LATENCY_MS,
            ..Behaviour::default()
        },
    )
    .await
    .expect("fake server");

    // (a) One request per row, one after another.
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
        function: "llm_map",
        model: None,
        instruction: PROMPT.to_owned(),
        answer: AnswerKind::Text,
        temperature: None,
        max_tokens: None,
    };
    let mut baseline_tokens = 0;
    let started = Instant::now();
    for body in rows.iter().take(BASELINE_ROWS) {
        let args = [body.clone()];
        let request = batch::chat_request(&task, &options, &[(0, &args[..])]);
        let answer = client.chat("fake-1", &request).await.expect("answer");
        baseline_tokens += answer.input_tokens + answer.output_tokens;
    }
    let baseline_wall = started.elapsed().as_secs_f64() * (ROWS / BASELINE_ROWS) as f64;
    let baseline_requests = ROWS as u64;
    baseline_tokens *= (ROWS / BASELINE_ROWS) as u64;
    fake.reset();

    // semsql over the wire.
    let server = support::start().await;
    let db = &server.client;
    db.batch_execute(&format!(
        "CREATE MODEL fake WITH (base_url = '{}', model = 'fake-1', rows_per_request = {ROWS_PER_REQUEST}, \
         concurrency = {CONCURRENCY}); SET semsql.model = 'fake'; SET semsql.progress_interval_ms = 0; \
         CREATE TABLE reviews (id INT, body TEXT)",
        fake.base_url()
    ))
    .await
    .expect("setup");
    for (chunk_index, chunk) in rows.chunks(1000).enumerate() {
        let values: Vec<String> = chunk
            .iter()
            .enumerate()
            .map(|(i, body)| {
                format!(
                    "({}, '{}')",
                    chunk_index * 1000 + i,
                    body.replace('\'', "''")
                )
            })
            .collect();
        db.batch_execute(&format!("INSERT INTO reviews VALUES {}", values.join(",")))
            .await
            .expect("insert");
    }
    let query = format!("SELECT id, llm_map('{PROMPT}', body) FROM reviews");
    let run = |label: &'static str| {
        let db = &db;
        let fake = &fake;
        let query = &query;
        async move {
            fake.reset();
            let started = Instant::now();
            let answered = db.query(query.as_str(), &[]).await.expect("query");
            let wall = started.elapsed();
            assert_eq!(answered.len(), ROWS, "{label}");
            let usage = db
                .query_one(
                    "SELECT requests, input_tokens + output_tokens, retries, cache_hits \
                     FROM semsql.llm_queries ORDER BY query_id DESC LIMIT 1",
                    &[],
                )
                .await
                .expect("usage");
            let requests = fake.stats().chat_requests;
            assert_eq!(
                requests as i64,
                usage.get::<_, i64>(0),
                "{label}: counted requests"
            );
            (
                wall,
                requests,
                usage.get::<_, i64>(1),
                usage.get::<_, i64>(2),
                usage.get::<_, i64>(3),
            )
        }
    };
    let (cold_wall, cold_requests, cold_tokens, cold_retries, _) = run("cold").await;
    let (warm_wall, warm_requests, warm_tokens, _, warm_hits) = run("warm").await;
    fake.configure(Behaviour {
        latency_ms: LATENCY_MS,
        rate_429: 0.05,
        rate_malformed: 0.02,
        ..Behaviour::default()
    })
    .expect("faults");
    db.batch_execute("SET semsql.cache = 'off'")
        .await
        .expect("cache off");
    let (faulty_wall, faulty_requests, faulty_tokens, faulty_retries, _) = run("faults").await;
    let faults = fake.stats().faults;

    let ideal = (cold_requests as f64 / CONCURRENCY as f64).ceil() * LATENCY_MS as f64 / 1000.0;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("10,000 rows ({unique} distinct), fake server latency {LATENCY_MS} ms, {ROWS_PER_REQUEST} rows/request, concurrency {CONCURRENCY}\n");
    println!("| run | requests | tokens | wall time | vs. baseline |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| (a) one row per request, sequential (1,000 rows measured, ×10) | {baseline_requests} | {baseline_tokens} | {baseline_wall:.1} s | 1× |"
    );
    println!(
        "| (b) semsql, cold cache | {cold_requests} (+{cold_retries} retries) | {cold_tokens} | {:.2} s | {:.0}× faster, {:.0}× fewer requests |",
        cold_wall.as_secs_f64(),
        baseline_wall / cold_wall.as_secs_f64(),
        baseline_requests as f64 / cold_requests.max(1) as f64
    );
    println!(
        "| (c) semsql, warm cache | {warm_requests} | {warm_tokens} | {:.0} ms | {:.0}× faster |",
        ms(warm_wall),
        baseline_wall / warm_wall.as_secs_f64()
    );
    println!(
        "| (d) semsql, cache off, 5% 429 + 2% malformed answers ({faults} faults) | {faulty_requests} ({faulty_retries} retried) | {faulty_tokens} | {:.2} s | {:.0}× faster |",
        faulty_wall.as_secs_f64(),
        baseline_wall / faulty_wall.as_secs_f64()
    );
    println!();
    println!(
        "Targets: requests ≤ distinct/16 = {} → {cold_requests}; cold wall ≤ 1.5 × ⌈requests/concurrency⌉ × latency = {:.2} s → {:.2} s ({:.2}× the ideal {ideal:.2} s); warm: 0 requests → {warm_requests}, < 100 ms → {:.0} ms ({warm_hits} cache hits).",
        unique.div_ceil(ROWS_PER_REQUEST),
        1.5 * ideal,
        cold_wall.as_secs_f64(),
        cold_wall.as_secs_f64() / ideal,
        ms(warm_wall)
    );
}
