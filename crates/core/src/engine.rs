//! The transport-free core: classify an event's text, apply it to the store, and read scores.
//! The gRPC services in `api/` only convert and delegate to this.

use crate::domain::{Interaction, TimestampMs};
use crate::durability::Durable;
use crate::scoring::RefineOutcome;
use crate::sentiment::{Sentiment, SentimentModel};
use crate::store::{Applied, Store};
use crate::telemetry::{self, IngestOutcome, RefinementOutcome};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Why a `Classify` call got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    /// The backend's queue is full.
    #[error(transparent)]
    Overloaded(#[from] crate::sentiment::Overloaded),
    /// The backend dropped a text (a failed batch).
    #[error("the sentiment backend failed on this batch")]
    Failed,
}

/// Sentiment backend plus store.
pub struct Engine {
    /// Per-tenant customer state, scores and rankings.
    pub store: Arc<Store>,
    /// The configured sentiment backend.
    pub sentiment: Arc<dyn SentimentModel>,
    /// The write-ahead log, when the server has a data directory.
    pub wal: Option<Arc<crate::durability::Wal>>,
    /// Names the language of the texts answers show (`[language]` in the config).
    pub language: crate::sentiment::language::LanguageDetector,
}

/// An applied attribute update: the customer, its attributes after it, whether it changed them.
pub type Upserted = (String, crate::attributes::Attributes, bool);

/// The server clock in milliseconds since the epoch: the only clock read on the scoring path.
pub fn now_ms() -> TimestampMs {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

/// A logged identity request that the identity rules now in force refuse to carry out again:
/// it was acknowledged under other rules (say a lower `identity.max_merges_per_customer`), and
/// replaying it under these would silently undo it.
#[derive(Debug, thiserror::Error)]
#[error(
    "the log holds an identity request for customer {customer_id:?} of tenant {tenant_id:?} \
     that was carried out and acknowledged, but the identity rules now in force refuse it \
     ({refusal}); an acknowledged merge or link is never undone by a rule change: start with \
     the identity rules it was carried out under"
)]
pub struct ReplayRefused {
    /// The tenant.
    pub tenant_id: String,
    /// The customer the request is about.
    pub customer_id: String,
    /// Why the rules in force refuse it.
    pub refusal: String,
}

/// Puts back what recovery reads, in order: a customer's state from a snapshot, a logged event,
/// a refinement or an identity request (no classification, no logging). A logged identity
/// request the rules in force refuse is returned as [`ReplayRefused`] (nothing applied).
pub fn recover(
    store: &Store,
    replayed: crate::durability::Replayed<'_>,
) -> Result<(), ReplayRefused> {
    use crate::durability::Replayed;
    match replayed {
        Replayed::Event {
            interaction,
            sentiment,
            refines,
        } => replay(store, interaction, sentiment, refines),
        Replayed::Claim {
            tenant_id,
            customer_id,
            work,
            claim,
        } => store.restore_claim(tenant_id, customer_id, work, claim),
        Replayed::Agent {
            tenant_id,
            agent_id,
            agent,
        } => store.restore_agent(tenant_id, agent_id, agent),
        Replayed::Identity(request) => {
            // Logged only once carried out: the same rules decide the same way again, and
            // other rules must not undo it silently.
            // (Only a configurable limit can refuse it now: the other refusals depend on the
            // state alone, which replay rebuilds.)
            if let Err(
                refusal @ crate::store::IdentityRefusal::Rule(
                    crate::identity::LinkRefusal::TooMany { .. }
                    | crate::identity::LinkRefusal::TooManyMerges { .. },
                ),
            ) = store.apply_identity(request, 0)
            {
                return Err(ReplayRefused {
                    tenant_id: request.tenant_id.clone(),
                    customer_id: request.customer_id.clone(),
                    refusal: refusal.to_string(),
                });
            }
        }
        Replayed::Customer {
            tenant_id,
            customer_id,
            history,
            profile,
            attributes,
        } => store.restore_customer(tenant_id, customer_id, history, profile, attributes),
        Replayed::IntentList {
            tenant_id,
            definitions,
        } => {
            // Logged only once put in force: it validated then, and only a stricter build refuses
            // it now; the tenant then keeps the list before it.
            if let Err(error) = store.intents().set(tenant_id, definitions, true) {
                tracing::warn!(tenant_id, %error, "a logged intent list no longer validates; the tenant keeps the list before it");
            }
        }
        Replayed::Intents(saved) => {
            let tenant_id = saved.0.clone();
            if let Err(error) = store.restore_intents(saved) {
                tracing::warn!(%tenant_id, %error, "a snapshot's intent list no longer validates; its names are kept");
            }
        }
        Replayed::Upsert {
            tenant_id,
            customer_id,
            version,
            changes,
        } => {
            // Logged only once applied: the version rule decides the same way again.
            let _ = store.upsert_attributes(tenant_id, customer_id, version, changes, 0);
        }
    }
    Ok(())
}

