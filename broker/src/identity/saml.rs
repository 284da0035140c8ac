//! SAML 2.0 service provider, on the `samael` crate (XML signatures by
//! xmlsec1, never by hand): SP metadata, SP-initiated sign-in (AuthnRequest,
//! redirect binding) and the assertion consumer for POST-binding responses,
//! SP- or IdP-initiated.
//!
//! `samael` verifies the signature of the response and/or the assertion
//! against the IdP metadata's signing certificates and then reads only what
//! was signed (so an unsigned assertion placed beside a signed one is never
//! read); it checks destination, recipient, audience, NotBefore and
//! NotOnOrAfter (with `clock_skew`) and InResponseTo for SP-initiated
//! sign-ins. The broker adds one-time use of assertion ids.
//!
//! Attributes become the same claims OIDC gives ([`super::sso`]): NameID is
//! the key, `email_attribute` is required, `name_attribute`,
//! `role_attribute` and `groups_attribute` are optional.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use samael::metadata::EntityDescriptor;
use samael::schema::Assertion;
use samael::service_provider::{ServiceProvider, ServiceProviderBuilder};
use serde_json::{Map, Value};

use super::sso::ClaimRules;

pub const REDIRECT_BINDING: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";

#[derive(Debug, thiserror::Error)]
pub enum SamlError {
    #[error("SAML provider `{provider}`: {error}")]
    Config { provider: String, error: String },
    #[error("SAML response from `{provider}` refused: {reason}")]
    Rejected { provider: String, reason: String },
}

/// Attribute names to read, as configured.
#[derive(Debug, Clone)]
pub struct AttributeNames {
    pub email: String,
    pub name: String,
    pub role: String,
    pub groups: String,
}

/// A SAML identity provider as configured, with its imported metadata.
pub struct SamlProvider {
    pub name: String,
    pub rules: ClaimRules,
    pub attributes: AttributeNames,
    sp: ServiceProvider,
    /// The IdP's SSO endpoint for the redirect binding.
    sso_url: String,
    pub entity_id: String,
    pub acs_url: String,
}

impl std::fmt::Debug for SamlProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SamlProvider")
            .field("name", &self.name)
            .field("entity_id", &self.entity_id)
            .field("acs_url", &self.acs_url)
            .finish_non_exhaustive()
    }
}

/// A verified assertion: its id and end (for one-time use) and the claims.
#[derive(Debug, Clone)]
pub struct VerifiedAssertion {
    pub id: String,
    pub not_on_or_after: Option<DateTime<Utc>>,
    pub claims: Map<String, Value>,
}

impl SamlProvider {
    /// A provider from IdP metadata XML. Refuses metadata without a signing
    /// certificate (`samael` would then accept unsigned responses).
    pub fn new(
        name: &str,
        idp_metadata_xml: &str,
        entity_id: String,
        acs_url: String,
        clock_skew: chrono::Duration,
        rules: ClaimRules,
        attributes: AttributeNames,
    ) -> Result<Self, SamlError> {
        let config = |error: String| SamlError::Config {
            provider: name.to_owned(),
            error,
        };
        let idp: EntityDescriptor = idp_metadata_xml
            .parse()
            .map_err(|e| config(format!("IdP metadata is not SAML metadata: {e}")))?;
        let descriptor = idp
            .idp_sso_descriptors
            .as_ref()
            .and_then(|d| d.first())
            .ok_or_else(|| config("IdP metadata has no IDPSSODescriptor".into()))?;
        let sso_url = descriptor
            .single_sign_on_services
            .iter()
            .find(|s| s.binding == REDIRECT_BINDING)
            .map(|s| s.location.clone())
            .ok_or_else(|| {
                config("IdP metadata has no SingleSignOnService with the HTTP-Redirect binding".into())
            })?;
        let sp = ServiceProviderBuilder::default()
            .entity_id(Some(entity_id.clone()))
            .metadata_url(Some(entity_id.clone()))
            .acs_url(Some(acs_url.clone()))
            .slo_url(None)
            .idp_metadata(idp)
            // IdP-initiated responses are verified by a copy that allows
            // them; this one insists on InResponseTo.
            .allow_idp_initiated(false)
            .max_clock_skew(clock_skew)
            .build()
            .map_err(|e| config(e.to_string()))?;
        match sp.idp_signing_certs() {
            Ok(Some(certs)) if !certs.is_empty() => {}
            _ => {
                return Err(config(
                    "IdP metadata has no signing certificate; unsigned responses would be accepted".into(),
                ))
            }
        }
        Ok(Self {
            name: name.to_owned(),
            rules,
            attributes,
            sp,
            sso_url,
            entity_id,
            acs_url,
        })
    }

