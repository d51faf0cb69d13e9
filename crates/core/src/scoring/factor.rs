//! The factors behind a score: what each is, with the figures that explain it. Scoring computes
//! them; their wording for people is the transport's (rapport-server's `api::reasons`).

use crate::domain::{Channel, Kind, UrgencyCue};

/// One signed contribution to a score.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Factor {
    /// What the factor is, with the figures its detail quotes.
    pub kind: FactorKind,
    /// Log-odds for retention-risk factors, urgency units for action factors.
    pub contribution: f64,
}

/// Whether a factor explains retention risk or the action's priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FactorGroup {
    /// A retention-risk factor (log-odds).
    Risk,
    /// A priority reason of the chosen action (urgency units).
    Priority,
}

/// What a factor is, with the figures its human detail quotes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FactorKind {
    /// Risk: the activity model's probability of no activity within the horizon.
    Activity {
        /// Probability of no inbound activity within the horizon, in [0, 1].
        p_no_activity: f64,
        /// Distinct UTC days with inbound activity.
        active_days: u32,
        /// Seconds since the last inbound activity (0 when there was none).
        silent_seconds: f64,
        /// The retention horizon, in seconds.
        horizon_seconds: f64,
        /// Where the probability comes from: the prior, a fit, or a backtested fit.
        basis: crate::scoring::RiskBasis,
    },
    /// Risk: recent engagement rate as a fraction of the long-run rate.
    EngagementDrop {
        /// Recent engagement rate divided by the long-run rate.
        rate_ratio: f64,
    },
    /// Risk: negative long-run sentiment.
    NegativeSentiment {
        /// Long-run sentiment, in [-1, 1].
        sentiment: f64,
    },
    /// Risk: recent sentiment below long-run.
    WorseningSentiment {
        /// Recent minus long-run sentiment (negative: worsening).
        trend: f64,
    },
    /// Risk: unanswered negative messages.
    OpenComplaints {
        /// Open threads whose most negative unanswered message is negative.
        count: u32,
    },
    /// Risk (lowers it): recent positive messages.
    PositiveContact,
    /// RESPOND: the most urgent unanswered thread, with its description; the contribution is the
    /// whole urgency, which the factors after it break down.
    Unanswered {
        /// Kind of the thread's oldest unanswered message.
        kind: Kind,
        /// Channel of the thread's oldest unanswered message.
        channel: Channel,
        /// Wall-clock seconds since the oldest unanswered message.
        waiting_seconds: f64,
        /// Polarity of the most negative unanswered message, in [-1, 1].
        worst_sentiment: f32,
        /// Largest audience among the unanswered messages.
        author_followers: u32,
        /// Unanswered messages in the thread.
        messages: u32,
        /// Until the reply is due (negative: overdue).
        due_in_seconds: f64,
        /// The thread is past its channel's missed horizon.
        missed: bool,
        /// The thread's intent, an id in the tenant's table of intent names (0: none).
        intent: u16,
    },
    /// RESPOND: business time waited against the SLA target.
    ReplyWait {
        /// Business-time seconds waited so far.
        waiting_business_seconds: f64,
        /// The reply target that applies, in business-time seconds.
        target_seconds: f64,
        /// The next-response target applies (the brand had answered before), not the first-response one.
        follow_up: bool,
    },
    /// RESPOND: the message asks for an answer (a question, a request).
    NeedsReply,
    /// RESPOND: how negative the unanswered message is.
    Negativity {
        /// Polarity of the most negative unanswered message, in [-1, 1].
        worst_sentiment: f32,
    },
    /// RESPOND: the author's audience.
    Reach {
        /// Largest audience among the unanswered messages.
        author_followers: u32,
    },
    /// RESPOND: said in public.
    PublicChannel {
        /// Channel of the thread's oldest unanswered message.
        channel: Channel,
    },
    /// RESPOND: several unanswered messages in the thread.
    ThreadMessages {
        /// Unanswered messages in the thread.
        messages: u32,
    },
    /// RESPOND: an urgency cue of the unanswered messages (a threat to leave, a lawyer, a
    /// manager, asking again, a danger).
    UrgencyCue {
        /// Which cue.
        cue: UrgencyCue,
        /// Distinct channels on which the customer waits for an answer (more than one is a
        /// repeat contact by itself).
        channels: u32,
    },
    /// RESPOND: what the customer has spent.
    CustomerValue {
        /// Sum of the customer's purchase values (money).
        lifetime_value: f64,
    },
    /// RESPOND: the customer is at risk of leaving.
    AtRiskCustomer {
        /// Retention risk, in [0, 1].
        retention_risk: f64,
    },
    /// RESCUE: retention risk above the threshold (ln risk).
    HighRisk {
        /// Retention risk, in [0, 1].
        retention_risk: f64,
    },
    /// RESCUE: what would be lost (ln(1 + lifetime value)).
    ValueAtRisk {
        /// Sum of the customer's purchase values (money).
        lifetime_value: f64,
    },
    /// ADVOCATE: positive, engaged and influential.
    Advocacy {
        /// Long-run sentiment, in [-1, 1].
        sentiment: f64,
        /// Engagement, 0 to 100.
        engagement: f64,
        /// Followers at the customer's latest inbound event.
        author_followers: u32,
    },
    /// NURTURE: engaged without a purchase.
    EngagedWithoutPurchase {
        /// Engagement, 0 to 100.
        engagement: f64,
    },
    /// RESPOND: copies of the waiting message came on other threads or channels (a cross-post):
    /// one matter, answered once; the copies add no urgency (contribution 0).
    CopiesJoined {
        /// Copies folded into the matter.
        copies: u32,
        /// The channels they came on, one bit per channel (`1 << channel as u8`).
        channels: u16,
    },
    /// Kept out of RESPOND: the customer's only waiting messages are a flood, copies of one text
    /// without a grievance (contribution 0; the action is what the customer would get without them).
    Flood {
        /// Copies of the text in its latest burst.
        copies: u32,
        /// From the burst's first copy to its latest, in seconds.
        span_seconds: f64,
        /// The channels of the burst's copies, one bit per channel (`1 << channel as u8`).
        channels: u16,
    },
    /// A rule for the customer's segment: its urgency weight and whether it set the action.
    SegmentRule {
        /// The odds multiplier inside the band (1: none).
        urgency_weight: f64,
        /// Whether the rule replaced the action scoring found.
        action_set: bool,
    },
}

