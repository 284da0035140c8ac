//! Prometheus metrics, exposed at `/metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub requests_created: Counter,
    pub reviews: Family<Labels, Counter>,
    pub grants_activated: Counter,
    pub grants_ended: Family<Labels, Counter>,
    pub commands_queued: Family<Labels, Counter>,
    /// Seconds from a job's due time to its durable completion.
    pub job_lateness: Histogram,
    pub http_requests: Family<Labels, Counter>,
    pub commands_sent: Counter,
    pub commands_settled: Family<Labels, Counter>,
    pub commands_retried: Counter,
    pub agent_self_revokes: Counter,
    pub agents_online: Gauge,
    /// Answers agents gave about federated grants awaiting confirmation
    /// downstream (held or not yet / gone or not yet).
    pub downstream_answers: Counter,
    /// Grants whose revoke was refused or failed for good and is being
    /// tried again (alert on any above zero).
    pub revokes_failing: Gauge,
    /// 1 when the broker's last check of its audit chain found it broken
    /// (alert on 1).
    pub audit_chain_broken: Gauge,
    /// Seconds from sending a command to the agent's answer arriving.
    pub command_round_trip: Histogram,
    /// Notifications delivered, by channel.
    pub notifications_delivered: Family<Labels, Counter>,
    /// Failed tries to deliver a notification, by channel (each is
    /// tried again with backoff).
    pub notifications_failed: Family<Labels, Counter>,
    /// Notifications given up (refused by the receiver, or failing for a
    /// day), by channel.
    pub notifications_given_up: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("jitgate");
        let requests_created = Counter::default();
        registry.register(
            "requests_created",
            "Access requests created",
            requests_created.clone(),
        );
        let reviews = Family::<Labels, Counter>::default();
        registry.register("reviews", "Reviews by decision", reviews.clone());
        let grants_activated = Counter::default();
        registry.register(
            "grants_activated",
            "Grant windows opened",
            grants_activated.clone(),
        );
        let grants_ended = Family::<Labels, Counter>::default();
        registry.register("grants_ended", "Grants ended, by reason", grants_ended.clone());
        let commands_queued = Family::<Labels, Counter>::default();
        registry.register(
            "commands_queued",
            "Agent commands queued, by op",
            commands_queued.clone(),
        );
        let job_lateness = Histogram::new([0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0]);
        registry.register(
            "job_lateness_seconds",
            "Time from a scheduled job's due instant to its durable completion",
            job_lateness.clone(),
        );
        let http_requests = Family::<Labels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by status class",
            http_requests.clone(),
        );
        let commands_sent = Counter::default();
        registry.register(
            "commands_sent",
            "Signed commands sent to agents",
            commands_sent.clone(),
        );
        let commands_settled = Family::<Labels, Counter>::default();
        registry.register(
            "commands_settled",
            "Commands answered for good by agents, by op and result",
            commands_settled.clone(),
        );
        let commands_retried = Counter::default();
        registry.register(
            "commands_retried",
            "Commands held back for a retry after a retryable failure or timeout",
            commands_retried.clone(),
        );
        let agent_self_revokes = Counter::default();
        registry.register(
            "agent_self_revokes",
            "Entitlements agents removed on their own at a deadline",
            agent_self_revokes.clone(),
        );
        let agents_online = Gauge::default();
        registry.register(
            "agents_online",
            "Agents with a live session",
            agents_online.clone(),
        );
        let downstream_answers = Counter::default();
        registry.register(
            "downstream_answers",
            "Answers agents gave about federated grants awaiting confirmation where they are used",
            downstream_answers.clone(),
        );
        let revokes_failing = Gauge::default();
        registry.register(
            "revokes_failing",
            "Revokes refused or failed for good, still queued and retried until they succeed or an admin force-closes them",
            revokes_failing.clone(),
        );
        let audit_chain_broken = Gauge::default();
        registry.register(
            "audit_chain_broken",
            "1 when the broker's last check of its audit log found a record edited, removed or cut off after its signed head",
            audit_chain_broken.clone(),
        );
        let command_round_trip =
            Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]);
        registry.register(
            "command_round_trip_seconds",
            "Time from sending a command to the agent's answer arriving",
            command_round_trip.clone(),
        );
        let notifications_delivered = Family::<Labels, Counter>::default();
        registry.register(
            "notifications_delivered",
            "Notifications delivered, by channel",
            notifications_delivered.clone(),
        );
        let notifications_failed = Family::<Labels, Counter>::default();
        registry.register(
            "notifications_failed",
            "Failed tries to deliver a notification, by channel; each is tried again with backoff",
            notifications_failed.clone(),
        );
        let notifications_given_up = Family::<Labels, Counter>::default();
        registry.register(
            "notifications_given_up",
            "Notifications given up (refused by the receiver, or failing for a day), by channel",
            notifications_given_up.clone(),
        );
        Self {
            registry,
            requests_created,
            reviews,
            grants_activated,
            grants_ended,
            commands_queued,
            job_lateness,
            http_requests,
            commands_sent,
            commands_settled,
            commands_retried,
            agent_self_revokes,
            agents_online,
            downstream_answers,
            revokes_failing,
            audit_chain_broken,
            command_round_trip,
            notifications_delivered,
            notifications_failed,
            notifications_given_up,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }
}
