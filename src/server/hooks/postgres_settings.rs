//! `SET`, `RESET` and `SHOW` of PostgreSQL's own settings, so that none is silently ignored:
//! semsql does what PostgreSQL does with it, or says what it did not do.
//!
//! - `search_path` is real: it decides where unqualified names resolve (see
//!   `engine::search_path`).
//! - `TimeZone` (`SET timezone = ...`) sets the session's time zone, as `SET TIME ZONE` does.
//! - The settings the generic hook after this one keeps (`statement_timeout`, `DateStyle`,
//!   `IntervalStyle`, `bytea_output`, `extra_float_digits`, `application_name`) go on to it.
//! - Settings whose only value semsql has (`client_encoding = UTF8`,
//!   `standard_conforming_strings = on`) accept that value and refuse another with 0A000.
//! - Planner and resource settings PostgreSQL clients set by habit (`client_min_messages`,
//!   `lock_timeout`, `work_mem`, ...) are kept, so `SHOW` answers what was set, with a NOTICE
//!   saying semsql does not act on them.
//! - Any other name is 42704 `unrecognized configuration parameter`, as in PostgreSQL.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    ContextModifier, Expr, ObjectName, Reset, Set, Statement, Value,
};
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::QueryHook;
use pgwire::api::results::{Response, Tag};
use pgwire::api::ClientInfo;
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::ParameterStatus;
use pgwire::messages::PgWireBackendMessage;

use super::{placeholder_plan, single_text_row};
use crate::engine::refresh_option_dependent_functions;
use crate::engine::search_path::SearchPath;
use crate::error::SemsqlError;
use crate::server::connection::{
    parse_milliseconds, show_milliseconds, timeout_millis, IDLE_IN_TRANSACTION, IDLE_SESSION,
};
use crate::server::handler::notice;

#[derive(Debug)]
pub struct PostgresSettingsHook;

/// Settings the generic SET/SHOW hook after this one keeps (it matches them lowercased).
const PASSED_ON: &[&str] = &["statement_timeout"];

/// Output settings pgwire's encoders read from the connection's metadata (under the lowercased
/// name), reported to the client as PostgreSQL reports them: (name, reported name, default).
const FORMATS: &[(&str, &str, &str)] = &[
    ("datestyle", "DateStyle", "ISO, MDY"),
    ("intervalstyle", "IntervalStyle", "postgres"),
    ("bytea_output", "bytea_output", "hex"),
    ("extra_float_digits", "extra_float_digits", "1"),
    ("application_name", "application_name", ""),
];

/// Settings with one value in semsql: (name, the accepted spellings, what SHOW answers).
const FIXED: &[(&str, &[&str], &str)] = &[
    ("client_encoding", &["utf8", "utf-8", "unicode"], "UTF8"),
    ("standard_conforming_strings", &["on", "true", "1"], "on"),
    ("server_encoding", &[], "UTF8"),
    ("integer_datetimes", &[], "on"),
    ("max_identifier_length", &[], "63"),
    ("default_table_access_method", &["heap"], "heap"),
];

/// Settings kept and shown but not acted on: (name, PostgreSQL 15's default).
const KEPT: &[(&str, &str)] = &[
    ("client_min_messages", "notice"),
    ("lock_timeout", "0"),
    ("work_mem", "4MB"),
    ("maintenance_work_mem", "64MB"),
    ("temp_buffers", "8MB"),
    ("default_transaction_isolation", "read committed"),
    ("default_transaction_read_only", "off"),
    ("synchronous_commit", "on"),
    ("jit", "off"),
    ("geqo", "on"),
    ("join_collapse_limit", "8"),
    ("from_collapse_limit", "8"),
    ("random_page_cost", "4"),
    ("enable_seqscan", "on"),
    ("enable_indexscan", "on"),
    ("enable_hashjoin", "on"),
    ("enable_mergejoin", "on"),
    ("enable_nestloop", "on"),
    ("row_security", "on"),
    ("check_function_bodies", "on"),
    ("xmloption", "content"),
    ("lc_messages", "C"),
    ("lc_monetary", "C"),
    ("lc_numeric", "C"),
    ("lc_time", "C"),
    ("escape_string_warning", "on"),
    ("quote_all_identifiers", "off"),
    ("trace_sort", "off"),
];

