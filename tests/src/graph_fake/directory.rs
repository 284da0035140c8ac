//! The fake tenant's directory: users, groups and their members, active
//! directory-role assignments and PIM for Groups assignments, with the
//! answers Graph gives for each change. Pure state; [`super::graph`] turns
//! it into HTTP.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::StatusCode;
use chrono::{DateTime, Utc};

/// A Graph error: HTTP status, OData error code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl GraphError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// What Graph answers for an id or name it cannot find.
    pub fn not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            format!(
                "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
            ),
        )
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub user_principal_name: String,
    pub mail: Option<String>,
    pub display_name: String,
    /// Replication: reads find it only from this instant.
    pub visible_from: DateTime<Utc>,
    /// `revokeSignInSessions` calls, and the last one.
    pub sessions_revoked: u32,
    pub sign_in_sessions_valid_from: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct Group {
    pub id: String,
    pub display_name: String,
    pub visible_from: DateTime<Utc>,
    /// Direct members (object ids), as `members/$ref` adds them.
    pub members: BTreeSet<String>,
}

/// An active schedule: a directory role (scope = directory scope id) or a
/// PIM for Groups assignment (scope = group id, access = member/owner).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub id: String,
    pub principal_id: String,
    /// Role definition id, or the group id for PIM for Groups.
    pub resource: String,
    /// Directory scope id, or the access id (`member`, `owner`).
    pub scope: String,
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
}

impl Assignment {
    pub fn active_at(&self, now: DateTime<Utc>) -> bool {
        self.start <= now && self.end.is_none_or(|end| end > now)
    }
}

/// What an `action` in a schedule request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    AdminAssign,
    AdminUpdate,
    AdminExtend,
    AdminRemove,
}

impl Action {
    pub fn parse(s: &str) -> Result<Self, GraphError> {
        match s {
            "adminAssign" => Ok(Self::AdminAssign),
            "adminUpdate" => Ok(Self::AdminUpdate),
            "adminExtend" => Ok(Self::AdminExtend),
            "adminRemove" => Ok(Self::AdminRemove),
            other => Err(GraphError::bad_request(format!(
                "The request action '{other}' is not supported for an application."
            ))),
        }
    }
}

#[derive(Debug, Default)]
pub struct Directory {
    pub users: BTreeMap<String, User>,
    pub groups: BTreeMap<String, Group>,
    /// Role definitions that exist (built-in template ids or custom ids).
    pub role_definitions: BTreeSet<String>,
    pub roles: Vec<Assignment>,
    pub pim_groups: Vec<Assignment>,
}

impl Directory {
    /// A user by object id or user principal name, once replicated.
    pub fn user(&self, key: &str, now: DateTime<Utc>) -> Result<&User, GraphError> {
        let found = self.users.get(key).or_else(|| {
            self.users
                .values()
                .find(|u| u.user_principal_name.eq_ignore_ascii_case(key))
        });
        found
            .filter(|u| u.visible_from <= now)
            .ok_or_else(|| GraphError::not_found(key))
    }

    pub fn users_by_mail(&self, mail: &str, now: DateTime<Utc>) -> Vec<&User> {
        self.users
            .values()
            .filter(|u| u.visible_from <= now)
            .filter(|u| u.mail.as_deref().is_some_and(|m| m.eq_ignore_ascii_case(mail)))
            .collect()
    }

    pub fn group(&self, id: &str, now: DateTime<Utc>) -> Result<&Group, GraphError> {
        self.groups
            .get(id)
            .filter(|g| g.visible_from <= now)
            .ok_or_else(|| GraphError::not_found(id))
    }

    /// Members of a group: direct members, and principals with an active
    /// PIM for Groups `member` assignment (PIM makes them members).
    pub fn members(&self, group: &str, now: DateTime<Utc>) -> Result<Vec<&User>, GraphError> {
        let g = self.group(group, now)?;
        let pim = self
            .pim_groups
            .iter()
            .filter(|a| a.resource == group && a.scope == "member" && a.active_at(now))
            .map(|a| &a.principal_id);
        let ids: BTreeSet<&String> = g.members.iter().chain(pim).collect();
        Ok(ids.into_iter().filter_map(|id| self.users.get(id)).collect())
    }

