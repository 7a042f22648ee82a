//! Per-connection transactions over managed tables.
//!
//! Every write is staged in the connection's [`Transaction`] first. Outside `BEGIN ... COMMIT`
//! the statement commits as soon as it has run; inside, staged tables are seen only by this
//! connection until `COMMIT` writes them all in one manifest commit (all or nothing), and
//! `ROLLBACK` drops them. Appends commit on top of whatever others committed meanwhile; a
//! rewrite (DELETE, UPDATE) of a table that another connection changed since this transaction
//! first touched it fails with 40001, as `REPEATABLE READ` does in PostgreSQL.
//! DDL is not transactional: CREATE and DROP take effect at once.
//!
//! Savepoints (`SAVEPOINT`, `ROLLBACK TO`, `RELEASE`) mark the staged state inside a block:
//! rolling back to one restores every table's staged rows as they were when it was set, as
//! PostgreSQL's subtransactions do for the rows a transaction wrote.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::Result;

use super::table::{TableData, TableShared};
use crate::error::SemsqlError;

/// One table's uncommitted state inside a transaction.
#[derive(Debug, Clone)]
pub struct Staged {
    pub table: Arc<TableShared>,
    /// The committed version this staged state started from.
    pub base_version: u64,
    /// The rows as this transaction sees them.
    pub batches: Vec<RecordBatch>,
    /// Rows appended since the base (for rebasing appends on newer commits).
    pub appended: Vec<RecordBatch>,
    /// Whether rows of the base were deleted or changed (the whole table is rewritten).
    pub rewritten: bool,
    /// What happened to the rows, in order, so that indexes can follow without a rebuild.
    pub changes: Vec<RowChange>,
}

/// One statement's effect on a table's rows, by position in scan order.
#[derive(Debug, Clone)]
pub enum RowChange {
    /// Rows added at the end.
    Appended(usize),
    /// Rows removed: one flag per row before the change.
    Removed(Vec<bool>),
    /// Rows whose `columns` were assigned: one flag per row.
    Changed {
        rows: Vec<bool>,
        columns: Vec<usize>,
    },
}

impl Staged {
    pub fn from_committed(table: Arc<TableShared>, data: &TableData) -> Staged {
        Staged {
            table,
            base_version: data.version,
            batches: data.batches.clone(),
            appended: Vec::new(),
            rewritten: false,
            changes: Vec::new(),
        }
    }
}

type StagedTables = BTreeMap<(String, String), Staged>;

#[derive(Debug, Default)]
struct State {
    explicit: bool,
    staged: StagedTables,
    /// Open savepoints, oldest first, each with the staged state when it was set. Names may
    /// repeat: the newest of a name is the one `ROLLBACK TO` and `RELEASE` mean, as in
    /// PostgreSQL.
    savepoints: Vec<(String, StagedTables)>,
}

/// Why a savepoint statement was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SavepointError {
    /// Outside `BEGIN ... COMMIT` (PostgreSQL's 25P01).
    NoTransaction,
    /// No open savepoint has this name (3B001).
    NotFound(String),
}

/// The transaction state of one connection, kept in its session config.
#[derive(Debug, Default)]
pub struct Transaction {
    state: Mutex<State>,
}

impl Transaction {
    pub fn new() -> Arc<Self> {
        Arc::new(Transaction::default())
    }

    pub fn in_explicit_block(&self) -> bool {
        self.state.lock().expect("transaction lock").explicit
    }

    /// `BEGIN`: later writes are held until `COMMIT`.
    pub fn begin(&self) {
        self.state.lock().expect("transaction lock").explicit = true;
    }

    /// `ROLLBACK`: drops everything staged.
    pub fn rollback(&self) {
        let mut state = self.state.lock().expect("transaction lock");
        state.explicit = false;
        state.staged.clear();
        state.savepoints.clear();
    }

    /// `SAVEPOINT name`: remembers the staged state.
    pub fn savepoint(&self, name: &str) -> Result<(), SavepointError> {
        let mut state = self.state.lock().expect("transaction lock");
        if !state.explicit {
            return Err(SavepointError::NoTransaction);
        }
        let snapshot = state.staged.clone();
        state.savepoints.push((name.to_owned(), snapshot));
        Ok(())
    }

    /// `ROLLBACK TO SAVEPOINT name`: restores the staged state the savepoint remembered and
    /// forgets the savepoints set after it; the savepoint itself stays open.
    pub fn rollback_to(&self, name: &str) -> Result<(), SavepointError> {
        let mut state = self.state.lock().expect("transaction lock");
        let at = Self::find_savepoint(&state, name)?;
        state.savepoints.truncate(at + 1);
        state.staged = state.savepoints[at].1.clone();
        Ok(())
    }

    /// `RELEASE SAVEPOINT name`: forgets the savepoint and those set after it, keeping what
    /// was staged since.
    pub fn release(&self, name: &str) -> Result<(), SavepointError> {
        let mut state = self.state.lock().expect("transaction lock");
        let at = Self::find_savepoint(&state, name)?;
        state.savepoints.truncate(at);
        Ok(())
    }

    /// Whether `ROLLBACK TO name` would find its savepoint.
    pub fn has_savepoint(&self, name: &str) -> bool {
        let state = self.state.lock().expect("transaction lock");
        Self::find_savepoint(&state, name).is_ok()
    }

    fn find_savepoint(state: &State, name: &str) -> Result<usize, SavepointError> {
        if !state.explicit {
            return Err(SavepointError::NoTransaction);
        }
        state
            .savepoints
            .iter()
            .rposition(|(open, _)| open == name)
            .ok_or_else(|| SavepointError::NotFound(name.to_owned()))
    }

