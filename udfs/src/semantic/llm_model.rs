use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray, StructArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::{exec_err, plan_err, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

/// The first field of the options struct; LM functions recognise their options argument by it.
pub const MODEL_FIELD: &str = "semsql_model";

/// `llm_model(name [, temperature [, max_tokens]])`: per-call options, passed as an extra last
/// argument of any LM function. `name` is a model from `SHOW MODELS` (NULL: the session's
/// `semsql.model`); `temperature` and `max_tokens` override the model's own settings for this
/// call.
///
/// ```sql
/// SELECT llm_map('Summarise: {0}', body, llm_model('gpt4o', 0.2, 100)) FROM reviews;
/// SELECT * FROM reviews WHERE llm_filter('Is it about shipping? {0}', body, llm_model('small'));
/// ```
///
/// The options must be the same for every row (constants). An unknown model fails with 42704
/// when the call runs.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct LlmModel {
    signature: Signature,
}

impl Default for LlmModel {
    fn default() -> Self {
        Self::new()
    }
}

impl LlmModel {
    pub fn new() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }

    fn fields() -> Fields {
        Fields::from(vec![
            Field::new(MODEL_FIELD, DataType::Utf8, true),
            Field::new("temperature", DataType::Float64, true),
            Field::new("max_tokens", DataType::Int64, true),
        ])
    }
}

const USAGE: &str = "llm_model(name [, temperature [, max_tokens]])";

impl ScalarUDFImpl for LlmModel {
    fn name(&self) -> &str {
        "llm_model"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        if arg_types.is_empty() || arg_types.len() > 3 {
            return plan_err!("llm_model takes 1 to 3 arguments: {USAGE}");
        }
        Ok(DataType::Struct(Self::fields()))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let column = |index: usize, data_type: &DataType| -> Result<ArrayRef> {
            match args.args.get(index) {
                Some(arg) => Ok(cast(&arg.to_array(rows)?, data_type)?),
                None => Ok(datafusion::arrow::array::new_null_array(data_type, rows)),
            }
        };
        let model = column(0, &DataType::Utf8)?;
        let temperature = column(1, &DataType::Float64)?;
        let max_tokens = column(2, &DataType::Int64)?;
        let temperatures = temperature
            .as_any()
            .downcast_ref::<Float64Array>()
            .expect("cast to float64");
        if temperatures
            .iter()
            .flatten()
            .any(|t| !(0.0..=2.0).contains(&t))
        {
            return exec_err!("llm_model: the temperature must be from 0 to 2 ({USAGE})");
        }
        let limits = max_tokens
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("cast to int64");
        if limits
            .iter()
            .flatten()
            .any(|n| !(1..=1_000_000).contains(&n))
        {
            return exec_err!("llm_model: max_tokens must be from 1 to 1000000 ({USAGE})");
        }
        debug_assert!(model.as_any().downcast_ref::<StringArray>().is_some());
        let options =
            StructArray::try_new(Self::fields(), vec![model, temperature, max_tokens], None)?;
        if rows == 1
            && args
                .args
                .iter()
                .all(|a| matches!(a, ColumnarValue::Scalar(_)))
        {
            return Ok(ColumnarValue::Scalar(ScalarValue::Struct(Arc::new(
                options,
            ))));
        }
        Ok(ColumnarValue::Array(Arc::new(options)))
    }
}
