//! Every metric rapport exports and the logging setup, defined in one place.
//!
//! Names follow Prometheus conventions: `rapport_` prefix, base units, `_total` counters,
//! histograms with explicit buckets, labels with bounded values only (never per customer or tenant).

use crate::domain::{Action, Channel, Kind};
use crate::sentiment::SentimentLabel;
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

/// gRPC connections that failed before they could be served, by `stage` (`accept`: the accept
/// call failed, e.g. EMFILE; `tls_handshake`; `tls_handshake_timeout`; `connection_cap`: closed
/// at once, `server.max_connections` being open), or that a limit closed (`idle`: nothing read for
/// `server.idle_connection_timeout_seconds`).
pub const GRPC_ACCEPT_ERRORS_TOTAL: &str = "rapport_grpc_accept_errors_total";
/// Events ingested, by channel, kind and outcome.
pub const EVENTS_INGESTED_TOTAL: &str = "rapport_events_ingested_total";
/// Accepted inbound events whose text carries an urgency cue, by cue (one event may count under
/// several cues).
pub const URGENCY_CUES_TOTAL: &str = "rapport_urgency_cues_total";
/// Inbound texts of tenants with intents, by tenant and the intent they were read as (`other`
/// when none fits): a sudden rise of one intent is an incident (deploy/prometheus/alerts.yml).
pub const INTENTS_READ_TOTAL: &str = "rapport_intents_read_total";
/// Texts classified, by backend and label.
pub const CLASSIFICATIONS_TOTAL: &str = "rapport_classifications_total";
/// Time to classify one text, by backend.
pub const CLASSIFICATION_DURATION_SECONDS: &str = "rapport_classification_duration_seconds";
/// gRPC requests finished, by method and status code.
pub const GRPC_REQUESTS_TOTAL: &str = "rapport_grpc_requests_total";
/// gRPC request duration (for streams: until the response stream was established), by method.
pub const GRPC_REQUEST_DURATION_SECONDS: &str = "rapport_grpc_request_duration_seconds";
/// Customers with at least one event, all tenants.
pub const CUSTOMERS_TRACKED: &str = "rapport_customers_tracked";
/// Customers by current action, from the ranking pass.
pub const CUSTOMERS_BY_ACTION: &str = "rapport_customers_by_action";
/// Customers with an unanswered message older than the reply SLA, from the ranking pass.
pub const CUSTOMERS_OVER_REPLY_SLA: &str = "rapport_customers_over_reply_sla";
/// Customers per retention-risk band (`band` label), from the ranking pass.
pub const CUSTOMERS_BY_RETENTION_RISK: &str = "rapport_customers_by_retention_risk";
/// Unanswered threads past their channel's missed horizon, from the ranking pass.
pub const REPLY_THREADS_MISSED: &str = "rapport_reply_threads_missed";
/// Watcher pushes caused by time alone (an SLA coming due, silence raising risk).
pub const TIME_DRIVEN_PUSHES_TOTAL: &str = "rapport_time_driven_pushes_total";
/// Tenants' activity models fitted (retention risk).
pub const RETENTION_MODEL_FITS_TOTAL: &str = "rapport_retention_model_fits_total";
/// Customers merged into another (identity resolution).
pub const CUSTOMERS_MERGED_TOTAL: &str = "rapport_customers_merged_total";
/// Claims taken (`ClaimNext`), by what they hold (`customer`, `conversation`) and the
/// conversation's channel (`none` for a whole customer).
pub const CLAIMS_TAKEN_TOTAL: &str = "rapport_claims_taken_total";
/// How long a conversation had waited (since its oldest unanswered message) when an agent
/// claimed it, by channel: time waiting for an agent.
pub const CLAIM_WAIT_SECONDS: &str = "rapport_claim_wait_seconds";
/// Claims that a merge of two customers ended because another agent's claim on the same work
/// stayed.
pub const CLAIMS_ENDED_BY_MERGE_TOTAL: &str = "rapport_claims_ended_by_merge_total";
/// Live answers to threads waiting for one, by tenant, channel, `response` (`first`, `next`)
/// and `outcome` (`within_target`, `late`): reply-SLA attainment. Replayed and late (backfilled)
/// answers are not counted; RoutingService.GetServiceLevels reads any window from the histories.
pub const REPLIES_TOTAL: &str = "rapport_replies_total";
/// The same answers by tenant, intent (`none` without one) and outcome.
pub const REPLIES_BY_INTENT_TOTAL: &str = "rapport_replies_by_intent_total";
/// Conversations agents hold, by tenant and channel (tenants with registered agents; set by
/// the ranking pass).
pub const AGENT_CONVERSATIONS_HELD: &str = "rapport_agent_conversations_held";
/// Conversations available agents may hold at once, by tenant and channel (the ranking pass).
pub const AGENT_CONVERSATIONS_CAPACITY: &str = "rapport_agent_conversations_capacity";
/// Identifier links or merges the identity rules refused.
pub const IDENTITY_LINKS_REFUSED_TOTAL: &str = "rapport_identity_links_refused_total";
/// Config reloads (SIGHUP or `AdminService.ReloadConfig`), by outcome (`ok`, `refused`).
pub const CONFIG_RELOADS_TOTAL: &str = "rapport_config_reloads_total";
/// Partitions this replica owns (cluster mode).
pub const CLUSTER_PARTITIONS_OWNED: &str = "rapport_cluster_partitions_owned";
/// Events in this replica's partitions not applied yet (cluster mode).
pub const CLUSTER_CONSUMER_LAG_EVENTS: &str = "rapport_cluster_consumer_lag_events";
/// Partition ownership changes at this replica, by kind (cluster mode).
pub const CLUSTER_HANDOVERS_TOTAL: &str = "rapport_cluster_handovers_total";
/// Partition states stored or loaded by this replica, by outcome (cluster mode).
pub const CLUSTER_PARTITION_SNAPSHOTS_TOTAL: &str = "rapport_cluster_partition_snapshots_total";
/// Events published to the cluster's stream and acknowledged by it, by outcome.
pub const CLUSTER_PUBLISHED_TOTAL: &str = "rapport_cluster_published_total";
/// Open WatchPriorities streams.
pub const WATCHERS_CONNECTED: &str = "rapport_watchers_connected";
/// Priority updates a slow watcher missed.
pub const WATCH_UPDATES_DROPPED_TOTAL: &str = "rapport_watch_updates_dropped_total";

