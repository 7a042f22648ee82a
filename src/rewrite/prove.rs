//! The proof step: a candidate is `proven` equivalent to the original only when both optimized
//! plans reduce to the same normal form, which makes them equal on every database.
//!
//! The normal form is algebraic, in the style of SPES's SPJ normal form: a run of inner joins,
//! cross joins, filters and projections becomes one *block*, a multiset of members (the tables
//! it joins, each occurrence its own instance `public.t#0`, `public.t#1`) and a set of
//! conjuncts every row satisfies, with each output column an expression over the members'
//! columns (projections are inlined, aliases dropped). Inside a block, columns that a conjunct
//! `a = b` makes equal are replaced by one of them (for exactly compared types: integers,
//! strings, dates, booleans; never floats or decimals, whose equal values can print
//! differently). Expressions are put in one order (operands of commutative operators sorted,
//! comparisons turned one way, AND and OR flattened and sorted).
//!
//! Every other operator (outer, semi and anti joins, aggregates, DISTINCT, windows, UNION ALL,
//! ORDER BY, LIMIT, VALUES) is kept as it is, with its inputs in normal form; its output columns
//! are named after the operator's own text, so two operators are only the same when everything
//! under them is. Self-joins are matched by trying every way to pair the candidate's scans of a
//! table with the original's.
//!
//! The rules are sound (each rewrites a plan into one with the same rows on every database), so
//! equal normal forms prove equivalence, given that DataFusion plans and optimizes both queries
//! correctly. Different normal forms prove nothing: the verdict is then "unproven", never
//! "equivalent". Outside the fragment (subqueries the optimizer could not decorrelate,
//! volatile or LM functions, grouping sets, DISTINCT ON, a scan with a row limit) it is
//! "unproven" too.

use std::collections::{BTreeMap, HashMap};

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, JoinType, NullEquality};
use datafusion::logical_expr::utils::split_conjunction_owned;
use datafusion::logical_expr::{BinaryExpr, Distinct, Expr, LogicalPlan, Operator, Volatility};
use datafusion::prelude::SessionContext;
use sha2::{Digest, Sha256};

/// What the prover found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// Both queries have the same normal form: the same rows on every database.
    Equivalent,
    /// The prover could not decide; the reason.
    Unproven(String),
}

/// The most pairings of self-joined scans tried (6! for one table read six times).
const MAX_PAIRINGS: usize = 720;

/// Proves `candidate` equivalent to `original` in `ctx` (which holds their tables), or says
/// why it could not.
pub async fn prove(ctx: &SessionContext, original: &str, candidate: &str) -> Proof {
    let state = ctx.state();
    let optimized = |sql: &str| {
        let state = state.clone();
        let sql = sql.to_owned();
        async move {
            let plan = state.create_logical_plan(&sql).await?;
            state.optimize(&plan)
        }
    };
    let (original_plan, candidate_plan) =
        match (optimized(original).await, optimized(candidate).await) {
            (Ok(o), Ok(c)) => (o, c),
            (Err(e), _) | (_, Err(e)) => return Proof::Unproven(format!("it does not plan: {e}")),
        };
    let options = &state.config().options().catalog;
    let defaults = (
        options.default_catalog.clone(),
        options.default_schema.clone(),
    );
    match prove_plans(&original_plan, &candidate_plan, &defaults) {
        Ok(proof) => proof,
        Err(why) => Proof::Unproven(why),
    }
}

/// [`prove`] over optimized plans; `defaults` are the catalog and schema that qualify bare
/// table names.
pub fn prove_plans(
    original: &LogicalPlan,
    candidate: &LogicalPlan,
    defaults: &(String, String),
) -> Result<Proof, String> {
    let scans = |plan: &LogicalPlan| {
        let mut counts = BTreeMap::<String, usize>::new();
        let _ = plan.apply(|node| {
            if let LogicalPlan::TableScan(scan) = node {
                *counts.entry(table_name(scan, defaults)).or_default() += 1;
            }
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        });
        counts
    };
    let (original_scans, candidate_scans) = (scans(original), scans(candidate));
    if original_scans != candidate_scans {
        return Ok(Proof::Unproven(format!(
            "they read different tables or read them a different number of times \
             ({candidate_scans:?} against {original_scans:?})"
        )));
    }
    let target = normal_form(original, defaults, &HashMap::new())?;
    let pairings = pairings(&candidate_scans)?;
    let mut last = String::new();
    for numbering in pairings {
        last = normal_form(candidate, defaults, &numbering)?;
        if last == target {
            return Ok(Proof::Equivalent);
        }
    }
    Ok(Proof::Unproven(format!(
        "their normal forms differ: {} against {}",
        shorten(&last),
        shorten(&target)
    )))
}

