//! MPR, the Model/Policy Registry: immutable model and policy bundles, a governed
//! lifecycle, and a deterministic answer to "which bundle is ACTIVE for this scope?".
//!
//! - [`domain`]: the pure core. Bundles, commands, events, `decide` + `apply`, roles,
//!   catalog, resolution. No I/O.
//! - [`codec`]: Avro single-object encoding and JSON for commands and events.
//! - [`log`]: Kafka topics, the per-partition command processor, derived outputs, the
//!   view applier.
//! - [`view`]: the RocksDB materialized view built only from the log, and its queries.
//! - [`api`]: the axum HTTP API (resolve, queries, commands, operations, OpenAPI).
//! - [`cli`]: the `mpr` client subcommands. [`app`]: wiring of the running service.
//! - [`config`], [`metrics`]: layered configuration; Prometheus metrics.
//! - `testkit` (feature `testkit`, on in tests): sample bundles and commands for tests,
//!   benchmarks and examples; not part of the product.

pub mod api;
pub mod app;
pub mod cli;
pub mod codec;
pub mod config;
pub mod console;
pub mod domain;
pub mod log;
pub mod metrics;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod view;
