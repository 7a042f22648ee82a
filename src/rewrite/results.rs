//! V3, the result check: the original and a candidate must return the same rows (as bags, or in
//! order under ORDER BY; floats within a tolerance) on small databases made from the query pair
//! (see [`super::small_databases`]; tried first, they give the counterexample), on the real data
//! at small scale and on synthetic databases made from it:
//!
//! - key-closed samples: the columns the query compares for equality form key classes; a class
//!   keeps a random half of its values (all of them when it has few), and a table keeps the rows
//!   whose keys all stayed, so joins still find their partners (foreign-key closure without
//!   declared keys);
//! - a sample with a fifth of every nullable column's values made NULL;
//! - a sample with a third of every table's rows duplicated;
//! - a sample with ties: half the values of every non-key number and date column made its
//!   minimum, so comparisons between rows (`cost = (SELECT min(cost) …)`) match more than one row
//!   and a dropped join condition shows;
//! - a sample with every non-key number 0, so `x < 0.2 * avg(x)` and `x <= 0.2 * avg(x)` differ;
//! - for each constant a column is compared with (`x > c`, BETWEEN), a sample with half of that
//!   column set to it, so `x > c` and `x >= c` differ;
//! - a sample with one table empty, for each table.
//!
//! The databases are only trusted when they tell the original apart from its mutants (a dropped
//! conjunct, LEFT→INNER, a dropped DISTINCT; see [`super::mutants`]): a mutant that returns the
//! original's rows everywhere makes the verdict "untested", never "equivalent". A mutant whose
//! optimized plan is the original's is equivalent by construction and not asked about.
//!
//! Everything runs without a model: language-model functions answer from the cache only
//! (`semsql.cache = replay`); an answer missing from it fails the run.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::Scalar;
use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Float32Array, Float64Array, Int64Array,
};
use datafusion::arrow::compute::kernels::zip::zip;
use datafusion::arrow::compute::{cast, concat_batches, filter_record_batch};
use datafusion::arrow::compute::{sort_to_indices, SortOptions};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList,
    MemorySchemaProvider,
};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, ResolvedTableReference, ScalarValue, TableReference};
use datafusion::datasource::MemTable;
use datafusion::error::Result;
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::{BinaryExpr, Expr, LogicalPlan, Operator};
use datafusion::prelude::SessionContext;
use semsql_udfs::lm::{CacheMode, LmSettings};

use super::mutants::mutants;
use super::small_databases::SmallDatabases;
use super::verify::{plan_text, Verdict};

/// At most this many rows of a table are read to make the test databases; the real data is one
/// of them only when every table the query reads fits.
pub const MAX_ROWS_PER_TABLE: usize = 200_000;

/// A share in hundredths, for the hash-based choices below.
const KEEP_PERCENT: u64 = 50;
const NULL_PERCENT: u64 = 20;
const DUPLICATE_PERCENT: u64 = 33;
/// A key class with at most this many values keeps them all (nations, regions, flags).
const SMALL_DOMAIN: usize = 64;

/// One table's rows in a test database.
#[derive(Debug, Clone)]
pub(super) struct TableData {
    pub(super) schema: SchemaRef,
    pub(super) batch: RecordBatch,
}

/// A named database: the query's tables, each with its rows.
#[derive(Debug, Clone)]
pub(super) struct TestDatabase {
    pub(super) name: String,
    pub(super) tables: BTreeMap<ResolvedTableReference, TableData>,
}

/// A query's output, ready to compare.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Cell {
    Null,
    Float(f64),
    Text(String),
}

pub(super) type Rows = Vec<Vec<Cell>>;

/// The result check's databases for one original query, with the original's results on each
/// and what its mutants showed.
pub struct ResultCheck {
    base: SessionContext,
    original: String,
    ordered: bool,
    /// The outermost LIMIT, if any.
    limit: Option<usize>,
    /// The tiny databases made from the query pair (see [`super::small_databases`]).
    small: SmallDatabases,
    databases: Vec<(TestDatabase, SessionContext, Rows)>,
    /// The real data, when small enough to run on as it is: its session and the original's rows.
    real: Option<Rows>,
    /// Mutants the databases could not tell apart from the original.
    pub undistinguished: Vec<String>,
}

