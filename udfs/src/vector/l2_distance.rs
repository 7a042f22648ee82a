use datafusion::arrow::datatypes::DataType;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::{binary_kernel, check_vector_arg};

/// `l2_distance(a, b) → double precision`, and the operator `a <-> b`: the Euclidean (L2)
/// distance, as pgvector computes it.
///
/// ```sql
/// SELECT l2_distance('[1,2,3]', '[3,1,2]');         -- 2.449489742783178
/// SELECT id FROM items ORDER BY embedding <-> '[3,1,2]' LIMIT 5;
/// ```
///
/// Takes `vector` and `vector(n)` values, float arrays (`ARRAY[1.0, 2.0]`) and pgvector's text
/// form (`'[1,2,3]'`). NULL if either is NULL; vectors of different sizes are an error
/// (`different vector dimensions 3 and 2`, SQLSTATE 22000).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct L2Distance {
    signature: Signature,
}

impl Default for L2Distance {
    fn default() -> Self {
        Self::new()
    }
}

impl L2Distance {
    pub fn new() -> Self {
        Self {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

/// The Euclidean distance, `sqrt(Σ (a[i] - b[i])²)`.
pub fn euclidean(a: &[f32], b: &[f32]) -> f64 {
    f64::from(super::l2_squared(a, b)).sqrt()
}

impl ScalarUDFImpl for L2Distance {
    fn name(&self) -> &str {
        "l2_distance"
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
        binary_kernel(&args.args, args.number_rows, euclidean)
    }
}
