//! Vectors over the wire with tokio-postgres: pgvector's binary format, parameters, the top-k
//! plan, embeddings through the fake server, and vectors surviving a restart.

use std::error::Error;

use semsql::fake_llm::{Behaviour, FakeLlm};
use tokio_postgres::types::{FromSql, Type};

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

    // A query vector as a parameter (`$1::vector(3)` is typed real[], as an array), nearest
    // first.
    let nearest: Vec<i32> = client
        .query(
            "SELECT id FROM items ORDER BY embedding <-> $1::vector(3) LIMIT 2",
            &[&vec![4f32, 5.0, 5.0]],
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
            "CREATE MODEL fake WITH (base_url = '{}', model = 'fake-1'); SET semsql.model = 'fake'; \
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

/// The in-process model (fetched by scripts/fetch-models.sh) gives sentence-transformers'
/// vectors: sentence-transformers' all-MiniLM-L6-v2 scores this pair 0.755.
#[tokio::test]
async fn the_local_model_embeds_offline_like_sentence_transformers() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let row = client
        .query_one(
            "SELECT 1 - (embed('A man is eating food.') <=> embed('A man is eating a piece of bread.')), \
                    vector_dims(embed('x')), vector_norm(embed('A man is eating food.'))",
            &[],
        )
        .await
        .expect("run scripts/fetch-models.sh first: the local embedding model is missing");
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
        format!("{err:?}").contains("scripts/fetch-models.sh"),
        "{err:?}"
    );
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    server.stop().await;
}
