//! `uuid`: a text column that holds only UUIDs, written as PostgreSQL writes them (lowercase,
//! hyphenated), so a `uuid` column compares, sorts, groups and joins as PostgreSQL's does.
//!
//! DataFusion has no uuid SQL type, and Arrow's UUID extension (16 fixed-size bytes) cannot be
//! cast from or compared with text, which is how clients write UUIDs in SQL
//! (`WHERE id = 'a0eebc99-...'`). So the value is kept as text, marked by field metadata (as
//! `varchar(n)` is, see `character_types`); every write into a table reads each value as a
//! UUID, in any form PostgreSQL accepts (upper case, braces, no hyphens), and stores its
//! canonical text, refusing anything else with PostgreSQL's 22P02. Result columns are sent as
//! `uuid` (OID 2950), in text or in the 16-byte binary form (see `server::result_encoding`).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field};

use crate::error::SemsqlError;

/// The field metadata key marking a `uuid` column.
pub const UUID_KEY: &str = "semsql.uuid";

/// PostgreSQL's OID for `uuid`.
pub const UUID_OID: i32 = 2950;

/// Whether `field` is a `uuid` column.
pub fn is_uuid(field: &Field) -> bool {
    field.metadata().contains_key(UUID_KEY)
}

/// A UUID's canonical text, read as PostgreSQL's `uuid_in` reads it; `None` if it is not one.
pub fn canonical(text: &str) -> Option<String> {
    let trimmed = text.trim();
    let inner = match trimmed.strip_prefix('{') {
        Some(rest) => rest.strip_suffix('}')?,
        None => trimmed,
    };
    // PostgreSQL accepts a hyphen after any group of four digits; the uuid crate is stricter
    // about where they go, so they are removed first.
    let digits: String = inner.chars().filter(|c| *c != '-').collect();
    if digits.len() != 32 || inner.starts_with('-') || inner.ends_with('-') || inner.contains("--")
    {
        return None;
    }
    uuid::Uuid::try_parse(&digits)
        .ok()
        .map(|id| id.hyphenated().to_string())
}

/// `column` with every value in canonical form, for a write into `field`; 22P02 for a value
/// that is not a UUID.
pub fn canonical_column(field: &Field, column: &ArrayRef) -> Result<ArrayRef, SemsqlError> {
    if !is_uuid(field) || column.null_count() == column.len() {
        return Ok(column.clone());
    }
    let text = cast(column, &DataType::Utf8)
        .map_err(|err| SemsqlError::InvalidParameter(err.to_string()))?;
    let values = text.as_string::<i32>();
    let mut canonical_values = Vec::with_capacity(values.len());
    for value in values.iter() {
        canonical_values.push(match value {
            Some(value) => Some(canonical(value).ok_or_else(|| {
                SemsqlError::InvalidTextRepresentation(format!(
                    "invalid input syntax for type uuid: \"{value}\""
                ))
            })?),
            None => None,
        });
    }
    let canonical_array: ArrayRef = Arc::new(StringArray::from(canonical_values));
    cast(&canonical_array, column.data_type())
        .map_err(|err| SemsqlError::InvalidParameter(err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_read_in_postgresql_forms() {
        let canonical_form = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
        for form in [
            "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
            "a0eebc999c0b4ef8bb6d6bb9bd380a11",
            "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11",
        ] {
            assert_eq!(canonical(form).as_deref(), Some(canonical_form), "{form}");
        }
        for bad in [
            "",
            "xyz",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",
            "-a0eebc999c0b4ef8bb6d6bb9bd380a11",
        ] {
            assert_eq!(canonical(bad), None, "{bad}");
        }
    }
}
