//! Parameters a client declares as pgvector's `vector`, as pgvector-python's `register_vector`
//! does: Parse names the type by its OID in `pg_type` and Bind may send pgvector's binary form.
//!
//! pgwire knows only PostgreSQL's built-in types and drops any other OID a Parse declares, so
//! the type is read here, on the raw messages of one connection: a `vector` parameter is
//! declared unknown (typed by its context, as the column it is inserted into or the operator
//! it meets), and its binary values are turned into pgvector's text, `[1,2,3]`, which semsql
//! reads wherever a vector goes.

use std::collections::HashMap;

use bytes::Bytes;
use pgwire::messages::extendedquery::TARGET_TYPE_BYTE_STATEMENT;
use pgwire::messages::PgWireFrontendMessage;

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion_postgres::arrow_pg::datatypes::PG_VECTOR_TYPE_OID;

/// Per connection: which parameters of each prepared statement were declared `vector`.
#[derive(Debug, Default)]
pub struct VectorParameters {
    /// Statement name ("" for the unnamed one) to the indexes of its `vector` parameters.
    statements: HashMap<String, Vec<usize>>,
}

impl VectorParameters {
    /// The message as semsql's handlers should see it.
    pub fn translate(&mut self, message: PgWireFrontendMessage) -> PgWireFrontendMessage {
        match message {
            PgWireFrontendMessage::Parse(mut parse) => {
                let name = parse.name.clone().unwrap_or_default();
                let mut vectors: Vec<usize> = parse
                    .type_oids
                    .iter()
                    .enumerate()
                    .filter(|(_, oid)| **oid == PG_VECTOR_TYPE_OID)
                    .map(|(index, _)| index)
                    .collect();
                for &index in &vectors {
                    parse.type_oids[index] = 0;
                }
                // `$1::vector` is described as `vector`, so a client may send it in pgvector's
                // binary form without having declared it (tokio-postgres does).
                for position in cast_to_vector(&parse.query) {
                    if !vectors.contains(&(position - 1)) {
                        vectors.push(position - 1);
                    }
                }
                if vectors.is_empty() {
                    self.statements.remove(&name);
                } else {
                    self.statements.insert(name, vectors);
                }
                PgWireFrontendMessage::Parse(parse)
            }
            PgWireFrontendMessage::Bind(mut bind) => {
                let name = bind.statement_name.clone().unwrap_or_default();
                if let Some(vectors) = self.statements.get(&name) {
                    as_text(
                        &mut bind.parameter_format_codes,
                        &mut bind.parameters,
                        vectors,
                    );
                }
                PgWireFrontendMessage::Bind(bind)
            }
            PgWireFrontendMessage::Close(close) => {
                if close.target_type == TARGET_TYPE_BYTE_STATEMENT {
                    self.statements
                        .remove(&close.name.clone().unwrap_or_default());
                }
                PgWireFrontendMessage::Close(close)
            }
            other => other,
        }
    }
}

/// The positions (from 1) of the parameters a statement's text casts to `vector`.
fn cast_to_vector(sql: &str) -> Vec<usize> {
    // Most statements never mention the type: no second parse for them.
    if !sql.to_ascii_lowercase().contains("vector") {
        return Vec::new();
    }
    let respelled = crate::server::compat::rewrite(sql);
    let sql = respelled.as_deref().unwrap_or(sql);
    Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .map(|statements| {
            statements
                .iter()
                .flat_map(crate::server::parameters::vector_parameters)
                .collect()
        })
        .unwrap_or_default()
}

/// Turns the binary values of the `vector` parameters into text, spelling out one format code
/// per parameter. A malformed binary value is left as it was: the decoder then rejects it.
fn as_text(formats: &mut Vec<i16>, parameters: &mut [Option<Bytes>], vectors: &[usize]) {
    let format_of = |formats: &[i16], index: usize| match formats.len() {
        0 => 0,
        1 => formats[0],
        _ => formats.get(index).copied().unwrap_or(0),
    };
    let mut spelled: Vec<i16> = (0..parameters.len())
        .map(|index| format_of(formats, index))
        .collect();
    let mut changed = false;
    for &index in vectors {
        if spelled.get(index) != Some(&1) {
            continue;
        }
        let Some(Some(bytes)) = parameters.get(index) else {
            // NULL: no bytes to read in either format.
            spelled[index] = 0;
            changed = true;
            continue;
        };
        if let Some(text) = vector_binary_as_text(bytes) {
            parameters[index] = Some(Bytes::from(text));
            spelled[index] = 0;
            changed = true;
        }
    }
    if changed {
        *formats = spelled;
    }
}

/// pgvector's binary `vector` (a big-endian u16 dimension count, an unused u16, then each
/// dimension as a big-endian float4) as its text, `[1,2,3]`.
fn vector_binary_as_text(bytes: &[u8]) -> Option<Vec<u8>> {
    let (header, values) = bytes.split_at_checked(4)?;
    let dimensions = usize::from(u16::from_be_bytes([header[0], header[1]]));
    if values.len() != dimensions * 4 {
        return None;
    }
    let items: Vec<String> = values
        .chunks_exact(4)
        .map(|chunk| f32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]).to_string())
        .collect();
    Some(format!("[{}]", items.join(",")).into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binary(values: &[f32]) -> Bytes {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&(values.len() as u16).to_be_bytes());
        bytes.extend_from_slice(&0u16.to_be_bytes());
        for value in values {
            bytes.extend_from_slice(&value.to_be_bytes());
        }
        Bytes::from(bytes)
    }

    #[test]
    fn binary_vectors_become_their_text_and_others_stay() {
        let mut formats = vec![1];
        let mut parameters = vec![
            Some(Bytes::from_static(&[0, 0, 0, 7])),
            Some(binary(&[1.0, -2.5, 3e-7])),
            None,
        ];
        as_text(&mut formats, &mut parameters, &[1, 2]);
        assert_eq!(formats, vec![1, 0, 0]);
        assert_eq!(parameters[0].as_deref(), Some(&[0u8, 0, 0, 7][..]));
        assert_eq!(parameters[1].as_deref(), Some(&b"[1,-2.5,0.0000003]"[..]));
        assert_eq!(parameters[2], None);
    }

    #[test]
    fn malformed_and_text_vectors_are_left_for_the_decoder() {
        // Says 3 dimensions, carries 1.
        let mut formats = vec![1];
        let mut parameters = vec![Some(Bytes::from_static(&[0, 3, 0, 0, 63, 128, 0, 0]))];
        as_text(&mut formats, &mut parameters, &[0]);
        assert_eq!(formats, vec![1]);
        let mut formats = vec![];
        let mut parameters = vec![Some(Bytes::from_static(b"[1,2]"))];
        as_text(&mut formats, &mut parameters, &[0]);
        assert_eq!(formats, Vec::<i16>::new());
        assert_eq!(parameters[0].as_deref(), Some(&b"[1,2]"[..]));
    }
}