pub use rapport_sentiment::telemetry::{cascade_routed, CASCADE_ROUTED_TOTAL};
/// Ingested texts sent to the transformer for a refined label after the fast model scored them,
/// by outcome (`refined`, `unchanged`, `event_gone`, `queue_full`, `failed`).
pub const SENTIMENT_REFINEMENTS_TOTAL: &str = "rapport_sentiment_refinements_total";
/// 1 when a data directory is configured (write-ahead log on), 0 when running in memory only.
pub const DURABILITY_ENABLED: &str = "rapport_durability_enabled";
/// Events appended to the write-ahead log.
pub const WAL_APPENDS_TOTAL: &str = "rapport_wal_appends_total";
/// Bytes appended to the write-ahead log.
pub const WAL_APPENDED_BYTES_TOTAL: &str = "rapport_wal_appended_bytes_total";
/// Time of one write-ahead-log fsync.
pub const WAL_FSYNC_DURATION_SECONDS: &str = "rapport_wal_fsync_duration_seconds";
/// Snapshots attempted, by outcome (`ok`, `error`).
pub const SNAPSHOTS_TOTAL: &str = "rapport_snapshots_total";
/// Time to write one snapshot and truncate the log.
pub const SNAPSHOT_DURATION_SECONDS: &str = "rapport_snapshot_duration_seconds";
/// Size of the last snapshot written.
pub const SNAPSHOT_SIZE_BYTES: &str = "rapport_snapshot_size_bytes";
/// Unix time of the last successful snapshot (also set by the one written at start).
pub const SNAPSHOT_LAST_SUCCESS_TIMESTAMP_SECONDS: &str =
    "rapport_snapshot_last_success_timestamp_seconds";

/// Buckets of waits for an agent: a minute to a week.
const WAIT_BUCKETS_SECONDS: [f64; 10] = [
    60.0, 300.0, 900.0, 1_800.0, 3_600.0, 7_200.0, 14_400.0, 28_800.0, 86_400.0, 604_800.0,
];

const LATENCY_BUCKETS_SECONDS: [f64; 14] = [
    1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
];