/// A normal form kept short enough for a report.
fn shorten(text: &str) -> String {
    const MAX: usize = 160;
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// Every way to number a plan's scans of each table: `numbering[table][k]` is the instance the
/// table's k-th scan becomes.
fn pairings(scans: &BTreeMap<String, usize>) -> Result<Vec<HashMap<String, Vec<usize>>>, String> {
    let mut all = vec![HashMap::new()];
    for (table, &count) in scans {
        let orders = permutations(count);
        if all.len() * orders.len() > MAX_PAIRINGS {
            return Err(format!(
                "too many ways to pair self-joined scans (more than {MAX_PAIRINGS})"
            ));
        }
        all = all
            .into_iter()
            .flat_map(|numbering: HashMap<String, Vec<usize>>| {
                orders.iter().map(move |order| {
                    let mut numbering = numbering.clone();
                    numbering.insert(table.clone(), order.clone());
                    numbering
                })
            })
            .collect();
    }
    Ok(all)
}

fn permutations(count: usize) -> Vec<Vec<usize>> {
    if count == 0 {
        return vec![Vec::new()];
    }
    let mut all = Vec::new();
    for shorter in permutations(count - 1) {
        for at in 0..=shorter.len() {
            let mut order = shorter.clone();
            order.insert(at, count - 1);
            all.push(order);
        }
    }
    all
}

fn table_name(scan: &datafusion::logical_expr::TableScan, defaults: &(String, String)) -> String {
    scan.table_name
        .clone()
        .resolve(&defaults.0, &defaults.1)
        .to_string()
}

/// The plan's normal form as text, its scans numbered by `numbering` (in scan order when a
/// table is missing from it).
fn normal_form(
    plan: &LogicalPlan,
    defaults: &(String, String),
    numbering: &HashMap<String, Vec<usize>>,
) -> Result<String, String> {
    let mut normalizer = Normalizer {
        defaults,
        numbering,
        seen: HashMap::new(),
        types: HashMap::new(),
    };
    let shape = normalizer.shape(plan)?;
    Ok(normalizer.finish(&shape, true).0)
}

/// A relation in normal form: the rows of `members` joined, those satisfying every conjunct,
/// and what each output column is over them.
#[derive(Debug, Clone)]
struct Shape {
    members: Vec<String>,
    conjuncts: Vec<Expr>,
    columns: Vec<Expr>,
    /// For a GROUP BY without aggregates (the distinct keys of its input): the input's text
    /// and each output column's key, for the semi-join rule in [`Normalizer::join`].
    distinct_keys: Option<(String, Vec<Expr>)>,
}

impl Shape {
    /// A relation that is one opaque member.
    fn opaque(member: String, columns: Vec<Expr>) -> Shape {
        Shape {
            members: vec![member],
            conjuncts: Vec::new(),
            columns,
            distinct_keys: None,
        }
    }

    /// The input text and keys when this is exactly a set of distinct keys.
    fn only_distinct_keys(&self) -> Option<&(String, Vec<Expr>)> {
        let keys = self.distinct_keys.as_ref()?;
        (self.members.len() == 1 && self.conjuncts.is_empty() && self.columns.len() == keys.1.len())
            .then_some(keys)
    }
}

struct Normalizer<'a> {
    defaults: &'a (String, String),
    numbering: &'a HashMap<String, Vec<usize>>,
    /// How many scans of each table were met so far.
    seen: HashMap<String, usize>,
    /// The type of every instance column, so only exactly compared ones are substituted.
    types: HashMap<String, DataType>,
}

/// A column of the normal form, named by its full text.
fn named(name: String) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

