//! Configuration: a TOML file, then `SEMSQL_*` environment variables, then command-line flags,
//! each overriding the one before. Validated once, at start, by [`Config::validate`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::SemsqlError;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:5433";

/// Logs to standard error, filtered by `SEMSQL_LOG` (`info` when unset). In the library, not
/// the binary, so the subscriber's generic layers are compiled once, not on every build of
/// `main.rs`.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SEMSQL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}
pub const DEFAULT_DATA_DIR: &str = "./semsql-data";
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// How clients prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    /// Anyone may connect as any user: only allowed on a loopback address.
    Trust,
    /// SCRAM-SHA-256 against the users listed in the configuration.
    Scram,
}

/// A user allowed to log in with SCRAM-SHA-256. `password` holds a verifier made by
/// `semsql password`, never the password itself.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    pub password: String,
    /// A superuser may do anything; other roles only what they were granted (default false).
    #[serde(default)]
    pub superuser: bool,
}

impl UserConfig {
    /// The user's SCRAM secret: PostgreSQL's verifier form (what `semsql password` prints), or
    /// the older salted-password form, which still works but is login-equivalent.
    pub fn secret(&self) -> Result<crate::access::scram::ScramSecret, SemsqlError> {
        if let Ok(secret) = crate::access::scram::ScramSecret::parse_postgres(&self.password) {
            return Ok(secret);
        }
        let old = crate::server::auth::ScramVerifier::parse(&self.password)
            .map_err(|err| SemsqlError::Config(format!("user {:?}: {err}", self.name)))?;
        Ok(crate::access::scram::ScramSecret::from_salted_password(
            old.iterations,
            old.salt,
            &old.salted_password,
        ))
    }
}

impl std::fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserConfig")
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .field("superuser", &self.superuser)
            .finish()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Refuse connections that do not negotiate TLS (as `hostssl` lines in pg_hba.conf).
    #[serde(default)]
    pub required: bool,
}

/// The `[llm]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmFileConfig {
    /// The model used when a session has not chosen one with `SET semsql.model`.
    pub default_model: Option<String>,
    /// The in-memory answer cache's size, in MiB (default 64).
    pub cache_memory_mb: Option<u64>,
    /// When not empty, a model's `base_url` must start with one of these (for every role:
    /// outbound addresses are the administrator's to give).
    #[serde(default)]
    pub allowed_base_urls: Vec<String>,
    /// Most background rewrite searches (`semsql.rewrite = 'auto'`) running at once on the
    /// server (default 2); a slow query that finds them all busy is not searched.
    pub rewrite_max_background: Option<usize>,
    /// The folder of the local embedding model, relative to the config file (default: the
    /// user's cache, `~/.cache/semsql/models/all-MiniLM-L6-v2`, filled by `semsql fetch-models`).
    pub local_model_dir: Option<PathBuf>,
}

/// The `[files]` table: where SQL may read and write server files (`COPY ... TO 'file'`,
/// `CREATE EXTERNAL TABLE`), for superusers and members of `pg_read_server_files` /
/// `pg_write_server_files`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    /// When not empty, only paths inside these directories.
    #[serde(default)]
    pub directories: Vec<PathBuf>,
}

