//! Wires the engine, the gRPC services (with health and reflection) and the metrics endpoint onto
//! listeners, and shuts them down with a bounded drain.

use crate::api::access::Authenticator;
use crate::api::convert::Limits;
use crate::api::{AdminApi, Admission, IdentityApi, IngestApi, ScoringApi, SentimentApi};
use crate::config::Config;
use crate::engine::{now_ms, Engine};
use crate::pb;
use crate::sentiment::SentimentModel;
use crate::store::Store;
use crate::telemetry;
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;

/// A started server: its bound addresses and the means to stop it.
pub struct RunningServer {
    /// Where gRPC listens (the real port when the config asked for port 0).
    pub grpc_addr: SocketAddr,
    /// Where `/metrics` listens.
    pub metrics_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    grpc: JoinHandle<Result<(), tonic::transport::Error>>,
    /// Set when the gRPC server ended without a shutdown being asked for.
    stopped_unasked: Arc<std::sync::atomic::AtomicBool>,
    background: Vec<JoinHandle<()>>,
}

/// Binds the listeners and starts serving with the given sentiment backend.
pub async fn start(
    config: &Config,
    sentiment: Arc<dyn SentimentModel>,
) -> anyhow::Result<RunningServer> {
    config.validate()?;
    let sentiment_model = Arc::clone(&sentiment);
    let server = &config.server;
    let prometheus = telemetry::prometheus()?;
    let limits = Limits {
        max_text_bytes: server.max_text_bytes,
        max_id_bytes: server.max_id_bytes,
        max_future_skew_ms: i64::try_from(server.max_future_skew_seconds.saturating_mul(1000))
            .unwrap_or(i64::MAX),
        max_identifiers: config.identity.max_identifiers_per_request,
        blocked_identifiers: config.identity.blocked_values.clone().into(),
    };
    // The ports first: a start that cannot serve touches no file of the data directory.
    let grpc_listener = TcpListener::bind(server.grpc_addr)
        .await
        .with_context(|| format!("cannot listen for gRPC on {}", server.grpc_addr))?;
    let grpc_addr = grpc_listener.local_addr()?;
    let metrics_listener = TcpListener::bind(server.metrics_addr)
        .await
        .with_context(|| format!("cannot listen for metrics on {}", server.metrics_addr))?;
    let metrics_addr = metrics_listener.local_addr()?;
    // Identity rules before recovery: replay resolves identifiers as the first run did.
    let store = Arc::new(
        Store::new(Arc::new(config.scoring.clone()), server.watch_buffer)
            .with_identity_rules(config.identity.clone())
            .with_timeline_limits(config.timeline),
    );
    store.set_policy(config.policy());
    let wal = match &config.durability.data_dir {
        Some(dir) => {
            let store = Arc::clone(&store);
            let durability = config.durability.clone();
            let dir = dir.clone();
            let (wal, recovered) = tokio::task::spawn_blocking(move || {
                // The first logged change the rules in force refuse stops the replay and the
                // start (no snapshot is written, so nothing of it is lost).
                let mut refused = None;
                let (wal, recovered) =
                    crate::durability::Wal::open(&durability, &dir, |replayed| {
                        if refused.is_none() {
                            refused = crate::engine::recover(&store, replayed).err();
                        }
                    })?;
                if let Some(refused) = refused {
                    anyhow::bail!("{refused}");
                }
                // A start folds what it replayed from logs (or an older format) into a state
                // snapshot; one that only loaded a current state snapshot has nothing to fold.
                if recovered.log_records > 0
                    || recovered.snapshot_records > 0
                    || recovered.snapshot_version < crate::durability::FORMAT_VERSION
                {
                    wal.snapshot(&store)?;
                }
                anyhow::Ok((wal, recovered))
            })
            .await
            .context("recovery task failed")??;
            tracing::info!(
                data_dir = %config.durability.data_dir.as_deref().unwrap_or_else(|| std::path::Path::new("")).display(),
                fsync = ?config.durability.fsync,
                snapshot_customers = recovered.snapshot_customers,
                snapshot_records = recovered.snapshot_records,
                log_records = recovered.log_records,
                torn_bytes = recovered.torn_bytes,
                "recovered state from the data directory"
            );
            Some(wal)
        }
        None => None,
    };
    telemetry::durability_enabled(wal.is_some());
    // After recovery: a tenant whose list was set over the API (and logged) keeps it.
    for (tenant_id, definitions) in config.intents_by_tenant() {
        store.intents().set(&tenant_id, definitions, false)?;
    }
    // After recovery: a cap lowered since the last run never drops logged events.
    store.set_max_customers_per_tenant(server.max_customers_per_tenant);
    store.set_max_tenants(server.max_tenants);
    let engine = Arc::new(Engine {
        store: Arc::clone(&store),
        sentiment,
        wal: wal.clone(),
        language: config.language.detector()?,
    });
    let (shutdown, shutdown_rx) = watch::channel(false);
    let durability_tasks = wal.map_or_else(Vec::new, |wal| {
        crate::durability::spawn_background(
            wal,
            Arc::clone(&store),
            &config.durability,
            shutdown_rx.clone(),
        )
    });

    // Cluster mode: this replica's leases, consumers and publisher (docs/scaling.md).
    let (cluster, cluster_tasks) = match config.cluster.nats_url {
        Some(_) => {
            let (cluster, tasks) = crate::cluster::Cluster::start(
                &config.cluster,
                Arc::clone(&engine),
                grpc_addr,
                shutdown_rx.clone(),
            )
            .await?;
            (Some(cluster), tasks)
        }
        None => (None, Vec::new()),
    };

    let (mut health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<pb::ingest_service_server::IngestServiceServer<Arc<IngestApi>>>()
        .await;
    health
        .set_serving::<pb::scoring_service_server::ScoringServiceServer<Arc<ScoringApi>>>()
        .await;
    health
        .set_serving::<pb::sentiment_service_server::SentimentServiceServer<Arc<SentimentApi>>>()
        .await;
    if let Some(cluster) = &cluster {
        // A replica serves queries once it holds its share of the partitions and has caught up
        // on them (and every partition has an owner).
        let mut ready = cluster.readiness();
        let mut health = health.clone();
        let mut stop = shutdown_rx.clone();
        tokio::spawn(async move {
            type Scoring = pb::scoring_service_server::ScoringServiceServer<Arc<ScoringApi>>;
            loop {
                let serving = *ready.borrow_and_update();
                let status = if serving {
                    tonic_health::ServingStatus::Serving
                } else {
                    tonic_health::ServingStatus::NotServing
                };
                health.set_service_status("", status).await;
                if serving {
                    health.set_serving::<Scoring>().await;
                } else {
                    health.set_not_serving::<Scoring>().await;
                }
                tokio::select! {
                    changed = ready.changed() => if changed.is_err() { break },
                    _ = stop.wait_for(|stopping| *stopping) => break,
                }
            }
        });
    }
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let ingest = Arc::new(
        IngestApi::new(
            Arc::clone(&engine),
            limits.clone(),
            server.max_batch_interactions,
            server.max_reported_rejections,
            Arc::new(
                crate::api::ingest_pool::IngestPool::new(server.ingest_threads, server.ingest_nice)
                    .context("cannot start the ingest threads")?,
            ),
        )
        .with_idle_timeout(Duration::from_secs(server.ingest_idle_timeout_seconds))
        .with_tenant_share(server.max_ingest_in_flight_per_tenant)
        .with_admission(Admission::new(
            server.max_ingest_in_flight,
            server.max_ingest_streams,
        ))
        .with_cluster(cluster.clone()),
    );
    let scans = Arc::new(crate::api::scan_gate::ScanGate::default());
    let scoring = Arc::new(
        ScoringApi::new(
            Arc::clone(&engine),
            limits.clone(),
            shutdown_rx.clone(),
            Arc::clone(&scans),
        )
        .with_cluster(cluster.clone()),
    );
    let identity = Arc::new(
        IdentityApi::new(Arc::clone(&engine), limits.clone()).with_cluster(cluster.clone()),
    );
    let intents = Arc::new(
        crate::api::IntentApi::new(Arc::clone(&engine), limits.clone())
            .with_cluster(cluster.clone()),
    );
    let routing = Arc::new(
        crate::api::RoutingApi::new(
            Arc::clone(&engine),
            limits.clone(),
            scans,
            shutdown_rx.clone(),
        )
        .with_cluster(cluster.clone()),
    );
    // Every service but health behind the bearer-token check; a config reload replaces the
    // tokens in force.
    let auth = Authenticator::new(&config.access);
    let admin = Arc::new(AdminApi::new(
        Arc::clone(&store),
        auth.clone(),
        config.source.clone(),
    ));
    spawn_reload_on_sighup(Arc::clone(&store), auth.clone(), config.source.clone());
    let classify = Arc::new(SentimentApi::new(
        Arc::clone(&engine),
        limits,
        server.max_classify_texts,
    ));

    if !auth.is_enabled() {
        tracing::warn!(
            "no [access] tokens configured: every caller may read and write every tenant"
        );
    }
    let tls = crate::api::access::server_tls(&config.access)?;
    let mut stop_grpc = shutdown_rx.clone();
    let connections = ConnectionLimits::new(server);
    let router = tonic::transport::Server::builder()
        .layer(crate::api::metrics_layer::GrpcMetricsLayer)
        .initial_stream_window_size(HTTP2_STREAM_WINDOW_BYTES)
        .initial_connection_window_size(HTTP2_CONNECTION_WINDOW_BYTES)
        .http2_keepalive_interval(Some(connections.keepalive_interval()))
        .http2_keepalive_timeout(Some(connections.keepalive_interval()))
        .concurrency_limit_per_connection(server.concurrency_per_connection)
        .add_service(health_service)
        .add_service(InterceptedService::new(reflection_v1, auth.clone()))
        .add_service(InterceptedService::new(reflection_v1alpha, auth.clone()))
        .add_service(
            pb::ingest_service_server::IngestServiceServer::with_interceptor(ingest, auth.clone()),
        )
        .add_service(
            pb::scoring_service_server::ScoringServiceServer::with_interceptor(
                scoring,
                auth.clone(),
            ),
        )
        .add_service(
            pb::identity_service_server::IdentityServiceServer::with_interceptor(
                identity,
                auth.clone(),
            ),
        )
        .add_service(
            pb::admin_service_server::AdminServiceServer::with_interceptor(admin, auth.clone()),
        )
        .add_service(
            pb::intent_service_server::IntentServiceServer::with_interceptor(intents, auth.clone()),
        )
        .add_service(
            pb::routing_service_server::RoutingServiceServer::with_interceptor(
                routing,
                auth.clone(),
            ),
        )
        .add_service(
            pb::sentiment_service_server::SentimentServiceServer::with_interceptor(classify, auth),
        );
    let stop_serving = async move {
        let _ = stop_grpc.wait_for(|stopping| *stopping).await;
    };
    // rapport accepts connections itself (tonic's incoming stream ends for good on the first
    // accept error such as EMFILE) and does the TLS handshake itself, with a deadline.
    let serving: GrpcServing = match tls {
        Some(acceptor) => Box::pin(router.serve_with_incoming_shutdown(
            tls_incoming(
                grpc_listener,
                acceptor,
                Duration::from_secs(server.tls_handshake_timeout_seconds),
                connections,
            ),
            stop_serving,
        )),
        None => Box::pin(router.serve_with_incoming_shutdown(
            plain_incoming(grpc_listener, connections),
            stop_serving,
        )),
    };
    let stopped_unasked = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let grpc = tokio::spawn(supervise_grpc(
        serving,
        shutdown_rx.clone(),
        Arc::clone(&stopped_unasked),
    ));

    let render = prometheus.clone();
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || std::future::ready(render.render())),
    );
    let mut stop_metrics = shutdown_rx.clone();
    let metrics = tokio::spawn(async move {
        let served = axum::serve(metrics_listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop_metrics.wait_for(|stopping| *stopping).await;
            })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "metrics endpoint failed");
        }
    });

    let mut stop_census = shutdown_rx.clone();
    let census_store = Arc::clone(&store);
    let pass_interval = Duration::from_secs(server.ranking_pass_seconds);
    let census = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(pass_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stop_census.wait_for(|stopping| *stopping) => break,
            }
            // The pass evaluates every customer: on a blocking thread, off the workers.
            let store = Arc::clone(&census_store);
            if let Ok(census) =
                tokio::task::spawn_blocking(move || store.ranking_pass(now_ms())).await
            {
                telemetry::ranking_pass(&census);
            }
            prometheus.run_upkeep();
        }
    });

    // Health turns NOT_SERVING as soon as shutdown starts, so balancers move away first.
    let mut stop_health = shutdown_rx;
    let health_model = Arc::clone(&sentiment_model);
    let health_task = tokio::spawn(async move {
        // The sentiment service follows its backend (a queued backend with no live worker
        // cannot classify); its pool's counters go out as metrics on the same beat.
        let mut ticks = tokio::time::interval(SENTIMENT_HEALTH_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sentiment_serving = true;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stop_health.wait_for(|stopping| *stopping) => break,
            }
            if let Some(stats) = health_model.queue_stats() {
                rapport_sentiment::telemetry::queue_stats(&stats);
            }
            let serving = health_model.is_serving();
            if serving != sentiment_serving {
                sentiment_serving = serving;
                type Sentiment =
                    pb::sentiment_service_server::SentimentServiceServer<Arc<SentimentApi>>;
                if serving {
                    tracing::info!("sentiment backend serving again");
                    health.set_serving::<Sentiment>().await;
                } else {
                    tracing::error!(
                        backend = health_model.name(),
                        "sentiment backend has no live worker: SentimentService NOT_SERVING"
                    );
                    health.set_not_serving::<Sentiment>().await;
                }
            }
        }
        health
            .set_not_serving::<pb::ingest_service_server::IngestServiceServer<Arc<IngestApi>>>()
            .await;
    });

    tracing::info!(
        grpc_addr = %grpc_addr,
        metrics_addr = %metrics_addr,
        sentiment = engine.sentiment.name(),
        durable = config.durability.data_dir.is_some(),
        "{}",
        if config.cluster.nats_url.is_some() {
            "rapport serving (cluster mode: accepted events are stored in the JetStream stream before they are answered; a restart takes its partitions back from it)"
        } else if config.durability.data_dir.is_some() {
            "rapport serving (accepted events are logged to the data directory before they are answered)"
        } else {
            "rapport serving (state in memory only: a restart starts empty; --data-dir keeps it)"
        }
    );
    let mut background = vec![metrics, census, health_task];
    background.extend(durability_tasks);
    background.extend(cluster_tasks);
    Ok(RunningServer {
        grpc_addr,
        metrics_addr,
        shutdown,
        grpc,
        stopped_unasked,
        background,
    })
}

