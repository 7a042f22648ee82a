//! The model statements, which PostgreSQL's grammar does not have:
//!
//! ```sql
//! CREATE MODEL [IF NOT EXISTS] name WITH (base_url = '...', model = '...', ...);
//! ALTER MODEL name SET (option = value, ...);
//! ALTER MODEL name RESET (option, ...);
//! DROP MODEL [IF EXISTS] name;
//! GRANT USAGE ON MODEL name TO role [, ...];   -- or PUBLIC
//! REVOKE USAGE ON MODEL name FROM role [, ...];
//! CREATE SECRET [IF NOT EXISTS] name WITH (env = 'VARIABLE' | file = '/path');
//! DROP SECRET [IF EXISTS] name;
//! ```
//!
//! (`SHOW MODELS` is a query over `semsql.models`, rewritten before parsing.)

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use semsql_udfs::lm::LmError;

use super::models::RawOptions;

/// What a statement does to one model.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelChange {
    Create {
        options: RawOptions,
        if_not_exists: bool,
    },
    Alter {
        options: RawOptions,
        reset: Vec<String>,
    },
    Drop {
        if_exists: bool,
    },
    /// `GRANT USAGE ON MODEL m TO roles` / `REVOKE USAGE ON MODEL m FROM roles`.
    Grant {
        grantees: Vec<String>,
        revoke: bool,
    },
}

/// A parsed model statement.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelStatement {
    pub name: String,
    pub change: ModelChange,
}

/// What a statement does to one secret.
#[derive(Debug, Clone, PartialEq)]
pub enum SecretChange {
    Create {
        source: super::secrets::SecretSource,
        if_not_exists: bool,
    },
    Drop {
        if_exists: bool,
    },
}

/// A parsed secret statement.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretStatement {
    pub name: String,
    pub change: SecretChange,
}

/// A statement about models or secrets.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    Model(ModelStatement),
    Secret(SecretStatement),
}

/// Whether `sql` is a model or secret statement; `None` when it is neither.
pub fn parse_statement(sql: &str) -> Option<Result<Statement, LmError>> {
    if let Some(model) = parse(sql) {
        return Some(model.map(Statement::Model));
    }
    let mut words = sql.split_whitespace().map(str::to_ascii_uppercase);
    let first = words.next()?;
    if !(matches!(first.as_str(), "CREATE" | "DROP") && words.next()? == "SECRET") {
        return None;
    }
    Some(parse_secret(sql).map(Statement::Secret))
}

fn parse_secret(sql: &str) -> Result<SecretStatement, LmError> {
    let mut tokens = tokenize(sql)?;
    let verb = tokens.name("CREATE or DROP")?;
    tokens.name("SECRET")?;
    let statement = if verb == "create" {
        let if_not_exists = tokens.keyword("IF");
        if if_not_exists && !(tokens.keyword("NOT") && tokens.keyword("EXISTS")) {
            return Err(syntax("expected IF NOT EXISTS"));
        }
        let name = tokens.name("a secret name")?;
        if !tokens.keyword("WITH") {
            return Err(syntax(format!(
                "CREATE SECRET {name} needs WITH (env = 'VARIABLE') or WITH (file = '/path')"
            )));
        }
        let options = tokens.options()?;
        SecretStatement {
            change: SecretChange::Create {
                source: super::secrets::SecretSource::from_options(&name, &options)?,
                if_not_exists,
            },
            name,
        }
    } else {
        let if_exists = tokens.keyword("IF");
        if if_exists && !tokens.keyword("EXISTS") {
            return Err(syntax("expected IF EXISTS"));
        }
        SecretStatement {
            name: tokens.name("a secret name")?,
            change: SecretChange::Drop { if_exists },
        }
    };
    tokens.end()?;
    Ok(statement)
}

fn syntax(message: impl Into<String>) -> LmError {
    LmError::new("42601", message)
}

