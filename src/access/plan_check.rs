//! Privileges checked on the logical plan, before anything runs: every table a query scans
//! needs SELECT, every write its own privilege, and `COPY ... TO 'file'` the right to write
//! server files. This is an analyzer rule, placed first, so it sees every plan DataFusion is
//! asked to run, whatever the protocol, the hook or the number of statements in a message.
//!
//! DataFusion inlines a view's plan where the view is named, so the view itself would leave no
//! trace; [`ViewBoundary`] marks where an inlined view starts. As in PostgreSQL, the caller
//! needs SELECT on the view, and what the view reads is checked with its owner's privileges.
//! The rule removes the markers once checked.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNodeRecursion};
use datafusion::common::{DFSchemaRef, Result, TableReference};
use datafusion::config::ConfigOptions;
use datafusion::logical_expr::{Expr, Extension, LogicalPlan, UserDefinedLogicalNodeCore, WriteOp};
use datafusion::optimizer::AnalyzerRule;

use super::{Access, FileUse, Object, Privilege};

/// Marks the plan of a view inlined into a query (see the module's documentation).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ViewBoundary {
    pub schema: String,
    pub name: String,
    pub input: LogicalPlan,
}

impl PartialOrd for ViewBoundary {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        (&self.schema, &self.name).partial_cmp(&(&other.schema, &other.name))
    }
}

impl ViewBoundary {
    pub fn wrap(schema: &str, name: &str, input: LogicalPlan) -> LogicalPlan {
        LogicalPlan::Extension(Extension {
            node: Arc::new(ViewBoundary {
                schema: schema.to_owned(),
                name: name.to_owned(),
                input,
            }),
        })
    }
}

impl UserDefinedLogicalNodeCore for ViewBoundary {
    fn name(&self) -> &str {
        "ViewBoundary"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        self.input.schema()
    }

    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "View: {}.{}", self.schema, self.name)
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> Result<Self> {
        Ok(ViewBoundary {
            schema: self.schema.clone(),
            name: self.name.clone(),
            input: inputs.swap_remove(0),
        })
    }
}

fn as_view(plan: &LogicalPlan) -> Option<&ViewBoundary> {
    match plan {
        LogicalPlan::Extension(extension) => extension.node.as_any().downcast_ref::<ViewBoundary>(),
        _ => None,
    }
}

/// The rule's name, which DataFusion puts before its errors.
pub const RULE_NAME: &str = "semsql_access_check";

/// Checks `plan` as the session whose options these are would run it. For `EXPLAIN`, whose
/// analyzer errors DataFusion turns into rows of the plan instead of failing.
pub fn check_plan(plan: &LogicalPlan, config: &ConfigOptions) -> Result<()> {
    if let Some((access, role)) = super::caller_of(config) {
        let checker = Checker {
            access: &access,
            catalog: &config.catalog.default_catalog,
            default_schema: &config.catalog.default_schema,
        };
        checker.check(plan, Some(&role))?;
    }
    Ok(())
}

/// The analyzer rule.
#[derive(Debug, Default)]
pub struct AccessCheck;

impl AnalyzerRule for AccessCheck {
    fn analyze(&self, plan: LogicalPlan, config: &ConfigOptions) -> Result<LogicalPlan> {
        check_plan(&plan, config)?;
        plan.transform_down_with_subqueries(|node| {
            Ok(match as_view(&node) {
                Some(view) => Transformed::yes(view.input.clone()),
                None => Transformed::no(node),
            })
        })
        .map(|transformed| transformed.data)
    }

    fn name(&self) -> &str {
        RULE_NAME
    }
}

struct Checker<'a> {
    access: &'a Access,
    catalog: &'a str,
    default_schema: &'a str,
}

