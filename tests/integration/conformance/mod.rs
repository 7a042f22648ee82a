//! Conformance over the wire (issue 14, item 7): DataFusion 55.2's own sqllogictest files, the
//! ones that need no external data, run against a started `semsql serve` process, once with the
//! simple protocol and once with the extended protocol. Values are read in text format and
//! written the way DataFusion's runner writes them (`values.rs`), so what is left is a real
//! difference. Every record passes or is listed, with the reason it differs, in
//! `tests/conformance/datafusion-55.2.0.expected`; a failing record that is not listed fails the
//! test. `SEMSQL_CONFORMANCE_BLESS=1` rewrites the list from a run (each reason from
//! `classify`); `SEMSQL_CONFORMANCE_FILES=substring` runs only the matching files.
//!
//! The files come from the `datafusion-sqllogictest` crate on crates.io, fetched and verified
//! once by `scripts/fetch-datafusion-slt.sh` into a cache folder outside the clone.

mod client;
mod expectations;
mod values;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqllogictest::{DBOutput, Record, Runner};

use client::{Failure, Outcome, Protocol, WireClient};
use expectations::{Expectations, Observed};
use values::Kind;

/// The reason given to a difference nobody has looked at yet.
const UNTRIAGED: &str = "untriaged";

/// The top of a new expectations file.
const HEADER: &str = "\
# DataFusion 55.2's sqllogictest records that give a different answer over semsql's wire, each
# with the reason (docs/sql.md, \"DataFusion's own tests over the wire\", explains the reasons).
# Written by `SEMSQL_CONFORMANCE_BLESS=1 cargo test --test integration datafusion_sqllogictest`.
# record\tprotocols (simple, extended, both, or either: differs in some runs only)\treason
";

/// A first reason for a new difference, from the error text; a person refines it.
fn classify(error: &str) -> &'static str {
    let sql = error
        .split_once("[SQL] ")
        .map_or("", |(_, rest)| rest)
        .to_ascii_lowercase();
    let has = |needle: &str| error.contains(needle);
    let first = error.lines().next().unwrap_or("");
    if has("SERVER EXITED") {
        return "CRASH: the server exited (a bug to fix, never to list)";
    }
    if sql.trim_start().starts_with("explain") {
        return EXPLAIN;
    }
    if sql.trim_start().starts_with("show") && first.contains("columns mismatch") {
        return SHOW;
    }
    if has("Unsupported List Datatype")
        || has("Unsupported Datatype")
        || has("Unsupported SQL type")
    {
        return WIRE_TYPES;
    }
    if first.contains("COPY to or from a file")
        || (sql.trim_start().starts_with("copy") && has("STORED"))
    {
        return COPY_FILES;
    }
    if first.contains("sql parser error") || first.contains("ParserError") {
        return DIALECT;
    }
    if sql.contains("->")
        && (first.contains("does not exist")
            || first.contains("No field named")
            || first.contains("lambda")
            || first.contains("Operator -> is not yet supported"))
    {
        return LAMBDA;
    }
    if sql.trim_start().starts_with("execute") && first.contains("result mismatch") {
        return EXECUTE;
    }
    if (sql.contains("generate_series(") || sql.contains("unnest("))
        && (first.contains("No field named") || first.contains("is not Struct, Map, or Null"))
    {
        return FUNCTION_COLUMN;
    }
    if first.contains("does not exist")
        || first.contains("doesn't exist")
        || first.contains("not found")
        || first.contains("No files found")
    {
        return CASCADE;
    }
    if has("Not enough memory") {
        return MEMORY;
    }
    if first.contains("expected to fail with error") {
        return ERROR_WORDING;
    }
    if first.contains("expected to fail, but actually succeed") {
        return ACCEPTED;
    }
    if first.contains("columns mismatch") {
        let expected = error
            .lines()
            .find(|line| line.starts_with("[Expected]"))
            .unwrap_or("");
        if expected.contains('?') {
            return NO_POSTGRES_TYPE;
        }
        if has("[I]") && has("[R]") {
            return UNSIGNED;
        }
        return TYPES;
    }
    if first.contains("result mismatch") {
        // The same rows in another order, for a query that sets none.
        let lines = |sign: &str| {
            let mut lines: Vec<&str> = error
                .lines()
                .filter_map(|line| line.strip_prefix(sign))
                .map(str::trim)
                .collect();
            lines.sort_unstable();
            lines
        };
        let (removed, added) = (lines("-   "), lines("+   "));
        if !removed.is_empty() && removed == added && !sql.contains("order by") {
            return ORDER;
        }
        // Every expected row missing and none shared: the query read nothing.
        let shared = error.split_once("[Diff]").map_or(0, |(_, diff)| {
            diff.lines().filter(|line| line.starts_with("    ")).count()
        });
        if !removed.is_empty() && added.is_empty() && shared == 0 && error.contains("[Diff]") {
            return NO_ROWS;
        }
        if !added.is_empty()
            && removed
                .iter()
                .all(|line| line.contains('{') && line.contains(": "))
            && added.iter().all(|line| line.contains('('))
        {
            return RECORDS;
        }
        let same_after = |cut: fn(&str) -> String| {
            let mut removed: Vec<String> = removed.iter().map(|line| cut(line)).collect();
            let mut added: Vec<String> = added.iter().map(|line| cut(line)).collect();
            removed.sort_unstable();
            added.sort_unstable();
            !removed.is_empty() && removed == added
        };
        if same_after(fraction_without_trailing_zeros) {
            return FRACTION_ZEROS;
        }
        if same_after(fraction_in_microseconds) {
            return NANOSECONDS;
        }
        if has("Decimal256") {
            return WIDE_DECIMALS;
        }
        if sql.contains("arrow_typeof") {
            return TYPES;
        }
        if has(" days") || has(" mons") || has(" hours") || has(" mins") || has(" secs") {
            return INTERVALS;
        }
        return RESULT;
    }
    UNTRIAGED
}

