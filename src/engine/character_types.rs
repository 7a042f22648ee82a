//! `varchar(n)` (`character varying(n)`): a text column that keeps its declared length, so
//! the catalogs describe it as PostgreSQL does (`pg_attribute` says `varchar` with typmod
//! `n + 4`, psql's `\d` and `format_type` print `character varying(20)`, SQLAlchemy reflects
//! `VARCHAR(20)`), and a longer value is refused as PostgreSQL refuses it: 22001, `value too
//! long for type character varying(20)`.
//!
//! `char(n)` (`character(n)`, `bpchar`): PostgreSQL pads its values with spaces to `n` and
//! ignores trailing spaces wherever it reads them (`c = 'ab'`, `length(c)`, `c || 'x'` and a
//! cast to text all see `'ab'`). semsql stores the value without its trailing spaces, so every
//! such use gives PostgreSQL's answer, and pads the column to `n` when it is sent as a result
//! column (see `server::result_encoding`), typed `bpchar`, as PostgreSQL prints it. What
//! differs is written in docs/sql.md: `octet_length(c)` counts the stored characters.
//!
//! The length travels as field metadata (like pgvector's `vector(n)`), set by this module's
//! type planner, which hands every other type to datafusion-pg-catalog's.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::error::Result;
use datafusion::logical_expr::planner::TypePlanner;
use datafusion::sql::sqlparser::ast::{CharacterLength, DataType as SqlType};
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::oid_type_planner::PgOidTypePlanner;

use crate::error::SemsqlError;

/// The field metadata key holding a `varchar(n)` column's `n`.
pub const VARCHAR_LENGTH_KEY: &str = "semsql.varchar_length";

/// PostgreSQL's OID for `varchar`.
pub const VARCHAR_OID: i32 = 1043;

/// The field metadata key holding a `char(n)` column's `n`.
pub const CHAR_LENGTH_KEY: &str = "semsql.char_length";

/// PostgreSQL's OID for `bpchar` (`char(n)`).
pub const BPCHAR_OID: i32 = 1042;

/// The types semsql plans itself (`varchar(n)`, `char(n)`, `uuid`), then datafusion-pg-catalog's.
#[derive(Debug)]
pub struct SemsqlTypePlanner {
    inner: PgOidTypePlanner,
}

impl Default for SemsqlTypePlanner {
    fn default() -> Self {
        Self {
            inner: PgOidTypePlanner,
        }
    }
}

impl TypePlanner for SemsqlTypePlanner {
    fn plan_type_field(&self, sql_type: &SqlType) -> Result<Option<FieldRef>> {
        let (key, length) = match sql_type {
            SqlType::Varchar(Some(CharacterLength::IntegerLength { length, .. }))
            | SqlType::CharacterVarying(Some(CharacterLength::IntegerLength { length, .. }))
            | SqlType::CharVarying(Some(CharacterLength::IntegerLength { length, .. })) => {
                (VARCHAR_LENGTH_KEY, *length)
            }
            SqlType::Char(Some(CharacterLength::IntegerLength { length, .. }))
            | SqlType::Character(Some(CharacterLength::IntegerLength { length, .. })) => {
                (CHAR_LENGTH_KEY, *length)
            }
            // `char` alone is `char(1)`, as in PostgreSQL.
            SqlType::Char(None) | SqlType::Character(None) => (CHAR_LENGTH_KEY, 1),
            SqlType::Uuid => {
                return Ok(Some(Arc::new(
                    Field::new("", DataType::Utf8View, true).with_metadata(HashMap::from([(
                        super::uuid_type::UUID_KEY.to_owned(),
                        "uuid".to_owned(),
                    )])),
                )))
            }
            _ => return self.inner.plan_type_field(sql_type),
        };
        // semsql keeps strings as `Utf8View` (DataFusion's `map_string_types_to_utf8view`).
        Ok(Some(Arc::new(
            Field::new("", DataType::Utf8View, true)
                .with_metadata(HashMap::from([(key.to_owned(), length.to_string())])),
        )))
    }
}

/// A field's declared `varchar` length, if it has one.
pub fn varchar_length(field: &Field) -> Option<usize> {
    field.metadata().get(VARCHAR_LENGTH_KEY)?.parse().ok()
}

/// A field's declared `char` length, if it has one.
pub fn char_length(field: &Field) -> Option<usize> {
    field.metadata().get(CHAR_LENGTH_KEY)?.parse().ok()
}

