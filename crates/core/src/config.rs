//! The one configuration file (TOML): server limits and every scoring weight, threshold, half-life
//! and the reply SLA, with documented defaults. Unknown keys and out-of-range values are errors at
//! start, naming the key.

use crate::calendar::BusinessHoursConfig;
use crate::domain::{Channel, Kind};
use rapport_sentiment::Backend;
/// The `[transformer]` section (owned by the sentiment crate, validated here).
pub use rapport_sentiment::TransformerConfig;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

const DAY_SECONDS: f64 = 86_400.0;

/// Whole configuration: `[server]` and `[scoring]` tables.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The `[server]` table: listening addresses, input limits and the sentiment backend.
    pub server: ServerConfig,
    /// The `[scoring]` table: every scoring weight, threshold, half-life and reply SLA.
    pub scoring: ScoringConfig,
    /// The `[durability]` table: where events are logged and when they are fsynced.
    pub durability: DurabilityConfig,
    /// The `[access]` table: bearer tokens and TLS.
    pub access: AccessConfig,
    /// The `[transformer]` table: the transformer backend's worker pool.
    pub transformer: TransformerConfig,
    /// The `[identity]` table: how typed identifiers resolve to one customer.
    pub identity: IdentityConfig,
    /// The `[timeline]` table: how much text customers' timelines keep.
    pub timeline: crate::scoring::TimelineLimits,
    /// The `[language]` table: which languages texts are told apart among.
    pub language: LanguageConfig,
    /// `[[segments]]`: named conditions over attributes and scores (see `segments`).
    pub segments: Vec<crate::segments::SegmentConfig>,
    /// `[[rules]]`: first match wins; a segment mapped to exclusion or a treatment.
    pub rules: Vec<crate::segments::RuleConfig>,
    /// `[[intents]]`: tenants' intents, each a name and example messages (README "Intents"); a
    /// tenant's list set over the API (IntentService) wins over these.
    pub intents: Vec<IntentConfig>,
    /// The `[cluster]` table: replicas sharing partitions over NATS JetStream (off by default).
    pub cluster: ClusterConfig,
    /// The `[routing]` table: how agents' skills are matched (README "Routing").
    pub routing: RoutingConfig,
    /// The file this config was read from (not a key): what a reload reads again.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// The `[routing]` table: how conversations are matched to agents' skills (README "Routing").
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// Segments (`[[segments]]` names) that are skills: a customer in one is only for agents
    /// that list it (a "vip" tier), until the optional-skill wait when "segment" is optional.
    pub skill_segments: Vec<String>,
    /// Which skills stop being required once a conversation has waited
    /// `optional_skills_after_seconds`: any of "language", "intent", "segment". A channel is
    /// always required (capacity is per channel).
    pub optional_skills: Vec<String>,
    /// How long a conversation waits (since its oldest unanswered message) before its optional
    /// skills are dropped, so nothing starves for want of a specialist.
    pub optional_skills_after_seconds: u64,
    /// Units of an agent's `capacity_units` one conversation on a channel takes, by channel name
    /// (`chat = 3` with 10 units: three chats and one e-mail); 1 for a channel not listed.
    pub channel_weights: std::collections::BTreeMap<String, u32>,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            skill_segments: Vec::new(),
            optional_skills: vec!["intent".into(), "segment".into()],
            optional_skills_after_seconds: 300,
            channel_weights: std::collections::BTreeMap::new(),
        }
    }
}

/// The skills `routing.optional_skills` may name.
pub const OPTIONAL_SKILL_KINDS: [&str; 3] = ["language", "intent", "segment"];

impl RoutingConfig {
    /// The units one conversation on `channel` takes of an agent's `capacity_units`.
    pub fn weight(&self, channel: crate::domain::Channel) -> u32 {
        self.channel_weights
            .get(channel.as_str())
            .copied()
            .unwrap_or(1)
    }

    /// Whether the skill kind `kind` ("language", "intent", "segment") is optional.
    pub fn is_optional(&self, kind: &str) -> bool {
        self.optional_skills.iter().any(|optional| optional == kind)
    }

    /// Checks the names against the configured segments.
    fn validate(&self, segments: &[crate::segments::SegmentConfig]) -> Result<(), ConfigError> {
        for (index, name) in self.skill_segments.iter().enumerate() {
            if !segments.iter().any(|segment| &segment.name == name) {
                return Err(ConfigError::invalid(
                    &format!("routing.skill_segments[{index}]"),
                    format!("no [[segments]] entry is named {name:?}"),
                ));
            }
        }
        for (index, kind) in self.optional_skills.iter().enumerate() {
            if !OPTIONAL_SKILL_KINDS.contains(&kind.as_str()) {
                return Err(ConfigError::invalid(
                    &format!("routing.optional_skills[{index}]"),
                    format!("must be one of {OPTIONAL_SKILL_KINDS:?}, got {kind:?}"),
                ));
            }
        }
        for (name, weight) in &self.channel_weights {
            let key = format!("routing.channel_weights.{name}");
            if !crate::domain::Channel::ALL
                .iter()
                .any(|channel| channel.as_str() == name)
            {
                return Err(ConfigError::invalid(&key, "is not a channel"));
            }
            check_range(&key, u64::from(*weight), 1, 1_000)?;
        }
        check_range(
            "routing.optional_skills_after_seconds",
            self.optional_skills_after_seconds,
            0,
            30 * 86_400,
        )
    }
}

/// One `[[intents]]` entry: an intent of a tenant.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IntentConfig {
    /// The tenant.
    pub tenant: String,
    /// The intent's name (a-z, 0-9, `_`, `-`).
    pub name: String,
    /// Messages customers send with this intent.
    pub examples: Vec<String>,
}

impl Config {
    /// The `[[intents]]` grouped by tenant, in the file's order.
    pub fn intents_by_tenant(
        &self,
    ) -> BTreeMap<String, Vec<crate::sentiment::intent::IntentDefinition>> {
        let mut by_tenant: BTreeMap<String, Vec<_>> = BTreeMap::new();
        for intent in &self.intents {
            by_tenant.entry(intent.tenant.clone()).or_default().push(
                crate::sentiment::intent::IntentDefinition {
                    name: intent.name.clone(),
                    examples: intent.examples.clone(),
                },
            );
        }
        by_tenant
    }