    /// `POST /groups/{id}/members/$ref`.
    pub fn add_member(&mut self, group: &str, member: &str, now: DateTime<Utc>) -> Result<(), GraphError> {
        self.group(group, now)?;
        self.user(member, now)?;
        let g = self
            .groups
            .get_mut(group)
            .ok_or_else(|| GraphError::not_found(group))?;
        if !g.members.insert(member.to_owned()) {
            return Err(GraphError::new(
                StatusCode::BAD_REQUEST,
                "Request_BadRequest",
                "One or more added object references already exist for the following modified properties: 'members'.",
            ));
        }
        Ok(())
    }

    /// `DELETE /groups/{id}/members/{member}/$ref`.
    pub fn remove_member(&mut self, group: &str, member: &str, now: DateTime<Utc>) -> Result<(), GraphError> {
        self.group(group, now)?;
        let g = self
            .groups
            .get_mut(group)
            .ok_or_else(|| GraphError::not_found(group))?;
        if !g.members.remove(member) {
            return Err(GraphError::not_found(member));
        }
        Ok(())
    }

    /// A schedule request on directory roles (`pim == false`) or on PIM
    /// for Groups (`pim == true`); returns the request's status.
    pub fn schedule(
        &mut self,
        pim: bool,
        action: Action,
        wanted: Assignment,
        now: DateTime<Utc>,
    ) -> Result<&'static str, GraphError> {
        self.user(&wanted.principal_id, now)?;
        if pim {
            self.group(&wanted.resource, now)?;
            if wanted.scope != "member" && wanted.scope != "owner" {
                return Err(GraphError::bad_request(format!(
                    "Invalid accessId '{}': expected 'member' or 'owner'.",
                    wanted.scope
                )));
            }
        } else if !self.role_definitions.contains(&wanted.resource) {
            return Err(GraphError::new(
                StatusCode::NOT_FOUND,
                "RoleDefinitionDoesNotExist",
                "The role definition does not exist.",
            ));
        }
        let list = if pim {
            &mut self.pim_groups
        } else {
            &mut self.roles
        };
        list.retain(|a| a.end.is_none_or(|end| end > now));
        let existing = list.iter().position(|a| {
            a.principal_id == wanted.principal_id && a.resource == wanted.resource && a.scope == wanted.scope
        });
        match (action, existing) {
            (Action::AdminAssign, Some(_)) => Err(GraphError::new(
                StatusCode::BAD_REQUEST,
                "RoleAssignmentExists",
                "The Role assignment already exists.",
            )),
            (Action::AdminAssign, None) => {
                list.push(wanted);
                Ok("Provisioned")
            }
            (Action::AdminUpdate | Action::AdminExtend, Some(i)) => {
                list[i].end = wanted.end;
                Ok("Provisioned")
            }
            (Action::AdminRemove, Some(i)) => {
                list.remove(i);
                Ok("Revoked")
            }
            (_, None) => Err(GraphError::new(
                StatusCode::BAD_REQUEST,
                "RoleAssignmentDoesNotExist",
                "The Role assignment does not exist.",
            )),
        }
    }

    /// `POST /users/{id}/revokeSignInSessions`.
    pub fn revoke_sign_in_sessions(&mut self, user: &str, now: DateTime<Utc>) -> Result<(), GraphError> {
        let id = self.user(user, now)?.id.clone();
        if let Some(u) = self.users.get_mut(&id) {
            u.sessions_revoked += 1;
            u.sign_in_sessions_valid_from = Some(now);
        }
        Ok(())
    }
}

/// The `$filter` clauses the provider sends: `prop eq 'value'` joined by
/// `and`. Anything else is refused as Graph refuses what it cannot parse.
pub fn parse_filter(filter: &str) -> Result<BTreeMap<String, String>, GraphError> {
    let mut clauses = BTreeMap::new();
    for clause in filter.split(" and ") {
        let invalid = || GraphError::bad_request(format!("Invalid filter clause: {clause}"));
        let (prop, value) = clause.trim().split_once(" eq ").ok_or_else(invalid)?;
        let value = value
            .trim()
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .ok_or_else(invalid)?;
        clauses.insert(prop.trim().to_owned(), value.replace("''", "'"));
    }
    Ok(clauses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_or_are_refused() {
        let f = parse_filter("roleDefinitionId eq 'r1' and principalId eq 'o''brien'").unwrap();
        assert_eq!(f["roleDefinitionId"], "r1");
        assert_eq!(f["principalId"], "o'brien");
        assert!(parse_filter("startswith(mail,'a')").is_err());
        assert!(parse_filter("mail eq unquoted").is_err());
    }
}
