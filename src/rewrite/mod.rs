//! The LLM query rewriter (LITHE-style), behind a verifier, and a prover without which no rewrite
//! replaces a query.
//!
//! A search ([`Rewriter::search`]) asks the session's model for rewrites with an ensemble of
//! prompts ([`prompts`]), then checks every candidate without a model:
//! - V0–V2 ([`verify::static_checks`]): one query, no new tables or side effects, the same
//!   output names and types, ORDER BY and LIMIT, not a no-op;
//! - the proof ([`prove`]): both plans reduced to one normal form, or "unproven";
//! - V3 ([`results`]): the same rows on small databases made from the query pair
//!   ([`small_databases`], which show a counterexample when they differ), on the data and on
//!   synthetic databases that tell the original apart from its [`mutants`];
//! - V4 ([`timing`]): interleaved timed runs, passed at a median speedup ≥ 1.5× with every
//!   pair ≥ 1.2×.
//!
//! Verdicts: `proven` (proof, tests and speed), `tested` (tests and speed, no proof),
//! `untested`, `rejected`. The fastest proven candidate, else the fastest tested one, goes into
//! the [`cache`] with the outcome. `semsql.rewrite` chooses what the server does with it (see
//! `docs/rewrite.md`): `off`, `advise` (EXPLAIN REWRITE, and a NOTICE when a known rewrite
//! exists) or `auto` (a proven rewrite runs in the query's place; slow queries with no entry are
//! searched in the background).

pub mod cache;
pub mod mutants;
pub mod prompts;
pub mod prove;
pub mod results;
pub mod small_databases;
pub mod statistics;
pub mod timing;
pub mod verify;

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::error::Result;
use datafusion::prelude::SessionContext;
use futures::stream::{self, StreamExt};
use semsql_udfs::lm::{LmError, LmSettings};

use crate::llm::Runtime;
use cache::{Entry, RewriteCache};
use prompts::{extract_sql, Prompt};
use prove::Proof;
use verify::Verdict;

/// What `semsql.rewrite` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Off,
    Advise,
    Auto,
}

impl Mode {
    pub fn of(settings: &LmSettings) -> Mode {
        match settings.rewrite.as_str() {
            "off" => Mode::Off,
            "auto" => Mode::Auto,
            _ => Mode::Advise,
        }
    }
}

/// One candidate and what the checks said of it.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The prompt that produced it.
    pub prompt: &'static str,
    /// The query, when the answer held one.
    pub sql: Option<String>,
    pub checks: Vec<(&'static str, Verdict)>,
    pub estimated_rows: Option<u64>,
    /// The median of its timed runs, and its median speedup over the original.
    pub measured_ms: Option<f64>,
    pub speedup: Option<f64>,
    /// What the prover found, for a candidate that passed the static checks.
    pub proof: Option<Proof>,
}

impl Candidate {
    /// Passed every check (V0 to V4): it agreed with the query on every test database and was
    /// faster, which is not a proof of equivalence.
    pub fn tested(&self) -> bool {
        passed_first(self, ALL_CHECKS)
    }

    /// Proven equivalent, faster (V4), and not refuted by a test database (V3 passed, or could
    /// not tell the mutants apart, which a proof makes moot): the only kind `auto` runs in a
    /// query's place.
    pub fn proven(&self) -> bool {
        self.proof == Some(Proof::Equivalent)
            && self.checks.len() == ALL_CHECKS
            && self.checks.iter().enumerate().all(|(index, (_, verdict))| {
                *verdict == Verdict::Pass || (index == 3 && matches!(verdict, Verdict::Untested(_)))
            })
    }

    /// Whether V4 times it: it passed V0 to V3, or is proven and V3 found no difference.
    fn may_time(&self) -> bool {
        passed_first(self, 4)
            || (self.proof == Some(Proof::Equivalent)
                && self.checks.len() == 4
                && self.checks[..3].iter().all(|(_, v)| *v == Verdict::Pass)
                && matches!(self.checks[3].1, Verdict::Untested(_)))
    }

