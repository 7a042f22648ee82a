use std::sync::Arc;

use datafusion::arrow::array::Int32Array;
use datafusion::arrow::datatypes::DataType;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::{check_vector_arg, Vectors};

/// `vector_dims(v) → integer`: the number of dimensions of a vector.
///
/// ```sql
/// SELECT vector_dims('[1,2,3]');                     -- 3
/// SELECT vector_dims(embedding) FROM items LIMIT 1;
/// ```
///
/// NULL for NULL.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct VectorDims {
    signature: Signature,
}

impl Default for VectorDims {
    fn default() -> Self {
        Self::new()
    }
}

impl VectorDims {
    pub fn new() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for VectorDims {
    fn name(&self) -> &str {
        "vector_dims"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        check_vector_arg(self.name(), &arg_types[0])?;
        Ok(DataType::Int32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let vectors = Vectors::of(&args.args[0])?;
        let values = (0..args.number_rows)
            .map(|row| Ok(vectors.get(row)?.map(|v| v.len() as i32)))
            .collect::<Result<Int32Array>>()?;
        Ok(ColumnarValue::Array(Arc::new(values)))
    }
}