/// The configuration file's shape; every field is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub max_connections: Option<usize>,
    pub auth: Option<AuthMethod>,
    /// Memory for query execution, e.g. "2GB" (see `--memory-limit`).
    pub memory_limit: Option<String>,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub users: Vec<UserConfig>,
    #[serde(default)]
    pub llm: LlmFileConfig,
    #[serde(default)]
    pub files: FilesConfig,
    /// `[models.NAME]` tables: the same options as `CREATE MODEL ... WITH (...)`.
    #[serde(default)]
    pub models: BTreeMap<String, toml::Table>,
    /// `[secrets.NAME]` tables: where an API key comes from (`env = "VAR"` or `file = "/path"`).
    #[serde(default)]
    pub secrets: BTreeMap<String, crate::llm::secrets::SecretSource>,
    /// `[[hba]]` tables: who may connect from where, with or without TLS.
    #[serde(default)]
    pub hba: Vec<crate::server::hba::HbaRule>,
    /// Ends a session idle inside a transaction this long (e.g. "5min"; PostgreSQL's setting,
    /// which a session may change with SET). Default: none.
    pub idle_in_transaction_session_timeout: Option<String>,
    /// Ends a session idle outside a transaction this long. Default: none.
    pub idle_session_timeout: Option<String>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, SemsqlError> {
        let text = std::fs::read_to_string(path).map_err(|err| {
            SemsqlError::Config(format!("cannot read config file {}: {err}", path.display()))
        })?;
        let mut config: FileConfig = toml::from_str(&text).map_err(|err| {
            SemsqlError::Config(format!("config file {}: {}", path.display(), err.message()))
        })?;
        // A relative folder in the file is relative to the file, not to where semsql runs.
        if let (Some(dir), Some(base)) = (config.llm.local_model_dir.as_mut(), path.parent()) {
            if dir.is_relative() {
                *dir = base.join(&*dir);
            }
        }
        Ok(config)
    }
}

/// The settings given on the command line or in the environment (clap reads both).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub max_connections: Option<usize>,
    pub auth: Option<AuthMethod>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub memory_limit: Option<String>,
    pub demo: bool,
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub max_connections: usize,
    pub auth: AuthMethod,
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Plaintext startups are refused.
    pub tls_required: bool,
    pub users: Vec<UserConfig>,
    pub demo: bool,
    pub llm: crate::llm::LlmConfig,
    pub files: FilesConfig,
    /// Bytes of memory query execution may use (`None`: no limit).
    pub memory_limit: Option<usize>,
    /// The `[[hba]]` rules.
    pub hba: crate::server::hba::HostRules,
    /// The server's idle timeouts (sessions may change theirs with SET).
    pub idle: crate::server::connection::IdleTimeouts,
}

impl Config {
    /// Merges file and overrides (overrides win) and checks the result.
    pub fn resolve(file: FileConfig, overrides: Overrides) -> Result<Self, SemsqlError> {
        let listen_text = overrides
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            SemsqlError::Config(format!(
                "listen address {listen_text:?} is not of the form IP:PORT (e.g. 127.0.0.1:5433)"
            ))
        })?;
        let users = file.users;
        let llm = llm_config(&file.llm, &file.models, &file.secrets)?;
        let llm = with_environment_models(llm, |name| std::env::var(name).ok());
        for url in &llm.allowed_base_urls {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(SemsqlError::Config(format!(
                    "llm.allowed_base_urls: {url:?} is not an http:// or https:// URL"
                )));
            }
        }
        let auth = overrides.auth.or(file.auth).unwrap_or(if users.is_empty() {
            AuthMethod::Trust
        } else {
            AuthMethod::Scram
        });
        let cert = overrides.tls_cert.or(file.tls.cert);
        let key = overrides.tls_key.or(file.tls.key);
        let tls = match (cert, key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => {
                return Err(SemsqlError::Config(
                    "TLS needs both a certificate and a key (tls.cert and tls.key)".into(),
                ))
            }
        };
        let timeout = |name: &str, text: &Option<String>| -> Result<u64, SemsqlError> {
            match text {
                None => Ok(0),
                Some(text) => {
                    crate::server::connection::parse_milliseconds(text).ok_or_else(|| {
                        SemsqlError::Config(format!(
                            "{name} {text:?} is not a time such as 30s, 5min or 1h"
                        ))
                    })
                }
            }
        };
        let idle = crate::server::connection::IdleTimeouts {
            in_transaction_ms: timeout(
                "idle_in_transaction_session_timeout",
                &file.idle_in_transaction_session_timeout,
            )?,
            session_ms: timeout("idle_session_timeout", &file.idle_session_timeout)?,
        };
        let hba = crate::server::hba::HostRules::new(&file.hba)?;
        let config = Config {
            listen,
            data_dir: overrides
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            max_connections: overrides
                .max_connections
                .or(file.max_connections)
                .unwrap_or(DEFAULT_MAX_CONNECTIONS),
            auth,
            tls,
            tls_required: file.tls.required,
            users,
            demo: overrides.demo,
            llm,
            files: file.files,
            memory_limit: overrides
                .memory_limit
                .or(file.memory_limit)
                .map(|text| parse_bytes(&text))
                .transpose()?,
            hba,
            idle,
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), SemsqlError> {
        if self.auth == AuthMethod::Trust && !self.listen.ip().is_loopback() {
            return Err(SemsqlError::Config(format!(
                "trust authentication is only allowed on a loopback address, not {}; \
                 add [[users]] with `semsql password` verifiers or listen on 127.0.0.1",
                self.listen
            )));
        }
        if self.auth == AuthMethod::Scram && self.users.is_empty() {
            return Err(SemsqlError::Config(
                "scram authentication needs at least one [[users]] entry".into(),
            ));
        }
        if self.max_connections == 0 {
            return Err(SemsqlError::Config(
                "max_connections must be at least 1".into(),
            ));
        }
        for user in &self.users {
            user.secret()?;
        }
        if self.tls_required && self.tls.is_none() {
            return Err(SemsqlError::Config(
                "tls.required needs tls.cert and tls.key".into(),
            ));
        }
        for dir in &self.files.directories {
            if !dir.is_absolute() {
                return Err(SemsqlError::Config(format!(
                    "files.directories must be absolute paths, not {}",
                    dir.display()
                )));
            }
        }
        Ok(())
    }
}

