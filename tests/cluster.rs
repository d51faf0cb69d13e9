//! Issue 17: cluster mode on real nats-server processes (Debian's 2.9.10, on loopback) with
//! several `rapport serve --cluster` processes. Every test here has "cluster" in its name, so
//! `cargo test cluster` selects them.
//!
//! Each test compares the cluster's answers with a single process (in this test binary) that got
//! the same events: GetCustomer for every customer, TopCustomers and its pages, routed through
//! every replica.

mod common;

use common::*;
use rapport::pb;
use rapport::pb::ingest_service_client::IngestServiceClient;
use rapport::pb::scoring_service_client::ScoringServiceClient;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

const TENANT: &str = "acme";
const PARTITIONS: u32 = 8;

/// A child process killed (SIGKILL) when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One nats-server with JetStream on loopback.
struct Nats {
    process: Killed,
    url: String,
}

/// nats-server: on PATH, or where Debian installs it (/usr/sbin, not on a user's PATH).
fn nats_server() -> &'static str {
    let runs = |program: &str| {
        Command::new(program)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    ["nats-server", "/usr/sbin/nats-server"]
        .into_iter()
        .find(|program| runs(program))
        .expect(
            "the cluster tests need nats-server (Debian: apt-get install nats-server; .ci/run \
             installs it)",
        )
}

async fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not listen on {port}");
}

impl Nats {
    async fn start(dir: &Path) -> Nats {
        let port = free_port();
        let child = Command::new(nats_server())
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let nats = Nats {
            process: Killed(child),
            url: format!("nats://127.0.0.1:{port}"),
        };
        wait_for_port(port, "nats-server").await;
        nats
    }
}

/// One `rapport serve --cluster` process.
struct Replica {
    /// Killed with the replica (kept for its drop).
    _process: Killed,
    channel: Channel,
    metrics_addr: std::net::SocketAddr,
}

