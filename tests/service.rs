//! End-to-end scenarios against a real server on loopback with real tonic clients.

mod common;

use common::*;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rapport::pb;
use std::time::Duration;
use tokio_stream::StreamExt;

#[tokio::test]
async fn angry_influential_tweet_outranks_quiet_happy_customer() {
    let mut t = start().await;
    let mut angry = with_text(
        event("acme", "angry", "a1", T0_MS),
        "@acme your app lost my order AGAIN. Worst service ever, never buying here again!!",
    );
    angry.author_followers = 50_000;
    let happy = with_text(
        kind(
            event("acme", "happy", "h1", T0_MS - DAY_MS),
            pb::InteractionKind::Review,
        ),
        "Lovely product, works great. Thanks!",
    );
    let happy_reply = outbound(event("acme", "happy", "h2", T0_MS - DAY_MS + HOUR_MS));
    let summary = t.ingest_all(vec![angry, happy, happy_reply]).await;
    assert_eq!((summary.accepted, summary.rejected), (3, 0));

    let top = t.top("acme", 10, T0_MS + 42 * MINUTE_MS).await;
    let order: Vec<&str> = top.iter().map(|s| s.customer_id.as_str()).collect();
    assert_eq!(order, ["angry", "happy"]);
    let first = &top[0];
    assert_eq!(action(first), pb::Action::Respond);
    assert!(
        first.priority > top[1].priority + 0.3,
        "{} vs {}",
        first.priority,
        top[1].priority
    );
    let unanswered = reason(first, "unanswered").expect("unanswered reason");
    assert!(
        unanswered.detail.contains("negative mention")
            && unanswered.detail.contains("42 min")
            && unanswered.detail.contains("50k"),
        "{}",
        unanswered.detail
    );
    assert!(reason(first, "reach").is_some_and(|r| r.contribution > 0.0));
    assert!(first.sentiment < 0.0);
    assert_eq!(first.unanswered_since, Some(ts(T0_MS)));
}

#[tokio::test]
async fn outbound_reply_clears_respond() {
    let mut t = start().await;
    let mut question = with_text(
        event("acme", "c1", "q1", T0_MS),
        "Where is my parcel? It is late.",
    );
    question.thread_id = "thread-9".into();
    let mut other_thread_reply = outbound(event("acme", "c1", "r0", T0_MS + MINUTE_MS));
    other_thread_reply.thread_id = "thread-other".into();
    t.ingest_all(vec![question, other_thread_reply]).await;
    let waiting = t.customer("acme", "c1", T0_MS + 2 * HOUR_MS).await;
    assert_eq!(
        action(&waiting),
        pb::Action::Respond,
        "a reply in another thread does not answer"
    );
    assert_eq!(waiting.unanswered_since, Some(ts(T0_MS)));
    assert!(reason(&waiting, "reply_wait").is_some_and(|r| r.detail.contains("2 h")));

    let mut reply = outbound(event("acme", "c1", "r1", T0_MS + 30 * MINUTE_MS));
    reply.thread_id = "thread-9".into();
    t.ingest_all(vec![reply]).await;
    let answered = t.customer("acme", "c1", T0_MS + 2 * HOUR_MS).await;
    assert_ne!(action(&answered), pb::Action::Respond);
    assert_eq!(answered.unanswered_since, None);
    assert!(answered.priority < waiting.priority);
    // As of before the reply, the message was still waiting: scores are a function of time.
    let before_reply = t.customer("acme", "c1", T0_MS + 20 * MINUTE_MS).await;
    assert_eq!(action(&before_reply), pb::Action::Respond);
}

