//! `EXPLAIN REWRITE <query>`: runs the rewriter's search and answers one row per candidate
//! (the original first), with each check's verdict, the estimated and measured cost and which
//! rewrite was chosen. The PostgreSQL parser does not know the statement, so it is recognized
//! here, on the text, before parsing.

use std::sync::Arc;

use futures::stream;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response};
use pgwire::api::Type;
use pgwire::error::PgWireResult;

use crate::rewrite::Report;

/// The query of an `EXPLAIN REWRITE` statement, if `sql` is one.
pub fn target(sql: &str) -> Option<&str> {
    let rest = sql.trim_start();
    let rest = strip_word(rest, "EXPLAIN")?;
    let rest = strip_word(rest, "REWRITE")?;
    Some(rest.trim().trim_end_matches(';').trim_end())
}

/// `text` after its first word when that word is `word` (any case) followed by a space.
fn strip_word<'a>(text: &'a str, word: &str) -> Option<&'a str> {
    let head = text.get(..word.len())?;
    let after = &text[word.len()..];
    (head.eq_ignore_ascii_case(word) && after.starts_with(char::is_whitespace))
        .then(|| after.trim_start())
}

/// The closing NOTICE: what was chosen and what the search cost.
pub fn summary(report: &Report) -> String {
    let chosen = match report
        .chosen
        .map(|index| (index, &report.candidates[index]))
    {
        Some((index, candidate)) if candidate.proven() => format!(
            "chosen: candidate {} ({:.2}× faster; proven equivalent)",
            index + 1,
            candidate.speedup.unwrap_or(1.0)
        ),
        Some((index, candidate)) => format!(
            "fastest tested: candidate {} ({:.2}× faster; tested, not proven equivalent)",
            index + 1,
            candidate.speedup.unwrap_or(1.0)
        ),
        None => "no candidate passed every test; the original query stays".to_owned(),
    };
    let mut text = format!(
        "rewrite search: {} candidates, {chosen}; {} LM requests, {} tokens, {:.1} s",
        report.candidates.len(),
        report.requests,
        report.tokens,
        report.seconds
    );
    for note in &report.notes {
        text.push_str(&format!("\n{note}"));
    }
    text
}

/// The result rows.
pub fn response(report: &Report) -> PgWireResult<Response> {
    let field = |name: &str, kind: Type| {
        FieldInfo::new(name.to_owned(), None, None, kind, FieldFormat::Text)
    };
    let fields = Arc::new(vec![
        field("candidate", Type::INT4),
        field("prompt", Type::TEXT),
        field("verdict", Type::TEXT),
        field("checks", Type::TEXT),
        field("estimated_rows", Type::INT8),
        field("measured_ms", Type::FLOAT8),
        field("speedup", Type::FLOAT8),
        field("sql", Type::TEXT),
    ]);
    let mut rows = Vec::new();
    let mut encoder = DataRowEncoder::new(fields.clone());
    encoder.encode_field(&Some(0i32))?;
    encoder.encode_field(&Some("original"))?;
    encoder.encode_field(&Some("original"))?;
    encoder.encode_field(&None::<&str>)?;
    encoder.encode_field(&report.original_estimated_rows.map(|rows| rows as i64))?;
    encoder.encode_field(&report.original_ms.map(round_ms))?;
    encoder.encode_field(&None::<f64>)?;
    encoder.encode_field(&Some(report.original.as_str()))?;
    rows.push(Ok(encoder.take_row()));
    for (index, candidate) in report.candidates.iter().enumerate() {
        let verdict = match (report.chosen == Some(index), candidate.proven()) {
            (true, true) => "chosen",
            (true, false) => "fastest tested",
            (false, _) => candidate.verdict(),
        };
        encoder.encode_field(&Some(index as i32 + 1))?;
        encoder.encode_field(&Some(candidate.prompt))?;
        encoder.encode_field(&Some(verdict))?;
        encoder.encode_field(&Some(candidate.checks_text()))?;
        encoder.encode_field(&candidate.estimated_rows.map(|rows| rows as i64))?;
        encoder.encode_field(&candidate.measured_ms.map(round_ms))?;
        encoder.encode_field(&candidate.speedup.map(|s| (s * 100.0).round() / 100.0))?;
        encoder.encode_field(&candidate.sql.as_deref())?;
        rows.push(Ok(encoder.take_row()));
    }
    Ok(Response::Query(QueryResponse::new(
        fields,
        Box::pin(stream::iter(rows)),
    )))
}

fn round_ms(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_the_statement() {
        assert_eq!(target("EXPLAIN REWRITE SELECT 1;"), Some("SELECT 1"));
        assert_eq!(target("  explain\n rewrite\tselect 1"), Some("select 1"));
        assert_eq!(target("EXPLAIN SELECT 1"), None);
        assert_eq!(target("EXPLAIN REWRITEX SELECT 1"), None);
        assert_eq!(target("EXPLAIN"), None);
    }
}
