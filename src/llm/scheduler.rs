//! Per-model admission: a concurrency limit, request and token rate limits, and retries with
//! exponential backoff and jitter that honour `Retry-After`.
//!
//! Fair share: every query keeps at most `concurrency` requests of its own outstanding and the
//! semaphore hands permits out first come, first served, so a small query that arrives while a
//! huge one runs gets a permit after at most one round of the huge query's requests instead of
//! after all of them.
//!
//! Cancellation is by dropping: requests run inside the query's future (no detached tasks), so a
//! cancelled, failed or disconnected query drops its in-flight requests and starts no new ones.

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use semsql_udfs::lm::{LmError, LmSettings, QueryUsage};
use tokio::sync::Semaphore;

use super::client::CallError;
use super::models::ModelOptions;

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A token bucket refilled continuously at `per_minute / 60` per second; 0 means no limit.
#[derive(Debug)]
struct Bucket {
    per_minute: u64,
    available: f64,
    updated: Instant,
}

impl Bucket {
    fn new(per_minute: u64) -> Self {
        Self {
            per_minute,
            available: per_minute as f64,
            updated: Instant::now(),
        }
    }

    /// Takes `amount` now, or says how long to wait until it can be taken. An amount larger than
    /// the bucket waits for a full bucket (else it could never go).
    fn take(&mut self, amount: f64) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let capacity = self.per_minute as f64;
        let rate = capacity / 60.0;
        let now = Instant::now();
        self.available =
            (self.available + now.duration_since(self.updated).as_secs_f64() * rate).min(capacity);
        self.updated = now;
        let needed = amount.min(capacity);
        if self.available >= needed {
            self.available -= amount;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((needed - self.available) / rate))
        }
    }
}

/// One model's admission control.
#[derive(Debug)]
pub struct Lane {
    semaphore: Semaphore,
    limits: Mutex<(Bucket, Bucket)>,
    max_retries: u32,
    retry_base: Duration,
}

/// What one attempt reports back, to be counted.
pub struct Spent {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// A finished attempt, for the request log.
pub struct Attempt<'a> {
    pub outcome: Result<&'a Spent, &'a CallError>,
    pub latency: Duration,
    pub attempt: u32,
}

impl Lane {
    pub fn new(options: &ModelOptions) -> Self {
        Self {
            semaphore: Semaphore::new(options.concurrency),
            limits: Mutex::new((
                Bucket::new(options.requests_per_minute),
                Bucket::new(options.tokens_per_minute),
            )),
            max_retries: options.max_retries,
            retry_base: options.retry_base,
        }
    }

    /// Waits until the rate limits admit one request of about `tokens` tokens.
    async fn admit(&self, tokens: u64) {
        loop {
            let wait = {
                let mut limits = self.limits.lock().expect("rate limit lock");
                let (requests, token_bucket) = &mut *limits;
                match (requests.take(1.0), token_bucket.per_minute) {
                    (Ok(()), 0) => None,
                    (Ok(()), _) => match token_bucket.take(tokens as f64) {
                        Ok(()) => None,
                        Err(wait) => {
                            requests.available += 1.0;
                            Some(wait)
                        }
                    },
                    (Err(wait), _) => Some(wait),
                }
            };
            match wait {
                None => return,
                Some(wait) => tokio::time::sleep(wait).await,
            }
        }
    }

