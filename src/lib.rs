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
//!   their storage (Parquet files and an atomically replaced manifest), transactions, demo data.

pub mod config;
pub mod engine;
pub mod error;
pub mod server;
