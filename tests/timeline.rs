//! Issue 16, the timeline: one customer's touchpoints across channels, newest first, with who
//! answered, what is still unanswered and a bounded snippet, paged, and the same after restarts.

mod common;

use common::*;
use rapport::pb;
use rapport::pb::identity_service_client::IdentityServiceClient;
use std::time::Duration;

fn identifier(kind: pb::IdentifierType, value: &str) -> pb::Identifier {
    pb::Identifier {
        r#type: kind as i32,
        value: value.into(),
        channel: 0,
    }
}

/// Ann on three channels: a tweet (unanswered), an e-mail answered by agent Kim, a call.
fn anns_week() -> Vec<pb::Interaction> {
    let mut tweet = with_text(
        event("acme", "", "a1", T0_MS - 3 * HOUR_MS),
        "@brand my parcel is lost, third time this month, what is going on?",
    );
    tweet.channel = pb::Channel::Twitter as i32;
    tweet.thread_id = "tw-1".into();
    tweet.identifiers = vec![identifier(pb::IdentifierType::Handle, "@ann_b")];
    let mut mail = with_text(
        event("acme", "", "a2", T0_MS - 2 * HOUR_MS),
        "Hello, could you refund order 1234? Thanks, Ann",
    );
    mail.channel = pb::Channel::Email as i32;
    mail.thread_id = "em-1".into();
    mail.identifiers = vec![identifier(pb::IdentifierType::Email, "ann@example.com")];
    let mut reply = outbound(event("acme", "", "a3", T0_MS - HOUR_MS));
    reply.channel = pb::Channel::Email as i32;
    reply.thread_id = "em-1".into();
    reply.agent_id = "agent-kim".into();
    reply.identifiers = vec![identifier(pb::IdentifierType::Email, "ann@example.com")];
    let mut call = kind(
        event("acme", "", "a4", T0_MS - 30 * MINUTE_MS),
        pb::InteractionKind::Message,
    );
    call.channel = pb::Channel::Phone as i32;
    call.identifiers = vec![identifier(pb::IdentifierType::Phone, "+44 20 7946 0958")];
    vec![tweet, mail, reply, call]
}

async fn link_ann(t: &TestServer) {
    let mut handle = identifier(pb::IdentifierType::Handle, "ann_b");
    handle.channel = pb::Channel::Twitter as i32;
    IdentityServiceClient::new(t.channel.clone())
        .link_identities(pb::LinkIdentitiesRequest {
            tenant_id: "acme".into(),
            customer_id: "crm-42".into(),
            identifiers: vec![
                identifier(pb::IdentifierType::Email, "ann@example.com"),
                identifier(pb::IdentifierType::Phone, "+442079460958"),
                handle,
            ],
        })
        .await
        .unwrap();
}

