//! SCRAM-SHA-256 password authentication and TLS that refuses to start when it cannot be set up.

use semsql::config::{Config, FileConfig, Overrides};
use semsql::server::auth::{ScramVerifier, DEFAULT_ITERATIONS};
use semsql::server::Server;

use crate::support::{sqlstate, TestServer};

#[tokio::test]
async fn scram_accepts_the_right_password_and_refuses_others() {
    let verifier = ScramVerifier::from_password("s3cret pass", DEFAULT_ITERATIONS).encode();
    let file: FileConfig = toml::from_str(&format!(
        "[[users]]\nname = 'alice'\npassword = '{verifier}'"
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), file).await;
    let port = server.addr.port();

    let good =
        format!("host=127.0.0.1 port={port} user=alice password='s3cret pass' dbname=semsql");
    let client = crate::support::connect(&good).await;
    let row = client.query_one("SELECT 1", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 1);

    for bad in [
        format!("host=127.0.0.1 port={port} user=alice password=wrong dbname=semsql"),
        format!("host=127.0.0.1 port={port} user=mallory password='s3cret pass' dbname=semsql"),
    ] {
        let err = tokio_postgres::connect(&bad, tokio_postgres::NoTls)
            .await
            .err()
            .expect("refused");
        assert_eq!(sqlstate(&err), "28P01", "{err:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn tls_that_cannot_be_set_up_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("server.crt");
    let key = dir.path().join("server.key");
    std::fs::write(&cert, "not a certificate").unwrap();
    std::fs::write(&key, "not a key").unwrap();
    let overrides = Overrides {
        listen: Some("127.0.0.1:0".into()),
        data_dir: Some(dir.path().join("data")),
        tls_cert: Some(cert),
        tls_key: Some(key),
        ..Overrides::default()
    };
    let config = Config::resolve(FileConfig::default(), overrides).unwrap();
    let err = Server::bind(&config).await.err().expect("refuses to start");
    assert!(err.to_string().contains("TLS"), "{err}");
}

/// A real TLS session with psql, using a certificate made by openssl for the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_connects_over_tls() {
    crate::support::require_tool("psql", "--version", "apt-get install postgresql-client");
    crate::support::require_tool("openssl", "version", "apt-get install openssl");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = crate::support::self_signed_certificate(dir.path());
    let overrides = Overrides {
        listen: Some("127.0.0.1:0".into()),
        data_dir: Some(dir.path().join("data")),
        tls_cert: Some(cert),
        tls_key: Some(key),
        ..Overrides::default()
    };
    let server =
        TestServer::start_with(Config::resolve(FileConfig::default(), overrides).unwrap()).await;
    let output = std::process::Command::new("psql")
        .arg(format!(
            "host=127.0.0.1 port={} user=tester dbname=semsql sslmode=require",
            server.addr.port()
        ))
        .args(["-X", "-c", "\\conninfo", "-c", "SELECT 1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("SSL connection"), "{stdout}");
    server.stop().await;
}
