//! `jitgate-agent`: the gateway agent that runs inside one cloud tenant,
//! keeps an outbound mutually authenticated websocket to the broker and
//! applies grant and revoke commands.
//!
//! This crate is a skeleton: enrollment, the channel, the journal and the
//! providers arrive with the "Gateway agents over mutually authenticated
//! websockets" issue. Until then the binary says so and exits non-zero
//! rather than pretend to work.

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "jitgate-agent",
    version,
    about = "jitgate gateway agent (not implemented yet)"
)]
struct Cli {}

fn main() -> std::process::ExitCode {
    let _ = Cli::parse();
    eprintln!("jitgate-agent: the gateway agent is not implemented yet; the broker queues commands in its outbox meanwhile");
    std::process::ExitCode::FAILURE
}