static PROMETHEUS: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls return the same handle).
pub fn prometheus() -> anyhow::Result<PrometheusHandle> {
    PROMETHEUS
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(CLASSIFICATION_DURATION_SECONDS.to_string()),
                    &LATENCY_BUCKETS_SECONDS,
                )
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        Matcher::Full(GRPC_REQUEST_DURATION_SECONDS.to_string()),
                        &LATENCY_BUCKETS_SECONDS,
                    )
                })
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        Matcher::Full(WAL_FSYNC_DURATION_SECONDS.to_string()),
                        &LATENCY_BUCKETS_SECONDS,
                    )
                })
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        Matcher::Full(SNAPSHOT_DURATION_SECONDS.to_string()),
                        &LATENCY_BUCKETS_SECONDS,
                    )
                })
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        Matcher::Full(CLAIM_WAIT_SECONDS.to_string()),
                        &WAIT_BUCKETS_SECONDS,
                    )
                })
                .map_err(|error| error.to_string())?
                .install_recorder()
                .map_err(|error| error.to_string())?;
            describe();
            Ok(handle)
        })
        .clone()
        .map_err(|error| anyhow::anyhow!("cannot install the Prometheus recorder: {error}"))
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        EVENTS_INGESTED_TOTAL,
        "Events ingested, by channel, kind and outcome."
    );
    describe_counter!(
        URGENCY_CUES_TOTAL,
        "Accepted inbound events whose text carries an urgency cue, by cue."
    );
    describe_counter!(
        INTENTS_READ_TOTAL,
        "Inbound texts of tenants with intents, by tenant and the intent they were read as (other: none fits)."
    );
    describe_counter!(
        CLASSIFICATIONS_TOTAL,
        "Texts classified, by backend and label."
    );
    describe_histogram!(
        CLASSIFICATION_DURATION_SECONDS,
        Unit::Seconds,
        "Time to classify one text, by backend."
    );
    describe_counter!(
        GRPC_REQUESTS_TOTAL,
        "gRPC calls finished, by method and status code (refusals included)."
    );
    describe_histogram!(
        GRPC_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "gRPC call duration by method (streams: until the stream ends)."
    );
    describe_gauge!(
        CUSTOMERS_TRACKED,
        "Customers with at least one event, all tenants."
    );
    describe_gauge!(
        CUSTOMERS_BY_ACTION,
        "Customers by current action (ranking pass)."
    );
    describe_gauge!(
        CUSTOMERS_OVER_REPLY_SLA,
        "Customers whose most urgent unanswered thread is past its reply due time (ranking pass)."
    );
    describe_gauge!(
        CUSTOMERS_BY_RETENTION_RISK,
        "Customers per retention-risk band (ranking pass)."
    );
    describe_gauge!(
        REPLY_THREADS_MISSED,
        "Unanswered threads past their channel's missed horizon (ranking pass)."
    );
    describe_counter!(
        TIME_DRIVEN_PUSHES_TOTAL,
        "Watcher pushes caused by time alone: a reply SLA coming due, silence raising risk."
    );
    describe_counter!(
        RETENTION_MODEL_FITS_TOTAL,
        "Tenants' activity models (retention risk) fitted by the ranking pass."
    );
    describe_counter!(
        CUSTOMERS_MERGED_TOTAL,
        "Customers merged into another because they share an identifier or a CRM said so."
    );
    describe_gauge!(
        AGENT_CONVERSATIONS_HELD,
        "Conversations registered agents hold (live claims), by tenant and channel."
    );
    describe_gauge!(
        AGENT_CONVERSATIONS_CAPACITY,
        "Conversations the tenant's available agents may hold at once, by tenant and channel."
    );
    describe_counter!(
        REPLIES_TOTAL,
        "Live answers to waiting threads by tenant, channel, response (first, next) and outcome \
         (within_target, late): reply-SLA attainment."
    );
    describe_counter!(
        REPLIES_BY_INTENT_TOTAL,
        "Live answers to waiting threads by tenant, intent and outcome (within_target, late)."
    );
    describe_counter!(
        CLAIMS_TAKEN_TOTAL,
        "Claims taken by ClaimNext, by what they hold (customer, conversation) and channel."
    );
    describe_histogram!(
        CLAIM_WAIT_SECONDS,
        Unit::Seconds,
        "How long a conversation had waited for an answer when an agent claimed it, by channel."
    );
    describe_counter!(
        CLAIMS_ENDED_BY_MERGE_TOTAL,
        "Claims ended by a merge of two customers: another agent's claim on the same work stayed."
    );
    describe_counter!(
        IDENTITY_LINKS_REFUSED_TOTAL,
        "Identifier links or merges refused by the identity rules (a differing external id, a \
         per-type limit, the merge cap, events folded away)."
    );
    describe_counter!(
        CONFIG_RELOADS_TOTAL,
        "Config reloads (SIGHUP or AdminService.ReloadConfig) by outcome: ok, or refused (the \
         file did not validate; the config in force stays)."
    );
    describe_gauge!(WATCHERS_CONNECTED, "Open WatchPriorities streams.");
    describe_gauge!(
        CLUSTER_PARTITIONS_OWNED,
        "Partitions this replica holds a lease on (cluster mode)."
    );
    describe_gauge!(
        CLUSTER_CONSUMER_LAG_EVENTS,
        "Events of this replica's partitions in the stream and not applied yet (cluster mode)."
    );
    describe_counter!(
        CLUSTER_HANDOVERS_TOTAL,
        "Partition ownership changes at this replica: acquired, released (rebalancing or \
         shutdown), lost (a lease that could not be renewed)."
    );
    describe_counter!(
        CLUSTER_PARTITION_SNAPSHOTS_TOTAL,
        "Partition states at this replica, by outcome: written (stored with its stream \
         sequence), loaded (a takeover replayed only what came after), unreadable (a takeover \
         replayed the whole partition instead), failed (not stored)."
    );
    describe_counter!(
        CLUSTER_PUBLISHED_TOTAL,
        "Events published to the cluster's stream, by outcome: stored, duplicate (JetStream's \
         window had the event id), failed (not acknowledged: the caller got UNAVAILABLE)."
    );
    rapport_sentiment::telemetry::describe();
    describe_counter!(
        SENTIMENT_REFINEMENTS_TOTAL,
        "Ingested texts whose fast label the transformer was asked to refine, by outcome \
         (queue_full: the event keeps its fast label)."
    );
    describe_gauge!(
        DURABILITY_ENABLED,
        "1 when the write-ahead log is on (--data-dir), 0 in memory only."
    );
    describe_counter!(WAL_APPENDS_TOTAL, "Events appended to the write-ahead log.");
    describe_counter!(
        WAL_APPENDED_BYTES_TOTAL,
        Unit::Bytes,
        "Bytes appended to the write-ahead log."
    );
    describe_histogram!(
        WAL_FSYNC_DURATION_SECONDS,
        Unit::Seconds,
        "Time of one write-ahead-log fsync."
    );
    describe_counter!(SNAPSHOTS_TOTAL, "Snapshots attempted, by outcome.");
    describe_histogram!(
        SNAPSHOT_DURATION_SECONDS,
        Unit::Seconds,
        "Time to write one snapshot and truncate the log."
    );
    describe_gauge!(
        SNAPSHOT_SIZE_BYTES,
        Unit::Bytes,
        "Size of the last snapshot written."
    );
    describe_gauge!(
        SNAPSHOT_LAST_SUCCESS_TIMESTAMP_SECONDS,
        Unit::Seconds,
        "Unix time of the last successful snapshot."
    );
    describe_counter!(
        GRPC_ACCEPT_ERRORS_TOTAL,
        "gRPC connections that failed before they could be served, or were closed idle, by stage."
    );
    describe_counter!(
        WATCH_UPDATES_DROPPED_TOTAL,
        "Priority updates slow watchers missed."
    );
}

