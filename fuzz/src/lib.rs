//! The entry points of jitgate's fuzz targets: each takes bytes an attacker
//! controls and hands them to the code that receives them in the broker or
//! the agent, the way that code receives them, then checks what must hold
//! of the answer (a round trip, a refusal). A panic is a finding.
//!
//! `cargo fuzz` runs them coverage-guided (`scripts/fuzz`, one binary per
//! target under `fuzz_targets/`); the corpus replay test runs every kept
//! input through [`TARGETS`] in the ordinary test suite. Inputs live in
//! `fuzz/seeds/<target>/` (from the tests: `cargo run -p jitgate-fuzz
//! --example seeds`, `fuzz/saml_seeds.py`), `fuzz/corpus/<target>/` (what
//! the fuzzer found interesting, minimised) and `fuzz/regressions/<target>/`
//! (inputs that once failed).
// Panicking on a broken property is how a fuzz target reports it.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

mod api;
mod backup;
mod catalogue;
pub mod frames;
mod scim;
pub mod sign_in;

pub use api::{api_body, api_query};
pub use backup::backup_file;
pub use catalogue::{catalogue, cedar_policies, workflows};
pub use frames::{agent_frame, broker_frame, signed_command};
pub use scim::{scim_document, scim_filter, scim_patch};
pub use sign_in::{oidc_id_token, return_to, saml_response, sign_in_claims};

/// One fuzz target: its name (the binary, the corpus directory) and entry.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub name: &'static str,
    /// What it feeds, for the fuzz script's summary.
    pub about: &'static str,
    pub run: fn(&[u8]),
}

/// Every target, in the order the fuzz script runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "agent_frame",
        about: "agent → broker frames, as the hub decodes them",
        run: agent_frame,
    },
    Target {
        name: "broker_frame",
        about: "broker → agent frames and the commands in them, as the agent decodes and verifies them",
        run: broker_frame,
    },
    Target {
        name: "signed_command",
        about: "command bodies signed by the broker, verified by the agent, and tampered with",
        run: signed_command,
    },
    Target {
        name: "scim_filter",
        about: "SCIM list queries and SearchRequest bodies: filters, attribute paths, evaluation",
        run: scim_filter,
    },
    Target {
        name: "scim_patch",
        about: "SCIM PATCH bodies applied to a user and a group",
        run: scim_patch,
    },
    Target {
        name: "scim_document",
        about: "SCIM resources sent with POST and PUT",
        run: scim_document,
    },
    Target {
        name: "saml_response",
        about: "SAMLResponse posted to the ACS, and assertions' claims",
        run: saml_response,
    },
    Target {
        name: "oidc_id_token",
        about: "ID tokens from a provider's token response",
        run: oidc_id_token,
    },
    Target {
        name: "sign_in_claims",
        about: "the claims of a verified sign-in: key, email, groups, roles, user ids",
        run: sign_in_claims,
    },
    Target {
        name: "return_to",
        about: "where a browser is sent after signing in",
        run: return_to,
    },
    Target {
        name: "catalogue",
        about: "catalogue files: configurations, resources, federated chains",
        run: catalogue,
    },
    Target {
        name: "workflows",
        about: "workflows.toml",
        run: workflows,
    },
    Target {
        name: "cedar_policies",
        about: "Cedar policy files against the schema and a catalogue",
        run: cedar_policies,
    },
    Target {
        name: "api_body",
        about: "REST API JSON bodies through the API's extractors",
        run: api_body,
    },
    Target {
        name: "api_query",
        about: "REST API and sign-in query strings and forms (OIDC callback, SAML post, return_to)",
        run: api_query,
    },
    Target {
        name: "backup_file",
        about: "backup files given to `jitgate-broker restore`",
        run: backup_file,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// A fixed instant (2027-01-15): the same input behaves the same every run.
fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("a valid instant")
}