impl ResultCheck {
    /// Reads the tables `original` reads, makes the databases, runs the original on each and
    /// checks that they tell its mutants apart. `ctx` is the user's session (its tables, its
    /// functions); its LM answers are used from the cache only.
    pub async fn prepare(ctx: &SessionContext, original: &str, seed: u64) -> Result<ResultCheck> {
        let base = replaying(ctx)?;
        let plan = base.state().create_logical_plan(original).await?;
        let ordered = is_ordered(&plan);
        let tables = scanned_tables(&base, &plan)?;
        let mut data = BTreeMap::new();
        let mut all_fit = true;
        for table in &tables {
            let frame = base.table(TableReference::from(table.clone())).await?;
            let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
            let batches = frame
                .limit(0, Some(MAX_ROWS_PER_TABLE + 1))?
                .collect()
                .await?;
            let mut batch = concat_batches(&schema, &batches)?;
            if batch.num_rows() > MAX_ROWS_PER_TABLE {
                all_fit = false;
                batch = batch.slice(0, MAX_ROWS_PER_TABLE);
            }
            data.insert(table.clone(), TableData { schema, batch });
        }
        let classes = key_classes(&plan);
        let small = SmallDatabases::new(&data, seed);
        let real = TestDatabase {
            name: "the data".into(),
            tables: data,
        };
        let mut made = Vec::new();
        for round in 1..=2 {
            made.push(sample(
                &real,
                &classes,
                seed + round,
                &format!("sample {round}"),
            )?);
        }
        made.push(with_nulls(
            &sample(&real, &classes, seed + 3, "sample 3")?,
            seed,
        )?);
        made.push(with_duplicates(
            &sample(&real, &classes, seed + 4, "sample 4")?,
            seed,
        )?);
        // The value variants start from the data itself: a sample may keep too few of the rows
        // a selective query needs.
        let constants = compared_constants(&plan);
        let filtered = |name: &str| constants.filtered.contains(name);
        let tied = |name: &str, array: &ArrayRef| match filtered(name) {
            true => Ok(None),
            false => ties(name, array),
        };
        let zeroed = |name: &str, array: &ArrayRef| match filtered(name) {
            true => Ok(None),
            false => zeros(name, array),
        };
        let non_keys = (&classes, false);
        made.push(with_replaced(&real, "ties", non_keys, (seed, 50), &tied)?);
        made.push(with_replaced(
            &real,
            "zeros",
            non_keys,
            (seed, 100),
            &zeroed,
        )?);
        // Boundaries: half of each column compared with a constant set to that constant (one
        // database per constant), so `x > c` and `x >= c` differ.
        for (column, values) in &constants.bounds {
            for (number, value) in values.iter().enumerate() {
                let pick = |name: &str, array: &ArrayRef| -> Result<Option<ArrayRef>> {
                    if name != column.as_str() {
                        return Ok(None);
                    }
                    Ok(cast(&value.to_array_of_size(1)?, array.data_type()).ok())
                };
                let label = format!("{column} at bound {}", number + 1);
                made.push(with_replaced(
                    &real,
                    &label,
                    (&classes, true),
                    (seed, 50),
                    &pick,
                )?);
            }
        }
        for table in real.tables.keys() {
            made.push(with_empty(&made[0], table));
        }
        let mut databases = Vec::new();
        let real_rows = if all_fit {
            Some(run(&base, original, ordered).await?)
        } else {
            // Too large to run on whole: its prefix is a database like the others.
            let mut prefix = real.clone();
            prefix.name = format!("the first {MAX_ROWS_PER_TABLE} rows of each table");
            made.insert(0, prefix);
            None
        };
        for database in made {
            let session = session_over(&base, &database)?;
            let rows = run(&session, original, ordered).await?;
            databases.push((database, session, rows));
        }
        let mut check = ResultCheck {
            base,
            original: original.to_owned(),
            ordered,
            limit: outer_limit(&plan),
            small,
            databases,
            real: real_rows,
            undistinguished: Vec::new(),
        };
        check.undistinguished = check.undistinguished_mutants(original).await?;
        Ok(check)
    }

    /// The test databases' names, for reports.
    pub fn database_count(&self) -> usize {
        self.databases.len() + usize::from(self.real.is_some())
    }

    /// V3 for one candidate. The candidate's own mutants must be told apart too: a condition
    /// the candidate adds (`AND total > 0`) that no database can falsify is one the check cannot
    /// vouch for.
    pub async fn verdict(&self, candidate: &str) -> Verdict {
        match self
            .small
            .counterexample(&self.base, &self.original, candidate, self.limit)
            .await
        {
            Ok(Some(found)) => return Verdict::Fail(format!("differs on: {found}")),
            Ok(None) => {}
            Err(err) => return Verdict::Fail(format!("it failed: {err}")),
        }
        match self.compare(candidate).await {
            Verdict::Pass if !self.undistinguished.is_empty() => {
                return Verdict::Untested(format!(
                    "the same rows on {} databases, but they cannot tell the original from its \
                     mutant(s): {}",
                    self.database_count(),
                    self.undistinguished.join("; ")
                ))
            }
            Verdict::Pass => {}
            other => return other,
        }
        match self.undistinguished_mutants(candidate).await {
            Ok(found) if found.is_empty() => Verdict::Pass,
            Ok(found) => Verdict::Untested(format!(
                "the same rows on {} databases, but they cannot tell the candidate from its \
                 mutant(s): {}",
                self.database_count(),
                found.join("; ")
            )),
            Err(err) => Verdict::Untested(format!("its mutants could not be made: {err}")),
        }
    }

