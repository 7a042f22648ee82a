//! What the runtime remembers of recent work, for the system tables: the last requests
//! (`semsql.llm_requests`) and the last queries that used a model (`semsql.llm_queries`).
//! Prompt text is kept only for sessions with `semsql.log_prompts = on`.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

use semsql_udfs::lm::UsageSnapshot;

/// How many requests and queries are remembered.
pub const REQUEST_LOG_SIZE: usize = 1000;
pub const QUERY_LOG_SIZE: usize = 200;

#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub at: SystemTime,
    pub query_id: u64,
    pub model: String,
    /// `chat` or `embeddings`.
    pub endpoint: &'static str,
    pub function: String,
    pub rows: u64,
    pub attempt: u32,
    /// `ok`, or the error.
    pub status: String,
    pub http_status: Option<u16>,
    pub latency_ms: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub prompt: Option<String>,
    /// The role whose query sent it: only it and superusers see `prompt`.
    pub role: Option<String>,
}

#[derive(Debug, Clone)]
pub struct QueryRecord {
    pub finished: SystemTime,
    pub usage: UsageSnapshot,
    pub sql: Option<String>,
    /// The role that ran it: only it and superusers see `sql`.
    pub role: Option<String>,
}

#[derive(Debug, Default)]
pub struct Activity {
    requests: Mutex<VecDeque<RequestRecord>>,
    queries: Mutex<VecDeque<QueryRecord>>,
}

fn push_bounded<T>(log: &Mutex<VecDeque<T>>, item: T, bound: usize) {
    let mut log = log.lock().expect("activity lock");
    if log.len() == bound {
        log.pop_front();
    }
    log.push_back(item);
}

impl Activity {
    pub fn record_request(&self, record: RequestRecord) {
        push_bounded(&self.requests, record, REQUEST_LOG_SIZE);
    }

    pub fn record_query(&self, record: QueryRecord) {
        push_bounded(&self.queries, record, QUERY_LOG_SIZE);
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.requests
            .lock()
            .expect("activity lock")
            .iter()
            .cloned()
            .collect()
    }

    pub fn queries(&self) -> Vec<QueryRecord> {
        self.queries
            .lock()
            .expect("activity lock")
            .iter()
            .cloned()
            .collect()
    }
}