    /// The model gave no answer for this candidate's prompt.
    fn unanswered(&self) -> bool {
        self.sql.is_none() && matches!(self.checks.first(), Some((_, Verdict::Untested(_))))
    }

    /// `proven`, `tested` (passed every check but not proven), `untested` (a check could not
    /// vouch either way) or `rejected`.
    pub fn verdict(&self) -> &'static str {
        if self.proven() {
            "proven"
        } else if self.tested() {
            "tested"
        } else if self
            .checks
            .iter()
            .any(|(_, v)| matches!(v, Verdict::Untested(_)))
        {
            "untested"
        } else {
            "rejected"
        }
    }

    /// Each check's verdict on one line: `V0 syntax: pass; V1 plan: fail (…)`.
    pub fn checks_text(&self) -> String {
        let mut parts: Vec<String> = self
            .checks
            .iter()
            .map(|(name, verdict)| match verdict {
                Verdict::Pass => format!("{name}: pass"),
                Verdict::Fail(why) => format!("{name}: fail ({why})"),
                Verdict::Untested(why) => format!("{name}: untested ({why})"),
            })
            .collect();
        match &self.proof {
            Some(Proof::Equivalent) => parts.push("proof: equivalent".into()),
            Some(Proof::Unproven(why)) => parts.push(format!("proof: unproven ({why})")),
            None => {}
        }
        parts.join("; ")
    }
}

/// What one search did.
#[derive(Debug, Clone)]
pub struct Report {
    pub original: String,
    pub original_estimated_rows: Option<u64>,
    pub original_ms: Option<f64>,
    pub candidates: Vec<Candidate>,
    /// The index in `candidates` of the fastest proven candidate, or when none is proven, of
    /// the fastest tested one (which is reported, never run in the query's place).
    pub chosen: Option<usize>,
    /// The search's cost: LM requests, tokens (input + output) and seconds.
    pub requests: u64,
    pub tokens: u64,
    pub seconds: f64,
    /// Why the search stopped early, if it did (a cap or an error of the model).
    pub notes: Vec<String>,
}

/// A query's place in the rewrite cache: its normalized text, its full key and the state of
/// the data it reads.
#[derive(Debug, Clone)]
pub struct Keys {
    pub normalized: String,
    pub key: String,
    pub data: cache::DataState,
}

/// The server's rewriter: the model runtime it asks and the cache of what it found.
#[derive(Debug)]
pub struct Rewriter {
    runtime: Arc<Runtime>,
    pub cache: RewriteCache,
}

/// How many checks a candidate that passed everything has (V0 to V4).
const ALL_CHECKS: usize = 5;

/// Whether `candidate` has passed exactly the first `count` checks (and so goes on to the next).
fn passed_first(candidate: &Candidate, count: usize) -> bool {
    candidate.checks.len() == count && candidate.checks.iter().all(|(_, v)| *v == Verdict::Pass)
}

/// A seed for the sampled databases: fixed, so a verdict can be reproduced.
const SAMPLE_SEED: u64 = 0x5e75_9117;

impl Rewriter {
    pub fn new(runtime: Arc<Runtime>) -> Self {
        Self {
            runtime,
            cache: RewriteCache::default(),
        }
    }

    fn settings(ctx: &SessionContext) -> LmSettings {
        LmSettings::of(ctx.state().config().options())
    }

    /// The cache key of `sql` in this session, and the state of the data it reads.
    pub async fn key(&self, ctx: &SessionContext, sql: &str) -> Result<Keys> {
        let normalized = cache::normalize(sql)?;
        self.keys_of(ctx, sql, normalized).await
    }

    async fn keys_of(&self, ctx: &SessionContext, sql: &str, normalized: String) -> Result<Keys> {
        let model = self
            .runtime
            .chosen_model(&Self::settings(ctx))
            .unwrap_or_default();
        let (catalog, data) = cache::data_key(ctx, sql).await?;
        let key = cache::key(&normalized, &catalog, &model);
        Ok(Keys {
            normalized,
            key,
            data,
        })
    }

