//! psql 15's meta-commands against a server with the demo data, when psql is installed
//! (`.ci/run` installs it, so CI always runs these).

use std::process::Command;

use semsql::config::{Config, FileConfig, Overrides};

use crate::support::TestServer;

fn psql(server: &TestServer, command: &str) -> String {
    psql_with(server, &[], command)
}

/// One value, unaligned and without headers.
fn psql_value(server: &TestServer, query: &str) -> String {
    psql_with(server, &["-t", "-A"], query).trim().to_owned()
}

fn psql_with(server: &TestServer, options: &[&str], command: &str) -> String {
    let output = Command::new("psql")
        .args(options)
        .args(["-h", "127.0.0.1", "-p", &server.addr.port().to_string()])
        .args([
            "-U",
            "semsql",
            "-d",
            "semsql",
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            command,
        ])
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success() && !stderr.contains("ERROR"),
        "psql -c {command:?} failed:\n{stdout}\n{stderr}"
    );
    stdout
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