/// Whether `sql` is a model statement; `None` when it is not one, so other statements pass by.
pub fn parse(sql: &str) -> Option<Result<ModelStatement, LmError>> {
    let mut words = sql.split_whitespace().map(str::to_ascii_uppercase);
    let first = words.next()?;
    let second = words.next()?;
    if matches!(first.as_str(), "GRANT" | "REVOKE") {
        let rest: Vec<String> = std::iter::once(second).chain(words).collect();
        let on_model = rest
            .windows(2)
            .any(|pair| pair[0] == "ON" && pair[1] == "MODEL");
        return on_model.then(|| parse_grant(sql));
    }
    if !matches!(first.as_str(), "CREATE" | "ALTER" | "DROP") || second != "MODEL" {
        return None;
    }
    Some(parse_tokens(sql))
}

/// Splits a script into statements at top-level semicolons (outside quotes, dollar quotes and
/// comments), so a model statement can share a simple-protocol message with others.
pub fn split_statements(sql: &str) -> Vec<&str> {
    let bytes = sql.as_bytes();
    let mut statements = Vec::new();
    let mut start = 0;
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            quote @ (b'\'' | b'"') => {
                at += 1;
                while at < bytes.len() && bytes[at] != quote {
                    at += 1;
                }
            }
            b'-' if bytes.get(at + 1) == Some(&b'-') => {
                while at < bytes.len() && bytes[at] != b'\n' {
                    at += 1;
                }
            }
            b'/' if bytes.get(at + 1) == Some(&b'*') => {
                at += 2;
                while at + 1 < bytes.len() && !(bytes[at] == b'*' && bytes[at + 1] == b'/') {
                    at += 1;
                }
                at += 1;
            }
            b'$' => {
                // `$tag$ ... $tag$`
                if let Some(length) = sql[at + 1..].find('$') {
                    let tag = &sql[at..at + length + 2];
                    if tag[1..tag.len() - 1]
                        .chars()
                        .all(|c| c.is_alphanumeric() || c == '_')
                    {
                        if let Some(end) = sql[at + tag.len()..].find(tag) {
                            at += tag.len() + end + tag.len() - 1;
                        }
                    }
                }
            }
            b';' => {
                statements.push(&sql[start..at]);
                start = at + 1;
            }
            _ => {}
        }
        at += 1;
    }
    statements.push(&sql[start.min(sql.len())..]);
    statements
        .into_iter()
        .filter(|statement| !statement.trim().is_empty())
        .collect()
}

/// Whether any statement of a script is a model or secret statement.
pub fn any_model_statement(sql: &str) -> bool {
    let upper = sql.to_ascii_uppercase();
    (upper.contains("MODEL") || upper.contains("SECRET"))
        && split_statements(sql)
            .iter()
            .any(|statement| parse_statement(statement).is_some())
}

struct Tokens {
    tokens: Vec<Token>,
    at: usize,
}

