//! Client subcommands: `send`, `top`, `customer`, `watch`; their errors in one line each.

use crate::api::convert::to_timestamp;
use crate::cli::{CustomerArgs, SendArgs, ServerArgs, TopArgs, WatchArgs};
use crate::pb;
use crate::pb::ingest_service_client::IngestServiceClient;
use crate::pb::scoring_service_client::ScoringServiceClient;
use anyhow::Context;
use futures::StreamExt;
use serde::Deserialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// One line of a `send` file: an Interaction with enums by short name and RFC 3339 time.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InteractionLine {
    /// Unique per tenant; a repeated id is counted once.
    pub event_id: String,
    /// The tenant (brand) whose customer this is.
    pub tenant_id: String,
    /// The customer, unique within the tenant.
    pub customer_id: String,
    /// e.g. "twitter", "review_site".
    pub channel: String,
    /// e.g. "mention", "support_ticket".
    pub kind: String,
    /// "inbound" or "outbound".
    pub direction: String,
    /// RFC 3339, e.g. "2026-11-23T08:00:00Z".
    pub occurred_at: String,
    /// Message text (default: none).
    #[serde(default)]
    pub text: String,
    /// Money, for purchases (default 0).
    #[serde(default)]
    pub value: f64,
    /// The author's audience at the time of the event (default 0).
    #[serde(default)]
    pub author_followers: u64,
    /// Conversation thread (default: none).
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
        let occurred_at = humantime::parse_rfc3339_weak(&self.occurred_at).map_err(|_| {
            anyhow::anyhow!(
                "occurred_at {:?} is not RFC 3339 (2026-11-23T08:00:00Z)",
                self.occurred_at
            )
        })?;
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
            identifiers: Vec::new(),
            agent_id: String::new(),
        })
    }
}

/// Milliseconds since the epoch of a timestamp the CLI built itself.
fn timestamp_to_ms(timestamp: &prost_types::Timestamp) -> i64 {
    timestamp.seconds * 1000 + i64::from(timestamp.nanos / 1_000_000)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// A serde_json error without its " at line 1 column N" suffix (the file line is given apart).
fn json_error(error: &serde_json::Error) -> String {
    let message = error.to_string();
    match message.rsplit_once(" at line ") {
        Some((head, _)) => format!("{head} (column {})", error.column()),
        None => message,
    }
}

/// A parsed `send` file.
struct SendFile {
    /// The interactions, each with its 1-based line number.
    interactions: Vec<(usize, pb::Interaction)>,
    /// The malformed lines' 1-based numbers, with what is wrong with them.
    malformed: Vec<(usize, String)>,
}

/// Parses a `send` file, line by line.
fn parse_send_file(text: &str) -> SendFile {
    let mut interactions = Vec::new();
    let mut malformed = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let parsed = serde_json::from_str::<InteractionLine>(line)
            .map_err(|error| json_error(&error))
            .and_then(|parsed| parsed.into_pb().map_err(|error| format!("{error:#}")));
        match parsed {
            Ok(interaction) => interactions.push((line_number, interaction)),
            Err(reason) => malformed.push((line_number, reason)),
        }
    }
    SendFile {
        interactions,
        malformed,
    }
}

/// Moves every `occurred_at` by the same amount so that the latest is `now_ms`; returns the
/// shift in milliseconds.
fn shift_to_now(interactions: &mut [(usize, pb::Interaction)], now_ms: i64) -> i64 {
    let latest_ms = interactions
        .iter()
        .filter_map(|(_, interaction)| interaction.occurred_at.as_ref().map(timestamp_to_ms))
        .max();
    let Some(latest_ms) = latest_ms else {
        return 0;
    };
    let shift_ms = now_ms - latest_ms;
    for (_, interaction) in interactions.iter_mut() {
        if let Some(at) = &interaction.occurred_at {
            interaction.occurred_at = Some(to_timestamp(timestamp_to_ms(at) + shift_ms));
        }
    }
    shift_ms
}