    /// The cached decision for `sql`, if any still holds. Every query of a session in `advise`
    /// or `auto` asks, so it costs nothing while nothing was searched and one parse while the
    /// text was not.
    pub async fn cached(&self, ctx: &SessionContext, sql: &str) -> Option<Entry> {
        if self.cache.is_empty() {
            return None;
        }
        let normalized = cache::normalize(sql).ok()?;
        if !self.cache.has_text(&normalized) {
            return None;
        }
        let keys = self.keys_of(ctx, sql, normalized).await.ok()?;
        self.cache.get(&keys.normalized, &keys.key, &keys.data)
    }

    /// Runs the whole pipeline for `sql` and records the outcome in the cache.
    pub async fn search(&self, ctx: &SessionContext, sql: &str) -> Result<Report> {
        let keys = self.key(ctx, sql).await?;
        self.search_keyed(ctx, sql, &keys).await
    }

    /// [`Self::search`] for a caller that has the keys already.
    pub async fn search_keyed(
        &self,
        ctx: &SessionContext,
        sql: &str,
        keys: &Keys,
    ) -> Result<Report> {
        let report = self.search_uncached(ctx, sql).await?;
        let entry = match report.chosen.map(|index| &report.candidates[index]) {
            Some(chosen) => {
                let sql = chosen.sql.clone().unwrap_or_default();
                let speedup = chosen.speedup.unwrap_or(1.0);
                match chosen.proven() {
                    true => Entry::Proven { sql, speedup },
                    false => Entry::Tested { sql, speedup },
                }
            }
            // A prompt the model did not answer (unreachable, timed out, out of budget) might
            // have given the rewrite: a later search asks again rather than finding "rejected".
            None if report.candidates.iter().any(Candidate::unanswered) => return Ok(report),
            None => Entry::Rejected,
        };
        self.cache
            .put(&keys.normalized, &keys.key, entry, keys.data.clone());
        Ok(report)
    }

