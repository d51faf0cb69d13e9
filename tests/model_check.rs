//! Issue 24: a model-based, randomized check of the real service (in the spirit of Jepsen's
//! checkers): the release binary's promises are checked against a reference model over generated
//! histories, not against examples.
//!
//! Each round starts the real `rapport` binary on a fresh data directory (snapshots every
//! second, so seals and snapshots run under the load), and several concurrent clients send
//! generated operations over gRPC: events (late, duplicated, for customers that get merged; in
//! three threads per customer, one channel each, in English, French and German, and answers:
//! outbound events in a thread), conflicting `UpsertCustomer` versions, `ClaimNext` /
//! `RenewClaim` / `ReleaseClaim` (of all the agent's claims on a customer, or of one thread's) by
//! several agents, `MergeCustomers`, `SetIntents` switching between intent lists (the events'
//! texts read as those intents, so scores carry intent ids), and routing: at the round's start
//! two agents are registered in each tenant with `PutAgent` (agent-1 English, agent-2 French and
//! German, capacities of 1 or 2 on two channels each, outreach for agent-1; agent-0 stays
//! unregistered and claims whole customers), and during it `PutAgent` changes their capacities
//! and `SetAgentStatus` sends them AWAY and back. Every call is recorded with its invocation and
//! completion on one logical clock and its answer. The round ends with one of: SIGTERM, kill -9
//! at rest, kill -9 under load, file damage from a catalogue (after a kill -9 at rest), or a
//! second process on the same data directory under load. Then these are checked:
//! - exclusive work: no `ClaimNext` hands out a conversation (customer and thread) or a whole
//!   customer while any agent (itself included) certainly holds overlapping work (claimed before
//!   the call began, not possibly ended before it ended by a release or failed renew of the
//!   agent on the customer, an answer to the customer, or a merge with a customer another claim
//!   may be on; merges move claims);
//! - capacity: a registered agent's claims on the conversation's channel (whole customers:
//!   outreach) certainly live through the call, plus the one it got, are within the largest
//!   capacity that may be in force (a channel its definitions do not list: none);
//! - skills: a conversation handed to an agent with languages is in one of them (intents and
//!   segments are optional skills, lapsed for the events of 2026-01); an unregistered agent gets
//!   whole customers only, and an agent certainly AWAY for the whole call is refused;
//! - acknowledged means durable: after the restart every acknowledged event is counted, every
//!   whole-customer claim certainly held is still held by its agent (`claimed_by`) and every
//!   conversation claim certainly held still counts in its agent's load (ListAgents), every
//!   customer untouched by an in-flight call holds the attributes of its applied updates folded
//!   in version order, each tenant's intents are a list SetIntents may have left last, and every
//!   agent whose put was acknowledged is listed with a definition (and status) a put (or
//!   SetAgentStatus) may have left last, its load per channel within any capacity it was given;
//!   TopCustomers by each intent (and by each of three languages) lists exactly the customers
//!   whose answer waits about it (in it);
//! - a restart at rest changes no answer: every customer's full answer (scores at a pinned
//!   `as_of`, attributes, claim, identity) and every tenant's ListAgents answer (but
//!   `last_claimed_at`, not kept) equals the one before the stop;
//! - damage refuses the start naming a file of the data directory, or loses nothing (the answers
//!   equal those before); a second process on a directory in use is refused and changes nothing.
//!
//! The server runs with `RAPPORT_BUGGIFY=1`: it pauses at random between applying a change and
//! queueing its record, so the races the log's order must survive happen often.
//!
//! The seed is printed; `RAPPORT_CHECK_SEED`, `RAPPORT_CHECK_ROUNDS` and `RAPPORT_CHECK_OPS`
//! replay or lengthen a run (`scripts/soak.sh SEED MINUTES`); `RAPPORT_CHECK_HISTORY=1` prints
//! every round's history even when it passes. Not covered: `RemoveAgent`, skill segments and
//! required intents (lapsed), claim expiry, whether a conversation's language is the one its
//! messages were read in, which threads an answer really ends (any answer may end any claim on
//! the customer), cluster mode, config reloads, identifier-carrying events and links, tenant
//! isolation under load, damage to the active log's tail (indistinguishable from a crash's torn
//! tail), and shrinking (a failing seed is replayed with fewer ops by hand).

mod common;

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rapport::pb;
use rapport::pb::identity_service_client::IdentityServiceClient;
use rapport::pb::ingest_service_client::IngestServiceClient;
use rapport::pb::intent_service_client::IntentServiceClient;
use rapport::pb::routing_service_client::RoutingServiceClient;
use rapport::pb::scoring_service_client::ScoringServiceClient;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::transport::Channel;

const TENANTS: [&str; 2] = ["acme", "globex"];
const CUSTOMERS: usize = 6;
const AGENTS: usize = 3;
const CLIENTS: usize = 4;
/// Scores are compared at this pinned time (after every generated event).
const AS_OF_MS: i64 = T0_MS + DAY_MS;
const CLAIM_TTL_SECONDS: u32 = 3_600;
/// No call excepted (see [`follow_possibly`]).
const NONE: u64 = u64::MAX;

fn customer_id(n: usize) -> String {
    format!("c{n}")
}

/// A running `rapport serve` on a data directory.
struct Server {
    child: Child,
    channel: Channel,
    stderr: PathBuf,
}

