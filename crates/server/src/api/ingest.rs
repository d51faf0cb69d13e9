//! IngestService: converts each incoming interaction and hands it to the engine.

use crate::api::access::Grant;
use crate::api::convert::{self, channel_from_pb, kind_from_pb, FieldError, Limits};
use crate::api::error::ApiError;
use crate::engine::{now_ms, Engine};
use crate::pb;
use crate::pb::ingest_service_server::IngestService;
use crate::scoring::Score;
use crate::sentiment::Sentiment;
use crate::store::Applied;
use crate::telemetry::{self, IngestOutcome};
use rapport_core::durability::Durable;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Events of one `Ingest` stream between waits for durability: bounds what a stream has queued
/// for the log writer while keeping one fsync wait per group, not per event.
const DURABLE_WAIT_EVERY: u64 = 1024;

/// The IngestService implementation.
pub struct IngestApi {
    engine: Arc<Engine>,
    limits: Limits,
    max_batch_interactions: usize,
    max_reported_rejections: usize,
    /// Longest a stream may stay open without sending an event before it is ended.
    idle_timeout: std::time::Duration,
    /// Each tenant's share of the calls in flight.
    tenant_shares: Arc<TenantShares>,
    /// The global limits: work in flight and open streams.
    admission: Admission,
    /// Where `IngestBatch`'s work runs.
    pool: Arc<crate::api::ingest_pool::IngestPool>,
    /// Cluster mode: accepted events go to the cluster's stream, not to this replica's store.
    cluster: Option<Arc<crate::cluster::Cluster>>,
}

/// Global ingest limits. Work is counted per event or batch being applied, not per open call, so
/// streams waiting for their clients hold nothing another caller could use (issue 15, D4).
#[derive(Clone)]
pub struct Admission {
    /// Events of streams being applied, and batches until answered (`server.max_ingest_in_flight`).
    work: Arc<Semaphore>,
    work_limit: usize,
    /// Open `Ingest` and `IngestScored` streams (`server.max_ingest_streams`).
    streams: Arc<Semaphore>,
    streams_limit: usize,
}

impl Admission {
    /// At most `work_limit` events or batches applied at once, and `streams_limit` streams open.
    pub fn new(work_limit: usize, streams_limit: usize) -> Self {
        Self {
            work: Arc::new(Semaphore::new(work_limit)),
            work_limit,
            streams: Arc::new(Semaphore::new(streams_limit)),
            streams_limit,
        }
    }

    /// A unit of work for a new call (a batch, or a stream's first event), or RESOURCE_EXHAUSTED
    /// naming the key at once when none is free: new callers are shed, not queued.
    #[allow(clippy::result_large_err)] // tonic's Status is what every handler returns anyway.
    fn work_now(&self) -> Result<OwnedSemaphorePermit, Status> {
        Arc::clone(&self.work).try_acquire_owned().map_err(|_| {
            ApiError::ResourceExhausted(format!(
                "server.max_ingest_in_flight: {} ingest batches or events are already being \
                 applied; retry with backoff",
                self.work_limit
            ))
            .into()
        })
    }

    /// A unit of work for the next event of an admitted stream: waits its turn (the semaphore is
    /// fair, first come first served) while the unread stream's HTTP/2 window slows its sender.
    async fn work_in_turn(&self) -> OwnedSemaphorePermit {
        match Arc::clone(&self.work).acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => unreachable!("the work semaphore is never closed"),
        }
    }

    /// A slot for one more open stream, or RESOURCE_EXHAUSTED naming the key.
    #[allow(clippy::result_large_err)]
    fn stream(&self) -> Result<OwnedSemaphorePermit, Status> {
        Arc::clone(&self.streams).try_acquire_owned().map_err(|_| {
            ApiError::ResourceExhausted(format!(
                "server.max_ingest_streams: {} ingest streams are already open; retry with \
                 backoff, or send batches",
                self.streams_limit
            ))
            .into()
        })
    }

    /// Work for event number `index` of a stream: shed at once if it is the first, in turn after.
    #[allow(clippy::result_large_err)]
    async fn work_for_event(&self, index: u64) -> Result<OwnedSemaphorePermit, Status> {
        if index == 0 {
            self.work_now()
        } else {
            Ok(self.work_in_turn().await)
        }
    }
}

