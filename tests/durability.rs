//! Crash recovery: the real `rapport` binary with `--data-dir`, killed with SIGKILL mid-stream and
//! restarted; every acknowledged event must be there and scores must equal an uninterrupted run.

mod common;

use common::*;
use rand::{Rng, SeedableRng};
use rapport::pb;
use rapport::pb::ingest_service_client::IngestServiceClient;
use rapport::pb::scoring_service_client::ScoringServiceClient;
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tonic::transport::Channel;

const TENANT: &str = "acme";
const CUSTOMERS: usize = 7;

fn events() -> Vec<pb::Interaction> {
    let texts = [
        "love it, thanks!",
        "this is terrible, refund now",
        "",
        "still waiting for my parcel...",
        "great support team",
    ];
    let kinds = [
        pb::InteractionKind::Mention,
        pb::InteractionKind::Message,
        pb::InteractionKind::Purchase,
        pb::InteractionKind::SupportTicket,
    ];
    (0..360)
        .map(|i| {
            let mut e = with_text(
                event(
                    TENANT,
                    &format!("c{}", i % CUSTOMERS),
                    &format!("e{i}"),
                    T0_MS + (i as i64 * 37 % 240) * MINUTE_MS,
                ),
                texts[i % texts.len()],
            );
            e.kind = kinds[i % kinds.len()] as i32;
            e.value = if e.kind == pb::InteractionKind::Purchase as i32 {
                10.0 + i as f64
            } else {
                0.0
            };
            if i % 9 == 0 {
                e.direction = pb::Direction::Outbound as i32;
            }
            e
        })
        .collect()
}

struct Proc {
    child: Child,
    channel: Channel,
}

async fn spawn(data_dir: &Path) -> Proc {
    spawn_with(data_dir, None).await
}