#[tokio::test]
async fn weekly_customer_gone_silent_shows_rising_risk_with_silence() {
    let mut t = start().await;
    let events: Vec<_> = (0..12)
        .map(|week| {
            let at = T0_MS + week * 7 * DAY_MS;
            kind(
                event("acme", "weekly", &format!("w{week}"), at),
                pb::InteractionKind::PageView,
            )
        })
        .collect();
    let last = T0_MS + 11 * 7 * DAY_MS;
    t.ingest_all(events).await;

    let after_a_day = t.customer("acme", "weekly", last + DAY_MS).await;
    let after_two_weeks = t.customer("acme", "weekly", last + 14 * DAY_MS).await;
    let after_a_month = t.customer("acme", "weekly", last + 31 * DAY_MS).await;
    assert!(after_a_day.retention_risk < after_two_weeks.retention_risk);
    assert!(after_two_weeks.retention_risk < after_a_month.retention_risk);
    assert!(
        after_a_month.retention_risk > 0.6,
        "risk {}",
        after_a_month.retention_risk
    );
    assert_eq!(action(&after_a_month), pb::Action::Rescue);
    // The activity model's log-odds, with the silence and the active days in words.
    let activity = reason(&after_a_month, "activity").expect("activity among the reasons");
    assert!(activity.contribution > 0.0);
    assert!(
        activity.detail.contains("31 days") && activity.detail.contains("12 day(s)"),
        "{}",
        activity.detail
    );
    let early = reason(&after_a_day, "activity").expect("activity among the reasons");
    assert!(early.contribution < 0.0, "{}", early.contribution);
    assert!(after_a_month.engagement < after_a_day.engagement);
}

#[tokio::test]
async fn shuffled_replay_gives_identical_scores() {
    let mut t = start().await;
    let texts = [
        "love it",
        "this is terrible, refund now",
        "ok thanks",
        "still waiting...",
        "",
        "great support team!",
    ];
    let kinds = [
        pb::InteractionKind::Mention,
        pb::InteractionKind::Message,
        pb::InteractionKind::Purchase,
        pb::InteractionKind::Like,
        pb::InteractionKind::SupportTicket,
    ];
    let mut in_order = Vec::new();
    for i in 0..300i64 {
        let customer = format!("c{}", i % 17);
        let at = T0_MS + (i * 7919 % 500) * HOUR_MS / 3;
        let mut e = with_text(
            event("ordered", &customer, &format!("e{i}"), at),
            texts[i as usize % texts.len()],
        );
        e.kind = kinds[i as usize % kinds.len()] as i32;
        if e.kind == pb::InteractionKind::Purchase as i32 {
            e.value = 10.0 + i as f64;
        }
        if i % 5 == 0 {
            e.direction = pb::Direction::Outbound as i32;
        }
        if i % 3 == 0 {
            e.thread_id = format!("t{}", i % 4);
        }
        e.author_followers = (i as u64 * 37) % 5000;
        in_order.push(e);
    }
    in_order.sort_by_key(|e| (e.occurred_at.as_ref().unwrap().seconds, e.event_id.clone()));
    let mut shuffled: Vec<_> = in_order
        .iter()
        .cloned()
        .map(|mut e| {
            e.tenant_id = "shuffled".into();
            e
        })
        .collect();
    shuffled.shuffle(&mut rand::rngs::StdRng::seed_from_u64(7));
    // Replaying part of the stream again must not count twice.
    let replay: Vec<_> = shuffled[..50].to_vec();

    assert_eq!(t.ingest_all(in_order).await.accepted, 300);
    assert_eq!(t.ingest_all(shuffled).await.accepted, 300);
    let again = t.ingest_all(replay).await;
    assert_eq!((again.accepted, again.duplicates), (0, 50));

    for as_of in [T0_MS + 30 * HOUR_MS, T0_MS + 400 * DAY_MS] {
        for c in 0..17 {
            let customer = format!("c{c}");
            let mut ordered = t.customer("ordered", &customer, as_of).await;
            let mut shuffled = t.customer("shuffled", &customer, as_of).await;
            ordered.tenant_id.clear();
            shuffled.tenant_id.clear();
            assert_eq!(ordered, shuffled, "customer {customer} as of {as_of}");
        }
    }
    let top_ordered: Vec<_> = t
        .top("ordered", 17, T0_MS + 3 * DAY_MS)
        .await
        .into_iter()
        .map(|s| s.customer_id)
        .collect();
    let top_shuffled: Vec<_> = t
        .top("shuffled", 17, T0_MS + 3 * DAY_MS)
        .await
        .into_iter()
        .map(|s| s.customer_id)
        .collect();
    assert_eq!(top_ordered, top_shuffled);
}

