//! `COPY ... FROM STDIN` and `COPY ... TO STDOUT` (and so psql's `\copy`), in PostgreSQL's text
//! and CSV formats, over the simple query protocol.
//!
//! COPY FROM gathers the whole input, parses it into text columns, casts them to the table's
//! types and inserts them as one statement: all rows or none, like any other write.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{cast, col, lit, Expr};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Statement,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use futures::StreamExt;
use pgwire::api::portal::Format;
use pgwire::api::results::{CopyResponse, Response};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::copy::CopyData;

/// How rows are written as text.
#[derive(Debug, Clone)]
pub struct CopyFormat {
    csv: bool,
    delimiter: char,
    null: String,
    header: bool,
    quote: char,
    escape: char,
}

impl CopyFormat {
    fn from_options(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> PgWireResult<Self> {
        let mut csv = false;
        let mut delimiter = None;
        let mut null = None;
        let mut header = false;
        let mut quote = '"';
        let mut escape = None;
        for option in options {
            match option {
                CopyOption::Format(name) => match name.value.to_ascii_lowercase().as_str() {
                    "csv" => csv = true,
                    "text" => csv = false,
                    other => {
                        return Err(copy_error(
                            "0A000",
                            format!("COPY format \"{other}\" is not supported; use text or csv"),
                        ))
                    }
                },
                CopyOption::Delimiter(c) => delimiter = Some(*c),
                CopyOption::Null(text) => null = Some(text.clone()),
                CopyOption::Header(on) => header = *on,
                CopyOption::Quote(c) => quote = *c,
                CopyOption::Escape(c) => escape = Some(*c),
                other => {
                    return Err(copy_error(
                        "0A000",
                        format!("COPY option {other} is not supported"),
                    ))
                }
            }
        }
        for option in legacy {
            match option {
                CopyLegacyOption::Csv(csv_options) => {
                    csv = true;
                    for csv_option in csv_options {
                        match csv_option {
                            CopyLegacyCsvOption::Header => header = true,
                            CopyLegacyCsvOption::Quote(c) => quote = *c,
                            CopyLegacyCsvOption::Escape(c) => escape = Some(*c),
                            other => {
                                return Err(copy_error(
                                    "0A000",
                                    format!("COPY option {other} is not supported"),
                                ))
                            }
                        }
                    }
                }
                CopyLegacyOption::Delimiter(c) => delimiter = Some(*c),
                CopyLegacyOption::Null(text) => null = Some(text.clone()),
                CopyLegacyOption::Header => header = true,
                other => {
                    return Err(copy_error(
                        "0A000",
                        format!("COPY option {other} is not supported"),
                    ))
                }
            }
        }
        if header && !csv {
            return Err(copy_error(
                "0A000",
                "COPY HEADER is available only in CSV mode".into(),
            ));
        }
        Ok(CopyFormat {
            csv,
            delimiter: delimiter.unwrap_or(if csv { ',' } else { '\t' }),
            null: null.unwrap_or_else(|| if csv { String::new() } else { "\\N".into() }),
            header,
            quote,
            escape: escape.unwrap_or(quote),
        })
    }

    fn write_value(&self, value: Option<&str>, out: &mut String) {
        let Some(value) = value else {
            out.push_str(&self.null);
            return;
        };
        if self.csv {
            let needs_quotes = value == self.null
                || value.contains(self.delimiter)
                || value.contains(self.quote)
                || value.contains(['\n', '\r']);
            if needs_quotes {
                out.push(self.quote);
                for c in value.chars() {
                    if c == self.quote || c == self.escape {
                        out.push(self.escape);
                    }
                    out.push(c);
                }
                out.push(self.quote);
            } else {
                out.push_str(value);
            }
        } else {
            for c in value.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if c == self.delimiter => {
                        out.push('\\');
                        out.push(c);
                    }
                    c => out.push(c),
                }
            }
        }
    }

    /// Splits COPY input into rows of fields (`None` for NULL).
    fn parse(&self, input: &str) -> PgWireResult<Vec<Vec<Option<String>>>> {
        let mut rows = if self.csv {
            self.parse_csv(input)?
        } else {
            self.parse_text(input)?
        };
        if self.header && !rows.is_empty() {
            rows.remove(0);
        }
        Ok(rows)
    }

    fn parse_text(&self, input: &str) -> PgWireResult<Vec<Vec<Option<String>>>> {
        let mut rows = Vec::new();
        let input = input.strip_suffix('\n').unwrap_or(input);
        if input.is_empty() {
            return Ok(rows);
        }
        for line in input.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line == "\\." {
                break;
            }
            let mut fields = Vec::new();
            for raw in line.split(self.delimiter) {
                if raw == self.null {
                    fields.push(None);
                    continue;
                }
                let mut value = String::with_capacity(raw.len());
                let mut chars = raw.chars();
                while let Some(c) = chars.next() {
                    if c != '\\' {
                        value.push(c);
                        continue;
                    }
                    match chars.next() {
                        Some('n') => value.push('\n'),
                        Some('r') => value.push('\r'),
                        Some('t') => value.push('\t'),
                        Some('b') => value.push('\u{8}'),
                        Some('f') => value.push('\u{c}'),
                        Some('v') => value.push('\u{b}'),
                        Some(other) => value.push(other),
                        None => {
                            return Err(copy_error(
                                "22P04",
                                "unterminated backslash escape in COPY data".into(),
                            ))
                        }
                    }
                }
                fields.push(Some(value));
            }
            rows.push(fields);
        }
        Ok(rows)
    }

    fn parse_csv(&self, input: &str) -> PgWireResult<Vec<Vec<Option<String>>>> {
        let mut rows = Vec::new();
        let mut fields: Vec<Option<String>> = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        let mut in_quotes = false;
        let mut chars = input.chars().peekable();
        let mut line_start = true;
        while let Some(c) = chars.next() {
            if line_start && c == '\\' && chars.peek() == Some(&'.') {
                break;
            }
            line_start = false;
            if in_quotes {
                if c == self.escape
                    && self.escape != self.quote
                    && chars.peek() == Some(&self.quote)
                {
                    field.push(chars.next().unwrap_or(self.quote));
                } else if c == self.quote {
                    if self.escape == self.quote && chars.peek() == Some(&self.quote) {
                        chars.next();
                        field.push(self.quote);
                    } else {
                        in_quotes = false;
                    }
                } else {
                    field.push(c);
                }
                continue;
            }
            if c == self.quote {
                in_quotes = true;
                quoted = true;
            } else if c == self.delimiter {
                fields.push(self.csv_field(std::mem::take(&mut field), quoted));
                quoted = false;
            } else if c == '\n' || c == '\r' {
                if c == '\r' && chars.peek() == Some(&'\n') {
                    chars.next();
                }
                fields.push(self.csv_field(std::mem::take(&mut field), quoted));
                quoted = false;
                rows.push(std::mem::take(&mut fields));
                line_start = true;
            } else {
                field.push(c);
            }
        }
        if in_quotes {
            return Err(copy_error("22P04", "unterminated CSV quoted field".into()));
        }
        if !field.is_empty() || quoted || !fields.is_empty() {
            fields.push(self.csv_field(field, quoted));
            rows.push(fields);
        }
        Ok(rows)
    }

    fn csv_field(&self, field: String, quoted: bool) -> Option<String> {
        (quoted || field != self.null).then_some(field)
    }
}

