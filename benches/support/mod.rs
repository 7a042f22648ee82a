//! What every benchmark starts with: a semsql server on a free loopback port over a fresh data
//! folder, and a tokio-postgres client connected to it.

use semsql::config::{Config, FileConfig, Overrides};
use semsql::server::Server;
use tokio_postgres::{Client, NoTls};

/// The running server's pieces a benchmark uses; the data folder lives as long as this does.
pub struct BenchServer {
    pub client: Client,
    /// A session on the same engine, without the wire (only some benchmarks compare the two;
    /// each bench compiles this module on its own).
    #[allow(dead_code)]
    pub session: datafusion::prelude::SessionContext,
    /// The server's port, for benchmarks that open their own connections.
    #[allow(dead_code)]
    pub port: u16,
    _data_dir: tempfile::TempDir,
}

pub async fn start() -> BenchServer {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let config = Config::resolve(
        FileConfig::default(),
        Overrides {
            listen: Some("127.0.0.1:0".into()),
            data_dir: Some(data_dir.path().to_owned()),
            ..Overrides::default()
        },
    )
    .expect("config");
    let server = Server::bind(&config).await.expect("server");
    let addr = server.local_addr();
    let session = server.session("semsql");
    tokio::spawn(server.run(Box::pin(std::future::pending())));
    let (client, connection) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user=bench dbname=semsql",
            addr.port()
        ),
        NoTls,
    )
    .await
    .expect("connect");
    tokio::spawn(connection);
    BenchServer {
        client,
        session,
        port: addr.port(),
        _data_dir: data_dir,
    }
}