/// Each tenant's share of the ingest calls in flight: a call is charged to the tenant its token
/// grants (an admin token's call: to the tenant of its first event, see `charged_tenant`) and
/// holds one of that tenant's slots until it ends, so a tenant with many open calls cannot take
/// every global slot (`server.max_ingest_in_flight`) from the others, nor any of another tenant's.
pub struct TenantShares {
    limit: usize,
    /// Calls in flight per tenant; a tenant leaves the map when its last call ends.
    in_flight: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

impl TenantShares {
    /// At most `limit` calls in flight per tenant.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            in_flight: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// A slot for one more call of `tenant_id`, or RESOURCE_EXHAUSTED naming the key.
    #[allow(clippy::result_large_err)] // tonic's Status is what every handler returns anyway.
    fn admit(self: &Arc<Self>, tenant_id: &str) -> Result<TenantSlot, Status> {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let count = in_flight.entry(tenant_id.to_string()).or_insert(0);
        if *count >= self.limit {
            return Err(ApiError::ResourceExhausted(format!(
                "server.max_ingest_in_flight_per_tenant: tenant {tenant_id:?} already has {} ingest \
                 calls in flight (other tenants are still served); retry with backoff",
                self.limit
            ))
            .into());
        }
        *count += 1;
        Ok(TenantSlot {
            shares: Arc::clone(self),
            tenant_id: tenant_id.to_string(),
        })
    }
}

/// The tenant whose share a call of `grant` pays for when its first event names `first_tenant`:
/// a one-tenant token always pays from its own tenant's share, whatever its events name (those
/// naming another tenant are rejected one by one), so another tenant's token can never take a
/// tenant's share (issue 24 item 4); an admin token pays from the first event's tenant.
fn charged_tenant<'a>(grant: &'a Grant, first_tenant: &'a str) -> &'a str {
    match grant {
        Grant::Tenant(granted) => granted,
        Grant::AllTenants => first_tenant,
    }
}

/// One call's slot in its tenant's share, given back when dropped.
struct TenantSlot {
    shares: Arc<TenantShares>,
    tenant_id: String,
}

impl Drop for TenantSlot {
    fn drop(&mut self) {
        let mut in_flight = self
            .shares
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(count) = in_flight.get_mut(&self.tenant_id) {
            *count -= 1;
            if *count == 0 {
                in_flight.remove(&self.tenant_id);
            }
        }
    }
}

/// What became of one event.
// One per event, consumed at once (never collected): boxing the large variant would only add an
// allocation per event.
#[allow(clippy::large_enum_variant)]
enum Processed {
    Applied {
        event_id: String,
        tenant_id: String,
        customer_id: String,
        sentiment: Option<Sentiment>,
        /// The text's language and urgency cues.
        reading: convert::TextReading,
        applied: Applied,
    },
    Rejected {
        event_id: String,
        error: FieldError,
    },
}

impl IngestApi {
    /// A service over `engine` with the server's input limits, running batches on `pool`.
    pub fn new(
        engine: Arc<Engine>,
        limits: Limits,
        max_batch_interactions: usize,
        max_reported_rejections: usize,
        pool: Arc<crate::api::ingest_pool::IngestPool>,
    ) -> Self {
        Self {
            engine,
            limits,
            max_batch_interactions,
            max_reported_rejections,
            pool,
            idle_timeout: std::time::Duration::from_secs(60),
            tenant_shares: Arc::new(TenantShares::new(usize::MAX)),
            admission: Admission::new(Semaphore::MAX_PERMITS, Semaphore::MAX_PERMITS),
            cluster: None,
        }
    }