/// The idle timeouts, which the connection loop acts on (`server::connection`).
const IDLE_TIMEOUTS: &[&str] = &[IDLE_IN_TRANSACTION, IDLE_SESSION];

/// Where a kept setting's value lives in the connection's metadata.
fn kept_key(name: &str) -> String {
    format!("semsql.kept.{name}")
}

/// A state no client can bring about (a statement `owns` did not claim).
fn internal(message: &str) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        "XX000".to_owned(),
        message.to_owned(),
    )))
}

fn not_supported(message: String) -> PgWireError {
    SemsqlError::NotSupported(message).into()
}

fn unrecognized(name: &str) -> PgWireError {
    SemsqlError::UnrecognizedSetting(name.to_owned()).into()
}

/// The lowercased name of a setting, or `None` for a dotted name (`semsql.*` and `hnsw.*`
/// are other hooks'; `datafusion.*` is set by [`set_datafusion_option`]).
fn postgres_name(name: &ObjectName) -> Option<String> {
    let name = name.to_string().to_ascii_lowercase();
    let name = name.trim_matches('"').to_owned();
    (!name.contains('.')).then_some(name)
}

/// The lowercased name of a DataFusion option (`datafusion.execution.batch_size`).
fn datafusion_name(name: &ObjectName) -> Option<String> {
    let name = name.to_string().to_ascii_lowercase().replace('"', "");
    name.starts_with("datafusion.").then_some(name)
}

/// `SET datafusion.<option> = value`: the generic hook passes these to DataFusion and ignores
/// a refusal; here an unknown option is 42704 and a value DataFusion cannot read is 22023.
async fn set_datafusion_option(
    ctx: &SessionContext,
    name: &str,
    values: &[Expr],
) -> PgWireResult<()> {
    let [value] = values else {
        return Err(SemsqlError::InvalidParameter(format!("SET {name} takes one value")).into());
    };
    let mut value = match value {
        Expr::Value(literal) if matches!(literal.value, Value::Boolean(_)) => literal.to_string(),
        other => value_text(other),
    };
    if name.starts_with("datafusion.runtime.") {
        // Runtime options live in the runtime environment, which DataFusion's own SET updates.
        let sql = format!("SET {name} = '{}'", value.replace('\'', "''"));
        let refused = |err: datafusion::error::DataFusionError| {
            PgWireError::from(SemsqlError::InvalidParameter(format!(
                "invalid value for parameter \"{name}\": {err}"
            )))
        };
        ctx.sql(&sql).await.map_err(refused)?;
        return Ok(());
    }
    let state = ctx.state_ref();
    let mut state = state.write();
    let options = state.config_mut().options_mut();
    let Some(current) = options
        .entries()
        .into_iter()
        .find(|entry| entry.key == name)
    else {
        return Err(unrecognized(name));
    };
    // PostgreSQL's spellings of a boolean, for DataFusion's boolean options.
    if matches!(current.value.as_deref(), Some("true" | "false")) {
        match value.to_ascii_lowercase().as_str() {
            "on" | "yes" | "1" | "t" => value = "true".to_owned(),
            "off" | "no" | "0" | "f" => value = "false".to_owned(),
            _ => {}
        }
    }
    options.set(name, &value).map_err(|_| {
        PgWireError::from(SemsqlError::InvalidParameter(format!(
            "invalid value for parameter \"{name}\": \"{value}\""
        )))
    })?;
    refresh_option_dependent_functions(&mut state);
    Ok(())
}

