//! Sign-in: SAML responses at the ACS, OIDC ID tokens, the claims of a
//! verified sign-in, and where the browser goes afterwards.

use std::sync::{Arc, LazyLock};

use base64::Engine;
use jitgate_broker::identity::oidc::{OidcProvider, OidcSettings};
use jitgate_broker::identity::saml::{assertions_in, claims_of, AttributeNames, SamlProvider};
use jitgate_broker::identity::sso::{
    check_domain, local_return_path, roles_for, user_id_candidates, ClaimRules, SignInClaims,
};
use openidconnect::core::CoreProviderMetadata;
use openidconnect::Nonce;
use serde_json::{Map, Value};

/// The identity provider in these targets (`fuzz/keys/`, made for fuzzing
/// only; its key signs the seeds' responses and tokens): SAML metadata
/// written by `fuzz/saml_seeds.py`, and its key as a JWKS.
const IDP_METADATA: &str = include_str!("../keys/idp-metadata.xml");
const IDP_JWKS: &str = include_str!("../keys/jwks.json");
pub const ISSUER: &str = "https://idp.example";
pub const CLIENT_ID: &str = "jitgate";
pub const NONCE: &str = "fuzz-nonce";
/// The SP-initiated sign-in the ACS is waiting for.
pub const SAML_REQUEST: &str = "id-fuzz-request";

fn rules() -> ClaimRules {
    ClaimRules {
        provider: "corp".into(),
        key_claim: "sub".into(),
        groups_claim: "groups".into(),
        role_claim: "role".into(),
        default_role: None,
        email_domains: vec!["example.com".into()],
        trust_unverified_email: false,
    }
}

fn attribute_names() -> AttributeNames {
    AttributeNames {
        email: "email".into(),
        name: "name".into(),
        role: "role".into(),
        groups: "groups".into(),
    }
}

static SAML: LazyLock<SamlProvider> = LazyLock::new(|| {
    SamlProvider::new(
        "corp",
        IDP_METADATA,
        "https://broker.example/auth/saml/corp/metadata".into(),
        "https://broker.example/auth/saml/corp/acs".into(),
        chrono::Duration::minutes(2),
        rules(),
        attribute_names(),
    )
    .expect("the fuzz IdP's metadata")
    // The seeds' responses were issued when they were made; they are valid
    // for forty years otherwise (fuzz/saml_seeds.py).
    .allowing_issue_delay(chrono::Duration::days(365 * 40))
});

/// A `SAMLResponse` as the ACS receives it (base64), for the sign-in the
/// broker is waiting for and unsolicited; the raw XML too, encoded here.
/// Only the IdP's certificate makes an assertion the broker believes.
pub fn saml_response(data: &[u8]) {
    let encoded = base64::engine::general_purpose::STANDARD.encode(data);
    let text = std::str::from_utf8(data).ok();
    for response in [Some(encoded.as_str()), text].into_iter().flatten() {
        for request in [Some(SAML_REQUEST), None] {
            let _ = saml_verify(response, request);
        }
    }
    let _ = assertions_in(data);
    if let Some(assertion) = text.and_then(|t| t.parse::<samael::schema::Assertion>().ok()) {
        if let Ok(claims) = claims_of(&assertion, &attribute_names()) {
            read_claims(&claims);
        }
    }
}

/// Whether the ACS signs someone in with this response (XML): for the
/// sign-in it is waiting for when `solicited`, else unsolicited.
pub fn saml_accepts(xml: &[u8], solicited: bool) -> bool {
    let encoded = base64::engine::general_purpose::STANDARD.encode(xml);
    saml_verify(&encoded, solicited.then_some(SAML_REQUEST)).is_some()
}

fn saml_verify(response: &str, request: Option<&str>) -> Option<Map<String, Value>> {
    let verified = SAML.verify(response, request).ok()?;
    assert!(
        verified.claims.contains_key("sub"),
        "a verified assertion without a subject: {verified:?}"
    );
    read_claims(&verified.claims);
    Some(verified.claims)
}

