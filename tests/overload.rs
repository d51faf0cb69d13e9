//! Overload: ingest calls beyond the global limits (streams open, work in flight, a tenant's
//! share) are refused at once with RESOURCE_EXHAUSTED naming the key, nothing of the refused calls
//! is stored, and the server serves normally after.

mod common;

use common::*;
use rapport::pb;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

const LIMIT: usize = 4;

/// How [`once_admitted`] sends its events.
#[derive(Clone, Copy)]
enum Via {
    /// One `IngestBatch` call.
    Batch,
    /// One `Ingest` stream.
    Stream,
}

/// Sends `interactions` (one batch, or one stream) until it is admitted, at most `attempts`
/// times, `pause` apart; every refusal on the way must be RESOURCE_EXHAUSTED. `None` when never
/// admitted.
async fn once_admitted(
    ingest: &mut pb::ingest_service_client::IngestServiceClient<tonic::transport::Channel>,
    via: Via,
    interactions: Vec<pb::Interaction>,
    attempts: usize,
    pause: Duration,
) -> Option<pb::IngestSummary> {
    for _ in 0..attempts {
        let answer = match via {
            Via::Batch => {
                ingest
                    .ingest_batch(pb::IngestBatchRequest {
                        interactions: interactions.clone(),
                    })
                    .await
            }
            Via::Stream => {
                ingest
                    .ingest(tokio_stream::iter(interactions.clone()))
                    .await
            }
        };
        match answer {
            Ok(summary) => return Some(summary.into_inner()),
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status}");
                tokio::time::sleep(pause).await;
            }
        }
    }
    None
}

/// Opens an `IngestScored` stream and sends one event on it, answered before this returns: the
/// stream is then open and idle, waiting for its client.
async fn open_stream_with_one_event(
    ingest: &mut pb::ingest_service_client::IngestServiceClient<tonic::transport::Channel>,
    event: pb::Interaction,
) -> (
    mpsc::Sender<pb::Interaction>,
    tonic::Streaming<pb::ScoredInteraction>,
) {
    let (send, receive) = mpsc::channel(4);
    send.send(event).await.unwrap();
    let mut replies = ingest
        .ingest_scored(ReceiverStream::new(receive))
        .await
        .expect("admitted")
        .into_inner();
    let first = replies.message().await.unwrap().expect("one reply");
    assert_eq!(
        first.outcome,
        pb::IngestOutcome::Accepted as i32,
        "{first:?}"
    );
    (send, replies)
}