/// A short digest of an operator's text, naming its output columns.
fn digest(text: &str) -> String {
    let hash = Sha256::digest(text.as_bytes());
    hash.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

fn texts(exprs: &[Expr]) -> Vec<String> {
    exprs.iter().map(|e| e.to_string()).collect()
}

impl Normalizer<'_> {
    fn shape(&mut self, plan: &LogicalPlan) -> Result<Shape, String> {
        match plan {
            LogicalPlan::TableScan(scan) => {
                if scan.fetch.is_some() {
                    return Err("a scan with a row limit is outside the normal form".into());
                }
                let table = table_name(scan, self.defaults);
                let seen = self.seen.entry(table.clone()).or_default();
                let occurrence = *seen;
                *seen += 1;
                let number = self
                    .numbering
                    .get(&table)
                    .and_then(|order| order.get(occurrence))
                    .copied()
                    .unwrap_or(occurrence);
                let instance = format!("{table}#{number}");
                for field in scan.source.schema().fields() {
                    self.types.insert(
                        format!("{instance}.{}", field.name()),
                        field.data_type().clone(),
                    );
                }
                let column = |name: &str| named(format!("{instance}.{name}"));
                let columns = scan
                    .projected_schema
                    .fields()
                    .iter()
                    .map(|f| column(f.name()))
                    .collect();
                let mut conjuncts = Vec::new();
                for filter in &scan.filters {
                    check_fragment(filter)?;
                    let filter = filter
                        .clone()
                        .transform(|e| {
                            Ok(match e {
                                Expr::Column(c) => Transformed::yes(column(&c.name)),
                                other => Transformed::no(other),
                            })
                        })
                        .map_err(|e| e.to_string())?
                        .data;
                    conjuncts.extend(split_conjunction_owned(filter));
                }
                Ok(Shape {
                    members: vec![instance],
                    conjuncts,
                    columns,
                    distinct_keys: None,
                })
            }
            LogicalPlan::Projection(projection) => {
                let input = self.shape(&projection.input)?;
                let columns = projection
                    .expr
                    .iter()
                    .map(|e| substitute(e, projection.input.schema(), &input.columns))
                    .collect::<Result<_, _>>()?;
                // Distinct keys stay distinct keys only through a projection that keeps
                // every column as it is.
                let distinct_keys = match columns == input.columns {
                    true => input.distinct_keys.clone(),
                    false => None,
                };
                Ok(Shape {
                    columns,
                    distinct_keys,
                    ..input
                })
            }
            LogicalPlan::Filter(filter) => {
                let mut input = self.shape(&filter.input)?;
                let predicate =
                    substitute(&filter.predicate, filter.input.schema(), &input.columns)?;
                input.conjuncts.extend(split_conjunction_owned(predicate));
                Ok(input)
            }
            LogicalPlan::SubqueryAlias(alias) => self.shape(&alias.input),
            LogicalPlan::Join(join) => self.join(join),
            LogicalPlan::Aggregate(aggregate) => {
                let input = self.shape(&aggregate.input)?;
                let (text, map) = self.finish(&input, false);
                let over = |e: &Expr| -> Result<Expr, String> {
                    if matches!(e, Expr::GroupingSet(_)) {
                        return Err("grouping sets are outside the normal form".into());
                    }
                    over_input(e, aggregate.input.schema(), &input.columns, &map)
                };
                let groups = aggregate
                    .group_expr
                    .iter()
                    .map(&over)
                    .collect::<Result<Vec<_>, _>>()?;
                let aggregates = aggregate
                    .aggr_expr
                    .iter()
                    .map(&over)
                    .collect::<Result<Vec<_>, _>>()?;
                let (mut group_texts, mut aggregate_texts) = (texts(&groups), texts(&aggregates));
                group_texts.sort();
                group_texts.dedup();
                aggregate_texts.sort();
                let member = format!(
                    "AGGREGATE BY [{}] COMPUTE [{}] OF ({text})",
                    group_texts.join(", "),
                    aggregate_texts.join(", ")
                );
                let id = digest(&member);
                let columns = groups
                    .iter()
                    .chain(&aggregates)
                    .map(|e| named(format!("{id}:{e}")))
                    .collect();
                let mut shape = Shape::opaque(member, columns);
                if aggregates.is_empty() && !groups.is_empty() {
                    shape.distinct_keys = Some((text, groups));
                }
                Ok(shape)
            }
            LogicalPlan::Distinct(Distinct::All(input)) => {
                let input = self.shape(input)?;
                let (text, map) = self.finish(&input, true);
                let columns = mapped(input.columns, &map);
                Ok(Shape::opaque(format!("DISTINCT ({text})"), columns))
            }
            LogicalPlan::Sort(sort) => {
                let input = self.shape(&sort.input)?;
                let (text, map) = self.finish(&input, true);
                let keys = sort
                    .expr
                    .iter()
                    .map(|key| {
                        let e = over_input(&key.expr, sort.input.schema(), &input.columns, &map)?;
                        Ok(format!(
                            "{} {} NULLS {}",
                            e,
                            if key.asc { "ASC" } else { "DESC" },
                            if key.nulls_first { "FIRST" } else { "LAST" }
                        ))
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                let columns = mapped(input.columns, &map);
                Ok(Shape::opaque(
                    format!(
                        "SORT BY [{}] FETCH {:?} ({text})",
                        keys.join(", "),
                        sort.fetch
                    ),
                    columns,
                ))
            }
            LogicalPlan::Limit(limit) => {
                let input = self.shape(&limit.input)?;
                let (text, map) = self.finish(&input, true);
                let show =
                    |e: &Option<Box<Expr>>| e.as_ref().map_or(String::new(), |e| e.to_string());
                let columns = mapped(input.columns, &map);
                Ok(Shape::opaque(
                    format!(
                        "LIMIT {} OFFSET {} ({text})",
                        show(&limit.fetch),
                        show(&limit.skip)
                    ),
                    columns,
                ))
            }
            LogicalPlan::Union(union) => {
                let mut parts = Vec::new();
                for input in &union.inputs {
                    let shape = self.shape(input)?;
                    parts.push(self.finish(&shape, true).0);
                }
                // UNION ALL is a bag union: its inputs' order does not matter.
                parts.sort();
                let member = format!("UNION ALL ({})", parts.join(") | ("));
                let id = digest(&member);
                let columns = numbered(&id, union.schema.fields().len());
                Ok(Shape::opaque(member, columns))
            }
            LogicalPlan::Window(window) => {
                let input = self.shape(&window.input)?;
                let (text, map) = self.finish(&input, false);
                let functions = window
                    .window_expr
                    .iter()
                    .map(|e| over_input(e, window.input.schema(), &input.columns, &map))
                    .collect::<Result<Vec<_>, String>>()?;
                let mut function_texts = texts(&functions);
                function_texts.sort();
                let member = format!("WINDOW [{}] OVER ({text})", function_texts.join(", "));
                let id = digest(&member);
                let mut columns: Vec<Expr> = mapped(input.columns, &map);
                columns.extend(functions.iter().map(|e| named(format!("{id}:{e}"))));
                Ok(Shape::opaque(member, columns))
            }
            LogicalPlan::EmptyRelation(empty) => {
                let member = format!("EMPTY (one row: {})", empty.produce_one_row);
                let id = digest(&member);
                let columns = numbered(&id, empty.schema.fields().len());
                Ok(Shape::opaque(member, columns))
            }
            LogicalPlan::Values(values) => {
                for row in &values.values {
                    row.iter().try_for_each(check_fragment)?;
                }
                let rows: Vec<String> = values
                    .values
                    .iter()
                    .map(|row| format!("({})", texts(row).join(", ")))
                    .collect();
                let member = format!("VALUES {}", rows.join(", "));
                let id = digest(&member);
                let columns = numbered(&id, values.schema.fields().len());
                Ok(Shape::opaque(member, columns))
            }
            other => Err(format!(
                "{} is outside the normal form",
                other
                    .display()
                    .to_string()
                    .split(':')
                    .next()
                    .unwrap_or("an operator")
            )),
        }
    }

    fn join(&mut self, join: &datafusion::logical_expr::Join) -> Result<Shape, String> {
        let left = self.shape(&join.left)?;
        let right = self.shape(&join.right)?;
        let (left_schema, right_schema) = (join.left.schema(), join.right.schema());
        let both = |e: &Expr| -> Result<Expr, String> {
            check_fragment(e)?;
            let e = e
                .clone()
                .transform(|e| {
                    Ok(match e {
                        Expr::Column(c) => {
                            if let Some(i) = left_schema.maybe_index_of_column(&c) {
                                Transformed::yes(left.columns[i].clone())
                            } else if let Some(i) = right_schema.maybe_index_of_column(&c) {
                                Transformed::yes(right.columns[i].clone())
                            } else {
                                return Err(datafusion::error::DataFusionError::Plan(format!(
                                    "no input has column {c}"
                                )));
                            }
                        }
                        Expr::Alias(alias) => Transformed::yes(*alias.expr),
                        other => Transformed::no(other),
                    })
                })
                .map_err(|e| e.to_string())?;
            Ok(e.data)
        };
        let mut condition = Vec::new();
        for (l, r) in &join.on {
            let (l, r) = (both(l)?, both(r)?);
            condition.push(match join.null_equality {
                NullEquality::NullEqualsNothing => l.eq(r),
                NullEquality::NullEqualsNull => Expr::BinaryExpr(BinaryExpr::new(
                    Box::new(l),
                    Operator::IsNotDistinctFrom,
                    Box::new(r),
                )),
            });
        }
        if let Some(filter) = &join.filter {
            condition.extend(split_conjunction_owned(both(filter)?));
        }
        if join.join_type == JoinType::Inner && join.filter.is_none() {
            if let Some(semi) = self.semi_join_on_distinct_keys(join, &left, &right, &both)? {
                return Ok(semi);
            }
        }
        if join.join_type == JoinType::Inner {
            let mut members = left.members;
            members.extend(right.members);
            let mut conjuncts = left.conjuncts;
            conjuncts.extend(right.conjuncts);
            conjuncts.extend(condition);
            let mut columns = left.columns;
            columns.extend(right.columns);
            return Ok(Shape {
                members,
                conjuncts,
                columns,
                distinct_keys: None,
            });
        }
        let (mut left_text, mut left_map) = self.finish(&left, false);
        let (mut right_text, mut right_map) = self.finish(&right, false);
        // A semi or anti join only asks whether a matching row exists, which DISTINCT on the
        // side it looks into does not change: that side is the distinct keys' input, its
        // columns the keys.
        let looked_into = match join.join_type {
            JoinType::LeftSemi | JoinType::LeftAnti => {
                Some((&right, &mut right_text, &mut right_map))
            }
            JoinType::RightSemi | JoinType::RightAnti => {
                Some((&left, &mut left_text, &mut left_map))
            }
            _ => None,
        };
        if let Some((side, text, map)) = looked_into {
            if let Some((input_text, keys)) = side.only_distinct_keys() {
                *text = input_text.clone();
                *map = side
                    .columns
                    .iter()
                    .zip(keys)
                    .filter_map(|(column, key)| match column {
                        Expr::Column(c) => Some((c.name.clone(), key.clone())),
                        _ => None,
                    })
                    .collect();
            }
        }
        let mapped = |e: Expr| canonical(replace(replace(e, &left_map), &right_map));
        let mut condition: Vec<String> = condition
            .into_iter()
            .map(|e| mapped(e).to_string())
            .collect();
        condition.sort();
        condition.dedup();
        // A RIGHT join is the LEFT join with its sides swapped (the output columns keep their
        // order: they are listed below, not in the text).
        let (kind, first, second) = match join.join_type {
            JoinType::Right => (JoinType::Left, &right_text, &left_text),
            JoinType::RightSemi => (JoinType::LeftSemi, &right_text, &left_text),
            JoinType::RightAnti => (JoinType::LeftAnti, &right_text, &left_text),
            other => (other, &left_text, &right_text),
        };
        let member = format!(
            "{kind} JOIN{} ({first}) ({second}) ON [{}]",
            if join.null_aware { " NULL-AWARE" } else { "" },
            condition.join(" AND ")
        );
        let id = digest(&member);
        // A side the join pads with NULLs: a computed column of it is NULL on padded rows, not
        // its expression over NULLs, so it is named rather than inlined above the join.
        let padded = |columns: Vec<Expr>| -> Vec<Expr> {
            columns
                .into_iter()
                .map(|e| match mapped(e) {
                    column @ Expr::Column(_) => column,
                    computed => named(format!("{id}:{computed}")),
                })
                .collect()
        };
        let kept = |columns: Vec<Expr>| -> Vec<Expr> { columns.into_iter().map(mapped).collect() };
        let columns = match join.join_type {
            JoinType::Left => [kept(left.columns), padded(right.columns)].concat(),
            JoinType::Right => [padded(left.columns), kept(right.columns)].concat(),
            JoinType::Full => [padded(left.columns), padded(right.columns)].concat(),
            JoinType::LeftSemi | JoinType::LeftAnti => kept(left.columns),
            JoinType::RightSemi | JoinType::RightAnti => kept(right.columns),
            other => return Err(format!("a {other} join is outside the normal form")),
        };
        Ok(Shape::opaque(member, columns))
    }

    /// An inner join with the distinct keys of a relation, every key equal (`=`) to an
    /// expression of the other side, is the semi join of the other side with that relation:
    /// each row matches at most one key, so it is kept once or dropped, and the keys' columns
    /// equal the expressions they are joined with. (`JOIN (SELECT DISTINCT k FROM t) d ON
    /// d.k = o.k` is `WHERE EXISTS (SELECT 1 FROM t WHERE t.k = o.k)`.)
    fn semi_join_on_distinct_keys(
        &self,
        join: &datafusion::logical_expr::Join,
        left: &Shape,
        right: &Shape,
        both: &dyn Fn(&Expr) -> Result<Expr, String>,
    ) -> Result<Option<Shape>, String> {
        if join.null_equality != NullEquality::NullEqualsNothing {
            return Ok(None);
        }
        let pairs: Vec<(Expr, Expr)> = join
            .on
            .iter()
            .map(|(l, r)| Ok((both(l)?, both(r)?)))
            .collect::<Result<_, String>>()?;
        for (keys_side, other, flipped) in [(right, left, false), (left, right, true)] {
            let Some((input_text, keys)) = keys_side.only_distinct_keys() else {
                continue;
            };
            // Which expression of the other side each key column is joined with.
            let mut joined: Vec<Option<Expr>> = vec![None; keys.len()];
            let mut complete = pairs.len() == keys.len();
            for (l, r) in &pairs {
                let (mine, theirs) = if flipped { (l, r) } else { (r, l) };
                match keys_side.columns.iter().position(|c| c == mine) {
                    Some(at) if joined[at].is_none() => joined[at] = Some(theirs.clone()),
                    _ => complete = false,
                }
            }
            if !complete || joined.iter().any(Option::is_none) {
                continue;
            }
            let joined: Vec<Expr> = joined.into_iter().flatten().collect();
            let (other_text, other_map) = self.finish(other, false);
            let mut condition: Vec<String> = joined
                .iter()
                .zip(keys)
                .map(|(theirs, key)| {
                    canonical(replace(theirs.clone(), &other_map).eq(key.clone())).to_string()
                })
                .collect();
            condition.sort();
            condition.dedup();
            let member = format!(
                "{} JOIN ({other_text}) ({input_text}) ON [{}]",
                JoinType::LeftSemi,
                condition.join(" AND ")
            );
            let kept = mapped(other.columns.clone(), &other_map);
            let keys_columns = mapped(joined, &other_map);
            let columns = if flipped {
                [keys_columns, kept].concat()
            } else {
                [kept, keys_columns].concat()
            };
            return Ok(Some(Shape::opaque(member, columns)));
        }
        Ok(None)
    }

    /// The shape's text (its members, conjuncts and, when asked, columns, all in one order),
    /// and the substitution it made: columns that a conjunct `a = b` makes equal, by one of
    /// them.
    fn finish(&self, shape: &Shape, with_columns: bool) -> (String, HashMap<String, Expr>) {
        let mut classes = UnionFind::default();
        for conjunct in &shape.conjuncts {
            if let Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Eq,
                right,
            }) = conjunct
            {
                if let (Expr::Column(a), Expr::Column(b)) = (left.as_ref(), right.as_ref()) {
                    let (ta, tb) = (self.types.get(&a.name), self.types.get(&b.name));
                    if ta.is_some() && ta == tb && ta.is_some_and(exactly_compared) {
                        classes.union(&a.name, &b.name);
                    }
                }
            }
        }
        let map: HashMap<String, Expr> = classes
            .members()
            .into_iter()
            .filter_map(|name| {
                let root = classes.find(&name);
                (root != name).then(|| (name, named(root)))
            })
            .collect();
        let mut conjuncts: Vec<String> = shape
            .conjuncts
            .iter()
            .flat_map(|c| split_conjunction_owned(canonical(replace(c.clone(), &map))))
            .map(|c| match c {
                // `a = a` after the substitution: `a` is not NULL.
                Expr::BinaryExpr(BinaryExpr {
                    left,
                    op: Operator::Eq,
                    right,
                }) if left == right => Expr::IsNotNull(left).to_string(),
                other => other.to_string(),
            })
            .collect();
        conjuncts.sort();
        conjuncts.dedup();
        let mut members = shape.members.clone();
        members.sort();
        let mut text = format!(
            "FROM [{}] WHERE [{}]",
            members.join(" × "),
            conjuncts.join(" AND ")
        );
        if with_columns {
            let columns: Vec<String> = shape
                .columns
                .iter()
                .map(|c| canonical(replace(c.clone(), &map)).to_string())
                .collect();
            text.push_str(&format!(" SELECT [{}]", columns.join(", ")));
        }
        (text, map)
    }
}

