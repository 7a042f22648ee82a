//! PostgreSQL's text output, written the way DataFusion's sqllogictest files write values, so that
//! a difference left after this is a real one. The conventions are those of DataFusion's own
//! runner (and of its PostgreSQL runner): `true`/`false`, `NULL`, `(empty)`, floats and numerics
//! rounded to 12 decimals without trailing zeros, timestamps with a `T`, lists as `[a, b]`,
//! binary as bare hex, a multi-line last cell spread over numbered rows.

use sqllogictest::ColumnType;

/// The column type letters of DataFusion's .slt files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Boolean,
    DateTime,
    Integer,
    Float,
    Text,
    Timestamp,
    Another,
}

impl ColumnType for Kind {
    fn from_char(value: char) -> Option<Self> {
        Some(match value {
            'B' => Kind::Boolean,
            'D' => Kind::DateTime,
            'I' => Kind::Integer,
            'P' => Kind::Timestamp,
            'R' => Kind::Float,
            'T' => Kind::Text,
            _ => Kind::Another,
        })
    }

    fn to_char(&self) -> char {
        match self {
            Kind::Boolean => 'B',
            Kind::DateTime => 'D',
            Kind::Integer => 'I',
            Kind::Timestamp => 'P',
            Kind::Float => 'R',
            Kind::Text => 'T',
            Kind::Another => '?',
        }
    }
}

const BOOL: u32 = 16;
const BYTEA: u32 = 17;
const CHAR: u32 = 18;
const NAME: u32 = 19;
const INT8: u32 = 20;
const INT2: u32 = 21;
const INT4: u32 = 23;
const TEXT: u32 = 25;
const OID: u32 = 26;
const FLOAT4: u32 = 700;
const FLOAT8: u32 = 701;
const BPCHAR: u32 = 1042;
const VARCHAR: u32 = 1043;
const DATE: u32 = 1082;
const TIME: u32 = 1083;
const TIMESTAMP: u32 = 1114;
const TIMESTAMPTZ: u32 = 1184;
const NUMERIC: u32 = 1700;

/// The element type of an array type OID.
fn element_of(oid: u32) -> Option<u32> {
    Some(match oid {
        1000 => BOOL,
        1001 => BYTEA,
        1002 => CHAR,
        1003 => NAME,
        1005 => INT2,
        1007 => INT4,
        1009 => TEXT,
        1014 => BPCHAR,
        1015 => VARCHAR,
        1016 => INT8,
        1021 => FLOAT4,
        1022 => FLOAT8,
        1028 => OID,
        1115 => TIMESTAMP,
        1182 => DATE,
        1183 => TIME,
        1185 => TIMESTAMPTZ,
        1231 => NUMERIC,
        _ => return None,
    })
}

pub fn kind_of(oid: u32) -> Kind {
    match oid {
        BOOL => Kind::Boolean,
        INT2 | INT4 | INT8 | OID => Kind::Integer,
        FLOAT4 | FLOAT8 | NUMERIC => Kind::Float,
        TEXT | VARCHAR | BPCHAR | NAME | CHAR => Kind::Text,
        DATE | TIME => Kind::DateTime,
        TIMESTAMP | TIMESTAMPTZ => Kind::Timestamp,
        _ => Kind::Another,
    }
}

/// A decimal string rounded to 12 decimals (half away from zero) without trailing zeros.
fn plain_decimal(text: &str) -> String {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let mut whole: Vec<u8> = whole.bytes().collect();
    let mut fraction: Vec<u8> = fraction.bytes().collect();
    if fraction.len() > 12 {
        let round_up = fraction[12] >= b'5';
        fraction.truncate(12);
        if round_up {
            let mut carry = true;
            for digit in fraction.iter_mut().rev().chain(whole.iter_mut().rev()) {
                if !carry {
                    break;
                }
                if *digit == b'9' {
                    *digit = b'0';
                } else {
                    *digit += 1;
                    carry = false;
                }
            }
            if carry {
                whole.insert(0, b'1');
            }
        }
    }
    while fraction.last() == Some(&b'0') {
        fraction.pop();
    }
    let whole = String::from_utf8(whole).unwrap();
    let whole = whole.trim_start_matches('0');
    let whole = if whole.is_empty() { "0" } else { whole };
    let mut out = String::new();
    if negative && (whole != "0" || !fraction.is_empty()) {
        out.push('-');
    }
    out.push_str(whole);
    if !fraction.is_empty() {
        out.push('.');
        out.push_str(std::str::from_utf8(&fraction).unwrap());
    }
    out
}

fn float_text(text: &str, single: bool) -> String {
    let parsed: Option<f64> = if single {
        text.parse::<f32>()
            .ok()
            .map(|v| v.to_string().parse().unwrap())
    } else {
        text.parse::<f64>().ok()
    };
    match parsed {
        None => text.to_owned(),
        Some(v) if v.is_nan() => "NaN".to_owned(),
        Some(v) if v.is_infinite() => {
            if v > 0.0 {
                "Infinity".to_owned()
            } else {
                "-Infinity".to_owned()
            }
        }
        // Rust's Display of a float never uses an exponent, as DataFusion's runner relies on.
        Some(_) if single => plain_decimal(&text.parse::<f32>().unwrap().to_string()),
        Some(v) => plain_decimal(&v.to_string()),
    }
}

fn text_value(text: &str) -> String {
    if text.is_empty() {
        "(empty)".to_owned()
    } else {
        text.trim_end_matches('\n').replace('\u{0}', "\\0")
    }
}

