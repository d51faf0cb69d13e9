//! `rapport simulate`: seeded, realistic interaction traffic against a running server.
//!
//! Customers have personas: loyal (regular cadence, positive, buys), regular (neutral), churning
//! (cadence slowing and sentiment souring as the run goes on) and angry-in-public (negative mentions
//! on public channels, many followers). The brand replies to most inbound messages after a delay,
//! outbound in the same thread. Events are stamped with the current time; `--backfill-days` first
//! sends that many days of history. Everything is sent through client-streaming `Ingest` calls,
//! one per tick, and progress is printed on stderr once a second. With `--agents`, each tenant
//! also has that many agents registered (RoutingService) who take conversations with ClaimNext,
//! one call per agent per tick, and answer each in its thread after a few seconds.

use crate::api::convert::to_timestamp;
use crate::engine::now_ms;
use crate::pb;
use crate::pb::ingest_service_client::IngestServiceClient;
use clap::Args;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Options of `simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub server: crate::cli::ServerArgs,
    /// Number of tenants (named tenant-1, tenant-2, ...; tenant-1 is also "acme").
    #[arg(long, default_value_t = 2)]
    pub tenants: u32,
    /// Customers per tenant.
    #[arg(long, default_value_t = 200)]
    pub customers: u32,
    /// Live events per second (all tenants).
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Stop after this many seconds [default: run until Ctrl-C].
    #[arg(long)]
    pub duration_seconds: Option<u64>,
    /// Before the live traffic, send this many days of history.
    #[arg(long, default_value_t = 0)]
    pub backfill_days: u32,
    /// Random seed: the same seed gives the same customers and the same event sequence.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Agents per tenant (`agent-1`, ...), registered for every channel (two conversations each)
    /// and one outreach customer, claiming work and answering it.
    #[arg(long, default_value_t = 0)]
    pub agents: u32,
}

/// SplitMix64: small, seeded, good enough for traffic.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize % n.max(1)
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Persona {
    Loyal,
    Regular,
    Churning,
    Angry,
}

struct Customer {
    tenant: String,
    id: String,
    persona: Persona,
    /// Relative activity (the customer's cadence): higher means more frequent events.
    activity: f64,
    followers: u64,
    channel: pb::Channel,
}

struct PendingReply {
    due_ms: i64,
    customer: usize,
    thread: String,
    channel: pb::Channel,
}

const POSITIVE: &[&str] = &[
    "Love the new collection, great quality!",
    "Thanks for the quick help, you are awesome :)",
    "Delivery was fast and everything fits perfectly.",
    "Best customer service I have had in years.",
    "Really happy with my order, will buy again!",
    "Great experience as always, thank you team",
];
const NEUTRAL: &[&str] = &[
    "Do you ship to Canada?",
    "What are your opening hours on Sunday?",
    "Is the blue one available in size M?",
    "I changed my delivery address, please update it.",
    "When does the winter sale start?",
    "Can I pay with a gift card online?",
];
const NEGATIVE: &[&str] = &[
    "Still waiting for my refund, this is ridiculous.",
    "My order arrived broken and nobody answers.",
    "Worst service ever!! Lost my package AGAIN.",
    "Very disappointed, the quality went downhill.",
    "Third time I write to you and still no answer. Terrible.",
    "I am cancelling my account, you never fix anything.",
];
const REPLIES: &[&str] = &[
    "Sorry to hear that, we are on it. Could you DM us your order number?",
    "Thanks for reaching out! Happy to help.",
    "We have issued a refund, apologies for the trouble.",
    "Glad you like it, thanks for the kind words!",
];
const PUBLIC: &[pb::Channel] = &[
    pb::Channel::Twitter,
    pb::Channel::Facebook,
    pb::Channel::Instagram,
    pb::Channel::ReviewSite,
    pb::Channel::Forum,
];
const PRIVATE: &[pb::Channel] = &[
    pb::Channel::Email,
    pb::Channel::Chat,
    pb::Channel::Sms,
    pb::Channel::Phone,
    pb::Channel::Web,
    pb::Channel::InStore,
    pb::Channel::Linkedin,
];

struct Simulation {
    rng: Rng,
    customers: Vec<Customer>,
    total_activity: f64,
    pending: VecDeque<PendingReply>,
    next_event: u64,
    run_id: u64,
}

impl Simulation {
    fn new(args: &SimulateArgs) -> Self {
        let mut rng = Rng(args.seed);
        let mut customers = Vec::new();
        for t in 1..=args.tenants.max(1) {
            let tenant = if t == 1 {
                "acme".to_string()
            } else {
                format!("tenant-{t}")
            };
            for c in 1..=args.customers.max(1) {
                let roll = rng.unit();
                let persona = if roll < 0.35 {
                    Persona::Loyal
                } else if roll < 0.75 {
                    Persona::Regular
                } else if roll < 0.92 {
                    Persona::Churning
                } else {
                    Persona::Angry
                };
                let followers = match persona {
                    Persona::Angry => 5_000 + (rng.unit() * 200_000.0) as u64,
                    _ => (rng.unit().powi(3) * 20_000.0) as u64,
                };
                let channel = if persona == Persona::Angry || rng.chance(0.4) {
                    *rng.pick(PUBLIC)
                } else {
                    *rng.pick(PRIVATE)
                };
                customers.push(Customer {
                    tenant: tenant.clone(),
                    id: format!("cust-{c:05}"),
                    persona,
                    activity: 0.2 + rng.unit() * 1.8,
                    followers,
                    channel,
                });
            }
        }
        let total_activity = customers.iter().map(|c| c.activity).sum();
        // Event ids must differ between runs (a repeated id is a duplicate): mix in the start time.
        let run_id = (now_ms() as u64) ^ args.seed.rotate_left(32);
        Simulation {
            rng,
            customers,
            total_activity,
            pending: VecDeque::new(),
            next_event: 0,
            run_id,
        }
    }

    fn event_id(&mut self) -> String {
        self.next_event += 1;
        format!("sim-{:x}-{}", self.run_id, self.next_event)
    }

    /// Picks a customer in proportion to its activity; a churning customer's activity fades
    /// with `churn` (0 at the start, 1 when fully gone quiet).
    fn pick_customer(&mut self, churn: f64) -> usize {
        loop {
            let mut target = self.rng.unit() * self.total_activity;
            let mut chosen = self.customers.len() - 1;
            for (index, customer) in self.customers.iter().enumerate() {
                target -= customer.activity;
                if target <= 0.0 {
                    chosen = index;
                    break;
                }
            }
            let keep = if self.customers[chosen].persona == Persona::Churning {
                (1.0 - 0.9 * churn).max(0.05)
            } else {
                1.0
            };
            if self.rng.chance(keep) {
                return chosen;
            }
        }
    }

    /// One inbound event of customer `index` at `at_ms`; `churn` in [0, 1] is how far the run is.
    fn inbound(&mut self, index: usize, at_ms: i64, churn: f64) -> pb::Interaction {
        let (persona, channel, followers) = {
            let c = &self.customers[index];
            (c.persona, c.channel, c.followers)
        };
        let rng = &mut self.rng;
        // Sentiment mix by persona; churners sour as the run goes on.
        let (p_pos, p_neg) = match persona {
            Persona::Loyal => (0.6, 0.05),
            Persona::Regular => (0.25, 0.15),
            Persona::Churning => (0.25 * (1.0 - churn), 0.15 + 0.6 * churn),
            Persona::Angry => (0.05, 0.8),
        };
        let kind_roll = rng.unit();
        let channel = if rng.chance(0.7) {
            channel
        } else if rng.chance(0.5) {
            *rng.pick(PUBLIC)
        } else {
            *rng.pick(PRIVATE)
        };
        let (kind, value) = if persona != Persona::Angry && kind_roll < 0.12 {
            (
                pb::InteractionKind::Purchase,
                (10.0 + rng.unit() * 190.0).round(),
            )
        } else if kind_roll < 0.2 {
            (pb::InteractionKind::PageView, 0.0)
        } else if kind_roll < 0.27 {
            (pb::InteractionKind::Like, 0.0)
        } else if kind_roll < 0.3 {
            (pb::InteractionKind::Share, 0.0)
        } else if kind_roll < 0.32 {
            (pb::InteractionKind::Follow, 0.0)
        } else if PUBLIC.contains(&channel) {
            let kinds = [
                pb::InteractionKind::Mention,
                pb::InteractionKind::Comment,
                pb::InteractionKind::Review,
            ];
            (*rng.pick(&kinds), 0.0)
        } else {
            let kinds = [
                pb::InteractionKind::Message,
                pb::InteractionKind::SupportTicket,
            ];
            (*rng.pick(&kinds), 0.0)
        };
        let textual = !matches!(
            kind,
            pb::InteractionKind::PageView
                | pb::InteractionKind::Like
                | pb::InteractionKind::Follow
                | pb::InteractionKind::Purchase
        );
        let text = if textual {
            let roll = rng.unit();
            let list = if roll < p_neg {
                NEGATIVE
            } else if roll < p_neg + p_pos {
                POSITIVE
            } else {
                NEUTRAL
            };
            rng.pick(list).to_string()
        } else {
            String::new()
        };
        let event_id = self.event_id();
        let thread = if textual {
            format!("thread-{event_id}")
        } else {
            String::new()
        };
        if textual && self.rng.chance(0.85) {
            // The brand answers most messages, within seconds to a few minutes.
            let delay_ms = (2_000.0 + self.rng.unit().powi(2) * 180_000.0) as i64;
            self.pending.push_back(PendingReply {
                due_ms: at_ms + delay_ms,
                customer: index,
                thread: thread.clone(),
                channel,
            });
        }
        let customer = &self.customers[index];
        pb::Interaction {
            reply_need: pb::ReplyNeed::Unspecified as i32,
            event_id,
            tenant_id: customer.tenant.clone(),
            customer_id: customer.id.clone(),
            channel: channel as i32,
            kind: kind as i32,
            direction: pb::Direction::Inbound as i32,
            occurred_at: Some(to_timestamp(at_ms)),
            text,
            value,
            author_followers: followers,
            thread_id: thread,
            identifiers: Vec::new(),
            agent_id: String::new(),
        }
    }

    /// Brand replies due at or before `now`.
    fn replies_due(&mut self, now: i64, out: &mut Vec<pb::Interaction>) {
        // Not kept sorted (delays vary): scan and keep the rest.
        let mut rest = VecDeque::with_capacity(self.pending.len());
        while let Some(reply) = self.pending.pop_front() {
            if reply.due_ms <= now {
                let event_id = self.event_id();
                let text = self.rng.pick(REPLIES).to_string();
                let customer = &self.customers[reply.customer];
                out.push(pb::Interaction {
                    reply_need: pb::ReplyNeed::Unspecified as i32,
                    event_id,
                    tenant_id: customer.tenant.clone(),
                    customer_id: customer.id.clone(),
                    channel: reply.channel as i32,
                    kind: pb::InteractionKind::Reply as i32,
                    direction: pb::Direction::Outbound as i32,
                    occurred_at: Some(to_timestamp(reply.due_ms)),
                    text,
                    value: 0.0,
                    author_followers: 0,
                    thread_id: reply.thread,
                    identifiers: Vec::new(),
                    agent_id: String::new(),
                });
            } else {
                rest.push_back(reply);
            }
        }
        self.pending = rest;
    }

    /// History: each customer at its own cadence over `days` days before now; churning customers
    /// slow down and sour, then go quiet for good somewhere between half and four fifths of the
    /// way (a customer drifting to churn: busy, then slower and sourer, then gone).
    fn backfill(&mut self, days: u32, now: i64) -> Vec<pb::Interaction> {
        let span_ms = i64::from(days) * 86_400_000;
        let start = now - span_ms;
        let mut events = Vec::new();
        for index in 0..self.customers.len() {
            // Mean gap: 1 to 10 days, shorter for more active customers.
            let gap_ms = (86_400_000.0 * 2.0 / self.customers[index].activity) as i64;
            let mut at = start + (self.rng.unit() * gap_ms as f64) as i64;
            let quiet_from = 0.5 + 0.3 * self.rng.unit();
            while at < now - 60_000 {
                let churn = ((at - start) as f64 / span_ms.max(1) as f64).clamp(0.0, 1.0);
                let persona = self.customers[index].persona;
                if persona == Persona::Churning && churn >= quiet_from {
                    // Gone quiet: nothing more from this customer in the history.
                    break;
                }
                events.push(self.inbound(index, at, churn));
                let slow = if persona == Persona::Churning {
                    1.0 + 3.0 * churn
                } else {
                    1.0
                };
                at += ((0.5 + self.rng.unit()) * gap_ms as f64 * slow) as i64;
            }
        }
        self.replies_due(now, &mut events);
        events.sort_by_key(|e| e.occurred_at.as_ref().map(|t| (t.seconds, t.nanos)));
        events
    }
}

#[derive(Default)]
struct Totals {
    sent: u64,
    accepted: u64,
    duplicates: u64,
    rejected: u64,
}

async fn send(
    client: &mut IngestServiceClient<crate::cli::client::Connection>,
    address: &str,
    events: Vec<pb::Interaction>,
    totals: &mut Totals,
) -> anyhow::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    totals.sent += events.len() as u64;
    let summary = client
        .ingest(tokio_stream::iter(events))
        .await
        .map_err(|status| crate::cli::client::status_error(address, "Ingest", &status))?
        .into_inner();
    totals.accepted += summary.accepted;
    totals.duplicates += summary.duplicates;
    totals.rejected += summary.rejected;
    for rejection in summary.rejections.iter().take(3) {
        tracing::warn!(event_id = %rejection.event_id, reason = %rejection.reason, "rejected");
    }
    Ok(())
}

/// The simulated agents: who they are, and the answers they owe.
struct Agents {
    routing:
        crate::pb::routing_service_client::RoutingServiceClient<crate::cli::client::Connection>,
    scoring:
        crate::pb::scoring_service_client::ScoringServiceClient<crate::cli::client::Connection>,
    /// (tenant, agent id).
    agents: Vec<(String, String)>,
    /// Answers owed: when, and the outbound event.
    owed: Vec<(i64, pb::Interaction)>,
    claims: u64,
}

impl Agents {
    /// Registers `per_tenant` agents in each tenant of `sim`.
    async fn register(
        connection: crate::cli::client::Connection,
        sim: &Simulation,
        per_tenant: u32,
    ) -> anyhow::Result<Self> {
        let mut tenants: Vec<String> = sim.customers.iter().map(|c| c.tenant.clone()).collect();
        tenants.dedup();
        let mut agents = Agents {
            routing: crate::pb::routing_service_client::RoutingServiceClient::new(
                connection.clone(),
            ),
            scoring: crate::pb::scoring_service_client::ScoringServiceClient::new(connection),
            agents: Vec::new(),
            owed: Vec::new(),
            claims: 0,
        };
        for tenant in tenants {
            for n in 1..=per_tenant {
                let agent_id = format!("agent-{n}");
                agents
                    .routing
                    .put_agent(pb::PutAgentRequest {
                        tenant_id: tenant.clone(),
                        agent: Some(crate::cli::client::agent_on_every_channel(&agent_id, 2, 1)),
                    })
                    .await?;
                agents.agents.push((tenant.clone(), agent_id));
            }
        }
        Ok(agents)
    }

    /// Each agent asks for work once; what it gets it answers 2 to 10 s later.
    async fn claim(&mut self, sim: &mut Simulation, now: i64) -> anyhow::Result<()> {
        for (tenant, agent_id) in &self.agents {
            let answer = self
                .scoring
                .claim_next(pb::ClaimNextRequest {
                    tenant_id: tenant.clone(),
                    agent_id: agent_id.clone(),
                    ttl_seconds: 120,
                    ..Default::default()
                })
                .await?
                .into_inner();
            let Some(customer) = answer.customer else {
                continue;
            };
            self.claims += 1;
            let (channel, thread_id) = match answer.conversation {
                Some(conversation) if !conversation.thread_id.is_empty() => {
                    (conversation.channel, conversation.thread_id)
                }
                Some(conversation) => (conversation.channel, sim.event_id()),
                // Outreach: a new thread on e-mail.
                None => (pb::Channel::Email as i32, sim.event_id()),
            };
            let due_ms = now + 2_000 + sim.rng.below(8_000) as i64;
            self.owed.push((
                due_ms,
                pb::Interaction {
                    event_id: sim.event_id(),
                    tenant_id: tenant.clone(),
                    customer_id: customer.customer_id,
                    channel,
                    kind: pb::InteractionKind::Reply as i32,
                    direction: pb::Direction::Outbound as i32,
                    occurred_at: None,
                    text: sim.rng.pick(REPLIES).to_string(),
                    thread_id,
                    agent_id: agent_id.clone(),
                    ..Default::default()
                },
            ));
        }
        Ok(())
    }

    /// The answers due at or before `now`, stamped `now`.
    fn answers_due(&mut self, now: i64, out: &mut Vec<pb::Interaction>) {
        self.owed.retain_mut(|(due_ms, answer)| {
            if *due_ms > now {
                return true;
            }
            answer.occurred_at = Some(to_timestamp(now));
            out.push(std::mem::take(answer));
            false
        });
    }
}

/// Runs the simulation until the duration is over or Ctrl-C.
pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.rate.is_finite() && args.rate > 0.0,
        "--rate must be positive"
    );
    let mut sim = Simulation::new(&args);
    let address = args.server.address();
    let connection = args.server.connect().await?;
    let mut client = IngestServiceClient::new(connection.clone());
    let mut totals = Totals::default();

    if args.backfill_days > 0 {
        let history = sim.backfill(args.backfill_days, now_ms());
        eprintln!(
            "backfill: sending {} events over {} days of history",
            history.len(),
            args.backfill_days
        );
        let mut history = history.into_iter().peekable();
        while history.peek().is_some() {
            let chunk: Vec<_> = history.by_ref().take(5_000).collect();
            send(&mut client, &address, chunk, &mut totals).await?;
        }
        eprintln!(
            "backfill: sent {}  accepted {}  duplicates {}  rejected {}",
            totals.sent, totals.accepted, totals.duplicates, totals.rejected
        );
    }

    let mut agents = match args.agents {
        0 => None,
        per_tenant => Some(
            Agents::register(connection, &sim, per_tenant)
                .await
                .map_err(|error| anyhow::anyhow!("registering agents at {address}: {error}"))?,
        ),
    };
    let started = Instant::now();
    let deadline = args.duration_seconds.map(Duration::from_secs);
    let tick = Duration::from_millis(100);
    let mut ticks = tokio::time::interval(tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut owed = 0.0_f64;
    let mut last_report = Instant::now();
    let mut sent_at_report = totals.sent;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = &mut ctrl_c => break,
        }
        if deadline.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        // A churning customer's drift is measured over the run (a minute with no duration); after
        // a backfill it has already happened: churners stay (mostly) quiet and sour.
        let horizon = deadline.unwrap_or(Duration::from_secs(60)).as_secs_f64();
        let churn = if args.backfill_days > 0 {
            1.0
        } else {
            (started.elapsed().as_secs_f64() / horizon.max(1.0)).min(1.0)
        };
        owed += args.rate * tick.as_secs_f64();
        let now = now_ms();
        let mut batch = Vec::new();
        while owed >= 1.0 {
            owed -= 1.0;
            let index = sim.pick_customer(churn);
            batch.push(sim.inbound(index, now, churn));
        }
        sim.replies_due(now, &mut batch);
        if let Some(agents) = agents.as_mut() {
            agents.answers_due(now, &mut batch);
        }
        send(&mut client, &address, batch, &mut totals).await?;
        if let Some(agents) = agents.as_mut() {
            agents
                .claim(&mut sim, now)
                .await
                .map_err(|error| anyhow::anyhow!("ClaimNext at {address}: {error}"))?;
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            let rate = (totals.sent - sent_at_report) as f64 / last_report.elapsed().as_secs_f64();
            eprintln!(
                "sent {}  accepted {}  duplicates {}  rejected {}  rate {:.1}/s",
                totals.sent, totals.accepted, totals.duplicates, totals.rejected, rate
            );
            last_report = Instant::now();
            sent_at_report = totals.sent;
        }
    }
    if let Some(agents) = &agents {
        eprintln!("agents: {} claims taken", agents.claims);
    }
    eprintln!(
        "done: sent {}  accepted {}  duplicates {}  rejected {}  in {:.1} s",
        totals.sent,
        totals.accepted,
        totals.duplicates,
        totals.rejected,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(seed: u64) -> SimulateArgs {
        SimulateArgs {
            server: crate::cli::ServerArgs {
                server: String::new(),
                token: None,
                tls_ca: None,
                tls_cert: None,
                tls_key: None,
            },
            tenants: 2,
            customers: 50,
            rate: 10.0,
            duration_seconds: Some(1),
            backfill_days: 0,
            seed,
            agents: 0,
        }
    }

    #[test]
    fn same_seed_same_customers_and_texts() {
        let now = 1_800_000_000_000;
        let mut a = Simulation::new(&args(7));
        let mut b = Simulation::new(&args(7));
        let ea = a.backfill(10, now);
        let eb = b.backfill(10, now);
        assert_eq!(ea.len(), eb.len());
        assert!(ea.len() > 100);
        for (x, y) in ea.iter().zip(&eb) {
            assert_eq!(
                (&x.customer_id, &x.text, x.kind),
                (&y.customer_id, &y.text, y.kind)
            );
        }
        // Realistic mix: most events carry text, some are replies, some purchases, none in the future.
        let texts = ea.iter().filter(|e| !e.text.is_empty()).count();
        assert!(texts * 10 > ea.len() * 4, "{texts} of {}", ea.len());
        assert!(ea
            .iter()
            .any(|e| e.direction == pb::Direction::Outbound as i32));
        assert!(ea
            .iter()
            .any(|e| e.kind == pb::InteractionKind::Purchase as i32 && e.value > 0.0));
        assert!(ea
            .iter()
            .all(|e| e.occurred_at.as_ref().unwrap().seconds * 1000 <= now));
    }
}