/// Types whose equal values are the same value (so one can stand for the other anywhere).
fn exactly_compared(data_type: &DataType) -> bool {
    data_type.is_integer()
        || matches!(
            data_type,
            DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Utf8View
                | DataType::Boolean
                | DataType::Date32
                | DataType::Date64
        )
}

/// Columns of a shape as its text names them (`map` is what [`Normalizer::finish`] made).
fn mapped(columns: Vec<Expr>, map: &HashMap<String, Expr>) -> Vec<Expr> {
    columns
        .into_iter()
        .map(|e| canonical(replace(e, map)))
        .collect()
}

/// `expr` of an operator over its input, in the input's normal form as its text names it.
fn over_input(
    expr: &Expr,
    schema: &DFSchema,
    columns: &[Expr],
    map: &HashMap<String, Expr>,
) -> Result<Expr, String> {
    Ok(canonical(replace(substitute(expr, schema, columns)?, map)))
}

/// `count` output columns of an operator whose text digests to `id`, named by position.
fn numbered(id: &str, count: usize) -> Vec<Expr> {
    (0..count).map(|i| named(format!("{id}:#{i}"))).collect()
}

/// `expr` over a plan's input written over the input's normal-form columns.
fn substitute(expr: &Expr, schema: &DFSchema, columns: &[Expr]) -> Result<Expr, String> {
    check_fragment(expr)?;
    expr.clone()
        .transform(|e| {
            Ok(match e {
                Expr::Column(c) => {
                    let index = schema.index_of_column(&c)?;
                    Transformed::yes(columns[index].clone())
                }
                Expr::Alias(alias) => Transformed::yes(*alias.expr),
                other => Transformed::no(other),
            })
        })
        .map(|t| t.data)
        .map_err(|e| e.to_string())
}

