//! The OpenAI-compatible HTTP client: `POST {base_url}/chat/completions` and
//! `POST {base_url}/embeddings`, as OpenAI, vLLM, Ollama (`/v1`) and llama.cpp's server answer
//! them. It sends one request and classifies the outcome; retrying is the scheduler's work.
//!
//! The API key is read from the environment variable the model names, at each request, and is
//! never part of an error or a log line: any text that comes back is scrubbed of it.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, RETRY_AFTER};
use serde_json::{json, Value};

use super::models::ModelOptions;

/// Why a request failed, and whether trying again may help.
#[derive(Debug, Clone)]
pub struct CallError {
    pub retryable: bool,
    /// The wait the server asked for (`Retry-After`).
    pub retry_after: Option<Duration>,
    pub status: Option<u16>,
    pub message: String,
}

impl CallError {
    fn fatal(message: impl Into<String>) -> Self {
        Self {
            retryable: false,
            retry_after: None,
            status: None,
            message: message.into(),
        }
    }

    fn retryable(message: impl Into<String>) -> Self {
        Self {
            retryable: true,
            ..Self::fatal(message)
        }
    }
}

/// One chat answer.
#[derive(Debug, Clone)]
pub struct ChatAnswer {
    pub content: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// `length` when the answer was cut at `max_tokens`.
    pub finish_reason: Option<String>,
    /// The provider's `logprobs` object, when asked for and given.
    pub logprobs: Option<Value>,
}

/// A chat request: system and user message, and the sampling settings.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub system: String,
    pub user: String,
    pub temperature: f64,
    pub max_tokens: Option<u32>,
    /// An OpenAI `response_format` value.
    pub response_format: Option<Value>,
    pub logprobs: bool,
}

impl ChatRequest {
    /// The JSON body sent for `model`.
    pub fn body(&self, model: &str) -> Value {
        let mut body = json!({
            "model": model,
            "messages": [
                {"role": "system", "content": self.system},
                {"role": "user", "content": self.user},
            ],
            "temperature": self.temperature,
        });
        if let Some(max_tokens) = self.max_tokens {
            body["max_tokens"] = json!(max_tokens);
        }
        if let Some(format) = &self.response_format {
            body["response_format"] = format.clone();
        }
        if self.logprobs {
            body["logprobs"] = json!(true);
            body["top_logprobs"] = json!(5);
        }
        body
    }
}

/// A rough token count (about four characters a token), for text a provider did not count.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// Where a model's API key is read, each time a request is sent.
#[derive(Debug, Clone)]
enum KeySource {
    None,
    Env(String),
    Secret(String, std::sync::Arc<super::secrets::Secrets>),
}

#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base_url: String,
    key: KeySource,
    headers: HeaderMap,
    timeout: Duration,
}

