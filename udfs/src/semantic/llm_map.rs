use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::exec_err;
use datafusion::error::Result;
use datafusion::logical_expr::async_udf::AsyncScalarUDFImpl;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::{check_arity, text_column_of, CallArgs, RuntimeRef};
use crate::lm::{AnswerKind, LmRuntime, LmSettings};

/// `llm_map(prompt, arg, ...) → text` (alias `llm_complete`): the model's answer to the prompt
/// for each row. `{0}`, `{1}`, ... in the prompt stand for the arguments.
///
/// ```sql
/// SELECT title, llm_map('Translate to French: {0}', title) FROM movies;
/// ```
///
/// A NULL argument gives NULL without a request.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct LlmMap {
    /// `llm_map`, or its alias `llm_complete` (registered as a function of its own, because
    /// DataFusion's async wrapper does not pass aliases on).
    name: &'static str,
    signature: Signature,
    runtime: RuntimeRef,
}

impl LlmMap {
    pub fn new(runtime: Arc<dyn LmRuntime>, name: &'static str) -> Self {
        Self {
            name,
            signature: Signature::variadic_any(Volatility::Volatile),
            runtime: RuntimeRef(runtime),
        }
    }
}

impl ScalarUDFImpl for LlmMap {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        check_arity(self.name(), arg_types, 1)?;
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        exec_err!("llm_map runs asynchronously")
    }
}

#[async_trait]
impl AsyncScalarUDFImpl for LlmMap {
    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let call = CallArgs::of(self.name(), &args)?;
        let (instruction, rows) = call.prompt_and_rows(self.name(), args.number_rows)?;
        let task = call.options.task(self.name, instruction, AnswerKind::Text);
        let settings = LmSettings::of(&args.config_options);
        let answers = self.runtime.0.complete_rows(&settings, &task, rows).await?;
        Ok(text_column_of(&answers))
    }
}
