//! How values of types the Parquet writer cannot store are kept in data files.
//!
//! Arrow's Parquet writer has no encoding for `Interval(MonthDayNano)`, DataFusion's (and so
//! semsql's) `interval`. Parquet's own INTERVAL type keeps milliseconds and would lose the
//! microseconds PostgreSQL keeps, so an interval is stored as a struct of its three parts,
//! `{months: int32, days: int32, nanoseconds: int64}`, which any Parquet reader can read and
//! which keeps every value exactly (PostgreSQL's interval is months, days and microseconds).
//! Intervals inside lists and structs are stored the same way.
//!
//! The catalog keeps the table's real schema; files are converted on write ([`to_file`]) and
//! back on read ([`from_file`]).

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int32Array, Int64Array, IntervalMonthDayNanoArray, ListArray,
    StructArray,
};
use datafusion::arrow::datatypes::{
    DataType, Field, FieldRef, Fields, Int32Type, Int64Type, IntervalMonthDayNano,
    IntervalMonthDayNanoType, IntervalUnit, Schema, SchemaRef,
};
use datafusion::arrow::record_batch::RecordBatch;

use crate::error::SemsqlError;

/// The struct an interval is stored as.
fn interval_fields() -> Fields {
    Fields::from(vec![
        Field::new("months", DataType::Int32, false),
        Field::new("days", DataType::Int32, false),
        Field::new("nanoseconds", DataType::Int64, false),
    ])
}

/// The type a column of `data_type` has in a data file.
pub fn file_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Interval(IntervalUnit::MonthDayNano) => DataType::Struct(interval_fields()),
        DataType::List(field) => DataType::List(file_field(field)),
        DataType::Struct(fields) => {
            DataType::Struct(fields.iter().map(file_field).collect::<Fields>())
        }
        other => other.clone(),
    }
}

fn file_field(field: &FieldRef) -> FieldRef {
    Arc::new(
        field
            .as_ref()
            .clone()
            .with_data_type(file_type(field.data_type())),
    )
}

/// The schema of the data files of a table whose schema is `schema`.
pub fn file_schema(schema: &SchemaRef) -> SchemaRef {
    if !schema
        .fields()
        .iter()
        .any(|field| needs_conversion(field.data_type()))
    {
        return schema.clone();
    }
    Arc::new(Schema::new_with_metadata(
        schema.fields().iter().map(file_field).collect::<Fields>(),
        schema.metadata().clone(),
    ))
}

fn needs_conversion(data_type: &DataType) -> bool {
    file_type(data_type) != *data_type
}

/// `batch` as it is written to a file of schema `file_schema`.
pub fn to_file(batch: &RecordBatch, file_schema: &SchemaRef) -> Result<RecordBatch, SemsqlError> {
    if Arc::ptr_eq(&batch.schema(), file_schema) || batch.schema() == *file_schema {
        return Ok(batch.clone());
    }
    let columns = batch
        .columns()
        .iter()
        .map(|column| convert(column))
        .collect::<Vec<_>>();
    RecordBatch::try_new(file_schema.clone(), columns).map_err(storage_error)
}

/// A batch read from a file, with the table's `schema`.
pub fn from_file(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, SemsqlError> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| restore(column, field.data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns).map_err(storage_error)
}

fn storage_error(err: impl std::fmt::Display) -> SemsqlError {
    SemsqlError::Storage(format!("cannot convert a data file's columns: {err}"))
}

/// The file form of `column`.
fn convert(column: &ArrayRef) -> ArrayRef {
    match column.data_type() {
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let intervals = column.as_primitive::<IntervalMonthDayNanoType>();
            let months: Int32Array = intervals.unary(|v: IntervalMonthDayNano| v.months);
            let days: Int32Array = intervals.unary(|v: IntervalMonthDayNano| v.days);
            let nanoseconds: Int64Array = intervals.unary(|v: IntervalMonthDayNano| v.nanoseconds);
            Arc::new(StructArray::new(
                interval_fields(),
                vec![Arc::new(months), Arc::new(days), Arc::new(nanoseconds)],
                intervals.nulls().cloned(),
            ))
        }
        DataType::List(field) if needs_conversion(field.data_type()) => {
            let list = column.as_list::<i32>();
            Arc::new(ListArray::new(
                file_field(field),
                list.offsets().clone(),
                convert(list.values()),
                list.nulls().cloned(),
            ))
        }
        DataType::Struct(fields) if fields.iter().any(|f| needs_conversion(f.data_type())) => {
            let structs = column.as_struct();
            Arc::new(StructArray::new(
                fields.iter().map(file_field).collect::<Fields>(),
                structs
                    .columns()
                    .iter()
                    .map(|child| convert(child))
                    .collect(),
                structs.nulls().cloned(),
            ))
        }
        _ => column.clone(),
    }
}