    /// Accepts responses and assertions issued up to `delay` ago (samael's
    /// default is 90 seconds, which sign-ins keep). For replaying responses
    /// made long ago: the fuzz targets' corpus.
    pub fn allowing_issue_delay(mut self, delay: chrono::Duration) -> Self {
        self.sp.max_issue_delay = delay;
        self
    }

    /// The SP metadata XML to give the IdP.
    pub fn metadata_xml(&self) -> Result<String, SamlError> {
        // samael wants a logout URL; jitgate has no single logout, so the
        // endpoint is left out of what it publishes.
        let mut sp = self.sp.clone();
        sp.slo_url = Some(self.acs_url.clone());
        let mut metadata = sp.metadata().map_err(|e| SamlError::Config {
            provider: self.name.clone(),
            error: format!("SP metadata: {e}"),
        })?;
        for d in metadata.sp_sso_descriptors.iter_mut().flatten() {
            d.single_logout_services = None;
        }
        samael::traits::ToXml::to_string(&metadata).map_err(|e| SamlError::Config {
            provider: self.name.clone(),
            error: format!("SP metadata: {e:?}"),
        })
    }

    /// An AuthnRequest with our own unguessable `request_id`, as a
    /// redirect-binding URL carrying `relay_state`.
    pub fn authn_redirect(&self, request_id: &str, relay_state: &str) -> Result<String, SamlError> {
        let fail = |e: Box<dyn std::error::Error>| SamlError::Config {
            provider: self.name.clone(),
            error: format!("AuthnRequest: {e}"),
        };
        let mut request = self.sp.make_authentication_request(&self.sso_url).map_err(fail)?;
        request.id = request_id.to_owned();
        let url = request
            .redirect(relay_state)
            .map_err(fail)?
            .ok_or_else(|| SamlError::Config {
                provider: self.name.clone(),
                error: "AuthnRequest has no destination".into(),
            })?;
        Ok(url.to_string())
    }