/// Re-applies a logged event, or a logged refinement of its sentiment, at recovery (no
/// classification, no logging).
pub fn replay(
    store: &Store,
    interaction: &Interaction,
    sentiment: Option<Sentiment>,
    refines: bool,
) {
    match (refines, sentiment) {
        (true, Some(sentiment)) => {
            store.refine(interaction, sentiment, 0);
        }
        _ => {
            store.apply(interaction, sentiment, 0, false);
        }
    }
}

impl Engine {
    /// Carries out a change of state and, with a log, queues its record (`None`: nothing to log)
    /// while the change is admitted in order ([`crate::durability::Wal::admit_in_order`]), so
    /// that the log holds such changes in the order they were applied and a wait for everything
    /// admitted covers it. The change is acknowledged once the returned wait ends.
    fn logged<T, Records: IntoIterator<Item = crate::durability::WalRecord>>(
        &self,
        carry_out: impl FnOnce() -> T,
        record: impl FnOnce(&T) -> Records,
    ) -> (T, Option<Durable>) {
        let admitted = self.wal.as_deref().map(|wal| wal.admit_in_order(true));
        let outcome = carry_out();
        crate::durability::buggify_pause();
        // Records are appended in order: the last one durable, all are.
        let durable = self.wal.as_ref().and_then(|wal| {
            record(&outcome)
                .into_iter()
                .map(|record| wal.enqueue(&record))
                .last()
        });
        drop(admitted);
        (outcome, durable)
    }

    /// Puts `definitions` in force as `tenant_id`'s intents (set over the API: logged, and a
    /// config list no longer replaces it); acknowledged once the returned wait ends. A bad list
    /// changes nothing.
    pub fn set_intents(
        &self,
        tenant_id: &str,
        definitions: Vec<crate::sentiment::intent::IntentDefinition>,
    ) -> (
        Result<(), crate::sentiment::intent::IntentError>,
        Option<Durable>,
    ) {
        let (outcome, durable) = self.logged(
            || {
                let logged = crate::durability::WalRecord::intents(tenant_id, &definitions);
                self.store
                    .intents()
                    .set(tenant_id, definitions, true)
                    .map(|()| logged)
            },
            |outcome| outcome.as_ref().ok().cloned(),
        );
        (outcome.map(|_| ()), durable)
    }

    /// Reads an inbound event's text as one of its tenant's intents (none for outbound events,
    /// texts without words, or a tenant without intents), counting it.
    pub fn read_intent(&self, interaction: &Interaction) -> Option<crate::domain::ReadIntent> {
        if interaction.direction != crate::domain::Direction::Inbound || interaction.text.is_empty()
        {
            return None;
        }
        let read = self
            .store
            .intents()
            .read(&interaction.tenant_id, &interaction.text)?;
        telemetry::intent_read(
            &interaction.tenant_id,
            read.as_ref().map(|intent| &*intent.name),
        );
        read
    }

    /// Reads an inbound event's text for its language (none for outbound events, texts without
    /// words, or texts nothing in which belongs to a language): stored with the event, shown in
    /// answers, and filtered on.
    pub fn read_language(
        &self,
        interaction: &Interaction,
    ) -> Option<crate::sentiment::language::Language> {
        if interaction.direction != crate::domain::Direction::Inbound || interaction.text.is_empty()
        {
            return None;
        }
        self.language.detect(&interaction.text)
    }

    /// [`Store::upsert_attributes`], logged when it changed anything; acknowledged once the
    /// returned wait ends.
    pub fn upsert_attributes(
        &self,
        tenant_id: &str,
        customer_id: &str,
        version: u64,
        changes: &std::collections::BTreeMap<String, Option<crate::attributes::AttributeValue>>,
    ) -> (
        Result<Upserted, crate::store::UpsertRefusal>,
        Option<Durable>,
    ) {
        let (outcome, mut durable) = self.logged(
            || {
                self.store
                    .upsert_attributes(tenant_id, customer_id, version, changes, now_ms())
            },
            |outcome| match outcome {
                Ok((canonical, _, true)) => Some(crate::durability::WalRecord::upsert(
                    tenant_id, canonical, version, changes,
                )),
                _ => None,
            },
        );
        if let (Some(wal), Ok((_, _, false))) = (&self.wal, &outcome) {
            // Not applied (not newer): it may repeat an update still on its way to the disk.
            durable = Some(wal.wait_for_admitted());
        }
        (outcome, durable)
    }

