//! Test harness: a real rapport server on 127.0.0.1:0 and real tonic clients.
#![allow(dead_code)]

use rapport::config::Config;
use rapport::pb;
use rapport::pb::ingest_service_client::IngestServiceClient;
use rapport::pb::scoring_service_client::ScoringServiceClient;
use rapport::pb::sentiment_service_client::SentimentServiceClient;
use rapport::server::RunningServer;
use std::time::Duration;
use tonic::transport::Channel;

/// A loopback port free just now (another process may take it before it is bound: retry).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// 2026-01-01T00:00:00Z in milliseconds: tests stamp events relative to it.
pub const T0_MS: i64 = 1_767_225_600_000;
pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// A running server with connected clients.
pub struct TestServer {
    pub server: RunningServer,
    pub ingest: IngestServiceClient<Channel>,
    pub scoring: ScoringServiceClient<Channel>,
    pub sentiment: SentimentServiceClient<Channel>,
    pub channel: Channel,
}

/// Default config on loopback ports chosen by the OS.
pub fn loopback_config() -> Config {
    let mut config = Config::default();
    config.server.grpc_addr = "127.0.0.1:0".parse().unwrap();
    config.server.metrics_addr = "127.0.0.1:0".parse().unwrap();
    config
}

pub async fn start() -> TestServer {
    start_with(loopback_config()).await
}

pub async fn start_with(config: Config) -> TestServer {
    let model = rapport::sentiment::load(config.server.sentiment, &config.server.models_dir())
        .expect("model loads");
    start_with_model(config, model).await
}

/// A server classifying with `model` instead of the configured backend.
pub async fn start_with_model(
    config: Config,
    model: std::sync::Arc<dyn rapport::sentiment::SentimentModel>,
) -> TestServer {
    let server = rapport::server::start(&config, model)
        .await
        .expect("server starts");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.grpc_addr))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("client connects");
    TestServer {
        ingest: IngestServiceClient::new(channel.clone()),
        scoring: ScoringServiceClient::new(channel.clone()),
        sentiment: SentimentServiceClient::new(channel.clone()),
        channel,
        server,
    }
}

pub fn ts(ms: i64) -> prost_types::Timestamp {
    rapport::api::convert::to_timestamp(ms)
}

/// An inbound interaction builder with sensible defaults.
pub fn event(tenant: &str, customer: &str, event_id: &str, at_ms: i64) -> pb::Interaction {
    pb::Interaction {
        event_id: event_id.to_string(),
        tenant_id: tenant.to_string(),
        customer_id: customer.to_string(),
        channel: pb::Channel::Twitter as i32,
        kind: pb::InteractionKind::Mention as i32,
        direction: pb::Direction::Inbound as i32,
        occurred_at: Some(ts(at_ms)),
        text: String::new(),
        value: 0.0,
        author_followers: 0,
        thread_id: String::new(),
        reply_need: pb::ReplyNeed::Unspecified as i32,
        identifiers: Vec::new(),
        agent_id: String::new(),
    }
}

pub fn with_text(mut interaction: pb::Interaction, text: &str) -> pb::Interaction {
    interaction.text = text.to_string();
    interaction
}

pub fn kind(mut interaction: pb::Interaction, kind: pb::InteractionKind) -> pb::Interaction {
    interaction.kind = kind as i32;
    interaction
}

pub fn outbound(mut interaction: pb::Interaction) -> pb::Interaction {
    interaction.direction = pb::Direction::Outbound as i32;
    interaction
}

impl TestServer {
    pub async fn ingest_all(&mut self, interactions: Vec<pb::Interaction>) -> pb::IngestSummary {
        self.ingest
            .ingest(tokio_stream::iter(interactions))
            .await
            .expect("Ingest succeeds")
            .into_inner()
    }

    pub async fn customer(
        &mut self,
        tenant: &str,
        customer: &str,
        as_of_ms: i64,
    ) -> pb::CustomerScore {
        self.scoring
            .get_customer(pb::GetCustomerRequest {
                tenant_id: tenant.to_string(),
                customer_id: customer.to_string(),
                as_of: Some(ts(as_of_ms)),
            })
            .await
            .expect("GetCustomer succeeds")
            .into_inner()
    }

    pub async fn top(&mut self, tenant: &str, limit: u32, as_of_ms: i64) -> Vec<pb::CustomerScore> {
        self.scoring
            .top_customers(pb::TopCustomersRequest {
                tenant_id: tenant.to_string(),
                limit,
                action: 0,
                min_retention_risk: 0.0,
                as_of: Some(ts(as_of_ms)),
                exclude_claimed: false,
                page_token: String::new(),
                segment: String::new(),
                channel: 0,
                intent: String::new(),
                language: String::new(),
            })
            .await
            .expect("TopCustomers succeeds")
            .into_inner()
            .customers
    }

    /// Fetches /metrics over plain HTTP/1.0 from the metrics listener.
    pub async fn scrape_metrics(&self) -> String {
        scrape_metrics_at(self.server.metrics_addr).await
    }
}

/// Fetches /metrics over plain HTTP/1.0 from a metrics listener.
pub async fn scrape_metrics_at(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .expect("metrics answer in time")
    .unwrap();
    assert!(
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"),
        "{response}"
    );
    response
}

pub fn action(score: &pb::CustomerScore) -> pb::Action {
    pb::Action::try_from(score.action).unwrap()
}

pub fn reason<'a>(score: &'a pb::CustomerScore, factor: &str) -> Option<&'a pb::Reason> {
    score.reasons.iter().find(|reason| reason.factor == factor)
}
