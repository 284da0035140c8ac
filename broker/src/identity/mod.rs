//! People coming from identity systems:
//!
//! - [`sso`]: sign-in decisions whatever the protocol (which provider an
//!   email belongs to, roles from claims, just-in-time users). Pure.
//! - [`oidc`]: the OpenID Connect relying party (discovery, code flow with
//!   PKCE, ID token verification, refresh), over the broker's HTTP client.
//! - [`saml`]: the SAML 2.0 service provider (metadata, AuthnRequest, the
//!   assertion consumer), signatures checked by xmlsec1 through `samael`.
//! - [`scim`]: the SCIM 2.0 server's protocol logic (schemas, normalising a
//!   resource, PATCH and filters). Pure.
//!
//! The services in [`crate::service::sign_in`] and [`crate::service::scim`]
//! store the results and keep jitgate's users in step; the handlers in
//! [`crate::api`] speak HTTP.

pub mod oidc;
pub mod saml;
pub mod scim;
pub mod sso;