/// `column` fitted to `field`'s declared `varchar` or `char` length, as PostgreSQL stores a
/// value: one longer than the length fails with 22001, unless the characters past the length
/// are all spaces, which are cut off (`'ab   '` fits `varchar(2)` as `'ab'`). A `char` value
/// is kept without its trailing spaces (see the module's documentation).
pub fn fit_length(field: &Field, column: &ArrayRef) -> std::result::Result<ArrayRef, SemsqlError> {
    let (limit, type_name, trim) = match (varchar_length(field), char_length(field)) {
        (Some(limit), _) => (limit, "character varying", false),
        (None, Some(limit)) => (limit, "character", true),
        // A uuid column's values are checked and written in canonical form.
        (None, None) => return super::uuid_type::canonical_column(field, column),
    };
    let too_long = |value: &str| value.chars().count() > limit || (trim && value.ends_with(' '));
    // Every write of the column checks it, in its own string type; a copy is made only when
    // some value has to be cut.
    let any_long = match column.data_type() {
        DataType::Utf8View => column.as_string_view().iter().flatten().any(too_long),
        DataType::Utf8 => column.as_string::<i32>().iter().flatten().any(too_long),
        DataType::LargeUtf8 => column.as_string::<i64>().iter().flatten().any(too_long),
        _ => true,
    };
    if !any_long {
        return Ok(column.clone());
    }
    let text = cast(column, &DataType::Utf8)
        .map_err(|err| SemsqlError::InvalidParameter(err.to_string()))?;
    let values = text.as_string::<i32>();
    if !values.iter().flatten().any(too_long) {
        return Ok(column.clone());
    }
    let mut fitted = Vec::with_capacity(values.len());
    for value in values.iter() {
        fitted.push(match value {
            Some(value) if too_long(value) => {
                let cut = value
                    .char_indices()
                    .nth(limit)
                    .map_or(value.len(), |(at, _)| at);
                if !value[cut..].chars().all(|c| c == ' ') {
                    return Err(SemsqlError::StringTooLong(format!(
                        "value too long for type {type_name}({limit})"
                    )));
                }
                if trim {
                    Some(value[..cut].trim_end_matches(' '))
                } else {
                    Some(&value[..cut])
                }
            }
            other => other,
        });
    }
    let fitted: ArrayRef = Arc::new(datafusion::arrow::array::StringArray::from(fitted));
    cast(&fitted, column.data_type()).map_err(|err| SemsqlError::InvalidParameter(err.to_string()))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::StringViewArray;

    use super::*;

    #[test]
    fn varchar_keeps_its_length_and_refuses_longer_values() {
        let planner = SemsqlTypePlanner::default();
        let field = planner
            .plan_type_field(&SqlType::Varchar(Some(CharacterLength::IntegerLength {
                length: 3,
                unit: None,
            })))
            .unwrap()
            .unwrap();
        assert_eq!(varchar_length(&field), Some(3));
        let fits: ArrayRef = Arc::new(StringViewArray::from(vec![Some("abc"), None, Some("é")]));
        fit_length(&field, &fits).unwrap();
        // Spaces past the length are cut off, as PostgreSQL stores them.
        let spaces: ArrayRef = Arc::new(StringViewArray::from(vec![Some("ab    "), None]));
        let fitted = fit_length(&field, &spaces).unwrap();
        assert_eq!(fitted.data_type(), &DataType::Utf8View);
        assert_eq!(fitted.as_string_view().value(0), "ab ");
        assert!(fitted.is_null(1));
        let long: ArrayRef = Arc::new(StringViewArray::from(vec![Some("abcd")]));
        let err = fit_length(&field, &long).unwrap_err();
        assert_eq!(
            err.to_string(),
            "value too long for type character varying(3)"
        );
        assert_eq!(err.sqlstate(), "22001");
        // char(n): stored without trailing spaces; longer values refused with the type's name.
        let char_field = planner
            .plan_type_field(&SqlType::Char(Some(CharacterLength::IntegerLength {
                length: 3,
                unit: None,
            })))
            .unwrap()
            .unwrap();
        assert_eq!(char_length(&char_field), Some(3));
        let padded: ArrayRef = Arc::new(StringViewArray::from(vec![Some("a  "), Some("ab    ")]));
        let fitted = fit_length(&char_field, &padded).unwrap();
        assert_eq!(fitted.as_string_view().value(0), "a");
        assert_eq!(fitted.as_string_view().value(1), "ab");
        let err = fit_length(&char_field, &long).unwrap_err();
        assert_eq!(err.to_string(), "value too long for type character(3)");
        let one = planner
            .plan_type_field(&SqlType::Char(None))
            .unwrap()
            .unwrap();
        assert_eq!(char_length(&one), Some(1));
        // Other types are datafusion-pg-catalog's (or DataFusion's own).
        assert!(planner.plan_type_field(&SqlType::Text).unwrap().is_none());
    }
}
