//! SCIM 2.0 (RFC 7643, RFC 7644) as a service provider.
//!
//! Resources are kept as JSON documents in the shape of the published
//! schemas (core User with the enterprise extension, core Group), so what a
//! directory writes is what it reads back. jitgate's own [`User`] is derived
//! from a SCIM user ([`record::derive_user`]): display name, email, groups
//! and `active`.
//!
//! Wire types, the filter grammar and the published schemas come from the
//! `scim_v2` crate; evaluation against documents is here.
//!
//! [`User`]: crate::domain::user::User

pub mod document;
pub mod error;
pub mod filter;
pub mod patch;
pub mod record;
pub mod schema;

pub use error::ScimError;
pub use record::{ScimConnection, ScimResource};
pub use schema::ScimKind;
