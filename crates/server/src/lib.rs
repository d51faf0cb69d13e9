//! rapport's gRPC server: tonic services over the core's engine, the proto conversions, the one
//! error-to-status map, admission and access control.

#![warn(missing_docs)]

pub mod api;
pub mod cluster;
pub mod server;

/// Generated protobuf and gRPC code for `rapport.v1`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("rapport.v1");

    /// Encoded descriptors of the rapport protos, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/rapport_descriptor.bin"));
}

pub use rapport_core::{config, domain, durability, engine, scoring, store, telemetry};
pub use rapport_sentiment as sentiment;
