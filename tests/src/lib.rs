//! Harness for jitgate's integration tests: real broker processes on
//! loopback, each with its own data directory, policies and catalogue.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

pub mod agent;
pub mod broker;
pub mod browser;
pub mod fixtures;
pub mod graph_fake;
pub mod http_faults;
pub mod moto;
pub mod notify;
pub mod oidc;
pub mod on_call_fake;
pub mod port;
pub mod proxy;
pub mod saml;
pub mod scim;
pub mod slack_fake;
pub mod tamper;
pub mod teams_fake;
pub mod test_ca;

use std::path::PathBuf;

/// The workspace root.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The profile this crate was built with, and so the binaries it runs:
/// `debug` for tests, `release` for benchmarks.
pub const PROFILE: &str = if cfg!(debug_assertions) {
    "debug"
} else {
    "release"
};

/// `program` run under strace, which records every system call of it, its
/// threads and its children, a file per process or thread named `trace`
/// followed by `.PID` (so a run killed mid-line spoils no other's).
/// `setpriv --pdeathsig KILL` makes the program die with strace, so
/// killing what this spawns kills the program too.
pub fn traced(program: &std::path::Path, trace: &std::path::Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("strace");
    cmd.args(["-ff", "-qq", "-o"])
        .arg(trace)
        .args(["--", "setpriv", "--pdeathsig", "KILL", "--"])
        .arg(program);
    cmd
}

/// The process strace runs for [`traced`]: its only child (asked once
/// the program has shown it runs, so it is there).
pub fn tracee_of(strace: u32) -> u32 {
    let children =
        std::fs::read_to_string(format!("/proc/{strace}/task/{strace}/children")).unwrap_or_default();
    children
        .split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("strace {strace} runs nothing"))
        .parse()
        .unwrap()
}

/// The system calls the strace logs of [`traced`] record
/// for the program (`trace.PID`, one per process and thread; calls resumed
/// are named where they began), leaving out `setpriv`'s own before it
/// executes the program: systemd starts the program itself.
pub fn traced_syscalls(trace: &std::path::Path) -> std::collections::BTreeSet<String> {
    let prefix = format!("{}.", trace.file_name().unwrap().to_string_lossy());
    let mut calls = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(trace.parent().unwrap()).unwrap() {
        let path = entry.unwrap().path();
        if !path.file_name().unwrap().to_string_lossy().starts_with(&prefix) {
            continue;
        }
        let mut wrapper = false;
        for call in std::fs::read_to_string(&path).unwrap().lines() {
            if call.starts_with("execve(\"/usr/bin/setpriv\"") {
                wrapper = true;
                continue;
            }
            if wrapper {
                wrapper = !(call.starts_with("execve(") && call.contains(" = 0"));
                continue;
            }
            let Some((name, _)) = call.split_once('(') else {
                continue;
            };
            if !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                calls.insert(name.to_owned());
            }
        }
    }
    calls
}

/// A test peer `scripts/test-tools` installed into its Python venv
/// (`moto_server`, `scim2`); a missing one is a failure, never a skip.
pub fn test_tool(name: &str) -> PathBuf {
    let path = workspace().join("target/test-tools/venv/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: install the test peers with ./scripts/test-tools (scripts/test does)",
        path.display()
    );
    path
}

/// A binary built from this workspace with the same profile. The test
/// command builds them first (`scripts/test`), benchmarks build their own;
/// a missing one is a clear failure, never a skip.
pub fn bin(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    let path = target.join(PROFILE).join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first with `cargo build --workspace --bins` (scripts/test does; add --release for benchmarks)",
        path.display()
    );
    path
}
