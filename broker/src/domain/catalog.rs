//! PAM configurations and resources: what jitgate can act on.

use jitgate_shared::v1::api::{ConfigKind, Configuration, IdentityMode, Resource};
use jitgate_shared::v1::{ConfigId, Target};
use serde::{Deserialize, Serialize};

/// A stored configuration: the API shape plus a version for compare-and-set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredConfiguration {
    pub version: u64,
    pub config: Configuration,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResource {
    pub version: u64,
    pub resource: Resource,
}

/// Why a configuration or resource is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("configuration `{id}` names itself as its federated directory")]
    SelfFederated { id: ConfigId },
    #[error("configuration `{id}` is federated to `{directory}`, which does not exist")]
    UnknownDirectory { id: ConfigId, directory: ConfigId },
    #[error("resource `{resource}` belongs to configuration `{configuration}`, which does not exist")]
    UnknownConfiguration {
        resource: String,
        configuration: ConfigId,
    },
    #[error(
        "resource `{resource}`: target kind `{target}` does not belong to a `{kind}` configuration; use one of: {allowed}"
    )]
    TargetKindMismatch {
        resource: String,
        target: &'static str,
        kind: &'static str,
        allowed: String,
    },
    #[error("resource `{resource}`: `{field}` must not be empty")]
    EmptyField { resource: String, field: &'static str },
    #[error(
        "resource `{resource}`: realized_by names configuration `{configuration}`, which does not exist"
    )]
    UnknownMapping {
        resource: String,
        configuration: ConfigId,
    },
    #[error("resource `{resource}`: account id `{value}` must be 12 digits")]
    BadAccountId { resource: String, value: String },
}

/// The catalogue name of a target's kind.
pub(crate) fn target_kind(t: &Target) -> &'static str {
    match t {
        Target::AwsAccountAssignment { .. } => "aws_account_assignment",
        Target::AwsIamGroupMembership { .. } => "aws_iam_group_membership",
        Target::AwsIamPolicyAttachment { .. } => "aws_iam_policy_attachment",
        Target::EntraGroupMembership { .. } => "entra_group_membership",
        Target::EntraPimGroup { .. } => "entra_pim_group",
        Target::EntraDirectoryRole { .. } => "entra_directory_role",
    }
}

/// The target kinds a configuration kind takes.
pub(crate) fn targets_for(kind: ConfigKind) -> &'static [&'static str] {
    match kind {
        ConfigKind::AwsIdentityCenter => &["aws_account_assignment"],
        ConfigKind::AwsIam => &["aws_iam_group_membership", "aws_iam_policy_attachment"],
        ConfigKind::EntraId => &[
            "entra_group_membership",
            "entra_pim_group",
            "entra_directory_role",
        ],
    }
}

/// Checks a configuration against the ones that exist.
pub fn check_configuration(
    config: &Configuration,
    exists: impl Fn(&ConfigId) -> bool,
) -> Result<(), CatalogError> {
    if let IdentityMode::Federated { directory } = &config.identity_mode {
        if directory == &config.id {
            return Err(CatalogError::SelfFederated {
                id: config.id.clone(),
            });
        }
        if !exists(directory) {
            return Err(CatalogError::UnknownDirectory {
                id: config.id.clone(),
                directory: directory.clone(),
            });
        }
    }
    Ok(())
}

/// Checks a resource's `realized_by` mappings: each names an existing
/// configuration and a target of a kind that configuration takes.
pub fn check_mappings<'a>(
    resource: &Resource,
    config: impl Fn(&ConfigId) -> Option<&'a Configuration>,
) -> Result<(), CatalogError> {
    for (id, target) in &resource.realized_by {
        let mapped = Resource {
            configuration: id.clone(),
            target: target.clone(),
            realized_by: Default::default(),
            ..resource.clone()
        };
        let Some(c) = config(id) else {
            return Err(CatalogError::UnknownMapping {
                resource: resource.id.to_string(),
                configuration: id.clone(),
            });
        };
        check_resource(&mapped, Some(c))?;
    }
    Ok(())
}