/// Starts the binary on `dir`; `Err` with its stderr when it exits instead of serving.
async fn serve(dir: &Path, config: &Path, logs: &Path) -> Result<Server, String> {
    for attempt in 0..5 {
        let port = free_port();
        let stderr = logs.join(format!("serve-{port}-{attempt}.log"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_rapport"))
            .args(["serve", "--grpc-addr", &format!("127.0.0.1:{port}")])
            .args(["--metrics-addr", "127.0.0.1:0", "--config"])
            .arg(config)
            .arg("--data-dir")
            .arg(dir)
            .env("RUST_LOG", "warn")
            .env("RAPPORT_BUGGIFY", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("rapport starts");
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(2));
        for _ in 0..400 {
            if let Ok(Some(_)) = child.try_wait() {
                let said = std::fs::read_to_string(&stderr).unwrap_or_default();
                if said.contains("cannot listen") {
                    break; // the port was taken meanwhile: another one
                }
                return Err(said);
            }
            // Serving, not only bound (the ports are bound before recovery): a gRPC answer.
            if let Ok(channel) = endpoint.connect().await {
                let mut scoring = ScoringServiceClient::new(channel.clone());
                let probe = scoring.get_customer(pb::GetCustomerRequest {
                    tenant_id: TENANTS[0].into(),
                    customer_id: "probe".into(),
                    as_of: None,
                });
                if let Ok(answered) = tokio::time::timeout(Duration::from_millis(500), probe).await
                {
                    // Only an answer of the service counts: the probe customer is unknown
                    // (NOT_FOUND). A connection torn down by a process that refused its data
                    // directory reads as other codes (Internal, Cancelled), not as serving.
                    if answered.is_ok()
                        || answered.as_ref().unwrap_err().code() == tonic::Code::NotFound
                    {
                        return Ok(Server {
                            child,
                            channel,
                            stderr,
                        });
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    Err("rapport did not come up on any port".to_string())
}

impl Server {
    fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn sigterm(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..400 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!(
            "SIGTERM did not stop the server: {}",
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        );
    }
}

/// One generated call.
#[derive(Clone, Debug)]
enum Op {
    Event {
        tenant: usize,
        customer: usize,
        n: usize,
    },
    Upsert {
        tenant: usize,
        customer: usize,
        version: u64,
        keys: Vec<(String, f64)>,
    },
    ClaimNext {
        tenant: usize,
        agent: usize,
    },
    /// Renews the agent's claims on the customer (only the one in `thread` when named).
    Renew {
        tenant: usize,
        agent: usize,
        customer: String,
        thread: Option<String>,
    },
    /// Releases the agent's claims on the customer (only the one in `thread` when named).
    Release {
        tenant: usize,
        agent: usize,
        customer: String,
        thread: Option<String>,
    },
    /// Registers agent `agent` (or replaces it whole) with definition `version` of
    /// [`agent_def`].
    PutAgent {
        tenant: usize,
        agent: usize,
        version: usize,
    },
    /// Sets a registered agent's status: AWAY, or AVAILABLE again.
    SetStatus {
        tenant: usize,
        agent: usize,
        away: bool,
    },
    Merge {
        tenant: usize,
        customer: usize,
        other: usize,
    },
    /// Sets the tenant's intents to list `list` of [`intent_list`].
    SetIntents {
        tenant: usize,
        list: usize,
    },
}

/// The intent lists rounds switch between: the same names in other orders, one dropped, one
/// added, and none (so ids must survive every change, restarts and snapshots).
fn intent_list(list: usize) -> Vec<pb::Intent> {
    let intent = |name: &str, examples: &[&str]| pb::Intent {
        name: name.into(),
        examples: examples.iter().map(|e| e.to_string()).collect(),
    };
    let order = intent(
        "where_is_my_order",
        &[
            "where is my order",
            "my order has not arrived",
            "order status please",
            "has my order shipped",
        ],
    );
    let refund = intent(
        "refund",
        &[
            "I want a refund",
            "please refund me",
            "money back please",
            "refund my purchase",
        ],
    );
    let praise = intent(
        "praise",
        &[
            "love it, thanks",
            "great service, thank you",
            "so happy with it",
            "thanks, love it",
        ],
    );
    match list % 4 {
        0 => vec![order, refund],
        1 => vec![refund, praise, order],
        2 => vec![praise],
        _ => Vec::new(),
    }
}

/// What a call answered (`Failed`: no acknowledgement, so its effect is unknown).
#[derive(Clone, Debug)]
enum Answer {
    Ok,
    Refused,
    Upserted { applied: bool },
    Claimed(Option<Got>),
    Merged { survivor: String },
    Failed,
}

/// What a ClaimNext answer handed out.
#[derive(Clone, Debug)]
struct Got {
    customer: String,
    /// The conversation's thread (`None`: the whole customer).
    thread: Option<String>,
    /// The conversation's channel (`pb::Channel`; 0 for a whole customer).
    channel: i32,
    /// The conversation's language ("" when none was read, or a whole customer).
    language: String,
}

#[derive(Clone, Debug)]
struct Call {
    op: Op,
    invoked: u64,
    completed: u64,
    answer: Answer,
}

/// The recorded history of a round, on one logical clock.
#[derive(Default)]
struct History {
    clock: AtomicU64,
    calls: Mutex<Vec<Call>>,
}

impl History {
    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::SeqCst)
    }
}

/// The agents registered with RoutingService (at the round's start, in every tenant); the
/// others stay unregistered and claim whole customers.
const REGISTERED: [usize; 2] = [1, 2];
/// How many definitions [`agent_def`] has per agent.
const AGENT_VERSIONS: usize = 3;

/// Definition `version` of registered agent `agent`: fixed languages (agent-1 English, agent-2
/// French and German), capacities of 1 or 2 on two or three channels (agent-1 alone answers
/// Twitter, agent-2 alone Facebook, both Email), outreach for agent-1 only.
fn agent_def(agent: usize, version: usize) -> pb::Agent {
    use pb::Channel::{Email, Facebook, Twitter};
    let cap = |channel: pb::Channel, max: usize| pb::ChannelCapacity {
        channel: channel as i32,
        max_conversations: max as u32,
    };
    let (languages, mut capacity, outreach_capacity) = if agent == 1 {
        (
            vec!["en"],
            vec![cap(Twitter, 1), cap(Email, 1 + version % 2)],
            1,
        )
    } else {
        (
            vec!["de", "fr"],
            vec![cap(Email, 1), cap(Facebook, 1 + version % 2)],
            0,
        )
    };
    if version == 2 {
        capacity[0].max_conversations = 2;
    }
    pb::Agent {
        agent_id: format!("agent-{agent}"),
        status: pb::AgentStatus::Available as i32,
        languages: languages.into_iter().map(str::to_string).collect(),
        intents: Vec::new(),
        segments: Vec::new(),
        capacity,
        outreach_capacity,
        capacity_units: 0,
    }
}

/// An agent's definition as compared: lists in order, no status.
fn normalized(agent: &pb::Agent) -> pb::Agent {
    let mut agent = agent.clone();
    agent.status = 0;
    agent.languages.sort();
    agent.intents.sort();
    agent.segments.sort();
    agent.capacity.sort_by_key(|capacity| capacity.channel);
    agent
}

/// Sometimes a thread of the customer (Renew and Release then act on its conversation only).
fn some_thread(rng: &mut StdRng, customer: usize) -> Option<String> {
    rng.gen_bool(0.3)
        .then(|| format!("{}-t{}", customer_id(customer), rng.gen_range(0..3)))
}

/// Whether event `n` of a customer is an answer (an outbound message in one of its threads).
fn is_answer(n: usize) -> bool {
    n % 10 == 8
}

fn generate(rng: &mut StdRng, agents_of_client: usize) -> Op {
    let tenant = rng.gen_range(0..TENANTS.len());
    let customer = rng.gen_range(0..CUSTOMERS);
    match rng.gen_range(0..100) {
        0..40 => Op::Event {
            tenant,
            customer,
            n: rng.gen_range(0..30),
        },
        40..55 => Op::Upsert {
            tenant,
            customer,
            version: rng.gen_range(1..6),
            keys: (0..rng.gen_range(1..12))
                .map(|k| (format!("k{k}"), f64::from(rng.gen_range(0..100u32))))
                .collect(),
        },
        55..75 => Op::ClaimNext {
            tenant,
            agent: agents_of_client,
        },
        75..83 => Op::Renew {
            tenant,
            agent: agents_of_client,
            customer: customer_id(customer),
            thread: some_thread(rng, customer),
        },
        83..93 => Op::Release {
            tenant,
            agent: agents_of_client,
            customer: customer_id(customer),
            thread: some_thread(rng, customer),
        },
        93..94 => Op::PutAgent {
            tenant,
            agent: REGISTERED[rng.gen_range(0..REGISTERED.len())],
            version: rng.gen_range(0..AGENT_VERSIONS),
        },
        94..95 => Op::SetStatus {
            tenant,
            agent: REGISTERED[rng.gen_range(0..REGISTERED.len())],
            away: rng.gen_bool(0.35),
        },
        95..97 => Op::SetIntents {
            tenant,
            list: rng.gen_range(0..4),
        },
        _ => Op::Merge {
            tenant,
            customer,
            other: rng.gen_range(0..CUSTOMERS),
        },
    }
}

/// The event `n` of a customer: the same content whenever it is sent (a true duplicate), at a
/// time drawn from the month before `T0_MS` whatever the order it is sent in.
fn event_of(tenant: usize, customer: usize, n: usize) -> pb::Interaction {
    let id = customer_id(customer);
    let at_ms = T0_MS - ((n * 7919 + customer * 104_729) % 43_200) as i64 * MINUTE_MS;
    let texts = [
        "Where is my order? Please help",
        "this is terrible, I want a refund",
        "love it, thanks!",
        "",
        // Urgency cues: answers across restarts compare their reasons, so a cue lost by the log
        // or a snapshot shows.
        "third time I ask: cancel my subscription or my lawyer calls you",
        // Languages: the language read at ingest is stored with the event and filtered on, so a
        // language lost by the log or a snapshot shows in the answers and the filters.
        "ma commande n'est toujours pas arrivée, pouvez-vous m'aider s'il vous plaît",
        "Meine Bestellung ist immer noch nicht angekommen, können Sie mir bitte helfen",
    ];
    // Noise: even customers post the same promotion again and again within an hour (a flood once
    // five copies land), on three channels and threads (copies join one matter): the noise state
    // must survive the log and snapshots like every other, so answers after a restart show it.
    let promotion = n % 5 == 2 && customer.is_multiple_of(2);
    let (text, at_ms) = if promotion {
        (
            "Flash sale: half price on every sneaker today only at our shop",
            T0_MS - (customer * 1_000 + (n % 20) * 3) as i64 * MINUTE_MS,
        )
    } else {
        (texts[(n + customer) % texts.len()], at_ms)
    };
    let mut interaction = with_text(
        event(TENANTS[tenant], &id, &format!("{id}-e{n}"), at_ms),
        text,
    );
    interaction.channel = [
        pb::Channel::Twitter,
        pb::Channel::Email,
        pb::Channel::Facebook,
    ][n % 3] as i32;
    interaction.thread_id = format!("{id}-t{}", n % 3);
    if is_answer(n) {
        // An agent's answer in the thread (it ends claims: see [`holds`]).
        interaction = outbound(with_text(
            interaction,
            "Thanks for your patience, we are looking into it right now",
        ));
        interaction.agent_id = "agent-1".into();
    }
    if n % 5 == 4 {
        interaction = kind(interaction, pb::InteractionKind::Purchase);
        interaction.value = 10.0 + n as f64;
        interaction.text.clear();
    }
    interaction
}

async fn run_call(channel: &Channel, op: &Op) -> Answer {
    let mut ingest = IngestServiceClient::new(channel.clone());
    let mut scoring = ScoringServiceClient::new(channel.clone());
    let mut identity = IdentityServiceClient::new(channel.clone());
    let refused_or_failed = |status: tonic::Status| match status.code() {
        tonic::Code::FailedPrecondition
        | tonic::Code::InvalidArgument
        | tonic::Code::NotFound
        | tonic::Code::AlreadyExists => Answer::Refused,
        _ => Answer::Failed,
    };
    let agent = |agent: &usize| format!("agent-{agent}");
    match op {
        Op::Event {
            tenant,
            customer,
            n,
        } => match ingest
            .ingest_batch(pb::IngestBatchRequest {
                interactions: vec![event_of(*tenant, *customer, *n)],
            })
            .await
        {
            Ok(summary) if summary.get_ref().rejected == 0 => Answer::Ok,
            Ok(_) => Answer::Refused,
            Err(status) => refused_or_failed(status),
        },
        Op::Upsert {
            tenant,
            customer,
            version,
            keys,
        } => match identity
            .upsert_customer(pb::UpsertCustomerRequest {
                tenant_id: TENANTS[*tenant].into(),
                customer_id: customer_id(*customer),
                attributes: keys
                    .iter()
                    .map(|(key, value)| {
                        (
                            key.clone(),
                            pb::AttributeValue {
                                value: Some(pb::attribute_value::Value::Number(*value)),
                            },
                        )
                    })
                    .collect(),
                version: *version,
            })
            .await
        {
            Ok(answer) => Answer::Upserted {
                applied: answer.get_ref().applied,
            },
            Err(status) => refused_or_failed(status),
        },
        Op::ClaimNext { tenant, agent: a } => match scoring
            .claim_next(pb::ClaimNextRequest {
                tenant_id: TENANTS[*tenant].into(),
                agent_id: agent(a),
                action: 0,
                min_retention_risk: 0.0,
                ttl_seconds: CLAIM_TTL_SECONDS,
                segment: String::new(),
                channel: 0,
                intent: String::new(),
                language: String::new(),
            })
            .await
        {
            Ok(answer) => {
                let answer = answer.into_inner();
                let conversation = answer.conversation;
                Answer::Claimed(answer.customer.map(|customer| Got {
                    customer: customer.customer_id,
                    thread: conversation.as_ref().map(|c| c.thread_id.clone()),
                    channel: conversation.as_ref().map_or(0, |c| c.channel),
                    language: conversation.map(|c| c.language).unwrap_or_default(),
                }))
            }
            Err(status) => refused_or_failed(status),
        },
        Op::Renew {
            tenant,
            agent: a,
            customer,
            thread,
        }
        | Op::Release {
            tenant,
            agent: a,
            customer,
            thread,
        } => {
            let request = pb::ClaimRequest {
                tenant_id: TENANTS[*tenant].into(),
                agent_id: agent(a),
                customer_id: customer.clone(),
                ttl_seconds: CLAIM_TTL_SECONDS,
                thread_id: thread.clone().unwrap_or_default(),
            };
            let answer = if matches!(op, Op::Renew { .. }) {
                scoring.renew_claim(request).await
            } else {
                scoring.release_claim(request).await
            };
            match answer {
                Ok(_) => Answer::Ok,
                Err(status) => refused_or_failed(status),
            }
        }
        Op::Merge {
            tenant,
            customer,
            other,
        } => match identity
            .merge_customers(pb::MergeCustomersRequest {
                tenant_id: TENANTS[*tenant].into(),
                customer_id: customer_id(*customer),
                other_customer_id: customer_id(*other),
            })
            .await
        {
            Ok(answer) => Answer::Merged {
                survivor: answer.into_inner().customer_id,
            },
            Err(status) => refused_or_failed(status),
        },
        Op::PutAgent {
            tenant,
            agent,
            version,
        } => match RoutingServiceClient::new(channel.clone())
            .put_agent(pb::PutAgentRequest {
                tenant_id: TENANTS[*tenant].into(),
                agent: Some(agent_def(*agent, *version)),
            })
            .await
        {
            Ok(_) => Answer::Ok,
            Err(status) => refused_or_failed(status),
        },
        Op::SetStatus {
            tenant,
            agent,
            away,
        } => {
            let status = if *away {
                pb::AgentStatus::Away
            } else {
                pb::AgentStatus::Available
            };
            match RoutingServiceClient::new(channel.clone())
                .set_agent_status(pb::SetAgentStatusRequest {
                    tenant_id: TENANTS[*tenant].into(),
                    agent_id: format!("agent-{agent}"),
                    status: status as i32,
                })
                .await
            {
                Ok(_) => Answer::Ok,
                Err(status) => refused_or_failed(status),
            }
        }
        Op::SetIntents { tenant, list } => match IntentServiceClient::new(channel.clone())
            .set_intents(pb::SetIntentsRequest {
                tenant_id: TENANTS[*tenant].into(),
                intents: intent_list(*list),
            })
            .await
        {
            Ok(_) => Answer::Ok,
            Err(status) => refused_or_failed(status),
        },
    }
}

/// Each tenant's intents as GetIntents answers them.
async fn intents_in_force(server: &Server) -> Vec<Vec<pb::Intent>> {
    let mut client = IntentServiceClient::new(server.channel.clone());
    let mut out = Vec::new();
    for tenant_id in TENANTS {
        let answer = client
            .get_intents(pb::GetIntentsRequest {
                tenant_id: tenant_id.into(),
            })
            .await
            .unwrap_or_else(|status| panic!("GetIntents failed: {status}"));
        out.push(answer.into_inner().intents);
    }
    out
}

/// TopCustomers filtered by each intent any list names, per tenant, at the pinned time (`None`:
/// refused, the tenant never had the intent).
async fn filtered_by_intent(server: &Server) -> BTreeMap<(usize, String), Option<Vec<String>>> {
    let mut scoring = ScoringServiceClient::new(server.channel.clone());
    let names: std::collections::BTreeSet<String> = (0..4)
        .flat_map(intent_list)
        .map(|intent| intent.name)
        .collect();
    let mut out = BTreeMap::new();
    for (tenant, tenant_id) in TENANTS.iter().enumerate() {
        for name in &names {
            let answer = scoring
                .top_customers(pb::TopCustomersRequest {
                    tenant_id: (*tenant_id).into(),
                    limit: 1000,
                    as_of: Some(ts(AS_OF_MS)),
                    intent: name.clone(),
                    ..Default::default()
                })
                .await;
            let ids = match answer {
                Ok(top) => Some(
                    top.into_inner()
                        .customers
                        .into_iter()
                        .map(|customer| customer.customer_id)
                        .collect(),
                ),
                Err(status) if status.code() == tonic::Code::InvalidArgument => None,
                Err(status) => panic!("TopCustomers by intent failed: {status}"),
            };
            out.insert((tenant, name.clone()), ids);
        }
    }
    out
}

/// The languages the language filters are checked on.
const FILTERED_LANGUAGES: [&str; 3] = ["en", "fr", "de"];

/// TopCustomers filtered by each of [`FILTERED_LANGUAGES`], per tenant, at the pinned time.
async fn filtered_by_language(server: &Server) -> BTreeMap<(usize, String), Vec<String>> {
    let mut scoring = ScoringServiceClient::new(server.channel.clone());
    let mut out = BTreeMap::new();
    for (tenant, tenant_id) in TENANTS.iter().enumerate() {
        for language in FILTERED_LANGUAGES {
            let top = scoring
                .top_customers(pb::TopCustomersRequest {
                    tenant_id: (*tenant_id).into(),
                    limit: 1000,
                    as_of: Some(ts(AS_OF_MS)),
                    language: language.into(),
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|status| panic!("TopCustomers by language failed: {status}"));
            let ids = top
                .into_inner()
                .customers
                .into_iter()
                .map(|customer| customer.customer_id)
                .collect();
            out.insert((tenant, language.to_string()), ids);
        }
    }
    out
}

/// TopCustomers by a language lists exactly the customers whose answer after the restart waits
/// in it (the language each event was read in comes back from the log or a snapshot).
fn check_language_filters(
    after: &BTreeMap<(usize, usize), Option<pb::CustomerScore>>,
    by_language: &BTreeMap<(usize, String), Vec<String>>,
    violations: &mut Vec<String>,
) {
    for ((tenant, language), listed) in by_language {
        let mut waiting: Vec<String> = after
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .filter_map(|(_, score)| score.as_ref())
            .filter(|score| score.waiting_languages.contains(language))
            .map(|score| score.customer_id.clone())
            .collect();
        waiting.sort();
        waiting.dedup();
        let mut listed_sorted = listed.clone();
        listed_sorted.sort();
        if listed_sorted != waiting {
            violations.push(format!(
                "{}: TopCustomers(language {language:?}) lists {listed:?}, but the customers \
                 waiting in it are {waiting:?}",
                TENANTS[*tenant]
            ));
        }
    }
}

/// Filters agree with the scores after the restart: TopCustomers by an intent lists exactly the
/// customers whose answer waits about it (ids restored from the log or a snapshot name the same
/// intents in both), and an intent the tenant never had is refused only when no customer waits
/// about it.
fn check_intent_filters(
    after: &BTreeMap<(usize, usize), Option<pb::CustomerScore>>,
    by_intent: &BTreeMap<(usize, String), Option<Vec<String>>>,
    violations: &mut Vec<String>,
) {
    for ((tenant, name), listed) in by_intent {
        let mut waiting: Vec<String> = after
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .filter_map(|(_, score)| score.as_ref())
            .filter(|score| score.waiting_intents.contains(name))
            .map(|score| score.customer_id.clone())
            .collect();
        waiting.sort();
        waiting.dedup();
        let mut listed_sorted = listed.clone().unwrap_or_default();
        listed_sorted.sort();
        if listed_sorted != waiting {
            violations.push(format!(
                "{}: TopCustomers(intent {name:?}) lists {listed:?}, but the customers waiting \
                 about it are {waiting:?}",
                TENANTS[*tenant]
            ));
        }
    }
}

/// Acknowledged intent lists are durable: after the restart each tenant's list is one that a
/// SetIntents call may have left last: an acknowledged one no acknowledged call certainly
/// followed (invoked after it completed), or one whose answer was lost or came after the stop
/// and no acknowledged call certainly followed; none when no call was acknowledged.
fn check_intents(
    calls: &[Call],
    cut: u64,
    after: &[Vec<pb::Intent>],
    violations: &mut Vec<String>,
) {
    for (tenant, got) in after.iter().enumerate() {
        let sets: Vec<(&Call, usize)> = calls
            .iter()
            .filter_map(|call| match call.op {
                Op::SetIntents { tenant: t, list } if t == tenant => Some((call, list)),
                _ => None,
            })
            .collect();
        let acked = |call: &Call| matches!(call.answer, Answer::Ok) && call.completed <= cut;
        let followed = |call: &Call| {
            sets.iter()
                .any(|(later, _)| acked(later) && later.invoked > call.completed)
        };
        let mut possible: Vec<Vec<pb::Intent>> = sets
            .iter()
            .filter(|(call, _)| !matches!(call.answer, Answer::Refused) && !followed(call))
            .map(|(_, list)| intent_list(*list))
            .collect();
        if !sets.iter().any(|(call, _)| acked(call)) {
            possible.push(Vec::new());
        }
        if !possible.contains(got) {
            let names =
                |list: &[pb::Intent]| list.iter().map(|i| i.name.clone()).collect::<Vec<_>>();
            violations.push(format!(
                "{}: intents after the restart are {:?}, none of the lists SetIntents may have \
                 left last ({:?})",
                TENANTS[tenant],
                names(got),
                possible.iter().map(|list| names(list)).collect::<Vec<_>>()
            ));
        }
    }
}

/// The calls sent together with `op`: for an update, updates of the same customer with other
/// versions and sizes (one setting many keys, one few).
fn burst(op: Op, rng: &mut StdRng) -> Vec<Op> {
    match op {
        Op::Upsert {
            tenant, customer, ..
        } => {
            let base = rng.gen_range(1..50u64);
            (0..3u64)
                .map(|k| Op::Upsert {
                    tenant,
                    customer,
                    version: base + k,
                    keys: (0..if k % 2 == 0 { 40 } else { 1 })
                        .map(|key| (format!("k{key}"), (base * 10 + k) as f64))
                        .collect(),
                })
                .collect()
        }
        _ => vec![op],
    }
}

/// Runs one call, recording it in `history`; returns its answer.
async fn record(channel: &Channel, history: &History, op: Op) -> Answer {
    let invoked = history.tick();
    let answer = tokio::time::timeout(Duration::from_secs(20), run_call(channel, &op))
        .await
        .unwrap_or(Answer::Failed);
    let completed = history.tick();
    history.calls.lock().unwrap().push(Call {
        op,
        invoked,
        completed,
        answer: answer.clone(),
    });
    answer
}

/// Runs `ops` generated calls per client, concurrently, recording each.
async fn load(channel: Channel, history: Arc<History>, seed: u64, ops: usize) {
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let (channel, history) = (channel.clone(), Arc::clone(&history));
        clients.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed ^ ((client as u64 + 1) * 0x9e37_79b9));
            for _ in 0..ops {
                let op = generate(&mut rng, client % AGENTS);
                // Half the updates come as a burst of calls sent together, and half the claims
                // are released at once (a conversation alone or with the agent's other claims on
                // the customer) while another agent asks for work: the races a log must keep in
                // apply order.
                let bursting = rng.gen_bool(0.5);
                let ops = if bursting {
                    burst(op, &mut rng)
                } else {
                    vec![op]
                };
                let answers = futures::future::join_all(
                    ops.iter().map(|op| record(&channel, &history, op.clone())),
                )
                .await;
                if let (true, [Op::ClaimNext { tenant, agent }], [Answer::Claimed(Some(claimed))]) =
                    (bursting, &ops[..], &answers[..])
                {
                    // A conversation is released alone or with the agent's other claims on
                    // the customer.
                    let release = Op::Release {
                        tenant: *tenant,
                        agent: *agent,
                        customer: claimed.customer.clone(),
                        thread: claimed.thread.clone().filter(|_| rng.gen_bool(0.5)),
                    };
                    let other = Op::ClaimNext {
                        tenant: *tenant,
                        agent: (agent + 1) % AGENTS,
                    };
                    futures::future::join(
                        record(&channel, &history, release),
                        record(&channel, &history, other),
                    )
                    .await;
                }
            }
        }));
    }
    for client in clients {
        let _ = client.await;
    }
}

/// An acknowledged merge: (invoked, completed, one side, the other side, survivor).
type Merge = (u64, u64, String, String, String);

/// The acknowledged merges of each tenant, by completion.
struct Merges([Vec<Merge>; TENANTS.len()]);

impl Merges {
    fn of(calls: &[Call]) -> Self {
        let mut merges: [Vec<Merge>; TENANTS.len()] = Default::default();
        for call in calls {
            if let (
                Op::Merge {
                    tenant,
                    customer,
                    other,
                },
                Answer::Merged { survivor },
            ) = (&call.op, &call.answer)
            {
                merges[*tenant].push((
                    call.invoked,
                    call.completed,
                    customer_id(*customer),
                    customer_id(*other),
                    survivor.clone(),
                ));
            }
        }
        for tenant in &mut merges {
            tenant.sort_by_key(|merge| merge.1);
        }
        Self(merges)
    }
}

/// The customer `id` resolves to after the merges acknowledged before logical time `before`.
fn follow(merges: &Merges, tenant: usize, id: &str, before: u64) -> String {
    resolve(merges, tenant, id, |(_, completed, ..)| *completed < before)
}

/// The customer `id` may resolve to by logical time `before`: after every merge begun before it
/// (merges take effect before they are answered), except the merge begun at `except`.
fn follow_possibly(merges: &Merges, tenant: usize, id: &str, before: u64, except: u64) -> String {
    resolve(merges, tenant, id, |(invoked, ..)| {
        *invoked < before && *invoked != except
    })
}

/// The customer `id` resolves to after the merges `counted` picks (in completion order).
fn resolve(merges: &Merges, tenant: usize, id: &str, counted: impl Fn(&Merge) -> bool) -> String {
    let mut groups: HashMap<String, String> = HashMap::new();
    let find = |groups: &HashMap<String, String>, id: &str| -> String {
        let mut id = id.to_string();
        while let Some(next) = groups.get(&id) {
            id = next.clone();
        }
        id
    };
    for merge in &merges.0[tenant] {
        if !counted(merge) {
            continue;
        }
        let (_, _, one, other, survivor) = merge;
        for side in [one, other] {
            // Union by roots, so merges counted out of order never make a cycle.
            let (root, target) = (find(&groups, side), find(&groups, survivor));
            if root != target {
                groups.insert(root, target);
            }
        }
    }
    find(&groups, id)
}

/// A claim certainly held: by `agent` on `customer` (the conversation in `thread`, or the whole
/// customer) from logical time `from` (its answer) until `until` (the first call that may have
/// ended it began; `u64::MAX`: never). `call` is the index of the ClaimNext that took it.
#[derive(Debug)]
struct Hold {
    tenant: usize,
    agent: usize,
    customer: String,
    thread: Option<String>,
    channel: i32,
    call: usize,
    from: u64,
    until: u64,
}

impl Hold {
    fn what(&self) -> String {
        match &self.thread {
            Some(thread) => format!(
                "{} thread {thread:?} (channel {})",
                self.customer, self.channel
            ),
            None => format!("{} (whole)", self.customer),
        }
    }
}

/// Whether two claims' work overlaps: a whole customer overlaps everything of it, two
/// conversations only in the same thread (an empty thread id names no thread we know: not
/// counted).
fn overlap(one: &Option<String>, other: &Option<String>) -> bool {
    match (one, other) {
        (None, _) | (_, None) => true,
        (Some(a), Some(b)) => !a.is_empty() && a == b,
    }
}

/// Every claim an answer proves, with when it may have ended: the agent's release or a failed
/// renew on the customer (whatever thread they name), an answer (outbound event) to the
/// customer, or a merge that joins it with a customer any other claim may be on (one holder of
/// overlapping work survives).
fn holds(calls: &[Call]) -> Vec<Hold> {
    let merges = &Merges::of(calls);
    let mut out = Vec::new();
    for (index, call) in calls.iter().enumerate() {
        let (Op::ClaimNext { tenant, agent }, Answer::Claimed(Some(got))) =
            (&call.op, &call.answer)
        else {
            continue;
        };
        let customer = &got.customer;
        let mut until = u64::MAX;
        // Any call not over before the claim began may come after it (agents share ids).
        for later in calls
            .iter()
            .filter(|c| c.completed > call.invoked && !std::ptr::eq(*c, call))
        {
            let ends = match (&later.op, &later.answer) {
                (
                    Op::Release {
                        tenant: t,
                        agent: a,
                        customer: c,
                        ..
                    },
                    _,
                )
                | (
                    Op::Renew {
                        tenant: t,
                        agent: a,
                        customer: c,
                        ..
                    },
                    Answer::Refused | Answer::Failed,
                ) => {
                    t == tenant
                        && a == agent
                        // The ids may resolve alike at any moment of the call.
                        && follow_possibly(merges, *t, c, later.completed, NONE)
                            == follow_possibly(merges, *t, customer, later.completed, NONE)
                }
                // An answer in one of the customer's threads (whether that thread still waits
                // is not modelled: any answer may end any claim on the customer).
                (
                    Op::Event {
                        tenant: t,
                        customer: c,
                        n,
                    },
                    _,
                ) => {
                    t == tenant
                        && is_answer(*n)
                        && follow_possibly(merges, *t, &customer_id(*c), later.completed, NONE)
                            == follow_possibly(merges, *t, customer, later.completed, NONE)
                }
                (
                    Op::Merge {
                        tenant: t,
                        customer: x,
                        other: y,
                    },
                    _,
                ) if t == tenant => {
                    // A merge that may touch this claim's customer while another claim may be
                    // on the merged customer: one of overlapping claims survives.
                    let mine = follow_possibly(merges, *t, customer, later.completed, NONE);
                    [x, y].iter().any(|side| {
                        follow_possibly(merges, *t, &customer_id(**side), later.completed, NONE)
                            == mine
                    }) && possibly_held(calls, merges, *t, index, &mine, later)
                }
                _ => false,
            };
            if ends {
                until = until.min(later.invoked);
            }
        }
        out.push(Hold {
            tenant: *tenant,
            agent: *agent,
            customer: customer.clone(),
            thread: got.thread.clone(),
            channel: got.channel,
            call: index,
            from: call.completed,
            until,
        });
    }
    out
}

/// Whether a claim other than the one `calls[own]` took may be on `side` when `merge` runs: one
/// claimed before the merge ended and not certainly released before the merge began.
fn possibly_held(
    calls: &[Call],
    merges: &Merges,
    tenant: usize,
    own: usize,
    side: &str,
    merge: &Call,
) -> bool {
    calls.iter().enumerate().any(|(index, claim)| {
        let (
            Op::ClaimNext {
                tenant: t,
                agent: a,
            },
            Answer::Claimed(Some(got)),
        ) = (&claim.op, &claim.answer)
        else {
            return false;
        };
        *t == tenant
            && index != own
            && claim.invoked < merge.completed
            && follow_possibly(merges, tenant, &got.customer, merge.completed, NONE) == side
            && !calls.iter().any(|release| {
                matches!(&release.op, Op::Release { tenant: rt, agent: ra, customer, thread }
                    if *rt == tenant && ra == a && release.invoked > claim.completed
                        && release.completed < merge.invoked
                        && (thread.is_none() || *thread == got.thread)
                        && follow(merges, tenant, customer, release.invoked)
                            == follow(merges, tenant, &got.customer, release.invoked))
            })
    })
}

/// Exclusive work: no ClaimNext answered work (a conversation or a whole customer) overlapping
/// work any agent (itself included) certainly held for the whole call.
fn check_exclusive(calls: &[Call], violations: &mut Vec<String>) {
    let merges = &Merges::of(calls);
    let holds = holds(calls);
    for (index, call) in calls.iter().enumerate() {
        let (Op::ClaimNext { tenant, agent }, Answer::Claimed(Some(got))) =
            (&call.op, &call.answer)
        else {
            continue;
        };
        let customer = &got.customer;
        for hold in &holds {
            if hold.tenant == *tenant
                && hold.call != index
                && hold.from < call.invoked
                && hold.until > call.completed
                && overlap(&hold.thread, &got.thread)
                && follow(merges, *tenant, &hold.customer, call.invoked)
                    == follow(merges, *tenant, customer, call.invoked)
                && follow(merges, *tenant, &hold.customer, call.completed + 1)
                    == follow(merges, *tenant, customer, call.completed + 1)
            {
                violations.push(format!(
                    "{} {customer} (thread {:?}) handed to agent-{agent} (calls {}..{}) while \
                     agent-{} held {} (from {})",
                    TENANTS[*tenant],
                    got.thread,
                    call.invoked,
                    call.completed,
                    hold.agent,
                    hold.what(),
                    hold.from
                ));
            }
        }
    }
}

/// The definitions of `agent` in `tenant` that may be in force at some moment from `from` to
/// `to`: put by a call begun before `to`, not refused, and not certainly replaced (by an
/// acknowledged put) before `from`.
fn defs_in_force(
    calls: &[Call],
    tenant: usize,
    agent: usize,
    from: u64,
    to: u64,
) -> Vec<pb::Agent> {
    let puts: Vec<(&Call, usize)> = calls
        .iter()
        .filter_map(|call| match call.op {
            Op::PutAgent {
                tenant: t,
                agent: a,
                version,
            } if t == tenant && a == agent => Some((call, version)),
            _ => None,
        })
        .collect();
    puts.iter()
        .filter(|(put, _)| {
            !matches!(put.answer, Answer::Refused)
                && put.invoked < to
                && !puts.iter().any(|(later, _)| {
                    matches!(later.answer, Answer::Ok)
                        && later.invoked > put.completed
                        && later.completed < from
                })
        })
        .map(|(_, version)| agent_def(agent, *version))
        .collect()
}

/// Whether `agent` of `tenant` was certainly AWAY from `from` to `to`: an acknowledged
/// SetAgentStatus(AWAY) completed before, and no status change or put that may come after it
/// began before `to`.
fn certainly_away(calls: &[Call], tenant: usize, agent: usize, from: u64, to: u64) -> bool {
    calls.iter().any(|away| {
        matches!(away.op, Op::SetStatus { tenant: t, agent: a, away: true } if t == tenant && a == agent)
            && matches!(away.answer, Answer::Ok)
            && away.completed < from
            && !calls.iter().any(|other| match other.op {
                Op::SetStatus {
                    tenant: t,
                    agent: a,
                    away: false,
                }
                | Op::PutAgent {
                    tenant: t,
                    agent: a,
                    ..
                } => {
                    t == tenant
                        && a == agent
                        && !matches!(other.answer, Answer::Refused)
                        && other.invoked < to
                        && other.completed > away.invoked
                }
                _ => false,
            })
    })
}

/// Routing: every ClaimNext answer to an agent fits it.
/// - Capacity: its claims on the conversation's channel (or whole customers, for outreach)
///   certainly live for the whole call, plus this one, are within the largest capacity that
///   may be in force during the call (a channel no definition lists: none);
/// - skills: a conversation is in one of the agent's languages (when it has some and one was
///   read); the optional skills (intents, segments) have lapsed for the events of 2026;
/// - an agent never registered gets whole customers only, and an agent certainly AWAY nothing
///   (FAILED_PRECONDITION).
fn check_routing(calls: &[Call], violations: &mut Vec<String>) {
    let holds = holds(calls);
    for (index, call) in calls.iter().enumerate() {
        // An agent certainly AWAY is refused (FAILED_PRECONDITION), not told nothing is free.
        if let (Op::ClaimNext { tenant, agent }, Answer::Claimed(None)) = (&call.op, &call.answer) {
            if certainly_away(calls, *tenant, *agent, call.invoked, call.completed) {
                violations.push(format!(
                    "{} agent-{agent} certainly AWAY was answered \"nothing free\" (calls {}..{}) \
                     instead of FAILED_PRECONDITION",
                    TENANTS[*tenant], call.invoked, call.completed
                ));
            }
        }
        let (Op::ClaimNext { tenant, agent }, Answer::Claimed(Some(got))) =
            (&call.op, &call.answer)
        else {
            continue;
        };
        let (tenant, agent) = (*tenant, *agent);
        let at = format!(
            "{} agent-{agent} got {} thread {:?} (channel {}, language {:?}; calls {}..{})",
            TENANTS[tenant],
            got.customer,
            got.thread,
            got.channel,
            got.language,
            call.invoked,
            call.completed
        );
        if certainly_away(calls, tenant, agent, call.invoked, call.completed) {
            violations.push(format!("{at} while certainly AWAY"));
        }
        let defs = defs_in_force(calls, tenant, agent, call.invoked, call.completed);
        if defs.is_empty() {
            if got.thread.is_some() {
                violations.push(format!(
                    "{at}: a conversation for an agent never registered"
                ));
            }
            continue;
        }
        let whole = got.thread.is_none();
        let capacity = defs
            .iter()
            .map(|def| {
                if whole {
                    def.outreach_capacity
                } else {
                    def.capacity
                        .iter()
                        .filter(|c| c.channel == got.channel)
                        .map(|c| c.max_conversations)
                        .sum()
                }
            })
            .max()
            .unwrap_or(0) as usize;
        let held: Vec<&Hold> = holds
            .iter()
            .filter(|hold| {
                hold.tenant == tenant
                    && hold.agent == agent
                    && hold.call != index
                    && hold.from < call.invoked
                    && hold.until > call.completed
                    && hold.thread.is_none() == whole
                    && (whole || hold.channel == got.channel)
            })
            .collect();
        if held.len() + 1 > capacity {
            violations.push(format!(
                "{at}: over capacity {capacity} (it certainly held {:?})",
                held.iter()
                    .map(|hold| format!("{} from {}", hold.what(), hold.from))
                    .collect::<Vec<_>>()
            ));
        }
        let languages: Vec<&String> = defs.iter().flat_map(|def| &def.languages).collect();
        if !whole
            && !got.language.is_empty()
            && !defs.iter().any(|def| def.languages.is_empty())
            && !languages.contains(&&got.language)
        {
            violations.push(format!("{at}: not in its languages {languages:?}"));
        }
    }
}

/// Every customer's full answer at the pinned time (`None`: not found).
async fn answers(server: &Server) -> BTreeMap<(usize, usize), Option<pb::CustomerScore>> {
    let mut scoring = ScoringServiceClient::new(server.channel.clone());
    let mut out = BTreeMap::new();
    for (tenant, tenant_id) in TENANTS.iter().enumerate() {
        for customer in 0..CUSTOMERS {
            let answer = scoring
                .get_customer(pb::GetCustomerRequest {
                    tenant_id: (*tenant_id).into(),
                    customer_id: customer_id(customer),
                    as_of: Some(ts(AS_OF_MS)),
                })
                .await;
            let answer = match answer {
                Ok(score) => Some(score.into_inner()),
                Err(status) if status.code() == tonic::Code::NotFound => None,
                Err(status) => panic!(
                    "GetCustomer failed: {status}; the server said: {}",
                    std::fs::read_to_string(&server.stderr).unwrap_or_default()
                ),
            };
            out.insert((tenant, customer), answer);
        }
    }
    out
}

/// Acknowledged means durable, checked against the reference after a restart (`cut`: the
/// logical time of the stop; calls still running then are in flight).
fn check_durable(
    calls: &[Call],
    cut: u64,
    after: &BTreeMap<(usize, usize), Option<pb::CustomerScore>>,
    violations: &mut Vec<String>,
) {
    let end = u64::MAX;
    let merges = &Merges::of(calls);
    // A merge whose answer was lost may or may not have happened: claims in that tenant may
    // have moved, so only their exclusivity is checked.
    let mut merges_in_doubt = [false; TENANTS.len()];
    for tenant in 0..TENANTS.len() {
        // Events: acknowledged ones counted, never more than were sent.
        let mut acked: HashMap<String, HashSet<String>> = HashMap::new();
        let mut sent: HashMap<String, HashSet<String>> = HashMap::new();
        let mut in_flight: HashSet<String> = HashSet::new();
        for call in calls {
            let in_tenant = match &call.op {
                Op::Event { tenant: t, .. }
                | Op::Upsert { tenant: t, .. }
                | Op::Merge { tenant: t, .. } => *t == tenant,
                _ => false,
            };
            if !in_tenant {
                continue;
            }
            if matches!(call.answer, Answer::Failed) || call.completed > cut {
                match &call.op {
                    Op::Event { customer, .. } | Op::Upsert { customer, .. } => {
                        in_flight.insert(follow(merges, tenant, &customer_id(*customer), end));
                    }
                    Op::Merge {
                        customer, other, ..
                    } => {
                        in_flight.insert(follow(merges, tenant, &customer_id(*customer), end));
                        in_flight.insert(follow(merges, tenant, &customer_id(*other), end));
                    }
                    _ => {}
                }
            }
            if let (Op::Merge { .. }, Answer::Failed) = (&call.op, &call.answer) {
                merges_in_doubt[tenant] = true;
            }
            if let Op::Event { customer, n, .. } = &call.op {
                let group = follow(merges, tenant, &customer_id(*customer), end);
                let id = format!("{}-e{n}", customer_id(*customer));
                sent.entry(group.clone()).or_default().insert(id.clone());
                if matches!(call.answer, Answer::Ok) && call.completed <= cut {
                    acked.entry(group).or_default().insert(id);
                }
            }
        }
        for customer in 0..CUSTOMERS {
            let id = customer_id(customer);
            let group = follow(merges, tenant, &id, end);
            if group != id {
                continue; // checked under the survivor
            }
            let answer = after.get(&(tenant, customer)).cloned().flatten();
            let total = answer.as_ref().map_or(0, |a| a.interactions_total) as usize;
            let (low, high) = (
                acked.get(&group).map_or(0, HashSet::len),
                sent.get(&group).map_or(0, HashSet::len),
            );
            // A merge in flight may have joined it with another customer: no upper bound.
            if total < low || (total > high && !in_flight.contains(&group)) {
                violations.push(format!(
                    "{} {group}: {total} interactions after the restart, acknowledged {low}, \
                     sent {high}",
                    TENANTS[tenant]
                ));
            }
            // Attributes: the applied updates folded in version order (customers no merge or
            // in-flight call touched).
            let merged = calls.iter().any(|call| {
                matches!((&call.op, &call.answer), (Op::Merge { tenant: t, customer: x, other: y }, Answer::Merged { .. } | Answer::Failed)
                    if *t == tenant && (*x == customer || *y == customer))
            });
            // (GetCustomer answers NOT_FOUND for a customer with attributes but no event.)
            if merged || in_flight.contains(&group) || answer.is_none() {
                continue;
            }
            let mut applied: Vec<(u64, &Vec<(String, f64)>)> = calls
                .iter()
                .filter_map(|call| match (&call.op, &call.answer) {
                    (
                        Op::Upsert {
                            tenant: t,
                            customer: c,
                            version,
                            keys,
                        },
                        Answer::Upserted { applied: true },
                    ) if *t == tenant && *c == customer => Some((*version, keys)),
                    _ => None,
                })
                .collect();
            applied.sort_by_key(|(version, _)| *version);
            let mut expected: BTreeMap<String, f64> = BTreeMap::new();
            for (_, keys) in applied {
                for (key, value) in keys {
                    expected.insert(key.clone(), *value);
                }
            }
            let actual: BTreeMap<String, f64> = answer
                .map(|a| a.attributes)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(key, value)| match value.value {
                    Some(pb::attribute_value::Value::Number(n)) => Some((key, n)),
                    _ => None,
                })
                .collect();
            if actual != expected {
                violations.push(format!(
                    "{} {id}: attributes {actual:?} after the restart, the applied updates in \
                     version order give {expected:?}",
                    TENANTS[tenant]
                ));
            }
        }
    }
    // Whole-customer claims certainly held at the stop are held after it (conversations: see
    // [`check_agents`]).
    for hold in holds(calls) {
        if hold.from >= cut
            || hold.until <= cut
            || merges_in_doubt[hold.tenant]
            || hold.thread.is_some()
        {
            continue;
        }
        let group = follow(merges, hold.tenant, &hold.customer, end);
        let customer: usize = group[1..].parse().unwrap();
        let held_by = after
            .get(&(hold.tenant, customer))
            .cloned()
            .flatten()
            .map(|a| a.claimed_by)
            .unwrap_or_default();
        if held_by != format!("agent-{}", hold.agent) {
            violations.push(format!(
                "{} {group}: claimed by {held_by:?} after the restart; agent-{} held it (claim \
                 answered at {}, not released)",
                TENANTS[hold.tenant], hold.agent, hold.from
            ));
        }
    }
}