    /// Verifies a base64 `SAMLResponse`: SP-initiated when `request_id` is
    /// given (InResponseTo must match it), IdP-initiated otherwise.
    pub fn verify(
        &self,
        saml_response: &str,
        request_id: Option<&str>,
    ) -> Result<VerifiedAssertion, SamlError> {
        let reject = |reason: String| SamlError::Rejected {
            provider: self.name.clone(),
            reason,
        };
        let xml = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, saml_response.trim())
            .map_err(|e| reject(format!("SAMLResponse is not base64: {e}")))?;
        match assertions_in(&xml) {
            Ok(1) => {}
            Ok(0) => return Err(reject("the response carries no assertion".into())),
            Ok(n) => {
                return Err(reject(format!(
                    "the response carries {n} assertions; one is expected (signature wrapping?)"
                )))
            }
            Err(e) => return Err(reject(format!("the response is not XML: {e}"))),
        }
        let ids: Vec<&str> = request_id.into_iter().collect();
        let assertion = match request_id {
            Some(_) => self
                .sp
                .parse_base64_response(saml_response.trim(), Some(ids.as_slice())),
            None => {
                let mut unsolicited = self.sp.clone();
                unsolicited.allow_idp_initiated = true;
                unsolicited.parse_base64_response(saml_response.trim(), None)
            }
        }
        .map_err(|e| {
            let text = e.to_string();
            if text.contains("must be signed") || text.contains("validate signature") {
                reject(format!(
                    "no valid signature by the IdP's certificate (unsigned, or signed by another key): {text}"
                ))
            } else {
                reject(text)
            }
        })?;
        // The assertion's own InResponseTo: the request we sent, or none for
        // an IdP-initiated sign-in (a solicited response posted without its
        // login is someone else's).
        let answered: Vec<&str> = assertion
            .subject
            .iter()
            .flat_map(|s| s.subject_confirmations.iter().flatten())
            .filter_map(|c| c.subject_confirmation_data.as_ref())
            .filter_map(|d| d.in_response_to.as_deref())
            .collect();
        match request_id {
            Some(id) if answered.iter().any(|a| *a != id) => {
                return Err(reject(format!(
                    "the assertion answers request {}, not this sign-in's",
                    answered.join(", ")
                )))
            }
            None if !answered.is_empty() => {
                return Err(reject(
                    "the assertion answers a request, but no sign-in is waiting for it".into(),
                ))
            }
            _ => {}
        }
        let claims = claims_of(&assertion, &self.attributes)
            .map_err(|missing| reject(format!("the assertion has no {missing}")))?;
        Ok(VerifiedAssertion {
            id: assertion.id.clone(),
            not_on_or_after: assertion.conditions.as_ref().and_then(|c| c.not_on_or_after),
            claims,
        })
    }
}

/// How many `Assertion` (or `EncryptedAssertion`) elements a response
/// holds, wherever they are.
pub fn assertions_in(xml: &[u8]) -> Result<usize, quick_xml::Error> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut buf = Vec::new();
    let mut count = 0;
    loop {
        match reader.read_event_into(&mut buf)? {
            quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e) => {
                let local = e.local_name();
                if local.as_ref() == b"Assertion" || local.as_ref() == b"EncryptedAssertion" {
                    count += 1;
                }
            }
            quick_xml::events::Event::Eof => return Ok(count),
            _ => {}
        }
        buf.clear();
    }
}

/// The claims an assertion carries: `sub` (NameID), `email`, and `name`,
/// the role and groups attributes when present. Names match `Name` or
/// `FriendlyName`, without regard to case.
pub fn claims_of(assertion: &Assertion, names: &AttributeNames) -> Result<Map<String, Value>, &'static str> {
    let name_id = assertion
        .subject
        .as_ref()
        .and_then(|s| s.name_id.as_ref())
        .map(|n| n.value.trim().to_owned())
        .filter(|v| !v.is_empty())
        .ok_or("NameID")?;
    let mut values: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for statement in assertion.attribute_statements.iter().flatten() {
        for attribute in &statement.attributes {
            let keys = [attribute.name.as_deref(), attribute.friendly_name.as_deref()];
            for wanted in [&names.email, &names.name, &names.role, &names.groups] {
                if keys.iter().flatten().any(|k| k.eq_ignore_ascii_case(wanted)) {
                    values
                        .entry(wanted.clone())
                        .or_default()
                        .extend(attribute.values.iter().filter_map(|v| v.value.clone()));
                }
            }
        }
    }
    let first = |k: &str| values.get(k).and_then(|v| v.first()).cloned();
    let email = first(&names.email).ok_or("Email attribute")?;
    let mut claims = Map::new();
    claims.insert("sub".into(), Value::String(name_id));
    claims.insert("email".into(), Value::String(email));
    if let Some(name) = first(&names.name) {
        claims.insert("name".into(), Value::String(name));
    }
    if let Some(roles) = values.get(&names.role) {
        claims.insert("role".into(), Value::from(roles.clone()));
    }
    if let Some(groups) = values.get(&names.groups) {
        claims.insert("groups".into(), Value::from(groups.clone()));
    }
    Ok(claims)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn provider(metadata: &str) -> Result<SamlProvider, SamlError> {
        SamlProvider::new(
            "corp",
            metadata,
            "https://b/auth/saml/corp/metadata".into(),
            "https://b/auth/saml/corp/acs".into(),
            chrono::Duration::minutes(2),
            ClaimRules {
                provider: "corp".into(),
                key_claim: "sub".into(),
                groups_claim: "groups".into(),
                role_claim: "role".into(),
                default_role: None,
                email_domains: vec![],
                trust_unverified_email: true,
            },
            AttributeNames {
                email: "email".into(),
                name: "name".into(),
                role: "role".into(),
                groups: "groups".into(),
            },
        )
    }

    const NO_CERT: &str = r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://idp">
