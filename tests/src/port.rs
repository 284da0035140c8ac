//! Loopback ports for test peers.
//!
//! A peer whose address must be known before it starts (an identity
//! provider, written into a broker's configuration before the broker runs)
//! gets a [`ReservedPort`]: a listening socket the harness binds and holds,
//! handed to the peer as file descriptor [`LISTEN_FD`]. Nothing else on the
//! machine can take the port between choosing it and the peer serving on it.
//! A port merely chosen and released ([`free_port`]) can be taken meanwhile
//! by another test's listener or outgoing connection: CI once saw the OIDC
//! provider fail with `EADDRINUSE` that way.

use std::net::TcpListener;
use std::os::fd::OwnedFd;

use command_fds::{CommandFdExt, FdMapping};
use tokio::process::Command;

/// The descriptor a peer finds its listening socket on; its number is also
/// in the peer's `PEER_LISTEN_FD` environment variable.
pub const LISTEN_FD: i32 = 3;

/// A port on 127.0.0.1, bound and listening, held for a peer.
#[derive(Debug)]
pub struct ReservedPort {
    listener: TcpListener,
}

impl ReservedPort {
    pub fn new() -> Self {
        ReservedPort {
            listener: TcpListener::bind("127.0.0.1:0").expect("bind a loopback port"),
        }
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().unwrap().port()
    }

    /// Gives the socket to the peer `command` starts: as descriptor
    /// [`LISTEN_FD`], named by `PEER_LISTEN_FD`. The harness keeps its own
    /// copy, so a peer restarted on the same reservation finds the port
    /// still its own, and connections made meanwhile wait in the backlog.
    pub fn pass_to(&self, command: &mut Command) {
        let socket = OwnedFd::from(self.listener.try_clone().expect("duplicate the reserved socket"));
        command
            .fd_mappings(vec![FdMapping {
                parent_fd: socket,
                child_fd: LISTEN_FD,
            }])
            .expect("one descriptor mapping cannot collide");
        command.env("PEER_LISTEN_FD", LISTEN_FD.to_string());
    }
}

impl ReservedPort {
    /// The socket, for a peer served in the test's own process.
    pub fn into_listener(self) -> tokio::net::TcpListener {
        self.listener.set_nonblocking(true).unwrap();
        tokio::net::TcpListener::from_std(self.listener).unwrap()
    }
}

impl Default for ReservedPort {
    fn default() -> Self {
        Self::new()
    }
}

/// A port nothing listens on now (bound, then released), for a peer that
/// can only bind by itself (chromedriver) or an address meant to be out of
/// reach. Prefer [`ReservedPort`] where the peer can take a socket.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
