//! Entra ID (Microsoft Graph). This module holds the credential: tokens
//! come from the `azure_identity` crate (which caches and refreshes them),
//! never from code of ours. The Graph provider itself comes next.

pub mod credential;