/// `"2GB"`, `"512MB"`, `"256MiB"`, `"1048576"`: a size in bytes (units are powers of 1024, as
/// PostgreSQL's memory settings use them).
pub fn parse_bytes(text: &str) -> Result<usize, SemsqlError> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let scale: usize = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" | "KIB" | "K" => 1 << 10,
        "MB" | "MIB" | "M" => 1 << 20,
        "GB" | "GIB" | "G" => 1 << 30,
        "TB" | "TIB" | "T" => 1 << 40,
        _ => 0,
    };
    let value: usize = number.parse().unwrap_or(0);
    match value.checked_mul(scale) {
        Some(bytes) if bytes >= 1 << 20 => Ok(bytes),
        _ => Err(SemsqlError::Config(format!(
            "memory_limit {text:?} is not a size of at least 1MB (e.g. 512MB, 2GB)"
        ))),
    }
}

/// Models the server's environment offers when the configuration does not name them:
/// `OPENAI_API_KEY` gives `openai` (OpenAI's `gpt-4o-mini`; the key is read from the variable
/// at each request, never copied), `OLLAMA_HOST` gives `ollama` (Ollama's OpenAI-compatible
/// endpoint on that host, the model `OLLAMA_MODEL` or `llama3.2`). They are read-only, as
/// the configuration file's models are; the first becomes the default model when the
/// configuration chooses none. A `[models.openai]` or `[models.ollama]` table overrides them.
pub fn with_environment_models(
    mut llm: crate::llm::LlmConfig,
    env: impl Fn(&str) -> Option<String>,
) -> crate::llm::LlmConfig {
    let set = |name: &str| env(name).filter(|value| !value.trim().is_empty());
    let mut offered: Vec<(&str, crate::llm::models::RawOptions)> = Vec::new();
    if set("OPENAI_API_KEY").is_some() {
        offered.push((
            "openai",
            [
                ("base_url", "https://api.openai.com/v1".to_owned()),
                ("model", "gpt-4o-mini".to_owned()),
                ("api_key_env", "OPENAI_API_KEY".to_owned()),
                ("structured_output", "json_schema".to_owned()),
            ]
            .map(|(key, value)| (key.to_owned(), value))
            .into(),
        ));
    }
    if let Some(host) = set("OLLAMA_HOST") {
        // Ollama's own forms: `host`, `host:port`, `http://host:port`; its port is 11434.
        let host = host.trim().trim_end_matches('/');
        let with_scheme = if host.contains("://") {
            host.to_owned()
        } else {
            format!("http://{host}")
        };
        let after_scheme = with_scheme.split_once("://").map_or("", |(_, rest)| rest);
        let base = if after_scheme.contains(':') {
            with_scheme
        } else {
            format!("{with_scheme}:11434")
        };
        offered.push((
            "ollama",
            [
                ("base_url", format!("{base}/v1")),
                (
                    "model",
                    set("OLLAMA_MODEL").unwrap_or_else(|| "llama3.2".to_owned()),
                ),
                ("structured_output", "json_schema".to_owned()),
            ]
            .map(|(key, value)| (key.to_owned(), value))
            .into(),
        ));
    }
    for (name, options) in offered {
        if llm.models.contains_key(name) {
            continue;
        }
        tracing::info!(
            model = name,
            base_url = %options["base_url"],
            "model offered by the environment (read-only; a [models.{name}] table overrides it)"
        );
        llm.models.insert(name.to_owned(), options);
        if llm.default_model.is_none() {
            tracing::info!(model = name, "default model");
            llm.default_model = Some(name.to_owned());
        }
    }
    llm
}

