//! Query results on the wire: every Arrow type a query can give reaches the client.
//!
//! arrow-pg encodes the common types; this module routes the ones it cannot, or gets wrong, to
//! encodings of its own, column by column, and hands every other column to arrow-pg unchanged:
//!
//! - lists of lists are PostgreSQL multidimensional arrays (`{{1,2},{3,4}}`, typed as the array of
//!   the innermost element type, `int8[]`); in binary they must be rectangular, as PostgreSQL's
//!   arrays are (2202E otherwise), while text also prints a ragged list (`{{1,2},{3}}`), which
//!   PostgreSQL could not hold;
//! - lists whose elements arrow-pg cannot send (intervals, `Decimal256`, ...) are arrays too;
//! - `interval` NULLs are NULL (arrow-pg sent them as `00:00:00`);
//! - `Decimal256` is `numeric`, `Float16` is `float4`, fixed-size binary is `bytea` and Arrow's
//!   UUID extension type is `uuid`;
//! - types PostgreSQL has no counterpart for (maps, unions, run-end encoded arrays, structs of
//!   such) are `text`, printed as DataFusion prints them (`{a: 1, b: 2}`).

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, FieldRef, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions as ArrowFormatOptions};
use datafusion::prelude::DataFrame;
use datafusion_postgres::arrow_pg::datatypes::field_into_pg_type;
use datafusion_postgres::arrow_pg::encoder::encode_value;
use futures::{stream, StreamExt};
use pgwire::api::portal::Format;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse};
use pgwire::api::Type;
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use pgwire::types::format::FormatOptions;
use pgwire::types::ToSqlText;
use postgres_types::{IsNull, ToSql};

use crate::engine::character_types::{char_length, varchar_length};
use crate::engine::uuid_type::is_uuid;

/// How one column is sent.
#[derive(Debug, Clone)]
enum Encoding {
    /// arrow-pg's encoder.
    ArrowPg,
    /// arrow-pg's, except that NULL is NULL (its interval encoder ignores NULLs).
    NullChecked,
    /// arrow-pg's, after a cast to a type it knows (`Float16` to `Float32`, ...).
    Cast(FieldRef),
    /// Raw bytes as `bytea` (fixed-size binary).
    Bytea,
    /// A 16-byte UUID.
    Uuid,
    /// A UUID kept as its text (semsql's `uuid` columns, see `engine::uuid_type`).
    UuidText,
    /// `numeric` from the value's decimal text (`Decimal256` wider than `Decimal128`).
    Numeric,
    /// A PostgreSQL array of any depth whose elements are sent as `element`.
    Array {
        element: Box<Encoding>,
        element_field: FieldRef,
        element_type: Type,
    },
    /// `text`, as DataFusion prints the value.
    Display,
    /// A `char(n)` column's value padded with spaces to `n` characters.
    PaddedChar(usize),
    /// A struct as a PostgreSQL record (`(1,"a b",)`), each field sent by its own encoding.
    Record(Vec<(Encoding, FieldRef, Type)>),
}

/// The encoding and PostgreSQL type of a column.
fn encoding_of(field: &FieldRef) -> (Encoding, Type) {
    if let Some(length) = char_length(field) {
        return (Encoding::PaddedChar(length), Type::BPCHAR);
    }
    if varchar_length(field).is_some() {
        return (Encoding::ArrowPg, Type::VARCHAR);
    }
    if is_uuid(field) && !is_list(field.data_type()) {
        return (Encoding::UuidText, Type::UUID);
    }
    match field.data_type() {
        DataType::Interval(_) => (Encoding::NullChecked, Type::INTERVAL),
        DataType::Float16 => (
            Encoding::Cast(Arc::new(
                field.as_ref().clone().with_data_type(DataType::Float32),
            )),
            Type::FLOAT4,
        ),
        DataType::FixedSizeBinary(16) if field.extension_type_name() == Some("arrow.uuid") => {
            (Encoding::Uuid, Type::UUID)
        }
        DataType::FixedSizeBinary(_) => (Encoding::Bytea, Type::BYTEA),
        // A negative scale (`1.23e3` read as a decimal is 123 with scale -1) is sent from its
        // digits: arrow-pg reads the scale as unsigned.
        DataType::Decimal128(_, scale) | DataType::Decimal256(_, scale) if *scale < 0 => {
            (Encoding::Numeric, Type::NUMERIC)
        }
        DataType::Decimal256(precision, scale) if *precision <= 38 => (
            Encoding::Cast(Arc::new(
                field
                    .as_ref()
                    .clone()
                    .with_data_type(DataType::Decimal128(*precision, *scale)),
            )),
            Type::NUMERIC,
        ),
        DataType::Decimal256(..) => (Encoding::Numeric, Type::NUMERIC),
        // arrow-pg converts to rust_decimal, which holds 28 digits: wider decimals (semsql's
        // `numeric` is Decimal128(38, 10)) are sent from their own digits.
        DataType::Decimal128(precision, scale) if *precision > 28 || *scale > 28 => {
            (Encoding::Numeric, Type::NUMERIC)
        }
        DataType::List(element)
        | DataType::LargeList(element)
        | DataType::FixedSizeList(element, _)
        | DataType::ListView(element)
        | DataType::LargeListView(element) => list_encoding(field, element),
        DataType::Struct(children) => {
            let children: Vec<(Encoding, FieldRef, Type)> = children
                .iter()
                .map(|child| {
                    let (encoding, ty) = encoding_of(child);
                    (encoding, child.clone(), ty)
                })
                .collect();
            // arrow-pg's composite type when it has one (clients see the field names), else
            // an anonymous record.
            let ty = field_into_pg_type(field).unwrap_or(Type::RECORD);
            (Encoding::Record(children), ty)
        }
        _ => match field_into_pg_type(field) {
            Ok(ty) => (Encoding::ArrowPg, ty),
            Err(_) => (Encoding::Display, Type::TEXT),
        },
    }
}

