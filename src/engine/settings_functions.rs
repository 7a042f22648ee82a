//! `current_setting(name [, missing_ok])` and `set_config(name, value, is_local)`, as drivers
//! call them at start-up (asyncpg reads and sets `jit`, SQLAlchemy reads
//! `standard_conforming_strings`).
//!
//! A setting is one of the server's fixed values (what PostgreSQL 15 reports and semsql
//! behaves as), or one of the session's DataFusion and `semsql.*` options. The settings that
//! `SET` keeps per connection outside DataFusion's options (`search_path`,
//! `application_name`, `DateStyle`, ...) are out of a function's reach: asking for one is a
//! clear 0A000 pointing at `SHOW`, never a stale default. `set_config` can only confirm a
//! value a setting already has (asyncpg's `set_config('jit', 'off', false)`); changing one is
//! `SET`'s job, and asking `set_config` to is 0A000.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::{exec_err, DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

use super::functions::{POSTGRES_VERSION, POSTGRES_VERSION_NUM};

/// Server-wide values PostgreSQL reports that no session changes in semsql.
fn fixed_setting(name: &str) -> Option<&'static str> {
    Some(match name {
        "server_version" => POSTGRES_VERSION,
        "server_version_num" => POSTGRES_VERSION_NUM,
        "server_encoding" | "client_encoding" => "UTF8",
        "standard_conforming_strings" | "integer_datetimes" => "on",
        "max_identifier_length" => "63",
        "block_size" => "8192",
        "lc_collate" | "lc_ctype" => "C",
        // semsql compiles no query code at run time.
        "jit" => "off",
        "default_transaction_read_only" | "transaction_read_only" => "off",
        // What `pg_class.relam` says of tables (SQLAlchemy's reflection compares with it).
        "default_table_access_method" => "heap",
        _ => return None,
    })
}

/// `is_superuser` for the session's role (`on` for a session without one: trust with no
/// configured users, where every name is a superuser).
pub fn is_superuser(options: &ConfigOptions) -> &'static str {
    match &semsql_udfs::lm::LmSettings::of(options).caller {
        Some(caller) if !caller.is_superuser() => "off",
        _ => "on",
    }
}

/// Settings kept by `SET` outside the session's options (see the module docs).
const CONNECTION_SETTINGS: &[&str] = &[
    "search_path",
    "application_name",
    "datestyle",
    "intervalstyle",
    "bytea_output",
    "extra_float_digits",
    "statement_timeout",
];

fn not_supported(message: String) -> DataFusionError {
    DataFusionError::External(Box::new(crate::error::SemsqlError::NotSupported(message)))
}

/// The value of `name` in this session, `Ok(None)` when there is no such setting.
fn setting(options: &ConfigOptions, name: &str) -> Result<Option<String>> {
    let lower = name.to_ascii_lowercase();
    if let Some(value) = fixed_setting(&lower) {
        return Ok(Some(value.to_owned()));
    }
    if lower == "is_superuser" {
        return Ok(Some(is_superuser(options).to_owned()));
    }
    if lower == "timezone" {
        return Ok(Some(
            options
                .execution
                .time_zone
                .clone()
                .unwrap_or_else(|| "UTC".to_owned()),
        ));
    }
    if CONNECTION_SETTINGS.contains(&lower.as_str()) {
        return Err(not_supported(format!(
            "current_setting cannot read {name} in semsql; use SHOW {name}"
        )));
    }
    Ok(options
        .entries()
        .into_iter()
        .find(|entry| entry.key.eq_ignore_ascii_case(name))
        .map(|entry| entry.value.unwrap_or_default()))
}

fn unrecognized(name: &str) -> DataFusionError {
    DataFusionError::External(Box::new(crate::error::SemsqlError::UnrecognizedSetting(
        name.to_owned(),
    )))
}

fn text_column(args: &[Arc<dyn Array>], position: usize) -> Result<Vec<Option<String>>> {
    let Some(array) = args.get(position) else {
        return exec_err!("missing argument {}", position + 1);
    };
    let array = datafusion::arrow::compute::cast(array, &DataType::Utf8)?;
    Ok(array
        .as_string::<i32>()
        .iter()
        .map(|value| value.map(str::to_owned))
        .collect())
}

