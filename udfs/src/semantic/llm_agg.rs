use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_err, plan_err};
use datafusion::error::Result;
use datafusion::logical_expr::async_udf::AsyncScalarUDFImpl;
use datafusion::logical_expr::function::AccumulatorArgs;
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature,
    Volatility,
};

use super::{CallArgs, RuntimeRef};
use crate::lm::{AnswerKind, LmRuntime, LmSettings};

/// Most characters of items asked about in one row; a larger group is summarised in chunks of
/// this size first, then the summaries are combined.
pub const CHUNK_CHARS: usize = 8000;
/// Most rounds of summarising before the final answer.
const MAX_LEVELS: usize = 6;

/// `llm_agg(prompt, arg) → text`, an aggregate: one answer about all the rows of a group.
///
/// ```sql
/// SELECT product, llm_agg('What do these reviews complain about most?', body)
/// FROM reviews GROUP BY product;
/// ```
///
/// The group's non-NULL values go to the model together, one per line. A group larger than
/// 8,000 characters is reduced hierarchically: its values are cut into chunks of at most 8,000
/// characters, each chunk is summarised for the prompt, and the summaries are combined the same
/// way until one request holds them all. Every group's requests of one round are batched
/// together, many groups per request. A group with only NULLs gives NULL.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct LlmAgg {
    signature: Signature,
}

impl Default for LlmAgg {
    fn default() -> Self {
        Self::new()
    }
}

impl LlmAgg {
    pub fn new() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Volatile),
        }
    }
}

impl AggregateUDFImpl for LlmAgg {
    fn name(&self) -> &str {
        "llm_agg"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        if super::data_types(arg_types).len() != 2 {
            return plan_err!(
                "llm_agg takes a prompt and a value: llm_agg('What do these have in common?', \
                 body)"
            );
        }
        Ok(DataType::Utf8)
    }

    fn accumulator(&self, _acc_args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        // semsql's planner rewrites every llm_agg into array_agg and llm_agg_reduce.
        exec_err!("llm_agg cannot run in this position (only as an aggregate of a GROUP BY query or of a whole table)")
    }
}

/// The second half of `llm_agg`: the planner computes `array_agg(arg)` per group, then this
/// function reduces each group's list to one answer. Not meant to be called directly.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct LlmAggReduce {
    signature: Signature,
    runtime: RuntimeRef,
}

impl LlmAggReduce {
    pub fn new(runtime: Arc<dyn LmRuntime>) -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Volatile),
            runtime: RuntimeRef(runtime),
        }
    }
}

impl ScalarUDFImpl for LlmAggReduce {
    fn name(&self) -> &str {
        "llm_agg_reduce"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        if !matches!(arg_types.get(1), Some(DataType::List(_))) {
            return plan_err!("llm_agg_reduce(prompt, list) is planned from llm_agg; use llm_agg");
        }
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        exec_err!("llm_agg runs asynchronously")
    }
}

/// Cuts `items` into texts of at most [`CHUNK_CHARS`] (an item longer than that is a chunk of
/// its own).
fn chunks(items: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    for item in items {
        if !current.is_empty() && current.len() + item.len() + 3 > CHUNK_CHARS {
            out.push(std::mem::take(&mut current));
        }
        current.push_str("- ");
        current.push_str(item);
        current.push('\n');
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[async_trait]
impl AsyncScalarUDFImpl for LlmAggReduce {
    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let call = CallArgs::of("llm_agg", &args)?;
        let (prompt, _) = super::prompt_and_rows("llm_agg", &call.args[..1], 1)?;
        let lists = call.args[1].to_array(args.number_rows)?;
        let lists = lists.as_list::<i32>();
        let mut groups: Vec<Option<Vec<String>>> = Vec::with_capacity(lists.len());
        for row in 0..lists.len() {
            if lists.is_null(row) {
                groups.push(None);
                continue;
            }
            let values = cast(&lists.value(row), &DataType::Utf8)?;
            let values = values.as_string::<i32>();
            let items: Vec<String> = values.iter().flatten().map(str::to_owned).collect();
            groups.push((!items.is_empty()).then_some(items));
        }
        let settings = LmSettings::of(&args.config_options);
        for _ in 0..MAX_LEVELS {
            let pieces: Vec<Option<Vec<String>>> =
                groups.iter().map(|g| g.as_deref().map(chunks)).collect();
            if pieces.iter().flatten().all(|chunks| chunks.len() <= 1) {
                let rows = pieces
                    .iter()
                    .map(|chunks| chunks.as_ref().map(|c| vec![c.concat()]))
                    .collect();
                let task = call.options.task(
                    "llm_agg",
                    format!(
                        "{prompt}\n{{0}} holds all the values of one group, one per line. \
                         Answer for the group as a whole."
                    ),
                    AnswerKind::Text,
                );
                let answers = self.runtime.0.complete_rows(&settings, &task, rows).await?;
                let values: StringArray = answers
                    .iter()
                    .map(|answer| answer.as_ref().and_then(|value| value.as_str()))
                    .collect();
                return Ok(ColumnarValue::Array(Arc::new(values)));
            }
            // Summarise every chunk of the groups that do not fit, all groups in one call.
            let mut owners = Vec::new();
            let mut rows = Vec::new();
            for (group, chunks) in pieces.iter().enumerate() {
                if let Some(chunks) = chunks.as_ref().filter(|c| c.len() > 1) {
                    for chunk in chunks {
                        owners.push(group);
                        rows.push(Some(vec![chunk.clone()]));
                    }
                }
            }
            let task = call.options.task(
                "llm_agg",
                format!(
                    "{prompt}\n{{0}} holds part of the values of one group, one per line. Do not \
                     answer yet: summarise what in them matters for answering this for the \
                     whole group, keeping the facts and counts needed."
                ),
                AnswerKind::Text,
            );
            let summaries = self.runtime.0.complete_rows(&settings, &task, rows).await?;
            let mut next: Vec<Option<Vec<String>>> = pieces
                .iter()
                .zip(&groups)
                .map(|(chunks, group)| match chunks {
                    Some(chunks) if chunks.len() > 1 => Some(Vec::new()),
                    _ => group.clone(),
                })
                .collect();
            for (owner, summary) in owners.into_iter().zip(summaries) {
                match summary.and_then(|s| s.as_str().map(str::to_owned)) {
                    Some(summary) => {
                        if let Some(items) = next[owner].as_mut() {
                            items.push(summary);
                        }
                    }
                    // A part that could not be summarised (`semsql.on_llm_error = 'null'`):
                    // an answer from the other parts would silently leave rows out, so the
                    // group's answer is NULL, as for a row whose answer is unusable.
                    None => next[owner] = None,
                }
            }
            groups = next;
        }
        exec_err!("llm_agg: a group was still too large after {MAX_LEVELS} rounds of summaries")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_stay_under_the_limit() {
        let items: Vec<String> = (0..100)
            .map(|i| format!("{i}: {}", "x".repeat(300)))
            .collect();
        let cut = chunks(&items);
        assert!(cut.len() > 1);
        assert!(cut.iter().all(|chunk| chunk.len() <= CHUNK_CHARS));
        assert_eq!(cut.concat().lines().count(), 100);
    }
}