/// Refuses what the normal form cannot describe: subqueries left in an expression, parameters,
/// volatile and LM functions (two calls may answer differently).
fn check_fragment(expr: &Expr) -> Result<(), String> {
    let mut problem = None;
    let _ = expr.apply(|e| {
        problem = match e {
            Expr::ScalarSubquery(_)
            | Expr::Exists(_)
            | Expr::InSubquery(_)
            | Expr::SetComparison(_) => Some("a subquery the optimizer kept".to_owned()),
            Expr::OuterReferenceColumn(..) => Some("a correlated reference".to_owned()),
            Expr::Placeholder(_) => Some("a parameter".to_owned()),
            Expr::ScalarFunction(call)
                if call.func.signature().volatility == Volatility::Volatile
                    || call.func.as_async().is_some() =>
            {
                Some(format!(
                    "{}(), which may answer differently each call",
                    call.func.name()
                ))
            }
            _ => None,
        };
        Ok(match problem {
            Some(_) => datafusion::common::tree_node::TreeNodeRecursion::Stop,
            None => datafusion::common::tree_node::TreeNodeRecursion::Continue,
        })
    });
    match problem {
        Some(what) => Err(format!("{what} is outside the normal form")),
        None => Ok(()),
    }
}

/// Replaces columns by `map`'s expressions.
fn replace(expr: Expr, map: &HashMap<String, Expr>) -> Expr {
    if map.is_empty() {
        return expr;
    }
    expr.transform(|e| {
        Ok(match e {
            Expr::Column(c) => match map.get(&c.name) {
                Some(to) => Transformed::yes(to.clone()),
                None => Transformed::no(Expr::Column(c)),
            },
            other => Transformed::no(other),
        })
    })
    .map(|t| t.data)
    .expect("replacing columns cannot fail")
}