#[tokio::test]
async fn watcher_receives_update_when_threshold_crossed() {
    let mut t = start().await;
    let mut updates = t
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
        .unwrap()
        .into_inner();
    // Live events, stamped a minute ago: scores are evaluated at the server clock.
    let now = rapport::engine::now_ms() - MINUTE_MS;
    // Below the threshold: a like (nothing to answer) must not be pushed.
    t.ingest_all(vec![kind(
        event("acme", "quiet", "l1", now),
        pb::InteractionKind::Like,
    )])
    .await;
    // Crosses it: an unanswered complaint.
    let mut complaint = with_text(
        event("acme", "loud", "m1", now),
        "You broke my account, this is awful",
    );
    complaint.author_followers = 20_000;
    t.ingest_all(vec![complaint]).await;
    let update = tokio::time::timeout(Duration::from_secs(10), updates.next())
        .await
        .expect("update in time")
        .expect("stream open")
        .expect("update ok");
    assert_eq!(update.event_id, "m1");
    let score = update.score.unwrap();
    assert_eq!(score.customer_id, "loud");
    assert_eq!(action(&score), pb::Action::Respond);
    assert!(score.priority >= 0.5 && update.previous_priority < 0.5);

    // Another tenant's events never reach this watcher; the reply crossing back down does.
    t.ingest_all(vec![with_text(
        event("other", "loud", "x1", now),
        "awful awful awful",
    )])
    .await;
    t.ingest_all(vec![outbound(event("acme", "loud", "r1", now + MINUTE_MS))])
        .await;
    let update = tokio::time::timeout(Duration::from_secs(10), updates.next())
        .await
        .expect("update in time")
        .expect("stream open")
        .expect("update ok");
    assert_eq!(update.event_id, "r1");
    assert!(update.score.unwrap().priority < 0.5);
}