/// A shift for people, with its sign: `+8days 31m 22s`.
fn signed_duration(ms: i64) -> String {
    let magnitude = Duration::from_secs(ms.unsigned_abs() / 1000);
    let sign = if ms < 0 { "-" } else { "+" };
    format!("{sign}{}", humantime::format_duration(magnitude))
}

/// How often `send` reports its progress on stderr.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

pub(super) async fn send(args: SendArgs) -> anyhow::Result<()> {
    let file = args.file.display().to_string();
    let text =
        std::fs::read_to_string(&args.file).with_context(|| format!("cannot read {file}"))?;
    let SendFile {
        mut interactions,
        malformed,
    } = parse_send_file(&text);
    if args.strict {
        if let Some((line_number, reason)) = malformed.first() {
            anyhow::bail!("{file}:{line_number}: {reason} (--strict: nothing was sent)");
        }
    }
    for (line_number, reason) in &malformed {
        eprintln!("{file}:{line_number}: {reason}");
    }
    if args.relative_to_now {
        let shift_ms = shift_to_now(&mut interactions, now_ms());
        eprintln!(
            "--relative-to-now: occurred_at shifted by {}",
            signed_duration(shift_ms)
        );
    }
    let line_numbers: Vec<usize> = interactions.iter().map(|(line, _)| *line).collect();
    let total = interactions.len();
    let address = args.server.address();
    let mut client = IngestServiceClient::new(args.server.connect().await?);

    let sent = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&sent);
    let events = tokio_stream::iter(interactions.into_iter().map(|(_, interaction)| interaction))
        .inspect(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        });
    let progress = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(PROGRESS_INTERVAL);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let done = sent.load(Ordering::Relaxed);
            eprintln!(
                "sent {done} of {total} events ({:.0} %)",
                100.0 * done as f64 / total.max(1) as f64
            );
        }
    });
    let result = client.ingest(events).await;
    progress.abort();
    let summary = result
        .map_err(|status| status_error(&address, "Ingest", &status))?
        .into_inner();

    outln!(
        "accepted {}  duplicates {}  rejected {}{}",
        summary.accepted,
        summary.duplicates,
        summary.rejected,
        if malformed.is_empty() {
            String::new()
        } else {
            format!("  malformed lines skipped {}", malformed.len())
        }
    );
    for rejection in &summary.rejections {
        let line = usize::try_from(rejection.index)
            .ok()
            .and_then(|index| line_numbers.get(index))
            .map_or_else(|| "?".to_string(), ToString::to_string);
        outln!(
            "  line {line} ({}): {}",
            rejection.event_id,
            rejection.reason
        );
    }
    let unlisted = summary
        .rejected
        .saturating_sub(summary.rejections.len() as u64);
    if unlisted > 0 {
        outln!("  … and {unlisted} more rejections (the server lists the first few)");
    }
    anyhow::ensure!(
        summary.rejected == 0 && malformed.is_empty(),
        "{} of {} lines of {file} were not applied (see above)",
        summary.rejected as usize + malformed.len(),
        total + malformed.len()
    );
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

/// A score's reasons split into (priority reasons, risk factors), by the group the server gives.
fn split_reasons(score: &pb::CustomerScore) -> (Vec<&pb::Reason>, Vec<&pb::Reason>) {
    score
        .reasons
        .iter()
        .partition(|reason| reason.group != pb::ReasonGroup::Risk as i32)
}

/// Width the CLI's text output keeps to.
const COLUMNS: usize = 80;

/// `prefix` then `text`, wrapped at [`COLUMNS`] with later lines indented as deep as `prefix`.
fn wrapped(prefix: &str, text: &str) -> String {
    let indent = " ".repeat(prefix.chars().count());
    let mut out = String::from(prefix);
    let mut width = prefix.chars().count();
    let mut line_is_empty = true;
    for word in text.split_whitespace() {
        let word_width = word.chars().count();
        if !line_is_empty && width + 1 + word_width > COLUMNS {
            out.push('\n');
            out.push_str(&indent);
            width = indent.len();
            line_is_empty = true;
        }
        if !line_is_empty {
            out.push(' ');
            width += 1;
        }
        out.push_str(word);
        width += word_width;
        line_is_empty = false;
    }
    out
}

