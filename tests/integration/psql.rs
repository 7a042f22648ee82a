//! psql 15's meta-commands against a server with the demo data, when psql is installed
//! (`.ci/run` installs it, so CI always runs these).

use std::process::Command;

use semsql::config::{Config, FileConfig, Overrides};

use crate::support::TestServer;

fn psql_available() -> bool {
    Command::new("psql")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn psql(server: &TestServer, command: &str) -> String {
    let output = Command::new("psql")
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
    if !psql_available() {
        eprintln!("psql is not installed; skipping (CI installs it)");
        return;
    }
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
    psql(&server, "\\df");
    let counted = psql(&server, "SELECT count(*) FROM reviews WHERE stars <= 2");
    assert!(counted.contains("(1 row)"), "{counted}");
    server.stop().await;
}