    /// Checks `[[intents]]`: each tenant's list must build a model; the error names the entry.
    fn validate_intents(&self) -> Result<(), ConfigError> {
        for (tenant, definitions) in self.intents_by_tenant() {
            if let Err(error) = crate::sentiment::intent::validate(&definitions) {
                // The error indexes the tenant's list: point at the entry in the file.
                let positions: Vec<usize> = self
                    .intents
                    .iter()
                    .enumerate()
                    .filter(|(_, intent)| intent.tenant == tenant)
                    .map(|(index, _)| index)
                    .collect();
                let key = match error.intent.and_then(|index| positions.get(index)) {
                    Some(position) => format!("intents[{position}]{}", error.part),
                    None => format!("intents (tenant {tenant:?})"),
                };
                return Err(ConfigError::invalid(&key, error.message));
            }
        }
        Ok(())
    }
}

/// The `[cluster]` table (issue 17, docs/scaling.md): with `nats_url` set, the server runs as one
/// replica of a cluster. Ingest publishes each event to JetStream under its partition, replicas
/// own partitions through leases in a JetStream KV bucket, and queries are answered by the owners.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// NATS servers, comma-separated (`nats://host:4222,nats://other:4222`); unset: single
    /// process with the local log.
    pub nats_url: Option<String>,
    /// Partitions events are spread over by hash(tenant, customer). Fixed for a cluster's life:
    /// changing it remaps customers (start a new stream).
    pub partitions: u32,
    /// This replica's name in leases (unset: host name and process id).
    pub replica_id: Option<String>,
    /// The gRPC address other replicas reach this one at (unset: the bound gRPC address).
    pub advertise_addr: Option<String>,
    /// The JetStream stream holding the events (subjects `<subject_prefix>.<partition>`).
    pub stream: String,
    /// Subject prefix of the events.
    pub subject_prefix: String,
    /// Replicas of the stream and the lease bucket in the JetStream cluster (1 or 3 usually).
    pub stream_replicas: usize,
    /// The KV bucket holding partition leases and replica heartbeats.
    pub lease_bucket: String,
    /// A lease not renewed for this long expires and its partition may move.
    pub lease_seconds: u64,
    /// How often an owner stores each partition's state with the stream sequence it covers, so a
    /// new owner loads it and replays only what came after (0: never; new owners replay the
    /// whole partition).
    pub snapshot_interval_seconds: u64,
    /// The JetStream object store holding the partitions' states.
    pub snapshot_bucket: String,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            nats_url: None,
            partitions: 64,
            replica_id: None,
            advertise_addr: None,
            stream: "RAPPORT_EVENTS".into(),
            subject_prefix: "rapport.events".into(),
            stream_replicas: 1,
            lease_bucket: "rapport_leases".into(),
            lease_seconds: 10,
            snapshot_interval_seconds: 300,
            snapshot_bucket: "rapport_snapshots".into(),
        }
    }
}

impl ClusterConfig {
    /// Checks every value; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_range("cluster.partitions", u64::from(self.partitions), 1, 4_096)?;
        check_range("cluster.stream_replicas", self.stream_replicas as u64, 1, 5)?;
        check_range("cluster.lease_seconds", self.lease_seconds, 1, 3_600)?;
        let token = |key: &str, value: &str, extra: &[char]| {
            let ok = !value.is_empty()
                && value.chars().all(|c| {
                    c.is_ascii_alphanumeric() || c == '_' || c == '-' || extra.contains(&c)
                });
            if ok {
                Ok(())
            } else {
                Err(ConfigError::invalid(
                    key,
                    format!("must be letters, digits, - and _ (got {value:?})"),
                ))
            }
        };
        token("cluster.stream", &self.stream, &[])?;
        token("cluster.lease_bucket", &self.lease_bucket, &[])?;
        token("cluster.snapshot_bucket", &self.snapshot_bucket, &[])?;
        check_range(
            "cluster.snapshot_interval_seconds",
            self.snapshot_interval_seconds,
            0,
            86_400,
        )?;
        token("cluster.subject_prefix", &self.subject_prefix, &['.'])?;
        if let Some(replica) = &self.replica_id {
            token("cluster.replica_id", replica, &[])?;
        }
        if let Some(url) = &self.nats_url {
            if url.split(',').any(|server| server.trim().is_empty()) {
                return Err(ConfigError::invalid(
                    "cluster.nats_url",
                    "must list NATS servers separated by commas",
                ));
            }
        }
        Ok(())
    }
}

/// The `[language]` table: the languages the detector chooses among for every text's
/// `language` (README "Languages").
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LanguageConfig {
    /// ISO 639-1 codes of the languages customers are expected to write in (e.g. `["en", "fr",
    /// "de"]`); empty (the default): every language the detector knows. A short list is read
    /// more accurately and about 4× faster (BENCHMARKS.md), but a text in a language not listed
    /// is named as the closest listed one.
    pub candidates: Vec<String>,
}

impl LanguageConfig {
    /// The detector these settings describe; an unknown code is refused naming its key.
    pub fn detector(&self) -> Result<rapport_sentiment::language::LanguageDetector, ConfigError> {
        rapport_sentiment::language::LanguageDetector::only(&self.candidates).map_err(|error| {
            ConfigError::invalid(
                &format!("language.candidates[{}]", error.index),
                error.to_string(),
            )
        })
    }
}

/// The `[identity]` table: limits on what one customer may hold, and values that are never
/// identifiers (see `identity` and README "Identity").
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityConfig {
    /// External (brand user) ids one customer may hold: the hard identifier.
    pub max_external_ids_per_customer: usize,
    /// E-mail addresses one customer may hold.
    pub max_emails_per_customer: usize,
    /// Phone numbers one customer may hold.
    pub max_phones_per_customer: usize,
    /// Channel handles one customer may hold.
    pub max_handles_per_customer: usize,
    /// Customers one customer may be merged from (beyond it, merges are refused).
    pub max_merges_per_customer: usize,
    /// Identifiers per interaction or link request.
    pub max_identifiers_per_request: usize,
    /// Values refused as identifiers besides the built-in placeholders ("null", "anonymous", all
    /// zeros…), e.g. a shared support address; compared without case.
    pub blocked_values: Vec<String>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            max_external_ids_per_customer: 1,
            max_emails_per_customer: 5,
            max_phones_per_customer: 5,
            max_handles_per_customer: 10,
            max_merges_per_customer: 50,
            max_identifiers_per_request: 16,
            blocked_values: Vec::new(),
        }
    }
}

