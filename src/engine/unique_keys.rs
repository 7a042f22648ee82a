//! PRIMARY KEY and UNIQUE constraints of managed tables: declared in CREATE TABLE, kept in
//! the manifest, and checked on every write as PostgreSQL checks them (at the end of each
//! statement, and again when a transaction commits on top of rows others committed since):
//! a second row with the same key is 23505, `duplicate key value violates unique constraint`.
//! Rows whose key holds a NULL never conflict (PostgreSQL's default, NULLS DISTINCT); a
//! primary key's columns are NOT NULL.
//!
//! The check hashes every row's key on each write, so it costs time in the table's size;
//! an index that makes it proportional to the rows written belongs with issue 16's storage.

use std::collections::HashSet;

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::{Constraint, Constraints};
use serde::{Deserialize, Serialize};

use crate::error::SemsqlError;

/// One PRIMARY KEY or UNIQUE constraint, as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEntry {
    /// PostgreSQL's name for it: `<table>_pkey`, `<table>_<columns>_key`.
    pub name: String,
    pub primary: bool,
    pub columns: Vec<String>,
}

/// The keys DataFusion read from a CREATE TABLE statement, named as PostgreSQL names them.
pub fn keys_from_constraints(
    table: &str,
    schema: &Schema,
    constraints: &Constraints,
) -> Vec<KeyEntry> {
    let mut keys: Vec<KeyEntry> = Vec::new();
    for constraint in constraints.iter() {
        let (primary, indices) = match constraint {
            Constraint::PrimaryKey(indices) => (true, indices),
            Constraint::Unique(indices) => (false, indices),
        };
        let columns: Vec<String> = indices
            .iter()
            .map(|&index| schema.field(index).name().clone())
            .collect();
        if keys.iter().any(|key| key.columns == columns) {
            // `UNIQUE (a)` twice, or on the primary key's columns: PostgreSQL keeps one.
            continue;
        }
        let base = if primary {
            format!("{table}_pkey")
        } else {
            format!("{table}_{}_key", columns.join("_"))
        };
        let mut name = base.clone();
        let mut suffix = 1;
        while keys.iter().any(|key| key.name == name) {
            name = format!("{base}{suffix}");
            suffix += 1;
        }
        keys.push(KeyEntry {
            name,
            primary,
            columns,
        });
    }
    // The primary key first, as PostgreSQL lists constraints by name but psql and drivers
    // look for it first.
    keys.sort_by_key(|key| !key.primary);
    keys
}

/// Fails with 23505 when two rows of `batches` (a table's whole contents) share a key.
pub fn check_keys(
    table_name: &str,
    schema: &Schema,
    keys: &[KeyEntry],
    batches: &[RecordBatch],
) -> Result<(), SemsqlError> {
    for key in keys {
        check_key(table_name, schema, key, batches)?;
    }
    Ok(())
}

fn check_key(
    table_name: &str,
    schema: &Schema,
    key: &KeyEntry,
    batches: &[RecordBatch],
) -> Result<(), SemsqlError> {
    let internal = |err: datafusion::arrow::error::ArrowError| {
        SemsqlError::Storage(format!("checking key {}: {err}", key.name))
    };
    let indices = key
        .columns
        .iter()
        .map(|column| schema.index_of(column))
        .collect::<Result<Vec<_>, _>>()
        .map_err(internal)?;
    let converter = RowConverter::new(
        indices
            .iter()
            .map(|&index| SortField::new(schema.field(index).data_type().clone()))
            .collect(),
    )
    .map_err(internal)?;
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    for batch in batches {
        let columns: Vec<ArrayRef> = indices
            .iter()
            .map(|&index| batch.column(index).clone())
            .collect();
        let rows = converter.convert_columns(&columns).map_err(internal)?;
        for row in 0..batch.num_rows() {
            if columns.iter().any(|column| column.is_null(row)) {
                continue;
            }
            if !seen.insert(rows.row(row).as_ref().to_vec()) {
                return Err(SemsqlError::UniqueViolation {
                    constraint: key.name.clone(),
                    detail: format!(
                        "Key ({})=({}) already exists.",
                        key.columns.join(", "),
                        key_values(&columns, row)
                    ),
                    table: table_name.to_owned(),
                });
            }
        }
    }
    Ok(())
}

/// A row's key values as PostgreSQL prints them in the DETAIL line.
fn key_values(columns: &[ArrayRef], row: usize) -> String {
    let options = FormatOptions::default();
    columns
        .iter()
        .map(|column| {
            ArrayFormatter::try_new(column.as_ref(), &options)
                .map(|formatter| formatter.value(row).to_string())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int32Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field};

    use super::*;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("id", DataType::Int32, false),
            Field::new("code", DataType::Utf8, true),
        ])
    }

    fn batch(ids: Vec<i32>, codes: Vec<Option<&str>>) -> RecordBatch {
        RecordBatch::try_new(
            Arc::new(schema()),
            vec![
                Arc::new(Int32Array::from(ids)),
                Arc::new(StringArray::from(codes)),
            ],
        )
        .unwrap()
    }

    #[test]
    fn names_follow_postgres() {
        let constraints = Constraints::new_unverified(vec![
            Constraint::Unique(vec![1]),
            Constraint::PrimaryKey(vec![0]),
            Constraint::Unique(vec![0, 1]),
        ]);
        let keys = keys_from_constraints("items", &schema(), &constraints);
        let names: Vec<&str> = keys.iter().map(|key| key.name.as_str()).collect();
        assert_eq!(names, ["items_pkey", "items_code_key", "items_id_code_key"]);
    }

    #[test]
    fn duplicates_across_batches_are_refused_and_nulls_never_conflict() {
        let keys = vec![
            KeyEntry {
                name: "items_pkey".into(),
                primary: true,
                columns: vec!["id".into()],
            },
            KeyEntry {
                name: "items_code_key".into(),
                primary: false,
                columns: vec!["code".into()],
            },
        ];
        let first = batch(vec![1, 2], vec![None, Some("a")]);
        let fine = batch(vec![3], vec![None]);
        check_keys("items", &schema(), &keys, &[first.clone(), fine]).unwrap();
        let clash = batch(vec![2], vec![Some("b")]);
        let err = check_keys("items", &schema(), &keys, &[first.clone(), clash]).unwrap_err();
        assert!(
            err.to_string()
                .contains("duplicate key value violates unique constraint \"items_pkey\""),
            "{err}"
        );
        let clash = batch(vec![4], vec![Some("a")]);
        let err = check_keys("items", &schema(), &keys, &[first, clash]).unwrap_err();
        assert!(err.to_string().contains("items_code_key"), "{err}");
    }
}
