//! One error type for the server, and the one table that maps every error kind to a SQLSTATE.
//!
//! Errors travel through DataFusion as `DataFusionError` (our own kinds wrapped in
//! `DataFusionError::External`) and through pgwire as `PgWireError`; [`sqlstate_of`] and
//! [`to_error_info`] turn both into the code a Postgres client expects.

use datafusion::arrow::error::ArrowError;
use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;
use pgwire::error::{ErrorInfo, PgWireError};

/// Errors that semsql itself raises (as opposed to DataFusion or pgwire).
#[derive(Debug, thiserror::Error)]
pub enum SemsqlError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("storage error: {0}")]
    Storage(String),
    #[error(
        "could not serialize access due to concurrent update of table {0}; retry the transaction"
    )]
    SerializationFailure(String),
    #[error("{0}")]
    NotSupported(String),
    #[error("schema \"{0}\" does not exist")]
    SchemaNotFound(String),
    #[error("schema \"{0}\" already exists")]
    DuplicateSchema(String),
    #[error("relation \"{0}\" already exists")]
    DuplicateTable(String),
    #[error("schema \"{0}\" is not empty; use DROP SCHEMA ... CASCADE")]
    SchemaNotEmpty(String),
    #[error("too many connections (the limit is {0})")]
    TooManyConnections(usize),
    #[error("relation \"{0}\" does not exist")]
    TableNotFound(String),
    #[error("column \"{column}\" of relation \"{table}\" does not exist")]
    ColumnNotFound { column: String, table: String },
    #[error("index \"{0}\" does not exist")]
    IndexNotFound(String),
    #[error("column \"{0}\" does not have dimensions: an hnsw index needs a vector(n) column")]
    NoVectorDimensions(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    InvalidRegularExpression(String),
    #[error("{0}")]
    InvalidEscapeSequence(String),
    #[error("{0}")]
    CardinalityViolation(String),
    /// `value too long for type character varying(n)`.
    #[error("{0}")]
    StringTooLong(String),
    /// `invalid input syntax for type timestamp: "..."`.
    #[error("{0}")]
    InvalidDatetime(String),
    /// `invalid input syntax for type uuid: "..."`.
    #[error("{0}")]
    InvalidTextRepresentation(String),
    /// `date/time field value out of range: "2020-13-01"`.
    #[error("date/time field value out of range: \"{0}\"")]
    DatetimeOutOfRange(String),
    #[error("unrecognized configuration parameter \"{0}\"")]
    UnrecognizedSetting(String),
    #[error(
        "null value in column \"{column}\" of relation \"{table}\" violates not-null constraint"
    )]
    NotNullViolation { column: String, table: String },
    /// A second row with a PRIMARY KEY or UNIQUE constraint's key; `detail` is PostgreSQL's
    /// DETAIL line (`Key (id)=(1) already exists.`).
    #[error("duplicate key value violates unique constraint \"{constraint}\"")]
    UniqueViolation {
        constraint: String,
        detail: String,
        table: String,
    },
    /// PostgreSQL's `permission denied for table t` and the like.
    #[error("{0}")]
    InsufficientPrivilege(String),
    #[error("role \"{0}\" does not exist")]
    RoleNotFound(String),
    #[error("role \"{0}\" already exists")]
    DuplicateRole(String),
    /// A reserved role name or an option PostgreSQL refuses (42939 / 42601 family).
    #[error("{0}")]
    ReservedName(String),
    /// 2BP01: dropping something others depend on.
    #[error("{0}")]
    ObjectInUse(String),
    /// 0LP01: a grant that cannot be made (a membership loop).
    #[error("{0}")]
    InvalidGrant(String),
}

impl SemsqlError {
    /// PostgreSQL's DETAIL line for this error, where it sends one.
    pub fn detail(&self) -> Option<String> {
        match self {
            SemsqlError::UniqueViolation { detail, .. } => Some(detail.clone()),
            _ => None,
        }
    }

