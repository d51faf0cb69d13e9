//! Noise end to end: a promotional flood (the same text 30 times in an hour from an account with 5k
//! followers) is kept out of the RESPOND band with a `flood` reason, below a real complaint that
//! waited less; the same question cross-posted on three channels is one matter, answered by a reply
//! on any of them; a complaint repeated is a customer insisting, not noise; all of it the same
//! after a restart and whatever order the events arrive in.

mod common;

use common::*;
use rapport::pb;
use std::time::Duration;

const NOW_MS: i64 = T0_MS + 30 * DAY_MS;
const PROMO: &str = "🔥 Huge SALE today only!!! Get 70% off all sneakers at https://t.co/x1 #deals";

fn post(
    customer: &str,
    id: &str,
    minutes_ago: i64,
    channel: pb::Channel,
    thread: &str,
    text: &str,
) -> pb::Interaction {
    let mut event = with_text(
        event("acme", customer, id, NOW_MS - minutes_ago * MINUTE_MS),
        text,
    );
    event.channel = channel as i32;
    event.thread_id = thread.to_string();
    event
}

/// The whole story's events: a flooding account, a cross-poster, an insisting customer and a
/// one-off complaint.
fn story() -> Vec<pb::Interaction> {
    let mut events = Vec::new();
    for i in 0..30 {
        let mut copy = post(
            "promo_bot",
            &format!("bot-{i}"),
            60 - i * 2,
            pb::Channel::Twitter,
            &format!("bot-tweet-{i}"),
            // Each copy with its own link, as bots post them.
            &PROMO.replace("x1", &format!("a{i}")),
        );
        copy.author_followers = 5_000;
        events.push(copy);
    }
    let question = "Hi, I was charged twice for my order last week, can you help me please?";
    for (i, channel) in [
        pb::Channel::Email,
        pb::Channel::Twitter,
        pb::Channel::Facebook,
    ]
    .into_iter()
    .enumerate()
    {
        events.push(post(
            "cross_poster",
            &format!("cp-{i}"),
            50 - i as i64 * 5,
            channel,
            &format!("cp-thread-{i}"),
            question,
        ));
    }
    for i in 0..6 {
        events.push(post(
            "insisting",
            &format!("in-{i}"),
            40 - i * 5,
            pb::Channel::Twitter,
            &format!("in-tweet-{i}"),
            "This is awful, my parcel is lost and nobody answers me at all",
        ));
    }
    events.push(post(
        "one_off",
        "oo-1",
        10,
        pb::Channel::Email,
        "oo-thread",
        "My discount code does not work at checkout, what should I do?",
    ));
    events
}

fn names(scores: &[pb::CustomerScore]) -> Vec<&str> {
    scores.iter().map(|s| s.customer_id.as_str()).collect()
}

async fn check_story(t: &mut TestServer) {
    let top = t.top("acme", 10, NOW_MS).await;
    let order = names(&top);
    let bot = top.iter().find(|s| s.customer_id == "promo_bot").unwrap();
    assert_ne!(action(bot), pb::Action::Respond, "{bot:?}");
    assert!(bot.priority < 0.5, "{bot:?}");
    assert_eq!(bot.open_threads, 0);
    let flood = reason(bot, "flood").expect("a flood reason");
    assert!(
        flood
            .detail
            .starts_with("the same text 30 times in 58 min on twitter"),
        "{}",
        flood.detail
    );
    assert_ne!(action(bot), pb::Action::Advocate);
    // Every customer who waits comes before the flood.
    for waiting in ["cross_poster", "insisting", "one_off"] {
        let at = order.iter().position(|c| *c == waiting).unwrap();
        assert!(
            at < order.iter().position(|c| *c == "promo_bot").unwrap(),
            "{order:?}"
        );
        assert_eq!(action(&top[at]), pb::Action::Respond, "{:?}", top[at]);
    }

    let cross = t.customer("acme", "cross_poster", NOW_MS).await;
    assert_eq!(cross.open_threads, 1, "{cross:?}");
    assert!(reason(&cross, "repeat_contact").is_none(), "{cross:?}");
    let joined = reason(&cross, "copies_joined").expect("a copies_joined reason");
    assert_eq!(
        joined.detail, "also posted 2 time(s) on twitter and facebook: one matter",
        "{joined:?}"
    );

    let insisting = t.customer("acme", "insisting", NOW_MS).await;
    assert_eq!(insisting.open_threads, 1, "{insisting:?}");
    assert!(reason(&insisting, "flood").is_none());
    assert!(reason(&insisting, "copies_joined").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_are_kept_out_of_respond_and_cross_posts_are_one_matter() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = loopback_config();
    config.durability.data_dir = Some(dir.path().to_path_buf());
    let mut t = start_with(config.clone()).await;
    t.ingest_all(story()).await;
    check_story(&mut t).await;

    // The same after a restart (the log replayed, then the state snapshot read back).
    for _ in 0..2 {
        t.server.shutdown(Duration::from_secs(5)).await.unwrap();
        t = start_with(config.clone()).await;
        check_story(&mut t).await;
    }

    // An answer on Facebook, in the third copy's thread, answers the matter.
    let mut answer = outbound(post(
        "cross_poster",
        "cp-answer",
        1,
        pb::Channel::Facebook,
        "cp-thread-2",
        "",
    ));
    answer.agent_id = "sam".to_string();
    t.ingest_all(vec![answer]).await;
    let cross = t.customer("acme", "cross_poster", NOW_MS).await;
    assert_eq!(cross.open_threads, 0, "{cross:?}");
    assert_ne!(action(&cross), pb::Action::Respond);

    // A new question from the flooding account waits like anyone's.
    t.ingest_all(vec![post(
        "promo_bot",
        "bot-question",
        1,
        pb::Channel::Email,
        "bot-mail",
        "Hello, I think my account was hacked and someone posts ads in my name, help?",
    )])
    .await;
    let bot = t.customer("acme", "promo_bot", NOW_MS).await;
    assert_eq!(action(&bot), pb::Action::Respond, "{bot:?}");
    assert_eq!(bot.open_threads, 1);
    t.server.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noise_is_the_same_whatever_order_the_events_arrive_in() {
    let mut t = start().await;
    let mut events = story();
    events.reverse();
    // Reversed, then interleaved from both ends: late copies before early ones.
    let mut shuffled = Vec::with_capacity(events.len());
    while !events.is_empty() {
        shuffled.push(events.remove(0));
        if let Some(last) = events.pop() {
            shuffled.push(last);
        }
    }
    t.ingest_all(shuffled).await;
    check_story(&mut t).await;
    t.server.shutdown(Duration::from_secs(5)).await.unwrap();
}
