//! Authentication: `trust` (loopback only, checked in `Config`) or SCRAM-SHA-256 against the
//! roles' secrets (`crate::access`): roles made with `CREATE ROLE ... PASSWORD` and the
//! config file's `[[users]]`.
//!
//! A config-file verifier made by `semsql password` is
//! `SCRAM-SHA-256$<iterations>:<salt>$<salted password>` (base64); it is never the password
//! itself, never logged (`UserConfig`'s `Debug` redacts it), and turned into PostgreSQL's
//! StoredKey/ServerKey form when the server starts.

use std::fmt::Debug;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use futures::{Sink, SinkExt};
use pgwire::api::auth::sasl::scram::gen_salted_password;
use pgwire::api::auth::{
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata,
    DefaultServerParameterProvider, StartupHandler,
};
use pgwire::api::{
    ClientInfo, ConnectionManager, PgWireConnectionState, PidSecretKeyGenerator,
    RandomPidSecretKeyGenerator,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::sync::Mutex;

use crate::access::scram::{ScramSecret, ServerExchange};
use crate::access::Access;
use crate::config::{AuthMethod, Config};
use crate::engine::functions::POSTGRES_VERSION;

const SCHEME: &str = "SCRAM-SHA-256";
const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
pub use crate::access::scram::DEFAULT_ITERATIONS;

/// A parsed SCRAM verifier.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    pub iterations: usize,
    pub salt: Vec<u8>,
    pub salted_password: Vec<u8>,
}

impl ScramVerifier {
    /// Derives a verifier from a password with a fresh random salt.
    pub fn from_password(password: &str, iterations: usize) -> Self {
        let salt = uuid::Uuid::new_v4().into_bytes().to_vec();
        let salted_password = gen_salted_password(password, &salt, iterations);
        ScramVerifier {
            iterations,
            salt,
            salted_password,
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let invalid = || {
            format!("password must be a verifier made by `semsql password` ({SCHEME}$<iterations>:<salt>$<key>), not a plain password")
        };
        let rest = text
            .strip_prefix(SCHEME)
            .and_then(|r| r.strip_prefix('$'))
            .ok_or_else(invalid)?;
        let (params, key) = rest.split_once('$').ok_or_else(invalid)?;
        let (iterations, salt) = params.split_once(':').ok_or_else(invalid)?;
        let iterations: usize = iterations.parse().map_err(|_| invalid())?;
        if iterations < DEFAULT_ITERATIONS {
            return Err(format!(
                "SCRAM iterations must be at least {DEFAULT_ITERATIONS}"
            ));
        }
        Ok(ScramVerifier {
            iterations,
            salt: STANDARD.decode(salt).map_err(|_| invalid())?,
            salted_password: STANDARD.decode(key).map_err(|_| invalid())?,
        })
    }

    pub fn encode(&self) -> String {
        format!(
            "{SCHEME}${}:{}${}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(&self.salted_password)
        )
    }
}

impl Debug for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScramVerifier(<redacted>)")
    }
}

/// The parameters a client receives at startup; `server_version` must be numeric because
/// libpq and drivers parse it.
pub fn server_parameters() -> DefaultServerParameterProvider {
    let mut parameters = DefaultServerParameterProvider::default();
    parameters.server_version = POSTGRES_VERSION.to_owned();
    parameters
}

/// A FATAL error during startup, with PostgreSQL's SQLSTATE.
fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".to_owned(),
        code.to_owned(),
        message,
    )))
}

/// PostgreSQL's answer to a wrong password or an unknown user (the same, so that neither says
/// which it was); pgwire's own capitalizes it.
fn password_failed(user: &str) -> PgWireError {
    fatal(
        "28P01",
        format!("password authentication failed for user \"{user}\""),
    )
}

/// Makes each connection's startup handler (a SCRAM exchange keeps per-connection state, so a
/// handler must never be shared between connections).
pub struct Authenticator {
    method: AuthMethod,
    tls_required: bool,
    hosts: Arc<crate::server::hba::HostRules>,
    access: Arc<Access>,
    connections: Arc<ConnectionManager>,
    keys: Arc<RandomPidSecretKeyGenerator>,
    /// Seeds the stand-in salt for unknown users (see [`Startup::secret_for`]).
    mock_seed: RandomState,
}

impl Authenticator {
    pub fn new(config: &Config, access: Arc<Access>, connections: Arc<ConnectionManager>) -> Self {
        Authenticator {
            method: config.auth,
            tls_required: config.tls_required,
            hosts: Arc::new(config.hba.clone()),
            access,
            connections,
            keys: Arc::new(RandomPidSecretKeyGenerator::default()),
            mock_seed: RandomState::new(),
        }
    }

    /// A fresh startup handler for one connection.
    pub fn for_connection(&self) -> Startup {
        Startup {
            method: self.method,
            tls_required: self.tls_required,
            hosts: self.hosts.clone(),
            access: self.access.clone(),
            parameters: server_parameters(),
            connections: self.connections.clone(),
            keys: self.keys.clone(),
            mock_seed: self.mock_seed.clone(),
            exchange: Mutex::new(None),
        }
    }
}

/// One connection's startup: `trust` (loopback only, checked in `Config`) or a SCRAM-SHA-256
/// exchange against the role's stored secret.
pub struct Startup {
    method: AuthMethod,
    tls_required: bool,
    hosts: Arc<crate::server::hba::HostRules>,
    access: Arc<Access>,
    parameters: DefaultServerParameterProvider,
    connections: Arc<ConnectionManager>,
    keys: Arc<RandomPidSecretKeyGenerator>,
    mock_seed: RandomState,
    exchange: Mutex<Option<ServerExchange>>,
}

