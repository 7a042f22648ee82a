use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray, ListBuilder, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{exec_err, plan_err, ScalarValue};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::async_udf::AsyncScalarUDFImpl;
use datafusion::logical_expr::function::AccumulatorArgs;
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs,
    ScalarUDFImpl, Signature, Volatility,
};

use super::{data_types, CallArgs, RuntimeRef};
use crate::lm::{AnswerKind, LmError, LmRuntime, LmSettings};

/// The largest `k` llm_rerank takes; past it, pointwise `llm_score` ranks better per request.
pub const MAX_TOP: i64 = 50;
/// Most candidates compared in one listwise comparison (at least `2k`, so every round shrinks).
const WINDOW_ITEMS: usize = 20;
/// Most characters of candidates in one comparison (a window always holds `k + 1` candidates,
/// whatever their length, so that it shrinks).
const WINDOW_CHARS: usize = super::llm_agg::CHUNK_CHARS;
/// Most rounds of the tournament (each round keeps at most half the candidates).
const MAX_ROUNDS: usize = 32;

/// `llm_rerank(prompt, arg, k) → text[]`, an aggregate: the group's `k` best values for the
/// prompt, best first, by listwise comparisons.
///
/// ```sql
/// SELECT llm_rerank('Which plot is most about time travel?', plot, 3) FROM movies;
/// SELECT genre, llm_rerank('most exciting', title, 2) FROM movies GROUP BY genre;
/// ```
///
/// A tournament over windows: the group's values are cut into windows of up to 20 values
/// (`2k` when larger) and 8,000 characters, the model ranks each window and names its best `k`,
/// and the winners go on to the next round until one window holds them all, whose ranking is
/// the answer. The windows of every group of a round are batched together, many per request:
/// the top 5 of 50 takes 2 rounds. Under a consistent judge this returns exactly the top `k`,
/// since each of them is among its window's best `k`. `k` is a constant from 1 to 50 (past
/// that, use `ORDER BY llm_score(...) DESC LIMIT k`); the prompt is the ranking criterion and
/// takes no placeholders. NULL values are skipped; a group with none gives NULL. Values are
/// compared and returned as text. An answer that is not `k` distinct positions of the window
/// fails the query (or gives NULL under `SET semsql.on_llm_error = 'null'`).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct LlmRerank {
    signature: Signature,
}

impl Default for LlmRerank {
    fn default() -> Self {
        Self::new()
    }
}

impl LlmRerank {
    pub fn new() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Volatile),
        }
    }
}

/// `text[]` as DataFusion spells it.
fn text_list() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)))
}

impl AggregateUDFImpl for LlmRerank {
    fn name(&self) -> &str {
        "llm_rerank"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        if data_types(arg_types).len() != 3 {
            return plan_err!(
                "llm_rerank takes a prompt, a value and k: llm_rerank('most about time \
                 travel', plot, 3)"
            );
        }
        Ok(text_list())
    }

    fn accumulator(&self, _acc_args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        // semsql's planner rewrites every llm_rerank into array_agg and llm_rerank_reduce.
        exec_err!("llm_rerank cannot run in this position (only as an aggregate of a GROUP BY query or of a whole table)")
    }
}

/// The second half of `llm_rerank`: the planner computes `array_agg(arg)` per group, then this
/// function runs the tournament over each group's list. Not meant to be called directly.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct LlmRerankReduce {
    signature: Signature,
    runtime: RuntimeRef,
}

impl LlmRerankReduce {
    pub fn new(runtime: Arc<dyn LmRuntime>) -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Volatile),
            runtime: RuntimeRef(runtime),
        }
    }
}

