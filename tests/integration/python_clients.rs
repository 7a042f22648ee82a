//! The real Python clients users run (psycopg 3, psycopg2, SQLAlchemy, pandas, asyncpg,
//! pgvector-python, pgcli) against a started server: `tests/clients/*.py`, run by pytest from a
//! virtualenv that `scripts/client-venv.sh` makes outside the clone once and reuses. A machine
//! that cannot install the packages fails this test with the script's message; it never skips.

use std::process::Command;

use crate::support::{run_client_suite, setup_path, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_clients_pass_their_suite() {
    let python = setup_path("scripts/client-venv.sh");
    let server = TestServer::start().await;
    let mut pytest = Command::new(python);
    pytest
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/clients",
        ])
        .env("SEMSQL_DSN", server.connection_string())
        .env(
            "SEMSQL_URL",
            format!("tester@{}:{}/semsql", server.addr.ip(), server.addr.port()),
        );
    run_client_suite("Python client", pytest).await;
    server.stop().await;
}
