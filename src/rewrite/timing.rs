//! V4, the speed check: the original and a candidate run in turns on the real data, one warm-up
//! each and then [`PAIRS`] interleaved pairs (so a noisy moment hits both), each candidate run
//! cut at twice the original's time of its pair. The candidate is accepted when the median of
//! the pairs' speedups is at least [`MEDIAN_SPEEDUP`] and the slowest pair's at least
//! [`WORST_SPEEDUP`].
//!
//! Also here: the estimated cost shown beside the measured one, from DataFusion's row estimates
//! (the sum of the rows each operator is expected to produce, where it knows).

use std::time::{Duration, Instant};

use datafusion::common::stats::Precision;
use datafusion::error::Result;
use datafusion::physical_plan::{ExecutionPlan, StatisticsArgs, StatisticsContext};
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;

use super::verify::Verdict;

pub const PAIRS: usize = 5;
pub const MEDIAN_SPEEDUP: f64 = 1.5;
pub const WORST_SPEEDUP: f64 = 1.2;

/// What the timed runs measured.
#[derive(Debug, Clone)]
pub struct Timing {
    pub original_ms: f64,
    pub candidate_ms: Option<f64>,
    pub median_speedup: Option<f64>,
    pub verdict: Verdict,
}

/// Runs `sql` to its end and returns how long it took, or `None` when `limit` passed first.
async fn timed(ctx: &SessionContext, sql: &str, limit: Option<Duration>) -> Result<Option<f64>> {
    let start = Instant::now();
    let work = async {
        let stream = ctx.sql(sql).await?.execute_stream().await?;
        stream.try_for_each(|_| async { Ok(()) }).await
    };
    match limit {
        Some(limit) => match tokio::time::timeout(limit, work).await {
            Ok(done) => done?,
            Err(_) => return Ok(None),
        },
        None => work.await?,
    }
    Ok(Some(start.elapsed().as_secs_f64() * 1000.0))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// V4 for `candidate`.
pub async fn compare_speed(
    ctx: &SessionContext,
    original: &str,
    candidate: &str,
) -> Result<Timing> {
    let warm_original = timed(ctx, original, None).await?.unwrap_or(0.0);
    let cap = |original_ms: f64| Duration::from_secs_f64((2.0 * original_ms).max(1.0) / 1000.0);
    if timed(ctx, candidate, Some(cap(warm_original)))
        .await?
        .is_none()
    {
        return Ok(Timing {
            original_ms: warm_original,
            candidate_ms: None,
            median_speedup: None,
            verdict: Verdict::Fail("its warm-up ran over twice the original's time".into()),
        });
    }
    let (mut originals, mut candidates, mut speedups) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..PAIRS {
        let original_ms = timed(ctx, original, None).await?.unwrap_or(0.0);
        let Some(candidate_ms) = timed(ctx, candidate, Some(cap(original_ms))).await? else {
            return Ok(Timing {
                original_ms,
                candidate_ms: None,
                median_speedup: None,
                verdict: Verdict::Fail("a run went over twice the original's time".into()),
            });
        };
        originals.push(original_ms);
        candidates.push(candidate_ms);
        speedups.push(original_ms / candidate_ms.max(1e-3));
    }
    let worst = speedups.iter().copied().fold(f64::INFINITY, f64::min);
    let median_speedup = median(&mut speedups);
    let verdict = if median_speedup < MEDIAN_SPEEDUP {
        Verdict::Fail(format!(
            "median speedup {median_speedup:.2}× is under {MEDIAN_SPEEDUP}×"
        ))
    } else if worst < WORST_SPEEDUP {
        Verdict::Fail(format!(
            "the slowest pair's speedup {worst:.2}× is under {WORST_SPEEDUP}× (median \
             {median_speedup:.2}×)"
        ))
    } else {
        Verdict::Pass
    };
    Ok(Timing {
        original_ms: median(&mut originals),
        candidate_ms: Some(median(&mut candidates)),
        median_speedup: Some(median_speedup),
        verdict,
    })
}

/// The optimizer's estimate of the rows all operators produce, or `None` when it knows none.
pub async fn estimated_rows(ctx: &SessionContext, sql: &str) -> Option<u64> {
    let plan = ctx.sql(sql).await.ok()?.create_physical_plan().await.ok()?;
    let mut total = 0u64;
    let mut known = false;
    let mut stack: Vec<std::sync::Arc<dyn ExecutionPlan>> = vec![plan];
    while let Some(node) = stack.pop() {
        if let Ok(statistics) =
            StatisticsContext::new().compute(node.as_ref(), &StatisticsArgs::new())
        {
            match statistics.num_rows {
                Precision::Exact(rows) | Precision::Inexact(rows) => {
                    total = total.saturating_add(rows as u64);
                    known = true;
                }
                Precision::Absent => {}
            }
        }
        stack.extend(node.children().into_iter().cloned());
    }
    known.then_some(total)
}