    /// [`Store::claim_next`], logged; the claim is acknowledged once the returned wait ends.
    pub fn claim_next(
        &self,
        tenant_id: &str,
        agent_id: &str,
        query: &crate::store::TopQuery,
        ttl_ms: i64,
        now_ms: TimestampMs,
        passed_over: &[(String, crate::store::Work)],
    ) -> (
        Result<Option<crate::store::Claimed>, crate::store::ClaimRefusal>,
        Option<Durable>,
    ) {
        self.logged(
            || {
                self.store
                    .claim_next(tenant_id, agent_id, query, ttl_ms, now_ms, passed_over)
            },
            |claimed| {
                let claimed = claimed.as_ref().ok()?.as_ref()?;
                Some(crate::durability::WalRecord::claim(
                    tenant_id,
                    &claimed.customer_id,
                    claimed.claim.work,
                    Some(&claimed.claim),
                ))
            },
        )
    }

    /// [`Store::update_claim`] (renew, or release), logged like [`Engine::claim_next`]; the
    /// customer the id resolves to, and each claim changed after the change.
    #[allow(clippy::type_complexity, clippy::too_many_arguments)]
    pub fn update_claim(
        &self,
        tenant_id: &str,
        customer_id: &str,
        agent_id: &str,
        thread_key: Option<u64>,
        release: bool,
        ttl_ms: i64,
        now_ms: TimestampMs,
    ) -> (
        Result<
            (
                String,
                Vec<(crate::store::Work, Option<crate::store::Claim>)>,
            ),
            crate::store::ClaimRefusal,
        >,
        Option<Durable>,
    ) {
        self.logged(
            || {
                self.store.update_claim(
                    tenant_id,
                    customer_id,
                    agent_id,
                    thread_key,
                    release,
                    ttl_ms,
                    now_ms,
                )
            },
            |updated| {
                updated
                    .as_ref()
                    .map(|(canonical, changed)| {
                        changed
                            .iter()
                            .map(|(work, claim)| {
                                crate::durability::WalRecord::claim(
                                    tenant_id,
                                    canonical,
                                    *work,
                                    claim.as_ref(),
                                )
                            })
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default()
            },
        )
    }

    /// Registers or replaces an agent ([`Store::put_agent`]), logged; acknowledged once the
    /// returned wait ends.
    pub fn put_agent(&self, tenant_id: &str, agent: crate::store::Agent) -> Option<Durable> {
        let logged = crate::durability::WalRecord::agent(tenant_id, &agent.agent_id, Some(&agent));
        self.logged(|| self.store.put_agent(tenant_id, agent), |()| Some(logged))
            .1
    }

    /// [`Store::set_agent_status`], logged; `None` (nothing logged) for an unknown agent.
    pub fn set_agent_status(
        &self,
        tenant_id: &str,
        agent_id: &str,
        status: crate::store::AgentStatus,
        now_ms: TimestampMs,
    ) -> (Option<crate::store::Agent>, Option<Durable>) {
        self.logged(
            || {
                self.store
                    .set_agent_status(tenant_id, agent_id, status, now_ms)
            },
            |agent| {
                agent.as_ref().map(|agent| {
                    crate::durability::WalRecord::agent(tenant_id, agent_id, Some(agent))
                })
            },
        )
    }

    /// [`Store::remove_agent`], logged; `false` (nothing logged) for an unknown agent.
    pub fn remove_agent(&self, tenant_id: &str, agent_id: &str) -> (bool, Option<Durable>) {
        self.logged(
            || self.store.remove_agent(tenant_id, agent_id),
            |removed| {
                removed.then(|| crate::durability::WalRecord::agent(tenant_id, agent_id, None))
            },
        )
    }

    /// Carries out a CRM's identity request and logs it; the request is acknowledged once the
    /// returned wait (with a log) has ended. A refused request changes and logs nothing.
    pub fn identity(
        &self,
        request: &crate::identity::IdentityRequest,
        now_ms: TimestampMs,
    ) -> (
        Result<(String, crate::store::Profile), crate::store::IdentityRefusal>,
        Option<Durable>,
    ) {
        self.logged(
            || self.store.apply_identity(request, now_ms),
            |outcome| {
                outcome
                    .is_ok()
                    .then(|| crate::durability::WalRecord::identity(request))
            },
        )
    }

    /// Classifies one text without waiting on a queue (a queued backend's fast model answers),
    /// recording its metrics: what ingest uses.
    pub fn classify_inline(&self, text: &str) -> Sentiment {
        let started = Instant::now();
        let sentiment = self.sentiment.classify_inline(text);
        telemetry::text_classified(
            self.sentiment.inline_name(),
            sentiment.label,
            started.elapsed(),
        );
        sentiment
    }

    /// An event's sentiment as ingest gives it: its text classified inline, `None` without text.
    pub fn classify_event(&self, interaction: &Interaction) -> Option<Sentiment> {
        (!interaction.text.trim().is_empty()).then(|| self.classify_inline(&interaction.text))
    }

    /// Classifies texts with the configured backend, waiting on its queue when it has one (the
    /// `Classify` RPC). A full queue refuses the whole call.
    pub async fn classify(&self, texts: &[String]) -> Result<Vec<Sentiment>, ClassifyError> {
        let started = Instant::now();
        let pending = texts
            .iter()
            .map(|text| self.sentiment.submit(text))
            .collect::<Result<Vec<_>, _>>()?;
        let mut sentiments = Vec::with_capacity(pending.len());
        for answer in pending {
            sentiments.push(answer.await.map_err(|_| ClassifyError::Failed)?);
        }
        let per_text = started.elapsed() / u32::try_from(texts.len().max(1)).unwrap_or(u32::MAX);
        for sentiment in &sentiments {
            telemetry::text_classified(self.sentiment.name(), sentiment.label, per_text);
        }
        Ok(sentiments)
    }

    /// Where the backend has a better, queued model (transformer, cascade): sends the accepted
    /// event's text to it and, when its label comes, re-folds the customer with it (the same
    /// scores as if the event had carried it from the start), notifies watchers and logs it.
    /// Ingest never waits for it; a full queue leaves the event with its inline label.
    fn request_refinement(&self, interaction: &Interaction, inline: Sentiment) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // outside a runtime (recovery, tools): the inline label stands
        };
        let pending = match self.sentiment.refine(&interaction.text, inline) {
            None => return,
            Some(Err(_overloaded)) => {
                telemetry::sentiment_refinement(RefinementOutcome::QueueFull);
                return;
            }
            Some(Ok(pending)) => pending,
        };
        let store = Arc::clone(&self.store);
        let wal = self.wal.clone();
        // The label stands for the text from here on: everything but the text (up to the text
        // limit per event, held as long as the queue holds it) goes with the pending refinement.
        let event = Interaction {
            event_id: interaction.event_id.clone(),
            tenant_id: interaction.tenant_id.clone(),
            customer_id: interaction.customer_id.clone(),
            thread_id: interaction.thread_id.clone(),
            text: String::new(),
            identifiers: interaction.identifiers.clone(),
            agent_id: interaction.agent_id.clone(),
            intent: interaction.intent.clone(),
            ..*interaction
        };
        runtime.spawn(async move {
            let Ok(refined) = pending.await else {
                telemetry::sentiment_refinement(RefinementOutcome::Failed);
                return;
            };
            let outcome = store.refine(&event, refined, now_ms());
            // Counted once applied (readers see it from now on); the log wait follows.
            telemetry::sentiment_refinement(match outcome {
                RefineOutcome::Refined => RefinementOutcome::Refined,
                RefineOutcome::Unchanged => RefinementOutcome::Unchanged,
                RefineOutcome::NotFound => RefinementOutcome::EventGone,
            });
            if let (RefineOutcome::Refined, Some(wal)) = (outcome, &wal) {
                wal.enqueue(&crate::durability::WalRecord::refinement(&event, refined))
                    .wait()
                    .await;
            }
        });
    }