    /// The mutants of `sql` (other than those equivalent by plan) that return the original's
    /// rows on every database.
    async fn undistinguished_mutants(&self, sql: &str) -> Result<Vec<String>> {
        let state = self.base.state();
        let own = plan_text(&state.optimize(&state.create_logical_plan(sql).await?)?);
        let mut found = Vec::new();
        for mutant in mutants(sql).map_err(DataFusionError::Plan)? {
            let Ok(mutant_plan) = state.create_logical_plan(&mutant.sql).await else {
                continue;
            };
            match state.optimize(&mutant_plan) {
                Ok(optimized) if plan_text(&optimized) == own => continue,
                Err(_) => continue,
                Ok(_) => {}
            }
            if !matches!(self.compare(&mutant.sql).await, Verdict::Fail(_)) {
                found.push(mutant.change);
            }
        }
        Ok(found)
    }

    /// Pass when `candidate` returns the original's rows on every database, else Fail naming
    /// the first database where it does not.
    async fn compare(&self, candidate: &str) -> Verdict {
        if let Some(expected) = &self.real {
            if let Some(why) = self.differs(&self.base, candidate, expected).await {
                return Verdict::Fail(format!("on the data: {why}"));
            }
        }
        for (database, session, expected) in &self.databases {
            if let Some(why) = self.differs(session, candidate, expected).await {
                return Verdict::Fail(format!("on {}: {why}", database.name));
            }
        }
        Verdict::Pass
    }

    async fn differs(
        &self,
        session: &SessionContext,
        sql: &str,
        expected: &Rows,
    ) -> Option<String> {
        match run(session, sql, self.ordered).await {
            Err(err) => Some(format!("it failed: {err}")),
            Ok(rows) => compare_rows(expected, &rows, self.ordered).err(),
        }
    }
}

/// The session with LM functions answering from the cache only.
fn replaying(ctx: &SessionContext) -> Result<SessionContext> {
    let mut state = ctx.state();
    LmSettings::of_mut(state.config_mut().options_mut()).cache = CacheMode::Replay;
    Ok(SessionContext::new_with_state(state))
}

/// A session like `base` whose tables are `database`'s (and nothing else).
pub(super) fn session_over(
    base: &SessionContext,
    database: &TestDatabase,
) -> Result<SessionContext> {
    let catalogs = Arc::new(MemoryCatalogProviderList::new());
    for (name, table) in &database.tables {
        let catalog = match catalogs.catalog(&name.catalog) {
            Some(catalog) => catalog,
            None => {
                let catalog: Arc<dyn CatalogProvider> = Arc::new(MemoryCatalogProvider::new());
                catalogs.register_catalog(name.catalog.to_string(), catalog.clone());
                catalog
            }
        };
        let schema = match catalog.schema(&name.schema) {
            Some(schema) => schema,
            None => {
                let schema = Arc::new(MemorySchemaProvider::new());
                catalog.register_schema(&name.schema, schema.clone())?;
                schema
            }
        };
        let rows = MemTable::try_new(table.schema.clone(), vec![vec![table.batch.clone()]])?;
        schema.register_table(name.table.to_string(), Arc::new(rows))?;
    }
    let state = SessionStateBuilder::new_from_existing(base.state())
        .with_catalog_list(catalogs)
        .build();
    Ok(SessionContext::new_with_state(state))
}

pub(super) async fn run(session: &SessionContext, sql: &str, ordered: bool) -> Result<Rows> {
    let batches = session.sql(sql).await?.collect().await?;
    let mut rows = Vec::new();
    for batch in &batches {
        let columns: Vec<Column> = batch
            .columns()
            .iter()
            .map(Column::new)
            .collect::<Result<_>>()?;
        for row in 0..batch.num_rows() {
            rows.push(columns.iter().map(|c| c.cell(row)).collect());
        }
    }
    if !ordered {
        rows.sort_by_cached_key(|row: &Vec<Cell>| sort_key(row));
    }
    Ok(rows)
}

