//! What `/metrics` tells an operator, followed through a grant's life, and
//! the dashboard and alert rules of `deploy/observability/` held to what
//! the broker exports: every query parses as PromQL and names only metric
//! families a running broker has (no promtool or Grafana runs here).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures_util::SinkExt;
use jitgate_broker::cli::client::ApiClient;
use jitgate_shared::v1::api::CommandOp;
use jitgate_shared::v1::protocol::{self, AgentMessage, FailureKind, Outcome};
use jitgate_tests::broker::TestBroker;
use jitgate_tests::fixtures::{policies, CATALOG};
use jitgate_tests::workspace;
use promql_parser::parser::Expr;
use serde::Deserialize;
use tokio_tungstenite::tungstenite::Message;

use crate::agents::FAST;
use crate::hub::{next_command, welcomed, Ws};
use crate::support::{eventually, request};

/// `name{configuration="aws-test"}`.
fn of_aws(name: &str) -> String {
    format!("{name}{{configuration=\"aws-test\"}}")
}

async fn answer(ws: &mut Ws, command: &str, outcome: Outcome) {
    let answer = AgentMessage::Result {
        command: command.to_owned(),
        outcome,
    };
    ws.send(Message::text(protocol::encode(&answer))).await.unwrap();
}

/// Waits until the sample `name` reads `want`.
async fn until_metric(b: &TestBroker, name: &str, want: f64) {
    eventually(Duration::from_secs(10), name, || async {
        (b.metric(name).await == Some(want)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn metrics_follow_a_grant_from_request_to_revoke() {
    let b = TestBroker::start_with(CATALOG, &policies(), FAST).await;
    let mut ws = welcomed(&b, "aws-test").await;
    until_metric(&b, &of_aws("jitgate_agents_online"), 1.0).await;

    // Certificates: the broker's own are fresh, the agent's is there.
    let now = chrono::Utc::now().timestamp() as f64;
    let expiry = |labels: &str| format!("jitgate_certificate_expiry_timestamp_seconds{{{labels}}}");
    for which in ["ca", "api", "hub"] {
        let at = b.metric(&expiry(&format!("certificate=\"{which}\""))).await;
        assert!(at.is_some_and(|t| t > now + 80.0 * 86_400.0), "{which}: {at:?}");
    }
    let agent_expiry = b
        .metric(&expiry("certificate=\"agent\",configuration=\"aws-test\""))
        .await;
    assert!(agent_expiry.is_some_and(|t| t > now), "{agent_expiry:?}");

    // A grant on its way: active, one command queued, none a revoke.
    let r = request(&b.client("bob"), "auto-admin", 600).await;
    let grant = r.grant.unwrap();
    let granted = next_command(&mut ws, CommandOp::Grant).await;
    assert_eq!(b.metric(&of_aws("jitgate_grants_active")).await, Some(1.0));
    assert_eq!(b.metric(&of_aws("jitgate_outbox_depth")).await, Some(1.0));
    assert_eq!(b.metric(&of_aws("jitgate_revokes_queued")).await, Some(0.0));
    assert!(b
        .metric(&of_aws("jitgate_outbox_oldest_age_seconds"))
        .await
        .is_some());

    // The cloud throttles it once; it is counted, and sent again.
    let throttled = Outcome::failed(
        FailureKind::Throttled,
        "ThrottlingException: Rate exceeded",
        Some(Duration::from_secs(1)),
    );
    answer(&mut ws, &granted.id, throttled).await;
    until_metric(
        &b,
        "jitgate_command_failures_total{configuration=\"aws-test\",kind=\"throttled\"}",
        1.0,
    )
    .await;
    let again = next_command(&mut ws, CommandOp::Grant).await;
    assert_eq!(again.id, granted.id);
    answer(&mut ws, &again.id, Outcome::Applied).await;
    until_metric(&b, &of_aws("jitgate_outbox_depth"), 0.0).await;
    assert_eq!(
        b.metric(&of_aws("jitgate_outbox_oldest_age_seconds")).await,
        Some(0.0)
    );

    // Revoked early: the revoke is queued, then confirmed, and how late it
    // was is observed once.
    b.client("bob").revoke(grant, None).await.unwrap();
    let revoke = next_command(&mut ws, CommandOp::Revoke).await;
    assert_eq!(b.metric(&of_aws("jitgate_revokes_queued")).await, Some(1.0));
    assert_eq!(b.metric(&of_aws("jitgate_grants_active")).await, Some(0.0));
    assert_eq!(b.metric("jitgate_revoke_lateness_seconds_count").await, Some(0.0));
    answer(&mut ws, &revoke.id, Outcome::Revoked).await;
    until_metric(&b, "jitgate_revoke_lateness_seconds_count", 1.0).await;
    assert_eq!(b.metric(&of_aws("jitgate_revokes_queued")).await, Some(0.0));

    // A token nobody was given is refused and counted.
    let guessed = ApiClient::new(&b.url, Some("jg_guessed".into()), Some(&b.ca())).unwrap();
    assert!(guessed.whoami().await.is_err());
    let refused = b
        .metric("jitgate_sign_ins_total{method=\"token\",result=\"failed\"}")
        .await;
    assert!(refused.is_some_and(|n| n >= 1.0), "{refused:?}");

    drop(ws);
    until_metric(&b, &of_aws("jitgate_agents_online"), 0.0).await;
}

/// The metric families a running broker exports, from `# TYPE` lines.
async fn exported_families(b: &TestBroker) -> BTreeSet<String> {
    b.metrics_text()
        .await
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_owned)
        .collect()
}

/// The metric names a PromQL expression selects, or why it does not parse.
/// Grafana's variables are given values first, as Grafana does.
fn selected_metrics(expr: &str) -> Result<BTreeSet<String>, String> {
    struct Names(BTreeSet<String>);
    impl promql_parser::util::ExprVisitor for Names {
        type Error = String;
        fn pre_visit(&mut self, e: &Expr) -> Result<bool, String> {
            match e {
                Expr::VectorSelector(vs) => self.0.extend(vs.name.clone()),
                Expr::MatrixSelector(ms) => self.0.extend(ms.vs.name.clone()),
                _ => {}
            }
            Ok(true)
        }
    }
    let expr = expr
        .replace("$__rate_interval", "5m")
        .replace("$configuration", ".*");
    let parsed = promql_parser::parser::parse(&expr).map_err(|e| format!("`{expr}`: {e}"))?;
    let mut names = Names(BTreeSet::new());
    promql_parser::util::walk_expr(&mut names, &parsed)?;
    Ok(names.0)
}

/// Whether `name` is a sample of an exported family (counters end in
/// `_total`, histograms give `_bucket`, `_sum` and `_count`).
fn is_exported(name: &str, families: &BTreeSet<String>) -> bool {
    families.contains(name)
        || ["_total", "_bucket", "_sum", "_count"]
            .iter()
            .any(|suffix| name.strip_suffix(suffix).is_some_and(|f| families.contains(f)))
}

/// Every `expr` in a dashboard, with the title of its panel.
fn dashboard_queries(v: &serde_json::Value, panel: &str, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(o) => {
            let title = o.get("title").and_then(|t| t.as_str()).unwrap_or(panel);
            for (k, child) in o {
                match (k.as_str(), child) {
                    ("expr", serde_json::Value::String(e)) => out.push((title.to_owned(), e.clone())),
                    _ => dashboard_queries(child, title, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|c| dashboard_queries(c, panel, out)),
        _ => {}
    }
}

/// A Prometheus rule file, as Prometheus reads it (unknown fields refused).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleGroup {
    name: String,
    #[serde(default)]
    interval: Option<String>,
    rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    alert: Option<String>,
    record: Option<String>,
    expr: String,
    #[serde(default, rename = "for")]
    for_: Option<String>,
    #[serde(default)]
    keep_firing_for: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// What the issue asks alerts for, by the rule that answers each.
const ALERTS: &[&str] = &[
    "JitgateRevokeFailing",
    "JitgateRevokeLate",
    "JitgateAgentOffline",
    "JitgateOutboxStuck",
    "JitgateCertificateExpiring",
    "JitgateAuditChainBroken",
];

#[tokio::test]
async fn the_dashboard_and_alert_rules_read_only_what_the_broker_exports() {
    let b = TestBroker::start_with(CATALOG, &policies(), &[]).await;
    let families = exported_families(&b).await;
    assert!(
        families.contains("jitgate_revoke_lateness_seconds"),
        "{families:?}"
    );
    // The check can fail: a family the broker lacks is caught.
    let made_up = selected_metrics("sum(rate(jitgate_made_up_total[5m]))").unwrap();
    assert!(!made_up.iter().all(|n| is_exported(n, &families)));
    assert!(selected_metrics("sum(rate(jitgate_revokes_failing[5m])").is_err());

    let observability = workspace().join("deploy/observability");

    // The dashboard.
    let text = std::fs::read_to_string(observability.join("grafana-dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut queries = Vec::new();
    dashboard_queries(&dashboard["panels"], "", &mut queries);
    assert!(queries.len() >= 20, "{queries:?}");
    let mut shown = BTreeSet::new();
    for (panel, expr) in &queries {
        let names = selected_metrics(expr).unwrap_or_else(|e| panic!("panel `{panel}`: {e}"));
        assert!(!names.is_empty(), "panel `{panel}` selects nothing: {expr}");
        for name in names {
            assert!(
                is_exported(&name, &families),
                "panel `{panel}` reads `{name}`, which the broker does not export"
            );
            shown.insert(name);
        }
    }
    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    for p in panels {
        let title = p["title"].as_str().unwrap();
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "panel id of `{title}` repeated"
        );
        let g = &p["gridPos"];
        assert!(
            g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24,
            "`{title}` is wider than the grid"
        );
        if p["type"] != "row" {
            assert!(
                p["description"].as_str().is_some_and(|d| !d.is_empty()),
                "`{title}` has no description"
            );
            assert_eq!(p["datasource"]["uid"], "${datasource}", "`{title}`");
        }
    }
    let variable = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "configuration")
        .unwrap();
    let source = variable["definition"].as_str().unwrap();
    let metric = source
        .strip_prefix("label_values(")
        .and_then(|s| s.split(',').next())
        .unwrap();
    assert!(
        is_exported(metric, &families),
        "the configuration list reads `{metric}`"
    );

    // The alert rules.
    let text = std::fs::read_to_string(observability.join("alerts.yaml")).unwrap();
    let rules: RuleFile = serde_norway::from_str(&text).unwrap();
    let mut alerts = BTreeSet::new();
    for group in &rules.groups {
        assert!(!group.name.is_empty());
        for d in group.interval.iter() {
            promql_parser::util::parse_duration(d).unwrap();
        }
        for rule in &group.rules {
            let name = match (&rule.alert, &rule.record) {
                (Some(a), None) => a.clone(),
                (None, Some(r)) => r.clone(),
                _ => panic!("a rule is an alert or a recording rule: {rule:?}"),
            };
            let names = selected_metrics(&rule.expr).unwrap_or_else(|e| panic!("rule `{name}`: {e}"));
            for metric in names {
                assert!(
                    is_exported(&metric, &families),
                    "rule `{name}` reads `{metric}`, which the broker does not export"
                );
            }
            for d in rule.for_.iter().chain(&rule.keep_firing_for) {
                promql_parser::util::parse_duration(d)
                    .unwrap_or_else(|e| panic!("rule `{name}`: `{d}`: {e}"));
            }
            if rule.alert.is_some() {
                assert!(alerts.insert(name.clone()), "alert `{name}` repeated");
                let severity = rule.labels.get("severity").map(String::as_str);
                assert!(
                    matches!(severity, Some("critical" | "warning")),
                    "`{name}`: severity {severity:?}"
                );
                for annotation in ["summary", "description"] {
                    assert!(
                        rule.annotations
                            .get(annotation)
                            .is_some_and(|a| !a.trim().is_empty()),
                        "`{name}` has no {annotation}"
                    );
                }
            }
        }
    }
    for want in ALERTS {
        assert!(alerts.contains(*want), "no alert `{want}`");
    }

    // Every family is explained where operators look.
    let guide = std::fs::read_to_string(workspace().join("docs/observing.md")).unwrap();
    for family in &families {
        assert!(
            guide.contains(&format!("`{family}`")),
            "docs/observing.md does not explain `{family}`"
        );
    }
    for alert in &alerts {
        assert!(
            guide.contains(alert.as_str()),
            "docs/observing.md does not explain `{alert}`"
        );
    }
    let family = |n: &str| {
        ["_total", "_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| n.strip_suffix(s).filter(|f| families.contains(*f)))
            .unwrap_or(n)
            .to_owned()
    };
    let shown: BTreeSet<String> = shown.iter().map(|n| family(n)).collect();
    for wanted in [
        "jitgate_grants_active",
        "jitgate_revokes_queued",
        "jitgate_revokes_failing",
        "jitgate_revoke_lateness_seconds",
        "jitgate_agents_online",
        "jitgate_outbox_depth",
        "jitgate_outbox_oldest_age_seconds",
        "jitgate_command_round_trip_seconds",
        "jitgate_command_failures",
        "jitgate_sign_ins",
        "jitgate_certificate_expiry_timestamp_seconds",
        "jitgate_audit_chain_broken",
    ] {
        assert!(shown.contains(wanted), "the dashboard does not show `{wanted}`");
    }
}