const EXPLAIN: &str =
    "EXPLAIN: semsql's plan text (its analyzer rules, managed-table scans) is not DataFusion's";
const WIRE_TYPES: &str = "wire: a value the encoder cannot send yet: to fix";
const NO_POSTGRES_TYPE: &str = "types: a value of a type PostgreSQL has none for (map, union, run-end encoded, a struct holding one) goes out as text, where DataFusion's runner writes ?";
const WIDE_DECIMALS: &str = "text: DataFusion's runner writes a Decimal256 with every digit but rounds a Decimal128 to 12 decimals; both are numeric on the wire, so the runner here rounds both";
const COPY_FILES: &str =
    "COPY: DataFusion's COPY ... TO 'file' STORED AS; semsql's COPY is PostgreSQL's (STDIN/STDOUT)";
const DIALECT: &str = "dialect: semsql parses PostgreSQL's SQL; DataFusion's tests use its generic dialect ({..} structs, STRUCT<..>, |>)";
const CASCADE: &str = "cascade: an object an earlier record of the file failed to make (or DataFusion's harness registers)";
pub(crate) const MEMORY: &str =
    "memory: semsql's default memory limit is smaller than DataFusion's runner's (unbounded)";
const ERROR_WORDING: &str =
    "error text: semsql answers with PostgreSQL's message where DataFusion's regex expects its own";
const ACCEPTED: &str = "accepted: semsql runs a statement DataFusion refuses (PostgreSQL's rules or compatibility rewrites)";
const UNSIGNED: &str =
    "types: PostgreSQL has no unsigned integers; UInt64 results go out as numeric";
const TYPES: &str = "types: PostgreSQL's result types (int4 arithmetic, text for strings) where DataFusion reports Arrow's";
const INTERVALS: &str =
    "text: PostgreSQL's interval output (1 day 02:00:00) where DataFusion writes 1 days 2 hours";
const SHOW: &str =
    "SHOW: PostgreSQL answers one column (the value) where DataFusion gives two (name, value)";
