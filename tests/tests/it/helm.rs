//! The Helm chart (`deploy/helm/jitgate`), rendered for one broker on the
//! embedded store (its defaults) and for several on PostgreSQL with every
//! optional part on (`tests/tools/helm/postgres.yaml`), then validated
//! against the Kubernetes API schemas (kubernetes-validate, strict) and
//! held to what the broker and the images need. Rendered by `helm
//! template` where helm is installed, else by `tests/tools/helm-render`
//! (Go's text/template and sprig, what Helm's engine is built on).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use jitgate_tests::broker::on_postgres;
use jitgate_tests::workspace;
use serde_json::Value;

fn chart() -> PathBuf {
    workspace().join("deploy/helm/jitgate")
}

/// The chart rendered with `values` files, or what the renderer said.
fn render(values: &[&Path]) -> Result<String, String> {
    let helm = which("helm");
    let mut command = match &helm {
        Some(helm) => {
            let mut c = Command::new(helm);
            c.args(["template", "jitgate"]);
            c
        }
        None => {
            let renderer = workspace().join("target/test-tools/helm-render/helm-render");
            assert!(
                renderer.exists(),
                "{} is missing: run scripts/test-tools",
                renderer.display()
            );
            Command::new(renderer)
        }
    };
    for v in values {
        command.arg("-f").arg(v);
    }
    let out = command.arg(chart()).output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// Runs kubernetes-validate (strict: unknown fields refused) on a
/// rendering; gives its complaints.
fn validate(rendered: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rendered.yaml");
    std::fs::write(&file, rendered).unwrap();
    let validator = workspace().join("target/test-tools/venv/bin/kubernetes-validate");
    let out = Command::new(validator)
        .args(["--strict", "--kubernetes-version", "1.30.0"])
        .arg(&file)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // Kinds it has no schema for (the ServiceMonitor) are only warned of,
    // and checked below.
    if out.status.success() && !said.contains("ERROR") {
        Ok(())
    } else {
        Err(said)
    }
}

/// The rendering's objects, by `Kind/name`; a document with a key twice
/// is refused (YAML allows it silently; the API server would keep one).
fn objects(rendered: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for doc in rendered.split("\n---\n").map(|d| d.trim_start_matches("---\n")) {
        if doc
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            continue;
        }
        let v: Value = serde_norway::from_str(doc).unwrap_or_else(|e| panic!("{e}\n{doc}"));
        let key = format!(
            "{}/{}",
            v["kind"].as_str().unwrap(),
            v["metadata"]["name"].as_str().unwrap()
        );
        assert!(out.insert(key.clone(), v).is_none(), "{key} rendered twice");
    }
    out
}

fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn env<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"].as_array()?.iter().find(|e| e["name"] == name)
}

/// Whether `container` mounts a volume at `path`.
fn mounted(container: &Value, path: &str) -> bool {
    container["volumeMounts"]
        .as_array()
        .is_some_and(|mounts| mounts.iter().any(|m| m["mountPath"] == path))
}

/// The user a Containerfile's runtime stage runs as.
fn image_user(image: &str) -> u64 {
    let text =
        std::fs::read_to_string(workspace().join(format!("deploy/container/{image}.Containerfile"))).unwrap();
    let user = text.lines().rev().find_map(|l| l.strip_prefix("USER ")).unwrap();
    user.split(':').next().unwrap().parse().unwrap()
}