/// Every tenant's ListAgents answer (`last_claimed_at` cleared: not kept over a restart).
async fn agents_listed(server: &Server) -> Vec<Vec<pb::AgentState>> {
    let mut routing = RoutingServiceClient::new(server.channel.clone());
    let mut out = Vec::new();
    for tenant_id in TENANTS {
        let answer = routing
            .list_agents(pb::ListAgentsRequest {
                tenant_id: tenant_id.into(),
            })
            .await
            .unwrap_or_else(|status| panic!("ListAgents failed: {status}"));
        let mut agents = answer.into_inner().agents;
        for agent in &mut agents {
            agent.last_claimed_at = None;
        }
        out.push(agents);
    }
    out
}

/// Agents after the restart (`cut`: the logical time of the stop):
/// - acknowledged means durable: every agent whose put was acknowledged is listed, none that
///   was never put; its definition is one a put may have left last (an acknowledged one no
///   acknowledged put certainly followed, or one whose answer was lost or came after the stop),
///   its status one a put or SetAgentStatus may have left last;
/// - its load per channel (and outreach) is within the largest capacity any put gave it;
/// - every conversation claim certainly held at the stop still counts in its load.
fn check_agents(
    calls: &[Call],
    cut: u64,
    listed: &[Vec<pb::AgentState>],
    violations: &mut Vec<String>,
) {
    let holds = holds(calls);
    for (tenant, states) in listed.iter().enumerate() {
        // A merge whose answer was lost may have ended a claim without the model knowing.
        let merges_in_doubt = calls.iter().any(|call| {
            matches!((&call.op, &call.answer), (Op::Merge { tenant: t, .. }, Answer::Failed) if *t == tenant)
        });
        for agent in 0..AGENTS {
            let id = format!("agent-{agent}");
            let at = format!("{} {id}", TENANTS[tenant]);
            let changes: Vec<(&Call, Option<usize>, bool)> = calls
                .iter()
                .filter_map(|call| match call.op {
                    Op::PutAgent {
                        tenant: t,
                        agent: a,
                        version,
                    } if t == tenant && a == agent => Some((call, Some(version), false)),
                    Op::SetStatus {
                        tenant: t,
                        agent: a,
                        away,
                    } if t == tenant && a == agent => Some((call, None, away)),
                    _ => None,
                })
                .filter(|(call, ..)| !matches!(call.answer, Answer::Refused))
                .collect();
            let acked = |call: &Call| matches!(call.answer, Answer::Ok) && call.completed <= cut;
            let put_acked = changes
                .iter()
                .any(|(call, version, _)| version.is_some() && acked(call));
            // Puts only replace puts; statuses are set by both.
            let followed = |call: &Call, puts_only: bool| {
                changes.iter().any(|(later, version, _)| {
                    acked(later)
                        && later.invoked > call.completed
                        && (!puts_only || version.is_some())
                })
            };
            let state = states
                .iter()
                .find(|state| state.agent.as_ref().is_some_and(|a| a.agent_id == id));
            let Some(state) = state else {
                if put_acked {
                    violations.push(format!(
                        "{at}: not listed after the restart, though a put was acknowledged"
                    ));
                }
                continue;
            };
            let got = state.agent.clone().unwrap_or_default();
            let defs: Vec<pb::Agent> = changes
                .iter()
                .filter_map(|(call, version, _)| {
                    version
                        .filter(|_| !followed(call, true))
                        .map(|version| normalized(&agent_def(agent, version)))
                })
                .collect();
            if !defs.contains(&normalized(&got)) {
                violations.push(format!(
                    "{at}: listed after the restart as {got:?}, none of the definitions a put may \
                     have left last ({defs:?})"
                ));
            }
            let statuses: Vec<i32> = changes
                .iter()
                .filter(|(call, ..)| !followed(call, false))
                .map(|(_, version, away)| {
                    if version.is_none() && *away {
                        pb::AgentStatus::Away as i32
                    } else {
                        pb::AgentStatus::Available as i32
                    }
                })
                .collect();
            if !statuses.contains(&got.status) {
                violations.push(format!(
                    "{at}: status {} after the restart, none of those a call may have left last \
                     ({statuses:?})",
                    got.status
                ));
            }
            // Load within the largest capacity ever put.
            let ever: Vec<pb::Agent> = changes
                .iter()
                .filter_map(|(_, version, _)| version.map(|v| agent_def(agent, v)))
                .collect();
            for load in &state.load {
                let most = ever
                    .iter()
                    .flat_map(|def| &def.capacity)
                    .filter(|c| c.channel == load.channel)
                    .map(|c| c.max_conversations)
                    .max()
                    .unwrap_or(0);
                if load.max_conversations > most {
                    violations.push(format!(
                        "{at}: load {} on channel {} after the restart, above any capacity put \
                         ({most})",
                        load.max_conversations, load.channel
                    ));
                }
            }
            let most = ever
                .iter()
                .map(|def| def.outreach_capacity)
                .max()
                .unwrap_or(0);
            if state.outreach_load > most {
                violations.push(format!(
                    "{at}: outreach load {} after the restart, above any outreach capacity put \
                     ({most})",
                    state.outreach_load
                ));
            }
            // Conversation claims certainly held at the stop still count.
            if merges_in_doubt {
                continue;
            }
            let mut certain: BTreeMap<i32, Vec<String>> = BTreeMap::new();
            for hold in &holds {
                if hold.tenant == tenant
                    && hold.agent == agent
                    && hold.thread.is_some()
                    && hold.from < cut
                    && hold.until > cut
                {
                    certain.entry(hold.channel).or_default().push(format!(
                        "{} from {}",
                        hold.what(),
                        hold.from
                    ));
                }
            }
            for (channel, held) in certain {
                let load = state
                    .load
                    .iter()
                    .find(|load| load.channel == channel)
                    .map_or(0, |load| load.max_conversations);
                if (load as usize) < held.len() {
                    violations.push(format!(
                        "{at}: load {load} on channel {channel} after the restart; it certainly \
                         held {held:?} at the stop"
                    ));
                }
            }
        }
        for state in states {
            let id = state
                .agent
                .as_ref()
                .map(|a| a.agent_id.clone())
                .unwrap_or_default();
            if !(0..AGENTS).any(|agent| format!("agent-{agent}") == id) {
                violations.push(format!("{}: unknown agent {id:?} listed", TENANTS[tenant]));
            }
        }
    }
}