impl Factor {
    /// Stable snake_case name of the factor.
    pub fn name(&self) -> &'static str {
        match self.kind {
            FactorKind::Activity { .. } => "activity",
            FactorKind::EngagementDrop { .. } => "engagement_drop",
            FactorKind::NegativeSentiment { .. } => "negative_sentiment",
            FactorKind::WorseningSentiment { .. } => "worsening_sentiment",
            FactorKind::OpenComplaints { .. } => "open_complaints",
            FactorKind::PositiveContact => "positive_contact",
            FactorKind::Unanswered { .. } => "unanswered",
            FactorKind::ReplyWait { .. } => "reply_wait",
            FactorKind::NeedsReply => "needs_reply",
            FactorKind::Negativity { .. } => "negativity",
            FactorKind::Reach { .. } => "reach",
            FactorKind::PublicChannel { .. } => "public_channel",
            FactorKind::ThreadMessages { .. } => "thread_messages",
            FactorKind::UrgencyCue { cue, .. } => cue.as_str(),
            FactorKind::CustomerValue { .. } => "customer_value",
            FactorKind::AtRiskCustomer { .. } => "at_risk_customer",
            FactorKind::HighRisk { .. } => "high_risk",
            FactorKind::ValueAtRisk { .. } => "value_at_risk",
            FactorKind::Advocacy { .. } => "advocacy",
            FactorKind::EngagedWithoutPurchase { .. } => "engaged_without_purchase",
            FactorKind::CopiesJoined { .. } => "copies_joined",
            FactorKind::Flood { .. } => "flood",
            FactorKind::SegmentRule { .. } => "segment_rule",
        }
    }

    /// Whether the factor explains retention risk or the priority.
    pub fn group(&self) -> FactorGroup {
        match self.kind {
            FactorKind::Activity { .. }
            | FactorKind::EngagementDrop { .. }
            | FactorKind::NegativeSentiment { .. }
            | FactorKind::WorseningSentiment { .. }
            | FactorKind::OpenComplaints { .. }
            | FactorKind::PositiveContact => FactorGroup::Risk,
            _ => FactorGroup::Priority,
        }
    }
}
