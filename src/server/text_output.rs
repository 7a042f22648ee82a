//! PostgreSQL's text output for the types where pgwire's encoders print otherwise:
//! float4/float8 in the shortest form that reads back exactly, as PostgreSQL 12 and later print
//! it (`1500`, `1.5`, `1e+20`, `Infinity`; pgwire prints `1500.0`, `1e20`, `inf`), and
//! time, timestamp and timestamptz with a fraction only when it is not zero (`03:04:05`,
//! `03:04:05.5`; pgwire always prints six digits).
//!
//! The encoders are pgwire's, so the fix is applied to the encoded rows: a text-format column
//! of one of these types has each value re-read and printed again. Binary-format columns and
//! every other type pass through untouched.

use bytes::{BufMut, BytesMut};
use futures::StreamExt;
use pgwire::api::results::{FieldFormat, QueryResponse, Response};
use pgwire::api::Type;
use pgwire::messages::data::DataRow;

use chrono::{LocalResult, NaiveDateTime, Offset, TimeZone};

use crate::engine::text_format::{float4_text, float8_text, offset_text, trim_fraction};
use datafusion::arrow::array::timezone::Tz;

/// How a column's text is printed again.
#[derive(Clone, Copy, Debug)]
enum Reprint {
    Float4,
    Float8,
    /// time, timestamp: the fraction without trailing zeros.
    Fraction,
    /// timestamptz: the fraction as for timestamps, and the offset's minutes (pgwire prints
    /// `+05` for Asia/Kolkata's `+05:30`), read from the session's zone.
    Zoned(Tz),
}

fn reprint_of(ty: &Type, extra_float_digits: i8, zone: Option<Tz>) -> Option<Reprint> {
    match *ty {
        // With extra_float_digits of 0 or less PostgreSQL rounds to fewer digits, which
        // pgwire does as PostgreSQL does.
        Type::FLOAT4 if extra_float_digits >= 1 => Some(Reprint::Float4),
        Type::FLOAT8 if extra_float_digits >= 1 => Some(Reprint::Float8),
        Type::TIME | Type::TIMESTAMP => Some(Reprint::Fraction),
        Type::TIMESTAMPTZ => Some(zone.map_or(Reprint::Fraction, Reprint::Zoned)),
        _ => None,
    }
}

/// The response with its text values printed as PostgreSQL prints them; `time_zone` is the
/// session's (`datafusion.execution.time_zone`), in which timestamptz values were printed.
pub fn postgres_text(response: Response, time_zone: Option<&str>) -> Response {
    let Response::Query(query) = response else {
        return response;
    };
    let zone = time_zone.and_then(|zone| zone.parse::<Tz>().ok());
    let reprints: Vec<Option<Reprint>> = query
        .row_schema
        .iter()
        .map(|field| match field.format() {
            FieldFormat::Text => reprint_of(
                field.datatype(),
                field.format_options().extra_float_digits,
                zone,
            ),
            FieldFormat::Binary => None,
        })
        .collect();
    if reprints.iter().all(Option::is_none) {
        return Response::Query(query);
    }
    let QueryResponse {
        command_tag,
        row_schema,
        data_rows,
        ..
    } = query;
    let rows = data_rows.map(move |row| row.map(|row| reprint_row(row, &reprints)));
    let mut response = QueryResponse::new(row_schema, rows);
    response.command_tag = command_tag;
    Response::Query(response)
}

/// Values of given types printed again as PostgreSQL prints them, for `COPY ... TO`, whose
/// rows are written as lines of text rather than sent as a query's rows.
pub struct CopyText {
    reprints: Vec<Option<Reprint>>,
}

impl CopyText {
    /// For columns of `types`, with the session's `time_zone` (see [`postgres_text`]).
    pub fn new<'a>(types: impl IntoIterator<Item = &'a Type>, time_zone: Option<&str>) -> Self {
        let zone = time_zone.and_then(|zone| zone.parse::<Tz>().ok());
        Self {
            // COPY prints floats in the shortest form, as extra_float_digits = 1 does.
            reprints: types
                .into_iter()
                .map(|ty| reprint_of(ty, 1, zone))
                .collect(),
        }
    }

    /// The value of column `column`, printed as PostgreSQL prints it.
    pub fn value(&self, column: usize, text: String) -> String {
        match self.reprints.get(column).copied().flatten() {
            Some(reprint) => reprint_text(reprint, &text).unwrap_or(text),
            None => text,
        }
    }
}

/// `text` printed again as `reprint` says, or `None` when it does not read as that type.
fn reprint_text(reprint: Reprint, text: &str) -> Option<String> {
    match reprint {
        Reprint::Float4 => text.parse::<f32>().ok().map(float4_text),
        Reprint::Float8 => text.parse::<f64>().ok().map(float8_text),
        Reprint::Fraction => Some(trim_fraction(text)),
        Reprint::Zoned(zone) => Some(trim_fraction(&full_offset(text, &zone))),
    }
}

fn reprint_row(row: DataRow, reprints: &[Option<Reprint>]) -> DataRow {
    let data = &row.data;
    let mut out = BytesMut::with_capacity(data.len());
    let mut at = 0;
    for reprint in reprints.iter().take(row.field_count.max(0) as usize) {
        let Some(length_bytes) = data.get(at..at + 4) else {
            return row;
        };
        let length = i32::from_be_bytes(length_bytes.try_into().expect("four bytes"));
        at += 4;
        if length < 0 {
            out.put_i32(length);
            continue;
        }
        let Some(value) = data.get(at..at + length as usize) else {
            return row;
        };
        at += length as usize;
        let reprinted =
            reprint.and_then(|reprint| reprint_text(reprint, std::str::from_utf8(value).ok()?));
        match reprinted {
            Some(text) => {
                out.put_i32(text.len() as i32);
                out.put_slice(text.as_bytes());
            }
            None => {
                out.put_i32(length);
                out.put_slice(value);
            }
        }
    }
    DataRow::new(out, row.field_count)
}

