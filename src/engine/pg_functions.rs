//! PostgreSQL functions clients call that DataFusion lacks: `regexp_split_to_array` (and,
//! through it, `regexp_split_to_table`, which `server::compat` writes as
//! `unnest(regexp_split_to_array(...))`), `pg_typeof`, `like_escape` and `json_build_object`;
//! and [`INT2_LIST`], which reads the catalogs' `int2vector` and `int2[]` columns
//! (`pg_index.indkey`, `pg_constraint.conkey`, kept as text) as arrays for `unnest`, `ANY` and
//! `generate_subscripts` (see `server::compat`).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, ListBuilder, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, TimeUnit};
use datafusion::common::{exec_err, plan_err, DataFusionError, Result};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;

use crate::error::SemsqlError;

pub fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::new_from_impl(RegexpSplitToArray::new()));
    ctx.register_udf(ScalarUDF::new_from_impl(PgTypeof::new()));
    ctx.register_udf(ScalarUDF::new_from_impl(LikeEscape::new()));
    ctx.register_udf(ScalarUDF::new_from_impl(JsonBuildObject::new()));
    ctx.register_udf(ScalarUDF::new_from_impl(CatalogList::new(
        INT2_LIST,
        DataType::Int16,
    )));
    ctx.register_udf(ScalarUDF::new_from_impl(CatalogList::new(
        OID_LIST,
        DataType::Int64,
    )));
    ctx.register_udf(ScalarUDF::new_from_impl(ExpandArray::new()));
    ctx.register_udaf(AggregateUDF::new_from_impl(SingleValue::new()));
    ctx.register_udf(ScalarUDF::new_from_impl(SingleValueOf::new()));
}

/// The function `server::compat` reads a catalog's int2vector or int2[] text through.
pub const INT2_LIST: &str = "semsql_int2_list";
/// Likewise for an oidvector or oid[] (`pg_index.indclass`).
pub const OID_LIST: &str = "semsql_oid_list";

/// The function `server::compat` writes `information_schema._pg_expandarray(a)` with:
/// `unnest(semsql_expand_array(a))`.
pub const EXPAND_ARRAY: &str = "semsql_expand_array";

/// `semsql_expand_array(array)`: the array's elements as records `(x, n)`, each element with
/// its position from 1, which unnested is what PostgreSQL's `_pg_expandarray` returns
/// (pgjdbc's `getPrimaryKeys` and `getIndexInfo` read keys through it).
#[derive(Debug, PartialEq, Eq, Hash)]
struct ExpandArray {
    signature: Signature,
}

impl ExpandArray {
    fn new() -> Self {
        ExpandArray {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }

    fn record_fields(element: &DataType) -> datafusion::arrow::datatypes::Fields {
        vec![
            Field::new("x", element.clone(), true),
            Field::new("n", DataType::Int32, false),
        ]
        .into()
    }
}

impl ScalarUDFImpl for ExpandArray {
    fn name(&self) -> &str {
        EXPAND_ARRAY
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let DataType::List(element) = &arg_types[0] else {
            return plan_err!("_pg_expandarray takes an array, not {}", arg_types[0]);
        };
        Ok(DataType::List(Arc::new(Field::new_list_field(
            DataType::Struct(Self::record_fields(element.data_type())),
            true,
        ))))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use datafusion::arrow::array::{Int32Array, ListArray, StructArray};
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let lists = arrays[0].as_list::<i32>();
        let offsets = lists.offsets();
        let positions: Int32Array = offsets
            .windows(2)
            .flat_map(|pair| 1..=(pair[1] - pair[0]))
            .collect();
        // The values a list array holds past its first offset are not its elements.
        let first = offsets[0] as usize;
        let last = offsets[offsets.len() - 1] as usize;
        let values = lists.values().slice(first, last - first);
        let element = lists.value_type();
        let records = StructArray::try_new(
            Self::record_fields(&element),
            vec![values, Arc::new(positions)],
            None,
        )?;
        let rebased: Vec<i32> = offsets.iter().map(|offset| offset - offsets[0]).collect();
        let expanded = ListArray::try_new(
            Arc::new(Field::new_list_field(records.data_type().clone(), true)),
            datafusion::arrow::buffer::OffsetBuffer::new(rebased.into()),
            Arc::new(records),
            lists.nulls().cloned(),
        )?;
        scalar_if_constant(&args.args, Arc::new(expanded))
    }
}

/// A text-to-text function of `arity` text arguments, NULL in gives NULL out.
fn text_rows(
    args: &ScalarFunctionArgs,
    mut each: impl FnMut(&[&str]) -> Result<String>,
) -> Result<ColumnarValue> {
    let arrays = ColumnarValue::values_to_arrays(&args.args)?;
    let columns: Vec<_> = arrays
        .iter()
        .map(|array| array.as_string::<i32>())
        .collect();
    let mut builder = StringBuilder::new();
    let mut values = Vec::with_capacity(columns.len());
    for row in 0..args.number_rows {
        if columns.iter().any(|column| column.is_null(row)) {
            builder.append_null();
            continue;
        }
        values.clear();
        values.extend(columns.iter().map(|column| column.value(row)));
        builder.append_value(each(&values)?);
    }
    scalar_if_constant(&args.args, Arc::new(builder.finish()))
}

/// A one-row result as a scalar when every argument was one.
fn scalar_if_constant(args: &[ColumnarValue], array: ArrayRef) -> Result<ColumnarValue> {
    if args
        .iter()
        .all(|arg| matches!(arg, ColumnarValue::Scalar(_)))
    {
        return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
            &array, 0,
        )?));
    }
    Ok(ColumnarValue::Array(array))
}

