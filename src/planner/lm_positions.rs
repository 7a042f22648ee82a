//! Logical optimizer rule: LM calls in positions DataFusion's async path cannot run move into a
//! projection below, where it can.
//!
//! DataFusion evaluates an async function (every LM function is one) only at the top of a
//! projection or filter expression: it plans an `AsyncFuncExec` that computes the call for a
//! whole batch, then refers to its result. Anywhere else (`ORDER BY llm_score(...)`,
//! `GROUP BY llm_classify(...)`, an aggregate or window argument, `llm_map(llm_map(...))`, a
//! join condition) the call would reach a synchronous path and fail with an internal error.
//! This rule rewrites such plans:
//!
//! - in a sort, aggregate, window, or as an argument of another LM call: the call is computed
//!   by a projection below the node (`input.*, call AS __semsql_lm_N`), the node refers to the
//!   column, and the node's output keeps its names (an alias, or a projection above);
//! - in the ON clause of an inner join: the LM conjuncts become a filter above the join, so the
//!   model sees the candidate pairs in batches rather than being called pair by pair;
//! - where neither works (an outer join's ON, an equi-join key, other nodes): a plan error that
//!   names a rewrite that works.
//!
//! The rule runs last in every optimizer pass, so filters that `PushDownFilter` pushes back
//! into a join are lifted out again before planning.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{plan_err, Column, DFSchemaRef};
use datafusion::error::Result;
use datafusion::logical_expr::utils::{conjunction, split_conjunction_owned};
use datafusion::logical_expr::{Expr, Filter, JoinType, LogicalPlan, Projection, ScalarUDF};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

/// Prefix of the columns the rule adds; never visible in a query's result.
const LM_COLUMN_PREFIX: &str = "__semsql_lm_";

