//! PostgreSQL's text for values whose Arrow text differs: floats (`1e+20`, `Infinity`),
//! timestamps (`2020-01-02 03:04:05.5`, no `T`, no trailing zeros), timestamptz with its offset
//! (`+05:30`) and intervals (`1 day 02:00:00`). Used where values leave as text: the wire
//! (`server::text_output`) and casts to text (`planner::postgres_casts`).

use chrono::{DateTime, NaiveDateTime, Offset, TimeZone};
use datafusion::arrow::array::timezone::Tz;

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

/// An offset as PostgreSQL prints it: hours, then minutes and seconds when not zero
/// (`+00`, `+05:30`, `+05:53:28`).
pub fn offset_text(seconds_east: i32) -> String {
    let sign = if seconds_east < 0 { '-' } else { '+' };
    let seconds = seconds_east.abs();
    let (hours, minutes, rest) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    let mut out = format!("{sign}{hours:02}");
    if minutes != 0 || rest != 0 {
        out.push_str(&format!(":{minutes:02}"));
    }
    if rest != 0 {
        out.push_str(&format!(":{rest:02}"));
    }
    out
}

/// A timestamp as PostgreSQL prints it in the ISO style (`2020-01-02 03:04:05.5`); years
/// before 1 as `... BC`.
pub fn timestamp_text(value: &NaiveDateTime) -> String {
    with_era(
        value,
        trim_fraction(&value.format("%Y-%m-%d %H:%M:%S%.6f").to_string()),
    )
}

/// A timestamptz in `zone` as PostgreSQL prints it (`2020-01-02 08:34:05+05:30`).
pub fn timestamptz_text(utc: &NaiveDateTime, zone: &Tz) -> String {
    let local: DateTime<Tz> = zone.from_utc_datetime(utc);
    let naive = local.naive_local();
    let seconds_east = local.offset().fix().local_minus_utc();
    let text = trim_fraction(&naive.format("%Y-%m-%d %H:%M:%S%.6f").to_string());
    with_era(&naive, format!("{text}{}", offset_text(seconds_east)))
}

/// PostgreSQL writes year 0 as `0001 BC`, year -1 as `0002 BC` (there is no year 0).
fn with_era(value: &NaiveDateTime, text: String) -> String {
    use chrono::Datelike;
    let year = value.year();
    if year > 0 {
        return text;
    }
    let rest = text.trim_start_matches('-');
    let rest = &rest[rest.find('-').unwrap_or(0)..];
    let (time, offset) = match rest.rfind(['+', '-']).filter(|at| *at > 6) {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    format!("{:04}{time}{offset} BC", 1 - year)
}

/// An interval as PostgreSQL prints it in its default style (`IntervalStyle = postgres`):
/// years, months and days with their own signs, then the time (`-1 days +02:00:00`,
/// `1 year 2 mons`, `00:00:00`). The algorithm is PostgreSQL's `EncodeInterval`.
pub fn interval_text(months: i32, days: i32, nanoseconds: i64) -> String {
    let mut out = String::new();
    let mut is_zero = true;
    let mut is_before = false;
    let mut part = |value: i64, unit: &str, out: &mut String| {
        if value == 0 {
            return;
        }
        if !is_zero {
            out.push(' ');
        }
        let plus = if is_before && value > 0 { "+" } else { "" };
        let plural = if value != 1 { "s" } else { "" };
        out.push_str(&format!("{plus}{value} {unit}{plural}"));
        is_before = value < 0;
        is_zero = false;
    };
    part(i64::from(months / 12), "year", &mut out);
    part(i64::from(months % 12), "mon", &mut out);
    part(i64::from(days), "day", &mut out);
    // PostgreSQL keeps microseconds; Arrow's nanoseconds are cut to them.
    let micros = nanoseconds / 1000;
    if is_zero || micros != 0 {
        let sign = if micros < 0 {
            "-"
        } else if is_before {
            "+"
        } else {
            ""
        };
        let micros = micros.unsigned_abs();
        let (hours, minutes, seconds, fraction) = (
            micros / 3_600_000_000,
            micros / 60_000_000 % 60,
            micros / 1_000_000 % 60,
            micros % 1_000_000,
        );
        if !is_zero {
            out.push(' ');
        }
        out.push_str(&format!("{sign}{hours:02}:{minutes:02}:{seconds:02}"));
        if fraction != 0 {
            out.push_str(format!(".{fraction:06}").trim_end_matches('0'));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_print_as_postgres_prints_them() {
        // Each expected text was printed by PostgreSQL 15 (`SELECT interval '...'::text`).
        const HOUR: i64 = 3_600_000_000_000;
        const SECOND: i64 = 1_000_000_000;
        for ((months, days, nanos), expected) in [
            ((0, 1, 2 * HOUR), "1 day 02:00:00"),
            ((0, -1, 2 * HOUR), "-1 days +02:00:00"),
            ((0, 0, 0), "00:00:00"),
            (
                (14, -3, 4 * HOUR + 5 * 60 * SECOND + 6 * SECOND + SECOND / 2),
                "1 year 2 mons -3 days +04:05:06.5",
            ),
            (
                (0, 0, -(4 * HOUR + 5 * 60 * SECOND + 6 * SECOND)),
                "-04:05:06",
            ),
            ((1, 0, 0), "1 mon"),
            ((-14, 0, 0), "-1 years -2 mons"),
            ((0, 0, 100 * HOUR), "100:00:00"),
            ((0, 0, 1000), "00:00:00.000001"),
            ((0, 1, -SECOND), "1 day -00:00:01"),
        ] {
            assert_eq!(interval_text(months, days, nanos), expected);
        }
    }

    #[test]
    fn timestamps_print_as_postgres_prints_them() {
        let at = |text: &str| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").unwrap();
        assert_eq!(
            timestamp_text(&at("2020-01-02 03:04:05.123")),
            "2020-01-02 03:04:05.123"
        );
        assert_eq!(
            timestamp_text(&at("2020-01-02 00:00:00")),
            "2020-01-02 00:00:00"
        );
        let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
        assert_eq!(
            timestamptz_text(&at("2020-01-02 03:04:05"), &kolkata),
            "2020-01-02 08:34:05+05:30"
        );
        assert_eq!(
            timestamptz_text(&at("2020-01-02 03:04:05.5"), &"+00:00".parse().unwrap()),
            "2020-01-02 03:04:05.5+00"
        );
        // PostgreSQL 15: SELECT '0044-03-15 BC'::timestamp::text is 0044-03-15 00:00:00 BC.
        assert_eq!(
            timestamp_text(&at("-0043-03-15 00:00:00")),
            "0044-03-15 00:00:00 BC"
        );
    }
}
