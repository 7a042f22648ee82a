//! PostgreSQL's error for a call of a function that does not exist:
//! `function foo(integer, unknown) does not exist` (42883), with its hint, where DataFusion
//! says `Invalid function 'foo'. Did you mean 'cos'?`.
//!
//! DataFusion stops planning at the unknown name, before typing its arguments, so the types
//! are found by planning the statement once more with the call replaced by
//! [`ARGUMENT_TYPES`], a function that takes anything, and reading its arguments' types.
//! Only the failing statement pays for this second planning.

use std::ops::ControlFlow;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, DataFusionError, ScalarValue};
use datafusion::logical_expr::{Expr, ExprSchemable};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, FunctionArguments, Ident, ObjectName, ObjectNamePart, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use pgwire::error::{ErrorInfo, PgWireError};

use crate::engine::argument_types::ARGUMENT_TYPES;

/// The name in DataFusion's "Invalid function 'name'" error, wherever it is wrapped.
fn missing_name(err: &DataFusionError) -> Option<String> {
    match err {
        DataFusionError::Plan(message) => Some(
            message
                .strip_prefix("Invalid function '")?
                .split('\'')
                .next()?
                .to_owned(),
        ),
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            missing_name(inner)
        }
        DataFusionError::Shared(inner) => missing_name(inner),
        _ => None,
    }
}

/// PostgreSQL's error in place of DataFusion's when `err` is about an unknown function;
/// `err` itself otherwise.
pub async fn with_argument_types(ctx: &SessionContext, sql: &str, err: PgWireError) -> PgWireError {
    let name = match &err {
        PgWireError::ApiError(inner) => inner
            .downcast_ref::<DataFusionError>()
            .and_then(missing_name),
        _ => None,
    };
    let Some(name) = name else {
        return err;
    };
    let arguments = match argument_types(ctx, sql, &name).await {
        Some(types) => types.join(", "),
        None => return err,
    };
    let mut info = ErrorInfo::new(
        "ERROR".to_owned(),
        "42883".to_owned(),
        format!("function {name}({arguments}) does not exist"),
    );
    info.hint = Some(
        "No function matches the given name and argument types. You might need to add explicit \
         type casts."
            .to_owned(),
    );
    PgWireError::UserError(Box::new(info))
}

/// The PostgreSQL names of the types of the first call of `name` in `sql`'s statement.
async fn argument_types(ctx: &SessionContext, sql: &str, name: &str) -> Option<Vec<String>> {
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    if statements.len() != 1 {
        return None;
    }
    let mut statement = statements.remove(0);
    let mut standin = StandIn {
        name,
        replaced: None,
    };
    let _ = statement.visit(&mut standin);
    match standin.replaced {
        None => return None,
        Some(0) => return Some(Vec::new()),
        Some(_) => {}
    }
    let state = ctx.state();
    let plan = state
        .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(
            statement,
        )))
        .await
        .ok()?;
    let mut found = None;
    let _ = plan.apply_with_subqueries(|node| {
        let schema = crate::planner::inputs_schema(node);
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Expr::ScalarFunction(call) = e {
                    if call.func.name() == ARGUMENT_TYPES {
                        found = Some(
                            call.args
                                .iter()
                                .map(|arg| type_name(arg, &schema))
                                .collect(),
                        );
                        return Ok(TreeNodeRecursion::Stop);
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    found
}

/// The type PostgreSQL would name for an argument: a quoted literal is `unknown` until
/// something types it, an integer literal that fits is `integer`.
fn type_name(arg: &Expr, schema: &DFSchema) -> String {
    match arg {
        Expr::Literal(ScalarValue::Utf8(_) | ScalarValue::Null, _) => "unknown".to_owned(),
        Expr::Literal(ScalarValue::Int64(Some(value)), _) if i32::try_from(*value).is_ok() => {
            "integer".to_owned()
        }
        // A decimal literal (`2.5`) is `numeric` in PostgreSQL; DataFusion reads it as float8.
        Expr::Literal(ScalarValue::Float64(_), _) => "numeric".to_owned(),
        other => other
            .get_type(schema)
            .ok()
            .and_then(|data_type| crate::engine::pg_functions::postgres_type_name(&data_type).ok())
            .unwrap_or_else(|| "unknown".to_owned()),
    }
}

/// Renames the first call of `name` to [`ARGUMENT_TYPES`], noting how many arguments it has.
struct StandIn<'a> {
    name: &'a str,
    replaced: Option<usize>,
}

impl VisitorMut for StandIn<'_> {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut SqlExpr) -> ControlFlow<()> {
        let SqlExpr::Function(function) = expr else {
            return ControlFlow::Continue(());
        };
        let called = function.name.to_string();
        let unquoted = function
            .name
            .0
            .last()
            .and_then(ObjectNamePart::as_ident)
            .map(|ident| {
                if ident.quote_style.is_some() {
                    ident.value.clone()
                } else {
                    ident.value.to_ascii_lowercase()
                }
            });
        if called != self.name && unquoted.as_deref() != Some(self.name) {
            return ControlFlow::Continue(());
        }
        let arity = match &function.args {
            FunctionArguments::List(list) => list.args.len(),
            _ => return ControlFlow::Continue(()),
        };
        function.name = ObjectName(vec![ObjectNamePart::Identifier(Ident::new(ARGUMENT_TYPES))]);
        self.replaced = Some(arity);
        ControlFlow::Break(())
    }
}
