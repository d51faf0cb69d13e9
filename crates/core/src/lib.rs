//! rapport's core: everything between the transport and the disk, with no transport in it.
//!
//! Pipeline: [`domain`] types (validated interactions, actions) → [`scoring`] (pure functions of
//! events and time) → [`store`] (per-tenant state and ranking) → [`durability`] (log and
//! snapshots), with [`engine`] the facade that ingest and queries both go through, and
//! [`telemetry`] the one definition of every metric. [`config`] holds every section of the
//! configuration file; [`calendar`] the business-hours calendars it validates.
//!
//! The sentiment backends sit below this crate (`rapport-sentiment`); the gRPC server above it
//! (`rapport-server`). This crate depends on neither tonic, hyper, axum nor clap.

#![warn(missing_docs)]

pub mod attributes;
pub mod calendar;
pub mod config;
pub mod domain;
pub mod durability;
pub mod engine;
pub mod identity;
pub mod scoring;
pub mod segments;
pub mod store;
pub mod telemetry;

/// The sentiment stage this crate consumes (re-exported so paths read `rapport_core::sentiment`).
pub use rapport_sentiment as sentiment;