    pub fn sqlstate(&self) -> &'static str {
        match self {
            SemsqlError::Config(_) => "F0000",
            SemsqlError::Storage(_) => "58030",
            SemsqlError::SerializationFailure(_) => "40001",
            SemsqlError::NotSupported(_) => "0A000",
            SemsqlError::SchemaNotFound(_) => "3F000",
            SemsqlError::DuplicateSchema(_) => "42P06",
            SemsqlError::DuplicateTable(_) => "42P07",
            SemsqlError::SchemaNotEmpty(_) => "2BP01",
            SemsqlError::TooManyConnections(_) => "53300",
            SemsqlError::TableNotFound(_) => "42P01",
            SemsqlError::ColumnNotFound { .. } => "42703",
            SemsqlError::IndexNotFound(_) => "42704",
            SemsqlError::NoVectorDimensions(_) => "42804",
            SemsqlError::InvalidParameter(_) => "22023",
            SemsqlError::InvalidRegularExpression(_) => "2201B",
            SemsqlError::InvalidEscapeSequence(_) => "22025",
            SemsqlError::CardinalityViolation(_) => "21000",
            SemsqlError::UnrecognizedSetting(_) => "42704",
            SemsqlError::NotNullViolation { .. } => "23502",
            SemsqlError::UniqueViolation { .. } => "23505",
            SemsqlError::StringTooLong(_) => "22001",
            SemsqlError::InvalidDatetime(_) => "22007",
            SemsqlError::InvalidTextRepresentation(_) => "22P02",
            SemsqlError::DatetimeOutOfRange(_) => "22008",
            SemsqlError::InsufficientPrivilege(_) => "42501",
            SemsqlError::RoleNotFound(_) => "42704",
            SemsqlError::DuplicateRole(_) => "42710",
            SemsqlError::ReservedName(_) => "42939",
            SemsqlError::ObjectInUse(_) => "2BP01",
            SemsqlError::InvalidGrant(_) => "0LP01",
        }
    }

    /// Wraps this error so it can travel through DataFusion's `Result`.
    pub fn into_datafusion(self) -> DataFusionError {
        DataFusionError::External(Box::new(self))
    }
}

/// Our errors reach the client through the same mapping as DataFusion's (see `to_error_info`).
impl From<SemsqlError> for PgWireError {
    fn from(err: SemsqlError) -> Self {
        PgWireError::ApiError(Box::new(err.into_datafusion()))
    }
}

impl From<std::io::Error> for SemsqlError {
    fn from(err: std::io::Error) -> Self {
        SemsqlError::Storage(err.to_string())
    }
}

/// The SQLSTATE of an arrow error raised while computing on data.
fn arrow_sqlstate(err: &ArrowError) -> &'static str {
    match err {
        ArrowError::DivideByZero => "22012",
        ArrowError::ArithmeticOverflow(_) => "22003",
        ArrowError::CastError(_) | ArrowError::ParseError(_) => "22P02",
        ArrowError::InvalidArgumentError(_) => "22023",
        ArrowError::MemoryError(_) => "53200",
        ArrowError::NotYetImplemented(_) => "0A000",
        ArrowError::ExternalError(inner) => external_sqlstate(inner.as_ref()),
        _ => "22000",
    }
}

