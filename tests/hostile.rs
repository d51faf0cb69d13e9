//! Hostile input, table-driven: every malformed request gets INVALID_ARGUMENT naming the field (or a
//! clean error/close for what cannot even be decoded), nothing of the bad event is stored, and the
//! server keeps serving.

mod common;

use common::*;
use rapport::pb;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

type Mutation = Box<dyn Fn(&mut pb::Interaction)>;

async fn not_stored(t: &mut TestServer, customer: &str) {
    let status = t
        .scoring
        .get_customer(pb::GetCustomerRequest {
            tenant_id: "acme".into(),
            customer_id: customer.into(),
            as_of: None,
        })
        .await
        .expect_err("nothing stored from a bad event");
    assert_eq!(status.code(), tonic::Code::NotFound, "{customer}: {status}");
}

async fn still_serving(t: &mut TestServer, id: &str) {
    let summary = t.ingest_all(vec![event("acme", "canary", id, T0_MS)]).await;
    assert_eq!(summary.accepted, 1, "{id}");
}

#[tokio::test]
async fn malformed_fields_are_rejected_by_name_and_nothing_is_stored() {
    let mut t = start().await;
    let cases: Vec<(&str, &str, Mutation)> = vec![
        (
            "empty event id",
            "event_id",
            Box::new(|i| i.event_id.clear()),
        ),
        (
            "empty tenant id",
            "tenant_id",
            Box::new(|i| i.tenant_id.clear()),
        ),
        (
            "huge event id",
            "event_id",
            Box::new(|i| i.event_id = "e".repeat(100_000)),
        ),
        (
            "control chars in thread id",
            "thread_id",
            Box::new(|i| i.thread_id = "t\u{7}".into()),
        ),
        (
            "text over the limit",
            "text",
            Box::new(|i| i.text = "x".repeat(64 * 1024)),
        ),
        ("NaN money", "value", Box::new(|i| i.value = f64::NAN)),
        (
            "infinite money",
            "value",
            Box::new(|i| i.value = f64::INFINITY),
        ),
        ("negative money", "value", Box::new(|i| i.value = -0.01)),
        (
            "year 9999",
            "occurred_at",
            Box::new(|i| i.occurred_at = Some(ts(253_402_300_799_000))),
        ),
        (
            "before 1970",
            "occurred_at",
            Box::new(|i| {
                i.occurred_at = Some(prost_types::Timestamp {
                    seconds: -86_400,
                    nanos: 0,
                })
            }),
        ),
        (
            "bad nanos",
            "occurred_at",
            Box::new(|i| {
                i.occurred_at = Some(prost_types::Timestamp {
                    seconds: 1,
                    nanos: -5,
                })
            }),
        ),
        (
            "i64::MAX seconds",
            "occurred_at",
            Box::new(|i| {
                i.occurred_at = Some(prost_types::Timestamp {
                    seconds: i64::MAX,
                    nanos: 0,
                })
            }),
        ),
        (
            "missing time",
            "occurred_at",
            Box::new(|i| i.occurred_at = None),
        ),
        ("unknown channel", "channel", Box::new(|i| i.channel = 999)),
        ("negative kind", "kind", Box::new(|i| i.kind = -3)),
        (
            "unspecified direction",
            "direction",
            Box::new(|i| i.direction = 0),
        ),
        // Issue 15 D12: ids that look like other ids, and money whose sums reach +inf.
        (
            "right-to-left override in event id",
            "event_id",
            Box::new(|i| i.event_id = "e\u{202E}1".into()),
        ),
        (
            "zero-width space in customer id",
            "customer_id",
            Box::new(|i| i.customer_id = "c\u{200B}1".into()),
        ),
        (
            "whitespace-only tenant id",
            "tenant_id",
            Box::new(|i| i.tenant_id = " \u{3000} ".into()),
        ),
        (
            "whitespace-only thread id",
            "thread_id",
            Box::new(|i| i.thread_id = "  ".into()),
        ),
        (
            "money summing to infinity",
            "value",
            Box::new(|i| i.value = 1.7e308),
        ),
    ];
    for (n, (name, field, mutate)) in cases.iter().enumerate() {
        let customer = format!("bad{n}");
        let mut bad = event("acme", &customer, &format!("b{n}"), T0_MS);
        mutate(&mut bad);
        // Unary batch: the bad event is reported by field, the good one beside it applied.
        let good = event("acme", "good", &format!("g{n}"), T0_MS);
        let summary = t
            .ingest
            .ingest_batch(pb::IngestBatchRequest {
                interactions: vec![bad.clone(), good],
            })
            .await
            .unwrap_or_else(|status| panic!("{name}: {status}"))
            .into_inner();
        assert_eq!((summary.accepted, summary.rejected), (1, 1), "{name}");
        assert!(
            summary.rejections[0].reason.starts_with(field),
            "{name}: {:?}",
            summary.rejections[0]
        );
        // Scored stream: the bad event comes back REJECTED with the field named.
        let mut replies = t
            .ingest
            .ingest_scored(tokio_stream::iter(vec![bad]))
            .await
            .unwrap()
            .into_inner();
        let reply = replies.message().await.unwrap().expect("a reply");
        assert_eq!(reply.outcome, pb::IngestOutcome::Rejected as i32, "{name}");
        assert!(reply.error.starts_with(field), "{name}: {}", reply.error);
        assert!(reply.score.is_none());
        not_stored(&mut t, &customer).await;
    }
    let good = t.customer("acme", "good", T0_MS).await;
    assert_eq!(good.interactions_total, cases.len() as u64);
    still_serving(&mut t, "canary-1").await;
}