impl IdentityConfig {
    /// Checks every limit, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            (
                "identity.max_external_ids_per_customer",
                self.max_external_ids_per_customer,
            ),
            (
                "identity.max_emails_per_customer",
                self.max_emails_per_customer,
            ),
            (
                "identity.max_phones_per_customer",
                self.max_phones_per_customer,
            ),
            (
                "identity.max_handles_per_customer",
                self.max_handles_per_customer,
            ),
            (
                "identity.max_merges_per_customer",
                self.max_merges_per_customer,
            ),
            (
                "identity.max_identifiers_per_request",
                self.max_identifiers_per_request,
            ),
        ] {
            check_range(key, value as u64, 1, 1_000)?;
        }
        check_range(
            "identity.blocked_values",
            self.blocked_values.len() as u64,
            0,
            10_000,
        )
    }
}

/// Checks the `[transformer]` pool settings (the section is the sentiment crate's), naming the key.
pub fn validate_transformer(transformer: &TransformerConfig) -> Result<(), ConfigError> {
    for (key, value, largest) in [
        ("transformer.workers", transformer.workers, 1_024),
        ("transformer.threads", transformer.threads, 1_024),
        (
            "transformer.queue_capacity",
            transformer.queue_capacity,
            1_000_000,
        ),
        (
            "transformer.max_batch_texts",
            transformer.max_batch_texts,
            1_000_000,
        ),
        (
            "transformer.max_batch_tokens",
            transformer.max_batch_tokens,
            1 << 30,
        ),
    ] {
        check_range(key, value as u64, 1, largest)?;
    }
    if !(0.0..=1.0).contains(&transformer.cascade_min_confidence) {
        return Err(ConfigError::invalid(
            "transformer.cascade_min_confidence",
            format!(
                "must be within [0, 1], got {}",
                transformer.cascade_min_confidence
            ),
        ));
    }
    Ok(())
}

/// `[access]`: tokens and TLS. With no tokens every caller may use every tenant (and the server
/// says so at start); with no `[access.tls]` gRPC is plaintext.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessConfig {
    /// Accepted bearer tokens.
    pub tokens: Vec<TokenConfig>,
    /// TLS for the gRPC port; mutual TLS when `client_ca_file` is set.
    pub tls: Option<TlsConfig>,
}

/// One accepted bearer token.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The tenant it grants, or `*` for every tenant (an admin token).
    pub tenant: String,
    /// Lower-case hex SHA-256 of the token (`printf %s "$TOKEN" | sha256sum`).
    pub token_sha256: String,
}

/// `[access.tls]`: PEM files.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Server certificate chain.
    pub cert_file: PathBuf,
    /// Server private key.
    pub key_file: PathBuf,
    /// CA that client certificates must chain to; set = mutual TLS (clients without a valid
    /// certificate cannot connect).
    pub client_ca_file: Option<PathBuf>,
}

/// The tenant value that grants every tenant.
pub const ALL_TENANTS: &str = "*";

impl AccessConfig {
    /// Checks every token entry, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (index, token) in self.tokens.iter().enumerate() {
            let key = |field: &str| format!("access.tokens[{index}].{field}");
            if token.tenant.is_empty() {
                return Err(ConfigError::Invalid {
                    key: key("tenant"),
                    message: format!("must name a tenant, or \"{ALL_TENANTS}\" for all"),
                });
            }
            let is_hex_digest = token.token_sha256.len() == 64
                && token
                    .token_sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !is_hex_digest {
                return Err(ConfigError::Invalid {
                    key: key("token_sha256"),
                    message: "must be 64 lower-case hex digits (printf %s \"$TOKEN\" | sha256sum)"
                        .to_string(),
                });
            }
        }
        Ok(())
    }
}

/// When the log is fsynced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// Every accepted event is fsynced before its call is answered (concurrent callers share
    /// fsyncs). A crash, even of the OS or power, loses nothing acknowledged. The default.
    #[default]
    Always,
    /// Events are written to the OS before the answer and fsynced every `fsync_interval_ms`. A
    /// process crash (kill -9) loses nothing acknowledged; an OS crash or power loss can lose the
    /// acknowledged events of the last interval.
    Interval,
}

/// The `[durability]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DurabilityConfig {
    /// Where the log and snapshots live; unset = in memory only.
    pub data_dir: Option<PathBuf>,
    /// When the log is fsynced (`always` or `interval`).
    pub fsync: FsyncPolicy,
    /// Fsync period with `fsync = "interval"`.
    pub fsync_interval_ms: u64,
    /// How often the log is folded into the snapshot and truncated (0 = only at start).
    pub snapshot_interval_seconds: u64,
    /// Start even when files are damaged, dropping what cannot be read (each drop logged as an
    /// error naming the file and byte); without it, damage refuses the start. Set only by the
    /// `--drop-damaged` flag, for one start: never read from a config file.
    #[serde(skip)]
    pub drop_damaged: bool,
}

impl Default for DurabilityConfig {
    fn default() -> Self {
        Self {
            data_dir: None,
            fsync: FsyncPolicy::Always,
            fsync_interval_ms: 100,
            snapshot_interval_seconds: 300,
            drop_damaged: false,
        }
    }
}

impl DurabilityConfig {
    /// Checks every value; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_range(
            "durability.fsync_interval_ms",
            self.fsync_interval_ms,
            0,
            60_000,
        )?;
        // Longer than a week between snapshots is a mistake (and 2^63 - 1 s overflowed the timer).
        check_range(
            "durability.snapshot_interval_seconds",
            self.snapshot_interval_seconds,
            0,
            604_800,
        )?;
        if self.fsync == FsyncPolicy::Interval && self.fsync_interval_ms == 0 {
            return Err(ConfigError::Invalid {
                key: "durability.fsync_interval_ms".to_string(),
                message: "must be at least 1 with fsync = \"interval\"".to_string(),
            });
        }
        Ok(())
    }
}