    /// Classifies the event's text (when it has one) and applies the event; with `want_score` the
    /// customer's score after it comes back too. With a log, the third value is the wait until
    /// the event (or, for a duplicate, its first copy) is durable: answer the caller only after
    /// it ends.
    pub fn ingest(
        &self,
        interaction: &Interaction,
        now_ms: TimestampMs,
        want_score: bool,
    ) -> (Option<Sentiment>, Applied, Option<Durable>) {
        let sentiment = self.classify_event(interaction);
        // Events commute (scores are the same whatever the arrival order), except those that
        // resolve identifiers (they may merge customers, which moves claims and attributes) or
        // end a claim (an answer in a thread): those keep their place among the ordered changes.
        let ordered = !interaction.identifiers.is_empty()
            || (interaction.direction == crate::domain::Direction::Outbound
                && !interaction.thread_id.is_empty());
        let admitted = self.wal.as_deref().map(|wal| wal.admit_in_order(ordered));
        let applied = self.store.apply(interaction, sentiment, now_ms, want_score);
        crate::durability::buggify_pause();
        // An event with identifiers is logged whatever became of it: resolving them may have
        // linked or merged customers, which replay must do again.
        let logged = matches!(applied, Applied::Accepted(_)) || !interaction.identifiers.is_empty();
        let mut durable = match &self.wal {
            Some(wal) if logged => {
                let snippet = self.store.timeline_limits().snippet(&interaction.text);
                Some(
                    wal.enqueue(
                        &crate::durability::WalRecord::new(interaction, sentiment)
                            .with_snippet(snippet),
                    ),
                )
            }
            _ => None,
        };
        drop(admitted);
        if let (Some(wal), Applied::Duplicate(_), false) = (&self.wal, &applied, logged) {
            // Its first copy may still be on its way to the disk: acknowledge nothing, not even a
            // duplicate, before it is durable.
            durable = Some(wal.wait_for_admitted());
        }
        if let (Some(inline), Applied::Accepted(_)) = (sentiment, &applied) {
            self.request_refinement(interaction, inline);
        }
        let outcome = match applied {
            Applied::Accepted(_) => {
                telemetry::urgency_cues_heard(interaction.urgency_cues);
                IngestOutcome::Accepted
            }
            Applied::Duplicate(_) => IngestOutcome::Duplicate,
            Applied::Refused(_) => IngestOutcome::Rejected,
        };
        telemetry::event_ingested(Some(interaction.channel), Some(interaction.kind), outcome);
        (sentiment, applied, durable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Channel, Direction, Kind};
    use std::time::Duration;

    /// D6: a duplicate arriving while its first copy is applied but not yet logged was answered
    /// DUPLICATE at once (a kill -9 then lost an event the client was told is stored); now it
    /// waits until the first copy is logged.
    #[test]
    fn a_duplicate_is_answered_only_after_its_first_copy_is_logged() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::durability::DurabilityConfig::default();
        let (wal, _) = crate::durability::Wal::open(&config, dir.path(), |_| {}).unwrap();
        let scoring = crate::config::ScoringConfig::default();
        let engine = Arc::new(Engine {
            store: Arc::new(Store::new(Arc::new(scoring), 16)),
            sentiment: crate::sentiment::load(
                crate::sentiment::Backend::Fast,
                &crate::sentiment::default_models_dir(),
            )
            .unwrap(),
            wal: Some(Arc::clone(&wal)),
            language: Default::default(),
        });
        let event = Interaction {
            event_id: "e1".into(),
            tenant_id: "acme".into(),
            customer_id: "c1".into(),
            channel: Channel::Web,
            kind: Kind::Like,
            direction: Direction::Inbound,
            occurred_at_ms: 1_767_225_600_000,
            text: String::new(),
            value: 0.0,
            author_followers: 0,
            thread_id: String::new(),
            reply_need: crate::domain::ReplyNeed::Unclear,
            urgency_cues: Default::default(),
            intent: None,
            language: None,
            identifiers: Vec::new(),
            agent_id: String::new(),
        };
        // The first copy: applied to the store, still on its way to the log.
        let first = wal.admit();
        engine.store.apply(&event, None, now_ms(), false);
        let (answered, answers) = std::sync::mpsc::channel();
        let (duplicate_engine, duplicate) = (Arc::clone(&engine), event.clone());
        let duplicate_ingest = std::thread::spawn(move || {
            let (_, applied, durable) = duplicate_engine.ingest(&duplicate, now_ms(), false);
            durable
                .expect("a duplicate waits for its first copy")
                .wait_blocking();
            let _ = answered.send(matches!(applied, Applied::Duplicate(_)));
        });
        assert!(
            answers.recv_timeout(Duration::from_millis(300)).is_err(),
            "the duplicate was answered before its first copy was logged"
        );
        wal.append(&crate::durability::WalRecord::new(&event, None))
            .unwrap();
        drop(first);
        assert!(answers.recv().unwrap(), "answered DUPLICATE once logged");
        duplicate_ingest.join().unwrap();
    }
}