/// Checks a resource against its configuration.
pub fn check_resource(resource: &Resource, config: Option<&Configuration>) -> Result<(), CatalogError> {
    let name = resource.id.to_string();
    let config = config.ok_or_else(|| CatalogError::UnknownConfiguration {
        resource: name.clone(),
        configuration: resource.configuration.clone(),
    })?;
    let kind = target_kind(&resource.target);
    let allowed = targets_for(config.kind);
    if !allowed.contains(&kind) {
        return Err(CatalogError::TargetKindMismatch {
            resource: name,
            target: kind,
            kind: config.kind.as_str(),
            allowed: allowed.join(", "),
        });
    }
    let empty = |field: &'static str, v: &str| {
        if v.trim().is_empty() {
            Err(CatalogError::EmptyField {
                resource: resource.id.to_string(),
                field,
            })
        } else {
            Ok(())
        }
    };
    match &resource.target {
        Target::AwsAccountAssignment {
            account_id,
            permission_set,
        } => {
            empty("permission_set", permission_set)?;
            if account_id.len() != 12 || !account_id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(CatalogError::BadAccountId {
                    resource: name,
                    value: account_id.clone(),
                });
            }
        }
        Target::AwsIamGroupMembership { group_name } => empty("group_name", group_name)?,
        Target::AwsIamPolicyAttachment { policy_arn } => empty("policy_arn", policy_arn)?,
        Target::EntraGroupMembership { group_id } | Target::EntraPimGroup { group_id, .. } => {
            empty("group_id", group_id)?
        }
        Target::EntraDirectoryRole {
            role_definition_id, ..
        } => empty("role_definition_id", role_definition_id)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jitgate_shared::v1::ResourceId;

    fn cfg(id: &str, kind: ConfigKind, mode: IdentityMode) -> Configuration {
        Configuration {
            id: ConfigId::new(id).unwrap(),
            kind,
            display_name: String::new(),
            tenant: Default::default(),
            identity_mode: mode,
            enabled: true,
        }
    }

    #[test]
    fn federation_must_name_another_existing_configuration() {
        let me = ConfigId::new("aws").unwrap();
        let c = cfg(
            "aws",
            ConfigKind::AwsIdentityCenter,
            IdentityMode::Federated { directory: me },
        );
        assert!(matches!(
            check_configuration(&c, |_| true),
            Err(CatalogError::SelfFederated { .. })
        ));
        let c = cfg(
            "aws",
            ConfigKind::AwsIdentityCenter,
            IdentityMode::Federated {
                directory: ConfigId::new("entra").unwrap(),
            },
        );
        let err = check_configuration(&c, |_| false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "configuration `aws` is federated to `entra`, which does not exist"
        );
        assert!(check_configuration(&c, |_| true).is_ok());
    }

    #[test]
    fn resource_targets_must_fit_the_configuration() {
        let entra = cfg("entra", ConfigKind::EntraId, IdentityMode::Direct);
        let r = Resource {
            id: ResourceId::new("x").unwrap(),
            configuration: entra.id.clone(),
            display_name: String::new(),
            group: None,
            realized_by: Default::default(),
            target: Target::AwsAccountAssignment {
                account_id: "111122223333".into(),
                permission_set: "Admin".into(),
            },
        };
        let err = check_resource(&r, Some(&entra)).unwrap_err();
        assert!(
            err.to_string()
                .contains("entra_group_membership, entra_pim_group, entra_directory_role"),
            "{err}"
        );
        let aws = cfg("aws", ConfigKind::AwsIdentityCenter, IdentityMode::Direct);
        let mut r2 = r.clone();
        r2.configuration = aws.id.clone();
        assert!(check_resource(&r2, Some(&aws)).is_ok());
        r2.target = Target::AwsAccountAssignment {
            account_id: "1234".into(),
            permission_set: "Admin".into(),
        };
        assert!(matches!(
            check_resource(&r2, Some(&aws)),
            Err(CatalogError::BadAccountId { .. })
        ));
        assert!(matches!(
            check_resource(&r2, None),
            Err(CatalogError::UnknownConfiguration { .. })
        ));
    }
}
