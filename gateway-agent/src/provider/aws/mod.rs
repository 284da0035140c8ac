//! AWS tenants: Identity Center account assignments ([`identity_center`])
//! and IAM group memberships and policy attachments ([`iam`]).
//!
//! Credentials come from the standard AWS chain (environment, shared
//! profile, web identity, container and instance metadata), optionally
//! followed by assuming a role. Every call waits for the tenant's
//! [`Budget`]; a throttle pauses the whole tenant.

pub mod iam;
pub mod identity_center;

use std::fmt::Display;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ssoadmin::config::http::HttpResponse;
use aws_sdk_ssoadmin::error::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::budget::{Budget, Priority};
use super::ProviderError;

/// Where and as whom the agent calls AWS.
#[derive(Debug, Clone, Default)]
pub struct AwsSettings {
    /// Region of the Identity Center instance or of IAM's endpoint;
    /// `None` takes it from the environment or profile.
    pub region: Option<String>,
    /// Endpoint override: a VPC interface endpoint, or a local test peer.
    pub endpoint_url: Option<String>,
    /// A role to assume after the default chain, like
    /// `arn:aws:iam::111122223333:role/jitgate-agent`.
    pub role_arn: Option<String>,
    /// Attempts per call by the SDK's own retry (standard mode, with
    /// backoff and jitter); 1 turns it off.
    pub sdk_max_attempts: u32,
}

/// The SDK configuration for `settings`.
pub async fn sdk_config(settings: &AwsSettings) -> SdkConfig {
    let base = loader(settings).load().await;
    let Some(role) = &settings.role_arn else {
        return base;
    };
    let assumed = aws_config::sts::AssumeRoleProvider::builder(role.clone())
        .session_name("jitgate-agent")
        .configure(&base)
        .build()
        .await;
    loader(settings).credentials_provider(assumed).load().await
}

fn loader(settings: &AwsSettings) -> aws_config::ConfigLoader {
    let retry = if settings.sdk_max_attempts <= 1 {
        RetryConfig::disabled()
    } else {
        RetryConfig::standard().with_max_attempts(settings.sdk_max_attempts)
    };
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).retry_config(retry);
    if let Some(region) = &settings.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url.clone());
    }
    loader
}

/// Error codes AWS uses for "slow down".
const THROTTLING: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "SlowDown",
];

/// Error codes AWS uses for "the credential is not (or no longer) good":
/// credentials the SDK renews may be taken on the next try.
const UNAUTHORISED: &[&str] = &[
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
];

/// How a failed call is reported: throttles pause the tenant's budget;
/// timeouts, connection failures and 5xx are transport failures, a
/// conflict (an operation on the same assignment is still running) is
/// busy, a credential AWS does not take is unauthorised, `*NotFound*` and
/// `NoSuchEntity` codes are not found; the rest (AccessDenied, validation)
/// is rejected.
fn classify<E>(budget: &Budget, what: &str, error: SdkError<E, HttpResponse>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = error.raw_response().map(|r| r.status().as_u16());
    let code = error.code().map(str::to_owned);
    let message = error.message().map(str::to_owned);
    let detail = match (&code, &message) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.clone(),
        _ => aws_smithy_types::error::display::DisplayErrorContext(&error).to_string(),
    };
    let reason = format!("{what}: {detail}");
    let code = code.as_deref().unwrap_or_default();
    if THROTTLING.contains(&code) || status == Some(429) {
        let pause = budget.throttled(None);
        tracing::warn!(%reason, ?pause, "AWS throttled the agent; pausing calls to this tenant");
        return ProviderError::throttled(reason, Some(pause));
    }
    match &error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            ProviderError::transport(reason)
        }
        _ if status.is_some_and(|s| s >= 500) || code == "InternalServerException" => {
            ProviderError::transport(reason)
        }
        _ if code == "ConflictException" => ProviderError::busy(reason),
        _ if UNAUTHORISED.contains(&code) => ProviderError::unauthorised(reason),
        _ if code.contains("NotFound") || code == "NoSuchEntity" => ProviderError::not_found(reason),
        _ => ProviderError::rejected(reason),
    }
}

/// A failed call: the AWS error code, for callers that take one code as a
/// normal answer (not found), and the error as the broker will see it.
#[derive(Debug)]
pub(crate) struct Failure {
    pub code: Option<String>,
    pub error: ProviderError,
}

impl Failure {
    pub fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }
}

impl From<Failure> for ProviderError {
    fn from(f: Failure) -> Self {
        f.error
    }
}

/// `None` when the call failed with `code`: the thing is not there.
pub(crate) fn unless<T>(result: Result<T, Failure>, code: &str) -> Result<Option<T>, ProviderError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(f) if f.is(code) => Ok(None),
        Err(f) => Err(f.error),
    }
}

/// Runs one call within the tenant's budget.
pub(crate) async fn call<T, E, F, Fut>(
    budget: &Budget,
    priority: Priority,
    what: impl Display,
    f: F,
) -> Result<T, Failure>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    budget.call(priority).await;
    match f().await {
        Ok(v) => {
            budget.succeeded();
            Ok(v)
        }
        Err(e) => Err(Failure {
            code: e.code().map(str::to_owned),
            error: classify(budget, &what.to_string(), e),
        }),
    }
}

/// Pause between polls of a long-running operation: 100 ms doubling to
/// 2 s.
pub(crate) fn poll_pause(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.min(5))).min(Duration::from_secs(2))
}

/// An AWS account id: twelve digits.
pub(crate) fn check_account_id(account: &str) -> Result<(), ProviderError> {
    if account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(ProviderError::rejected(format!(
            "`{account}` is not an AWS account id (twelve digits)"
        )))
    }
}
