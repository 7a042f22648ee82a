//! Named models: their options, where they come from (the config file or `CREATE MODEL`), and
//! the SQL-created ones persisted in `models.json` in the data folder.
//!
//! Options are kept as the text the user gave and validated into [`ModelOptions`], so that
//! `ALTER MODEL` can change one option and `SHOW MODELS` can print them back. An API key is never
//! an option: `api_key_secret` names a secret (see `secrets`), or `api_key_env` the environment
//! variable that holds it; both only a superuser may give.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use semsql_udfs::lm::LmError;

/// The options of a model, as given (lower-case keys, text values).
pub type RawOptions = BTreeMap<String, String>;

/// How a model is asked for JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StructuredOutput {
    /// `response_format: {"type": "json_schema", ...}` (OpenAI, vLLM, llama.cpp, Ollama ≥ 0.5).
    JsonSchema,
    /// `response_format: {"type": "json_object"}`.
    JsonObject,
    /// Only the prompt asks for JSON.
    None,
}

/// How many rows go in one chat request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowsPerRequest {
    /// Exactly this many (fewer when they would not fit the context).
    Fixed(usize),
    /// Calibrated per model and function on first use: the largest batch whose answers agree
    /// with one-row answers (see `calibration`).
    Auto,
}

impl std::fmt::Display for RowsPerRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RowsPerRequest::Fixed(rows) => write!(f, "{rows}"),
            RowsPerRequest::Auto => f.write_str("auto"),
        }
    }
}

/// A model's validated options.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelOptions {
    /// The API root, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// The provider's name of the chat model.
    pub model: String,
    /// The provider's name of the embedding model (defaults to `model`).
    pub embedding_model: String,
    /// The environment variable holding the API key.
    pub api_key_env: Option<String>,
    /// The secret holding the API key.
    pub api_key_secret: Option<String>,
    /// Extra HTTP headers.
    pub headers: Vec<(String, String)>,
    pub rows_per_request: RowsPerRequest,
    pub embed_batch: usize,
    pub concurrency: usize,
    pub requests_per_minute: u64,
    pub tokens_per_minute: u64,
    pub price_per_1k_input: f64,
    pub price_per_1k_output: f64,
    pub temperature: f64,
    pub max_tokens: Option<u32>,
    pub timeout: Duration,
    pub max_retries: u32,
    pub retry_base: Duration,
    pub structured_output: StructuredOutput,
    pub logprobs: bool,
    pub context_tokens: u64,
}

/// Every option a model takes, for validation and documentation.
pub const OPTION_NAMES: [&str; 22] = [
    "base_url",
    "model",
    "embedding_model",
    "api_key_env",
    "api_key_secret",
    "headers",
    "rows_per_request",
    "embed_batch",
    "concurrency",
    "requests_per_minute",
    "tokens_per_minute",
    "price_per_1k_input",
    "price_per_1k_output",
    "temperature",
    "max_tokens",
    "timeout_ms",
    "max_retries",
    "retry_base_ms",
    "structured_output",
    "logprobs",
    "context_tokens",
    "comment",
];

fn invalid(name: &str, message: impl std::fmt::Display) -> LmError {
    LmError::new("22023", format!("model \"{name}\": {message}"))
}