/// `column` as read from a file, back in the table's `target` type.
fn restore(column: &ArrayRef, target: &DataType) -> Result<ArrayRef, SemsqlError> {
    if column.data_type() == target {
        return Ok(column.clone());
    }
    let mismatch = || {
        storage_error(format!(
            "a column of type {} cannot be read as {target}",
            column.data_type()
        ))
    };
    Ok(match target {
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let parts = column.as_struct_opt().ok_or_else(mismatch)?;
            if parts.num_columns() != 3 {
                return Err(mismatch());
            }
            let months = parts.column(0).as_primitive_opt::<Int32Type>();
            let days = parts.column(1).as_primitive_opt::<Int32Type>();
            let nanoseconds = parts.column(2).as_primitive_opt::<Int64Type>();
            let (Some(months), Some(days), Some(nanoseconds)) = (months, days, nanoseconds) else {
                return Err(mismatch());
            };
            let values = (0..parts.len())
                .map(|row| {
                    IntervalMonthDayNano::new(
                        months.value(row),
                        days.value(row),
                        nanoseconds.value(row),
                    )
                })
                .collect::<Vec<_>>();
            Arc::new(IntervalMonthDayNanoArray::new(
                values.into(),
                parts.nulls().cloned(),
            ))
        }
        DataType::List(field) => {
            let list = column.as_list_opt::<i32>().ok_or_else(mismatch)?;
            Arc::new(ListArray::new(
                field.clone(),
                list.offsets().clone(),
                restore(list.values(), field.data_type())?,
                list.nulls().cloned(),
            ))
        }
        DataType::Struct(fields) => {
            let structs = column.as_struct_opt().ok_or_else(mismatch)?;
            if structs.num_columns() != fields.len() {
                return Err(mismatch());
            }
            Arc::new(StructArray::new(
                fields.clone(),
                structs
                    .columns()
                    .iter()
                    .zip(fields)
                    .map(|(child, field)| restore(child, field.data_type()))
                    .collect::<Result<Vec<_>, _>>()?,
                structs.nulls().cloned(),
            ))
        }
        // Any other difference is one of metadata or field names, which the batch's schema
        // settles.
        _ => column.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_survive_the_file_form_exactly() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("i", DataType::Interval(IntervalUnit::MonthDayNano), true),
            Field::new(
                "l",
                DataType::List(Arc::new(Field::new_list_field(
                    DataType::Interval(IntervalUnit::MonthDayNano),
                    true,
                ))),
                true,
            ),
        ]));
        let intervals = IntervalMonthDayNanoArray::from(vec![
            Some(IntervalMonthDayNano::new(14, -3, 7_200_000_001_000)),
            None,
            Some(IntervalMonthDayNano::new(0, 0, -1_000)),
        ]);
        let list = ListArray::new(
            Arc::new(Field::new_list_field(
                DataType::Interval(IntervalUnit::MonthDayNano),
                true,
            )),
            datafusion::arrow::buffer::OffsetBuffer::from_lengths([2, 0, 1]),
            Arc::new(intervals.clone()),
            None,
        );
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(intervals), Arc::new(list)])
            .unwrap();
        let on_disk = file_schema(&schema);
        assert!(matches!(on_disk.field(0).data_type(), DataType::Struct(_)));
        let written = to_file(&batch, &on_disk).unwrap();
        assert_eq!(written.schema(), on_disk);
        let read = from_file(&written, &schema).unwrap();
        assert_eq!(read, batch);
    }
}

#[cfg(test)]
mod parquet_tests {
    use super::*;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use datafusion::parquet::arrow::ArrowWriter;

    #[test]
    fn null_intervals_stay_null_through_parquet() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new(
            "i",
            DataType::Interval(IntervalUnit::MonthDayNano),
            true,
        )]));
        let intervals = IntervalMonthDayNanoArray::from(vec![
            None,
            Some(IntervalMonthDayNano::new(14, -3, 7_200_000_001_000)),
            None,
        ]);
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(intervals)]).unwrap();
        let on_disk = file_schema(&schema);
        let mut bytes = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut bytes, on_disk.clone(), None).unwrap();
        writer.write(&to_file(&batch, &on_disk).unwrap()).unwrap();
        writer.close().unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
            .unwrap()
            .build()
            .unwrap();
        let read: Vec<RecordBatch> = reader
            .map(|b| from_file(&b.unwrap(), &schema).unwrap())
            .collect();
        eprintln!("{:?}", read[0].column(0));
        assert_eq!(read[0], batch);
    }
}
