//! Managed tables: rows held in memory for reading, every change committed to the data folder
//! through the connection's [`Transaction`] before it is acknowledged.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, BooleanArray};
use datafusion::arrow::compute::{cast, filter_record_batch, kernels::zip::zip};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Constraint, Constraints, DFSchema, Result, SchemaExt};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::datasource::TableType;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan};
use futures::StreamExt;

use super::character_types::fit_length;
use super::checked_arithmetic::checked_expr;
use super::storage::Store;
use super::transaction::{RowChange, Staged, Transaction};
use super::unique_keys::{check_keys, KeyEntry};
use crate::error::SemsqlError;
use crate::planner::vector_index::IndexedScanExec;
use crate::vector::index::VectorIndex;

/// What a table declares of its columns beyond their types: defaults and keys.
#[derive(Debug, Default)]
pub struct ColumnRules {
    pub defaults: HashMap<String, Expr>,
    pub keys: Vec<KeyEntry>,
}

/// A committed state of a table.
#[derive(Debug, Clone, Default)]
pub struct TableData {
    pub version: u64,
    pub batches: Vec<RecordBatch>,
    pub files: Vec<String>,
}

/// What every handle to one managed table shares.
#[derive(Debug)]
pub struct TableShared {
    /// The manifest entry's id (see `TableEntry::id`).
    pub id: String,
    pub schema_name: String,
    pub name: String,
    pub schema: SchemaRef,
    pub store: Arc<Store>,
    pub defaults: HashMap<String, Expr>,
    /// PRIMARY KEY and UNIQUE constraints, checked on every write.
    pub keys: Vec<KeyEntry>,
    /// The primary key as DataFusion's planner takes it (see `TableProvider::constraints`).
    primary_key: Option<Constraints>,
    committed: RwLock<TableData>,
    /// Held while a change to this table is being committed (and while an index is built).
    pub writer: Arc<tokio::sync::Mutex<()>>,
    indexes: RwLock<Vec<Arc<VectorIndex>>>,
}

impl TableShared {
    /// Fails with 23505 when two of `rows` (the table's whole contents as a transaction
    /// sees them) share a PRIMARY KEY or UNIQUE key.
    pub fn check_keys(&self, rows: &[RecordBatch]) -> Result<(), SemsqlError> {
        if self.keys.is_empty() {
            return Ok(());
        }
        check_keys(&self.name, &self.schema, &self.keys, rows)
    }

    pub fn key(&self) -> (String, String) {
        (self.schema_name.clone(), self.name.clone())
    }

    pub fn display_name(&self) -> String {
        format!("{}.{}", self.schema_name, self.name)
    }

    pub fn committed(&self) -> TableData {
        self.committed.read().expect("table lock").clone()
    }

    pub fn publish(&self, data: TableData) {
        *self.committed.write().expect("table lock") = data;
    }

    /// The table's vector indexes.
    pub fn indexes(&self) -> Vec<Arc<VectorIndex>> {
        self.indexes.read().expect("table lock").clone()
    }

    pub fn attach_index(&self, index: Arc<VectorIndex>) {
        self.indexes.write().expect("table lock").push(index);
    }

    /// Removes the index `name`, returning it.
    pub fn detach_index(&self, name: &str) -> Option<Arc<VectorIndex>> {
        let mut indexes = self.indexes.write().expect("table lock");
        let position = indexes.iter().position(|index| index.name() == name)?;
        Some(indexes.remove(position))
    }
}

/// The `TableProvider` of a managed table.
#[derive(Debug, Clone)]
pub struct DurableTable {
    shared: Arc<TableShared>,
}

impl DurableTable {
    pub fn new(
        id: String,
        schema_name: &str,
        name: &str,
        schema: SchemaRef,
        store: Arc<Store>,
        rules: ColumnRules,
        data: TableData,
    ) -> Self {
        let primary_key = primary_key_constraint(&schema, &rules.keys);
        DurableTable {
            shared: Arc::new(TableShared {
                id,
                schema_name: schema_name.to_owned(),
                name: name.to_owned(),
                schema,
                store,
                defaults: rules.defaults,
                primary_key,
                keys: rules.keys,
                committed: RwLock::new(data),
                writer: Arc::new(tokio::sync::Mutex::new(())),
                indexes: RwLock::new(Vec::new()),
            }),
        }
    }

    pub fn shared(&self) -> &Arc<TableShared> {
        &self.shared
    }