/// Listening addresses, input limits and the sentiment backend.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// gRPC listen address.
    pub grpc_addr: SocketAddr,
    /// Prometheus `/metrics` listen address.
    pub metrics_addr: SocketAddr,
    /// Sentiment backend used by ingest, `Classify` and the CLI.
    pub sentiment: Backend,
    /// Directory holding the model files; the models built into the binary when unset.
    pub models_dir: Option<PathBuf>,
    /// Longest accepted text, in bytes.
    pub max_text_bytes: usize,
    /// Longest accepted tenant, customer, event or thread id, in bytes.
    pub max_id_bytes: usize,
    /// How far ahead of the server clock an event may be stamped (clock skew).
    pub max_future_skew_seconds: u64,
    /// Most texts in one `Classify` call.
    pub max_classify_texts: usize,
    /// Most interactions in one `IngestBatch` call.
    pub max_batch_interactions: usize,
    /// Ingest work in flight across all connections: `IngestBatch` calls until answered, and
    /// events of `Ingest`/`IngestScored` streams while they are applied (a stream waiting for its
    /// client holds none). A new call finding none free is refused at once with
    /// RESOURCE_EXHAUSTED; the next event of an open stream waits its turn (first come, first
    /// served) while HTTP/2 flow control slows its sender.
    pub max_ingest_in_flight: usize,
    /// Ingest calls (streams and batches) one tenant may have open at once (a call counts for the
    /// tenant its token grants; an admin token's call for the tenant of its first event), so one
    /// tenant cannot take every slot from the others, nor another tenant's token any of its
    /// slots; more are refused with RESOURCE_EXHAUSTED.
    pub max_ingest_in_flight_per_tenant: usize,
    /// `Ingest` and `IngestScored` streams open at once across all connections; more are refused
    /// at once with RESOURCE_EXHAUSTED. An open stream costs memory, not ingest capacity.
    pub max_ingest_streams: usize,
    /// Concurrent requests per connection before new ones queue.
    pub concurrency_per_connection: usize,
    /// Updates buffered per tenant for `WatchPriorities`; a slower watcher skips (and is told).
    pub watch_buffer: usize,
    /// Most rejections listed in an `IngestSummary`.
    pub max_reported_rejections: usize,
    /// Most customers one tenant may track (0 = no cap). Beyond it, events for new customers are
    /// rejected (naming `customer_id`) and customers already tracked keep being updated.
    pub max_customers_per_tenant: usize,
    /// How long in-flight streams may finish after SIGTERM before the process exits anyway.
    pub shutdown_grace_seconds: u64,
    /// How often the ranking pass re-evaluates every customer: it rebuilds TopCustomers' ranking
    /// index, refits tenants' activity models when due, pushes time-driven priority changes to
    /// watchers and sets the customer gauges. A customer whose priority rises through time alone
    /// (no new event) reaches TopCustomers and watchers at most this late; customers with new
    /// events are ranked at once.
    pub ranking_pass_seconds: u64,
    /// Longest a client may take to complete its TLS handshake (with `[access.tls]`) before its
    /// connection is closed.
    pub tls_handshake_timeout_seconds: u64,
    /// An Ingest or IngestScored stream that sends no event for this long is ended
    /// (DEADLINE_EXCEEDED), freeing its stream slot.
    pub ingest_idle_timeout_seconds: u64,
    /// Most tenants the server holds (0 = no cap). Beyond it, events for new tenants are rejected
    /// (naming `tenant_id` and this key); existing tenants keep being updated.
    pub max_tenants: usize,
    /// A gRPC connection from which nothing is read for this long is closed: one that never sends
    /// its HTTP/2 preface, or a client gone silent. The server pings every connection at a third
    /// of this, so a live client (whose HTTP/2 stack acks pings) is never idle, streams included.
    pub idle_connection_timeout_seconds: u64,
    /// Most gRPC connections open at once (TLS handshakes included); a connection beyond it is
    /// closed as soon as it is accepted.
    pub max_connections: usize,
    /// Threads applying `IngestBatch` calls (0: one per core); batches beyond them wait their
    /// turn (within `max_ingest_in_flight`).
    pub ingest_threads: usize,
    /// The niceness those threads run at (Linux; 0 to 19, 0: as every other thread), so queries
    /// are answered first while ingest takes every idle cycle.
    pub ingest_nice: i32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            grpc_addr: SocketAddr::from(([0, 0, 0, 0], 50051)),
            metrics_addr: SocketAddr::from(([0, 0, 0, 0], 9464)),
            sentiment: Backend::Fast,
            models_dir: None,
            max_text_bytes: 16 * 1024,
            max_id_bytes: 256,
            max_future_skew_seconds: 300,
            max_classify_texts: 1000,
            max_batch_interactions: 10_000,
            max_ingest_in_flight: 256,
            max_ingest_in_flight_per_tenant: 128,
            max_ingest_streams: 1024,
            concurrency_per_connection: 64,
            watch_buffer: 1024,
            max_reported_rejections: 10,
            max_customers_per_tenant: 5_000_000,
            shutdown_grace_seconds: 10,
            ranking_pass_seconds: 5,
            tls_handshake_timeout_seconds: 10,
            ingest_idle_timeout_seconds: 60,
            max_tenants: 10_000,
            idle_connection_timeout_seconds: 60,
            max_connections: 10_000,
            ingest_threads: 0,
            ingest_nice: 10,
        }
    }
}

/// Everything the pure scoring functions read. See docs/scoring.md for the formulas.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScoringConfig {
    /// Half-life of engagement (default 14 days).
    pub engagement_half_life_seconds: f64,
    /// Half-life of the long-run engagement baseline that recent engagement is compared with (90 days).
    pub engagement_baseline_half_life_seconds: f64,
    /// Decayed weighted interactions that map to engagement 63 (= 100 * (1 - 1/e)).
    pub engagement_scale: f64,
    /// Half-life of recent sentiment (2 days).
    pub sentiment_recent_half_life_seconds: f64,
    /// Half-life of long-run sentiment (30 days).
    pub sentiment_long_half_life_seconds: f64,
    /// Half-life of the purchase and positive-contact memories that lower risk (30 days).
    pub goodwill_half_life_seconds: f64,
    /// Pseudo-weight of the neutral prior in long-run sentiment and of long-run sentiment in
    /// recent sentiment (0.5 = half a confident message), so both fade back as messages age.
    pub sentiment_prior_weight: f64,
    /// Usual gap assumed for a customer with fewer than two interactions (7 days).
    pub default_gap_seconds: f64,
    /// Smallest usual gap, so bursts of messages do not make a day's silence look alarming (1 day).
    pub min_gap_seconds: f64,
    /// First-response target for inbound messages, every channel unless `channel_sla` says
    /// otherwise (1 hour).
    pub reply_sla_seconds: f64,
    /// Next-response target in a thread the brand has already answered once (1 hour).
    pub next_reply_sla_seconds: f64,
    /// An unanswered thread older than this (wall clock) is missed: counted and reported, and it
    /// stops climbing in priority (14 days).
    pub missed_after_seconds: f64,
    /// Per-channel reply targets (SLA policy rows, as support desks define them).
    pub channel_sla: BTreeMap<Channel, ChannelSlaConfig>,
    /// Business hours for every tenant without its own (absent: the SLA clock never pauses).
    pub business_hours: Option<BusinessHoursConfig>,
    /// Per-tenant SLA policies, by tenant id.
    pub tenants: BTreeMap<String, TenantSlaConfig>,
    /// Retention risk is the probability of no inbound activity within this horizon (90 days).
    pub retention_horizon_seconds: f64,
    /// A tenant's activity model is fitted once it has at least this many customers (before
    /// that, and for smaller tenants, the documented prior is used).
    pub retention_min_customers_to_fit: usize,
    /// How often a tenant's activity model is refitted in the background (1 hour).
    pub retention_refit_seconds: f64,
    /// Events kept per customer for exact re-folding and duplicate detection. Beyond it the oldest
    /// quarter is folded into the customer's summary (scores unchanged) and their ids forgotten;
    /// an event older than every kept one is then refused (`occurred_at`), never double-counted.
    pub max_events_per_customer: usize,
    /// Engagement weight per interaction kind; kinds not listed keep their default.
    pub kind_weights: BTreeMap<Kind, f64>,
    /// Engagement multiplier per channel; channels not listed keep their default (1.0).
    pub channel_weights: BTreeMap<Channel, f64>,
    /// The `[scoring.risk]` table: log-odds weights of retention risk.
    pub risk: RiskWeights,
    /// The `[scoring.respond]` table: weights of RESPOND urgency.
    pub respond: RespondWeights,
    /// The `[scoring.actions]` table: when each action applies.
    pub actions: ActionThresholds,
    /// The `[scoring.noise]` table: copies of the same text, floods and cross-posts.
    pub noise: NoiseConfig,
}

