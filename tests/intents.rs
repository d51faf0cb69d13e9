//! Intents end to end (IntentService): a tenant's list set over gRPC, every inbound text read as one
//! of its intents or none, shown in IngestScored answers, scores, reasons and the timeline,
//! filtered on by TopCustomers, ClaimNext and WatchPriorities, refused whole when bad, logged and
//! restored across restarts with every event keeping its intent, and set from the config.

mod common;

use common::*;
use rapport::pb;
use rapport::pb::intent_service_client::IntentServiceClient;
use std::time::Duration;

fn intent(name: &str, examples: &[&str]) -> pb::Intent {
    pb::Intent {
        name: name.to_string(),
        examples: examples.iter().map(|e| e.to_string()).collect(),
    }
}

fn shop_intents() -> Vec<pb::Intent> {
    vec![
        intent(
            "refund",
            &[
                "I want my money back",
                "please refund my order",
                "how do I get a refund",
                "refund me now",
                "can I have a refund for the broken item",
                "je veux être remboursé",
            ],
        ),
        intent(
            "lost_parcel",
            &[
                "my parcel never arrived",
                "where is my package",
                "the delivery is lost",
                "tracking says delivered but nothing came",
                "my order has not arrived yet",
                "mon colis n'est jamais arrivé",
            ],
        ),
        intent(
            "login",
            &[
                "I cannot log in",
                "password reset does not work",
                "my account is locked",
                "login fails with an error",
                "forgot my password",
            ],
        ),
    ]
}

fn message(customer: &str, id: &str, minutes_ago: i64, text: &str) -> pb::Interaction {
    let mut event = with_text(
        event("acme", customer, id, NOW_MS - minutes_ago * MINUTE_MS),
        text,
    );
    event.channel = pb::Channel::Email as i32;
    event.kind = pb::InteractionKind::Message as i32;
    event.thread_id = format!("{customer}-thread");
    event
}

const NOW_MS: i64 = T0_MS + 30 * DAY_MS;

async fn scored(t: &mut TestServer, event: pb::Interaction) -> pb::ScoredInteraction {
    t.ingest
        .ingest_scored(tokio_stream::iter(vec![event]))
        .await
        .expect("IngestScored")
        .into_inner()
        .message()
        .await
        .expect("a reply")
        .expect("one reply")
}