fn external_sqlstate(err: &(dyn std::error::Error + Send + Sync + 'static)) -> &'static str {
    if let Some(ours) = err.downcast_ref::<SemsqlError>() {
        ours.sqlstate()
    } else if let Some(lm) = err.downcast_ref::<semsql_udfs::lm::LmError>() {
        lm.sqlstate
    } else if err.downcast_ref::<ParserError>().is_some() {
        "42601"
    } else if let Some(df) = err.downcast_ref::<DataFusionError>() {
        sqlstate_of(df)
    } else if let Some(arrow) = err.downcast_ref::<ArrowError>() {
        arrow_sqlstate(arrow)
    } else if err.downcast_ref::<std::io::Error>().is_some() {
        "58030"
    } else {
        "XX000"
    }
}

/// DataFusion reports planning problems as text; these are the ones Postgres gives codes to.
fn plan_sqlstate(message: &str) -> &'static str {
    let lower = message.to_ascii_lowercase();
    if lower.contains("must appear in the group by clause") {
        "42803"
    } else if lower.contains("table function") && lower.contains("not found") {
        "42883"
    } else if lower.contains("table '") && lower.contains("not found")
        || lower.contains("doesn't exist")
        || lower.contains("does not exist") && lower.contains("table")
    {
        "42P01"
    } else if lower.contains("already exists") {
        "42P07"
    } else if lower.contains("invalid function")
        || lower.contains("unknown function")
        || lower.contains("no function matches")
        || lower.contains("function") && lower.contains("does not exist")
    {
        "42883"
    } else if lower.contains("no field named")
        || lower.contains("column") && lower.contains("not found")
    {
        "42703"
    } else if lower.contains("ambiguous") {
        "42702"
    } else if lower.contains("cannot coerce")
        || lower.contains("cannot infer common")
        || lower.contains("type coercion")
        || lower.contains("does not support")
        || lower.contains("failed to coerce")
    {
        "42804"
    } else if lower.contains("expected") && lower.contains("parameter")
        || lower.contains("placeholder")
    {
        "08P01"
    } else {
        "42601"
    }
}

/// The SQLSTATE for an error that came out of DataFusion (planning or execution).
pub fn sqlstate_of(err: &DataFusionError) -> &'static str {
    match err {
        DataFusionError::SQL(_, _) => "42601",
        DataFusionError::SchemaError(schema_err, _) => match schema_err.as_ref() {
            SchemaError::FieldNotFound { .. } => "42703",
            SchemaError::AmbiguousReference { .. } => "42702",
            SchemaError::DuplicateQualifiedField { .. }
            | SchemaError::DuplicateUnqualifiedField { .. } => "42701",
        },
        DataFusionError::Plan(message) => plan_sqlstate(message),
        DataFusionError::NotImplemented(_) => "0A000",
        DataFusionError::ResourcesExhausted(_) => "53200",
        DataFusionError::ArrowError(arrow, _) => arrow_sqlstate(arrow),
        DataFusionError::ParquetError(_) | DataFusionError::IoError(_) => "58030",
        DataFusionError::ObjectStore(_) => "58030",
        DataFusionError::Configuration(message) if is_create_function(message) => "0A000",
        DataFusionError::Configuration(_) => "42704",
        DataFusionError::Execution(message) => {
            let lower = message.to_ascii_lowercase();
            if lower.contains("divide by zero") || lower.contains("division by zero") {
                "22012"
            } else if lower.contains("overflow") {
                "22003"
            } else if lower.contains("non-nullable") || lower.contains("null value") {
                "23502"
            } else if lower.contains("cast") || lower.contains("parse") || lower.contains("invalid")
            {
                "22P02"
            } else if lower.contains("not found") && lower.contains("table") {
                "42P01"
            } else if lower.contains("already exists") {
                "42P07"
            } else {
                "22000"
            }
        }
        DataFusionError::External(inner) => external_sqlstate(inner.as_ref()),
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            sqlstate_of(inner)
        }
        DataFusionError::Shared(inner) => sqlstate_of(inner),
        DataFusionError::Collection(errors) => errors.first().map_or("XX000", sqlstate_of),
        DataFusionError::Internal(_) | DataFusionError::Substrait(_) | DataFusionError::Ffi(_) => {
            "XX000"
        }
        _ => "XX000",
    }
}

/// The message shown to the client: DataFusion's own text without the wrapper prefixes that
/// say which layer failed ("Error during planning: ...") rather than what failed.
pub fn client_message(err: &DataFusionError) -> String {
    if let Some(message) = postgres_wording(err) {
        return message;
    }
    match err {
        DataFusionError::External(inner) => inner.to_string(),
        DataFusionError::Plan(message) | DataFusionError::Execution(message) => message.clone(),
        // The access check's refusals read as PostgreSQL's, without the rule's name.
        DataFusionError::Context(context, inner)
            if context == crate::access::plan_check::RULE_NAME
                || context == crate::planner::integer_arithmetic::RULE_NAME
                || context == crate::planner::postgres_casts::RULE_NAME =>
        {
            client_message(inner)
        }
        DataFusionError::Context(context, inner) => format!("{context}: {}", client_message(inner)),
        DataFusionError::Diagnostic(_, inner) => client_message(inner),
        DataFusionError::Shared(inner) => client_message(inner),
        other => other.strip_backtrace(),
    }
}

