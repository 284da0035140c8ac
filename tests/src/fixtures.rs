//! A standard catalogue and policy set for lifecycle tests.
//!
//! Resources, each in a group whose workflow the test relies on:
//! - `dev-admin` (dev): 1 approval; extension without approval up to 1h.
//! - `prod-admin` (prod): 2 approvals; extension needs approval.
//! - `auto-admin` (auto): auto-approved.
//! - `quick-admin` (quick): pending requests expire after 2s.
//!
//! People: alice (requester, developers), bob, carol and dave (approvers,
//! sre), erin (approver, linked to alice as the same person), admin.

pub const CATALOG: &str = r#"
[[configurations]]
id = "aws-test"
kind = "aws_identity_center"
identity_mode = { mode = "direct" }

[[resources]]
id = "dev-admin"
configuration = "aws-test"
group = "dev"
target = { kind = "aws_account_assignment", account_id = "111122223333", permission_set = "DevAdmin" }

[[resources]]
id = "prod-admin"
configuration = "aws-test"
group = "prod"
target = { kind = "aws_account_assignment", account_id = "444455556666", permission_set = "ProdAdmin" }

[[resources]]
id = "auto-admin"
configuration = "aws-test"
group = "auto"
target = { kind = "aws_account_assignment", account_id = "777788889999", permission_set = "ReadOnly" }

[[resources]]
id = "quick-admin"
configuration = "aws-test"
group = "quick"
target = { kind = "aws_account_assignment", account_id = "111122223333", permission_set = "Quick" }

[[users]]
id = "alice"
email = "alice@example.com"
roles = ["requester"]
groups = ["developers"]

[[users]]
id = "bob"
roles = ["requester", "approver"]
groups = ["sre"]

[[users]]
id = "carol"
roles = ["approver"]
groups = ["sre"]

[[users]]
id = "dave"
roles = ["approver"]
groups = ["sre"]

[[users]]
id = "erin"
roles = ["approver"]
groups = ["sre"]
person = "alice"

[[users]]
id = "admin"
roles = ["admin", "auditor"]
"#;

pub const POLICY: &str = r#"
@id("developers-request")
permit (principal in Jitgate::Group::"developers", action == Jitgate::Action::"request", resource);

@id("sre-request")
permit (principal in Jitgate::Group::"sre", action == Jitgate::Action::"request", resource);

@id("sre-approve")
permit (principal in Jitgate::Group::"sre", action == Jitgate::Action::"approve", resource);
"#;

pub const WORKFLOWS: &str = r#"
[defaults]
approvals_required = 1
max_duration = "1h"
default_duration = "10m"
pending_ttl = "1h"

[group.dev]
extension = { allowed = true, requires_approval = false, max_total = "1h" }

[group.prod]
approvals_required = 2
extension = { allowed = true, requires_approval = true, max_total = "1h" }

[group.auto]
auto_approve = true
approvals_required = 0

[group.quick]
pending_ttl = "2s"
"#;

pub fn policies() -> Vec<(&'static str, &'static str)> {
    vec![("access.cedar", POLICY), ("workflows.toml", WORKFLOWS)]
}

/// [`CATALOG`] with mailboxes for the approvers too (`erin`, alice's
/// second account, included): for the notification and chat tests.
pub fn catalog_with_mailboxes() -> String {
    let mut text = CATALOG.to_owned();
    for who in ["bob", "carol", "dave", "erin"] {
        text = text.replace(
            &format!("id = \"{who}\"\n"),
            &format!("id = \"{who}\"\nemail = \"{who}@example.com\"\n"),
        );
    }
    text
}

/// A catalogue of `users` requesters (`u0`, `u1`, ...) and `resources`
/// resources of one configuration (`aws-test`, each resource an account
/// of its own), and an admin: for runs with many grants at once. Its
/// resources need no approval ([`BULK_WORKFLOWS`]).
pub fn bulk_catalog(users: usize, resources: usize) -> String {
    bulk(users, resources, 0)
}

/// [`bulk_catalog`] with resources that need one approval, from any of
/// `approvers` approvers (`a0`, `a1`, ...).
pub fn reviewed_catalog(users: usize, resources: usize, approvers: usize) -> String {
    bulk(users, resources, approvers)
}

fn bulk(users: usize, resources: usize, approvers: usize) -> String {
    use std::fmt::Write;
    let group = if approvers == 0 { "auto" } else { "reviewed" };
    let mut c = String::from(
        "[[configurations]]\nid = \"aws-test\"\nkind = \"aws_identity_center\"\nidentity_mode = { mode = \"direct\" }\n",
    );
    for r in 0..resources {
        let account = 111_122_223_300 + r;
        write!(
            c,
            "[[resources]]\nid = \"r{r}\"\nconfiguration = \"aws-test\"\ngroup = \"{group}\"\ntarget = {{ kind = \"aws_account_assignment\", account_id = \"{account}\", permission_set = \"Admin\" }}\n"
        )
        .unwrap();
    }
    for u in 0..users {
        write!(
            c,
            "[[users]]\nid = \"u{u}\"\nroles = [\"requester\"]\ngroups = [\"developers\"]\n"
        )
        .unwrap();
    }
    for a in 0..approvers {
        write!(
            c,
            "[[users]]\nid = \"a{a}\"\nroles = [\"approver\"]\ngroups = [\"approvers\"]\n"
        )
        .unwrap();
    }
    c.push_str("[[users]]\nid = \"admin\"\nroles = [\"admin\", \"auditor\"]\n");
    c
}

/// Developers may request anything of [`bulk_catalog`], approvers approve
/// it.
pub const BULK_POLICY: &str = "permit (principal in Jitgate::Group::\"developers\", action == Jitgate::Action::\"request\", resource);\n\
     permit (principal in Jitgate::Group::\"approvers\", action == Jitgate::Action::\"approve\", resource);\n";
/// [`bulk_catalog`]'s resources need no approval.
pub const BULK_WORKFLOWS: &str = "[group.auto]\nauto_approve = true\napprovals_required = 0\n";
/// [`reviewed_catalog`]'s resources need one.
pub const REVIEWED_WORKFLOWS: &str = "[group.reviewed]\napprovals_required = 1\n";
