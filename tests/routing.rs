//! Issue 27, routing engines: agents with skills and capacity over RoutingService, and ClaimNext
//! handing each the conversations it can answer. Several agents claim concurrently; no agent
//! ends above its capacity on any channel, none gets work it lacks a required skill for, no
//! conversation is held by two agents at once, two matters of one customer go to two agents,
//! answers free capacity, agents and load survive a restart, and every conversation some agent
//! can take is claimed before its reply is due.

mod common;

use common::*;
use rapport::pb;
use rapport::pb::identity_service_client::IdentityServiceClient;
use rapport::pb::routing_service_client::RoutingServiceClient;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

const ENGLISH: &str = "I have been waiting two weeks for my order and nobody answers me";
const FRENCH: &str = "Bonjour, je n'arrive pas à me connecter à mon compte depuis hier soir";
const GERMAN: &str = "Ich warte seit zwei Wochen auf meine Bestellung und niemand antwortet mir";
/// Another matter in English (a copy of the same text on another thread would be one matter).
const ENGLISH_BILLING: &str =
    "You charged my card twice this month, please refund the second payment";
const PORTUGUESE: &str = "Encomendei um telefone na semana passada e ainda não chegou em casa";

/// One waiting conversation of the scenario: customer, thread, channel, text.
struct Waiting {
    customer: &'static str,
    thread: &'static str,
    channel: pb::Channel,
    text: &'static str,
}

fn scenario() -> Vec<Waiting> {
    use pb::Channel::{Chat, Email, Twitter};
    let w = |customer, thread, channel, text| Waiting {
        customer,
        thread,
        channel,
        text,
    };
    vec![
        w("en1", "t-en1", Email, ENGLISH),
        w("en2", "t-en2", Chat, ENGLISH),
        w("en3", "t-en3", Email, ENGLISH),
        w("fr1", "t-fr1", Email, FRENCH),
        w("fr2", "t-fr2", Chat, FRENCH),
        w("de1", "t-de1", Email, GERMAN),
        w("de2", "t-de2", Twitter, GERMAN),
        // One customer, two matters on two channels.
        w("multi", "t-multi-chat", Chat, ENGLISH),
        w("multi", "t-multi-tw", Twitter, ENGLISH_BILLING),
        // In the "vip" skill segment.
        w("vip1", "t-vip1", Email, ENGLISH),
        // Nobody but an any-language agent answers Portuguese.
        w("pt1", "t-pt1", Email, PORTUGUESE),
        // Do not contact: never offered.
        w("dnc", "t-dnc", Email, ENGLISH),
    ]
}

fn capacity(channel: pb::Channel, max: u32) -> pb::ChannelCapacity {
    pb::ChannelCapacity {
        channel: channel as i32,
        max_conversations: max,
    }
}

/// `customer`'s message `text` on `channel` in `thread`, waiting for an answer.
fn waiting_message(
    customer: &str,
    event_id: &str,
    at_ms: i64,
    channel: pb::Channel,
    thread: &str,
    text: &str,
) -> pb::Interaction {
    let mut message = with_text(event("acme", customer, event_id, at_ms), text);
    message.channel = channel as i32;
    message.kind = pb::InteractionKind::Message as i32;
    message.thread_id = thread.into();
    message
}

/// Registers `agent` with the tenant "acme".
async fn put(routing: &mut RoutingServiceClient<tonic::transport::Channel>, agent: pb::Agent) {
    routing
        .put_agent(pb::PutAgentRequest {
            tenant_id: "acme".into(),
            agent: Some(agent),
        })
        .await
        .unwrap();
}

/// The first scenario agent (English and French) as `agent_id`, with room for `max` e-mails only.
fn email_agent(agent_id: &str, max: u32) -> pb::Agent {
    let mut agent = agents()[0].clone();
    agent.agent_id = agent_id.into();
    agent.capacity = vec![capacity(pb::Channel::Email, max)];
    agent
}