/// `expr` in one order: AND and OR flattened with sorted, distinct operands; the operands of
/// `=`, `<>`, `+`, `*` and IS [NOT] DISTINCT FROM sorted; `<`, `<=`, `>`, `>=` turned so the
/// smaller text is on the left; aliases dropped.
fn canonical(expr: Expr) -> Expr {
    expr.transform_up(|e| {
        Ok(match e {
            Expr::Alias(alias) => Transformed::yes(*alias.expr),
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                Transformed::yes(canonical_binary(*left, op, *right))
            }
            other => Transformed::no(other),
        })
    })
    .map(|t| t.data)
    .expect("ordering an expression cannot fail")
}

fn canonical_binary(left: Expr, op: Operator, right: Expr) -> Expr {
    let binary = |l: Expr, op: Operator, r: Expr| {
        Expr::BinaryExpr(BinaryExpr::new(Box::new(l), op, Box::new(r)))
    };
    match op {
        Operator::And | Operator::Or => {
            let mut operands = Vec::new();
            let mut flatten = |e: Expr| flatten_into(e, op, &mut operands);
            flatten(left);
            flatten(right);
            operands.sort_by_key(|e| e.to_string());
            operands.dedup_by_key(|e| e.to_string());
            let mut operands = operands.into_iter();
            let first = operands.next().expect("two operands at least");
            operands.fold(first, |acc, e| binary(acc, op, e))
        }
        Operator::Eq
        | Operator::NotEq
        | Operator::Plus
        | Operator::Multiply
        | Operator::IsDistinctFrom
        | Operator::IsNotDistinctFrom => {
            if left.to_string() > right.to_string() {
                binary(right, op, left)
            } else {
                binary(left, op, right)
            }
        }
        Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq => {
            match (left.to_string() > right.to_string(), op.swap()) {
                (true, Some(swapped)) => binary(right, swapped, left),
                _ => binary(left, op, right),
            }
        }
        _ => binary(left, op, right),
    }
}