/// The runtime's settings from `[llm]` and `[models.*]`; each model's options are checked here,
/// so a bad model stops the server at start with a message naming it.
fn llm_config(
    llm: &LlmFileConfig,
    models: &BTreeMap<String, toml::Table>,
    secrets: &BTreeMap<String, crate::llm::secrets::SecretSource>,
) -> Result<crate::llm::LlmConfig, SemsqlError> {
    let mut raw_models = BTreeMap::new();
    for (name, table) in models {
        let mut raw = crate::llm::models::RawOptions::new();
        for (key, value) in table {
            let text = match value {
                toml::Value::String(text) => text.clone(),
                toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => {
                    value.to_string()
                }
                toml::Value::Table(headers) if key == "headers" => {
                    let map: BTreeMap<&String, String> = headers
                        .iter()
                        .map(|(name, value)| {
                            (
                                name,
                                value
                                    .as_str()
                                    .map_or_else(|| value.to_string(), str::to_owned),
                            )
                        })
                        .collect();
                    serde_json::to_string(&map).unwrap_or_default()
                }
                _ => {
                    return Err(SemsqlError::Config(format!(
                        "models.{name}.{key}: expected a string, number or boolean"
                    )))
                }
            };
            raw.insert(key.to_ascii_lowercase(), text);
        }
        let options = crate::llm::models::ModelOptions::parse(name, &raw)
            .map_err(|err| SemsqlError::Config(err.message))?;
        if let Some(secret) = &options.api_key_secret {
            if !secrets
                .keys()
                .any(|defined| defined.eq_ignore_ascii_case(secret))
            {
                return Err(SemsqlError::Config(format!(
                    "models.{name}.api_key_secret is \"{secret}\", but no [secrets.{secret}] \
                     table defines it"
                )));
            }
        }
        raw_models.insert(name.to_ascii_lowercase(), raw);
    }
    if let Some(default) = &llm.default_model {
        if !raw_models.contains_key(default) {
            return Err(SemsqlError::Config(format!(
                "llm.default_model is \"{default}\", but no [models.{default}] table defines it"
            )));
        }
    }
    Ok(crate::llm::LlmConfig {
        models: raw_models,
        default_model: llm.default_model.clone(),
        cache_memory_bytes: llm.cache_memory_mb.unwrap_or(64) << 20,
        allowed_base_urls: llm.allowed_base_urls.clone(),
        rewrite_max_background: llm.rewrite_max_background.unwrap_or(2),
        secrets: secrets.clone(),
        local_model_dir: llm.local_model_dir.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_offers_models_the_configuration_does_not_name() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| (*value).to_owned())
            }
        };
        let llm = with_environment_models(
            crate::llm::LlmConfig::default(),
            env(&[("OPENAI_API_KEY", "sk-test"), ("OLLAMA_HOST", "gpu-box")]),
        );
        assert_eq!(llm.default_model.as_deref(), Some("openai"));
        assert_eq!(llm.models["openai"]["api_key_env"], "OPENAI_API_KEY");
        // The key itself is never copied into the configuration.
        assert!(!format!("{:?}", llm.models).contains("sk-test"));
        assert_eq!(llm.models["ollama"]["base_url"], "http://gpu-box:11434/v1");
        assert_eq!(llm.models["ollama"]["model"], "llama3.2");
        for options in llm.models.values() {
            crate::llm::models::ModelOptions::parse("m", options).unwrap();
        }

        let llm = with_environment_models(
            crate::llm::LlmConfig::default(),
            env(&[
                ("OLLAMA_HOST", "https://ollama.example:8443/"),
                ("OLLAMA_MODEL", "qwen2.5:1.5b"),
            ]),
        );
        assert_eq!(llm.default_model.as_deref(), Some("ollama"));
        assert_eq!(
            llm.models["ollama"]["base_url"],
            "https://ollama.example:8443/v1"
        );
        assert_eq!(llm.models["ollama"]["model"], "qwen2.5:1.5b");

        // A configured model of the same name, and a configured default, win.
        let mut configured = crate::llm::LlmConfig::default();
        configured.models.insert(
            "openai".to_owned(),
            [("base_url", "http://127.0.0.1:1/v1"), ("model", "mine")]
                .map(|(key, value)| (key.to_owned(), value.to_owned()))
                .into(),
        );
        configured.default_model = Some("openai".to_owned());
        let llm = with_environment_models(configured, env(&[("OPENAI_API_KEY", "sk-test")]));
        assert_eq!(llm.models["openai"]["model"], "mine");
        let none = with_environment_models(crate::llm::LlmConfig::default(), env(&[]));
        assert!(none.models.is_empty() && none.default_model.is_none());
    }

    #[test]
    fn defaults_need_no_file() {
        let config = Config::resolve(FileConfig::default(), Overrides::default()).unwrap();
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.auth, AuthMethod::Trust);
    }

    #[test]
    fn trust_is_refused_off_loopback() {
        let overrides = Overrides {
            listen: Some("0.0.0.0:5433".into()),
            ..Overrides::default()
        };
        let err = Config::resolve(FileConfig::default(), overrides).unwrap_err();
        assert!(err.to_string().contains("loopback"), "{err}");
    }

    #[test]
    fn flags_override_the_file() {
        let file: FileConfig =
            toml::from_str("listen = '127.0.0.1:7000'\nmax_connections = 5").unwrap();
        let overrides = Overrides {
            listen: Some("127.0.0.1:7001".into()),
            ..Overrides::default()
        };
        let config = Config::resolve(file, overrides).unwrap();
        assert_eq!(config.listen.port(), 7001);
        assert_eq!(config.max_connections, 5);
    }

    #[test]
    fn models_in_the_file_are_checked() {
        let file: FileConfig = toml::from_str(
            "[llm]\ndefault_model = 'fast'\n[models.fast]\nbase_url = 'http://127.0.0.1:9/v1'\n\
             model = 'm'\nconcurrency = 4\nheaders = { X-Team = 'data' }",
        )
        .unwrap();
        let config = Config::resolve(file, Overrides::default()).unwrap();
        assert_eq!(config.llm.models["fast"]["concurrency"], "4");
        assert_eq!(config.llm.models["fast"]["headers"], r#"{"X-Team":"data"}"#);
        let file: FileConfig =
            toml::from_str("[models.bad]\nbase_url = 'ftp://x'\nmodel = 'm'").unwrap();
        let err = Config::resolve(file, Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("model \"bad\""), "{err}");
    }

    #[test]
    fn unknown_keys_and_plaintext_passwords_are_rejected() {
        assert!(toml::from_str::<FileConfig>("listn = 'x'").is_err());
        let file: FileConfig =
            toml::from_str("[[users]]\nname = 'alice'\npassword = 'hunter2'").unwrap();
        let err = Config::resolve(file, Overrides::default()).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