/// `like_escape(pattern, escape)`: a LIKE pattern written with escape character `escape`,
/// rewritten for the default escape, backslash (`''` means no escape character), as
/// PostgreSQL's function does. `x LIKE p ESCAPE '/'` is planned as `x LIKE like_escape(p, '/')`
/// when `p` is not a constant (`server::compat`).
#[derive(Debug, PartialEq, Eq, Hash)]
struct LikeEscape {
    signature: Signature,
}

impl LikeEscape {
    fn new() -> Self {
        LikeEscape {
            signature: Signature::exact(
                vec![DataType::Utf8, DataType::Utf8],
                Volatility::Immutable,
            ),
        }
    }
}

/// `pattern` with escape character `escape` (none when `None`) respelled for backslash;
/// `None` when it ends in its escape character (PostgreSQL: 22025).
pub fn backslash_pattern(pattern: &str, escape: Option<char>) -> Option<String> {
    let mut out = String::with_capacity(pattern.len() + 4);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if Some(c) == escape {
            let escaped = chars.next()?;
            out.push('\\');
            out.push(escaped);
        } else if c == '\\' {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    Some(out)
}

impl ScalarUDFImpl for LikeEscape {
    fn name(&self) -> &str {
        "like_escape"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        text_rows(&args, |values| {
            let mut escape = values[1].chars();
            let escape_char = escape.next();
            if escape.next().is_some() {
                return Err(external(SemsqlError::InvalidEscapeSequence(
                    "invalid escape string".to_owned(),
                )));
            }
            if escape_char == Some('\\') {
                return Ok(values[0].to_owned());
            }
            backslash_pattern(values[0], escape_char).ok_or_else(|| {
                external(SemsqlError::InvalidEscapeSequence(
                    "LIKE pattern must not end with escape character".to_owned(),
                ))
            })
        })
    }
}

/// `json_build_object(key, value, ...)`: a JSON object text, keys as text, values as JSON
/// (numbers and booleans bare, NULL as `null`, anything else a string), spaced as PostgreSQL
/// prints it (`{"a" : 1, "b" : "x"}`).
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonBuildObject {
    signature: Signature,
}

impl JsonBuildObject {
    fn new() -> Self {
        JsonBuildObject {
            signature: Signature::variadic_any(Volatility::Stable),
        }
    }
}

fn json_value(value: &ScalarValue) -> Result<String> {
    if value.is_null() {
        return Ok("null".to_owned());
    }
    Ok(match value {
        ScalarValue::Boolean(Some(flag)) => flag.to_string(),
        ScalarValue::Int8(_)
        | ScalarValue::Int16(_)
        | ScalarValue::Int32(_)
        | ScalarValue::Int64(_)
        | ScalarValue::UInt8(_)
        | ScalarValue::UInt16(_)
        | ScalarValue::UInt32(_)
        | ScalarValue::UInt64(_)
        | ScalarValue::Decimal128(..) => value.to_string(),
        ScalarValue::Float32(Some(x)) if x.is_finite() => value.to_string(),
        ScalarValue::Float64(Some(x)) if x.is_finite() => value.to_string(),
        other => serde_json::Value::String(other.to_string()).to_string(),
    })
}

impl ScalarUDFImpl for JsonBuildObject {
    fn name(&self) -> &str {
        "json_build_object"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        if !args.len().is_multiple_of(2) {
            return plan_err!("argument list must have even number of elements");
        }
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let mut builder = StringBuilder::new();
        for row in 0..args.number_rows {
            let mut fields = Vec::with_capacity(arrays.len() / 2);
            for pair in arrays.chunks(2) {
                let key = ScalarValue::try_from_array(&pair[0], row)?;
                if key.is_null() {
                    return Err(external(SemsqlError::InvalidParameter(
                        "null value not allowed for object key".to_owned(),
                    )));
                }
                let key = match &key {
                    ScalarValue::Utf8(Some(text)) | ScalarValue::Utf8View(Some(text)) => {
                        text.clone()
                    }
                    other => other.to_string(),
                };
                let value = json_value(&ScalarValue::try_from_array(&pair[1], row)?)?;
                fields.push(format!("{} : {value}", serde_json::Value::String(key)));
            }
            builder.append_value(format!("{{{}}}", fields.join(", ")));
        }
        scalar_if_constant(&args.args, Arc::new(builder.finish()))
    }
}

/// `semsql_int2_list(text)` / `semsql_oid_list(text)`: a catalog's `int2vector` or
/// `oidvector` text (`1 2`) or `int2[]`/`oid[]` text (`{1,2}`) as a `smallint[]` / `bigint[]`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct CatalogList {
    name: &'static str,
    item: DataType,
    signature: Signature,
}

