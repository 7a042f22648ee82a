//! psql 15's meta-commands against a server with the demo data, when psql is installed
//! (`.ci/run` installs it, so CI always runs these).

use semsql::config::{Config, FileConfig, Overrides};

use crate::support::{psql_command, psql_succeeded, TestServer};

fn psql(server: &TestServer, command: &str) -> String {
    psql_with(server, &[], command)
}

/// One value, unaligned and without headers.
fn psql_value(server: &TestServer, query: &str) -> String {
    psql_with(server, &["-t", "-A"], query).trim().to_owned()
}

fn psql_with(server: &TestServer, options: &[&str], command: &str) -> String {
    let output = psql_command(server.addr.port())
        .args(options)
        .args(["-c", command])
        .output()
        .expect("psql runs");
    psql_succeeded(output, &format!("-c {command:?}"))
}

// psql blocks its thread; the server needs another one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_meta_commands_on_the_demo_data() {
    crate::support::require_tool("psql", "--version", "apt-get install postgresql-client");
    let dir = tempfile::tempdir().unwrap();
    let overrides = Overrides {
        listen: Some("127.0.0.1:0".into()),
        data_dir: Some(dir.path().to_owned()),
        demo: true,
        ..Overrides::default()
    };
    let server =
        TestServer::start_with(Config::resolve(FileConfig::default(), overrides).unwrap()).await;

    let tables = psql(&server, "\\dt");
    assert!(
        tables.contains("reviews") && tables.contains("movies"),
        "{tables}"
    );
    let described = psql(&server, "\\d reviews");
    for column in ["id", "product", "stars", "review_date", "body"] {
        assert!(described.contains(column), "{described}");
    }
    assert!(
        described.contains("integer") && described.contains("text"),
        "{described}"
    );
    // A vector column is pgvector's type with its size, as \d prints it with pgvector.
    psql(
        &server,
        "CREATE TABLE embedded (id INT, e vector(3), note TEXT)",
    );
    let described = psql(&server, "\\d embedded");
    assert!(
        described.contains(" e      | vector(3) |") && described.contains(" note   | text      |"),
        "{described}"
    );
    // An HNSW index is listed as PostgreSQL lists pgvector's in \di, \d, pg_indexes and
    // pg_get_indexdef.
    psql(
        &server,
        "CREATE INDEX embedded_e ON embedded USING hnsw (e vector_cosine_ops) WITH (m = 8)",
    );
    let listed = psql(&server, "\\di");
    assert!(
        listed.contains("embedded_e") && listed.contains("index"),
        "{listed}"
    );
    let definition = "CREATE INDEX embedded_e ON public.embedded USING hnsw (e vector_cosine_ops) \
                      WITH (m='8', ef_construction='64')";
    assert_eq!(
        psql_value(
            &server,
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'embedded' AND indexname = 'embedded_e'"
        ),
        definition
    );
    assert_eq!(
        psql_value(
            &server,
            "SELECT pg_get_indexdef(oid) FROM pg_class WHERE relname = 'embedded_e' AND relkind = 'i'"
        ),
        definition
    );
    // Keys, defaults and indexes under \d, as PostgreSQL 15 prints them for the same table
    // (less pgvector's index).
    psql(
        &server,
        "CREATE TABLE keyed (id INT PRIMARY KEY, a INT, b TEXT DEFAULT 'x', \
         price NUMERIC(10,2) DEFAULT 0, e vector(3), UNIQUE (a, b))",
    );
    psql(
        &server,
        "CREATE INDEX keyed_e ON keyed USING hnsw (e vector_l2_ops)",
    );
    let described = psql(&server, "\\d keyed");
    for line in [
        " id     | integer       |           | not null | ",
        " b      | text          |           |          | 'x'::text",
        " price  | numeric(10,2) |           |          | 0",
        "Indexes:",
        "    \"keyed_pkey\" PRIMARY KEY, btree (id)",
        "    \"keyed_a_b_key\" UNIQUE CONSTRAINT, btree (a, b)",
        "    \"keyed_e\" hnsw (e vector_l2_ops) WITH (m='16', ef_construction='64')",
    ] {
        assert!(described.contains(line), "{line:?} not in {described}");
    }
    assert_eq!(
        psql_value(
            &server,
            "SELECT string_agg(pg_get_constraintdef(oid), '; ' ORDER BY conname) \
             FROM pg_constraint WHERE conrelid = 'keyed'::regclass"
        ),
        "UNIQUE (a, b); PRIMARY KEY (id)"
    );
    // \d+ adds storage, compression, statistics target and description columns, and the
    // access method, as PostgreSQL 15 prints them (its toast-options subquery unnests a column
    // of the outer query, which DataFusion plans once decorrelated).
    let verbose = psql(&server, "\\d+ keyed");
    for line in [
        "Column |     Type      | Collation | Nullable |  Default  | Storage  | Compression | Stats target | Description",
        " id     | integer       |           | not null |           | plain    |             |              | ",
        " b      | text          |           |          | 'x'::text | extended |             |              | ",
        " price  | numeric(10,2) |           |          | 0         | main     |             |              | ",
        "    \"keyed_pkey\" PRIMARY KEY, btree (id)",
        "Access method: heap",
    ] {
        assert!(verbose.contains(line), "{line:?} not in {verbose}");
    }
    let schemas = psql(&server, "\\dn");
    assert!(schemas.contains("public"), "{schemas}");
    psql(&server, "\\l");
    // psql prints the command tag, as PostgreSQL answers RESET with one.
    assert_eq!(
        psql(&server, "RESET datafusion.execution.batch_size").trim(),
        "RESET"
    );
    psql(&server, "\\df");
    let counted = psql(&server, "SELECT count(*) FROM reviews WHERE stars <= 2");
    assert!(counted.contains("(1 row)"), "{counted}");

    // \copy out and back in, in CSV with a header and in text format.
    let csv = dir.path().join("movies.csv");
    let text = dir.path().join("movies.txt");
    let out = psql(
        &server,
        &format!("\\copy movies to '{}' csv header", csv.display()),
    );
    assert!(out.contains("COPY 100"), "{out}");
    psql(&server, &format!("\\copy movies to '{}'", text.display()));
    psql(&server, "CREATE TABLE movies_copy (id INT, title TEXT, year INT, genre TEXT, rating DOUBLE, plot TEXT)");
    let back = psql(
        &server,
        &format!("\\copy movies_copy from '{}' csv header", csv.display()),
    );
    assert!(back.contains("COPY 100"), "{back}");
    psql(
        &server,
        &format!("\\copy movies_copy from '{}'", text.display()),
    );
    let differing = psql_value(
        &server,
        "SELECT count(*) FROM (SELECT * FROM movies_copy EXCEPT ALL (SELECT * FROM movies UNION ALL SELECT * FROM movies)) AS d",
    );
    assert_eq!(differing, "0");
    assert_eq!(
        psql_value(&server, "SELECT count(*) FROM movies_copy"),
        "200"
    );
    server.stop().await;
}

