//! SQL functions that Postgres clients call to learn what they are talking to.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, BooleanArray, Int32Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{
    create_udf, ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;

use crate::error::SemsqlError;

/// The PostgreSQL release whose behaviour and catalogs we emulate.
pub const POSTGRES_VERSION: &str = "15.18";
/// `server_version_num` for [`POSTGRES_VERSION`].
pub const POSTGRES_VERSION_NUM: &str = "150018";

/// What `SELECT version()` answers: drivers such as SQLAlchemy parse the leading
/// `PostgreSQL <major>.<minor>`, so it comes first and our name follows.
pub fn version_string() -> String {
    format!(
        "PostgreSQL {POSTGRES_VERSION} (semsql {}) on {}-{}, compiled by rustc, 64-bit",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        std::env::consts::OS
    )
}

pub fn register(ctx: &SessionContext, runtime: Arc<crate::llm::Runtime>) {
    for function in semsql_udfs::functions(runtime) {
        // Ours replace DataFusion's functions of the same name (`inner_product`,
        // `cosine_distance`) with their aliases too: sessions are rebuilt from the function
        // list, where a surviving alias (`dot_product`) would bring DataFusion's back under
        // the name, at random.
        ctx.deregister_udf(function.name());
        ctx.register_udf(function.as_ref().clone());
    }
    super::pg_functions::register(ctx);
    ctx.register_udf(super::argument_types::ArgumentTypes::udf());
    ctx.register_udf(ScalarUDF::new_from_impl(
        super::gen_random_uuid::GenRandomUuid::default(),
    ));
    ctx.register_udf(ScalarUDF::new_from_impl(
        super::any_equal::AnyEqual::default(),
    ));
    if let Some(catalog) = ctx.catalog(super::CATALOG) {
        ctx.register_udf(ScalarUDF::new_from_impl(
            super::pg_indexes::PgGetIndexdef::new(catalog.clone()),
        ));
        ctx.register_udf(ScalarUDF::new_from_impl(
            super::pg_indexes::PgGetIndexdef::constraintdef(catalog),
        ));
    }
    for function in semsql_udfs::aggregate_functions() {
        ctx.register_udaf(function.as_ref().clone());
    }
    // psql's \df filters on it; every function we have lives in a schema on the search path.
    ctx.register_udf(always_visible("pg_function_is_visible"));
    for function in super::settings_functions::functions() {
        ctx.register_udf(function);
    }
    // SQLAlchemy's column reflection filters on it; every type lives in pg_catalog, which is
    // always on the search path.
    ctx.register_udf(always_visible("pg_type_is_visible"));
    // SQLAlchemy's column reflection; semsql has only pg_catalog's collations.
    ctx.register_udf(always_visible("pg_collation_is_visible"));
    // SQLAlchemy's psycopg dialect asks for `to_regtype('hstore')` when it connects, and
    // psycopg's `TypeInfo.fetch` (pgvector-python's `register_vector`) compares it with
    // `pg_type.oid`: the answer is the type's OID, as `regtype` is one (printed as a number
    // here, where PostgreSQL prints the name).
    ctx.register_udf(create_udf(
        "to_regtype",
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Stable,
        Arc::new(|args| {
            let names = ColumnarValue::values_to_arrays(args)?;
            let names = datafusion::arrow::compute::cast(&names[0], &DataType::Utf8)?;
            let types: Int32Array = names
                .as_string::<i32>()
                .iter()
                .map(|name| name.and_then(regtype_oid))
                .collect();
            Ok(ColumnarValue::Array(Arc::new(types)))
        }),
    ));
    // `pg_get_expr(adbin, relid [, pretty])`: semsql's catalogs keep an expression
    // (`pg_attrdef.adbin`) as its SQL already, where PostgreSQL keeps a node tree.
    ctx.register_udf(ScalarUDF::new_from_impl(StoredExpression {
        signature: Signature::one_of(
            (2..=3).map(TypeSignature::Any).collect(),
            Volatility::Stable,
        ),
    }));
    // semsql has no sequences (so no serial columns) and no COMMENT ON: PostgreSQL answers
    // NULL for a column without a sequence and an object without a comment.
    for (name, arity) in [
        ("pg_get_serial_sequence", 2..=2),
        ("obj_description", 1..=2),
        ("col_description", 2..=2),
    ] {
        ctx.register_udf(ScalarUDF::new_from_impl(NoneRecorded {
            name,
            signature: Signature::one_of(
                arity.map(TypeSignature::Any).collect(),
                Volatility::Stable,
            ),
        }));
    }
    // psql's \df shows these; our pg_proc carries no argument or result types to describe.
    for name in ["pg_get_function_result", "pg_get_function_arguments"] {
        ctx.register_udf(create_udf(
            name,
            vec![DataType::Int32],
            DataType::Utf8,
            Volatility::Stable,
            Arc::new(|args| {
                let oids = ColumnarValue::values_to_arrays(args)?;
                Ok(ColumnarValue::Array(Arc::new(StringArray::new_null(
                    oids[0].len(),
                ))))
            }),
        ));
    }
    if let Ok(inner) = ctx.udf("format_type") {
        ctx.register_udf(ScalarUDF::new_from_impl(RegtypeNames {
            format_type: inner.clone(),
            signature: Signature::exact(vec![DataType::Utf8], Volatility::Stable),
        }));
        ctx.register_udf(ScalarUDF::new_from_impl(FormatType {
            signature: inner.signature().clone(),
            inner,
        }));
    }
    let version = version_string();
    ctx.register_udf(create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |_args| {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
                version.clone(),
            ))))
        }),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn version_leads_with_postgresql() {
        let ctx = SessionContext::new();
        let runtime = crate::llm::Runtime::open(None, &Default::default()).unwrap();
        register(&ctx, Arc::new(runtime));
        let batches = ctx
            .sql("SELECT version()")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        assert!(text.contains("PostgreSQL 15.18 (semsql"), "{text}");
    }
}

