//! Integration tests of the `sluice` binary: each test runs it in its own temporary home.

// Helpers unwrap as freely as the tests themselves (clippy.toml: `allow-unwrap-in-tests`).
#![allow(clippy::unwrap_used)]

mod cache;
mod cluster;
mod databases;
mod failure;
mod gbdt;
mod kill;
mod monitor;
mod object_store;
mod predict;
mod quickstart;
mod registry;
mod regression;
mod schema;
mod serve;
mod sources;
mod spec_errors;
mod support;
mod transforms;
mod tune;
mod validate;