/// One output column, read as cells.
enum Column<'a> {
    Float(&'a ArrayRef),
    Other(&'a ArrayRef, ArrayFormatter<'a>),
}

impl<'a> Column<'a> {
    fn new(array: &'a ArrayRef) -> Result<Self> {
        Ok(match array.data_type() {
            DataType::Float32 | DataType::Float64 => Column::Float(array),
            _ => Column::Other(
                array,
                ArrayFormatter::try_new(array, &FormatOptions::default())?,
            ),
        })
    }

    fn cell(&self, row: usize) -> Cell {
        match self {
            Column::Float(array) if array.is_null(row) => Cell::Null,
            Column::Float(array) => {
                Cell::Float(match array.as_any().downcast_ref::<Float64Array>() {
                    Some(values) => values.value(row),
                    None => array
                        .as_any()
                        .downcast_ref::<Float32Array>()
                        .map_or(f64::NAN, |values| values.value(row) as f64),
                })
            }
            Column::Other(array, _) if array.is_null(row) => Cell::Null,
            Column::Other(_, format) => Cell::Text(format.value(row).to_string()),
        }
    }
}

/// A row's order for bag comparison: floats rounded, so values within the tolerance sort
/// together (or, at a rounding edge, apart: a false "differs", never a false "equal").
fn sort_key(row: &[Cell]) -> Vec<(u8, String)> {
    row.iter()
        .map(|cell| match cell {
            Cell::Null => (0, String::new()),
            Cell::Float(value) => (1, format!("{value:.6e}")),
            Cell::Text(text) => (2, text.clone()),
        })
        .collect()
}

fn same_cell(a: &Cell, b: &Cell) -> bool {
    match (a, b) {
        (Cell::Float(x), Cell::Float(y)) => {
            x == y || (x.is_nan() && y.is_nan()) || (x - y).abs() <= 1e-9 * x.abs().max(y.abs())
        }
        _ => a == b,
    }
}

pub(super) fn compare_rows(
    expected: &Rows,
    got: &Rows,
    ordered: bool,
) -> std::result::Result<(), String> {
    if expected.len() != got.len() {
        return Err(format!("{} rows instead of {}", got.len(), expected.len()));
    }
    for (index, (want, have)) in expected.iter().zip(got).enumerate() {
        if want.len() != have.len() || !want.iter().zip(have).all(|(a, b)| same_cell(a, b)) {
            return Err(format!(
                "row {}{} is {have:?} instead of {want:?}",
                index + 1,
                if ordered { "" } else { " (sorted)" }
            ));
        }
    }
    Ok(())
}

/// The query's outermost LIMIT (of a Limit node, or a Sort's fetch), if any.
fn outer_limit(plan: &LogicalPlan) -> Option<usize> {
    let mut node = plan;
    loop {
        match node {
            LogicalPlan::Projection(p) => node = &p.input,
            LogicalPlan::SubqueryAlias(a) => node = &a.input,
            LogicalPlan::Limit(l) => {
                use datafusion::logical_expr::{FetchType, SkipType};
                // An OFFSET, or a LIMIT that is not a constant: no result can be compared.
                return match (l.get_skip_type(), l.get_fetch_type()) {
                    (Ok(SkipType::Literal(0)), Ok(FetchType::Literal(fetch))) => {
                        Some(fetch.unwrap_or(usize::MAX))
                    }
                    _ => Some(0),
                };
            }
            LogicalPlan::Sort(s) => match s.fetch {
                Some(fetch) => return Some(fetch),
                None => node = &s.input,
            },
            _ => return None,
        }
    }
}

/// Whether the query's output order is part of its meaning (an outermost ORDER BY).
fn is_ordered(plan: &LogicalPlan) -> bool {
    let mut node = plan;
    loop {
        match node {
            LogicalPlan::Sort(_) => return true,
            LogicalPlan::Projection(p) => node = &p.input,
            LogicalPlan::SubqueryAlias(a) => node = &a.input,
            LogicalPlan::Limit(l) => node = &l.input,
            _ => return false,
        }
    }
}

/// The tables a plan reads, subqueries included, fully qualified.
pub fn scanned_tables(
    ctx: &SessionContext,
    plan: &LogicalPlan,
) -> Result<BTreeSet<ResolvedTableReference>> {
    let state = ctx.state();
    let options = &state.config().options().catalog;
    let mut tables = BTreeSet::new();
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            tables.insert(scan.table_name.clone());
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(tables
        .into_iter()
        .map(|table| table.resolve(&options.default_catalog, &options.default_schema))
        .collect())
}