    /// `COMMIT`: writes every staged table in one atomic commit.
    pub async fn commit(&self) -> Result<()> {
        let staged: Vec<Staged> = {
            let mut state = self.state.lock().expect("transaction lock");
            state.explicit = false;
            state.savepoints.clear();
            std::mem::take(&mut state.staged).into_values().collect()
        };
        commit_staged(staged).await
    }

    /// The rows of `table` as this transaction sees them, if it has staged changes to it.
    pub fn staged_batches(&self, key: &(String, String)) -> Option<Vec<RecordBatch>> {
        let state = self.state.lock().expect("transaction lock");
        state.staged.get(key).map(|staged| staged.batches.clone())
    }

    /// Applies `change` to this transaction's view of `table`. Outside an explicit block the
    /// change commits at once, under the table's writer lock so concurrent statements queue
    /// rather than conflict.
    pub async fn write<T: Send + 'static>(
        &self,
        table: &Arc<TableShared>,
        change: impl FnOnce(&mut Staged) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let explicit = self.in_explicit_block();
        if !explicit {
            let _writer = table.writer.lock().await;
            let mut staged = Staged::from_committed(table.clone(), &table.committed());
            let result = change(&mut staged)?;
            if staged.rewritten || !staged.appended.is_empty() {
                commit_blocking(vec![staged]).await?;
            }
            return Ok(result);
        }
        let key = table.key();
        let mut state = self.state.lock().expect("transaction lock");
        let staged = state
            .staged
            .entry(key)
            .or_insert_with(|| Staged::from_committed(table.clone(), &table.committed()));
        let mut attempt = staged.clone();
        let result = change(&mut attempt)?;
        *staged = attempt;
        Ok(result)
    }
}

async fn commit_staged(mut staged: Vec<Staged>) -> Result<()> {
    if staged.is_empty() {
        return Ok(());
    }
    staged.sort_by_key(|s| s.table.key());
    // Lock writers in key order so two committing transactions cannot deadlock.
    let mut guards = Vec::with_capacity(staged.len());
    for s in &staged {
        guards.push(s.table.writer.clone().lock_owned().await);
    }
    commit_blocking(staged).await
}

async fn commit_blocking(staged: Vec<Staged>) -> Result<()> {
    tokio::task::spawn_blocking(move || commit_now(staged))
        .await
        .map_err(|err| {
            SemsqlError::Storage(format!("commit task failed: {err}")).into_datafusion()
        })?
        .map_err(SemsqlError::into_datafusion)
}

/// Writes data files for every staged table, then one manifest naming them. Callers hold the
/// tables' writer locks.
fn commit_now(staged: Vec<Staged>) -> Result<(), SemsqlError> {
    struct Planned {
        staged: Staged,
        from_version: u64,
        batches: Vec<RecordBatch>,
        files: Vec<String>,
        written: Option<String>,
        replaced: Vec<String>,
    }
    let Some(first) = staged.first() else {
        return Ok(());
    };
    let store = first.table.store.clone();
    let mut planned = Vec::with_capacity(staged.len());
    let cleanup = |planned: &[Planned]| {
        let written: Vec<String> = planned.iter().filter_map(|p| p.written.clone()).collect();
        store.remove_data_files(&written);
    };
    for s in staged {
        let current = s.table.committed();
        let (batches, to_write, mut files, replaced) = if s.rewritten {
            if current.version != s.base_version {
                cleanup(&planned);
                return Err(SemsqlError::SerializationFailure(s.table.display_name()));
            }
            (
                s.batches.clone(),
                s.batches.clone(),
                Vec::new(),
                current.files.clone(),
            )
        } else {
            let mut batches = current.batches.clone();
            batches.extend(s.appended.iter().cloned());
            // Others may have committed rows with the same keys since this transaction
            // checked its own.
            if current.version != s.base_version {
                if let Err(err) = s.table.check_keys(&batches) {
                    cleanup(&planned);
                    return Err(err);
                }
            }
            (
                batches,
                s.appended.clone(),
                current.files.clone(),
                Vec::new(),
            )
        };
        let written = match s.table.store.write_data_file(&s.table.schema, &to_write) {
            Ok(written) => written,
            Err(err) => {
                cleanup(&planned);
                return Err(err);
            }
        };
        files.extend(written.iter().cloned());
        planned.push(Planned {
            from_version: current.version,
            staged: s,
            batches,
            files,
            written,
            replaced,
        });
    }
    let committed = store.commit(|manifest| {
        let mut versions = Vec::with_capacity(planned.len());
        for p in &planned {
            let (schema, name) = p.staged.table.key();
            // The table may have been dropped (and made again) since the transaction wrote
            // to it: then its rows have nowhere to go.
            let entry = manifest
                .schemas
                .get_mut(&schema)
                .and_then(|entry| entry.tables.get_mut(&name))
                .filter(|entry| entry.id == p.staged.table.id)
                .ok_or_else(|| SemsqlError::SerializationFailure(p.staged.table.display_name()))?;
            entry.files = p.files.clone();
            entry.version += 1;
            versions.push(entry.version);
        }
        Ok(versions)
    });
    let versions = match committed {
        Ok(versions) => versions,
        Err(err) => {
            cleanup(&planned);
            return Err(err);
        }
    };
    for (p, version) in planned.into_iter().zip(versions) {
        let data = TableData {
            version,
            batches: p.batches,
            files: p.files,
        };
        // Indexes follow before the rows are published, so that a statement that sees the new
        // rows finds its indexes caught up.
        for index in p.staged.table.indexes() {
            index.follow(p.from_version, &p.staged.changes, &data);
        }
        p.staged.table.publish(data);
        store.remove_data_files(&p.replaced);
    }
    Ok(())
}