/// How a round ends.
#[derive(Clone, Copy, Debug)]
enum Stop {
    Sigterm,
    KillAtRest,
    KillUnderLoad,
    DamageAtRest,
    SecondProcess,
}

/// The files of a data directory a damage may hit (not the lock).
fn data_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            name == "snapshot.bin" || (name.starts_with("wal") && name.ends_with(".log"))
        })
        .collect();
    files.sort();
    files
}

/// The byte offsets where the records of a framed file start (after its 8-byte header).
fn record_starts(data: &[u8]) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut at = 8;
    while at + 8 <= data.len() {
        starts.push(at);
        let len = u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        at += 8 + len;
    }
    starts
}

/// Applies one damage from the catalogue; returns what it did. The active log's tail is never
/// cut or flipped: that is what a crash leaves, and it may lose the last records.
fn damage(dir: &Path, rng: &mut StdRng) -> String {
    let files = data_files(dir);
    let file = files[rng.gen_range(0..files.len())].clone();
    let name = file.file_name().unwrap().to_string_lossy().to_string();
    let data = std::fs::read(&file).unwrap();
    let starts = record_starts(&data);
    let active = name == "wal.log";
    match rng.gen_range(0..6) {
        0 => {
            std::fs::write(&file, b"").unwrap();
            format!("emptied {name}")
        }
        1 if !active => {
            let at = rng.gen_range(0..data.len().clamp(1, 8));
            std::fs::write(&file, &data[..at]).unwrap();
            format!("cut {name} at byte {at} (in its header)")
        }
        2 if !active && starts.len() > 1 => {
            let at = starts[rng.gen_range(1..starts.len())];
            std::fs::write(&file, &data[..at]).unwrap();
            format!("cut {name} at byte {at} (a record boundary)")
        }
        3 if !(active && starts.len() < 2) => {
            // A bit flip anywhere (the active log: not in its last record).
            let limit = if active {
                *starts.last().unwrap()
            } else {
                data.len()
            };
            let at = rng.gen_range(0..limit.max(1));
            let mut flipped = data.clone();
            if let Some(byte) = flipped.get_mut(at) {
                *byte ^= 1 << rng.gen_range(0..8);
            }
            std::fs::write(&file, &flipped).unwrap();
            format!("flipped a bit of {name} at byte {at}")
        }
        4 if name.starts_with("wal-") => {
            let renamed = dir.join("wal-00000000000000000000.log");
            std::fs::rename(&file, &renamed).unwrap();
            format!("renamed {name} to segment 0")
        }
        _ => {
            std::fs::remove_file(&file).unwrap();
            format!("deleted {name}")
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// One round: load, a stop, the checks. Returns the violations found.
async fn round(seed: u64, ops: usize, work: &Path) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = work.join("data");
    let _ = std::fs::remove_dir_all(&dir);
    let config = work.join("rapport.toml");
    std::fs::write(
        &config,
        "[durability]\nsnapshot_interval_seconds = 1\n[server]\nmax_future_skew_seconds = 3600\n",
    )
    .unwrap();
    let stops = [
        Stop::Sigterm,
        Stop::KillAtRest,
        Stop::KillUnderLoad,
        Stop::DamageAtRest,
        Stop::SecondProcess,
    ];
    let stop = stops[rng.gen_range(0..stops.len())];
    let mut violations = Vec::new();
    let server = serve(&dir, &config, work)
        .await
        .expect("a fresh directory starts");
    let history = Arc::new(History::default());
    // The registered agents, in every tenant (recorded like every call).
    for tenant in 0..TENANTS.len() {
        for agent in REGISTERED {
            let put = Op::PutAgent {
                tenant,
                agent,
                version: (tenant + agent) % AGENT_VERSIONS,
            };
            record(&server.channel, &history, put).await;
        }
    }
    let mut running = tokio::spawn(load(
        server.channel.clone(),
        Arc::clone(&history),
        rng.gen(),
        ops,
    ));
    let mut before = None;
    match stop {
        Stop::KillUnderLoad | Stop::SecondProcess => {
            // Let part of the load through, then stop or intrude in the middle of it.
            while history.clock.load(Ordering::SeqCst) < (CLIENTS * ops) as u64 / 2 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if let Stop::SecondProcess = stop {
                match serve(&dir, &config, work).await {
                    Ok(second) => {
                        second.kill9();
                        violations.push(
                            "a second process served the data directory of a running one"
                                .to_string(),
                        );
                    }
                    Err(said) if !said.contains("in use") => violations.push(format!(
                        "a second process on a directory in use failed without saying so: {said}"
                    )),
                    Err(_) => {}
                }
                (&mut running).await.unwrap();
                before = Some((answers(&server).await, agents_listed(&server).await));
            }
        }
        _ => {
            (&mut running).await.unwrap();
            before = Some((answers(&server).await, agents_listed(&server).await));
        }
    }
    let cut = history.tick();
    match stop {
        Stop::Sigterm => server.sigterm(),
        _ => server.kill9(),
    }
    let mut what = String::new();
    if let Stop::DamageAtRest = stop {
        let intact = work.join("intact");
        copy_dir(&dir, &intact);
        what = damage(&dir, &mut rng);
        match serve(&dir, &config, work).await {
            Ok(server) => {
                // Started: it must have lost nothing.
                let after = (answers(&server).await, agents_listed(&server).await);
                if Some(&after) != before.as_ref() {
                    violations.push(format!(
                        "after damage ({what}) the start succeeded with different answers"
                    ));
                }
                server.kill9();
            }
            Err(said) => {
                let named = data_files(&intact)
                    .iter()
                    .any(|file| said.contains(&*file.file_name().unwrap().to_string_lossy()));
                if !named {
                    violations.push(format!(
                        "damage ({what}) refused the start without naming the file: {said}"
                    ));
                }
            }
        }
        copy_dir(&intact, &dir);
    }
    // Under load the clients go on against the stopped server: their calls fail (in flight).
    if !running.is_finished()
        && tokio::time::timeout(Duration::from_secs(60), &mut running)
            .await
            .is_err()
    {
        running.abort();
    }
    let server = serve(&dir, &config, work)
        .await
        .expect("the directory restarts");
    let after = answers(&server).await;
    let intents_after = intents_in_force(&server).await;
    let by_intent = filtered_by_intent(&server).await;
    let by_language = filtered_by_language(&server).await;
    let agents_after = agents_listed(&server).await;
    server.kill9();
    let calls = history.calls.lock().unwrap().clone();
    let count = |matches: fn(&Call) -> bool| calls.iter().filter(|call| matches(call)).count();
    eprintln!(
        "round {seed}: stop {stop:?} {what}; {} calls, {} acknowledged, {} claims, {} merges, {} \
         applied updates, {} conversations claimed",
        calls.len(),
        count(|c| !matches!(c.answer, Answer::Failed)),
        count(|c| matches!(c.answer, Answer::Claimed(Some(_)))),
        count(|c| matches!(c.answer, Answer::Merged { .. })),
        count(|c| matches!(c.answer, Answer::Upserted { applied: true })),
        count(|c| matches!(&c.answer, Answer::Claimed(Some(got)) if got.thread.is_some())),
    );
    check_exclusive(&calls, &mut violations);
    check_durable(&calls, cut, &after, &mut violations);
    check_intents(&calls, cut, &intents_after, &mut violations);
    check_intent_filters(&after, &by_intent, &mut violations);
    check_language_filters(&after, &by_language, &mut violations);
    check_routing(&calls, &mut violations);
    check_agents(&calls, cut, &agents_after, &mut violations);
    if let Some((before, agents_before)) = before {
        if agents_before != agents_after {
            violations.push(format!(
                "ListAgents changed across the restart\n  before {agents_before:?}\n  after  \
                 {agents_after:?}"
            ));
        }
        for (key, answer) in &before {
            if after.get(key) != Some(answer) {
                violations.push(format!(
                    "{} {}: the answer changed across the restart\n  before {answer:?}\n  after  \
                     {:?}",
                    TENANTS[key.0],
                    customer_id(key.1),
                    after.get(key)
                ));
            }
        }
    }
    if !violations.is_empty() || std::env::var_os("RAPPORT_CHECK_HISTORY").is_some() {
        // The history, for the person reading the failure.
        let mut sorted = calls.clone();
        sorted.sort_by_key(|call| call.invoked);
        for call in sorted {
            eprintln!(
                "  {:>4}..{:<4} {:?} -> {:?}",
                call.invoked, call.completed, call.op, call.answer
            );
        }
    }
    violations
        .into_iter()
        .map(|v| format!("[round seed {seed}, stop {stop:?} {what}] {v}"))
        .collect()
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_service_keeps_its_promises_under_generated_histories() {
    let seed = env_number(
        "RAPPORT_CHECK_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    let rounds = env_number("RAPPORT_CHECK_ROUNDS", 12);
    let ops = env_number("RAPPORT_CHECK_OPS", 60) as usize;
    eprintln!(
        "model_check seed {seed}, {rounds} rounds of {CLIENTS}x{ops} calls (replay: \
         RAPPORT_CHECK_SEED={seed} cargo test --test model_check)"
    );
    let work = tempfile::tempdir().unwrap();
    for round_index in 0..rounds {
        let round_seed = seed.wrapping_add(round_index);
        let violations = round(round_seed, ops, work.path()).await;
        assert!(
            violations.is_empty(),
            "model_check seed {seed} (round seed {round_seed}): {} violation(s):\n{}",
            violations.len(),
            violations.join("\n")
        );
    }
}