impl Checker<'_> {
    /// `(schema, name)` of a relation the catalog manages, or `None` (system tables, CTEs).
    fn managed(&self, reference: &TableReference) -> Option<(String, String)> {
        let resolved = reference.clone().resolve(self.catalog, self.default_schema);
        let schema = resolved.schema.to_string();
        let name = resolved.table.to_string();
        self.access
            .is_managed_relation(&schema, &name)
            .then_some((schema, name))
    }

    fn require(&self, role: &str, reference: &TableReference, privilege: Privilege) -> Result<()> {
        if let Some((schema, name)) = self.managed(reference) {
            self.access
                .check(
                    role,
                    Object::Relation {
                        schema: &schema,
                        name: &name,
                    },
                    privilege,
                )
                .map_err(|err| err.into_datafusion())?;
        }
        Ok(())
    }

    /// Checks `plan` as `role` would run it; `None`: a view owned by the superusers, whose
    /// reads need no check.
    fn check(&self, plan: &LogicalPlan, role: Option<&str>) -> Result<()> {
        plan.apply_with_subqueries(|node| {
            if let Some(view) = as_view(node) {
                let owner = self.access.owner(Object::Relation {
                    schema: &view.schema,
                    name: &view.name,
                });
                if let Some(role) = role {
                    self.access
                        .check(
                            role,
                            Object::Relation {
                                schema: &view.schema,
                                name: &view.name,
                            },
                            Privilege::Select,
                        )
                        .map_err(|err| err.into_datafusion())?;
                }
                self.check(&view.input, owner.as_deref())?;
                return Ok(TreeNodeRecursion::Jump);
            }
            let Some(role) = role else {
                return Ok(TreeNodeRecursion::Continue);
            };
            match node {
                LogicalPlan::TableScan(scan) => {
                    self.require(role, &scan.table_name, Privilege::Select)?;
                }
                LogicalPlan::Dml(dml) => {
                    let privilege = match &dml.op {
                        WriteOp::Insert(_) | WriteOp::Ctas => Privilege::Insert,
                        WriteOp::Update => Privilege::Update,
                        WriteOp::Delete => Privilege::Delete,
                        WriteOp::Truncate => Privilege::Truncate,
                        // MERGE and whatever DataFusion adds: both reading and changing rows.
                        _ => Privilege::Update,
                    };
                    self.require(role, &dml.table_name, privilege)?;
                    self.check_write_input(dml.input.as_ref(), &dml.table_name, &dml.op, role)?;
                    return Ok(TreeNodeRecursion::Jump);
                }
                LogicalPlan::Copy(copy) => {
                    self.access
                        .check_server_file(role, &copy.output_url, FileUse::Write)
                        .map_err(|err| err.into_datafusion())?;
                }
                _ => {}
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .map(|_| ())
    }

    /// What a write reads. UPDATE and DELETE scan their own table to find the rows; as in
    /// PostgreSQL, that needs SELECT only when the statement looks at the rows' values (a
    /// WHERE clause, or SET expressions that read columns), so `DELETE FROM t` needs DELETE
    /// alone.
    fn check_write_input(
        &self,
        input: &LogicalPlan,
        target: &TableReference,
        op: &WriteOp,
        role: &str,
    ) -> Result<()> {
        let target_key = self.managed(target);
        let reads_target =
            matches!(op, WriteOp::Update | WriteOp::Delete) && reads_row_values(input, op);
        input
            .apply_with_subqueries(|node| {
                if as_view(node).is_some() {
                    self.check(node, Some(role))?;
                    return Ok(TreeNodeRecursion::Jump);
                }
                if let LogicalPlan::TableScan(scan) = node {
                    let is_target = target_key.is_some()
                        && self.managed(&scan.table_name) == target_key
                        && matches!(op, WriteOp::Update | WriteOp::Delete);
                    if !is_target || reads_target {
                        self.require(role, &scan.table_name, Privilege::Select)?;
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
            .map(|_| ())
    }
}

/// Whether an UPDATE's or DELETE's input looks at row values: a filter anywhere, or (UPDATE)
/// a projected expression other than a column passed through.
fn reads_row_values(input: &LogicalPlan, op: &WriteOp) -> bool {
    let mut reads = false;
    let _ = input.apply_with_subqueries(|node| {
        match node {
            LogicalPlan::Filter(_) | LogicalPlan::Join(_) | LogicalPlan::Subquery(_) => {
                reads = true
            }
            LogicalPlan::TableScan(scan) if !scan.filters.is_empty() => reads = true,
            LogicalPlan::Projection(projection) if matches!(op, WriteOp::Update) => {
                let reads_columns = projection.expr.iter().any(|expr| {
                    let inner = match expr {
                        Expr::Alias(alias) => alias.expr.as_ref(),
                        other => other,
                    };
                    !matches!(inner, Expr::Column(_)) && !inner.column_refs().is_empty()
                });
                reads |= reads_columns;
            }
            _ => {}
        }
        Ok(if reads {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    reads
}

/// A view as the catalog keeps it: DataFusion's view, whose inlined plan carries a
/// [`ViewBoundary`] so the access check knows where it starts.
#[derive(Debug)]
pub struct MarkedView {
    view: Arc<dyn datafusion::catalog::TableProvider>,
    marked: LogicalPlan,
}

impl MarkedView {
    /// Wraps `view` (a provider with a logical plan) as `schema.name`; other providers are
    /// returned as they are.
    pub fn wrap(
        schema: &str,
        name: &str,
        view: Arc<dyn datafusion::catalog::TableProvider>,
    ) -> Arc<dyn datafusion::catalog::TableProvider> {
        let Some(plan) = view.get_logical_plan().map(|plan| plan.into_owned()) else {
            return view;
        };
        Arc::new(MarkedView {
            marked: ViewBoundary::wrap(schema, name, plan),
            view,
        })
    }
}

#[async_trait::async_trait]
impl datafusion::catalog::TableProvider for MarkedView {
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        self.view.schema()
    }

    fn table_type(&self) -> datafusion::logical_expr::TableType {
        self.view.table_type()
    }

    fn get_table_definition(&self) -> Option<&str> {
        self.view.get_table_definition()
    }

    fn get_logical_plan(&self) -> Option<std::borrow::Cow<'_, LogicalPlan>> {
        Some(std::borrow::Cow::Borrowed(&self.marked))
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<datafusion::logical_expr::TableProviderFilterPushDown>> {
        self.view.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        self.view.scan(state, projection, filters, limit).await
    }
}
