//! The bundled demo dataset (`semsql serve --demo`): product reviews and movies with plots,
//! text a newcomer can try semantic SQL on at once. The reviews get an `embedding vector(384)`
//! column from the local embedding model and an HNSW index on it, so nearest-neighbour search
//! answers too; without the model (`semsql fetch-models`) the column is left empty and the
//! server says so.

use datafusion::error::Result;

use super::Engine;

const DEMO_SQL: &str = include_str!("../../data/demo/demo.sql");
const DEMO_TABLES: &[&str] = &["reviews", "movies"];
/// The reviews as the file has them, before their embeddings are added.
const REVIEW_TEXTS: &str = "semsql_demo_review_texts";
/// The reviews' HNSW index, made by the server (index statements are the wire layer's) each
/// time `--demo` starts, so an older demo folder gets it too.
pub const INDEX_SQL: &str = "CREATE INDEX IF NOT EXISTS reviews_embedding_idx ON reviews \
                             USING hnsw (embedding vector_cosine_ops)";

/// Creates the demo tables unless a table of that name already exists (then it is left alone,
/// so restarting with `--demo` never duplicates or overwrites data).
pub async fn load(engine: &Engine) -> Result<()> {
    let session = engine.session(super::CATALOG);
    let mut present = Vec::new();
    for table in DEMO_TABLES {
        present.push(session.table_exist(*table)?);
    }
    if present.iter().all(|exists| *exists) {
        return Ok(());
    }
    let mut current: Option<&str> = None;
    let mut create_reviews = None;
    for statement in DEMO_SQL
        .split(";\n")
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let mut statement = strip_comments(statement);
        if let Some(table) = DEMO_TABLES
            .iter()
            .find(|t| statement.starts_with(&format!("CREATE TABLE {t} ")))
        {
            current = Some(table);
        }
        let skip = current
            .and_then(|table| DEMO_TABLES.iter().position(|t| *t == table))
            .is_some_and(|index| present[index]);
        if skip {
            continue;
        }
        // The reviews go into a table of their own first; `add_embeddings` makes `reviews`.
        if current == Some("reviews") {
            if statement.starts_with("CREATE TABLE reviews ") {
                create_reviews = Some(statement.clone());
            }
            statement = statement
                .replacen(
                    "CREATE TABLE reviews ",
                    &format!("CREATE TABLE {REVIEW_TEXTS} "),
                    1,
                )
                .replacen(
                    "INSERT INTO reviews ",
                    &format!("INSERT INTO {REVIEW_TEXTS} "),
                    1,
                );
        }
        session.sql(&statement).await?.collect().await?;
    }
    if let Some(create_reviews) = create_reviews {
        add_embeddings(&session, &create_reviews).await?;
    }
    tracing::info!("demo tables loaded: {}", DEMO_TABLES.join(", "));
    Ok(())
}

/// `reviews` with an `embedding` column computed by the local model.
async fn add_embeddings(
    session: &datafusion::prelude::SessionContext,
    create_reviews: &str,
) -> Result<()> {
    let columns = create_reviews
        .rfind(')')
        .map_or(create_reviews.len(), |end| end);
    let with_embedding = format!("{}, embedding vector(384))", &create_reviews[..columns]);
    let run = |sql: String| async move { session.sql(&sql).await?.collect().await };
    run(with_embedding).await?;
    tracing::info!("embedding the demo reviews with the local model");
    let embedded = run(format!(
        "INSERT INTO reviews SELECT *, embed(body) FROM {REVIEW_TEXTS}"
    ))
    .await;
    if let Err(err) = embedded {
        tracing::warn!(
            "the demo reviews have no embeddings ({err}); nearest-neighbour queries on them \
             answer nothing until the model is fetched (`semsql fetch-models`) and the demo \
             is loaded again into a new data folder"
        );
        run(format!(
            "INSERT INTO reviews (id, product, category, stars, review_date, body) \
             SELECT * FROM {REVIEW_TEXTS}"
        ))
        .await?;
    }
    run(format!("DROP TABLE {REVIEW_TEXTS}")).await?;
    Ok(())
}

/// What to do next, printed when `--demo` starts: how to connect, three queries to try, and how
/// to give the semantic functions a model.
pub fn first_steps(address: std::net::SocketAddr, default_model: Option<&str>) -> String {
    // A server listening on every address (0.0.0.0, ::) is reached on this machine by loopback.
    let host = match address.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => std::net::Ipv4Addr::LOCALHOST.to_string(),
        ip if ip.is_unspecified() => "::1".to_owned(),
        ip => ip.to_string(),
    };
    let port = address.port();
    let model = match default_model {
        Some(name) => format!(
            "The semantic functions use the model \"{name}\" (SHOW MODELS lists the models)."
        ),
        None => "The semantic functions need a model. Set OPENAI_API_KEY (or OLLAMA_HOST) before \
             starting semsql,\nor point them at any OpenAI-compatible endpoint from psql:\n\
             \n    CREATE MODEL local_llm WITH (base_url = 'http://127.0.0.1:8089/v1', model = 'fake');\n\
             \x20   SET semsql.model = 'local_llm';\n\n\
             For an offline trial, `cargo run --release --bin fake-llm -- --listen 127.0.0.1:8089` serves that \
             endpoint:\nit is rule-based (it matches words, it does not understand text), for \
             trying the plumbing only."
        .to_owned(),
    };
    format!(
        "\n\
         semsql is serving the demo tables reviews (with embeddings and an HNSW index) and movies.\n\
         Connect:  psql -h {host} -p {port} -U semsql -d semsql\n\
         \n\
         Then try:\n\
         \x20 -- nearest neighbours, from the local embedding model (no API key needed)\n\
         \x20 SELECT id, product, left(body, 60) FROM reviews\n\
         \x20 ORDER BY embedding <=> embed('late delivery') LIMIT 5;\n\
         \n\
         \x20 -- a semantic filter: cheap predicates first, one request for many rows\n\
         \x20 SELECT id, left(body, 60) FROM reviews\n\
         \x20 WHERE stars <= 2 AND llm_filter('The review complains about shipping: {{0}}', body) LIMIT 5;\n\
         \n\
         \x20 -- what the query rewriter proposes for a query, with its verdicts\n\
         \x20 EXPLAIN REWRITE SELECT product, count(*) FROM reviews\n\
         \x20 WHERE id IN (SELECT id FROM reviews WHERE stars = 5) GROUP BY product;\n\
         \n\
         {model}\n"
    )
}

fn strip_comments(statement: &str) -> String {
    statement
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
}