static OIDC: LazyLock<(Arc<OidcProvider>, CoreProviderMetadata)> = LazyLock::new(|| {
    jitgate_broker::tls::install_crypto_provider();
    let provider = OidcProvider::new(OidcSettings {
        name: "corp".into(),
        issuer: ISSUER.into(),
        client_id: CLIENT_ID.into(),
        client_secret: "fuzz-secret".into(),
        callback_url: "https://broker.example/auth/oidc/callback".into(),
        audiences: vec![],
        signing_algorithms: vec!["RS256".into()],
        scopes: vec!["openid".into(), "email".into()],
        rules: rules(),
        ca_pem: None,
    })
    .expect("the fuzz OIDC provider");
    let discovery = serde_json::json!({
        "issuer": ISSUER,
        "authorization_endpoint": format!("{ISSUER}/auth"),
        "token_endpoint": format!("{ISSUER}/token"),
        "jwks_uri": format!("{ISSUER}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    });
    let metadata: CoreProviderMetadata = serde_json::from_value(discovery).expect("discovery document");
    let jwks = serde_json::from_str(IDP_JWKS).expect("the fuzz JWKS");
    (provider, metadata.set_jwks(jwks))
});

/// An ID token from a token response, checked as a sign-in checks it; the
/// claims of one that verifies are read as a sign-in reads them.
pub fn oidc_id_token(data: &[u8]) {
    let _ = oidc_accepts(data);
}

/// Whether a sign-in believes this ID token.
pub fn oidc_accepts(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let (provider, metadata) = &*OIDC;
    let nonce = Nonce::new(NONCE.into());
    if provider
        .check_id_token(metadata, text, &nonce, crate::now())
        .is_err()
    {
        return false;
    }
    let payload = text.split('.').nth(1).unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("a verified token's payload is base64url");
    let claims: Map<String, Value> = serde_json::from_slice(&bytes).expect("a verified token's claims");
    read_claims(&claims);
    true
}

/// The claims of a verified sign-in (any JSON object an IdP could send).
pub fn sign_in_claims(data: &[u8]) {
    if let Ok(claims) = serde_json::from_slice::<Map<String, Value>>(data) {
        read_claims(&claims);
    }
}

fn read_claims(claims: &Map<String, Value>) {
    let rules = rules();
    let Ok(read) = SignInClaims::read(claims, &rules) else {
        return;
    };
    assert!(!read.key.is_empty(), "a sign-in without a key: {read:?}");
    let in_domain = check_domain(&read, &rules).is_ok();
    if in_domain {
        let email = read.email.as_deref().unwrap_or_default().to_lowercase();
        assert!(
            email.ends_with("@example.com"),
            "an email outside the provider's domains passed: {read:?}"
        );
    }
    let _ = roles_for(&read, &rules);
    for id in user_id_candidates(&read, &rules.provider) {
        assert!(!id.as_str().is_empty(), "an empty user id from {read:?}");
    }
}

/// `return_to` after sign-in: what is accepted stays on this broker and is
/// accepted again as it is.
pub fn return_to(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some(path) = local_return_path(text) else {
        return;
    };
    assert!(
        path.starts_with('/') && !path.starts_with("//"),
        "`{text}` gave `{path}`, which leaves the broker"
    );
    assert!(
        !path.contains('\\') && !path.chars().any(|c| c.is_whitespace() || c.is_control()),
        "`{text}` gave `{path}`, which a browser may rewrite"
    );
    let base = reqwest::Url::parse("https://broker.example/").expect("a base URL");
    let joined = base.join(&path).expect("an accepted path joins the base");
    assert_eq!(
        joined.origin(),
        base.origin(),
        "`{text}` gave `{path}`, which leaves the broker"
    );
    assert_eq!(
        local_return_path(&path).as_deref(),
        Some(path.as_str()),
        "`{text}` gave `{path}`, which is not accepted as it is"
    );
}