fn list_encoding(field: &FieldRef, element: &FieldRef) -> (Encoding, Type) {
    // pgvector's `vector` and the lists arrow-pg sends itself stay arrow-pg's (it has no
    // encoder for list views).
    let view = matches!(
        field.data_type(),
        DataType::ListView(_) | DataType::LargeListView(_)
    );
    if !is_list(element.data_type()) && !view {
        if let (Encoding::ArrowPg, Ok(ty)) = (encoding_of(element).0, field_into_pg_type(field)) {
            return (Encoding::ArrowPg, ty);
        }
    }
    let (element_encoding, element_type) = match element.data_type() {
        data_type if is_list(data_type) => {
            // A list of lists: the inner list's element encoding and type, one level deeper.
            match encoding_of(element) {
                (
                    Encoding::Array {
                        element,
                        element_field,
                        element_type,
                    },
                    _,
                ) => {
                    let array_type = array_type_of(&element_type);
                    return (
                        Encoding::Array {
                            element,
                            element_field,
                            element_type,
                        },
                        array_type,
                    );
                }
                (Encoding::ArrowPg, ty) => {
                    // The inner list is one arrow-pg sends whole: its elements are arrow-pg's.
                    let leaf = list_element(element).expect("a list type");
                    let leaf_type = element_type_of(&ty)
                        .or_else(|| field_into_pg_type(&leaf).ok())
                        .unwrap_or(Type::TEXT);
                    return (
                        Encoding::Array {
                            element: Box::new(Encoding::ArrowPg),
                            element_field: leaf,
                            element_type: leaf_type.clone(),
                        },
                        array_type_of(&leaf_type),
                    );
                }
                _ => (Encoding::Display, Type::TEXT),
            }
        }
        _ => encoding_of(element),
    };
    let array_type = array_type_of(&element_type);
    let (element_encoding, element_type) = if array_type == Type::TEXT_ARRAY {
        // An element type without an array type here is sent as text.
        (Encoding::Display, Type::TEXT)
    } else {
        (element_encoding, element_type)
    };
    (
        Encoding::Array {
            element: Box::new(element_encoding),
            element_field: element.clone(),
            element_type,
        },
        array_type,
    )
}

fn is_list(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::List(_)
            | DataType::LargeList(_)
            | DataType::FixedSizeList(..)
            | DataType::ListView(_)
            | DataType::LargeListView(_)
    )
}

fn list_element(field: &FieldRef) -> Option<FieldRef> {
    match field.data_type() {
        DataType::List(element)
        | DataType::LargeList(element)
        | DataType::FixedSizeList(element, _)
        | DataType::ListView(element)
        | DataType::LargeListView(element) => Some(element.clone()),
        _ => None,
    }
}