fn copy_error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        code.into(),
        message,
    )))
}

fn api_error(err: DataFusionError) -> PgWireError {
    PgWireError::ApiError(Box::new(err))
}

/// A parsed `COPY` to or from the client.
#[derive(Debug)]
pub enum CopyCommand {
    /// `COPY table [(columns)] FROM STDIN`.
    In {
        table: String,
        columns: Vec<String>,
        format: CopyFormat,
    },
    /// `COPY table [(columns)] TO STDOUT` or `COPY (query) TO STDOUT`, as the query to run.
    Out { query: String, format: CopyFormat },
}

/// Recognises a single `COPY ... FROM STDIN / TO STDOUT` statement in `sql`.
pub fn parse(sql: &str) -> Option<PgWireResult<CopyCommand>> {
    let trimmed = sql.trim_start();
    if !trimmed
        .get(..4)
        .is_some_and(|word| word.eq_ignore_ascii_case("copy"))
    {
        return None;
    }
    let mut statements = match Parser::parse_sql(&PostgreSqlDialect {}, sql) {
        Ok(statements) => statements,
        Err(err) => return Some(Err(copy_error("42601", err.to_string()))),
    };
    if statements.len() != 1 {
        return None;
    }
    let Statement::Copy {
        source,
        to,
        target,
        options,
        legacy_options,
        ..
    } = statements.remove(0)
    else {
        return None;
    };
    let command = (|| {
        let format = CopyFormat::from_options(&options, &legacy_options)?;
        match (to, target, source) {
            (true, CopyTarget::Stdout, CopySource::Table { table_name, columns }) => {
                let list = if columns.is_empty() {
                    "*".to_owned()
                } else {
                    columns.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                };
                Ok(CopyCommand::Out {
                    query: format!("SELECT {list} FROM {table_name}"),
                    format,
                })
            }
            (true, CopyTarget::Stdout, CopySource::Query(query)) => Ok(CopyCommand::Out {
                query: query.to_string(),
                format,
            }),
            (false, CopyTarget::Stdin, CopySource::Table { table_name, columns }) => Ok(CopyCommand::In {
                table: table_name.to_string(),
                columns: columns.iter().map(|c| c.value.clone()).collect(),
                format,
            }),
            _ => Err(copy_error(
                "0A000",
                "COPY to or from a file or program on the server is not supported; use FROM STDIN or TO STDOUT (psql: \\copy)".into(),
            )),
        }
    })();
    Some(command)
}