impl Client {
    /// `secrets`: where `api_key_secret` is looked up when a request is sent.
    pub fn new(
        options: &ModelOptions,
        secrets: &std::sync::Arc<super::secrets::Secrets>,
    ) -> Result<Self, String> {
        let mut headers = HeaderMap::new();
        for (name, value) in &options.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("header name {name:?} is not valid"))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("the value of header {name} is not valid"))?;
            headers.insert(name, value);
        }
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(options.concurrency.max(1))
            .build()
            .map_err(|err| format!("cannot build an HTTP client: {err}"))?;
        Ok(Client {
            http,
            base_url: options.base_url.clone(),
            key: match (&options.api_key_secret, &options.api_key_env) {
                (Some(secret), _) => KeySource::Secret(secret.clone(), secrets.clone()),
                (None, Some(variable)) => KeySource::Env(variable.clone()),
                (None, None) => KeySource::None,
            },
            headers,
            timeout: options.timeout,
        })
    }

    fn api_key(&self) -> Result<Option<String>, CallError> {
        match &self.key {
            KeySource::None => Ok(None),
            KeySource::Env(variable) => match std::env::var(variable) {
                Ok(key) if !key.is_empty() => Ok(Some(key)),
                _ => Err(CallError::fatal(format!(
                    "the environment variable {variable} (the model's api_key_env) is not set"
                ))),
            },
            KeySource::Secret(name, secrets) => {
                secrets.value(name).map(Some).map_err(CallError::fatal)
            }
        }
    }

    /// Posts `body` to `{base_url}/{path}` and returns the JSON answer.
    async fn post(&self, path: &str, body: &Value) -> Result<Value, CallError> {
        let key = self.api_key()?;
        let scrub = |text: String| match &key {
            Some(key) => text.replace(key.as_str(), "***"),
            None => text,
        };
        let mut request = self
            .http
            .post(format!("{}/{path}", self.base_url))
            .headers(self.headers.clone())
            .timeout(self.timeout)
            .json(body);
        if let Some(key) = &key {
            request = request.header(AUTHORIZATION, format!("Bearer {key}"));
        }
        let response = request.send().await.map_err(|err| {
            let what = if err.is_timeout() {
                format!("no answer within {} ms", self.timeout.as_millis())
            } else if err.is_connect() {
                "cannot connect".to_owned()
            } else {
                "the request failed".to_owned()
            };
            // reqwest's errors name the URL, never headers.
            CallError::retryable(scrub(format!("{what}: {err}")))
        })?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let text = response
            .text()
            .await
            .map_err(|err| CallError::retryable(scrub(format!("the answer was cut off: {err}"))))?;
        if !status.is_success() {
            let excerpt = provider_error(&text);
            return Err(CallError {
                retryable: status.as_u16() == 429
                    || status.as_u16() == 408
                    || status.is_server_error(),
                retry_after,
                status: Some(status.as_u16()),
                message: scrub(format!("HTTP {status}{excerpt}")),
            });
        }
        serde_json::from_str(&text).map_err(|_| {
            tracing::debug!(body = %text.chars().take(500).collect::<String>(), "an answer that is not JSON");
            CallError::retryable(format!(
                "the answer is not JSON ({} bytes; the server log at debug level shows it)",
                text.len()
            ))
        })
    }

    pub async fn chat(&self, model: &str, request: &ChatRequest) -> Result<ChatAnswer, CallError> {
        let answer = self.post("chat/completions", &request.body(model)).await?;
        let choice = &answer["choices"][0];
        let content = match &choice["message"]["content"] {
            Value::String(content) => content.clone(),
            _ => {
                let refusal = choice["message"]["refusal"]
                    .as_str()
                    .unwrap_or("no content");
                return Err(CallError::retryable(format!(
                    "the model gave no answer text ({refusal})"
                )));
            }
        };
        let usage = &answer["usage"];
        Ok(ChatAnswer {
            input_tokens: usage["prompt_tokens"].as_u64().unwrap_or_else(|| {
                estimate_tokens(&request.system) + estimate_tokens(&request.user)
            }),
            output_tokens: usage["completion_tokens"]
                .as_u64()
                .unwrap_or_else(|| estimate_tokens(&content)),
            finish_reason: choice["finish_reason"].as_str().map(str::to_owned),
            logprobs: choice
                .get("logprobs")
                .filter(|value| !value.is_null())
                .cloned(),
            content,
        })
    }

    /// Embeds `inputs` with `model`; returns one vector per input, in order, and the tokens used.
    pub async fn embed(
        &self,
        model: &str,
        inputs: &[String],
    ) -> Result<(Vec<Vec<f32>>, u64), CallError> {
        let answer = self
            .post("embeddings", &json!({"model": model, "input": inputs}))
            .await?;
        let malformed =
            |what: &str| CallError::retryable(format!("malformed embeddings answer: {what}"));
        let data = answer["data"]
            .as_array()
            .ok_or_else(|| malformed("no data array"))?;
        let mut vectors: Vec<Option<Vec<f32>>> = vec![None; inputs.len()];
        for (position, item) in data.iter().enumerate() {
            let index = item["index"]
                .as_u64()
                .map_or(position, |index| index as usize);
            let values = item["embedding"]
                .as_array()
                .ok_or_else(|| malformed("an item has no embedding"))?;
            let vector = values
                .iter()
                .map(|value| value.as_f64().map(|v| v as f32))
                .collect::<Option<Vec<f32>>>()
                .ok_or_else(|| malformed("an embedding holds a non-number"))?;
            let slot = vectors
                .get_mut(index)
                .ok_or_else(|| malformed("index out of range"))?;
            *slot = Some(vector);
        }
        let vectors = vectors
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| malformed("fewer embeddings than inputs"))?;
        let tokens = answer["usage"]["prompt_tokens"]
            .as_u64()
            .unwrap_or_else(|| inputs.iter().map(|input| estimate_tokens(input)).sum());
        Ok((vectors, tokens))
    }
}