    /// Publishes accepted events to the cluster's stream (cluster mode) instead of applying them.
    pub fn with_cluster(mut self, cluster: Option<Arc<crate::cluster::Cluster>>) -> Self {
        self.cluster = cluster;
        self
    }

    /// Applies the global limits (see [`Admission`]).
    pub fn with_admission(mut self, admission: Admission) -> Self {
        self.admission = admission;
        self
    }

    /// Lets each tenant hold at most `limit` calls in flight (see `TenantShares`).
    pub fn with_tenant_share(mut self, limit: usize) -> Self {
        self.tenant_shares = Arc::new(TenantShares::new(limit));
        self
    }

    /// Ends a stream (DEADLINE_EXCEEDED) that stays open this long without sending an event, so
    /// idle streams cannot hold the in-flight permits (default 60 s).
    pub fn with_idle_timeout(mut self, idle_timeout: std::time::Duration) -> Self {
        self.idle_timeout = idle_timeout;
        self
    }

    /// The stream's next event, or DEADLINE_EXCEEDED when none comes within the idle timeout.
    async fn next_event(
        &self,
        stream: &mut Streaming<pb::Interaction>,
    ) -> Result<Option<pb::Interaction>, Status> {
        match tokio::time::timeout(self.idle_timeout, stream.message()).await {
            Ok(message) => message,
            Err(_) => Err(ApiError::DeadlineExceeded(format!(
                "server.ingest_idle_timeout_seconds: no event for {} s; the events before were \
                 applied (retrying them is safe: repeats are counted once)",
                self.idle_timeout.as_secs()
            ))
            .into()),
        }
    }

    /// Converts and applies one event of a caller holding `grant`; `want_score` when the caller
    /// replies with the score.
    ///
    /// With a log, the wait returned must end before the event is acknowledged (see
    /// [`rapport_core::durability::Durable`]).
    fn process(
        &self,
        interaction: pb::Interaction,
        grant: &Grant,
        want_score: bool,
    ) -> Result<(Processed, Option<Durable>), ApiError> {
        let (channel, kind) = (interaction.channel, interaction.kind);
        let event_id = interaction.event_id.clone();
        let now = now_ms();
        let converted =
            convert::interaction_from_pb(interaction, &self.limits, now).and_then(|interaction| {
                convert::check_new_interaction(&interaction)?;
                if grant.allows(&interaction.tenant_id) {
                    Ok(interaction)
                } else {
                    Err(Grant::refusal(&interaction.tenant_id))
                }
            });
        let converted = converted.and_then(|interaction| match &self.cluster {
            Some(_) => convert::check_clustered_interaction(interaction),
            None => Ok(interaction),
        });
        // An inbound text's language is read at ingest (it is stored and filtered on); a scored
        // answer shows an outbound text's too.
        let converted = converted.map(|mut interaction| {
            interaction.language = self.engine.read_language(&interaction);
            interaction
        });
        let reading = |interaction: &rapport_core::domain::Interaction| convert::TextReading {
            language: interaction.language.or_else(|| {
                want_score
                    .then(|| self.engine.language.detect(&interaction.text))
                    .flatten()
            }),
            urgency_cues: interaction.urgency_cues,
            intent: interaction.intent.clone(),
        };
        match (converted, &self.cluster) {
            (Ok(interaction), Some(cluster)) => {
                let reading = reading(&interaction);
                self.publish(cluster, interaction, reading)
            }
            (Ok(mut interaction), None) => {
                // Read before it is applied and logged: replay keeps the intent it was read as.
                interaction.intent = self.engine.read_intent(&interaction);
                let reading = reading(&interaction);
                let (sentiment, applied, durable) =
                    self.engine.ingest(&interaction, now, want_score);
                // The answer names the customer the event was applied to: the owner of its
                // identifiers (an event without a customer id), or the id it was merged into.
                let customer_id = match &applied {
                    Applied::Accepted(_) | Applied::Duplicate(_) if want_score => self
                        .engine
                        .store
                        .resolve(&interaction)
                        .unwrap_or(interaction.customer_id),
                    _ => interaction.customer_id,
                };
                let processed = Processed::Applied {
                    event_id: interaction.event_id,
                    tenant_id: interaction.tenant_id,
                    customer_id,
                    sentiment,
                    reading,
                    applied,
                };
                Ok((processed, durable))
            }
            (Err(error), _) => {
                telemetry::event_ingested(
                    channel_from_pb(channel).ok(),
                    kind_from_pb(kind).ok(),
                    IngestOutcome::Rejected,
                );
                tracing::debug!(event_id = %event_id, %error, "event rejected");
                Ok((Processed::Rejected { event_id, error }, None))
            }
        }
    }

