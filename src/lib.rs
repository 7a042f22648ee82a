//! # semsql
//!
//! A PostgreSQL-wire-compatible SQL server on Apache DataFusion, for SQL with language-model
//! operators and vector search.
//!
//! # Layout
//!
//! Data flows one way: client → [`server`] → [`engine`] → storage. Nothing below calls back up.
//!
//! - [`config`]: the configuration file, `SEMSQL_*` environment and flags, validated once.
//! - [`error`]: semsql's error type and the one table mapping every error to a SQLSTATE.
//! - [`server`]: listening, TLS, authentication, the connection limit, shutdown, and the pgwire
//!   handlers with their statement hooks (transactions, `SHOW`, ...).
//! - [`engine`]: the DataFusion session per connection, the durable catalog, managed tables and
//!   their storage (Parquet files and an atomically replaced manifest), transactions, demo data,
//!   and the read-only `semsql.*` system tables.
//! - [`llm`]: the LM runtime the semantic functions (crate `semsql-udfs`) call: named models
//!   over OpenAI-compatible HTTP, batching, dedup, the two-tier cache, rate limits, retries,
//!   accounting and budgets.
//! - [`planner`]: optimizer rules for semantic work (cheap predicates before LM calls) and
//!   pgvector's syntax.
//! - [`vector`]: vector indexes (the HNSW graph, kept in step with the tables).
//! - [`rewrite`]: the LLM query rewriter, its verifier and its prover.
//! - [`fake_llm`]: a fake OpenAI-compatible server (also the `fake-llm` binary) for tests and
//!   benchmarks.

pub mod access;
pub mod config;
pub mod engine;
pub mod error;
pub mod fake_llm;
pub mod llm;
pub mod planner;
pub mod rewrite;
pub mod server;
pub mod vector;