impl Tokens {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn keyword(&mut self, word: &str) -> bool {
        match self.peek() {
            Some(Token::Word(w))
                if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word) =>
            {
                self.at += 1;
                true
            }
            _ => false,
        }
    }

    fn expect(&mut self, expected: Token, what: &str) -> Result<(), LmError> {
        match self.next() {
            Some(token) if token == expected => Ok(()),
            Some(token) => Err(syntax(format!(
                "syntax error at or near \"{token}\": expected {what}"
            ))),
            None => Err(syntax(format!(
                "syntax error at end of input: expected {what}"
            ))),
        }
    }

    fn name(&mut self, what: &str) -> Result<String, LmError> {
        match self.next() {
            Some(Token::Word(word)) => Ok(if word.quote_style.is_some() {
                word.value
            } else {
                word.value.to_ascii_lowercase()
            }),
            Some(token) => Err(syntax(format!(
                "syntax error at or near \"{token}\": expected {what}"
            ))),
            None => Err(syntax(format!(
                "syntax error at end of input: expected {what}"
            ))),
        }
    }

    fn value(&mut self, key: &str) -> Result<String, LmError> {
        let negative = matches!(self.peek(), Some(Token::Minus));
        if negative {
            self.at += 1;
        }
        let value = match self.next() {
            Some(Token::SingleQuotedString(text)) if !negative => text,
            Some(Token::Number(number, _)) => number,
            Some(Token::Word(word)) if !negative => word.value,
            Some(token) => {
                return Err(syntax(format!(
                    "syntax error at or near \"{token}\": option {key} needs a value \
                     such as 'text', 16 or true"
                )))
            }
            None => {
                return Err(syntax(format!(
                    "syntax error at end of input: option {key} needs a value"
                )))
            }
        };
        Ok(if negative { format!("-{value}") } else { value })
    }

    fn end(&mut self) -> Result<(), LmError> {
        while matches!(self.peek(), Some(Token::SemiColon)) {
            self.at += 1;
        }
        match self.next() {
            None => Ok(()),
            Some(token) => Err(syntax(format!("syntax error at or near \"{token}\""))),
        }
    }

    /// `( key = value, ... )`
    fn options(&mut self) -> Result<RawOptions, LmError> {
        self.expect(Token::LParen, "(")?;
        let mut options = RawOptions::new();
        loop {
            let key = self.name("an option name")?;
            self.expect(Token::Eq, "=")?;
            let value = self.value(&key)?;
            if options.insert(key.clone(), value).is_some() {
                return Err(syntax(format!("option {key} is given twice")));
            }
            match self.next() {
                Some(Token::Comma) => continue,
                Some(Token::RParen) => return Ok(options),
                Some(token) => {
                    return Err(syntax(format!(
                        "syntax error at or near \"{token}\": expected , or )"
                    )))
                }
                None => return Err(syntax("syntax error at end of input: expected )")),
            }
        }
    }

    /// `( key, ... )`
    fn names(&mut self) -> Result<Vec<String>, LmError> {
        self.expect(Token::LParen, "(")?;
        let mut names = Vec::new();
        loop {
            names.push(self.name("an option name")?);
            match self.next() {
                Some(Token::Comma) => continue,
                Some(Token::RParen) => return Ok(names),
                Some(token) => {
                    return Err(syntax(format!(
                        "syntax error at or near \"{token}\": expected , or )"
                    )))
                }
                None => return Err(syntax("syntax error at end of input: expected )")),
            }
        }
    }
}

fn tokenize(sql: &str) -> Result<Tokens, LmError> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize()
        .map_err(|err| syntax(err.to_string()))?
        .into_iter()
        .filter(|token| !matches!(token, Token::Whitespace(_)))
        .collect();
    Ok(Tokens { tokens, at: 0 })
}

/// `GRANT {USAGE | ALL [PRIVILEGES]} ON MODEL name TO role, ...` and the REVOKE form.
fn parse_grant(sql: &str) -> Result<ModelStatement, LmError> {
    let mut tokens = tokenize(sql)?;
    let revoke = tokens.name("GRANT or REVOKE")? == "revoke";
    if tokens.keyword("ALL") {
        tokens.keyword("PRIVILEGES");
    } else if !tokens.keyword("USAGE") {
        return Err(LmError::new(
            "0LP01",
            "a model has one privilege, USAGE (GRANT USAGE ON MODEL m TO role)",
        ));
    }
    if !(tokens.keyword("ON") && tokens.keyword("MODEL")) {
        return Err(syntax("expected ON MODEL"));
    }
    let name = tokens.name("a model name")?;
    let direction = if revoke { "FROM" } else { "TO" };
    if !tokens.keyword(direction) {
        return Err(syntax(format!("expected {direction}")));
    }
    let mut grantees = Vec::new();
    loop {
        grantees.push(tokens.name("a role name or PUBLIC")?);
        if !matches!(tokens.peek(), Some(Token::Comma)) {
            break;
        }
        tokens.next();
    }
    tokens.end()?;
    Ok(ModelStatement {
        name,
        change: ModelChange::Grant { grantees, revoke },
    })
}

