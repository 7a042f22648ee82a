//! node-postgres (`pg`, with its pool) against a started server: `tests/clients/node/*.test.js`,
//! run by Node's own test runner with the package installed outside the clone by
//! `scripts/client-node.sh`. A machine that cannot install it fails this test with the
//! script's message; it never skips.

use std::process::Command;

use crate::support::{run_client_suite, setup_path, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_postgres_passes_its_suite() {
    let modules = setup_path("scripts/client-node.sh");
    let server = TestServer::start().await;
    let mut node = Command::new("node");
    node.args(["--test", "tests/clients/node/"])
        .env("NODE_PATH", modules)
        .env(
            "SEMSQL_NODE_URL",
            format!(
                "postgres://tester@{}:{}/semsql",
                server.addr.ip(),
                server.addr.port()
            ),
        );
    let report = run_client_suite("node-postgres", node).await;
    assert!(report.contains("# fail 0"), "{report}");
    server.stop().await;
}
