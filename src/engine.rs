//! The transport-free core: classify an event's text, apply it to the store, and read scores.
//! The gRPC services in `api/` only convert and delegate to this.

use crate::domain::{Interaction, TimestampMs};
use crate::sentiment::{Sentiment, SentimentModel};
use crate::store::{Applied, Store};
use crate::telemetry::{self, IngestOutcome};
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
    pub store: Arc<Store>,
    pub sentiment: Arc<dyn SentimentModel>,
    /// The write-ahead log, when the server has a data directory.
    pub wal: Option<Arc<crate::durability::Wal>>,
}

/// The server clock in milliseconds since the epoch: the only clock read on the scoring path.
pub fn now_ms() -> TimestampMs {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

/// Re-applies a logged event at recovery (no classification, no logging).
pub fn replay(store: &Store, interaction: &Interaction, sentiment: Option<Sentiment>) {
    store.apply(interaction, sentiment, 0, false);
}

impl Engine {
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

    /// Classifies the event's text (when it has one) and applies the event; with `want_score` the
    /// customer's score after it comes back too.
    pub fn ingest(
        &self,
        interaction: &Interaction,
        now_ms: TimestampMs,
        want_score: bool,
    ) -> (Option<Sentiment>, Applied) {
        let sentiment =
            (!interaction.text.trim().is_empty()).then(|| self.classify_inline(&interaction.text));
        let applied = self.store.apply(interaction, sentiment, now_ms, want_score);
        if let (Some(wal), Applied::Accepted(_)) = (&self.wal, &applied) {
            // Durable before the caller can acknowledge it; see `durability`.
            crate::durability::log_or_abort(wal, interaction, sentiment);
        }
        let outcome = match applied {
            Applied::Accepted(_) => IngestOutcome::Accepted,
            Applied::Duplicate(_) => IngestOutcome::Duplicate,
            Applied::Refused(_) => IngestOutcome::Rejected,
        };
        telemetry::event_ingested(Some(interaction.channel), Some(interaction.kind), outcome);
        (sentiment, applied)
    }
}