/// `k` as given, checked.
fn top_of(value: Option<&ScalarValue>) -> Result<usize> {
    let k = value.and_then(|value| match value {
        ScalarValue::Int8(Some(k)) => Some(i64::from(*k)),
        ScalarValue::Int16(Some(k)) => Some(i64::from(*k)),
        ScalarValue::Int32(Some(k)) => Some(i64::from(*k)),
        ScalarValue::Int64(Some(k)) => Some(*k),
        ScalarValue::UInt8(Some(k)) => Some(i64::from(*k)),
        ScalarValue::UInt16(Some(k)) => Some(i64::from(*k)),
        ScalarValue::UInt32(Some(k)) => Some(i64::from(*k)),
        ScalarValue::UInt64(Some(k)) => i64::try_from(*k).ok(),
        _ => None,
    });
    match k {
        Some(k) if (1..=MAX_TOP).contains(&k) => Ok(k as usize),
        _ => Err(DataFusionError::External(Box::new(LmError::new(
            "22023",
            format!(
                "llm_rerank: k must be a constant integer from 1 to {MAX_TOP}, got {}; for \
                 more, use ORDER BY llm_score(...) DESC LIMIT k",
                value.map_or("an expression".to_owned(), ToString::to_string)
            ),
        )))),
    }
}

impl ScalarUDFImpl for LlmRerankReduce {
    fn name(&self) -> &str {
        "llm_rerank_reduce"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(text_list())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let types: Vec<DataType> = args
            .arg_fields
            .iter()
            .map(|field| field.data_type().clone())
            .collect();
        if !matches!(types.get(1), Some(DataType::List(_))) || data_types(&types).len() != 3 {
            return plan_err!(
                "llm_rerank_reduce(prompt, list, k) is planned from llm_rerank; use llm_rerank"
            );
        }
        top_of(args.scalar_arguments.get(2).copied().flatten())?;
        Ok(Arc::new(Field::new(self.name(), text_list(), true)))
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        exec_err!("llm_rerank runs asynchronously")
    }
}

