//! Vector search benchmark on issue 5's shape: 100,000 seeded 128-dimension vectors, clustered
//! (100 Gaussian clusters) and uniform, 200 queries, top 10 by L2 distance.
//!
//! Measured per data set: the exact scan (`ORDER BY embedding <-> '[...]' LIMIT 10`) in queries
//! per second over the wire (tokio-postgres on loopback, one query at a time, as the pgvector
//! anchor was measured with psycopg) and in-process (the engine's session, no wire), its recall@10
//! against a brute-force truth, and the baseline measured in the same run: the same brute force as
//! a plain Rust loop over one `Vec<f32>`, the cost of the arithmetic alone.
//!
//! Then the HNSW index from SQL, over the wire: `CREATE INDEX ... USING hnsw (embedding
//! vector_l2_ops) WITH (m = 16, ef_construction = 64)` (build time, the graph's memory), and
//! recall@10 and queries per second of the same query at `SET hnsw.ef_search` 40, 100 and 200,
//! and with a filter that keeps 1 row in 10 (the graph, widening its beam) or 1 in 100 (an
//! exact scan of the matching rows), each as a ratio to the exact scan measured above.
//!
//! Run: `cargo bench --bench vectors` (prints Markdown rows for docs/benchmarks.md). Smaller:
//! `SEMSQL_BENCH_ROWS=20000 cargo bench --bench vectors`.

#[path = "support/mod.rs"]
mod support;

use std::collections::HashSet;
use std::time::Instant;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int32Type;
use semsql::engine::catalog::DurableSchema;

const DIMS: usize = 128;
const CLUSTERS: usize = 100;
const QUERIES: usize = 200;
const K: usize = 10;

/// SplitMix64: a small seeded generator, so every run sees the same vectors.
struct Seeded(u64);