impl CatalogList {
    fn new(name: &'static str, item: DataType) -> Self {
        CatalogList {
            name,
            item,
            signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for CatalogList {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::List(Arc::new(Field::new(
            "item",
            self.item.clone(),
            true,
        ))))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let texts = arrays[0].as_string::<i32>();
        let mut builder = ListBuilder::new(datafusion::arrow::array::Int64Builder::new());
        let type_name = postgres_type_name(&self.item).unwrap_or_default();
        for row in 0..args.number_rows {
            if texts.is_null(row) {
                builder.append(false);
                continue;
            }
            let items = catalog_list_items(texts.value(row), &type_name).map_err(external)?;
            builder.values().append_slice(&items);
            builder.append(true);
        }
        let list: ArrayRef = Arc::new(builder.finish());
        let list = datafusion::arrow::compute::cast(&list, &self.return_type(&[])?)?;
        scalar_if_constant(&args.args, list)
    }
}

/// The numbers of a catalog vector kept as text: PostgreSQL's `{1,2}` and `1 2`, and
/// datafusion-pg-catalog's `[1, 2]`. `type_name` names the type in the error for a bad item.
pub fn catalog_list_items(
    text: &str,
    type_name: &str,
) -> std::result::Result<Vec<i64>, SemsqlError> {
    text.trim_matches(|c| matches!(c, '{' | '}' | '[' | ']'))
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse().map_err(|_| {
                SemsqlError::InvalidParameter(format!(
                    "invalid input syntax for type {type_name}: \"{item}\""
                ))
            })
        })
        .collect()
}

/// `regexp_split_to_array(string, pattern [, flags])`: the pieces of `string` between the
/// matches of `pattern`, as PostgreSQL splits them: a zero-length match at the start or end
/// of the string, or right after another match, does not split (so `''` splits into
/// characters). Flags: `i` (case-insensitive), `c` (case-sensitive, the default), `n`/`s`/`x`/`q`
/// as in PostgreSQL; others are 22023. The pattern is Rust's `regex` syntax, which covers the
/// common part of PostgreSQL's (no back-references); an invalid one is 2201B.
#[derive(Debug, PartialEq, Eq, Hash)]
struct RegexpSplitToArray {
    signature: Signature,
}

impl RegexpSplitToArray {
    fn new() -> Self {
        RegexpSplitToArray {
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Utf8]),
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Utf8, DataType::Utf8]),
                ],
                Volatility::Immutable,
            ),
        }
    }
}

fn external(err: SemsqlError) -> DataFusionError {
    DataFusionError::External(Box::new(err))
}