/// The wait a server asks for: OpenAI's `retry-after-ms`, or `Retry-After` in seconds or as an
/// HTTP date. At most an hour, so a broken header cannot stall a query for good.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    const LONGEST: Duration = Duration::from_secs(3600);
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<f64>().ok())
        .filter(|ms| ms.is_finite())
    {
        return Some(Duration::from_secs_f64(ms.max(0.0) / 1000.0).min(LONGEST));
    }
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0)
            .then(|| Duration::from_secs_f64(seconds).min(LONGEST));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO)
            .min(LONGEST),
    )
}

/// What of an error body reaches the user: the `error.message` of an OpenAI-style JSON error,
/// cut to 200 characters, and nothing of any other body. Echoing bodies would let a model's
/// address read whatever answers there (an internal service's page, say); the server log has
/// them at debug level.
fn provider_error(body: &str) -> String {
    let message = serde_json::from_str::<Value>(body).ok().and_then(|json| {
        json.get("error")
            .and_then(|error| error.get("message").or(Some(error)))
            .and_then(Value::as_str)
            .map(|message| message.chars().take(200).collect::<String>())
    });
    match message {
        Some(message) => format!(": {message}"),
        None => {
            tracing::debug!(body = %body.chars().take(500).collect::<String>(), "a model service's error body");
            String::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_openai_style_error_messages_reach_the_user() {
        assert_eq!(
            provider_error(r#"{"error": {"message": "model not found", "code": 404}}"#),
            ": model not found"
        );
        assert_eq!(provider_error(r#"{"error": "overloaded"}"#), ": overloaded");
        assert_eq!(
            provider_error("<html>internal admin page: secret</html>"),
            ""
        );
        assert_eq!(provider_error(r#"{"data": "secret"}"#), "");
    }

    #[test]
    fn the_request_body_carries_the_sampling_settings() {
        let request = ChatRequest {
            system: "s".into(),
            user: "u".into(),
            temperature: 0.0,
            max_tokens: Some(64),
            response_format: Some(json!({"type": "json_object"})),
            logprobs: true,
        };
        let body = request.body("m");
        assert_eq!(body["model"], "m");
        assert_eq!(body["messages"][0]["role"], "system");
        assert_eq!(body["messages"][1]["content"], "u");
        assert_eq!(body["max_tokens"], 64);
        assert_eq!(body["response_format"]["type"], "json_object");
        assert_eq!(body["logprobs"], true);
        let plain = ChatRequest {
            max_tokens: None,
            response_format: None,
            logprobs: false,
            ..request
        }
        .body("m");
        assert!(plain.get("max_tokens").is_none() && plain.get("logprobs").is_none());
    }

    #[test]
    fn retry_after_reads_seconds_and_milliseconds() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert("retry-after-ms", HeaderValue::from_static("150"));
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(150)));
        headers.clear();
        // A date in the past: no wait beyond the backoff.
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        let soon = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(30));
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&soon).unwrap());
        let wait = retry_after(&headers).unwrap();
        assert!(
            wait > Duration::from_secs(28) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }
}
