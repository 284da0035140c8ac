//! The instance's permission sets: an ARN from the name a catalogue uses
//! (names are not an API key, so every name is learned at once and cached
//! for [`CACHE_TTL`]), and lowering a permission set's session duration to
//! a grant's window.

use crate::clock::{Clock, SystemClock};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ssoadmin::types::ProvisionTargetType;

use super::operation::until_final;
use super::{CACHE_TTL, NOT_FOUND};
use crate::provider::aws::call;
use crate::provider::budget::{Budget, Priority};
use crate::provider::cache::TtlCache;
use crate::provider::ProviderError;

#[derive(Debug)]
pub(super) struct PermissionSets {
    admin: aws_sdk_ssoadmin::Client,
    instance_arn: String,
    budget: Arc<Budget>,
    cache: TtlCache<String>,
    operation_timeout: Duration,
}

impl PermissionSets {
    pub(super) fn new(
        admin: aws_sdk_ssoadmin::Client,
        instance_arn: String,
        budget: Arc<Budget>,
        operation_timeout: Duration,
    ) -> Self {
        Self {
            admin,
            instance_arn,
            budget,
            cache: TtlCache::new(CACHE_TTL),
            operation_timeout,
        }
    }

    /// A permission set's ARN from its name or ARN, checked to exist.
    pub(super) async fn arn(&self, name_or_arn: &str, priority: Priority) -> Result<String, ProviderError> {
        if let Some(arn) = self.cache.get(name_or_arn) {
            return Ok(arn);
        }
        let mut found = HashMap::new();
        if name_or_arn.starts_with("arn:") {
            let out = call(
                &self.budget,
                priority,
                "Identity Center DescribePermissionSet",
                || {
                    self.admin
                        .describe_permission_set()
                        .instance_arn(&self.instance_arn)
                        .permission_set_arn(name_or_arn)
                        .send()
                },
            )
            .await;
            match out {
                Ok(_) => {
                    found.insert(name_or_arn.to_owned(), name_or_arn.to_owned());
                }
                Err(e) if e.is(NOT_FOUND) => {}
                Err(e) => return Err(e.error),
            }
        } else {
            // Names are not an API key: list the instance's permission sets
            // and learn every name at once.
            let mut next: Option<String> = None;
            loop {
                let out = call(
                    &self.budget,
                    priority,
                    "Identity Center ListPermissionSets",
                    || {
                        self.admin
                            .list_permission_sets()
                            .instance_arn(&self.instance_arn)
                            .set_next_token(next.clone())
                            .send()
                    },
                )
                .await?;
                for arn in out.permission_sets() {
                    let described = call(
                        &self.budget,
                        priority,
                        "Identity Center DescribePermissionSet",
                        || {
                            self.admin
                                .describe_permission_set()
                                .instance_arn(&self.instance_arn)
                                .permission_set_arn(arn)
                                .send()
                        },
                    )
                    .await?;
                    if let Some(name) = described.permission_set().and_then(|p| p.name()) {
                        found.insert(name.to_owned(), arn.clone());
                    }
                }
                next = out.next_token().map(str::to_owned);
                if next.is_none() {
                    break;
                }
            }
        }
        let arn = found.get(name_or_arn).cloned();
        for (k, v) in found {
            self.cache.insert(k, v);
        }
        arn.ok_or_else(|| {
            ProviderError::not_found(format!(
                "no permission set `{name_or_arn}` in Identity Center instance {}",
                self.instance_arn
            ))
        })
    }

    /// Lowers the permission set's session duration to what is left of
    /// the window (whole hours, at least one), then provisions it.
    pub(super) async fn cap_session(
        &self,
        arn: &str,
        until: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), ProviderError> {
        let p = Priority::Grant;
        let described = call(&self.budget, p, "Identity Center DescribePermissionSet", || {
            self.admin
                .describe_permission_set()
                .instance_arn(&self.instance_arn)
                .permission_set_arn(arn)
                .send()
        })
        .await?;
        let current = described
            .permission_set()
            .and_then(|s| s.session_duration())
            .and_then(parse_iso_duration)
            .unwrap_or(Duration::from_secs(3600));
        let left = (until - SystemClock.now()).to_std().unwrap_or_default();
        let want = session_cap(left);
        if current <= want {
            return Ok(());
        }
        let hours = want.as_secs() / 3600;
        call(&self.budget, p, "Identity Center UpdatePermissionSet", || {
            self.admin
                .update_permission_set()
                .instance_arn(&self.instance_arn)
                .permission_set_arn(arn)
                .session_duration(format!("PT{hours}H"))
                .send()
        })
        .await?;
        let out = call(&self.budget, p, "Identity Center ProvisionPermissionSet", || {
            self.admin
                .provision_permission_set()
                .instance_arn(&self.instance_arn)
                .permission_set_arn(arn)
                .target_type(ProvisionTargetType::AllProvisionedAccounts)
                .send()
        })
        .await?;
        let what = format!("provisioning permission set {arn} with a {hours} h session");
        until_final(
            &what,
            out.permission_set_provisioning_status.map(Into::into),
            self.operation_timeout,
            |request| async move {
                let out = call(
                    &self.budget,
                    p,
                    "Identity Center DescribePermissionSetProvisioningStatus",
                    || {
                        self.admin
                            .describe_permission_set_provisioning_status()
                            .instance_arn(&self.instance_arn)
                            .provision_permission_set_request_id(request)
                            .send()
                    },
                )
                .await?;
                Ok(out.permission_set_provisioning_status.map(Into::into))
            },
        )
        .await?;
        tracing::info!(permission_set = arn, from = ?current, to_hours = hours, "session duration capped to the grant window");
        Ok(())
    }
}

/// The session duration for a window with `left` to run: whole hours,
/// rounded up, within the 1 h to 12 h AWS allows.
pub fn session_cap(left: Duration) -> Duration {
    let hours = left.as_secs().div_ceil(3600).clamp(1, 12);
    Duration::from_secs(hours * 3600)
}

/// An ISO 8601 duration of hours, minutes and seconds (`PT1H`, `PT2H30M`),
/// as Identity Center writes session durations.
pub fn parse_iso_duration(s: &str) -> Option<Duration> {
    let mut rest = s.strip_prefix("PT")?;
    let mut total = 0u64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let n: u64 = rest[..digits].parse().ok()?;
        let unit = match rest[digits..].chars().next()? {
            'H' => 3600,
            'M' => 60,
            'S' => 1,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
        rest = &rest[digits + 1..];
    }
    Some(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_durations_as_identity_center_writes_them() {
        assert_eq!(parse_iso_duration("PT1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_iso_duration("PT2H30M"), Some(Duration::from_secs(9000)));
        assert_eq!(parse_iso_duration("PT45M10S"), Some(Duration::from_secs(2710)));
        for bad in ["", "PT", "P1D", "1H", "PTH", "PT1X", "PT99999999999999999999H"] {
            assert_eq!(parse_iso_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn session_caps_round_up_to_hours_within_what_aws_allows() {
        let h = |n: u64| Duration::from_secs(n * 3600);
        assert_eq!(session_cap(Duration::from_secs(60)), h(1));
        assert_eq!(session_cap(Duration::ZERO), h(1));
        assert_eq!(session_cap(h(2)), h(2));
        assert_eq!(session_cap(h(2) + Duration::from_secs(1)), h(3));
        assert_eq!(session_cap(h(100)), h(12));
    }
}
