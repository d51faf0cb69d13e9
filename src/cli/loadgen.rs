//! `rapport loadgen`: a gRPC ingest load generator, and `rapport noop-serve`: the baseline server it
//! is compared with (same proto, same transport, no work behind it).
//!
//! The generator streams realistic interactions (mixed channels and kinds, ~70 % with text, many
//! customers over several tenants, a share of late events) as `IngestBatch` calls over K
//! connections with F calls in flight each, and reports events/s and per-call ack latency
//! (p50/p99). Optionally it preloads one event per customer first, and queries `TopCustomers`
//! while the load runs.

use crate::api::convert::to_timestamp;
use crate::engine::now_ms;
use crate::pb;
use crate::pb::ingest_service_client::IngestServiceClient;
use crate::pb::ingest_service_server::{IngestService, IngestServiceServer};
use crate::pb::scoring_service_client::ScoringServiceClient;
use clap::Args;
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

/// Options of `loadgen`.
#[derive(Debug, Args)]
pub struct LoadgenArgs {
    /// Server address, HOST:PORT or a URL.
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub server: String,
    /// TCP connections.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Calls in flight per connection.
    #[arg(long, default_value_t = 4)]
    pub in_flight: usize,
    /// Interactions per IngestBatch call.
    #[arg(long, default_value_t = 200)]
    pub batch: usize,
    /// Tenants the customers are spread over.
    #[arg(long, default_value_t = 4)]
    pub tenants: usize,
    /// Distinct customers per tenant.
    #[arg(long, default_value_t = 50_000)]
    pub customers: usize,
    /// Measured run length.
    #[arg(long, default_value_t = 10)]
    pub duration_seconds: u64,
    /// First send one event for every customer (not measured), so the store is full.
    #[arg(long)]
    pub preload: bool,
    /// Offered ingest rate, spread evenly over the calls in flight (0: as fast as acknowledgements
    /// allow). Below saturation this measures latencies at a chosen load instead of at the peak.
    #[arg(long, default_value_t = 0)]
    pub events_per_second: u64,
    /// Also query TopCustomers (limit 100, first tenant) this many times per second while loading.
    #[arg(long, default_value_t = 0)]
    pub top_queries_per_second: u32,
    /// Also call ClaimNext this many times per second while loading, for an agent registered
    /// (RoutingService) on the first tenant with room on every channel; each claim is released
    /// at once (the release is not timed).
    #[arg(long, default_value_t = 0)]
    pub claim_queries_per_second: u32,
    /// Seed of the random events and of their ids.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Options of `noop-serve`.
#[derive(Debug, Args)]
pub struct NoopServeArgs {
    /// gRPC listen address.
    #[arg(long, default_value = "127.0.0.1:50061")]
    pub grpc_addr: SocketAddr,
}

const TEXTS: [&str; 10] = [
    "@brand my order still hasn't arrived, this is the third time. Really disappointed.",
    "Love the new update, the app is so much faster now! Thanks team",
    "Is the store on Main Street open on Sunday?",
    "Worst customer service ever. Waited 2 hours on the phone and nobody picked up!!",
    "Just bought the blue one, can't wait to try it :)",
    "Can you help me reset my password? The link in the email doesn't work.",
    "meh. it's ok I guess",
    "Absolutely brilliant support from Sarah today, she fixed everything in minutes.",
    "Why was I charged twice for the same subscription? Please refund.",
    "Thinking about switching to another provider tbh",
];

const KINDS: [pb::InteractionKind; 8] = [
    pb::InteractionKind::Message,
    pb::InteractionKind::Mention,
    pb::InteractionKind::Comment,
    pb::InteractionKind::Reply,
    pb::InteractionKind::Like,
    pb::InteractionKind::PageView,
    pb::InteractionKind::Purchase,
    pb::InteractionKind::SupportTicket,
];

/// Generates one connection's interactions.
struct Generator {
    rng: SmallRng,
    prefix: String,
    sequence: u64,
    tenants: usize,
    customers: usize,
}

impl Generator {
    fn interaction(&mut self, tenant: usize, customer: usize, now: i64) -> pb::Interaction {
        self.sequence += 1;
        let rng = &mut self.rng;
        let kind = KINDS[rng.gen_range(0..KINDS.len())];
        let with_text = rng.gen_bool(0.7) && kind != pb::InteractionKind::PageView;
        // Most events are live; one in ten is late, up to 30 days.
        let age_ms = if rng.gen_bool(0.1) {
            rng.gen_range(0..30 * 86_400_000)
        } else {
            rng.gen_range(0..60_000)
        };
        pb::Interaction {
            reply_need: pb::ReplyNeed::Unspecified as i32,
            event_id: format!("{}-{}", self.prefix, self.sequence),
            tenant_id: format!("tenant-{tenant}"),
            customer_id: format!("customer-{customer}"),
            channel: rng.gen_range(1..=12),
            kind: kind as i32,
            direction: if rng.gen_bool(0.15) {
                pb::Direction::Outbound as i32
            } else {
                pb::Direction::Inbound as i32
            },
            occurred_at: Some(to_timestamp(now - age_ms)),
            text: if with_text {
                TEXTS[rng.gen_range(0..TEXTS.len())].to_string()
            } else {
                String::new()
            },
            value: if kind == pb::InteractionKind::Purchase {
                rng.gen_range(5.0..200.0)
            } else {
                0.0
            },
            author_followers: if rng.gen_bool(0.05) {
                rng.gen_range(1_000..100_000)
            } else {
                rng.gen_range(0..500)
            },
            thread_id: if rng.gen_bool(0.5) {
                format!("thread-{}", rng.gen_range(0..4))
            } else {
                String::new()
            },
            identifiers: Vec::new(),
            agent_id: String::new(),
        }
    }

