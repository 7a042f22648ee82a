//! The query rewriter end to end: a real server, tokio-postgres, and the fake model over HTTP
//! answering each prompt of the ensemble with a scripted rewrite (good, wrong, broken, no-op).

use std::time::{Duration, Instant};

use semsql::fake_llm::{Behaviour, FakeLlm, ScriptedAnswer};
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::support::{connect_with_notices, sqlstate, TestServer};

/// Texts that only one prompt of the ensemble contains.
const BARE: &str = "Rewrite SQL queries for better performance.";
const EXPERT: &str = "A rewrite must be semantically equivalent";
const STEP_BY_STEP: &str = "Work step by step";
const DATABASE_SENSITIVE: &str = "Apply the rules below";

/// The newest order(s): quadratic as written (a nested-loop anti join).
const NEWEST: &str = "SELECT a.id FROM orders a WHERE NOT EXISTS \
                      (SELECT 1 FROM orders b WHERE b.id > a.id)";

/// Three tables joined in the order that builds the large intermediate result first.
const JOINED: &str = "SELECT count(*) AS n FROM big_a a JOIN big_b b ON a.k = b.k \
                      JOIN tiny t ON a.c = t.id WHERE t.flag = 1";
/// The same inner joins, the selective table first.
const JOINED_FAST: &str = "SELECT count(*) AS n FROM tiny t JOIN big_a a ON a.c = t.id \
                           JOIN big_b b ON a.k = b.k WHERE t.flag = 1";

fn answer(prompt: &str, query_marker: &str, sql: &str) -> ScriptedAnswer {
    ScriptedAnswer {
        when: vec![prompt.to_owned(), query_marker.to_owned()],
        answer: format!("Here is a faster form.\n```sql\n{sql}\n```"),
    }
}

fn scripted() -> Vec<ScriptedAnswer> {
    vec![
        // Faster, but wrong when ids are NULL (NOT EXISTS keeps NULL ids, `=` drops them).
        answer(
            BARE,
            "b.id > a.id",
            "SELECT id FROM orders WHERE id = (SELECT max(id) FROM orders)",
        ),
        // Faster and right.
        answer(
            EXPERT,
            "b.id > a.id",
            "SELECT a.id FROM orders a WHERE a.id IS NULL OR a.id >= (SELECT max(b.id) FROM orders b)",
        ),
        // "Already efficient": the query back.
        answer(STEP_BY_STEP, "b.id > a.id", NEWEST),
        ScriptedAnswer {
            when: vec![DATABASE_SENSITIVE.to_owned(), "b.id > a.id".to_owned()],
            answer: "```sql\nSELEC id FROM orders\n```".to_owned(),
        },
        // A join in a slow order and the same join in a fast one: proven equivalent.
        answer(EXPERT, "t.flag = 1", JOINED_FAST),
        // A second query, with four subtly wrong rewrites.
        answer(
            BARE,
            "status = 'open'",
            "SELECT DISTINCT o.customer FROM orders o JOIN customers c ON o.customer = c.id \
             WHERE c.country = 'FR'",
        ),
        answer(
            EXPERT,
            "status = 'open'",
            "SELECT DISTINCT o.customer FROM orders o JOIN customers c ON o.customer = c.id \
             WHERE o.status = 'open'",
        ),
        answer(
            STEP_BY_STEP,
            "status = 'open'",
            "SELECT o.customer FROM orders o LEFT JOIN customers c ON o.customer = c.id \
             WHERE o.status = 'open' AND c.country = 'FR'",
        ),
        answer(
            DATABASE_SENSITIVE,
            "status = 'open'",
            "SELECT DISTINCT o.customer FROM orders o INNER JOIN customers c ON o.customer = c.id \
             WHERE o.status = 'open' AND c.country = 'FR' AND o.total > 0",
        ),
    ]
}

/// The fake model with the scripted rewrites, and a server.
async fn start() -> (FakeLlm, TestServer) {
    let fake = FakeLlm::start(
        "127.0.0.1:0",
        Behaviour {
            answers: scripted(),
            ..Behaviour::default()
        },
    )
    .await
    .unwrap();
    (fake, TestServer::start().await)
}