/// Column names compared for equality with another column anywhere in the plan, grouped into
/// classes (names joined directly or through others share a class).
pub(super) fn key_classes(plan: &LogicalPlan) -> HashMap<String, usize> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut collect = |expr: &Expr| {
        let _ = expr.apply(|e| {
            if let Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Eq,
                right,
            }) = e
            {
                if let (Expr::Column(a), Expr::Column(b)) = (left.as_ref(), right.as_ref()) {
                    pairs.push((a.name.clone(), b.name.clone()));
                }
            }
            Ok(TreeNodeRecursion::Continue)
        });
    };
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::Join(join) = node {
            for (left, right) in &join.on {
                collect(&Expr::BinaryExpr(BinaryExpr::new(
                    Box::new(left.clone()),
                    Operator::Eq,
                    Box::new(right.clone()),
                )));
            }
        }
        let _ = node.apply_expressions(|expr| {
            collect(expr);
            Ok(TreeNodeRecursion::Continue)
        });
        Ok(TreeNodeRecursion::Continue)
    });
    let mut names = super::prove::UnionFind::default();
    for (a, b) in &pairs {
        names.union(a, b);
    }
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut classes = HashMap::new();
    for name in names.members() {
        let next = ids.len();
        let id = *ids.entry(names.find(&name)).or_insert(next);
        classes.insert(name, id);
    }
    classes
}

fn chance(seed: u64, what: &str, value: &str, percent: u64) -> bool {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (seed, what, value).hash(&mut hasher);
    hasher.finish() % 100 < percent
}

fn text_column(array: &ArrayRef) -> Result<ArrayRef> {
    Ok(cast(array, &DataType::Utf8)?)
}

fn texts(array: &ArrayRef) -> Result<Vec<Option<String>>> {
    let text = text_column(array)?;
    let text = text
        .as_any()
        .downcast_ref::<datafusion::arrow::array::StringArray>()
        .ok_or_else(|| DataFusionError::Internal("cast to Utf8 gave no strings".into()))?;
    Ok((0..text.len())
        .map(|i| (!text.is_null(i)).then(|| text.value(i).to_owned()))
        .collect())
}

/// A key column of a table: its class and its values as text.
type KeyColumn = (usize, Vec<Option<String>>);

/// A key-closed sample of `database`.
fn sample(
    database: &TestDatabase,
    classes: &HashMap<String, usize>,
    seed: u64,
    name: &str,
) -> Result<TestDatabase> {
    // Each class's values across the tables, to see whether the domain is small.
    let mut domains: HashMap<usize, BTreeSet<String>> = HashMap::new();
    let mut keyed: BTreeMap<ResolvedTableReference, Vec<KeyColumn>> = BTreeMap::new();
    for (table, data) in &database.tables {
        for (index, field) in data.schema.fields().iter().enumerate() {
            if let Some(&class) = classes.get(field.name()) {
                let values = texts(data.batch.column(index))?;
                domains
                    .entry(class)
                    .or_default()
                    .extend(values.iter().flatten().cloned());
                keyed
                    .entry(table.clone())
                    .or_default()
                    .push((class, values));
            }
        }
    }
    let mut tables = BTreeMap::new();
    for (table, data) in &database.tables {
        let rows = data.batch.num_rows();
        let sampled_keys: Vec<&KeyColumn> = keyed
            .get(table)
            .map(|keys| {
                keys.iter()
                    .filter(|(class, _)| domains[class].len() > SMALL_DOMAIN)
                    .collect()
            })
            .unwrap_or_default();
        let keep: BooleanArray = (0..rows)
            .map(|row| {
                let kept = if sampled_keys.is_empty() {
                    rows <= SMALL_DOMAIN
                        || chance(seed, &table.to_string(), &row.to_string(), KEEP_PERCENT)
                } else {
                    sampled_keys
                        .iter()
                        .all(|(class, values)| match &values[row] {
                            Some(value) => chance(seed, &class.to_string(), value, KEEP_PERCENT),
                            None => true,
                        })
                };
                Some(kept)
            })
            .collect();
        tables.insert(
            table.clone(),
            TableData {
                schema: data.schema.clone(),
                batch: filter_record_batch(&data.batch, &keep)?,
            },
        );
    }
    Ok(TestDatabase {
        name: name.to_owned(),
        tables,
    })
}

