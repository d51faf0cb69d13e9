//! Client subcommands: `send`, `top`, `watch`.

use crate::api::convert::to_timestamp;
use crate::cli::{SendArgs, ServerArgs, TopArgs, WatchArgs};
use crate::pb;
use crate::pb::ingest_service_client::IngestServiceClient;
use crate::pb::scoring_service_client::ScoringServiceClient;
use anyhow::Context;
use serde::Deserialize;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// One line of a `send` file: an Interaction with enums by short name and RFC 3339 time.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InteractionLine {
    pub event_id: String,
    pub tenant_id: String,
    pub customer_id: String,
    /// e.g. "twitter", "review_site".
    pub channel: String,
    /// e.g. "mention", "support_ticket".
    pub kind: String,
    /// "inbound" or "outbound".
    pub direction: String,
    /// RFC 3339, e.g. "2026-11-23T08:00:00Z".
    pub occurred_at: String,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub value: f64,
    #[serde(default)]
    pub author_followers: u64,
    #[serde(default)]
    pub thread_id: String,
}

fn enum_number(
    prefix: &str,
    name: &str,
    lookup: impl Fn(&str) -> Option<i32>,
) -> anyhow::Result<i32> {
    let full = format!("{prefix}_{}", name.to_ascii_uppercase());
    lookup(&full).with_context(|| format!("unknown {} {name:?}", prefix.to_ascii_lowercase()))
}

impl InteractionLine {
    /// The proto message; unknown enum names are errors.
    pub fn into_pb(self) -> anyhow::Result<pb::Interaction> {
        let occurred_at = humantime::parse_rfc3339_weak(&self.occurred_at)
            .with_context(|| format!("occurred_at {:?} is not RFC 3339", self.occurred_at))?;
        let occurred_at_ms = occurred_at
            .duration_since(std::time::UNIX_EPOCH)
            .context("occurred_at before 1970")?
            .as_millis();
        Ok(pb::Interaction {
            reply_need: pb::ReplyNeed::Unspecified as i32,
            event_id: self.event_id,
            tenant_id: self.tenant_id,
            customer_id: self.customer_id,
            channel: enum_number("CHANNEL", &self.channel, |n| {
                pb::Channel::from_str_name(n).map(|v| v as i32)
            })?,
            kind: enum_number("INTERACTION_KIND", &self.kind, |n| {
                pb::InteractionKind::from_str_name(n).map(|v| v as i32)
            })?,
            direction: enum_number("DIRECTION", &self.direction, |n| {
                pb::Direction::from_str_name(n).map(|v| v as i32)
            })?,
            occurred_at: Some(to_timestamp(i64::try_from(occurred_at_ms)?)),
            text: self.text,
            value: self.value,
            author_followers: self.author_followers,
            thread_id: self.thread_id,
        })
    }
}

pub(super) async fn send(args: SendArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let mut interactions = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed: InteractionLine = serde_json::from_str(line).with_context(|| {
            format!(
                "{}:{}: invalid interaction",
                args.file.display(),
                number + 1
            )
        })?;
        interactions.push(
            parsed
                .into_pb()
                .with_context(|| format!("{}:{}", args.file.display(), number + 1))?,
        );
    }
    let mut client = IngestServiceClient::new(args.server.connect().await?);
    let summary = client
        .ingest(tokio_stream::iter(interactions))
        .await
        .context("Ingest failed")?
        .into_inner();
    println!(
        "accepted {}  duplicates {}  rejected {}",
        summary.accepted, summary.duplicates, summary.rejected
    );
    for rejection in summary.rejections {
        println!(
            "  #{} {}: {}",
            rejection.index, rejection.event_id, rejection.reason
        );
    }
    Ok(())
}

fn action_name(number: i32) -> String {
    pb::Action::try_from(number).map_or_else(
        |_| number.to_string(),
        |action| {
            action
                .as_str_name()
                .trim_start_matches("ACTION_")
                .to_string()
        },
    )
}

fn print_score(score: &pb::CustomerScore) {
    println!(
        "{:<24} {:<9} priority {:.3}  risk {:.3}  engagement {:5.1}  sentiment {:+.2} (recent {:+.2})",
        score.customer_id,
        action_name(score.action),
        score.priority,
        score.retention_risk,
        score.engagement,
        score.sentiment,
        score.sentiment_recent
    );
    for reason in &score.reasons {
        println!(
            "    {:<20} {:+.3}  {}",
            reason.factor, reason.contribution, reason.detail
        );
    }
}

pub(super) async fn top(args: TopArgs) -> anyhow::Result<()> {
    let action = match &args.action {
        Some(name) => enum_number("ACTION", name, |n| {
            pb::Action::from_str_name(n).map(|v| v as i32)
        })?,
        None => 0,
    };
    let mut client = ScoringServiceClient::new(args.server.connect().await?);
    let response = client
        .top_customers(pb::TopCustomersRequest {
            tenant_id: args.tenant,
            limit: args.limit,
            action,
            min_retention_risk: 0.0,
            as_of: None,
        })
        .await
        .context("TopCustomers failed")?
        .into_inner();
    for score in &response.customers {
        print_score(score);
    }
    Ok(())
}

pub(super) async fn watch(args: WatchArgs) -> anyhow::Result<()> {
    let mut client = ScoringServiceClient::new(args.server.connect().await?);
    let mut updates = client
        .watch_priorities(pb::WatchPrioritiesRequest {
            tenant_id: args.tenant,
            min_priority: args.min_priority,
        })
        .await
        .context("WatchPriorities failed")?
        .into_inner();
    while let Some(update) = updates.message().await? {
        if let Some(score) = &update.score {
            println!(
                "event {}: {} -> {} ({:.3} -> {:.3})",
                update.event_id,
                action_name(update.previous_action),
                action_name(score.action),
                update.previous_priority,
                score.priority
            );
            print_score(score);
        }
    }
    Ok(())
}

/// Adds `authorization: Bearer <token>` to every call when a token is set.
#[derive(Clone, Debug)]
pub struct Bearer(Option<tonic::metadata::AsciiMetadataValue>);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A connection to the server carrying the caller's token.
pub type Connection = InterceptedService<Channel, Bearer>;

impl ServerArgs {
    /// Connects (with TLS when `--tls-ca` or `--tls-cert` is given) and attaches the token.
    pub async fn connect(&self) -> anyhow::Result<Connection> {
        let mut endpoint = Endpoint::from_shared(self.server.clone())
            .with_context(|| format!("invalid server address {}", self.server))?;
        if self.tls_ca.is_some() || self.tls_cert.is_some() {
            let mut tls = ClientTlsConfig::new();
            if let Some(ca) = &self.tls_ca {
                tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
            }
            if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
                tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            endpoint = endpoint.tls_config(tls).context("invalid TLS settings")?;
        }
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("cannot connect to {}", self.server))?;
        let bearer = self
            .token
            .as_deref()
            .map(|token| format!("Bearer {token}").parse())
            .transpose()
            .context("--token must be printable ASCII")?;
        Ok(InterceptedService::new(channel, Bearer(bearer)))
    }
}

fn read(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}
