//! Fuzz target: arbitrary bytes → `pb::Interaction` (prost decode) → `interaction_from_pb`.
//!
//! Must never panic. For every interaction validation accepts, checks what `api::convert`
//! promises: required ids present, every id within `max_id_bytes` and free of control
//! characters, text within `max_text_bytes`, money finite and not negative, time not before 1970
//! and not beyond the allowed skew, enum fields mapped one to one, and the write-ahead-log round
//! trip (`interaction_to_pb` → encode → decode → `interaction_from_pb` with the replay limits)
//! giving back the same interaction.

use prost::Message;
use rapport::api::convert::{interaction_from_pb, interaction_to_pb, Limits};
use rapport::config::{IdentityConfig, ServerConfig};
use rapport::pb;

/// The server clock the target validates against (2026-01-01T00:00:00Z).
const NOW_MS: i64 = 1_767_225_600_000;

/// Fields `interaction_from_pb` may name in an error.
const FIELDS: [&str; 10] = [
    "event_id",
    "tenant_id",
    "customer_id",
    "thread_id",
    "channel",
    "kind",
    "direction",
    "occurred_at",
    "text",
    "value",
];

/// The limits the server builds from its default config (as `server::start` does).
fn server_limits() -> Limits {
    let server = ServerConfig::default();
    Limits {
        max_text_bytes: server.max_text_bytes,
        max_id_bytes: server.max_id_bytes,
        max_future_skew_ms: i64::try_from(server.max_future_skew_seconds.saturating_mul(1000))
            .unwrap_or(i64::MAX),
        max_identifiers: IdentityConfig::default().max_identifiers_per_request,
        blocked_identifiers: Vec::new().into(),
    }
}

/// The limits write-ahead-log replay validates with (`durability::decode_event`).
fn replay_limits() -> Limits {
    Limits {
        max_text_bytes: usize::MAX,
        max_id_bytes: usize::MAX,
        max_future_skew_ms: i64::MAX,
        max_identifiers: usize::MAX,
        blocked_identifiers: Vec::new().into(),
    }
}

fn check_id(name: &str, id: &str, required: bool, limits: &Limits) {
    assert!(!required || !id.is_empty(), "{name} accepted empty");
    assert!(
        id.len() <= limits.max_id_bytes,
        "{name} accepted at {} bytes",
        id.len()
    );
    assert!(
        !id.chars().any(char::is_control),
        "{name} accepted with a control character: {id:?}"
    );
}

fn run(data: &[u8], limits: &Limits) {
    let Ok(message) = pb::Interaction::decode(data) else {
        return;
    };
    let original = message.clone();
    let valid = match interaction_from_pb(message, limits, NOW_MS) {
        Ok(valid) => valid,
        Err(error) => {
            assert!(
                FIELDS.iter().any(|field| *field == error.field),
                "unknown field {error}"
            );
            assert!(
                !error.message.is_empty(),
                "empty message for {}",
                error.field
            );
            return;
        }
    };
    check_id("event_id", &valid.event_id, true, limits);
    check_id("tenant_id", &valid.tenant_id, true, limits);
    check_id("customer_id", &valid.customer_id, true, limits);
    check_id("thread_id", &valid.thread_id, false, limits);
    assert!(
        valid.text.len() <= limits.max_text_bytes,
        "text accepted at {} bytes",
        valid.text.len()
    );
    assert!(
        valid.value.is_finite() && valid.value >= 0.0,
        "value {}",
        valid.value
    );
    assert!(valid.occurred_at_ms >= 0, "{}", valid.occurred_at_ms);
    assert!(
        valid.occurred_at_ms <= NOW_MS.saturating_add(limits.max_future_skew_ms),
        "occurred_at {} beyond the skew",
        valid.occurred_at_ms
    );
    // Fields pass through unchanged; the time keeps whole milliseconds.
    let timestamp = original.occurred_at.expect("accepted without occurred_at");
    assert_eq!(
        valid.occurred_at_ms,
        timestamp.seconds * 1000 + i64::from(timestamp.nanos / 1_000_000)
    );
    assert_eq!(valid.event_id, original.event_id);
    assert_eq!(valid.tenant_id, original.tenant_id);
    assert_eq!(valid.customer_id, original.customer_id);
    assert_eq!(valid.thread_id, original.thread_id);
    assert_eq!(valid.text, original.text);
    assert_eq!(valid.value.to_bits(), original.value.to_bits());
    assert_eq!(valid.author_followers, original.author_followers);

    // What the WAL writes: the same enums by number, and it must replay to the same interaction.
    let logged = interaction_to_pb(&valid);
    assert_eq!(
        (logged.channel, logged.kind, logged.direction),
        (original.channel, original.kind, original.direction),
        "enum numbers changed"
    );
    let bytes = logged.encode_to_vec();
    let decoded = pb::Interaction::decode(bytes.as_slice()).expect("logged interaction decodes");
    assert_eq!(decoded, logged);
    let replayed = interaction_from_pb(decoded.clone(), &replay_limits(), 0)
        .unwrap_or_else(|error| panic!("replay refuses an accepted interaction: {error}"));
    assert_eq!(replayed, valid, "replay differs");
    // And the live path accepts what it logged (validation is idempotent).
    let again = interaction_from_pb(decoded, limits, NOW_MS)
        .unwrap_or_else(|error| panic!("re-validation refuses: {error}"));
    assert_eq!(again, valid);
}

fn main() {
    let limits = server_limits();
    afl::fuzz!(|data: &[u8]| {
        run(data, &limits);
        // Replay validation itself must not panic on any decodable record either.
        if let Ok(message) = pb::Interaction::decode(data) {
            let _ = interaction_from_pb(message, &replay_limits(), 0);
        }
    });
}
