//! pgvector's functions over `vector` values, with pgvector's results and errors.
//!
//! A `vector(n)` column is an Arrow `FixedSizeList(Float32, n)`, a bare `vector` a
//! `List(Float32)`, both tagged `pg.vector` so clients see pgvector's type. Every function here
//! also takes float arrays and pgvector's text form (`'[1,2,3]'`), so a query vector can be
//! written inline. Distances accumulate in `f32` over eight lanes (as pgvector's, compiled with
//! vectorisation, do) and are returned as `double precision`.

mod cosine_distance;
mod embed;
mod inner_product;
mod l1_distance;
mod l2_distance;
mod l2_normalize;
mod vector_dims;
mod vector_norm;
mod vector_parse;

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float32Array, Float64Array, ListArray};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF};

pub use cosine_distance::CosineDistance;
pub use embed::Embed;
pub use inner_product::InnerProduct;
pub use l1_distance::L1Distance;
pub use l2_distance::L2Distance;
pub use l2_normalize::L2Normalize;
pub use vector_dims::VectorDims;
pub use vector_norm::VectorNorm;
pub use vector_parse::{parse_vector, VectorParse};

use datafusion::logical_expr::async_udf::AsyncScalarUDF;

use crate::lm::{LmError, LmRuntime};

/// Field metadata that makes clients see a list column as pgvector's `vector` (arrow-pg's
/// contract, also written by the `vector(n)` SQL type).
pub const VECTOR_METADATA_KEY: &str = "pg.vector";
/// pgvector's limit on dimensions.
pub const MAX_DIMS: usize = 16_000;

pub fn functions(runtime: Arc<dyn LmRuntime>) -> Vec<Arc<ScalarUDF>> {
    vec![
        embed_function(runtime),
        Arc::new(ScalarUDF::new_from_impl(L2Distance::new())),
        Arc::new(ScalarUDF::new_from_impl(CosineDistance::new())),
        Arc::new(ScalarUDF::new_from_impl(InnerProduct::new())),
        Arc::new(ScalarUDF::new_from_impl(L1Distance::new())),
        Arc::new(ScalarUDF::new_from_impl(VectorDims::new())),
        Arc::new(ScalarUDF::new_from_impl(VectorNorm::new())),
        Arc::new(ScalarUDF::new_from_impl(L2Normalize::new())),
        Arc::new(ScalarUDF::new_from_impl(VectorParse::new())),
    ]
}

/// `embed`, holding the runtime (the planner uses it for `semsql.join_candidates`).
pub fn embed_function(runtime: Arc<dyn LmRuntime>) -> Arc<ScalarUDF> {
    Arc::new(AsyncScalarUDF::new(Arc::new(Embed::new(runtime))).into_scalar_udf())
}

/// A constant's vector (`'[1,2,3]'`, a float array or a `vector`), `None` for NULL: how an
/// index search reads the query vector of `ORDER BY col <-> constant`.
pub fn constant_vector(value: &datafusion::common::ScalarValue) -> Result<Option<Vec<f32>>> {
    match Vectors::of(&ColumnarValue::Scalar(value.clone()))? {
        Vectors::Constant(vector) => Ok(vector),
        _ => unreachable!("a scalar reads as a constant"),
    }
}

/// An error with its SQLSTATE, as pgvector words it.
pub(crate) fn vector_error(sqlstate: &'static str, message: impl Into<String>) -> DataFusionError {
    DataFusionError::External(Box::new(LmError::new(sqlstate, message)))
}

/// pgvector's error for two vectors of different sizes (22000, data_exception).
pub(crate) fn dimension_mismatch(left: usize, right: usize) -> DataFusionError {
    vector_error(
        "22000",
        format!("different vector dimensions {left} and {right}"),
    )
}

/// The `vector` field: `FixedSizeList(Float32, dims)` when the size is known, else
/// `List(Float32)`, tagged for clients.
pub fn vector_field(name: &str, dims: Option<i32>) -> FieldRef {
    let element = Arc::new(Field::new_list_field(DataType::Float32, true));
    let data_type = match dims {
        Some(dims) => DataType::FixedSizeList(element, dims),
        None => DataType::List(element),
    };
    Arc::new(
        Field::new(name, data_type, true).with_metadata(HashMap::from([(
            VECTOR_METADATA_KEY.to_owned(),
            "vector".to_owned(),
        )])),
    )
}