/// When copies of the same text are one matter, and when they are a flood (docs/scoring.md,
/// "Noise"). A text's copies are its repeats by the same customer, on any channel, with the same
/// words (case, handles, links, digits and punctuation aside) and at least 20 letters.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NoiseConfig {
    /// A copy within this long of the latest copy of a waiting message joins its matter instead
    /// of opening another: it is answered with it, and adds no thread, channel or urgency (1 day).
    pub cross_post_window_seconds: f64,
    /// Copies at most this far apart form a burst (1 hour).
    pub flood_window_seconds: f64,
    /// From this many copies in a burst, a text that carries no grievance (not negative, no
    /// urgency cue) is a flood: its matter is kept out of RESPOND and its copies add no
    /// engagement or sentiment (5).
    pub flood_copies: u32,
}

impl Default for NoiseConfig {
    fn default() -> Self {
        Self {
            cross_post_window_seconds: DAY_SECONDS,
            flood_window_seconds: 3600.0,
            flood_copies: 5,
        }
    }
}

/// The logistic layer of retention risk: log-odds added to the activity model's own log-odds
/// (docs/scoring.md). The signal weights are priors for what a purchase log lacks, never fitted to
/// a benchmark: each tenant refits them on its own past once its history is long enough.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RiskWeights {
    /// Log-odds added to every customer (0: the activity model as it is).
    pub bias: f64,
    /// Recent engagement rate below the long-run rate (0 by default: on activity alone it restates
    /// what the activity model already counts).
    pub engagement_drop: f64,
    /// Negative long-run sentiment, at sentiment -1.
    pub negative_sentiment: f64,
    /// Recent sentiment below long-run sentiment, per unit of drop.
    pub worsening_sentiment: f64,
    /// Unanswered negative messages (1 - 0.5^n).
    pub open_complaints: f64,
    /// Recent positive contact (subtracted).
    pub positive_contact: f64,
}

/// Weights of RESPOND urgency, in log-odds-like units summed per open thread (docs/scoring.md).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RespondWeights {
    /// Per unit of ln(1 + SLA progress): progress is business time waited over the SLA target.
    pub wait: f64,
    /// When a message asks for an answer (a question, a request).
    pub needs_reply: f64,
    /// At the most negative message (score -1).
    pub negativity: f64,
    /// Per decade of the author's followers (log10(1 + followers)).
    pub reach: f64,
    /// When the message is on a public channel.
    pub public_channel: f64,
    /// Per unit of ln(unanswered messages in the thread).
    pub messages: f64,
    /// Per decade of the customer's lifetime value (log10(1 + value)).
    pub customer_value: f64,
    /// At retention risk 1.
    pub retention_risk: f64,
    /// Past missed_after_seconds, the wait term stops climbing and falls by this per unit of
    /// ln(waited / missed_after_seconds), so a stale backlog sinks below fresh messages.
    pub staleness: f64,
    /// When an unanswered message threatens to cancel or go to a competitor.
    pub cancel_threat: f64,
    /// When it mentions a lawyer, a lawsuit, a regulator or a consumer body.
    pub legal_threat: f64,
    /// When it asks for a manager or an escalation.
    pub manager_request: f64,
    /// When it says the customer asked before, or the customer waits on several channels at once.
    pub repeat_contact: f64,
    /// When someone may be hurt (fire, injury, poisoning, electric shock).
    pub safety: f64,
}

impl RespondWeights {
    /// The urgency a cue adds to its thread.
    pub fn cue(&self, cue: crate::domain::UrgencyCue) -> f64 {
        use crate::domain::UrgencyCue;
        match cue {
            UrgencyCue::CancelThreat => self.cancel_threat,
            UrgencyCue::LegalThreat => self.legal_threat,
            UrgencyCue::ManagerRequest => self.manager_request,
            UrgencyCue::RepeatContact => self.repeat_contact,
            UrgencyCue::Safety => self.safety,
        }
    }
}

/// A channel's reply targets; unset values fall back to the `[scoring]` defaults.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelSlaConfig {
    /// First reply due this long (business time) after the customer's first unanswered message.
    pub first_response_seconds: Option<f64>,
    /// Next reply, in a thread the brand already answered once, due this long after.
    pub next_response_seconds: Option<f64>,
    /// An unanswered thread older than this (wall clock) is missed: reported, and it stops climbing.
    pub missed_after_seconds: Option<f64>,
}

/// One tenant's own SLA policy; what it leaves out comes from `[scoring]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TenantSlaConfig {
    /// Defaults for every channel of this tenant.
    #[serde(flatten)]
    pub defaults: ChannelSlaConfig,
    /// Per-channel targets of this tenant.
    pub channel_sla: BTreeMap<Channel, ChannelSlaConfig>,
    /// This tenant's business hours (the SLA clock pauses outside them).
    pub business_hours: Option<BusinessHoursConfig>,
}