    /// Cluster mode: classifies the event and queues it for the cluster's stream; the wait ends
    /// when the stream has stored it. The partition's owner applies it (and scores it).
    fn publish(
        &self,
        cluster: &crate::cluster::Cluster,
        interaction: rapport_core::domain::Interaction,
        reading: convert::TextReading,
    ) -> Result<(Processed, Option<Durable>), ApiError> {
        let sentiment = self.engine.classify_event(&interaction);
        let durable = cluster.publish(&interaction, sentiment)?;
        telemetry::event_ingested(
            Some(interaction.channel),
            Some(interaction.kind),
            IngestOutcome::Accepted,
        );
        let processed = Processed::Applied {
            event_id: interaction.event_id,
            tenant_id: interaction.tenant_id,
            customer_id: interaction.customer_id,
            sentiment,
            reading,
            applied: Applied::Accepted(None),
        };
        Ok((processed, Some(durable)))
    }

    /// `IngestScored`'s answer to one event: processed, and durable before it is answered.
    async fn reply_to(
        &self,
        interaction: pb::Interaction,
        grant: &Grant,
        index: u64,
    ) -> Result<pb::ScoredInteraction, Status> {
        let work = self.admission.work_for_event(index).await?;
        let (processed, durable) = self.process(interaction, grant, true)?;
        // Applied: the wait for the log holds no work slot.
        drop(work);
        if let Some(durable) = durable {
            durable.confirmed().await.map_err(unconfirmed)?;
        }
        Ok(scored(processed, &self.engine.store))
    }

    fn tally(&self, summary: &mut pb::IngestSummary, index: u64, processed: &Processed) {
        match processed {
            Processed::Applied {
                applied: Applied::Accepted(_),
                ..
            } => summary.accepted += 1,
            Processed::Applied {
                applied: Applied::Duplicate(_),
                ..
            } => summary.duplicates += 1,
            Processed::Applied {
                event_id,
                applied: Applied::Refused(refusal),
                ..
            } => self.reject(summary, index, event_id, refusal.to_string()),
            Processed::Rejected { event_id, error } => {
                self.reject(summary, index, event_id, error.to_string())
            }
        }
    }

