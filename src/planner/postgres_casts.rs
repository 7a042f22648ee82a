//! Analyzer rule, run after DataFusion's type coercion: casts between text and dates, times,
//! intervals and floats read and write text as PostgreSQL does, where Arrow's casts differ.
//!
//! - To text: `now()::text` is `2026-12-01 19:23:27.897555+00` in PostgreSQL and
//!   `2026-12-01T19:23:27.897555Z` in Arrow; `interval '1 day 2 hours'::text` is
//!   `1 day 02:00:00` and `1 days 2 hours`; `1e20::float8::text` is `1e+20` and `1e20`. The cast
//!   becomes a call of [`PostgresText`], which prints with `engine::text_format` (the same text
//!   the wire sends). A timestamptz prints in its type's zone, the session's.
//! - From text: PostgreSQL reads `'2020-01-02 03:04'` (no seconds), `'2020-1-2 3:04:05'`,
//!   `'Jan 2 2020'`, `'epoch'`, `'now'`, `'today'` as timestamps and dates; Arrow refuses them
//!   ("Error parsing timestamp ... error parsing time"). A constant is read now, Arrow's parser
//!   first and then [`postgres_datetime`]'s forms, so the plan keeps a constant (statistics still
//!   prune on it), and `'now'` is the statement's time as in PostgreSQL; a column of text is read
//!   by [`PostgresDatetimeIn`] row by row the same way. What neither reads is PostgreSQL's 22007
//!   `invalid input syntax for type timestamp: "..."`.

use std::sync::Arc;

use chrono::{Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float32Array, Float64Array, StringArray, StringBuilder,
};
use datafusion::arrow::compute::{cast, cast_with_options, CastOptions};
use datafusion::arrow::datatypes::{
    DataType, Field, FieldRef, Float32Type, Float64Type, IntervalMonthDayNanoType, IntervalUnit,
    TimeUnit, TimestampMicrosecondType,
};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::DFSchema;
use datafusion::error::Result;
use datafusion::logical_expr::expr::{Cast, ScalarFunction};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, LogicalPlan, ReturnFieldArgs, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::scalar::ScalarValue;

use crate::engine::text_format::{
    float4_text, float8_text, interval_text, timestamp_text, timestamptz_text, trim_fraction,
};
use crate::error::SemsqlError;

/// The rule's name, which DataFusion puts before the errors it raises.
pub const RULE_NAME: &str = "postgres_casts";

#[derive(Debug, Default)]
pub struct PostgresCasts;

impl AnalyzerRule for PostgresCasts {
    fn analyze(&self, plan: LogicalPlan, config: &ConfigOptions) -> Result<LogicalPlan> {
        let zone = config.execution.time_zone.clone();
        super::rewrite_expressions(plan, |expr, schema| {
            postgres_cast(expr, schema, zone.as_deref())
        })
    }

    fn name(&self) -> &str {
        RULE_NAME
    }
}

fn is_text(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
    )
}

/// The types whose text Arrow writes otherwise than PostgreSQL.
fn printed_otherwise(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Float32
            | DataType::Float64
            | DataType::Timestamp(..)
            | DataType::Time64(_)
            | DataType::Interval(_)
    )
}

fn read_otherwise(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Timestamp(..) | DataType::Date32)
}

fn postgres_cast(expr: Expr, schema: &DFSchema, zone: Option<&str>) -> Result<Transformed<Expr>> {
    let Expr::Cast(Cast { expr: input, field }) = &expr else {
        return Ok(Transformed::no(expr));
    };
    let target = field.data_type();
    let Ok(source) = input.get_type(schema) else {
        return Ok(Transformed::no(expr));
    };
    if is_text(target) && printed_otherwise(&source) {
        let call = Expr::ScalarFunction(ScalarFunction::new_udf(
            Arc::new(ScalarUDF::new_from_impl(PostgresText::new())),
            vec![input.as_ref().clone()],
        ));
        let call = match target {
            DataType::Utf8 => call,
            other => Expr::Cast(Cast::new(Box::new(call), other.clone())),
        };
        return Ok(Transformed::yes(call));
    }
    if is_text(&source) && read_otherwise(target) {
        if let Expr::Literal(value, _) = input.as_ref() {
            let Some(text) = string_of(value) else {
                return Ok(Transformed::no(expr));
            };
            if arrow_reads(&text, target) {
                return Ok(Transformed::no(expr));
            }
            let read = postgres_datetime(&text, target, zone, Utc::now())?;
            return Ok(Transformed::yes(Expr::Cast(Cast::new(
                Box::new(Expr::Literal(ScalarValue::Utf8(Some(read)), None)),
                target.clone(),
            ))));
        }
        return Ok(Transformed::yes(Expr::ScalarFunction(
            ScalarFunction::new_udf(
                Arc::new(ScalarUDF::new_from_impl(PostgresDatetimeIn::new(
                    target.clone(),
                    zone.map(str::to_owned),
                ))),
                vec![input.as_ref().clone()],
            ),
        )));
    }
    Ok(Transformed::no(expr))
}