#[tokio::test]
async fn invalid_events_are_rejected_by_field_and_the_rest_applied() {
    let mut t = start().await;
    let good = |id: &str| event("acme", "c1", id, T0_MS);
    let mut no_customer = good("bad1");
    no_customer.customer_id.clear();
    let mut bad_channel = good("bad2");
    bad_channel.channel = 77;
    let mut future = good("bad3");
    future.occurred_at = Some(ts(rapport::engine::now_ms() + 365 * DAY_MS));
    let mut huge = good("bad4");
    huge.text = "x".repeat(17 * 1024);
    let mut negative_money = good("bad5");
    negative_money.value = -3.0;
    let stream = vec![
        good("ok1"),
        no_customer,
        bad_channel,
        good("ok2"),
        future,
        huge,
        negative_money,
        good("ok3"),
    ];
    let summary = t.ingest_all(stream.clone()).await;
    assert_eq!(
        (summary.accepted, summary.rejected, summary.duplicates),
        (3, 5, 0)
    );
    let reasons: Vec<_> = summary
        .rejections
        .iter()
        .map(|r| (r.index, r.reason.split(':').next().unwrap().to_string()))
        .collect();
    assert_eq!(
        reasons,
        [
            (1, "customer_id".to_string()),
            (2, "channel".to_string()),
            (4, "occurred_at".to_string()),
            (5, "text".to_string()),
            (6, "value".to_string())
        ]
    );
    assert_eq!(t.customer("acme", "c1", T0_MS).await.interactions_total, 3);

    // The scored stream answers each event in order, errors included, and keeps going.
    let replies: Vec<_> = t
        .ingest
        .ingest_scored(tokio_stream::iter(stream))
        .await
        .unwrap()
        .into_inner()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    let outcomes: Vec<_> = replies
        .iter()
        .map(|r| pb::IngestOutcome::try_from(r.outcome).unwrap())
        .collect();
    use pb::IngestOutcome::{Duplicate, Rejected};
    assert_eq!(
        outcomes,
        [Duplicate, Rejected, Rejected, Duplicate, Rejected, Rejected, Rejected, Duplicate]
    );
    assert!(
        replies[2].error.starts_with("channel:"),
        "{}",
        replies[2].error
    );
    assert!(replies[0].score.is_some() && replies[1].score.is_none());

    // A batch says the same; unary lookups name their fields too.
    let status = t
        .scoring
        .get_customer(pb::GetCustomerRequest {
            tenant_id: "acme".into(),
            customer_id: String::new(),
            as_of: None,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("customer_id"));
    let status = t
        .scoring
        .top_customers(pb::TopCustomersRequest {
            tenant_id: "acme".into(),
            limit: 5000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        status.message().starts_with("limit"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn ingest_scored_returns_sentiment_and_score_per_event() {
    let mut t = start().await;
    let events = vec![
        with_text(
            event("acme", "c1", "s1", T0_MS),
            "Absolutely love the new update!",
        ),
        kind(
            event("acme", "c1", "s2", T0_MS + MINUTE_MS),
            pb::InteractionKind::Like,
        ),
    ];
    let replies: Vec<_> = t
        .ingest
        .ingest_scored(tokio_stream::iter(events))
        .await
        .unwrap()
        .into_inner()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    assert_eq!(
        replies
            .iter()
            .map(|r| r.event_id.as_str())
            .collect::<Vec<_>>(),
        ["s1", "s2"]
    );
    let sentiment = replies[0].sentiment.as_ref().unwrap();
    assert_eq!(
        pb::SentimentLabel::try_from(sentiment.label).unwrap(),
        pb::SentimentLabel::Positive
    );
    assert!(sentiment.score > 0.5 && sentiment.confidence > 0.5);
    assert!(replies[1].sentiment.is_none(), "a like has no text");
    assert_eq!(replies[0].score.as_ref().unwrap().interactions_total, 1);
    assert_eq!(replies[1].score.as_ref().unwrap().interactions_total, 2);

    let batch = t
        .ingest
        .ingest_batch(pb::IngestBatchRequest {
            interactions: vec![
                event("acme", "c2", "b1", T0_MS),
                event("acme", "c2", "s1", T0_MS),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        batch.accepted, 2,
        "event ids are per customer history, c2 is new"
    );
}

#[tokio::test]
async fn ids_are_remembered_for_the_kept_window_and_older_events_are_refused() {
    let mut config = loopback_config();
    config.scoring.max_events_per_customer = 8;
    let mut t = start_with(config).await;
    // Twenty daily events: the history keeps at most 8 and folds the oldest away.
    let daily: Vec<_> = (0..20)
        .map(|day| event("acme", "loyal", &format!("d{day}"), T0_MS + day * DAY_MS))
        .collect();
    assert_eq!(t.ingest_all(daily.clone()).await.accepted, 20);
    let before = t.customer("acme", "loyal", T0_MS + 30 * DAY_MS).await;
    assert_eq!(before.interactions_total, 20);

    // The whole stream again: recent ids are duplicates, forgotten ones are refused by field;
    // nothing is counted twice. A new event older than the kept window is refused too.
    let mut again = daily;
    again.push(event("acme", "loyal", "ancient", T0_MS - 100 * DAY_MS));
    let summary = t.ingest_all(again).await;
    assert_eq!(summary.accepted, 0, "{summary:?}");
    assert_eq!(summary.duplicates + summary.rejected, 21, "{summary:?}");
    assert!(
        summary.duplicates >= 6,
        "the kept window answers DUPLICATE: {summary:?}"
    );
    assert!(
        summary
            .rejections
            .iter()
            .all(|r| r.reason.starts_with("occurred_at:")
                && r.reason.contains("max_events_per_customer")),
        "{summary:?}"
    );
    let after = t.customer("acme", "loyal", T0_MS + 30 * DAY_MS).await;
    assert_eq!(after, before);
    // A late event inside the kept window is still folded in exactly.
    let late = t
        .ingest_all(vec![event(
            "acme",
            "loyal",
            "late",
            T0_MS + 18 * DAY_MS + 1,
        )])
        .await;
    assert_eq!(late.accepted, 1);
    assert_eq!(
        t.customer("acme", "loyal", T0_MS + 30 * DAY_MS)
            .await
            .interactions_total,
        21
    );
}

#[tokio::test]
async fn tenants_are_isolated() {
    let mut t = start().await;
    t.ingest_all(vec![with_text(
        event("tenant-a", "shared-name", "e1", T0_MS),
        "hate this",
    )])
    .await;
    let status = t
        .scoring
        .get_customer(pb::GetCustomerRequest {
            tenant_id: "tenant-b".into(),
            customer_id: "shared-name".into(),
            as_of: None,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert!(t.top("tenant-b", 10, T0_MS + DAY_MS).await.is_empty());
    assert_eq!(t.top("tenant-a", 10, T0_MS + DAY_MS).await.len(), 1);
}

#[tokio::test]
async fn as_of_before_later_events_excludes_them() {
    let mut t = start().await;
    let purchase = {
        let mut p = kind(
            event("acme", "c1", "p1", T0_MS + 10 * DAY_MS),
            pb::InteractionKind::Purchase,
        );
        p.value = 99.5;
        p
    };
    t.ingest_all(vec![purchase, event("acme", "c1", "m1", T0_MS)])
        .await;
    let early = t.customer("acme", "c1", T0_MS + DAY_MS).await;
    let late = t.customer("acme", "c1", T0_MS + 11 * DAY_MS).await;
    assert_eq!((early.interactions_total, early.lifetime_value), (1, 0.0));
    assert_eq!((late.interactions_total, late.lifetime_value), (2, 99.5));
    let status = t
        .scoring
        .get_customer(pb::GetCustomerRequest {
            tenant_id: "acme".into(),
            customer_id: "c1".into(),
            as_of: Some(ts(T0_MS - DAY_MS)),
        })
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        tonic::Code::NotFound,
        "no events yet as of then"
    );
}

#[tokio::test]
async fn classify_rpc_uses_the_backend() {
    let mut t = start().await;
    let response = t
        .sentiment
        .classify(pb::ClassifyRequest {
            texts: vec![
                "I love you guys".into(),
                "horrible, broken, useless".into(),
                "The meeting is at 3pm".into(),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    let labels: Vec<_> = response
        .results
        .iter()
        .map(|r| pb::SentimentLabel::try_from(r.label).unwrap())
        .collect();
    use pb::SentimentLabel::*;
    assert_eq!(labels, [Positive, Negative, Neutral]);
    let status = t
        .sentiment
        .classify(pb::ClassifyRequest {
            texts: vec![String::new(); 1001],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().starts_with("texts"));
}

#[tokio::test]
async fn health_reflection_and_metrics_are_served() {
    let mut t = start().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(t.channel.clone());
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "rapport.v1.IngestService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        serving.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(t.channel.clone());
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for expected in [
        "rapport.v1.IngestService",
        "rapport.v1.ScoringService",
        "rapport.v1.SentimentService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.contains(&expected), "{names:?}");
    }

    t.ingest_all(vec![with_text(
        event("acme", "c1", "e1", T0_MS),
        "thanks, great help",
    )])
    .await;
    let metrics = t.scrape_metrics().await;
    for expected in [
        "rapport_events_ingested_total{channel=\"twitter\",kind=\"mention\",outcome=\"accepted\"}",
        "rapport_classifications_total{backend=\"fast\",label=\"positive\"}",
        "rapport_classification_duration_seconds_bucket",
        "rapport_grpc_requests_total{method=\"Ingest\",code=\"OK\"}",
        "rapport_grpc_request_duration_seconds_bucket",
        "rapport_customers_tracked",
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected} in\n{metrics}"
        );
    }
}

#[tokio::test]
async fn shutdown_lets_in_flight_stream_finish() {
    let t = start().await;
    let mut ingest = t.ingest.clone();
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let call = tokio::spawn(async move {
        ingest
            .ingest(tokio_stream::wrappers::ReceiverStream::new(receiver))
            .await
    });
    sender.send(event("acme", "c1", "e1", T0_MS)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let shutdown = tokio::spawn(t.server.shutdown(Duration::from_secs(10)));
    tokio::time::sleep(Duration::from_millis(200)).await;
    sender.send(event("acme", "c1", "e2", T0_MS)).await.unwrap();
    drop(sender);
    let summary = call
        .await
        .unwrap()
        .expect("in-flight stream completes")
        .into_inner();
    assert_eq!(summary.accepted, 2);
    shutdown.await.unwrap().expect("clean shutdown");
}

/// A queued sentiment backend whose workers have all stopped: the server reports its sentiment
/// service NOT_SERVING (ingest stays SERVING: it classifies inline), and SERVING again when the
/// backend recovers; the pool's counters are exported.
#[tokio::test]
async fn a_dead_sentiment_pool_turns_the_sentiment_service_not_serving() {
    use rapport::sentiment::{QueueStats, Sentiment, SentimentModel};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    struct Pool {
        alive: AtomicBool,
        inner: Arc<dyn SentimentModel>,
    }
    impl SentimentModel for Pool {
        fn name(&self) -> &'static str {
            "test-pool"
        }
        fn classify(&self, text: &str) -> Sentiment {
            self.inner.classify(text)
        }
        fn is_serving(&self) -> bool {
            self.alive.load(Ordering::SeqCst)
        }
        fn queue_stats(&self) -> Option<QueueStats> {
            let alive = u64::from(self.alive.load(Ordering::SeqCst));
            Some(QueueStats {
                workers_alive: alive,
                workers_started: 1,
                texts: 7,
                ..QueueStats::default()
            })
        }
    }
    let config = loopback_config();
    let inner = rapport::sentiment::load(config.server.sentiment, &config.server.models_dir())
        .expect("model loads");
    let pool = Arc::new(Pool {
        alive: AtomicBool::new(true),
        inner,
    });
    let t = start_with_model(config, pool.clone()).await;
    let sentiment = "rapport.v1.SentimentService";
    wait_for_health(&t, sentiment, 1).await; // SERVING
    pool.alive.store(false, Ordering::SeqCst);
    wait_for_health(&t, sentiment, 2).await; // NOT_SERVING
    assert_eq!(
        health_status(&t, "rapport.v1.IngestService").await,
        1,
        "ingest classifies inline and stays SERVING"
    );
    let metrics = t.scrape_metrics().await;
    assert!(
        metrics.contains("rapport_transformer_workers_alive 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rapport_transformer_texts_total 7"),
        "{metrics}"
    );
    pool.alive.store(true, Ordering::SeqCst);
    wait_for_health(&t, sentiment, 1).await;
}

async fn health_status(t: &TestServer, service: &str) -> i32 {
    tonic_health::pb::health_client::HealthClient::new(t.channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.to_string(),
        })
        .await
        .expect("health answers")
        .into_inner()
        .status
}

/// Polls `service`'s health until it is `want` (bounded: the server reads the backend every
/// second).
async fn wait_for_health(t: &TestServer, service: &str, want: i32) {
    for _ in 0..100 {
        if health_status(t, service).await == want {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{service} never reached status {want}");
}