impl RunningServer {
    /// Stops accepting, lets in-flight calls finish for up to `grace`, then stops everything.
    pub async fn shutdown(self, grace: Duration) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        let mut grpc = self.grpc;
        match tokio::time::timeout(grace, &mut grpc).await {
            Ok(joined) => joined.context("gRPC server task failed")??,
            Err(_) => {
                tracing::warn!(
                    grace_seconds = grace.as_secs_f64(),
                    "in-flight calls outlived the shutdown grace; closing them"
                );
                grpc.abort();
            }
        }
        for task in self.background {
            if tokio::time::timeout(grace, task).await.is_err() {
                tracing::warn!("a background task outlived the shutdown grace");
            }
        }
        if self
            .stopped_unasked
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            anyhow::bail!("the gRPC server stopped without being asked to");
        }
        tracing::info!("rapport stopped");
        Ok(())
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
        _ = GRPC_STOPPED_UNASKED.notified() => {
            tracing::error!("the gRPC server stopped without being asked to: exiting");
            return;
        }
    }
    tracing::info!("shutdown signal received: draining");
}

/// Reloads the config file's segments and rules on SIGHUP (Unix), like `AdminService.ReloadConfig`.
fn spawn_reload_on_sighup(
    store: Arc<Store>,
    auth: Authenticator,
    config_file: Option<std::path::PathBuf>,
) {
    #[cfg(unix)]
    {
        let mut hangups =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                Ok(hangups) => hangups,
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGHUP: reload with AdminService");
                    return;
                }
            };
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                let (store, auth, file) = (Arc::clone(&store), auth.clone(), config_file.clone());
                // The outcome is logged and counted by the reload itself.
                let _ = tokio::task::spawn_blocking(move || {
                    crate::api::admin::reload_config(&store, &auth, file.as_deref())
                })
                .await;
            }
        });
    }
    #[cfg(not(unix))]
    let _ = (store, auth, config_file);
}

