//! Interval literals in PostgreSQL's own output form: `interval '1 day 02:00:00'` and
//! `'-04:05:06.5'::interval`, which PostgreSQL reads (it prints intervals that way, so a value
//! read back from a client comes in this form), while Arrow's interval parser wants units after
//! every number. A clock part `[-]H:MM[:SS[.f]]` is respelled `H hours M minutes S seconds`
//! (each with the clock's sign), and `ago` negates the whole as in PostgreSQL; the other words
//! are left to Arrow, which reads PostgreSQL's units (`1 year 2 mons 3 days`).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{DataType, Expr, Value, VisitorMut};

/// The visitor: true in `changed` when a literal was respelled.
pub struct IntervalLiterals {
    pub changed: bool,
}

impl VisitorMut for IntervalLiterals {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let literal = match expr {
            Expr::Interval(interval)
                if interval.leading_field.is_none() && interval.last_field.is_none() =>
            {
                interval.value.as_mut()
            }
            Expr::Cast {
                data_type: DataType::Interval { .. },
                expr: value,
                ..
            } => value.as_mut(),
            _ => return ControlFlow::Continue(()),
        };
        if let Expr::Value(value) = literal {
            if let Value::SingleQuotedString(text) = &mut value.value {
                if let Some(respelled) = respell(text) {
                    *text = respelled;
                    self.changed = true;
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// `text` with its clock part spelled out in units; `None` when it has none (or `ago`).
pub fn respell(text: &str) -> Option<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let negate = words
        .last()
        .is_some_and(|word| word.eq_ignore_ascii_case("ago"));
    if !negate && !words.iter().any(|word| clock(word).is_some()) {
        return None;
    }
    let mut parts = Vec::with_capacity(words.len() + 2);
    let words = if negate {
        &words[..words.len() - 1]
    } else {
        &words[..]
    };
    for word in words.iter().filter(|word| **word != "@") {
        match clock(word) {
            Some((sign, hours, minutes, seconds)) => {
                parts.push(format!("{sign}{hours} hours"));
                parts.push(format!("{sign}{minutes} minutes"));
                parts.push(format!("{sign}{seconds} seconds"));
            }
            None => parts.push((*word).to_owned()),
        }
    }
    if negate {
        // Every number changes sign: `1 day 02:00 ago` is `-1 day -2 hours`.
        parts = parts
            .into_iter()
            .map(|part| match part.strip_prefix('-') {
                Some(positive) => positive.to_owned(),
                None if part.starts_with(|c: char| c.is_ascii_digit() || c == '.') => {
                    format!("-{part}")
                }
                None => part,
            })
            .collect();
    }
    Some(parts.join(" "))
}

/// A clock word `[+-]H:MM[:SS[.f]]`: its sign and its parts.
fn clock(word: &str) -> Option<(&'static str, &str, &str, &str)> {
    let (sign, rest) = match word.as_bytes().first()? {
        b'-' => ("-", &word[1..]),
        b'+' => ("", &word[1..]),
        _ => ("", word),
    };
    let mut fields = rest.split(':');
    let hours = fields.next()?;
    let minutes = fields.next()?;
    let seconds = fields.next().unwrap_or("0");
    if fields.next().is_some() {
        return None;
    }
    let digits = |field: &str| !field.is_empty() && field.bytes().all(|b| b.is_ascii_digit());
    let (whole, fraction) = seconds.split_once('.').unwrap_or((seconds, "0"));
    (digits(hours) && digits(minutes) && digits(whole) && digits(fraction))
        .then_some((sign, hours, minutes, seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_parts_are_spelled_out() {
        assert_eq!(
            respell("1 year 2 mons 3 days 04:05:06.000007").as_deref(),
            Some("1 year 2 mons 3 days 04 hours 05 minutes 06.000007 seconds")
        );
        assert_eq!(
            respell("-3 days -04:05").as_deref(),
            Some("-3 days -04 hours -05 minutes -0 seconds")
        );
        assert_eq!(
            respell("@ 1 day 02:00:00 ago").as_deref(),
            Some("-1 day -02 hours -00 minutes -00 seconds")
        );
        assert_eq!(respell("1 day 2 hours"), None);
        assert_eq!(respell("12:3a"), None);
    }
}
