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

/// How a column's text is printed again.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Reprint {
    Float4,
    Float8,
    /// time, timestamp, timestamptz: the fraction without trailing zeros.
    Fraction,
}

fn reprint_of(ty: &Type, extra_float_digits: i8) -> Option<Reprint> {
    match *ty {
        // With extra_float_digits of 0 or less PostgreSQL rounds to fewer digits, which
        // pgwire does as PostgreSQL does.
        Type::FLOAT4 if extra_float_digits >= 1 => Some(Reprint::Float4),
        Type::FLOAT8 if extra_float_digits >= 1 => Some(Reprint::Float8),
        Type::TIME | Type::TIMESTAMP | Type::TIMESTAMPTZ => Some(Reprint::Fraction),
        _ => None,
    }
}

/// The response with its text values printed as PostgreSQL prints them.
pub fn postgres_text(response: Response) -> Response {
    let Response::Query(query) = response else {
        return response;
    };
    let reprints: Vec<Option<Reprint>> = query
        .row_schema
        .iter()
        .map(|field| match field.format() {
            FieldFormat::Text => {
                reprint_of(field.datatype(), field.format_options().extra_float_digits)
            }
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
        let reprinted = reprint.and_then(|reprint| {
            let text = std::str::from_utf8(value).ok()?;
            match reprint {
                Reprint::Float4 => text.parse::<f32>().ok().map(float4_text),
                Reprint::Float8 => text.parse::<f64>().ok().map(float8_text),
                Reprint::Fraction => Some(trim_fraction(text)),
            }
        });
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

/// float8 as PostgreSQL prints it (`float8out`): the shortest digits that read back exactly,
/// in fixed notation when the decimal exponent is in [-4, 15), else as `1.5e+20`.
pub fn float8_text(value: f64) -> String {
    if value.is_nan() {
        return "NaN".to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    shortest(&format!("{value:e}"), 15)
}

/// float4 as PostgreSQL prints it (`float4out`): as float8 but fixed only below 10^6.
pub fn float4_text(value: f32) -> String {
    if value.is_nan() {
        return "NaN".to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    shortest(&format!("{value:e}"), 6)
}

/// Rust's shortest `{:e}` form (`-1.5e3`) in PostgreSQL's layout; fixed notation for
/// exponents in [-4, `fixed_below`).
fn shortest(exponential: &str, fixed_below: i32) -> String {
    let (mantissa, exponent) = exponential
        .split_once('e')
        .expect("{:e} always writes an exponent");
    let exponent: i32 = exponent.parse().expect("an integer exponent");
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if digits == "0" {
        return format!("{sign}0");
    }
    if (-4..fixed_below).contains(&exponent) {
        let fixed = if exponent >= 0 {
            let whole = exponent as usize + 1;
            if digits.len() <= whole {
                format!("{digits}{}", "0".repeat(whole - digits.len()))
            } else {
                format!("{}.{}", &digits[..whole], &digits[whole..])
            }
        } else {
            format!("0.{}{digits}", "0".repeat((-exponent - 1) as usize))
        };
        return format!("{sign}{fixed}");
    }
    let mantissa = if digits.len() > 1 {
        format!("{}.{}", &digits[..1], &digits[1..])
    } else {
        digits
    };
    let exponent_sign = if exponent < 0 { '-' } else { '+' };
    format!("{sign}{mantissa}e{exponent_sign}{:02}", exponent.abs())
}

/// A time or timestamp's text with its fraction's trailing zeros dropped, and the fraction
/// with them when it is all zeros (`03:04:05.500000+00` → `03:04:05.5+00`).
pub fn trim_fraction(text: &str) -> String {
    let Some(dot) = text.find('.') else {
        return text.to_owned();
    };
    let digits_end = text[dot + 1..]
        .find(|c: char| !c.is_ascii_digit())
        .map_or(text.len(), |end| dot + 1 + end);
    let fraction = text[dot + 1..digits_end].trim_end_matches('0');
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..dot]);
    if !fraction.is_empty() {
        out.push('.');
        out.push_str(fraction);
    }
    out.push_str(&text[digits_end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
