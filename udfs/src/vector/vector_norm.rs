use std::sync::Arc;

use datafusion::arrow::array::Float64Array;
use datafusion::arrow::datatypes::DataType;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::{check_vector_arg, Vectors};

/// `vector_norm(v) → double precision`: the Euclidean norm `sqrt(Σ v[i]²)`, summed in double
/// precision as pgvector does.
///
/// ```sql
/// SELECT vector_norm('[3,4]');                       -- 5
/// ```
///
/// NULL for NULL.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct VectorNorm {
    signature: Signature,
}

impl Default for VectorNorm {
    fn default() -> Self {
        Self::new()
    }
}

impl VectorNorm {
    pub fn new() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

/// `sqrt(Σ v[i]²)` in `f64`.
pub fn norm(vector: &[f32]) -> f64 {
    vector
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt()
}

impl ScalarUDFImpl for VectorNorm {
    fn name(&self) -> &str {
        "vector_norm"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        check_vector_arg(self.name(), &arg_types[0])?;
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let vectors = Vectors::of(&args.args[0])?;
        let values = (0..args.number_rows)
            .map(|row| Ok(vectors.get(row)?.map(norm)))
            .collect::<Result<Float64Array>>()?;
        Ok(ColumnarValue::Array(Arc::new(values)))
    }
}
