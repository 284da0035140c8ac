//! Every input kept for the fuzz targets (seeds from the tests, what the
//! fuzzer found interesting, inputs that once failed) replayed through the same entry
//! points as `cargo fuzz` runs, without sanitizers: what the fuzzers found
//! stays fixed in every test run. `scripts/fuzz` does the fuzzing.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use jitgate_fuzz::{target, TARGETS};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join(kind).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn replay(name: &str) {
    let t = target(name).unwrap_or_else(|| panic!("no fuzz target {name}"));
    let seeds = inputs("seeds", name);
    assert!(
        !seeds.is_empty(),
        "fuzz/seeds/{name} is empty (cargo run -p jitgate-fuzz --example seeds)"
    );
    let corpus = inputs("corpus", name);
    let regressions = inputs("regressions", name);
    let mut failed = Vec::new();
    for path in seeds.iter().chain(&corpus).chain(&regressions) {
        let data = std::fs::read(path).unwrap();
        if catch_unwind(AssertUnwindSafe(|| (t.run)(&data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{name}: {} of {} kept inputs fail:\n{}",
        failed.len(),
        seeds.len() + corpus.len() + regressions.len(),
        failed.join("\n")
    );
    println!(
        "{name}: {} seeds, {} corpus and {} regression inputs replayed",
        seeds.len(),
        corpus.len(),
        regressions.len()
    );
}

/// Every directory of kept inputs belongs to a target, and every target
/// has a test below.
#[test]
fn every_kept_input_belongs_to_a_target() {
    for kind in ["seeds", "corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz_dir().join(kind)) else {
            continue;
        };
        for entry in entries {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(target(&name).is_some(), "fuzz/{kind}/{name} belongs to no target");
        }
    }
    let tested = include_str!("fuzz_corpus.rs");
    for t in TARGETS {
        assert!(
            tested.contains(&format!("replays!({}", t.name))
                || tested.contains(&format!("    {},\n", t.name)),
            "fuzz target {} has no replay test",
            t.name
        );
    }
}

macro_rules! replays {
    ($($name:ident,)*) => {
        mod replays {
            $(
                #[test]
                fn $name() {
                    super::replay(stringify!($name));
                }
            )*
        }
    };
}

replays!(
    agent_frame,
    broker_frame,
    signed_command,
    scim_filter,
    scim_patch,
    scim_document,
    saml_response,
    oidc_id_token,
    sign_in_claims,
    return_to,
    catalogue,
    workflows,
    cedar_policies,
    api_body,
    api_query,
    backup_file,
);

/// The seeds reach past the checks the fuzzers attack (signatures,
/// audience, lifetime): the valid ones are believed, the tricked ones
/// refused. If a key or fixture changes, the fuzzers would otherwise stop
/// at the first refusal without anyone noticing.
#[test]
fn the_valid_seeds_are_believed_and_the_tricked_ones_refused() {
    use jitgate_fuzz::frames::agent_believes;
    use jitgate_fuzz::sign_in::{oidc_accepts, saml_accepts};

    let seed = |target: &str, name: &str| {
        std::fs::read(fuzz_dir().join("seeds").join(target).join(name))
            .unwrap_or_else(|e| panic!("seed {target}/{name}: {e}"))
    };
    for name in ["command-grant", "command-revoke", "command-grant-provision"] {
        assert!(agent_believes(&seed("broker_frame", name)), "{name} refused");
    }
    let mut tampered = seed("broker_frame", "command-grant");
    let at = tampered.windows(5).position(|w| w == b"Admin").unwrap();
    tampered[at] = b'B';
    assert!(!agent_believes(&tampered), "a tampered command believed");

    assert!(saml_accepts(&seed("saml_response", "valid"), true));
    assert!(saml_accepts(&seed("saml_response", "valid-unsolicited"), false));
    assert!(
        !saml_accepts(&seed("saml_response", "valid"), false),
        "a solicited response taken unsolicited"
    );
    for trick in [
        "unsigned",
        "other_key",
        "wrapping",
        "wrong_audience",
        "expired",
        "other_sp",
    ] {
        assert!(
            !saml_accepts(&seed("saml_response", trick), true),
            "SAML {trick} accepted"
        );
        let unsolicited = seed("saml_response", &format!("{trick}-unsolicited"));
        assert!(
            !saml_accepts(&unsolicited, false),
            "unsolicited SAML {trick} accepted"
        );
    }

    assert!(oidc_accepts(&seed("oidc_id_token", "valid")));
    for trick in ["expired", "alg-none", "hs256", "audiences"] {
        assert!(
            !oidc_accepts(&seed("oidc_id_token", trick)),
            "ID token {trick} accepted"
        );
    }
}
