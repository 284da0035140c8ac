//! A SAML 2.0 identity provider for the sign-in tests: pysaml2 (installed by
//! `scripts/test-tools`), run by `tests/tools/saml/idp.py`.

use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::port::ReservedPort;
use crate::{test_tool, workspace};

/// The entity id of a second SP the IdP knows (for the wrong-audience test).
pub const OTHER_SP: &str = "urn:jitgate-test:other-sp";

#[derive(Debug)]
pub struct TestSamlIdp {
    dir: TempDir,
    _child: Child,
    _socket: ReservedPort,
    pub url: String,
}

impl TestSamlIdp {
    /// Starts the IdP on the reserved `socket`, knowing the broker at
    /// `broker_url` as the SP of provider `name`, with `accounts` (id ->
    /// email, name, role, groups).
    pub async fn start(socket: ReservedPort, broker_url: &str, name: &str, accounts: Value) -> Self {
        let port = socket.port();
        let dir = tempfile::tempdir().unwrap();
        let sp = |entity: &str, acs: &str| {
            format!(
                r#"<md:EntityDescriptor entityID="{entity}"><md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol" AuthnRequestsSigned="false" WantAssertionsSigned="true"><md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="{acs}" index="0"/></md:SPSSODescriptor></md:EntityDescriptor>"#
            )
        };
        let metadata = format!(
            r#"<?xml version="1.0"?><md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata">{}{}</md:EntitiesDescriptor>"#,
            sp(
                &format!("{broker_url}/auth/saml/{name}/metadata"),
                &format!("{broker_url}/auth/saml/{name}/acs")
            ),
            sp(OTHER_SP, "https://other.example/saml/acs"),
        );
        std::fs::write(dir.path().join("sp.xml"), metadata).unwrap();
        std::fs::write(dir.path().join("accounts.json"), accounts.to_string()).unwrap();
        let log = std::fs::File::create(dir.path().join("idp.log")).unwrap();
        let mut command = Command::new(test_tool("python"));
        command
            .arg(workspace().join("tests/tools/saml/idp.py"))
            .env("IDP_PORT", port.to_string())
            .env("IDP_DIR", dir.path())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true);
        socket.pass_to(&mut command);
        let child = command.spawn().unwrap();
        let me = TestSamlIdp {
            dir,
            _child: child,
            _socket: socket,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !me.log().contains("idp listening on") {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the SAML IdP did not start:\n{}",
                me.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        me
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("idp.log")).unwrap_or_default()
    }

    pub fn set_accounts(&self, accounts: Value) {
        std::fs::write(self.dir.path().join("accounts.json"), accounts.to_string()).unwrap();
    }
}