/// Where a gRPC connection failed before it was served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcceptFailure {
    /// The accept call itself failed (out of descriptors, or the peer's connection failed).
    Accept,
    /// The TLS handshake failed.
    TlsHandshake,
    /// The TLS handshake took longer than the server's deadline.
    TlsHandshakeTimeout,
    /// Closed at once: `server.max_connections` connections were open.
    ConnectionCap,
    /// Closed: nothing was read from it for `server.idle_connection_timeout_seconds`.
    Idle,
}

/// Counts one gRPC connection that failed before it was served.
pub fn accept_failed(failure: AcceptFailure) {
    let stage = match failure {
        AcceptFailure::Accept => "accept",
        AcceptFailure::TlsHandshake => "tls_handshake",
        AcceptFailure::TlsHandshakeTimeout => "tls_handshake_timeout",
        AcceptFailure::ConnectionCap => "connection_cap",
        AcceptFailure::Idle => "idle",
    };
    counter!(GRPC_ACCEPT_ERRORS_TOTAL, "stage" => stage).increment(1);
}

/// Outcome label of an ingested event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IngestOutcome {
    /// Applied to the store.
    Accepted,
    /// A repeat of an event already applied; nothing changed.
    Duplicate,
    /// Failed validation or refused by the store.
    Rejected,
}

