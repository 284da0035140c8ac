use std::collections::BTreeMap;

use jitgate_shared::v1::api::ConfigKind;
use proptest::prelude::*;

use super::*;

fn id(s: &str) -> ConfigId {
    ConfigId::new(s).unwrap()
}

fn config(name: &str, kind: ConfigKind, directory: Option<&str>) -> Configuration {
    Configuration {
        id: id(name),
        kind,
        display_name: String::new(),
        tenant: BTreeMap::new(),
        identity_mode: match directory {
            None => IdentityMode::Direct,
            Some(d) => IdentityMode::Federated { directory: id(d) },
        },
        enabled: true,
    }
}

fn permission_set() -> Target {
    Target::AwsAccountAssignment {
        account_id: "111122223333".into(),
        permission_set: "AdminAccess".into(),
    }
}

fn entra_group(g: &str) -> Target {
    Target::EntraGroupMembership { group_id: g.into() }
}

fn resource(configuration: &str, realized_by: &[(&str, Target)]) -> Resource {
    Resource {
        id: ResourceId::new("aws-prod-admin").unwrap(),
        configuration: id(configuration),
        display_name: String::new(),
        group: None,
        target: permission_set(),
        realized_by: realized_by.iter().map(|(c, t)| (id(c), t.clone())).collect(),
    }
}

fn graph(configs: Vec<Configuration>, agents: &[&str]) -> ConfigGraph {
    ConfigGraph::new(configs, agents.iter().map(|a| id(a)).collect())
}

/// AWS Identity Center trusting Entra, both with agents.
fn aws_through_entra() -> ConfigGraph {
    graph(
        vec![
            config("aws", ConfigKind::AwsIdentityCenter, Some("entra")),
            config("entra", ConfigKind::EntraId, None),
        ],
        &["aws", "entra"],
    )
}

#[test]
fn a_direct_resource_is_applied_in_its_own_tenant() {
    let g = graph(vec![config("aws", ConfigKind::AwsIdentityCenter, None)], &["aws"]);
    let plan = resolve(&g, &resource("aws", &[]), "alice@example.com").unwrap();
    assert_eq!(plan.path, ChainPath(vec![id("aws")]));
    assert_eq!(plan.apply.configuration, id("aws"));
    assert_eq!(plan.apply.target, permission_set());
    assert_eq!(plan.apply.principal, "alice@example.com");
    assert!(plan.confirm.is_empty() && plan.path.0.len() == 1);
    // Its commands wait for an agent: no agent is not an error here.
    let no_agent = graph(vec![config("aws", ConfigKind::AwsIdentityCenter, None)], &[]);
    assert!(resolve(&no_agent, &resource("aws", &[]), "a@x").is_ok());
}

#[test]
fn a_federated_resource_is_applied_in_the_directory_and_confirmed_downstream() {
    let r = resource("aws", &[("entra", entra_group("g-1"))]);
    let plan = resolve(&aws_through_entra(), &r, "alice@example.com").unwrap();
    assert_eq!(plan.path.to_string(), "`aws` → `entra`");
    assert_eq!(plan.apply.configuration, id("entra"));
    assert_eq!(plan.apply.target, entra_group("g-1"));
    assert_eq!(plan.confirm.len(), 1);
    assert_eq!(plan.confirm[0].configuration, id("aws"));
    assert_eq!(plan.confirm[0].target, permission_set());
    assert_eq!(plan.path.0.len(), 2, "federated");

    // Without an agent downstream there is nothing to confirm with.
    let mut g = aws_through_entra();
    g.with_agents.remove(&id("aws"));
    assert!(resolve(&g, &r, "alice@example.com").unwrap().confirm.is_empty());
}

#[test]
fn three_links_confirm_where_mappings_and_agents_exist() {
    let g = graph(
        vec![
            config("aws", ConfigKind::AwsIdentityCenter, Some("partner")),
            config("partner", ConfigKind::EntraId, Some("home")),
            config("home", ConfigKind::EntraId, None),
        ],
        &["aws", "partner", "home"],
    );
    let r = resource(
        "aws",
        &[
            ("home", entra_group("home-g")),
            ("partner", entra_group("partner-g")),
        ],
    );
    let plan = resolve(&g, &r, "a@x").unwrap();
    assert_eq!(plan.path.to_string(), "`aws` → `partner` → `home`");
    assert_eq!(plan.apply.target, entra_group("home-g"));
    let confirm: Vec<&str> = plan.confirm.iter().map(|e| e.configuration.as_str()).collect();
    assert_eq!(confirm, vec!["aws", "partner"]);
}

