//! A fake OpenAI-compatible server for tests, benchmarks and trying semsql without a model:
//! real HTTP on a local port, `POST /v1/chat/completions` and `POST /v1/embeddings`, with
//! deterministic answers and injectable faults. Run on its own as
//! `fake-llm --listen 127.0.0.1:PORT --latency-ms N`.
//!
//! Answers follow rules on the prompt (see [`rules`]), so tests can assert semantics: a filter is
//! true when the row contains a keyword quoted in the instruction; a completion upper-cases its
//! input (or reverses it, or counts it, as the instruction says).
//!
//! Faults: a script of faults for the next requests (`POST /control {"script": ["429", ...]}`),
//! random fault rates, and per-row markers in the data: a row containing `FAKE:omit` is left out
//! of any answer with other rows, and a row containing `FAKE:garbage` always gets an answer of the
//! wrong shape. Scripted answers (`answers` in the behaviour) answer chat requests containing
//! given texts with fixed content. `GET /stats` returns request counters; `POST /reset` zeroes them.

pub mod rules;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// One injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// 429 with `Retry-After` in seconds.
    RateLimited { retry_after: f64 },
    /// 500.
    ServerError,
    /// Never answers (the client must time out).
    Hang,
    /// Prose around the JSON.
    Prose,
    /// The JSON in a ```json fence.
    Fences,
    /// One row's answer left out.
    MissingId,
    /// Only half of the answers.
    WrongCount,
    /// Cut in the middle, `finish_reason: length`.
    Truncated,
    /// Not JSON at all.
    NotJson,
}

impl Fault {
    /// `429`, `429:2` (Retry-After 2 s), `500`, `hang`, `prose`, `fences`, `missing_id`,
    /// `wrong_count`, `truncated`, `not_json`.
    pub fn parse(text: &str) -> Option<Fault> {
        let (name, argument) = text.split_once(':').unwrap_or((text, ""));
        Some(match name.trim() {
            "429" => Fault::RateLimited {
                retry_after: argument.trim().parse().unwrap_or(0.0),
            },
            "500" => Fault::ServerError,
            "hang" => Fault::Hang,
            "prose" => Fault::Prose,
            "fences" => Fault::Fences,
            "missing_id" => Fault::MissingId,
            "wrong_count" => Fault::WrongCount,
            "truncated" => Fault::Truncated,
            "not_json" => Fault::NotJson,
            _ => return None,
        })
    }
}

/// How the server behaves; changed at run time through [`FakeLlm::configure`] or `/control`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Behaviour {
    pub latency_ms: u64,
    /// Faults for the next requests, in order.
    pub script: Vec<String>,
    /// Chance per request of each fault, in [0, 1].
    pub rate_429: f64,
    pub rate_500: f64,
    pub rate_hang: f64,
    pub rate_malformed: f64,
    /// Dimensions of the embeddings.
    pub embedding_dims: Option<usize>,
    /// When set, requests must carry `Authorization: Bearer <api_key>`.
    pub api_key: Option<String>,
    /// Fixed answers for chat requests, before the rules: the first whose `when` texts all
    /// occur in the request's messages answers it (the query rewriter's tests and benchmark
    /// script a model's rewrites this way).
    pub answers: Vec<ScriptedAnswer>,
}

/// A fixed chat answer and the texts a request must contain to get it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ScriptedAnswer {
    pub when: Vec<String>,
    pub answer: String,
}

/// Counters of what the server saw.
#[derive(Debug, Default, Serialize, Clone, PartialEq)]
pub struct Stats {
    pub chat_requests: u64,
    pub embedding_requests: u64,
    /// Rows in chat requests, and texts in embedding requests.
    pub rows: u64,
    pub faults: u64,
    pub in_flight: u64,
    pub max_in_flight: u64,
    /// Requests whose connection went away before the answer was sent.
    pub abandoned: u64,
}

#[derive(Debug, Default)]
struct State {
    behaviour: Mutex<Behaviour>,
    script: Mutex<VecDeque<Fault>>,
    chat_requests: AtomicU64,
    embedding_requests: AtomicU64,
    rows: AtomicU64,
    faults: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    abandoned: AtomicU64,
    random: Mutex<u64>,
}