/// When each action applies.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActionThresholds {
    /// RESCUE from this retention risk on.
    pub rescue_min_risk: f64,
    /// ADVOCATE needs long-run sentiment at least this ...
    pub advocate_min_sentiment: f64,
    /// ... engagement at least this ...
    pub advocate_min_engagement: f64,
    /// ... and at least this many followers.
    pub advocate_min_followers: u64,
    /// NURTURE: engaged (at least this) but never bought.
    pub nurture_min_engagement: f64,
}

impl Default for ScoringConfig {
    fn default() -> Self {
        Self {
            engagement_half_life_seconds: 14.0 * DAY_SECONDS,
            engagement_baseline_half_life_seconds: 90.0 * DAY_SECONDS,
            engagement_scale: 8.0,
            sentiment_recent_half_life_seconds: 2.0 * DAY_SECONDS,
            sentiment_long_half_life_seconds: 30.0 * DAY_SECONDS,
            goodwill_half_life_seconds: 30.0 * DAY_SECONDS,
            sentiment_prior_weight: 0.5,
            default_gap_seconds: 7.0 * DAY_SECONDS,
            min_gap_seconds: DAY_SECONDS,
            reply_sla_seconds: 3600.0,
            next_reply_sla_seconds: 3600.0,
            missed_after_seconds: 14.0 * DAY_SECONDS,
            channel_sla: BTreeMap::new(),
            business_hours: None,
            tenants: BTreeMap::new(),
            retention_horizon_seconds: 90.0 * DAY_SECONDS,
            retention_min_customers_to_fit: 200,
            retention_refit_seconds: 3600.0,
            max_events_per_customer: 10_000,
            kind_weights: BTreeMap::new(),
            channel_weights: BTreeMap::new(),
            risk: RiskWeights::default(),
            respond: RespondWeights::default(),
            actions: ActionThresholds::default(),
            noise: NoiseConfig::default(),
        }
    }
}

impl Default for RiskWeights {
    fn default() -> Self {
        Self {
            bias: 0.0,
            engagement_drop: 0.0,
            negative_sentiment: 1.0,
            worsening_sentiment: 1.0,
            open_complaints: 0.5,
            positive_contact: 0.5,
        }
    }
}

impl Default for RespondWeights {
    fn default() -> Self {
        Self {
            wait: 0.75,
            needs_reply: 1.0,
            negativity: 3.0,
            reach: 0.5,
            public_channel: 0.5,
            messages: 0.2,
            customer_value: 0.3,
            retention_risk: 1.0,
            staleness: 0.5,
            cancel_threat: 1.5,
            legal_threat: 2.0,
            manager_request: 1.0,
            repeat_contact: 1.0,
            safety: 3.0,
        }
    }
}

impl Default for ActionThresholds {
    fn default() -> Self {
        Self {
            rescue_min_risk: 0.6,
            advocate_min_sentiment: 0.3,
            advocate_min_engagement: 40.0,
            advocate_min_followers: 1000,
            nurture_min_engagement: 30.0,
        }
    }
}

/// Default engagement weight of a kind: conversations count most, passive signals least.
pub fn default_kind_weight(kind: Kind) -> f64 {
    match kind {
        Kind::Purchase => 3.0,
        Kind::Review | Kind::SupportTicket => 2.0,
        Kind::Message | Kind::Reply | Kind::Comment | Kind::Mention | Kind::Survey => 1.5,
        Kind::Share => 1.0,
        Kind::Follow => 0.5,
        Kind::Like => 0.3,
        Kind::PageView => 0.1,
        Kind::Unfollow => 0.0,
    }
}

impl ScoringConfig {
    /// Engagement weight of one inbound interaction of this kind on this channel.
    pub fn engagement_weight(&self, kind: Kind, channel: Channel) -> f64 {
        let kind_weight = self
            .kind_weights
            .get(&kind)
            .copied()
            .unwrap_or_else(|| default_kind_weight(kind));
        let channel_weight = self.channel_weights.get(&channel).copied().unwrap_or(1.0);
        kind_weight * channel_weight
    }
}

/// Longest reply target or missed horizon accepted (10 years).
pub const MAX_SLA_SECONDS: f64 = 10.0 * 365.0 * DAY_SECONDS;

impl ServerConfig {
    /// Checks every value; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        // (key, value, smallest, largest): beyond these a value panics, hangs or silently stops
        // something (a semaphore over its permit limit, a broadcast buffer allocated up front, a
        // timer past the end of time).
        let ranges = [
            (
                "server.max_text_bytes",
                self.max_text_bytes as u64,
                1,
                4 << 20,
            ),
            ("server.max_id_bytes", self.max_id_bytes as u64, 1, 65_536),
            (
                "server.max_future_skew_seconds",
                self.max_future_skew_seconds,
                0,
                31_536_000,
            ),
            (
                "server.max_classify_texts",
                self.max_classify_texts as u64,
                1,
                100_000,
            ),
            (
                "server.max_batch_interactions",
                self.max_batch_interactions as u64,
                1,
                1_000_000,
            ),
            (
                "server.max_ingest_in_flight",
                self.max_ingest_in_flight as u64,
                1,
                1_000_000,
            ),
            (
                "server.ingest_threads",
                self.ingest_threads as u64,
                0,
                1_024,
            ),
            (
                "server.ingest_nice",
                u64::try_from(self.ingest_nice).unwrap_or(u64::MAX),
                0,
                19,
            ),
            (
                "server.max_ingest_in_flight_per_tenant",
                self.max_ingest_in_flight_per_tenant as u64,
                1,
                1_000_000,
            ),
            (
                "server.max_ingest_streams",
                self.max_ingest_streams as u64,
                1,
                1_000_000,
            ),
            (
                "server.concurrency_per_connection",
                self.concurrency_per_connection as u64,
                1,
                100_000,
            ),
            (
                "server.watch_buffer",
                self.watch_buffer as u64,
                1,
                1_000_000,
            ),
            (
                "server.max_reported_rejections",
                self.max_reported_rejections as u64,
                0,
                100_000,
            ),
            (
                "server.max_customers_per_tenant",
                self.max_customers_per_tenant as u64,
                0,
                1_000_000_000,
            ),
            (
                "server.shutdown_grace_seconds",
                self.shutdown_grace_seconds,
                0,
                3_600,
            ),
            (
                "server.ranking_pass_seconds",
                self.ranking_pass_seconds,
                1,
                86_400,
            ),
            (
                "server.tls_handshake_timeout_seconds",
                self.tls_handshake_timeout_seconds,
                1,
                300,
            ),
            (
                "server.ingest_idle_timeout_seconds",
                self.ingest_idle_timeout_seconds,
                1,
                86_400,
            ),
            ("server.max_tenants", self.max_tenants as u64, 0, 1_000_000),
            (
                "server.idle_connection_timeout_seconds",
                self.idle_connection_timeout_seconds,
                1,
                86_400,
            ),
            (
                "server.max_connections",
                self.max_connections as u64,
                1,
                1_000_000,
            ),
        ];
        for (key, value, smallest, largest) in ranges {
            check_range(key, value, smallest, largest)?;
        }
        Ok(())
    }

    /// The model directory for loading from files: the repository's `models/` when unset.
    pub fn models_dir(&self) -> PathBuf {
        self.models_dir
            .clone()
            .unwrap_or_else(crate::sentiment::default_models_dir)
    }
}

