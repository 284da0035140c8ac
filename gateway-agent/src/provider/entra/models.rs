//! The Microsoft Graph (v1.0) shapes the `entra` provider sends and reads.
//! Only the fields it uses; Graph adds others, which serde ignores.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// An OData error body: `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    pub error: ODataError,
}

#[derive(Debug, Deserialize)]
pub struct ODataError {
    pub code: String,
    #[serde(default)]
    pub message: String,
}

/// One page of a collection; `@odata.nextLink` is the next page's URL.
#[derive(Debug, Deserialize)]
pub struct Page<T> {
    pub value: Vec<T>,
    #[serde(rename = "@odata.nextLink")]
    pub next_link: Option<String>,
}

/// A user, or a member of a group (a `directoryObject`; groups and
/// service principals carry no user principal name).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryObject {
    pub id: String,
    pub user_principal_name: Option<String>,
    pub mail: Option<String>,
}

/// The body of `POST /groups/{id}/members/$ref`.
#[derive(Debug, Serialize)]
pub struct Reference {
    #[serde(rename = "@odata.id")]
    pub odata_id: String,
}

/// `action` of a schedule request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ScheduleAction {
    AdminAssign,
    AdminUpdate,
    AdminRemove,
}

/// What a schedule request is about: a directory role at a scope, or a
/// PIM for Groups assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged, rename_all_fields = "camelCase")]
pub enum ScheduleResource {
    DirectoryRole {
        role_definition_id: String,
        directory_scope_id: String,
    },
    Group {
        group_id: String,
        access_id: &'static str,
    },
}

/// `unifiedRoleAssignmentScheduleRequest` /
/// `privilegedAccessGroupAssignmentScheduleRequest`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleRequest {
    pub action: ScheduleAction,
    pub principal_id: String,
    #[serde(flatten)]
    pub resource: ScheduleResource,
    pub justification: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule_info: Option<RequestSchedule>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestSchedule {
    pub start_date_time: DateTime<Utc>,
    pub expiration: Expiration,
}

/// `expirationPattern`: `afterDateTime` with its end, or `noExpiration`.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum Expiration {
    AfterDateTime { end_date_time: DateTime<Utc> },
    NoExpiration,
}

/// What Graph answers to a schedule request.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleRequestResult {
    pub id: String,
    pub status: String,
}

impl ScheduleRequestResult {
    /// Statuses of a request that took effect (Graph's `status` values
    /// for assignments done by an administrator).
    pub fn took_effect(&self) -> bool {
        matches!(
            self.status.as_str(),
            "Provisioned" | "Granted" | "Revoked" | "PendingProvisioning" | "ScheduleCreated"
        )
    }
}

/// An active assignment (`roleAssignmentScheduleInstances`,
/// `privilegedAccessGroupAssignmentScheduleInstance`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleInstance {
    pub principal_id: String,
    pub end_date_time: Option<DateTime<Utc>>,
}

/// The body of `POST /servicePrincipals/{id}/synchronization/jobs/{job}/provisionOnDemand`.
#[derive(Debug, Serialize)]
pub struct ProvisionOnDemandBody {
    pub parameters: Vec<ApplicationParameters>,
}

/// `synchronizationJobApplicationParameters`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationParameters {
    pub rule_id: String,
    pub subjects: Vec<JobSubject>,
}

/// `synchronizationJobSubject`: a group with the members to provision.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobSubject {
    pub object_id: String,
    pub object_type_name: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub links: Option<LinkedObjects>,
}

/// `synchronizationLinkedObjects`.
#[derive(Debug, Serialize)]
pub struct LinkedObjects {
    pub members: Vec<JobSubject>,
}

/// `stringKeyStringValuePair`, what `provisionOnDemand` answers.
#[derive(Debug, Deserialize)]
pub struct StringKeyStringValuePair {
    pub key: Option<String>,
}

/// The answer of `POST /users/{id}/revokeSignInSessions`.
#[derive(Debug, Deserialize)]
pub struct BooleanValue {
    pub value: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_requests_serialise_as_graph_documents_them() {
        let end: DateTime<Utc> = "2026-01-01T10:00:00Z".parse().unwrap();
        let r = ScheduleRequest {
            action: ScheduleAction::AdminAssign,
            principal_id: "p".into(),
            resource: ScheduleResource::DirectoryRole {
                role_definition_id: "r".into(),
                directory_scope_id: "/".into(),
            },
            justification: "j".into(),
            schedule_info: Some(RequestSchedule {
                start_date_time: end,
                expiration: Expiration::AfterDateTime { end_date_time: end },
            }),
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["action"], "adminAssign");
        assert_eq!(v["principalId"], "p");
        assert_eq!(v["roleDefinitionId"], "r");
        assert_eq!(v["directoryScopeId"], "/");
        assert_eq!(v["scheduleInfo"]["expiration"]["type"], "afterDateTime");
        assert_eq!(
            v["scheduleInfo"]["expiration"]["endDateTime"],
            "2026-01-01T10:00:00Z"
        );
        let g = ScheduleRequest {
            action: ScheduleAction::AdminRemove,
            principal_id: "p".into(),
            resource: ScheduleResource::Group {
                group_id: "g".into(),
                access_id: "member",
            },
            justification: "j".into(),
            schedule_info: None,
        };
        let v = serde_json::to_value(&g).unwrap();
        assert_eq!(v["action"], "adminRemove");
        assert_eq!(v["groupId"], "g");
        assert_eq!(v["accessId"], "member");
        assert!(v.get("scheduleInfo").is_none());
        let n = serde_json::to_value(Expiration::NoExpiration).unwrap();
        assert_eq!(n, serde_json::json!({"type": "noExpiration"}));
    }
}