/// A timestamptz's text (ISO style, `2020-01-02 08:34:05.000000+05`) with its offset as
/// PostgreSQL prints it: hours, then minutes and seconds when they are not zero (`+05:30`).
/// pgwire prints the hours only, so the offset is found again from the local time in `zone`,
/// the one whose hours were printed (two offsets share a local time when clocks go back).
/// Text of another shape is returned unchanged.
pub fn full_offset(text: &str, zone: &Tz) -> String {
    let Some(sign_at) = text.rfind(['+', '-']).filter(|at| *at > 10) else {
        return text.to_owned();
    };
    let (local_text, printed) = text.split_at(sign_at);
    let Ok(printed_hours) = printed.parse::<i32>() else {
        return text.to_owned();
    };
    let Ok(local) = NaiveDateTime::parse_from_str(local_text, "%Y-%m-%d %H:%M:%S%.f") else {
        return text.to_owned();
    };
    let offsets = match zone.offset_from_local_datetime(&local) {
        LocalResult::Single(offset) => vec![offset],
        LocalResult::Ambiguous(early, late) => vec![early, late],
        LocalResult::None => return text.to_owned(),
    };
    let seconds = offsets
        .iter()
        .map(|offset| offset.fix().local_minus_utc())
        .find(|seconds| seconds / 3600 == printed_hours);
    let Some(seconds) = seconds else {
        return text.to_owned();
    };
    format!("{local_text}{}", offset_text(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_keep_their_minutes() {
        // Each expected text was printed by PostgreSQL 15 with the zone set.
        let zone = |name: &str| name.parse::<Tz>().unwrap();
        assert_eq!(
            full_offset("2020-01-02 08:34:05.000000+05", &zone("Asia/Kolkata")),
            "2020-01-02 08:34:05.000000+05:30"
        );
        assert_eq!(
            full_offset("2020-01-01 23:34:05+00", &zone("+00:00")),
            "2020-01-01 23:34:05+00"
        );
        assert_eq!(
            full_offset("2020-01-01 23:34:05-03", &zone("-03:30")),
            "2020-01-01 23:34:05-03:30"
        );
        // Adelaide's clocks go back from +10:30 to +09:30 at 03:00 on 2020-04-05: 02:30 happens
        // twice, and the printed hours say which.
        let adelaide = zone("Australia/Adelaide");
        assert_eq!(
            full_offset("2020-04-05 02:30:00+10", &adelaide),
            "2020-04-05 02:30:00+10:30"
        );
        assert_eq!(
            full_offset("2020-04-05 02:30:00+09", &adelaide),
            "2020-04-05 02:30:00+09:30"
        );
        // Local mean time before time zones: seconds too.
        assert_eq!(
            full_offset("1850-01-01 00:00:00+05", &zone("Asia/Kolkata")),
            "1850-01-01 00:00:00+05:53:28"
        );
        assert_eq!(full_offset("not a time", &adelaide), "not a time");
    }

    #[test]
    fn floats_print_as_postgres_prints_them() {
        // Each pair was printed by PostgreSQL 15 (`SELECT x::float8`).
        for (value, expected) in [
            (1500.0, "1500"),
            (1.5, "1.5"),
            (1e20, "1e+20"),
            (1e15, "1e+15"),
            (123456789012345.0, "123456789012345"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5e-7, "-2.5e-07"),
            (0.1, "0.1"),
            (1.0 / 3.0, "0.3333333333333333"),
            (1e100, "1e+100"),
            (-0.0, "-0"),
            (0.0, "0"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(float8_text(value), expected, "{value}");
        }
        for (value, expected) in [
            (0.1f32, "0.1"),
            (100000.0, "100000"),
            (1000000.0, "1e+06"),
            (1.5e-5, "1.5e-05"),
        ] {
            assert_eq!(float4_text(value), expected, "{value}");
        }
    }

    #[test]
    fn fractions_lose_their_trailing_zeros() {
        assert_eq!(
            trim_fraction("2020-01-02 03:04:05.000000"),
            "2020-01-02 03:04:05"
        );
        assert_eq!(
            trim_fraction("2020-01-02 03:04:05.500000"),
            "2020-01-02 03:04:05.5"
        );
        assert_eq!(
            trim_fraction("2020-01-02 03:04:05.000000+00"),
            "2020-01-02 03:04:05+00"
        );
        assert_eq!(trim_fraction("03:04:05.120000-05:30"), "03:04:05.12-05:30");
        assert_eq!(trim_fraction("03:04:05"), "03:04:05");
    }

    #[test]
    fn rows_are_reprinted_column_by_column() {
        let mut data = BytesMut::new();
        for value in [Some("1500.0"), None, Some("keep.000000")] {
            match value {
                Some(text) => {
                    data.put_i32(text.len() as i32);
                    data.put_slice(text.as_bytes());
                }
                None => data.put_i32(-1),
            }
        }
        let row = DataRow::new(data, 3);
        let out = reprint_row(row, &[Some(Reprint::Float8), Some(Reprint::Float8), None]);
        let mut expected = BytesMut::new();
        expected.put_i32(4);
        expected.put_slice(b"1500");
        expected.put_i32(-1);
        expected.put_i32(11);
        expected.put_slice(b"keep.000000");
        assert_eq!(out.data, expected);
    }
}