/// A score for people: a headline, the figures, then the two labelled groups of reasons.
fn score_text(score: &pb::CustomerScore) -> String {
    let mut lines = vec![
        format!(
            "{:<16} {:<8} priority {:.3}  retention risk {:.3}",
            score.customer_id,
            action_name(score.action),
            score.priority,
            score.retention_risk
        ),
        format!(
            "  engagement {:.1}  sentiment {:+.2} (recent {:+.2})  {} interaction{}",
            score.engagement,
            score.sentiment,
            score.sentiment_recent,
            score.interactions_total,
            if score.interactions_total == 1 {
                ""
            } else {
                "s"
            }
        ),
    ];
    let (priority_reasons, risk_factors) = split_reasons(score);
    for (title, reasons) in [
        (
            "priority reasons (urgency, docs/scoring.md):",
            priority_reasons,
        ),
        (
            "risk factors (log-odds of no activity in the horizon):",
            risk_factors,
        ),
    ] {
        if reasons.is_empty() {
            continue;
        }
        lines.push(format!("  {title}"));
        for reason in reasons {
            // The factor's name, unless the detail already starts with it.
            let text = if reason.detail.starts_with(&reason.factor.replace('_', " ")) {
                reason.detail.clone()
            } else {
                format!("{}: {}", reason.factor, reason.detail)
            };
            lines.push(wrapped(
                &format!("    {:+.3}  ", reason.contribution),
                &text,
            ));
        }
    }
    lines.join("\n")
}

fn rfc3339(timestamp: Option<&prost_types::Timestamp>) -> serde_json::Value {
    timestamp.map_or(serde_json::Value::Null, |timestamp| {
        let ms = u64::try_from(timestamp_to_ms(timestamp)).unwrap_or(0);
        let time = std::time::UNIX_EPOCH + Duration::from_millis(ms);
        humantime::format_rfc3339_millis(time).to_string().into()
    })
}

fn reasons_json(reasons: &[&pb::Reason]) -> serde_json::Value {
    reasons
        .iter()
        .map(|reason| {
            serde_json::json!({
                "factor": reason.factor,
                "contribution": reason.contribution,
                "detail": reason.detail,
            })
        })
        .collect()
}

/// A score for scripts (`--json`).
fn score_json(score: &pb::CustomerScore) -> serde_json::Value {
    let (priority_reasons, risk_factors) = split_reasons(score);
    serde_json::json!({
        "tenant_id": score.tenant_id,
        "customer_id": score.customer_id,
        "action": action_name(score.action),
        "priority": score.priority,
        "retention_risk": score.retention_risk,
        "engagement": score.engagement,
        "sentiment": score.sentiment,
        "sentiment_recent": score.sentiment_recent,
        "sentiment_trend": score.sentiment_trend,
        "interactions_total": score.interactions_total,
        "lifetime_value": score.lifetime_value,
        "last_interaction_at": rfc3339(score.last_interaction_at.as_ref()),
        "unanswered_since": rfc3339(score.unanswered_since.as_ref()),
        "as_of": rfc3339(score.as_of.as_ref()),
        "priority_reasons": reasons_json(&priority_reasons),
        "risk_factors": reasons_json(&risk_factors),
    })
}

/// `--as-of` as a timestamp.
fn parse_as_of(as_of: Option<&str>) -> anyhow::Result<Option<prost_types::Timestamp>> {
    as_of
        .map(|text| {
            let time = humantime::parse_rfc3339_weak(text).map_err(|_| {
                anyhow::anyhow!(
                    "--as-of {text:?} is not an RFC 3339 time like 2026-11-23T08:00:00Z"
                )
            })?;
            let ms = time
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|_| anyhow::anyhow!("--as-of {text:?} is before 1970"))?
                .as_millis();
            Ok(to_timestamp(i64::try_from(ms)?))
        })
        .transpose()
}