    fn batch(&mut self, size: usize) -> Vec<pb::Interaction> {
        let now = now_ms();
        (0..size)
            .map(|_| {
                let tenant = self.rng.gen_range(0..self.tenants);
                let customer = self.rng.gen_range(0..self.customers);
                self.interaction(tenant, customer, now)
            })
            .collect()
    }
}

async fn connect(server: &str) -> anyhow::Result<Channel> {
    use crate::cli::client::{connect_error, display_address, server_url};
    tonic::transport::Endpoint::from_shared(server_url(server, false))
        .map_err(|_| anyhow::anyhow!("invalid --server {server:?}: expected HOST:PORT"))?
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|error| connect_error(&display_address(server), &error))
}

/// Time between two calls of one in-flight slot for the offered rate; `None` when unpaced.
fn call_period(args: &LoadgenArgs) -> Option<Duration> {
    (args.events_per_second > 0).then(|| {
        let slots = (args.connections * args.in_flight) as f64;
        Duration::from_secs_f64(args.batch as f64 * slots / args.events_per_second as f64)
    })
}

fn histogram() -> Histogram<u64> {
    // Microseconds, up to 60 s, 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).expect("valid precision"))
}

/// Runs the load and prints one summary line per figure.
pub async fn run(args: LoadgenArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.connections > 0 && args.in_flight > 0 && args.batch > 0,
        "counts must be positive"
    );
    anyhow::ensure!(
        args.tenants > 0 && args.customers > 0,
        "tenants and customers must be positive"
    );
    let mut channels = Vec::new();
    for _ in 0..args.connections {
        channels.push(connect(&args.server).await?);
    }

    if args.preload {
        let started = Instant::now();
        let mut client = IngestServiceClient::new(channels[0].clone());
        let mut generator = Generator {
            rng: SmallRng::seed_from_u64(args.seed ^ 0xfeed),
            prefix: "preload".to_string(),
            sequence: 0,
            tenants: args.tenants,
            customers: args.customers,
        };
        let now = now_ms();
        let mut batch = Vec::with_capacity(1000);
        for tenant in 0..args.tenants {
            for customer in 0..args.customers {
                batch.push(generator.interaction(tenant, customer, now));
                if batch.len() == 1000 {
                    client
                        .ingest_batch(pb::IngestBatchRequest {
                            interactions: std::mem::take(&mut batch),
                        })
                        .await?;
                }
            }
        }
        if !batch.is_empty() {
            client
                .ingest_batch(pb::IngestBatchRequest {
                    interactions: batch,
                })
                .await?;
        }
        outln!(
            "preload           {} customers in {:.1} s",
            args.tenants * args.customers,
            started.elapsed().as_secs_f64()
        );
    }

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let rejected = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for (connection, channel) in channels.iter().enumerate() {
        for slot in 0..args.in_flight {
            let mut client = IngestServiceClient::new(channel.clone());
            let stop = Arc::clone(&stop);
            let sent = Arc::clone(&sent);
            let rejected = Arc::clone(&rejected);
            let mut generator = Generator {
                rng: SmallRng::seed_from_u64(
                    args.seed
                        .wrapping_mul(1000 + (connection * 64 + slot) as u64),
                ),
                prefix: format!("s{}c{connection}f{slot}", args.seed),
                sequence: 0,
                tenants: args.tenants,
                customers: args.customers,
            };
            let batch = args.batch;
            let mut pacing = call_period(&args).map(tokio::time::interval);
            if let Some(ticks) = &mut pacing {
                // Behind schedule (a slow acknowledgement), skip the missed calls rather than
                // bursting to catch up.
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            }
            workers.push(tokio::spawn(async move {
                let mut latencies = histogram();
                let mut errors = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if let Some(ticks) = &mut pacing {
                        ticks.tick().await;
                    }
                    let interactions = generator.batch(batch);
                    let call_started = Instant::now();
                    match client
                        .ingest_batch(pb::IngestBatchRequest { interactions })
                        .await
                    {
                        Ok(summary) => {
                            let micros = call_started.elapsed().as_micros() as u64;
                            let _ = latencies.record(micros.max(1));
                            let summary = summary.into_inner();
                            sent.fetch_add(batch as u64, Ordering::Relaxed);
                            rejected.fetch_add(summary.rejected, Ordering::Relaxed);
                        }
                        Err(_) => errors += 1,
                    }
                }
                (latencies, errors)
            }));
        }
    }

    // Queries get their own connection, so their latency is not queued behind ingest batches on
    // a shared HTTP/2 connection.
    let top = if args.top_queries_per_second > 0 {
        let client = ScoringServiceClient::new(connect(&args.server).await?);
        Some(paced(
            args.top_queries_per_second,
            Arc::clone(&stop),
            client,
            |mut client| async move {
                let answer = client
                    .top_customers(pb::TopCustomersRequest {
                        tenant_id: "tenant-0".to_string(),
                        limit: 100,
                        ..Default::default()
                    })
                    .await;
                (client, answer.is_ok(), None)
            },
        ))
    } else {
        None
    };
    let claims = if args.claim_queries_per_second > 0 {
        let channel = connect(&args.server).await?;
        register_load_agent(channel.clone()).await?;
        Some(paced(
            args.claim_queries_per_second,
            Arc::clone(&stop),
            ScoringServiceClient::new(channel),
            |mut client| async move {
                let answer = client
                    .claim_next(pb::ClaimNextRequest {
                        tenant_id: "tenant-0".to_string(),
                        agent_id: LOAD_AGENT.to_string(),
                        ttl_seconds: 60,
                        ..Default::default()
                    })
                    .await;
                let ok = answer.is_ok();
                let release = answer.ok().and_then(|answer| {
                    let answer = answer.into_inner();
                    Some(pb::ClaimRequest {
                        tenant_id: "tenant-0".to_string(),
                        agent_id: LOAD_AGENT.to_string(),
                        customer_id: answer.customer?.customer_id,
                        thread_id: answer.conversation?.thread_id,
                        ..Default::default()
                    })
                });
                (client, ok, release)
            },
        ))
    } else {
        None
    };

    tokio::time::sleep(Duration::from_secs(args.duration_seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = histogram();
    let mut errors = 0;
    for worker in workers {
        let (histogram, worker_errors) = worker.await?;
        latencies.add(&histogram).ok();
        errors += worker_errors;
    }
    let seconds = started.elapsed().as_secs_f64();
    let events = sent.load(Ordering::Relaxed);
    outln!("server            {}", args.server);
    outln!(
        "load              {} connections x {} in flight, batches of {}, {} tenants x {} customers, offered {}",
        args.connections,
        args.in_flight,
        args.batch,
        args.tenants,
        args.customers,
        match args.events_per_second {
            0 => "as fast as acknowledged".to_string(),
            rate => format!("{rate} events/s"),
        }
    );
    outln!("events/s          {:.0}", events as f64 / seconds);
    outln!(
        "events            {events} acknowledged, {} rejected, {errors} failed calls",
        rejected.load(Ordering::Relaxed)
    );
    outln!(
        "ack latency ms    p50 {:.2}  p99 {:.2}  (per call of {} events)",
        latencies.value_at_quantile(0.5) as f64 / 1000.0,
        latencies.value_at_quantile(0.99) as f64 / 1000.0,
        args.batch
    );
    for (name, queries) in [("top100", top), ("claim_next", claims)] {
        if let Some(queries) = queries {
            let latencies = queries.await?;
            outln!(
                "{name:<10} latency ms p50 {:.2}  p99 {:.2}  ({} queries)",
                latencies.value_at_quantile(0.5) as f64 / 1000.0,
                latencies.value_at_quantile(0.99) as f64 / 1000.0,
                latencies.len()
            );
        }
    }
    Ok(())
}

/// The agent `--claim-queries-per-second` claims as.
const LOAD_AGENT: &str = "loadgen-agent";

/// Registers [`LOAD_AGENT`] on the first tenant: any language, room for 1000 conversations on
/// every channel and 1000 outreach customers.
async fn register_load_agent(channel: Channel) -> anyhow::Result<()> {
    let mut routing = crate::pb::routing_service_client::RoutingServiceClient::new(channel);
    routing
        .put_agent(pb::PutAgentRequest {
            tenant_id: "tenant-0".to_string(),
            agent: Some(crate::cli::client::agent_on_every_channel(
                LOAD_AGENT, 1000, 1000,
            )),
        })
        .await?;
    Ok(())
}

/// Calls `query` `per_second` times per second until `stop`, timing each call; `query` hands the
/// client back, whether the call succeeded, and a claim to release (untimed) after it.
fn paced<F, Fut>(
    per_second: u32,
    stop: Arc<AtomicBool>,
    client: ScoringServiceClient<Channel>,
    query: F,
) -> tokio::task::JoinHandle<Histogram<u64>>
where
    F: Fn(ScoringServiceClient<Channel>) -> Fut + Send + 'static,
    Fut: std::future::Future<
            Output = (
                ScoringServiceClient<Channel>,
                bool,
                Option<pb::ClaimRequest>,
            ),
        > + Send,
{
    let period = Duration::from_secs_f64(1.0 / f64::from(per_second));
    tokio::spawn(async move {
        let mut latencies = histogram();
        let mut ticks = tokio::time::interval(period);
        let mut client = Some(client);
        while !stop.load(Ordering::Relaxed) {
            ticks.tick().await;
            let call_started = Instant::now();
            let (mut back, ok, release) = query(client.take().expect("client handed back")).await;
            if ok {
                let _ = latencies.record((call_started.elapsed().as_micros() as u64).max(1));
            }
            if let Some(release) = release {
                let _ = back.release_claim(release).await;
            }
            client = Some(back);
        }
        latencies
    })
}

/// The baseline: IngestService that accepts everything and does nothing.
struct NoopIngest;

#[tonic::async_trait]
impl IngestService for NoopIngest {
    async fn ingest(
        &self,
        request: Request<Streaming<pb::Interaction>>,
    ) -> Result<Response<pb::IngestSummary>, Status> {
        let mut stream = request.into_inner();
        let mut accepted = 0;
        while stream.message().await?.is_some() {
            accepted += 1;
        }
        Ok(Response::new(pb::IngestSummary {
            accepted,
            ..Default::default()
        }))
    }

    type IngestScoredStream = tokio_stream::Empty<Result<pb::ScoredInteraction, Status>>;

    async fn ingest_scored(
        &self,
        _request: Request<Streaming<pb::Interaction>>,
    ) -> Result<Response<Self::IngestScoredStream>, Status> {
        Ok(Response::new(tokio_stream::empty()))
    }

    async fn ingest_batch(
        &self,
        request: Request<pb::IngestBatchRequest>,
    ) -> Result<Response<pb::IngestSummary>, Status> {
        Ok(Response::new(pb::IngestSummary {
            accepted: request.into_inner().interactions.len() as u64,
            ..Default::default()
        }))
    }
}

/// Serves the no-op IngestService until Ctrl-C or SIGTERM.
pub async fn noop_serve(args: NoopServeArgs) -> anyhow::Result<()> {
    tracing::info!(grpc_addr = %args.grpc_addr, "no-op baseline server");
    tonic::transport::Server::builder()
        .add_service(IngestServiceServer::new(NoopIngest))
        .serve_with_shutdown(args.grpc_addr, crate::server::shutdown_signal())
        .await?;
    Ok(())
}