async fn top_about(t: &mut TestServer, intent: &str) -> Result<Vec<String>, tonic::Status> {
    Ok(t.scoring
        .top_customers(pb::TopCustomersRequest {
            tenant_id: "acme".into(),
            limit: 10,
            as_of: Some(ts(NOW_MS)),
            intent: intent.into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .customers
        .into_iter()
        .map(|customer| customer.customer_id)
        .collect())
}

async fn intents_of(t: &TestServer) -> Vec<pb::Intent> {
    IntentServiceClient::new(t.channel.clone())
        .get_intents(pb::GetIntentsRequest {
            tenant_id: "acme".into(),
        })
        .await
        .expect("GetIntents")
        .into_inner()
        .intents
}

async fn set_intents(t: &TestServer, intents: Vec<pb::Intent>) -> Result<(), tonic::Status> {
    IntentServiceClient::new(t.channel.clone())
        .set_intents(pb::SetIntentsRequest {
            tenant_id: "acme".into(),
            intents,
        })
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intents_are_read_shown_filtered_and_kept_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = loopback_config();
    config.durability.data_dir = Some(dir.path().to_path_buf());
    let mut t = start_with(config.clone()).await;

    // Before any list: no intent, and a filter on one is refused naming the field.
    let plain = scored(&mut t, message("ann", "a1", 90, "I want my money back")).await;
    assert_eq!(plain.sentiment.as_ref().unwrap().intent, "");
    let refused = top_about(&mut t, "refund").await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().starts_with("intent:"),
        "{}",
        refused.message()
    );

    set_intents(&t, shop_intents()).await.expect("SetIntents");
    assert_eq!(intents_of(&t).await, shop_intents());

    // A bad list is refused whole, naming the field; the list in force stays.
    let mut bad = shop_intents();
    bad[1].name = "Lost Parcel".into();
    let refused = set_intents(&t, bad).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().starts_with("intents[1].name"),
        "{}",
        refused.message()
    );
    assert_eq!(intents_of(&t).await, shop_intents());

    let refund = scored(
        &mut t,
        message(
            "bob",
            "b1",
            60,
            "please, I would like a refund for my order",
        ),
    )
    .await;
    let read = refund.sentiment.as_ref().unwrap();
    assert_eq!(read.intent, "refund");
    assert!(read.intent_confidence > 0.0 && read.intent_confidence <= 1.0);
    let score = refund.score.as_ref().unwrap();
    assert_eq!(score.waiting_intents, ["refund"]);
    let unanswered = reason(score, "unanswered").expect("an unanswered reason");
    assert!(
        unanswered.detail.contains("about refund"),
        "{}",
        unanswered.detail
    );

    let parcel = scored(
        &mut t,
        message("cat", "c1", 30, "mon colis n'est toujours pas arrivé"),
    )
    .await;
    assert_eq!(parcel.sentiment.unwrap().intent, "lost_parcel");
    let other = scored(
        &mut t,
        message("dan", "d1", 20, "what a lovely sunny day at the beach"),
    )
    .await;
    assert_eq!(other.sentiment.unwrap().intent, "", "nothing fits: other");

    assert_eq!(top_about(&mut t, "refund").await.unwrap(), ["bob"]);
    assert_eq!(top_about(&mut t, "lost_parcel").await.unwrap(), ["cat"]);
    assert!(top_about(&mut t, "login").await.unwrap().is_empty());
    let claimed = t
        .scoring
        .claim_next(pb::ClaimNextRequest {
            tenant_id: "acme".into(),
            agent_id: "agent-1".into(),
            intent: "lost_parcel".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .customer
        .expect("a customer about a lost parcel");
    assert_eq!(claimed.customer_id, "cat");

    let timeline = t
        .scoring
        .get_timeline(pb::GetTimelineRequest {
            tenant_id: "acme".into(),
            customer_id: "bob".into(),
            page_size: 10,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        timeline.touchpoints[0].sentiment.as_ref().unwrap().intent,
        "refund"
    );
    let metrics = t.scrape_metrics().await;
    assert!(
        metrics.contains("rapport_intents_read_total{tenant=\"acme\",intent=\"refund\"}"),
        "{metrics}"
    );

    // A new list in another order, one intent dropped and one added: events already read keep
    // their intent; later ones are read with the new list.
    let mut changed = vec![intent(
        "billing",
        &[
            "I was charged twice",
            "wrong amount on my invoice",
            "why is my bill so high",
            "double charge on my card",
            "the invoice is wrong",
        ],
    )];
    changed.extend(shop_intents().into_iter().filter(|i| i.name != "login"));
    set_intents(&t, changed.clone()).await.unwrap();
    let billing = scored(
        &mut t,
        message("eve", "e1", 10, "I was charged twice on my card"),
    )
    .await;
    assert_eq!(billing.sentiment.unwrap().intent, "billing");
    assert_eq!(top_about(&mut t, "refund").await.unwrap(), ["bob"]);

    // Twice: recovery from the log, then from the state snapshot the first start wrote.
    for round in 0..2 {
        t.server.shutdown(Duration::from_secs(5)).await.unwrap();
        t = start_with(config.clone()).await;
        assert_eq!(intents_of(&t).await, changed, "round {round}");
        assert_eq!(
            top_about(&mut t, "refund").await.unwrap(),
            ["bob"],
            "round {round}"
        );
        assert_eq!(top_about(&mut t, "lost_parcel").await.unwrap(), ["cat"]);
        assert_eq!(top_about(&mut t, "billing").await.unwrap(), ["eve"]);
        // "login" is no longer in the list, but it was: the filter still names it.
        assert!(top_about(&mut t, "login").await.unwrap().is_empty());
    }
    t.server.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_sets_intents_until_the_api_does() {
    let text = r#"
[[intents]]
tenant = "acme"
name = "refund"
examples = ["I want my money back", "please refund my order", "refund me now"]

[[intents]]
tenant = "acme"
name = "login"
examples = ["I cannot log in", "forgot my password", "my account is locked"]
"#;
    let mut config = rapport::config::Config::from_toml(text).expect("valid config");
    config.server.grpc_addr = "127.0.0.1:0".parse().unwrap();
    config.server.metrics_addr = "127.0.0.1:0".parse().unwrap();
    let mut t = start_with(config).await;
    let names: Vec<String> = intents_of(&t).await.into_iter().map(|i| i.name).collect();
    assert_eq!(names, ["refund", "login"]);
    let read = scored(&mut t, message("ann", "a1", 5, "please refund me")).await;
    assert_eq!(read.sentiment.unwrap().intent, "refund");

    // A bad entry is refused at load, naming it.
    let bad = text.replace("name = \"login\"", "name = \"other\"");
    let error = rapport::config::Config::from_toml(&bad)
        .unwrap_err()
        .to_string();
    assert!(error.contains("intents[1].name"), "{error}");
    t.server.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// A segment's `intent` condition holds for the customers waiting about that intent, by name:
/// TopCustomers by the segment lists exactly them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_selects_customers_by_the_intent_they_wait_about() {
    let mut config = rapport::config::Config::from_toml(
        "[[segments]]\nname = \"refunds\"\nall = [{ field = \"intent\", op = \"in\", value = [\"refund\"] }]\n\
         [[segments]]\nname = \"not_refunds\"\nall = [{ field = \"intent\", op = \"ne\", value = \"refund\" }]",
    )
    .expect("valid config");
    config.server.grpc_addr = "127.0.0.1:0".parse().unwrap();
    config.server.metrics_addr = "127.0.0.1:0".parse().unwrap();
    let mut t = start_with(config).await;
    set_intents(&t, shop_intents()).await.unwrap();
    t.ingest_all(vec![
        message(
            "rita",
            "r1",
            30,
            "please refund my order, the item is broken",
        ),
        message(
            "pia",
            "p1",
            20,
            "my parcel never arrived and tracking says nothing",
        ),
    ])
    .await;
    let in_segment = |segment: &str| pb::TopCustomersRequest {
        tenant_id: "acme".into(),
        limit: 10,
        as_of: Some(ts(NOW_MS)),
        segment: segment.into(),
        ..Default::default()
    };
    for (segment, expected) in [("refunds", vec!["rita"]), ("not_refunds", vec!["pia"])] {
        let ids: Vec<String> = t
            .scoring
            .top_customers(in_segment(segment))
            .await
            .unwrap()
            .into_inner()
            .customers
            .into_iter()
            .map(|customer| customer.customer_id)
            .collect();
        assert_eq!(ids, expected, "{segment}");
    }
    let error = rapport::config::Config::from_toml(
        "[[segments]]\nname = \"x\"\nall = [{ field = \"intent\", op = \"gt\", value = \"refund\" }]",
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("segments[0].all[0].op"), "{error}");
    t.server.shutdown(Duration::from_secs(5)).await.unwrap();
}
