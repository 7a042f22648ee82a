//! A minimal PostgreSQL protocol client for the conformance run: it speaks both the simple and
//! the extended protocol with text results and keeps each column's type OID, which neither
//! tokio-postgres's simple queries (no OIDs) nor its extended queries (binary results only) give.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Which protocol a statement is sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// One Query message.
    Simple,
    /// Parse, Bind (text results), Describe, Execute, Sync.
    Extended,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Simple => "simple",
            Protocol::Extended => "extended",
        }
    }
}

/// What a statement returned.
#[derive(Debug)]
pub enum Outcome {
    /// A result set: the columns' type OIDs and the rows in text format.
    Rows {
        types: Vec<u32>,
        rows: Vec<Vec<Option<String>>>,
    },
    /// A command tag, e.g. `INSERT 0 3` or `CREATE TABLE`.
    Complete(String),
}

/// Why a statement did not return an outcome.
#[derive(Debug)]
pub enum Failure {
    /// The server answered with an ErrorResponse: SQLSTATE and message.
    Server { code: String, message: String },
    /// The connection broke or the answer did not come in time.
    Connection(String),
}

pub struct WireClient {
    socket: BufReader<TcpStream>,
}

fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&((4 + body.len()) as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn cstring(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(text.as_bytes());
    out.push(0);
}

/// Reads a NUL-terminated string at `*at`, moving past it.
fn read_cstring(body: &[u8], at: &mut usize) -> String {
    let end = body[*at..]
        .iter()
        .position(|b| *b == 0)
        .map_or(body.len(), |p| *at + p);
    let text = String::from_utf8_lossy(&body[*at..end]).into_owned();
    *at = end + 1;
    text
}

fn read_u16(body: &[u8], at: &mut usize) -> u16 {
    let value = u16::from_be_bytes([body[*at], body[*at + 1]]);
    *at += 2;
    value
}

fn read_i32(body: &[u8], at: &mut usize) -> i32 {
    let value = i32::from_be_bytes(body[*at..*at + 4].try_into().unwrap());
    *at += 4;
    value
}

/// The type OIDs of a RowDescription.
fn row_description(body: &[u8]) -> Vec<u32> {
    let mut at = 0;
    let count = read_u16(body, &mut at);
    (0..count)
        .map(|_| {
            read_cstring(body, &mut at);
            at += 4 + 2; // table OID, column number
            let oid = read_i32(body, &mut at) as u32;
            at += 2 + 4 + 2; // type size, modifier, format
            oid
        })
        .collect()
}

fn data_row(body: &[u8]) -> Vec<Option<String>> {
    let mut at = 0;
    let count = read_u16(body, &mut at);
    (0..count)
        .map(|_| {
            let len = read_i32(body, &mut at);
            if len < 0 {
                return None;
            }
            let value = String::from_utf8_lossy(&body[at..at + len as usize]).into_owned();
            at += len as usize;
            Some(value)
        })
        .collect()
}

fn error_response(body: &[u8]) -> Failure {
    let mut at = 0;
    let (mut code, mut text) = (String::new(), String::new());
    while at < body.len() && body[at] != 0 {
        let field = body[at];
        at += 1;
        let value = read_cstring(body, &mut at);
        match field {
            b'C' => code = value,
            b'M' => text = value,
            _ => {}
        }
    }
    Failure::Server {
        code,
        message: text,
    }
}

impl WireClient {
    /// Connects as `tester` to database `semsql` (the test servers trust local connections).
    pub async fn connect(port: u16) -> Result<WireClient, Failure> {
        let socket = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| Failure::Connection(e.to_string()))?;
        let mut client = WireClient {
            socket: BufReader::new(socket),
        };
        let mut params = Vec::new();
        for (key, value) in [("user", "tester"), ("database", "semsql")] {
            cstring(&mut params, key);
            cstring(&mut params, value);
        }
        params.push(0);
        let mut startup = ((8 + params.len()) as u32).to_be_bytes().to_vec();
        startup.extend_from_slice(&196_608u32.to_be_bytes());
        startup.extend_from_slice(&params);
        client.write(&startup).await?;
        match client.read_until_ready().await? {
            Err(failure) => Err(failure),
            Ok(_) => Ok(client),
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        self.socket
            .get_mut()
            .write_all(bytes)
            .await
            .map_err(|e| Failure::Connection(e.to_string()))
    }

    async fn read_message(&mut self) -> Result<(u8, Vec<u8>), Failure> {
        let lost = |e: std::io::Error| Failure::Connection(format!("connection lost: {e}"));
        let mut header = [0u8; 5];
        self.socket.read_exact(&mut header).await.map_err(lost)?;
        let len = u32::from_be_bytes(header[1..5].try_into().unwrap()) as usize;
        let mut body = vec![0u8; len.saturating_sub(4)];
        self.socket.read_exact(&mut body).await.map_err(lost)?;
        Ok((header[0], body))
    }

    /// Reads up to ReadyForQuery. The outcome is the last result set or command tag; an error
    /// anywhere wins.
    async fn read_until_ready(&mut self) -> Result<Result<Outcome, Failure>, Failure> {
        let mut types: Option<Vec<u32>> = None;
        let mut rows = Vec::new();
        let mut tag = String::new();
        let mut error = None;
        loop {
            let (kind, body) = self.read_message().await?;
            match kind {
                b'T' => {
                    types = Some(row_description(&body));
                    rows.clear();
                }
                b'D' => rows.push(data_row(&body)),
                b'C' => {
                    let mut at = 0;
                    tag = read_cstring(&body, &mut at);
                }
                b'E' => error = Some(error_response(&body)),
                // COPY FROM STDIN: nothing to send.
                b'G' => {
                    let mut fail = Vec::new();
                    cstring(&mut fail, "no COPY data in a conformance run");
                    self.write(&message(b'f', &fail)).await?;
                }
                b'Z' => {
                    return Ok(match (error, types) {
                        (Some(failure), _) => Err(failure),
                        (None, Some(types)) => Ok(Outcome::Rows { types, rows }),
                        (None, None) => Ok(Outcome::Complete(tag)),
                    });
                }
                // ParseComplete, BindComplete, NoData, notices, parameter status, COPY OUT data...
                _ => {}
            }
        }
    }

    /// Runs one statement with the given protocol, waiting at most `limit` for its answer.
    pub async fn run(
        &mut self,
        sql: &str,
        protocol: Protocol,
        limit: Duration,
    ) -> Result<Outcome, Failure> {
        let mut bytes = Vec::new();
        match protocol {
            Protocol::Simple => {
                let mut body = Vec::new();
                cstring(&mut body, sql);
                bytes.extend(message(b'Q', &body));
            }
            Protocol::Extended => {
                let mut parse = Vec::new();
                cstring(&mut parse, "");
                cstring(&mut parse, sql);
                parse.extend_from_slice(&0u16.to_be_bytes());
                bytes.extend(message(b'P', &parse));
                let mut bind = Vec::new();
                cstring(&mut bind, "");
                cstring(&mut bind, "");
                bind.extend_from_slice(&0u16.to_be_bytes()); // parameter formats
                bind.extend_from_slice(&0u16.to_be_bytes()); // parameters
                bind.extend_from_slice(&1u16.to_be_bytes()); // one result format for all:
                bind.extend_from_slice(&0u16.to_be_bytes()); // text
                bytes.extend(message(b'B', &bind));
                bytes.extend(message(b'D', b"P\0"));
                let mut execute = Vec::new();
                cstring(&mut execute, "");
                execute.extend_from_slice(&0i32.to_be_bytes());
                bytes.extend(message(b'E', &execute));
                bytes.extend(message(b'S', &[]));
            }
        }
        self.write(&bytes).await?;
        match tokio::time::timeout(limit, self.read_until_ready()).await {
            Ok(answer) => answer?,
            Err(_) => Err(Failure::Connection(format!(
                "no answer within {} s",
                limit.as_secs()
            ))),
        }
    }
}