fn agents() -> Vec<pb::Agent> {
    use pb::Channel::{Chat, Email, Twitter};
    let agent = |id: &str, languages: &[&str], segments: &[&str], caps, status: pb::AgentStatus| {
        pb::Agent {
            agent_id: id.into(),
            status: status as i32,
            languages: languages.iter().map(|l| l.to_string()).collect(),
            intents: Vec::new(),
            segments: segments.iter().map(|s| s.to_string()).collect(),
            capacity: caps,
            outreach_capacity: 0,
            capacity_units: 0,
        }
    };
    use pb::AgentStatus::{Available, Away};
    vec![
        agent(
            "ann",
            &["en", "fr"],
            &[],
            vec![capacity(Chat, 1), capacity(Email, 2)],
            Available,
        ),
        agent(
            "bob",
            &["de"],
            &[],
            vec![capacity(Email, 1), capacity(Twitter, 1)],
            Available,
        ),
        agent(
            "cy",
            &["en"],
            &["vip"],
            vec![capacity(Twitter, 1), capacity(Email, 1)],
            Available,
        ),
        agent("dee", &[], &[], vec![capacity(Email, 3)], Away),
    ]
}

/// One claim an agent got: (agent, customer, thread, channel, language).
type Taken = (String, String, String, i32, String);

/// `agent` claims until it gets nothing; every claim is checked against the agent's skills and
/// the conversation's due time as it comes.
async fn claim_all(
    mut scoring: rapport::pb::scoring_service_client::ScoringServiceClient<
        tonic::transport::Channel,
    >,
    agent: pb::Agent,
) -> Result<Vec<Taken>, tonic::Status> {
    let mut taken = Vec::new();
    // Bounded: nobody holds more than a handful at once.
    for _ in 0..20 {
        let answer = scoring
            .claim_next(pb::ClaimNextRequest {
                tenant_id: "acme".into(),
                agent_id: agent.agent_id.clone(),
                ttl_seconds: 600,
                ..Default::default()
            })
            .await?
            .into_inner();
        let Some(customer) = answer.customer else {
            return Ok(taken);
        };
        let conversation = answer
            .conversation
            .expect("a registered agent gets a conversation");
        assert_eq!(customer.claimed_by, agent.agent_id);
        assert!(
            agent.languages.is_empty() || agent.languages.contains(&conversation.language),
            "{} got a conversation in {:?}",
            agent.agent_id,
            conversation.language
        );
        let due = conversation.reply_due_at.expect("due time");
        let due_ms = due.seconds * 1000 + i64::from(due.nanos) / 1_000_000;
        assert!(
            due_ms > rapport::engine::now_ms(),
            "{} claimed {} after its reply was due",
            agent.agent_id,
            conversation.thread_id
        );
        taken.push((
            agent.agent_id.clone(),
            customer.customer_id,
            conversation.thread_id,
            conversation.channel,
            conversation.language,
        ));
    }
    panic!("{} kept getting work", agent.agent_id);
}

/// Every agent claims concurrently; returns what each got, and dee's refusal if it was away.
async fn round(t: &TestServer, agents: &[pb::Agent]) -> Vec<Result<Vec<Taken>, tonic::Status>> {
    let claims: Vec<_> = agents
        .iter()
        .map(|agent| tokio::spawn(claim_all(t.scoring.clone(), agent.clone())))
        .collect();
    let mut answers = Vec::new();
    for claim in claims {
        answers.push(claim.await.unwrap());
    }
    answers
}