fn flatten_into(expr: Expr, op: Operator, into: &mut Vec<Expr>) {
    match expr {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: inner,
            right,
        }) if inner == op => {
            flatten_into(*left, op, into);
            flatten_into(*right, op, into);
        }
        other => into.push(other),
    }
}

/// Classes of equal names; each class's representative is its smallest name.
#[derive(Default)]
pub(super) struct UnionFind {
    parent: BTreeMap<String, String>,
}

impl UnionFind {
    pub(super) fn find(&self, name: &str) -> String {
        let mut at = name.to_owned();
        while let Some(up) = self.parent.get(&at) {
            if *up == at {
                break;
            }
            at = up.clone();
        }
        at
    }

    pub(super) fn union(&mut self, a: &str, b: &str) {
        for name in [a, b] {
            self.parent
                .entry(name.to_owned())
                .or_insert_with(|| name.to_owned());
        }
        let (ra, rb) = (self.find(a), self.find(b));
        let (root, child) = if ra <= rb { (ra, rb) } else { (rb, ra) };
        self.parent.insert(child, root);
    }

    pub(super) fn members(&self) -> Vec<String> {
        self.parent.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn context() -> SessionContext {
        let ctx = SessionContext::new();
        for sql in [
            "CREATE TABLE orders (id INT NOT NULL, customer INT, total DOUBLE, status TEXT) AS VALUES \
             (1, 10, 5.0, 'open'), (2, 11, 7.5, 'done')",
            "CREATE TABLE customers (id INT NOT NULL, name TEXT, region INT) AS VALUES (10, 'a', 1)",
            "CREATE TABLE regions (id INT NOT NULL, name TEXT) AS VALUES (1, 'north')",
        ] {
            ctx.sql(sql).await.unwrap();
        }
        ctx
    }

    async fn proven(ctx: &SessionContext, original: &str, candidate: &str) -> Proof {
        prove(ctx, original, candidate).await
    }

    #[tokio::test]
    async fn equivalent_forms_are_proven() {
        let ctx = context().await;
        let cases = [
            // Join order, ON against WHERE, comma joins, aliases.
            (
                "SELECT o.id, c.name FROM orders o JOIN customers c ON o.customer = c.id \
                 JOIN regions r ON c.region = r.id WHERE r.name = 'north'",
                "SELECT x.id, y.name FROM regions z, customers y, orders x \
                 WHERE z.name = 'north' AND y.region = z.id AND x.customer = y.id",
            ),
            // A predicate on one side of an equality moved to the other.
            (
                "SELECT o.id FROM orders o JOIN customers c ON o.customer = c.id WHERE c.id > 10",
                "SELECT o.id FROM orders o JOIN customers c ON o.customer = c.id \
                 WHERE o.customer > 10",
            ),
            // A join with the distinct matching keys is the semi join (EXISTS).
            (
                "SELECT o.id FROM orders o WHERE EXISTS \
                 (SELECT 1 FROM customers c WHERE c.id = o.customer AND c.region = 1)",
                "SELECT o.id FROM orders o JOIN (SELECT DISTINCT id FROM customers \
                 WHERE region = 1) k ON k.id = o.customer",
            ),
            // A self-join with its two sides swapped.
            (
                "SELECT a.id, b.id FROM orders a JOIN orders b ON a.customer = b.customer \
                 WHERE a.total > b.total",
                "SELECT p.id, q.id FROM orders q JOIN orders p ON q.customer = p.customer \
                 WHERE q.total < p.total",
            ),
            // A derived table folded into the query.
            (
                "SELECT customer, sum(total) FROM orders WHERE status = 'open' GROUP BY customer",
                "SELECT s.customer, sum(s.total) FROM (SELECT customer, total, status FROM orders) s \
                 WHERE 'open' = s.status OR false GROUP BY s.customer",
            ),
        ];
        for (original, candidate) in cases {
            assert_eq!(
                proven(&ctx, original, candidate).await,
                Proof::Equivalent,
                "{candidate}"
            );
        }
    }

    #[tokio::test]
    async fn different_queries_are_never_proven() {
        let ctx = context().await;
        let original = "SELECT o.id, c.name FROM orders o LEFT JOIN customers c \
                        ON o.customer = c.id WHERE o.total > 5";
        let wrong = [
            // LEFT → INNER.
            "SELECT o.id, c.name FROM orders o JOIN customers c ON o.customer = c.id \
             WHERE o.total > 5",
            // > → >=.
            "SELECT o.id, c.name FROM orders o LEFT JOIN customers c ON o.customer = c.id \
             WHERE o.total >= 5",
            // The predicate moved into the ON of an outer join.
            "SELECT o.id, c.name FROM orders o LEFT JOIN customers c \
             ON o.customer = c.id AND o.total > 5",
            // A column from the other table.
            "SELECT o.id, c.name FROM orders o LEFT JOIN customers c ON o.customer = c.region \
             WHERE o.total > 5",
            // A DISTINCT added.
            "SELECT DISTINCT o.id, c.name FROM orders o LEFT JOIN customers c \
             ON o.customer = c.id WHERE o.total > 5",
            // A harmless-looking extra condition on a value no data holds.
            "SELECT o.id, c.name FROM orders o LEFT JOIN customers c ON o.customer = c.id \
             WHERE o.total > 5 AND o.id <> 987654",
        ];
        for candidate in wrong {
            assert!(
                matches!(proven(&ctx, original, candidate).await, Proof::Unproven(_)),
                "{candidate}"
            );
        }
        // Keys that are not distinct (a GROUP BY with an extra column) are not a semi join.
        let exists = "SELECT o.id FROM orders o WHERE EXISTS \
                      (SELECT 1 FROM customers c WHERE c.id = o.customer)";
        let not_distinct = "SELECT o.id FROM orders o JOIN (SELECT id, name FROM customers \
                            GROUP BY id, name) k ON k.id = o.customer";
        assert!(matches!(
            proven(&ctx, exists, not_distinct).await,
            Proof::Unproven(_)
        ));
        // A computed column of a NULL-padded side is NULL, not its expression over NULLs.
        let padded = "SELECT o.id, x.one FROM orders o LEFT JOIN \
                      (SELECT id, coalesce(name, 'none') AS one FROM customers) x ON o.customer = x.id";
        let inlined = "SELECT o.id, coalesce(c.name, 'none') AS one FROM orders o \
                       LEFT JOIN customers c ON o.customer = c.id";
        assert!(matches!(
            proven(&ctx, padded, inlined).await,
            Proof::Unproven(_)
        ));
        // The NOT EXISTS query against a maximum that differs on NULLs.
        let not_exists = "SELECT a.id FROM orders a WHERE NOT EXISTS \
                          (SELECT 1 FROM orders b WHERE b.customer > a.customer)";
        let by_max = "SELECT a.id FROM orders a WHERE a.customer >= \
                      (SELECT max(b.customer) FROM orders b)";
        assert!(matches!(
            proven(&ctx, not_exists, by_max).await,
            Proof::Unproven(_)
        ));
        // Volatile functions are never proven, even written the same.
        let random = "SELECT id FROM orders WHERE random() < 0.5";
        assert!(matches!(
            proven(&ctx, random, random).await,
            Proof::Unproven(_)
        ));
    }
}