fn action_number(name: &str) -> anyhow::Result<i32> {
    enum_number("ACTION", name, |n| {
        pb::Action::from_str_name(n).map(|v| v as i32)
    })
}

pub(super) async fn top(args: TopArgs) -> anyhow::Result<()> {
    let action = args.action.as_deref().map(action_number).transpose()?;
    let as_of = parse_as_of(args.as_of.as_deref())?;
    let address = args.server.address();
    let mut client = ScoringServiceClient::new(args.server.connect().await?);
    let request = pb::TopCustomersRequest {
        tenant_id: args.tenant.clone(),
        limit: args.limit,
        action: action.unwrap_or(0),
        min_retention_risk: args.min_retention_risk,
        as_of,
        exclude_claimed: false,
        page_token: String::new(),
        segment: String::new(),
        channel: 0,
        intent: args.intent.clone(),
        language: args.language.clone(),
    };
    let filtered = action.is_some()
        || args.min_retention_risk > 0.0
        || !args.intent.is_empty()
        || !args.language.is_empty();
    // A server that answers UNAVAILABLE itself (a cluster moving a partition between replicas)
    // is asked again for a while before the error is shown.
    let mut backoff = Duration::from_millis(250);
    let started = std::time::Instant::now();
    let customers = loop {
        match client.top_customers(request.clone()).await {
            Ok(answer) => break answer.into_inner().customers,
            Err(status) if server_unavailable(&status) && started.elapsed() < TOP_RETRY => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(status) => return Err(status_error(&address, "TopCustomers", &status)),
        }
    };
    if customers.is_empty() {
        // Nobody matched: an unknown tenant, or filters that leave no one?
        let tenant_exists = filtered
            && !client
                .top_customers(pb::TopCustomersRequest {
                    limit: 1,
                    action: 0,
                    min_retention_risk: 0.0,
                    ..request
                })
                .await
                .map_err(|status| status_error(&address, "TopCustomers", &status))?
                .into_inner()
                .customers
                .is_empty();
        if args.as_of.is_some() {
            anyhow::ensure!(
                tenant_exists,
                "tenant {:?} had no customers at {address} by --as-of",
                args.tenant
            );
        }
        anyhow::ensure!(
            tenant_exists,
            "tenant {:?} has no customers at {address}: check --tenant",
            args.tenant
        );
    }
    if args.json {
        let scores: Vec<serde_json::Value> = customers.iter().map(score_json).collect();
        outln!("{}", serde_json::to_string_pretty(&scores)?);
    } else if customers.is_empty() {
        outln!(
            "no customer of tenant {:?} matches the filters (--action, --min-retention-risk)",
            args.tenant
        );
    } else {
        for score in &customers {
            outln!("{}", score_text(score));
        }
    }
    Ok(())
}

pub(super) async fn customer(args: CustomerArgs) -> anyhow::Result<()> {
    let as_of = parse_as_of(args.as_of.as_deref())?;
    let address = args.server.address();
    let mut client = ScoringServiceClient::new(args.server.connect().await?);
    let answer = client
        .get_customer(pb::GetCustomerRequest {
            tenant_id: args.tenant.clone(),
            customer_id: args.customer_id.clone(),
            as_of,
        })
        .await;
    let score = match answer {
        Ok(response) => response.into_inner(),
        Err(status) if status.code() == tonic::Code::NotFound => anyhow::bail!(
            "no customer {:?} in tenant {:?} at {address}{}",
            args.customer_id,
            args.tenant,
            if args.as_of.is_some() {
                " as of --as-of"
            } else {
                ""
            }
        ),
        Err(status) => return Err(status_error(&address, "GetCustomer", &status)),
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&score_json(&score))?);
        return Ok(());
    }
    outln!("{}", score_text(&score));
    let time = |timestamp: Option<&prost_types::Timestamp>| {
        rfc3339(timestamp)
            .as_str()
            .map_or_else(|| "-".to_string(), ToString::to_string)
    };
    outln!("  lifetime value {:.2}", score.lifetime_value);
    outln!(
        "  last interaction {}",
        time(score.last_interaction_at.as_ref())
    );
    if score.unanswered_since.is_some() {
        outln!(
            "  unanswered since {}",
            time(score.unanswered_since.as_ref())
        );
    }
    outln!("  as of {}", time(score.as_of.as_ref()));
    Ok(())
}