fn string_of(value: &ScalarValue) -> Option<String> {
    match value {
        ScalarValue::Utf8(Some(text))
        | ScalarValue::Utf8View(Some(text))
        | ScalarValue::LargeUtf8(Some(text)) => Some(text.clone()),
        _ => None,
    }
}

/// Whether Arrow's cast reads `text` as `target` (then its reading is kept).
fn arrow_reads(text: &str, target: &DataType) -> bool {
    let array: ArrayRef = Arc::new(StringArray::from(vec![text]));
    cast_with_options(&array, target, &CastOptions::default())
        .is_ok_and(|read| read.null_count() == 0)
}

/// PostgreSQL's name of a type, for its input error.
fn type_name(target: &DataType) -> &'static str {
    match target {
        DataType::Date32 => "date",
        DataType::Timestamp(_, Some(_)) => "timestamp with time zone",
        _ => "timestamp",
    }
}

/// A date or timestamp PostgreSQL reads and Arrow does not, rewritten in the form Arrow reads
/// (`2020-01-02T03:04:00`, with the zone text kept): the special words `epoch`, `now`, `today`,
/// `tomorrow`, `yesterday` (in the session's `zone`, at `now`); one-digit months, days, hours,
/// minutes and seconds, and no seconds; month names (`Jan 2 2020`, `2 January 2020`,
/// `2020-Jan-02`); a time after a date that is cast to `date` (dropped). Anything else is
/// PostgreSQL's 22007.
pub fn postgres_datetime(
    text: &str,
    target: &DataType,
    zone: Option<&str>,
    now: chrono::DateTime<Utc>,
) -> Result<String> {
    let invalid = || {
        SemsqlError::InvalidDatetime(format!(
            "invalid input syntax for type {}: \"{text}\"",
            type_name(target)
        ))
        .into_datafusion()
    };
    let zone: Tz = zone
        .unwrap_or("+00:00")
        .parse()
        .unwrap_or_else(|_| "+00:00".parse().expect("UTC is a zone"));
    let local_now = zone.from_utc_datetime(&now.naive_utc()).naive_local();
    let is_date = matches!(target, DataType::Date32);
    let print = |at: NaiveDateTime| {
        if is_date {
            at.format("%Y-%m-%d").to_string()
        } else {
            at.format("%Y-%m-%dT%H:%M:%S%.f").to_string()
        }
    };
    let trimmed = text.trim();
    let midnight = |days: i64| {
        print(
            (local_now.date() + Duration::days(days))
                .and_hms_opt(0, 0, 0)
                .expect("midnight exists"),
        )
    };
    match trimmed.to_ascii_lowercase().as_str() {
        "epoch" => {
            let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)
                .and_then(|day| day.and_hms_opt(0, 0, 0))
                .expect("the epoch is a date");
            // The epoch is an instant: midnight UTC, whatever the session's zone.
            return Ok(match target {
                DataType::Timestamp(_, Some(_)) => format!("{}Z", print(epoch)),
                _ => print(epoch),
            });
        }
        "now" => {
            return Ok(match target {
                DataType::Timestamp(_, Some(_)) => format!("{}Z", print(now.naive_utc())),
                _ => print(local_now),
            });
        }
        "today" => return Ok(midnight(0)),
        "tomorrow" => return Ok(midnight(1)),
        "yesterday" => return Ok(midnight(-1)),
        "infinity" | "-infinity" | "+infinity" => {
            return Err(SemsqlError::NotSupported(format!(
                "semsql cannot represent the {} value \"{trimmed}\"",
                type_name(target)
            ))
            .into_datafusion())
        }
        _ => {}
    }
    let out_of_range = || SemsqlError::DatetimeOutOfRange(text.to_owned()).into_datafusion();
    let (date, rest) = match read_date(trimmed) {
        Some(Ok(read)) => read,
        Some(Err(())) => return Err(out_of_range()),
        None => return Err(invalid()),
    };
    let rest = rest.trim_start_matches([' ', 'T', 't']);
    let (time, zone_text) = read_time(rest);
    let Some((hour, minute, second, fraction)) = time else {
        if rest.is_empty() || is_date {
            let at = date.and_hms_opt(0, 0, 0).expect("midnight exists");
            return Ok(print(at));
        }
        return Err(invalid());
    };
    let at = date
        .and_hms_opt(hour, minute, second)
        .ok_or_else(out_of_range)?;
    if is_date {
        return Ok(print(at));
    }
    let mut out = format!("{}{fraction}", at.format("%Y-%m-%dT%H:%M:%S"));
    let zone_text = zone_text.trim();
    if zone_text.is_empty() {
        return Ok(out);
    }
    let zone_suffix = match zone_text.as_bytes()[0] {
        b'+' | b'-' => offset_of(zone_text).ok_or_else(invalid)?,
        _ if zone_text.eq_ignore_ascii_case("z") => "Z".to_owned(),
        _ => {
            zone_text.parse::<Tz>().map_err(|_| invalid())?;
            format!(" {zone_text}")
        }
    };
    // PostgreSQL checks a zone given for a timestamp without one, then ignores it.
    if matches!(target, DataType::Timestamp(_, Some(_))) {
        out.push_str(&zone_suffix);
    }
    Ok(out)
}

