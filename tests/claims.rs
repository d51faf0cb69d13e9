//! Issue 16, claims for routing engines: agents claiming concurrently never get the same
//! customer; an answer ends a claim; claims renew, release and survive a restart.

mod common;

use common::*;
use rapport::pb;
use std::collections::HashSet;
use std::time::Duration;

/// `customers` customers with one unanswered question each, in threads `t-<customer>`.
fn waiting(tenant: &str, customers: usize) -> Vec<pb::Interaction> {
    (0..customers)
        .map(|n| {
            let mut question = with_text(
                event(
                    tenant,
                    &format!("c{n:02}"),
                    &format!("q{n}"),
                    T0_MS - n as i64 * MINUTE_MS,
                ),
                "Where is my order? Please help",
            );
            question.thread_id = format!("t-{n:02}");
            question
        })
        .collect()
}

fn claim_next(tenant: &str, agent: &str) -> pb::ClaimNextRequest {
    pb::ClaimNextRequest {
        tenant_id: tenant.into(),
        agent_id: agent.into(),
        action: 0,
        min_retention_risk: 0.0,
        ttl_seconds: 600,
        segment: String::new(),
        channel: 0,
        intent: String::new(),
        language: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_agents_claiming_concurrently_never_get_the_same_customer() {
    const CUSTOMERS: usize = 40;
    const AGENTS: usize = 8;
    let mut t = start().await;
    t.ingest_all(waiting("acme", CUSTOMERS)).await;
    let mut agents = Vec::new();
    for agent in 0..AGENTS {
        let mut scoring = t.scoring.clone();
        agents.push(tokio::spawn(async move {
            let mut taken = Vec::new();
            // Bounded: each agent asks until nobody is left (at most CUSTOMERS + 1 times).
            for _ in 0..=CUSTOMERS {
                let answer = scoring
                    .claim_next(claim_next("acme", &format!("agent-{agent}")))
                    .await
                    .unwrap()
                    .into_inner();
                match answer.customer {
                    Some(customer) => {
                        assert_eq!(customer.claimed_by, format!("agent-{agent}"));
                        taken.push(customer.customer_id);
                    }
                    None => break,
                }
            }
            taken
        }));
    }
    let mut all = Vec::new();
    for agent in agents {
        all.extend(agent.await.unwrap());
    }
    let distinct: HashSet<&String> = all.iter().collect();
    assert_eq!(all.len(), CUSTOMERS, "every customer claimed once: {all:?}");
    assert_eq!(distinct.len(), CUSTOMERS, "nobody claimed twice: {all:?}");
    // TopCustomers shows who holds each, and can leave them out.
    let top = t.top("acme", 50, T0_MS).await;
    assert!(top
        .iter()
        .all(|score| score.claimed_by.starts_with("agent-")));
    let unclaimed = t
        .scoring
        .top_customers(pb::TopCustomersRequest {
            tenant_id: "acme".into(),
            limit: 10,
            exclude_claimed: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(unclaimed.customers.is_empty(), "{unclaimed:?}");
}

#[tokio::test]
async fn an_answer_ends_a_claim_and_claims_renew_release_and_survive_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = loopback_config();
    config.durability.data_dir = Some(dir.path().to_path_buf());
    let mut t = start_with(config.clone()).await;
    t.ingest_all(waiting("acme", 2)).await;
    let first = t
        .scoring
        .claim_next(claim_next("acme", "ann"))
        .await
        .unwrap()
        .into_inner()
        .customer
        .expect("a customer is waiting");
    // Ann answers in the customer's thread: the claim ends.
    let mut answer = outbound(event("acme", &first.customer_id, "r1", T0_MS));
    answer.thread_id = first.customer_id.replace('c', "t-");
    t.ingest_all(vec![answer]).await;
    let after = t.customer("acme", &first.customer_id, T0_MS).await;
    assert_eq!(after.claimed_by, "", "{after:?}");
    // Bob takes the next one; Ann cannot renew or release it.
    let bobs = t
        .scoring
        .claim_next(claim_next("acme", "bob"))
        .await
        .unwrap()
        .into_inner()
        .customer
        .expect("one still waiting");
    let request = |agent: &str| pb::ClaimRequest {
        tenant_id: "acme".into(),
        agent_id: agent.into(),
        customer_id: bobs.customer_id.clone(),
        ttl_seconds: 900,
        ..Default::default()
    };
    let refused = t.scoring.renew_claim(request("ann")).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused}");
    assert!(refused.message().starts_with("customer_id:"), "{refused}");
    let renewed = t
        .scoring
        .renew_claim(request("bob"))
        .await
        .unwrap()
        .into_inner()
        .customer
        .expect("renewed");
    assert_eq!(renewed.claimed_by, "bob");
    // A restart (the log replayed), then another (the state loaded): Bob still holds it.
    t.server.shutdown(Duration::from_secs(5)).await.unwrap();
    for start in ["replaying the log", "loading the state"] {
        let t = start_with(config.clone()).await;
        let mut t = t;
        let held = t.customer("acme", &bobs.customer_id, T0_MS).await;
        assert_eq!(held.claimed_by, "bob", "after {start}");
        assert_eq!(
            held.claim_expires_at, renewed.claim_expires_at,
            "after {start}"
        );
        t.server.shutdown(Duration::from_secs(5)).await.unwrap();
    }
    // Released, and the release is durable too.
    let mut t = start_with(config.clone()).await;
    t.scoring.release_claim(request("bob")).await.unwrap();
    t.server.shutdown(Duration::from_secs(5)).await.unwrap();
    let mut t = start_with(config).await;
    assert_eq!(
        t.customer("acme", &bobs.customer_id, T0_MS)
            .await
            .claimed_by,
        ""
    );
    // Invalid requests name the field.
    let status = t
        .scoring
        .claim_next(claim_next("acme", ""))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().starts_with("agent_id:"), "{status}");
    let mut too_long = claim_next("acme", "ann");
    too_long.ttl_seconds = 100_000;
    let status = t.scoring.claim_next(too_long).await.unwrap_err();
    assert!(status.message().starts_with("ttl_seconds:"), "{status}");
}

/// Issue 24 item 16: ReleaseClaim refused a `ttl_seconds` it ignores; it is accepted and
/// ignored (the release ends the claim whatever it says).
#[tokio::test]
async fn release_ignores_ttl_seconds() {
    let mut t = start().await;
    let mut complaint = with_text(
        event("acme", "ann", "e1", T0_MS),
        "You broke my account, this is awful",
    );
    complaint.author_followers = 20_000;
    t.ingest_all(vec![complaint]).await;
    let claimed = t
        .scoring
        .claim_next(claim_next("acme", "kim"))
        .await
        .unwrap()
        .into_inner()
        .customer
        .expect("ann is waiting");
    let release = pb::ClaimRequest {
        tenant_id: "acme".into(),
        agent_id: "kim".into(),
        customer_id: claimed.customer_id.clone(),
        ttl_seconds: u32::MAX,
        ..Default::default()
    };
    t.scoring
        .release_claim(release.clone())
        .await
        .expect("released whatever ttl_seconds says");
    assert_eq!(t.customer("acme", "ann", T0_MS).await.claimed_by, "");
    // RenewClaim still checks it.
    let refused = t.scoring.renew_claim(release).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused}");
    assert!(refused.message().starts_with("ttl_seconds:"), "{refused}");
}