    fn reject(&self, summary: &mut pb::IngestSummary, index: u64, event_id: &str, reason: String) {
        summary.rejected += 1;
        if summary.rejections.len() < self.max_reported_rejections {
            summary.rejections.push(pb::Rejection {
                index,
                event_id: event_id.to_string(),
                reason,
            });
        }
    }
}

fn scored(processed: Processed, store: &rapport_core::store::Store) -> pb::ScoredInteraction {
    let rejected = |event_id: String, error: String| pb::ScoredInteraction {
        event_id,
        outcome: pb::IngestOutcome::Rejected as i32,
        sentiment: None,
        score: None,
        error,
    };
    match processed {
        Processed::Applied {
            event_id,
            tenant_id,
            customer_id,
            sentiment,
            reading,
            applied,
        } => {
            let (outcome, score): (pb::IngestOutcome, Option<&Score>) = match &applied {
                Applied::Accepted(score) => (pb::IngestOutcome::Accepted, score.as_ref()),
                Applied::Duplicate(score) => (pb::IngestOutcome::Duplicate, score.as_ref()),
                Applied::Refused(refusal) => return rejected(event_id, refusal.to_string()),
            };
            pb::ScoredInteraction {
                event_id,
                outcome: outcome as i32,
                sentiment: sentiment
                    .as_ref()
                    .map(|sentiment| convert::sentiment_to_pb(sentiment, reading)),
                score: score.map(|score| {
                    convert::score_to_pb(
                        &tenant_id,
                        &customer_id,
                        score,
                        &store.intents().names(&tenant_id),
                    )
                }),
                error: String::new(),
            }
        }
        Processed::Rejected { event_id, error } => rejected(event_id, error.to_string()),
    }
}

/// A remote log (the cluster's stream) did not confirm: UNAVAILABLE, and the events from the
/// first unconfirmed one on were not acknowledged (retrying them is safe: repeats count once).
fn unconfirmed(error: String) -> ApiError {
    ApiError::Unavailable(format!(
        "{error}; the events of this call were not all acknowledged (retrying is safe: repeats \
         are counted once)"
    ))
}

type ScoredStream =
    Pin<Box<dyn futures::Stream<Item = Result<pb::ScoredInteraction, Status>> + Send>>;

#[tonic::async_trait]
impl IngestService for Arc<IngestApi> {
    async fn ingest(
        &self,
        request: Request<Streaming<pb::Interaction>>,
    ) -> Result<Response<pb::IngestSummary>, Status> {
        let grant = Grant::of(&request)?;
        let _open = self.admission.stream()?;
        let mut stream = request.into_inner();
        let mut summary = pb::IngestSummary::default();
        let mut index = 0u64;
        // The writer answers in order, so the latest wait covers every earlier event: one wait
        // per group of events, and one before the summary acknowledges them all.
        let mut latest: Option<Durable> = None;
        let mut slot: Option<TenantSlot> = None;
        let read = loop {
            let interaction = match self.next_event(&mut stream).await {
                Ok(Some(interaction)) => interaction,
                Ok(None) => break Ok(()),
                Err(status) => break Err(status),
            };
            if slot.is_none() {
                match self
                    .tenant_shares
                    .admit(charged_tenant(&grant, &interaction.tenant_id))
                {
                    Ok(admitted) => slot = Some(admitted),
                    Err(status) => break Err(status),
                }
            }
            let work = match self.admission.work_for_event(index).await {
                Ok(work) => work,
                Err(status) => break Err(status),
            };
            let (processed, durable) = match self.process(interaction, &grant, false) {
                Ok(processed) => processed,
                Err(error) => break Err(Status::from(error)),
            };
            drop(work);
            self.tally(&mut summary, index, &processed);
            index += 1;
            latest = durable.or(latest);
            if index.is_multiple_of(DURABLE_WAIT_EVERY) {
                if let Some(durable) = latest.take() {
                    if let Err(error) = durable.confirmed().await {
                        break Err(unconfirmed(error).into());
                    }
                }
            }
        };
        // What was queued before a failure is still confirmed (or refused) before answering.
        let confirmed = match latest {
            Some(durable) => durable.confirmed().await.map_err(unconfirmed),
            None => Ok(()),
        };
        drop(slot);
        read?;
        confirmed?;
        Ok(Response::new(summary))
    }

    type IngestScoredStream = ScoredStream;