/// Cuts `candidates` (indexes into `items`) into windows of at most `max(WINDOW_ITEMS, 2k)`
/// items and [`WINDOW_CHARS`] characters, each holding at least `k + 1` when there are that
/// many left.
fn windows(items: &[String], candidates: &[usize], k: usize) -> Vec<Vec<usize>> {
    let most = WINDOW_ITEMS.max(2 * k);
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut chars = 0;
    for &candidate in candidates {
        let len = items[candidate].len();
        let fits = current.len() < most && chars + len <= WINDOW_CHARS;
        if !current.is_empty() && current.len() > k && !fits {
            out.push(std::mem::take(&mut current));
            chars = 0;
        }
        current.push(candidate);
        chars += len;
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Where one group's tournament stands.
enum Standing {
    /// No values: NULL.
    Empty,
    /// Still comparing these candidates (indexes into the group's items).
    Open(Vec<usize>),
    /// The ranking, best first.
    Ranked(Vec<usize>),
    /// The model gave no usable answer for one of its windows (under `on_llm_error = 'null'`).
    Unanswered,
}

#[async_trait]
impl AsyncScalarUDFImpl for LlmRerankReduce {
    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let call = CallArgs::of("llm_rerank", &args)?;
        let (prompt, _) = super::prompt_and_rows("llm_rerank", &call.args[..1], 1)?;
        if prompt.contains("{0}") {
            return exec_err!(
                "llm_rerank: the prompt is the ranking criterion and takes no placeholders; \
                 each value is one candidate"
            );
        }
        let k = match &call.args[2] {
            ColumnarValue::Scalar(value) => top_of(Some(value))?,
            ColumnarValue::Array(_) => top_of(None)?,
        };
        let lists = call.args[1].to_array(args.number_rows)?;
        let lists = lists.as_list::<i32>();
        let mut groups: Vec<Vec<String>> = Vec::with_capacity(lists.len());
        let mut standings: Vec<Standing> = Vec::with_capacity(lists.len());
        for row in 0..lists.len() {
            let items: Vec<String> = if lists.is_null(row) {
                Vec::new()
            } else {
                let values = cast(&lists.value(row), &DataType::Utf8)?;
                let values = values.as_string::<i32>();
                values.iter().flatten().map(str::to_owned).collect()
            };
            standings.push(match items.len() {
                0 => Standing::Empty,
                1 => Standing::Ranked(vec![0]),
                n => Standing::Open((0..n).collect()),
            });
            groups.push(items);
        }
        let task = call.options.task(
            "llm_rerank",
            format!(
                "{prompt}\nEach numbered text ([0], [1], ...) is one candidate. Rank the \
                 candidates by how well they fit this, best first."
            ),
            AnswerKind::Ranking { top: k },
        );
        let settings = LmSettings::of(&args.config_options);
        for _ in 0..MAX_ROUNDS {
            // This round's windows, of every open group: (group, window). A window of k or
            // fewer beside others goes on to the next round without asking.
            let mut asked: Vec<(usize, Vec<usize>)> = Vec::new();
            let mut winners: Vec<Option<Vec<usize>>> = vec![Some(Vec::new()); groups.len()];
            let mut final_round = vec![false; groups.len()];
            for (group, standing) in standings.iter().enumerate() {
                if let Standing::Open(candidates) = standing {
                    let cut = windows(&groups[group], candidates, k);
                    final_round[group] = cut.len() == 1;
                    for window in cut {
                        if !final_round[group] && window.len() <= k {
                            winners[group].get_or_insert_with(Vec::new).extend(window);
                        } else {
                            asked.push((group, window));
                        }
                    }
                }
            }
            if asked.is_empty() {
                return Ok(ColumnarValue::Array(Arc::new(result(&groups, &standings))));
            }
            let rows = asked
                .iter()
                .map(|(group, window)| {
                    Some(window.iter().map(|&i| groups[*group][i].clone()).collect())
                })
                .collect();
            let answers = self.runtime.0.complete_rows(&settings, &task, rows).await?;
            for ((group, window), answer) in asked.iter().zip(answers) {
                let positions = answer.as_ref().and_then(|value| value.as_array()).map(|a| {
                    a.iter()
                        .filter_map(|p| p.as_u64())
                        .map(|p| window[p as usize])
                        .collect::<Vec<usize>>()
                });
                match (positions, winners[*group].as_mut()) {
                    (Some(positions), Some(kept)) => kept.extend(positions),
                    _ => winners[*group] = None,
                }
            }
            for (group, standing) in standings.iter_mut().enumerate() {
                if !matches!(standing, Standing::Open(_)) {
                    continue;
                }
                *standing = match winners[group].take() {
                    None => Standing::Unanswered,
                    // One window held all the candidates: its ranking is the answer.
                    Some(ranked) if final_round[group] => Standing::Ranked(ranked),
                    Some(kept) => Standing::Open(kept),
                };
            }
        }
        exec_err!("llm_rerank: no ranking after {MAX_ROUNDS} rounds")
    }
}

/// The ranked values of every group as a `text[]` column.
fn result(groups: &[Vec<String>], standings: &[Standing]) -> datafusion::arrow::array::ListArray {
    let mut builder = ListBuilder::new(StringBuilder::new());
    for (items, standing) in groups.iter().zip(standings) {
        match standing {
            Standing::Ranked(order) => {
                for &i in order {
                    builder.values().append_value(&items[i]);
                }
                builder.append(true);
            }
            _ => builder.append(false),
        }
    }
    builder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(lengths: &[usize]) -> Vec<String> {
        lengths.iter().map(|&n| "x".repeat(n)).collect()
    }

    #[test]
    fn windows_shrink_every_round() {
        let items = items(&[10; 50]);
        let all: Vec<usize> = (0..50).collect();
        let cut = windows(&items, &all, 5);
        assert_eq!(
            cut.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![20, 20, 10]
        );
        // Large k widens the window to 2k.
        assert_eq!(windows(&items, &all, 15)[0].len(), 30);
        // Long values: fewer per window, but never k or fewer while more remain.
        let long = self::items(&[3000; 10]);
        let cut = windows(&long, &(0..10).collect::<Vec<_>>(), 3);
        assert!(cut.iter().all(|w| w.len() >= 4 || w == cut.last().unwrap()));
        assert_eq!(cut.concat(), (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn k_is_checked() {
        assert_eq!(top_of(Some(&ScalarValue::Int64(Some(3)))).unwrap(), 3);
        for bad in [
            ScalarValue::Int64(Some(0)),
            ScalarValue::Int64(Some(51)),
            ScalarValue::Int64(None),
            ScalarValue::Utf8(Some("3".into())),
        ] {
            let error = top_of(Some(&bad)).unwrap_err().to_string();
            assert!(error.contains("from 1 to 50"), "{bad:?}: {error}");
        }
    }
}