/// Whether a type can be read as vectors (float lists, numeric arrays, or pgvector's text).
pub(crate) fn is_vector_like(data_type: &DataType) -> bool {
    match data_type {
        DataType::FixedSizeList(field, _) | DataType::List(field) | DataType::LargeList(field) => {
            field.data_type().is_numeric()
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => true,
        _ => false,
    }
}

/// Checks an argument's type at planning time.
pub(crate) fn check_vector_arg(function: &str, data_type: &DataType) -> Result<()> {
    if is_vector_like(data_type) {
        Ok(())
    } else {
        Err(DataFusionError::Plan(format!(
            "function {function} does not exist for an argument of type {data_type}; it takes \
             vector, real[] or '[1,2,3]'"
        )))
    }
}

/// One argument's vectors, read without copying where Arrow's layout allows.
pub(crate) enum Vectors {
    /// A constant: the same vector (or NULL) for every row.
    Constant(Option<Vec<f32>>),
    /// `vector(n)`: row `i` is `values[i * dims..][..dims]`.
    Fixed {
        values: Float32Array,
        dims: usize,
        array: ArrayRef,
    },
    /// `vector` or an array: row `i` is `values[offsets[i]..offsets[i + 1]]`.
    Variable {
        values: Float32Array,
        offsets: OffsetBuffer<i32>,
        array: ArrayRef,
    },
}

impl Vectors {
    pub fn of(arg: &ColumnarValue) -> Result<Self> {
        match arg {
            ColumnarValue::Scalar(scalar) => {
                let array = scalar.to_array_of_size(1)?;
                let vectors = Self::of_array(array)?;
                Ok(Self::Constant(vectors.get(0)?.map(<[f32]>::to_vec)))
            }
            ColumnarValue::Array(array) => Self::of_array(Arc::clone(array)),
        }
    }

    fn of_array(array: ArrayRef) -> Result<Self> {
        match array.data_type().clone() {
            DataType::FixedSizeList(field, dims) => {
                let array = if field.data_type() == &DataType::Float32 {
                    array
                } else {
                    let element = Arc::new(Field::new_list_field(DataType::Float32, true));
                    cast(&array, &DataType::FixedSizeList(element, dims))?
                };
                let values = array.as_fixed_size_list().values().as_primitive().clone();
                Ok(Self::Fixed {
                    values,
                    dims: dims as usize,
                    array,
                })
            }
            DataType::List(_) | DataType::LargeList(_) => {
                let element = Arc::new(Field::new_list_field(DataType::Float32, true));
                let array = cast(&array, &DataType::List(element))?;
                let list = array.as_list::<i32>();
                Ok(Self::Variable {
                    values: list.values().as_primitive().clone(),
                    offsets: list.offsets().clone(),
                    array,
                })
            }
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => {
                let texts = cast(&array, &DataType::Utf8)?;
                let list = parse_vector_column(texts.as_string::<i32>())?;
                Self::of_array(Arc::new(list))
            }
            other => Err(vector_error(
                "42883",
                format!("cannot read a vector from a value of type {other}"),
            )),
        }
    }

    /// Row `row`'s vector, `None` for NULL.
    pub fn get(&self, row: usize) -> Result<Option<&[f32]>> {
        let (array, values, range) = match self {
            Self::Constant(vector) => return Ok(vector.as_deref()),
            Self::Fixed {
                values,
                dims,
                array,
            } => (array, values, row * dims..(row + 1) * dims),
            Self::Variable {
                values,
                offsets,
                array,
            } => (
                array,
                values,
                offsets[row] as usize..offsets[row + 1] as usize,
            ),
        };
        if array.is_null(row) {
            return Ok(None);
        }
        if values.null_count() > 0 && (range.start..range.end).any(|i| values.is_null(i)) {
            return Err(vector_error("22004", "array must not contain nulls"));
        }
        if range.is_empty() {
            return Err(vector_error(
                "22000",
                "vector must have at least 1 dimension",
            ));
        }
        Ok(Some(&values.values()[range]))
    }
}

/// Parses a text column of pgvector literals into `List(Float32)`.
fn parse_vector_column(texts: &datafusion::arrow::array::StringArray) -> Result<ListArray> {
    let mut builder =
        datafusion::arrow::array::ListBuilder::new(datafusion::arrow::array::Float32Builder::new());
    for text in texts {
        match text {
            Some(text) => {
                builder.values().append_slice(&parse_vector(text)?);
                builder.append(true);
            }
            None => builder.append(false),
        }
    }
    Ok(builder.finish())
}

/// A distance or product of two vectors for every row, pgvector's way: NULL if either is NULL,
/// an error if their sizes differ.
pub(crate) fn binary_kernel(
    args: &[ColumnarValue],
    number_rows: usize,
    kernel: fn(&[f32], &[f32]) -> f64,
) -> Result<ColumnarValue> {
    let [left, right] = args else {
        return Err(DataFusionError::Plan(
            "a vector distance takes two vectors".to_owned(),
        ));
    };
    let both_constant = matches!(
        (left, right),
        (ColumnarValue::Scalar(_), ColumnarValue::Scalar(_))
    );
    let (left, right) = (Vectors::of(left)?, Vectors::of(right)?);
    let rows = if both_constant { 1 } else { number_rows };
    let mut out = Vec::with_capacity(rows);
    for row in 0..rows {
        out.push(match (left.get(row)?, right.get(row)?) {
            (Some(a), Some(b)) if a.len() != b.len() => {
                return Err(dimension_mismatch(a.len(), b.len()))
            }
            (Some(a), Some(b)) => Some(kernel(a, b)),
            _ => None,
        });
    }
    let array = Float64Array::from(out);
    if both_constant {
        return Ok(ColumnarValue::Scalar(
            datafusion::scalar::ScalarValue::try_from_array(&array, 0)?,
        ));
    }
    Ok(ColumnarValue::Array(Arc::new(array)))
}

/// Lanes of the accumulators: eight `f32`, one AVX register, so the loops vectorise.
const LANES: usize = 8;

/// `Σ f(a[i], b[i])` in `f32`, over [`LANES`] accumulators.
#[inline]
pub(crate) fn sum_pairs(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut lanes = [0f32; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (a_rest, b_rest) = (a_chunks.remainder(), b_chunks.remainder());
    for (x, y) in a_chunks.zip(b_chunks) {
        for lane in 0..LANES {
            lanes[lane] += f(x[lane], y[lane]);
        }
    }
    let mut total: f32 = lanes.iter().sum();
    for (x, y) in a_rest.iter().zip(b_rest) {
        total += f(*x, *y);
    }
    total
}

/// Squared L2 distance, for kernels that only compare.
#[inline]
pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    sum_pairs(a, b, |x, y| (x - y) * (x - y))
}

/// `a · b` in `f32`.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    sum_pairs(a, b, |x, y| x * y)
}