/// A PostgreSQL `TimeZone` value as the zone Arrow reads. PostgreSQL reads a plain number as
/// hours east of UTC (`SET TIME ZONE 5`, `'-3'`), but an offset written as a POSIX zone
/// (`'+05:00'`, `'UTC+3'`) as hours *west* of UTC, so `'+05:00'` is five hours behind UTC there;
/// names (`'Europe/Berlin'`) are IANA zones in both.
fn arrow_time_zone(zone: &str) -> String {
    let upper = zone.trim().to_ascii_uppercase();
    if matches!(upper.as_str(), "UTC" | "GMT" | "Z" | "ETC/UTC" | "LOCAL") {
        return "+00:00".to_owned();
    }
    let offset = |east_minutes: i64| {
        let sign = if east_minutes < 0 { '-' } else { '+' };
        let minutes = east_minutes.abs();
        format!("{sign}{:02}:{:02}", minutes / 60, minutes % 60)
    };
    if let Ok(hours) = upper.parse::<f64>() {
        if hours.is_finite() && hours.abs() <= 15.0 {
            return offset((hours * 60.0).round() as i64);
        }
    }
    // Plain numbers were read above, so what is left is a POSIX offset: `[UTC|GMT][+|-]h[:mm]`.
    let posix = upper
        .strip_prefix("UTC")
        .or_else(|| upper.strip_prefix("GMT"))
        .unwrap_or(&upper);
    let (east, unsigned) = match posix.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, posix.strip_prefix('+').unwrap_or(posix)),
    };
    let (hours, minutes) = unsigned.split_once(':').unwrap_or((unsigned, "00"));
    let two_digits = |text: &str| {
        (1..=2).contains(&text.len()) && text.bytes().all(|byte| byte.is_ascii_digit())
    };
    if two_digits(hours) && two_digits(minutes) {
        let hours: i64 = hours.parse().unwrap_or_default();
        let minutes: i64 = minutes.parse().unwrap_or_default();
        if hours <= 15 && minutes < 60 {
            let west_minutes = hours * 60 + minutes;
            return offset(if east { west_minutes } else { -west_minutes });
        }
    }
    zone.to_owned()
}

/// An interval's `[+|-]h[:mm]` as a number of hours (`-05:30` is `-5.5`); other text unchanged.
fn interval_hours(text: &str) -> String {
    let (negative, unsigned) = match text.trim().strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.trim().trim_start_matches('+')),
    };
    let (hours, minutes) = unsigned.split_once(':').unwrap_or((unsigned, "0"));
    match (hours.parse::<f64>(), minutes.parse::<f64>()) {
        (Ok(hours), Ok(minutes)) => {
            let hours = hours + minutes / 60.0;
            (if negative { -hours } else { hours }).to_string()
        }
        _ => text.to_owned(),
    }
}

/// A SET value as text: an identifier's or string's contents, a number as written.
fn value_text(expr: &Expr) -> String {
    match expr {
        Expr::Value(value) => match &value.value {
            Value::SingleQuotedString(text) | Value::DoubleQuotedString(text) => text.clone(),
            Value::Number(number, _) => number.clone(),
            Value::Boolean(flag) => if *flag { "on" } else { "off" }.to_owned(),
            other => other.to_string(),
        },
        Expr::Identifier(ident) if ident.quote_style.is_none() => ident.value.to_lowercase(),
        Expr::Identifier(ident) => ident.value.clone(),
        other => other.to_string(),
    }
}

/// `SET search_path` values as schema names: an unquoted name folds to lower case, a quoted
/// name or a string is taken as written (`'a, b'` is one schema named `a, b`, as in PostgreSQL).
fn path_entries(values: &[Expr]) -> Vec<String> {
    values.iter().map(value_text).collect()
}

