//! A real moto server (AWS API emulator) on loopback, one per test, and
//! SDK clients to seed it and to check what the agent did. moto is
//! installed by `scripts/test-tools`; a missing moto is a failure.
//!
//! moto answers every assignment operation SUCCEEDED at once and does not
//! check principals: tests rely on nothing more.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_identitystore::types::Email;
use aws_sdk_ssoadmin::types::PrincipalType;
use tempfile::TempDir;
use tokio::process::{Child, Command};

pub const REGION: &str = "us-east-1";

#[derive(Debug)]
pub struct Moto {
    /// Killed when dropped.
    _child: Child,
    pub url: String,
    /// Keeps moto's log for as long as the server lives.
    _dir: TempDir,
    pub sdk: aws_config::SdkConfig,
}

/// Where `scripts/test-tools` put moto.
pub fn moto_server() -> PathBuf {
    match std::env::var_os("JITGATE_MOTO_SERVER") {
        Some(path) => PathBuf::from(path),
        None => crate::test_tool("moto_server"),
    }
}

/// Environment for anything that talks to moto: fixed test credentials.
pub const ENV: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_REGION", REGION),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

impl Moto {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.path().join("moto.log")).unwrap();
        let child = Command::new(moto_server())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if reqwest::get(format!("{url}/moto-api/")).await.is_ok() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "moto did not start:\n{}",
                std::fs::read_to_string(dir.path().join("moto.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let sdk = sdk_for(&url).await;
        Self {
            _child: child,
            url,
            _dir: dir,
            sdk,
        }
    }

    pub fn admin(&self) -> aws_sdk_ssoadmin::Client {
        aws_sdk_ssoadmin::Client::new(&self.sdk)
    }

    pub fn store(&self) -> aws_sdk_identitystore::Client {
        aws_sdk_identitystore::Client::new(&self.sdk)
    }

    pub fn iam(&self) -> aws_sdk_iam::Client {
        aws_sdk_iam::Client::new(&self.sdk)
    }

    /// The instance moto creates, and its identity store.
    pub async fn instance(&self) -> (String, String) {
        let out = self.admin().list_instances().send().await.unwrap();
        let i = &out.instances()[0];
        (
            i.instance_arn().unwrap().to_owned(),
            i.identity_store_id().unwrap().to_owned(),
        )
    }

    pub async fn permission_set(&self, name: &str) -> String {
        self.permission_set_with(name, "PT1H").await
    }

    /// A permission set whose sessions last `session_duration` (ISO 8601).
    pub async fn permission_set_with(&self, name: &str, session_duration: &str) -> String {
        let (instance, _) = self.instance().await;
        let out = self
            .admin()
            .create_permission_set()
            .instance_arn(instance)
            .name(name)
            // moto echoes the duration as given; without one it answers the
            // number 3600 where AWS (and the SDK) has an ISO 8601 string.
            .session_duration(session_duration)
            .send()
            .await
            .unwrap();
        out.permission_set()
            .unwrap()
            .permission_set_arn()
            .unwrap()
            .to_owned()
    }

    /// A user with this user name and email; returns its id.
    pub async fn user(&self, user_name: &str, email: &str) -> String {
        let (_, store) = self.instance().await;
        let out = self
            .store()
            .create_user()
            .identity_store_id(store)
            .user_name(user_name)
            .display_name(user_name)
            .name(
                aws_sdk_identitystore::types::Name::builder()
                    .given_name(user_name)
                    .family_name("Test")
                    .build(),
            )
            .emails(Email::builder().value(email).primary(true).build())
            .send()
            .await
            .unwrap();
        out.user_id().to_owned()
    }

    pub async fn group(&self, name: &str) -> String {
        let (_, store) = self.instance().await;
        let out = self
            .store()
            .create_group()
            .identity_store_id(store)
            .display_name(name)
            .send()
            .await
            .unwrap();
        out.group_id().to_owned()
    }

    /// Adds a user to a group, as a directory's provisioning would;
    /// returns the membership id.
    pub async fn add_member(&self, group_id: &str, user_id: &str) -> String {
        let (_, store) = self.instance().await;
        let out = self
            .store()
            .create_group_membership()
            .identity_store_id(store)
            .group_id(group_id)
            .member_id(aws_sdk_identitystore::types::MemberId::UserId(user_id.to_owned()))
            .send()
            .await
            .unwrap();
        out.membership_id().to_owned()
    }

    pub async fn remove_member(&self, membership_id: &str) {
        let (_, store) = self.instance().await;
        self.store()
            .delete_group_membership()
            .identity_store_id(store)
            .membership_id(membership_id)
            .send()
            .await
            .unwrap();
    }

    /// A permission set's session duration (ISO 8601).
    pub async fn session_duration(&self, permission_set_arn: &str) -> String {
        let (instance, _) = self.instance().await;
        let out = self
            .admin()
            .describe_permission_set()
            .instance_arn(instance)
            .permission_set_arn(permission_set_arn)
            .send()
            .await
            .unwrap();
        out.permission_set()
            .unwrap()
            .session_duration()
            .unwrap()
            .to_owned()
    }

    /// Principal ids holding `permission_set_arn` on `account`.
    pub async fn assignments(&self, account: &str, permission_set_arn: &str) -> Vec<(PrincipalType, String)> {
        let (instance, _) = self.instance().await;
        let out = self
            .admin()
            .list_account_assignments()
            .instance_arn(instance)
            .account_id(account)
            .permission_set_arn(permission_set_arn)
            .send()
            .await
            .unwrap();
        out.account_assignments()
            .iter()
            .map(|a| {
                (
                    a.principal_type().unwrap().clone(),
                    a.principal_id().unwrap().to_owned(),
                )
            })
            .collect()
    }
}

/// SDK settings for a moto at `url`: test credentials, no retries.
pub async fn sdk_for(url: &str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(url)
        .credentials_provider(aws_sdk_ssoadmin::config::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "jitgate-tests",
        ))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await
}
