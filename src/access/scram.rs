//! SCRAM-SHA-256 secrets in PostgreSQL's form, and the server side of the exchange.
//!
//! A role's password is kept as PostgreSQL keeps it, `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`
//! (all base64): StoredKey is H(HMAC(SaltedPassword, "Client Key")) and ServerKey is
//! HMAC(SaltedPassword, "Server Key"). Neither lets anyone log in: a client must prove it
//! knows ClientKey, whose hash is StoredKey (RFC 5802). `ALTER ROLE ... PASSWORD` accepts
//! such a verifier as psql's `\password` sends it, so the password never reaches the server.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

const SCHEME: &str = "SCRAM-SHA-256";
/// PostgreSQL's default (`scram_iterations`).
pub const DEFAULT_ITERATIONS: usize = 4096;

/// What the server keeps of a SCRAM password.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramSecret {
    pub iterations: usize,
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScramSecret(<redacted>)")
    }
}

fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

/// Equality whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl ScramSecret {
    /// From the salted password (what `semsql password` verifiers in the config file hold).
    pub fn from_salted_password(iterations: usize, salt: Vec<u8>, salted: &[u8]) -> Self {
        ScramSecret {
            iterations,
            salt,
            stored_key: sha256(&hmac(salted, b"Client Key")),
            server_key: hmac(salted, b"Server Key"),
        }
    }

    /// From a password, with a fresh random salt.
    pub fn from_password(password: &str) -> Self {
        let salt = uuid::Uuid::new_v4().into_bytes().to_vec();
        let salted = pgwire::api::auth::sasl::scram::gen_salted_password(
            password,
            &salt,
            DEFAULT_ITERATIONS,
        );
        Self::from_salted_password(DEFAULT_ITERATIONS, salt, &salted)
    }

    /// Parses PostgreSQL's verifier text.
    pub fn parse_postgres(text: &str) -> Result<Self, String> {
        let invalid = || "not a SCRAM-SHA-256 verifier".to_owned();
        let rest = text
            .strip_prefix(SCHEME)
            .and_then(|r| r.strip_prefix('$'))
            .ok_or_else(invalid)?;
        let (params, keys) = rest.split_once('$').ok_or_else(invalid)?;
        let (iterations, salt) = params.split_once(':').ok_or_else(invalid)?;
        let (stored, server) = keys.split_once(':').ok_or_else(invalid)?;
        let iterations: usize = iterations.parse().map_err(|_| invalid())?;
        if iterations == 0 {
            return Err(invalid());
        }
        let decode = |s: &str| STANDARD.decode(s).map_err(|_| invalid());
        let secret = ScramSecret {
            iterations,
            salt: decode(salt)?,
            stored_key: decode(stored)?,
            server_key: decode(server)?,
        };
        if secret.stored_key.len() != 32 || secret.server_key.len() != 32 {
            return Err(invalid());
        }
        Ok(secret)
    }

    pub fn to_postgres(&self) -> String {
        format!(
            "{SCHEME}${}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(&self.stored_key),
            STANDARD.encode(&self.server_key)
        )
    }

    /// Whether `text` looks like a verifier (so `PASSWORD '...'` is taken as one, as
    /// PostgreSQL does, rather than as a password).
    pub fn looks_like_verifier(text: &str) -> bool {
        text.starts_with("SCRAM-SHA-256$")
    }
}

/// The server's side of one SCRAM-SHA-256 exchange (no channel binding: the mechanism
/// offered is plain `SCRAM-SHA-256`).
#[derive(Debug)]
pub struct ServerExchange {
    secret: ScramSecret,
    client_first_bare: String,
    server_first: String,
    gs2_header: String,
    nonce: String,
}

