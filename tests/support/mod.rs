//! Test support: a semsql server on a free port (in-process or as a separate process), and
//! clients connected to it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use semsql::config::{Config, FileConfig, Overrides};
use semsql::server::Server;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};

/// A server running inside the test process.
pub struct TestServer {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestServer {
    /// A server over a new, empty data folder.
    pub async fn start() -> TestServer {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut server = Self::start_in(temp.path(), FileConfig::default()).await;
        server._temp = Some(temp);
        server
    }

    /// A server over `data_dir` with the given configuration file contents.
    pub async fn start_in(data_dir: &Path, file: FileConfig) -> TestServer {
        let overrides = Overrides {
            listen: Some("127.0.0.1:0".into()),
            data_dir: Some(data_dir.to_owned()),
            ..Overrides::default()
        };
        let config = Config::resolve(file, overrides).expect("valid config");
        Self::start_with(config).await
    }

    pub async fn start_with(config: Config) -> TestServer {
        let server = Server::bind(&config).await.expect("server starts");
        let addr = server.local_addr();
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(Box::pin(async {
            let _ = signal.await;
        })));
        TestServer {
            addr,
            data_dir: config.data_dir.clone(),
            _temp: None,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    pub fn connection_string(&self) -> String {
        format!(
            "host={} port={} user=tester dbname=semsql",
            self.addr.ip(),
            self.addr.port()
        )
    }

    pub async fn client(&self) -> Client {
        connect(&self.connection_string()).await
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
        }
    }
}

pub async fn connect(connection_string: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(connection_string, NoTls)
        .await
        .expect("connects");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A client whose server NOTICEs are collected, in order.
pub async fn connect_with_notices(
    connection_string: &str,
) -> (Client, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let (client, mut connection) = tokio_postgres::connect(connection_string, NoTls)
        .await
        .expect("connects");
    let notices = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = notices.clone();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = futures::StreamExt::next(&mut messages).await {
            match message {
                Ok(tokio_postgres::AsyncMessage::Notice(notice)) => {
                    sink.lock().unwrap().push(notice.message().to_owned())
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    (client, notices)
}

/// A `semsql serve` process, for tests that kill it.
pub struct ServerProcess {
    pub child: Child,
    pub port: u16,
}

impl ServerProcess {
    pub async fn start(data_dir: &Path) -> ServerProcess {
        let (child, port) = start_listening(|port| {
            let mut command = serve_command(port, data_dir);
            command.env("SEMSQL_LOG", "warn").stderr(Stdio::inherit());
            command
        })
        .await;
        ServerProcess { child, port }
    }

    pub fn connection_string(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=tester dbname=semsql",
            self.port
        )
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reaped");
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `semsql serve` on 127.0.0.1:`port` over `data_dir`, its output discarded.
pub fn serve_command(port: u16, data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_semsql"));
    command
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data_dir)
        // The tests choose their models: none offered by the developer's environment.
        .env_remove("OPENAI_API_KEY")
        .env_remove("OLLAMA_HOST")
        .stdout(Stdio::null());
    command
}

/// Spawns the command `command(port)` builds for a free port and waits until it listens there.
/// Another test may take the port between `free_port` and the bind, and the new server then
/// exits: it is started again on another port, so a test never talks to another test's server.
pub async fn start_listening(mut command: impl FnMut(u16) -> Command) -> (Child, u16) {
    for _ in 0..5 {
        let port = free_port();
        let mut child = command(port).spawn().expect("semsql binary starts");
        for _ in 0..400 {
            if child.try_wait().ok().flatten().is_some() {
                break;
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                // Still alive a moment later: the listener is this server's.
                tokio::time::sleep(Duration::from_millis(100)).await;
                if child.try_wait().ok().flatten().is_none() {
                    return (child, port);
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("semsql did not start listening");
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// The SQLSTATE of a failed statement.
pub fn sqlstate(err: &tokio_postgres::Error) -> String {
    err.code()
        .map(|code| code.code().to_owned())
        .unwrap_or_else(|| panic!("error without SQLSTATE: {err:?}"))
}

/// Fails the test, saying how to install it, when a command-line tool it needs is missing:
/// a test that cannot run must not pass (`.ci/run` installs every tool the tests use).
pub fn require_tool(tool: &str, version_arg: &str, install: &str) {
    let present = Command::new(tool)
        .arg(version_arg)
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(
        present,
        "this test needs `{tool}`, which is not installed: {install} (.ci/run installs it)"
    );
}

/// psql 15 connecting to a test server on `port` as `semsql`, stopping at the first error and
/// without the user's `.psqlrc`; the caller adds what to run (`-c`, or `-f -` and stdin).
pub fn psql_command(port: u16) -> Command {
    let mut command = Command::new("psql");
    command
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args([
            "-U",
            "semsql",
            "-d",
            "semsql",
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
        ])
        .env("PGCONNECT_TIMEOUT", "10");
    command
}

/// psql's standard output, after checking that it ran `what` without an error.
pub fn psql_succeeded(output: std::process::Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success() && !stderr.contains("ERROR"),
        "psql failed on {what}:\n{stdout}\n{stderr}"
    );
    stdout
}

/// A self-signed certificate for `localhost` and its key, made by openssl in `dir`.
pub fn self_signed_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let cert = dir.join("server.crt");
    let key = dir.join("server.key");
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    (cert, key)
}

/// The rows of a simple query's answer, each value as text (`None` for NULL).
/// A simple query's rows as text (`None` for NULL); panics, naming the query, when it fails.
pub async fn rows(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err}"));
    text_rows(&messages)
}

pub fn text_rows(messages: &[tokio_postgres::SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    messages
        .iter()
        .filter_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// Runs a setup script that prints one path (a virtualenv's python, a node_modules folder),
/// failing with the script's message when it cannot.
pub fn setup_path(script: &str) -> String {
    let output = Command::new("bash")
        .arg(script)
        .output()
        .unwrap_or_else(|err| panic!("runs {script}: {err}"));
    assert!(
        output.status.success(),
        "{script} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("a path")
        .trim()
        .to_owned()
}

/// Runs a real client's suite off the async runtime (the server under test needs it) and
/// returns its report, failing with the report and its errors when the suite fails.
pub async fn run_client_suite(name: &'static str, mut command: Command) -> String {
    let output = tokio::task::spawn_blocking(move || {
        command
            .output()
            .unwrap_or_else(|err| panic!("runs the {name} suite: {err}"))
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    println!("{report}");
    assert!(
        output.status.success(),
        "the {name} suite failed:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    report
}
