//! Version 1 of jitgate's API and wire types.

pub mod api;
pub mod entitlement;
pub mod error;
pub mod ids;
pub mod protocol;
pub mod signing;

pub use entitlement::{Entitlement, PimGroupAccess, Target};
pub use error::{ErrorBody, ErrorCode};
pub use ids::{AgentId, ConfigId, GrantId, IdError, RequestId, ResourceId, UserId};