impl ModelOptions {
    /// Validates `raw` (the options of model `name`).
    pub fn parse(name: &str, raw: &RawOptions) -> Result<Self, LmError> {
        for key in raw.keys() {
            if !OPTION_NAMES.contains(&key.as_str()) {
                return Err(invalid(
                    name,
                    format!(
                        "unknown option \"{key}\" (known: {})",
                        OPTION_NAMES.join(", ")
                    ),
                ));
            }
        }
        let text = |key: &str| raw.get(key).map(|value| value.trim().to_owned());
        let required = |key: &str| {
            text(key)
                .filter(|value| !value.is_empty())
                .ok_or_else(|| invalid(name, format!("option \"{key}\" is required")))
        };
        fn number<T: std::str::FromStr>(
            name: &str,
            raw: &RawOptions,
            key: &str,
            default: T,
        ) -> Result<T, LmError> {
            match raw.get(key) {
                None => Ok(default),
                Some(value) => value.trim().parse().map_err(|_| {
                    invalid(
                        name,
                        format!("option \"{key}\" must be a number, not {value:?}"),
                    )
                }),
            }
        }
        let base_url = required("base_url")?.trim_end_matches('/').to_owned();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(invalid(
                name,
                format!("base_url must start with http:// or https://, not {base_url:?}"),
            ));
        }
        let model = required("model")?;
        let headers = match text("headers") {
            None => Vec::new(),
            Some(json) => {
                let map: BTreeMap<String, String> = serde_json::from_str(&json).map_err(|_| {
                    invalid(
                        name,
                        "headers must be a JSON object of strings, e.g. '{\"X-Team\": \"data\"}'",
                    )
                })?;
                map.into_iter().collect()
            }
        };
        let at_least_one = |key: &str, value: usize| {
            if value == 0 {
                Err(invalid(
                    name,
                    format!("option \"{key}\" must be at least 1"),
                ))
            } else {
                Ok(value)
            }
        };
        let structured_output = match text("structured_output").as_deref() {
            None | Some("json_schema") => StructuredOutput::JsonSchema,
            Some("json_object") => StructuredOutput::JsonObject,
            Some("none") => StructuredOutput::None,
            Some(other) => {
                return Err(invalid(
                    name,
                    format!(
                        "structured_output must be 'json_schema', 'json_object' or 'none', not {other:?}"
                    ),
                ))
            }
        };
        let logprobs = match text("logprobs").as_deref() {
            None | Some("false") | Some("off") => false,
            Some("true") | Some("on") => true,
            Some(other) => {
                return Err(invalid(
                    name,
                    format!("logprobs must be true or false, not {other:?}"),
                ))
            }
        };
        let temperature: f64 = number(name, raw, "temperature", 0.0)?;
        if !(0.0..=2.0).contains(&temperature) {
            return Err(invalid(name, "temperature must be between 0 and 2"));
        }
        let prices = [
            number(name, raw, "price_per_1k_input", 0.0)?,
            number(name, raw, "price_per_1k_output", 0.0)?,
        ];
        if prices
            .iter()
            .any(|price: &f64| !price.is_finite() || *price < 0.0)
        {
            return Err(invalid(name, "prices must be numbers ≥ 0"));
        }
        let api_key_env = text("api_key_env").filter(|value| !value.is_empty());
        let api_key_secret = text("api_key_secret")
            .filter(|value| !value.is_empty())
            .map(|value| value.to_ascii_lowercase());
        if api_key_env.is_some() && api_key_secret.is_some() {
            return Err(invalid(
                name,
                "give the API key as api_key_secret or api_key_env, not both",
            ));
        }
        Ok(ModelOptions {
            embedding_model: text("embedding_model").unwrap_or_else(|| model.clone()),
            base_url,
            model,
            api_key_env,
            api_key_secret,
            headers,
            rows_per_request: match text("rows_per_request") {
                None => RowsPerRequest::Auto,
                Some(value) if value.eq_ignore_ascii_case("auto") => RowsPerRequest::Auto,
                Some(_) => RowsPerRequest::Fixed(at_least_one(
                    "rows_per_request",
                    number(name, raw, "rows_per_request", 16)?,
                )?),
            },
            embed_batch: at_least_one("embed_batch", number(name, raw, "embed_batch", 64)?)?,
            concurrency: at_least_one("concurrency", number(name, raw, "concurrency", 8)?)?,
            requests_per_minute: number(name, raw, "requests_per_minute", 0)?,
            tokens_per_minute: number(name, raw, "tokens_per_minute", 0)?,
            price_per_1k_input: prices[0],
            price_per_1k_output: prices[1],
            temperature,
            max_tokens: raw
                .get("max_tokens")
                .map(|_| number(name, raw, "max_tokens", 0u32))
                .transpose()?,
            timeout: Duration::from_millis(number(name, raw, "timeout_ms", 60_000)?),
            max_retries: number(name, raw, "max_retries", 4)?,
            retry_base: Duration::from_millis(number(name, raw, "retry_base_ms", 500)?),
            structured_output,
            logprobs,
            context_tokens: number(name, raw, "context_tokens", 8192)?,
        })
    }
}