    fn write_plan(&self, state: &dyn Session, op: WriteOp) -> Result<Arc<dyn ExecutionPlan>> {
        let sink = WriteSink::new(self.shared.clone(), session_transaction(state)?, op);
        let input = Arc::new(EmptyExec::new(self.shared.schema.clone()));
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }

    fn physical_filter(
        &self,
        state: &dyn Session,
        filters: Vec<Expr>,
    ) -> Result<Option<Arc<dyn PhysicalExpr>>> {
        let df_schema = DFSchema::try_from(self.shared.schema.as_ref().clone())?;
        conjunction(filters)
            .map(|expr| {
                let physical = state.create_physical_expr(expr, &df_schema)?;
                checked_expr(physical, &self.shared.schema)
            })
            .transpose()
    }
}

/// The connection's transaction; every session semsql builds carries one.
pub fn session_transaction(state: &dyn Session) -> Result<Arc<Transaction>> {
    state
        .config()
        .get_extension::<Transaction>()
        .ok_or_else(|| {
            datafusion::error::DataFusionError::Internal("session has no transaction state".into())
        })
}

/// The primary key among `keys`, by column positions in `schema`.
fn primary_key_constraint(schema: &SchemaRef, keys: &[KeyEntry]) -> Option<Constraints> {
    let primary = keys.iter().find(|key| key.primary)?;
    let positions = primary
        .columns
        .iter()
        .map(|column| schema.index_of(column).ok())
        .collect::<Option<Vec<usize>>>()?;
    Some(Constraints::new_unverified(vec![Constraint::PrimaryKey(
        positions,
    )]))
}

#[async_trait]
impl TableProvider for DurableTable {
    fn schema(&self) -> SchemaRef {
        self.shared.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn get_column_default(&self, column: &str) -> Option<&Expr> {
        self.shared.defaults.get(column)
    }

    /// The primary key, which semsql enforces: DataFusion then knows that it determines the
    /// other columns, so `SELECT id, name FROM t GROUP BY id` works as in PostgreSQL. UNIQUE
    /// keys are not given: their columns may hold NULLs, which PostgreSQL does not take as
    /// determining anything, and DataFusion would (apache/datafusion#23819, #23820).
    fn constraints(&self) -> Option<&Constraints> {
        self.shared.primary_key.as_ref()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let staged = session_transaction(state)?.staged_batches(&self.shared.key());
        // An index covers committed rows only: a transaction with its own changes scans.
        let indexed = staged.is_none() && !self.shared.indexes().is_empty();
        let batches = staged.unwrap_or_else(|| self.shared.committed().batches);
        let partitions = split_into_partitions(batches, state.config().target_partitions());
        let exec = MemorySourceConfig::try_new_exec(
            &partitions,
            self.shared.schema.clone(),
            projection.cloned(),
        )?;
        if indexed {
            return Ok(Arc::new(IndexedScanExec::new(
                exec,
                self.shared.clone(),
                projection.cloned(),
            )));
        }
        Ok(exec)
    }

    async fn insert_into(
        &self,
        state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.shared
            .schema
            .logically_equivalent_names_and_types(&input.schema())?;
        if insert_op != InsertOp::Append {
            return Err(SemsqlError::NotSupported(format!(
                "{insert_op} is not supported for managed tables"
            ))
            .into_datafusion());
        }
        let sink = WriteSink::new(
            self.shared.clone(),
            session_transaction(state)?,
            WriteOp::Append,
        );
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }

    async fn delete_from(
        &self,
        state: &dyn Session,
        filters: Vec<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let filter = self.physical_filter(state, filters)?;
        self.write_plan(state, WriteOp::Delete { filter })
    }

    async fn update(
        &self,
        state: &dyn Session,
        assignments: Vec<(String, Expr)>,
        filters: Vec<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let calls_a_model = |expr: &Expr| {
            datafusion::common::tree_node::TreeNode::exists(expr, |e| {
                Ok(matches!(e, Expr::ScalarFunction(call) if call.func.as_async().is_some()))
            })
            .unwrap_or(false)
        };
        if let Some((column, _)) = assignments.iter().find(|(_, expr)| calls_a_model(expr)) {
            return Err(datafusion::error::DataFusionError::NotImplemented(format!(
                "UPDATE cannot call a model yet (SET {column} = ...); write the new rows with \
                 INSERT INTO ... SELECT (e.g. INSERT INTO t2 SELECT id, embed(body) FROM t) or \
                 CREATE TABLE ... AS SELECT"
            )));
        }
        let df_schema = DFSchema::try_from(self.shared.schema.as_ref().clone())?;
        let mut physical = Vec::with_capacity(assignments.len());
        for (column, expr) in assignments {
            let index = self.shared.schema.index_of(&column).map_err(|_| {
                datafusion::error::DataFusionError::Plan(format!(
                    "column \"{column}\" of relation \"{}\" does not exist",
                    self.shared.name
                ))
            })?;
            let expr = state.create_physical_expr(expr, &df_schema)?;
            physical.push((index, checked_expr(expr, &self.shared.schema)?));
        }
        let filter = self.physical_filter(state, filters)?;
        self.write_plan(
            state,
            WriteOp::Update {
                assignments: physical,
                filter,
            },
        )
    }

    async fn truncate(&self, state: &dyn Session) -> Result<Arc<dyn ExecutionPlan>> {
        self.write_plan(state, WriteOp::Delete { filter: None })
    }
}

fn split_into_partitions(batches: Vec<RecordBatch>, target: usize) -> Vec<Vec<RecordBatch>> {
    let target = target.max(1);
    let mut partitions = vec![Vec::new(); target.min(batches.len()).max(1)];
    let count = partitions.len();
    for (i, batch) in batches.into_iter().enumerate() {
        partitions[i % count].push(batch);
    }
    partitions
}

#[derive(Debug)]
enum WriteOp {
    Append,
    Delete {
        filter: Option<Arc<dyn PhysicalExpr>>,
    },
    Update {
        assignments: Vec<(usize, Arc<dyn PhysicalExpr>)>,
        filter: Option<Arc<dyn PhysicalExpr>>,
    },
}

/// Runs one INSERT, DELETE or UPDATE against the connection's transaction. DELETE and UPDATE
/// get an empty input and do their work when the plan runs, so EXPLAIN never changes data.
#[derive(Debug)]
struct WriteSink {
    table: Arc<TableShared>,
    transaction: Arc<Transaction>,
    op: WriteOp,
    nullable_schema: SchemaRef,
}

impl WriteSink {
    fn new(table: Arc<TableShared>, transaction: Arc<Transaction>, op: WriteOp) -> Self {
        let nullable_schema = Arc::new(Schema::new_with_metadata(
            table
                .schema
                .fields()
                .iter()
                .map(|field| field.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
            table.schema.metadata().clone(),
        ));
        WriteSink {
            table,
            transaction,
            op,
            nullable_schema,
        }
    }
}

impl DisplayAs for WriteSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let op = match self.op {
            WriteOp::Append => "Insert",
            WriteOp::Delete { .. } => "Delete",
            WriteOp::Update { .. } => "Update",
        };
        write!(f, "{op}: {}", self.table.display_name())
    }
}