/// `name(oid) -> bool` answering true for every oid: what psql and SQLAlchemy filter on is
/// always on the search path in semsql.
fn always_visible(name: &str) -> ScalarUDF {
    create_udf(
        name,
        vec![DataType::Int64],
        DataType::Boolean,
        Volatility::Stable,
        Arc::new(|args| {
            let oids = ColumnarValue::values_to_arrays(args)?;
            let visible: BooleanArray = oids[0]
                .as_primitive::<Int64Type>()
                .iter()
                .map(|oid| oid.map(|_| true))
                .collect();
            Ok(ColumnarValue::Array(Arc::new(visible)))
        }),
    )
}

/// The OID of a type semsql has, by any of PostgreSQL's names for it; `None` for any other.
fn regtype_oid(name: &str) -> Option<i32> {
    let lower = name.trim().to_ascii_lowercase();
    let lower = lower.strip_prefix("pg_catalog.").unwrap_or(&lower);
    Some(match lower {
        "bool" | "boolean" => 16,
        "bytea" => 17,
        "name" => 19,
        "int8" | "bigint" => 20,
        "int2" | "smallint" => 21,
        "int4" | "int" | "integer" => 23,
        "text" => 25,
        "oid" => 26,
        "json" => 114,
        "float4" | "real" => 700,
        "float8" | "double precision" => 701,
        "bpchar" | "char" | "character" => 1042,
        "varchar" | "character varying" => 1043,
        "date" => 1082,
        "time" | "time without time zone" => 1083,
        "timestamp" | "timestamp without time zone" => 1114,
        "timestamptz" | "timestamp with time zone" => 1184,
        "interval" => 1186,
        "numeric" | "decimal" => 1700,
        "bit" => 1560,
        "varbit" | "bit varying" => 1562,
        "uuid" => 2950,
        "jsonb" => 3802,
        "vector" | "public.vector" => {
            datafusion_postgres::arrow_pg::datatypes::PG_VECTOR_TYPE_OID as i32
        }
        _ => return None,
    })
}

/// `format_type(oid, typmod)` as datafusion-pg-catalog answers it, and pgvector's for
/// `vector` (`vector`, or `vector(3)` with a dimension count as its typmod), which it answers
/// `oid(16385)`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct FormatType {
    inner: Arc<ScalarUDF>,
    signature: Signature,
}

impl ScalarUDFImpl for FormatType {
    fn name(&self) -> &str {
        "format_type"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let rows = args.number_rows;
        let values: Vec<ColumnarValue> = args.args.clone();
        let names = self.inner.invoke_with_args(args)?.into_array(rows)?;
        let names = names.as_string::<i32>();
        let as_int64 = |value: &ColumnarValue| -> datafusion::error::Result<_> {
            let array = value.to_array(rows)?;
            Ok(datafusion::arrow::compute::cast(&array, &DataType::Int64)?)
        };
        let oids = as_int64(&values[0])?;
        let oids = oids.as_primitive::<Int64Type>();
        let modifiers = match values.get(1) {
            Some(value) => Some(as_int64(value)?),
            None => None,
        };
        let vector = i64::from(datafusion_postgres::arrow_pg::datatypes::PG_VECTOR_TYPE_OID);
        let formatted: StringArray = (0..rows)
            .map(|row| {
                if oids.is_valid(row) && oids.value(row) == vector {
                    let dimensions = modifiers
                        .as_ref()
                        .map(|m| m.as_primitive::<Int64Type>())
                        .filter(|m| m.is_valid(row) && m.value(row) > 0)
                        .map(|m| m.value(row));
                    Some(match dimensions {
                        Some(n) => format!("vector({n})"),
                        None => "vector".to_owned(),
                    })
                } else {
                    names.is_valid(row).then(|| names.value(row).to_owned())
                }
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(formatted)))
    }
}