/// PostgreSQL's array type of `element` (`int4` gives `int4[]`); `text[]` for the others.
fn array_type_of(element: &Type) -> Type {
    if element.oid() == Type::RECORD.oid() {
        return Type::RECORD_ARRAY;
    }
    match *element {
        Type::BOOL => Type::BOOL_ARRAY,
        Type::BYTEA => Type::BYTEA_ARRAY,
        Type::CHAR => Type::CHAR_ARRAY,
        Type::INT2 => Type::INT2_ARRAY,
        Type::INT4 => Type::INT4_ARRAY,
        Type::INT8 => Type::INT8_ARRAY,
        Type::FLOAT4 => Type::FLOAT4_ARRAY,
        Type::FLOAT8 => Type::FLOAT8_ARRAY,
        Type::NUMERIC => Type::NUMERIC_ARRAY,
        Type::VARCHAR => Type::VARCHAR_ARRAY,
        Type::DATE => Type::DATE_ARRAY,
        Type::TIME => Type::TIME_ARRAY,
        Type::TIMESTAMP => Type::TIMESTAMP_ARRAY,
        Type::TIMESTAMPTZ => Type::TIMESTAMPTZ_ARRAY,
        Type::INTERVAL => Type::INTERVAL_ARRAY,
        Type::UUID => Type::UUID_ARRAY,
        Type::JSON => Type::JSON_ARRAY,
        Type::JSONB => Type::JSONB_ARRAY,
        _ => Type::TEXT_ARRAY,
    }
}

/// The element type of a PostgreSQL array type.
fn element_type_of(array: &Type) -> Option<Type> {
    match array.kind() {
        postgres_types::Kind::Array(element) => Some(element.clone()),
        _ => None,
    }
}

/// The columns a result of `schema` is described with, in `format`.
pub fn result_fields(
    schema: &Schema,
    format: &Format,
    options: Option<Arc<FormatOptions>>,
) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(index, field)| {
            let (_, ty) = encoding_of(field);
            let mut info = FieldInfo::new(
                field.name().clone(),
                None,
                None,
                ty,
                format.format_for(index),
            );
            // PostgreSQL's typmod of `char(n)` and `varchar(n)`: n + 4.
            if let Some(length) = char_length(field).or_else(|| varchar_length(field)) {
                info = info.with_type_modifier(i32::try_from(length).map_or(-1, |n| n + 4));
            }
            match &options {
                Some(options) => info.with_format_options(options.clone()),
                None => info,
            }
        })
        .collect()
}

/// Runs `frame` and encodes its rows as [`result_fields`] describes them. `display_zone` is
/// the session's time zone (`datafusion.execution.time_zone`): a timestamptz is printed in it,
/// as PostgreSQL prints every timestamptz in the session's `TimeZone`, whatever zone the
/// value's column was written with.
pub async fn encode_dataframe(
    frame: DataFrame,
    format: &Format,
    options: Option<Arc<FormatOptions>>,
    display_zone: Option<&str>,
) -> PgWireResult<QueryResponse> {
    let display_zone: Option<Arc<str>> = display_zone.map(Arc::from);
    let fields = Arc::new(result_fields(frame.schema().as_arrow(), format, options));
    let batches = frame
        .execute_stream()
        .await
        .map_err(|err| PgWireError::ApiError(Box::new(err)))?;
    let row_fields = fields.clone();
    let rows = batches
        .map(move |batch| {
            let rows: Vec<PgWireResult<DataRow>> = match batch {
                // A panic in an encoder (a type it did not expect) ends this result with an
                // error rather than the connection.
                Ok(batch) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    encode_batch(&row_fields, &batch, display_zone.as_ref())
                }))
                .unwrap_or_else(|_| {
                    vec![Err(user_error(
                        "XX000",
                        "internal error: a result value could not be encoded".to_owned(),
                    ))]
                }),
                Err(err) => vec![Err(PgWireError::ApiError(Box::new(err)))],
            };
            stream::iter(rows)
        })
        .flatten();
    Ok(QueryResponse::new(fields, rows))
}

/// The rows of `batch`; an error ends them.
///
/// Values are read by the batch's own types, which may be narrower than the plan's that
/// described the columns (an extended-protocol plan is described before it is analyzed; see
/// `planner::integer_arithmetic`).
fn encode_batch(
    fields: &Arc<Vec<FieldInfo>>,
    batch: &RecordBatch,
    display_zone: Option<&Arc<str>>,
) -> Vec<PgWireResult<DataRow>> {
    let schema = batch.schema();
    let mut columns = Vec::with_capacity(batch.num_columns());
    for ((field, info), column) in schema
        .fields()
        .iter()
        .zip(fields.iter())
        .zip(batch.columns())
    {
        match ColumnEncoder::new(field, info, column, display_zone) {
            Ok(encoder) => columns.push(encoder),
            Err(err) => return vec![Err(err)],
        }
    }
    let mut encoder = DataRowEncoder::new(fields.clone());
    let mut rows = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        for column in &mut columns {
            if let Err(err) = column.encode(&mut encoder, row) {
                rows.push(Err(err));
                return rows;
            }
        }
        rows.push(Ok(encoder.take_row()));
    }
    rows
}