#[test]
fn each_chain_error_names_the_path_walked() {
    let r = resource("aws", &[("entra", entra_group("g-1"))]);
    let cases: Vec<(ConfigGraph, &str)> = vec![
        (
            graph(
                vec![
                    config("aws", ConfigKind::AwsIdentityCenter, Some("entra")),
                    config("entra", ConfigKind::EntraId, Some("aws")),
                ],
                &["aws", "entra"],
            ),
            "chain `aws` → `entra`: `aws` comes round again",
        ),
        (
            graph(
                vec![config("aws", ConfigKind::AwsIdentityCenter, Some("entra"))],
                &["aws"],
            ),
            "chain `aws`: configuration `entra` does not exist",
        ),
        (
            {
                let mut g = aws_through_entra();
                g.configurations.get_mut(&id("entra")).unwrap().enabled = false;
                g
            },
            "chain `aws` → `entra`: configuration `entra` is disabled",
        ),
        (
            {
                let mut g = aws_through_entra();
                g.with_agents.remove(&id("entra"));
                g
            },
            "chain `aws` → `entra`: no enrolled agent for `entra`",
        ),
    ];
    for (g, want) in cases {
        let e = resolve(&g, &r, "a@x").unwrap_err();
        assert!(e.to_string().starts_with(want), "{e}\nwanted: {want}");
    }

    let unmapped = resource("aws", &[]);
    let e = resolve(&aws_through_entra(), &unmapped, "a@x").unwrap_err();
    assert_eq!(
        e.to_string(),
        "chain `aws` → `entra`: resource `aws-prod-admin` has no mapping in directory `entra` (set realized_by.entra)"
    );
    let wrong = resource("aws", &[("entra", permission_set())]);
    let e = resolve(&aws_through_entra(), &wrong, "a@x").unwrap_err();
    assert!(
        e.to_string()
            .contains("maps to a `aws_account_assignment` in directory `entra`"),
        "{e}"
    );

    // Nine links: too deep.
    let mut configs: Vec<Configuration> = (0..10)
        .map(|i| {
            let next = format!("c{}", i + 1);
            config(
                &format!("c{i}"),
                ConfigKind::EntraId,
                (i < 9).then_some(next.as_str()),
            )
        })
        .collect();
    configs.push(config("c10", ConfigKind::EntraId, None));
    let g = graph(configs, &["c9"]);
    let e = resolve(&g, &resource("c0", &[]), "a@x").unwrap_err();
    assert!(matches!(e, ChainError::TooDeep { .. }), "{e}");
    assert_eq!(e.path().0.len(), MAX_DEPTH + 1);
    // Eight links resolve.
    let e = resolve(&g, &resource("c1", &[("c9", entra_group("g"))]), "a@x");
    assert!(e.is_ok(), "{e:?}");
}

#[test]
fn check_links_refuses_cycles_and_allows_disabled_configurations() {
    let mut g = aws_through_entra();
    g.configurations.get_mut(&id("entra")).unwrap().enabled = false;
    assert!(check_links(&g).is_ok());
    g.configurations
        .insert(id("entra"), config("entra", ConfigKind::EntraId, Some("aws")));
    let e = check_links(&g).unwrap_err();
    assert!(matches!(e, ChainError::Cycle { .. }), "{e}");
}

/// A generated catalogue: `n` configurations, each direct or federated to
/// any (possibly missing) other, some disabled, some with agents; one
/// resource with mappings in some of them.
fn arb_world() -> impl Strategy<Value = (ConfigGraph, Resource)> {
    (2usize..12).prop_flat_map(|n| {
        let links = prop::collection::vec(prop::option::weighted(0.7, 0..n + 2), n);
        let enabled = prop::collection::vec(prop::bool::weighted(0.9), n);
        let agents = prop::collection::vec(prop::bool::weighted(0.8), n);
        let mapped = prop::collection::vec(prop::bool::weighted(0.7), n);
        (links, enabled, agents, mapped, 0..n).prop_map(move |(links, enabled, agents, mapped, start)| {
            let name = |i: usize| format!("c{i}");
            let configs = (0..n).map(|i| Configuration {
                enabled: enabled[i],
                ..config(&name(i), ConfigKind::EntraId, links[i].map(name).as_deref())
            });
            let with_agents = (0..n).filter(|i| agents[*i]).map(|i| id(&name(i))).collect();
            let g = ConfigGraph::new(configs, with_agents);
            let realized_by = (0..n)
                .filter(|i| mapped[*i])
                .map(|i| (id(&name(i)), entra_group(&format!("g{i}"))))
                .collect();
            let r = Resource {
                target: entra_group("own"),
                realized_by,
                ..resource(&name(start), &[])
            };
            (g, r)
        })
    })
}

