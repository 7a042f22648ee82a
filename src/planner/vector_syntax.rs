//! pgvector's syntax: the distance operators and the casts to `vector`.
//!
//! - [`VectorOperators`] plans `a <-> b` as `l2_distance(a, b)`, `a <=> b` as
//!   `cosine_distance(a, b)`, `a <#> b` as `-inner_product(a, b)` and `a <+> b` as
//!   `l1_distance(a, b)` (our functions, with pgvector's results and errors).
//! - [`VectorCasts`] turns every cast to `vector` / `vector(n)` (`'[1,2,3]'::vector`, COPY into a
//!   vector column) into `vector_parse(value [, n])`: Arrow cannot cast text to a list, and a
//!   size mismatch must say which sizes, as pgvector does.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::DFSchema;
use datafusion::error::Result;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{lit, Expr, ExprSchemable, LogicalPlan, ScalarUDF};
use datafusion::optimizer::AnalyzerRule;
use datafusion::sql::sqlparser::ast::BinaryOperator;
use semsql_udfs::vector::{CosineDistance, InnerProduct, L1Distance, L2Distance, VectorParse};

#[derive(Debug)]
pub struct VectorOperators {
    l2: Arc<ScalarUDF>,
    cosine: Arc<ScalarUDF>,
    inner_product: Arc<ScalarUDF>,
    l1: Arc<ScalarUDF>,
}

impl Default for VectorOperators {
    fn default() -> Self {
        Self {
            l2: Arc::new(ScalarUDF::new_from_impl(L2Distance::new())),
            cosine: Arc::new(ScalarUDF::new_from_impl(CosineDistance::new())),
            inner_product: Arc::new(ScalarUDF::new_from_impl(InnerProduct::new())),
            l1: Arc::new(ScalarUDF::new_from_impl(L1Distance::new())),
        }
    }
}

impl ExprPlanner for VectorOperators {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        _schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        let (function, negate) = match &expr.op {
            BinaryOperator::LtDashGt => (&self.l2, false),
            BinaryOperator::Spaceship => (&self.cosine, false),
            BinaryOperator::Custom(name) if name == "<#>" => (&self.inner_product, true),
            BinaryOperator::Custom(name) if name == crate::server::compat::L1_OPERATOR => {
                (&self.l1, false)
            }
            _ => return Ok(PlannerResult::Original(expr)),
        };
        let call = Expr::ScalarFunction(ScalarFunction::new_udf(
            Arc::clone(function),
            vec![expr.left, expr.right],
        ));
        Ok(PlannerResult::Planned(if negate {
            Expr::Negative(Box::new(call))
        } else {
            call
        }))
    }
}

/// A vector type's size: `Some(Some(n))` for `vector(n)`, `Some(None)` for `vector` (a list of
/// `real`), `None` for other types.
pub fn vector_size(data_type: &DataType) -> Option<Option<i32>> {
    match data_type {
        DataType::FixedSizeList(field, dims) if field.data_type() == &DataType::Float32 => {
            Some(Some(*dims))
        }
        DataType::List(field) if field.data_type() == &DataType::Float32 => Some(None),
        _ => None,
    }
}

#[derive(Debug)]
pub struct VectorCasts {
    parse: Arc<ScalarUDF>,
}

impl Default for VectorCasts {
    fn default() -> Self {
        Self::new()
    }
}

impl VectorCasts {
    pub fn new() -> Self {
        Self {
            parse: Arc::new(ScalarUDF::new_from_impl(VectorParse::new())),
        }
    }

    fn rewrite(&self, expr: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
        let (inner, field) = match &expr {
            Expr::Cast(cast) => (cast.expr.as_ref(), &cast.field),
            Expr::TryCast(cast) => (cast.expr.as_ref(), &cast.field),
            _ => return Ok(Transformed::no(expr)),
        };
        let Some(size) = vector_size(field.data_type()) else {
            return Ok(Transformed::no(expr));
        };
        let from = inner.get_type(schema)?;
        if &from == field.data_type() {
            return Ok(Transformed::no(expr));
        }
        let mut args = vec![inner.clone()];
        args.extend(size.map(lit));
        Ok(Transformed::yes(Expr::ScalarFunction(
            ScalarFunction::new_udf(Arc::clone(&self.parse), args),
        )))
    }
}

impl AnalyzerRule for VectorCasts {
    fn name(&self) -> &str {
        "vector_casts"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            // The expressions of a node are typed against its inputs' columns.
            let mut schema = DFSchema::empty();
            for input in node.inputs() {
                schema.merge(input.schema());
            }
            // Output columns keep the names the casts gave them.
            let names = NamePreserver::new(&node);
            node.map_expressions(|expr| {
                let saved = names.save(&expr);
                let rewritten = expr.transform_up(|expr| self.rewrite(expr, &schema))?;
                Ok(rewritten.update_data(|expr| saved.restore(expr)))
            })
        })
        .map(|transformed| transformed.data)
    }
}
