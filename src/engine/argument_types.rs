//! `semsql_argument_types(...)`: the stand-in `server::missing_function` plans in place of a
//! call of an unknown function, to learn its arguments' types for PostgreSQL's error message.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::DataFusionError;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// The stand-in's name.
pub const ARGUMENT_TYPES: &str = "semsql_argument_types";

/// [`ARGUMENT_TYPES`]: accepts any arguments; planned, never run.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ArgumentTypes {
    signature: Signature,
}

impl ArgumentTypes {
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(ArgumentTypes {
            signature: Signature::variadic_any(Volatility::Volatile),
        })
    }
}

impl ScalarUDFImpl for ArgumentTypes {
    fn name(&self) -> &str {
        ARGUMENT_TYPES
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Null)
    }

    fn invoke_with_args(
        &self,
        _args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        Err(DataFusionError::Plan(
            "semsql_argument_types only types the arguments of an unknown function".to_owned(),
        ))
    }
}