/// `pattern` compiled with PostgreSQL's `flags`.
fn compile(pattern: &str, flags: &str) -> Result<regex::Regex> {
    // `q`: the pattern is a literal string.
    let literal;
    let pattern = if flags.contains('q') {
        literal = regex::escape(pattern);
        literal.as_str()
    } else {
        pattern
    };
    let mut builder = regex::RegexBuilder::new(pattern);
    for flag in flags.chars() {
        match flag {
            'i' => builder.case_insensitive(true),
            'c' => builder.case_insensitive(false),
            // `n`: newline-sensitive; `.` and `[^...]` do not match a newline, `^`/`$` match
            // at line ends.
            'n' | 'm' => builder.multi_line(true).dot_matches_new_line(false),
            's' => builder.dot_matches_new_line(true),
            'x' => builder.ignore_whitespace(true),
            'q' => &mut builder,
            'g' => {
                return Err(external(SemsqlError::InvalidParameter(
                    "regexp_split_to_array() does not support the \"global\" option".to_owned(),
                )))
            }
            other => {
                return Err(external(SemsqlError::InvalidParameter(format!(
                    "invalid regular expression option: \"{other}\""
                ))))
            }
        };
    }
    builder.build().map_err(|err| {
        external(SemsqlError::InvalidRegularExpression(format!(
            "invalid regular expression: {err}"
        )))
    })
}

/// PostgreSQL's split (see [`RegexpSplitToArray`]).
pub fn split<'a>(text: &'a str, regex: &regex::Regex) -> Vec<&'a str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut previous_end = None;
    for found in regex.find_iter(text) {
        let empty = found.start() == found.end();
        if empty
            && (found.start() == 0
                || found.start() == text.len()
                || Some(found.start()) == previous_end)
        {
            continue;
        }
        pieces.push(&text[start..found.start()]);
        start = found.end();
        previous_end = Some(found.end());
    }
    pieces.push(&text[start..]);
    pieces
}

impl ScalarUDFImpl for RegexpSplitToArray {
    fn name(&self) -> &str {
        "regexp_split_to_array"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::List(Arc::new(Field::new(
            "item",
            DataType::Utf8,
            true,
        ))))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let texts = arrays[0].as_string::<i32>();
        let patterns = arrays[1].as_string::<i32>();
        let flags = arrays.get(2).map(|array| array.as_string::<i32>());
        let mut compiled: Option<(String, String, regex::Regex)> = None;
        let mut builder = ListBuilder::new(StringBuilder::new());
        for row in 0..rows {
            let flag = flags.map(|flags| (!flags.is_null(row)).then(|| flags.value(row)));
            if texts.is_null(row) || patterns.is_null(row) || flag == Some(None) {
                builder.append(false);
                continue;
            }
            let (pattern, flag) = (patterns.value(row), flag.flatten().unwrap_or(""));
            let reuse = matches!(&compiled, Some((p, f, _)) if p == pattern && f == flag);
            if !reuse {
                compiled = Some((pattern.to_owned(), flag.to_owned(), compile(pattern, flag)?));
            }
            let regex = &compiled.as_ref().expect("compiled above").2;
            for piece in split(texts.value(row), regex) {
                builder.values().append_value(piece);
            }
            builder.append(true);
        }
        scalar_if_constant(&args.args, Arc::new(builder.finish()))
    }
}

/// `pg_typeof(value)`: the PostgreSQL name of the value's type (`integer`, `text`,
/// `timestamp without time zone`, `numeric`, `integer[]`, ...).
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgTypeof {
    signature: Signature,
}