pub(super) async fn watch(args: WatchArgs) -> anyhow::Result<()> {
    let address = args.server.address();
    let mut client = ScoringServiceClient::new(args.server.connect().await?);
    let request = pb::WatchPrioritiesRequest {
        tenant_id: args.tenant.clone(),
        min_priority: args.min_priority,
        segment: String::new(),
        channel: 0,
        intent: args.intent.clone(),
        language: args.language.clone(),
    };
    let mut updates = subscribe(&mut client, &request, &address).await?;
    eprintln!(
        "watching tenant {:?} at {address}: priorities crossing {} (Ctrl-C to stop)",
        args.tenant, args.min_priority
    );
    loop {
        let update = match updates.message().await {
            Ok(Some(update)) => update,
            Ok(None) => anyhow::bail!(
                "the server at {address} ended the watch (it is shutting down or restarting)"
            ),
            Err(status) if server_unavailable(&status) => {
                // A cluster moved a partition: the merged watch ends; watch again.
                eprintln!("{address}: {}; watching again", status_reason(&status));
                updates = subscribe(&mut client, &request, &address).await?;
                continue;
            }
            Err(status) => {
                anyhow::bail!(
                    "lost the server at {address} ({}): the watch stopped",
                    status_reason(&status)
                )
            }
        };
        if let Some(score) = &update.score {
            outln!(
                "event {}: {} -> {} (priority {:.3} -> {:.3})",
                update.event_id,
                action_name(update.previous_action),
                action_name(score.action),
                update.previous_priority,
                score.priority
            );
            outln!("{}", score_text(score));
        }
    }
}

/// Opens a watch, asking again for up to [`TOP_RETRY`] while the server answers UNAVAILABLE
/// itself (a partition changing hands).
async fn subscribe(
    client: &mut ScoringServiceClient<Connection>,
    request: &pb::WatchPrioritiesRequest,
    address: &str,
) -> anyhow::Result<tonic::Streaming<pb::PriorityUpdate>> {
    let mut backoff = Duration::from_millis(250);
    let started = std::time::Instant::now();
    loop {
        match client.watch_priorities(request.clone()).await {
            Ok(stream) => return Ok(stream.into_inner()),
            Err(status) if server_unavailable(&status) && started.elapsed() < TOP_RETRY => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(status) => return Err(status_error(address, "WatchPriorities", &status)),
        }
    }
}

/// The innermost cause of an error chain, in words ("connection refused").
fn innermost_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = error;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    if let Some(io) = innermost.downcast_ref::<std::io::Error>() {
        match io.kind() {
            std::io::ErrorKind::ConnectionRefused => return "connection refused".to_string(),
            std::io::ErrorKind::ConnectionReset => return "connection reset".to_string(),
            std::io::ErrorKind::TimedOut => return "timed out".to_string(),
            _ => {}
        }
    }
    innermost.to_string()
}

/// What a status says, in words: its message, or its innermost cause when it carries one.
fn status_reason(status: &tonic::Status) -> String {
    use std::error::Error;
    match status.source() {
        Some(source) => innermost_cause(source),
        None if status.message().is_empty() => status.code().description().to_string(),
        None => status.message().to_string(),
    }
}

/// How long `top` asks again a server that answers UNAVAILABLE itself.
const TOP_RETRY: Duration = Duration::from_secs(30);

/// An UNAVAILABLE the server itself sent (it is up, but cannot answer yet: a cluster partition
/// changing hands, catching up), rather than a connection that failed.
fn server_unavailable(status: &tonic::Status) -> bool {
    use std::error::Error;
    status.code() == tonic::Code::Unavailable
        && status.source().is_none()
        && !status.message().is_empty()
}

