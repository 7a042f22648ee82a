use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{AsArray, Float32Builder, ListBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{exec_err, plan_err, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::async_udf::AsyncScalarUDFImpl;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::vector_field;
use crate::lm::{LmRuntime, LmSettings};
use crate::semantic::{is_options_type, CallOptions, RuntimeRef};

/// `embed(text [, model]) → vector`: the text's embedding, by default from the local model
/// (all-MiniLM-L6-v2, 384 dimensions, run in-process: no service needed), or from any
/// OpenAI-compatible `/v1/embeddings` endpoint.
///
/// ```sql
/// SELECT id FROM reviews ORDER BY embedding <=> embed('late delivery') LIMIT 10;
/// INSERT INTO review_vectors SELECT id, embed(body) FROM reviews;
/// SELECT embed(body, 'openai') FROM reviews;         -- a model by name
/// ```
///
/// The model is the call's (a name, or `llm_model('name')`), else the session's
/// `semsql.embedding_model` (`local` unless set). A remote model's `embedding_model` option
/// names the model at the endpoint. Texts go through the LM runtime like every LM call: batched
/// many per request, duplicates sent once, cached across restarts, counted in usage and
/// budgets. NULL gives NULL without a request. A call with a constant text
/// (`embed('late delivery')`) is evaluated once per query, before the scan. The local model
/// pads each batch to its longest text, truncates at 256 tokens, averages the token vectors
/// and normalises to length 1, as sentence-transformers does.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Embed {
    signature: Signature,
    runtime: RuntimeRef,
}

impl Embed {
    pub fn new(runtime: Arc<dyn LmRuntime>) -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Volatile),
            runtime: RuntimeRef(runtime),
        }
    }
}

/// The model a call names, if any.
fn model_of(arg: Option<&ColumnarValue>, data_type: Option<&DataType>) -> Result<Option<String>> {
    match (arg, data_type) {
        (None, _) => Ok(None),
        (Some(ColumnarValue::Scalar(value)), Some(data_type)) if is_options_type(data_type) => {
            Ok(CallOptions::from_scalar(value)?.model)
        }
        (Some(ColumnarValue::Scalar(value)), _) => match value.cast_to(&DataType::Utf8)? {
            ScalarValue::Utf8(Some(name)) => Ok(Some(name)),
            ScalarValue::Utf8(None) => Ok(None),
            _ => exec_err!("embed: the model must be a name"),
        },
        (Some(ColumnarValue::Array(_)), _) => {
            exec_err!("embed: the model must be a constant (the same model for every row)")
        }
    }
}

impl ScalarUDFImpl for Embed {
    fn name(&self) -> &str {
        "embed"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(vector_field("", None).data_type().clone())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        if !(1..=2).contains(&args.arg_fields.len()) {
            return plan_err!("embed takes a text and an optional model: embed(body, 'local')");
        }
        Ok(vector_field(self.name(), None))
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        exec_err!("embed runs asynchronously")
    }
}

#[async_trait]
impl AsyncScalarUDFImpl for Embed {
    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let model = model_of(
            args.args.get(1),
            args.arg_fields.get(1).map(|field| field.data_type()),
        )?;
        let texts = cast(&args.args[0].to_array(args.number_rows)?, &DataType::Utf8)?;
        let texts: Vec<Option<String>> = texts
            .as_string::<i32>()
            .iter()
            .map(|text| text.map(str::to_owned))
            .collect();
        let settings = LmSettings::of(&args.config_options);
        let vectors = self
            .runtime
            .0
            .embed(&settings, model.as_deref(), texts)
            .await?;
        let element = Arc::new(Field::new_list_field(DataType::Float32, true));
        let mut builder = ListBuilder::new(Float32Builder::new()).with_field(element);
        for vector in vectors {
            match vector {
                Some(vector) => {
                    builder.values().append_slice(&vector);
                    builder.append(true);
                }
                None => builder.append(false),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(builder.finish())))
    }
}
