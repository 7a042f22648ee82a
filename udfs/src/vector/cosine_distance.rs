use datafusion::arrow::datatypes::DataType;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::{binary_kernel, check_vector_arg};

/// `cosine_distance(a, b) → double precision`, and the operator `a <=> b`: `1 - cos(a, b)`, from
/// 0 (same direction) to 2 (opposite), as pgvector computes it.
///
/// ```sql
/// SELECT cosine_distance('[1,2,3]', '[3,1,2]');     -- 0.2142857142857143
/// SELECT id FROM items ORDER BY embedding <=> embed('late delivery') LIMIT 5;
/// ```
///
/// NaN when either vector is all zeros (as in pgvector). NULL if either is NULL; vectors of
/// different sizes are an error (SQLSTATE 22000).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CosineDistance {
    signature: Signature,
}

impl Default for CosineDistance {
    fn default() -> Self {
        Self::new()
    }
}

impl CosineDistance {
    pub fn new() -> Self {
        Self {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

/// pgvector's cosine distance.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    super::cosine_distance_of(a, b)
}

impl ScalarUDFImpl for CosineDistance {
    fn name(&self) -> &str {
        "cosine_distance"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        for arg in arg_types {
            check_vector_arg(self.name(), arg)?;
        }
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        binary_kernel(&args.args, args.number_rows, cosine)
    }
}
