//! The network side: listening, TLS, the connection limit, graceful shutdown, and handing each
//! connection to pgwire with our handlers.

pub mod asyncpg_introspection;
pub mod auth;
pub mod compat;
pub mod connection;
pub mod copy;
pub mod datetime_parameters;
pub mod datetime_templates;
pub mod explain_rewrite;
pub mod handler;
pub mod hba;
pub mod hooks;
pub mod interval_literals;
pub mod missing_function;
pub mod parameters;
pub mod quantified_comparisons;
pub mod result_encoding;
pub mod text_output;
pub mod vector_parameters;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use pgwire::tokio::tokio_rustls::rustls::pki_types::pem::PemObject;
use pgwire::tokio::tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use pgwire::tokio::tokio_rustls::rustls::{self, ServerConfig};
use pgwire::tokio::TlsAcceptor;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::access::{ConfiguredRole, FileAccess};
use crate::config::Config;
use crate::engine::{Engine, EngineOptions};
use crate::error::SemsqlError;
use handler::Handlers;

/// How long shutdown waits for open connections to finish before closing them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A bound, ready server.
pub struct Server {
    listener: TcpListener,
    handlers: Arc<Handlers>,
    tls: Option<TlsAcceptor>,
    max_connections: usize,
    idle: connection::IdleTimeouts,
}

impl Server {
    /// Opens the engine, binds the address and sets up TLS. Fails (rather than falling back to
    /// plaintext) when TLS is configured but cannot be set up.
    pub async fn bind(config: &Config) -> Result<Server, SemsqlError> {
        let tls = match &config.tls {
            Some((cert, key)) => Some(tls_acceptor(cert, key)?),
            None => None,
        };
        let engine = Engine::open_with(&config.data_dir, &config.llm, access_options(config)?)
            .await
            .map_err(|err| SemsqlError::Storage(err.to_string()))?;
        if config.demo {
            crate::engine::demo::load(&engine)
                .await
                .map_err(|err| SemsqlError::Storage(format!("loading demo data: {err}")))?;
            let session = engine.session(crate::engine::CATALOG);
            hooks::indexes::create_index_from_sql(&session, crate::engine::demo::INDEX_SQL).await?;
        }
        let listener = TcpListener::bind(config.listen).await.map_err(|err| {
            SemsqlError::Config(format!("cannot listen on {}: {err}", config.listen))
        })?;
        Ok(Server {
            listener,
            handlers: Arc::new(Handlers::new(engine, config)),
            tls,
            max_connections: config.max_connections,
            idle: config.idle,
        })
    }

    /// A session on the server's engine without the wire (benchmarks compare the two paths).
    pub fn session(&self, database: &str) -> datafusion::prelude::SessionContext {
        self.handlers.session(database)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Serves until `shutdown` completes, then stops accepting, gives open connections
    /// [`SHUTDOWN_GRACE`] to finish, and closes the rest. Committed data is already on disk, so
    /// closing a connection early loses only its uncommitted transaction.
    pub async fn run(self, shutdown: ShutdownSignal) {
        let limit = Arc::new(Semaphore::new(self.max_connections));
        let mut connections = JoinSet::new();
        tracing::info!(
            address = %self.local_addr(),
            tls = self.tls.is_some(),
            "semsql is accepting connections"
        );
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => {
                    let (socket, peer) = match accepted {
                        Ok(accepted) => accepted,
                        Err(err) => {
                            // Out of file descriptors and the like: wait instead of spinning.
                            tracing::warn!(%err, "accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let Ok(permit) = limit.clone().try_acquire_owned() else {
                        tokio::spawn(refuse(socket, self.max_connections));
                        continue;
                    };
                    let handlers = self.handlers.clone();
                    let tls = self.tls.clone();
                    let span = tracing::info_span!("connection", %peer);
                    let idle = self.idle;
                    connections.spawn(async move {
                        let _ = socket.set_nodelay(true);
                        if let Err(err) = connection::serve(socket, tls, &*handlers, idle).await {
                            tracing::debug!(%err, "connection ended with an error");
                        }
                        drop(permit);
                    }.instrument(span));
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        tracing::info!(open = connections.len(), "shutting down");
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            connections.shutdown().await;
        }
        self.handlers.close();
    }
}

/// The access layer's setup from the configuration: the config file's users (their
/// `semsql password` verifiers turned into PostgreSQL's StoredKey/ServerKey form), trust's
/// "unknown names are superusers" when no user is configured, and the file directories.
fn access_options(config: &Config) -> Result<EngineOptions, SemsqlError> {
    let mut configured = std::collections::BTreeMap::new();
    for user in &config.users {
        configured.insert(
            user.name.clone(),
            ConfiguredRole {
                superuser: user.superuser,
                secret: user.secret()?,
            },
        );
    }
    Ok(EngineOptions {
        memory_limit: config.memory_limit,
        unknown_are_superusers: config.auth == crate::config::AuthMethod::Trust
            && configured.is_empty(),
        configured,
        files: FileAccess {
            directories: config.files.directories.clone(),
        },
    })
}

/// Tells a client over the connection limit why, as PostgreSQL does, and closes.
async fn refuse(mut socket: TcpStream, limit: usize) {
    let message = SemsqlError::TooManyConnections(limit);
    let _ = socket
        .write_all(&fatal_error_message(
            message.sqlstate(),
            &message.to_string(),
        ))
        .await;
    let _ = socket.shutdown().await;
}

/// An `ErrorResponse` frame with severity FATAL.
fn fatal_error_message(code: &str, message: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (field, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', code),
        (b'M', message),
    ] {
        body.push(field);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut frame = vec![b'E'];
    frame.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, SemsqlError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls_error = |what: &str, err: &dyn std::fmt::Display| {
        SemsqlError::Config(format!(
            "TLS is configured but cannot be set up: {what}: {err}"
        ))
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|err| tls_error(&format!("certificate {}", cert.display()), &err))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| tls_error(&format!("certificate {}", cert.display()), &err))?;
    if certs.is_empty() {
        return Err(tls_error(
            &format!("certificate {}", cert.display()),
            &"no certificate found",
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|err| tls_error(&format!("key {}", key.display()), &err))?;
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|err| tls_error("certificate and key", &err))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// What stops a server: a future that completes when it should.
pub type ShutdownSignal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A server's whole run, as the binary awaits it.
pub type ServerRun = Pin<Box<dyn Future<Output = Result<(), SemsqlError>> + Send>>;

/// Starts the server with `config` and serves until `shutdown` completes.
///
/// A boxed future, not an `async fn`: the binary's crate would otherwise compile the server's
/// whole tree of futures again (it is polled first there) after every change, 71 s of each
/// release build (docs/benchmarks.md, "Build time"). Boxed here, it is compiled once, in the
/// library.
pub fn run(config: Config, shutdown: ShutdownSignal) -> ServerRun {
    Box::pin(async move {
        let server = Server::bind(&config).await?;
        if config.demo {
            // On standard error, beside the log, for the person who just typed the command.
            eprintln!(
                "{}",
                crate::engine::demo::first_steps(
                    server.local_addr(),
                    config.llm.default_model.as_deref()
                )
            );
        }
        server.run(shutdown).await;
        Ok(())
    })
}