impl IngestOutcome {
    fn as_str(self) -> &'static str {
        match self {
            IngestOutcome::Accepted => "accepted",
            IngestOutcome::Duplicate => "duplicate",
            IngestOutcome::Rejected => "rejected",
        }
    }
}

/// Counts one ingested event. Rejected events may lack a valid channel or kind: they count as "unknown".
///
/// The handles of every label combination are resolved once (after the recorder is installed, on
/// the first event), so the hot path does no registry lookup.
pub fn event_ingested(channel: Option<Channel>, kind: Option<Kind>, outcome: IngestOutcome) {
    const CHANNELS: usize = Channel::ALL.len() + 1;
    const KINDS: usize = Kind::ALL.len() + 1;
    const OUTCOMES: [IngestOutcome; 3] = [
        IngestOutcome::Accepted,
        IngestOutcome::Duplicate,
        IngestOutcome::Rejected,
    ];
    static COUNTERS: OnceLock<Vec<metrics::Counter>> = OnceLock::new();
    let counters = COUNTERS.get_or_init(|| {
        let channels = Channel::ALL.map(Some).into_iter().chain([None]);
        channels
            .flat_map(|channel| {
                Kind::ALL
                    .map(Some)
                    .into_iter()
                    .chain([None])
                    .flat_map(move |kind| {
                        OUTCOMES.map(|outcome| {
                            counter!(
                                EVENTS_INGESTED_TOTAL,
                                "channel" => channel.map_or("unknown", Channel::as_str),
                                "kind" => kind.map_or("unknown", Kind::as_str),
                                "outcome" => outcome.as_str(),
                            )
                        })
                    })
            })
            .collect()
    });
    let channel_index = channel.map_or(CHANNELS - 1, |channel| channel as usize);
    let kind_index = kind.map_or(KINDS - 1, |kind| kind as usize);
    let index = (channel_index * KINDS + kind_index) * OUTCOMES.len() + outcome as usize;
    counters[index].increment(1);
}

/// Counts one inbound text read against its tenant's intents (`None`: none fits).
pub fn intent_read(tenant_id: &str, intent: Option<&str>) {
    counter!(
        INTENTS_READ_TOTAL,
        "tenant" => tenant_id.to_string(),
        "intent" => intent.unwrap_or(crate::sentiment::intent::OTHER).to_string(),
    )
    .increment(1);
}

/// Counts the urgency cues of one accepted event.
pub fn urgency_cues_heard(cues: crate::domain::UrgencyCues) {
    use crate::domain::UrgencyCue;
    static COUNTERS: OnceLock<Vec<metrics::Counter>> = OnceLock::new();
    if cues.is_empty() {
        return;
    }
    let counters = COUNTERS.get_or_init(|| {
        UrgencyCue::ALL
            .map(|cue| counter!(URGENCY_CUES_TOTAL, "cue" => cue.as_str()))
            .into()
    });
    for cue in cues.iter() {
        counters[cue as usize].increment(1);
    }
}

/// Records one classification.
pub fn text_classified(backend: &'static str, label: SentimentLabel, duration: Duration) {
    counter!(CLASSIFICATIONS_TOTAL, "backend" => backend, "label" => label.as_str()).increment(1);
    histogram!(CLASSIFICATION_DURATION_SECONDS, "backend" => backend)
        .record(duration.as_secs_f64());
}

/// Records one finished gRPC call; `code` is the status as gRPC spells it (`OK`,
/// `INVALID_ARGUMENT`, …).
pub fn grpc_request(method: &'static str, code: &'static str, duration: Duration) {
    counter!(GRPC_REQUESTS_TOTAL, "method" => method, "code" => code).increment(1);
    histogram!(GRPC_REQUEST_DURATION_SECONDS, "method" => method).record(duration.as_secs_f64());
}

/// A customer got its first event.
pub fn customer_tracked() {
    gauge!(CUSTOMERS_TRACKED).increment(1.0);
}

/// Publishes the counts of a ranking pass.
pub fn ranking_pass(census: &Census) {
    for (action, count) in Action::ALL.iter().zip(census.by_action) {
        gauge!(CUSTOMERS_BY_ACTION, "action" => action.as_str()).set(count as f64);
    }
    gauge!(CUSTOMERS_OVER_REPLY_SLA).set(census.over_reply_sla as f64);
    for ((_, band), count) in RETENTION_RISK_BANDS.iter().zip(census.by_retention_risk) {
        gauge!(CUSTOMERS_BY_RETENTION_RISK, "band" => *band).set(count as f64);
    }
    gauge!(REPLY_THREADS_MISSED).set(census.missed_threads as f64);
    counter!(TIME_DRIVEN_PUSHES_TOTAL).increment(census.time_driven_pushes);
}