#[async_trait]
impl DataSink for WriteSink {
    /// The table's columns, all nullable: DataFusion checks NOT NULL against this schema with
    /// its own message; `conform` checks it with PostgreSQL's.
    fn schema(&self) -> &SchemaRef {
        &self.nullable_schema
    }

    async fn write_all(
        &self,
        mut data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> Result<u64> {
        match &self.op {
            WriteOp::Append => {
                let mut batches = Vec::new();
                while let Some(batch) = data.next().await {
                    let batch = batch?;
                    if batch.num_rows() > 0 {
                        batches.push(conform(&self.table.schema, &self.table.name, &batch)?);
                    }
                }
                let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
                if rows == 0 {
                    return Ok(0);
                }
                self.transaction
                    .write(&self.table, move |staged| {
                        let mut contents = staged.batches.clone();
                        contents.extend(batches.iter().cloned());
                        staged
                            .table
                            .check_keys(&contents)
                            .map_err(SemsqlError::into_datafusion)?;
                        staged.batches = contents;
                        staged.appended.extend(batches);
                        staged.changes.push(RowChange::Appended(rows));
                        Ok(rows as u64)
                    })
                    .await
            }
            WriteOp::Delete { filter } => {
                let filter = filter.clone();
                self.transaction
                    .write(&self.table, move |staged| {
                        delete_rows(staged, filter.as_ref())
                    })
                    .await
            }
            WriteOp::Update {
                assignments,
                filter,
            } => {
                let assignments = assignments.clone();
                let filter = filter.clone();
                let schema = self.table.schema.clone();
                self.transaction
                    .write(&self.table, move |staged| {
                        update_rows(staged, &schema, &assignments, filter.as_ref())
                    })
                    .await
            }
        }
    }
}

/// Gives an input batch the table's exact schema: inputs may differ in field names, nullability
/// flags, or in string representation (`Utf8` parameters into `Utf8View` columns).
/// A NULL in a NOT NULL column is PostgreSQL's 23502.
fn conform(schema: &SchemaRef, table: &str, batch: &RecordBatch) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if !field.is_nullable() && column.null_count() > 0 {
                return Err(SemsqlError::NotNullViolation {
                    column: field.name().clone(),
                    table: table.to_owned(),
                }
                .into_datafusion());
            }
            let column = fit_length(field, column).map_err(SemsqlError::into_datafusion)?;
            if column.data_type() == field.data_type() {
                Ok(column)
            } else {
                Ok(cast(&column, field.data_type())?)
            }
        })
        .collect::<Result<Vec<ArrayRef>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// Which rows a WHERE clause selects: only those where it is true (not NULL).
