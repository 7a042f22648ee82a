//! Named secrets: where a model's API key comes from, defined only by a superuser.
//!
//! ```sql
//! CREATE SECRET [IF NOT EXISTS] openai WITH (env = 'OPENAI_API_KEY');
//! CREATE SECRET vllm WITH (file = '/run/secrets/vllm-key');
//! DROP SECRET [IF EXISTS] openai;
//! CREATE MODEL gpt WITH (base_url = '...', model = '...', api_key_secret = 'openai');
//! ```
//!
//! or `[secrets.openai] env = "OPENAI_API_KEY"` in the configuration file. A secret stores
//! where the key is, never the key: the value is read when a request is sent, so a rotated key
//! takes effect at once and nothing in the data folder or any system table holds it. The
//! SQL-made secrets are kept in `secrets.json` in the data folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use semsql_udfs::lm::LmError;
use serde::{Deserialize, Serialize};

use super::ModelSource;

/// Where a secret's value is read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum SecretSource {
    /// An environment variable of the server's process.
    Env(String),
    /// A file on the server (its content, without the final line break).
    File(PathBuf),
}

impl SecretSource {
    /// From a statement's options: exactly one of `env` and `file`.
    pub fn from_options(
        name: &str,
        options: &super::models::RawOptions,
    ) -> Result<SecretSource, LmError> {
        let invalid =
            |message: &str| LmError::new("22023", format!("secret \"{name}\": {message}"));
        if let Some(unknown) = options
            .keys()
            .find(|key| !matches!(key.as_str(), "env" | "file"))
        {
            return Err(invalid(&format!(
                "unknown option \"{unknown}\" (a secret takes env = 'VARIABLE' or file = '/path')"
            )));
        }
        let source = match (options.get("env"), options.get("file")) {
            (Some(variable), None) => SecretSource::Env(variable.trim().to_owned()),
            (None, Some(path)) => SecretSource::File(PathBuf::from(path.trim())),
            _ => {
                return Err(invalid(
                    "give exactly one of env = 'VARIABLE' and file = '/path'",
                ))
            }
        };
        source.check(name)?;
        Ok(source)
    }

    fn check(&self, name: &str) -> Result<(), LmError> {
        let invalid =
            |message: &str| LmError::new("22023", format!("secret \"{name}\": {message}"));
        match self {
            SecretSource::Env(variable) if variable.is_empty() => {
                Err(invalid("env names no environment variable"))
            }
            SecretSource::File(path) if !path.is_absolute() => {
                Err(invalid("file must be an absolute path"))
            }
            _ => Ok(()),
        }
    }

    /// `env` or `file`, for the system table.
    pub fn kind(&self) -> &'static str {
        match self {
            SecretSource::Env(_) => "env",
            SecretSource::File(_) => "file",
        }
    }

    /// The variable's name or the file's path (never the value), for superusers.
    pub fn location(&self) -> String {
        match self {
            SecretSource::Env(variable) => variable.clone(),
            SecretSource::File(path) => path.display().to_string(),
        }
    }
}

/// A defined secret.
#[derive(Debug, Clone)]
pub struct Secret {
    pub source: SecretSource,
    pub origin: ModelSource,
}

impl Secret {
    /// Where the secret was defined, as the system table shows it.
    pub fn origin_name(&self) -> &'static str {
        match self.origin {
            ModelSource::ConfigFile => "config file",
            ModelSource::Sql => "CREATE SECRET",
        }
    }
}

const SECRETS_FILE: &str = "secrets.json";

/// Every defined secret.
#[derive(Debug)]
pub struct Secrets {
    entries: RwLock<BTreeMap<String, Secret>>,
    /// `secrets.json`; the lock serializes changes to it.
    file: Option<Mutex<PathBuf>>,
}

impl Secrets {
    /// The configuration file's secrets and the data folder's (`None`: nothing persisted).
    pub fn open(
        data_dir: Option<&Path>,
        configured: &BTreeMap<String, SecretSource>,
    ) -> Result<Secrets, LmError> {
        let mut entries = BTreeMap::new();
        for (name, source) in configured {
            source.check(name)?;
            entries.insert(
                name.to_ascii_lowercase(),
                Secret {
                    source: source.clone(),
                    origin: ModelSource::ConfigFile,
                },
            );
        }
        let file = data_dir.map(|dir| dir.join(SECRETS_FILE));
        if let Some(path) = &file {
            for (name, source) in load(path)? {
                if entries.contains_key(&name) {
                    tracing::warn!(%name, "a secret made with CREATE SECRET is shadowed by the config file's");
                    continue;
                }
                entries.insert(
                    name,
                    Secret {
                        source,
                        origin: ModelSource::Sql,
                    },
                );
            }
        }
        Ok(Secrets {
            entries: RwLock::new(entries),
            file: file.map(Mutex::new),
        })
    }

    pub fn exists(&self, name: &str) -> bool {
        self.entries
            .read()
            .expect("secrets lock")
            .contains_key(name)
    }

    /// Every secret, by name.
    pub fn list(&self) -> Vec<(String, Secret)> {
        self.entries
            .read()
            .expect("secrets lock")
            .iter()
            .map(|(name, secret)| (name.clone(), secret.clone()))
            .collect()
    }

