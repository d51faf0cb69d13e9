//! rapport: real-time engagement and sentiment scoring.
//!
//! This package is the `rapport` command (serve, send, top, watch, simulate, loadgen, train…);
//! its library is the CLI plus one name for each layer below it, so tools and tests write
//! `rapport::store` whatever crate holds it:
//!
//! - `rapport-sentiment` ([`sentiment`]): the classification trait and its backends;
//! - `rapport-core` ([`domain`], [`config`], [`scoring`], [`store`], [`durability`], [`engine`],
//!   [`telemetry`]): state and scores, no transport;
//! - `rapport-server` ([`api`], [`server`], [`pb`], [`cluster`]): the gRPC services and cluster mode.

#![warn(missing_docs)]

pub mod cli;

pub use rapport_core::{
    attributes, calendar, config, domain, durability, engine, identity, scoring, segments, store,
    telemetry,
};
pub use rapport_sentiment as sentiment;
pub use rapport_server::{api, cluster, pb, server};