/// `database` with a share of every nullable column's values made NULL.
fn with_nulls(database: &TestDatabase, seed: u64) -> Result<TestDatabase> {
    let mut out = database.clone();
    out.name = format!("{} with NULLs", database.name);
    for (table, data) in out.tables.iter_mut() {
        let mut columns = data.batch.columns().to_vec();
        for (index, field) in data.schema.fields().iter().enumerate() {
            if !field.is_nullable() {
                continue;
            }
            let keep: BooleanArray = (0..data.batch.num_rows())
                .map(|row| {
                    Some(!chance(
                        seed,
                        &format!("{table}.{}", field.name()),
                        &row.to_string(),
                        NULL_PERCENT,
                    ))
                })
                .collect();
            columns[index] = datafusion::arrow::compute::nullif(
                &columns[index],
                &datafusion::arrow::compute::not(&keep)?,
            )?;
        }
        data.batch = RecordBatch::try_new(data.schema.clone(), columns)?;
    }
    Ok(out)
}

/// `database` with a share of every table's rows twice.
fn with_duplicates(database: &TestDatabase, seed: u64) -> Result<TestDatabase> {
    let mut out = database.clone();
    out.name = format!("{} with duplicate rows", database.name);
    for (table, data) in out.tables.iter_mut() {
        let twice: BooleanArray = (0..data.batch.num_rows())
            .map(|row| {
                Some(chance(
                    seed,
                    &table.to_string(),
                    &row.to_string(),
                    DUPLICATE_PERCENT,
                ))
            })
            .collect();
        let extra = filter_record_batch(&data.batch, &twice)?;
        data.batch = concat_batches(&data.schema, &[data.batch.clone(), extra])?;
    }
    Ok(out)
}

/// What a variant puts into a column, if anything: a one-row array of the column's type.
type Pick<'a> = dyn Fn(&str, &ArrayRef) -> Result<Option<ArrayRef>> + 'a;

/// `database` with `percent` of the values of the columns `pick` chooses replaced by the value
/// it gives (key columns only when `keys_too`).
fn with_replaced(
    database: &TestDatabase,
    label: &str,
    (classes, keys_too): (&HashMap<String, usize>, bool),
    (seed, percent): (u64, u64),
    pick: &Pick<'_>,
) -> Result<TestDatabase> {
    let mut out = database.clone();
    out.name = format!("{} with {label}", database.name);
    for (table, data) in out.tables.iter_mut() {
        let mut columns = data.batch.columns().to_vec();
        for (index, field) in data.schema.fields().iter().enumerate() {
            if !keys_too && classes.contains_key(field.name()) {
                continue;
            }
            let column = &columns[index];
            let Some(value) = pick(field.name(), column)? else {
                continue;
            };
            let replace: BooleanArray = (0..column.len())
                .map(|row| {
                    Some(chance(
                        seed,
                        &format!("{table}.{} {label}", field.name()),
                        &row.to_string(),
                        percent,
                    ))
                })
                .collect();
            columns[index] = zip(&replace, &Scalar::new(value), column)?;
        }
        data.batch = RecordBatch::try_new(data.schema.clone(), columns)?;
    }
    Ok(out)
}

/// Ties: half of every number and date column's values made its minimum, so comparisons
/// between rows (`cost = (SELECT min(cost) …)`) match more than one row.
fn ties(_: &str, column: &ArrayRef) -> Result<Option<ArrayRef>> {
    let kind = column.data_type();
    if !(kind.is_numeric() || kind.is_temporal()) || column.len() == column.null_count() {
        return Ok(None);
    }
    let options = SortOptions {
        descending: false,
        nulls_first: false,
    };
    let smallest = sort_to_indices(column, Some(options), Some(1))?;
    Ok(Some(column.slice(smallest.value(0) as usize, 1)))
}

/// Zeros: every number made 0, so `x < 0.2 * avg(x)` and `x <= 0.2 * avg(x)` differ.
fn zeros(_: &str, column: &ArrayRef) -> Result<Option<ArrayRef>> {
    if !column.data_type().is_numeric() {
        return Ok(None);
    }
    let zero: ArrayRef = Arc::new(Int64Array::from(vec![0]));
    Ok(Some(cast(&zero, column.data_type())?))
}

/// How a query compares columns with constants.
struct Constants {
    /// The constants each column is compared with by `<`, `<=`, `>`, `>=` or BETWEEN.
    bounds: HashMap<String, Vec<ScalarValue>>,
    /// Every column compared with a constant in any way (`=`, LIKE, IN, ...): ties and zeros
    /// leave them alone, or a selective filter would keep no row.
    filtered: BTreeSet<String>,
}

/// The column a comparison compares, when its side is a column or a cast of one.
pub(super) fn compared_column(e: &Expr) -> Option<String> {
    match e {
        Expr::Column(c) => Some(c.name.clone()),
        Expr::Cast(cast) => match cast.expr.as_ref() {
            Expr::Column(c) => Some(c.name.clone()),
            _ => None,
        },
        _ => None,
    }
}