async fn setup(
    server: &TestServer,
    fake: &FakeLlm,
) -> (Client, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let (client, notices) = connect_with_notices(&server.connection_string()).await;
    client
        .batch_execute(&format!(
            "CREATE MODEL rewriter WITH (base_url = '{}', model = 'fake-1', rows_per_request = 16, retry_base_ms = 20); \
             SET semsql.model = 'rewriter'; \
             CREATE TABLE customers (id INT, country TEXT); \
             INSERT INTO customers SELECT v, CASE WHEN v % 4 = 0 THEN 'FR' ELSE 'DE' END \
               FROM generate_series(1, 200) AS t(v); \
             CREATE TABLE orders (id INT, customer INT, total DOUBLE, status TEXT); \
             INSERT INTO orders SELECT v, v % 230 + 1, (v % 50) * 1.0, \
               CASE WHEN v % 3 = 0 THEN 'open' ELSE 'done' END FROM generate_series(1, 3000) AS t(v)",
            fake.base_url()
        ))
        .await
        .expect("setup");
    (client, notices)
}

/// EXPLAIN REWRITE's rows as (candidate, prompt, verdict, checks, sql).
async fn explain_rewrite(client: &Client, sql: &str) -> Vec<[String; 5]> {
    let messages = client
        .simple_query(&format!("EXPLAIN REWRITE {sql}"))
        .await
        .expect("EXPLAIN REWRITE runs");
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => {
                Some([0, 1, 2, 3, 7].map(|i| row.get(i).unwrap_or("").to_owned()))
            }
            _ => None,
        })
        .collect()
}

