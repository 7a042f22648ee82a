//! Integration tests: a real server on a free port, real clients over the socket.

#[path = "../support/mod.rs"]
mod support;

mod auth;
mod bad_input;
mod clients;
mod conformance;
mod correctness;
mod durability;
mod jdbc_clients;
mod llm;
mod node_clients;
mod postgres_compat;
mod psql;
mod python_clients;
mod readme;
mod real_model;
mod rewrite;
mod rewrite_held_out;
mod security;
mod sessions;
mod slt;
mod vectors;
mod wire;