/// `\dt` shows each table's real owner and `\dp` its grants as PostgreSQL prints them; role
/// OIDs are the same on every connection and after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_shows_owners_and_privileges() {
    crate::support::require_tool("psql", "--version", "apt-get install postgresql-client");
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), FileConfig::default()).await;
    let admin = server.client().await;
    admin
        .batch_execute(
            "CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN;
             GRANT CREATE ON SCHEMA public TO alice",
        )
        .await
        .unwrap();
    let alice = crate::support::connect(&format!(
        "host=127.0.0.1 port={} user=alice dbname=semsql",
        server.addr.port()
    ))
    .await;
    alice
        .batch_execute(
            "CREATE TABLE notes (id int); GRANT SELECT ON notes TO bob;
             GRANT SELECT, INSERT ON notes TO public",
        )
        .await
        .unwrap();
    admin
        .batch_execute("CREATE TABLE plain (id int)")
        .await
        .unwrap();
    let tables = psql_with(&server, &["-t", "-A"], "\\dt");
    assert!(tables.contains("public|notes|table|alice"), "{tables}");
    // The test client's role (let in by trust) made it.
    assert!(tables.contains("public|plain|table|tester"), "{tables}");
    // PostgreSQL 15 prints exactly this for the same statements.
    let privileges = psql_with(&server, &["-t", "-A"], "\\dp notes");
    assert_eq!(
        privileges.trim(),
        "public|notes|table|alice=arwdDxt/alice\nbob=r/alice\n=ar/alice||"
    );
    // Nothing granted: an empty cell, as PostgreSQL's default privileges.
    let plain = psql_with(&server, &["-t", "-A"], "\\dp plain");
    assert_eq!(plain.trim(), "public|plain|table|||");
    let oid = psql_value(&server, "SELECT oid FROM pg_roles WHERE rolname = 'alice'");
    assert_ne!(oid, "0");
    assert_eq!(
        psql_value(
            &server,
            "SELECT relowner FROM pg_class WHERE relname = 'notes'"
        ),
        oid
    );
    assert_eq!(
        psql_value(&server, &format!("SELECT pg_get_userbyid({oid})")),
        "alice"
    );
    // pg_user: the roles that may log in (not the predefined pg_* roles), passwords hidden.
    assert_eq!(
        psql_with(
            &server,
            &["-t", "-A"],
            "SELECT usename, usesysid, usesuper, passwd FROM pg_user ORDER BY usename"
        )
        .trim(),
        format!(
            "alice|{oid}|f|********\nbob|{}|f|********",
            psql_value(&server, "SELECT oid FROM pg_roles WHERE rolname = 'bob'")
        )
    );
    // \du lists the roles with their groups, as PostgreSQL 15 prints it for the same roles.
    admin
        .batch_execute("CREATE ROLE readers; GRANT readers TO alice")
        .await
        .unwrap();
    assert_eq!(
        psql_with(&server, &["-t", "-A"], "\\du").trim(),
        "alice||{readers}\nbob||{}\nreaders|Cannot login|{}"
    );
    server.stop().await;
    let server = TestServer::start_in(dir.path(), FileConfig::default()).await;
    assert_eq!(
        psql_value(&server, "SELECT oid FROM pg_roles WHERE rolname = 'alice'"),
        oid
    );
    server.stop().await;
}
