use std::sync::Arc;

use datafusion::arrow::array::{Array, FixedSizeListBuilder, Float32Builder, ListBuilder};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::{check_vector_arg, vector_field, vector_norm::norm, Vectors};

/// `l2_normalize(v) → vector`: `v` scaled to length 1 (a zero vector stays zero), as pgvector
/// computes it.
///
/// ```sql
/// SELECT l2_normalize('[3,4]');                      -- [0.6,0.8]
/// ```
///
/// A `vector(n)` stays a `vector(n)`. NULL for NULL.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct L2Normalize {
    signature: Signature,
}

impl Default for L2Normalize {
    fn default() -> Self {
        Self::new()
    }
}

impl L2Normalize {
    pub fn new() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

/// `v / |v|`, or `v` itself when its norm is 0.
pub fn normalized(vector: &[f32]) -> impl Iterator<Item = f32> + '_ {
    let norm = norm(vector);
    vector.iter().map(move |&x| {
        if norm > 0.0 {
            (f64::from(x) / norm) as f32
        } else {
            x
        }
    })
}

impl ScalarUDFImpl for L2Normalize {
    fn name(&self) -> &str {
        "l2_normalize"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        check_vector_arg(self.name(), &arg_types[0])?;
        Ok(match &arg_types[0] {
            DataType::FixedSizeList(_, dims) => vector_field("", Some(*dims)),
            _ => vector_field("", None),
        }
        .data_type()
        .clone())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let data_type = self.return_type(&[args.arg_fields[0].data_type().clone()])?;
        let dims = match data_type {
            DataType::FixedSizeList(_, dims) => Some(dims),
            _ => None,
        };
        Ok(vector_field(self.name(), dims))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let vectors = Vectors::of(&args.args[0])?;
        let element = Arc::new(Field::new_list_field(DataType::Float32, true));
        match args.return_field.data_type() {
            DataType::FixedSizeList(_, dims) => {
                let mut builder =
                    FixedSizeListBuilder::new(Float32Builder::new(), *dims).with_field(element);
                for row in 0..args.number_rows {
                    match vectors.get(row)? {
                        Some(vector) => {
                            builder.values().extend(normalized(vector).map(Some));
                            builder.append(true);
                        }
                        None => {
                            builder.values().append_nulls(*dims as usize);
                            builder.append(false);
                        }
                    }
                }
                Ok(ColumnarValue::Array(Arc::new(builder.finish())))
            }
            _ => {
                let mut builder = ListBuilder::new(Float32Builder::new()).with_field(element);
                for row in 0..args.number_rows {
                    match vectors.get(row)? {
                        Some(vector) => {
                            builder.values().extend(normalized(vector).map(Some));
                            builder.append(true);
                        }
                        None => builder.append(false),
                    }
                }
                let array = builder.finish();
                debug_assert_eq!(array.len(), args.number_rows);
                Ok(ColumnarValue::Array(Arc::new(array)))
            }
        }
    }
}