impl PgTypeof {
    fn new() -> Self {
        PgTypeof {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

/// PostgreSQL's name for the type an Arrow type stands for.
pub fn postgres_type_name(data_type: &DataType) -> Result<String> {
    Ok(match data_type {
        DataType::Null => "unknown".to_owned(),
        DataType::Boolean => "boolean".to_owned(),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "smallint".to_owned(),
        DataType::Int32 | DataType::UInt16 => "integer".to_owned(),
        DataType::Int64 | DataType::UInt32 => "bigint".to_owned(),
        DataType::UInt64
        | DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => "numeric".to_owned(),
        DataType::Float16 | DataType::Float32 => "real".to_owned(),
        DataType::Float64 => "double precision".to_owned(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text".to_owned(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "bytea".to_owned(),
        DataType::FixedSizeBinary(16) => "uuid".to_owned(),
        DataType::Date32 | DataType::Date64 => "date".to_owned(),
        DataType::Time32(_) | DataType::Time64(_) => "time without time zone".to_owned(),
        DataType::Timestamp(_, None) => "timestamp without time zone".to_owned(),
        DataType::Timestamp(_, Some(_)) => "timestamp with time zone".to_owned(),
        DataType::Interval(_) | DataType::Duration(TimeUnit::Microsecond) => "interval".to_owned(),
        DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _) => {
            format!("{}[]", postgres_type_name(item.data_type())?)
        }
        DataType::Struct(_) => "record".to_owned(),
        other => return plan_err!("pg_typeof does not know a PostgreSQL name for {other}"),
    })
}

impl ScalarUDFImpl for PgTypeof {
    fn name(&self) -> &str {
        "pg_typeof"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let Some(field) = args.arg_fields.first() else {
            return exec_err!("pg_typeof takes one argument");
        };
        // The types semsql marks on a text column (see `character_types`, `uuid_type`).
        let name = if super::uuid_type::is_uuid(field) {
            "uuid".to_owned()
        } else if super::character_types::char_length(field).is_some() {
            "character".to_owned()
        } else if super::character_types::varchar_length(field).is_some() {
            "character varying".to_owned()
        } else {
            postgres_type_name(field.data_type())?
        };
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(name))))
    }
}

/// The aggregate `server::compat` wraps a scalar subquery's one column in, and the function
/// it wraps the subquery in (see [`SingleValue`]).
pub const SINGLE_VALUE: &str = "semsql_single_value";
pub const SINGLE_VALUE_OF: &str = "semsql_single_value_of";

/// `semsql_single_value(x)`: the value of a group's only row (NULL for none) with a flag
/// saying whether the group had more than one; `semsql_single_value_of(subquery)` unwraps it,
/// failing with PostgreSQL's 21000 `more than one row returned by a subquery used as an
/// expression` when the flag is set.
///
/// DataFusion plans a correlated scalar subquery (`(SELECT t.b FROM t WHERE t.a = o.a)`) only
/// when its column is an aggregate, and it computes that aggregate for every key of the inner
/// table before joining; so the aggregate only marks a key with many rows, and the error comes
/// when an outer row actually meets that key, as in PostgreSQL.
#[derive(Debug, PartialEq, Eq, Hash)]
struct SingleValue {
    signature: Signature,
}

impl SingleValue {
    fn new() -> Self {
        SingleValue {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

fn more_than_one_row() -> DataFusionError {
    external(SemsqlError::CardinalityViolation(
        "more than one row returned by a subquery used as an expression".to_owned(),
    ))
}

/// The aggregate's result: the value and whether there were many.
fn single_value_fields(value: &DataType) -> datafusion::arrow::datatypes::Fields {
    vec![
        Field::new("value", value.clone(), true),
        Field::new("many", DataType::Boolean, false),
    ]
    .into()
}

impl AggregateUDFImpl for SingleValue {
    fn name(&self) -> &str {
        SINGLE_VALUE
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Struct(single_value_fields(&args[0])))
    }
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(
                "value",
                args.input_fields[0].data_type().clone(),
                true,
            )),
            Arc::new(Field::new("rows", DataType::UInt64, true)),
        ])
    }
    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let value_type = args.exprs[0].data_type(args.schema)?;
        Ok(Box::new(SingleValueAccumulator {
            value: ScalarValue::try_from(&value_type)?,
            value_type,
            rows: 0,
        }))
    }
}

/// `semsql_single_value_of(struct)`: see [`SingleValue`].
#[derive(Debug, PartialEq, Eq, Hash)]
struct SingleValueOf {
    signature: Signature,
}

