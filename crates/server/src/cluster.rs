//! Cluster mode (issue 17, docs/scaling.md): several replicas share the customers over NATS
//! JetStream.
//!
//! - **Ingest** validates and classifies as a single process does, then publishes the event (the
//!   log's own record type, `WalRecord`) to `<subject_prefix>.<partition>`, partition =
//!   FNV-1a-32(tenant, customer) mod `partitions`, with its id in `Nats-Msg-Id`, and acknowledges
//!   the caller only once JetStream acknowledged it (with an R=3 stream: stored on a quorum).
//! - **Ownership**: a replica owns partitions through leases in a KV bucket (`partition.<n>` →
//!   "replica address"): `create` to acquire (refused while another holds it), a
//!   revision-checked `update` to renew, the bucket's max age as the lease time. Each replica
//!   heartbeats `replica.<id>` in the same bucket; every replica aims at ceil(partitions / live
//!   replicas) partitions, takes free ones up to that and gives one back per beat while above it
//!   and a live replica is below it.
//! - **State**: an owner rebuilds a partition from the stream (an ordered consumer from the
//!   first event) and applies each event exactly as a single process does, so arrival order does
//!   not matter and every replica computes the same scores from the same events. It is caught up
//!   once it has applied the partition's last event as of the takeover.
//! - **Queries**: any replica answers. GetCustomer and GetTimeline go to the customer's owner;
//!   TopCustomers goes to every owner with one evaluation time and the partitions it is asked for,
//!   and the answers are merged exactly. A partition without a caught-up owner makes the answer
//!   UNAVAILABLE, never silently short.

use crate::api::error::ApiError;
use crate::engine::{now_ms, Engine};
use crate::pb;
use crate::sentiment::Sentiment;
use crate::telemetry::{self, Handover, PartitionSnapshot, Published};
use anyhow::Context as _;
use async_nats::jetstream::{self, consumer, kv, object_store, stream};
use futures::StreamExt;
use rapport_core::config::ClusterConfig;
use rapport_core::domain::Interaction;
use rapport_core::durability::{Durable, Replayed, WalRecord};
use rapport_core::store::RankKey;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// gRPC metadata marking a call one replica makes to another (answered locally, never forwarded).
pub const HOP_HEADER: &str = "rapport-cluster-hop";

/// gRPC metadata listing the partitions a scattered TopCustomers expects the owner to hold.
pub const PARTITIONS_HEADER: &str = "rapport-cluster-partitions";

/// Events waiting for the publisher; beyond it ingest answers RESOURCE_EXHAUSTED.
const PUBLISH_QUEUE: usize = 65_536;

/// The partition of a customer: FNV-1a-32 over the tenant, a zero byte and the customer id,
/// modulo `partitions`. Fixed: changing the count remaps customers.
pub fn partition_of(tenant_id: &str, customer_id: &str, partitions: u32) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in tenant_id
        .bytes()
        .chain(std::iter::once(0))
        .chain(customer_id.bytes())
    {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % partitions.max(1)
}

/// Who holds a partition's lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// The replica's id.
    pub replica_id: String,
    /// Where its gRPC service is reached (`http://host:port`).
    pub addr: String,
}

/// A partition this replica holds.
struct Held {
    /// The lease's revision (renewed with it).
    revision: u64,
    /// When the lease was last taken or renewed.
    renewed_at: tokio::time::Instant,
    /// Applied every event the partition held when it was taken.
    caught_up: Arc<AtomicBool>,
    /// Events of the partition known to be in the stream and not applied.
    lag_events: Arc<AtomicU64>,
    consumer: JoinHandle<()>,
}

/// One event on its way to the stream.
struct Outgoing {
    subject: String,
    message_id: String,
    payload: bytes::Bytes,
    done: oneshot::Sender<Result<(), String>>,
}

/// The replica's ownership generation at an owner's check of a scattered query (see
/// [`Cluster::confirm_scattered`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnershipGeneration(u64);

/// This replica's part in the cluster.
pub struct Cluster {
    config: ClusterConfig,
    replica_id: String,
    addr: String,
    engine: Arc<Engine>,
    jetstream: jetstream::Context,
    leases: kv::Store,
    /// The lease bucket's stream (its subjects list the live replicas).
    lease_stream: stream::Stream,
    /// Partitions' states with the stream sequence they cover.
    snapshots: object_store::ObjectStore,
    outgoing: mpsc::Sender<Outgoing>,
    held: Mutex<BTreeMap<u32, Held>>,
    /// Every partition's owner as last read from the lease bucket.
    owners: RwLock<Vec<Option<Owner>>>,
    /// Channels to the other replicas, by address.
    peers: Mutex<HashMap<String, tonic::transport::Channel>>,
    /// True once this replica holds its share and has caught up on it.
    ready: watch::Sender<bool>,
    /// Bumped whenever this replica takes or drops a partition (watch streams end on it).
    ownership: watch::Sender<u64>,
}