/// A customer stopped being tracked on its own (merged into another).
pub fn customer_untracked() {
    gauge!(CUSTOMERS_TRACKED).decrement(1.0);
}

/// Where this replica stands on its partitions (cluster mode).
pub fn cluster_partitions(owned: usize, lag_events: u64) {
    gauge!(CLUSTER_PARTITIONS_OWNED).set(owned as f64);
    gauge!(CLUSTER_CONSUMER_LAG_EVENTS).set(lag_events as f64);
}

/// How a partition changed hands at this replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handover {
    /// A lease was taken.
    Acquired,
    /// A lease was given up (rebalancing, shutdown).
    Released,
    /// A lease could not be renewed.
    Lost,
}

/// A partition changed hands at this replica.
pub fn cluster_handover(kind: Handover) {
    let kind = match kind {
        Handover::Acquired => "acquired",
        Handover::Released => "released",
        Handover::Lost => "lost",
    };
    counter!(CLUSTER_HANDOVERS_TOTAL, "kind" => kind).increment(1);
}

/// What became of a partition's state at this replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartitionSnapshot {
    /// Stored with its stream sequence.
    Written,
    /// Not stored (the object store failed).
    Failed,
    /// Loaded at a takeover.
    Loaded,
    /// Present but not readable: the partition was replayed whole.
    Unreadable,
}

/// A partition's state was stored or loaded.
pub fn cluster_partition_snapshot(outcome: PartitionSnapshot) {
    let outcome = match outcome {
        PartitionSnapshot::Written => "written",
        PartitionSnapshot::Failed => "failed",
        PartitionSnapshot::Loaded => "loaded",
        PartitionSnapshot::Unreadable => "unreadable",
    };
    counter!(CLUSTER_PARTITION_SNAPSHOTS_TOTAL, "outcome" => outcome).increment(1);
}

/// What became of one event published to the cluster's stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Published {
    /// Stored and acknowledged.
    Stored,
    /// Acknowledged as a repeat of an event id in JetStream's window.
    Duplicate,
    /// Not acknowledged.
    Failed,
}

/// An event's publish ended.
pub fn cluster_published(outcome: Published) {
    let outcome = match outcome {
        Published::Stored => "stored",
        Published::Duplicate => "duplicate",
        Published::Failed => "failed",
    };
    counter!(CLUSTER_PUBLISHED_TOTAL, "outcome" => outcome).increment(1);
}

/// A config reload ended (`ok`: in force; otherwise refused, the old config stays).
pub fn config_reloaded(ok: bool) {
    counter!(CONFIG_RELOADS_TOTAL, "outcome" => if ok { "ok" } else { "refused" }).increment(1);
}

/// A customer was merged into another.
pub fn customer_merged() {
    counter!(CUSTOMERS_MERGED_TOTAL).increment(1);
}

/// A merge ended `agent_id`'s claim on (what is now) `customer_id`: another holder stayed.
pub fn claim_ended_by_merge(tenant_id: &str, customer_id: &str, agent_id: &str) {
    counter!(CLAIMS_ENDED_BY_MERGE_TOTAL).increment(1);
    tracing::info!(
        tenant_id,
        customer_id,
        agent_id,
        "a merge ended this agent's claim: another agent holds the merged customer's work"
    );
}

/// The tenant's agents hold `held` conversations on `channel`, and its available agents have room
/// for `capacity`.
pub fn agent_load(tenant_id: &str, channel: Channel, held: u32, capacity: u32) {
    gauge!(AGENT_CONVERSATIONS_HELD, "tenant" => tenant_id.to_string(), "channel" => channel.as_str())
        .set(f64::from(held));
    gauge!(
        AGENT_CONVERSATIONS_CAPACITY,
        "tenant" => tenant_id.to_string(),
        "channel" => channel.as_str()
    )
    .set(f64::from(capacity));
}

