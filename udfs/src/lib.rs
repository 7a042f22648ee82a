//! semsql's SQL functions: one function per file (`semantic/`, `vector/`), each with its
//! documentation on its struct. [`functions`] lists every one for the engine to register.
//!
//! Functions that ask a language model depend on [`lm::LmRuntime`] only, never on an HTTP
//! client: the server hands them its runtime.

pub mod lm;
pub mod semantic;
pub mod vector;

use std::sync::Arc;

use datafusion::logical_expr::ScalarUDF;

/// Every SQL function this crate provides, calling language models through `runtime`.
pub fn functions(runtime: Arc<dyn lm::LmRuntime>) -> Vec<Arc<ScalarUDF>> {
    let mut all = semantic::functions(runtime.clone());
    all.extend(vector::functions(runtime));
    all
}

/// Every aggregate function this crate provides.
pub fn aggregate_functions() -> Vec<Arc<datafusion::logical_expr::AggregateUDF>> {
    semantic::aggregate_functions()
}

/// The names of the functions that call a language model (the server reports usage and
/// progress for the queries that call one).
pub fn lm_function_names() -> &'static [&'static str] {
    &semantic::NAMES
}