/// `current_setting(name text [, missing_ok boolean]) → text`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct CurrentSetting {
    signature: Signature,
}

impl ScalarUDFImpl for CurrentSetting {
    fn name(&self) -> &str {
        "current_setting"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let names = text_column(&arrays, 0)?;
        let missing_ok: Vec<bool> = match arrays.get(1) {
            Some(flags) => flags
                .as_boolean()
                .iter()
                .map(|flag| flag.unwrap_or(false))
                .collect(),
            None => vec![false; names.len()],
        };
        let mut values = Vec::with_capacity(names.len());
        for (name, missing_ok) in names.iter().zip(missing_ok) {
            let Some(name) = name else {
                values.push(None);
                continue;
            };
            match setting(&args.config_options, name)? {
                Some(value) => values.push(Some(value)),
                None if missing_ok => values.push(None),
                None => return Err(unrecognized(name)),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(StringArray::from(values))))
    }
}

/// `set_config(name text, value text, is_local boolean) → text`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct SetConfig {
    signature: Signature,
}

impl ScalarUDFImpl for SetConfig {
    fn name(&self) -> &str {
        "set_config"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let names = text_column(&arrays, 0)?;
        let wanted = text_column(&arrays, 1)?;
        let mut values = Vec::with_capacity(names.len());
        for (name, wanted) in names.iter().zip(wanted) {
            let Some(name) = name else {
                return exec_err!("SET requires parameter name");
            };
            let Some(current) = setting(&args.config_options, name)? else {
                return Err(unrecognized(name));
            };
            if wanted.as_deref() != Some(current.as_str()) {
                return Err(not_supported(format!(
                    "set_config cannot change {name} in semsql (it is {current}); use SET {name}"
                )));
            }
            values.push(Some(current));
        }
        Ok(ColumnarValue::Array(Arc::new(StringArray::from(values))))
    }
}

pub fn functions() -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::new_from_impl(CurrentSetting {
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Utf8]),
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Boolean]),
                ],
                Volatility::Stable,
            ),
        }),
        ScalarUDF::new_from_impl(SetConfig {
            signature: Signature::exact(
                vec![DataType::Utf8, DataType::Utf8, DataType::Boolean],
                Volatility::Volatile,
            ),
        }),
    ]
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    async fn one(ctx: &SessionContext, sql: &str) -> Result<Option<String>, String> {
        let batches = ctx
            .sql(sql)
            .await
            .map_err(|err| err.to_string())?
            .collect()
            .await
            .map_err(|err| err.to_string())?;
        let column =
            datafusion::arrow::compute::cast(batches[0].column(0), &super::DataType::Utf8).unwrap();
        let values = super::AsArray::as_string::<i32>(column.as_ref());
        Ok((!super::Array::is_null(values, 0)).then(|| values.value(0).to_owned()))
    }

    #[tokio::test]
    async fn settings_answer_or_refuse_clearly() {
        let ctx = SessionContext::new();
        for function in super::functions() {
            ctx.register_udf(function);
        }
        assert_eq!(
            one(&ctx, "SELECT current_setting('jit')").await.unwrap(),
            Some("off".into())
        );
        assert_eq!(
            one(
                &ctx,
                "SELECT current_setting('datafusion.execution.batch_size')"
            )
            .await
            .unwrap(),
            Some("8192".into())
        );
        assert_eq!(
            one(&ctx, "SELECT current_setting('no_such', true)")
                .await
                .unwrap(),
            None
        );
        let err = one(&ctx, "SELECT current_setting('no_such')")
            .await
            .unwrap_err();
        assert!(
            err.contains("unrecognized configuration parameter \"no_such\""),
            "{err}"
        );
        let err = one(&ctx, "SELECT current_setting('search_path')")
            .await
            .unwrap_err();
        assert!(err.contains("SHOW search_path"), "{err}");
        assert_eq!(
            one(&ctx, "SELECT set_config('jit', 'off', false)")
                .await
                .unwrap(),
            Some("off".into())
        );
        let err = one(&ctx, "SELECT set_config('jit', 'on', false)")
            .await
            .unwrap_err();
        assert!(err.contains("cannot change jit"), "{err}");
    }
}