impl State {
    fn stats(&self) -> Stats {
        let load = |counter: &AtomicU64| counter.load(Ordering::SeqCst);
        Stats {
            chat_requests: load(&self.chat_requests),
            embedding_requests: load(&self.embedding_requests),
            rows: load(&self.rows),
            faults: load(&self.faults),
            in_flight: load(&self.in_flight),
            max_in_flight: load(&self.max_in_flight),
            abandoned: load(&self.abandoned),
        }
    }

    fn reset(&self) {
        for counter in [
            &self.chat_requests,
            &self.embedding_requests,
            &self.rows,
            &self.faults,
            &self.max_in_flight,
            &self.abandoned,
        ] {
            counter.store(0, Ordering::SeqCst);
        }
    }

    fn configure(&self, behaviour: Behaviour) -> Result<(), String> {
        let script = behaviour
            .script
            .iter()
            .map(|text| Fault::parse(text).ok_or_else(|| format!("unknown fault {text:?}")))
            .collect::<Result<VecDeque<_>, _>>()?;
        *self.script.lock().expect("fake lock") = script;
        *self.behaviour.lock().expect("fake lock") = behaviour;
        Ok(())
    }

    /// A seeded xorshift: runs with the same rates fail the same way.
    fn chance(&self, rate: f64) -> bool {
        if rate <= 0.0 {
            return false;
        }
        let mut state = self.random.lock().expect("fake lock");
        let mut x = *state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *state = x;
        ((x >> 11) as f64 / (1u64 << 53) as f64) < rate
    }

    /// The fault for this request, if any: the script first, then the rates.
    fn next_fault(&self, chat: bool) -> Option<Fault> {
        if let Some(fault) = self.script.lock().expect("fake lock").pop_front() {
            return Some(fault);
        }
        let behaviour = self.behaviour.lock().expect("fake lock").clone();
        if self.chance(behaviour.rate_429) {
            return Some(Fault::RateLimited { retry_after: 0.0 });
        }
        if self.chance(behaviour.rate_500) {
            return Some(Fault::ServerError);
        }
        if self.chance(behaviour.rate_hang) {
            return Some(Fault::Hang);
        }
        if chat && self.chance(behaviour.rate_malformed) {
            let kinds = [
                Fault::Prose,
                Fault::Fences,
                Fault::MissingId,
                Fault::WrongCount,
                Fault::Truncated,
                Fault::NotJson,
            ];
            let pick = (*self.random.lock().expect("fake lock") % kinds.len() as u64) as usize;
            return Some(kinds[pick]);
        }
        None
    }
}

