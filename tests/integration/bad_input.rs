//! Bad input of every kind gets a clear error or a closed connection, and the server keeps
//! serving everyone else.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{sqlstate, TestServer};

/// A raw protocol connection, for messages no well-behaved driver sends.
pub(crate) struct RawConnection {
    socket: TcpStream,
}

impl RawConnection {
    pub(crate) async fn open(server: &TestServer) -> RawConnection {
        let mut socket = TcpStream::connect(server.addr).await.unwrap();
        socket.write_all(&startup_packet()).await.unwrap();
        let mut connection = RawConnection { socket };
        connection.read_until_ready().await;
        connection
    }

    pub(crate) async fn send(&mut self, tag: u8, body: &[u8]) {
        let mut message = vec![tag];
        message.extend_from_slice(&((4 + body.len()) as u32).to_be_bytes());
        message.extend_from_slice(body);
        self.socket.write_all(&message).await.unwrap();
    }

    /// Reads messages up to ReadyForQuery; returns the SQLSTATEs of any errors seen.
    pub(crate) async fn read_until_ready(&mut self) -> Vec<String> {
        let mut codes = Vec::new();
        loop {
            let mut header = [0u8; 5];
            tokio::time::timeout(Duration::from_secs(10), self.socket.read_exact(&mut header))
                .await
                .expect("server answers")
                .expect("connection stays open");
            let len = u32::from_be_bytes(header[1..5].try_into().unwrap()) as usize - 4;
            let mut body = vec![0u8; len];
            self.socket.read_exact(&mut body).await.unwrap();
            match header[0] {
                b'Z' => return codes,
                b'E' => {
                    let mut fields = body.split(|b| *b == 0);
                    for field in fields.by_ref() {
                        if let Some((b'C', code)) = field.split_first() {
                            codes.push(String::from_utf8_lossy(code).into_owned());
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// A protocol 3.0 StartupMessage for user `tester`, database `semsql`.
fn startup_packet() -> Vec<u8> {
    let params = b"user\0tester\0database\0semsql\0\0";
    let mut startup = Vec::new();
    startup.extend_from_slice(&((8 + params.len()) as u32).to_be_bytes());
    startup.extend_from_slice(&196608u32.to_be_bytes());
    startup.extend_from_slice(params);
    startup
}

pub(crate) fn cstring(text: &str) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    bytes.push(0);
    bytes
}

#[tokio::test]
async fn wrong_parameter_counts_and_malformed_binary_values() {
    let server = TestServer::start().await;
    let mut raw = RawConnection::open(&server).await;

    // Parse a statement with one parameter, then Bind none.
    let mut parse = cstring("");
    parse.extend(cstring("SELECT $1::INT + 1"));
    parse.extend_from_slice(&0u16.to_be_bytes());
    raw.send(b'P', &parse).await;
    let mut bind = cstring("");
    bind.extend(cstring(""));
    bind.extend_from_slice(&0u16.to_be_bytes()); // parameter formats
    bind.extend_from_slice(&0u16.to_be_bytes()); // parameter values
    bind.extend_from_slice(&0u16.to_be_bytes()); // result formats
    raw.send(b'B', &bind).await;
    let mut execute = cstring("");
    execute.extend_from_slice(&0u32.to_be_bytes());
    raw.send(b'E', &execute).await;
    raw.send(b'S', &[]).await;
    let codes = raw.read_until_ready().await;
    assert_eq!(codes.len(), 1, "one error for the bad Bind: {codes:?}");

    // A binary int4 parameter that is 3 bytes long.
    raw.send(b'P', &parse).await;
    let mut bind = cstring("");
    bind.extend(cstring(""));
    bind.extend_from_slice(&1u16.to_be_bytes());
    bind.extend_from_slice(&1u16.to_be_bytes()); // binary
    bind.extend_from_slice(&1u16.to_be_bytes());
    bind.extend_from_slice(&3u32.to_be_bytes());
    bind.extend_from_slice(&[1, 2, 3]);
    bind.extend_from_slice(&0u16.to_be_bytes());
    raw.send(b'B', &bind).await;
    raw.send(b'E', &execute).await;
    raw.send(b'S', &[]).await;
    let codes = raw.read_until_ready().await;
    assert_eq!(
        codes.len(),
        1,
        "one error for the malformed value: {codes:?}"
    );

    // The same connection still answers.
    raw.send(b'Q', &cstring("SELECT 1")).await;
    assert!(raw.read_until_ready().await.is_empty());
    drop(raw);
    server.stop().await;
}

async fn still_serves(server: &TestServer) {
    let client = server.client().await;
    let row = client.query_one("SELECT 42", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
}

#[tokio::test]
async fn garbage_bytes_on_the_socket() {
    let server = TestServer::start().await;
    // Not a startup packet at all.
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    socket
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf)).await;
    drop(socket);
    // A huge length prefix.
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    socket
        .write_all(&[0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0])
        .await
        .unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf)).await;
    drop(socket);
    // Random bytes after a valid startup.
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    socket.write_all(&startup_packet()).await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf)).await;
    socket
        .write_all(&[0xde, 0xad, 0xbe, 0xef, 0x00, 0x01, 0x02, 0x03, 0xff])
        .await
        .unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf)).await;
    drop(socket);
    still_serves(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_disconnects_mid_result() {
    let server = TestServer::start().await;
    for _ in 0..3 {
        let mut socket = TcpStream::connect(server.addr).await.unwrap();
        socket.write_all(&startup_packet()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let _ = socket.read(&mut buf).await.unwrap();
        let query = b"SELECT value, repeat('y', 100) FROM generate_series(1, 2000000)\0";
        let mut message = vec![b'Q'];
        message.extend_from_slice(&((4 + query.len()) as u32).to_be_bytes());
        message.extend_from_slice(query);
        socket.write_all(&message).await.unwrap();
        let _ = socket.read(&mut buf).await.unwrap();
        drop(socket);
    }
    still_serves(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn a_ten_megabyte_query() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let literal = "a".repeat(10 * 1024 * 1024);
    let sql = format!("SELECT length('{literal}')");
    match client.simple_query(&sql).await {
        Ok(messages) => {
            let length = messages.iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
                _ => None,
            });
            assert_eq!(length.as_deref(), Some("10485760"));
        }
        Err(err) => assert!(err.code().is_some(), "{err:?}"),
    }
    // Deeply nested expressions must not overflow the stack either.
    let nested = format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000));
    if let Err(err) = client.simple_query(&nested).await {
        assert!(err.code().is_some(), "{err:?}");
    }
    still_serves(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn two_hundred_concurrent_connections() {
    let server = TestServer::start().await;
    let connection_string = server.connection_string();
    let mut tasks = Vec::new();
    for i in 0..200i32 {
        let connection_string = connection_string.clone();
        tasks.push(tokio::spawn(async move {
            let client = crate::support::connect(&connection_string).await;
            let row = client
                .query_one("SELECT $1::BIGINT * 2", &[&i64::from(i)])
                .await
                .unwrap();
            assert_eq!(row.get::<_, i64>(0), i64::from(i) * 2);
            client
        }));
    }
    let mut clients = Vec::new();
    for task in tasks {
        clients.push(task.await.unwrap());
    }
    assert_eq!(clients.len(), 200);
    still_serves(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn connections_over_the_limit_are_refused_with_53300() {
    let dir = tempfile::tempdir().unwrap();
    let file: semsql::config::FileConfig = toml::from_str("max_connections = 2").unwrap();
    let server = TestServer::start_in(dir.path(), file).await;
    let first = server.client().await;
    let second = server.client().await;
    let refused = tokio_postgres::connect(&server.connection_string(), tokio_postgres::NoTls)
        .await
        .err()
        .expect("third connection is refused");
    assert_eq!(sqlstate(&refused), "53300");
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let third = server.client().await;
    third.simple_query("SELECT 1").await.unwrap();
    second.simple_query("SELECT 1").await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn bad_copy_data_and_copy_fail_leave_the_table_and_connection_intact() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE target (a INT, b TEXT); INSERT INTO target VALUES (1, 'kept')")
        .await
        .unwrap();
    let mut raw = RawConnection::open(&server).await;

    // A value that is not an integer: the whole COPY fails, nothing is inserted.
    raw.send(b'Q', &cstring("COPY target FROM STDIN")).await;
    raw.send(b'd', b"2\tgood\nnot-a-number\tbad\n").await;
    raw.send(b'c', &[]).await;
    let codes = raw.read_until_ready().await;
    assert_eq!(codes, vec!["22P02".to_owned()]);

    // Too many columns.
    raw.send(b'Q', &cstring("COPY target FROM STDIN")).await;
    raw.send(b'd', b"3\tx\textra\n").await;
    raw.send(b'c', &[]).await;
    assert_eq!(raw.read_until_ready().await, vec!["22P04".to_owned()]);

    // The client gives up.
    raw.send(b'Q', &cstring("COPY target FROM STDIN")).await;
    raw.send(b'd', b"4\tabandoned\n").await;
    raw.send(b'f', &cstring("changed my mind")).await;
    assert_eq!(raw.read_until_ready().await, vec!["57014".to_owned()]);

    // And a good one on the same connection.
    raw.send(b'Q', &cstring("COPY target FROM STDIN")).await;
    raw.send(b'd', b"5\tfive\n6\t\\N\n").await;
    raw.send(b'c', &[]).await;
    assert!(raw.read_until_ready().await.is_empty());

    let rows: Vec<(i32, Option<String>)> = client
        .query("SELECT a, b FROM target ORDER BY a", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        rows,
        vec![
            (1, Some("kept".into())),
            (5, Some("five".into())),
            (6, None)
        ]
    );
    drop(raw);
    server.stop().await;
}