fn compared_constants(plan: &LogicalPlan) -> Constants {
    let mut found: HashMap<String, Vec<ScalarValue>> = HashMap::new();
    let mut filtered = BTreeSet::new();
    let _ = plan.apply_with_subqueries(|node| {
        let _ = node.apply_expressions(|expr| {
            expr.apply(|e| {
                let column_of = compared_column;
                let literal_of = |e: &Expr| match e {
                    Expr::Literal(value, _) => Some(value.clone()),
                    _ => None,
                };
                match e {
                    Expr::BinaryExpr(BinaryExpr { left, right, .. })
                    | Expr::Like(datafusion::logical_expr::Like {
                        expr: left,
                        pattern: right,
                        ..
                    }) => {
                        for (a, b) in [(left, right), (right, left)] {
                            if let (Some(column), Some(_)) = (column_of(a), literal_of(b)) {
                                filtered.insert(column);
                            }
                        }
                    }
                    Expr::InList(list) => {
                        if let Some(column) = column_of(&list.expr) {
                            filtered.insert(column);
                        }
                    }
                    _ => {}
                }
                match e {
                    Expr::BinaryExpr(BinaryExpr {
                        left,
                        op: Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq,
                        right,
                    }) => {
                        let pair = column_of(left)
                            .zip(literal_of(right))
                            .or_else(|| column_of(right).zip(literal_of(left)));
                        if let Some((column, value)) = pair {
                            found.entry(column).or_default().push(value);
                        }
                    }
                    Expr::Between(between) => {
                        if let Some(column) = column_of(&between.expr) {
                            for bound in [&between.low, &between.high] {
                                if let Some(value) = literal_of(bound) {
                                    found.entry(column.clone()).or_default().push(value);
                                }
                            }
                        }
                    }
                    _ => {}
                }
                Ok(TreeNodeRecursion::Continue)
            })
        });
        Ok(TreeNodeRecursion::Continue)
    });
    filtered.extend(found.keys().cloned());
    Constants {
        bounds: found,
        filtered,
    }
}

