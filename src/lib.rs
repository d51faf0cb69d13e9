//! rapport: real-time engagement and sentiment scoring.
//!
//! Pipeline, one folder per stage: `api/` (gRPC transport) → [`sentiment`] (one trait, backends
//! beside it) → [`scoring`] (pure functions of events and time) → [`store`] (state and ranking),
//! with [`engine`] tying classification and the store together behind the transport.

pub mod api;
pub mod cli;
pub mod config;
pub mod domain;
pub mod durability;
pub mod engine;
pub mod scoring;
pub mod sentiment;
pub mod server;
pub mod store;
pub mod telemetry;

/// Generated protobuf and gRPC code for `rapport.v1`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("rapport.v1");

    /// Encoded descriptors of the rapport protos, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/rapport_descriptor.bin"));
}