/// One column of a batch, ready to encode row by row.
struct ColumnEncoder {
    encoding: Encoding,
    field: FieldRef,
    info: FieldInfo,
    values: ArrayRef,
    elements: ElementEncoder,
}

/// Encodes the values this module sends itself, and the elements and fields inside them.
struct ElementEncoder {
    /// Encodes one element at a time with arrow-pg (see [`ElementEncoder::encode_alone`]).
    scratch: Option<DataRowEncoder>,
    options: Arc<FormatOptions>,
}

impl ColumnEncoder {
    fn new(
        field: &FieldRef,
        info: &FieldInfo,
        column: &ArrayRef,
        display_zone: Option<&Arc<str>>,
    ) -> PgWireResult<Self> {
        let (encoding, _) = encoding_of(field);
        let cast_to = |to: &FieldRef| {
            cast(column, to.data_type()).map_err(|err| PgWireError::ApiError(Box::new(err)))
        };
        let (field, values) = match (&encoding, field.data_type(), display_zone) {
            (Encoding::Cast(to), _, _) => (to.clone(), cast_to(to)?),
            // The same instants, shown in the session's zone (a change of the type only).
            (_, DataType::Timestamp(unit, Some(zone)), Some(display)) if zone != display => {
                let to = Arc::new(
                    field
                        .as_ref()
                        .clone()
                        .with_data_type(DataType::Timestamp(*unit, Some(display.clone()))),
                );
                let values = cast_to(&to)?;
                (to, values)
            }
            _ => (field.clone(), column.clone()),
        };
        Ok(Self {
            encoding,
            field,
            info: info.clone(),
            values,
            elements: ElementEncoder {
                scratch: None,
                options: info.format_options().clone(),
            },
        })
    }

    fn encode(&mut self, encoder: &mut DataRowEncoder, row: usize) -> PgWireResult<()> {
        let value = match &self.encoding {
            Encoding::ArrowPg | Encoding::Cast(_) => {
                return encode_value(encoder, &self.values, row, &self.field, &self.info)
            }
            Encoding::NullChecked if !self.values.is_null(row) => {
                return encode_value(encoder, &self.values, row, &self.field, &self.info)
            }
            Encoding::NullChecked => Encoded(None),
            _ => Encoded(self.value_bytes(row)?),
        };
        encoder.encode_field_with_type_and_format(
            &value,
            self.info.datatype(),
            self.info.format(),
            self.info.format_options(),
        )
    }

    /// The value at `row` in the column's format, for the encodings done here.
    fn value_bytes(&mut self, row: usize) -> PgWireResult<Option<Vec<u8>>> {
        self.elements.element_bytes(
            &self.encoding,
            &self.field,
            &self.values,
            row,
            self.info.format(),
        )
    }
}