fn parse_tokens(sql: &str) -> Result<ModelStatement, LmError> {
    let mut tokens = tokenize(sql)?;
    let verb = tokens.name("CREATE, ALTER or DROP")?;
    tokens.name("MODEL")?;
    let statement = match verb.as_str() {
        "create" => {
            let if_not_exists = tokens.keyword("IF");
            if if_not_exists && !(tokens.keyword("NOT") && tokens.keyword("EXISTS")) {
                return Err(syntax("expected IF NOT EXISTS"));
            }
            let name = tokens.name("a model name")?;
            if !tokens.keyword("WITH") {
                return Err(syntax(format!(
                    "CREATE MODEL {name} needs WITH (base_url = '...', model = '...')"
                )));
            }
            ModelStatement {
                name,
                change: ModelChange::Create {
                    options: tokens.options()?,
                    if_not_exists,
                },
            }
        }
        "alter" => {
            let name = tokens.name("a model name")?;
            let change = if tokens.keyword("SET") || tokens.keyword("WITH") {
                ModelChange::Alter {
                    options: tokens.options()?,
                    reset: Vec::new(),
                }
            } else if tokens.keyword("RESET") {
                ModelChange::Alter {
                    options: RawOptions::new(),
                    reset: tokens.names()?,
                }
            } else {
                return Err(syntax(format!(
                    "ALTER MODEL {name} needs SET (option = value, ...) or RESET (option, ...)"
                )));
            };
            ModelStatement { name, change }
        }
        _ => {
            let if_exists = tokens.keyword("IF");
            if if_exists && !tokens.keyword("EXISTS") {
                return Err(syntax("expected IF EXISTS"));
            }
            ModelStatement {
                name: tokens.name("a model name")?,
                change: ModelChange::Drop { if_exists },
            }
        }
    };
    tokens.end()?;
    Ok(statement)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_parse() {
        let create = parse(
            "create model if not exists Fast with (base_url = 'http://h/v1', concurrency = 4, logprobs = true);",
        )
        .unwrap()
        .unwrap();
        assert_eq!(create.name, "fast");
        let ModelChange::Create {
            options,
            if_not_exists,
        } = create.change
        else {
            panic!()
        };
        assert!(if_not_exists);
        assert_eq!(options["base_url"], "http://h/v1");
        assert_eq!(options["concurrency"], "4");
        assert_eq!(options["logprobs"], "true");

        let alter = parse("ALTER MODEL fast RESET (concurrency)")
            .unwrap()
            .unwrap();
        assert_eq!(
            alter.change,
            ModelChange::Alter {
                options: RawOptions::new(),
                reset: vec!["concurrency".into()]
            }
        );
        let secret =
            parse_statement("create secret if not exists OpenAI with (env = 'OPENAI_API_KEY')")
                .unwrap()
                .unwrap();
        assert_eq!(
            secret,
            Statement::Secret(SecretStatement {
                name: "openai".into(),
                change: SecretChange::Create {
                    source: crate::llm::secrets::SecretSource::Env("OPENAI_API_KEY".into()),
                    if_not_exists: true
                }
            })
        );
        for bad in [
            "CREATE SECRET s",
            "CREATE SECRET s WITH (value = 'sk-1')",
            "DROP SECRET s t",
        ] {
            assert!(parse_statement(bad).unwrap().is_err(), "{bad}");
        }
        assert!(parse_statement("CREATE TABLE secret (a int)").is_none());
        let drop = parse("DROP MODEL IF EXISTS \"Fast\"").unwrap().unwrap();
        assert_eq!(drop.name, "Fast");
        assert!(parse("CREATE TABLE t (a int)").is_none());
        assert_eq!(
            split_statements("CREATE MODEL m WITH (a = 'x;y'); SET b = 1; -- c;\nSELECT $$;$$;"),
            vec![
                "CREATE MODEL m WITH (a = 'x;y')",
                " SET b = 1",
                " -- c;\nSELECT $$;$$"
            ]
        );
        for bad in [
            "CREATE MODEL m (x = 1)",
            "CREATE MODEL m WITH (x = 1",
            "CREATE MODEL m WITH (x = 1, x = 2)",
            "DROP MODEL m extra",
            "ALTER MODEL m",
        ] {
            let err = parse(bad).unwrap().unwrap_err();
            assert_eq!(err.sqlstate, "42601", "{bad}: {err}");
        }
    }
}
