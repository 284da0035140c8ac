//! People coming from identity systems: sign-in through identity providers
//! ([`sso`] decisions, [`oidc`] protocol) and the SCIM 2.0 server that
//! directories provision users and groups through ([`scim`]).
//!
//! The protocol logic here is pure (no I/O, no clock): what the published
//! schemas say, how an incoming resource is normalised, how a PATCH and a
//! filter apply to a stored resource. The services in
//! [`crate::service::scim`] store the results and keep jitgate's users in
//! step; the handlers in [`crate::api::scim`] speak HTTP.

pub mod oidc;
pub mod saml;
pub mod scim;
pub mod sso;
