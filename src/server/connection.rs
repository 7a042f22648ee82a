//! One client connection: TLS negotiation, then the client's messages until it leaves, with
//! PostgreSQL's idle timeouts.
//!
//! pgwire's own loop (`process_socket`) waits for the next message for ever. PostgreSQL ends a
//! session that sits in an open transaction longer than `idle_in_transaction_session_timeout`
//! (so it cannot hold staged writes and locks for ever) and an idle one after
//! `idle_session_timeout`; this loop does the same, with the same FATAL messages. The message
//! handling itself is pgwire's (`process_message`, `process_error`).

use std::io;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use pgwire::api::{ClientInfo, ErrorHandler, PgWireConnectionState, PgWireServerHandlers};
use pgwire::error::ErrorInfo;
use pgwire::messages::response::TransactionStatus;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::server::{negotiate_tls, process_error, process_message};
use pgwire::tokio::TlsAcceptor;
use tokio::net::TcpStream;

/// How long a client has to finish its startup and authentication (as pgwire's loop).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// The idle timeouts, as PostgreSQL names them. The session's value (set with `SET`, kept in
/// the connection's metadata under the name, in milliseconds) overrides the server's (kept
/// under [`server_default_key`]); 0 means none.
pub const IDLE_IN_TRANSACTION: &str = "idle_in_transaction_session_timeout";
pub const IDLE_SESSION: &str = "idle_session_timeout";

/// Where a connection keeps the server's default of an idle timeout.
pub fn server_default_key(name: &str) -> String {
    format!("semsql.server.{name}")
}

/// The server's defaults for the idle timeouts, in milliseconds (0: none).
#[derive(Debug, Clone, Copy, Default)]
pub struct IdleTimeouts {
    pub in_transaction_ms: u64,
    pub session_ms: u64,
}

/// The timeout `name` in force on a connection with this metadata, in milliseconds (0: none):
/// the session's value, else the server's.
pub fn timeout_millis(metadata: &std::collections::HashMap<String, String>, name: &str) -> u64 {
    metadata
        .get(name)
        .or_else(|| metadata.get(&server_default_key(name)))
        .and_then(|value| value.parse::<u64>().ok())
        .unwrap_or(0)
}

/// The timeout `name` in force on `client`, if any.
fn timeout_of(client: &impl ClientInfo, name: &str) -> Option<Duration> {
    let millis = timeout_millis(client.metadata(), name);
    (millis > 0).then(|| Duration::from_millis(millis))
}

/// Serves one TCP connection until the client leaves, the connection fails or an idle timeout
/// ends it.
pub async fn serve<H: PgWireServerHandlers>(
    socket: TcpStream,
    tls: Option<TlsAcceptor>,
    handlers: &H,
    idle: IdleTimeouts,
) -> io::Result<()> {
    let startup_deadline = tokio::time::sleep(STARTUP_TIMEOUT);
    tokio::pin!(startup_deadline);
    let negotiated = tokio::select! {
        _ = &mut startup_deadline => return Ok(()),
        negotiated = negotiate_tls(socket, tls) => negotiated?,
    };
    // A direct TLS handshake on a server without a certificate: nothing to answer.
    let Some(mut socket) = negotiated else {
        return Ok(());
    };
    for (name, millis) in [
        (IDLE_IN_TRANSACTION, idle.in_transaction_ms),
        (IDLE_SESSION, idle.session_ms),
    ] {
        socket
            .metadata_mut()
            .insert(server_default_key(name), millis.to_string());
    }
    let startup = handlers.startup_handler();
    let simple = handlers.simple_query_handler();
    let extended = handlers.extended_query_handler();
    let copy = handlers.copy_handler();
    let cancel = handlers.cancel_handler();
    let errors = handlers.error_handler();
    let mut vector_parameters = super::vector_parameters::VectorParameters::default();
    loop {
        let message = match socket.state() {
            PgWireConnectionState::AwaitingStartup
            | PgWireConnectionState::AuthenticationInProgress => tokio::select! {
                _ = &mut startup_deadline => None,
                message = socket.next() => message,
            },
            PgWireConnectionState::ReadyForQuery => {
                let (name, code, reason) = match socket.transaction_status() {
                    TransactionStatus::Idle => (IDLE_SESSION, "57P05", "idle-session"),
                    _ => (IDLE_IN_TRANSACTION, "25P03", "idle-in-transaction"),
                };
                match timeout_of(&socket, name) {
                    None => socket.next().await,
                    Some(limit) => tokio::select! {
                        _ = tokio::time::sleep(limit) => {
                            tracing::info!(timeout = name, "ending an idle connection");
                            let fatal = ErrorInfo::new(
                                "FATAL".to_owned(),
                                code.to_owned(),
                                format!("terminating connection due to {reason} timeout"),
                            );
                            // The client may be gone already; the connection ends either way.
                            let _ = socket
                                .send(PgWireBackendMessage::ErrorResponse(fatal.into()))
                                .await;
                            break;
                        }
                        message = socket.next() => message,
                    },
                }
            }
            _ => socket.next().await,
        };
        let Some(Ok(message)) = message else {
            break;
        };
        // Terminate: the backend closes the connection (asyncpg waits for it to).
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            break;
        }
        let message = vector_parameters.translate(message);
        let extended_query = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended_query) => extended_query,
            _ => message.is_extended_query(),
        };
        if let Err(mut err) = process_message(
            message,
            &mut socket,
            startup.clone(),
            simple.clone(),
            extended.clone(),
            copy.clone(),
            cancel.clone(),
        )
        .await
        {
            errors.on_error(&socket, &mut err);
            process_error(&mut socket, err, extended_query).await?;
        }
    }
    Ok(())
}

/// Reads a PostgreSQL time setting in milliseconds: a bare number is milliseconds, else a
/// number with one of PostgreSQL's units (`us`, `ms`, `s`, `min`, `h`, `d`).
pub fn parse_milliseconds(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "" | "ms" => 1.0,
        "us" => 0.001,
        "s" => 1_000.0,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return None,
    };
    let millis = (number * scale).round();
    // PostgreSQL's limit for these settings: INT_MAX milliseconds.
    (millis.is_finite() && millis <= i32::MAX as f64).then_some(millis as u64)
}

/// Milliseconds as PostgreSQL's SHOW prints a time setting: in the largest unit that divides
/// it (`5s`, `10min`), `0` for none.
pub fn show_milliseconds(millis: u64) -> String {
    if millis == 0 {
        return "0".to_owned();
    }
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("min", 60_000),
        ("s", 1_000),
    ] {
        if millis.is_multiple_of(size) {
            return format!("{}{unit}", millis / size);
        }
    }
    format!("{millis}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_settings_read_and_print_as_postgres() {
        assert_eq!(parse_milliseconds("5000"), Some(5000));
        assert_eq!(parse_milliseconds("5s"), Some(5000));
        assert_eq!(parse_milliseconds("1.5 s"), Some(1500));
        assert_eq!(parse_milliseconds("10min"), Some(600_000));
        assert_eq!(parse_milliseconds("0"), Some(0));
        assert_eq!(parse_milliseconds("-1"), None);
        assert_eq!(parse_milliseconds("5 parsecs"), None);
        assert_eq!(parse_milliseconds("3000000000"), None);
        assert_eq!(show_milliseconds(5000), "5s");
        assert_eq!(show_milliseconds(600_000), "10min");
        assert_eq!(show_milliseconds(1500), "1500ms");
        assert_eq!(show_milliseconds(0), "0");
    }
}
