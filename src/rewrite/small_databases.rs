//! V3's search for a counterexample: many tiny databases made from the query pair, not from
//! the data alone, on which the original and a candidate must return the same rows.
//!
//! Each database holds up to [`MAX_ROWS`] rows per table, each value drawn from its column's
//! domain:
//! - every constant either query compares the column with, and for numbers the values just
//!   below and above it (so `x > 5` and `x >= 5`, or `x <> 987654`, differ somewhere);
//! - for numbers not used as join keys, every numeric constant of either query with its
//!   neighbours and half (so a sum of two rows lands just inside and just outside
//!   `HAVING sum(x) > 100`), and 0, 1, 2;
//! - for join keys (columns compared for equality with another column), a small shared domain,
//!   so rows find partners, miss them and match more than one;
//! - a few of the column's values in the data, and NULL when the column may hold it.
//!
//! Rows repeat and tables come out empty by chance, so duplicates and empty groups occur.
//! After [`RANDOM_DATABASES`] random ones, the databases on which the queries returned rows are
//! changed one value or row at a time (a boundary is usually one value away from a database
//! where rows come through). The first database on which the results differ is shrunk (rows removed while they still differ)
//! and shown as the counterexample: `differs on: orders(id = 1, total = 5.0); customers
//! empty: 2 rows instead of 1`.
//!
//! Under ORDER BY the rows are compared as bags (V1 has checked that both sort by the same
//! keys); under LIMIT, a database whose result reaches the limit is skipped, since which tied
//! rows a LIMIT keeps is not determined.