/// `database` with `table` empty.
fn with_empty(database: &TestDatabase, table: &ResolvedTableReference) -> TestDatabase {
    let mut out = database.clone();
    out.name = format!("{} with {} empty", database.name, table.table);
    if let Some(data) = out.tables.get_mut(table) {
        data.batch = data.batch.slice(0, 0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn shop() -> SessionContext {
        let ctx = SessionContext::new();
        for sql in [
            "CREATE TABLE customers (id INT, name TEXT, country TEXT)",
            "INSERT INTO customers SELECT v, 'c' || v, CASE WHEN v % 3 = 0 THEN 'FR' ELSE 'DE' END \
             FROM generate_series(1, 300) AS t(v)",
            "CREATE TABLE orders (id INT, customer INT, total DOUBLE, status TEXT)",
            "INSERT INTO orders SELECT v, v % 290 + 1, (v % 97) * 1.5, \
             CASE WHEN v % 5 = 0 THEN 'open' ELSE 'done' END FROM generate_series(1, 2000) AS t(v)",
        ] {
            ctx.sql(sql).await.unwrap().collect().await.unwrap();
        }
        ctx
    }

    const ORIGINAL: &str = "SELECT c.country, count(*) AS n, sum(o.total) AS total \
        FROM orders o JOIN customers c ON o.customer = c.id \
        WHERE o.status = 'open' AND o.total > 21 GROUP BY c.country";

    #[tokio::test]
    async fn equivalent_rewrites_pass_and_wrong_ones_fail() {
        let ctx = shop().await;
        let check = ResultCheck::prepare(&ctx, ORIGINAL, 7).await.unwrap();
        assert!(
            check.undistinguished.is_empty(),
            "{:?}",
            check.undistinguished
        );
        let same = "SELECT c.country, count(*) AS n, sum(o.total) AS total FROM \
            (SELECT * FROM orders WHERE total > 21 AND status = 'open') o \
            JOIN customers c ON c.id = o.customer GROUP BY c.country";
        assert_eq!(check.verdict(same).await, Verdict::Pass);
        // An added condition that holds on the data (no customer has an id of 0 or less) is
        // refuted on a small database made from the query pair, and the counterexample shown.
        let added = "SELECT c.country, count(*) AS n, sum(o.total) AS total \
            FROM orders o JOIN customers c ON o.customer = c.id \
            WHERE o.status = 'open' AND o.total > 21 AND c.id > 0 GROUP BY c.country";
        let verdict = check.verdict(added).await;
        assert!(
            matches!(&verdict, Verdict::Fail(why) if why.starts_with("differs on: ")
                && why.contains("customers(id = 0") || why.contains("customers(id = -1")),
            "{verdict:?}"
        );
        // The case: a condition on a value no data and no sampled database holds (a
        // NULL id refutes it too: NULL <> 987654 is not true).
        let unlikely = "SELECT c.country, count(*) AS n, sum(o.total) AS total \
            FROM orders o JOIN customers c ON o.customer = c.id \
            WHERE o.status = 'open' AND o.total > 21 AND o.id <> 987654 GROUP BY c.country";
        let verdict = check.verdict(unlikely).await;
        assert!(
            matches!(&verdict, Verdict::Fail(why) if why.starts_with("differs on: ")
                && (why.contains("orders(id = 987654") || why.contains("orders(id = NULL"))),
            "{verdict:?}"
        );
        for wrong in [
            // a dropped predicate
            "SELECT c.country, count(*) AS n, sum(o.total) AS total FROM orders o JOIN customers \
             c ON o.customer = c.id WHERE o.status = 'open' GROUP BY c.country",
            // a changed aggregate
            "SELECT c.country, count(DISTINCT o.customer) AS n, sum(o.total) AS total FROM \
             orders o JOIN customers c ON o.customer = c.id WHERE o.status = 'open' AND \
             o.total > 21 GROUP BY c.country",
            // a boundary moved
            "SELECT c.country, count(*) AS n, sum(o.total) AS total FROM orders o JOIN customers \
             c ON o.customer = c.id WHERE o.status = 'open' AND o.total >= 21 GROUP BY c.country",
        ] {
            assert!(
                matches!(check.verdict(wrong).await, Verdict::Fail(_)),
                "{wrong}"
            );
        }
    }

    #[tokio::test]
    async fn a_mutant_the_databases_cannot_tell_apart_makes_it_untested() {
        let ctx = shop().await;
        for sql in [
            "CREATE TABLE notes (id INT NOT NULL, flag TEXT NOT NULL)",
            "INSERT INTO notes SELECT v, CASE WHEN v % 4 = 0 THEN 'x' ELSE 'y' END \
             FROM generate_series(1, 500) AS t(v)",
        ] {
            ctx.sql(sql).await.unwrap().collect().await.unwrap();
        }
        // Every id is positive and none can be NULL, so dropping `id >= 0` changes nothing on
        // any test database made from this data: the check cannot vouch for that conjunct.
        let original = "SELECT id FROM notes WHERE id >= 0 AND flag = 'x'";
        let check = ResultCheck::prepare(&ctx, original, 7).await.unwrap();
        // `id > 0` instead is told apart: a database sets half the ids to the bound, 0.
        assert_eq!(
            check.undistinguished.len(),
            1,
            "{:?}",
            check.undistinguished
        );
        assert!(check.undistinguished[0].contains("id >= 0"));
        let verdict = check
            .verdict("SELECT id FROM notes WHERE flag = 'x' AND id >= 0")
            .await;
        assert!(matches!(verdict, Verdict::Untested(_)), "{verdict:?}");
    }

    #[tokio::test]
    async fn nulls_and_duplicates_catch_what_the_data_hides() {
        let ctx = shop().await;
        // NOT IN and NOT EXISTS agree until a NULL appears; the data has none.
        let original = "SELECT id FROM customers WHERE id NOT IN (SELECT customer FROM orders)";
        let check = ResultCheck::prepare(&ctx, original, 3).await.unwrap();
        let not_exists = "SELECT id FROM customers c WHERE NOT EXISTS \
            (SELECT 1 FROM orders o WHERE o.customer = c.id)";
        assert!(matches!(check.verdict(not_exists).await, Verdict::Fail(_)));
        // UNION and UNION ALL agree until a duplicate appears.
        let original = "SELECT id FROM customers WHERE country = 'FR' UNION ALL \
            SELECT id FROM customers WHERE country = 'DE'";
        let check = ResultCheck::prepare(&ctx, original, 3).await.unwrap();
        let union = "SELECT id FROM customers WHERE country = 'FR' UNION \
            SELECT id FROM customers WHERE country = 'DE'";
        assert!(matches!(check.verdict(union).await, Verdict::Fail(_)));
    }

    #[test]
    fn floats_compare_within_a_tolerance() {
        let a = vec![vec![Cell::Float(0.1 + 0.2)]];
        let b = vec![vec![Cell::Float(0.3)]];
        assert!(compare_rows(&a, &b, true).is_ok());
        let c = vec![vec![Cell::Float(0.3001)]];
        assert!(compare_rows(&a, &c, true).is_err());
    }
}
