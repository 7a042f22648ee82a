//! Functions that ask a language model about each row.
//!
//! Prompt convention: `{0}`, `{1}`, ... in the prompt stand for the arguments after it. The
//! prompt must be a constant: it is the instruction shared by every row of a request, while the
//! arguments travel as each row's data.

mod llm_agg;
mod llm_classify;
mod llm_extract;
mod llm_filter;
mod llm_map;
pub mod llm_model;
mod llm_rerank;
mod llm_score;

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::datatypes::{Float64Type, Int64Type};
use datafusion::common::{exec_err, plan_err, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::async_udf::AsyncScalarUDF;
use datafusion::logical_expr::{AggregateUDF, ColumnarValue, ScalarFunctionArgs, ScalarUDF};

pub use llm_agg::{LlmAgg, LlmAggReduce};
pub use llm_classify::LlmClassify;
pub use llm_extract::LlmExtract;
pub use llm_filter::LlmFilter;
pub use llm_map::LlmMap;
pub use llm_model::LlmModel;
pub use llm_rerank::{LlmRerank, LlmRerankReduce};
pub use llm_score::LlmScore;

use crate::lm::{AnswerKind, LmRuntime, LmTask};

/// The names of every function that calls a model, aliases included (`embed` lives with the
/// vector functions).
pub const NAMES: [&str; 9] = [
    "embed",
    "llm_agg",
    "llm_rerank",
    "llm_filter",
    "llm_map",
    "llm_complete",
    "llm_classify",
    "llm_score",
    "llm_extract",
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
        Arc::new(AsyncScalarUDF::new(Arc::new(LlmScore::new(runtime.clone()))).into_scalar_udf()),
        Arc::new(AsyncScalarUDF::new(Arc::new(LlmExtract::new(runtime.clone()))).into_scalar_udf()),
        Arc::new(ScalarUDF::new_from_impl(LlmModel::new())),
    ]
}

/// The LM halves of the aggregates, by aggregate name: the planner computes `array_agg(arg)`
/// per group and calls the reducer above the aggregate with `(prompt, list, other arguments)`.
pub fn list_reducers(runtime: Arc<dyn LmRuntime>) -> Vec<(&'static str, Arc<ScalarUDF>)> {
    vec![
        (
            "llm_agg",
            Arc::new(
                AsyncScalarUDF::new(Arc::new(LlmAggReduce::new(runtime.clone()))).into_scalar_udf(),
            ),
        ),
        (
            "llm_rerank",
            Arc::new(
                AsyncScalarUDF::new(Arc::new(LlmRerankReduce::new(runtime))).into_scalar_udf(),
            ),
        ),
    ]
}

/// The aggregate functions (the planner rewrites them into a list aggregate and an LM call).
pub fn aggregate_functions() -> Vec<Arc<AggregateUDF>> {
    vec![
        Arc::new(AggregateUDF::new_from_impl(LlmAgg::new())),
        Arc::new(AggregateUDF::new_from_impl(LlmRerank::new())),
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
    let arg_types = data_types(arg_types);
    if arg_types.len() < 1 + min_args {
        return plan_err!(
            "{name} needs a prompt and at least {min_args} argument(s), e.g. \
             {name}('Is this review positive? {{0}}', body)"
        );
    }
    Ok(())
}

/// A call's arguments without its options, and the options.
pub(crate) struct CallArgs {
    pub args: Vec<ColumnarValue>,
    /// The arguments' names as the query wrote them (`body`, `reviews.title`).
    pub names: Vec<String>,
    pub options: CallOptions,
}

impl CallArgs {
    pub fn of(name: &str, args: &ScalarFunctionArgs) -> Result<Self> {
        let mut data = Vec::with_capacity(args.args.len());
        let mut names = Vec::with_capacity(args.args.len());
        let mut options = None;
        for (arg, field) in args.args.iter().zip(args.arg_fields.iter()) {
            if is_options_type(field.data_type()) {
                if options.is_some() {
                    return exec_err!("{name}: llm_model(...) is given twice");
                }
                options = Some(CallOptions::from_arg(name, arg)?);
            } else {
                data.push(arg.clone());
                names.push(field.name().clone());
            }
        }
        Ok(Self {
            args: data,
            names,
            options: options.unwrap_or_default(),
        })
    }

    /// The prompt and each row's arguments as text (see [`prompt_and_rows`]); a prompt without
    /// placeholders gets the arguments appended as labelled context.
    pub fn prompt_and_rows(
        &self,
        name: &str,
        number_rows: usize,
    ) -> Result<(String, Vec<Option<Vec<String>>>)> {
        let (prompt, rows) = prompt_and_rows(name, &self.args, number_rows)?;
        Ok((
            with_context_labels(prompt, &self.names[1.min(self.names.len())..]),
            rows,
        ))
    }
}

/// `prompt` as given when it refers to its arguments (`{0}`, ...); otherwise with the
/// arguments appended as labelled context, so `llm_filter('Is it positive?', body)` asks about
/// the body.
pub(crate) fn with_context_labels(prompt: String, names: &[String]) -> String {
    let refers = (0..names.len()).any(|index| prompt.contains(&format!("{{{index}}}")));
    if refers || names.is_empty() {
        return prompt;
    }
    let context: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(index, name)| {
            let label = name.rsplit('.').next().unwrap_or(name);
            format!("{label}: {{{index}}}")
        })
        .collect();
    format!("{prompt}\n{}", context.join("\n"))
}

/// Per-call choices made with `llm_model(name [, temperature [, max_tokens]])` as an extra
/// argument of any LM function.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallOptions {
    pub model: Option<String>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u32>,
}

impl CallOptions {
    fn from_arg(name: &str, arg: &ColumnarValue) -> Result<Self> {
        match arg {
            ColumnarValue::Scalar(value) => Self::from_scalar(value),
            ColumnarValue::Array(_) => {
                exec_err!("{name}: llm_model(...) must be constant (the same model for every row)")
            }
        }
    }

    /// The options in the struct value `llm_model(...)` returns.
    pub fn from_scalar(value: &ScalarValue) -> Result<Self> {
        let ScalarValue::Struct(array) = value else {
            return exec_err!("llm_model(...) options are not a struct");
        };
        let column = |index: usize| array.column(index);
        let model = column(0).as_string::<i32>();
        let temperature = column(1).as_primitive::<Float64Type>();
        let max_tokens = column(2).as_primitive::<Int64Type>();
        Ok(Self {
            model: (!model.is_null(0)).then(|| model.value(0).to_owned()),
            temperature: (!temperature.is_null(0)).then(|| temperature.value(0)),
            max_tokens: (!max_tokens.is_null(0)).then(|| max_tokens.value(0) as u32),
        })
    }

    /// The task for these options.
    pub fn task(&self, function: &'static str, instruction: String, answer: AnswerKind) -> LmTask {
        LmTask {
            function,
            model: self.model.clone(),
            instruction,
            answer,
            temperature: self.temperature,
            max_tokens: self.max_tokens,
        }
    }
}

/// Whether an argument's type is the options struct `llm_model(...)` returns.
pub fn is_options_type(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Struct(fields)
        if fields.first().is_some_and(|f| f.name() == llm_model::MODEL_FIELD))
}

/// The argument types without the options argument.
pub(crate) fn data_types(arg_types: &[DataType]) -> Vec<DataType> {
    arg_types
        .iter()
        .filter(|t| !is_options_type(t))
        .cloned()
        .collect()
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
