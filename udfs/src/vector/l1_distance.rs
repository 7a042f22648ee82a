use datafusion::arrow::datatypes::DataType;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::{binary_kernel, check_vector_arg};

/// `l1_distance(a, b) → double precision`, and the operator `a <+> b`: the taxicab (L1)
/// distance `Σ |a[i] - b[i]|`, as pgvector computes it.
///
/// ```sql
/// SELECT l1_distance('[1,2,3]', '[3,1,2]');         -- 4
/// SELECT id FROM items ORDER BY embedding <+> '[3,1,2]' LIMIT 5;
/// ```
///
/// NULL if either is NULL; vectors of different sizes are an error (SQLSTATE 22000).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct L1Distance {
    signature: Signature,
}

impl Default for L1Distance {
    fn default() -> Self {
        Self::new()
    }
}

impl L1Distance {
    pub fn new() -> Self {
        Self {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

/// The taxicab distance `Σ |a[i] - b[i]|`.
pub fn taxicab(a: &[f32], b: &[f32]) -> f64 {
    f64::from(super::sum_pairs(a, b, |x, y| (x - y).abs()))
}

impl ScalarUDFImpl for L1Distance {
    fn name(&self) -> &str {
        "l1_distance"
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
        binary_kernel(&args.args, args.number_rows, taxicab)
    }
}