<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp/sso"/>
</md:IDPSSODescriptor></md:EntityDescriptor>"#;

    #[test]
    fn metadata_without_a_signing_certificate_or_redirect_endpoint_is_refused() {
        let err = provider(NO_CERT).unwrap_err().to_string();
        assert!(err.contains("no signing certificate"), "{err}");
        let post_only = NO_CERT.replace("HTTP-Redirect", "HTTP-POST");
        let err = provider(&post_only).unwrap_err().to_string();
        assert!(err.contains("HTTP-Redirect"), "{err}");
        let err = provider("not xml").unwrap_err().to_string();
        assert!(err.contains("not SAML metadata"), "{err}");
    }

    /// IdP metadata with a (throwaway) signing certificate.
    pub(crate) fn metadata_with_cert() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["idp".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, cert.der());
        NO_CERT.replace(
            "<md:SingleSignOnService",
            &format!(
                r#"<md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data><ds:X509Certificate>{der}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor><md:SingleSignOnService"#
            ),
        )
    }

    proptest::proptest! {
        /// Whatever a browser posts to the ACS is refused, never a panic.
        #[test]
        fn posted_responses_never_panic(
            xml in proptest::prop_oneof![
                proptest::string::string_regex("<[a-zA-Z:]{1,12}( [a-zA-Z:]{1,6}=\"[a-z0-9]{0,4}\")?>[a-z ]{0,8}(</[a-zA-Z:]{1,12}>)?").unwrap(),
                proptest::string::string_regex(".{0,64}").unwrap(),
                proptest::strategy::Just(r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="r" Version="2.0" IssueInstant="2026-01-01T00:00:00Z"><saml:Assertion ID="a" Version="2.0" IssueInstant="2026-01-01T00:00:00Z"><saml:Issuer>https://idp</saml:Issuer></saml:Assertion></samlp:Response>"#.to_owned()),
            ],
            raw in proptest::prelude::any::<bool>(),
        ) {
            let p = provider(&PROVIDER_METADATA).unwrap();
            let posted = if raw {
                xml.clone()
            } else {
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, xml.as_bytes())
            };
            proptest::prop_assert!(p.verify(&posted, None).is_err());
            proptest::prop_assert!(p.verify(&posted, Some("id-1")).is_err());
        }
    }

    static PROVIDER_METADATA: std::sync::LazyLock<String> = std::sync::LazyLock::new(metadata_with_cert);

    #[test]
    fn assertions_are_counted_wherever_they_hide() {
        let one =
            br#"<samlp:Response xmlns:samlp="p" xmlns:saml="a"><saml:Assertion ID="x"/></samlp:Response>"#;
        assert_eq!(assertions_in(one).unwrap(), 1);
        let wrapped = br#"<Response><Extensions><Assertion ID="evil"></Assertion></Extensions><a:Assertion xmlns:a="a" ID="x"/><EncryptedAssertion/></Response>"#;
        assert_eq!(assertions_in(wrapped).unwrap(), 3);
        assert!(assertions_in(b"<Response><Assertion></Response>").is_err());
    }
}
