//! SQL functions that Postgres clients call to learn what they are talking to.

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, BooleanArray, StringArray};
use datafusion::arrow::datatypes::{DataType, Int32Type};
use datafusion::logical_expr::{create_udf, ColumnarValue, Volatility};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;

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
    for function in semsql_udfs::aggregate_functions() {
        ctx.register_udaf(function.as_ref().clone());
    }
    // psql's \df filters on it; every function we have lives in a schema on the search path.
    ctx.register_udf(create_udf(
        "pg_function_is_visible",
        vec![DataType::Int32],
        DataType::Boolean,
        Volatility::Stable,
        Arc::new(|args| {
            let oids = ColumnarValue::values_to_arrays(args)?;
            let visible: BooleanArray = oids[0]
                .as_primitive::<Int32Type>()
                .iter()
                .map(|oid| oid.map(|_| true))
                .collect();
            Ok(ColumnarValue::Array(Arc::new(visible)))
        }),
    ));
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
