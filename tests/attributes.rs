//! Issue 16, customer attributes: versioned upserts, a do-not-contact customer never reached
//! (TopCustomers, ClaimNext, WatchPriorities), bad attributes named, attributes durable.

mod common;

use common::*;
use rapport::pb;
use rapport::pb::identity_service_client::IdentityServiceClient;
use std::collections::HashMap;
use std::time::Duration;
use tokio_stream::StreamExt;

fn text(value: &str) -> pb::AttributeValue {
    pb::AttributeValue {
        value: Some(pb::attribute_value::Value::Text(value.into())),
    }
}

fn flag(value: bool) -> pb::AttributeValue {
    pb::AttributeValue {
        value: Some(pb::attribute_value::Value::Flag(value)),
    }
}

fn upsert(
    customer: &str,
    version: u64,
    attributes: Vec<(&str, pb::AttributeValue)>,
) -> pb::UpsertCustomerRequest {
    pb::UpsertCustomerRequest {
        tenant_id: "acme".into(),
        customer_id: customer.into(),
        attributes: attributes
            .into_iter()
            .map(|(key, value)| (key.to_string(), value))
            .collect::<HashMap<_, _>>(),
        version,
    }
}

/// A loud complaint that ranks first.
fn complaint(customer: &str, id: &str, at_ms: i64) -> pb::Interaction {
    let mut complaint = with_text(
        event("acme", customer, id, at_ms),
        "You broke my account, this is awful",
    );
    complaint.author_followers = 20_000;
    complaint
}

#[tokio::test]
async fn a_do_not_contact_customer_is_never_reached() {
    let mut t = start().await;
    let mut crm = IdentityServiceClient::new(t.channel.clone());
    let now = rapport::engine::now_ms() - MINUTE_MS;
    t.ingest_all(vec![
        complaint("dora", "d1", now),
        complaint("carl", "c1", now - MINUTE_MS),
    ])
    .await;
    let dora = crm
        .upsert_customer(upsert(
            "dora",
            1,
            vec![("do_not_contact", flag(true)), ("tier", text("vip"))],
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(dora.applied);
    let mut updates = t
        .scoring
        .watch_priorities(pb::WatchPrioritiesRequest {
            tenant_id: "acme".into(),
            min_priority: 0.0,
            segment: String::new(),
            channel: 0,
            intent: String::new(),
            language: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    // Dora still has scores (GetCustomer shows them, with her attributes)...
    let scored = t.customer("acme", "dora", now).await;
    assert_eq!(scored.attributes["tier"], text("vip"));
    // ... but nobody is sent to her: not in TopCustomers (live, as of, paged), not claimable.
    let top = t.top("acme", 10, now).await;
    let ids: Vec<&str> = top.iter().map(|c| c.customer_id.as_str()).collect();
    assert_eq!(ids, ["carl"]);
    let live = t
        .scoring
        .top_customers(pb::TopCustomersRequest {
            tenant_id: "acme".into(),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        live.customers.iter().all(|c| c.customer_id != "dora"),
        "{live:?}"
    );
    for agent in ["a1", "a2"] {
        let claimed = t
            .scoring
            .claim_next(pb::ClaimNextRequest {
                tenant_id: "acme".into(),
                agent_id: agent.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(claimed.customer.iter().all(|c| c.customer_id != "dora"));
    }
    // A do-not-contact newcomer's complaint is not pushed to watchers; Eve's is.
    crm.upsert_customer(upsert("fay", 1, vec![("do_not_contact", flag(true))]))
        .await
        .unwrap();
    t.ingest_all(vec![
        complaint("fay", "f1", now + 1),
        complaint("eve", "e1", now + 2),
    ])
    .await;
    let update = tokio::time::timeout(Duration::from_secs(10), updates.next())
        .await
        .expect("an update in time")
        .expect("stream open")
        .expect("update ok");
    assert_eq!(update.event_id, "e1");
    // Lifted: she is back.
    crm.upsert_customer(upsert("dora", 2, vec![("do_not_contact", flag(false))]))
        .await
        .unwrap();
    let top = t.top("acme", 10, now + 3).await;
    assert!(top.iter().any(|c| c.customer_id == "dora"));
}

#[tokio::test]
async fn a_late_update_never_overwrites_a_newer_one_and_bad_attributes_are_named() {
    let t = start().await;
    let mut crm = IdentityServiceClient::new(t.channel.clone());
    let newer = crm
        .upsert_customer(upsert(
            "ann",
            5,
            vec![("tier", text("vip")), ("plan", text("pro"))],
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(newer.applied);
    let late = crm
        .upsert_customer(upsert("ann", 3, vec![("tier", text("basic"))]))
        .await
        .unwrap()
        .into_inner();
    assert!(!late.applied);
    assert_eq!(late.version, 5);
    assert_eq!(late.attributes["tier"], text("vip"));
    // A key with nothing set is removed.
    let removed = crm
        .upsert_customer(upsert(
            "ann",
            6,
            vec![("plan", pb::AttributeValue { value: None })],
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!removed.attributes.contains_key("plan"));
    for (request, field) in [
        (
            upsert(
                "ann",
                7,
                vec![(
                    "tier",
                    pb::AttributeValue {
                        value: Some(pb::attribute_value::Value::Number(3.0)),
                    },
                )],
            ),
            "attributes[tier]: must be a text",
        ),
        (
            upsert("ann", 7, vec![("do_not_contact", text("yes"))]),
            "attributes[do_not_contact]",
        ),
        (
            upsert("ann", 7, vec![("Bad Key", text("x"))]),
            "attributes[Bad Key]",
        ),
        (upsert("ann", 0, vec![("tier", text("x"))]), "version:"),
        // Issue 24 item 16: 2^64-1 froze the customer for good (no later version could follow).
        (
            upsert("ann", u64::MAX, vec![("tier", text("x"))]),
            "version:",
        ),
        (
            upsert("ann", i64::MAX as u64 + 1, vec![("tier", text("x"))]),
            "version:",
        ),
    ] {
        let status = crm.upsert_customer(request).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");
        assert!(status.message().starts_with(field), "{status}");
    }
}

#[tokio::test]
async fn attributes_survive_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = loopback_config();
    config.durability.data_dir = Some(dir.path().to_path_buf());
    let t = start_with(config.clone()).await;
    let mut crm = IdentityServiceClient::new(t.channel.clone());
    crm.upsert_customer(upsert(
        "ann",
        9,
        vec![("tier", text("vip")), ("do_not_contact", flag(true))],
    ))
    .await
    .unwrap();
    t.server.shutdown(Duration::from_secs(5)).await.unwrap();
    for start in ["replaying the log", "loading the state"] {
        let t = start_with(config.clone()).await;
        let mut crm = IdentityServiceClient::new(t.channel.clone());
        let late = crm
            .upsert_customer(upsert("ann", 8, vec![("tier", text("basic"))]))
            .await
            .unwrap()
            .into_inner();
        assert!(!late.applied, "after {start}: version 9 is remembered");
        assert_eq!(late.attributes["tier"], text("vip"), "after {start}");
        assert_eq!(
            late.attributes["do_not_contact"],
            flag(true),
            "after {start}"
        );
        t.server.shutdown(Duration::from_secs(5)).await.unwrap();
    }
}
