//! What an administrator loads: catalogue files, `workflows.toml`, Cedar
//! policies. Not from strangers, but a bad file must be refused with a
//! message, never crash the broker or `jitgate-broker policy check`.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use jitgate_broker::domain::catalog::{check_configuration, check_mappings, check_resource};
use jitgate_broker::domain::chain::{check_links, provisioning, resolve, ConfigGraph};
use jitgate_broker::domain::policy::{Catalog, Policies, PolicySource};
use jitgate_broker::quickstart::Seed;

/// The quickstart's catalogue: what the policies in these targets name.
static CATALOG: LazyLock<Catalog> = LazyLock::new(|| {
    Seed::parse(
        include_str!("../../deploy/quickstart/catalog.toml"),
        "catalog.toml",
    )
    .expect("the quickstart's catalogue")
    .catalog()
});

/// A catalogue file: parsed, every configuration, resource and mapping
/// checked, and every resource's federated chain resolved.
pub fn catalogue(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(seed) = Seed::parse(text, "catalog.toml") else {
        return;
    };
    let ids: BTreeSet<_> = seed.configurations.iter().map(|c| c.id.clone()).collect();
    let graph = ConfigGraph::new(seed.configurations.clone(), ids);
    let _ = check_links(&graph);
    for c in &seed.configurations {
        let _ = check_configuration(c, |id| graph.configurations.contains_key(id));
    }
    for r in &seed.resources {
        let _ = check_resource(r, graph.configurations.get(&r.configuration));
        let _ = check_mappings(r, |id| graph.configurations.get(id));
        if let Ok(plan) = resolve(&graph, r, "alice@example.com") {
            let _ = provisioning(&graph, &plan);
        }
    }
    let _ = seed.catalog();
}

/// `workflows.toml`, checked against the catalogue and offline.
pub fn workflows(data: &[u8]) {
    load("workflows.toml", data);
}

/// A Cedar policy file, validated against the schema and the catalogue
/// and offline.
pub fn cedar_policies(data: &[u8]) {
    load("fuzz.cedar", data);
}

fn load(path: &str, data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let sources = [PolicySource {
        path: path.into(),
        text: text.into(),
    }];
    for check_names in [true, false] {
        let catalog = Catalog {
            check_names,
            ..CATALOG.clone()
        };
        if let Err(errors) = Policies::load(&sources, &catalog) {
            let _ = errors.to_string();
        }
    }
}
