//! `semsql_any_equal(array, value)`: PostgreSQL's `value = ANY(array)`, which semsql's compat
//! layer writes for it (and `NOT semsql_any_equal(array, value)` for `value <> ALL(array)`).
//!
//! datafusion-postgres's parser lowers both forms to `array_contains`, which answers `false`
//! where PostgreSQL answers NULL: `2 = ANY(ARRAY[1, NULL])` is NULL in PostgreSQL (the NULL
//! element might be 2), and so `2 <> ALL(ARRAY[1, NULL])` is NULL rather than `true`. A WHERE
//! clause does not tell the two apart, but `NOT (x = ANY(a))`, a select list and a CASE do.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, BooleanBuilder};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{exec_err, plan_err};
use datafusion::error::Result;
use datafusion::functions_nested::array_has::array_has_udf;
use datafusion::logical_expr::type_coercion::binary::comparison_coercion;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

/// The function's name, which compat writes.
pub const ANY_EQUAL: &str = "semsql_any_equal";

/// `semsql_any_equal(array, value)`: true when an element equals `value`; else NULL when the
/// array, `value` or an element is NULL (an empty array still answers false); else false.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct AnyEqual {
    signature: Signature,
}

impl Default for AnyEqual {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for AnyEqual {
    fn name(&self) -> &str {
        ANY_EQUAL
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    /// The array's elements and the value are compared in their common type, as PostgreSQL
    /// resolves `=` between the value and the element type.
    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        let [array, value] = args else {
            return plan_err!("{ANY_EQUAL} takes an array and a value");
        };
        let element = match array {
            DataType::List(field)
            | DataType::LargeList(field)
            | DataType::FixedSizeList(field, _) => field.data_type().clone(),
            DataType::Null => value.clone(),
            other => {
                return plan_err!("op ANY/ALL (array) requires array on right side, not {other}")
            }
        };
        let common = match (&element, value) {
            (DataType::Null, value) => value.clone(),
            (element, DataType::Null) => element.clone(),
            (element, value) => match comparison_coercion(value, element) {
                Some(common) => common,
                None => return plan_err!("operator does not exist: {value} = {element}"),
            },
        };
        let common = match common {
            DataType::Null => DataType::Int32,
            common => common,
        };
        Ok(vec![
            DataType::List(Arc::new(Field::new_list_field(common.clone(), true))),
            common,
        ])
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        // DataFusion's vectorised `array_has` finds the matches; only rows without one are
        // looked at again, for PostgreSQL's NULL answers.
        let found = array_has_udf()
            .invoke_with_args(ScalarFunctionArgs {
                args: args.args.clone(),
                arg_fields: args.arg_fields.clone(),
                number_rows: rows,
                return_field: args.return_field.clone(),
                config_options: args.config_options.clone(),
            })?
            .into_array(rows)?;
        let found = found.as_boolean();
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [lists, values] = arrays.as_slice() else {
            return exec_err!("{ANY_EQUAL} takes an array and a value");
        };
        let Some(lists) = lists.as_list_opt::<i32>() else {
            return exec_err!("{ANY_EQUAL} expects a list, got {}", lists.data_type());
        };
        let elements = lists.values();
        let offsets = lists.value_offsets();
        let mut answers = BooleanBuilder::with_capacity(lists.len());
        for row in 0..lists.len() {
            let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
            let answer = if lists.is_null(row) {
                None
            } else if found.is_valid(row) && found.value(row) {
                Some(true)
            } else if start == end {
                Some(false)
            } else if values.is_null(row)
                || (elements.null_count() > 0
                    && elements.slice(start, end - start).null_count() > 0)
            {
                None
            } else {
                Some(false)
            };
            answers.append_option(answer);
        }
        Ok(ColumnarValue::Array(Arc::new(answers.finish())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int32Array, ListArray};
    use datafusion::arrow::datatypes::Int32Type;

    fn answers(lists: ListArray, values: Int32Array) -> Vec<Option<bool>> {
        let (lists_type, rows) = (lists.data_type().clone(), lists.len());
        let args = ScalarFunctionArgs {
            args: vec![
                ColumnarValue::Array(Arc::new(lists)),
                ColumnarValue::Array(Arc::new(values)),
            ],
            arg_fields: vec![
                Arc::new(Field::new("a", lists_type, true)),
                Arc::new(Field::new("x", DataType::Int32, true)),
            ],
            number_rows: rows,
            return_field: Arc::new(Field::new("x", DataType::Boolean, true)),
            config_options: Arc::new(Default::default()),
        };
        let ColumnarValue::Array(out) = AnyEqual::default().invoke_with_args(args).unwrap() else {
            panic!("an array")
        };
        out.as_boolean().iter().collect()
    }

    #[test]
    fn null_elements_make_a_miss_unknown_as_in_postgres() {
        let lists = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(1), None]),
            Some(vec![Some(1), None]),
            Some(vec![None, None]),
            Some(vec![]),
            None,
            Some(vec![Some(1), Some(2)]),
            Some(vec![Some(1), Some(2)]),
        ]);
        let values = Int32Array::from(vec![
            Some(1),
            Some(2),
            Some(5),
            None,
            Some(1),
            None,
            Some(3),
        ]);
        assert_eq!(
            answers(lists, values),
            vec![Some(true), None, None, Some(false), None, None, Some(false)]
        );
    }
}
