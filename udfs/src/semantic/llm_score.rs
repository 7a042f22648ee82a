use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::Float64Array;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::exec_err;
use datafusion::error::Result;
use datafusion::logical_expr::async_udf::AsyncScalarUDFImpl;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::{check_arity, CallArgs, RuntimeRef};
use crate::lm::{AnswerKind, LmRuntime, LmSettings};

/// `llm_score(prompt, arg, ...) → double precision`: how well the row fits the prompt, from 0
/// (not at all) to 1 (fully), so that `ORDER BY llm_score(...) DESC LIMIT k` ranks rows.
/// `{0}`, `{1}`, ... in the prompt stand for the arguments.
///
/// ```sql
/// SELECT title FROM movies
/// ORDER BY llm_score('How much is {0} about time travel?', plot) DESC LIMIT 5;
/// ```
///
/// A NULL argument gives NULL without a request. An answer that is not a number in [0, 1]
/// fails the query naming the row (or gives NULL under `SET semsql.on_llm_error = 'null'`).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct LlmScore {
    signature: Signature,
    runtime: RuntimeRef,
}

impl LlmScore {
    pub fn new(runtime: Arc<dyn LmRuntime>) -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Volatile),
            runtime: RuntimeRef(runtime),
        }
    }
}

impl ScalarUDFImpl for LlmScore {
    fn name(&self) -> &str {
        "llm_score"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        check_arity(self.name(), arg_types, 1)?;
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        exec_err!("llm_score runs asynchronously")
    }
}

#[async_trait]
impl AsyncScalarUDFImpl for LlmScore {
    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let call = CallArgs::of(self.name(), &args)?;
        let (instruction, rows) = call.prompt_and_rows(self.name(), args.number_rows)?;
        let task = call.options.task(
            "llm_score",
            format!(
                "{instruction}\nScore how well the row fits this, from 0 (not at all) to 1 (fully)."
            ),
            AnswerKind::Number { min: 0.0, max: 1.0 },
        );
        let settings = LmSettings::of(&args.config_options);
        let answers = self.runtime.0.complete_rows(&settings, &task, rows).await?;
        let values: Float64Array = answers
            .iter()
            .map(|answer| answer.as_ref().and_then(|value| value.as_f64()))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(values)))
    }
}
