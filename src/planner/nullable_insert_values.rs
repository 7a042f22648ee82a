//! Analyzer rule: the rows of `INSERT INTO t VALUES (...)` may hold NULLs whatever `t` declares,
//! so that a NULL in a NOT NULL column is refused by the table's write with PostgreSQL's 23502
//! `null value in column "a" of relation "t" violates not-null constraint` (see
//! `engine::table`). DataFusion gives the VALUES the table's nullability, and building their
//! rows then failed with an Arrow error naming `column1`.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::DFSchema;
use datafusion::error::Result;
use datafusion::logical_expr::{DmlStatement, LogicalPlan, Values, WriteOp};
use datafusion::optimizer::AnalyzerRule;

#[derive(Debug, Default)]
pub struct NullableInsertValues;

impl AnalyzerRule for NullableInsertValues {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        let LogicalPlan::Dml(DmlStatement {
            op: WriteOp::Insert(_),
            ..
        }) = &plan
        else {
            return Ok(plan);
        };
        Ok(plan
            .transform_up(|node| match node {
                LogicalPlan::Values(Values { schema, values })
                    if schema.fields().iter().any(|field| !field.is_nullable()) =>
                {
                    let qualified = schema
                        .iter()
                        .map(|(qualifier, field)| {
                            (
                                qualifier.cloned(),
                                Arc::new(field.as_ref().clone().with_nullable(true)),
                            )
                        })
                        .collect();
                    let schema = DFSchema::new_with_metadata(qualified, schema.metadata().clone())?;
                    Ok(Transformed::yes(LogicalPlan::Values(Values {
                        schema: Arc::new(schema),
                        values,
                    })))
                }
                // Projections and the DML node above take the new nullability.
                other => Ok(Transformed::yes(other.recompute_schema()?)),
            })?
            .data)
    }

    fn name(&self) -> &str {
        "postgres_nullable_insert_values"
    }
}