impl ElementEncoder {
    fn element_bytes(
        &mut self,
        encoding: &Encoding,
        field: &FieldRef,
        values: &ArrayRef,
        row: usize,
        format: FieldFormat,
    ) -> PgWireResult<Option<Vec<u8>>> {
        if values.is_null(row) {
            return Ok(None);
        }
        let text = format == FieldFormat::Text;
        Ok(Some(match encoding {
            Encoding::ArrowPg | Encoding::NullChecked => {
                let ty = field_into_pg_type(field).unwrap_or(Type::TEXT);
                return self.encode_alone(field, &ty, values, row, format);
            }
            Encoding::Cast(to) => {
                let one = cast(&values.slice(row, 1), to.data_type())
                    .map_err(|err| PgWireError::ApiError(Box::new(err)))?;
                let ty = field_into_pg_type(to).unwrap_or(Type::TEXT);
                return self.encode_alone(to, &ty, &one, 0, format);
            }
            Encoding::Bytea | Encoding::Uuid => {
                let bytes = values.as_fixed_size_binary().value(row).to_vec();
                match (text, encoding) {
                    (false, _) => bytes,
                    (true, Encoding::Uuid) if bytes.len() == 16 => uuid::Uuid::from_slice(&bytes)
                        .map(|id| id.hyphenated().to_string().into_bytes())
                        .unwrap_or_default(),
                    (true, _) => {
                        let mut out = String::with_capacity(2 + bytes.len() * 2);
                        out.push_str("\\x");
                        for byte in bytes {
                            out.push_str(&format!("{byte:02x}"));
                        }
                        out.into_bytes()
                    }
                }
            }
            Encoding::Numeric => {
                let decimal = decimal_text(values, row)?;
                if text {
                    decimal.into_bytes()
                } else {
                    numeric_binary(&decimal).ok_or_else(|| {
                        user_error("22P02", format!("cannot send {decimal} as numeric"))
                    })?
                }
            }
            Encoding::Display => display(values, row)?.into_bytes(),
            Encoding::UuidText => {
                let stored = display(values, row)?;
                match (text, crate::engine::uuid_type::canonical(&stored)) {
                    (true, Some(canonical)) => canonical.into_bytes(),
                    (false, Some(canonical)) => uuid::Uuid::parse_str(&canonical)
                        .map(|id| id.as_bytes().to_vec())
                        .unwrap_or_default(),
                    (_, None) => {
                        return Err(user_error(
                            "22P02",
                            format!("invalid input syntax for type uuid: \"{stored}\""),
                        ))
                    }
                }
            }
            Encoding::Record(children) => {
                let structs = values.as_struct();
                let mut fields = Vec::with_capacity(children.len());
                for ((encoding, field, _), column) in children.iter().zip(structs.columns()) {
                    fields.push(self.element_bytes(encoding, field, column, row, format)?);
                }
                if text {
                    record_text(&fields)
                } else {
                    let types: Vec<u32> = children.iter().map(|(_, _, ty)| ty.oid()).collect();
                    record_binary(&fields, &types)
                }
            }
            Encoding::PaddedChar(length) => {
                let mut text = display(values, row)?;
                let count = text.chars().count();
                text.extend(std::iter::repeat_n(' ', length.saturating_sub(count)));
                text.into_bytes()
            }
            Encoding::Array {
                element,
                element_field,
                element_type,
            } => {
                let mut elements = Vec::new();
                let shape = self.collect_elements(
                    element,
                    element_field,
                    values,
                    row,
                    format,
                    &mut elements,
                )?;
                if text {
                    array_text(&shape, &elements)
                } else {
                    array_binary(&shape, &elements, element_type)?
                }
            }
        }))
    }

    /// Walks the (nested) list at `row`, appending its elements in order; returns its shape.
    fn collect_elements(
        &mut self,
        element: &Encoding,
        element_field: &FieldRef,
        list: &ArrayRef,
        row: usize,
        format: FieldFormat,
        out: &mut Vec<Option<Vec<u8>>>,
    ) -> PgWireResult<Shape> {
        let items = list_value(list, row);
        let mut children = Vec::with_capacity(items.len());
        for index in 0..items.len() {
            if is_list(items.data_type()) {
                if items.is_null(index) {
                    children.push(Shape::Null);
                } else {
                    children.push(self.collect_elements(
                        element,
                        element_field,
                        &items,
                        index,
                        format,
                        out,
                    )?);
                }
            } else {
                out.push(self.element_bytes(element, element_field, &items, index, format)?);
                children.push(Shape::Element);
            }
        }
        Ok(Shape::List(children))
    }

    /// One value encoded by arrow-pg on its own, as the bytes it would put in a row.
    fn encode_alone(
        &mut self,
        field: &FieldRef,
        ty: &Type,
        values: &ArrayRef,
        row: usize,
        format: FieldFormat,
    ) -> PgWireResult<Option<Vec<u8>>> {
        if values.is_null(row) {
            return Ok(None);
        }
        let info = FieldInfo::new(field.name().clone(), None, None, ty.clone(), format)
            .with_format_options(self.options.clone());
        let scratch = self
            .scratch
            .get_or_insert_with(|| DataRowEncoder::new(Arc::new(vec![info.clone()])));
        encode_value(scratch, values, row, field, &info)?;
        let encoded = scratch.take_row();
        let data = encoded.data;
        if data.len() < 4 {
            return Ok(None);
        }
        let length = i32::from_be_bytes([data[0], data[1], data[2], data[3]]);
        Ok((length >= 0).then(|| data[4..].to_vec()))
    }
}

/// The elements of the list at `row` of `list`.
fn list_value(list: &ArrayRef, row: usize) -> ArrayRef {
    match list.data_type() {
        DataType::List(_) => list.as_list::<i32>().value(row),
        DataType::LargeList(_) => list.as_list::<i64>().value(row),
        DataType::FixedSizeList(..) => list.as_fixed_size_list().value(row),
        DataType::ListView(_) => list.as_list_view::<i32>().value(row),
        DataType::LargeListView(_) => list.as_list_view::<i64>().value(row),
        _ => list.slice(row, 1),
    }
}