    /// The secret's value, read now. The error says which secret lacks a value, not where it
    /// was looked for (the error may reach a role that may only use the model).
    pub fn value(&self, name: &str) -> Result<String, String> {
        let source = self
            .entries
            .read()
            .expect("secrets lock")
            .get(name)
            .map(|secret| secret.source.clone())
            .ok_or_else(|| format!("secret \"{name}\" does not exist"))?;
        let value = match &source {
            SecretSource::Env(variable) => std::env::var(variable).unwrap_or_default(),
            SecretSource::File(path) => std::fs::read_to_string(path).map_err(|err| {
                tracing::warn!(secret = name, path = %path.display(), %err, "cannot read a secret's file");
                format!("secret \"{name}\" cannot be read (see the server log)")
            })?,
        };
        let value = value.trim_end_matches(['\n', '\r']).to_owned();
        if value.is_empty() {
            return Err(format!(
                "secret \"{name}\" has no value (its {} is empty or not set)",
                match source {
                    SecretSource::Env(_) => "environment variable",
                    SecretSource::File(_) => "file",
                }
            ));
        }
        Ok(value)
    }

    /// `CREATE SECRET`: written to `secrets.json` first, then usable.
    pub fn create(
        &self,
        name: &str,
        source: SecretSource,
        if_not_exists: bool,
    ) -> Result<&'static str, LmError> {
        let file = self.stored()?;
        let path = file.lock().expect("secrets file lock");
        if self.exists(name) {
            if if_not_exists {
                return Ok("CREATE SECRET");
            }
            return Err(LmError::new(
                "42710",
                format!("secret \"{name}\" already exists"),
            ));
        }
        let mut stored = load(&path)?;
        stored.insert(name.to_owned(), source.clone());
        save(&path, &stored)?;
        self.entries.write().expect("secrets lock").insert(
            name.to_owned(),
            Secret {
                source,
                origin: ModelSource::Sql,
            },
        );
        Ok("CREATE SECRET")
    }

    /// `DROP SECRET`; `used_by` names a model that still uses it (which stops the drop, as
    /// PostgreSQL stops dropping an object others depend on).
    pub fn drop_secret(
        &self,
        name: &str,
        if_exists: bool,
        used_by: Option<String>,
    ) -> Result<&'static str, LmError> {
        let file = self.stored()?;
        let path = file.lock().expect("secrets file lock");
        let origin = self
            .entries
            .read()
            .expect("secrets lock")
            .get(name)
            .map(|secret| secret.origin);
        match origin {
            None if if_exists => return Ok("DROP SECRET"),
            None => {
                return Err(LmError::new(
                    "42704",
                    format!("secret \"{name}\" does not exist"),
                ))
            }
            Some(ModelSource::ConfigFile) => {
                return Err(LmError::new(
                    "42501",
                    format!("secret \"{name}\" is defined in the config file; change it there"),
                ))
            }
            Some(ModelSource::Sql) => {}
        }
        if let Some(model) = used_by {
            return Err(LmError::new(
                "2BP01",
                format!("cannot drop secret \"{name}\" because model \"{model}\" uses it"),
            ));
        }
        let mut stored = load(&path)?;
        stored.remove(name);
        save(&path, &stored)?;
        self.entries.write().expect("secrets lock").remove(name);
        Ok("DROP SECRET")
    }

    fn stored(&self) -> Result<&Mutex<PathBuf>, LmError> {
        self.file
            .as_ref()
            .ok_or_else(|| LmError::new("0A000", "this server keeps no secrets (no data folder)"))
    }
}

fn load(path: &Path) -> Result<BTreeMap<String, SecretSource>, LmError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|err| LmError::new("XX001", format!("{} is damaged: {err}", path.display()))),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(err) => Err(LmError::new(
            "58030",
            format!("cannot read {}: {err}", path.display()),
        )),
    }
}

fn save(path: &Path, secrets: &BTreeMap<String, SecretSource>) -> Result<(), LmError> {
    let bytes = serde_json::to_vec_pretty(secrets).expect("secrets serialize");
    crate::engine::storage::write_atomically(path, &bytes)
        .map_err(|err| LmError::new("58030", format!("cannot save secrets: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_persist_and_read_their_source_when_used() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("key");
        std::fs::write(&key_file, "sk-from-file\n").unwrap();
        let configured = BTreeMap::from([(
            "cfg".to_owned(),
            SecretSource::Env("SEMSQL_TEST_SECRET_UNSET".into()),
        )]);
        let secrets = Secrets::open(Some(dir.path()), &configured).unwrap();
        secrets
            .create("disk", SecretSource::File(key_file.clone()), false)
            .unwrap();
        assert_eq!(secrets.value("disk").unwrap(), "sk-from-file");
        let err = secrets.value("cfg").unwrap_err();
        assert!(
            err.contains("no value") && !err.contains("SEMSQL_TEST"),
            "{err}"
        );
        assert_eq!(
            secrets
                .create("disk", SecretSource::Env("X".into()), false)
                .unwrap_err()
                .sqlstate,
            "42710"
        );
        assert_eq!(
            secrets
                .drop_secret("cfg", false, None)
                .unwrap_err()
                .sqlstate,
            "42501"
        );
        assert_eq!(
            secrets
                .drop_secret("disk", false, Some("m".into()))
                .unwrap_err()
                .sqlstate,
            "2BP01"
        );
        let reopened = Secrets::open(Some(dir.path()), &BTreeMap::new()).unwrap();
        assert_eq!(reopened.value("disk").unwrap(), "sk-from-file");
        reopened.drop_secret("disk", false, None).unwrap();
        let stored = std::fs::read_to_string(dir.path().join(SECRETS_FILE)).unwrap();
        assert!(!stored.contains("disk"), "{stored}");
        let bad = raw(&[("env", "A"), ("file", "/b")]);
        assert!(SecretSource::from_options("s", &bad).is_err());
        let relative = raw(&[("file", "key.txt")]);
        assert!(SecretSource::from_options("s", &relative).is_err());
    }

    fn raw(pairs: &[(&str, &str)]) -> crate::llm::models::RawOptions {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}