fn selected_rows(
    filter: Option<&Arc<dyn PhysicalExpr>>,
    batch: &RecordBatch,
) -> Result<BooleanArray> {
    let Some(filter) = filter else {
        return Ok(BooleanArray::from(vec![true; batch.num_rows()]));
    };
    let mask = filter.evaluate(batch)?.into_array(batch.num_rows())?;
    let mask = mask
        .as_any()
        .downcast_ref::<BooleanArray>()
        .ok_or_else(|| {
            datafusion::error::DataFusionError::Plan(
                "argument of WHERE must be type boolean".into(),
            )
        })?;
    Ok(mask.iter().map(|v| Some(v == Some(true))).collect())
}

fn delete_rows(staged: &mut Staged, filter: Option<&Arc<dyn PhysicalExpr>>) -> Result<u64> {
    let mut deleted = 0u64;
    let mut kept = Vec::with_capacity(staged.batches.len());
    let mut removed = Vec::new();
    for batch in &staged.batches {
        let selected = selected_rows(filter, batch)?;
        deleted += selected.true_count() as u64;
        removed.extend(selected.values().iter());
        let keep = datafusion::arrow::compute::not(&selected)?;
        let remaining = filter_record_batch(batch, &keep)?;
        if remaining.num_rows() > 0 {
            kept.push(remaining);
        }
    }
    if deleted > 0 {
        staged.batches = kept;
        staged.appended.clear();
        staged.rewritten = true;
        staged.changes.push(RowChange::Removed(removed));
    }
    Ok(deleted)
}

fn update_rows(
    staged: &mut Staged,
    schema: &SchemaRef,
    assignments: &[(usize, Arc<dyn PhysicalExpr>)],
    filter: Option<&Arc<dyn PhysicalExpr>>,
) -> Result<u64> {
    let mut updated = 0u64;
    let mut rewritten = Vec::with_capacity(staged.batches.len());
    let mut changed = Vec::new();
    for batch in &staged.batches {
        let selected = selected_rows(filter, batch)?;
        changed.extend(selected.values().iter());
        let count = selected.true_count();
        if count == 0 {
            rewritten.push(batch.clone());
            continue;
        }
        updated += count as u64;
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        for (index, expr) in assignments {
            let target = schema.field(*index);
            // Only the matched rows: `SET r = 100 / d WHERE d <> 0` must not divide by the
            // zeros it skips (the other rows come back NULL and keep their old value below).
            let value = expr
                .evaluate_selection(batch, &selected)?
                .into_array(batch.num_rows())?;
            let value = cast(&value, target.data_type())?;
            if !target.is_nullable() && value.null_count() > 0 {
                let nulls_selected =
                    (0..value.len()).any(|row| selected.value(row) && value.is_null(row));
                if nulls_selected {
                    return Err(datafusion::error::DataFusionError::Execution(format!(
                        "null value in column \"{}\" violates not-null constraint",
                        target.name()
                    )));
                }
            }
            let merged = zip(&selected, &value, &batch.column(*index))?;
            columns[*index] =
                fit_length(schema.field(*index), &merged).map_err(SemsqlError::into_datafusion)?;
        }
        rewritten.push(RecordBatch::try_new(schema.clone(), columns)?);
    }
    if updated > 0 {
        staged
            .table
            .check_keys(&rewritten)
            .map_err(SemsqlError::into_datafusion)?;
        staged.batches = rewritten;
        staged.appended.clear();
        staged.rewritten = true;
        staged.changes.push(RowChange::Changed {
            rows: changed,
            columns: assignments.iter().map(|(index, _)| *index).collect(),
        });
    }
    Ok(updated)
}