    async fn search_uncached(&self, ctx: &SessionContext, sql: &str) -> Result<Report> {
        let started = Instant::now();
        let mut settings = Self::settings(ctx);
        let deadline = started + Duration::from_millis(settings.rewrite_timeout_ms);
        // The search is its own query for accounting, with the rewrite caps as its budget.
        let usage = self.runtime.start_query(None, 0, settings.caller_role());
        settings.usage = Some(usage.clone());
        settings.max_llm_requests = settings.rewrite_max_requests;
        settings.max_llm_tokens = settings.rewrite_max_tokens;
        let mut notes = Vec::new();
        let prompts: Vec<Prompt> = Prompt::ALL
            .into_iter()
            .take(settings.rewrite_max_requests as usize)
            .collect();
        // Only the database-sensitive prompt shows statistics, and they cost a scan per table.
        let statistics = if prompts.contains(&Prompt::DatabaseSensitive) {
            statistics::statistics_block(ctx, sql).await?
        } else {
            String::new()
        };
        let concurrency = 2;
        let answers: Vec<(Prompt, std::result::Result<String, String>)> = stream::iter(prompts)
            .map(|prompt| {
                let settings = &settings;
                let statistics = &statistics;
                async move {
                    let request = prompt.request(sql, statistics);
                    let function = format!("rewrite:{}", prompt.name());
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    let answer = tokio::time::timeout(
                        remaining,
                        self.runtime.chat(settings, &function, &request),
                    )
                    .await;
                    let answer = match answer {
                        Err(_) => Err("the search's time ran out".to_owned()),
                        Ok(Err(LmError { message, .. })) => Err(message),
                        Ok(Ok(answer)) => Ok(answer.content),
                    };
                    (prompt, answer)
                }
            })
            .buffered(concurrency)
            .collect()
            .await;

        let mut candidates = Vec::new();
        for (prompt, answer) in answers {
            let mut candidate = Candidate {
                prompt: prompt.name(),
                sql: None,
                checks: Vec::new(),
                estimated_rows: None,
                measured_ms: None,
                speedup: None,
                proof: None,
            };
            match answer {
                // Nothing was asked of the verifier: the candidate is untested, not rejected.
                Err(why) => {
                    notes.push(format!("{}: {why}", prompt.name()));
                    candidate
                        .checks
                        .push(("V0 syntax", Verdict::Untested(format!("no answer: {why}"))));
                }
                Ok(text) => match extract_sql(&text) {
                    None => candidate.checks.push((
                        "V0 syntax",
                        Verdict::Fail("the answer holds no SQL query".into()),
                    )),
                    Some(found) => {
                        let checks = verify::static_checks(ctx, sql, &found).await;
                        if checks.passed() {
                            candidate.proof = Some(prove::prove(ctx, sql, &found).await);
                        }
                        candidate.checks = checks.verdicts;
                        candidate.sql = Some(found);
                    }
                },
            }
            candidates.push(candidate);
        }

        // V3: the databases are made once, and only when some candidate got this far.
        let mut result_check = None;
        for candidate in candidates.iter_mut() {
            if !passed_first(candidate, 3) {
                continue;
            }
            if Instant::now() > deadline {
                candidate.checks.push((
                    "V3 results",
                    Verdict::Untested("the search's time ran out".into()),
                ));
                continue;
            }
            if result_check.is_none() {
                result_check = Some(results::ResultCheck::prepare(ctx, sql, SAMPLE_SEED).await);
            }
            let verdict = match result_check.as_ref().expect("made above") {
                Ok(check) => check.verdict(candidate.sql.as_deref().unwrap_or("")).await,
                Err(err) => {
                    Verdict::Untested(format!("the test databases could not be made: {err}"))
                }
            };
            candidate.checks.push(("V3 results", verdict));
        }

        // The test databases are copies of the data: let them go before timing on the data.
        drop(result_check);
        // V4 on the real data, with LM answers replayed from the cache.
        let replay = {
            let mut state = ctx.state();
            let session_settings = LmSettings::of_mut(state.config_mut().options_mut());
            session_settings.cache = semsql_udfs::lm::CacheMode::Replay;
            SessionContext::new_with_state(state)
        };
        let mut original_ms = None;
        for candidate in candidates.iter_mut() {
            if !candidate.may_time() {
                continue;
            }
            let candidate_sql = candidate.sql.clone().unwrap_or_default();
            let remaining = deadline.saturating_duration_since(Instant::now());
            let verdict = match tokio::time::timeout(
                remaining,
                timing::compare_speed(&replay, sql, &candidate_sql),
            )
            .await
            {
                Err(_) => Verdict::Untested("the search's time ran out".into()),
                Ok(Err(err)) => Verdict::Fail(format!("a timed run failed: {err}")),
                Ok(Ok(timing)) => {
                    original_ms = Some(timing.original_ms);
                    candidate.measured_ms = timing.candidate_ms;
                    candidate.speedup = timing.median_speedup;
                    timing.verdict
                }
            };
            candidate.checks.push(("V4 speed", verdict));
        }
        // The estimate of every candidate that passed V0 (the others may not plan).
        for candidate in candidates.iter_mut() {
            if let Some(candidate_sql) = candidate.sql.as_deref() {
                if candidate.checks.first().map(|(_, v)| v) == Some(&Verdict::Pass) {
                    candidate.estimated_rows = timing::estimated_rows(&replay, candidate_sql).await;
                }
            }
        }
        let fastest = |keep: fn(&Candidate) -> bool| {
            candidates
                .iter()
                .enumerate()
                .filter(|(_, c)| keep(c))
                .max_by(|(_, a), (_, b)| {
                    a.speedup
                        .unwrap_or(0.0)
                        .total_cmp(&b.speedup.unwrap_or(0.0))
                })
                .map(|(index, _)| index)
        };
        let chosen = fastest(Candidate::proven).or_else(|| fastest(Candidate::tested));
        let spent = usage.snapshot();
        self.runtime.finish_query(&usage);
        Ok(Report {
            original: sql.to_owned(),
            original_estimated_rows: timing::estimated_rows(&replay, sql).await,
            original_ms,
            candidates,
            chosen,
            requests: spent.requests,
            tokens: spent.input_tokens + spent.output_tokens,
            seconds: started.elapsed().as_secs_f64(),
            notes,
        })
    }
}