/// Issue 15 D12: a repeated event id with a different payload was a silent DUPLICATE, so the
/// client never learnt that its second event was dropped; now it is rejected as a conflict naming
/// `event_id` and the field that differs, while a true repeat stays a DUPLICATE.
#[tokio::test]
async fn a_repeated_event_id_with_another_payload_is_a_conflict_not_a_duplicate() {
    let mut t = start().await;
    let first = event("acme", "twice", "e1", T0_MS);
    let summary = t
        .ingest
        .ingest_batch(pb::IngestBatchRequest {
            interactions: vec![first.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.accepted, 1);
    let mut later = first.clone();
    later.occurred_at = Some(prost_types::Timestamp {
        seconds: T0_MS / 1000 + 60,
        nanos: 0,
    });
    let mut bigger = first.clone();
    bigger.value = 99.0;
    let summary = t
        .ingest
        .ingest_batch(pb::IngestBatchRequest {
            interactions: vec![first.clone(), later.clone(), bigger],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (summary.accepted, summary.duplicates, summary.rejected),
        (0, 1, 2),
        "{summary:?}"
    );
    for (rejection, field) in summary.rejections.iter().zip(["occurred_at", "value"]) {
        assert!(
            rejection.reason.starts_with("event_id") && rejection.reason.contains(field),
            "{rejection:?}"
        );
    }
    let mut replies = t
        .ingest
        .ingest_scored(tokio_stream::iter(vec![later]))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.message().await.unwrap().expect("a reply");
    assert_eq!(reply.outcome, pb::IngestOutcome::Rejected as i32);
    assert!(reply.error.contains("occurred_at"), "{}", reply.error);
    let stored = t.customer("acme", "twice", T0_MS + 120_000).await;
    assert_eq!(stored.interactions_total, 1);
}

#[tokio::test]
async fn ten_mib_text_gets_a_clean_error_and_nothing_is_stored() {
    let mut t = start().await;
    let huge = with_text(event("acme", "huge", "h1", T0_MS), &"x".repeat(10 << 20));
    let status = t
        .ingest
        .ingest_batch(pb::IngestBatchRequest {
            interactions: vec![huge.clone()],
        })
        .await
        .expect_err("over the decode limit");
    // tonic refuses messages over its 4 MiB decode limit before our code sees them.
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status}");
    let status = t
        .ingest
        .ingest(tokio_stream::iter(vec![huge]))
        .await
        .expect_err("over the decode limit");
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status}");
    not_stored(&mut t, "huge").await;
    still_serving(&mut t, "canary-2").await;
}

/// An Interaction with `customer_id` as raw bytes at the same tag, so invalid UTF-8 can be sent.
#[derive(Clone, PartialEq, prost::Message)]
struct RawInteraction {
    #[prost(string, tag = "1")]
    event_id: String,
    #[prost(string, tag = "2")]
    tenant_id: String,
    #[prost(bytes = "vec", tag = "3")]
    customer_id: Vec<u8>,
    #[prost(int32, tag = "4")]
    channel: i32,
    #[prost(int32, tag = "5")]
    kind: i32,
    #[prost(int32, tag = "6")]
    direction: i32,
    #[prost(message, optional, tag = "7")]
    occurred_at: Option<prost_types::Timestamp>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RawBatch {
    #[prost(message, repeated, tag = "1")]
    interactions: Vec<RawInteraction>,
}

#[tokio::test]
async fn invalid_utf8_is_refused_cleanly() {
    let mut t = start().await;
    let raw = RawInteraction {
        event_id: "u1".into(),
        tenant_id: "acme".into(),
        customer_id: vec![b'c', 0xff, 0xfe, b'x'],
        channel: pb::Channel::Twitter as i32,
        kind: pb::InteractionKind::Mention as i32,
        direction: pb::Direction::Inbound as i32,
        occurred_at: Some(ts(T0_MS)),
    };
    let mut grpc = tonic::client::Grpc::new(t.channel.clone());
    grpc.ready().await.unwrap();
    let codec: tonic::codec::ProstCodec<RawBatch, pb::IngestSummary> = Default::default();
    let status = grpc
        .unary(
            tonic::Request::new(RawBatch {
                interactions: vec![raw],
            }),
            "/rapport.v1.IngestService/IngestBatch".parse().unwrap(),
            codec,
        )
        .await
        .expect_err("undecodable");
    // prost refuses the message while decoding; rapport's codec answers INVALID_ARGUMENT with the
    // decode error naming the field.
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");
    assert!(status.message().contains("customer_id"), "{status}");
    assert!(
        status.message().contains("UTF-8")
            || status.message().contains("utf-8")
            || status.message().contains("decode"),
        "{status}"
    );
    // No customer was created from it (the valid-UTF-8 prefix "c" included).
    not_stored(&mut t, "c").await;
    still_serving(&mut t, "canary-3").await;
    // The refused call is counted with its method and code (by the server's metrics layer).
    let metrics = t.scrape_metrics().await;
    let expected = "rapport_grpc_requests_total{method=\"IngestBatch\",code=\"INVALID_ARGUMENT\"}";
    assert!(
        metrics.contains(expected),
        "missing {expected} in\n{metrics}"
    );
}

#[tokio::test]
async fn zero_length_streams_and_abrupt_disconnects_are_clean() {
    let mut t = start().await;
    let empty = t.ingest_all(Vec::new()).await;
    assert_eq!(
        (empty.accepted, empty.duplicates, empty.rejected),
        (0, 0, 0)
    );
    let mut replies = t
        .ingest
        .ingest_scored(tokio_stream::iter(Vec::new()))
        .await
        .unwrap()
        .into_inner();
    assert!(replies.message().await.unwrap().is_none());

    // Abrupt disconnects mid-stream, a few times over on fresh connections.
    for round in 0..5 {
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://{}", t.server.grpc_addr))
                .unwrap()
                .connect()
                .await
                .unwrap();
        let mut client = pb::ingest_service_client::IngestServiceClient::new(channel);
        let (send, receive) = mpsc::channel(4);
        send.send(event("acme", "cut", &format!("c{round}"), T0_MS))
            .await
            .unwrap();
        let mut replies = client
            .ingest_scored(ReceiverStream::new(receive))
            .await
            .unwrap()
            .into_inner();
        let first = replies.message().await.unwrap().expect("answered");
        assert_eq!(first.outcome, pb::IngestOutcome::Accepted as i32);
        // Hang up without closing the stream.
        drop(replies);
        drop(client);
        drop(send);
    }
    // Everything answered is stored, nothing more, and the server serves on.
    let mut total = 0;
    for _ in 0..100 {
        total = t.customer("acme", "cut", T0_MS).await.interactions_total;
        if total == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(total, 5);
    still_serving(&mut t, "canary-4").await;
}

// A stand-in for cargo-fuzz (which needs nightly, unavailable here): property tests that decoding
// and validating arbitrary bytes as an Interaction, and classifying arbitrary text with both
// backends, never panic and keep their output in range.
mod never_panics {
    use proptest::prelude::*;
    use rapport::api::convert::{interaction_from_pb, Limits};
    use rapport::pb;
    use rapport::sentiment::{self, Backend, SentimentModel};
    use std::sync::{Arc, OnceLock};

    fn models() -> &'static [Arc<dyn SentimentModel>; 2] {
        static MODELS: OnceLock<[Arc<dyn SentimentModel>; 2]> = OnceLock::new();
        MODELS.get_or_init(|| {
            let dir = sentiment::default_models_dir();
            [
                sentiment::load(Backend::Fast, &dir).unwrap(),
                sentiment::load(Backend::Vader, &dir).unwrap(),
            ]
        })
    }

    fn limits() -> Limits {
        Limits {
            max_text_bytes: 16 * 1024,
            max_id_bytes: 256,
            max_future_skew_ms: 300_000,
            max_identifiers: 16,
            blocked_identifiers: Vec::new().into(),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn decode_and_validate_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(message) = <pb::Interaction as prost::Message>::decode(bytes.as_slice()) {
                if let Ok(valid) = interaction_from_pb(message, &limits(), 1_767_225_600_000) {
                    prop_assert!(valid.value.is_finite() && valid.value >= 0.0);
                    prop_assert!(valid.occurred_at_ms >= 0);
                    prop_assert!(!valid.event_id.is_empty() && valid.event_id.len() <= 256);
                }
            }
        }

        #[test]
        fn validate_arbitrary_fields(
            id in ".{0,300}",
            channel in any::<i32>(),
            kind in any::<i32>(),
            direction in any::<i32>(),
            seconds in any::<i64>(),
            nanos in any::<i32>(),
            value in any::<f64>(),
            reply_need in any::<i32>(),
        ) {
            let message = pb::Interaction {
                event_id: id.clone(),
                tenant_id: id.clone(),
                customer_id: id,
                channel,
                kind,
                direction,
                occurred_at: Some(prost_types::Timestamp { seconds, nanos }),
                text: String::new(),
                value,
                author_followers: 0,
                thread_id: String::new(),
                reply_need,
                identifiers: Vec::new(),
                agent_id: String::new(),
            };
            let _ = interaction_from_pb(message, &limits(), 1_767_225_600_000);
        }

        #[test]
        fn classifiers_take_any_text(text in any::<String>()) {
            for model in models() {
                let s = model.classify(&text);
                prop_assert!((-1.0..=1.0).contains(&s.score), "{} {}", model.name(), s.score);
                prop_assert!((0.0..=1.0).contains(&s.confidence), "{} {}", model.name(), s.confidence);
            }
        }
    }
}

/// Connects to `addr`, sends `bytes`, then nothing: whether the server closes the connection
/// within `within` (a read ending with EOF or a reset).
async fn closed_by_server_within(
    addr: std::net::SocketAddr,
    bytes: &'static [u8],
    within: Duration,
) -> bool {
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut silent = std::net::TcpStream::connect(addr).unwrap();
        silent.write_all(bytes).unwrap();
        silent.set_read_timeout(Some(within)).unwrap();
        let mut buf = [0u8; 256];
        loop {
            match silent.read(&mut buf) {
                Ok(0) => return true,
                // The server's own frames (SETTINGS after a preface): keep reading.
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    })
    .await
    .unwrap()
}

/// Issue 24 item 5: idle connections were never closed (0 of 60 after 70 s, no request sent), so
/// they could exhaust the descriptors. A connection from which nothing is read for
/// `server.idle_connection_timeout_seconds` is now closed, whether it never sent a byte, stopped
/// inside its HTTP/2 preface, or sent the preface and then nothing (it answers no ping); a live
/// client answers the server's pings, so its idle stream stays open past the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_and_live_ones_stay() {
    let mut config = loopback_config();
    config.server.idle_connection_timeout_seconds = 1;
    let mut t = start_with(config).await;
    let addr = t.server.grpc_addr;
    let mut watch = t
        .scoring
        .watch_priorities(pb::WatchPrioritiesRequest {
            tenant_id: "acme".into(),
            min_priority: 0.5,
            segment: String::new(),
            channel: 0,
            intent: String::new(),
            language: String::new(),
        })
        .await
        .expect("watching")
        .into_inner();
    let silent: [&'static [u8]; 3] = [
        b"",
        b"PRI * HTTP/2.0\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ];
    let closes = silent.map(|bytes| closed_by_server_within(addr, bytes, Duration::from_secs(10)));
    for (closed, bytes) in futures::future::join_all(closes)
        .await
        .into_iter()
        .zip(silent)
    {
        assert!(closed, "a connection that sent {bytes:?} was left open");
    }
    // Well past the idle timeout, the watcher's connection is still open: its update arrives.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let now = rapport::engine::now_ms() - MINUTE_MS;
    let mut complaint = with_text(
        event("acme", "loud", "m1", now),
        "You broke my account, this is awful",
    );
    complaint.author_followers = 20_000;
    t.ingest_all(vec![complaint]).await;
    let update = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect("update in time")
        .expect("the watch's connection stayed open")
        .expect("an update");
    assert_eq!(update.event_id, "m1");
    let metrics = t.scrape_metrics().await;
    assert!(
        metrics.contains("rapport_grpc_accept_errors_total{stage=\"idle\"}"),
        "{metrics}"
    );
}

/// Issue 24 item 5: connections were uncapped. Beyond `server.max_connections` a connection is
/// closed as soon as it is accepted, while those admitted keep being served; a place frees when
/// a connection ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_closed_at_once() {
    let mut config = loopback_config();
    config.server.max_connections = 2;
    // The harness's client holds the first place.
    let mut t = start_with(config).await;
    let addr = t.server.grpc_addr;
    let held = std::net::TcpStream::connect(addr).unwrap();
    // Give the server time to accept it before the next one.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        closed_by_server_within(addr, b"", Duration::from_secs(2)).await,
        "a third connection was admitted past the cap of two"
    );
    assert!(
        t.top("acme", 10, T0_MS).await.is_empty(),
        "admitted ones are served"
    );
    drop(held);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let connected = async {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
                .ok()?;
            rapport::pb::scoring_service_client::ScoringServiceClient::new(channel)
                .top_customers(pb::TopCustomersRequest {
                    tenant_id: "acme".into(),
                    limit: 1,
                    ..Default::default()
                })
                .await
                .ok()
        };
        if connected.await.is_some() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place of the closed connection never freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
