//! Identity Center's long-running operations (creating and deleting an
//! assignment, provisioning a permission set): a call returns a status,
//! which is polled by request id until it is final.

use std::time::Duration;

use aws_sdk_ssoadmin::types::{
    AccountAssignmentOperationStatus, PermissionSetProvisioningStatus, StatusValues,
};
use tokio::time::Instant;

use crate::provider::aws::poll_pause;
use crate::provider::ProviderError;

/// Where a long-running Identity Center operation stands.
#[derive(Debug, Default)]
pub(super) struct OpStatus {
    status: Option<StatusValues>,
    failure_reason: Option<String>,
    request_id: Option<String>,
}

impl From<AccountAssignmentOperationStatus> for OpStatus {
    fn from(s: AccountAssignmentOperationStatus) -> Self {
        Self {
            status: s.status,
            failure_reason: s.failure_reason,
            request_id: s.request_id,
        }
    }
}

impl From<PermissionSetProvisioningStatus> for OpStatus {
    fn from(s: PermissionSetProvisioningStatus) -> Self {
        Self {
            status: s.status,
            failure_reason: s.failure_reason,
            request_id: s.request_id,
        }
    }
}

/// Follows a long-running operation from the status its call returned
/// until it is final, polling with `describe` (by request id) while it
/// is in progress. `what` names the operation in errors.
pub(super) async fn until_final<F, Fut>(
    what: &str,
    first: Option<OpStatus>,
    timeout: Duration,
    describe: F,
) -> Result<(), ProviderError>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<Option<OpStatus>, ProviderError>>,
{
    let started = Instant::now();
    let mut attempt_no = 0;
    let mut status = first;
    loop {
        let current = status.unwrap_or_default();
        match current.status {
            Some(StatusValues::Succeeded) => return Ok(()),
            Some(StatusValues::Failed) => {
                let reason = current.failure_reason.as_deref().unwrap_or("no reason given");
                return Err(ProviderError::rejected(format!("{what} failed: {reason}")));
            }
            _ => {}
        }
        let Some(request) = current.request_id else {
            return Err(ProviderError::transport(format!(
                "{what}: AWS returned no request id"
            )));
        };
        if started.elapsed() > timeout {
            return Err(ProviderError::busy(format!(
                "{what} ({request}) still in progress after {:?}",
                timeout
            )));
        }
        tokio::time::sleep(poll_pause(attempt_no)).await;
        attempt_no += 1;
        status = describe(request).await?;
    }
}
