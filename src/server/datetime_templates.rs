//! PostgreSQL's date/time templates (`to_char(ts, 'YYYY-MM-DD')`,
//! `to_timestamp(text, 'DD/MM/YYYY HH24:MI')`, `to_date(text, 'YYYY-MM-DD')`) turned into the
//! strftime-style formats DataFusion's functions of those names read. Without this,
//! `to_char(ts, 'YYYY-MM-DD')` answered the text `YYYY-MM-DD` itself, a silent wrong answer,
//! and `to_timestamp`/`to_date` failed. A format that holds a `%` is DataFusion's own and is
//! left alone.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectNamePart, Value, VisitorMut,
};

/// PostgreSQL's template patterns, longest first, with their strftime equivalents (padded).
const PATTERNS: &[(&str, &str)] = &[
    ("HH24", "%H"),
    ("HH12", "%I"),
    ("YYYY", "%Y"),
    ("Month", "%B"),
    ("MONTH", "%B"),
    ("month", "%B"),
    ("Day", "%A"),
    ("DAY", "%A"),
    ("day", "%A"),
    ("DDD", "%j"),
    ("Mon", "%b"),
    ("MON", "%b"),
    ("mon", "%b"),
    ("Dy", "%a"),
    ("DY", "%a"),
    ("dy", "%a"),
    ("YY", "%y"),
    ("MM", "%m"),
    ("DD", "%d"),
    ("HH", "%I"),
    ("MI", "%M"),
    ("SS", "%S"),
    ("MS", "%3f"),
    ("US", "%6f"),
    ("AM", "%p"),
    ("PM", "%p"),
    ("am", "%P"),
    ("pm", "%P"),
    ("TZ", "%Z"),
    ("OF", "%:z"),
];

/// The strftime format for a PostgreSQL template, or `None` when `template` is already one.
/// `FM` (fill mode) drops the next pattern's padding; double-quoted text is copied as is; any
/// other character is copied, as PostgreSQL copies it.
pub fn strftime_format(template: &str) -> Option<String> {
    if template.contains('%') {
        return None;
    }
    let mut out = String::new();
    let mut rest = template;
    let mut fill_mode = false;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("FM") {
            fill_mode = true;
            rest = after;
            continue;
        }
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            out.push_str(&quoted[..end]);
            rest = quoted.get(end + 1..).unwrap_or("");
            continue;
        }
        if let Some((pattern, format)) = PATTERNS.iter().find(|(p, _)| rest.starts_with(p)) {
            let numeric = format.len() == 2 && !matches!(*format, "%B" | "%b" | "%A" | "%a");
            if fill_mode && numeric {
                out.push('%');
                out.push('-');
                out.push_str(&format[1..]);
            } else {
                out.push_str(format);
            }
            fill_mode = false;
            rest = &rest[pattern.len()..];
            continue;
        }
        let next = rest.chars().next().expect("not empty");
        out.push(next);
        rest = &rest[next.len_utf8()..];
    }
    Some(out)
}

/// Rewrites the literal template of `to_char(x, '...')`, `to_timestamp(x, '...')` and
/// `to_date(x, '...')`.
pub struct DatetimeTemplates {
    pub changed: bool,
}

impl VisitorMut for DatetimeTemplates {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let Expr::Function(function) = expr else {
            return ControlFlow::Continue(());
        };
        let named = matches!(function.name.0.as_slice(), [ObjectNamePart::Identifier(ident)]
            if ["to_char", "to_timestamp", "to_date"]
                .iter()
                .any(|name| ident.value.eq_ignore_ascii_case(name)));
        if !named {
            return ControlFlow::Continue(());
        }
        let FunctionArguments::List(list) = &mut function.args else {
            return ControlFlow::Continue(());
        };
        let [_, FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(template)))] =
            list.args.as_mut_slice()
        else {
            return ControlFlow::Continue(());
        };
        if let Value::SingleQuotedString(text) = &mut template.value {
            if let Some(format) = strftime_format(text) {
                *text = format;
                self.changed = true;
            }
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::strftime_format;

    #[test]
    fn postgres_templates_become_strftime_formats() {
        let cases = [
            ("YYYY-MM-DD", "%Y-%m-%d"),
            ("YYYY-MM-DD HH24:MI:SS", "%Y-%m-%d %H:%M:%S"),
            ("DD/MM/YYYY HH12:MI AM", "%d/%m/%Y %I:%M %p"),
            ("FMDD Month YYYY", "%-d %B %Y"),
            ("YYYY\"T\"HH24", "%YT%H"),
            ("Dy, DD Mon YYYY", "%a, %d %b %Y"),
            ("HH24:MI:SS.MS", "%H:%M:%S.%3f"),
        ];
        for (template, format) in cases {
            assert_eq!(
                strftime_format(template).as_deref(),
                Some(format),
                "{template}"
            );
        }
        assert_eq!(strftime_format("%Y-%m-%d"), None);
    }
}
