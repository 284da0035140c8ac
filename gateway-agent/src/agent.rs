//! `jitgate-agent run`: open the journal and the provider, enforce
//! deadlines, and keep the channel to the broker.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::channel::{self, ChannelSettings};
use crate::clock::Clock;
use crate::executor::Executor;
use crate::journal::Journal;
use crate::provider::Provider;
use crate::state::StateDir;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
}

/// A running agent.
#[derive(Debug)]
pub struct Agent {
    pub executor: Arc<Executor>,
    pub connected: watch::Receiver<bool>,
    shutdown: watch::Sender<bool>,
    tasks: tokio::task::JoinSet<()>,
}

impl Agent {
    /// Starts the deadline watch first (an entitlement overdue from before a
    /// restart is removed at once), then the channel.
    pub fn start(
        state: StateDir,
        provider: Arc<dyn Provider>,
        settings: ChannelSettings,
        grace: Duration,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, RunError> {
        let identity = state.identity()?;
        let verifier = identity.verifier(&state.identity_path())?;
        state.credentials()?;
        let journal = Journal::open(&state.journal_path())?;
        let pruned = journal.prune(clock.now())?;
        let holdings = journal.holdings()?;
        tracing::info!(
            agent = %identity.agent,
            configuration = %identity.configuration,
            holdings = holdings.len(),
            pruned,
            "journal opened"
        );
        let executor = Arc::new(Executor::new(
            identity.configuration.clone(),
            verifier,
            journal,
            provider,
            grace,
            clock,
        ));
        let (connected_tx, connected) = watch::channel(false);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(executor.clone().enforce_deadlines(connected.clone()));
        tasks.spawn(channel::run(
            state,
            executor.clone(),
            settings,
            connected_tx,
            shutdown_rx,
        ));
        Ok(Self {
            executor,
            connected,
            shutdown,
            tasks,
        })
    }

    /// Closes the channel and stops the deadline watch.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}