/// Woken when a gRPC server ends without a shutdown asked for, so [`shutdown_signal`] returns and
/// the process exits (non-zero: [`RunningServer::shutdown`] reports it) instead of living on
/// without gRPC.
static GRPC_STOPPED_UNASKED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// The gRPC server's serving future, boxed so plaintext and TLS serving have one type.
type GrpcServing = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<(), tonic::transport::Error>> + Send>,
>;

/// How often the sentiment backend's health and pool counters are read.
pub const SENTIMENT_HEALTH_INTERVAL: Duration = Duration::from_secs(1);

/// HTTP/2 flow-control window of one stream. h2 (>= 0.4.16) closes a connection with GOAWAY
/// ENHANCE_YOUR_CALM "too_many_data_frames" once the small DATA frames it holds unread cost more than
/// a budget of max(connection window / 2, 25,600 bytes) (each frame under 256 bytes costs 256 minus
/// its size), and hyper exposes no knob for that budget. grpcio sends one frame per message, so with
/// hyper's default 1 MiB windows a fast stream of small events could buffer ~16k frames (~3 MB of
/// budget against 512 KiB) and was cut off. A 64 KiB stream window caps one stream at ~1,000
/// 60-byte frames (~190 KB of budget): flow control throttles the client long before the budget.
pub const HTTP2_STREAM_WINDOW_BYTES: u32 = 64 * 1024;
/// HTTP/2 flow-control window of one connection: 16 MiB sets h2's small-frame budget to 8 MiB,
/// room for dozens of streams each full of small frames (see [`HTTP2_STREAM_WINDOW_BYTES`]).
pub const HTTP2_CONNECTION_WINDOW_BYTES: u32 = 16 * 1024 * 1024;
/// First pause after an accept that failed for want of a resource (EMFILE, ENFILE, ENOBUFS,
/// ENOMEM); it doubles on each further failure up to [`ACCEPT_BACKOFF_MAX`].
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
/// Longest pause between accept retries.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Runs the gRPC server; if it ends while `stopping` is still false, flags `stopped_unasked`,
/// logs an error and wakes [`shutdown_signal`].
async fn supervise_grpc(
    serving: GrpcServing,
    stopping: watch::Receiver<bool>,
    stopped_unasked: Arc<std::sync::atomic::AtomicBool>,
) -> Result<(), tonic::transport::Error> {
    let served = serving.await;
    if !*stopping.borrow() {
        match &served {
            Ok(()) => tracing::error!("the gRPC server stopped without being asked to"),
            Err(error) => {
                tracing::error!(%error, "the gRPC server failed without being asked to stop")
            }
        }
        stopped_unasked.store(true, std::sync::atomic::Ordering::SeqCst);
        GRPC_STOPPED_UNASKED.notify_one();
    }
    served
}

