//! pgjdbc (Debian's `libpostgresql-jdbc-java`, which `.ci/run` installs) against a started
//! server: `tests/clients/jdbc/JdbcSuite.java`, run as a single-file Java program. A machine
//! without Java or the driver fails this test saying which; it never skips.

use std::path::Path;
use std::process::Command;

use crate::support::{run_client_suite, TestServer};

/// Where Debian's package puts the driver.
const DRIVER: &str = "/usr/share/java/postgresql.jar";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgjdbc_passes_its_suite() {
    assert!(
        Path::new(DRIVER).exists(),
        "{DRIVER} is missing: install Debian's libpostgresql-jdbc-java (.ci/run does)"
    );
    let server = TestServer::start().await;
    let url = format!(
        "jdbc:postgresql://{}:{}/semsql",
        server.addr.ip(),
        server.addr.port()
    );
    let mut java = Command::new("java");
    java.args([
        "-cp",
        DRIVER,
        "tests/clients/jdbc/JdbcSuite.java",
        &url,
        "tester",
    ]);
    let report = run_client_suite("pgjdbc", java).await;
    assert!(report.contains("passed 18"), "{report}");
    server.stop().await;
}