/// Issue 24 item 7: an agent claims a customer, the CRM merges that customer into another one:
/// the claim follows the merge, so a second agent is not handed the merged customer while the
/// first claim is live, and the first agent still holds it (its renew succeeds), also after a
/// restart that replays the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_follows_its_customer_through_a_merge() {
    use rapport::pb::identity_service_client::IdentityServiceClient;
    let dir = tempfile::tempdir().unwrap();
    let mut config = loopback_config();
    config.durability.data_dir = Some(dir.path().to_path_buf());
    let mut t = start_with(config.clone()).await;
    t.ingest_all(waiting("acme", 2)).await;
    let anns = t
        .scoring
        .claim_next(claim_next("acme", "ann"))
        .await
        .unwrap()
        .into_inner()
        .customer
        .expect("a customer is waiting");
    let other = if anns.customer_id == "c00" {
        "c01"
    } else {
        "c00"
    };
    let merged = IdentityServiceClient::new(t.channel.clone())
        .merge_customers(pb::MergeCustomersRequest {
            tenant_id: "acme".into(),
            customer_id: other.into(),
            other_customer_id: anns.customer_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    // Nobody else is waiting: the merged customer is Ann's.
    let bobs = t
        .scoring
        .claim_next(claim_next("acme", "bob"))
        .await
        .unwrap()
        .into_inner()
        .customer;
    assert!(bobs.is_none(), "handed to bob while ann holds it: {bobs:?}");
    let renew = pb::ClaimRequest {
        tenant_id: "acme".into(),
        agent_id: "ann".into(),
        customer_id: merged.customer_id.clone(),
        ttl_seconds: 600,
        ..Default::default()
    };
    t.scoring.renew_claim(renew.clone()).await.unwrap();
    t.server.shutdown(Duration::from_secs(5)).await.unwrap();
    let mut t = start_with(config).await;
    let after = t.customer("acme", &merged.customer_id, T0_MS).await;
    assert_eq!(after.claimed_by, "ann", "{after:?}");
    t.scoring.renew_claim(renew).await.unwrap();
}
