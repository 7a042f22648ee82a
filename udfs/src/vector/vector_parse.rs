use std::sync::Arc;

use datafusion::arrow::array::{Array, FixedSizeListBuilder, Float32Builder};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{plan_err, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::{vector_error, vector_field, Vectors, MAX_DIMS};

/// `vector_parse(text [, dims]) → vector`: pgvector's text form (`'[1,2,3]'`) or a float array
/// read as a vector, checked against `dims` when given. Casts to `vector` and `vector(n)`
/// (`'[1,2,3]'::vector(3)`, `CAST(ARRAY[1,2] AS vector)`, COPY into a vector column) are
/// planned as this function.
///
/// ```sql
/// SELECT vector_parse('[1, 2.5, 3]', 3);
/// ```
///
/// Malformed text is `invalid input syntax for type vector` (22P02); NaN or infinite values,
/// no values, more than 16,000, or a size other than `dims` (`expected 3 dimensions, not 2`) are
/// SQLSTATE 22000, as in pgvector.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct VectorParse {
    signature: Signature,
}

impl Default for VectorParse {
    fn default() -> Self {
        Self::new()
    }
}

impl VectorParse {
    pub fn new() -> Self {
        Self {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

/// Parses pgvector's text form: `[x, y, ...]`, whitespace allowed around the numbers.
pub fn parse_vector(text: &str) -> Result<Vec<f32>> {
    let syntax = || {
        vector_error(
            "22P02",
            format!("invalid input syntax for type vector: \"{text}\""),
        )
    };
    let inner = text
        .trim()
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .ok_or_else(syntax)?;
    if inner.trim().is_empty() {
        return Err(vector_error(
            "22000",
            "vector must have at least 1 dimension",
        ));
    }
    let values = inner
        .split(',')
        .map(|part| part.trim().parse::<f32>().map_err(|_| syntax()))
        .collect::<Result<Vec<f32>>>()?;
    check_values(&values)?;
    Ok(values)
}

/// The declared size, if the call gives one.
fn dims_of(value: Option<&ScalarValue>) -> Result<Option<i32>> {
    match value {
        None => Ok(None),
        Some(value) => match value.cast_to(&DataType::Int64)? {
            ScalarValue::Int64(Some(dims)) if (1..=MAX_DIMS as i64).contains(&dims) => {
                Ok(Some(dims as i32))
            }
            _ => plan_err!("vector dimensions must be from 1 to {MAX_DIMS}, got {value}"),
        },
    }
}

impl ScalarUDFImpl for VectorParse {
    fn name(&self) -> &str {
        "vector_parse"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(vector_field("", None).data_type().clone())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        if !(1..=2).contains(&args.arg_fields.len()) {
            return plan_err!("vector_parse takes a text or array and an optional size");
        }
        super::check_vector_arg(self.name(), args.arg_fields[0].data_type())?;
        let dims = match args.arg_fields.len() {
            2 => match args.scalar_arguments[1] {
                Some(value) => dims_of(Some(value))?,
                None => return plan_err!("vector_parse: the size must be a constant"),
            },
            _ => None,
        };
        Ok(vector_field(self.name(), dims))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let vectors = Vectors::of(&args.args[0])?;
        let rows = args.number_rows;
        let element = Arc::new(Field::new_list_field(DataType::Float32, true));
        let DataType::FixedSizeList(_, dims) = args.return_field.data_type() else {
            // No size: any size goes, checked for the limits only.
            let mut builder = datafusion::arrow::array::ListBuilder::new(Float32Builder::new())
                .with_field(element);
            for row in 0..rows {
                match vectors.get(row)? {
                    Some(vector) => {
                        check_values(vector)?;
                        builder.values().append_slice(vector);
                        builder.append(true);
                    }
                    None => builder.append(false),
                }
            }
            return Ok(ColumnarValue::Array(Arc::new(builder.finish())));
        };
        let dims = *dims as usize;
        let mut builder =
            FixedSizeListBuilder::new(Float32Builder::new(), dims as i32).with_field(element);
        for row in 0..rows {
            match vectors.get(row)? {
                Some(vector) if vector.len() != dims => {
                    return Err(vector_error(
                        "22000",
                        format!("expected {dims} dimensions, not {}", vector.len()),
                    ))
                }
                Some(vector) => {
                    check_values(vector)?;
                    builder.values().append_slice(vector);
                    builder.append(true);
                }
                None => {
                    builder.values().append_nulls(dims);
                    builder.append(false);
                }
            }
        }
        let array = builder.finish();
        debug_assert_eq!(array.len(), rows);
        Ok(ColumnarValue::Array(Arc::new(array)))
    }
}

/// NaN and infinities are refused in vectors from arrays as from text.
fn check_values(vector: &[f32]) -> Result<()> {
    if vector.iter().any(|x| x.is_nan()) {
        return Err(vector_error("22000", "NaN not allowed in vector"));
    }
    if vector.iter().any(|x| x.is_infinite()) {
        return Err(vector_error(
            "22000",
            "infinite value not allowed in vector",
        ));
    }
    if vector.len() > MAX_DIMS {
        return Err(vector_error(
            "22000",
            format!("vector cannot have more than {MAX_DIMS} dimensions"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgvector_text_is_parsed_strictly() {
        assert_eq!(
            parse_vector(" [1, -2.5,3e1] ").unwrap(),
            vec![1.0, -2.5, 30.0]
        );
        for (bad, message) in [
            ("1,2", "invalid input syntax"),
            ("[1,,2]", "invalid input syntax"),
            ("[a]", "invalid input syntax"),
            ("[]", "at least 1 dimension"),
            ("[NaN]", "NaN not allowed"),
            ("[inf]", "infinite value"),
        ] {
            let error = parse_vector(bad).unwrap_err().to_string();
            assert!(error.contains(message), "{bad}: {error}");
        }
    }
}
