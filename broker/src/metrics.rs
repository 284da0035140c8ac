//! Prometheus metrics, exposed at `/metrics`.
//!
//! Two kinds: what this broker did (counters and histograms, and the
//! sessions it holds), summed over brokers; and what the store holds now
//! (grants active, outboxes, agent certificates), set from the store at
//! each scrape by [`Broker::observe`](crate::service::Broker::observe), the
//! same on every broker sharing a store (take their `max`). docs/observing.md
//! lists them with the questions they answer.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Labels naming one configuration.
pub fn of_configuration(configuration: &str) -> Labels {
    vec![("configuration", configuration.to_owned())]
}

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
    /// Agent sessions this broker holds, by configuration.
    pub agents_online: Family<Labels, Gauge>,
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
    /// Seconds from when a grant's access should have ended (its window's
    /// end, or the moment it was ended early) to an agent confirming the
    /// entitlement gone.
    pub revoke_lateness: Histogram,
    /// Failures agents answered, by configuration and kind (`throttled`:
    /// the cloud asked to slow down).
    pub command_failures: Family<Labels, Counter>,
    /// Sign-ins, by method (`oidc`, `saml`, `link`, `refresh`, `token`)
    /// and result (`ok`, `failed`).
    pub sign_ins: Family<Labels, Counter>,
    /// Store-wide: grants holding an entitlement, by configuration.
    pub grants_active: Family<Labels, Gauge>,
    /// Store-wide: commands on each configuration's outbox.
    pub outbox_depth: Family<Labels, Gauge>,
    /// Store-wide: revokes among them.
    pub revokes_queued: Family<Labels, Gauge>,
    /// Store-wide: seconds since the oldest command on each outbox was
    /// issued (0 when empty).
    pub outbox_oldest_age: Family<Labels, Gauge<f64, AtomicU64>>,
    /// When certificates stop being valid, as Unix seconds: the broker's
    /// CA and server certificates, and per configuration the first agent
    /// certificate to expire.
    pub certificate_expiry: Family<Labels, Gauge>,
    /// Notifications delivered, by channel.
    pub notifications_delivered: Family<Labels, Counter>,
    /// Failed tries to deliver a notification, by channel (each is
    /// tried again with backoff).
    pub notifications_failed: Family<Labels, Counter>,
    /// Notifications given up (refused by the receiver, or failing for a
    /// day), by channel.
    pub notifications_given_up: Family<Labels, Counter>,
    /// Held while the store-wide gauges are replaced, and while rendering.
    setting_store_gauges: Mutex<()>,
    /// The agent certificate series last set from the store.
    agent_certificate_series: Mutex<Vec<Labels>>,
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
        let agents_online = Family::<Labels, Gauge>::default();
        registry.register(
            "agents_online",
            "Agent sessions this broker holds, by configuration",
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
        let revoke_lateness =
            Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0]);
        registry.register(
            "revoke_lateness_seconds",
            "Time from when a grant's access should have ended to an agent confirming the entitlement gone",
            revoke_lateness.clone(),
        );
        let command_failures = Family::<Labels, Counter>::default();
        registry.register(
            "command_failures",
            "Failures agents answered, by configuration and kind (throttled: the cloud asked to slow down)",
            command_failures.clone(),
        );
        let sign_ins = Family::<Labels, Counter>::default();
        registry.register("sign_ins", "Sign-ins by method and result", sign_ins.clone());
        let grants_active = Family::<Labels, Gauge>::default();
        registry.register(
            "grants_active",
            "Grants holding an entitlement now, by configuration (store-wide)",
            grants_active.clone(),
        );
        let outbox_depth = Family::<Labels, Gauge>::default();
        registry.register(
            "outbox_depth",
            "Commands queued for each configuration's agents (store-wide)",
            outbox_depth.clone(),
        );
        let revokes_queued = Family::<Labels, Gauge>::default();
        registry.register(
            "revokes_queued",
            "Revokes queued for each configuration's agents (store-wide)",
            revokes_queued.clone(),
        );
        let outbox_oldest_age = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "outbox_oldest_age_seconds",
            "Seconds since the oldest queued command of each configuration was issued, 0 when none (store-wide)",
            outbox_oldest_age.clone(),
        );
        let certificate_expiry = Family::<Labels, Gauge>::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "When a certificate stops being valid: the broker's CA and server certificates, and the first agent certificate of each configuration to expire",
            certificate_expiry.clone(),
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
            revoke_lateness,
            command_failures,
            sign_ins,
            grants_active,
            outbox_depth,
            revokes_queued,
            outbox_oldest_age,
            certificate_expiry,
            notifications_delivered,
            notifications_failed,
            notifications_given_up,
            setting_store_gauges: Mutex::new(()),
            agent_certificate_series: Mutex::new(Vec::new()),
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let _setting = self
            .setting_store_gauges
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }

    /// Counts a sign-in by `method`, and whether it succeeded.
    pub fn sign_in(&self, method: &'static str, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.sign_ins
            .get_or_create(&vec![
                ("method", method.to_owned()),
                ("result", result.to_owned()),
            ])
            .inc();
    }

    /// Records when one of the broker's own certificates (`ca`, `api`,
    /// `hub`) stops being valid.
    pub fn broker_certificate(&self, which: &'static str, not_after: DateTime<Utc>) {
        self.certificate_expiry
            .get_or_create(&vec![("certificate", which.to_owned())])
            .set(not_after.timestamp());
    }

    /// Replaces the store-wide gauges with `observed`: configurations no
    /// longer there lose their series. A scrape never sees them half set.
    pub fn set_store_gauges(&self, observed: &StoreGauges) {
        let _setting = self
            .setting_store_gauges
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.grants_active.clear();
        self.outbox_depth.clear();
        self.revokes_queued.clear();
        self.outbox_oldest_age.clear();
        for (configuration, c) in &observed.configurations {
            let labels = of_configuration(configuration);
            self.grants_active.get_or_create(&labels).set(c.grants_active);
            self.outbox_depth.get_or_create(&labels).set(c.outbox_depth);
            self.revokes_queued.get_or_create(&labels).set(c.revokes_queued);
            self.outbox_oldest_age
                .get_or_create(&labels)
                .set(c.outbox_oldest_age_seconds);
        }
        // The broker's own certificates are set where they are issued;
        // only the agents' series are replaced here.
        let mut agent_series = self
            .agent_certificate_series
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for labels in agent_series.drain(..) {
            self.certificate_expiry.remove(&labels);
        }
        for (configuration, c) in &observed.configurations {
            if let Some(not_after) = c.first_agent_certificate_expiry {
                let labels = vec![
                    ("certificate", "agent".to_owned()),
                    ("configuration", configuration.clone()),
                ];
                self.certificate_expiry
                    .get_or_create(&labels)
                    .set(not_after.timestamp());
                agent_series.push(labels);
            }
        }
    }
}

/// What the store holds now, per configuration: what
/// [`Metrics::set_store_gauges`] shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreGauges {
    pub configurations: BTreeMap<String, ConfigurationGauges>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigurationGauges {
    pub grants_active: i64,
    pub outbox_depth: i64,
    pub revokes_queued: i64,
    pub outbox_oldest_age_seconds: f64,
    /// The first certificate of the configuration's active agents to
    /// expire.
    pub first_agent_certificate_expiry: Option<DateTime<Utc>>,
}
