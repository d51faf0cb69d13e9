//! Issue 16: segments from config filter TopCustomers, ClaimNext and WatchPriorities; rules
//! exclude a segment; a config reload (AdminService and SIGHUP) puts new segments in force, and a
//! file that does not validate is refused naming the key while the old config keeps serving.

mod common;

use common::*;
use rapport::pb;
use rapport::pb::admin_service_client::AdminServiceClient;
use rapport::pb::identity_service_client::IdentityServiceClient;
use std::time::Duration;

const SEGMENTS: &str = r#"
[[segments]]
name = "vip"
all = [{ field = "attributes.tier", op = "eq", value = "vip" }]

[[segments]]
name = "sanctioned"
any = [{ field = "attributes.region", op = "in", value = ["xx", "yy"] }]

[[segments]]
name = "waiting"
all = [
  { field = "action", op = "eq", value = "respond" },
  { field = "open_threads", op = "gte", value = 1 },
]

[[rules]]
segment = "sanctioned"
exclude = true
"#;

fn text(value: &str) -> pb::AttributeValue {
    pb::AttributeValue {
        value: Some(pb::attribute_value::Value::Text(value.into())),
    }
}

/// The customers answered, sorted (the order is TopCustomers' business, not these tests').
fn ids(answer: pb::TopCustomersResponse) -> Vec<String> {
    let mut ids: Vec<String> = answer
        .customers
        .into_iter()
        .map(|c| c.customer_id)
        .collect();
    ids.sort();
    ids
}

