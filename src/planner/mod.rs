//! Planning for semantic work: rules that keep language-model calls off rows that cheap work
//! can rule out first; and pgvector's syntax.
//!
//! - `cheap_first`: conjuncts of a filter that do not need an LM result run below the LM call.

//! - `lm_positions`: LM calls where DataFusion cannot evaluate them (ORDER BY, GROUP BY,
//!   aggregate and window arguments, nested calls, join conditions) move into a projection or a
//!   filter where it can.

//! - `semantic_nodes` + `semantic_exec`: LM calls run in our own plan node, which orders them
//!   by cost, narrows rows by the filter above after each call and stops early under a LIMIT.

//! - `constant_calls`: `embed('constant')` computed once, before the physical plan is made.

//! - `postgres_casts`: casts between text and dates, times, intervals and floats read and
//!   write PostgreSQL's text.

//! - `vector_syntax`: pgvector's distance operators and casts to `vector`.

//! - `vector_index`: `ORDER BY distance LIMIT k` searches an HNSW index instead of every row.

use std::sync::Arc;

use datafusion::physical_plan::ExecutionPlan;

pub mod cheap_first;
pub mod constant_calls;
pub mod integer_arithmetic;
pub mod lm_positions;
pub mod nullable_insert_values;
pub mod postgres_casts;
pub mod semantic_exec;
pub mod semantic_nodes;
pub mod unknown_literals;
pub mod vector_index;
pub mod vector_syntax;

/// Whether `plan` passes every row on unchanged, with the same columns (maybe regrouped into
/// other batches or partitions): rules look through such nodes for the LM node below.
fn is_row_mover(plan: &Arc<dyn ExecutionPlan>) -> bool {
    const ROW_MOVERS: [&str; 3] = [
        "RepartitionExec",
        "CoalesceBatchesExec",
        "CoalescePartitionsExec",
    ];
    ROW_MOVERS.contains(&plan.name()) && plan.children().len() == 1
}

/// The columns a plan node's expressions read: its inputs' schemas together (empty for a node
/// without inputs). For analyzer rules that type expressions node by node.
pub fn inputs_schema(node: &datafusion::logical_expr::LogicalPlan) -> datafusion::common::DFSchema {
    let mut schema = datafusion::common::DFSchema::empty();
    for input in node.inputs() {
        schema.merge(input.schema());
    }
    schema
}

/// Rewrites every expression of every node of `plan` (subqueries too), bottom-up, with
/// `rewrite`, which sees the columns of the node's inputs. Output names are kept, and a changed
/// node's schema is computed again (a rewritten expression may differ in type or nullability).
pub fn rewrite_expressions(
    plan: datafusion::logical_expr::LogicalPlan,
    rewrite: impl Fn(
        datafusion::logical_expr::Expr,
        &datafusion::common::DFSchema,
    ) -> datafusion::error::Result<
        datafusion::common::tree_node::Transformed<datafusion::logical_expr::Expr>,
    >,
) -> datafusion::error::Result<datafusion::logical_expr::LogicalPlan> {
    use datafusion::common::tree_node::TreeNode;
    use datafusion::logical_expr::expr_rewriter::NamePreserver;
    use datafusion::logical_expr::LogicalPlan;
    Ok(plan
        .transform_up_with_subqueries(|node| {
            let schema = inputs_schema(&node);
            let preserver = NamePreserver::new(&node);
            let node = node.map_expressions(|expr| {
                let saved = preserver.save(&expr);
                let rewritten = expr.transform_up(|e| rewrite(e, &schema))?;
                Ok(rewritten.update_data(|e| saved.restore(e)))
            })?;
            if node.transformed {
                node.map_data(LogicalPlan::recompute_schema)
            } else {
                Ok(node)
            }
        })?
        .data)
}
