//! Overload: a flood of ingest calls beyond the global in-flight limit is refused at once with
//! RESOURCE_EXHAUSTED, nothing of the refused calls is stored, and the server serves normally after.

mod common;

use common::*;
use rapport::pb;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const LIMIT: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_beyond_the_in_flight_limit_is_shed_and_service_recovers() {
    let mut config = loopback_config();
    config.server.max_ingest_in_flight = LIMIT;
    let mut t = start_with(config).await;

    // Hold every permit with open streams, each proven live by one answered event.
    let mut holders = Vec::new();
    for i in 0..LIMIT {
        let (send, receive) = mpsc::channel(4);
        send.send(event(
            "acme",
            &format!("holder{i}"),
            &format!("h{i}"),
            T0_MS,
        ))
        .await
        .unwrap();
        let mut replies = t
            .ingest
            .ingest_scored(ReceiverStream::new(receive))
            .await
            .expect("within the limit")
            .into_inner();
        let first = replies.message().await.unwrap().expect("one reply");
        assert_eq!(first.outcome, pb::IngestOutcome::Accepted as i32);
        holders.push((send, replies));
    }

    // Flood: ten times the limit of concurrent batches and streams, all refused at once.
    let mut calls = Vec::new();
    for i in 0..10 * LIMIT {
        let mut ingest = t.ingest.clone();
        calls.push(tokio::spawn(async move {
            let batch = vec![event("acme", &format!("flood{i}"), &format!("f{i}"), T0_MS)];
            if i % 2 == 0 {
                ingest
                    .ingest_batch(pb::IngestBatchRequest {
                        interactions: batch,
                    })
                    .await
                    .map(|_| ())
            } else {
                ingest.ingest(tokio_stream::iter(batch)).await.map(|_| ())
            }
        }));
    }
    for call in calls {
        let status = call.await.unwrap().expect_err("over the limit");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status}");
        assert!(
            status.message().contains("max_ingest_in_flight"),
            "{status}"
        );
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

    // Release the holders: ingest works again (bounded wait for the streams to wind down).
    for (send, mut replies) in holders {
        drop(send);
        while replies.message().await.unwrap().is_some() {}
    }
    let mut recovered = None;
    for _ in 0..200 {
        match t
            .ingest
            .ingest_batch(pb::IngestBatchRequest {
                interactions: vec![event("acme", "after", "a1", T0_MS)],
            })
            .await
        {
            Ok(summary) => {
                recovered = Some(summary.into_inner());
                break;
            }
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    assert_eq!(recovered.expect("ingest recovers").accepted, 1);
    // And the full limit is available again, concurrently.
    let mut calls = Vec::new();
    for i in 0..LIMIT {
        let mut ingest = t.ingest.clone();
        calls.push(tokio::spawn(async move {
            ingest
                .ingest_batch(pb::IngestBatchRequest {
                    interactions: vec![event("acme", "again", &format!("g{i}"), T0_MS)],
                })
                .await
        }));
    }
    for call in calls {
        call.await.unwrap().expect("within the limit again");
    }
    assert_eq!(
        t.customer("acme", "again", T0_MS).await.interactions_total,
        LIMIT as u64
    );
}
