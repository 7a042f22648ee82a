//! Authentication: `trust` (loopback only, checked in `Config`) or SCRAM-SHA-256 against the
//! users in the configuration, whose secrets are stored as verifiers made by `semsql password`.
//!
//! A verifier is `SCRAM-SHA-256$<iterations>:<salt>$<salted password>` (base64): the salted
//! password is what pgwire's SCRAM exchange needs; it is never the password itself, and it is
//! never logged (`UserConfig`'s `Debug` redacts it).

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use futures::{Sink, SinkExt};
use pgwire::api::auth::sasl::scram::{gen_salted_password, ScramAuth};
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::{
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata, AuthSource,
    DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use pgwire::api::{
    ClientInfo, ConnectionManager, PidSecretKeyGenerator, RandomPidSecretKeyGenerator,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use crate::config::{AuthMethod, Config};
use crate::engine::functions::POSTGRES_VERSION;

const SCHEME: &str = "SCRAM-SHA-256";
pub const DEFAULT_ITERATIONS: usize = 4096;

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

/// The configured users, looked up during the SCRAM exchange.
#[derive(Debug)]
struct ConfiguredUsers {
    users: HashMap<String, ScramVerifier>,
    /// Seeds the stand-in salt for unknown users (see `get_password`).
    mock_seed: RandomState,
}

#[async_trait]
impl AuthSource for ConfiguredUsers {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let user = login.user().unwrap_or_default();
        match self.users.get(user) {
            Some(verifier) => Ok(Password::new(
                Some(verifier.salt.clone()),
                verifier.salted_password.clone(),
            )),
            // As PostgreSQL does, an unknown user gets an exchange with a stable stand-in salt
            // that no password matches: the failure looks exactly like a wrong password, so user
            // names cannot be probed.
            None => {
                let salt: Vec<u8> = [1u8, 2]
                    .iter()
                    .flat_map(|round| self.mock_seed.hash_one((round, user)).to_be_bytes())
                    .collect();
                let unmatchable = uuid::Uuid::new_v4().into_bytes().repeat(2);
                Ok(Password::new(Some(salt), unmatchable))
            }
        }
    }
}

/// The parameters a client receives at startup; `server_version` must be numeric because
/// libpq and drivers parse it.
pub fn server_parameters() -> DefaultServerParameterProvider {
    let mut parameters = DefaultServerParameterProvider::default();
    parameters.server_version = POSTGRES_VERSION.to_owned();
    parameters
}

/// Accepts anyone: the startup sequence of a trusting PostgreSQL, registered for cancellation.
pub struct TrustStartup {
    parameters: DefaultServerParameterProvider,
    connections: Arc<ConnectionManager>,
    keys: Arc<RandomPidSecretKeyGenerator>,
}

#[async_trait]
impl StartupHandler for TrustStartup {
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
        if let PgWireFrontendMessage::Startup(ref startup) = message {
            protocol_negotiation(client, startup).await?;
            save_startup_parameters_to_metadata(client, startup);
            let (pid, secret_key) = self.keys.generate(client);
            client.set_pid_and_secret_key(pid, secret_key.clone());
            let (handle, guard) = self.connections.register(pid, secret_key);
            client.session_extensions().insert(handle);
            client.session_extensions().insert(guard);
            finish_authentication(client, &self.parameters).await?;
            client.flush().await?;
        }
        Ok(())
    }
}

/// Makes each connection's startup handler (SCRAM keeps per-connection exchange state, so a
/// handler must never be shared between connections).
pub struct Authenticator {
    method: AuthMethod,
    users: Arc<ConfiguredUsers>,
    iterations: usize,
    connections: Arc<ConnectionManager>,
    keys: Arc<RandomPidSecretKeyGenerator>,
}

impl Authenticator {
    pub fn new(config: &Config, connections: Arc<ConnectionManager>) -> Self {
        let users = config
            .users
            .iter()
            .map(|user| {
                let verifier = ScramVerifier::parse(&user.password)
                    .expect("verifiers are validated with the config");
                (user.name.clone(), verifier)
            })
            .collect::<HashMap<_, _>>();
        // pgwire announces one iteration count to every client.
        let iterations = users
            .values()
            .map(|v| v.iterations)
            .max()
            .unwrap_or(DEFAULT_ITERATIONS);
        Authenticator {
            method: config.auth,
            users: Arc::new(ConfiguredUsers {
                users,
                mock_seed: RandomState::new(),
            }),
            iterations,
            connections,
            keys: Arc::new(RandomPidSecretKeyGenerator::default()),
        }
    }

    /// A fresh startup handler for one connection.
    pub fn for_connection(&self) -> Startup {
        match self.method {
            AuthMethod::Trust => Startup::Trust(TrustStartup {
                parameters: server_parameters(),
                connections: self.connections.clone(),
                keys: self.keys.clone(),
            }),
            AuthMethod::Scram => {
                let mut scram = ScramAuth::new(self.users.clone());
                scram.set_iterations(self.iterations);
                Startup::Scram(
                    SASLAuthStartupHandler::new(Arc::new(server_parameters()))
                        .with_scram(scram)
                        .with_connection_manager(self.connections.clone()),
                )
            }
        }
    }
}

/// One connection's startup handler.
pub enum Startup {
    Trust(TrustStartup),
    Scram(SASLAuthStartupHandler<DefaultServerParameterProvider>),
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
        match self {
            Startup::Trust(trust) => trust.on_startup(client, message).await,
            Startup::Scram(scram) => scram.on_startup(client, message).await,
        }
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