/// The nesting of an array value.
#[derive(Debug, PartialEq)]
enum Shape {
    Element,
    Null,
    List(Vec<Shape>),
}

/// PostgreSQL's text for an array: `{1,2}`, `{{1,2},{3,4}}`, elements quoted where needed.
fn array_text(shape: &Shape, elements: &[Option<Vec<u8>>]) -> Vec<u8> {
    fn write(
        shape: &Shape,
        elements: &mut std::slice::Iter<'_, Option<Vec<u8>>>,
        out: &mut Vec<u8>,
    ) {
        match shape {
            Shape::Null => out.extend_from_slice(b"NULL"),
            Shape::Element => match elements.next() {
                Some(Some(bytes)) => quote_element(bytes, out),
                _ => out.extend_from_slice(b"NULL"),
            },
            Shape::List(children) => {
                out.push(b'{');
                for (index, child) in children.iter().enumerate() {
                    if index > 0 {
                        out.push(b',');
                    }
                    write(child, elements, out);
                }
                out.push(b'}');
            }
        }
    }
    let mut out = Vec::new();
    write(shape, &mut elements.iter(), &mut out);
    out
}

/// An array element as PostgreSQL's `array_out` writes it: in double quotes, with `"` and `\`
/// escaped, when it is empty, reads `NULL`, or holds a brace, comma, quote, backslash or space.
fn quote_element(text: &[u8], out: &mut Vec<u8>) {
    let needs_quotes = text.is_empty()
        || text.eq_ignore_ascii_case(b"NULL")
        || text.iter().any(|byte| {
            matches!(byte, b'{' | b'}' | b',' | b'"' | b'\\')
                || byte.is_ascii_whitespace()
                || *byte == 0x0b
        });
    if needs_quotes {
        push_quoted(text, Some(b'\\'), out);
    } else {
        out.extend_from_slice(text);
    }
}

/// `text` in double quotes, each `"` and `\` in it preceded by `escape`: a backslash in an
/// array element, the character itself (doubled) in a record field.
fn push_quoted(text: &[u8], escape: Option<u8>, out: &mut Vec<u8>) {
    out.push(b'"');
    for &byte in text {
        if matches!(byte, b'"' | b'\\') {
            out.push(escape.unwrap_or(byte));
        }
        out.push(byte);
    }
    out.push(b'"');
}

/// PostgreSQL's text for a record (`record_out`): the fields between parentheses, a NULL as
/// nothing, a field in double quotes (with `"` and `\` doubled) when it is empty or holds a
/// quote, backslash, parenthesis, comma or space.
fn record_text(fields: &[Option<Vec<u8>>]) -> Vec<u8> {
    let mut out = vec![b'('];
    for (index, field) in fields.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        let Some(text) = field else { continue };
        let needs_quotes = text.is_empty()
            || text.iter().any(|byte| {
                matches!(byte, b'"' | b'\\' | b'(' | b')' | b',') || byte.is_ascii_whitespace()
            });
        if needs_quotes {
            push_quoted(text, None, &mut out);
        } else {
            out.extend_from_slice(text);
        }
    }
    out.push(b')');
    out
}

/// PostgreSQL's binary record (`record_send`): the field count, then each field's type and
/// value.
fn record_binary(fields: &[Option<Vec<u8>>], types: &[u32]) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_i32(fields.len() as i32);
    for (field, oid) in fields.iter().zip(types) {
        out.put_u32(*oid);
        match field {
            Some(bytes) => {
                out.put_i32(bytes.len() as i32);
                out.put_slice(bytes);
            }
            None => out.put_i32(-1),
        }
    }
    out.to_vec()
}

/// PostgreSQL's binary array: dimensions, a NULL flag, the element type, then the elements.
fn array_binary(
    shape: &Shape,
    elements: &[Option<Vec<u8>>],
    element_type: &Type,
) -> PgWireResult<Vec<u8>> {
    let mut dimensions = Vec::new();
    let mut level = shape;
    while let Shape::List(children) = level {
        dimensions.push(children.len());
        match children.first() {
            Some(first) => level = first,
            None => break,
        }
    }
    if !rectangular(shape, &dimensions) {
        return Err(user_error(
            "2202E",
            "multidimensional arrays must have array expressions with matching dimensions"
                .to_owned(),
        ));
    }
    let empty = dimensions.contains(&0);
    let mut out = BytesMut::new();
    out.put_i32(if empty { 0 } else { dimensions.len() as i32 });
    out.put_i32(i32::from(elements.iter().any(Option::is_none)));
    out.put_u32(element_type.oid());
    if !empty {
        for dimension in &dimensions {
            out.put_i32(*dimension as i32);
            out.put_i32(1);
        }
        for element in elements {
            match element {
                Some(bytes) => {
                    out.put_i32(bytes.len() as i32);
                    out.put_slice(bytes);
                }
                None => out.put_i32(-1),
            }
        }
    }
    Ok(out.to_vec())
}