const LAMBDA: &str = "lambdas: DataFusion's x -> f(x); in PostgreSQL's dialect (the extended protocol's parser) -> is the JSON operator";
const EXECUTE: &str =
    "EXECUTE of a SQL PREPAREd statement returns no rows over the extended protocol: to fix";
pub(crate) const ORDER: &str = "order: the same rows in another order, for a query without ORDER BY (a table's files are read in parallel)";
const RESULT: &str = "result: a different answer, not yet explained";
const NO_ROWS: &str = "cascade: no rows, from files an earlier COPY ... TO 'file' was to write (refused by semsql) or that DataFusion's test data holds (the TPC-H .tbl files are not in the crate)";
const RECORDS: &str = "text: PostgreSQL's record text ((1,a), NULL fields empty) where DataFusion writes {c0: 1, c1: a}";
const FRACTION_ZEROS: &str = "text: PostgreSQL prints a fraction of a second without trailing zeros (29.19) where DataFusion keeps its unit's digits (29.190)";
const NANOSECONDS: &str = "types: PostgreSQL's timestamps and times hold microseconds; DataFusion's nanoseconds are cut on the wire";

/// Every fraction of a second in `line` without its trailing zeros (`29.190` is `29.19`).
fn fraction_without_trailing_zeros(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '.'
            && out.len() >= 3
            && out[..out.len() - 1].ends_with(|d: char| d.is_ascii_digit())
        {
            let mut digits = String::new();
            while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                digits.push(d);
                chars.next();
            }
            let trimmed = digits.trim_end_matches('0');
            if trimmed.is_empty() {
                out.pop();
            } else {
                out.push_str(trimmed);
            }
        }
    }
    out
}

/// Every fraction of a second in `line` cut to six digits, then without trailing zeros.
fn fraction_in_microseconds(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '.' {
            let mut digits = String::new();
            while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                digits.push(d);
                chars.next();
            }
            digits.truncate(6);
            out.push_str(&digits);
        }
    }
    fraction_without_trailing_zeros(&out)
}
const FUNCTION_COLUMN: &str = "names: PostgreSQL names a set-returning function's one column after its alias (generate_series(1, 3) g has the column g, DataFusion's has value)";

/// How long one statement may take before the run gives up on it.
const STATEMENT_LIMIT: Duration = Duration::from_secs(60);

/// The folder holding `test_files/`, fetched on first use.
fn datafusion_slt_root() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fetch-datafusion-slt.sh");
    let output = Command::new(&script)
        .stderr(Stdio::inherit())
        .output()
        .expect("scripts/fetch-datafusion-slt.sh runs");
    assert!(
        output.status.success(),
        "fetching DataFusion's sqllogictest files failed (crates.io must be reachable)"
    );
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

/// Why a file of DataFusion's suite is not run at all.
fn not_run_because(relative: &str, text: &str) -> Option<&'static str> {
    if relative.starts_with("spark/") {
        return Some(
            "Spark dialect and the datafusion-spark functions, which semsql does not load",
        );
    }
    if text.contains("'../") || text.contains("\"../") {
        return Some("reads data from DataFusion's repository (testing submodules), not shipped");
    }
    None
}

/// The .slt files to run, relative to `test_files/`, and how many were left out.
fn files_to_run(root: &Path) -> (Vec<String>, usize) {
    let filter = std::env::var("SEMSQL_CONFORMANCE_FILES").ok();
    let mut files = Vec::new();
    let mut left_out = 0;
    let mut stack = vec![root.join("test_files")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if !path.ends_with("scratch") {
                    stack.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "slt") {
                continue;
            }
            let relative = path
                .strip_prefix(root.join("test_files"))
                .unwrap()
                .to_string_lossy()
                .into_owned();
            // An included part counts as part of the file that includes it.
            let mut text = std::fs::read_to_string(&path).unwrap();
            for line in text.clone().lines() {
                if let Some(part) = line.strip_prefix("include ") {
                    let part = path.parent().unwrap().join(part.trim());
                    text.push_str(&std::fs::read_to_string(part).unwrap_or_default());
                }
            }
            if not_run_because(&relative, &text).is_some() {
                left_out += 1;
                continue;
            }
            if filter.as_deref().is_some_and(|f| !relative.contains(f)) {
                continue;
            }
            files.push(relative);
        }
    }
    files.sort();
    (files, left_out)
}