/// Each agent's load per channel as RoutingService reports it.
async fn loads(
    routing: &mut RoutingServiceClient<tonic::transport::Channel>,
) -> BTreeMap<String, BTreeMap<i32, u32>> {
    routing
        .list_agents(pb::ListAgentsRequest {
            tenant_id: "acme".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .agents
        .into_iter()
        .map(|state| {
            let agent = state.agent.unwrap();
            let load = state
                .load
                .iter()
                .map(|l| (l.channel, l.max_conversations))
                .collect();
            (agent.agent_id, load)
        })
        .collect()
}

/// Checks a round's claims: capacity, the vip skill, nobody twice. Returns the claims.
fn check_round(
    answers: Vec<Result<Vec<Taken>, tonic::Status>>,
    agents: &[pb::Agent],
    held_before: &BTreeMap<String, BTreeMap<i32, u32>>,
) -> Vec<Taken> {
    let mut all = Vec::new();
    for (agent, answer) in agents.iter().zip(answers) {
        match answer {
            Ok(taken) => all.extend(taken),
            Err(status) => {
                assert_eq!(agent.status, pb::AgentStatus::Away as i32, "{status}");
                assert_eq!(status.code(), tonic::Code::FailedPrecondition);
                assert!(status.message().starts_with("agent_id:"), "{status}");
            }
        }
    }
    let mut per_agent: HashMap<(&str, i32), u32> = HashMap::new();
    for (agent, customer, _, channel, _) in &all {
        *per_agent.entry((agent, *channel)).or_default() += 1;
        if customer == "vip1" {
            assert_eq!(agent, "cy", "only an agent with the vip skill takes a vip");
        }
        assert_ne!(
            customer, "dnc",
            "a do-not-contact customer is never offered"
        );
    }
    for agent in agents {
        for cap in &agent.capacity {
            let held = held_before
                .get(&agent.agent_id)
                .and_then(|load| load.get(&cap.channel))
                .copied()
                .unwrap_or(0);
            let now = per_agent
                .get(&(agent.agent_id.as_str(), cap.channel))
                .copied()
                .unwrap_or(0);
            assert!(
                held + now <= cap.max_conversations,
                "{} holds {} on channel {} (capacity {})",
                agent.agent_id,
                held + now,
                cap.channel,
                cap.max_conversations
            );
        }
    }
    let distinct: BTreeSet<(&str, &str)> = all
        .iter()
        .map(|(_, customer, thread, _, _)| (customer.as_str(), thread.as_str()))
        .collect();
    assert_eq!(
        distinct.len(),
        all.len(),
        "a conversation held twice: {all:?}"
    );
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_get_only_work_they_can_do_within_capacity_and_every_fit_conversation_is_claimed() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = rapport::config::Config::from_toml(
        "[[segments]]\nname = \"vip\"\nall = [{ field = \"attributes.tier\", op = \"eq\", value = \"vip\" }]\n\
         [routing]\nskill_segments = [\"vip\"]\noptional_skills = [\"intent\"]\n",
    )
    .unwrap();
    let loopback = loopback_config();
    config.server.grpc_addr = loopback.server.grpc_addr;
    config.server.metrics_addr = loopback.server.metrics_addr;
    config.durability.data_dir = Some(dir.path().to_path_buf());
    let mut t = start_with(config.clone()).await;
    let mut crm = IdentityServiceClient::new(t.channel.clone());
    for (customer, key, value) in [("vip1", "tier", "vip"), ("dnc", "do_not_contact", "")] {
        let value = if key == "tier" {
            pb::attribute_value::Value::Text(value.into())
        } else {
            pb::attribute_value::Value::Flag(true)
        };
        crm.upsert_customer(pb::UpsertCustomerRequest {
            tenant_id: "acme".into(),
            customer_id: customer.into(),
            attributes: HashMap::from([(
                key.to_string(),
                pb::AttributeValue { value: Some(value) },
            )]),
            version: 1,
        })
        .await
        .unwrap();
    }
    let now = rapport::engine::now_ms() - 2 * MINUTE_MS;
    let scenario = scenario();
    t.ingest_all(
        scenario
            .iter()
            .enumerate()
            .map(|(n, waiting)| {
                waiting_message(
                    waiting.customer,
                    &format!("m{n}"),
                    now + n as i64,
                    waiting.channel,
                    waiting.thread,
                    waiting.text,
                )
            })
            .collect(),
    )
    .await;
    let mut routing = RoutingServiceClient::new(t.channel.clone());
    // Bad agents are refused naming the field; an unknown agent is NOT_FOUND.
    let mut bad = agents()[0].clone();
    bad.languages[1] = "klingon".into();
    let status = routing
        .put_agent(pb::PutAgentRequest {
            tenant_id: "acme".into(),
            agent: Some(bad),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().starts_with("agent.languages[1]:"),
        "{status}"
    );
    let status = routing
        .get_agent(pb::GetAgentRequest {
            tenant_id: "acme".into(),
            agent_id: "nobody".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound, "{status}");
    let mut agents = agents();
    for agent in &agents {
        put(&mut routing, agent.clone()).await;
    }

    // Round one: everybody claims at once.
    let no_load = BTreeMap::new();
    let first = check_round(round(&t, &agents).await, &agents, &no_load);
    let by_thread: HashMap<&str, &Taken> = first.iter().map(|c| (c.2.as_str(), c)).collect();
    let (chat, tw) = (by_thread.get("t-multi-chat"), by_thread.get("t-multi-tw"));
    if let (Some(chat), Some(tw)) = (chat, tw) {
        assert_ne!(
            chat.0, tw.0,
            "one agent cannot answer both (capacity and channels)"
        );
    }
    let held = loads(&mut routing).await;
    let mut counted: BTreeMap<String, BTreeMap<i32, u32>> = BTreeMap::new();
    for (agent, _, _, channel, _) in &first {
        *counted
            .entry(agent.clone())
            .or_default()
            .entry(*channel)
            .or_default() += 1;
    }
    for agent in &agents {
        counted.entry(agent.agent_id.clone()).or_default();
    }
    assert_eq!(held, counted, "RoutingService reports the load claimed");

    // A restart (the log replayed), then another (the state loaded): agents and their load come
    // back.
    t.server.shutdown(Duration::from_secs(5)).await.unwrap();
    for restart in ["replaying the log", "loading the state"] {
        let t = start_with(config.clone()).await;
        let mut routing = RoutingServiceClient::new(t.channel.clone());
        assert_eq!(loads(&mut routing).await, held, "after {restart}");
        let dee = routing
            .get_agent(pb::GetAgentRequest {
                tenant_id: "acme".into(),
                agent_id: "dee".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(dee.agent.as_ref(), Some(&agents[3]), "after {restart}");
        t.server.shutdown(Duration::from_secs(5)).await.unwrap();
    }
    let mut t = start_with(config.clone()).await;
    let mut routing = RoutingServiceClient::new(t.channel.clone());

    // Dee comes back; everyone answers what they hold and claims again until nothing is left.
    routing
        .set_agent_status(pb::SetAgentStatusRequest {
            tenant_id: "acme".into(),
            agent_id: "dee".into(),
            status: pb::AgentStatus::Available as i32,
        })
        .await
        .unwrap();
    agents[3].status = pb::AgentStatus::Available as i32;
    let mut claimed = first.clone();
    let mut holding = first;
    for answers in 0.. {
        assert!(answers < 10, "claims never ran out");
        let replies: Vec<pb::Interaction> = holding
            .iter()
            .enumerate()
            .map(|(n, (agent, customer, thread, channel, _))| {
                let mut reply = outbound(event(
                    "acme",
                    customer,
                    &format!("r{answers}-{n}"),
                    rapport::engine::now_ms() - 1000,
                ));
                reply.thread_id = thread.clone();
                reply.channel = *channel;
                reply.agent_id = agent.clone();
                reply
            })
            .collect();
        if !replies.is_empty() {
            t.ingest_all(replies).await;
        }
        let load = loads(&mut routing).await;
        assert!(
            load.values().all(BTreeMap::is_empty),
            "answers free every agent's capacity: {load:?}"
        );
        holding = check_round(round(&t, &agents).await, &agents, &load);
        if holding.is_empty() {
            break;
        }
        claimed.extend(holding.iter().cloned());
    }
    let threads: BTreeSet<&str> = claimed.iter().map(|c| c.2.as_str()).collect();
    let expected: BTreeSet<&str> = scenario
        .iter()
        .filter(|w| w.customer != "dnc")
        .map(|w| w.thread)
        .collect();
    assert_eq!(
        threads, expected,
        "every conversation some agent can take is claimed"
    );
    assert_eq!(threads.len(), claimed.len(), "each once: {claimed:?}");
    let pt = claimed.iter().find(|c| c.1 == "pt1").unwrap();
    assert_eq!((pt.0.as_str(), pt.4.as_str()), ("dee", "pt"));
    let multi: BTreeSet<&str> = claimed
        .iter()
        .filter(|c| c.1 == "multi")
        .map(|c| c.0.as_str())
        .collect();
    assert_eq!(multi.len(), 2, "two matters, two agents: {multi:?}");
    let metrics = t.scrape_metrics().await;
    assert!(
        metrics.contains(r#"rapport_claims_taken_total{work="conversation",channel="email"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("rapport_claim_wait_seconds_bucket"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"rapport_replies_total{tenant="acme",channel="email",response="first",outcome="within_target"}"#
        ),
        "{metrics}"
    );

    // What leads see: every answer above was a first response within its target; only the
    // do-not-contact customer's e-mail still waits.
    let levels = routing
        .get_service_levels(pb::GetServiceLevelsRequest {
            tenant_id: "acme".into(),
            since: None,
            until: None,
        })
        .await
        .unwrap()
        .into_inner()
        .levels;
    let replies: u64 = levels.iter().map(|l| l.first_replies).sum();
    let within: u64 = levels.iter().map(|l| l.first_replies_within_target).sum();
    assert_eq!(replies, claimed.len() as u64, "{levels:?}");
    assert_eq!(within, replies, "{levels:?}");
    assert!(levels
        .iter()
        .all(|l| l.next_replies == 0 && l.attainment == 1.0));
    let waiting: Vec<(i32, u64)> = levels
        .iter()
        .filter(|l| l.waiting_now > 0)
        .map(|l| (l.channel, l.waiting_now))
        .collect();
    assert_eq!(waiting, [(pb::Channel::Email as i32, 1)], "{levels:?}");
    let email = levels
        .iter()
        .find(|l| l.channel == pb::Channel::Email as i32)
        .unwrap();
    assert!(email.median_reply_wait_seconds > 60.0, "{email:?}");
    let status = routing
        .get_service_levels(pb::GetServiceLevelsRequest {
            tenant_id: "acme".into(),
            since: Some(ts(T0_MS + DAY_MS)),
            until: Some(ts(T0_MS)),
        })
        .await
        .unwrap_err();
    assert!(status.message().starts_with("since:"), "{status}");
}

/// An agent away takes nothing; RenewClaim and ReleaseClaim name one conversation by its thread;
/// removing an agent forgets it.
#[tokio::test]
async fn status_thread_scoped_release_and_removal() {
    let mut t = start().await;
    let now = rapport::engine::now_ms() - MINUTE_MS;
    let messages = [("t-a", ENGLISH), ("t-b", ENGLISH_BILLING)]
        .into_iter()
        .enumerate()
        .map(|(n, (thread, text))| {
            let id = format!("m{n}");
            waiting_message("kim", &id, now + n as i64, pb::Channel::Email, thread, text)
        })
        .collect();
    t.ingest_all(messages).await;
    let mut routing = RoutingServiceClient::new(t.channel.clone());
    put(&mut routing, email_agent("ann", 2)).await;
    let claim = || pb::ClaimNextRequest {
        tenant_id: "acme".into(),
        agent_id: "ann".into(),
        ttl_seconds: 600,
        ..Default::default()
    };
    let mut threads = Vec::new();
    for _ in 0..2 {
        let answer = t.scoring.claim_next(claim()).await.unwrap().into_inner();
        threads.push(answer.conversation.unwrap().thread_id);
    }
    threads.sort();
    assert_eq!(
        threads,
        ["t-a", "t-b"],
        "both of kim's threads, one claim each"
    );
    let release = |thread: &str| pb::ClaimRequest {
        tenant_id: "acme".into(),
        agent_id: "ann".into(),
        customer_id: "kim".into(),
        thread_id: thread.into(),
        ..Default::default()
    };
    t.scoring.release_claim(release("t-a")).await.unwrap();
    let state = routing
        .get_agent(pb::GetAgentRequest {
            tenant_id: "acme".into(),
            agent_id: "ann".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        state.load[0].max_conversations, 1,
        "one released: {state:?}"
    );
    let status = t.scoring.release_claim(release("t-a")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status}");
    routing
        .set_agent_status(pb::SetAgentStatusRequest {
            tenant_id: "acme".into(),
            agent_id: "ann".into(),
            status: pb::AgentStatus::Offline as i32,
        })
        .await
        .unwrap();
    let status = t.scoring.claim_next(claim()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status}");
    routing
        .remove_agent(pb::GetAgentRequest {
            tenant_id: "acme".into(),
            agent_id: "ann".into(),
        })
        .await
        .unwrap();
    // Forgotten: ann is an unregistered agent again, and kim's t-b claim still stands.
    let whole = t.scoring.claim_next(claim()).await.unwrap().into_inner();
    assert!(
        whole.customer.is_none(),
        "kim is partly held: no whole claim"
    );
    let status = routing
        .remove_agent(pb::GetAgentRequest {
            tenant_id: "acme".into(),
            agent_id: "ann".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound, "{status}");
}

/// The next offer on the stream, as (agent, customer, thread).
async fn next(offers: &mut tonic::Streaming<pb::Offer>) -> (String, String, String) {
    use tokio_stream::StreamExt;
    let offer = tokio::time::timeout(Duration::from_secs(20), offers.next())
        .await
        .expect("an offer within 20 s")
        .expect("the stream is open")
        .expect("an offer");
    let conversation = offer.conversation.clone().expect("a conversation");
    (
        offer.agent_id,
        offer.customer.unwrap().customer_id,
        conversation.thread_id,
    )
}

/// Push routing: offers go to agents with room, least loaded first, one open offer per agent and
/// never one conversation to two agents; a declined conversation goes to someone else and not
/// back to the agent that declined it; an accepted one is a claim; one left unanswered lapses
/// and is offered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_are_pushed_answered_declined_and_lapse() {
    let mut t = start().await;
    let now = rapport::engine::now_ms() - 5 * MINUTE_MS;
    let messages = (0..3)
        .map(|n| {
            let (customer, id, thread) = (format!("c{n}"), format!("m{n}"), format!("t{n}"));
            let at_ms = now + n as i64 * 1000;
            waiting_message(&customer, &id, at_ms, pb::Channel::Email, &thread, ENGLISH)
        })
        .collect();
    t.ingest_all(messages).await;
    let mut routing = RoutingServiceClient::new(t.channel.clone());
    for id in ["ann", "bob"] {
        put(&mut routing, email_agent(id, 1)).await;
    }
    let status = routing
        .watch_offers(pb::WatchOffersRequest {
            tenant_id: "acme".into(),
            agent_ids: Vec::new(),
            offer_timeout_seconds: 1,
        })
        .await
        .unwrap_err();
    assert!(
        status.message().starts_with("offer_timeout_seconds:"),
        "{status}"
    );
    let mut offers = routing
        .watch_offers(pb::WatchOffersRequest {
            tenant_id: "acme".into(),
            agent_ids: Vec::new(),
            offer_timeout_seconds: 5,
        })
        .await
        .unwrap()
        .into_inner();
    // Both agents get one offer each, of two different conversations.
    let first = next(&mut offers).await;
    let second = next(&mut offers).await;
    assert_ne!(
        first.0, second.0,
        "one open offer per agent: {first:?} {second:?}"
    );
    assert_ne!(
        first.2, second.2,
        "one conversation to one agent: {first:?} {second:?}"
    );
    let answer = |offer: &(String, String, String), accept: bool| pb::AnswerOfferRequest {
        tenant_id: "acme".into(),
        agent_id: offer.0.clone(),
        customer_id: offer.1.clone(),
        thread_id: offer.2.clone(),
        accept,
        ttl_seconds: 600,
    };
    // The first declines: it is offered the third conversation, never the one it declined.
    routing.answer_offer(answer(&first, false)).await.unwrap();
    let status = routing
        .answer_offer(answer(&first, true))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status}");
    let third = next(&mut offers).await;
    assert_eq!(third.0, first.0);
    assert_ne!(
        third.2, first.2,
        "a declined conversation is not offered back at once"
    );
    assert_ne!(third.2, second.2);
    // The second accepts: a claim.
    let accepted = routing
        .answer_offer(answer(&second, true))
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap();
    assert_eq!(accepted.claimed_by, second.0);
    // Nobody answers the third offer: it lapses, and the declined conversation (free, and the
    // first agent's pass over it over by then) is offered again.
    let again = next(&mut offers).await;
    assert_eq!(again.0, first.0, "{again:?}");
    let status = routing
        .answer_offer(answer(&third, true))
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        tonic::Code::FailedPrecondition,
        "a lapsed offer: {status}"
    );
    let state = routing
        .get_agent(pb::GetAgentRequest {
            tenant_id: "acme".into(),
            agent_id: second.0.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state.load[0].max_conversations, 1, "{state:?}");
}

/// A merge of two customers whose conversations two agents hold (the same thread, known under two
/// ids) leaves one holder, and the other agent is told on its offer stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_tells_the_agent_whose_conversation_it_took() {
    use tokio_stream::StreamExt;
    let mut t = start().await;
    let now = rapport::engine::now_ms() - 5 * MINUTE_MS;
    let messages = [("x", ENGLISH), ("y", ENGLISH_BILLING)]
        .into_iter()
        .enumerate()
        .map(|(n, (customer, text))| {
            let id = format!("m{n}");
            waiting_message(customer, &id, now, pb::Channel::Email, "shared", text)
        })
        .collect();
    t.ingest_all(messages).await;
    let mut routing = RoutingServiceClient::new(t.channel.clone());
    for id in ["ann", "bob"] {
        put(&mut routing, email_agent(id, 1)).await;
    }
    let mut offers = routing
        .watch_offers(pb::WatchOffersRequest {
            tenant_id: "acme".into(),
            agent_ids: Vec::new(),
            offer_timeout_seconds: 30,
        })
        .await
        .unwrap()
        .into_inner();
    let first = next(&mut offers).await;
    let second = next(&mut offers).await;
    assert_ne!(first.1, second.1, "{first:?} {second:?}");
    // The second's claim lasts longer: it stays.
    for (offer, ttl_seconds) in [(&first, 600), (&second, 900)] {
        routing
            .answer_offer(pb::AnswerOfferRequest {
                tenant_id: "acme".into(),
                agent_id: offer.0.clone(),
                customer_id: offer.1.clone(),
                thread_id: offer.2.clone(),
                accept: true,
                ttl_seconds,
            })
            .await
            .unwrap();
    }
    IdentityServiceClient::new(t.channel.clone())
        .merge_customers(pb::MergeCustomersRequest {
            tenant_id: "acme".into(),
            customer_id: "x".into(),
            other_customer_id: "y".into(),
        })
        .await
        .unwrap();
    let notice = tokio::time::timeout(Duration::from_secs(20), offers.next())
        .await
        .expect("a notice within 20 s")
        .expect("the stream is open")
        .expect("a notice");
    assert!(notice.withdrawn, "{notice:?}");
    assert_eq!(notice.agent_id, first.0);
    assert_eq!(notice.conversation.unwrap().thread_id, "shared");
    assert_eq!(
        notice.customer.unwrap().claimed_by,
        second.0,
        "the holder that stays"
    );
    let loads = loads(&mut routing).await;
    assert!(loads[&first.0].is_empty(), "{loads:?}");
    assert_eq!(loads[&second.0].len(), 1, "{loads:?}");
}

/// Capacity as weights: with `routing.channel_weights` chat = 3 and 10 units, an agent holds at
/// most three chats, and chats and e-mails together never take more than its units.
#[tokio::test]
async fn capacity_units_weigh_conversations_by_channel() {
    let mut config =
        rapport::config::Config::from_toml("[routing.channel_weights]\nchat = 3\n").unwrap();
    let loopback = loopback_config();
    config.server.grpc_addr = loopback.server.grpc_addr;
    config.server.metrics_addr = loopback.server.metrics_addr;
    let mut t = start_with(config).await;
    let now = rapport::engine::now_ms() - MINUTE_MS;
    let messages = (0..6)
        .map(|n| {
            let channel = if n < 4 {
                pb::Channel::Chat
            } else {
                pb::Channel::Email
            };
            let (customer, id, thread) = (format!("c{n}"), format!("m{n}"), format!("t{n}"));
            waiting_message(&customer, &id, now, channel, &thread, ENGLISH)
        })
        .collect();
    t.ingest_all(messages).await;
    let mut routing = RoutingServiceClient::new(t.channel.clone());
    let mut agent = agents()[0].clone();
    agent.capacity = vec![
        capacity(pb::Channel::Chat, 4),
        capacity(pb::Channel::Email, 10),
    ];
    agent.capacity_units = 10;
    put(&mut routing, agent.clone()).await;
    let taken = claim_all(t.scoring.clone(), agent).await.unwrap();
    let chats = taken
        .iter()
        .filter(|c| c.3 == pb::Channel::Chat as i32)
        .count() as u32;
    let emails = taken.len() as u32 - chats;
    assert!(chats <= 3, "{taken:?}");
    assert!(3 * chats + emails <= 10, "{taken:?}");
    assert!(
        3 * chats + emails > 10 - 3 || emails == 2,
        "it stopped while a chat or an e-mail still fit: {taken:?}"
    );
    let state = routing
        .get_agent(pb::GetAgentRequest {
            tenant_id: "acme".into(),
            agent_id: "ann".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state.units_held, 3 * chats + emails, "{state:?}");
    let status = routing
        .put_agent(pb::PutAgentRequest {
            tenant_id: "acme".into(),
            agent: Some(pb::Agent {
                capacity_units: 1_000_000,
                ..state.agent.unwrap()
            }),
        })
        .await
        .unwrap_err();
    assert!(
        status.message().starts_with("agent.capacity_units:"),
        "{status}"
    );
    let refused = rapport::config::Config::from_toml("[routing.channel_weights]\npigeon = 2\n")
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("routing.channel_weights.pigeon"),
        "{refused}"
    );
}