impl Cluster {
    /// Connects to NATS, makes sure the stream and the lease bucket exist, and starts the
    /// publisher and the lease loop (which takes partitions and starts their consumers). `addr`
    /// is the bound gRPC address, advertised unless `advertise_addr` says otherwise.
    pub async fn start(
        config: &ClusterConfig,
        engine: Arc<Engine>,
        grpc_addr: std::net::SocketAddr,
        shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<(Arc<Cluster>, Vec<JoinHandle<()>>)> {
        let url = config
            .nats_url
            .as_deref()
            .context("cluster.nats_url is not set")?;
        let servers: Vec<&str> = url.split(',').map(str::trim).collect();
        let replica_id = config.replica_id.clone().unwrap_or_else(default_replica_id);
        let client = async_nats::ConnectOptions::new()
            .name(format!("rapport {replica_id}"))
            .connection_timeout(Duration::from_secs(5))
            .connect(servers.as_slice())
            .await
            .with_context(|| format!("cannot connect to NATS at {url}"))?;
        let jetstream = jetstream::new(client);
        let replicas = config.stream_replicas;
        retrying("creating the event stream", || {
            jetstream.get_or_create_stream(stream::Config {
                name: config.stream.clone(),
                subjects: vec![format!("{}.*", config.subject_prefix)],
                storage: stream::StorageType::File,
                num_replicas: replicas,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
        })
        .await
        .with_context(|| format!("cannot create or open stream {}", config.stream))?;
        // The KV bucket's own stream: `create_key_value` cannot parse nats-server 2.9's answer.
        let bucket = &config.lease_bucket;
        let lease_stream = retrying("creating the lease bucket", || {
            jetstream.get_or_create_stream(stream::Config {
                name: format!("KV_{bucket}"),
                subjects: vec![format!("$KV.{bucket}.>")],
                max_messages_per_subject: 1,
                max_age: Duration::from_secs(config.lease_seconds),
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                discard: stream::DiscardPolicy::New,
                num_replicas: replicas,
                storage: stream::StorageType::File,
                ..Default::default()
            })
        })
        .await
        .with_context(|| format!("cannot create or open the lease bucket {bucket}"))?;
        let snapshots = retrying("opening the partition snapshots", || async {
            match jetstream.get_object_store(&config.snapshot_bucket).await {
                Ok(store) => Ok(store),
                Err(_) => jetstream
                    .create_object_store(object_store::Config {
                        bucket: config.snapshot_bucket.clone(),
                        num_replicas: replicas,
                        storage: stream::StorageType::File,
                        ..Default::default()
                    })
                    .await
                    .map_err(|error| error.to_string()),
            }
        })
        .await
        .with_context(|| format!("cannot open the snapshot bucket {}", config.snapshot_bucket))?;
        let leases = jetstream
            .get_key_value(bucket.as_str())
            .await
            .with_context(|| format!("cannot open the lease bucket {bucket}"))?;
        let addr = config.advertise_addr.clone().unwrap_or_else(|| {
            let ip = if grpc_addr.ip().is_unspecified() {
                std::net::IpAddr::from([127, 0, 0, 1])
            } else {
                grpc_addr.ip()
            };
            std::net::SocketAddr::new(ip, grpc_addr.port()).to_string()
        });
        let addr = if addr.starts_with("http") {
            addr
        } else {
            format!("http://{addr}")
        };
        let (outgoing, queue) = mpsc::channel(PUBLISH_QUEUE);
        let cluster = Arc::new(Cluster {
            config: config.clone(),
            replica_id,
            addr,
            engine,
            jetstream: jetstream.clone(),
            leases,
            lease_stream,
            snapshots,
            outgoing,
            held: Mutex::new(BTreeMap::new()),
            owners: RwLock::new(vec![None; config.partitions as usize]),
            peers: Mutex::new(HashMap::new()),
            ready: watch::channel(false).0,
            ownership: watch::channel(0).0,
        });
        tracing::info!(
            replica = %cluster.replica_id,
            addr = %cluster.addr,
            partitions = config.partitions,
            stream = %config.stream,
            "cluster mode: joined"
        );
        let publisher = tokio::spawn(publish_in_order(jetstream, queue));
        let leases = tokio::spawn(Arc::clone(&cluster).lease_loop(shutdown));
        Ok((cluster, vec![publisher, leases]))
    }

    /// This replica's id.
    pub fn replica_id(&self) -> &str {
        &self.replica_id
    }

    /// Whether the replica holds its share of partitions and has caught up on them.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Readiness as it changes.
    pub fn readiness(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    /// Changes whenever this replica takes or drops a partition.
    pub fn ownership_changes(&self) -> watch::Receiver<u64> {
        self.ownership.subscribe()
    }

    /// The partition of a customer.
    pub fn partition(&self, tenant_id: &str, customer_id: &str) -> u32 {
        partition_of(tenant_id, customer_id, self.config.partitions)
    }

    /// Queues an accepted event (with the sentiment it was given and its snippet) for the stream;
    /// the wait ends when JetStream has acknowledged it. RESOURCE_EXHAUSTED when the queue is full.
    pub fn publish(
        &self,
        interaction: &Interaction,
        sentiment: Option<Sentiment>,
    ) -> Result<Durable, ApiError> {
        let snippet = self
            .engine
            .store
            .timeline_limits()
            .snippet(&interaction.text);
        let record = WalRecord::new(interaction, sentiment).with_snippet(snippet);
        self.publish_record(
            &interaction.tenant_id,
            &interaction.customer_id,
            message_id(&interaction.tenant_id, &interaction.event_id),
            &record,
        )
    }

    /// Queues a CRM attribute update for the customer's partition (applied by its owner, and by
    /// any later owner, as recovery applies a logged one); the wait ends when JetStream has it.
    pub fn publish_upsert(
        &self,
        tenant_id: &str,
        customer_id: &str,
        version: u64,
        changes: &BTreeMap<String, Option<rapport_core::attributes::AttributeValue>>,
    ) -> Result<Durable, ApiError> {
        let record = WalRecord::upsert(tenant_id, customer_id, version, changes);
        // Repeats of one version are one update (their changes are the CRM's, for that version).
        let id = format!("u{}-{version}", message_id(tenant_id, customer_id));
        self.publish_record(tenant_id, customer_id, id, &record)
    }

    fn publish_record(
        &self,
        tenant_id: &str,
        customer_id: &str,
        message_id: String,
        record: &WalRecord,
    ) -> Result<Durable, ApiError> {
        let partition = self.partition(tenant_id, customer_id);
        let payload = bytes::Bytes::from(prost::Message::encode_to_vec(record));
        let (done, durable) = Durable::remote();
        let outgoing = Outgoing {
            subject: format!("{}.{partition}", self.config.subject_prefix),
            message_id,
            payload,
            done,
        };
        self.outgoing
            .try_send(outgoing)
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => ApiError::ResourceExhausted(
                    "the cluster's publish queue is full; retry with backoff".into(),
                ),
                mpsc::error::TrySendError::Closed(_) => {
                    ApiError::Unavailable("the cluster publisher stopped".into())
                }
            })?;
        Ok(durable)
    }

    /// The owner of a partition as last read (`None`: in handover).
    pub fn owner(&self, partition: u32) -> Option<Owner> {
        self.owners
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(partition as usize)
            .cloned()
            .flatten()
    }

    /// Whether this replica holds `partition` and has caught up on it.
    pub fn serves(&self, partition: u32) -> bool {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&partition)
            .is_some_and(|held| held.caught_up.load(Ordering::Acquire))
    }

    /// Whether this replica holds exactly `partitions`, each caught up (a scattered query's
    /// check: anything else means ownership moved since the caller looked).
    pub fn serves_exactly(&self, partitions: &BTreeSet<u32>) -> bool {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.len() == partitions.len()
            && partitions.iter().all(|partition| {
                held.get(partition)
                    .is_some_and(|held| held.caught_up.load(Ordering::Acquire))
            })
    }

    /// A client's query for every owner: each a channel and the request, marked as a hop with
    /// the caller's credentials and the partitions the owner is expected to hold; UNAVAILABLE
    /// while a partition has no owner.
    pub fn scatter<T: Clone>(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        message: &T,
    ) -> Result<Vec<(Owner, tonic::transport::Channel, tonic::Request<T>)>, ApiError> {
        let authorization = metadata.get("authorization");
        self.owners_by_replica()?
            .into_values()
            .map(|(owner, partitions)| {
                let mut request = hop(message.clone(), authorization);
                let listed: Vec<String> = partitions.iter().map(u32::to_string).collect();
                if let Ok(value) = listed.join(",").parse() {
                    request.metadata_mut().insert(PARTITIONS_HEADER, value);
                }
                Ok((owner.clone(), self.peer(&owner)?, request))
            })
            .collect()
    }

    /// An owner's check of a scattered query: UNAVAILABLE unless this replica holds exactly the
    /// partitions the query names, each caught up (else ownership moved since it was sent). The
    /// ownership generation it checked at goes back to [`Cluster::confirm_scattered`] once the
    /// answer is ready, so that an answer that overlapped a handover is never sent short.
    pub fn check_scattered(
        &self,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<OwnershipGeneration, ApiError> {
        // Read before the check: a change after it shows in the confirmation.
        let generation = OwnershipGeneration(*self.ownership.borrow());
        let listed = metadata
            .get(PARTITIONS_HEADER)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("");
        let expected = listed
            .split(',')
            .filter(|part| !part.is_empty())
            .map(|part| {
                part.parse::<u32>().map_err(|_| {
                    ApiError::InvalidArgument(format!(
                        "{PARTITIONS_HEADER}: {listed:?} is not a list of partitions"
                    ))
                })
            })
            .collect::<Result<BTreeSet<u32>, ApiError>>()?;
        if self.serves_exactly(&expected) {
            Ok(generation)
        } else {
            Err(ApiError::Unavailable(
                "partition ownership moved since the query was sent; retry shortly".into(),
            ))
        }
    }

    /// The fence after a scattered query's answer: UNAVAILABLE when this replica took or dropped
    /// a partition since [`Cluster::check_scattered`] (a partition is marked dropped before its
    /// customers go, so an answer that overlapped the drop sees it here).
    pub fn confirm_scattered(&self, checked: OwnershipGeneration) -> Result<(), ApiError> {
        if *self.ownership.borrow() == checked.0 {
            Ok(())
        } else {
            Err(ApiError::Unavailable(
                "partition ownership moved while the query ran; retry shortly".into(),
            ))
        }
    }

    /// Every owner with the partitions it holds, or UNAVAILABLE naming a partition in handover.
    fn owners_by_replica(&self) -> Result<BTreeMap<String, (Owner, BTreeSet<u32>)>, ApiError> {
        let owners = self.owners.read().unwrap_or_else(|e| e.into_inner());
        let mut by_replica: BTreeMap<String, (Owner, BTreeSet<u32>)> = BTreeMap::new();
        for (partition, owner) in owners.iter().enumerate() {
            let owner = owner.as_ref().ok_or_else(|| {
                ApiError::Unavailable(format!(
                    "partition {partition} has no owner (handover in progress); retry shortly"
                ))
            })?;
            by_replica
                .entry(owner.replica_id.clone())
                .or_insert_with(|| (owner.clone(), BTreeSet::new()))
                .1
                .insert(partition as u32);
        }
        Ok(by_replica)
    }

    /// Where a call about one customer is answered: `None` here (this replica holds the
    /// customer's partition and has caught up), else a channel to the owner; UNAVAILABLE while
    /// the partition is in handover, or for a call another replica forwarded to the wrong one.
    pub fn route(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        tenant_id: &str,
        customer_id: &str,
    ) -> Result<Option<tonic::transport::Channel>, ApiError> {
        let partition = self.partition(tenant_id, customer_id);
        if self.serves(partition) {
            return Ok(None);
        }
        let in_handover = || {
            ApiError::Unavailable(format!(
                "the customer's partition {partition} is in handover; retry shortly"
            ))
        };
        if metadata.contains_key(HOP_HEADER) {
            return Err(in_handover());
        }
        match self.owner(partition) {
            Some(owner) if !self.is_me(&owner) => Ok(Some(self.peer(&owner)?)),
            _ => Err(in_handover()),
        }
    }

    /// Whether `owner` is this replica.
    pub fn is_me(&self, owner: &Owner) -> bool {
        owner.replica_id == self.replica_id
    }

    /// A channel to another replica (connected lazily, reused).
    pub fn peer(&self, owner: &Owner) -> Result<tonic::transport::Channel, ApiError> {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(channel) = peers.get(&owner.addr) {
            return Ok(channel.clone());
        }
        let channel = tonic::transport::Endpoint::from_shared(owner.addr.clone())
            .map_err(|error| {
                ApiError::Internal(format!("replica address {:?}: {error}", owner.addr))
            })?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(30))
            .connect_lazy();
        peers.insert(owner.addr.clone(), channel.clone());
        Ok(channel)
    }

    /// Renews, takes and gives back leases every beat, refreshes the owners' view and readiness;
    /// on shutdown gives every lease back so the partitions move at once.
    async fn lease_loop(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let beat = Duration::from_millis((self.config.lease_seconds * 1000 / 4).max(100));
        let mut ticks = tokio::time::interval(beat);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut beats = 0u64;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = shutdown.wait_for(|stopping| *stopping) => break,
            }
            beats += 1;
            if let Err(error) = self.beat(beats > 1).await {
                tracing::warn!(%error, "cluster lease beat failed; retrying");
            }
        }
        let held: Vec<u32> = self
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect();
        for partition in held {
            self.release(partition).await;
        }
        let _ = self
            .leases
            .delete(format!("replica.{}", self.replica_id))
            .await;
    }

    /// One beat: heartbeat, renew, read the owners, rebalance (`take`: not on the first beat,
    /// so replicas starting together see each other before taking partitions).
    async fn beat(self: &Arc<Self>, take: bool) -> anyhow::Result<()> {
        self.leases
            .put(
                format!("replica.{}", self.replica_id),
                self.addr.clone().into(),
            )
            .await
            .context("heartbeat")?;
        self.renew().await;
        let (mut owners, live) = self.read_owners().await?;
        let partitions = self.config.partitions as usize;
        let share = partitions.div_ceil(live.len().max(1));
        let mine = self.held.lock().unwrap_or_else(|e| e.into_inner()).len();
        if take && mine < share {
            // Free partitions, from a place that depends on this replica, so replicas starting
            // together mostly try different ones.
            let start = partition_of(&self.replica_id, "", self.config.partitions) as usize;
            let free: Vec<usize> = (0..partitions)
                .map(|offset| (start + offset) % partitions)
                .filter(|partition| owners[*partition].is_none())
                .take(share - mine)
                .collect();
            for partition in free {
                if self.acquire(partition as u32).await {
                    owners[partition] = Some(self.me());
                }
            }
        } else if mine > share {
            let counts =
                owners
                    .iter()
                    .flatten()
                    .fold(HashMap::<&str, usize>::new(), |mut counts, owner| {
                        *counts.entry(owner.replica_id.as_str()).or_default() += 1;
                        counts
                    });
            let someone_short = live
                .iter()
                .any(|replica| counts.get(replica.as_str()).copied().unwrap_or(0) < share);
            let last = self
                .held
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .keys()
                .next_back()
                .copied();
            if let (true, Some(partition)) = (someone_short, last) {
                self.release(partition).await;
                owners[partition as usize] = None;
            }
        }
        // What this beat read, with its own takes and give-backs (others' show at the next).
        *self.owners.write().unwrap_or_else(|e| e.into_inner()) = owners;
        self.report();
        Ok(())
    }

    /// Renews every held lease. One that another revision replaced, or that could not be renewed
    /// for a whole lease time (the bucket may have let it expire), is lost; other failures (a
    /// JetStream leader being elected) are retried at the next beat.
    async fn renew(self: &Arc<Self>) {
        let lease = Duration::from_secs(self.config.lease_seconds);
        let held: Vec<(u32, u64, tokio::time::Instant)> = self
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(partition, held)| (*partition, held.revision, held.renewed_at))
            .collect();
        for (partition, revision, renewed_at) in held {
            let renewed = self
                .leases
                .update(lease_key(partition), self.lease_value(), revision)
                .await;
            let lost = match renewed {
                Ok(revision) => {
                    if let Some(held) = self
                        .held
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_mut(&partition)
                    {
                        held.revision = revision;
                        held.renewed_at = tokio::time::Instant::now();
                    }
                    continue;
                }
                Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    Some(error.to_string())
                }
                Err(error) if renewed_at.elapsed() >= lease => Some(error.to_string()),
                Err(error) => {
                    tracing::warn!(partition, %error, "lease renewal failed; retrying");
                    None
                }
            };
            if let Some(error) = lost {
                tracing::error!(partition, %error, "partition lease lost: dropping it");
                self.drop_partition(partition).await;
                telemetry::cluster_handover(Handover::Lost);
            }
        }
    }

    /// Every partition's owner and the live replicas, from the lease bucket: one direct get per
    /// partition and the bucket's subjects for the heartbeats (no consumer, so a JetStream
    /// server lost does not stall it).
    async fn read_owners(&self) -> anyhow::Result<(Vec<Option<Owner>>, BTreeSet<String>)> {
        let mut owners = vec![None; self.config.partitions as usize];
        for (partition, owner) in owners.iter_mut().enumerate() {
            let value = self
                .leases
                .get(lease_key(partition as u32))
                .await
                .context("reading a lease")?;
            if let Some(value) = value {
                let text = String::from_utf8_lossy(&value);
                if let Some((replica_id, addr)) = text.split_once(' ') {
                    *owner = Some(Owner {
                        replica_id: replica_id.to_string(),
                        addr: addr.to_string(),
                    });
                }
            }
        }
        let heartbeats = format!("$KV.{}.replica.", self.config.lease_bucket);
        let mut subjects = self
            .lease_stream
            .info_with_subjects(format!("{heartbeats}*"))
            .await
            .context("listing replicas")?;
        let mut live = BTreeSet::new();
        live.insert(self.replica_id.clone());
        let mut listed = Vec::new();
        while let Some(subject) = subjects.next().await {
            let (subject, _) = subject.context("listing replicas")?;
            if let Some(replica) = subject.strip_prefix(&heartbeats) {
                listed.push(replica.to_string());
            }
        }
        // A replica that left deleted its heartbeat: the subject stays, with a delete marker.
        for replica in listed {
            let key = format!("replica.{replica}");
            if self
                .leases
                .get(key)
                .await
                .context("reading a heartbeat")?
                .is_some()
            {
                live.insert(replica);
            }
        }
        Ok((owners, live))
    }

    /// This replica, as its leases name it.
    fn me(&self) -> Owner {
        Owner {
            replica_id: self.replica_id.clone(),
            addr: self.addr.clone(),
        }
    }

    fn lease_value(&self) -> bytes::Bytes {
        format!("{} {}", self.replica_id, self.addr).into()
    }

    /// Takes a free partition's lease and starts rebuilding it from the stream.
    async fn acquire(self: &Arc<Self>, partition: u32) -> bool {
        let Ok(revision) = self
            .leases
            .create(lease_key(partition), self.lease_value())
            .await
        else {
            return false; // another replica was first
        };
        let caught_up = Arc::new(AtomicBool::new(false));
        let lag_events = Arc::new(AtomicU64::new(0));
        let consumer = tokio::spawn(Arc::clone(self).consume(
            partition,
            Arc::clone(&caught_up),
            Arc::clone(&lag_events),
        ));
        self.held.lock().unwrap_or_else(|e| e.into_inner()).insert(
            partition,
            Held {
                revision,
                renewed_at: tokio::time::Instant::now(),
                caught_up,
                lag_events,
                consumer,
            },
        );
        self.ownership.send_modify(|generation| *generation += 1);
        telemetry::cluster_handover(Handover::Acquired);
        tracing::info!(partition, replica = %self.replica_id, "partition acquired");
        true
    }

    /// Gives a partition back: stops applying it, forgets its customers, then deletes the lease
    /// (so no query sees this replica answer for customers it no longer holds).
    async fn release(&self, partition: u32) {
        self.drop_partition(partition).await;
        let _ = self.leases.delete(lease_key(partition)).await;
        telemetry::cluster_handover(Handover::Released);
        tracing::info!(partition, replica = %self.replica_id, "partition released");
    }

    /// Stops a partition's consumer and forgets its customers.
    async fn drop_partition(&self, partition: u32) {
        let held = self
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&partition);
        if let Some(held) = held {
            held.caught_up.store(false, Ordering::Release);
            held.consumer.abort();
            // Stopped before its customers go: an event it applied after that would leave a
            // customer here that this replica no longer answers for.
            let _ = held.consumer.await;
        }
        self.ownership.send_modify(|generation| *generation += 1);
        let partitions = self.config.partitions;
        self.engine.store.drop_customers(|tenant_id, customer_id| {
            partition_of(tenant_id, customer_id, partitions) != partition
        });
        self.report();
    }

    /// Readiness and metrics.
    fn report(&self) {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let caught_up = held
            .values()
            .all(|held| held.caught_up.load(Ordering::Acquire));
        let lag: u64 = held
            .values()
            .map(|held| held.lag_events.load(Ordering::Relaxed))
            .sum();
        telemetry::cluster_partitions(held.len(), lag);
        let all_owned = self
            .owners
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .all(Option::is_some);
        drop(held);
        self.ready.send_if_modified(|ready| {
            let now = caught_up && all_owned;
            std::mem::replace(ready, now) != now
        });
    }

    /// Applies a partition's events from the first one on, for as long as this replica holds it.
    /// A consumer that fails or stalls (its JetStream server lost) is recreated after the last
    /// event applied.
    async fn consume(
        self: Arc<Self>,
        partition: u32,
        caught_up: Arc<AtomicBool>,
        lag_events: Arc<AtomicU64>,
    ) {
        let subject = format!("{}.{partition}", self.config.subject_prefix);
        let mut applied_through = self.load_snapshot(partition).await;
        let mut snapshot = SnapshotClock {
            partition,
            stored_through: applied_through,
            stored_at: tokio::time::Instant::now(),
        };
        loop {
            let consumed = self
                .consume_from(
                    &subject,
                    &mut applied_through,
                    &mut snapshot,
                    &caught_up,
                    &lag_events,
                )
                .await;
            if let Err(error) = consumed {
                tracing::warn!(partition, %error, "partition consumer failed; restarting");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// Consumes a partition's events after `applied_through` (a stream sequence) until the
    /// consumer fails or stalls.
    async fn consume_from(
        &self,
        subject: &str,
        applied_through: &mut u64,
        snapshot: &mut SnapshotClock,
        caught_up: &AtomicBool,
        lag_events: &AtomicU64,
    ) -> anyhow::Result<()> {
        let stream = self
            .jetstream
            .get_stream(&self.config.stream)
            .await
            .context("opening the stream")?;
        let last_in_stream = || async {
            match stream.get_last_raw_message_by_subject(subject).await {
                Ok(message) => Ok(message.sequence),
                Err(error) if error.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {
                    Ok(0)
                }
                Err(error) => Err(error).context("reading the partition's last event"),
            }
        };
        // The partition's last event as of now: caught up once it is applied.
        let target = last_in_stream().await?;
        tracing::debug!(
            subject,
            target,
            applied_through = *applied_through,
            "consuming"
        );
        if target <= *applied_through {
            self.mark_caught_up(caught_up);
        }
        let deliver_policy = match *applied_through {
            0 => consumer::DeliverPolicy::All,
            through => consumer::DeliverPolicy::ByStartSequence {
                start_sequence: through + 1,
            },
        };
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: subject.to_string(),
                deliver_policy,
                ..Default::default()
            })
            .await
            .context("creating the partition's consumer")?;
        let mut messages = consumer.messages().await.context("consuming")?;
        let store = &self.engine.store;
        loop {
            self.snapshot_if_due(snapshot, *applied_through).await;
            let message = match tokio::time::timeout(CONSUMER_STALL, messages.next()).await {
                Ok(Some(message)) => message.context("reading the partition")?,
                Ok(None) => anyhow::bail!("the consumer ended"),
                Err(_quiet) => {
                    // Quiet: fine if nothing new is in the stream, a stalled consumer if there is.
                    let last = last_in_stream().await?;
                    if last > *applied_through {
                        anyhow::bail!("consumer stalled at sequence {applied_through} of {last}");
                    }
                    lag_events.store(0, Ordering::Relaxed);
                    continue;
                }
            };
            let (sequence, pending) = match message.info() {
                Ok(info) => (info.stream_sequence, info.pending),
                Err(_) => (*applied_through + 1, 0),
            };
            let applied =
                rapport_core::durability::replay_payload(&message.payload, &mut |replayed| {
                    apply(store, replayed)
                });
            if let Err(error) = applied {
                // A record this version cannot read: skipped, loudly (it stays in the stream).
                tracing::error!(sequence, %error, "undecodable event in the stream: skipped");
            }
            *applied_through = sequence;
            lag_events.store(pending, Ordering::Relaxed);
            if sequence >= target {
                self.mark_caught_up(caught_up);
            }
        }
    }

    /// The partition's last stored state, restored into the store; the stream sequence it
    /// covers (0 when there is none or it cannot be read: the partition is replayed whole).
    async fn load_snapshot(&self, partition: u32) -> u64 {
        if self.config.snapshot_interval_seconds == 0 {
            return 0;
        }
        let name = snapshot_name(partition);
        let store = &self.engine.store;
        let mut customers = 0usize;
        let restored = match self.snapshots.get(&name).await {
            Err(error) if error.kind() == object_store::GetErrorKind::NotFound => return 0,
            Err(error) => Err(anyhow::Error::new(error)),
            Ok(mut object) => {
                let mut bytes = Vec::new();
                match tokio::io::AsyncReadExt::read_to_end(&mut object, &mut bytes).await {
                    Err(error) => Err(anyhow::Error::new(error)),
                    Ok(_) => rapport_core::durability::decode_partition_state(
                        &bytes,
                        &name,
                        |replayed| {
                            customers += 1;
                            log_replay_refused(rapport_core::engine::recover(store, replayed));
                        },
                    ),
                }
            }
        };
        match restored {
            Ok(through) => {
                // Restored customers are not in the ranking index: queries scan until the pass.
                store.forget_ranking_indexes();
                telemetry::cluster_partition_snapshot(PartitionSnapshot::Loaded);
                tracing::info!(partition, through, customers, "partition state loaded");
                through
            }
            Err(error) => {
                tracing::warn!(partition, %error, "partition state unreadable: replaying the partition");
                telemetry::cluster_partition_snapshot(PartitionSnapshot::Unreadable);
                0
            }
        }
    }

    /// Stores the partition's state when it is due (between two events, so it covers exactly
    /// the events through `applied_through`).
    async fn snapshot_if_due(&self, clock: &mut SnapshotClock, applied_through: u64) {
        let interval = Duration::from_secs(self.config.snapshot_interval_seconds);
        if interval.is_zero()
            || applied_through <= clock.stored_through
            || clock.stored_at.elapsed() < interval
        {
            return;
        }
        clock.stored_at = tokio::time::Instant::now();
        let (partition, partitions) = (clock.partition, self.config.partitions);
        let store = Arc::clone(&self.engine.store);
        let encoded = tokio::task::spawn_blocking(move || {
            rapport_core::durability::encode_partition_state(applied_through, |put| {
                store.for_each_customer(|tenant_id, customer_id, history, profile, attributes| {
                    if partition_of(tenant_id, customer_id, partitions) == partition {
                        put(tenant_id, customer_id, history, profile, attributes)?;
                    }
                    Ok(())
                })
            })
        })
        .await;
        let stored = match encoded {
            Ok(Ok(bytes)) => {
                let name = snapshot_name(partition);
                self.snapshots
                    .put(name.as_str(), &mut bytes.as_slice())
                    .await
                    .map(|_| ())
                    .map_err(|error| error.to_string())
            }
            Ok(Err(error)) => Err(error.to_string()),
            Err(error) => Err(error.to_string()),
        };
        match stored {
            Ok(()) => {
                tracing::debug!(
                    partition,
                    through = applied_through,
                    "partition state stored"
                );
                clock.stored_through = applied_through;
                telemetry::cluster_partition_snapshot(PartitionSnapshot::Written);
            }
            Err(error) => {
                tracing::warn!(partition, %error, "cannot store the partition's state; retrying later");
                telemetry::cluster_partition_snapshot(PartitionSnapshot::Failed);
            }
        }
    }

    fn mark_caught_up(&self, caught_up: &AtomicBool) {
        if !caught_up.swap(true, Ordering::AcqRel) {
            self.report();
        }
    }
}