/// pgvector's cosine distance: `1 - a·b / (|a| |b|)`, clamped to [0, 2]; NaN when either
/// vector is zero.
pub fn cosine_distance_of(a: &[f32], b: &[f32]) -> f64 {
    let mut dot_lanes = [0f32; LANES];
    let mut a_lanes = [0f32; LANES];
    let mut b_lanes = [0f32; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (a_rest, b_rest) = (a_chunks.remainder(), b_chunks.remainder());
    for (x, y) in a_chunks.zip(b_chunks) {
        for lane in 0..LANES {
            dot_lanes[lane] += x[lane] * y[lane];
            a_lanes[lane] += x[lane] * x[lane];
            b_lanes[lane] += y[lane] * y[lane];
        }
    }
    let (mut dot, mut norm_a, mut norm_b): (f32, f32, f32) = (
        dot_lanes.iter().sum(),
        a_lanes.iter().sum(),
        b_lanes.iter().sum(),
    );
    for (x, y) in a_rest.iter().zip(b_rest) {
        dot += x * y;
        norm_a += x * x;
        norm_b += y * y;
    }
    let similarity = f64::from(dot) / (f64::from(norm_a) * f64::from(norm_b)).sqrt();
    if similarity.is_nan() {
        return f64::NAN;
    }
    1.0 - similarity.clamp(-1.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_match_a_plain_loop() {
        let a: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..37).map(|i| (i as f32 * 0.11).cos()).collect();
        let plain_dot: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(x * y)).sum();
        assert!((f64::from(dot(&a, &b)) - plain_dot).abs() < 1e-4);
        let plain_l2: f64 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| f64::from((x - y) * (x - y)))
            .sum();
        assert!((f64::from(l2_squared(&a, &b)) - plain_l2).abs() < 1e-4);
        assert!(cosine_distance_of(&a, &a).abs() < 1e-6);
        assert!(cosine_distance_of(&[0.0, 0.0], &[1.0, 2.0]).is_nan());
    }
}