/// The fields of a text-format DataRow body: each an i32 length (-1 for NULL) and its bytes.
pub fn text_fields(data: &[u8], width: usize) -> Vec<Option<String>> {
    let mut fields = Vec::with_capacity(width);
    let mut at = 0;
    for _ in 0..width {
        let len = i32::from_be_bytes(data[at..at + 4].try_into().expect("4-byte field length"));
        at += 4;
        if len < 0 {
            fields.push(None);
        } else {
            let end = at + len as usize;
            fields.push(Some(String::from_utf8_lossy(&data[at..end]).into_owned()));
            at = end;
        }
    }
    fields
}

/// Runs a `COPY ... TO STDOUT`: the rows as CopyData messages.
pub async fn copy_out(
    ctx: &SessionContext,
    query: &str,
    format: CopyFormat,
) -> PgWireResult<Response> {
    let frame = ctx.sql(query).await.map_err(api_error)?;
    let names: Vec<String> = frame
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let width = names.len();
    let zone = super::hooks::query_results::display_zone(ctx);
    let mut response = super::result_encoding::encode_dataframe(
        frame,
        &Format::UnifiedText,
        None,
        zone.as_deref(),
    )
    .await?;
    let text = Arc::new(super::text_output::CopyText::new(
        response.row_schema.iter().map(|field| field.datatype()),
        zone.as_deref(),
    ));
    // The header goes in front of the first row rather than in a message of its own, because
    // pgwire counts messages for the `COPY n` tag.
    let header = format.header.then(|| {
        let mut line = String::new();
        for (i, name) in names.iter().enumerate() {
            if i > 0 {
                line.push(format.delimiter);
            }
            format.write_value(Some(name), &mut line);
        }
        line.push('\n');
        line
    });
    let rows = std::mem::replace(&mut response.data_rows, Box::pin(futures::stream::empty()));
    let stream = futures::stream::unfold((rows, header), move |(mut rows, mut header)| {
        let format = format.clone();
        let text = text.clone();
        async move {
            let Some(row) = rows.next().await else {
                // No rows: the header alone, if still owed.
                let line = header.take()?;
                return Some((Ok(CopyData::new(line.into_bytes().into())), (rows, None)));
            };
            let row = match row {
                Ok(row) => row,
                Err(err) => return Some((Err(err), (rows, header))),
            };
            let mut line = header.take().unwrap_or_default();
            for (i, value) in text_fields(&row.data, width).into_iter().enumerate() {
                if i > 0 {
                    line.push(format.delimiter);
                }
                let value = value.map(|value| text.value(i, value));
                format.write_value(value.as_deref(), &mut line);
            }
            line.push('\n');
            Some((Ok(CopyData::new(line.into_bytes().into())), (rows, None)))
        }
    });
    Ok(Response::CopyOut(CopyResponse::new(0, width, stream)))
}

/// The start of a `COPY ... FROM STDIN`: checks the target and tells the client to send data.
pub async fn copy_in_response(
    ctx: &SessionContext,
    table: &str,
    columns: &[String],
) -> PgWireResult<Response> {
    let provider = ctx.table_provider(table).await.map_err(api_error)?;
    let schema = provider.schema();
    for column in columns {
        if schema.field_with_name(column).is_err() {
            return Err(copy_error(
                "42703",
                format!("column \"{column}\" of relation \"{table}\" does not exist"),
            ));
        }
    }
    let width = if columns.is_empty() {
        schema.fields().len()
    } else {
        columns.len()
    };
    Ok(Response::CopyIn(CopyResponse::new(
        0,
        width,
        futures::stream::empty(),
    )))
}