/// `2020-01-02`, `2020-1-2`, `Jan 2 2020`, `January 2, 2020`, `2 Jan 2020`, `2020-Jan-02` at the
/// start of `text`, and what follows it; `Some(Err(()))` when its fields are numbers but name no
/// day (`2020-13-01`).
type DateRead<'a> = Option<std::result::Result<(NaiveDate, &'a str), ()>>;

fn read_date(text: &str) -> DateRead<'_> {
    let words: Vec<&str> = text.splitn(4, [' ', 'T', 't']).collect();
    // Numeric: year-month-day.
    let numeric = words[0];
    let parts: Vec<&str> = numeric.split('-').collect();
    if parts.len() == 3 && parts[0].len() == 4 {
        let rest = &text[numeric.len()..];
        let month = month_number(parts[1]).or_else(|| parts[1].parse().ok())?;
        let date = NaiveDate::from_ymd_opt(parts[0].parse().ok()?, month, parts[2].parse().ok()?);
        return Some(date.map(|date| (date, rest)).ok_or(()));
    }
    // With a month name, in either order, the year last; the time may follow.
    if words.len() >= 3 {
        let first = words[0].trim_end_matches(',');
        let second = words[1].trim_end_matches(',');
        let (month, day) = match (month_number(first), month_number(second)) {
            (Some(month), None) => (month, second.parse().ok()?),
            (None, Some(month)) => (month, first.parse().ok()?),
            _ => return None,
        };
        let year: i32 = words[2].parse().ok()?;
        let used = words[..3].iter().map(|w| w.len() + 1).sum::<usize>() - 1;
        let date = NaiveDate::from_ymd_opt(year, month, day);
        return Some(
            date.map(|date| (date, &text[used.min(text.len())..]))
                .ok_or(()),
        );
    }
    None
}

fn month_number(word: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    let word = word.to_ascii_lowercase();
    if word.len() < 3 {
        return None;
    }
    MONTHS
        .iter()
        .position(|month| month.starts_with(&word) || word == "sept" && *month == "september")
        .map(|at| at as u32 + 1)
}

/// `h:mm[:ss[.fff]]` at the start of `text` (hours, minutes and seconds of one or two digits),
/// with the fraction as written (`.5`), and what follows.
#[allow(clippy::type_complexity)]
fn read_time(text: &str) -> (Option<(u32, u32, u32, String)>, &str) {
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == ':' || c == '.'))
        .unwrap_or(text.len());
    let (clock, rest) = text.split_at(end);
    let (clock, fraction) = match clock.split_once('.') {
        Some((clock, digits)) if digits.bytes().all(|b| b.is_ascii_digit()) => {
            (clock, format!(".{digits}"))
        }
        Some(_) => return (None, text),
        None => (clock, String::new()),
    };
    let fields: Vec<&str> = clock.split(':').collect();
    let number = |field: &str| {
        (1..=2)
            .contains(&field.len())
            .then(|| field.parse::<u32>().ok())
            .flatten()
    };
    let time = match fields.as_slice() {
        [hour, minute] => number(hour).zip(number(minute)).map(|(h, m)| (h, m, 0)),
        [hour, minute, second] => number(hour)
            .zip(number(minute))
            .zip(number(second))
            .map(|((h, m), s)| (h, m, s)),
        _ => None,
    };
    match time {
        Some((hour, minute, second)) => (Some((hour, minute, second, fraction)), rest),
        None => (None, text),
    }
}