/// What every pod of the chart must be: its image's user, never root, no
/// privilege to gain, a read-only root, resources requested.
fn check_pod(pod: &Value, image: &str) {
    let security = &pod["spec"]["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["runAsUser"], image_user(image), "the image's user");
    let init = pod["spec"]["initContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for c in pod["spec"]["containers"].as_array().unwrap().iter().chain(&init) {
        let name = c["name"].as_str().unwrap();
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL", "{name}");
    }
    for c in pod["spec"]["containers"].as_array().unwrap() {
        assert!(c["resources"]["requests"]["memory"].is_string(), "{}", c["name"]);
    }
}

/// The broker's probes: started and alive on /healthz, ready on /readyz,
/// over its own TLS.
fn check_broker(pod: &Value) {
    check_pod(pod, "broker");
    let broker = container(pod, "broker");
    for (probe, path) in [
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ] {
        assert_eq!(broker[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(broker[probe]["httpGet"]["scheme"], "HTTPS", "{probe}");
    }
    let ports: Vec<&str> = broker["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(ports, ["api", "hub"]);
    assert!(mounted(broker, "/var/lib/jitgate"), "the data directory");
}

/// Each Service selects the broker's pods, on a port the broker names.
fn check_services(objects: &BTreeMap<String, Value>, pod: &Value) {
    for service in ["Service/jitgate-api", "Service/jitgate-hub"] {
        let s = &objects[service];
        for (k, v) in s["spec"]["selector"].as_object().unwrap() {
            assert_eq!(&pod["metadata"]["labels"][k], v, "{service} selects {k}");
        }
        let target = s["spec"]["ports"][0]["targetPort"].as_str().unwrap();
        assert!(container(pod, "broker")["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == target));
    }
}

#[test]
fn the_chart_renders_one_broker_on_the_embedded_store_by_default() {
    if on_postgres() {
        return; // nothing here reads the test store
    }
    let rendered = render(&[]).unwrap();
    validate(&rendered).unwrap();
    let objects = objects(&rendered);
    let kinds: Vec<&str> = objects.keys().map(String::as_str).collect();
    assert_eq!(
        kinds,
        [
            "Service/jitgate-api",
            "Service/jitgate-hub",
            "StatefulSet/jitgate-broker"
        ]
    );
    let set = &objects["StatefulSet/jitgate-broker"];
    assert_eq!(set["spec"]["replicas"], 1, "the embedded store takes one broker");
    assert_eq!(set["spec"]["volumeClaimTemplates"][0]["metadata"]["name"], "data");
    let pod = &set["spec"]["template"];
    check_broker(pod);
    check_services(&objects, pod);
    let broker = container(pod, "broker");
    assert_eq!(env(broker, "JITGATE_STORE").unwrap()["value"], "sled");
    let names = env(broker, "JITGATE_SERVER_NAMES").unwrap()["value"]
        .as_str()
        .unwrap();
    assert!(
        names.contains("jitgate-hub.default.svc"),
        "agents in the cluster reach the hub by it: {names}"
    );
    assert_eq!(
        pod["spec"]["securityContext"]["fsGroup"], 10001,
        "the volume is the broker's"
    );
}

#[test]
fn the_chart_renders_brokers_on_postgresql_with_agents_and_validates() {
    if on_postgres() {
        return;
    }
    let values = workspace().join("tests/tools/helm/postgres.yaml");
    let rendered = render(&[&values]).unwrap();
    validate(&rendered).unwrap();
    let objects = objects(&rendered);
    for kind in [
        "ConfigMap/jitgate-config",
        "ConfigMap/jitgate-policies",
        "Deployment/jitgate-agent-aws-prod",
        "Deployment/jitgate-agent-entra-corp",
        "Deployment/jitgate-broker",
        "Ingress/jitgate",
        "PersistentVolumeClaim/jitgate-agent-aws-prod",
        "PersistentVolumeClaim/jitgate-agent-entra-corp",
        "PodDisruptionBudget/jitgate-broker",
        "ServiceMonitor/jitgate",
    ] {
        assert!(objects.contains_key(kind), "no {kind}: {:?}", objects.keys());
    }
    assert!(!objects.contains_key("StatefulSet/jitgate-broker"));

    // Three brokers, one database, one set of keys.
    let deployment = &objects["Deployment/jitgate-broker"];
    assert_eq!(deployment["spec"]["replicas"], 3);
    let pod = &deployment["spec"]["template"];
    check_broker(pod);
    check_services(&objects, pod);
    let broker = container(pod, "broker");
    assert_eq!(env(broker, "JITGATE_STORE").unwrap()["value"], "postgres");
    assert_eq!(
        env(broker, "JITGATE_DATABASE_URL").unwrap()["valueFrom"]["secretKeyRef"]["name"],
        "jitgate-database"
    );
    let names = env(broker, "JITGATE_SERVER_NAMES").unwrap()["value"]
        .as_str()
        .unwrap();
    assert!(
        names.starts_with("jitgate.example.com,"),
        "the operator's name first: {names}"
    );
    let keys = &pod["spec"]["initContainers"][0];
    assert_eq!(keys["name"], "keys");
    assert!(
        keys["command"][2].as_str().unwrap().contains("install -m 0600"),
        "owner-only keys"
    );
    assert_eq!(
        pod["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "keys")
            .unwrap()["secret"]["secretName"],
        "jitgate-keys"
    );
    assert!(mounted(broker, "/etc/jitgate/policies"));
    // The configuration file, from its ConfigMap, is one the broker reads.
    assert_eq!(
        env(broker, "JITGATE_CONFIG").unwrap()["value"],
        "/etc/jitgate/config/broker.toml"
    );
    assert!(mounted(broker, "/etc/jitgate/config"));
    let config = objects["ConfigMap/jitgate-config"]["data"]["broker.toml"]
        .as_str()
        .unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), config).unwrap();
    let read = jitgate_broker::config::BrokerConfig::load(Some(file.path()), &Default::default())
        .unwrap_or_else(|e| panic!("{e}\n{config}"));
    assert_eq!(read.agent_heartbeat, std::time::Duration::from_secs(10));
    let policies = &objects["ConfigMap/jitgate-policies"]["data"];
    assert!(policies["workflows.toml"]
        .as_str()
        .unwrap()
        .contains("approvals_required = 2"));
    assert_eq!(objects["Service/jitgate-hub"]["spec"]["type"], "LoadBalancer");

    // The ServiceMonitor (no schema bundled): scrapes /metrics on the API
    // port of the Service it selects, verifying the broker's CA.
    let monitor = &objects["ServiceMonitor/jitgate"];
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], "api");
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(endpoint["tlsConfig"]["ca"]["secret"]["name"], "jitgate-keys");
    for (k, v) in monitor["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(
            &objects["Service/jitgate-api"]["metadata"]["labels"][k], v,
            "selects the API by {k}"
        );
    }

    // An agent per configuration: enrolled once into its own volume,
    // through the in-cluster API, reaching the in-cluster hub.
    for configuration in ["aws-prod", "entra-corp"] {
        let name = format!("jitgate-agent-{configuration}");
        let agent = &objects[&format!("Deployment/{name}")];
        assert_eq!(agent["spec"]["replicas"], 1);
        assert_eq!(
            agent["spec"]["strategy"]["type"], "Recreate",
            "one agent on its journal at a time"
        );
        let pod = &agent["spec"]["template"];
        check_pod(pod, "agent");
        let enroll = &pod["spec"]["initContainers"][0];
        assert_eq!(enroll["name"], "enroll");
        assert_eq!(
            env(enroll, "JITGATE_JOIN_TOKEN").unwrap()["valueFrom"]["secretKeyRef"]["name"],
            format!("jitgate-join-{configuration}").as_str()
        );
        assert_eq!(
            env(enroll, "JITGATE_HUB_URL").unwrap()["value"],
            "wss://jitgate-hub.default.svc:8444"
        );
        assert_eq!(
            env(enroll, "JITGATE_BROKER").unwrap()["value"],
            "https://jitgate-api.default.svc:8443"
        );
        assert_eq!(
            pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
            name.as_str()
        );
    }
    let entra = &objects["Deployment/jitgate-agent-entra-corp"]["spec"]["template"];
    assert_eq!(
        container(entra, "agent")["envFrom"][0]["secretRef"]["name"],
        "jitgate-entra-client"
    );
    assert_eq!(
        objects["PersistentVolumeClaim/jitgate-agent-entra-corp"]["spec"]["resources"]["requests"]["storage"],
        "2Gi"
    );
    assert_eq!(
        objects["PersistentVolumeClaim/jitgate-agent-aws-prod"]["spec"]["resources"]["requests"]["storage"],
        "1Gi"
    );
}

#[test]
fn the_chart_refuses_settings_that_cannot_work_and_the_validator_catches_bad_manifests() {
    if on_postgres() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let values = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    for (text, says) in [
        ("broker:\n  store: postgres\n", "database.urlSecret.name"),
        (
            "broker:\n  store: postgres\ndatabase:\n  urlSecret:\n    name: db\n",
            "keys.existingSecret",
        ),
        (
            "broker:\n  store: etcd\n",
            "broker.store must be sled or postgres",
        ),
        (
            "agents:\n  - configuration: aws\n    provider: sandbox\n    joinTokenSecret: t\n",
            "caFingerprint",
        ),
        ("serviceMonitor:\n  enabled: true\n", "serviceMonitor.caSecret"),
    ] {
        let refused = render(&[&values("v.yaml", text)]).unwrap_err();
        assert!(refused.contains(says), "{text}: {refused}");
    }
    // A rendering the schemas refuse is refused: the check can fail.
    let bad = render(&[&values("bad.yaml", "broker:\n  store: postgres\n  replicas: three\ndatabase:\n  urlSecret:\n    name: db\nkeys:\n  existingSecret: k\n")])
        .unwrap();
    assert!(validate(&bad).is_err(), "replicas: three passed");
}