fn top(segment: &str) -> pb::TopCustomersRequest {
    pb::TopCustomersRequest {
        tenant_id: "acme".into(),
        limit: 10,
        segment: segment.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn segments_filter_rules_exclude_and_reloads_never_leave_a_bad_config_serving() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rapport.toml");
    std::fs::write(&file, SEGMENTS).unwrap();
    let mut config = rapport::config::Config::from_file(&file).unwrap();
    let loopback = loopback_config();
    config.server.grpc_addr = loopback.server.grpc_addr;
    config.server.metrics_addr = loopback.server.metrics_addr;
    let mut t = start_with(config).await;
    let mut crm = IdentityServiceClient::new(t.channel.clone());
    let mut admin = AdminServiceClient::new(t.channel.clone());
    let now = rapport::engine::now_ms() - MINUTE_MS;
    let mut events = Vec::new();
    for (n, customer) in ["ann", "bob", "cy"].into_iter().enumerate() {
        let mut complaint = with_text(
            event(
                "acme",
                customer,
                &format!("e{n}"),
                now - n as i64 * MINUTE_MS,
            ),
            "My order never came, please help",
        );
        complaint.thread_id = format!("t{n}");
        events.push(complaint);
    }
    t.ingest_all(events).await;
    for (customer, key, value) in [("ann", "tier", "vip"), ("cy", "region", "xx")] {
        crm.upsert_customer(pb::UpsertCustomerRequest {
            tenant_id: "acme".into(),
            customer_id: customer.into(),
            attributes: [(key.to_string(), text(value))].into(),
            version: 1,
        })
        .await
        .unwrap();
    }
    // The rule leaves the sanctioned customer out everywhere; segments filter.
    let all = ids(t.scoring.top_customers(top("")).await.unwrap().into_inner());
    assert_eq!(all, ["ann", "bob"]);
    let vip = ids(t
        .scoring
        .top_customers(top("vip"))
        .await
        .unwrap()
        .into_inner());
    assert_eq!(vip, ["ann"]);
    let waiting = ids(t
        .scoring
        .top_customers(top("waiting"))
        .await
        .unwrap()
        .into_inner());
    assert_eq!(waiting, ["ann", "bob"]);
    let claimed = t
        .scoring
        .claim_next(pb::ClaimNextRequest {
            tenant_id: "acme".into(),
            agent_id: "a1".into(),
            segment: "vip".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(claimed.customer.unwrap().customer_id, "ann");
    let unknown = t.scoring.top_customers(top("gold")).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::InvalidArgument);
    assert!(unknown.message().starts_with("segment:"), "{unknown}");

    // A file that does not validate: refused naming the key, the old config keeps serving.
    std::fs::write(
        &file,
        SEGMENTS.replace(
            r#"op = "eq", value = "vip""#,
            r#"op = "like", value = "vip""#,
        ),
    )
    .unwrap();
    let refused = admin
        .reload_config(pb::ReloadConfigRequest {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused}");
    assert!(
        refused.message().contains("segments[0].all[0].op"),
        "{refused}"
    );
    let vip = ids(t
        .scoring
        .top_customers(top("vip"))
        .await
        .unwrap()
        .into_inner());
    assert_eq!(vip, ["ann"], "the old config still serves");

    // A valid one: in force, through the RPC ...
    std::fs::write(
        &file,
        SEGMENTS.replace(r#"name = "vip""#, r#"name = "gold""#),
    )
    .unwrap();
    let reloaded = admin
        .reload_config(pb::ReloadConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reloaded.segments, ["gold", "sanctioned", "waiting"]);
    assert_eq!(reloaded.rules, 1);
    let gold = ids(t
        .scoring
        .top_customers(top("gold"))
        .await
        .unwrap()
        .into_inner());
    assert_eq!(gold, ["ann"]);
    assert!(t.scoring.top_customers(top("vip")).await.is_err());

    // ... and on SIGHUP (bounded wait for the signal's task).
    std::fs::write(
        &file,
        SEGMENTS.replace(r#"name = "vip""#, r#"name = "platinum""#),
    )
    .unwrap();
    // The shell's own kill: no procps needed.
    let status = std::process::Command::new("sh")
        .args(["-c", &format!("kill -HUP {}", std::process::id())])
        .status()
        .expect("sh runs");
    assert!(status.success());
    let mut platinum = None;
    for _ in 0..100 {
        if let Ok(answer) = t.scoring.top_customers(top("platinum")).await {
            platinum = Some(ids(answer.into_inner()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(platinum.expect("SIGHUP reloaded the file"), ["ann"]);
    let metrics = t.scrape_metrics().await;
    assert!(
        metrics.contains(r#"rapport_config_reloads_total{outcome="refused"}"#),
        "{metrics}"
    );
}

/// TopCustomers and ClaimNext filter by the channel a customer waits for an answer on; a segment
/// can name channels too.
#[tokio::test]
async fn the_channel_filter_keeps_customers_waiting_on_that_channel() {
    let mut config = rapport::config::Config::from_toml(
        "[[segments]]\nname = \"social\"\nall = [{ field = \"channel\", op = \"in\", value = [\"twitter\", \"facebook\"] }]",
    )
    .unwrap();
    let loopback = loopback_config();
    config.server.grpc_addr = loopback.server.grpc_addr;
    config.server.metrics_addr = loopback.server.metrics_addr;
    let mut t = start_with(config).await;
    let now = rapport::engine::now_ms() - MINUTE_MS;
    let on = |customer: &str, id: &str, channel: pb::Channel| {
        let mut question = with_text(
            event("acme", customer, id, now),
            "Where is my order? Please help",
        );
        question.channel = channel as i32;
        question.thread_id = format!("t-{id}");
        question
    };
    t.ingest_all(vec![
        on("tw", "1", pb::Channel::Twitter),
        on("em", "2", pb::Channel::Email),
        on("both", "3", pb::Channel::Email),
        on("both", "4", pb::Channel::Twitter),
    ])
    .await;
    let by_channel = |channel: pb::Channel, segment: &str| pb::TopCustomersRequest {
        tenant_id: "acme".into(),
        limit: 10,
        channel: channel as i32,
        segment: segment.into(),
        ..Default::default()
    };
    let email = t
        .scoring
        .top_customers(by_channel(pb::Channel::Email, ""))
        .await
        .unwrap();
    assert_eq!(ids(email.into_inner()), ["both", "em"]);
    let social = t
        .scoring
        .top_customers(by_channel(pb::Channel::Unspecified, "social"))
        .await
        .unwrap();
    assert_eq!(ids(social.into_inner()), ["both", "tw"]);
    let both = t.customer("acme", "both", now).await;
    assert_eq!(
        both.waiting_channels,
        [pb::Channel::Twitter as i32, pb::Channel::Email as i32]
    );
    let bad = t
        .scoring
        .top_customers(pb::TopCustomersRequest {
            tenant_id: "acme".into(),
            channel: 99,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(bad.message().starts_with("channel:"), "{bad}");
}
