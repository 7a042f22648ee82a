use datafusion::arrow::datatypes::DataType;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::{binary_kernel, check_vector_arg};

/// `inner_product(a, b) → double precision`: `Σ a[i] b[i]`. The operator `a <#> b` is its
/// negation, so that `ORDER BY a <#> b` puts the largest products first (as in pgvector).
///
/// ```sql
/// SELECT inner_product('[1,2,3]', '[3,1,2]');       -- 11
/// SELECT '[1,2,3]' <#> '[3,1,2]';                    -- -11
/// ```
///
/// NULL if either is NULL; vectors of different sizes are an error (SQLSTATE 22000).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct InnerProduct {
    signature: Signature,
}

impl Default for InnerProduct {
    fn default() -> Self {
        Self::new()
    }
}

impl InnerProduct {
    pub fn new() -> Self {
        Self {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

/// The inner product `Σ a[i] b[i]`.
pub fn dot(a: &[f32], b: &[f32]) -> f64 {
    f64::from(super::dot(a, b))
}

impl ScalarUDFImpl for InnerProduct {
    fn name(&self) -> &str {
        "inner_product"
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
        binary_kernel(&args.args, args.number_rows, dot)
    }
}
