//! The prompt ensemble that asks a model for rewrites of a query (LITHE's basic prompts and its
//! database-sensitive ones, plus semsql's own rules for LM functions).
//!
//! Every prompt asks for the rewritten query in one fenced ```sql block, so
//! [`extract_sql`] can take it out of any prose around it. Changing a prompt's text changes what
//! models answer: bump [`PROMPT_VERSION`] so cached verdicts made with the old text are not
//! reused, and update the snapshots (`SEMSQL_UPDATE_SNAPSHOTS=1 cargo test -p semsql --lib
//! rewrite::prompts`).

use crate::llm::client::ChatRequest;

/// Part of the rewrite cache's key: answers to other prompts are not this version's answers.
pub const PROMPT_VERSION: u32 = 1;

/// One prompt of the ensemble.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    /// "Rewrite this query for performance", nothing more.
    Bare,
    /// A database expert who must keep the query's results exactly.
    Expert,
    /// Find the inefficiencies, explain them, then rewrite (or return the query unchanged).
    StepByStep,
    /// The rewrite rules with examples, and the tables' statistics.
    DatabaseSensitive,
}

impl Prompt {
    /// The ensemble, in the order requests are sent (the cheapest first, so caps cut the most
    /// expensive ones).
    pub const ALL: [Prompt; 4] = [
        Prompt::Bare,
        Prompt::Expert,
        Prompt::StepByStep,
        Prompt::DatabaseSensitive,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Prompt::Bare => "bare",
            Prompt::Expert => "expert",
            Prompt::StepByStep => "step_by_step",
            Prompt::DatabaseSensitive => "database_sensitive",
        }
    }

    /// The request for `sql`; `statistics` is the STATISTICS block (see
    /// [`super::statistics`]), used by the database-sensitive prompt only.
    pub fn request(self, sql: &str, statistics: &str) -> ChatRequest {
        let answer_format = "Answer with the rewritten query in one ```sql fenced block. \
                             The SQL dialect is PostgreSQL as Apache DataFusion runs it.";
        let (system, user) = match self {
            Prompt::Bare => (
                format!("Rewrite SQL queries for better performance. {answer_format}"),
                format!("Rewrite this query for performance:\n```sql\n{sql}\n```"),
            ),
            Prompt::Expert => (
                format!(
                    "You are a database expert who rewrites SQL queries so that they run faster. \
                     A rewrite must be semantically equivalent to the original: the same rows, \
                     the same number of duplicates, the same columns in the same order with the \
                     same names and types, on every possible database, including NULLs and empty \
                     tables. {answer_format}"
                ),
                format!("Rewrite this query:\n```sql\n{sql}\n```"),
            ),
            Prompt::StepByStep => (
                format!(
                    "You are a database expert who rewrites SQL queries so that they run faster \
                     while returning exactly the same results. Work step by step: first list the \
                     query's inefficiencies, then explain how to remove each without changing \
                     the results, then write the rewritten query. If the query is already \
                     efficient, return it unchanged. {answer_format}"
                ),
                format!("The query:\n```sql\n{sql}\n```"),
            ),
            Prompt::DatabaseSensitive => (
                format!(
                    "You are a database expert who rewrites SQL queries so that they run faster \
                     while returning exactly the same results on every database. Apply the \
                     rules below where they fit and the statistics show they pay off; if none \
                     fits, return the query unchanged.\n\n{RULES}\n\n{answer_format}"
                ),
                format!("{statistics}\n\nThe query:\n```sql\n{sql}\n```"),
            ),
        };
        ChatRequest {
            system,
            user,
            temperature: 0.0,
            max_tokens: Some(2048),
            response_format: None,
            logprobs: false,
        }
    }
}

/// The database-sensitive prompt's rules, each with a small example.
const RULES: &str = "\
Rules:
1. Compute a repeated subexpression once: put it in a CTE, or read a table in a single scan \
instead of several.
   Example: `SELECT (SELECT avg(x) FROM t), (SELECT max(x) FROM t)` becomes \
`SELECT avg(x), max(x) FROM t`.
2. Drop a conjunctive filter that another filter implies.
   Example: `WHERE a > 10 AND a > 5` becomes `WHERE a > 10`.
3. Drop a join with a table through its key or foreign key when the join neither filters nor \
adds columns.
   Example: `SELECT o.id FROM orders o JOIN orders o2 ON o.id = o2.id` (id is the key) becomes \
`SELECT o.id FROM orders o`.
4. Choose between EXISTS and IN by selectivity: IN over a small, selective subquery; EXISTS \
when the subquery is large and the outer side small. Use the row counts and column statistics.
   Example: `WHERE x IN (SELECT y FROM big)` over a small outer table becomes \