/// PostgreSQL's text for the errors clients and users meet most, which tools match on
/// (`relation "x" does not exist`, `column "y" does not exist`, `division by zero`).
/// DataFusion's answer to `CREATE FUNCTION` when no function factory is set up (semsql has
/// none: a user-defined function would run with whose privileges, on which model?).
fn is_create_function(message: &str) -> bool {
    message.contains("Function factory has not been configured")
}

/// PostgreSQL's words for integer overflow: `integer out of range` for `int4`, `bigint out of
/// range` for `int8`. Arrow's message names the operands (`Overflow happened on: 2147483647 *
/// 2`); an operand outside `int4` means the arithmetic was in `int8`.
fn out_of_range(detail: &str) -> String {
    let int8 = detail.contains("bigint")
        || detail
            .split(|c: char| !(c.is_ascii_digit() || c == '-'))
            .filter_map(|word| word.parse::<i64>().ok())
            .any(|operand| i32::try_from(operand).is_err());
    if int8 {
        "bigint out of range".to_owned()
    } else {
        "integer out of range".to_owned()
    }
}

fn postgres_wording(err: &DataFusionError) -> Option<String> {
    match err {
        DataFusionError::Configuration(message) if is_create_function(message) => {
            Some("CREATE FUNCTION is not supported by semsql".to_owned())
        }
        DataFusionError::SchemaError(schema_err, _) => match schema_err.as_ref() {
            SchemaError::FieldNotFound { field, .. } => Some(match &field.relation {
                Some(relation) => {
                    format!("column {}.{} does not exist", relation.table(), field.name)
                }
                None => format!("column \"{}\" does not exist", field.name),
            }),
            _ => None,
        },
        DataFusionError::ArrowError(arrow, _)
            if matches!(arrow.as_ref(), ArrowError::DivideByZero) =>
        {
            Some("division by zero".to_owned())
        }
        DataFusionError::ArrowError(arrow, _) => match arrow.as_ref() {
            ArrowError::ArithmeticOverflow(detail) => Some(out_of_range(detail)),
            _ => None,
        },
        DataFusionError::Execution(message)
            if message.to_ascii_lowercase().contains("divide by zero") =>
        {
            Some("division by zero".to_owned())
        }
        // DataFusion: `... column "t.n" must appear in the GROUP BY clause or must be part of
        // an aggregate function, currently ...`.
        DataFusionError::Plan(message) if message.contains("must appear in the GROUP BY") => {
            let column = message.split_once("column \"")?.1.split_once('"')?.0;
            Some(format!(
                "column \"{column}\" must appear in the GROUP BY clause or be used in an \
                 aggregate function"
            ))
        }
        DataFusionError::Plan(message) => {
            // DataFusion: "table 'catalog.schema.name' not found".
            let name = message
                .strip_prefix("table '")?
                .strip_suffix("' not found")?;
            let name = name.rsplit('.').next().unwrap_or(name);
            Some(format!("relation \"{name}\" does not exist"))
        }
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            postgres_wording(inner)
        }
        DataFusionError::Shared(inner) => postgres_wording(inner),
        _ => None,
    }
}

/// Turns any error about to be sent to a client into an `ErrorInfo` with the right SQLSTATE.
pub fn to_error_info(error: &PgWireError) -> Option<ErrorInfo> {
    let PgWireError::ApiError(inner) = error else {
        return None;
    };
    let (code, message) = if let Some(df) = inner.downcast_ref::<DataFusionError>() {
        (sqlstate_of(df), client_message(df))
    } else {
        (external_sqlstate(inner.as_ref()), inner.to_string())
    };
    let mut info = ErrorInfo::new("ERROR".to_owned(), code.to_owned(), message);
    info.detail = semsql_error_in(inner.as_ref()).and_then(SemsqlError::detail);
    Some(info)
}

