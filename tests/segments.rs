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

/// A CRM sets one text attribute of a customer (version 1).
async fn set_text(
    crm: &mut IdentityServiceClient<tonic::transport::Channel>,
    customer: &str,
    key: &str,
    value: &str,
) {
    crm.upsert_customer(pb::UpsertCustomerRequest {
        tenant_id: "acme".into(),
        customer_id: customer.into(),
        attributes: [(key.to_string(), text(value))].into(),
        version: 1,
    })
    .await
    .unwrap();
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
        set_text(&mut crm, customer, key, value).await;
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

/// Issue 16 "a VIP segment's SLA applies": a rule maps an attribute segment to reply targets, an
/// urgency weight and an action; GetCustomer and TopCustomers show them, with the reason, and a
/// reload that drops the rules takes them away.
#[tokio::test]
async fn a_vip_segments_sla_weight_and_action_apply_until_a_reload_drops_them() {
    let rules = r#"
[[segments]]
name = "vip"
all = [{ field = "attributes.tier", op = "eq", value = "vip" }]

[[segments]]
name = "key_accounts"
all = [{ field = "attributes.plan", op = "eq", value = "enterprise" }]

[[rules]]
segment = "vip"
urgency_weight = 2.0
sla = { first_response_seconds = 600 }

[[rules]]
segment = "key_accounts"
action = "rescue"
"#;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rapport.toml");
    std::fs::write(&file, rules).unwrap();
    let mut config = rapport::config::Config::from_file(&file).unwrap();
    let loopback = loopback_config();
    config.server.grpc_addr = loopback.server.grpc_addr;
    config.server.metrics_addr = loopback.server.metrics_addr;
    let default_sla_seconds = config.scoring.reply_sla_seconds as i64;
    let mut t = start_with(config).await;
    let mut crm = IdentityServiceClient::new(t.channel.clone());
    let mut admin = AdminServiceClient::new(t.channel.clone());
    let since = rapport::engine::now_ms() - 5 * MINUTE_MS;
    let mut events = Vec::new();
    for (n, customer) in ["ann", "bob", "cy"].into_iter().enumerate() {
        let mut complaint = with_text(
            event("acme", customer, &format!("e{n}"), since),
            "My order never came, please help",
        );
        complaint.channel = pb::Channel::Email as i32;
        complaint.thread_id = format!("t{n}");
        events.push(complaint);
    }
    t.ingest_all(events).await;
    for (customer, key, value) in [("ann", "tier", "vip"), ("cy", "plan", "enterprise")] {
        set_text(&mut crm, customer, key, value).await;
    }
    let as_of = since + 5 * MINUTE_MS;
    let due_ms = |score: &pb::CustomerScore| {
        let due = score.reply_due_at.as_ref().expect("a reply is due");
        due.seconds * 1000 + i64::from(due.nanos) / 1_000_000
    };
    let (ann, bob, cy) = (
        t.customer("acme", "ann", as_of).await,
        t.customer("acme", "bob", as_of).await,
        t.customer("acme", "cy", as_of).await,
    );
    assert_eq!(due_ms(&ann), since + 600_000, "the VIP rule's target");
    assert_eq!(due_ms(&bob), since + default_sla_seconds * 1000);
    assert!(
        ann.priority > bob.priority,
        "{} <= {}",
        ann.priority,
        bob.priority
    );
    assert!(
        ann.reasons
            .iter()
            .any(|r| r.factor == "segment_rule" && r.detail.contains("x2")),
        "{:?}",
        ann.reasons
    );
    assert_eq!(bob.action, pb::Action::Respond as i32);
    assert_eq!(
        cy.action,
        pb::Action::Rescue as i32,
        "the key-account rule's action"
    );
    let order = |answer: pb::TopCustomersResponse| {
        answer
            .customers
            .into_iter()
            .map(|c| c.customer_id)
            .collect::<Vec<_>>()
    };
    let top = t.scoring.top_customers(top("")).await.unwrap().into_inner();
    assert_eq!(order(top), ["ann", "bob", "cy"]);

    // A reload without the rules: everybody gets the tenant's policy again.
    std::fs::write(&file, rules.split("[[rules]]").next().unwrap()).unwrap();
    let reloaded = admin
        .reload_config(pb::ReloadConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reloaded.rules, 0);
    let (ann, cy) = (
        t.customer("acme", "ann", as_of).await,
        t.customer("acme", "cy", as_of).await,
    );
    assert_eq!(due_ms(&ann), since + default_sla_seconds * 1000);
    assert_eq!(cy.action, pb::Action::Respond as i32);
    assert!(ann.reasons.iter().all(|r| r.factor != "segment_rule"));
}

/// Issue 24 item 13: a config error quoting a 32 KB line went past gRPC's metadata limit, so
/// ReloadConfig's answer turned into RESOURCE_EXHAUSTED "Stream removed"; the error now names the
/// line and quotes a bounded excerpt, and every status message is bounded.
#[tokio::test]
async fn a_config_error_with_a_huge_line_is_answered_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rapport.toml");
    std::fs::write(&file, SEGMENTS).unwrap();
    let mut config = rapport::config::Config::from_file(&file).unwrap();
    let loopback = loopback_config();
    config.server.grpc_addr = loopback.server.grpc_addr;
    config.server.metrics_addr = loopback.server.metrics_addr;
    let t = start_with(config).await;
    let mut admin = AdminServiceClient::new(t.channel.clone());
    for bad in [
        // Not TOML: a 32 KB line of garbage.
        format!("{SEGMENTS}\n{}\n", "x".repeat(32 * 1024)),
        // TOML, but a 32 KB unknown key.
        format!("[server]\n{} = 1\n{SEGMENTS}", "k".repeat(32 * 1024)),
        // TOML, but a rule naming an unknown segment of 32 KB.
        SEGMENTS.replace(
            r#"segment = "sanctioned""#,
            &format!("segment = \"{}\"", "é".repeat(16 * 1024)),
        ),
    ] {
        std::fs::write(&file, bad).unwrap();
        let refused = admin
            .reload_config(pb::ReloadConfigRequest {})
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused}");
        assert!(
            refused.message().len() <= 2048,
            "{} bytes: {}",
            refused.message().len(),
            &refused.message()[..200]
        );
        assert!(
            refused.message().starts_with("invalid config:"),
            "{refused}"
        );
    }
    // The old config still serves.
    let mut scoring = t.scoring.clone();
    scoring
        .top_customers(top("vip"))
        .await
        .expect("vip still in force");
}
