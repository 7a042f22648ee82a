//! node-postgres (`pg`, with its pool) against a started server: `tests/clients/node/*.test.js`,
//! run by Node's own test runner with the package installed outside the clone by
//! `scripts/client-node.sh`. A machine that cannot install it fails this test with the
//! script's message; it never skips.

use std::process::Command;

use crate::support::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_postgres_passes_its_suite() {
    let install = Command::new("bash")
        .arg("scripts/client-node.sh")
        .output()
        .expect("runs scripts/client-node.sh");
    assert!(
        install.status.success(),
        "scripts/client-node.sh failed:\n{}",
        String::from_utf8_lossy(&install.stderr)
    );
    let modules = String::from_utf8(install.stdout)
        .expect("a path")
        .trim()
        .to_owned();

    let server = TestServer::start().await;
    let url = format!(
        "postgres://tester@{}:{}/semsql",
        server.addr.ip(),
        server.addr.port()
    );
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .args(["--test", "tests/clients/node/"])
            .env("NODE_PATH", modules)
            .env("SEMSQL_NODE_URL", url)
            .output()
            .expect("runs node --test")
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}");
    assert!(
        output.status.success(),
        "the node-postgres suite failed:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains("# fail 0"), "{report}");
    server.stop().await;
}