/// Waits for the next connection from `accept`, never giving up: an accept that fails is logged
/// and counted; a failure of the peer's connection (reset, aborted) is skipped at once, any other
/// (typically EMFILE: out of file descriptors) is retried after a pause that doubles from
/// [`ACCEPT_BACKOFF_MIN`] to [`ACCEPT_BACKOFF_MAX`], so connections are served again as soon as
/// descriptors free up.
pub async fn accept_retrying<T, F, Fut>(mut accept: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::io::Result<T>>,
{
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        match accept().await {
            Ok(connection) => return connection,
            Err(error) => {
                telemetry::accept_failed(telemetry::AcceptFailure::Accept);
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::Interrupted
                        | std::io::ErrorKind::WouldBlock
                ) {
                    tracing::debug!(%error, "a connection failed before it was accepted");
                    continue;
                }
                tracing::warn!(
                    %error,
                    retry_in_ms = backoff.as_millis() as u64,
                    "cannot accept gRPC connections; retrying"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
        }
    }
}

/// The limits every gRPC connection is held to (`server.max_connections`,
/// `server.idle_connection_timeout_seconds`).
#[derive(Clone)]
struct ConnectionLimits {
    /// One permit per open connection.
    open: Arc<tokio::sync::Semaphore>,
    /// A connection from which nothing is read for this long is closed.
    idle_timeout: Duration,
}

impl ConnectionLimits {
    fn new(server: &crate::config::ServerConfig) -> Self {
        Self {
            open: Arc::new(tokio::sync::Semaphore::new(server.max_connections)),
            idle_timeout: Duration::from_secs(server.idle_connection_timeout_seconds),
        }
    }

    /// How often the server pings each connection (and how long it waits for the ack): a third
    /// of the idle timeout, so a live client always has sent something within it.
    fn keepalive_interval(&self) -> Duration {
        self.idle_timeout / 3
    }

    /// `stream` held to the limits, or `None` (the connection closed at once, counted) when
    /// `server.max_connections` connections are open already.
    fn admit<S>(&self, stream: S) -> Option<GuardedConnection<S>> {
        let Ok(permit) = Arc::clone(&self.open).try_acquire_owned() else {
            telemetry::accept_failed(telemetry::AcceptFailure::ConnectionCap);
            tracing::debug!("server.max_connections reached: connection closed");
            return None;
        };
        Some(GuardedConnection {
            inner: stream,
            idle: Box::pin(tokio::time::sleep(self.idle_timeout)),
            idle_timeout: self.idle_timeout,
            _open: permit,
        })
    }
}

/// A connection that holds one of `server.max_connections` places while open and fails its
/// reads (so the server closes it) once nothing was read from it for the idle timeout.
struct GuardedConnection<S> {
    inner: S,
    /// Fires when nothing was read for `idle_timeout`; pushed back by each read.
    idle: std::pin::Pin<Box<tokio::time::Sleep>>,
    idle_timeout: Duration,
    _open: tokio::sync::OwnedSemaphorePermit,
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for GuardedConnection<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::future::Future;
        use std::task::Poll;
        let before = buf.filled().len();
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    let next = tokio::time::Instant::now() + this.idle_timeout;
                    this.idle.as_mut().reset(next);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => match this.idle.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    telemetry::accept_failed(telemetry::AcceptFailure::Idle);
                    Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "server.idle_connection_timeout_seconds: nothing read; connection closed",
                    )))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for GuardedConnection<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected
    for GuardedConnection<S>
{
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// Plaintext gRPC connections from `listener`, with TCP_NODELAY (as tonic's own `serve` sets it:
/// without it a small response waits for the client's delayed ACK behind Nagle's algorithm), held
/// to `limits` (a connection beyond the cap is closed at once). The stream never ends and never
/// yields an error (see [`accept_retrying`]).
fn plain_incoming(
    listener: TcpListener,
    limits: ConnectionLimits,
) -> impl futures::Stream<Item = std::io::Result<GuardedConnection<tokio::net::TcpStream>>> {
    futures::stream::unfold(listener, move |listener| {
        let limits = limits.clone();
        async move {
            loop {
                let (stream, _peer) = accept_retrying(|| listener.accept()).await;
                let _ = stream.set_nodelay(true);
                if let Some(connection) = limits.admit(stream) {
                    return Some((Ok(connection), listener));
                }
            }
        }
    })
}

/// TLS gRPC connections from `listener`, held to `limits` from their accept (handshakes count
/// against the cap): each handshake runs in its own task and is abandoned (connection closed,
/// counted) when it fails or takes longer than `handshake_timeout`.
fn tls_incoming(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    handshake_timeout: Duration,
    limits: ConnectionLimits,
) -> impl futures::Stream<
    Item = std::io::Result<
        tokio_rustls::server::TlsStream<GuardedConnection<tokio::net::TcpStream>>,
    >,
> {
    let (handshaken, incoming) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                accepted = accept_retrying(|| listener.accept()) => accepted,
                // The server stopped reading connections: stop accepting.
                _ = handshaken.closed() => break,
            };
            let _ = stream.set_nodelay(true);
            let Some(stream) = limits.admit(stream) else {
                continue;
            };
            let acceptor = acceptor.clone();
            let handshaken = handshaken.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = handshaken.send(Ok(tls)).await;
                    }
                    Ok(Err(error)) => {
                        telemetry::accept_failed(telemetry::AcceptFailure::TlsHandshake);
                        tracing::debug!(%error, %peer, "TLS handshake failed");
                    }
                    Err(_) => {
                        telemetry::accept_failed(telemetry::AcceptFailure::TlsHandshakeTimeout);
                        tracing::debug!(%peer, "TLS handshake timed out");
                    }
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(incoming)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Out of descriptors five times, then a connection: the loop keeps trying, pausing with a
    /// doubling backoff, and returns the connection (before: tonic's stream ended on the first).
    #[tokio::test(start_paused = true)]
    async fn accept_retries_after_emfile_with_backoff() {
        let mut attempts = 0u32;
        let started = tokio::time::Instant::now();
        let connection = accept_retrying(|| {
            attempts += 1;
            let attempt = attempts;
            async move {
                if attempt <= 5 {
                    Err(std::io::Error::from_raw_os_error(24)) // EMFILE
                } else {
                    Ok("connection")
                }
            }
        })
        .await;
        assert_eq!(connection, "connection");
        assert_eq!(attempts, 6);
        // 5 + 10 + 20 + 40 + 80 ms of (paused, auto-advanced) backoff.
        assert_eq!(started.elapsed(), Duration::from_millis(155));
    }

    /// A reset before accept is the peer's problem: the next connection is taken at once.
    #[tokio::test(start_paused = true)]
    async fn accept_skips_peer_failures_without_pausing() {
        let mut attempts = 0u32;
        let started = tokio::time::Instant::now();
        let connection = accept_retrying(|| {
            attempts += 1;
            let attempt = attempts;
            async move {
                if attempt == 1 {
                    Err(std::io::Error::from(std::io::ErrorKind::ConnectionAborted))
                } else {
                    Ok(attempt)
                }
            }
        })
        .await;
        assert_eq!(connection, 2);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    /// A gRPC server that ends while no shutdown was asked for is flagged (shutdown then fails,
    /// so the process exits non-zero) and wakes `shutdown_signal`.
    #[tokio::test]
    async fn grpc_stopping_unasked_is_flagged_and_ends_the_wait_for_a_signal() {
        let (_stop, stopping) = watch::channel(false);
        let flagged = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let served = supervise_grpc(
            Box::pin(std::future::ready(Ok(()))),
            stopping,
            Arc::clone(&flagged),
        )
        .await;
        assert!(served.is_ok());
        assert!(flagged.load(std::sync::atomic::Ordering::SeqCst));
        shutdown_signal().await; // returns: the notification is stored

        let (stop, stopping) = watch::channel(false);
        let _ = stop.send(true);
        let asked = Arc::new(std::sync::atomic::AtomicBool::new(false));
        supervise_grpc(
            Box::pin(std::future::ready(Ok(()))),
            stopping,
            Arc::clone(&asked),
        )
        .await
        .unwrap();
        assert!(!asked.load(std::sync::atomic::Ordering::SeqCst));
    }
}
