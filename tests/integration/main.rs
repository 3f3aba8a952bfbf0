//! Integration tests against a real Kafka-protocol broker (tansu over TCP) and a real
//! RocksDB in a temp dir. One binary, one shared harness; every test starts its own broker.

mod autopilot;
mod cli;
mod faults;
mod harness;
mod pipeline;
mod scopes;
mod supervision;
