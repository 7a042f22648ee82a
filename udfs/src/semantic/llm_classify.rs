use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_err, plan_err, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::async_udf::AsyncScalarUDFImpl;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::{data_types, prompt_and_rows, text_column_of, CallArgs, RuntimeRef};
use crate::lm::{AnswerKind, LmRuntime, LmSettings};

/// `llm_classify(arg, ARRAY['label', ...] [, prompt]) → text`: the one label that fits the row.
/// The answer is always one of the labels: any other answer fails the query naming the row (or
/// gives NULL under `SET semsql.on_llm_error = 'null'`). The optional prompt says what the labels
/// mean; `{0}` in it stands for the argument.
///
/// ```sql
/// SELECT id, llm_classify(body, ARRAY['shipping', 'quality', 'price', 'other']) AS topic
/// FROM reviews WHERE stars <= 2;
/// ```
///
/// A NULL argument gives NULL without a request. The labels must be a constant array of at least
/// two distinct, non-empty texts.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct LlmClassify {
    signature: Signature,
    runtime: RuntimeRef,
}

impl LlmClassify {
    pub fn new(runtime: Arc<dyn LmRuntime>) -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Volatile),
            runtime: RuntimeRef(runtime),
        }
    }
}

const USAGE: &str = "llm_classify(arg, ARRAY['label', ...] [, prompt])";

impl ScalarUDFImpl for LlmClassify {
    fn name(&self) -> &str {
        "llm_classify"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let arg_types = data_types(arg_types);
        if !(2..=3).contains(&arg_types.len()) {
            return plan_err!("llm_classify takes 2 or 3 arguments: {USAGE}");
        }
        if !matches!(
            arg_types[1],
            DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(_, _)
        ) {
            return plan_err!(
                "llm_classify: the labels must be an array, e.g. ARRAY['yes', 'no'] ({USAGE})"
            );
        }
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        exec_err!("llm_classify runs asynchronously")
    }
}

/// The labels of a call: a constant array of distinct, non-empty texts.
fn labels(arg: &ColumnarValue) -> Result<Vec<String>> {
    let list = match arg {
        ColumnarValue::Scalar(scalar) => scalar.to_array()?,
        ColumnarValue::Array(array) => array.clone(),
    };
    let values = match list.data_type() {
        DataType::List(_) => {
            let lists = list.as_list::<i32>();
            let first = lists.value(0);
            for row in 1..lists.len() {
                if lists.value(row).as_ref() != first.as_ref() {
                    return exec_err!("llm_classify: the labels must be the same for every row");
                }
            }
            first
        }
        other => return exec_err!("llm_classify: the labels must be a text array, not {other}"),
    };
    let texts = cast(&values, &DataType::Utf8)?;
    let texts = texts.as_string::<i32>();
    let mut labels: Vec<String> = Vec::with_capacity(texts.len());
    for index in 0..texts.len() {
        if texts.is_null(index) || texts.value(index).trim().is_empty() {
            return exec_err!("llm_classify: a label is NULL or empty");
        }
        let label = texts.value(index).trim().to_owned();
        if labels
            .iter()
            .any(|known| known.eq_ignore_ascii_case(&label))
        {
            return exec_err!("llm_classify: the label {label:?} is given twice");
        }
        labels.push(label);
    }
    if labels.len() < 2 {
        return exec_err!("llm_classify needs at least two labels ({USAGE})");
    }
    Ok(labels)
}

#[async_trait]
impl AsyncScalarUDFImpl for LlmClassify {
    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let call = CallArgs::of(self.name(), &args)?;
        let labels = labels(&call.args[1])?;
        let instruction = match call.args.get(2) {
            Some(prompt) => {
                let (prompt, _) = prompt_and_rows(self.name(), std::slice::from_ref(prompt), 1)?;
                prompt
            }
            None => "Which label fits {0} best?".to_owned(),
        };
        let (_, rows) = prompt_and_rows(
            self.name(),
            &[
                ColumnarValue::Scalar(ScalarValue::Utf8(Some(String::new()))),
                call.args[0].clone(),
            ],
            args.number_rows,
        )?;
        let task = call
            .options
            .task("llm_classify", instruction, AnswerKind::Label(labels));
        let settings = LmSettings::of(&args.config_options);
        let answers = self.runtime.0.complete_rows(&settings, &task, rows).await?;
        Ok(text_column_of(&answers))
    }
}
