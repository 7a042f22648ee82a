use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::BooleanArray;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::exec_err;
use datafusion::error::Result;
use datafusion::logical_expr::async_udf::AsyncScalarUDFImpl;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::{check_arity, CallArgs, RuntimeRef};
use crate::lm::{AnswerKind, LmRuntime, LmSettings};

/// `llm_filter(prompt, arg, ...) → boolean`: asks the model whether the prompt holds for the
/// row. `{0}`, `{1}`, ... in the prompt stand for the arguments.
///
/// ```sql
/// SELECT id FROM reviews WHERE llm_filter('The review complains about shipping: {0}', body);
/// -- a semantic join: the pairs are asked in batches, many pairs per request
/// SELECT r.id, m.title FROM reviews r JOIN movies m
///   ON llm_filter('The review {0} is about the movie {1}', r.body, m.title);
/// ```
///
/// It works in WHERE, in an inner JOIN's ON (the cheap conditions join first; the LM condition
/// runs over the joined pairs), in CASE and in the SELECT list. In WHERE, cheap conditions run
/// first, several LM conditions run cheapest first each on the rows the others kept, and under a
/// LIMIT the work stops once enough rows have passed. A prompt without `{0}` gets the arguments
/// appended as labelled context (`body: ...`). Any LM function takes `llm_model(...)` as an
/// extra last argument to choose the model, temperature and output limit for the call.
///
/// A NULL argument gives NULL without a request. The model must answer `true` or `false`; an
/// answer that is neither fails the query naming the row (or gives NULL under
/// `SET semsql.on_llm_error = 'null'`), never a default.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct LlmFilter {
    signature: Signature,
    runtime: RuntimeRef,
}

impl LlmFilter {
    pub fn new(runtime: Arc<dyn LmRuntime>) -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Volatile),
            runtime: RuntimeRef(runtime),
        }
    }
}

impl ScalarUDFImpl for LlmFilter {
    fn name(&self) -> &str {
        "llm_filter"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        check_arity(self.name(), arg_types, 1)?;
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        exec_err!("llm_filter runs asynchronously")
    }
}

#[async_trait]
impl AsyncScalarUDFImpl for LlmFilter {
    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let call = CallArgs::of(self.name(), &args)?;
        let (instruction, rows) = call.prompt_and_rows(self.name(), args.number_rows)?;
        let task = call
            .options
            .task("llm_filter", instruction, AnswerKind::Boolean);
        let settings = LmSettings::of(&args.config_options);
        let answers = self.runtime.0.complete_rows(&settings, &task, rows).await?;
        let values: BooleanArray = answers
            .iter()
            .map(|answer| answer.as_ref().and_then(|value| value.as_bool()))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(values)))
    }
}
