//! Entitlements: the concrete change in one tenant that realises a resource.

use serde::{Deserialize, Serialize};

use super::ids::ConfigId;

/// What is changed in the tenant. Each kind belongs to one configuration kind.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Target {
    /// AWS Identity Center: permission set assigned on an account.
    AwsAccountAssignment {
        account_id: String,
        /// Permission set name or ARN.
        permission_set: String,
    },
    /// AWS IAM: membership of an IAM group.
    AwsIamGroupMembership { group_name: String },
    /// AWS IAM: a managed policy attached to the principal (user or role).
    AwsIamPolicyAttachment { policy_arn: String },
    /// Entra ID: membership of a security group.
    EntraGroupMembership { group_id: String },
    /// Entra ID: an active PIM for Groups assignment (membership or
    /// ownership with an end date Entra enforces), for groups managed by
    /// Privileged Identity Management.
    EntraPimGroup {
        group_id: String,
        #[serde(default)]
        access: PimGroupAccess,
    },
    /// Entra ID: an active directory role assignment.
    EntraDirectoryRole {
        role_definition_id: String,
        #[serde(default = "default_directory_scope")]
        directory_scope_id: String,
    },
}

/// What a PIM for Groups assignment gives: membership or ownership.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum PimGroupAccess {
    #[default]
    Member,
    Owner,
}

impl PimGroupAccess {
    /// Graph's `accessId`.
    pub fn access_id(self) -> &'static str {
        match self {
            PimGroupAccess::Member => "member",
            PimGroupAccess::Owner => "owner",
        }
    }
}

fn default_directory_scope() -> String {
    "/".to_owned()
}

impl Target {
    /// Short human description, for tables and audit messages.
    pub fn describe(&self) -> String {
        match self {
            Target::AwsAccountAssignment {
                account_id,
                permission_set,
            } => format!("permission set {permission_set} on account {account_id}"),
            Target::AwsIamGroupMembership { group_name } => format!("IAM group {group_name}"),
            Target::AwsIamPolicyAttachment { policy_arn } => format!("IAM policy {policy_arn}"),
            Target::EntraGroupMembership { group_id } => format!("Entra group {group_id}"),
            Target::EntraPimGroup { group_id, access } => {
                format!("Entra PIM group {group_id} ({})", access.access_id())
            }
            Target::EntraDirectoryRole {
                role_definition_id,
                directory_scope_id,
            } => format!("Entra role {role_definition_id} at {directory_scope_id}"),
        }
    }
}

/// One change in one tenant for one principal. Leases count holders of the
/// same entitlement, so it is ordered and hashable.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Entitlement {
    pub configuration: ConfigId,
    pub target: Target,
    /// The principal's name in that tenant (user name, email or object id).
    pub principal: String,
}

impl Entitlement {
    /// A stable key, the same on every run, used to count leases and to derive
    /// command idempotency keys.
    pub fn key(&self) -> String {
        // serde_json of a plain enum/struct cannot fail; fall back to Debug
        // rather than panic should that ever change.
        let target = serde_json::to_string(&self.target).unwrap_or_else(|_| format!("{:?}", self.target));
        format!("{}|{}|{}", self.configuration, self.principal, target)
    }

    /// A short, fixed-length name of [`key`](Self::key): the broker's lease
    /// key and the agent's journal key, the same on both sides (hex of the
    /// first 16 bytes of its SHA-256).
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(&Sha256::digest(self.key().as_bytes())[..16])
    }
}