#[derive(Debug, Default)]
pub struct LmCallPositions {
    /// The LM aggregates' reducers by aggregate name (`llm_agg` → `llm_agg_reduce`, as
    /// registered: they hold the runtime); an LM aggregate without one is refused.
    reducers: Vec<(&'static str, Arc<ScalarUDF>)>,
    /// `embed`, as registered, for `semsql.join_candidates`.
    embed: Option<Arc<ScalarUDF>>,
}

impl LmCallPositions {
    pub fn new(
        reducers: Vec<(&'static str, Arc<ScalarUDF>)>,
        embed: Option<Arc<ScalarUDF>>,
    ) -> Self {
        Self { reducers, embed }
    }

    fn reducer_of(&self, expr: &Expr) -> Option<&Arc<ScalarUDF>> {
        match expr {
            Expr::Alias(alias) => self.reducer_of(&alias.expr),
            Expr::AggregateFunction(function) => self
                .reducers
                .iter()
                .find(|(name, _)| *name == function.func.name())
                .map(|(_, reducer)| reducer),
            _ => None,
        }
    }
}

impl OptimizerRule for LmCallPositions {
    fn name(&self) -> &str {
        "lm_call_positions"
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let per_left_row = semsql_udfs::lm::LmSettings::of(&config.options()).join_candidates;
        let candidates = self
            .embed
            .as_ref()
            .filter(|_| per_left_row > 0)
            .map(|embed| Candidates {
                per_left_row,
                embed,
            });
        plan.transform_up(|node| match &node {
            LogicalPlan::Join(_) => lift_join_condition(node, candidates),
            LogicalPlan::Aggregate(aggregate)
                if aggregate
                    .aggr_expr
                    .iter()
                    .any(|expr| self.reducer_of(expr).is_some()) =>
            {
                self.split_list_aggregates(node).map(Transformed::yes)
            }
            LogicalPlan::Aggregate(aggregate) => {
                if let Some(name) = aggregate.aggr_expr.iter().find_map(lm_aggregate_name) {
                    return plan_err!("{name} needs an LM runtime");
                }
                rewrite_node(node)
            }
            _ => rewrite_node(node),
        })
    }
}

/// Whether an expression is a call of an async (LM) function that runs in the LM node (not
/// one computed before the query, see `constant_calls`).
fn is_async_call(expr: &Expr) -> bool {
    matches!(expr, Expr::ScalarFunction(call) if call.func.as_async().is_some())
        && !super::constant_calls::is_constant_lm_call(expr)
}

fn contains_async_call(expr: &Expr) -> bool {
    expr.exists(|e| Ok(is_async_call(e))).unwrap_or(false)
}

/// The outermost async calls in `expr`, each once.
fn outermost_async_calls(expr: &Expr, calls: &mut Vec<Expr>) {
    let _ = expr.apply(|e| {
        if is_async_call(e) {
            if !calls.contains(e) {
                calls.push(e.clone());
            }
            return Ok(TreeNodeRecursion::Jump);
        }
        Ok(TreeNodeRecursion::Continue)
    });
}

/// The async calls in `expr` that DataFusion cannot run where they are: those inside the
/// arguments of another async call (for projections and filters, whose outermost calls run).
fn nested_async_calls(expr: &Expr, calls: &mut Vec<Expr>) {
    let mut outer = Vec::new();
    outermost_async_calls(expr, &mut outer);
    for call in &outer {
        if let Expr::ScalarFunction(function) = call {
            for arg in &function.args {
                outermost_async_calls(arg, calls);
            }
        }
    }
}

fn function_name(call: &Expr) -> String {
    match call {
        Expr::ScalarFunction(function) => function.func.name().to_owned(),
        _ => "an LM function".to_owned(),
    }
}

fn rewrite_node(plan: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
    let mut calls = Vec::new();
    match &plan {
        LogicalPlan::Projection(projection) => {
            projection
                .expr
                .iter()
                .for_each(|e| nested_async_calls(e, &mut calls));
        }
        LogicalPlan::Filter(filter) => nested_async_calls(&filter.predicate, &mut calls),
        LogicalPlan::Sort(_) | LogicalPlan::Aggregate(_) | LogicalPlan::Window(_) => {
            plan.expressions()
                .iter()
                .for_each(|e| outermost_async_calls(e, &mut calls));
        }
        LogicalPlan::Join(_) => return lift_join_condition(plan, None),
        other => {
            let mut found = Vec::new();
            other
                .expressions()
                .iter()
                .for_each(|e| outermost_async_calls(e, &mut found));
            if let Some(call) = found.first() {
                return plan_err!(
                    "{} cannot run in this part of the query ({}); compute it in the SELECT list \
                     of a subquery and use the subquery's column here",
                    function_name(call),
                    other.display()
                );
            }
            return Ok(Transformed::no(plan));
        }
    }
    if calls.is_empty() {
        return Ok(Transformed::no(plan));
    }
    compute_below(plan, calls).map(Transformed::yes)
}

/// Computes `calls` in a projection below `plan` (which has one input) and makes `plan` refer
/// to their columns, keeping its output schema.
fn compute_below(plan: LogicalPlan, calls: Vec<Expr>) -> Result<LogicalPlan> {
    let input = plan.inputs()[0].clone();
    let original_schema = Arc::clone(plan.schema());
    let taken: Vec<String> = input
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut next = 0;
    let mut named = Vec::with_capacity(calls.len());
    for call in calls {
        let name = loop {
            let candidate = format!("{LM_COLUMN_PREFIX}{next}");
            next += 1;
            if !taken.contains(&candidate) {
                break candidate;
            }
        };
        named.push((call, name));
    }
    let mut below: Vec<Expr> = columns_of(input.schema());
    below.extend(
        named
            .iter()
            .map(|(call, name)| call.clone().alias(name.as_str())),
    );
    // The projection below may hold a call whose own arguments call a model: the rule visits it
    // too, so nesting of any depth unwinds one level per projection.
    let below = rewrite_node(LogicalPlan::Projection(Projection::try_new(
        below,
        Arc::new(input),
    )?))?
    .data;

    let replace = |expr: Expr| -> Result<Expr> {
        expr.transform_down(|e| match named.iter().find(|(call, _)| *call == e) {
            Some((_, name)) => Ok(Transformed::new(
                Expr::Column(Column::new_unqualified(name.as_str())),
                true,
                TreeNodeRecursion::Jump,
            )),
            None => Ok(Transformed::no(e)),
        })
        .map(|t| t.data)
    };
    let keeps_names = matches!(
        plan,
        LogicalPlan::Projection(_) | LogicalPlan::Aggregate(_) | LogicalPlan::Window(_)
    );
    let original_exprs = plan.expressions();
    let new_exprs = original_exprs
        .iter()
        .map(|expr| {
            let rewritten = replace(expr.clone())?;
            if keeps_names && rewritten != *expr && !matches!(expr, Expr::Alias(_)) {
                // The node's output column keeps the name the query refers to.
                return Ok(rewritten.alias(expr.schema_name().to_string()));
            }
            Ok(rewritten)
        })
        .collect::<Result<Vec<_>>>()?;
    let rebuilt = plan.with_new_exprs(new_exprs, vec![below])?;
    if keeps_names {
        return Ok(rebuilt);
    }
    // Sort and filter pass their input's columns through, the added ones included: a
    // projection above restores the original output.
    Ok(LogicalPlan::Projection(Projection::try_new(
        columns_of(&original_schema),
        Arc::new(rebuilt),
    )?))
}

fn columns_of(schema: &DFSchemaRef) -> Vec<Expr> {
    schema
        .iter()
        .map(|(qualifier, field)| Expr::Column(Column::new(qualifier.cloned(), field.name())))
        .collect()
}

/// The name of an LM aggregate (`llm_agg`, `llm_rerank`; maybe aliased).
fn lm_aggregate_name(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Alias(alias) => lm_aggregate_name(&alias.expr),
        Expr::AggregateFunction(function) if function.func.name().starts_with("llm_") => {
            Some(function.func.name().to_owned())
        }
        _ => None,
    }
}

impl LmCallPositions {
    /// `llm_agg(prompt, x)` and `llm_rerank(prompt, x, k)` need a model per group, which an
    /// accumulator cannot call: the aggregate collects `array_agg(x)` instead, and a projection
    /// above reduces each group's list with the reducer (`llm_agg_reduce(prompt, list)`), one
    /// batched LM call for all the groups.
    fn split_list_aggregates(&self, plan: LogicalPlan) -> Result<LogicalPlan> {
        let LogicalPlan::Aggregate(aggregate) = plan else {
            unreachable!("called for aggregates only");
        };
        let original_schema = Arc::clone(&aggregate.schema);
        let group_count = original_schema.fields().len() - aggregate.aggr_expr.len();
        let mut new_aggr = Vec::with_capacity(aggregate.aggr_expr.len());
        let mut reductions: Vec<Option<Expr>> = Vec::new();
        for (index, expr) in aggregate.aggr_expr.iter().enumerate() {
            let inner = match expr {
                Expr::Alias(alias) => alias.expr.as_ref(),
                other => other,
            };
            let (Expr::AggregateFunction(function), Some(reducer)) =
                (inner, self.reducer_of(inner))
            else {
                new_aggr.push(expr.clone());
                reductions.push(None);
                continue;
            };
            let name = function.func.name();
            let [prompt, value, rest @ ..] = function.params.args.as_slice() else {
                return plan_err!("{name} takes a prompt and a value: {name}(prompt, value, ...)");
            };
            if !matches!(prompt, Expr::Literal(..)) {
                return plan_err!("{name}: the prompt must be a constant text");
            }
            if let Some(varying) = rest.iter().find(|arg| !arg.column_refs().is_empty()) {
                return plan_err!(
                    "{name}: {varying} must be a constant (the same for every row of a group)"
                );
            }
            let column = format!("{LM_COLUMN_PREFIX}agg_{index}");
            let mut params = function.params.clone();
            params.args = vec![value.clone()];
            let list = Expr::AggregateFunction(datafusion::logical_expr::expr::AggregateFunction {
                func: datafusion::functions_aggregate::array_agg::array_agg_udaf(),
                params,
            });
            new_aggr.push(list.alias(column.as_str()));
            let mut reducer_args = vec![prompt.clone(), Expr::Column(Column::from_name(column))];
            reducer_args.extend(rest.iter().cloned());
            reductions.push(Some(Expr::ScalarFunction(
                datafusion::logical_expr::expr::ScalarFunction::new_udf(
                    Arc::clone(reducer),
                    reducer_args,
                ),
            )));
        }
        let rebuilt = LogicalPlan::Aggregate(datafusion::logical_expr::Aggregate::try_new(
            Arc::clone(&aggregate.input),
            aggregate.group_expr.clone(),
            new_aggr,
        )?);
        let rebuilt_columns = columns_of(rebuilt.schema());
        let mut above = Vec::with_capacity(rebuilt_columns.len());
        for (index, column) in rebuilt_columns.into_iter().enumerate() {
            let (qualifier, field) = original_schema.qualified_field(index);
            let reduction = index
                .checked_sub(group_count)
                .and_then(|aggr| reductions[aggr].clone());
            above.push(
                reduction
                    .unwrap_or(column)
                    .alias_qualified(qualifier.cloned(), field.name()),
            );
        }
        Ok(LogicalPlan::Projection(Projection::try_new(
            above,
            Arc::new(rebuilt),
        )?))
    }
}

/// `a JOIN b ON cheap AND llm_filter(...)`: the LM conjuncts become a filter above the join,
/// which the physical plan evaluates over the join's candidate pairs, many pairs per request.
fn lift_join_condition(
    plan: LogicalPlan,
    candidates: Option<Candidates<'_>>,
) -> Result<Transformed<LogicalPlan>> {
    let LogicalPlan::Join(mut join) = plan else {
        unreachable!("called for joins only");
    };
    if let Some((key, _)) = join
        .on
        .iter()
        .find(|(left, right)| contains_async_call(left) || contains_async_call(right))
    {
        let mut calls = Vec::new();
        outermost_async_calls(key, &mut calls);
        return plan_err!(
            "{} cannot be an equi-join key; compute it in the SELECT list of a subquery on \
             one side and join on that column",
            calls.first().map(function_name).unwrap_or_default()
        );
    }
    let Some(filter) = join.filter.take() else {
        return Ok(Transformed::no(LogicalPlan::Join(join)));
    };
    let (lm, rest): (Vec<Expr>, Vec<Expr>) = split_conjunction_owned(filter)
        .into_iter()
        .partition(contains_async_call);
    if lm.is_empty() {
        join.filter = conjunction(rest);
        return Ok(Transformed::no(LogicalPlan::Join(join)));
    }
    if join.join_type != JoinType::Inner {
        let mut calls = Vec::new();
        outermost_async_calls(&lm[0], &mut calls);
        return plan_err!(
            "{} in the ON clause of a {} JOIN is not supported; use an inner JOIN (or put \
             the condition in WHERE), or compute the matches in a subquery and outer-join to it",
            calls.first().map(function_name).unwrap_or_default(),
            join.join_type.to_string().to_uppercase()
        );
    }
    join.filter = conjunction(rest);
    let output = columns_of(&join.schema);
    let sides = candidates.and_then(|candidates| {
        embedding_arguments(&lm[0], &join).map(|(left, right)| (candidates, left, right))
    });
    let pairs = match sides {
        Some((candidates, left, right)) => nearest_pairs(join, candidates, left, right)?,
        None => LogicalPlan::Join(join),
    };
    let predicate = conjunction(lm).expect("at least one LM conjunct");
    let filtered = LogicalPlan::Filter(Filter::try_new(predicate, Arc::new(pairs))?);
    // The new filter may itself nest LM calls.
    let filtered = rewrite_node(filtered)?.data;
    if filtered.schema().fields().len() == output.len() {
        return Ok(Transformed::yes(filtered));
    }
    // Without the candidate pruning's helper columns.
    Ok(Transformed::yes(LogicalPlan::Projection(
        Projection::try_new(output, Arc::new(filtered))?,
    )))
}

/// `SET semsql.join_candidates = k`: how many nearest right rows each left row keeps, and the
/// `embed` function to compare them with.
#[derive(Clone, Copy)]
pub struct Candidates<'a> {
    pub per_left_row: u64,
    pub embed: &'a Arc<ScalarUDF>,
}