/// Our own error, wherever it travels inside DataFusion's.
fn semsql_error_in<'a>(
    err: &'a (dyn std::error::Error + Send + Sync + 'static),
) -> Option<&'a SemsqlError> {
    if let Some(ours) = err.downcast_ref::<SemsqlError>() {
        return Some(ours);
    }
    match err.downcast_ref::<DataFusionError>()? {
        DataFusionError::External(inner) => semsql_error_in(inner.as_ref()),
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            semsql_error_in(inner.as_ref())
        }
        DataFusionError::Shared(inner) => semsql_error_in(inner.as_ref()),
        DataFusionError::ArrowError(arrow, _) => match arrow.as_ref() {
            ArrowError::ExternalError(inner) => semsql_error_in(inner.as_ref()),
            _ => None,
        },
        _ => None,
    }
}

/// Builds the error a hook returns for one of our own error kinds.
pub fn user_error(err: SemsqlError) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        err.sqlstate().to_owned(),
        err.to_string(),
    )))
}

/// A language-model error (raised by the runtime outside DataFusion) as the client sees it.
pub fn lm_user_error(err: semsql_udfs::lm::LmError) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        err.sqlstate.to_owned(),
        err.message,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    async fn state_of(sql: &str) -> &'static str {
        let ctx = SessionContext::new();
        ctx.sql("CREATE TABLE t (a INT, b TEXT)").await.unwrap();
        let err = match ctx.sql(sql).await {
            Ok(df) => df.collect().await.expect_err("query should fail"),
            Err(err) => err,
        };
        sqlstate_of(&err)
    }

    #[tokio::test]
    async fn maps_common_planning_errors() {
        assert_eq!(state_of("SELEC 1").await, "42601");
        assert_eq!(state_of("SELECT * FROM missing_table").await, "42P01");
        assert_eq!(state_of("SELECT missing_column FROM t").await, "42703");
        assert_eq!(state_of("SELECT no_such_function(1)").await, "42883");
        assert_eq!(state_of("SELECT a, b FROM t GROUP BY a").await, "42803");
        // PostgreSQL 15's words.
        assert_eq!(
            message_of("SELECT a, b FROM t GROUP BY a").await,
            "column \"t.b\" must appear in the GROUP BY clause or be used in an aggregate function"
        );
    }

    async fn message_of(sql: &str) -> String {
        let ctx = SessionContext::new();
        ctx.sql("CREATE TABLE t (a INT, b TEXT)").await.unwrap();
        let err = match ctx.sql(sql).await {
            Ok(df) => df.collect().await.expect_err("query should fail"),
            Err(err) => err,
        };
        client_message(&err)
    }

    #[tokio::test]
    async fn common_errors_use_postgres_wording() {
        assert_eq!(
            message_of("SELECT * FROM missing_table").await,
            "relation \"missing_table\" does not exist"
        );
        assert_eq!(
            message_of("SELECT nope FROM t").await,
            "column \"nope\" does not exist"
        );
        assert_eq!(
            message_of("SELECT t.nope FROM t").await,
            "column t.nope does not exist"
        );
        assert_eq!(
            message_of("SELECT a / 0 FROM (VALUES (1)) v(a)").await,
            "division by zero"
        );
        assert_eq!(message_of("SELECT 10 / 0").await, "division by zero");
    }

    #[tokio::test]
    async fn maps_data_errors() {
        assert_eq!(state_of("SELECT 1 / 0").await, "22012");
        assert_eq!(state_of("SELECT CAST('abc' AS INT)").await, "22P02");
    }

    #[test]
    fn our_errors_keep_their_code_through_datafusion() {
        let err = SemsqlError::SerializationFailure("t".into()).into_datafusion();
        assert_eq!(sqlstate_of(&err), "40001");
        let wrapped = DataFusionError::Context("commit".into(), Box::new(err));
        assert_eq!(sqlstate_of(&wrapped), "40001");
    }
}