impl Seeded {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    fn uniform(&mut self) -> f32 {
        ((self.next() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f32 {
        let u1 = ((self.next() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let u2 = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }
}

/// `rows` data vectors and `QUERIES` query vectors, drawn the same way.
fn data_set(clustered: bool, rows: usize, seed: u64) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let mut rng = Seeded(seed);
    let centers: Vec<Vec<f32>> = (0..CLUSTERS)
        .map(|_| (0..DIMS).map(|_| rng.uniform()).collect())
        .collect();
    let draw = |rng: &mut Seeded| -> Vec<f32> {
        if clustered {
            let center = &centers[(rng.next() % CLUSTERS as u64) as usize];
            center.iter().map(|c| c + 0.1 * rng.normal()).collect()
        } else {
            (0..DIMS).map(|_| rng.uniform()).collect()
        }
    };
    let data = (0..rows).map(|_| draw(&mut rng)).collect();
    let queries = (0..QUERIES).map(|_| draw(&mut rng)).collect();
    (data, queries)
}

fn text(vector: &[f32]) -> String {
    let parts: Vec<String> = vector.iter().map(|x| format!("{x}")).collect();
    format!("[{}]", parts.join(","))
}

/// The exact top k ids by L2 distance, as a plain loop (the baseline).
fn brute_force(data: &[Vec<f32>], query: &[f32]) -> Vec<i32> {
    let mut scored: Vec<(f32, i32)> = data
        .iter()
        .enumerate()
        .map(|(id, v)| {
            let d: f32 = v.iter().zip(query).map(|(a, b)| (a - b) * (a - b)).sum();
            (d, id as i32)
        })
        .collect();
    scored.select_nth_unstable_by(K, |a, b| a.0.total_cmp(&b.0));
    scored.truncate(K);
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    scored.into_iter().map(|(_, id)| id).collect()
}

/// The exact top k ids among those `keep` accepts.
fn brute_force_where(data: &[Vec<f32>], query: &[f32], keep: impl Fn(i32) -> bool) -> Vec<i32> {
    let mut scored: Vec<(f32, i32)> = data
        .iter()
        .enumerate()
        .filter(|(id, _)| keep(*id as i32))
        .map(|(id, v)| {
            let d: f32 = v.iter().zip(query).map(|(a, b)| (a - b) * (a - b)).sum();
            (d, id as i32)
        })
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    scored.into_iter().take(K).map(|(_, id)| id).collect()
}

/// The bytes the table's index holds, read through the engine the server runs.
async fn index_memory(session: &datafusion::prelude::SessionContext, table: &str) -> usize {
    let schema = session
        .catalog("semsql")
        .and_then(|catalog| catalog.schema("public"))
        .expect("public schema");
    let durable = schema.downcast_ref::<DurableSchema>().expect("durable");
    let table = durable.managed_table(table).expect("table");
    table
        .indexes()
        .iter()
        .map(|index| index.read().memory_bytes())
        .sum()
}

fn recall(found: &[Vec<i32>], truth: &[Vec<i32>]) -> f64 {
    let hits: usize = found
        .iter()
        .zip(truth)
        .map(|(f, t)| {
            let t: HashSet<&i32> = t.iter().collect();
            f.iter().filter(|id| t.contains(id)).count()
        })
        .sum();
    hits as f64 / (truth.len() * K) as f64
}

#[tokio::main]
async fn main() {
    let rows: usize = std::env::var("SEMSQL_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let server = support::start().await;
    let db = &server.client;
    let session = &server.session;

    let mut graph_rows = Vec::new();
    println!("| data | rows | load | baseline: Rust loop | exact scan, over the wire | exact scan, in-process | recall@10 |");
    println!("|---|---|---|---|---|---|---|");
    for (name, clustered, seed) in [("clustered", true, 42), ("uniform", false, 7)] {
        let (data, queries) = data_set(clustered, rows, seed);
        let table = format!("vecs_{name}");
        db.batch_execute(&format!(
            "CREATE TABLE {table} (id INT, embedding vector({DIMS}))"
        ))
        .await
        .expect("create");
        let started = Instant::now();
        for (chunk_index, chunk) in data.chunks(1000).enumerate() {
            let values: Vec<String> = chunk
                .iter()
                .enumerate()
                .map(|(i, v)| format!("({}, '{}')", chunk_index * 1000 + i, text(v)))
                .collect();
            db.batch_execute(&format!("INSERT INTO {table} VALUES {}", values.join(",")))
                .await
                .expect("insert");
        }
        let load = started.elapsed().as_secs_f64();

        let started = Instant::now();
        let truth: Vec<Vec<i32>> = queries.iter().map(|q| brute_force(&data, q)).collect();
        let baseline_qps = QUERIES as f64 / started.elapsed().as_secs_f64();

        let sql = |q: &[f32]| {
            format!(
                "SELECT id FROM {table} ORDER BY embedding <-> '{}' LIMIT {K}",
                text(q)
            )
        };
        let started = Instant::now();
        let mut wire = Vec::with_capacity(QUERIES);
        for q in &queries {
            let found: Vec<i32> = db
                .query(sql(q).as_str(), &[])
                .await
                .expect("query")
                .iter()
                .map(|row| row.get(0))
                .collect();
            wire.push(found);
        }
        let wire_qps = QUERIES as f64 / started.elapsed().as_secs_f64();

        let started = Instant::now();
        let mut in_process = Vec::with_capacity(QUERIES);
        for q in &queries {
            let batches = session
                .sql(&sql(q))
                .await
                .expect("plan")
                .collect()
                .await
                .expect("run");
            let found: Vec<i32> = batches
                .iter()
                .flat_map(|b| b.column(0).as_primitive::<Int32Type>().values().to_vec())
                .collect();
            in_process.push(found);
        }
        let in_process_qps = QUERIES as f64 / started.elapsed().as_secs_f64();
        let wire_recall = recall(&wire, &truth);
        assert!(
            (recall(&in_process, &truth) - wire_recall).abs() < 1e-9,
            "both paths find the same rows"
        );
        println!(
            "| {name} | {rows} | {load:.1} s | {baseline_qps:.0} q/s | {wire_qps:.0} q/s ({:.2}× the baseline) | {in_process_qps:.0} q/s | {wire_recall:.3} |",
            wire_qps / baseline_qps
        );

        // The HNSW index, built and searched from SQL over the wire.
        let started = Instant::now();
        db.batch_execute(&format!(
            "CREATE INDEX {table}_idx ON {table} USING hnsw (embedding vector_l2_ops) \
             WITH (m = 16, ef_construction = 64)"
        ))
        .await
        .expect("create index");
        let build = started.elapsed().as_secs_f64();
        let mut cells = vec![
            name.to_owned(),
            format!("{build:.1} s"),
            format!("{:.0} MB", index_memory(session, &table).await as f64 / 1e6),
        ];
        let plan: Vec<String> = db
            .query(format!("EXPLAIN {}", sql(&queries[0])).as_str(), &[])
            .await
            .expect("explain")
            .iter()
            .map(|row| row.get(1))
            .collect();
        assert!(plan.concat().contains("HnswSearchExec"), "{plan:?}");
        let searches = [
            (40, None),
            (100, None),
            (200, None),
            (40, Some(10)),
            (40, Some(100)),
        ];
        for (ef, one_in) in searches {
            db.batch_execute(&format!("SET hnsw.ef_search = {ef}"))
                .await
                .expect("set ef_search");
            let filter = one_in.map_or(String::new(), |n| format!("WHERE id % {n} = 3"));
            let truth: Vec<Vec<i32>> = match one_in {
                None => truth.clone(),
                Some(n) => queries
                    .iter()
                    .map(|q| brute_force_where(&data, q, |id| id % n == 3))
                    .collect(),
            };
            let started = Instant::now();
            let mut found = Vec::with_capacity(QUERIES);
            for q in &queries {
                let sql = format!(
                    "SELECT id FROM {table} {filter} ORDER BY embedding <-> '{}' LIMIT {K}",
                    text(q)
                );
                let ids: Vec<i32> = db
                    .query(sql.as_str(), &[])
                    .await
                    .expect("query")
                    .iter()
                    .map(|row| row.get(0))
                    .collect();
                found.push(ids);
            }
            let qps = QUERIES as f64 / started.elapsed().as_secs_f64();
            cells.push(format!(
                "{:.3} at {qps:.0} q/s ({:.1}× the exact scan)",
                recall(&found, &truth),
                qps / wire_qps
            ));
        }
        db.batch_execute("RESET hnsw.ef_search")
            .await
            .expect("reset");
        graph_rows.push(format!("| {} |", cells.join(" | ")));
    }
    println!();
    println!("| data | CREATE INDEX (m 16, ef_construction 64) | memory | ef_search 40 | ef_search 100 | ef_search 200 | WHERE 1 row in 10, ef_search 40 | WHERE 1 row in 100, ef_search 40 |");
    println!("|---|---|---|---|---|---|---|---|");
    for row in graph_rows {
        println!("{row}");
    }
}