/// A live answer closed a thread waiting on `channel` about `intent`: a first response unless
/// `follow_up`, within its reply target or late.
pub fn reply_answered(
    tenant_id: &str,
    channel: Channel,
    intent: Option<&str>,
    follow_up: bool,
    within_target: bool,
) {
    let outcome = if within_target {
        "within_target"
    } else {
        "late"
    };
    counter!(
        REPLIES_TOTAL,
        "tenant" => tenant_id.to_string(),
        "channel" => channel.as_str(),
        "response" => if follow_up { "next" } else { "first" },
        "outcome" => outcome
    )
    .increment(1);
    counter!(
        REPLIES_BY_INTENT_TOTAL,
        "tenant" => tenant_id.to_string(),
        "intent" => intent.unwrap_or("none").to_string(),
        "outcome" => outcome
    )
    .increment(1);
}

/// A claim was taken: on a whole customer (`None`), or on a conversation on `channel` that had
/// waited `waited_seconds`.
pub fn claim_taken(conversation: Option<(Channel, f64)>) {
    match conversation {
        None => {
            counter!(CLAIMS_TAKEN_TOTAL, "work" => "customer", "channel" => "none").increment(1)
        }
        Some((channel, waited_seconds)) => {
            counter!(CLAIMS_TAKEN_TOTAL, "work" => "conversation", "channel" => channel.as_str())
                .increment(1);
            histogram!(CLAIM_WAIT_SECONDS, "channel" => channel.as_str()).record(waited_seconds);
        }
    }
}

/// The identity rules refused a link or a merge.
pub fn identity_link_refused() {
    counter!(IDENTITY_LINKS_REFUSED_TOTAL).increment(1);
}

/// A tenant's activity model was fitted.
pub fn retention_model_fitted() {
    counter!(RETENTION_MODEL_FITS_TOTAL).increment(1);
}

/// What became of one ingested text sent for a refined label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefinementOutcome {
    /// The refined label changed the event's sentiment; the customer was re-folded.
    Refined,
    /// The refined label equalled the fast one.
    Unchanged,
    /// The event was no longer kept (compacted away) or its customer is gone.
    EventGone,
    /// The transformer's queue was full: the event keeps its fast label.
    QueueFull,
    /// The transformer's batch failed: the event keeps its fast label.
    Failed,
}

impl RefinementOutcome {
    const ALL: [RefinementOutcome; 5] = [
        RefinementOutcome::Refined,
        RefinementOutcome::Unchanged,
        RefinementOutcome::EventGone,
        RefinementOutcome::QueueFull,
        RefinementOutcome::Failed,
    ];

    fn as_str(self) -> &'static str {
        match self {
            RefinementOutcome::Refined => "refined",
            RefinementOutcome::Unchanged => "unchanged",
            RefinementOutcome::EventGone => "event_gone",
            RefinementOutcome::QueueFull => "queue_full",
            RefinementOutcome::Failed => "failed",
        }
    }
}

/// Counts one refinement outcome (handles resolved once: with the transformer backend this is
/// per ingested text).
pub fn sentiment_refinement(outcome: RefinementOutcome) {
    static HANDLES: OnceLock<[metrics::Counter; 5]> = OnceLock::new();
    let handles = HANDLES.get_or_init(|| {
        RefinementOutcome::ALL
            .map(|outcome| counter!(SENTIMENT_REFINEMENTS_TOTAL, "outcome" => outcome.as_str()))
    });
    handles[outcome as usize].increment(1);
}

/// Says whether the write-ahead log is on.
pub fn durability_enabled(enabled: bool) {
    gauge!(DURABILITY_ENABLED).set(if enabled { 1.0 } else { 0.0 });
}

/// Counts one appended log record of `bytes` bytes (handles resolved once: this is per event).
pub fn wal_appended(bytes: usize) {
    static HANDLES: OnceLock<(metrics::Counter, metrics::Counter)> = OnceLock::new();
    let (appends, appended_bytes) = HANDLES.get_or_init(|| {
        (
            counter!(WAL_APPENDS_TOTAL),
            counter!(WAL_APPENDED_BYTES_TOTAL),
        )
    });
    appends.increment(1);
    appended_bytes.increment(bytes as u64);
}

/// Records one log fsync.
pub fn wal_fsynced(duration: Duration) {
    histogram!(WAL_FSYNC_DURATION_SECONDS).record(duration.as_secs_f64());
}

/// Records one snapshot attempt; `size_bytes` is set when it succeeded.
pub fn snapshot_written(size_bytes: Option<u64>, duration: Duration) {
    let outcome = if size_bytes.is_some() { "ok" } else { "error" };
    counter!(SNAPSHOTS_TOTAL, "outcome" => outcome).increment(1);
    histogram!(SNAPSHOT_DURATION_SECONDS).record(duration.as_secs_f64());
    if let Some(size_bytes) = size_bytes {
        gauge!(SNAPSHOT_SIZE_BYTES).set(size_bytes as f64);
        let unix_seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |elapsed| elapsed.as_secs_f64());
        gauge!(SNAPSHOT_LAST_SUCCESS_TIMESTAMP_SECONDS).set(unix_seconds);
    }
}