/// A `semsql serve` process working in DataFusion's test folder, so the files' relative paths
/// (`test_files/scratch/...`, `data/...`) resolve as they do for DataFusion's runner.
struct Server {
    child: Child,
    port: u16,
    _data: tempfile::TempDir,
}

impl Server {
    async fn start(working_dir: &Path) -> Server {
        let data = tempfile::tempdir().unwrap();
        let (child, port) = crate::support::start_listening(|port| {
            let mut command = crate::support::serve_command(port, data.path());
            command
                .current_dir(working_dir)
                .env("SEMSQL_LOG", "error")
                .stderr(Stdio::from(
                    std::fs::File::create(working_dir.join("server.log")).unwrap(),
                ));
            command
        })
        .await;
        Server {
            child,
            port,
            _data: data,
        }
    }

    fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct WireError {
    code: Option<String>,
    message: String,
}

/// One connection of one protocol, reopened after a broken connection or a timeout.
struct Database {
    /// The server's port, changed when a server that exited is started again.
    port: Arc<AtomicU16>,
    protocol: Protocol,
    client: Option<WireClient>,
}

#[async_trait]
impl sqllogictest::AsyncDB for Database {
    type Error = WireError;
    type ColumnType = Kind;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<Kind>, WireError> {
        if self.client.is_none() {
            let mut client = WireClient::connect(self.port.load(Ordering::SeqCst))
                .await
                .map_err(failure)?;
            // DataFusion's runner fixes four partitions so that plans are the same everywhere.
            client
                .run(
                    "SET datafusion.execution.target_partitions = 4",
                    Protocol::Simple,
                    STATEMENT_LIMIT,
                )
                .await
                .map_err(failure)?;
            self.client = Some(client);
        }
        let client = self.client.as_mut().unwrap();
        match client.run(sql, self.protocol, STATEMENT_LIMIT).await {
            Ok(Outcome::Rows { types, rows }) => {
                let mut rows: Vec<Vec<String>> = rows
                    .into_iter()
                    .map(|row| {
                        row.iter()
                            .zip(&types)
                            .map(|(cell, oid)| {
                                cell.as_deref()
                                    .map_or_else(|| "NULL".to_owned(), |v| values::value(*oid, v))
                            })
                            .collect()
                    })
                    .flat_map(values::expand_row)
                    .collect();
                // Rows a query puts in no order come in the order a table's files are read,
                // which varies: they are sorted, and `validate` compares them with the
                // expected rows sorted the same way.
                let lowered = sql.to_ascii_lowercase();
                if !lowered.contains("order by") && !lowered.trim_start().starts_with("explain") {
                    rows.sort_by_cached_key(|row| row.join(" ").trim_end().to_owned());
                }
                Ok(DBOutput::Rows {
                    types: types.iter().map(|oid| values::kind_of(*oid)).collect(),
                    rows,
                })
            }
            // DataFusion answers INSERT, UPDATE, DELETE and COPY with a one-row count; PostgreSQL
            // with a command tag holding it.
            Ok(Outcome::Complete(tag)) => {
                let words: Vec<&str> = tag.split_whitespace().collect();
                let counted = matches!(
                    words.first().copied(),
                    Some("INSERT" | "UPDATE" | "DELETE" | "COPY")
                );
                match words.last().and_then(|n| n.parse::<u64>().ok()) {
                    Some(count) if counted => Ok(DBOutput::Rows {
                        types: vec![Kind::Integer],
                        rows: vec![vec![count.to_string()]],
                    }),
                    _ => Ok(DBOutput::StatementComplete(0)),
                }
            }
            Err(error) => {
                if matches!(error, Failure::Connection(_)) {
                    self.client = None;
                }
                Err(failure(error))
            }
        }
    }