/// Splits the inside of a PostgreSQL array literal into its elements (`None` for NULL);
/// nested arrays come back as their own literal.
fn array_elements(literal: &str) -> Option<Vec<Option<String>>> {
    let inner = literal.strip_prefix('{')?.strip_suffix('}')?;
    let mut elements = Vec::new();
    if inner.is_empty() {
        return Some(elements);
    }
    let mut chars = inner.chars().peekable();
    loop {
        let mut element = String::new();
        let mut quoted = false;
        let mut depth = 0;
        while let Some(&c) = chars.peek() {
            if c == ',' && depth == 0 {
                break;
            }
            chars.next();
            match c {
                '"' if depth == 0 => {
                    quoted = true;
                    while let Some(c) = chars.next() {
                        match c {
                            '\\' => element.extend(chars.next()),
                            '"' => break,
                            _ => element.push(c),
                        }
                    }
                }
                '{' => {
                    depth += 1;
                    element.push(c);
                }
                '}' => {
                    depth -= 1;
                    element.push(c);
                }
                _ => element.push(c),
            }
        }
        elements.push(if !quoted && element == "NULL" {
            None
        } else if quoted && element.starts_with('{') {
            // A quoted element is a value, never a nested array: mark it so.
            Some(format!("\u{1}{element}"))
        } else {
            Some(element)
        });
        if chars.next().is_none() {
            return Some(elements);
        }
    }
}

/// One value inside a list, as Arrow's display writes it.
fn list_value(oid: u32, literal: &str) -> String {
    match array_elements(literal) {
        None => literal.to_owned(),
        Some(elements) => {
            let items: Vec<String> = elements
                .into_iter()
                .map(|element| match element {
                    None => "NULL".to_owned(),
                    Some(e) if e.starts_with('\u{1}') => e[1..].to_owned(),
                    Some(e) if e.starts_with('{') => list_value(oid, &e),
                    Some(e) => match oid {
                        TEXT | VARCHAR | BPCHAR | NAME | CHAR => e,
                        // Arrow's display writes a float in a list with its point (`1.0`).
                        FLOAT4 | FLOAT8 => {
                            let text = value(oid, &e);
                            if text.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
                                format!("{text}.0")
                            } else {
                                text
                            }
                        }
                        _ => value(oid, &e),
                    },
                })
                .collect();
            format!("[{}]", items.join(", "))
        }
    }
}

/// A non-NULL value of type `oid` in PostgreSQL's text format, written as DataFusion writes it.
pub fn value(oid: u32, text: &str) -> String {
    match oid {
        BOOL => match text {
            "t" => "true".to_owned(),
            "f" => "false".to_owned(),
            other => other.to_owned(),
        },
        FLOAT4 => float_text(text, true),
        FLOAT8 => float_text(text, false),
        NUMERIC if text.parse::<f64>().is_ok() && !text.contains(['e', 'E']) => plain_decimal(text),
        NUMERIC => text.to_owned(),
        TEXT | VARCHAR | BPCHAR | NAME | CHAR => text_value(text),
        BYTEA => text.strip_prefix("\\x").unwrap_or(text).to_owned(),
        TIMESTAMP => text.replacen(' ', "T", 1),
        TIMESTAMPTZ => {
            // PostgreSQL writes the offset as +08 (or +05:30), Arrow as +08:00, and UTC as Z.
            let text = text.replacen(' ', "T", 1);
            if let Some(utc) = text.strip_suffix("+00") {
                return format!("{utc}Z");
            }
            let bytes = text.as_bytes();
            let short_offset = bytes.len() > 3
                && matches!(bytes[bytes.len() - 3], b'+' | b'-')
                && bytes[bytes.len() - 2..].iter().all(u8::is_ascii_digit);
            if short_offset {
                format!("{text}:00")
            } else {
                text
            }
        }
        _ => match element_of(oid) {
            Some(element) => list_value(element, text),
            None => text_value(text),
        },
    }
}

/// A row whose last cell holds several lines becomes that row plus one numbered row per line,
/// leading spaces written as `-` (DataFusion's runner does this for EXPLAIN output).
pub fn expand_row(mut row: Vec<String>) -> Vec<Vec<String>> {
    let Some(last) = row.pop() else {
        return vec![row];
    };
    let lines: Vec<&str> = last.split('\n').collect();
    if lines.len() < 2 {
        row.push(last);
        return vec![row];
    }
    let mut rows = vec![row];
    for (index, line) in lines.iter().enumerate() {
        let content = line.trim_start();
        let prefix = "-".repeat(line.len() - content.len());
        rows.push(vec![format!("{:02}){prefix}{content}", index + 1)]);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_rounded_and_trimmed() {
        assert_eq!(plain_decimal("1.500"), "1.5");
        assert_eq!(plain_decimal("-0.0000000000001"), "0");
        assert_eq!(plain_decimal("0.9999999999999"), "1");
        assert_eq!(plain_decimal("12"), "12");
        assert_eq!(float_text("1e+20", false), "100000000000000000000");
        assert_eq!(float_text("0.1", true), "0.1");
    }

    #[test]
    fn arrays_become_lists() {
        assert_eq!(value(1007, "{1,2,NULL}"), "[1, 2, NULL]");
        assert_eq!(value(1009, r#"{a,"b c","NULL"}"#), "[a, b c, NULL]");
        assert_eq!(value(1007, "{{1,2},{3,4}}"), "[[1, 2], [3, 4]]");
        assert_eq!(value(1000, "{t,f}"), "[true, false]");
        assert_eq!(
            value(1184, "2000-01-01 00:00:00+08"),
            "2000-01-01T00:00:00+08:00"
        );
        assert_eq!(
            value(1184, "2000-01-01 00:00:00+00"),
            "2000-01-01T00:00:00Z"
        );
    }
}
