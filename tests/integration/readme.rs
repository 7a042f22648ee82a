//! README.md's commands, run as a new user runs them, so the README cannot drift from what
//! semsql does: its first command (`cargo run --release -- serve --demo`, here the binary cargo
//! built, with the same arguments on a free port and a fresh data folder), every SQL block
//! through psql (the fake model's block against `fake-llm` started as the README says), and the
//! queries the demo prints at start. The README's other command, `cargo test --workspace`, is
//! the one running this test.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const README: &str = include_str!("../../README.md");

/// The fenced blocks of a markdown text: (language, contents).
fn code_blocks(markdown: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, String)> = None;
    for line in markdown.lines() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(language)) => open = Some((language.trim().to_owned(), String::new())),
            (Some(_), Some(_)) => blocks.push(open.take().expect("an open block")),
            (Some((_, text)), None) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, None) => {}
        }
    }
    blocks
}

/// A command line of a `sh` block without its comment.
fn commands(block: &str) -> Vec<String> {
    block
        .lines()
        .map(|line| line.split(" #").next().unwrap_or("").trim().to_owned())
        .filter(|line| !line.is_empty())
        .collect()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `port` accepts connections (the demo embeds its reviews before it listens).
fn wait_for_port(child: &mut Child, port: u16, log: &Path) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(600) {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the server exited ({status}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("nothing listens on {port} after 10 minutes");
}

fn psql(port: u16, sql: &str) -> String {
    let mut child = crate::support::psql_command(port)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql runs");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("psql's stdin")
        .write_all(sql.as_bytes())
        .unwrap();
    crate::support::psql_succeeded(child.wait_with_output().unwrap(), &format!("\n{sql}"))
}

// psql blocks its thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_commands_work_as_written() {
    crate::support::require_tool("psql", "--version", "apt-get install postgresql-client");
    let blocks = code_blocks(README);
    let shell: Vec<String> = blocks
        .iter()
        .filter(|(language, _)| language == "sh")
        .flat_map(|(_, text)| commands(text))
        .collect();
    assert_eq!(
        shell.first().map(String::as_str),
        Some("cargo run --release -- serve --demo"),
        "{shell:?}"
    );
    assert_eq!(
        shell.get(1).map(String::as_str),
        Some("cargo test --workspace"),
        "{shell:?}"
    );
    let connect = shell
        .iter()
        .find(|line| line.starts_with("psql "))
        .expect("the README says how to connect");
    assert_eq!(
        connect, "psql -h 127.0.0.1 -p 5433 -U semsql -d semsql",
        "the test connects as the README does"
    );

    // `serve --demo` finds the local model in the user's cache (fetched once).
    crate::vectors::fetch_local_model().await;
    let data = tempfile::tempdir().unwrap();
    let log_path = data.path().join("server.log");
    let port = crate::support::free_port();
    let arguments = shell[0]
        .strip_prefix("cargo run --release -- ")
        .expect("cargo run with arguments");
    let mut server = Command::new(env!("CARGO_BIN_EXE_semsql"));
    server
        .args(arguments.split_whitespace())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data.path().join("data"))
        .env_remove("OPENAI_API_KEY")
        .env_remove("OLLAMA_HOST")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap());
    let mut server = Killed(server.spawn().expect("semsql starts"));
    wait_for_port(&mut server.0, port, &log_path);

    // The fake model, started as the README says, on a free port.
    let fake_port = crate::support::free_port();
    let fake_command = shell
        .iter()
        .find(|line| line.contains("--bin fake-llm"))
        .cloned()
        .or_else(|| {
            README
                .split('`')
                .find(|part| part.starts_with("cargo run --release --bin fake-llm -- "))
                .map(str::to_owned)
        })
        .expect("the README says how to start the fake model");
    let fake_arguments = fake_command
        .split_once(" -- ")
        .map(|(_, arguments)| {
            arguments.replace("127.0.0.1:8089", &format!("127.0.0.1:{fake_port}"))
        })
        .expect("fake-llm's arguments");
    let mut fake = Command::new(env!("CARGO_BIN_EXE_fake-llm"));
    fake.args(fake_arguments.split_whitespace())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut fake = Killed(fake.spawn().expect("fake-llm starts"));
    wait_for_port(&mut fake.0, fake_port, &log_path);

    // Every SQL block, in order, each in a session of its own as a user would paste it.
    let mut model_made = false;
    for (_, sql) in blocks.iter().filter(|(language, _)| language == "sql") {
        let sql = sql.replace("127.0.0.1:8089", &format!("127.0.0.1:{fake_port}"));
        model_made |= sql.contains("CREATE MODEL fake");
        let out = psql(port, &sql);
        assert!(!out.is_empty(), "{sql}");
    }
    assert!(model_made, "the README shows how to make a model");

    // The queries the demo printed at start answer too (the semantic one with the fake model).
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains(&format!("psql -h 127.0.0.1 -p {port} -U semsql -d semsql")),
        "{log}"
    );
    let tried: String = log
        .split("Then try:")
        .nth(1)
        .expect("the demo prints queries to try")
        .lines()
        .map(str::trim)
        .take_while(|line| !line.starts_with("The semantic functions"))
        .collect::<Vec<_>>()
        .join("\n");
    let out = psql(port, &format!("SET semsql.model = 'fake';\n{tried}"));
    // The nearest review to 'late delivery' is about a late delivery: the local model answered.
    let nearest = out
        .lines()
        .find(|line| line.contains('|') && !line.contains("product"))
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        ["late", "deliver", "arriv", "ship", "week"]
            .iter()
            .any(|word| nearest.contains(word)),
        "{out}"
    );
}