impl Startup {
    /// The secret `user` logs in with. As PostgreSQL does, an unknown user (or one that may
    /// not log in) gets an exchange with a stable stand-in salt that no password matches: the
    /// failure looks exactly like a wrong password, so user names cannot be probed.
    fn secret_for(&self, user: &str) -> ScramSecret {
        self.access.login_secret(user).unwrap_or_else(|| {
            let salt: Vec<u8> = [1u8, 2]
                .iter()
                .flat_map(|round| self.mock_seed.hash_one((round, user)).to_be_bytes())
                .collect();
            ScramSecret {
                iterations: DEFAULT_ITERATIONS,
                salt,
                stored_key: uuid::Uuid::new_v4().into_bytes().repeat(2),
                server_key: uuid::Uuid::new_v4().into_bytes().repeat(2),
            }
        })
    }

    /// Registers the connection for cancellation and sends AuthenticationOk and the rest.
    async fn complete<C>(&self, client: &mut C) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (pid, secret_key) = self.keys.generate(client);
        client.set_pid_and_secret_key(pid, secret_key.clone());
        let (handle, guard) = self.connections.register(pid, secret_key);
        client.session_extensions().insert(handle);
        client.session_extensions().insert(guard);
        finish_authentication(client, &self.parameters).await?;
        client.flush().await?;
        Ok(())
    }
}

fn user_of<C: ClientInfo>(client: &C) -> String {
    client
        .metadata()
        .get(pgwire::api::METADATA_USER)
        .cloned()
        .unwrap_or_default()
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                let user = user_of(client);
                if user.is_empty() {
                    return Err(PgWireError::UserNameRequired);
                }
                if self.tls_required && !client.is_secure() {
                    // PostgreSQL's words when no `hostssl` line lets a plaintext client in.
                    return Err(fatal(
                        "28000",
                        format!(
                            "no encryption: this server requires SSL (tls.required), \
                             connect with sslmode=require or verify-full (user \"{user}\")"
                        ),
                    ));
                }
                let database = client
                    .metadata()
                    .get(pgwire::api::METADATA_DATABASE)
                    .cloned()
                    .unwrap_or_else(|| user.clone());
                self.hosts
                    .admit(
                        &user,
                        &database,
                        client.socket_addr().ip(),
                        client.is_secure(),
                    )
                    .map_err(|message| fatal("28000", message))?;
                match self.method {
                    AuthMethod::Trust => {
                        match self.access.role(&user) {
                            None => {
                                return Err(fatal(
                                    "28000",
                                    format!("role \"{user}\" does not exist"),
                                ))
                            }
                            Some(role) if !role.login => {
                                return Err(fatal(
                                    "28000",
                                    format!("role \"{user}\" is not permitted to log in"),
                                ))
                            }
                            Some(_) => {}
                        }
                        self.complete(client).await?;
                    }
                    AuthMethod::Scram => {
                        client.set_state(PgWireConnectionState::AuthenticationInProgress);
                        client
                            .send(PgWireBackendMessage::Authentication(Authentication::SASL(
                                vec![SCRAM_SHA_256.to_owned()],
                            )))
                            .await?;
                        client.flush().await?;
                    }
                }
            }
            PgWireFrontendMessage::PasswordMessageFamily(message) => {
                if self.method != AuthMethod::Scram {
                    return Err(PgWireError::InvalidSASLState);
                }
                let user = user_of(client);
                let mut exchange = self.exchange.lock().await;
                match exchange.take() {
                    None => {
                        let initial = message.into_sasl_initial_response()?;
                        if initial.auth_method != SCRAM_SHA_256 {
                            return Err(PgWireError::UnsupportedSASLAuthMethod(
                                initial.auth_method,
                            ));
                        }
                        let data = initial.data.unwrap_or_default();
                        let (started, server_first) =
                            ServerExchange::start(&data, self.secret_for(&user))
                                .map_err(|_| password_failed(&user))?;
                        *exchange = Some(started);
                        client
                            .send(PgWireBackendMessage::Authentication(
                                Authentication::SASLContinue(server_first.into_bytes().into()),
                            ))
                            .await?;
                        client.flush().await?;
                    }
                    Some(started) => {
                        let response = message.into_sasl_response()?;
                        let server_final = started
                            .finish(&response.data)
                            .map_err(|_| password_failed(&user))?;
                        client
                            .send(PgWireBackendMessage::Authentication(
                                Authentication::SASLFinal(server_final.into_bytes().into()),
                            ))
                            .await?;
                        self.complete(client).await?;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifiers_round_trip_and_hide_their_secret() {
        let verifier = ScramVerifier::from_password("correct horse", DEFAULT_ITERATIONS);
        let text = verifier.encode();
        assert!(!text.contains("correct horse"));
        assert_eq!(ScramVerifier::parse(&text).unwrap(), verifier);
        assert!(!format!("{verifier:?}").contains(&STANDARD.encode(&verifier.salted_password)));
    }

    #[test]
    fn plain_passwords_are_not_verifiers() {
        assert!(ScramVerifier::parse("hunter2").is_err());
        assert!(ScramVerifier::parse("SCRAM-SHA-256$10:AAAA$AAAA").is_err());
    }
}
