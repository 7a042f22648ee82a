//! The `semsql` binary: parses flags, starts tracing, and runs the server until SIGINT/SIGTERM.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use semsql::access::scram::ScramSecret;
use semsql::config::{AuthMethod, Config, FileConfig, Overrides};

#[derive(Parser)]
#[command(
    name = "semsql",
    version,
    about = "A PostgreSQL-compatible SQL server with language-model operators"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum AuthFlag {
    Trust,
    Scram,
}

#[derive(Subcommand)]
enum Command {
    /// Serve SQL over the PostgreSQL protocol.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "SEMSQL_LISTEN")]
        listen: Option<String>,
        /// Folder holding the tables and catalog.
        #[arg(long, env = "SEMSQL_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Configuration file (TOML).
        #[arg(long, env = "SEMSQL_CONFIG")]
        config: Option<PathBuf>,
        /// Most connections served at once; more are refused with SQLSTATE 53300.
        #[arg(long, env = "SEMSQL_MAX_CONNECTIONS")]
        max_connections: Option<usize>,
        /// Authentication method (default: scram when users are configured, else trust).
        #[arg(long, env = "SEMSQL_AUTH", value_enum)]
        auth: Option<AuthFlag>,
        /// TLS certificate chain (PEM).
        #[arg(long, env = "SEMSQL_TLS_CERT")]
        tls_cert: Option<PathBuf>,
        /// TLS private key (PEM).
        #[arg(long, env = "SEMSQL_TLS_KEY")]
        tls_key: Option<PathBuf>,
        /// Memory for query execution (e.g. 2GB, 512MB); sorts, joins and aggregations spill
        /// to disk or fail with SQLSTATE 53200 beyond it. Default: no limit.
        #[arg(long, env = "SEMSQL_MEMORY_LIMIT")]
        memory_limit: Option<String>,
        /// Load the bundled demo tables (reviews, movies) if they are not there yet.
        #[arg(long)]
        demo: bool,
    },
    /// Read a password from standard input and print the SCRAM verifier to put in the config.
    Password,
    /// Fetch the offline embedding model (all-MiniLM-L6-v2, 90 MB, checked against pinned
    /// SHA-256 sums) into the user's cache folder, where `semsql serve` finds it.
    FetchModels {
        /// Models folder to fetch into instead (then set llm.local_model_dir to
        /// DIR/all-MiniLM-L6-v2).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    semsql::config::init_logging();
    match cli.command {
        Command::Password => {
            let mut password = String::new();
            if std::io::stdin().lock().read_line(&mut password).is_err()
                || password.trim().is_empty()
            {
                eprintln!("semsql: give the password on standard input");
                return ExitCode::FAILURE;
            }
            let password = password.trim_end_matches(['\r', '\n']);
            println!("{}", ScramSecret::from_password(password).to_postgres());
            ExitCode::SUCCESS
        }
        Command::FetchModels { dir } => {
            let Some(dir) = dir.or_else(semsql::llm::model_files::user_models_dir) else {
                eprintln!("semsql: no cache folder (HOME is not set); give one with --dir");
                return ExitCode::FAILURE;
            };
            let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
            match runtime.block_on(semsql::llm::model_files::fetch(&dir, &mut |line| {
                eprintln!("{line}")
            })) {
                Ok(found) => {
                    println!("{}", found.display());
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("semsql: {err}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve {
            listen,
            data_dir,
            config,
            max_connections,
            auth,
            tls_cert,
            tls_key,
            memory_limit,
            demo,
        } => {
            let file = match config.as_deref().map(FileConfig::load).transpose() {
                Ok(file) => file.unwrap_or_default(),
                Err(err) => {
                    eprintln!("semsql: {err}");
                    return ExitCode::FAILURE;
                }
            };
            let overrides = Overrides {
                listen,
                data_dir,
                max_connections,
                auth: auth.map(|a| match a {
                    AuthFlag::Trust => AuthMethod::Trust,
                    AuthFlag::Scram => AuthMethod::Scram,
                }),
                tls_cert,
                tls_key,
                memory_limit,
                demo,
            };
            let config = match Config::resolve(file, overrides) {
                Ok(config) => config,
                Err(err) => {
                    eprintln!("semsql: {err}");
                    return ExitCode::FAILURE;
                }
            };
            let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
            if config.demo {
                runtime.block_on(fetch_demo_model(&config));
            }
            match runtime.block_on(semsql::server::run(config, Box::pin(shutdown_signal()))) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("semsql: {err}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `--demo` embeds its reviews with the local model: fetched now when it is not found (with
/// progress), used as it is when it is (no network needed then). Without it the demo still
/// starts, and says what is missing.
async fn fetch_demo_model(config: &Config) {
    let found = semsql::llm::model_files::find(
        config.llm.local_model_dir.as_deref(),
        Some(&config.data_dir),
    );
    if semsql::llm::model_files::verified(&found) || config.llm.local_model_dir.is_some() {
        return;
    }
    let Some(models) = semsql::llm::model_files::user_models_dir() else {
        return;
    };
    eprintln!("semsql: the demo needs the local embedding model, which is not here yet");
    if let Err(err) =
        semsql::llm::model_files::fetch(&models, &mut |line| eprintln!("semsql: {line}")).await
    {
        eprintln!("semsql: {err}; the demo starts without embeddings");
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