/// Each consecutive pair of `path` is a directory link of the graph.
fn is_real_walk(g: &ConfigGraph, path: &[ConfigId]) -> bool {
    path.windows(2).all(|w| {
        matches!(
            g.configurations.get(&w[0]).map(|c| &c.identity_mode),
            Some(IdentityMode::Federated { directory }) if *directory == w[1]
        )
    })
}

proptest! {
    #[test]
    fn plans_never_hold_a_cycle_and_errors_name_real_paths((g, r) in arb_world()) {
        match resolve(&g, &r, "a@x") {
            Ok(plan) => {
                let p = &plan.path.0;
                let distinct: BTreeSet<&ConfigId> = p.iter().collect();
                prop_assert_eq!(distinct.len(), p.len(), "no configuration twice");
                prop_assert!(p.len() <= MAX_DEPTH + 1);
                prop_assert_eq!(&p[0], &r.configuration);
                prop_assert!(is_real_walk(&g, p));
                let root = p.last().unwrap();
                prop_assert_eq!(&plan.apply.configuration, root);
                prop_assert!(matches!(g.configurations[root].identity_mode, IdentityMode::Direct));
                prop_assert!(p.iter().all(|c| g.configurations[c].enabled));
                prop_assert!(p.len() == 1 || g.with_agents.contains(root));
                for c in &plan.confirm {
                    prop_assert!(p[..p.len() - 1].contains(&c.configuration));
                    prop_assert!(g.with_agents.contains(&c.configuration));
                }
            }
            Err(e) => {
                let p = &e.path().0;
                prop_assert!(p.is_empty() || p[0] == r.configuration, "{}", e);
                prop_assert!(is_real_walk(&g, p), "{}", e);
                prop_assert!(p.iter().all(|c| g.configurations.contains_key(c)), "{}", e);
                let message = e.to_string();
                for c in p {
                    prop_assert!(message.contains(&format!("`{c}`")), "{}", message);
                }
                match &e {
                    ChainError::Cycle { again, .. } => prop_assert!(p.contains(again)),
                    ChainError::Missing { missing, .. } => {
                        prop_assert!(!g.configurations.contains_key(missing))
                    }
                    ChainError::Disabled { config, .. } => {
                        prop_assert!(!g.configurations[config].enabled)
                    }
                    ChainError::NoAgent { config, .. } => prop_assert!(!g.with_agents.contains(config)),
                    ChainError::TooDeep { .. } => prop_assert_eq!(p.len(), MAX_DEPTH + 1),
                    ChainError::NoMapping { directory, .. } => {
                        prop_assert!(!r.realized_by.contains_key(directory))
                    }
                    ChainError::WrongKind { .. } => prop_assert!(false, "every target here fits"),
                }
            }
        }
    }
}

#[test]
fn provisioning_comes_from_the_configuration_federated_to_the_root() {
    let mut g = aws_through_entra();
    let r = resource("aws", &[("entra", entra_group("g-1"))]);
    let plan = resolve(&g, &r, "a@x").unwrap();
    assert_eq!(provisioning(&g, &plan), None, "no job named");
    let tenant = &mut g.configurations.get_mut(&id("aws")).unwrap().tenant;
    for (k, v) in PROVISIONING_KEYS.iter().zip(["sp-1", "job-1", "rule-1"]) {
        tenant.insert((*k).to_owned(), v.to_owned());
    }
    let p = provisioning(&g, &plan).unwrap();
    assert_eq!(
        (
            p.service_principal_id.as_str(),
            p.job_id.as_str(),
            p.rule_id.as_str()
        ),
        ("sp-1", "job-1", "rule-1")
    );
    // A direct resource provisions nothing.
    let direct = graph(vec![config("aws", ConfigKind::AwsIdentityCenter, None)], &["aws"]);
    let plan = resolve(&direct, &resource("aws", &[]), "a@x").unwrap();
    assert_eq!(provisioning(&direct, &plan), None);
}