/// `+5`, `+05`, `+0530`, `+05:30`, `-3` as Arrow reads an offset (`+05:30`).
fn offset_of(text: &str) -> Option<String> {
    let (sign, digits) = text.split_at(1);
    let (hours, minutes) = match digits.split_once(':') {
        Some((hours, minutes)) => (hours, minutes),
        None if digits.len() > 2 => digits.split_at(digits.len() - 2),
        None => (digits, "0"),
    };
    let hours: u32 = hours.parse().ok()?;
    let minutes: u32 = minutes.parse().ok()?;
    (hours <= 15 && minutes < 60).then(|| format!("{sign}{hours:02}:{minutes:02}"))
}

/// `CAST(value AS text)` for the types whose text Arrow writes otherwise than PostgreSQL.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PostgresText {
    signature: Signature,
}

impl PostgresText {
    pub fn new() -> Self {
        PostgresText {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl Default for PostgresText {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for PostgresText {
    fn name(&self) -> &str {
        "text"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    /// NULL only for NULL, as the cast it stands for (a plan planned again must keep its
    /// schema: `CREATE TABLE ... AS` checks the rows against the first one).
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let nullable = args.arg_fields.iter().any(|field| field.is_nullable());
        Ok(Arc::new(Field::new(self.name(), DataType::Utf8, nullable)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let values = args.args[0].to_array(args.number_rows)?;
        let texts = postgres_texts(&values)?;
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&texts, 0)?)
        } else {
            ColumnarValue::Array(texts)
        })
    }
}

/// Each value's PostgreSQL text.
fn postgres_texts(values: &ArrayRef) -> Result<ArrayRef> {
    let mut out = StringBuilder::with_capacity(values.len(), values.len() * 16);
    let mut each = |text: Option<String>| match text {
        Some(text) => out.append_value(text),
        None => out.append_null(),
    };
    match values.data_type() {
        DataType::Float64 => {
            let floats: &Float64Array = values.as_primitive::<Float64Type>();
            floats.iter().for_each(|v| each(v.map(float8_text)));
        }
        DataType::Float32 => {
            let floats: &Float32Array = values.as_primitive::<Float32Type>();
            floats.iter().for_each(|v| each(v.map(float4_text)));
        }
        DataType::Timestamp(_, zone) => {
            // PostgreSQL keeps microseconds.
            let micros = cast(
                values,
                &DataType::Timestamp(TimeUnit::Microsecond, zone.clone()),
            )?;
            let zone: Option<Tz> = zone.as_deref().and_then(|zone| zone.parse().ok());
            for value in micros.as_primitive::<TimestampMicrosecondType>().iter() {
                let at = value
                    .and_then(chrono::DateTime::from_timestamp_micros)
                    .map(|at| at.naive_utc());
                each(at.map(|at| match &zone {
                    Some(zone) => timestamptz_text(&at, zone),
                    None => timestamp_text(&at),
                }));
            }
        }
        DataType::Time64(_) => {
            let micros = cast(values, &DataType::Time64(TimeUnit::Microsecond))?;
            let texts = cast(&micros, &DataType::Utf8)?;
            for text in texts.as_string::<i32>().iter() {
                each(text.map(trim_fraction));
            }
        }
        DataType::Interval(_) => {
            let intervals = cast(values, &DataType::Interval(IntervalUnit::MonthDayNano))?;
            for value in intervals.as_primitive::<IntervalMonthDayNanoType>().iter() {
                each(value.map(|v| interval_text(v.months, v.days, v.nanoseconds)));
            }
        }
        _ => {
            let texts = cast(values, &DataType::Utf8)?;
            texts
                .as_string::<i32>()
                .iter()
                .for_each(|v| each(v.map(str::to_owned)));
        }
    }
    Ok(Arc::new(out.finish()))
}

/// `CAST(text_column AS timestamp | timestamptz | date)`: Arrow's reading, and PostgreSQL's
/// forms ([`postgres_datetime`]) for the values Arrow does not read.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PostgresDatetimeIn {
    target: DataType,
    zone: Option<String>,
    signature: Signature,
}

impl PostgresDatetimeIn {
    pub fn new(target: DataType, zone: Option<String>) -> Self {
        PostgresDatetimeIn {
            target,
            zone,
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for PostgresDatetimeIn {
    fn name(&self) -> &str {
        match self.target {
            DataType::Date32 => "date",
            DataType::Timestamp(_, Some(_)) => "timestamptz",
            _ => "timestamp",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.target.clone())
    }

    /// NULL only for NULL, as the cast it stands for (an unreadable value is an error).
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let nullable = args.arg_fields.iter().any(|field| field.is_nullable());
        Ok(Arc::new(Field::new(
            self.name(),
            self.target.clone(),
            nullable,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let values = cast(&args.args[0].to_array(args.number_rows)?, &DataType::Utf8)?;
        let texts = values.as_string::<i32>();
        let safe = CastOptions {
            safe: true,
            ..Default::default()
        };
        let read = cast_with_options(&values, &self.target, &safe)?;
        let read = if read.null_count() == texts.null_count() {
            read
        } else {
            // Some values Arrow did not read: read them PostgreSQL's way, the rest as they were.
            let now = Utc::now();
            let mut fixed = StringBuilder::with_capacity(texts.len(), texts.len() * 20);
            for (at, text) in texts.iter().enumerate() {
                match text {
                    Some(text) if read.is_null(at) => fixed.append_value(postgres_datetime(
                        text,
                        &self.target,
                        self.zone.as_deref(),
                        now,
                    )?),
                    Some(text) => fixed.append_value(text),
                    None => fixed.append_null(),
                }
            }
            let fixed: ArrayRef = Arc::new(fixed.finish());
            cast_with_options(&fixed, &self.target, &CastOptions::default())?
        };
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&read, 0)?)
        } else {
            ColumnarValue::Array(read)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, target: &DataType) -> std::result::Result<String, String> {
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 20, 30, 0).unwrap();
        postgres_datetime(text, target, Some("Asia/Kolkata"), now).map_err(|err| {
            format!(
                "{} {}",
                crate::error::sqlstate_of(&err),
                crate::error::client_message(&err)
            )
        })
    }

    #[test]
    fn datetimes_read_as_postgres_reads_them() {
        let timestamp = DataType::Timestamp(TimeUnit::Nanosecond, None);
        let zoned = DataType::Timestamp(TimeUnit::Nanosecond, Some("+00:00".into()));
        let date = DataType::Date32;
        for (text, target, expected) in [
            ("2020-01-02 03:04", &timestamp, "2020-01-02T03:04:00"),
            ("2020-1-2 3:04:05.25", &timestamp, "2020-01-02T03:04:05.25"),
            ("Jan 2 2020", &date, "2020-01-02"),
            ("January 2, 2020 10:00", &timestamp, "2020-01-02T10:00:00"),
            ("2 jan 2020", &date, "2020-01-02"),
            ("2020-Jan-02", &date, "2020-01-02"),
            ("2020-01-02 03:04:05", &date, "2020-01-02"),
            (
                "2020-01-02 03:04 +5:30",
                &zoned,
                "2020-01-02T03:04:00+05:30",
            ),
            (
                "2020-01-02 03:04 -0300",
                &zoned,
                "2020-01-02T03:04:00-03:00",
            ),
            (
                "2020-01-02 3:04 Europe/Berlin",
                &zoned,
                "2020-01-02T03:04:00 Europe/Berlin",
            ),
            ("2020-01-02 03:04 +05", &timestamp, "2020-01-02T03:04:00"),
            ("epoch", &timestamp, "1970-01-01T00:00:00"),
            ("epoch", &zoned, "1970-01-01T00:00:00Z"),
            // 20:30 UTC is 02:00 the next day in Kolkata, the session's zone.
            ("today", &date, "2026-12-02"),
            ("TOMORROW", &timestamp, "2026-12-03T00:00:00"),
            ("yesterday", &zoned, "2026-12-01T00:00:00"),
            ("now", &zoned, "2026-12-01T20:30:00Z"),
            ("now", &timestamp, "2026-12-02T02:00:00"),
        ] {
            assert_eq!(read(text, target).as_deref(), Ok(expected), "{text}");
        }
        for (text, target, expected) in [
            (
                "soon",
                &timestamp,
                "22007 invalid input syntax for type timestamp: \"soon\"",
            ),
            // PostgreSQL 15's answers.
            (
                "2020-13-02",
                &date,
                "22008 date/time field value out of range: \"2020-13-02\"",
            ),
            (
                "2020-01-02 25:00",
                &zoned,
                "22008 date/time field value out of range: \"2020-01-02 25:00\"",
            ),
            (
                "2020-01-02 03:04 x",
                &timestamp,
                "22007 invalid input syntax for type timestamp: \"2020-01-02 03:04 x\"",
            ),
        ] {
            assert_eq!(read(text, target), Err(expected.to_owned()), "{text}");
        }
        assert!(read("infinity", &timestamp)
            .unwrap_err()
            .starts_with("0A000"));
    }
}