/// A running fake server.
pub struct FakeLlm {
    pub addr: SocketAddr,
    state: Arc<State>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl FakeLlm {
    /// Starts a server on `listen` (port 0 picks a free one).
    pub async fn start(listen: &str, behaviour: Behaviour) -> std::io::Result<FakeLlm> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            random: Mutex::new(0x9E37_79B9_7F4A_7C15),
            ..State::default()
        });
        state
            .configure(behaviour)
            .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidInput, err))?;
        let (shutdown, mut stop) = oneshot::channel::<()>();
        let serving = state.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = &mut stop => return,
                };
                let Ok((stream, _)) = accepted else { continue };
                let state = serving.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| handle(state.clone(), request));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(FakeLlm {
            addr,
            state,
            shutdown: Some(shutdown),
        })
    }

    /// The base URL to give a model: `http://ADDR/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn stats(&self) -> Stats {
        self.state.stats()
    }

    pub fn reset(&self) {
        self.state.reset()
    }

    pub fn configure(&self, behaviour: Behaviour) -> Result<(), String> {
        self.state.configure(behaviour)
    }

    /// Queues faults for the next requests.
    pub fn script(&self, faults: &[Fault]) {
        self.state
            .script
            .lock()
            .expect("fake lock")
            .extend(faults.iter().copied());
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// The scripted answer for a chat request, as a completion body, if one matches.
fn scripted(answers: &[ScriptedAnswer], body: &Value) -> Option<Value> {
    let messages: String = body["messages"]
        .as_array()?
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let found = answers
        .iter()
        .find(|a| a.when.iter().all(|text| messages.contains(text.as_str())))?;
    let prompt_tokens = (messages.chars().count() as u64).div_ceil(4);
    let completion_tokens = (found.answer.chars().count() as u64).div_ceil(4);
    Some(json!({
        "id": "fake-scripted",
        "object": "chat.completion",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": found.answer},
            "finish_reason": "stop",
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }))
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid response")
}

/// Counts a request in flight for as long as it lives; one dropped before it answered was
/// abandoned by the client (a cancelled query or a timeout).
struct InFlight {
    state: Arc<State>,
    answered: bool,
}

impl InFlight {
    fn new(state: Arc<State>) -> Self {
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Self {
            state,
            answered: false,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state.in_flight.fetch_sub(1, Ordering::SeqCst);
        if !self.answered {
            self.state.abandoned.fetch_add(1, Ordering::SeqCst);
        }
    }
}

async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let authorization = request
        .headers()
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return Ok(reply(
                StatusCode::BAD_REQUEST,
                json!({"error": {"message": "unreadable body"}}),
            ))
        }
    };
    let behaviour = state.behaviour.lock().expect("fake lock").clone();
    match (method.as_str(), path.as_str()) {
        ("GET", "/stats") => return Ok(reply(StatusCode::OK, json!(state.stats()))),
        ("POST", "/reset") => {
            state.reset();
            return Ok(reply(StatusCode::OK, json!({"ok": true})));
        }
        ("POST", "/control") => {
            let configured = serde_json::from_slice::<Behaviour>(&body)
                .map_err(|err| err.to_string())
                .and_then(|behaviour| state.configure(behaviour));
            return Ok(match configured {
                Ok(()) => reply(StatusCode::OK, json!({"ok": true})),
                Err(err) => reply(StatusCode::BAD_REQUEST, json!({"error": {"message": err}})),
            });
        }
        _ => {}
    }
    let chat = path == "/v1/chat/completions";
    if !chat && path != "/v1/embeddings" {
        return Ok(reply(
            StatusCode::NOT_FOUND,
            json!({"error": {"message": format!("no route {path}")}}),
        ));
    }
    if let Some(key) = &behaviour.api_key {
        if authorization.as_deref() != Some(&format!("Bearer {key}")) {
            return Ok(reply(
                StatusCode::UNAUTHORIZED,
                json!({"error": {"message": "Incorrect API key provided"}}),
            ));
        }
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return Ok(reply(
            StatusCode::BAD_REQUEST,
            json!({"error": {"message": "the body is not JSON"}}),
        ));
    };
    let mut in_flight = InFlight::new(state.clone());
    if chat {
        state.chat_requests.fetch_add(1, Ordering::SeqCst);
    } else {
        state.embedding_requests.fetch_add(1, Ordering::SeqCst);
    }
    if behaviour.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(behaviour.latency_ms)).await;
    }
    let fault = state.next_fault(chat);
    if fault.is_some() {
        state.faults.fetch_add(1, Ordering::SeqCst);
    }
    let response = match fault {
        Some(Fault::RateLimited { retry_after }) => Response::builder()
            .status(StatusCode::TOO_MANY_REQUESTS)
            .header("retry-after", format!("{retry_after}"))
            .body(Full::new(Bytes::from(
                json!({"error": {"message": "Rate limit reached", "type": "rate_limit"}})
                    .to_string(),
            )))
            .expect("a valid response"),
        Some(Fault::ServerError) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": {"message": "The server had an error"}}),
        ),
        Some(Fault::Hang) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            reply(StatusCode::GATEWAY_TIMEOUT, json!({}))
        }
        _ if chat => {
            let (answer, rows) = match scripted(&behaviour.answers, &body) {
                Some(answer) => (answer, 1),
                None => rules::chat(&body, fault),
            };
            state.rows.fetch_add(rows, Ordering::SeqCst);
            reply(StatusCode::OK, answer)
        }
        _ => {
            let dims = behaviour
                .embedding_dims
                .unwrap_or(rules::DEFAULT_EMBEDDING_DIMS);
            let (answer, rows) = rules::embeddings(&body, dims);
            state.rows.fetch_add(rows, Ordering::SeqCst);
            reply(StatusCode::OK, answer)
        }
    };
    in_flight.answered = true;
    Ok(response)
}
