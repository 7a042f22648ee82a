//! PostgreSQL's session-level advisory locks: `pg_advisory_lock(key)`, `pg_try_advisory_lock`,
//! `pg_advisory_unlock`, `pg_advisory_unlock_all` (asyncpg's pools call the last one each time
//! a connection goes back to the pool).
//!
//! The locks are real: one table for the server, each lock held by one session, re-entrant
//! within it (taken twice, released twice), and released when the session ends. A session
//! waiting in `pg_advisory_lock` waits asynchronously, so cancelling the query or its
//! statement timeout stops the wait.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray, BooleanArray, NullArray};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{exec_err, Result};
use datafusion::logical_expr::async_udf::{AsyncScalarUDF, AsyncScalarUDFImpl};
use datafusion::logical_expr::{
    create_udf, ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

/// Which session holds each key, and how many times it took it.
#[derive(Debug, Default)]
pub struct AdvisoryLockTable {
    held: Mutex<HashMap<i64, (u64, u64)>>,
    next_session: AtomicU64,
}

impl AdvisoryLockTable {
    /// A handle for one session; dropping it releases what the session holds.
    pub fn session(self: &Arc<Self>) -> Arc<SessionLocks> {
        Arc::new(SessionLocks {
            table: self.clone(),
            session: self.next_session.fetch_add(1, Ordering::Relaxed),
        })
    }
}

/// One session's view of the lock table.
#[derive(Debug)]
pub struct SessionLocks {
    table: Arc<AdvisoryLockTable>,
    session: u64,
}

impl SessionLocks {
    fn try_lock(&self, key: i64) -> bool {
        let mut held = self.table.held.lock().expect("advisory lock table");
        match held.get_mut(&key) {
            Some((owner, count)) if *owner == self.session => {
                *count += 1;
                true
            }
            Some(_) => false,
            None => {
                held.insert(key, (self.session, 1));
                true
            }
        }
    }

    fn unlock(&self, key: i64) -> bool {
        let mut held = self.table.held.lock().expect("advisory lock table");
        match held.get_mut(&key) {
            Some((owner, count)) if *owner == self.session => {
                *count -= 1;
                if *count == 0 {
                    held.remove(&key);
                }
                true
            }
            _ => false,
        }
    }

    fn unlock_all(&self) {
        let mut held = self.table.held.lock().expect("advisory lock table");
        held.retain(|_, (owner, _)| *owner != self.session);
    }
}

impl Drop for SessionLocks {
    fn drop(&mut self) {
        self.unlock_all();
    }
}

/// How often a waiting `pg_advisory_lock` looks again.
const WAIT_INTERVAL: Duration = Duration::from_millis(10);

fn keys(args: &ScalarFunctionArgs) -> Result<Vec<Option<i64>>> {
    let arrays = ColumnarValue::values_to_arrays(&args.args)?;
    let Some(keys) = arrays.first() else {
        return exec_err!("an advisory lock function needs a key");
    };
    Ok(keys.as_primitive::<Int64Type>().iter().collect())
}

/// `pg_advisory_lock(bigint)`: waits until the key is free, then holds it.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgAdvisoryLock {
    signature: Signature,
    locks: LocksRef,
}

/// Compares by identity, as DataFusion asks functions to be comparable.
#[derive(Debug, Clone)]
struct LocksRef(Arc<SessionLocks>);

impl PartialEq for LocksRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for LocksRef {}

impl std::hash::Hash for LocksRef {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.session.hash(state);
    }
}

impl ScalarUDFImpl for PgAdvisoryLock {
    fn name(&self) -> &str {
        "pg_advisory_lock"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Null)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        exec_err!("pg_advisory_lock runs asynchronously")
    }
}

#[async_trait]
impl AsyncScalarUDFImpl for PgAdvisoryLock {
    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let keys = keys(&args)?;
        for key in keys.iter().flatten() {
            while !self.locks.0.try_lock(*key) {
                tokio::time::sleep(WAIT_INTERVAL).await;
            }
        }
        Ok(ColumnarValue::Array(Arc::new(NullArray::new(keys.len()))))
    }
}

/// Registers the advisory lock functions on a session, bound to its `locks`.
pub fn register(ctx: &SessionContext, locks: Arc<SessionLocks>) {
    let bigint = vec![DataType::Int64];
    ctx.register_udf(
        AsyncScalarUDF::new(Arc::new(PgAdvisoryLock {
            signature: Signature::exact(bigint.clone(), Volatility::Volatile),
            locks: LocksRef(locks.clone()),
        }))
        .into_scalar_udf(),
    );
    let try_locks = locks.clone();
    ctx.register_udf(per_key("pg_try_advisory_lock", move |key| {
        try_locks.try_lock(key)
    }));
    let unlocks = locks.clone();
    ctx.register_udf(per_key("pg_advisory_unlock", move |key| {
        unlocks.unlock(key)
    }));
    ctx.register_udf(create_udf(
        "pg_advisory_unlock_all",
        vec![],
        DataType::Null,
        Volatility::Volatile,
        Arc::new(move |args| {
            locks.unlock_all();
            let rows = ColumnarValue::values_to_arrays(args)?
                .first()
                .map_or(1, |array| array.len());
            Ok(ColumnarValue::Array(Arc::new(NullArray::new(rows))))
        }),
    ));
}

/// A `bool`-returning function of one `bigint` key.
fn per_key(name: &str, apply: impl Fn(i64) -> bool + Send + Sync + 'static) -> ScalarUDF {
    create_udf(
        name,
        vec![DataType::Int64],
        DataType::Boolean,
        Volatility::Volatile,
        Arc::new(move |args| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let results: BooleanArray = arrays[0]
                .as_primitive::<Int64Type>()
                .iter()
                .map(|key| key.map(&apply))
                .collect();
            Ok(ColumnarValue::Array(Arc::new(results)))
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_are_per_session_reentrant_and_released_on_drop() {
        let table = Arc::new(AdvisoryLockTable::default());
        let first = table.session();
        let second = table.session();
        assert!(first.try_lock(7));
        assert!(first.try_lock(7));
        assert!(!second.try_lock(7));
        assert!(first.unlock(7));
        assert!(!second.try_lock(7), "still held once");
        assert!(!second.unlock(7), "not the holder");
        assert!(first.unlock(7));
        assert!(second.try_lock(7));
        assert!(first.try_lock(8));
        drop(first);
        assert!(second.try_lock(8), "released with the session");
    }
}