impl SingleValueOf {
    fn new() -> Self {
        SingleValueOf {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for SingleValueOf {
    fn name(&self) -> &str {
        SINGLE_VALUE_OF
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        match &args[0] {
            DataType::Struct(fields) if fields.len() == 2 => Ok(fields[0].data_type().clone()),
            other => plan_err!("{SINGLE_VALUE_OF} takes {SINGLE_VALUE}'s result, not {other}"),
        }
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let results = arrays[0].as_struct();
        let many = results.column(1).as_boolean();
        for row in 0..results.len() {
            if results.is_valid(row) && many.is_valid(row) && many.value(row) {
                return Err(more_than_one_row());
            }
        }
        let values = results.column(0).clone();
        // A missing row (the outer join found no key) is NULL.
        let values = match results.nulls() {
            Some(nulls) => datafusion::arrow::compute::kernels::nullif::nullif(
                &values,
                &datafusion::arrow::array::BooleanArray::new(nulls.inner().clone(), None)
                    .iter()
                    .map(|valid| valid.map(|valid| !valid))
                    .collect(),
            )?,
            None => values,
        };
        scalar_if_constant(&args.args, values)
    }
}

#[derive(Debug)]
struct SingleValueAccumulator {
    value: ScalarValue,
    value_type: DataType,
    rows: u64,
}

impl SingleValueAccumulator {
    fn add(&mut self, value: ScalarValue, rows: u64) {
        if rows == 0 {
            return;
        }
        self.rows += rows;
        if self.rows == 1 {
            self.value = value;
        }
    }
}

impl Accumulator for SingleValueAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        for row in 0..values[0].len() {
            self.add(ScalarValue::try_from_array(&values[0], row)?, 1);
        }
        Ok(())
    }
    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let rows = states[1].as_primitive::<datafusion::arrow::datatypes::UInt64Type>();
        for row in 0..states[0].len() {
            let count = if rows.is_null(row) {
                0
            } else {
                rows.value(row)
            };
            self.add(ScalarValue::try_from_array(&states[0], row)?, count);
        }
        Ok(())
    }
    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![
            self.value.clone(),
            ScalarValue::UInt64(Some(self.rows)),
        ])
    }
    fn evaluate(&mut self) -> Result<ScalarValue> {
        let many = self.rows > 1;
        let value = if many {
            ScalarValue::try_from(&self.value_type)?
        } else {
            self.value.clone()
        };
        let fields = single_value_fields(&self.value_type);
        datafusion::common::scalar::ScalarStructBuilder::new()
            .with_scalar(fields[0].as_ref().clone(), value)
            .with_scalar(fields[1].as_ref().clone(), ScalarValue::Boolean(Some(many)))
            .build()
    }
    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.value.size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(text: &str, pattern: &str) -> Vec<String> {
        split(text, &compile(pattern, "").unwrap())
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn splits_as_postgres_splits() {
        // Each was answered by PostgreSQL 15's regexp_split_to_array.
        assert_eq!(pieces("a,b,,c", ","), ["a", "b", "", "c"]);
        assert_eq!(pieces("hello", ""), ["h", "e", "l", "l", "o"]);
        assert_eq!(
            pieces("the quick  fox", "\\s*"),
            ["t", "h", "e", "q", "u", "i", "c", "k", "f", "o", "x"]
        );
        assert_eq!(pieces("", ","), [""]);
        assert_eq!(pieces(",a,", ","), ["", "a", ""]);
        assert!(compile("(", "").is_err());
        assert!(compile("a", "z").is_err());
        assert_eq!(split("a.b", &compile(".", "q").unwrap()), ["a", "b"]);
    }

    #[test]
    fn like_patterns_are_respelled_for_backslash() {
        assert_eq!(
            backslash_pattern("a/_b/%c/\\d%", Some('/')).as_deref(),
            Some("a\\_b\\%c\\\\d%")
        );
        assert_eq!(backslash_pattern("a\\b", None).as_deref(), Some("a\\\\b"));
        assert_eq!(backslash_pattern("ends/", Some('/')), None);
    }

    #[test]
    fn json_values_are_postgres_json() {
        assert_eq!(json_value(&ScalarValue::Int64(Some(3))).unwrap(), "3");
        assert_eq!(
            json_value(&ScalarValue::Boolean(Some(true))).unwrap(),
            "true"
        );
        assert_eq!(json_value(&ScalarValue::Utf8(None)).unwrap(), "null");
        assert_eq!(
            json_value(&ScalarValue::Utf8(Some("a\"b".to_owned()))).unwrap(),
            "\"a\\\"b\""
        );
    }

    #[test]
    fn type_names_are_postgres_names() {
        assert_eq!(postgres_type_name(&DataType::Int32).unwrap(), "integer");
        assert_eq!(
            postgres_type_name(&DataType::Timestamp(TimeUnit::Microsecond, None)).unwrap(),
            "timestamp without time zone"
        );
        assert_eq!(
            postgres_type_name(&DataType::List(Arc::new(Field::new(
                "item",
                DataType::Int64,
                true
            ))))
            .unwrap(),
            "bigint[]"
        );
    }
}
