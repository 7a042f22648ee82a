//! Date and timestamp parameters in text format, read as PostgreSQL reads them.
//!
//! The parameter decoder (arrow-pg, with pgwire's text parsers) reads only ISO forms with
//! seconds, so `WHERE t > $1` with `'2020-01-02'`, `'2020-01-02 03:04'`, `'Jan 2 2020'` or
//! `'epoch'` failed to bind, where PostgreSQL reads each of them (a JDBC `setString`, or any
//! driver passing a string, sends such text). Before the decoder sees them, such values are
//! read with the rules casts use (`planner::postgres_casts`) and handed on in the ISO form the
//! decoder reads; a value neither reads is PostgreSQL's 22007.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use datafusion::arrow::compute::{cast_with_options, CastOptions};
use datafusion::arrow::datatypes::{DataType, Date32Type, TimeUnit, TimestampMicrosecondType};
use pgwire::api::portal::Portal;
use pgwire::api::Type;
use pgwire::error::{PgWireError, PgWireResult};

use crate::planner::postgres_casts::postgres_datetime;

/// The Arrow type a date/time parameter of `ty` is read as.
fn target_of(ty: &Type, zone: Option<&str>) -> Option<DataType> {
    Some(match *ty {
        Type::DATE => DataType::Date32,
        Type::TIMESTAMP => DataType::Timestamp(TimeUnit::Microsecond, None),
        Type::TIMESTAMPTZ => {
            DataType::Timestamp(TimeUnit::Microsecond, Some(zone.unwrap_or("+00:00").into()))
        }
        _ => return None,
    })
}

/// `text` as a `target` value, Arrow's reading first; `None` when Arrow does not read it.
fn arrow_read(text: &str, target: &DataType) -> Option<ArrayRef> {
    let array: ArrayRef = Arc::new(StringArray::from(vec![text]));
    let safe = CastOptions {
        safe: true,
        ..Default::default()
    };
    cast_with_options(&array, target, &safe)
        .ok()
        .filter(|read| read.null_count() == 0)
}

/// The ISO text the parameter decoder reads for the value PostgreSQL reads from `text`.
pub fn iso_text(text: &str, ty: &Type, zone: Option<&str>) -> PgWireResult<Option<String>> {
    let Some(target) = target_of(ty, zone) else {
        return Ok(None);
    };
    let read = match arrow_read(text, &target) {
        Some(read) => read,
        None => {
            let respelled = postgres_datetime(text, &target, zone, Utc::now())
                .map_err(|err| PgWireError::ApiError(Box::new(err)))?;
            match arrow_read(&respelled, &target) {
                Some(read) => read,
                None => return Ok(None),
            }
        }
    };
    Ok(match target {
        DataType::Date32 => {
            let days = read.as_primitive::<Date32Type>().value(0);
            NaiveDate::from_num_days_from_ce_opt(days + 719_163)
                .map(|date| date.format("%Y-%m-%d").to_string())
        }
        DataType::Timestamp(_, zone) => {
            let micros = read.as_primitive::<TimestampMicrosecondType>().value(0);
            DateTime::<Utc>::from_timestamp_micros(micros).map(|moment| {
                let local = moment.naive_utc().format("%Y-%m-%dT%H:%M:%S%.6f");
                // A timestamptz is the instant, in UTC; a timestamp its wall-clock time.
                match zone {
                    Some(_) => format!("{local}+00:00"),
                    None => local.to_string(),
                }
            })
        }
        _ => None,
    })
}

/// The portal with its text-format date and timestamp parameters rewritten in ISO form, or
/// `None` when none needed it. `types` are the parameters' types as described to the client
/// (declared or inferred); `zone` is the session's time zone.
pub fn with_iso_datetimes<S: Clone + Default>(
    portal: &Portal<S>,
    types: &[Type],
    zone: Option<&str>,
) -> PgWireResult<Option<Portal<S>>> {
    let mut parameters = portal.parameters.clone();
    let mut changed = false;
    for (index, value) in parameters.iter_mut().enumerate() {
        if portal.parameter_format.is_binary(index) {
            continue;
        }
        let (Some(ty), Some(bytes)) = (types.get(index), value.as_ref()) else {
            continue;
        };
        if target_of(ty, zone).is_none() {
            continue;
        }
        let Ok(text) = std::str::from_utf8(bytes) else {
            continue;
        };
        if let Some(iso) = iso_text(text, ty, zone)? {
            if iso != text {
                *value = Some(Bytes::from(iso));
                changed = true;
            }
        }
    }
    if !changed {
        return Ok(None);
    }
    // `Portal` is non-exhaustive: made from its default, then filled in.
    let mut rewritten = Portal::default();
    rewritten.name = portal.name.clone();
    rewritten.statement = portal.statement.clone();
    rewritten.parameter_format = portal.parameter_format.clone();
    rewritten.parameters = parameters;
    rewritten.result_column_format = portal.result_column_format.clone();
    rewritten.state = portal.state.clone();
    Ok(Some(rewritten))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_timestamps_are_read_as_postgresql_reads_them() {
        let iso = |text: &str, ty: &Type| iso_text(text, ty, Some("+00:00")).unwrap();
        assert_eq!(
            iso("2020-01-02", &Type::TIMESTAMP).as_deref(),
            Some("2020-01-02T00:00:00.000000")
        );
        assert_eq!(
            iso("2020-01-02 03:04", &Type::TIMESTAMP).as_deref(),
            Some("2020-01-02T03:04:00.000000")
        );
        assert_eq!(
            iso("Jan 2 2020", &Type::DATE).as_deref(),
            Some("2020-01-02")
        );
        assert_eq!(
            iso("epoch", &Type::TIMESTAMPTZ).as_deref(),
            Some("1970-01-01T00:00:00.000000+00:00")
        );
        assert_eq!(
            iso("2020-01-02 03:04 +05:30", &Type::TIMESTAMPTZ).as_deref(),
            Some("2020-01-01T21:34:00.000000+00:00")
        );
        assert!(iso_text("not a date", &Type::DATE, None).is_err());
        assert_eq!(iso("12", &Type::INT4), None);
    }
}