impl Config {
    /// Reads and validates a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Self::from_toml(&text)?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// The segments and rules this config puts in force.
    pub fn policy(&self) -> crate::segments::Policy {
        crate::segments::Policy::new(self.segments.clone(), self.rules.clone())
            .with_routing(self.routing.clone())
    }

    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|error| parse_error(text, &error))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks both tables.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.durability.validate()?;
        self.access.validate()?;
        validate_transformer(&self.transformer)?;
        self.identity.validate()?;
        self.cluster.validate()?;
        if self.cluster.nats_url.is_some() && self.durability.data_dir.is_some() {
            return Err(ConfigError::invalid(
                "cluster.nats_url",
                "and durability.data_dir exclude each other: a cluster's log is its stream",
            ));
        }
        self.language.detector()?;
        check_range(
            "timeline.snippet_bytes",
            self.timeline.snippet_bytes as u64,
            0,
            4_096,
        )?;
        check_range(
            "timeline.snippets_per_customer",
            self.timeline.snippets_per_customer as u64,
            0,
            10_000,
        )?;
        self.scoring.validate()?;
        self.validate_intents()?;
        self.routing.validate(&self.segments)?;
        crate::segments::validate(&self.segments, &self.rules, &self.scoring)
    }
}

/// Refuses `value` outside `smallest..=largest`, naming `key`.
pub fn check_range(key: &str, value: u64, smallest: u64, largest: u64) -> Result<(), ConfigError> {
    if (smallest..=largest).contains(&value) {
        return Ok(());
    }
    Err(ConfigError::invalid(
        key,
        format!("must be within [{smallest}, {largest}], got {value}"),
    ))
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file that was read.
        path: PathBuf,
        /// Why reading it failed.
        source: std::io::Error,
    },
    /// The text is not valid TOML or does not fit the schema (unknown key, wrong type); the parser's message.
    #[error("invalid config: {0}")]
    Parse(String),
    /// A value is out of range or inconsistent with another.
    #[error("invalid config: {key} {message}")]
    Invalid {
        /// The offending key, dotted (e.g. `scoring.reply_sla_seconds`).
        key: String,
        /// What is wrong with its value.
        message: String,
    },
}

/// Longest excerpt of the config text a parse error quotes, in bytes: an error names where it
/// is, and quotes only so much of a line that may be any length.
pub const CONFIG_ERROR_EXCERPT_BYTES: usize = 120;
/// Longest parser message a parse error keeps, in bytes (it may quote a key of any length).
pub const CONFIG_ERROR_MESSAGE_BYTES: usize = 512;

/// A TOML error as [`ConfigError::Parse`]: the line and column, the parser's message, and a
/// bounded excerpt of the offending line from the error's column on (toml's own rendering quotes
/// the whole line, 32 KB of it for a 32 KB line).
fn parse_error(text: &str, error: &toml::de::Error) -> ConfigError {
    let message = crate::domain::bounded_text(error.message().trim(), CONFIG_ERROR_MESSAGE_BYTES);
    let Some(span) = error.span() else {
        return ConfigError::Parse(message.into_owned());
    };
    let mut start = span.start.min(text.len());
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let line_start = text[..start].rfind('\n').map_or(0, |at| at + 1);
    let line = text[..start].matches('\n').count() + 1;
    let column = text[line_start..start].chars().count() + 1;
    let rest = &text[start..];
    let rest = &rest[..rest.find('\n').unwrap_or(rest.len())];
    ConfigError::Parse(format!(
        "line {line}, column {column}: {message} (at {:?})",
        crate::domain::bounded_text(rest, CONFIG_ERROR_EXCERPT_BYTES)
    ))
}