/// The function `server::compat` writes for `x::regtype[]` of a catalog OID vector
/// (pgcli's function list reads `proargtypes::regtype[]`): the types' names, as a
/// `regtype[]` prints (`{integer,text}`), from `format_type`. semsql keeps such columns as
/// text (`23 25`, `[2276]`); NULL stays NULL.
pub const REGTYPE_NAMES: &str = "semsql_regtype_names";

#[derive(Debug, PartialEq, Eq, Hash)]
struct RegtypeNames {
    format_type: Arc<ScalarUDF>,
    signature: Signature,
}

impl ScalarUDFImpl for RegtypeNames {
    fn name(&self) -> &str {
        REGTYPE_NAMES
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::new_list(DataType::Utf8, true))
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        use datafusion::arrow::array::ListArray;
        use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
        use datafusion::arrow::datatypes::Field;

        let texts = args.args[0].to_array(args.number_rows)?;
        let texts = datafusion::arrow::compute::cast(&texts, &DataType::Utf8)?;
        let texts = texts.as_string::<i32>();
        let mut oids: Vec<i32> = Vec::new();
        let mut lengths: Vec<usize> = Vec::with_capacity(texts.len());
        for text in texts.iter() {
            let items = super::pg_functions::catalog_list_items(text.unwrap_or_default(), "oid")
                .map_err(SemsqlError::into_datafusion)?;
            lengths.push(items.len());
            oids.extend(items.into_iter().map(|oid| oid as i32));
        }
        let count = oids.len();
        let names = self.format_type.invoke_with_args(ScalarFunctionArgs {
            args: vec![
                ColumnarValue::Array(Arc::new(Int32Array::from(oids))),
                ColumnarValue::Scalar(ScalarValue::Int32(None)),
            ],
            arg_fields: vec![
                Arc::new(Field::new("oid", DataType::Int32, true)),
                Arc::new(Field::new("typmod", DataType::Int32, true)),
            ],
            number_rows: count,
            return_field: Arc::new(Field::new("format_type", DataType::Utf8, true)),
            config_options: args.config_options.clone(),
        })?;
        let names = datafusion::arrow::compute::cast(&names.into_array(count)?, &DataType::Utf8)?;
        let names: StringArray = names.as_string::<i32>().clone();
        let list = ListArray::try_new(
            Arc::new(Field::new_list_field(DataType::Utf8, true)),
            OffsetBuffer::from_lengths(lengths),
            Arc::new(names),
            Some(NullBuffer::from(
                texts.iter().map(|text| text.is_some()).collect::<Vec<_>>(),
            )),
        )?;
        Ok(ColumnarValue::Array(Arc::new(list)))
    }
}

/// `pg_get_expr`: the stored expression's text, as it is.
#[derive(Debug, PartialEq, Eq, Hash)]
struct StoredExpression {
    signature: Signature,
}

impl ScalarUDFImpl for StoredExpression {
    fn name(&self) -> &str {
        "pg_get_expr"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        Ok(match &args.args[0] {
            ColumnarValue::Scalar(stored) => {
                ColumnarValue::Scalar(stored.cast_to(&DataType::Utf8)?)
            }
            ColumnarValue::Array(stored) => {
                ColumnarValue::Array(datafusion::arrow::compute::cast(stored, &DataType::Utf8)?)
            }
        })
    }
}

/// A catalog function whose answer is NULL because semsql keeps nothing it could describe
/// (see `register`).
#[derive(Debug, PartialEq, Eq, Hash)]
struct NoneRecorded {
    name: &'static str,
    signature: Signature,
}

impl ScalarUDFImpl for NoneRecorded {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        Ok(ColumnarValue::Array(Arc::new(StringArray::new_null(
            args.number_rows,
        ))))
    }
}

/// `current_user`, `session_user`, `user` and `current_role`: the role the connection logged
/// in as (semsql has no `SET ROLE`, so they agree). `pg_has_role(role, 'member')`-style checks
/// go through `pg_has_role`.
pub fn register_role_functions(
    ctx: &SessionContext,
    role: &str,
    access: Arc<crate::access::Access>,
) {
    for name in ["current_user", "session_user", "user", "current_role"] {
        let role = role.to_owned();
        ctx.register_udf(create_udf(
            name,
            vec![],
            DataType::Utf8,
            Volatility::Stable,
            Arc::new(move |_| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(role.clone()))))),
        ));
    }
    let me = role.to_owned();
    ctx.register_udf(create_udf(
        "pg_has_role",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Boolean,
        Volatility::Stable,
        Arc::new(move |args| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let roles = datafusion::arrow::compute::cast(&arrays[0], &DataType::Utf8)?;
            let answers: BooleanArray = roles
                .as_string::<i32>()
                .iter()
                .map(|group| group.map(|group| access.is_member_of(&me, group)))
                .collect();
            Ok(ColumnarValue::Array(Arc::new(answers)))
        }),
    ));
}