/// `DateStyle` as PostgreSQL reports it: the output style and the field order, each
/// capitalized as PostgreSQL spells it (`iso` is `ISO, MDY`); pgjdbc refuses a connection whose
/// reported DateStyle does not start with `ISO`.
fn date_style(value: &str) -> String {
    let mut style = None;
    let mut order = None;
    for part in value
        .split(',')
        .map(|part| part.trim().to_ascii_uppercase())
    {
        match part.as_str() {
            "ISO" | "SQL" | "POSTGRES" | "GERMAN" => style = Some(part),
            "MDY" | "DMY" | "YMD" | "US" | "NONEURO" | "NONEUROPEAN" => {
                order = Some(if part == "YMD" || part == "DMY" {
                    part
                } else {
                    "MDY".to_owned()
                })
            }
            "EURO" | "EUROPEAN" => order = Some("DMY".to_owned()),
            _ => {}
        }
    }
    let style = match style.as_deref() {
        Some("POSTGRES") => "Postgres".to_owned(),
        Some("GERMAN") => "German".to_owned(),
        Some(other) => other.to_owned(),
        None => "ISO".to_owned(),
    };
    format!("{style}, {}", order.unwrap_or_else(|| "MDY".to_owned()))
}

fn is_default(values: &[Expr]) -> bool {
    matches!(values, [Expr::Identifier(ident)]
        if ident.quote_style.is_none() && ident.value.eq_ignore_ascii_case("default"))
}

fn path_of(ctx: &SessionContext) -> PgWireResult<Arc<SearchPath>> {
    SearchPath::of(ctx.state_ref().read().config())
        .ok_or_else(|| internal("this session has no search_path"))
}

/// Which statements this hook answers (the rest go on to the next hook).
fn owns(statement: &Statement) -> bool {
    match statement {
        Statement::Set(Set::SingleAssignment {
            variable, scope, ..
        }) => match postgres_name(variable) {
            Some(name) => !(PASSED_ON.contains(&name.as_str()) && scope.is_none()),
            None => datafusion_name(variable).is_some(),
        },
        // Every other form (`SET ROLE`, `SET SESSION AUTHORIZATION`, `SET NAMES`, ...) is
        // refused here rather than ignored.
        Statement::Set(_) => true,
        Statement::Reset(reset) => match &reset.reset {
            // Ours are reset first (see `reset_all`); the answer comes from a later hook.
            Reset::ALL => false,
            Reset::ConfigurationParameter(name) => postgres_name(name).is_some(),
        },
        Statement::ShowVariable { variable } => {
            let name = variable
                .iter()
                .map(|ident| ident.value.to_ascii_lowercase())
                .collect::<Vec<_>>();
            match name.as_slice() {
                [single] => {
                    single == "search_path"
                        || single == "is_superuser"
                        || single == "timezone"
                        || single == "all"
                        || FIXED.iter().any(|(fixed, ..)| fixed == single)
                        || FORMATS.iter().any(|(format, ..)| format == single)
                        || KEPT.iter().any(|(kept, _)| kept == single)
                        || !known_elsewhere(single)
                }
                _ => false,
            }
        }
        _ => false,
    }
}

/// Names a later hook answers in SHOW (server_version and friends, the generic hook's).
fn known_elsewhere(name: &str) -> bool {
    PASSED_ON.contains(&name)
        || name.contains('.')
        || matches!(
            name,
            "server_version" | "server_version_num" | "transaction_isolation" | "catalogs"
        )
}

/// `RESET ALL`'s part here: the path and the kept settings.
fn reset_all(statement: &Statement, ctx: &SessionContext, client: &mut dyn HookClient) {
    if let Statement::Reset(reset) = statement {
        if matches!(reset.reset, Reset::ALL) {
            if let Ok(path) = path_of(ctx) {
                path.reset();
            }
            for (name, _) in KEPT {
                client.metadata_mut().remove(&kept_key(name));
            }
            for name in IDLE_TIMEOUTS {
                client.metadata_mut().remove(*name);
            }
        }
    }
}