    /// Runs `send` until it succeeds, fails for good or the retries run out. Budgets are checked
    /// before every attempt; `log` sees every attempt.
    pub async fn call<T, F, Fut>(
        &self,
        settings: &LmSettings,
        usage: &QueryUsage,
        estimated_tokens: u64,
        mut send: F,
        mut log: impl FnMut(Attempt<'_>),
    ) -> Result<T, LmError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(T, Spent), CallError>>,
    {
        let mut attempt = 0;
        loop {
            reserve_budget(settings, usage, estimated_tokens)?;
            let permit = self
                .semaphore
                .acquire()
                .await
                .expect("lane semaphore is never closed");
            self.admit(estimated_tokens).await;
            let started = Instant::now();
            let result = send().await;
            let latency = started.elapsed();
            drop(permit);
            usage.add(|u| &u.lm_wait_micros, latency.as_micros() as u64);
            match result {
                Ok((value, spent)) => {
                    usage.add(|u| &u.input_tokens, spent.input_tokens);
                    usage.add(|u| &u.output_tokens, spent.output_tokens);
                    log(Attempt {
                        outcome: Ok(&spent),
                        latency,
                        attempt,
                    });
                    return Ok(value);
                }
                Err(error) => {
                    log(Attempt {
                        outcome: Err(&error),
                        latency,
                        attempt,
                    });
                    if !error.retryable || attempt >= self.max_retries {
                        let tries = if attempt == 0 {
                            String::new()
                        } else {
                            format!(" after {} attempts", attempt + 1)
                        };
                        return Err(LmError::service(format!(
                            "the model request failed{tries}: {}",
                            error.message
                        )));
                    }
                    usage.add(|u| &u.retries, 1);
                    tokio::time::sleep(self.backoff(attempt, error.retry_after)).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Exponential backoff with up to 50% jitter; never shorter than the server's Retry-After.
    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exponential = self
            .retry_base
            .saturating_mul(1u32 << attempt.min(16))
            .min(MAX_BACKOFF);
        let jitter = exponential.mul_f64(random_fraction() * 0.5);
        let wait = exponential + jitter;
        match retry_after {
            Some(asked) => asked.max(wait.min(asked + jitter)),
            None => wait,
        }
    }
}

/// Counts one more request against the query's budgets, or refuses it before it is sent.
fn reserve_budget(
    settings: &LmSettings,
    usage: &QueryUsage,
    estimated_tokens: u64,
) -> Result<(), LmError> {
    // Budgets are the query's, whichever plan node is asking.
    let query = usage.root();
    if settings.max_llm_tokens > 0 {
        let spent = query.input_tokens.load(Ordering::Relaxed)
            + query.output_tokens.load(Ordering::Relaxed);
        if spent + estimated_tokens > settings.max_llm_tokens {
            return Err(LmError::budget(format!(
                "the next request (about {estimated_tokens} tokens) would take the query past \
                 semsql.max_llm_tokens = {} ({spent} tokens spent so far); raise it or narrow \
                 the query",
                settings.max_llm_tokens
            )));
        }
    }
    // Checked and counted in one step, so concurrent requests cannot all pass a budget that
    // has room for one.
    let limit = settings.max_llm_requests;
    query
        .requests
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |sent| {
            (limit == 0 || sent < limit).then_some(sent + 1)
        })
        .map_err(|_| {
            LmError::budget(format!(
                "the query would send more than semsql.max_llm_requests = {limit} requests; \
                 raise it or narrow the query"
            ))
        })?;
    // The plan node's own records below the query count it too.
    let mut record = usage;
    while let Some(parent) = &record.parent {
        record.requests.fetch_add(1, Ordering::Relaxed);
        record = parent;
    }
    Ok(())
}

/// A random number in [0, 1) from the standard library's randomly keyed hasher.
fn random_fraction() -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(Instant::now().elapsed().as_nanos());
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_refuses_until_it_refills() {
        let mut bucket = Bucket::new(60);
        for _ in 0..60 {
            assert!(bucket.take(1.0).is_ok());
        }
        let wait = bucket.take(1.0).unwrap_err();
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(Bucket::new(0).take(1e9).is_ok());
    }

    #[test]
    fn backoff_grows_and_honours_retry_after() {
        let options = ModelOptions::parse(
            "m",
            &[
                ("base_url", "http://x"),
                ("model", "a"),
                ("retry_base_ms", "100"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        )
        .unwrap();
        let lane = Lane::new(&options);
        let first = lane.backoff(0, None);
        assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(150));
        let third = lane.backoff(2, None);
        assert!(third >= Duration::from_millis(400) && third <= Duration::from_millis(600));
        assert!(lane.backoff(0, Some(Duration::from_secs(2))) >= Duration::from_secs(2));
    }
}
