//! pgjdbc (Debian's `libpostgresql-jdbc-java`, which `.ci/run` installs) against a started
//! server: `tests/clients/jdbc/JdbcSuite.java`, run as a single-file Java program. A machine
//! without Java or the driver fails this test saying which; it never skips.

use std::path::Path;
use std::process::Command;

use crate::support::TestServer;

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
    let output = tokio::task::spawn_blocking(move || {
        Command::new("java")
            .args([
                "-cp",
                DRIVER,
                "tests/clients/jdbc/JdbcSuite.java",
                &url,
                "tester",
            ])
            .output()
            .expect("runs java (a JDK 11 or later)")
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}");
    assert!(
        output.status.success(),
        "the pgjdbc suite failed:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains("passed 14"), "{report}");
    server.stop().await;
}