/// Issue 15 D4: `server.max_ingest_in_flight` streams that sent one event and stayed open held
/// every permit, so every other call was refused; now work is counted per event or batch being
/// applied, so twice that many idle streams stay open while batches are served. Open streams
/// have their own cap, `server.max_ingest_streams`: a flood of streams beyond it is refused at
/// once with RESOURCE_EXHAUSTED naming it, nothing of the refused calls is stored, and ingest
/// recovers once the streams end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_streams_hold_no_ingest_work_and_streams_beyond_their_cap_are_shed() {
    let mut config = loopback_config();
    config.server.max_ingest_in_flight = LIMIT;
    config.server.max_ingest_streams = 2 * LIMIT;
    config.server.max_ingest_in_flight_per_tenant = 2 * LIMIT;
    let mut t = start_with(config).await;

    // Twice the work limit in open, idle streams (each proven live by one answered event).
    let mut holders = Vec::new();
    for i in 0..2 * LIMIT {
        let event = event("acme", &format!("holder{i}"), &format!("h{i}"), T0_MS);
        holders.push(open_stream_with_one_event(&mut t.ingest, event).await);
    }
    // Batches are served while they stay open (another tenant's: acme's share is in use).
    for i in 0..2 * LIMIT {
        let summary = t
            .ingest
            .ingest_batch(pb::IngestBatchRequest {
                interactions: vec![event("other", "batched", &format!("b{i}"), T0_MS)],
            })
            .await
            .expect("idle streams hold no work")
            .into_inner();
        assert_eq!(summary.accepted, 1);
    }

    // Flood: ten times the stream cap of concurrent streams, all refused at once.
    let mut calls = Vec::new();
    for i in 0..10 * LIMIT {
        let mut ingest = t.ingest.clone();
        calls.push(tokio::spawn(async move {
            let batch = vec![event("acme", &format!("flood{i}"), &format!("f{i}"), T0_MS)];
            if i % 2 == 0 {
                ingest
                    .ingest_scored(tokio_stream::iter(batch))
                    .await
                    .map(|_| ())
            } else {
                ingest.ingest(tokio_stream::iter(batch)).await.map(|_| ())
            }
        }));
    }
    for call in calls {
        let status = call.await.unwrap().expect_err("over the stream cap");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status}");
        assert!(status.message().contains("max_ingest_streams"), "{status}");
    }
    for i in 0..10 * LIMIT {
        let status = t
            .scoring
            .get_customer(pb::GetCustomerRequest {
                tenant_id: "acme".into(),
                customer_id: format!("flood{i}"),
                as_of: None,
            })
            .await
            .expect_err("refused events are not stored");
        assert_eq!(status.code(), tonic::Code::NotFound);
    }
    // Reads are not shed.
    assert_eq!(
        t.customer("acme", "holder0", T0_MS)
            .await
            .interactions_total,
        1
    );

    // Release the holders: streams are admitted again (bounded wait for them to wind down).
    for (send, mut replies) in holders {
        drop(send);
        while replies.message().await.unwrap().is_some() {}
    }
    let reopened = once_admitted(
        &mut t.ingest,
        Via::Stream,
        vec![event("acme", "after", "a1", T0_MS)],
        200,
        Duration::from_millis(10),
    )
    .await;
    assert_eq!(reopened.expect("streams recover").accepted, 1);
    // And the full stream cap is available again, concurrently.
    let mut holders = Vec::new();
    for i in 0..2 * LIMIT {
        let event = event("acme", "again", &format!("g{i}"), T0_MS);
        holders.push(open_stream_with_one_event(&mut t.ingest, event).await);
    }
    assert_eq!(
        t.customer("acme", "again", T0_MS).await.interactions_total,
        2 * LIMIT as u64
    );
}