impl ConfigError {
    pub(crate) fn invalid(key: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.to_string(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default()
            .validate()
            .expect("defaults must validate");
    }

    #[test]
    fn unknown_key_is_named() {
        let error = Config::from_toml("[scoring]\nhalf_life = 3\n").unwrap_err();
        assert!(error.to_string().contains("half_life"), "{error}");
    }

    #[test]
    fn bad_value_names_the_key() {
        let error = Config::from_toml("[scoring]\nreply_sla_seconds = -5\n").unwrap_err();
        assert!(
            error.to_string().contains("scoring.reply_sla_seconds"),
            "{error}"
        );
        let error = Config::from_toml("[scoring.kind_weights]\nlike = -1\n").unwrap_err();
        assert!(
            error.to_string().contains("scoring.kind_weights.like"),
            "{error}"
        );
        let error = Config::from_toml("[scoring.kind_weights]\nhug = 1\n").unwrap_err();
        assert!(error.to_string().contains("hug"), "{error}");
    }

    /// SLA policies that do not parse or contradict themselves are refused with the key named.
    #[test]
    fn bad_sla_policies_name_their_key() {
        let refused = |toml: &str, key: &str| {
            let error = Config::from_toml(toml).unwrap_err().to_string();
            assert!(error.contains(key), "{key} not in: {error}");
        };
        refused(
            "[scoring.business_hours]\ntime_zone = \"Mars/Base\"\n[scoring.business_hours.weekly]\nmon = [\"09:00-17:00\"]\n",
            "scoring.business_hours.time_zone",
        );
        refused(
            "[scoring.business_hours]\ntime_zone = \"UTC\"\n[scoring.business_hours.weekly]\nmon = [\"17:00-09:00\"]\n",
            "scoring.business_hours.weekly.mon",
        );
        refused(
            "[scoring.tenants.acme.business_hours]\ntime_zone = \"UTC\"\nholidays = [\"2026-13-01\"]\n[scoring.tenants.acme.business_hours.weekly]\nmon = [\"09:00-17:00\"]\n",
            "scoring.tenants.acme.business_hours.holidays",
        );
        refused(
            "[scoring.channel_sla.email]\nfirst_response_seconds = -1\n",
            "scoring.channel_sla.email.first_response_seconds",
        );
        refused(
            "[scoring.tenants.acme.channel_sla.chat]\nnext_response_seconds = 0\n",
            "scoring.tenants.acme.channel_sla.chat.next_response_seconds",
        );
        refused(
            "[scoring]\nmissed_after_seconds = 60\n",
            "scoring.missed_after_seconds",
        );
        refused(
            "[scoring.tenants.acme]\nmissed_after_seconds = 60\n",
            "scoring.tenants.acme.missed_after_seconds",
        );
        refused(
            "[scoring.channel_sla.email]\nfirst_reply = 60\n",
            "first_reply",
        );
        // A valid policy with everything set parses.
        let config = Config::from_toml(
            "[scoring.channel_sla.email]\nfirst_response_seconds = 86400\n[scoring.tenants.acme]\nfirst_response_seconds = 900\n[scoring.tenants.acme.business_hours]\ntime_zone = \"Europe/London\"\n[scoring.tenants.acme.business_hours.weekly]\nmon = [\"09:00-17:00\"]\n",
        )
        .unwrap();
        let acme = crate::scoring::SlaPolicy::new(&config.scoring, Some("acme"));
        assert_eq!(acme.targets(Channel::Twitter).first_response_seconds, 900.0);
        assert_eq!(acme.targets(Channel::Email).first_response_seconds, 900.0);
        assert!(!acme.calendar().is_always_open());
        let other = crate::scoring::SlaPolicy::new(&config.scoring, Some("other"));
        assert_eq!(
            other.targets(Channel::Email).first_response_seconds,
            86400.0
        );
        assert_eq!(
            other.targets(Channel::Twitter).first_response_seconds,
            3600.0
        );
        assert!(other.calendar().is_always_open());
    }

    /// D11: values that panicked (a semaphore over its permit limit), hung (a 2^40-slot broadcast
    /// buffer) or silently stopped snapshots (a timer past the end of time) are refused by key.
    #[test]
    fn huge_numbers_are_refused_naming_the_key() {
        for (toml, key) in [
            (
                "[server]\nmax_ingest_in_flight = 4611686018427387904\n",
                "server.max_ingest_in_flight",
            ),
            (
                "[server]\nwatch_buffer = 1099511627776\n",
                "server.watch_buffer",
            ),
            (
                "[durability]\nsnapshot_interval_seconds = 9223372036854775807\n",
                "durability.snapshot_interval_seconds",
            ),
            (
                "[durability]\nfsync_interval_ms = 9223372036854775807\n",
                "durability.fsync_interval_ms",
            ),
            (
                "[server]\nranking_pass_seconds = 9223372036854775807\n",
                "server.ranking_pass_seconds",
            ),
            (
                "[server]\nshutdown_grace_seconds = 9223372036854775807\n",
                "server.shutdown_grace_seconds",
            ),
            (
                "[transformer]\nworkers = 1000000000\n",
                "transformer.workers",
            ),
        ] {
            let error = Config::from_toml(toml).unwrap_err().to_string();
            assert!(error.contains(key), "{toml}: {error}");
        }
    }

    #[test]
    fn overrides_apply() {
        let config = Config::from_toml(
            "[server]\nmax_text_bytes = 100\n[scoring]\nreply_sla_seconds = 60\n[scoring.kind_weights]\nlike = 2.0\n",
        )
        .unwrap();
        assert_eq!(config.server.max_text_bytes, 100);
        assert_eq!(config.scoring.reply_sla_seconds, 60.0);
        assert_eq!(
            config.scoring.engagement_weight(Kind::Like, Channel::Web),
            2.0
        );
        assert_eq!(
            config
                .scoring
                .engagement_weight(Kind::Purchase, Channel::Web),
            3.0
        );
    }
}

#[cfg(test)]
mod routing_config {
    use super::*;

    #[test]
    fn routing_names_must_exist_and_are_named_when_wrong() {
        let refused = |text: &str| Config::from_toml(text).unwrap_err().to_string();
        assert!(
            refused("[routing]\nskill_segments = [\"vip\"]").contains("routing.skill_segments[0]")
        );
        assert!(
            refused("[routing]\noptional_skills = [\"intent\", \"channel\"]")
                .contains("routing.optional_skills[1]")
        );
        let config = Config::from_toml(
            "[[segments]]\nname = \"vip\"\nall = [{ field = \"attributes.tier\", op = \"eq\", value = \"vip\" }]\n\
             [routing]\nskill_segments = [\"vip\"]",
        )
        .unwrap();
        assert_eq!(config.policy().routing.skill_segments, ["vip"]);
    }
}

#[cfg(test)]
mod example_file {
    use super::*;

    /// The example file in the repository lists every default; it must parse and match.
    #[test]
    fn example_config_matches_defaults() {
        let text = include_str!("../../../rapport.example.toml");
        let parsed = Config::from_toml(text).expect("example parses");
        assert_eq!(parsed.language, LanguageConfig::default());
        assert_eq!(parsed.routing, RoutingConfig::default());
        let defaults = ScoringConfig::default();
        assert_eq!(parsed.scoring.reply_sla_seconds, defaults.reply_sla_seconds);
        assert_eq!(
            parsed.scoring.max_events_per_customer,
            defaults.max_events_per_customer
        );
        assert_eq!(
            parsed.server.max_customers_per_tenant,
            ServerConfig::default().max_customers_per_tenant
        );
        assert_eq!(
            parsed.server.ranking_pass_seconds,
            ServerConfig::default().ranking_pass_seconds
        );
        assert_eq!(
            parsed.scoring.risk.negative_sentiment,
            defaults.risk.negative_sentiment
        );
        for kind in Kind::ALL {
            assert_eq!(
                parsed.scoring.engagement_weight(kind, Channel::Web),
                defaults.engagement_weight(kind, Channel::Web),
                "{kind:?}"
            );
        }
        assert_eq!(
            parsed.server.max_text_bytes,
            ServerConfig::default().max_text_bytes
        );
        assert_eq!(
            parsed.server.max_ingest_in_flight,
            ServerConfig::default().max_ingest_in_flight
        );
        assert_eq!(
            parsed.durability.fsync_interval_ms,
            DurabilityConfig::default().fsync_interval_ms
        );
    }
}