async fn spawn_replica(nats_url: &str, replica_id: &str, config: &Path) -> Replica {
    for _ in 0..5 {
        let (port, metrics_port) = (free_port(), free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_rapport"))
            .args(["serve", "--grpc-addr", &format!("127.0.0.1:{port}")])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .args(["--cluster", nats_url])
            .args(["--replica-id", replica_id, "--config"])
            .arg(config)
            .env(
                "RUST_LOG",
                std::env::var("RAPPORT_TEST_LOGS").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(replica_logs())
            .spawn()
            .expect("rapport starts");
        let mut process = Killed(child);
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(2));
        for _ in 0..600 {
            if let Ok(Some(_)) = process.0.try_wait() {
                break; // exited (port taken?): next port
            }
            if let Ok(channel) = endpoint.connect().await {
                return Replica {
                    _process: process,
                    channel,
                    metrics_addr: ([127, 0, 0, 1], metrics_port).into(),
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    panic!("rapport replica {replica_id} did not come up");
}

/// Replicas' logs go to the test's stderr with RAPPORT_TEST_LOGS=<level> (debugging), else nowhere.
fn replica_logs() -> Stdio {
    if std::env::var_os("RAPPORT_TEST_LOGS").is_some() {
        Stdio::inherit()
    } else {
        Stdio::null()
    }
}

fn cluster_config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("rapport.toml");
    std::fs::write(
        &path,
        format!("[cluster]\npartitions = {PARTITIONS}\nlease_seconds = 2\n{extra}"),
    )
    .unwrap();
    path
}

/// Three replicas r1, r2, r3 on one NATS, each SERVING.
async fn three_replicas(nats_url: &str, config: &Path) -> Vec<Replica> {
    let replicas = vec![
        spawn_replica(nats_url, "r1", config).await,
        spawn_replica(nats_url, "r2", config).await,
        spawn_replica(nats_url, "r3", config).await,
    ];
    wait_serving(&replicas.iter().collect::<Vec<_>>()).await;
    replicas
}

/// Waits until every replica reports SERVING (all partitions owned, each caught up).
async fn wait_serving(replicas: &[&Replica]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    'replicas: for replica in replicas {
        let mut health =
            tonic_health::pb::health_client::HealthClient::new(replica.channel.clone());
        while Instant::now() < deadline {
            let status = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .map(|answer| answer.into_inner().status)
                .ok();
            if status
                == Some(tonic_health::pb::health_check_response::ServingStatus::Serving as i32)
            {
                continue 'replicas;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("a replica never became SERVING");
    }
}

/// Events for `customers` customers over the last days: complaints, questions, praise,
/// purchases and answers, on several channels, in a scrambled order.
fn events(customers: usize, now_ms: i64, prefix: &str) -> Vec<pb::Interaction> {
    let texts = [
        "My order never came, please help",
        "Love the new app, great work!",
        "Where is my refund? This is the third time I ask",
        "",
        "Thanks, that fixed it",
    ];
    let mut events = Vec::new();
    for c in 0..customers {
        for n in 0..(2 + c % 5) {
            let at = now_ms - ((c * 7 + n * 13) % 96) as i64 * HOUR_MS - (n as i64) * MINUTE_MS;
            let mut interaction = with_text(
                event(TENANT, &format!("c{c}"), &format!("{prefix}{c}-{n}"), at),
                texts[(c + n) % texts.len()],
            );
            interaction.thread_id = format!("t{c}-{}", n % 2);
            interaction.channel = [
                pb::Channel::Twitter,
                pb::Channel::Email,
                pb::Channel::Chat,
                pb::Channel::Instagram,
            ][(c + n) % 4] as i32;
            if (c + n) % 6 == 0 {
                interaction = outbound(interaction);
                interaction.agent_id = "agent-1".into();
            }
            if (c + n) % 7 == 0 {
                interaction = kind(interaction, pb::InteractionKind::Purchase);
                interaction.value = 40.0 + c as f64;
            }
            events.push(interaction);
        }
    }
    // A fixed scramble: arrival order must not matter.
    let len = events.len();
    for i in 0..len {
        events.swap(i, (i * 7919 + 13) % len);
    }
    events
}

async fn ingest(
    channel: &Channel,
    events: Vec<pb::Interaction>,
) -> Result<pb::IngestSummary, tonic::Status> {
    IngestServiceClient::new(channel.clone())
        .ingest(tokio_stream::iter(events))
        .await
        .map(tonic::Response::into_inner)
}

async fn customer(
    channel: &Channel,
    customer: &str,
    as_of_ms: i64,
) -> Result<pb::CustomerScore, tonic::Status> {
    ScoringServiceClient::new(channel.clone())
        .get_customer(pb::GetCustomerRequest {
            tenant_id: TENANT.into(),
            customer_id: customer.into(),
            as_of: Some(ts(as_of_ms)),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// A CRM marks `customer` do-not-contact (version 1): it leaves TopCustomers.
async fn do_not_contact(channel: &Channel, customer: &str) {
    let answer = rapport::pb::identity_service_client::IdentityServiceClient::new(channel.clone())
        .upsert_customer(pb::UpsertCustomerRequest {
            tenant_id: TENANT.into(),
            customer_id: customer.into(),
            attributes: [(
                "do_not_contact".to_string(),
                pb::AttributeValue {
                    value: Some(pb::attribute_value::Value::Flag(true)),
                },
            )]
            .into(),
            version: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(answer.applied, "{answer:?}");
}

/// Every page of TopCustomers at `as_of_ms`, `limit` per page.
async fn pages(
    channel: &Channel,
    limit: u32,
    as_of_ms: i64,
) -> Result<Vec<pb::CustomerScore>, tonic::Status> {
    let mut scoring = ScoringServiceClient::new(channel.clone());
    let mut all = Vec::new();
    let mut page_token = String::new();
    for _ in 0..100 {
        let answer = scoring
            .top_customers(pb::TopCustomersRequest {
                tenant_id: TENANT.into(),
                limit,
                as_of: page_token.is_empty().then(|| ts(as_of_ms)),
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        all.extend(answer.customers);
        if answer.next_page_token.is_empty() {
            return Ok(all);
        }
        page_token = answer.next_page_token;
    }
    panic!("TopCustomers paging did not end");
}

/// Every customer's score, some customers' timelines, and every TopCustomers page.
#[derive(Debug, PartialEq)]
struct Answers {
    scores: BTreeMap<String, pb::CustomerScore>,
    timelines: BTreeMap<String, pb::GetTimelineResponse>,
    top: Vec<pb::CustomerScore>,
}

/// What a set of channels answers: every customer's score and every TopCustomers page, asking
/// each question through the next channel in turn.
async fn answers(
    channels: &[&Channel],
    customers: usize,
    as_of_ms: i64,
) -> Result<Answers, tonic::Status> {
    let mut scores = BTreeMap::new();
    for c in 0..customers {
        let id = format!("c{c}");
        let score = customer(channels[c % channels.len()], &id, as_of_ms).await?;
        scores.insert(id, score);
    }
    // Timelines too, asked through a replica that may not own the customer.
    let mut timelines = BTreeMap::new();
    for c in (0..customers).step_by(7) {
        let timeline = ScoringServiceClient::new(channels[(c + 1) % channels.len()].clone())
            .get_timeline(pb::GetTimelineRequest {
                tenant_id: TENANT.into(),
                customer_id: format!("c{c}"),
                page_size: 50,
                page_token: String::new(),
            })
            .await?
            .into_inner();
        timelines.insert(format!("c{c}"), timeline);
    }
    let top = pages(channels[customers % channels.len()], 7, as_of_ms).await?;
    Ok(Answers {
        scores,
        timelines,
        top,
    })
}

/// The customers a watch reported until it stayed quiet for `quiet`.
async fn heard(
    watch: &mut tonic::Streaming<pb::PriorityUpdate>,
    quiet: Duration,
) -> std::collections::BTreeSet<String> {
    let mut heard = std::collections::BTreeSet::new();
    for _ in 0..100_000 {
        match tokio::time::timeout(quiet, watch.message()).await {
            Ok(Ok(Some(update))) => {
                heard.insert(update.score.unwrap().customer_id);
            }
            Err(_quiet) => return heard,
            other => panic!("the watch stopped: {other:?}"),
        }
    }
    heard
}

/// Polls the cluster until it answers as the single process does (bounded), then asserts it.
async fn assert_answers_as_one_node(
    cluster: &[&Channel],
    single: &Channel,
    customers: usize,
    as_of_ms: i64,
) {
    let expected = answers(&[single], customers, as_of_ms).await.unwrap();
    // Everyone, but a do-not-contact customer.
    assert!(
        expected.top.len() + 1 >= customers,
        "{}",
        expected.top.len()
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = None;
    while Instant::now() < deadline {
        match answers(cluster, customers, as_of_ms).await {
            Ok(got) if got == expected => return,
            Ok(got) => last = Some(Ok(got)),
            Err(status) => last = Some(Err(status)),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    match last {
        Some(Ok(got)) => {
            assert_eq!(
                got.scores, expected.scores,
                "GetCustomer differs from the single process"
            );
            assert_eq!(
                got.timelines, expected.timelines,
                "GetTimeline differs from the single process"
            );
            assert_eq!(
                got.top, expected.top,
                "TopCustomers differs from the single process"
            );
        }
        other => panic!("the cluster never answered: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_of_three_replicas_answers_as_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(&dir.path().join("nats")).await;
    let config = cluster_config(dir.path(), "");
    let replicas = three_replicas(&nats.url, &config).await;
    let single = start().await;
    let now = rapport::engine::now_ms();
    let customers = 60;
    let all = events(customers, now, "e");
    // A watcher on one replica hears every owner's customers, as one on the single process does.
    let watch_request = pb::WatchPrioritiesRequest {
        tenant_id: TENANT.into(),
        min_priority: 0.0,
        ..Default::default()
    };
    let mut watch = ScoringServiceClient::new(replicas[1].channel.clone())
        .watch_priorities(watch_request.clone())
        .await
        .unwrap()
        .into_inner();
    let mut single_watch = ScoringServiceClient::new(single.channel.clone())
        .watch_priorities(watch_request)
        .await
        .unwrap()
        .into_inner();
    ingest(&single.channel, all.clone()).await.unwrap();
    // The same events through every replica in turn, one stream each.
    let chunk = all.len().div_ceil(3);
    for (events, replica) in all.chunks(chunk).zip(replicas.iter().cycle()) {
        let summary = ingest(&replica.channel, events.to_vec()).await.unwrap();
        assert_eq!(summary.accepted as usize, events.len(), "{summary:?}");
    }
    let channels: Vec<&Channel> = replicas.iter().map(|r| &r.channel).collect();
    assert_answers_as_one_node(&channels, &single.channel, customers, now + MINUTE_MS).await;

    let single_heard = heard(&mut single_watch, Duration::from_secs(2)).await;
    let cluster_heard = heard(&mut watch, Duration::from_secs(5)).await;
    let partitions_of = |ids: &std::collections::BTreeSet<String>| {
        ids.iter()
            .map(|id| rapport::cluster::partition_of(TENANT, id, PARTITIONS))
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert!(partitions_of(&single_heard).len() > 1);
    assert_eq!(
        partitions_of(&cluster_heard),
        partitions_of(&single_heard),
        "the merged watch hears every partition"
    );
    assert_eq!(cluster_heard, single_heard);
    drop(watch);

    // Repeats (the same event ids again) change nothing; a CRM's do-not-contact, sent to a
    // replica that may not own the customer, reaches the owner and takes the customer out.
    ingest(&replicas[1].channel, all[..20].to_vec())
        .await
        .unwrap();
    do_not_contact(&single.channel, "c7").await;
    do_not_contact(&replicas[2].channel, "c7").await;
    assert_answers_as_one_node(&channels, &single.channel, customers, now + MINUTE_MS).await;
    // Each replica reports what it owns; together they own every partition once.
    let mut owned = 0.0;
    for replica in &replicas {
        let metrics = scrape_metrics_at(replica.metrics_addr).await;
        let line = metrics
            .lines()
            .find(|line| line.starts_with("rapport_cluster_partitions_owned "))
            .unwrap_or_else(|| panic!("no partitions gauge in {metrics}"));
        owned += line
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<f64>()
            .unwrap();
        assert!(
            metrics.contains("rapport_cluster_published_total"),
            "{metrics}"
        );
    }
    assert_eq!(owned, f64::from(PARTITIONS));
    drop(nats.process);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_replica_killed_mid_stream_hands_its_partitions_over_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(&dir.path().join("nats")).await;
    // Partition states stored every second: the new owners load them and replay the rest.
    let config = cluster_config(dir.path(), "snapshot_interval_seconds = 1\n");
    let mut replicas = three_replicas(&nats.url, &config).await;
    let single = start().await;
    let now = rapport::engine::now_ms();
    let customers = 48;
    let all = events(customers, now, "k");
    ingest(&single.channel, all.clone()).await.unwrap();
    let (first, second) = all.split_at(all.len() / 2);
    ingest(&replicas[2].channel, first.to_vec()).await.unwrap();
    // An attribute update before the kill must survive the handover (stream and stored state).
    do_not_contact(&single.channel, "c10").await;
    do_not_contact(&replicas[2].channel, "c10").await;
    // The owners store their partitions' states (every second, between events; the consumers
    // wake at least every 2 s).
    tokio::time::sleep(Duration::from_secs(4)).await;
    // kill -9 the third replica: its leases expire and the others take its partitions.
    let killed = replicas.pop().unwrap();
    drop(killed);
    let summary = ingest(&replicas[0].channel, second.to_vec()).await.unwrap();
    assert_eq!(summary.accepted as usize, second.len());
    // During the handover an answer is complete or UNAVAILABLE, never short.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut complete = false;
    while Instant::now() < deadline && !complete {
        match pages(&replicas[1].channel, 100, now + MINUTE_MS).await {
            Ok(top) => {
                assert_eq!(
                    top.len(),
                    customers - 1,
                    "a TopCustomers answer left customers out"
                );
                complete = true;
            }
            Err(status) => assert_eq!(status.code(), tonic::Code::Unavailable, "{status}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(complete, "the partitions never moved");
    let channels: Vec<&Channel> = replicas.iter().map(|r| &r.channel).collect();
    assert_answers_as_one_node(&channels, &single.channel, customers, now + MINUTE_MS).await;
    // Every acknowledged event once: the counts match the events sent.
    let mut sent: BTreeMap<String, u64> = BTreeMap::new();
    for event in &all {
        *sent.entry(event.customer_id.clone()).or_default() += 1;
    }
    for (id, count) in sent {
        let score = customer(&replicas[0].channel, &id, now + MINUTE_MS)
            .await
            .unwrap();
        assert_eq!(score.interactions_total, count, "{id}");
    }
    // The killed replica's partitions were taken over from their stored states.
    let mut loaded = 0.0;
    for replica in &replicas {
        let metrics = scrape_metrics_at(replica.metrics_addr).await;
        loaded += metrics
            .lines()
            .find(|line| {
                line.starts_with("rapport_cluster_partition_snapshots_total")
                    && line.contains(r#"outcome="loaded""#)
            })
            .and_then(|line| line.split_whitespace().last())
            .map_or(0.0, |value| value.parse::<f64>().unwrap());
    }
    assert!(
        loaded >= 1.0,
        "no partition state was loaded at the takeover"
    );
    drop(nats.process);
}

/// Three nats-servers in one JetStream cluster, the stream and leases at R=3: one server is
/// killed (-9) while events stream in; every event acknowledged is there, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_survives_the_loss_of_one_of_three_nats_servers() {
    let dir = tempfile::tempdir().unwrap();
    let client_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let route_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut servers = Vec::new();
    for n in 0..3 {
        let routes: Vec<String> = (0..3)
            .filter(|other| *other != n)
            .map(|other| format!("nats-route://127.0.0.1:{}", route_ports[other]))
            .collect();
        let conf = dir.path().join(format!("n{n}.conf"));
        std::fs::write(
            &conf,
            format!(
                "server_name: n{n}\nlisten: 127.0.0.1:{}\njetstream {{\n  store_dir: \"{}\"\n}}\n\
                 cluster {{\n  name: c\n  listen: 127.0.0.1:{}\n  routes: [\n    {}\n  ]\n}}\n",
                client_ports[n],
                dir.path().join(format!("data-n{n}")).display(),
                route_ports[n],
                routes.join("\n    ")
            ),
        )
        .unwrap();
        let child = Command::new(nats_server())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        servers.push(Some(Killed(child)));
    }
    for port in &client_ports {
        wait_for_port(*port, "nats-server").await;
    }
    let url = client_ports
        .iter()
        .map(|port| format!("nats://127.0.0.1:{port}"))
        .collect::<Vec<_>>()
        .join(",");
    // Leases long enough to ride through a JetStream leader election (about 5 s).
    let config = dir.path().join("rapport.toml");
    std::fs::write(
        &config,
        format!("[cluster]\npartitions = {PARTITIONS}\nlease_seconds = 15\nstream_replicas = 3\n"),
    )
    .unwrap();
    let replicas = [
        spawn_replica(&url, "r1", &config).await,
        spawn_replica(&url, "r2", &config).await,
    ];
    wait_serving(&replicas.iter().collect::<Vec<_>>()).await;
    let single = start().await;
    let now = rapport::engine::now_ms();
    let customers = 40;
    let all = events(customers, now, "n");
    ingest(&single.channel, all.clone()).await.unwrap();
    // Batches of 10; the first server is killed after a third of them. A batch the cluster did
    // not acknowledge (UNAVAILABLE) is sent again, as a client would: repeats count once.
    let mut acknowledged = 0;
    for (n, batch) in all.chunks(10).enumerate() {
        if n == all.len() / 30 {
            servers[0] = None; // kill -9
        }
        let mut tries = 0;
        loop {
            tries += 1;
            let sent = IngestServiceClient::new(replicas[n % 2].channel.clone())
                .ingest_batch(pb::IngestBatchRequest {
                    interactions: batch.to_vec(),
                })
                .await;
            match sent {
                Ok(_) => break,
                Err(status) if tries < 20 => {
                    assert_eq!(status.code(), tonic::Code::Unavailable, "{status}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(status) => panic!("batch {n} never acknowledged: {status}"),
            }
        }
        acknowledged += batch.len();
    }
    assert_eq!(acknowledged, all.len());
    let channels: Vec<&Channel> = replicas.iter().map(|r| &r.channel).collect();
    assert_answers_as_one_node(&channels, &single.channel, customers, now + MINUTE_MS).await;
}
