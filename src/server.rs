//! Wires the engine, the gRPC services (with health and reflection) and the metrics endpoint onto
//! listeners, and shuts them down with a bounded drain.

use crate::api::access::Authenticator;
use crate::api::convert::Limits;
use crate::api::{IngestApi, ScoringApi, SentimentApi};
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
    background: Vec<JoinHandle<()>>,
}

/// Binds the listeners and starts serving with the given sentiment backend.
pub async fn start(
    config: &Config,
    sentiment: Arc<dyn SentimentModel>,
) -> anyhow::Result<RunningServer> {
    config.validate()?;
    let server = &config.server;
    let prometheus = telemetry::prometheus()?;
    let limits = Limits {
        max_text_bytes: server.max_text_bytes,
        max_id_bytes: server.max_id_bytes,
        max_future_skew_ms: i64::try_from(server.max_future_skew_seconds.saturating_mul(1000))
            .unwrap_or(i64::MAX),
    };
    let store = Arc::new(Store::new(
        Arc::new(config.scoring.clone()),
        server.watch_buffer,
    ));
    let wal = match &config.durability.data_dir {
        Some(dir) => {
            let store = Arc::clone(&store);
            let durability = config.durability.clone();
            let dir = dir.clone();
            let (wal, recovered) = tokio::task::spawn_blocking(move || {
                crate::durability::Wal::open(
                    &durability,
                    &dir,
                    |interaction, sentiment, refines| {
                        crate::engine::replay(&store, interaction, sentiment, refines)
                    },
                )
            })
            .await
            .context("recovery task failed")??;
            tracing::info!(
                data_dir = %config.durability.data_dir.as_deref().unwrap_or_else(|| std::path::Path::new("")).display(),
                fsync = ?config.durability.fsync,
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
    // After recovery: a cap lowered since the last run never drops logged events.
    store.set_max_customers_per_tenant(server.max_customers_per_tenant);
    let engine = Arc::new(Engine {
        store: Arc::clone(&store),
        sentiment,
        wal: wal.clone(),
    });
    let (shutdown, shutdown_rx) = watch::channel(false);
    let durability_tasks = wal.map_or_else(Vec::new, |wal| {
        crate::durability::spawn_background(wal, &config.durability, shutdown_rx.clone())
    });

    let grpc_listener = TcpListener::bind(server.grpc_addr)
        .await
        .with_context(|| format!("cannot listen for gRPC on {}", server.grpc_addr))?;
    let grpc_addr = grpc_listener.local_addr()?;
    let metrics_listener = TcpListener::bind(server.metrics_addr)
        .await
        .with_context(|| format!("cannot listen for metrics on {}", server.metrics_addr))?;
    let metrics_addr = metrics_listener.local_addr()?;

    let (mut health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<pb::ingest_service_server::IngestServiceServer<LimitedIngest>>()
        .await;
    health
        .set_serving::<pb::scoring_service_server::ScoringServiceServer<Arc<ScoringApi>>>()
        .await;
    health
        .set_serving::<pb::sentiment_service_server::SentimentServiceServer<Arc<SentimentApi>>>()
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let ingest = Arc::new(IngestApi::new(
        Arc::clone(&engine),
        limits,
        server.max_batch_interactions,
        server.max_reported_rejections,
    ));
    let scoring = Arc::new(ScoringApi::new(
        Arc::clone(&store),
        limits,
        shutdown_rx.clone(),
    ));
    let classify = Arc::new(SentimentApi::new(
        Arc::clone(&engine),
        limits,
        server.max_classify_texts,
    ));

    // Everything but health (probes) behind the bearer-token check.
    let auth = Authenticator::new(&config.access);
    if !auth.is_enabled() {
        tracing::warn!(
            "no [access] tokens configured: every caller may read and write every tenant"
        );
    }
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = config.access.server_tls()? {
        builder = builder.tls_config(tls).context("invalid [access.tls]")?;
    }
    // TCP_NODELAY on every accepted connection, as tonic's own `serve` sets it: without it a
    // small response waits for the client's delayed ACK (up to 40 ms on Linux) behind Nagle's
    // algorithm.
    let grpc_incoming =
        tonic::transport::server::TcpIncoming::from_listener(grpc_listener, true, None)
            .map_err(|e| anyhow::anyhow!("gRPC listener: {e}"))?;
    let mut stop_grpc = shutdown_rx.clone();
    let grpc = tokio::spawn(
        builder
            .concurrency_limit_per_connection(server.concurrency_per_connection)
            .add_service(health_service)
            .add_service(InterceptedService::new(reflection_v1, auth.clone()))
            .add_service(InterceptedService::new(reflection_v1alpha, auth.clone()))
            .add_service(
                pb::ingest_service_server::IngestServiceServer::with_interceptor(
                    LimitedIngest {
                        inner: ingest,
                        permits: Arc::new(tokio::sync::Semaphore::new(server.max_ingest_in_flight)),
                        limit: server.max_ingest_in_flight,
                    },
                    auth.clone(),
                ),
            )
            .add_service(
                pb::scoring_service_server::ScoringServiceServer::with_interceptor(
                    scoring,
                    auth.clone(),
                ),
            )
            .add_service(
                pb::sentiment_service_server::SentimentServiceServer::with_interceptor(
                    classify, auth,
                ),
            )
            .serve_with_incoming_shutdown(grpc_incoming, async move {
                let _ = stop_grpc.wait_for(|stopping| *stopping).await;
            }),
    );

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
            if let Ok(census) = tokio::task::spawn_blocking(move || store.census(now_ms())).await {
                telemetry::census(&census);
            }
            prometheus.run_upkeep();
        }
    });

    // Health turns NOT_SERVING as soon as shutdown starts, so balancers move away first.
    let mut stop_health = shutdown_rx;
    let health_task = tokio::spawn(async move {
        let _ = stop_health.wait_for(|stopping| *stopping).await;
        health
            .set_not_serving::<pb::ingest_service_server::IngestServiceServer<LimitedIngest>>()
            .await;
    });

    tracing::info!(
        grpc_addr = %grpc_addr,
        metrics_addr = %metrics_addr,
        sentiment = engine.sentiment.name(),
        durable = config.durability.data_dir.is_some(),
        "{}",
        if config.durability.data_dir.is_some() {
            "rapport serving (accepted events are logged to the data directory before they are answered)"
        } else {
            "rapport serving (state in memory only: a restart starts empty; --data-dir keeps it)"
        }
    );
    let mut background = vec![metrics, census, health_task];
    background.extend(durability_tasks);
    Ok(RunningServer {
        grpc_addr,
        metrics_addr,
        shutdown,
        grpc,
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
    }
    tracing::info!("shutdown signal received: draining");
}

/// The ingest service behind a global in-flight limit: a call that finds every permit taken is
/// refused at once with RESOURCE_EXHAUSTED (fail fast, no queue); a streaming call holds its permit
/// until its stream ends.
pub struct LimitedIngest {
    inner: Arc<IngestApi>,
    permits: Arc<tokio::sync::Semaphore>,
    limit: usize,
}

impl LimitedIngest {
    #[allow(clippy::result_large_err)] // tonic's Status is what every handler returns anyway.
    fn permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, tonic::Status> {
        Arc::clone(&self.permits).try_acquire_owned().map_err(|_| {
            crate::telemetry::grpc_request("IngestShed", tonic::Code::ResourceExhausted, Duration::ZERO);
            tonic::Status::resource_exhausted(format!(
                "server.max_ingest_in_flight: {} ingest calls already in flight; retry with backoff",
                self.limit
            ))
        })
    }
}

type LimitedScoredStream = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<pb::ScoredInteraction, tonic::Status>> + Send>,
>;

#[tonic::async_trait]
impl pb::ingest_service_server::IngestService for LimitedIngest {
    async fn ingest(
        &self,
        request: tonic::Request<tonic::Streaming<pb::Interaction>>,
    ) -> Result<tonic::Response<pb::IngestSummary>, tonic::Status> {
        let _permit = self.permit()?;
        pb::ingest_service_server::IngestService::ingest(&self.inner, request).await
    }

    type IngestScoredStream = LimitedScoredStream;

    async fn ingest_scored(
        &self,
        request: tonic::Request<tonic::Streaming<pb::Interaction>>,
    ) -> Result<tonic::Response<Self::IngestScoredStream>, tonic::Status> {
        let permit = self.permit()?;
        let response =
            pb::ingest_service_server::IngestService::ingest_scored(&self.inner, request).await?;
        let (metadata, stream, extensions) = response.into_parts();
        #[allow(clippy::result_large_err)]
        let stream = futures::StreamExt::map(stream, move |item| {
            let _held = &permit;
            item
        });
        Ok(tonic::Response::from_parts(
            metadata,
            Box::pin(stream) as LimitedScoredStream,
            extensions,
        ))
    }

    async fn ingest_batch(
        &self,
        request: tonic::Request<pb::IngestBatchRequest>,
    ) -> Result<tonic::Response<pb::IngestSummary>, tonic::Status> {
        let _permit = self.permit()?;
        pb::ingest_service_server::IngestService::ingest_batch(&self.inner, request).await
    }
}