/// Finishes a `COPY ... FROM STDIN`: parses everything received and inserts it in one commit.
/// Returns the number of rows.
pub async fn copy_in_finish(
    ctx: &SessionContext,
    table: &str,
    columns: &[String],
    format: &CopyFormat,
    data: &[u8],
) -> PgWireResult<usize> {
    let text = std::str::from_utf8(data)
        .map_err(|err| copy_error("22021", format!("COPY data is not valid UTF-8: {err}")))?;
    let rows = format.parse(text)?;
    let provider = ctx.table_provider(table).await.map_err(api_error)?;
    let schema = provider.schema();
    let targets: Vec<String> = if columns.is_empty() {
        schema.fields().iter().map(|f| f.name().clone()).collect()
    } else {
        columns.to_vec()
    };
    for (line, row) in rows.iter().enumerate() {
        if row.len() < targets.len() {
            return Err(copy_error(
                "22P04",
                format!(
                    "missing data for column \"{}\" on line {}",
                    targets[row.len()],
                    line + 1
                ),
            ));
        }
        if row.len() > targets.len() {
            return Err(copy_error(
                "22P04",
                format!("extra data after last expected column on line {}", line + 1),
            ));
        }
    }
    if rows.is_empty() {
        return Ok(0);
    }
    let text_columns: Vec<ArrayRef> = (0..targets.len())
        .map(|i| {
            Arc::new(
                rows.iter()
                    .map(|row| row[i].as_deref())
                    .collect::<StringArray>(),
            ) as ArrayRef
        })
        .collect();
    let text_schema = Schema::new(
        targets
            .iter()
            .map(|name| Field::new(name, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    );
    let batch = RecordBatch::try_new(Arc::new(text_schema), text_columns)
        .map_err(|err| api_error(err.into()))?;
    let projection: Vec<Expr> = schema
        .fields()
        .iter()
        .map(|field| {
            let value = if targets.contains(field.name()) {
                cast(
                    col(format!("\"{}\"", field.name())),
                    field.data_type().clone(),
                )
            } else if let Some(default) = provider.get_column_default(field.name()) {
                cast(default.clone(), field.data_type().clone())
            } else {
                lit(ScalarValue::try_from(field.data_type()).unwrap_or(ScalarValue::Null))
            };
            value.alias(field.name())
        })
        .collect();
    let frame = ctx
        .read_batch(batch)
        .map_err(api_error)?
        .select(projection)
        .map_err(api_error)?;
    frame
        .write_table(table, DataFrameWriteOptions::new())
        .await
        .map_err(api_error)?;
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(sql: &str) -> CopyFormat {
        match parse(sql).unwrap().unwrap() {
            CopyCommand::In { format, .. } | CopyCommand::Out { format, .. } => format,
        }
    }

    #[test]
    fn text_format_round_trips_escapes_and_nulls() {
        let text = format("COPY t FROM STDIN");
        let mut line = String::new();
        text.write_value(Some("a\tb\\c\nd"), &mut line);
        line.push('\t');
        text.write_value(None, &mut line);
        line.push('\n');
        let rows = text.parse(&line).unwrap();
        assert_eq!(rows, vec![vec![Some("a\tb\\c\nd".to_owned()), None]]);
    }

    #[test]
    fn csv_quotes_and_empty_strings() {
        let csv = format("COPY t FROM STDIN WITH (FORMAT csv, HEADER true)");
        let rows = csv
            .parse("id,name\n1,\"a, \"\"quoted\"\" name\"\n2,\n3,\"\"\n")
            .unwrap();
        assert_eq!(
            rows,
            vec![
                vec![Some("1".into()), Some("a, \"quoted\" name".into())],
                vec![Some("2".into()), None],
                vec![Some("3".into()), Some(String::new())],
            ]
        );
        let mut out = String::new();
        csv.write_value(Some(""), &mut out);
        assert_eq!(out, "\"\"");
    }

    #[test]
    fn files_on_the_server_are_refused() {
        assert!(parse("COPY t FROM '/etc/passwd'").unwrap().is_err());
        assert!(parse("SELECT 1").is_none());
    }
}
