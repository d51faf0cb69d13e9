//! `rapport health`: asks a server's gRPC health service (`grpc.health.v1`), for container
//! HEALTHCHECKs and scripts. Exit status 0 when SERVING, 1 otherwise.

use super::client::{connect_error, display_address, server_url, status_error};
use clap::Args;
use std::time::Duration;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// Options of `health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Server address, HOST:PORT or a URL.
    #[arg(long, default_value = "127.0.0.1:50051", env = "RAPPORT_SERVER")]
    pub server: String,
    /// Service to check, e.g. rapport.v1.IngestService [default: the whole server].
    #[arg(long, default_value = "")]
    pub service: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 3)]
    pub timeout_seconds: u64,
}

/// Prints the serving status; an error unless SERVING.
pub async fn run(args: HealthArgs) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(args.timeout_seconds.max(1));
    let address = display_address(&args.server);
    let check = async {
        let channel = tonic::transport::Endpoint::from_shared(server_url(&args.server, false))
            .map_err(|_| anyhow::anyhow!("invalid --server {:?}: expected HOST:PORT", args.server))?
            .connect_timeout(timeout)
            .connect()
            .await
            .map_err(|error| connect_error(&address, &error))?;
        let response = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: args.service.clone(),
            })
            .await
            .map_err(|status| status_error(&address, "the health check", &status))?
            .into_inner();
        anyhow::Ok(response.status)
    };
    let status = tokio::time::timeout(timeout, check).await.map_err(|_| {
        anyhow::anyhow!(
            "no health answer from {address} within {} s",
            timeout.as_secs()
        )
    })??;
    let name = ServingStatus::try_from(status).map_or("UNKNOWN", |s| s.as_str_name());
    outln!("{name}");
    anyhow::ensure!(
        status == ServingStatus::Serving as i32,
        "not serving: {name}"
    );
    Ok(())
}