/// When a partition's state was last stored, and through which stream sequence.
struct SnapshotClock {
    partition: u32,
    stored_through: u64,
    stored_at: tokio::time::Instant,
}

fn snapshot_name(partition: u32) -> String {
    format!("partition-{partition}")
}

/// How long a partition's consumer may deliver nothing before the stream is asked whether it is
/// behind (then it is recreated).
const CONSUMER_STALL: Duration = Duration::from_secs(2);

/// Applies one consumed record: an event with the server clock (as ingest would have), anything
/// else as recovery does.
fn apply(store: &rapport_core::store::Store, replayed: Replayed<'_>) {
    match replayed {
        Replayed::Event {
            interaction,
            sentiment,
            refines: false,
        } => {
            let now = now_ms();
            if let rapport_core::store::Applied::Refused(refusal) =
                store.apply(interaction, sentiment, now, false)
            {
                // A store limit, found only here (ingest answered when the stream had it).
                static REFUSED_WARN: telemetry::LogRateLimit = telemetry::LogRateLimit::new(10_000);
                if let Some(held_back) = REFUSED_WARN.allow(u64::try_from(now).unwrap_or(0)) {
                    tracing::warn!(
                        tenant_id = %interaction.tenant_id,
                        event_id = %interaction.event_id,
                        %refusal,
                        similar_lines_held_back = held_back,
                        "an event in the stream was refused by its owner (logged at most every 10 s)"
                    );
                }
            }
        }
        other => log_replay_refused(rapport_core::engine::recover(store, other)),
    }
}