/// One line for a failed call: what went wrong, at which server, and what to try.
pub fn status_error(address: &str, call: &str, status: &tonic::Status) -> anyhow::Error {
    use tonic::Code;
    let reason = status_reason(status);
    match status.code() {
        Code::Unavailable if server_unavailable(status) => {
            anyhow::anyhow!("{address} cannot answer {call} yet ({reason}): retry in a moment")
        }
        Code::Unavailable => anyhow::anyhow!(
            "cannot reach {address} ({reason}): is `rapport serve` running? (--server)"
        ),
        Code::Unauthenticated => anyhow::anyhow!(
            "{address} refused {call}: {reason} (pass --token or set RAPPORT_TOKEN)"
        ),
        Code::PermissionDenied => anyhow::anyhow!(
            "{address} refused {call}: {reason} (the token does not grant this tenant)"
        ),
        Code::InvalidArgument | Code::OutOfRange => {
            anyhow::anyhow!("{address} rejected {call}: {reason}")
        }
        Code::ResourceExhausted => {
            anyhow::anyhow!("{address} is busy ({reason}): retry in a moment")
        }
        Code::DeadlineExceeded | Code::Cancelled => {
            anyhow::anyhow!("{call} at {address} did not finish ({reason}): retry")
        }
        Code::Unimplemented => {
            anyhow::anyhow!("{address} does not serve {call}: is it a rapport server? (--server)")
        }
        code => anyhow::anyhow!("{call} at {address} failed: {code:?}: {reason}"),
    }
}

