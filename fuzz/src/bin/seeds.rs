//! Writes the starting corpora: `seeds <fuzz dir>` fills `corpus/interaction/` with a few real
//! interactions encoded by prost and `corpus/classify/` with hand-picked texts. Files are named
//! `seed-*`, so rerunning only rewrites these and leaves inputs kept from fuzzing runs alone.

use prost::Message;
use rapport::pb;
use std::path::{Path, PathBuf};

const T0_SECONDS: i64 = 1_767_225_000; // ten minutes before the targets' fixed clock

fn interaction(event_id: &str, customer_id: &str, text: &str) -> pb::Interaction {
    pb::Interaction {
        event_id: event_id.into(),
        tenant_id: "acme".into(),
        customer_id: customer_id.into(),
        channel: pb::Channel::Twitter as i32,
        kind: pb::InteractionKind::Mention as i32,
        direction: pb::Direction::Inbound as i32,
        occurred_at: Some(prost_types::Timestamp {
            seconds: T0_SECONDS,
            nanos: 123_000_000,
        }),
        text: text.into(),
        value: 0.0,
        author_followers: 1_200,
        thread_id: String::new(),
    }
}

fn interactions() -> Vec<(&'static str, pb::Interaction)> {
    let mut purchase = interaction("evt-2", "cust-7", "");
    purchase.channel = pb::Channel::Web as i32;
    purchase.kind = pb::InteractionKind::Purchase as i32;
    purchase.value = 129.99;
    purchase.author_followers = 0;
    let mut reply = interaction(
        "evt-3",
        "cust-42",
        "Sorry to hear that, a fix is on its way.",
    );
    reply.channel = pb::Channel::Chat as i32;
    reply.kind = pb::InteractionKind::Reply as i32;
    reply.direction = pb::Direction::Outbound as i32;
    reply.thread_id = "thr-9".into();
    let mut review = interaction(
        "evt-4",
        "client-é-東京",
        "Terrible support 😡 never again!!! ⭐",
    );
    review.channel = pb::Channel::ReviewSite as i32;
    review.kind = pb::InteractionKind::Review as i32;
    let mut ticket = interaction("evt-5", "c5", "my order hasn't arrived. not happy.");
    ticket.channel = pb::Channel::Email as i32;
    ticket.kind = pb::InteractionKind::SupportTicket as i32;
    ticket.occurred_at = Some(prost_types::Timestamp {
        seconds: 0,
        nanos: 999_999_999,
    });
    let mut follow = interaction("evt-6", "c6", "");
    follow.channel = pb::Channel::Instagram as i32;
    follow.kind = pb::InteractionKind::Unfollow as i32;
    follow.author_followers = u64::MAX;
    vec![
        (
            "mention",
            interaction("evt-1", "cust-1", "@acme I love the new app, thank you!"),
        ),
        ("purchase", purchase),
        ("reply", reply),
        ("review", review),
        ("ticket", ticket),
        ("unfollow", follow),
        // Rejected by validation: missing ids, unknown enums, NaN money.
        ("invalid", {
            let mut bad = interaction("", "c", "x");
            bad.channel = 99;
            bad.value = f64::NAN;
            bad
        }),
    ]
}

const TEXTS: &[(&str, &str)] = &[
    ("empty", ""),
    ("love", "I love this, thank you so much!"),
    ("hate", "worst service ever, I hate this"),
    ("negation", "This is not good. Not bad either, I guess? Never ever again."),
    ("but", "The food was great but the service was horrible"),
    ("caps", "THIS IS THE WORST SUPPORT I HAVE EVER HAD"),
    ("caps-mixed", "I am SO HAPPY with it, really VERY good!!!"),
    ("punct", "What?!?!?!?!?!?!?!?!?!?!?!?!?!?!?!?!?!?!?!?!?!?!?!!!!!!!!!!!!!!!!!!"),
    ("emoji", "😍😍😍 best day ever 🎉 👍"),
    ("emoji-neg", "my package is lost again 😡💔 👎"),
    ("emoticons", ":) :-( :D <3 ;) :/ xD"),
    ("mixed-scripts", "Отличный сервис! 素晴らしい 👌 très bien, سيء جدا"),
    ("intensifiers", "extremely kind of sort of barely incredibly good"),
    ("slang", "lol this is sux, smh, kinda meh tbh"),
    ("idioms", "the bomb, cut the mustard, kiss of death, hand to mouth"),
    ("url", "@user check https://example.com/a?b=c #fail #epicwin"),
    ("whitespace", "  \t\n  \r\n  "),
    ("zwj", "👩‍👩‍👧‍👦 e\u{301} \u{200b}\u{feff}"),
    (
        "val-1",
        "Sarah G. Day on its 4th day! Wow! Eksaherada sa pag-trending!!! @user #GGV #vicepogi",
    ),
    (
        "val-2",
        "The sad part about this is tomorrow Nicki will be the angry black woman who went after poor white girl Miley",
    ),
    (
        "val-3",
        "Dark Souls 3 April Launch Date Confirmed With New Trailer: Embrace the darkness.",
    ),
    (
        "val-4",
        "Monday at Town Ballroom: RICHIE HAWTIN with LOCO DICE.  Dude is so awesome.  Tix still avail at",
    ),
    (
        "val-5",
        "@user I may or may not have searched it up on google",
    ),
];

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).expect("create corpus dir");
    let path = dir.join(format!("seed-{name}"));
    std::fs::write(&path, bytes).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
}

fn main() {
    let root = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
    let corpus = root.join("corpus");
    for (name, message) in interactions() {
        write(&corpus.join("interaction"), name, &message.encode_to_vec());
    }
    for (name, text) in TEXTS {
        write(&corpus.join("classify"), name, text.as_bytes());
    }
    println!(
        "wrote {} interaction and {} classify seeds under {}",
        interactions().len(),
        TEXTS.len(),
        corpus.display()
    );
}