/// Tells the client a setting's new value, as PostgreSQL reports the settings drivers watch.
async fn report(client: &mut dyn HookClient, name: &str, value: &str) -> PgWireResult<()> {
    client
        .send_message(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
            name.to_owned(),
            value.to_owned(),
        )))
        .await
}

impl PostgresSettingsHook {
    /// Both protocols' execution: `RESET ALL`'s part, then the statements this hook owns.
    async fn answer(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        reset_all(statement, ctx, client);
        if !owns(statement) {
            return None;
        }
        Some(self.run(statement, ctx, client).await)
    }

    async fn run(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> PgWireResult<Response> {
        match statement {
            Statement::Set(Set::SingleAssignment {
                variable,
                scope,
                values,
                ..
            }) => {
                if let Some(name) = datafusion_name(variable) {
                    set_datafusion_option(ctx, &name, values).await?;
                    return Ok(Response::Execution(Tag::new("SET")));
                }
                let name = postgres_name(variable).unwrap_or_default();
                if matches!(
                    scope,
                    Some(ContextModifier::Local | ContextModifier::Global)
                ) {
                    return Err(not_supported(format!(
                        "SET LOCAL is not supported by semsql; use SET {name}"
                    )));
                }
                self.set(&name, values, ctx, client).await
            }
            Statement::Set(Set::SetTimeZone {
                local: false,
                value,
            }) => {
                let value = match value {
                    // `SET TIME ZONE INTERVAL '+05:30' HOUR TO MINUTE`: hours east of UTC, as a
                    // plain number is.
                    Expr::Interval(interval) => Expr::value(Value::SingleQuotedString(
                        interval_hours(&value_text(&interval.value)),
                    )),
                    other => other.clone(),
                };
                self.set("timezone", &[value], ctx, client).await
            }
            Statement::Set(other) => Err(not_supported(format!(
                "semsql does not support \"{other}\""
            ))),
            Statement::Reset(reset) => match &reset.reset {
                Reset::ALL => Err(internal("RESET ALL is answered later")),
                Reset::ConfigurationParameter(name) => {
                    let name = postgres_name(name).unwrap_or_default();
                    if name == "search_path" {
                        path_of(ctx)?.reset();
                    } else if KEPT.iter().any(|(kept, _)| *kept == name) {
                        client.metadata_mut().remove(&kept_key(&name));
                    } else if IDLE_TIMEOUTS.contains(&name.as_str()) {
                        client.metadata_mut().remove(&name);
                    } else if let Some((format, reported, default)) =
                        FORMATS.iter().find(|(format, ..)| *format == name)
                    {
                        client.metadata_mut().remove(*format);
                        report(client, reported, default).await?;
                    } else if PASSED_ON.contains(&name.as_str()) {
                        client.metadata_mut().remove("statement_timeout_ms");
                    } else if name == "timezone" {
                        self.set_time_zone("UTC", ctx, client).await?;
                    } else if !FIXED.iter().any(|(fixed, ..)| *fixed == name) {
                        return Err(unrecognized(&name));
                    }
                    Ok(Response::Execution(Tag::new("RESET")))
                }
            },
            Statement::ShowVariable { variable } => {
                let name = variable
                    .first()
                    .map(|ident| ident.value.to_ascii_lowercase())
                    .unwrap_or_default();
                if name == "search_path" {
                    return single_text_row("search_path", &path_of(ctx)?.display());
                }
                if name == "is_superuser" {
                    let superuser = crate::engine::settings_functions::is_superuser(
                        ctx.state_ref().read().config().options(),
                    );
                    return single_text_row("is_superuser", superuser);
                }
                if name == "timezone" {
                    let zone = client
                        .metadata()
                        .get("timezone")
                        .cloned()
                        .unwrap_or_else(|| "UTC".to_owned());
                    return single_text_row("TimeZone", &zone);
                }
                if name == "all" {
                    return Err(not_supported(
                        "SHOW ALL is not supported by semsql; SHOW one setting by name".to_owned(),
                    ));
                }
                if let Some((format, reported, default)) =
                    FORMATS.iter().find(|(format, ..)| *format == name)
                {
                    let value = client
                        .metadata()
                        .get(*format)
                        .cloned()
                        .unwrap_or_else(|| (*default).to_owned());
                    return single_text_row(reported, &value);
                }
                if let Some((fixed, _, shown)) = FIXED.iter().find(|(fixed, ..)| *fixed == name) {
                    return single_text_row(fixed, shown);
                }
                if let Some(timeout) = IDLE_TIMEOUTS.iter().find(|timeout| **timeout == name) {
                    let millis = timeout_millis(client.metadata(), timeout);
                    return single_text_row(timeout, &show_milliseconds(millis));
                }
                if let Some((kept, default)) = KEPT.iter().find(|(kept, _)| *kept == name) {
                    let value = client
                        .metadata()
                        .get(&kept_key(kept))
                        .cloned()
                        .unwrap_or_else(|| (*default).to_owned());
                    return single_text_row(kept, &value);
                }
                Err(unrecognized(&name))
            }
            _ => Err(internal("not a settings statement")),
        }
    }

    async fn set(
        &self,
        name: &str,
        values: &[Expr],
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> PgWireResult<Response> {
        let value = values.iter().map(value_text).collect::<Vec<_>>().join(", ");
        if name == "search_path" {
            let path = path_of(ctx)?;
            if is_default(values) {
                path.reset();
            } else {
                path.set(path_entries(values));
            }
        } else if name == "timezone" {
            let zone = if is_default(values) { "UTC" } else { &value };
            self.set_time_zone(zone, ctx, client).await?;
        } else if let Some((fixed, accepted, shown)) =
            FIXED.iter().find(|(fixed, ..)| *fixed == name)
        {
            if !is_default(values) && !accepted.contains(&value.to_ascii_lowercase().as_str()) {
                return Err(not_supported(format!(
                    "semsql supports only {fixed} = {shown}, not \"{value}\""
                )));
            }
        } else if let Some((format, reported, default)) =
            FORMATS.iter().find(|(format, ..)| *format == name)
        {
            let value = if is_default(values) {
                (*default).to_owned()
            } else if *format == "datestyle" {
                date_style(&value)
            } else {
                value
            };
            client
                .metadata_mut()
                .insert((*format).to_owned(), value.clone());
            report(client, reported, &value).await?;
        } else if PASSED_ON.contains(&name) {
            return Err(not_supported(format!(
                "SET SESSION is not supported by semsql for {name}; use SET {name}"
            )));
        } else if IDLE_TIMEOUTS.contains(&name) {
            if is_default(values) {
                client.metadata_mut().remove(name);
            } else {
                let millis = parse_milliseconds(&value).ok_or_else(|| {
                    PgWireError::from(SemsqlError::InvalidParameter(format!(
                        "invalid value for parameter \"{name}\": \"{value}\""
                    )))
                })?;
                client
                    .metadata_mut()
                    .insert(name.to_owned(), millis.to_string());
            }
        } else if KEPT.iter().any(|(kept, _)| *kept == name) {
            if is_default(values) {
                client.metadata_mut().remove(&kept_key(name));
            } else {
                client.metadata_mut().insert(kept_key(name), value);
            }
            client
                .send_message(notice(format!(
                    "semsql keeps {name} for SHOW but does not act on it"
                )))
                .await?;
        } else {
            return Err(unrecognized(name));
        }
        Ok(Response::Execution(Tag::new("SET")))
    }

    /// `SET timezone = ...`: what `SET TIME ZONE` does, reported to the client as PostgreSQL
    /// reports it (a ParameterStatus).
    async fn set_time_zone(
        &self,
        zone: &str,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> PgWireResult<()> {
        let offset = arrow_time_zone(zone);
        // DataFusion checks the zone when a timestamp is cast; check it now instead.
        if offset
            .parse::<datafusion::arrow::array::timezone::Tz>()
            .is_err()
        {
            return Err(PgWireError::from(SemsqlError::InvalidParameter(format!(
                "invalid value for parameter \"TimeZone\": \"{zone}\""
            ))));
        }
        {
            let state = ctx.state_ref();
            let mut state = state.write();
            state.config_mut().options_mut().execution.time_zone = Some(offset);
            refresh_option_dependent_functions(&mut state);
        }
        client
            .metadata_mut()
            .insert("timezone".to_owned(), zone.to_owned());
        report(client, "TimeZone", zone).await
    }
}

#[async_trait]
impl QueryHook for PostgresSettingsHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.answer(statement, session_context, client).await
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _session_context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        if !owns(statement) {
            return None;
        }
        let schema = match statement {
            Statement::ShowVariable { .. } => {
                Schema::new(vec![Field::new("setting", DataType::Utf8, false)])
            }
            _ => Schema::empty(),
        };
        Some(placeholder_plan(schema))
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _logical_plan: &LogicalPlan,
        _params: &ParamValues,
        session_context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.answer(statement, session_context, client).await
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn statement(sql: &str) -> Statement {
        Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0)
    }

    #[test]
    fn search_path_values_fold_as_identifiers_do() {
        let Statement::Set(Set::SingleAssignment { values, .. }) =
            statement(r#"SET search_path TO "$user", Public, "Mixed", 'a, b'"#)
        else {
            panic!("a SET");
        };
        assert_eq!(
            path_entries(&values),
            vec!["$user", "public", "Mixed", "a, b"]
        );
    }

    #[test]
    fn time_zones_are_read_as_postgres_reads_them() {
        // Checked against PostgreSQL 15: `SET TIME ZONE '+05:00'; SELECT now()` shows -05.
        assert_eq!(arrow_time_zone("+05:00"), "-05:00");
        assert_eq!(arrow_time_zone("UTC+3"), "-03:00");
        assert_eq!(arrow_time_zone("gmt-2:30"), "+02:30");
        assert_eq!(arrow_time_zone("5"), "+05:00");
        assert_eq!(arrow_time_zone("-3"), "-03:00");
        assert_eq!(arrow_time_zone("5.5"), "+05:30");
        assert_eq!(arrow_time_zone("utc"), "+00:00");
        assert_eq!(arrow_time_zone("Europe/Berlin"), "Europe/Berlin");
        assert_eq!(arrow_time_zone("+99:00"), "+99:00");
        assert_eq!(interval_hours("-05:30"), "-5.5");
        assert_eq!(interval_hours("+05:00"), "5");
    }

    #[test]
    fn date_style_is_reported_as_postgres_spells_it() {
        assert_eq!(date_style("iso"), "ISO, MDY");
        assert_eq!(date_style("ISO, DMY"), "ISO, DMY");
        assert_eq!(date_style("german"), "German, MDY");
    }

    #[test]
    fn the_hook_owns_postgres_settings_only() {
        assert!(owns(&statement("SET search_path = s1")));
        assert!(owns(&statement("SET no_such_setting = 1")));
        assert!(owns(&statement("SHOW no_such_setting")));
        assert!(owns(&statement("SET SESSION statement_timeout = 5")));
        assert!(owns(&statement("SET ROLE nobody")));
        assert!(owns(&statement("SET DateStyle = ISO")));
        assert!(owns(&statement("SET TIME ZONE 'UTC'")));
        assert!(!owns(&statement("SET statement_timeout = 5")));
        assert!(!owns(&statement("SET semsql.model = 'x'")));
        assert!(!owns(&statement("SHOW server_version")));
        // DataFusion's options are set here too, so a refusal is an error, not a warning.
        assert!(owns(&statement("SET datafusion.execution.batch_size = 10")));
        assert!(!owns(&statement("SHOW datafusion.execution.batch_size")));
    }
}