`WHERE EXISTS (SELECT 1 FROM big WHERE big.y = x)`.
5. Pre-filter both sides of a self-join on a low-selectivity column before joining.
   Example: `FROM t a JOIN t b ON a.k = b.k WHERE a.c = 1 AND b.c = 1` becomes \
`FROM (SELECT * FROM t WHERE c = 1) a JOIN (SELECT * FROM t WHERE c = 1) b ON a.k = b.k`.
6. Decorrelate a correlated subquery into a join with a grouped subquery.
   Example: `WHERE x < (SELECT avg(x) FROM t t2 WHERE t2.k = t.k)` becomes a join with \
`(SELECT k, avg(x) AS ax FROM t GROUP BY k)` on k and `x < ax`.
7. Functions whose names start with llm_ or embed call a language model per row and cost far \
more than any other work: evaluate every cheap predicate before them, so they see fewer rows.
   Example: `WHERE llm_filter('…', body) AND stars <= 2` becomes \
`WHERE stars <= 2 AND llm_filter('…', body)`, or a subquery filtering on stars first.
8. Call a language-model function once per distinct input: apply it over \
`SELECT DISTINCT` of its arguments and join back, when the inputs repeat.
Never add or remove calls of volatile functions (random(), now()) or language-model functions, \
never read a table the query does not read, and keep ORDER BY and LIMIT.";

/// The query in a model's answer: the last ```sql fenced block, else the last ``` block, else
/// the whole answer when it is nothing but a query. `None` when there is none.
pub fn extract_sql(answer: &str) -> Option<String> {
    let blocks = fenced_blocks(answer);
    let chosen = blocks
        .iter()
        .rev()
        .find(|(lang, _)| lang.eq_ignore_ascii_case("sql"))
        .or_else(|| blocks.last())
        .map(|(_, body)| body.clone())
        .or_else(|| {
            let trimmed = answer.trim();
            let first = trimmed
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
            (first == "select" || first == "with").then(|| trimmed.to_owned())
        })?;
    let sql = chosen.trim().trim_end_matches(';').trim().to_owned();
    (!sql.is_empty()).then_some(sql)
}

/// `(language, body)` of each fenced block.
fn fenced_blocks(text: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("```") {
        let after = &rest[start + 3..];
        let (lang, body_start) = match after.find('\n') {
            Some(newline) => (after[..newline].trim().to_owned(), &after[newline + 1..]),
            None => break,
        };
        let Some(end) = body_start.find("```") else {
            break;
        };
        blocks.push((lang, body_start[..end].to_owned()));
        rest = &body_start[end + 3..];
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUERY: &str = "SELECT o.id FROM orders o WHERE o.total > 10 AND llm_filter('Is {0} \
                         urgent?', o.note) ORDER BY o.id LIMIT 5";
    const STATISTICS: &str = "STATISTICS\ntable orders: 1000 rows\n  id: 1000 distinct, 0 nulls, \
                              min 1, max 1000";

    /// The requests each prompt sends, compared with `src/rewrite/snapshots/<name>.json`: a
    /// change of wording must be deliberate (and bump PROMPT_VERSION).
    #[test]
    fn prompts_match_their_snapshots() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/rewrite/snapshots");
        let update = std::env::var_os("SEMSQL_UPDATE_SNAPSHOTS").is_some();
        for prompt in Prompt::ALL {
            let body = prompt.request(QUERY, STATISTICS).body("some-model");
            let rendered = serde_json::to_string_pretty(&body).unwrap() + "\n";
            let path = dir.join(format!("{}.json", prompt.name()));
            if update {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &rendered).unwrap();
            }
            let expected = std::fs::read_to_string(&path)
                .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
            assert_eq!(rendered, expected, "prompt {} changed", prompt.name());
        }
    }

    #[test]
    fn statistics_only_reach_the_database_sensitive_prompt() {
        for prompt in Prompt::ALL {
            let request = prompt.request(QUERY, STATISTICS);
            assert!(request.user.contains(QUERY));
            assert_eq!(
                request.user.contains("STATISTICS"),
                prompt == Prompt::DatabaseSensitive
            );
        }
    }

    #[test]
    fn extracts_the_last_sql_block() {
        let answer = "Step 1: the join is redundant.\n```sql\nSELECT 1\n```\nFinal:\n```sql\n\
                      SELECT id FROM t;\n```\nDone.";
        assert_eq!(extract_sql(answer).as_deref(), Some("SELECT id FROM t"));
        assert_eq!(
            extract_sql("```\nselect 2\n```").as_deref(),
            Some("select 2")
        );
        assert_eq!(
            extract_sql("  SELECT a FROM t;  ").as_deref(),
            Some("SELECT a FROM t")
        );
        assert_eq!(extract_sql("I cannot improve this query."), None);
        assert_eq!(extract_sql("```sql\n\n```"), None);
        assert_eq!(extract_sql("```sql\nSELECT 1"), None);
    }
}