/// Counts an open watcher for as long as it lives (also when its task is cancelled).
pub struct WatcherGuard(());

impl WatcherGuard {
    /// Counts one more watcher.
    pub fn new() -> Self {
        gauge!(WATCHERS_CONNECTED).increment(1.0);
        WatcherGuard(())
    }
}

impl Default for WatcherGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for WatcherGuard {
    fn drop(&mut self) {
        gauge!(WATCHERS_CONNECTED).decrement(1.0);
    }
}

/// Lets a repeated WARN through at most once per interval and counts what it held back, so a
/// thousand slow watchers cannot flood the log.
pub struct LogRateLimit {
    interval_ms: u64,
    /// Milliseconds since the Unix epoch of the last line let through (0: none yet).
    last_logged_ms: std::sync::atomic::AtomicU64,
    suppressed: std::sync::atomic::AtomicU64,
}

impl LogRateLimit {
    /// At most one line per `interval_ms`.
    pub const fn new(interval_ms: u64) -> Self {
        Self {
            interval_ms,
            last_logged_ms: std::sync::atomic::AtomicU64::new(0),
            suppressed: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// `Some(lines held back since the last one)` when a line may be logged at `now_ms`, else
    /// `None` (and the line is counted as held back).
    pub fn allow(&self, now_ms: u64) -> Option<u64> {
        use std::sync::atomic::Ordering;
        let last = self.last_logged_ms.load(Ordering::Relaxed);
        let due = last == 0 || now_ms.saturating_sub(last) >= self.interval_ms;
        if due
            && self
                .last_logged_ms
                .compare_exchange(last, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// A slow watcher missed `count` updates.
pub fn watch_updates_dropped(count: u64) {
    counter!(WATCH_UPDATES_DROPPED_TOTAL).increment(count);
}

/// Counts from one ranking pass (`Store::ranking_pass`), exported as gauges by [`ranking_pass`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Census {
    /// Customers scored in this pass, all tenants.
    pub customers: u64,
    /// In [`Action::ALL`] order.
    pub by_action: [u64; 5],
    /// Customers per retention-risk band, in [`RETENTION_RISK_BANDS`] order.
    pub by_retention_risk: [u64; RETENTION_RISK_BANDS.len()],
    /// Customers whose reply is due at or before the pass's time (over their reply SLA).
    pub over_reply_sla: u64,
    /// Unanswered threads past their channel's missed horizon.
    pub missed_threads: u64,
    /// Pushes to watchers caused by time alone in this pass.
    pub time_driven_pushes: u64,
    /// Tenants whose activity model was refitted in this pass.
    pub models_fitted: u64,
}

/// Retention-risk bands of the census, as (lower bound inclusive, label); the last band includes 1.0.
pub const RETENTION_RISK_BANDS: [(f64, &str); 5] = [
    (0.0, "0.0-0.2"),
    (0.2, "0.2-0.4"),
    (0.4, "0.4-0.6"),
    (0.6, "0.6-0.8"),
    (0.8, "0.8-1.0"),
];

/// Index in [`RETENTION_RISK_BANDS`] of the band holding `retention_risk` (clamped to [0, 1]).
pub fn retention_risk_band(retention_risk: f64) -> usize {
    RETENTION_RISK_BANDS
        .iter()
        .rposition(|(lower, _)| retention_risk >= *lower)
        .unwrap_or(0)
}

/// Sets up tracing: level from `RUST_LOG` (default `info`), JSON lines when `json` is set.
pub fn init_logging(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // try_init: a second call (tests) keeps the first subscriber.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

#[cfg(test)]
mod tests {
    use super::LogRateLimit;

    /// D10: 1,000 lagging watchers logged 82k WARN lines in 8 s; one line per interval now, with
    /// the count of lines held back.
    #[test]
    fn repeated_warnings_are_let_through_once_per_interval() {
        let limit = LogRateLimit::new(10_000);
        let let_through = (0..1_000u64)
            .filter(|i| limit.allow(1_000 + i).is_some())
            .count();
        assert_eq!(let_through, 1);
        assert_eq!(limit.allow(11_000), Some(999));
        assert_eq!(limit.allow(11_001), None);
    }
}