/// The arguments of the LM call in `condition` to embed for the pre-filter: the first that
/// reads the left side only, and the first that reads the right side only.
fn embedding_arguments(
    condition: &Expr,
    join: &datafusion::logical_expr::Join,
) -> Option<(Expr, Expr)> {
    let mut calls = Vec::new();
    outermost_async_calls(condition, &mut calls);
    let Some(Expr::ScalarFunction(call)) = calls.first() else {
        return None;
    };
    let reads_only = |arg: &Expr, side: &LogicalPlan| {
        let columns = arg.column_refs();
        !columns.is_empty() && columns.iter().all(|c| side.schema().has_column(c))
    };
    let left = call.args.iter().find(|arg| reads_only(arg, &join.left))?;
    let right = call.args.iter().find(|arg| reads_only(arg, &join.right))?;
    Some((left.clone(), right.clone()))
}

/// The join's pairs, only those where the right row is among the left row's `k` nearest by
/// cosine distance of the two arguments' embeddings: each left row is numbered, both sides'
/// arguments embedded (one batched `embed` call per side), and the pairs of each left row
/// ranked by distance. Adds helper columns, which the caller projects away.
fn nearest_pairs(
    join: datafusion::logical_expr::Join,
    candidates: Candidates<'_>,
    left_arg: Expr,
    right_arg: Expr,
) -> Result<LogicalPlan> {
    use datafusion::functions_window::expr_fn::row_number;
    use datafusion::logical_expr::{col, lit, ExprFunctionExt, LogicalPlanBuilder};

    let row = format!("{LM_COLUMN_PREFIX}left_row");
    let left_vector = format!("{LM_COLUMN_PREFIX}left_vector");
    let right_vector = format!("{LM_COLUMN_PREFIX}right_vector");
    let rank = format!("{LM_COLUMN_PREFIX}rank");
    let embed = |arg: Expr| {
        Expr::ScalarFunction(datafusion::logical_expr::expr::ScalarFunction::new_udf(
            Arc::clone(candidates.embed),
            vec![arg],
        ))
    };
    let numbered = LogicalPlanBuilder::from(Arc::unwrap_or_clone(join.left))
        .window(vec![row_number().alias(row.as_str())])?
        .build()?;
    let mut left_columns = columns_of(numbered.schema());
    left_columns.push(embed(left_arg).alias(left_vector.as_str()));
    let left = LogicalPlanBuilder::from(numbered)
        .project(left_columns)?
        .build()?;
    let right = Arc::unwrap_or_clone(join.right);
    let mut right_columns = columns_of(right.schema());
    right_columns.push(embed(right_arg).alias(right_vector.as_str()));
    let right = LogicalPlanBuilder::from(right)
        .project(right_columns)?
        .build()?;
    let joined = LogicalPlan::Join(datafusion::logical_expr::Join::try_new(
        Arc::new(left),
        Arc::new(right),
        join.on,
        join.filter,
        join.join_type,
        join.join_constraint,
        join.null_equality,
        join.null_aware,
    )?);
    let distance = Expr::ScalarFunction(datafusion::logical_expr::expr::ScalarFunction::new_udf(
        Arc::new(ScalarUDF::new_from_impl(
            semsql_udfs::vector::CosineDistance::new(),
        )),
        vec![col(left_vector.as_str()), col(right_vector.as_str())],
    ));
    LogicalPlanBuilder::from(joined)
        .window(vec![row_number()
            .partition_by(vec![col(row.as_str())])
            .order_by(vec![distance.sort(true, true)])
            .build()?
            .alias(rank.as_str())])?
        .filter(col(rank.as_str()).lt_eq(lit(candidates.per_left_row)))?
        .build()
}
