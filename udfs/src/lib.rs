//! semsql's SQL functions: one function per file (`semantic/`, `vector/`), each with its
//! documentation on its struct. [`functions`] lists every one for the engine to register.
//!
//! The semantic (language-model) and vector functions arrive with their issues; until then the
//! list is empty and calling one of them fails as an unknown function (SQLSTATE 42883).

use std::sync::Arc;

use datafusion::logical_expr::ScalarUDF;

/// Every SQL function this crate provides.
pub fn functions() -> Vec<Arc<ScalarUDF>> {
    Vec::new()
}