/// One line for a connection that could not be made, with a hint.
pub fn connect_error(address: &str, error: &(dyn std::error::Error + 'static)) -> anyhow::Error {
    let reason = innermost_cause(error);
    if reason == "connection refused" {
        anyhow::anyhow!("no server at {address}: start `rapport serve` or pass --server")
    } else {
        anyhow::anyhow!("cannot reach {address} ({reason}): check --server")
    }
}

/// `host:port` as a URL (`http://`, or `https://` when `tls`); a URL is kept as it is.
pub fn server_url(address: &str, tls: bool) -> String {
    if address.contains("://") {
        address.to_string()
    } else {
        format!("{}://{address}", if tls { "https" } else { "http" })
    }
}

/// An available agent of any language with room for `per_channel` conversations on every channel
/// and `outreach` outreach customers (the agents `loadgen` and `simulate` register).
pub fn agent_on_every_channel(agent_id: &str, per_channel: u32, outreach: u32) -> pb::Agent {
    pb::Agent {
        agent_id: agent_id.to_string(),
        status: pb::AgentStatus::Available as i32,
        capacity: rapport_core::domain::Channel::ALL
            .into_iter()
            .map(|channel| pb::ChannelCapacity {
                channel: crate::api::convert::channel_to_pb(channel),
                max_conversations: per_channel,
            })
            .collect(),
        outreach_capacity: outreach,
        ..Default::default()
    }
}

/// The address as people write it: the URL without `http://` and a trailing slash.
pub fn display_address(address: &str) -> String {
    address
        .strip_prefix("http://")
        .unwrap_or(address)
        .trim_end_matches('/')
        .to_string()
}

/// How long a client waits for a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// Whether a TLS flag was given.
    fn wants_tls(&self) -> bool {
        self.tls_ca.is_some() || self.tls_cert.is_some()
    }

    /// The server as people write it, for messages (`127.0.0.1:50051`).
    pub fn address(&self) -> String {
        display_address(&self.server)
    }

    /// Connects (with TLS when `--tls-ca` or `--tls-cert` is given) and attaches the token.
    pub async fn connect(&self) -> anyhow::Result<Connection> {
        let url = server_url(&self.server, self.wants_tls());
        let mut endpoint = Endpoint::from_shared(url).map_err(|_| {
            anyhow::anyhow!(
                "invalid --server {:?}: expected HOST:PORT or http(s)://HOST:PORT",
                self.server
            )
        })?;
        endpoint = endpoint.connect_timeout(CONNECT_TIMEOUT);
        if self.wants_tls() {
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
            .map_err(|error| connect_error(&self.address(), &error))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A cluster's "partition changing hands" is the server speaking: retried, and not worded as a
    /// server that is down; a connection that failed is.
    #[test]
    fn an_unavailable_server_is_told_apart_from_an_unreachable_one() {
        let handover =
            tonic::Status::unavailable("partition 3 has no owner (handover in progress)");
        assert!(server_unavailable(&handover));
        let said = status_error("r:1", "TopCustomers", &handover).to_string();
        assert!(said.contains("cannot answer TopCustomers yet"), "{said}");
        let mut refused = tonic::Status::unavailable("error trying to connect");
        refused.set_source(std::sync::Arc::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        )));
        assert!(!server_unavailable(&refused));
        let said = status_error("r:1", "TopCustomers", &refused).to_string();
        assert!(said.contains("is `rapport serve` running?"), "{said}");
    }

    #[test]
    fn addresses_take_host_port_or_a_url() {
        assert_eq!(
            server_url("127.0.0.1:50051", false),
            "http://127.0.0.1:50051"
        );
        assert_eq!(server_url("rapport:50051", true), "https://rapport:50051");
        assert_eq!(server_url("https://r:1", false), "https://r:1");
        assert_eq!(
            display_address("http://127.0.0.1:50051/"),
            "127.0.0.1:50051"
        );
        assert_eq!(display_address("https://r:1"), "https://r:1");
    }

    #[test]
    fn relative_to_now_moves_the_latest_event_to_now_and_keeps_gaps() {
        let line = |id: &str, at: &str| {
            format!(
                r#"{{"event_id":"{id}","tenant_id":"t","customer_id":"c","channel":"twitter","kind":"mention","direction":"inbound","occurred_at":"{at}"}}"#
            )
        };
        let text = [
            line("a", "2026-11-20T10:00:00Z"),
            "not json".to_string(),
            line("b", "2026-11-23T08:00:00Z"),
        ]
        .join("\n");
        let SendFile {
            mut interactions,
            malformed,
        } = parse_send_file(&text);
        assert_eq!(malformed.len(), 1);
        assert_eq!(malformed[0].0, 2);
        assert_eq!(
            interactions
                .iter()
                .map(|(line, _)| *line)
                .collect::<Vec<_>>(),
            [1, 3]
        );
        let gap_ms = |interactions: &[(usize, pb::Interaction)]| {
            timestamp_to_ms(interactions[1].1.occurred_at.as_ref().unwrap())
                - timestamp_to_ms(interactions[0].1.occurred_at.as_ref().unwrap())
        };
        let gap_before = gap_ms(&interactions);
        let now_ms = 1_800_000_000_000;
        shift_to_now(&mut interactions, now_ms);
        assert_eq!(
            timestamp_to_ms(interactions[1].1.occurred_at.as_ref().unwrap()),
            now_ms
        );
        assert_eq!(gap_ms(&interactions), gap_before);
    }

    #[test]
    fn long_details_wrap_under_their_indent() {
        let text = wrapped("    +0.500  ", &"word ".repeat(30));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.len() > 1);
        assert!(lines.iter().all(|line| line.chars().count() <= COLUMNS));
        assert!(lines[1].starts_with("            word"));
    }

    #[test]
    fn reasons_split_into_priority_and_risk() {
        let reason = |factor: &str, group: pb::ReasonGroup| pb::Reason {
            factor: factor.to_string(),
            contribution: 0.1,
            detail: String::new(),
            group: group as i32,
        };
        let score = pb::CustomerScore {
            reasons: vec![
                reason("activity", pb::ReasonGroup::Risk),
                reason("unanswered", pb::ReasonGroup::Priority),
                reason("high_risk", pb::ReasonGroup::Priority),
            ],
            ..Default::default()
        };
        let (priority, risk) = split_reasons(&score);
        assert_eq!(priority.len(), 2);
        assert_eq!(risk.len(), 1);
        assert_eq!(risk[0].factor, "activity");
    }
}