use std::collections::{BTreeMap, HashMap, HashSet};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{ResolvedTableReference, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::{BinaryExpr, Expr, LogicalPlan};
use datafusion::prelude::SessionContext;

use super::results::{
    compare_rows, compared_column, key_classes, run, session_over, TableData, TestDatabase,
};

/// How many random databases are tried per candidate.
pub const RANDOM_DATABASES: usize = 100;
/// How many of those on which the queries return rows are then changed step by step, and
/// how many steps each.
const PRODUCTIVE: usize = 10;
const STEPS: usize = 12;

/// What one database showed.
enum Outcome {
    /// The same rows, this many.
    Same {
        rows: usize,
    },
    Differs(String),
    /// Nothing to compare (the original failed, or a LIMIT cut the result).
    Skipped,
}
/// The most rows a table holds in one of them.
const MAX_ROWS: usize = 3;
/// How many of a column's values in the data join its domain.
const DATA_VALUES: usize = 2;

/// The domains of the tables a query reads, made once per original query.
pub struct SmallDatabases {
    tables: Vec<(ResolvedTableReference, SchemaRef)>,
    /// A few distinct values of each column in the data, by table and column name.
    data_values: HashMap<(ResolvedTableReference, String), Vec<ScalarValue>>,
    seed: u64,
}

/// A database as rows of values, before it becomes Arrow batches.
type Rows = BTreeMap<ResolvedTableReference, Vec<Vec<ScalarValue>>>;

impl SmallDatabases {
    /// `tables` are the query's tables with (a prefix of) their data.
    pub(super) fn new(tables: &BTreeMap<ResolvedTableReference, TableData>, seed: u64) -> Self {
        let mut data_values = HashMap::new();
        for (name, table) in tables {
            for (index, field) in table.schema.fields().iter().enumerate() {
                let column = table.batch.column(index);
                let mut values: Vec<ScalarValue> = Vec::new();
                for row in 0..column.len() {
                    if values.len() == DATA_VALUES {
                        break;
                    }
                    match ScalarValue::try_from_array(column, row) {
                        Ok(value) if !value.is_null() && !values.contains(&value) => {
                            values.push(value)
                        }
                        _ => {}
                    }
                }
                data_values.insert((name.clone(), field.name().clone()), values);
            }
        }
        SmallDatabases {
            tables: tables
                .iter()
                .map(|(name, table)| (name.clone(), table.schema.clone()))
                .collect(),
            data_values,
            seed,
        }
    }

    /// A database on which `candidate` returns other rows than `original` (shrunk, as text),
    /// if one of the tried ones does. `limit` is the query's outermost LIMIT.
    pub async fn counterexample(
        &self,
        base: &SessionContext,
        original: &str,
        candidate: &str,
        limit: Option<usize>,
    ) -> Result<Option<String>> {
        let state = base.state();
        let mut plans = Vec::new();
        for sql in [original, candidate] {
            let plan = state.create_logical_plan(sql).await?;
            // The optimized plan has its constants folded (`DATE '1995-03-15'` is a cast of
            // a string before); both are read for constants.
            if let Ok(optimized) = state.optimize(&plan) {
                plans.push(optimized);
            }
            plans.push(plan);
        }
        let domains = self.domains(&plans)?;
        let mut random = SplitMix(self.seed);
        // Random databases first; those on which the queries return rows are kept, and then
        // changed a value or a row at a time: a boundary is usually one value away from a
        // database where the rows come through.
        let mut productive: Vec<(Rows, [u64; 2])> = Vec::new();
        for _ in 0..RANDOM_DATABASES {
            // Join keys draw from two positions of their (shared) domain in one database, so
            // rows find partners far more often than uniform draws would let them.
            let focus = [random.next(), random.next()];
            let mut rows = Rows::new();
            for (name, schema) in &self.tables {
                let count = random.below(MAX_ROWS as u64 + 1) as usize;
                let table = (0..count)
                    .map(|_| self.random_row(name, schema, &domains, &mut random, focus))
                    .collect();
                rows.insert(name.clone(), table);
            }
            match self
                .outcome(base, original, candidate, limit, &rows)
                .await?
            {
                Outcome::Differs(difference) => {
                    return self
                        .report(base, original, candidate, limit, rows, difference)
                        .await
                }
                Outcome::Same { rows: 0 } | Outcome::Skipped => {}
                Outcome::Same { .. } => {
                    if productive.len() < PRODUCTIVE {
                        productive.push((rows, focus));
                    }
                }
            }
        }
        for (start, focus) in productive {
            let mut rows = start.clone();
            for _ in 0..STEPS {
                let changed = self.changed(&rows, &domains, &mut random, focus);
                match self
                    .outcome(base, original, candidate, limit, &changed)
                    .await?
                {
                    Outcome::Differs(difference) => {
                        return self
                            .report(base, original, candidate, limit, changed, difference)
                            .await
                    }
                    Outcome::Same { rows: 0 } | Outcome::Skipped => rows = start.clone(),
                    Outcome::Same { .. } => rows = changed,
                }
            }
        }
        Ok(None)
    }

    /// The counterexample shrunk and described.
    async fn report(
        &self,
        base: &SessionContext,
        original: &str,
        candidate: &str,
        limit: Option<usize>,
        rows: Rows,
        difference: String,
    ) -> Result<Option<String>> {
        let (rows, difference) = self
            .shrink(base, original, candidate, limit, rows, difference)
            .await?;
        Ok(Some(format!(
            "{}: {difference}",
            describe(&self.tables, &rows)
        )))
    }

    fn random_row(
        &self,
        name: &ResolvedTableReference,
        schema: &SchemaRef,
        domains: &HashMap<(ResolvedTableReference, String), Domain>,
        random: &mut SplitMix,
        focus: [u64; 2],
    ) -> Vec<ScalarValue> {
        schema
            .fields()
            .iter()
            .map(|field| domains[&(name.clone(), field.name().clone())].draw(random, focus))
            .collect()
    }

    /// `rows` with one change: a value drawn again, a row repeated, or a row added or removed.
    fn changed(
        &self,
        rows: &Rows,
        domains: &HashMap<(ResolvedTableReference, String), Domain>,
        random: &mut SplitMix,
        focus: [u64; 2],
    ) -> Rows {
        let mut out = rows.clone();
        let (name, schema) = &self.tables[random.below(self.tables.len() as u64) as usize];
        let table = out.get_mut(name).expect("every table has rows, maybe none");
        match (random.below(8), table.len()) {
            (0, _) | (_, 0) if table.len() < MAX_ROWS + 1 => {
                table.push(self.random_row(name, schema, domains, random, focus))
            }
            (1, len) if len < MAX_ROWS + 1 => {
                let copy = table[random.below(len as u64) as usize].clone();
                table.push(copy);
            }
            (2, len) if len > 0 => {
                table.remove(random.below(len as u64) as usize);
            }
            (_, 0) => {}
            (_, len) => {
                let row = random.below(len as u64) as usize;
                let column = random.below(schema.fields().len() as u64) as usize;
                let field = schema.field(column);
                table[row][column] =
                    domains[&(name.clone(), field.name().clone())].draw(random, focus);
            }
        }
        out
    }

    /// Removes rows one at a time while the results still differ.
    async fn shrink(
        &self,
        base: &SessionContext,
        original: &str,
        candidate: &str,
        limit: Option<usize>,
        mut rows: Rows,
        mut difference: String,
    ) -> Result<(Rows, String)> {
        let names: Vec<ResolvedTableReference> = rows.keys().cloned().collect();
        for name in names {
            let mut index = 0;
            while index < rows[&name].len() {
                let mut fewer = rows.clone();
                fewer.get_mut(&name).expect("listed").remove(index);
                match self
                    .outcome(base, original, candidate, limit, &fewer)
                    .await?
                {
                    Outcome::Differs(still) => {
                        rows = fewer;
                        difference = still;
                    }
                    _ => index += 1,
                }
            }
        }
        Ok((rows, difference))
    }

    /// What running both queries on `rows` shows.
    async fn outcome(
        &self,
        base: &SessionContext,
        original: &str,
        candidate: &str,
        limit: Option<usize>,
        rows: &Rows,
    ) -> Result<Outcome> {
        let database = self.database(rows)?;
        let session = session_over(base, &database)?;
        // A database the original fails on (a scalar subquery's second row, a division by
        // zero) shows nothing about the candidate.
        let Ok(expected) = run(&session, original, false).await else {
            return Ok(Outcome::Skipped);
        };
        let got = match run(&session, candidate, false).await {
            Ok(got) => got,
            Err(err) => return Ok(Outcome::Differs(format!("the candidate fails: {err}"))),
        };
        if limit.is_some_and(|limit| expected.len() >= limit || got.len() >= limit) {
            return Ok(Outcome::Skipped);
        }
        Ok(match compare_rows(&expected, &got, false) {
            Err(why) => Outcome::Differs(format!("the candidate returns {why}")),
            Ok(()) => Outcome::Same {
                rows: expected.len(),
            },
        })
    }

    fn database(&self, rows: &Rows) -> Result<TestDatabase> {
        let mut tables = BTreeMap::new();
        for (name, schema) in &self.tables {
            let table = &rows[name];
            let columns = schema
                .fields()
                .iter()
                .enumerate()
                .map(|(index, field)| {
                    let values = table.iter().map(|row| row[index].clone());
                    if table.is_empty() {
                        Ok(datafusion::arrow::array::new_empty_array(field.data_type()))
                    } else {
                        ScalarValue::iter_to_array(values)
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            let batch = RecordBatch::try_new(schema.clone(), columns)?;
            tables.insert(
                name.clone(),
                TableData {
                    schema: schema.clone(),
                    batch,
                },
            );
        }
        Ok(TestDatabase {
            name: "a small database".into(),
            tables,
        })
    }

    /// Each column's domain for this query pair (see the module's description).
    fn domains(
        &self,
        plans: &[LogicalPlan],
    ) -> Result<HashMap<(ResolvedTableReference, String), Domain>> {
        let mut keys = HashSet::new();
        let mut tied: HashMap<String, Vec<ScalarValue>> = HashMap::new();
        let mut numbers = Vec::new();
        for plan in plans {
            keys.extend(key_classes(plan).into_keys());
            literals(plan, &mut tied, &mut numbers);
        }
        // Join keys share the constants any of them is compared with, so that a row kept by
        // `c.id > 0` can find a partner `o.customer` on the other side.
        let key_constants: Vec<ScalarValue> = tied
            .iter()
            .filter(|(column, _)| keys.contains(*column))
            .flat_map(|(_, values)| values.iter().cloned())
            .collect();
        let mut domains = HashMap::new();
        for (name, schema) in &self.tables {
            for field in schema.fields() {
                let data_type = field.data_type();
                let column = field.name();
                let is_key = keys.contains(column);
                let mut wanted: Vec<ScalarValue> = Vec::new();
                let own = tied.get(column).map(Vec::as_slice).unwrap_or_default();
                if !is_key {
                    for value in own {
                        wanted.extend(neighbours(value));
                    }
                }
                if is_key {
                    // The same list for every key column, so the focus positions of a
                    // database pick the same values in each (a key's own constants are among
                    // the key constants).
                    for value in &key_constants {
                        wanted.extend(neighbours(value));
                    }
                    wanted.extend([ScalarValue::Int64(Some(1)), ScalarValue::Int64(Some(2))]);
                    wanted.extend(["a", "b"].map(|s| ScalarValue::Utf8(Some(s.into()))));
                } else if own.is_empty() {
                    // A column compared with nothing may be aggregated or computed with: every
                    // number of the queries, its neighbours and half.
                    for value in &numbers {
                        wanted.extend(neighbours(value));
                        if let Some(half) = halved(value) {
                            wanted.push(half);
                        }
                    }
                    wanted.extend((0..3).map(|n| ScalarValue::Int64(Some(n))));
                    wanted.extend(["a", "b"].map(|s| ScalarValue::Utf8(Some(s.into()))));
                    wanted.push(ScalarValue::Boolean(Some(true)));
                    wanted.push(ScalarValue::Boolean(Some(false)));
                }
                if !is_key {
                    if let Some(values) = self.data_values.get(&(name.clone(), column.clone())) {
                        wanted.extend(values.iter().cloned());
                    }
                }
                let mut values: Vec<ScalarValue> = Vec::new();
                for value in wanted {
                    let Ok(typed) = cast_value(&value, data_type) else {
                        continue;
                    };
                    if !typed.is_null() && !values.contains(&typed) {
                        values.push(typed);
                    }
                }
                let domain = Domain {
                    values,
                    null: ScalarValue::try_from(data_type)?,
                    nullable: field.is_nullable(),
                    key: is_key,
                };
                domains.insert((name.clone(), column.clone()), domain);
            }
        }
        Ok(domains)
    }
}

/// The values one column draws from.
#[derive(Debug)]
struct Domain {
    values: Vec<ScalarValue>,
    null: ScalarValue,
    nullable: bool,
    /// A join key: its draws in one database keep to the database's two focus positions.
    key: bool,
}

impl Domain {
    fn draw(&self, random: &mut SplitMix, focus: [u64; 2]) -> ScalarValue {
        // NULL one time in eight, when the column may hold it.
        if self.values.is_empty() || (self.nullable && random.below(8) == 0) {
            return self.null.clone();
        }
        let len = self.values.len() as u64;
        let at = match self.key {
            true => focus[random.below(2) as usize] % len,
            false => random.below(len),
        };
        self.values[at as usize].clone()
    }
}

/// `value` as `data_type`, refusing casts that change it (a string cast to a number fails,
/// 2.5 does not become 2).
fn cast_value(value: &ScalarValue, data_type: &DataType) -> Result<ScalarValue> {
    let family = |t: &DataType| match t {
        t if t.is_numeric() => 0,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => 1,
        DataType::Boolean => 2,
        t if t.is_temporal() => 3,
        _ => 4,
    };
    if family(&value.data_type()) != family(data_type) {
        return Err(datafusion::error::DataFusionError::Plan(
            "another kind of value".into(),
        ));
    }
    let typed = value.cast_to(data_type)?;
    let back = typed.cast_to(&value.data_type())?;
    if back != *value {
        return Err(datafusion::error::DataFusionError::Plan(
            "the value changes".into(),
        ));
    }
    Ok(typed)
}

/// A constant and, for numbers and dates, the values just below and above it.
fn neighbours(value: &ScalarValue) -> Vec<ScalarValue> {
    let mut out = vec![value.clone()];
    match value {
        ScalarValue::Date32(Some(day)) => {
            out.push(ScalarValue::Date32(Some(day - 1)));
            out.push(ScalarValue::Date32(Some(day + 1)));
        }
        ScalarValue::Date64(Some(ms)) => {
            out.push(ScalarValue::Date64(Some(ms - 86_400_000)));
            out.push(ScalarValue::Date64(Some(ms + 86_400_000)));
        }
        _ if value.data_type().is_numeric() => {
            if let Ok(one) = ScalarValue::new_one(&value.data_type()) {
                out.extend(value.sub(&one).ok());
                out.extend(value.add(&one).ok());
            }
            // A hundredth either side, for floats compared with a constant.
            if let (true, Ok(step)) = (
                value.data_type().is_floating(),
                ScalarValue::Float64(Some(0.01)).cast_to(&value.data_type()),
            ) {
                out.extend(value.sub(&step).ok());
                out.extend(value.add(&step).ok());
            }
        }
        _ => {}
    }
    out
}

/// Half of a number (two rows of it sum to it).
fn halved(value: &ScalarValue) -> Option<ScalarValue> {
    if !value.data_type().is_numeric() {
        return None;
    }
    let number: f64 = match value.cast_to(&DataType::Float64).ok()? {
        ScalarValue::Float64(Some(number)) => number,
        _ => return None,
    };
    Some(ScalarValue::Float64(Some(number / 2.0)))
}

/// The constants of a plan: by the column each is compared with (`tied`), and every number.
fn literals(
    plan: &LogicalPlan,
    tied: &mut HashMap<String, Vec<ScalarValue>>,
    numbers: &mut Vec<ScalarValue>,
) {
    let column_of = |e: &Expr| match e {
        Expr::TryCast(cast) => match cast.expr.as_ref() {
            Expr::Column(c) => Some(c.name.clone()),
            _ => None,
        },
        other => compared_column(other),
    };
    let _ = plan.apply_with_subqueries(|node| {
        let _ = node.apply_expressions(|expr| {
            expr.apply(|e| {
                match e {
                    Expr::Literal(value, _)
                        if !value.is_null()
                            && value.data_type().is_numeric()
                            && !numbers.contains(value) =>
                    {
                        numbers.push(value.clone());
                    }
                    Expr::BinaryExpr(BinaryExpr { left, right, .. }) => {
                        for (a, b) in [(left, right), (right, left)] {
                            if let (Some(column), Expr::Literal(value, _)) =
                                (column_of(a), b.as_ref())
                            {
                                tied.entry(column).or_default().push(value.clone());
                            }
                        }
                    }
                    Expr::Between(between) => {
                        if let Some(column) = column_of(&between.expr) {
                            for bound in [&between.low, &between.high] {
                                if let Expr::Literal(value, _) = bound.as_ref() {
                                    tied.entry(column.clone()).or_default().push(value.clone());
                                }
                            }
                        }
                    }
                    Expr::InList(list) => {
                        if let Some(column) = column_of(&list.expr) {
                            for item in &list.list {
                                if let Expr::Literal(value, _) = item {
                                    tied.entry(column.clone()).or_default().push(value.clone());
                                }
                            }
                        }
                    }
                    Expr::Like(like) => {
                        if let (Some(column), Expr::Literal(value, _)) =
                            (column_of(&like.expr), like.pattern.as_ref())
                        {
                            // The pattern without wildcards matches it; with them, the text
                            // itself.
                            let text = value.to_string().replace(['%', '_'], "");
                            let entry = tied.entry(column).or_default();
                            entry.push(ScalarValue::Utf8(Some(text)));
                            entry.push(value.clone());
                        }
                    }
                    _ => {}
                }
                Ok(TreeNodeRecursion::Continue)
            })
        });
        Ok(TreeNodeRecursion::Continue)
    });
}

/// `orders(id = 1, total = 5.0), orders(id = 2, total = NULL); customers empty`.
fn describe(tables: &[(ResolvedTableReference, SchemaRef)], rows: &Rows) -> String {
    tables
        .iter()
        .map(|(name, schema)| {
            let table = &rows[name];
            if table.is_empty() {
                return format!("{} empty", name.table);
            }
            table
                .iter()
                .map(|row| {
                    let cells: Vec<String> = schema
                        .fields()
                        .iter()
                        .zip(row)
                        .map(|(field, value)| format!("{} = {}", field.name(), literal(value)))
                        .collect();
                    format!("{}({})", name.table, cells.join(", "))
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A value as SQL would write it: NULL, a number, a quoted string or date.
fn literal(value: &ScalarValue) -> String {
    if value.is_null() {
        return "NULL".into();
    }
    let text = value.to_string();
    match value.data_type() {
        data_type if data_type.is_numeric() => text,
        DataType::Boolean => text,
        _ => format!("'{}'", text.replace('\'', "''")),
    }
}

/// A seeded random source, so a verdict can be reproduced.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        crate::vector::hnsw::splitmix64(&mut self.0)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
}