async fn plan_text(client: &Client, sql: &str) -> String {
    client
        .simple_query(&format!("EXPLAIN {sql}"))
        .await
        .unwrap()
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row.get(1).unwrap_or("").to_owned()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn ids(client: &Client, sql: &str) -> Vec<String> {
    let mut ids: Vec<String> = client
        .simple_query(sql)
        .await
        .unwrap()
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row.get(0).unwrap_or("NULL").to_owned()),
            _ => None,
        })
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_rewrite_accepts_the_right_rewrite_and_rejects_the_rest() {
    let (fake, server) = start().await;
    let (client, notices) = setup(&server, &fake).await;

    let rows = explain_rewrite(&client, NEWEST).await;
    assert_eq!(rows.len(), 5, "{rows:#?}");
    assert_eq!(rows[0][2], "original");
    let by_prompt = |name: &str| rows.iter().find(|r| r[1] == name).unwrap().clone();
    let bare = by_prompt("bare");
    assert_eq!(bare[2], "rejected", "{bare:?}");
    // Refuted on a tiny database made from the query pair, shown as the counterexample: a
    // NULL id has no greater id, so NOT EXISTS keeps it; `= max(id)` does not.
    assert!(
        bare[3].contains("V3 results: fail (differs on: orders(id = NULL"),
        "{bare:?}"
    );
    let expert = by_prompt("expert");
    assert_eq!(expert[2], "fastest tested", "{expert:?}");
    assert!(expert[3].contains("V4 speed: pass"), "{expert:?}");
    let no_op = by_prompt("step_by_step");
    assert_eq!(no_op[2], "rejected");
    assert!(no_op[3].contains("V2 no-op: fail"), "{no_op:?}");
    let broken = by_prompt("database_sensitive");
    assert!(broken[3].starts_with("V0 syntax: fail"), "{broken:?}");
    assert_eq!(fake.stats().chat_requests, 4);
    let summary = notices.lock().unwrap().join("\n");
    assert!(
        summary.contains("fastest tested: candidate 2") && summary.contains("not proven"),
        "{summary}"
    );
    assert!(summary.contains("4 LM requests"), "{summary}");

    // Four subtly wrong rewrites of another query: all rejected, none by luck.
    let second = "SELECT DISTINCT o.customer FROM orders o LEFT JOIN customers c \
                  ON o.customer = c.id WHERE o.status = 'open' AND c.country = 'FR'";
    let rows = explain_rewrite(&client, second).await;
    assert_eq!(rows.len(), 5, "{rows:#?}");
    for row in &rows[1..] {
        assert_ne!(row[2], "fastest tested", "{row:?}");
        assert_ne!(row[2], "tested", "{row:?}");
    }
    // The changed predicate, the dropped predicate and the lost DISTINCT return other rows.
    // The added `total > 0` returns the same rows on the data (every customer has some order
    // above 0), but not on a small database with a total of 0, shown as the counterexample.
    for row in &rows[1..] {
        assert!(row[3].contains("V3 results: fail"), "{row:?}");
    }
    assert!(
        rows[4][3].contains("V3 results: fail (differs on: ") && rows[4][3].contains("total = "),
        "{:?}",
        rows[4]
    );

    // advise (the default): the query runs as written, with a NOTICE about the known rewrite.
    notices.lock().unwrap().clear();
    let expected = ids(&client, NEWEST).await;
    assert_eq!(expected, vec!["3000".to_owned()]);
    assert!(
        notices
            .lock()
            .unwrap()
            .iter()
            .any(|n| n.contains("tested rewrite") && n.contains("not proven")),
        "{:?}",
        notices.lock().unwrap()
    );
    assert!(plan_text(&client, NEWEST)
        .await
        .contains("NestedLoopJoinExec"));

    // auto: a tested rewrite is not proven equivalent, so the query still runs as written
    // (EXPLAIN shows the plan that runs), and a NOTICE says why.
    client
        .batch_execute("SET semsql.rewrite = 'auto'")
        .await
        .unwrap();
    notices.lock().unwrap().clear();
    assert_eq!(ids(&client, NEWEST).await, expected);
    assert!(
        notices
            .lock()
            .unwrap()
            .iter()
            .any(|n| n.contains("auto runs only rewrites proven equivalent")),
        "{:?}",
        notices.lock().unwrap()
    );
    assert!(plan_text(&client, NEWEST)
        .await
        .contains("NestedLoopJoinExec"));
    // A commit after the search cannot make auto answer wrongly: the original runs. And the
    // tested rewrite rested on the data as it was, so the commit drops it: no NOTICE now.
    client
        .batch_execute(
            "INSERT INTO orders SELECT v, 1, 1.0, 'done' FROM generate_series(3001, 3100) AS t(v)",
        )
        .await
        .unwrap();
    notices.lock().unwrap().clear();
    ids(&client, NEWEST).await;
    assert!(
        !notices
            .lock()
            .unwrap()
            .iter()
            .any(|n| n.contains("tested rewrite")),
        "{:?}",
        notices.lock().unwrap()
    );
    let direct = {
        client
            .batch_execute("SET semsql.rewrite = 'off'")
            .await
            .unwrap();
        let direct = ids(&client, NEWEST).await;
        client
            .batch_execute("SET semsql.rewrite = 'auto'")
            .await
            .unwrap();
        direct
    };
    assert_eq!(ids(&client, NEWEST).await, direct);

    // Bad input gets its own SQLSTATE, and asks the model nothing.
    let before = fake.stats().chat_requests;
    for (sql, state) in [
        ("EXPLAIN REWRITE SELEC 1", "42601"),
        ("EXPLAIN REWRITE SELECT * FROM missing", "42P01"),
        (
            "EXPLAIN REWRITE INSERT INTO orders VALUES (1, 1, 1.0, 'x')",
            "0A000",
        ),
        ("EXPLAIN REWRITE SELECT 1; SELECT 2", "0A000"),
    ] {
        let err = client.simple_query(sql).await.unwrap_err();
        assert_eq!(sqlstate(&err), state, "{sql}: {err:?}");
    }
    assert_eq!(fake.stats().chat_requests, before);

    // off: no rewriting, and EXPLAIN REWRITE says why it cannot run.
    client
        .batch_execute("SET semsql.rewrite = 'off'")
        .await
        .unwrap();
    let err = client
        .simple_query(&format!("EXPLAIN REWRITE {NEWEST}"))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "55000");
    let err = client
        .simple_query("SET semsql.rewrite = 'sometimes'")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "22023");
    // The extended protocol does not take EXPLAIN REWRITE, and says so.
    let err = client
        .query(&format!("EXPLAIN REWRITE {NEWEST}"), &[])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "0A000");
    // The connection is fine.
    assert_eq!(ids(&client, "SELECT 1").await, vec!["1".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_mode_searches_a_slow_query_in_the_background() {
    let (fake, server) = start().await;
    let (client, notices) = setup(&server, &fake).await;
    client
        .batch_execute("SET semsql.rewrite = 'auto'; SET semsql.rewrite_min_ms = 0")
        .await
        .unwrap();
    // The first run is the original's; it starts the search. Once it has ended, running the
    // query says a tested rewrite is known, and still runs the query as written: auto uses
    // only proven rewrites.
    let expected = ids(&client, NEWEST).await;
    let started = Instant::now();
    loop {
        notices.lock().unwrap().clear();
        assert_eq!(ids(&client, NEWEST).await, expected);
        if notices
            .lock()
            .unwrap()
            .iter()
            .any(|n| n.contains("tested rewrite"))
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the background search never finished ({} requests)",
            fake.stats().chat_requests
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(fake.stats().chat_requests, 4);
    assert!(plan_text(&client, NEWEST)
        .await
        .contains("NestedLoopJoinExec"));
    // Searched once: later runs ask the model nothing.
    assert_eq!(ids(&client, NEWEST).await, expected);
    assert_eq!(fake.stats().chat_requests, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_search_stops_at_its_request_cap_and_a_dead_model_leaves_the_query_alone() {
    let (fake, server) = start().await;
    let (client, notices) = setup(&server, &fake).await;
    client
        .batch_execute("SET semsql.rewrite_max_requests = 2")
        .await
        .unwrap();
    let rows = explain_rewrite(&client, NEWEST).await;
    assert_eq!(rows.len(), 3, "{rows:#?}");
    assert_eq!(fake.stats().chat_requests, 2);
    assert!(notices
        .lock()
        .unwrap()
        .iter()
        .any(|n| n.contains("2 LM requests")));
    // A model that cannot be reached: every candidate says so, and the query still runs.
    client
        .batch_execute(
            "CREATE MODEL gone WITH (base_url = 'http://127.0.0.1:9/v1', model = 'x', \
             max_retries = 0, timeout_ms = 500); SET semsql.model = 'gone'; \
             RESET semsql.rewrite_max_requests",
        )
        .await
        .unwrap();
    let rows = explain_rewrite(&client, NEWEST).await;
    assert_eq!(rows.len(), 5);
    assert!(
        rows[1..]
            .iter()
            .all(|r| r[2] == "untested" && r[3].starts_with("V0 syntax: untested (no answer")),
        "{rows:#?}"
    );
    assert_eq!(ids(&client, NEWEST).await, vec!["3000".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_runs_a_proven_rewrite_through_commits_and_drops_it_on_ddl() {
    let (fake, server) = start().await;
    let (client, notices) = setup(&server, &fake).await;
    // The written order builds 1.8 million joined rows before the selective table cuts them
    // to 9,000; the rewrite starts from the one selected row. The gap is wide enough that a
    // loaded machine does not turn V4 around.
    client
        .batch_execute(
            "CREATE TABLE big_a (k INT, c INT); \
             INSERT INTO big_a SELECT v % 20, v % 200 + 1 FROM generate_series(1, 6000) AS t(v); \
             CREATE TABLE big_b (k INT, w INT); \
             INSERT INTO big_b SELECT v % 20, v FROM generate_series(1, 6000) AS t(v); \
             CREATE TABLE tiny (id INT, flag INT); \
             INSERT INTO tiny SELECT v, CASE WHEN v = 7 THEN 1 ELSE 0 END \
               FROM generate_series(1, 200) AS t(v)",
        )
        .await
        .unwrap();
    let rows = explain_rewrite(&client, JOINED).await;
    let expert = rows.iter().find(|r| r[1] == "expert").unwrap();
    assert_eq!(expert[2], "chosen", "{rows:#?}");
    assert!(expert[3].contains("proof: equivalent"), "{expert:?}");
    let summary = notices.lock().unwrap().join("\n");
    assert!(summary.contains("proven equivalent"), "{summary}");

    // advise points the proven rewrite out; the query runs as written.
    notices.lock().unwrap().clear();
    let expected = ids(&client, JOINED).await;
    assert_eq!(expected, vec!["9000".to_owned()]);
    assert!(
        notices
            .lock()
            .unwrap()
            .iter()
            .any(|n| n.contains("proven equivalent") && n.contains("'auto'")),
        "{:?}",
        notices.lock().unwrap()
    );
    let written = plan_text(&client, JOINED).await;
    let fast = plan_text(&client, JOINED_FAST).await;
    assert_ne!(written, fast);

    // auto runs it in the query's place (EXPLAIN shows the plan that runs), same answer.
    client
        .batch_execute("SET semsql.rewrite = 'auto'")
        .await
        .unwrap();
    assert_eq!(plan_text(&client, JOINED).await, fast);
    assert_eq!(ids(&client, JOINED).await, expected);
    let fast_plan = || plan_text(&client, JOINED_FAST);

    // A commit does not drop a proven rewrite: it is right on every database.
    client
        .batch_execute("INSERT INTO big_a VALUES (1, 7), (NULL, 7), (2, NULL)")
        .await
        .unwrap();
    assert_eq!(plan_text(&client, JOINED).await, fast_plan().await);
    let after = ids(&client, JOINED).await;
    client
        .batch_execute("SET semsql.rewrite = 'off'")
        .await
        .unwrap();
    assert_eq!(ids(&client, JOINED).await, after);
    assert_eq!(after, vec!["9300".to_owned()]);

    // DDL on a table it reads drops it: the query runs as written again.
    client
        .batch_execute(
            "SET semsql.rewrite = 'auto'; DROP TABLE tiny; CREATE TABLE tiny (id INT, flag INT); \
             INSERT INTO tiny VALUES (7, 1)",
        )
        .await
        .unwrap();
    assert_ne!(
        plan_text(&client, JOINED).await,
        plan_text(&client, JOINED_FAST).await
    );
    assert_eq!(fake.stats().chat_requests, 4);
}