async fn timeline(
    t: &mut TestServer,
    customer: &str,
    page_size: u32,
    page_token: String,
) -> pb::GetTimelineResponse {
    t.scoring
        .get_timeline(pb::GetTimelineRequest {
            tenant_id: "acme".into(),
            customer_id: customer.into(),
            page_size,
            page_token,
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn the_timeline_shows_every_channel_with_who_answered_and_survives_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = loopback_config();
    config.durability.data_dir = Some(dir.path().to_path_buf());
    config.timeline.snippet_bytes = 24;
    let mut t = start_with(config.clone()).await;
    let summary = t.ingest_all(anns_week()).await;
    assert_eq!(summary.accepted, 4, "{summary:?}");
    link_ann(&t).await;

    let seen = timeline(&mut t, "~email:ann@example.com", 0, String::new()).await;
    assert_eq!(seen.customer_id, "crm-42");
    let rows: Vec<(i32, i32, &str, &str, bool)> = seen
        .touchpoints
        .iter()
        .map(|p| {
            (
                p.channel,
                p.direction,
                p.thread_id.as_str(),
                p.agent_id.as_str(),
                p.unanswered,
            )
        })
        .collect();
    let (inbound, outbound) = (
        pb::Direction::Inbound as i32,
        pb::Direction::Outbound as i32,
    );
    assert_eq!(
        rows,
        [
            (pb::Channel::Phone as i32, inbound, "", "", true),
            (
                pb::Channel::Email as i32,
                outbound,
                "em-1",
                "agent-kim",
                false
            ),
            (pb::Channel::Email as i32, inbound, "em-1", "", false),
            (pb::Channel::Twitter as i32, inbound, "tw-1", "", true),
        ],
        "newest first, every channel, who answered, what still waits"
    );
    let tweet = &seen.touchpoints[3];
    assert_eq!(tweet.snippet, "@brand my parcel is lost");
    assert!(tweet.snippet.len() <= 24);
    assert!(
        tweet.sentiment.as_ref().is_some_and(|s| s.score < 0.0),
        "{tweet:?}"
    );

    // Pages of two, then none left.
    let first = timeline(&mut t, "crm-42", 2, String::new()).await;
    assert_eq!(first.touchpoints.len(), 2);
    let second = timeline(&mut t, "crm-42", 2, first.next_page_token.clone()).await;
    assert_eq!(second.touchpoints, seen.touchpoints[2..]);
    assert!(second.next_page_token.is_empty());
    let bad = t
        .scoring
        .get_timeline(pb::GetTimelineRequest {
            tenant_id: "acme".into(),
            customer_id: "crm-42".into(),
            page_size: 2,
            page_token: "nonsense".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().starts_with("page_token:"), "{bad}");
    let unknown = t
        .scoring
        .get_timeline(pb::GetTimelineRequest {
            tenant_id: "acme".into(),
            customer_id: "nobody".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    // The same after a restart replaying the log, and after one loading the state.
    t.server.shutdown(Duration::from_secs(5)).await.unwrap();
    for start in ["replaying the log", "loading the state"] {
        let mut t = start_with(config.clone()).await;
        let again = timeline(&mut t, "crm-42", 0, String::new()).await;
        assert_eq!(again.touchpoints, seen.touchpoints, "after {start}");
        t.server.shutdown(Duration::from_secs(5)).await.unwrap();
    }
}

/// Issue 24 item 9: while the customer had an open message without a thread id, the timeline
/// flagged their purchases and page views (also without a thread id) as unanswered. Only
/// messages that ask for an answer are.
#[tokio::test]
async fn only_messages_that_ask_for_an_answer_are_unanswered() {
    let mut t = start().await;
    let question = with_text(
        event("acme", "bo", "b1", T0_MS - 3 * HOUR_MS),
        "Where is my parcel? Please call me back",
    );
    let mut purchase = kind(
        event("acme", "bo", "b2", T0_MS - 2 * HOUR_MS),
        pb::InteractionKind::Purchase,
    );
    purchase.value = 25.0;
    let page_view = kind(
        event("acme", "bo", "b3", T0_MS - HOUR_MS),
        pb::InteractionKind::PageView,
    );
    let summary = t.ingest_all(vec![question, purchase, page_view]).await;
    assert_eq!(summary.accepted, 3, "{summary:?}");
    let answer = timeline(&mut t, "bo", 10, String::new()).await;
    let flags: Vec<(i32, bool)> = answer
        .touchpoints
        .iter()
        .map(|touchpoint| (touchpoint.kind, touchpoint.unanswered))
        .collect();
    assert_eq!(
        flags,
        [
            (pb::InteractionKind::PageView as i32, false),
            (pb::InteractionKind::Purchase as i32, false),
            (pb::InteractionKind::Mention as i32, true)
        ]
    );
}

/// Issue 24 item 16: snippets kept the text's control characters (escapes, NUL, newlines); the
/// timeline shows each as a space.
#[tokio::test]
async fn snippets_carry_no_control_characters() {
    let mut t = start().await;
    let text = "refund\u{1b}[2J now\u{0}\nplease\u{7}";
    t.ingest_all(vec![with_text(event("acme", "cy", "c1", T0_MS), text)])
        .await;
    let answer = timeline(&mut t, "cy", 10, String::new()).await;
    let snippet = &answer.touchpoints[0].snippet;
    assert_eq!(snippet, "refund [2J now  please ");
    assert!(!snippet.chars().any(char::is_control), "{snippet:?}");
}