    async fn ingest_scored(
        &self,
        request: Request<Streaming<pb::Interaction>>,
    ) -> Result<Response<Self::IngestScoredStream>, Status> {
        let grant = Grant::of(&request)?;
        let open = self.admission.stream()?;
        let mut stream = request.into_inner();
        let (replies, receiver) = mpsc::channel(64);
        let api = Arc::clone(self);
        tokio::spawn(async move {
            let _open = open;
            let mut slot: Option<TenantSlot> = None;
            let mut index = 0u64;
            loop {
                let reply = match api.next_event(&mut stream).await {
                    Ok(Some(interaction)) if slot.is_none() => {
                        match api
                            .tenant_shares
                            .admit(charged_tenant(&grant, &interaction.tenant_id))
                        {
                            Ok(admitted) => {
                                slot = Some(admitted);
                                api.reply_to(interaction, &grant, index).await
                            }
                            Err(status) => Err(status),
                        }
                    }
                    Ok(Some(interaction)) => api.reply_to(interaction, &grant, index).await,
                    Ok(None) => break,
                    Err(status) => Err(status),
                };
                index += 1;
                let failed = reply.is_err();
                // The caller hung up: stop reading.
                if replies.send(reply).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(
            Box::pin(ReceiverStream::new(receiver)) as ScoredStream
        ))
    }

    async fn ingest_batch(
        &self,
        request: Request<pb::IngestBatchRequest>,
    ) -> Result<Response<pb::IngestSummary>, Status> {
        let grant = Grant::of(&request)?;
        let pb::IngestBatchRequest { interactions } = request.into_inner();
        if interactions.len() > self.max_batch_interactions {
            return Err(ApiError::InvalidArgument(format!(
                "interactions: {} in one batch, at most {} allowed",
                interactions.len(),
                self.max_batch_interactions
            ))
            .into());
        }
        // Both held until the batch is answered.
        let _work = self.admission.work_now()?;
        let _slot = match interactions.first() {
            Some(first) => Some(
                self.tenant_shares
                    .admit(charged_tenant(&grant, &first.tenant_id))?,
            ),
            None => None,
        };
        // A batch is up to `max_batch_interactions` events of CPU work without an await: on the
        // ingest threads (see `ingest_pool`), so queries are answered first.
        let api = Arc::clone(self);
        let (outcome, latest) = self
            .pool
            .run(move || {
                let mut summary = pb::IngestSummary::default();
                let mut latest: Option<Durable> = None;
                for (index, interaction) in interactions.into_iter().enumerate() {
                    let (processed, durable) = match api.process(interaction, &grant, false) {
                        Ok(processed) => processed,
                        Err(error) => return (Err(error), latest),
                    };
                    api.tally(&mut summary, index as u64, &processed);
                    latest = durable.or(latest);
                }
                (Ok(summary), latest)
            })
            .await?;
        // In order: the latest wait covers the whole batch (and what was applied before a
        // failure is still confirmed, or refused, before answering).
        if let Some(durable) = latest {
            durable.confirmed().await.map_err(unconfirmed)?;
        }
        outcome.map(Response::new).map_err(Status::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 15 D4: work is shed for new calls and queued, in arrival order, for admitted
    /// streams; each refusal names its key.
    #[tokio::test]
    async fn new_calls_are_shed_and_open_streams_wait_their_turn() {
        let admission = Admission::new(1, 1);
        let held = admission.work_for_event(0).await.expect("free");
        let shed = admission.work_for_event(0).await.expect_err("no work free");
        assert_eq!(shed.code(), tonic::Code::ResourceExhausted);
        assert!(shed.message().starts_with("server.max_ingest_in_flight:"));
        let (order_tx, mut order) = mpsc::unbounded_channel();
        let mut waiters = Vec::new();
        for stream in 0..3 {
            let (admission, order_tx) = (admission.clone(), order_tx.clone());
            waiters.push(tokio::spawn(async move {
                let _work = admission
                    .work_for_event(1)
                    .await
                    .expect("waits, never refused");
                order_tx.send(stream).unwrap();
            }));
            // Queued before the next one.
            tokio::task::yield_now().await;
        }
        assert!(order.try_recv().is_err(), "all wait while the work is held");
        drop(held);
        for waiter in waiters {
            waiter.await.unwrap();
        }
        let served: Vec<i32> = std::iter::from_fn(|| order.try_recv().ok()).collect();
        assert_eq!(served, [0, 1, 2], "first come, first served");

        let open = admission.stream().expect("one stream");
        let refused = admission.stream().expect_err("the stream cap");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(refused.message().starts_with("server.max_ingest_streams:"));
        drop(open);
        let _open = admission.stream().expect("freed");
    }
}
