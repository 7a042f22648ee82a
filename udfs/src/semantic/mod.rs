//! Functions that ask a language model about each row.
//!
//! Prompt convention: `{0}`, `{1}`, ... in the prompt stand for the arguments after it. The
//! prompt must be a constant: it is the instruction shared by every row of a request, while the
//! arguments travel as each row's data.

mod llm_classify;
mod llm_filter;
mod llm_map;
mod llm_score;

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_err, plan_err, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::async_udf::AsyncScalarUDF;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF};

pub use llm_classify::LlmClassify;
pub use llm_filter::LlmFilter;
pub use llm_map::LlmMap;
pub use llm_score::LlmScore;

use crate::lm::LmRuntime;

/// The names of every function here, aliases included.
pub const NAMES: [&str; 5] = [
    "llm_filter",
    "llm_map",
    "llm_complete",
    "llm_classify",
    "llm_score",
];

pub fn functions(runtime: Arc<dyn LmRuntime>) -> Vec<Arc<ScalarUDF>> {
    vec![
        Arc::new(AsyncScalarUDF::new(Arc::new(LlmFilter::new(runtime.clone()))).into_scalar_udf()),
        Arc::new(
            AsyncScalarUDF::new(Arc::new(LlmMap::new(runtime.clone(), "llm_map")))
                .into_scalar_udf(),
        ),
        Arc::new(
            AsyncScalarUDF::new(Arc::new(LlmMap::new(runtime.clone(), "llm_complete")))
                .into_scalar_udf(),
        ),
        Arc::new(
            AsyncScalarUDF::new(Arc::new(LlmClassify::new(runtime.clone()))).into_scalar_udf(),
        ),
        Arc::new(AsyncScalarUDF::new(Arc::new(LlmScore::new(runtime))).into_scalar_udf()),
    ]
}

/// The runtime a function holds; functions compare equal by name, whatever runtime they hold,
/// because a server has one runtime.
#[derive(Debug, Clone)]
pub(crate) struct RuntimeRef(pub Arc<dyn LmRuntime>);

impl PartialEq for RuntimeRef {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl Eq for RuntimeRef {}

impl Hash for RuntimeRef {
    fn hash<H: Hasher>(&self, _state: &mut H) {}
}

/// Checks that a call has a prompt and at least `min_args` arguments after it.
pub(crate) fn check_arity(name: &str, arg_types: &[DataType], min_args: usize) -> Result<()> {
    if arg_types.len() < 1 + min_args {
        return plan_err!(
            "{name} needs a prompt and at least {min_args} argument(s), e.g. \
             {name}('Is this review positive? {{0}}', body)"
        );
    }
    Ok(())
}

/// The call's prompt and each row's arguments as text; a row with a NULL argument is `None`.
pub(crate) fn prompt_and_rows(
    name: &str,
    args: &[ColumnarValue],
    number_rows: usize,
) -> Result<(String, Vec<Option<Vec<String>>>)> {
    let Some((prompt, rest)) = args.split_first() else {
        return exec_err!("{name} needs a prompt");
    };
    let prompt = match prompt {
        ColumnarValue::Scalar(value) => match value {
            ScalarValue::Utf8(Some(text))
            | ScalarValue::Utf8View(Some(text))
            | ScalarValue::LargeUtf8(Some(text)) => text.clone(),
            value if value.is_null() => return exec_err!("{name}: the prompt is NULL"),
            _ => return exec_err!("{name}: the prompt must be text"),
        },
        ColumnarValue::Array(_) => {
            return exec_err!(
                "{name}: the prompt must be a constant; pass per-row values as arguments \
                 after it and refer to them as {{0}}, {{1}}, ..."
            )
        }
    };
    let columns = rest
        .iter()
        .map(|arg| text_column(arg, number_rows))
        .collect::<Result<Vec<_>>>()?;
    let rows = (0..number_rows)
        .map(|row| {
            columns
                .iter()
                .map(|column| {
                    let strings = column.as_string::<i32>();
                    (!strings.is_null(row)).then(|| strings.value(row).to_owned())
                })
                .collect::<Option<Vec<String>>>()
        })
        .collect();
    Ok((prompt, rows))
}

/// Text answers as the function's result column (NULL where there is no answer).
pub(crate) fn text_column_of(answers: &[Option<serde_json::Value>]) -> ColumnarValue {
    let values: StringArray = answers
        .iter()
        .map(|answer| answer.as_ref().and_then(|value| value.as_str()))
        .collect();
    ColumnarValue::Array(Arc::new(values))
}

/// An argument as a text array with one value per row.
fn text_column(arg: &ColumnarValue, number_rows: usize) -> Result<ArrayRef> {
    let array = arg.to_array(number_rows)?;
    Ok(cast(&array, &DataType::Utf8)?)
}
