use super::*;

fn catalog() -> Catalog {
    let mut resources = BTreeMap::new();
    for (id, group, cfg) in [
        ("aws-prod-admin", Some("prod"), "aws-main"),
        ("aws-dev-admin", Some("dev"), "aws-main"),
        ("entra-helpdesk", None, "entra-main"),
    ] {
        resources.insert(
            id.to_owned(),
            CatalogEntry {
                group: group.map(str::to_owned),
                configuration: cfg.to_owned(),
            },
        );
    }
    Catalog {
        resources,
        check_names: true,
    }
}

fn src(path: &str, text: &str) -> PolicySource {
    PolicySource {
        path: path.into(),
        text: text.into(),
    }
}

const GOOD: &str = r#"
@id("requesters-dev")
permit (principal in Jitgate::Role::"requester", action == Jitgate::Action::"request", resource in Jitgate::ResourceGroup::"dev");

@id("sre-approve")
permit (principal in Jitgate::Group::"sre", action == Jitgate::Action::"approve", resource);

@id("oncall-break-glass")
permit (principal in Jitgate::Group::"oncall", action == Jitgate::Action::"break_glass", resource == Jitgate::Resource::"aws-prod-admin")
when { context.duration_seconds <= 3600 };
"#;

fn roles(r: &[Role]) -> BTreeSet<Role> {
    r.iter().copied().collect()
}

fn groups(g: &[&str]) -> BTreeSet<String> {
    g.iter().map(|s| s.to_string()).collect()
}

#[test]
fn permits_follow_roles_groups_and_resource_groups() {
    let p = Policies::load(&[src("policies/main.cedar", GOOD)], &catalog()).unwrap();
    let req_roles = roles(&[Role::Requester]);
    let none = groups(&[]);
    let alice = PrincipalFacts {
        user: "alice",
        email: "alice@example.com",
        person: "alice",
        roles: &req_roles,
        groups: &none,
    };
    let dev = ResourceFacts {
        resource: "aws-dev-admin",
        group: Some("dev"),
        configuration: "aws-main",
        kind: "aws_identity_center",
    };
    let prod = ResourceFacts {
        resource: "aws-prod-admin",
        group: Some("prod"),
        configuration: "aws-main",
        kind: "aws_identity_center",
    };
    let f = RequestFacts {
        duration_seconds: 600,
        break_glass: false,
        has_ticket: false,
        on_call: false,
    };
    assert!(p.permits(Action::Request, &alice, &dev, f));
    assert!(!p.permits(Action::Request, &alice, &prod, f));
    assert!(!p.permits(Action::Approve, &alice, &dev, f));

    let no_roles = roles(&[]);
    let oncall = groups(&["oncall", "sre"]);
    let bob = PrincipalFacts {
        user: "bob",
        email: "bob@example.com",
        person: "bob",
        roles: &no_roles,
        groups: &oncall,
    };
    assert!(p.permits(Action::Approve, &bob, &prod, f));
    assert!(p.permits(Action::BreakGlass, &bob, &prod, f));
    let long = RequestFacts {
        duration_seconds: 7200,
        ..f
    };
    assert!(!p.permits(Action::BreakGlass, &bob, &prod, long));
    assert!(!p.permits(Action::Request, &bob, &dev, f));
}

#[test]
fn unknown_resource_names_file_line_and_known_names() {
    let text = "@id(\"x\")\npermit (principal, action == Jitgate::Action::\"request\",\n  resource == Jitgate::Resource::\"aws:prod-admin\");\n";
    let err = Policies::load(&[src("policies/prod.cedar", text)], &catalog()).unwrap_err();
    let shown = err.to_string();
    assert_eq!(err.0.len(), 1, "{shown}");
    assert_eq!(err.0[0].line, Some(3), "{shown}");
    assert!(shown.starts_with("policy policies/prod.cedar line 3: unknown resource `aws:prod-admin`; known: `aws-dev-admin`, `aws-prod-admin`, `entra-helpdesk`"), "{shown}");
}

#[test]
fn unknown_group_and_configuration_are_named() {
    let text = "permit (principal, action == Jitgate::Action::\"request\", resource in Jitgate::ResourceGroup::\"staging\");\npermit (principal, action == Jitgate::Action::\"request\", resource in Jitgate::Configuration::\"gcp\");";
    let err = Policies::load(&[src("p.cedar", text)], &catalog()).unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.contains("line 1: unknown resource group `staging`"),
        "{shown}"
    );
    assert!(shown.contains("line 2: unknown configuration `gcp`"), "{shown}");
}

#[test]
fn names_are_not_checked_offline() {
    let text = "permit (principal, action == Jitgate::Action::\"request\", resource == Jitgate::Resource::\"later\");";
    let offline = Catalog::default();
    assert!(Policies::load(&[src("p.cedar", text)], &offline).is_ok());
    // Workflow groups and resources too; their settings are still checked.
    let workflows = "[group.prod]\napprovals_required = 2\n[resource.later]\nmax_duration = \"1h\"\n";
    assert!(Policies::load(&[src("workflows.toml", workflows)], &offline).is_ok());
    let broken = "[group.prod]\napprovals_required = 0\n";
    let err = Policies::load(&[src("workflows.toml", broken)], &offline).unwrap_err();
    assert!(err.to_string().contains("[group.prod]"), "{err}");
}

#[test]
fn syntax_and_schema_errors_name_file_and_line() {
    let err = Policies::load(
        &[src(
            "a.cedar",
            "permit (principal,\n action == Jitgate::Action::\"request\",\n resource) when { ;",
        )],
        &catalog(),
    )
    .unwrap_err();
    assert_eq!(err.0[0].path, "a.cedar");
    assert_eq!(err.0[0].line, Some(3), "{err}");

    let err = Policies::load(
        &[src(
            "b.cedar",
            "\npermit (principal, action == Jitgate::Action::\"elevate\", resource);",
        )],
        &catalog(),
    )
    .unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains("b.cedar line 2"), "{shown}");
    assert!(shown.contains("elevate"), "{shown}");

    let err = Policies::load(
        &[src(
            "c.cedar",
            "permit (principal, action, resource) when { principal.shoe_size > 3 };",
        )],
        &catalog(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("shoe_size"), "{err}");

    let err = Policies::load(
        &[src(
            "d.cedar",
            "permit (principal in Jitgate::Role::\"root\", action, resource);",
        )],
        &catalog(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("root"), "{err}");
}

#[test]
fn duplicate_ids_across_files_are_refused() {
    let one = "@id(\"same\")\npermit (principal, action == Jitgate::Action::\"request\", resource);";
    let err = Policies::load(&[src("a.cedar", one), src("b.cedar", one)], &catalog()).unwrap_err();
    assert!(
        err.to_string()
            .contains("policy b.cedar line 1: policy id `same` is used twice"),
        "{err}"
    );
}

#[test]
fn workflow_errors_carry_file_and_line() {
    let wf = "[defaults]\napprovals_required = 1\n\n[resource.aws-prd-admin]\napprovals_required = 2\n";
    let err = Policies::load(&[src("policies/workflows.toml", wf)], &catalog()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "policy policies/workflows.toml line 4: unknown resource `aws-prd-admin`; known: `aws-dev-admin`, `aws-prod-admin`, `entra-helpdesk`"
    );
    let err = Policies::load(
        &[src("w/workflows.toml", "[defaults]\nmax_duration = 5\n")],
        &catalog(),
    )
    .unwrap_err();
    assert_eq!(err.0[0].line, Some(2), "{err}");
}