#[tokio::test]
async fn a_full_tenant_refuses_new_customers_and_keeps_updating_tracked_ones() {
    let mut config = loopback_config();
    config.server.max_customers_per_tenant = 3;
    let mut t = start_with(config).await;

    let first: Vec<_> = (0..3)
        .map(|i| event("acme", &format!("c{i}"), &format!("e{i}"), T0_MS))
        .collect();
    assert_eq!(t.ingest_all(first).await.accepted, 3);

    // One new customer over the cap, one tracked customer, and another tenant's new customer.
    let summary = t
        .ingest_all(vec![
            event("acme", "c3", "e3", T0_MS),
            event("acme", "c0", "e4", T0_MS + 1_000),
            event("globex", "g0", "e5", T0_MS),
        ])
        .await;
    assert_eq!((summary.accepted, summary.rejected), (2, 1), "{summary:?}");
    let rejection = &summary.rejections[0];
    assert_eq!((rejection.index, rejection.event_id.as_str()), (0, "e3"));
    assert!(
        rejection.reason.starts_with("customer_id:")
            && rejection.reason.contains("max_customers_per_tenant"),
        "{rejection:?}"
    );
    let status = t
        .scoring
        .get_customer(pb::GetCustomerRequest {
            tenant_id: "acme".into(),
            customer_id: "c3".into(),
            as_of: None,
        })
        .await
        .expect_err("the refused customer is not stored");
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert_eq!(
        t.customer("acme", "c0", T0_MS + 1_000)
            .await
            .interactions_total,
        2
    );

    // The scored stream says the same per event.
    let replies: Vec<_> = t
        .ingest
        .ingest_scored(tokio_stream::iter(vec![event("acme", "c4", "e6", T0_MS)]))
        .await
        .unwrap()
        .into_inner()
        .collect::<Vec<_>>()
        .await;
    let reply = replies[0].as_ref().expect("a reply, not a stream error");
    assert_eq!(reply.outcome, pb::IngestOutcome::Rejected as i32);
    assert!(
        reply.error.contains("max_customers_per_tenant"),
        "{reply:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_deadline_ends_a_stalled_stream_and_frees_its_slot() {
    let mut config = loopback_config();
    config.server.max_ingest_streams = 1;
    let mut t = start_with(config).await;

    // A stream that sends one event and then stalls, under a 300 ms deadline. The deadline is
    // sent as the raw `grpc-timeout` header, so only the server enforces it (tonic's client would
    // also give up by itself after `set_timeout`).
    let (send, receive) = mpsc::channel(4);
    send.send(event("acme", "slow", "d1", T0_MS)).await.unwrap();
    let mut request = tonic::Request::new(ReceiverStream::new(receive));
    request
        .metadata_mut()
        .insert("grpc-timeout", "300m".parse().unwrap());
    let mut ingest = t.ingest.clone();
    let outcome = tokio::time::timeout(Duration::from_secs(10), ingest.ingest(request))
        .await
        .expect("the server ends the call at the deadline, not the test's timeout");
    let status = outcome.expect_err("the deadline passed before the stream ended");
    assert!(
        matches!(
            status.code(),
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
        ),
        "{status}"
    );
    // Events sent after the deadline are not applied.
    let _ = send.send(event("acme", "slow", "d2", T0_MS + 1)).await;
    drop(send);

    // The only stream slot is free again (within a moment): a new stream is served.
    let mut served = None;
    for _ in 0..50 {
        match t
            .ingest
            .ingest(tokio_stream::iter(vec![event("acme", "next", "d3", T0_MS)]))
            .await
        {
            Ok(summary) => {
                served = Some(summary.into_inner());
                break;
            }
            Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(status) => panic!("{status}"),
        }
    }
    assert_eq!(served.expect("the slot was freed").accepted, 1);
    let slow = t.customer("acme", "slow", T0_MS + 1).await;
    assert!(slow.interactions_total <= 1, "{slow:?}");
}

/// Issue 15 D4: streams that send one event and stay open held their slots for as long as they
/// stayed; now an idle stream is ended after `server.ingest_idle_timeout_seconds`
/// (DEADLINE_EXCEEDED naming the key) and its stream slot freed.
#[tokio::test]
async fn an_idle_ingest_stream_times_out_and_frees_its_slot() {
    let mut config = loopback_config();
    config.server.max_ingest_streams = 1;
    config.server.ingest_idle_timeout_seconds = 1;
    let t = start_with(config).await;
    let (idle_sender, idle_events) = tokio::sync::mpsc::channel(1);
    idle_sender
        .send(event("hog", "c1", "h1", T0_MS))
        .await
        .unwrap();
    let mut idle_client = t.ingest.clone();
    let idle_call = tokio::spawn(async move {
        idle_client
            .ingest(tokio_stream::wrappers::ReceiverStream::new(idle_events))
            .await
    });
    // The idle stream holds the permit once its event is in.
    let mut scoring = t.scoring.clone();
    for _ in 0..100 {
        let stored = scoring
            .get_customer(pb::GetCustomerRequest {
                tenant_id: "hog".into(),
                customer_id: "c1".into(),
                as_of: None,
            })
            .await;
        if stored.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let served = once_admitted(
        &mut t.ingest.clone(),
        Via::Stream,
        vec![event("other", "c1", "o1", T0_MS)],
        100,
        Duration::from_millis(100),
    )
    .await;
    assert_eq!(
        served
            .expect("another tenant is served once the idle stream times out")
            .accepted,
        1
    );
    let idle = idle_call
        .await
        .unwrap()
        .expect_err("the idle stream is ended");
    assert_eq!(idle.code(), tonic::Code::DeadlineExceeded, "{idle}");
    assert!(
        idle.message()
            .starts_with("server.ingest_idle_timeout_seconds"),
        "{idle}"
    );
    drop(idle_sender);
}

/// Issue 15 D4: one tenant's open streams could hold every in-flight slot, so every other tenant
/// got RESOURCE_EXHAUSTED; now a tenant holds at most `server.max_ingest_in_flight_per_tenant` of
/// them: its next call is refused naming that key while another tenant is still served, and the
/// tenant is served again once its calls end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenant_cannot_take_every_ingest_slot() {
    let mut config = loopback_config();
    config.server.max_ingest_in_flight = 4;
    config.server.max_ingest_in_flight_per_tenant = 2;
    let t = start_with(config).await;
    // The hog holds its share with two open streams, each proven live by one answered event.
    let mut holders = Vec::new();
    for i in 0..2 {
        let (send, receive) = mpsc::channel(4);
        send.send(event("hog", &format!("h{i}"), &format!("h{i}"), T0_MS))
            .await
            .unwrap();
        let mut replies = t
            .ingest
            .clone()
            .ingest_scored(ReceiverStream::new(receive))
            .await
            .expect("within the share")
            .into_inner();
        let first = replies.message().await.unwrap().expect("one reply");
        assert_eq!(first.outcome, pb::IngestOutcome::Accepted as i32);
        holders.push((send, replies));
    }
    // A third hog call is refused, by stream and by batch, naming the per-tenant key.
    let refused = t
        .ingest
        .clone()
        .ingest(tokio_stream::iter(vec![event("hog", "h9", "h9", T0_MS)]))
        .await
        .expect_err("over the tenant's share");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused}");
    assert!(
        refused
            .message()
            .contains("max_ingest_in_flight_per_tenant"),
        "{refused}"
    );
    let refused = t
        .ingest
        .clone()
        .ingest_batch(pb::IngestBatchRequest {
            interactions: vec![event("hog", "h8", "h8", T0_MS)],
        })
        .await
        .expect_err("over the tenant's share");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused}");
    // Another tenant is served meanwhile.
    let served = t
        .ingest
        .clone()
        .ingest_batch(pb::IngestBatchRequest {
            interactions: vec![event("other", "c1", "o1", T0_MS)],
        })
        .await
        .expect("other tenants are served")
        .into_inner();
    assert_eq!(served.accepted, 1);
    // Once the hog's streams end, it is served again.
    for (send, mut replies) in holders {
        drop(send);
        while replies.message().await.unwrap().is_some() {}
    }
    let recovered = once_admitted(
        &mut t.ingest.clone(),
        Via::Batch,
        vec![event("hog", "h7", "h7", T0_MS)],
        100,
        Duration::from_millis(10),
    )
    .await;
    assert_eq!(recovered.expect("the hog is served again").accepted, 1);
}