/// Options as `SHOW MODELS` prints them: header values are hidden, as they may hold secrets.
pub fn displayed_options(raw: &RawOptions) -> String {
    raw.iter()
        .map(|(key, value)| {
            if key == "headers" {
                let names = serde_json::from_str::<BTreeMap<String, String>>(value)
                    .map(|map| {
                        map.keys()
                            .map(|name| format!("{name}: ***"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default();
                format!("headers = {{{names}}}")
            } else {
                format!("{key} = {value}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The file of models made with `CREATE MODEL`.
pub struct ModelFile {
    path: PathBuf,
}

const MODELS_FILE: &str = "models.json";

impl ModelFile {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join(MODELS_FILE),
        }
    }

    pub fn load(&self) -> Result<BTreeMap<String, RawOptions>, LmError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|err| {
                LmError::new(
                    "XX001",
                    format!("{} is damaged: {err}", self.path.display()),
                )
            }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(err) => Err(LmError::new(
                "58030",
                format!("cannot read {}: {err}", self.path.display()),
            )),
        }
    }

    /// Replaces the file atomically (write, sync, rename).
    pub fn save(&self, models: &BTreeMap<String, RawOptions>) -> Result<(), LmError> {
        let bytes = serde_json::to_vec_pretty(models).expect("options serialize");
        crate::engine::storage::write_atomically(&self.path, &bytes)
            .map_err(|err| LmError::new("58030", format!("cannot save models: {err}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, &str)]) -> RawOptions {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_and_validation() {
        let options =
            ModelOptions::parse("m", &raw(&[("base_url", "http://x/v1/"), ("model", "gpt")]))
                .unwrap();
        assert_eq!(options.base_url, "http://x/v1");
        assert_eq!(options.rows_per_request, RowsPerRequest::Auto);
        let fixed = ModelOptions::parse(
            "m",
            &raw(&[
                ("base_url", "http://x"),
                ("model", "gpt"),
                ("rows_per_request", "8"),
            ]),
        )
        .unwrap();
        assert_eq!(fixed.rows_per_request, RowsPerRequest::Fixed(8));
        let auto = raw(&[
            ("base_url", "http://x"),
            ("model", "gpt"),
            ("rows_per_request", "AUTO"),
        ]);
        assert_eq!(
            ModelOptions::parse("m", &auto).unwrap().rows_per_request,
            RowsPerRequest::Auto
        );
        let zero = raw(&[
            ("base_url", "http://x"),
            ("model", "gpt"),
            ("rows_per_request", "0"),
        ]);
        assert!(ModelOptions::parse("m", &zero).is_err());
        assert_eq!(options.embedding_model, "gpt");
        let err = ModelOptions::parse("m", &raw(&[("model", "gpt")])).unwrap_err();
        assert!(err.message.contains("base_url"), "{err}");
        let err = ModelOptions::parse(
            "m",
            &raw(&[
                ("base_url", "http://x"),
                ("model", "g"),
                ("concurency", "2"),
            ]),
        )
        .unwrap_err();
        assert!(
            err.message.contains("unknown option \"concurency\""),
            "{err}"
        );
        let err = ModelOptions::parse(
            "m",
            &raw(&[
                ("base_url", "http://x"),
                ("model", "g"),
                ("concurrency", "0"),
            ]),
        )
        .unwrap_err();
        assert!(err.message.contains("at least 1"), "{err}");
    }

    #[test]
    fn header_values_are_never_displayed() {
        let shown = displayed_options(&raw(&[
            ("headers", r#"{"Authorization": "Bearer sk-secret"}"#),
            ("model", "m"),
        ]));
        assert!(!shown.contains("sk-secret"), "{shown}");
        assert!(shown.contains("Authorization: ***"), "{shown}");
    }
}