async fn spawn_with(data_dir: &Path, config: Option<&Path>) -> Proc {
    // A port freed just now can be taken by someone else: try a few.
    for _ in 0..5 {
        let port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_rapport"))
            .args(["serve", "--grpc-addr"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["--metrics-addr", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(
                config
                    .map(|path| vec![std::ffi::OsStr::new("--config"), path.as_os_str()])
                    .unwrap_or_default(),
            )
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rapport starts");
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(2));
        for _ in 0..200 {
            if let Ok(Some(_)) = child.try_wait() {
                break; // exited (port taken?): next port
            }
            if let Ok(channel) = endpoint.connect().await {
                return Proc { child, channel };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("rapport did not come up");
}

async fn totals(channel: &Channel) -> BTreeMap<String, u64> {
    let mut scoring = ScoringServiceClient::new(channel.clone());
    let mut totals = BTreeMap::new();
    for c in 0..CUSTOMERS {
        let customer = format!("c{c}");
        let total = match scoring
            .get_customer(pb::GetCustomerRequest {
                tenant_id: TENANT.into(),
                customer_id: customer.clone(),
                as_of: Some(ts(T0_MS + 30 * DAY_MS)),
            })
            .await
        {
            Ok(score) => score.into_inner().interactions_total,
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::NotFound, "{status}");
                0
            }
        };
        totals.insert(customer, total);
    }
    totals
}

async fn scores(channel: &Channel) -> Vec<pb::CustomerScore> {
    let mut scoring = ScoringServiceClient::new(channel.clone());
    let mut out = Vec::new();
    for c in 0..CUSTOMERS {
        for as_of in [T0_MS + HOUR_MS, T0_MS + 5 * HOUR_MS, T0_MS + 3 * DAY_MS] {
            out.push(
                scoring
                    .get_customer(pb::GetCustomerRequest {
                        tenant_id: TENANT.into(),
                        customer_id: format!("c{c}"),
                        as_of: Some(ts(as_of)),
                    })
                    .await
                    .expect("GetCustomer")
                    .into_inner(),
            );
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_loses_no_acknowledged_event() {
    let all = events();
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut acked: HashSet<String> = HashSet::new();

    for round in 0..4 {
        let proc = spawn(dir.path()).await;
        // Everything acknowledged before any earlier crash is there.
        let after_restart = totals(&proc.channel).await;
        for c in 0..CUSTOMERS {
            let customer = format!("c{c}");
            let acked_here = all
                .iter()
                .filter(|e| e.customer_id == customer && acked.contains(&e.event_id))
                .count() as u64;
            let stored = after_restart[&customer];
            assert!(
                stored >= acked_here,
                "round {round}: {customer} has {stored} events, {acked_here} were acknowledged"
            );
        }
        // Stream everything not yet acknowledged and kill -9 after a random number of answers.
        let pending: Vec<_> = all
            .iter()
            .filter(|e| !acked.contains(&e.event_id))
            .cloned()
            .collect();
        let kill_after = rng.gen_range(1..pending.len().max(2));
        let mut ingest = IngestServiceClient::new(proc.channel.clone());
        let mut replies = ingest
            .ingest_scored(tokio_stream::iter(pending))
            .await
            .expect("IngestScored")
            .into_inner();
        let mut answered = 0;
        while let Some(reply) = replies.message().await.expect("reply") {
            assert_ne!(
                reply.outcome,
                pb::IngestOutcome::Rejected as i32,
                "{reply:?}"
            );
            acked.insert(reply.event_id);
            answered += 1;
            if answered == kill_after {
                break;
            }
        }
        let mut child = proc.child;
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        if round == 1 {
            // Simulate a torn write: half a record at the end of the log.
            let mut log = std::fs::OpenOptions::new()
                .append(true)
                .open(dir.path().join("wal.log"))
                .unwrap();
            log.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, 5, 6]).unwrap();
        }
    }

    // Final run: everything acknowledged is there; send the rest, then compare with a run that
    // never crashed.
    let proc = spawn(dir.path()).await;
    let recovered = totals(&proc.channel).await;
    let acked_total: u64 = acked.len() as u64;
    assert!(recovered.values().sum::<u64>() >= acked_total);
    let mut ingest = IngestServiceClient::new(proc.channel.clone());
    let summary = ingest
        .ingest(tokio_stream::iter(all.clone()))
        .await
        .expect("Ingest")
        .into_inner();
    assert_eq!(summary.rejected, 0);
    assert_eq!(summary.accepted + summary.duplicates, all.len() as u64);
    assert!(summary.duplicates >= acked_total, "{summary:?}");
    let durable = scores(&proc.channel).await;
    let mut child = proc.child;
    child.kill().unwrap();
    child.wait().unwrap();

    let mut reference = start().await;
    reference.ingest_all(all.clone()).await;
    let expected = scores(&reference.channel).await;
    assert_eq!(durable, expected);
    assert_eq!(
        durable.iter().map(|s| s.interactions_total).max(),
        expected.iter().map(|s| s.interactions_total).max()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_without_crash_keeps_everything_and_snapshot_is_replayed() {
    let all = events();
    let dir = tempfile::tempdir().unwrap();
    let proc = spawn(dir.path()).await;
    let mut ingest = IngestServiceClient::new(proc.channel.clone());
    let summary = ingest
        .ingest_batch(pb::IngestBatchRequest {
            interactions: all[..200].to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.accepted, 200);
    let mut child = proc.child;
    child.kill().unwrap();
    child.wait().unwrap();
    // Restart 1 folds the log into the snapshot; restart 2 reads the snapshot.
    for _ in 0..2 {
        let proc = spawn(dir.path()).await;
        assert_eq!(totals(&proc.channel).await.values().sum::<u64>(), 200);
        let mut child = proc.child;
        child.kill().unwrap();
        child.wait().unwrap();
    }
    assert!(
        std::fs::metadata(dir.path().join("snapshot.bin"))
            .unwrap()
            .len()
            > 0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_snapshot_truncates_the_log_with_interval_fsync() {
    let all = events();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rapport.toml");
    std::fs::write(
        &config,
        "[durability]\nfsync = \"interval\"\nfsync_interval_ms = 20\nsnapshot_interval_seconds = 1\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let proc = spawn_with(&data, Some(&config)).await;
    let mut ingest = IngestServiceClient::new(proc.channel.clone());
    let summary = ingest
        .ingest_batch(pb::IngestBatchRequest {
            interactions: all[..150].to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.accepted, 150);
    // Bounded wait for a periodic snapshot to fold the log in.
    let mut folded = false;
    for _ in 0..100 {
        let log = std::fs::metadata(data.join("wal.log")).map_or(1, |m| m.len());
        // Only the file header and the opening mark left (a few bytes): no events.
        if log <= rapport::durability::HEADER_BYTES as u64 + 32 {
            folded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(folded, "the log was not truncated by a snapshot");
    let summary = ingest
        .ingest_batch(pb::IngestBatchRequest {
            interactions: all[150..].to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.accepted, (all.len() - 150) as u64);
    let mut child = proc.child;
    child.kill().unwrap();
    child.wait().unwrap();
    let proc = spawn_with(&data, Some(&config)).await;
    assert_eq!(
        totals(&proc.channel).await.values().sum::<u64>(),
        all.len() as u64
    );
    let mut child = proc.child;
    child.kill().unwrap();
    child.wait().unwrap();
}
