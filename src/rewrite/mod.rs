//! The LLM query rewriter (issue 6), behind a verifier that never accepts a wrong rewrite.
//!
//! Built so far: [`verify::static_checks`], the checks that need neither data nor a model (V0
//! syntax, V1 plan and output schema, V2 no-op), and [`mutants::mutants`], the wrong versions of
//! a query that the result check's test databases must tell apart from it. Candidate generation, the result and speed
//! checks, the rewrite cache and `EXPLAIN REWRITE` are not built yet; nothing calls this module
//! from SQL.

pub mod mutants;
pub mod verify;