fn rectangular(shape: &Shape, dimensions: &[usize]) -> bool {
    match (shape, dimensions.split_first()) {
        (Shape::Element, None) => true,
        (Shape::List(children), Some((length, rest))) => {
            children.len() == *length && children.iter().all(|child| rectangular(child, rest))
        }
        _ => false,
    }
}

/// The value as DataFusion prints it.
fn display(values: &ArrayRef, row: usize) -> PgWireResult<String> {
    let options = ArrowFormatOptions::default();
    let formatter = ArrayFormatter::try_new(values.as_ref(), &options)
        .map_err(|err| PgWireError::ApiError(Box::new(err)))?;
    Ok(formatter.value(row).to_string())
}

/// A decimal's text with all its digits: the unscaled integer with the point put in by scale.
fn decimal_text(values: &ArrayRef, row: usize) -> PgWireResult<String> {
    let (unscaled, scale) = match values.data_type() {
        DataType::Decimal128(_, scale) => (
            values
                .as_primitive::<datafusion::arrow::datatypes::Decimal128Type>()
                .value(row)
                .to_string(),
            *scale,
        ),
        DataType::Decimal256(_, scale) => (
            values
                .as_primitive::<datafusion::arrow::datatypes::Decimal256Type>()
                .value(row)
                .to_string(),
            *scale,
        ),
        _ => return display(values, row),
    };
    let (sign, digits) = match unscaled.strip_prefix('-') {
        Some(digits) => ("-", digits),
        None => ("", unscaled.as_str()),
    };
    if scale <= 0 {
        let zeros = "0".repeat(usize::from(scale.unsigned_abs()));
        return Ok(format!("{sign}{digits}{zeros}"));
    }
    let scale = usize::from(scale.unsigned_abs());
    let digits = format!("{digits:0>width$}", width = scale + 1);
    let (whole, fraction) = digits.split_at(digits.len() - scale);
    Ok(format!("{sign}{whole}.{fraction}"))
}

/// PostgreSQL's binary `numeric` for a decimal's text (`-12.345`): base-10000 digits, the weight
/// of the first, the sign and the number of decimal digits.
fn numeric_binary(text: &str) -> Option<Vec<u8>> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    if !whole
        .bytes()
        .chain(fraction.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let scale = fraction.len();
    // Pad so that the whole part and the fraction each split into groups of four digits.
    let whole = whole.trim_start_matches('0');
    let whole_padded = format!("{}{whole}", "0".repeat((4 - whole.len() % 4) % 4));
    let fraction_padded = format!("{fraction}{}", "0".repeat((4 - fraction.len() % 4) % 4));
    let group = |chunk: &[u8]| -> i16 {
        chunk
            .iter()
            .fold(0i16, |acc, digit| acc * 10 + i16::from(digit - b'0'))
    };
    let mut digits: Vec<i16> = whole_padded.as_bytes().chunks(4).map(group).collect();
    let mut weight = digits.len() as i16 - 1;
    digits.extend(fraction_padded.as_bytes().chunks(4).map(group));
    while digits.first() == Some(&0) {
        digits.remove(0);
        weight -= 1;
    }
    while digits.last() == Some(&0) {
        digits.pop();
    }
    if digits.is_empty() {
        weight = 0;
    }
    let mut out = BytesMut::new();
    out.put_i16(digits.len() as i16);
    out.put_i16(weight);
    out.put_u16(if negative && !digits.is_empty() {
        0x4000
    } else {
        0
    });
    out.put_u16(scale as u16);
    for digit in digits {
        out.put_i16(digit);
    }
    Some(out.to_vec())
}

fn user_error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        code.to_owned(),
        message,
    )))
}

/// A value already in the wire format of its column.
#[derive(Debug)]
struct Encoded(Option<Vec<u8>>);

impl ToSql for Encoded {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        Ok(match &self.0 {
            Some(bytes) => {
                out.put_slice(bytes);
                IsNull::No
            }
            None => IsNull::Yes,
        })
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    postgres_types::to_sql_checked!();
}

