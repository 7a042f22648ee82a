//! `gen_random_uuid()`: a random (version 4) UUID per row, typed `uuid` (see `uuid_type`), as
//! PostgreSQL's, which applications use as a column default and in `INSERT ... SELECT`.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::StringViewArray;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::uuid_type::UUID_KEY;

/// `gen_random_uuid()`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct GenRandomUuid {
    signature: Signature,
}

impl Default for GenRandomUuid {
    fn default() -> Self {
        Self {
            signature: Signature::nullary(Volatility::Volatile),
        }
    }
}

impl ScalarUDFImpl for GenRandomUuid {
    fn name(&self) -> &str {
        "gen_random_uuid"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8View)
    }
    fn return_field_from_args(&self, _args: ReturnFieldArgs) -> Result<FieldRef> {
        Ok(Arc::new(
            Field::new(self.name(), DataType::Utf8View, false)
                .with_metadata(HashMap::from([(UUID_KEY.to_owned(), "uuid".to_owned())])),
        ))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let values: StringViewArray = (0..args.number_rows)
            .map(|_| Some(uuid::Uuid::new_v4().hyphenated().to_string()))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(values)))
    }
}