/// Why an exchange failed; every failure reads the same to the client.
#[derive(Debug, PartialEq, Eq)]
pub enum ScramError {
    Malformed(&'static str),
    WrongProof,
}

impl ServerExchange {
    /// Reads the client-first message and makes the server-first one.
    pub fn start(client_first: &[u8], secret: ScramSecret) -> Result<(Self, String), ScramError> {
        let text = std::str::from_utf8(client_first).map_err(|_| ScramError::Malformed("utf8"))?;
        // gs2-header: "n,," or "y,," (the client could bind but thinks we cannot); "p=..."
        // asks for channel binding, which we do not offer.
        let (flag, rest) = text
            .split_once(',')
            .ok_or(ScramError::Malformed("header"))?;
        if flag != "n" && flag != "y" {
            return Err(ScramError::Malformed("channel binding is not offered"));
        }
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or(ScramError::Malformed("header"))?;
        if !authzid.is_empty() {
            return Err(ScramError::Malformed("authzid"));
        }
        let gs2_header = format!("{flag},,");
        let client_nonce = bare
            .split(',')
            .find_map(|part| part.strip_prefix("r="))
            .filter(|nonce| !nonce.is_empty())
            .ok_or(ScramError::Malformed("nonce"))?;
        let nonce = format!(
            "{client_nonce}{}",
            STANDARD.encode(uuid::Uuid::new_v4().into_bytes())
        );
        let server_first = format!(
            "r={nonce},s={},i={}",
            STANDARD.encode(&secret.salt),
            secret.iterations
        );
        Ok((
            ServerExchange {
                secret,
                client_first_bare: bare.to_owned(),
                server_first: server_first.clone(),
                gs2_header,
                nonce,
            },
            server_first,
        ))
    }

    /// Checks the client-final message's proof; on success, the server-final message.
    pub fn finish(&self, client_final: &[u8]) -> Result<String, ScramError> {
        let text = std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("utf8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("proof"))?;
        let mut binding = None;
        let mut nonce = None;
        for part in without_proof.split(',') {
            if let Some(value) = part.strip_prefix("c=") {
                binding = Some(value);
            } else if let Some(value) = part.strip_prefix("r=") {
                nonce = Some(value);
            }
        }
        if binding != Some(STANDARD.encode(&self.gs2_header).as_str()) {
            return Err(ScramError::Malformed("channel binding"));
        }
        if nonce != Some(self.nonce.as_str()) {
            return Err(ScramError::Malformed("nonce"));
        }
        let proof = STANDARD
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof"))?;
        let auth_message = format!(
            "{},{},{without_proof}",
            self.client_first_bare, self.server_first
        );
        let client_signature = hmac(&self.secret.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err(ScramError::WrongProof);
        }
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(a, b)| a ^ b)
            .collect();
        if !constant_time_eq(&sha256(&client_key), &self.secret.stored_key) {
            return Err(ScramError::WrongProof);
        }
        let server_signature = hmac(&self.secret.server_key, auth_message.as_bytes());
        Ok(format!("v={}", STANDARD.encode(server_signature)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's side of the exchange, as RFC 5802 defines it.
    fn client_final(password: &str, server_first: &str, client_first_bare: &str) -> String {
        let fields: Vec<&str> = server_first.split(',').collect();
        let nonce = &fields[0][2..];
        let salt = STANDARD.decode(&fields[1][2..]).unwrap();
        let iterations: usize = fields[2][2..].parse().unwrap();
        let salted =
            pgwire::api::auth::sasl::scram::gen_salted_password(password, &salt, iterations);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key = sha256(&client_key);
        let without_proof = format!("c={},r={nonce}", STANDARD.encode("n,,"));
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        format!("{without_proof},p={}", STANDARD.encode(proof))
    }

    #[test]
    fn the_right_password_passes_and_a_wrong_one_fails() {
        let secret = ScramSecret::from_password("correct horse");
        let text = secret.to_postgres();
        assert!(!text.contains("correct horse"));
        assert_eq!(ScramSecret::parse_postgres(&text).unwrap(), secret);
        for (password, ok) in [("correct horse", true), ("wrong", false)] {
            let (exchange, server_first) =
                ServerExchange::start(b"n,,n=alice,r=abc", secret.clone()).unwrap();
            let answer = client_final(password, &server_first, "n=alice,r=abc");
            assert_eq!(exchange.finish(answer.as_bytes()).is_ok(), ok, "{password}");
        }
    }

    #[test]
    fn channel_binding_requests_and_garbage_are_refused() {
        let secret = ScramSecret::from_password("x");
        assert!(ServerExchange::start(b"p=tls-server-end-point,,n=a,r=x", secret.clone()).is_err());
        assert!(ServerExchange::start(b"garbage", secret.clone()).is_err());
        let (exchange, _) = ServerExchange::start(b"n,,n=a,r=x", secret).unwrap();
        assert!(exchange.finish(b"c=biws,r=wrong,p=AAAA").is_err());
        assert!(exchange.finish(b"\xff").is_err());
    }
}