impl ToSqlText for Encoded {
    fn to_sql_text(
        &self,
        ty: &Type,
        out: &mut BytesMut,
        _format_options: &FormatOptions,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.to_sql(ty, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_binary_matches_postgresql() {
        // SELECT numeric_send(12345.678): ndigits 3, weight 1, sign 0, dscale 3, 1 2345 6780.
        assert_eq!(
            numeric_binary("12345.678").unwrap(),
            [0, 3, 0, 1, 0, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1a, 0x7c]
        );
        // -0.0001: one digit 1 at weight -1.
        assert_eq!(
            numeric_binary("-0.0001").unwrap(),
            [0, 1, 0xff, 0xff, 0x40, 0, 0, 4, 0, 1]
        );
        assert_eq!(numeric_binary("0").unwrap(), [0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(numeric_binary("1e5").is_none());
    }

    #[test]
    fn decimals_keep_every_digit() {
        use datafusion::arrow::array::Decimal128Array;
        let values: ArrayRef = Arc::new(
            Decimal128Array::from(vec![
                15,
                -1,
                123_456_789_012_345_678_901_234_567_890_123_456_789,
            ])
            .with_precision_and_scale(38, 30)
            .unwrap(),
        );
        assert_eq!(
            decimal_text(&values, 0).unwrap(),
            "0.000000000000000000000000000015"
        );
        assert_eq!(
            decimal_text(&values, 1).unwrap(),
            "-0.000000000000000000000000000001"
        );
        assert_eq!(
            decimal_text(&values, 2).unwrap(),
            "123456789.012345678901234567890123456789"
        );
    }

    #[test]
    fn negative_scales_print_their_zeros() {
        use datafusion::arrow::array::Decimal128Array;
        // `1.23e3` and `-1e40` as DataFusion reads them with parse_float_as_decimal.
        let values: ArrayRef = Arc::new(
            Decimal128Array::from(vec![123, -1])
                .with_precision_and_scale(3, -1)
                .unwrap(),
        );
        assert_eq!(decimal_text(&values, 0).unwrap(), "1230");
        assert_eq!(decimal_text(&values, 1).unwrap(), "-10");
        let field: FieldRef = Arc::new(datafusion::arrow::datatypes::Field::new(
            "d",
            values.data_type().clone(),
            true,
        ));
        assert!(matches!(
            encoding_of(&field),
            (Encoding::Numeric, Type::NUMERIC)
        ));
    }

    #[test]
    fn array_text_quotes_as_array_out_does() {
        let shape = Shape::List(vec![
            Shape::List(vec![Shape::Element, Shape::Element]),
            Shape::List(vec![Shape::Element, Shape::Element]),
        ]);
        let elements = vec![
            Some(b"a b".to_vec()),
            None,
            Some(b"".to_vec()),
            Some(b"x\"y".to_vec()),
        ];
        assert_eq!(
            String::from_utf8(array_text(&shape, &elements)).unwrap(),
            r#"{{"a b",NULL},{"","x\"y"}}"#
        );
    }

    #[test]
    fn records_print_as_record_out_prints_them() {
        let fields = vec![
            Some(b"1".to_vec()),
            None,
            Some(b"a b".to_vec()),
            Some(Vec::new()),
        ];
        assert_eq!(
            String::from_utf8(record_text(&fields)).unwrap(),
            r#"(1,,"a b","")"#
        );
        assert_eq!(
            String::from_utf8(record_text(&[Some(br#"x"y"#.to_vec())])).unwrap(),
            r#"("x""y")"#
        );
    }

    #[test]
    fn binary_arrays_must_be_rectangular() {
        let ragged = Shape::List(vec![
            Shape::List(vec![Shape::Element, Shape::Element]),
            Shape::List(vec![Shape::Element]),
        ]);
        let elements = vec![Some(vec![1]), Some(vec![2]), Some(vec![3])];
        assert!(array_binary(&ragged, &elements, &Type::INT4).is_err());
        let square = Shape::List(vec![Shape::List(vec![Shape::Element])]);
        let bytes = array_binary(&square, &[Some(vec![0, 0, 0, 7])], &Type::INT4).unwrap();
        // 2 dimensions, no NULLs, int4, 1x1 from 1, then one 4-byte element.
        assert_eq!(
            bytes,
            [
                0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 23, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0,
                1, 0, 0, 0, 4, 0, 0, 0, 7
            ]
        );
    }
}