/// A stream record the identity rules in force refuse to carry out again (they changed since it
/// was acknowledged): logged, since a replica cannot refuse its partition's stream.
fn log_replay_refused(outcome: Result<(), rapport_core::engine::ReplayRefused>) {
    if let Err(refused) = outcome {
        tracing::error!(error = %refused, "replayed identity request refused by the rules in force");
    }
}

/// Publishes queued events and answers their waits in queue order (so a caller's latest wait
/// covers its earlier events, as with the local log).
async fn publish_in_order(jetstream: jetstream::Context, mut queue: mpsc::Receiver<Outgoing>) {
    let mut in_flight = futures::stream::FuturesOrdered::new();
    loop {
        tokio::select! {
            outgoing = queue.recv() => {
                let Some(outgoing) = outgoing else { break };
                let jetstream = jetstream.clone();
                in_flight.push_back(async move {
                    let Outgoing { subject, message_id, payload, done } = outgoing;
                    (publish_one(&jetstream, subject, message_id, payload).await, done)
                });
            }
            Some((published, done)) = in_flight.next(), if !in_flight.is_empty() => {
                let _ = done.send(published);
            }
        }
    }
    while let Some((published, done)) = in_flight.next().await {
        let _ = done.send(published);
    }
}

/// How long a publish is retried while the stream has no leader (a JetStream server lost:
/// electing a new one took about 5 s on loopback) before the caller is told UNAVAILABLE.
const PUBLISH_RETRY: Duration = Duration::from_secs(15);