/// Issue 15 D5: tenants were uncapped (50,000 one-event tenants took 14.5 GB); beyond
/// `server.max_tenants` an event for a new tenant is rejected naming `tenant_id` and the key,
/// and existing tenants keep being served.
#[tokio::test]
async fn tenants_beyond_the_cap_are_refused_naming_it() {
    let mut config = loopback_config();
    config.server.max_tenants = 2;
    let mut t = start_with(config).await;
    let summary = t
        .ingest_all(vec![
            event("t1", "c1", "e1", T0_MS),
            event("t2", "c1", "e2", T0_MS),
            event("t3", "c1", "e3", T0_MS),
            event("t1", "c2", "e4", T0_MS),
        ])
        .await;
    assert_eq!((summary.accepted, summary.rejected), (3, 1), "{summary:?}");
    let rejection = &summary.rejections[0];
    assert!(
        rejection.reason.starts_with("tenant_id")
            && rejection.reason.contains("server.max_tenants"),
        "{rejection:?}"
    );
}

/// Issue 24 item 10: WatchPriorities on an unknown tenant id created the tenant, so watches of
/// made-up ids filled `server.max_tenants` (and memory) for good and a real new tenant's first
/// event was refused at the cap. A watch now never creates a tenant: watches of tenants without
/// events are capped by the same key and leave nothing behind once their watchers go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_of_unknown_tenants_create_no_tenant() {
    let mut config = loopback_config();
    config.server.max_tenants = 3;
    let mut t = start_with(config).await;
    let watch = |scoring: &mut pb::scoring_service_client::ScoringServiceClient<
        tonic::transport::Channel,
    >,
                 tenant: String| {
        let mut scoring = scoring.clone();
        async move {
            scoring
                .watch_priorities(pb::WatchPrioritiesRequest {
                    tenant_id: tenant,
                    min_priority: 0.5,
                    segment: String::new(),
                    channel: 0,
                    intent: String::new(),
                    language: String::new(),
                })
                .await
        }
    };
    assert_eq!(
        t.ingest_all(vec![event("t1", "c1", "e1", T0_MS)])
            .await
            .accepted,
        1
    );
    // As many unknown tenants watched as tenants allowed; one more is refused naming the key.
    let mut watchers = Vec::new();
    for n in 0..3 {
        watchers.push(
            watch(&mut t.scoring, format!("ghost-{n}"))
                .await
                .expect("watched")
                .into_inner(),
        );
    }
    let refused = watch(&mut t.scoring, "ghost-9".into())
        .await
        .map(|_| ())
        .expect_err("too many unknown tenants watched");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused}");
    assert!(
        refused.message().contains("server.max_tenants"),
        "{refused}"
    );
    // Watching an existing tenant is not capped.
    let _existing = watch(&mut t.scoring, "t1".into()).await.expect("t1 exists");
    // The watches created no tenant: two real new tenants still fit under the cap of three.
    let summary = t
        .ingest_all(vec![
            event("t2", "c1", "e2", T0_MS),
            event("t3", "c1", "e3", T0_MS),
        ])
        .await;
    assert_eq!((summary.accepted, summary.rejected), (2, 0), "{summary:?}");
    // Once the watchers go, their places are free again.
    drop(watchers);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut again = Vec::new();
    for n in 10..13 {
        loop {
            match watch(&mut t.scoring, format!("ghost-{n}")).await {
                Ok(watcher) => {
                    again.push(watcher.into_inner());
                    break;
                }
                Err(status) => {
                    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status}");
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "the departed watchers' places were never freed"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}

/// Issue 24 item 6: filtered live queries (a risk no customer reaches) scan every customer;
/// they ran on the runtime's workers, unbounded, so one tenant's callers slowed every tenant.
/// Now they run off the workers in their tenant's turn: a tenant with too many scans waiting is
/// refused RESOURCE_EXHAUSTED naming `tenant_id`, and another tenant's query is answered among
/// them, not after them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_scans_wait_their_tenants_turn() {
    let t = start().await;
    let mut ingest = t.ingest.clone();
    for chunk in 0..4 {
        let events = (0..2_000)
            .map(|n| {
                let n = chunk * 2_000 + n;
                event("busy", &format!("c{n}"), &format!("e{n}"), T0_MS)
            })
            .collect();
        ingest
            .ingest_batch(pb::IngestBatchRequest {
                interactions: events,
            })
            .await
            .unwrap();
    }
    ingest
        .ingest_batch(pb::IngestBatchRequest {
            interactions: vec![event("calm", "c0", "e0", T0_MS)],
        })
        .await
        .unwrap();
    let query = |tenant: &str| pb::TopCustomersRequest {
        tenant_id: tenant.into(),
        limit: 10,
        action: 0,
        min_retention_risk: 1.0,
        as_of: None,
        exclude_claimed: false,
        page_token: String::new(),
        segment: String::new(),
        channel: 0,
        intent: String::new(),
        language: String::new(),
    };
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let busy: Vec<_> = (0..160)
        .map(|_| {
            let (mut scoring, request, done) = (t.scoring.clone(), query("busy"), done.clone());
            tokio::spawn(async move {
                let answer = scoring.top_customers(request).await;
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                answer
            })
        })
        .collect();
    // Wait until the busy tenant's scans are queued (some already refused or answered).
    while done.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    let calm = t.scoring.clone().top_customers(query("calm")).await;
    let busy_done_when_calm_answered = done.load(std::sync::atomic::Ordering::SeqCst);
    assert!(calm.is_ok(), "{calm:?}");
    let mut refused = 0;
    for answer in busy {
        match answer.await.unwrap() {
            Ok(_) => {}
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status}");
                assert!(status.message().starts_with("tenant_id:"), "{status}");
                refused += 1;
            }
        }
    }
    assert!(
        refused > 0,
        "160 scans of one tenant at once were all queued"
    );
    assert!(
        busy_done_when_calm_answered < 160,
        "the calm tenant waited for every scan of the busy one"
    );
}
