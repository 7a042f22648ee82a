//! The real Python clients users run (psycopg 3, psycopg2, SQLAlchemy, pandas, asyncpg) against a
//! started server: `tests/clients/*.py`, run by pytest from a virtualenv that
//! `scripts/client-venv.sh` makes outside the clone once and reuses. A machine that cannot
//! install the packages fails this test with the script's message; it never skips.

use std::process::Command;

use crate::support::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_clients_pass_their_suite() {
    let venv = Command::new("bash")
        .arg("scripts/client-venv.sh")
        .output()
        .expect("runs scripts/client-venv.sh");
    assert!(
        venv.status.success(),
        "scripts/client-venv.sh failed:\n{}",
        String::from_utf8_lossy(&venv.stderr)
    );
    let python = String::from_utf8(venv.stdout)
        .expect("a path")
        .trim()
        .to_owned();

    let server = TestServer::start().await;
    let dsn = server.connection_string();
    let url = format!("tester@{}:{}/semsql", server.addr.ip(), server.addr.port());
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .args([
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "tests/clients",
            ])
            .env("SEMSQL_DSN", dsn)
            .env("SEMSQL_URL", url)
            .output()
            .expect("runs pytest")
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}");
    assert!(
        output.status.success(),
        "the client suite failed:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    server.stop().await;
}