/// Publishes one event until JetStream acknowledges it, retrying with the same message id (so a
/// retry of a stored event is a duplicate, not a second copy) for up to [`PUBLISH_RETRY`].
async fn publish_one(
    jetstream: &jetstream::Context,
    subject: String,
    message_id: String,
    payload: bytes::Bytes,
) -> Result<(), String> {
    let started = tokio::time::Instant::now();
    let mut backoff = Duration::from_millis(50);
    loop {
        let message = jetstream::message::PublishMessage::build()
            .payload(payload.clone())
            .message_id(message_id.clone());
        let acked = match jetstream.send_publish(subject.clone(), message).await {
            Ok(ack) => ack.await.map_err(|error| error.to_string()),
            Err(error) => Err(error.to_string()),
        };
        match acked {
            Ok(ack) => {
                telemetry::cluster_published(if ack.duplicate {
                    Published::Duplicate
                } else {
                    Published::Stored
                });
                return Ok(());
            }
            Err(error) if started.elapsed() >= PUBLISH_RETRY => {
                telemetry::cluster_published(Published::Failed);
                return Err(format!(
                    "the stream did not acknowledge the event within {} s: {error}",
                    PUBLISH_RETRY.as_secs()
                ));
            }
            Err(error) => {
                tracing::debug!(%error, "publish not acknowledged; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// How long start-up retries JetStream's API (a new JetStream cluster elects its meta leader
/// first; requests before that time out).
const START_RETRY: Duration = Duration::from_secs(60);

/// What to do about a JetStream API error that means the NATS server runs without JetStream
/// (empty when the error says something else).
fn jetstream_hint(error: &str) -> &'static str {
    let error = error.to_ascii_lowercase();
    if error.contains("jetstream unavailable")
        || error.contains("jetstream not enabled")
        || error.contains("no responders")
    {
        " (the NATS server answers without JetStream: start nats-server with -js and a store \
         directory, -sd DIR; Debian's packaged service on port 4222 runs without it)"
    } else {
        ""
    }
}

/// Runs `attempt` until it succeeds or [`START_RETRY`] has passed (then its last error, with
/// [`jetstream_hint`]'s advice when it applies).
async fn retrying<T, E: std::fmt::Display, F: std::future::Future<Output = Result<T, E>>>(
    what: &str,
    mut attempt: impl FnMut() -> F,
) -> anyhow::Result<T> {
    let started = tokio::time::Instant::now();
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) if started.elapsed() >= START_RETRY => {
                let error = error.to_string();
                return Err(anyhow::anyhow!("{error}{}", jetstream_hint(&error)));
            }
            Err(error) => {
                let hint = jetstream_hint(&error.to_string());
                tracing::warn!(%error, "{what} failed; retrying{hint}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

fn lease_key(partition: u32) -> String {
    format!("partition.{partition}")
}

/// JetStream's dedup id of an event: tenant and event id, hex (any bytes fit a header then).
fn message_id(tenant_id: &str, event_id: &str) -> String {
    let mut id = String::with_capacity(2 * (tenant_id.len() + event_id.len()) + 1);
    for byte in tenant_id.bytes() {
        id.push_str(&format!("{byte:02x}"));
    }
    id.push('-');
    for byte in event_id.bytes() {
        id.push_str(&format!("{byte:02x}"));
    }
    id
}

fn default_replica_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "rapport".to_string());
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{host}-{}", std::process::id())
}

/// Refuses `what` (FAILED_PRECONDITION) on a cluster replica: what is not served across
/// replicas yet.
pub fn single_process_only(cluster: Option<&Cluster>, what: &str) -> Result<(), ApiError> {
    match cluster {
        Some(_) => Err(ApiError::FailedPrecondition(format!(
            "{what} is not available in cluster mode yet (docs/scaling.md)"
        ))),
        None => Ok(()),
    }
}

/// The same request, marked as one replica's call to another, with the caller's credentials.
pub fn forwarded<T>(request: tonic::Request<T>) -> tonic::Request<T> {
    let authorization = request.metadata().get("authorization").cloned();
    hop(request.into_inner(), authorization.as_ref())
}

/// `message` as one replica's call to another, with the caller's credentials.
fn hop<T>(
    message: T,
    authorization: Option<&tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(authorization) = authorization {
        request
            .metadata_mut()
            .insert("authorization", authorization.clone());
    }
    request
        .metadata_mut()
        .insert(HOP_HEADER, tonic::metadata::MetadataValue::from_static("1"));
    request
}

/// A TopCustomers answer merged from the owners', in TopCustomers' order ([`RankKey`]).
pub fn merge_top(answers: Vec<pb::CustomerScore>, limit: usize) -> Vec<pb::CustomerScore> {
    let mut keyed: Vec<(RankKey, pb::CustomerScore)> = answers
        .into_iter()
        .map(|score| (rank_key(&score), score))
        .collect();
    keyed.sort_by(|(a, _), (b, _)| a.answer_order(b));
    keyed.truncate(limit);
    keyed.into_iter().map(|(_, score)| score).collect()
}

/// Where an owner's answer for a customer stands in TopCustomers' order.
pub fn rank_key(score: &pb::CustomerScore) -> RankKey {
    let reply_due_at_ms = score.reply_due_at.as_ref().map(|due| {
        due.seconds
            .saturating_mul(1000)
            .saturating_add(i64::from(due.nanos) / 1_000_000)
    });
    RankKey::new(score.priority, reply_due_at_ms, &score.customer_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_without_jetstream_is_named_with_what_to_do() {
        assert!(jetstream_hint("jetstream unavailable").contains("-js"));
        assert!(jetstream_hint("JetStream not enabled for account").contains("-js"));
        assert!(jetstream_hint("no responders").contains("-js"));
        assert_eq!(jetstream_hint("timed out"), "");
    }

    #[test]
    fn partitions_are_fnv1a_of_tenant_and_customer() {
        // FNV-1a-32 of "a\0b" by hand: offset basis, xor each byte, multiply by the prime.
        let mut hash: u32 = 0x811c_9dc5;
        for byte in [b'a', 0, b'b'] {
            hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
        }
        assert_eq!(partition_of("a", "b", u32::MAX), hash % u32::MAX);
        assert_ne!(
            partition_of("ab", "", 1 << 20),
            partition_of("a", "b", 1 << 20)
        );
        let spread: BTreeSet<u32> = (0..1000)
            .map(|n| partition_of("acme", &format!("c{n}"), 16))
            .collect();
        assert_eq!(spread.len(), 16);
    }

    #[test]
    fn message_ids_keep_tenant_and_event_apart() {
        assert_ne!(message_id("a", "bc"), message_id("ab", "c"));
        assert_eq!(message_id("t", "e 1"), "74-652031");
    }

    #[test]
    fn merged_answers_follow_topcustomers_order() {
        let score = |id: &str, priority: f64, due_s: Option<i64>| pb::CustomerScore {
            customer_id: id.into(),
            priority,
            reply_due_at: due_s.map(|seconds| prost_types::Timestamp { seconds, nanos: 0 }),
            ..Default::default()
        };
        let merged = merge_top(
            vec![
                score("d", 0.5, None),
                score("b", 0.7, Some(20)),
                score("a", 0.7, None),
                score("c", 0.7, Some(10)),
                score("e", 0.7, Some(10)),
                score("f", 0.9, None),
            ],
            5,
        );
        let ids: Vec<&str> = merged.iter().map(|s| s.customer_id.as_str()).collect();
        assert_eq!(ids, ["f", "c", "e", "b", "a"]);
    }
}