    fn error_sql_state(err: &WireError) -> Option<String> {
        err.code.clone()
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "semsql"
    }
}

fn failure(failure: Failure) -> WireError {
    match failure {
        Failure::Server { code, message } => WireError {
            code: Some(code),
            message,
        },
        Failure::Connection(message) => WireError {
            code: None,
            message: format!("connection: {message}"),
        },
    }
}

/// DataFusion's runner compares each row's cells joined by one space, trailing spaces trimmed,
/// and supports `<slt:ignore>` for volatile parts.
fn validate(
    normalizer: sqllogictest::Normalizer,
    actual: &[Vec<String>],
    expected: &[String],
) -> bool {
    const IGNORE: &str = "<slt:ignore>";
    let expected: Vec<String> = expected.iter().map(normalizer).collect();
    let actual: Vec<String> = actual
        .iter()
        .map(|cells| cells.join(" ").trim_end().to_owned())
        .collect();
    if !expected.iter().any(|line| line.contains(IGNORE)) {
        if actual == expected {
            return true;
        }
        // A result `Database::run` sorted (no ORDER BY): the same rows in any order pass.
        let mut sorted = expected.clone();
        sorted.sort();
        return actual.is_sorted() && actual == sorted;
    }
    let (expected, actual) = (expected.join("\n"), actual.join("\n"));
    let mut at = 0;
    for (index, fragment) in expected.split(IGNORE).enumerate() {
        if fragment.is_empty() {
            continue;
        }
        match actual[at..].find(fragment) {
            Some(found) if index > 0 || found == 0 => at += found + fragment.len(),
            _ => return false,
        }
    }
    true
}

#[allow(clippy::ptr_arg)]
fn trim_end(line: &String) -> String {
    line.trim_end().to_owned()
}

fn same_types(actual: &Vec<Kind>, expected: &Vec<Kind>) -> bool {
    actual == expected
}

/// The record's place: `file.slt:line`, or `part.slt.part:line < file.slt:line` for a record of
/// an included part.
fn record_key(location: &sqllogictest::Location, root: &Path) -> String {
    let prefix = format!("{}/", root.join("test_files").display());
    location
        .to_string()
        .replace(&prefix, "")
        .replace("\nat ", " < ")
}

/// A working folder per protocol, so the two runs of a file (side by side) do not write into
/// each other's scratch files: `test_files/*` and `data` link to DataFusion's, and
/// `test_files/scratch` is the protocol's own.
fn working_dir(root: &Path, protocol: Protocol) -> PathBuf {
    let dir = root.join(format!("work-{}", protocol.name()));
    let test_files = dir.join("test_files");
    if !test_files.exists() {
        std::fs::create_dir_all(&test_files).unwrap();
        std::os::unix::fs::symlink(root.join("data"), dir.join("data")).unwrap();
        for entry in std::fs::read_dir(root.join("test_files")).unwrap() {
            let entry = entry.unwrap();
            if entry.file_name() != "scratch" {
                std::os::unix::fs::symlink(entry.path(), test_files.join(entry.file_name()))
                    .unwrap();
            }
        }
    }
    dir
}

/// Runs one file with one protocol on a server of its own; returns each failing record's key
/// with its first line of SQL and error, and the number of records run.
async fn run_file(
    root: &Path,
    relative: &str,
    protocol: Protocol,
    mut server: Server,
) -> (usize, BTreeMap<String, String>) {
    let work = working_dir(root, protocol);
    let port = Arc::new(AtomicU16::new(server.port));
    let shared_port = Arc::clone(&port);
    let mut runner = Runner::new(move || {
        let port = Arc::clone(&shared_port);
        async move {
            Ok(Database {
                port,
                protocol,
                client: None,
            })
        }
    });
    runner.add_label("Datafusion");
    runner.with_column_validator(same_types);
    runner.with_normalizer(trim_end);
    runner.with_validator(validate);

    let path = root.join("test_files").join(relative);
    let records = match sqllogictest::parse_file::<Kind>(&path) {
        Ok(records) => records,
        Err(e) => {
            let mut failed = BTreeMap::new();
            failed.insert(format!("{relative}:0"), format!("parse error: {e}"));
            return (0, failed);
        }
    };
    let mut failed = BTreeMap::new();
    let mut count = 0;
    for record in records {
        if let Record::Halt { .. } = record {
            break;
        }
        let location = match &record {
            Record::Statement { loc, .. } | Record::Query { loc, .. } => loc.clone(),
            _ => {
                let _ = runner.run_async(record).await;
                continue;
            }
        };
        count += 1;
        if let Err(error) = runner.run_async(record).await {
            let mut text = error.to_string();
            if let Some(status) = server.exit_status() {
                let log = std::fs::read_to_string(work.join("server.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                text = format!("SERVER EXITED ({status}; log ends {tail:?}): {text}");
                failed.insert(record_key(&location, root), text);
                server = Server::start(&work).await;
                port.store(server.port, Ordering::SeqCst);
                continue;
            }
            failed.insert(record_key(&location, root), text);
        }
    }
    (count, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datafusion_sqllogictest_files_over_the_wire() {
    let root = datafusion_slt_root();
    let (files, left_out) = files_to_run(&root);
    let started = Instant::now();
    let mut observed = Observed::default();
    let mut records = 0;
    for relative in &files {
        // Both servers start before either run, one after the other.
        let mut servers = Vec::new();
        for protocol in [Protocol::Simple, Protocol::Extended] {
            // DataFusion's runner gives each file an empty scratch folder.
            let work = working_dir(&root, protocol);
            let scratch = work
                .join("test_files/scratch")
                .join(relative.trim_end_matches(".slt"));
            let _ = std::fs::remove_dir_all(&scratch);
            std::fs::create_dir_all(&scratch).unwrap();
            servers.push(Server::start(&work).await);
        }
        let extended_server = servers.pop().unwrap();
        let simple_server = servers.pop().unwrap();
        let simple = run_file(&root, relative, Protocol::Simple, simple_server);
        let extended = run_file(&root, relative, Protocol::Extended, extended_server);
        let ((simple_count, simple_failed), (_, extended_failed)) =
            futures::join!(simple, extended);
        records += simple_count;
        observed.add_file(relative, simple_count, Protocol::Simple, simple_failed);
        observed.add_file(relative, simple_count, Protocol::Extended, extended_failed);
    }

    let expectations_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/datafusion-55.2.0.expected");
    let expectations = Expectations::load(&expectations_path);
    let report_path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("conformance-report.tsv");
    std::fs::write(&report_path, observed.report()).unwrap();

    let mut summary = String::new();
    writeln!(
        summary,
        "DataFusion 55.2 sqllogictest over the wire: {} files run ({left_out} left out: Spark or \
         external data), {records} records, in {:.0} s",
        files.len(),
        started.elapsed().as_secs_f64()
    )
    .unwrap();
    for protocol in [Protocol::Simple, Protocol::Extended] {
        let failed = observed.failed_count(protocol);
        writeln!(
            summary,
            "  {}: {} passed, {failed} differ",
            protocol.name(),
            records - failed
        )
        .unwrap();
    }
    writeln!(summary, "  details: {}", report_path.display()).unwrap();
    print!("{summary}");

    if std::env::var("SEMSQL_CONFORMANCE_BLESS").is_ok_and(|v| v == "1") {
        let filtered = std::env::var("SEMSQL_CONFORMANCE_FILES").is_ok();
        expectations.bless(&observed, &files, filtered, &expectations_path);
        println!("rewrote {}", expectations_path.display());
        return;
    }
    let unexpected = expectations.unexpected(&observed);
    print!("{}", expectations.summary(&observed, &files));
    assert!(
        unexpected.is_empty(),
        "{} records differ from DataFusion's expected results and are not listed in {}:\n{}",
        unexpected.len(),
        expectations_path.display(),
        unexpected
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
