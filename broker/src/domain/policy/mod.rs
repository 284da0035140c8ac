//! Policies: Cedar decides who may request, approve and break glass;
//! `workflows.toml` says how (approvals, durations, justification).
//!
//! Loading is pure: the caller reads the files and passes their text, with the
//! catalogue of known resources. Every problem is reported with its file and
//! line and, for an unknown name, the names that are known.

mod workflow;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid, Policy, PolicyId,
    PolicySet, RestrictedExpression, Schema, ValidationMode, Validator,
};
use jitgate_shared::v1::api::Role;
use miette::Diagnostic;

pub use workflow::{Workflow, WorkflowLayer, WorkflowProblem, Workflows};

/// The Cedar schema every policy is validated against.
pub const SCHEMA: &str = include_str!("jitgate.cedarschema");

/// The name of the workflow settings file inside a policy directory.
pub const WORKFLOWS_FILE: &str = "workflows.toml";

/// One file of a policy directory, already read.
#[derive(Debug, Clone)]
pub struct PolicySource {
    /// The path as the user should see it in messages.
    pub path: String,
    pub text: String,
}

/// What the policies may name: resources with their group and configuration.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub resources: BTreeMap<String, CatalogEntry>,
    /// When false, names of resources, groups and configurations are not
    /// checked (offline `policy check` without a data directory).
    pub check_names: bool,
}

#[derive(Debug, Clone)]
pub struct CatalogEntry {
    pub group: Option<String>,
    pub configuration: String,
}

/// One problem in a policy directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub path: String,
    /// 1-based; absent when the problem is about the whole file.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "policy {} line {}: {}", self.path, line, self.message),
            None => write!(f, "policy {}: {}", self.path, self.message),
        }
    }
}

/// All problems found in a policy directory, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// The actions policies can permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Request,
    Approve,
    BreakGlass,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Request => "request",
            Action::Approve => "approve",
            Action::BreakGlass => "break_glass",
        }
    }
}

/// Who is asking, as policies see them.
#[derive(Debug, Clone)]
pub struct PrincipalFacts<'a> {
    pub user: &'a str,
    pub email: &'a str,
    pub person: &'a str,
    pub roles: &'a BTreeSet<Role>,
    pub groups: &'a BTreeSet<String>,
}

/// What is asked for, as policies see it.
#[derive(Debug, Clone)]
pub struct ResourceFacts<'a> {
    pub resource: &'a str,
    pub group: Option<&'a str>,
    pub configuration: &'a str,
    pub kind: &'a str,
}

#[derive(Debug, Clone, Copy)]
pub struct RequestFacts {
    pub duration_seconds: u64,
    pub break_glass: bool,
    pub has_ticket: bool,
    /// The person asking is on call on the workflow's schedule (false
    /// elsewhere, and whenever the lookup failed).
    pub on_call: bool,
}

/// A loaded, validated policy directory.
#[derive(Debug, Clone)]
pub struct Policies {
    cedar: PolicySet,
    workflows: Workflows,
    files: Vec<String>,
}

impl Policies {
    /// Parses and validates every source: `*.cedar` files against the schema
    /// and the catalogue, `workflows.toml` against the catalogue.
    pub fn load(sources: &[PolicySource], catalog: &Catalog) -> Result<Self, PolicyErrors> {
        let schema = schema()?;
        let mut errors = Vec::new();
        let mut cedar = PolicySet::new();
        let mut workflows = None;
        let mut where_is: HashMap<PolicyId, usize> = HashMap::new();
        for (index, source) in sources.iter().enumerate() {
            if source.path.ends_with(".cedar") {
                parse_cedar_file(index, source, catalog, &mut cedar, &mut where_is, &mut errors);
            } else if source.path.ends_with(WORKFLOWS_FILE) {
                let parsed = if catalog.check_names {
                    Workflows::parse(&source.text, &known_for_workflows(catalog))
                } else {
                    Workflows::parse_offline(&source.text)
                };
                match parsed {
                    Ok(w) => workflows = Some(w),
                    Err(problems) => errors.extend(problems.into_iter().map(|p| workflow_error(source, p))),
                }
            }
        }
        if errors.is_empty() {
            let result = Validator::new(schema).validate(&cedar, ValidationMode::Strict);
            for e in result.validation_errors() {
                let (path, line) = match where_is.get(e.policy_id()).and_then(|i| sources.get(*i)) {
                    Some(src) => (src.path.clone(), first_label_line(e, &src.text)),
                    None => (e.policy_id().to_string(), None),
                };
                errors.push(PolicyError {
                    path,
                    line,
                    message: format!("{e}{}", help_of(e)),
                });
            }
        }
        if !errors.is_empty() {
            return Err(PolicyErrors(errors));
        }
        Ok(Self {
            cedar,
            workflows: workflows.unwrap_or_default(),
            files: sources.iter().map(|s| s.path.clone()).collect(),
        })
    }

    /// No policies: nothing is permitted. For offline tools that need a
    /// broker but never decide access.
    pub fn empty() -> Self {
        Self {
            cedar: PolicySet::new(),
            workflows: Workflows::default(),
            files: Vec::new(),
        }
    }

    pub fn files(&self) -> &[String] {
        &self.files
    }

    pub fn policy_count(&self) -> usize {
        self.cedar.policies().count()
    }

    pub fn workflow(&self, resource: &ResourceFacts<'_>) -> Workflow {
        self.workflows.for_resource(resource.resource, resource.group)
    }

    /// The settings of `[defaults]` alone: for events about no resource.
    pub fn default_workflow(&self) -> Workflow {
        self.workflows.defaults()
    }

    /// Whether any policy permits `action`. Errors building the Cedar request
    /// (which validated entities make impossible) count as a denial.
    pub fn permits(
        &self,
        action: Action,
        who: &PrincipalFacts<'_>,
        what: &ResourceFacts<'_>,
        facts: RequestFacts,
    ) -> bool {
        !self.permitting(action, who, what, facts).is_empty()
    }

    /// The ids of the policies that permit `action` (their `@id`, else
    /// `file#n`); empty when it is denied.
    pub fn permitting(
        &self,
        action: Action,
        who: &PrincipalFacts<'_>,
        what: &ResourceFacts<'_>,
        facts: RequestFacts,
    ) -> Vec<String> {
        match self.cedar_request(action, who, what, facts) {
            Ok((request, entities)) => {
                let response = Authorizer::new().is_authorized(&request, &self.cedar, &entities);
                if response.decision() != Decision::Allow {
                    return Vec::new();
                }
                let mut ids: Vec<String> = response.diagnostics().reason().map(|id| id.to_string()).collect();
                ids.sort();
                ids
            }
            Err(e) => {
                tracing::warn!(error = %e, action = action.as_str(), "cedar request could not be built; denying");
                Vec::new()
            }
        }
    }

    fn cedar_request(
        &self,
        action: Action,
        who: &PrincipalFacts<'_>,
        what: &ResourceFacts<'_>,
        facts: RequestFacts,
    ) -> Result<(cedar_policy::Request, Entities), String> {
        let user = uid("User", who.user)?;
        let mut user_parents = HashSet::new();
        for g in who.groups {
            user_parents.insert(uid("Group", g)?);
        }
        for r in who.roles {
            user_parents.insert(uid("Role", r.as_str())?);
        }
        let user_entity = Entity::new(
            user.clone(),
            HashMap::from([
                (
                    "email".to_owned(),
                    RestrictedExpression::new_string(who.email.to_owned()),
                ),
                (
                    "person".to_owned(),
                    RestrictedExpression::new_string(who.person.to_owned()),
                ),
            ]),
            user_parents,
        )
        .map_err(|e| e.to_string())?;
        let resource = uid("Resource", what.resource)?;
        let mut res_parents = HashSet::from([uid("Configuration", what.configuration)?]);
        if let Some(g) = what.group {
            res_parents.insert(uid("ResourceGroup", g)?);
        }
        let res_entity = Entity::new(
            resource.clone(),
            HashMap::from([(
                "kind".to_owned(),
                RestrictedExpression::new_string(what.kind.to_owned()),
            )]),
            res_parents,
        )
        .map_err(|e| e.to_string())?;
        let context = Context::from_pairs([
            (
                "duration_seconds".to_owned(),
                RestrictedExpression::new_long(i64::try_from(facts.duration_seconds).unwrap_or(i64::MAX)),
            ),
            (
                "break_glass".to_owned(),
                RestrictedExpression::new_bool(facts.break_glass),
            ),
            (
                "has_ticket".to_owned(),
                RestrictedExpression::new_bool(facts.has_ticket),
            ),
            (
                "on_call".to_owned(),
                RestrictedExpression::new_bool(facts.on_call),
            ),
        ])
        .map_err(|e| e.to_string())?;
        let request =
            cedar_policy::Request::new(user, uid("Action", action.as_str())?, resource, context, None)
                .map_err(|e| e.to_string())?;
        let entities = Entities::from_entities([user_entity, res_entity], None).map_err(|e| e.to_string())?;
        Ok((request, entities))
    }
}

fn schema() -> Result<Schema, PolicyErrors> {
    Schema::from_cedarschema_str(SCHEMA)
        .map(|(schema, _warnings)| schema)
        .map_err(|e| {
            PolicyErrors(vec![PolicyError {
                path: "<built-in schema>".into(),
                line: None,
                message: e.to_string(),
            }])
        })
}

fn uid(kind: &str, id: &str) -> Result<EntityUid, String> {
    let ty = EntityTypeName::from_str(&format!("Jitgate::{kind}")).map_err(|e| e.to_string())?;
    Ok(EntityUid::from_type_name_and_id(ty, EntityId::new(id)))
}

fn known_for_workflows(catalog: &Catalog) -> BTreeMap<String, Option<String>> {
    catalog
        .resources
        .iter()
        .map(|(id, e)| (id.clone(), e.group.clone()))
        .collect()
}

fn parse_cedar_file(
    index: usize,
    source: &PolicySource,
    catalog: &Catalog,
    into: &mut PolicySet,
    where_is: &mut HashMap<PolicyId, usize>,
    errors: &mut Vec<PolicyError>,
) {
    let parsed = match PolicySet::from_str(&source.text) {
        Ok(p) => p,
        Err(e) => {
            for d in e.iter() {
                errors.push(PolicyError {
                    path: source.path.clone(),
                    line: first_label_line(d, &source.text),
                    message: format!("{d}{}", help_of(d)),
                });
            }
            return;
        }
    };
    if parsed.templates().next().is_some() {
        errors.push(PolicyError {
            path: source.path.clone(),
            line: None,
            message: "policy templates are not supported; write concrete policies".into(),
        });
    }
    for (n, policy) in parsed.policies().enumerate() {
        let id = match policy.annotation("id") {
            Some(name) => PolicyId::new(name),
            None => PolicyId::new(format!("{}#{}", source.path, n + 1)),
        };
        let line = policy_line(&source.text, policy);
        if catalog.check_names {
            for literal in policy.entity_literals() {
                if let Some(message) = unknown_name(&literal, catalog) {
                    errors.push(PolicyError {
                        path: source.path.clone(),
                        line: literal_line(&source.text, literal.id().unescaped()).or(line),
                        message,
                    });
                }
            }
        }
        let policy: Policy = policy.new_id(id.clone());
        if into.add(policy).is_err() {
            errors.push(PolicyError {
                path: source.path.clone(),
                line,
                message: format!("policy id `{id}` is used twice; each @id must be unique across files"),
            });
        } else {
            where_is.insert(id, index);
        }
    }
}

/// A sentence for a literal naming something the catalogue does not have.
fn unknown_name(literal: &EntityUid, catalog: &Catalog) -> Option<String> {
    let ty = literal.type_name().to_string();
    let id = literal.id().unescaped();
    let (what, known): (&str, Vec<String>) = match ty.as_str() {
        "Jitgate::Resource" => ("resource", catalog.resources.keys().cloned().collect()),
        "Jitgate::ResourceGroup" => (
            "resource group",
            catalog
                .resources
                .values()
                .filter_map(|e| e.group.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
        ),
        "Jitgate::Configuration" => (
            "configuration",
            catalog
                .resources
                .values()
                .map(|e| e.configuration.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
        ),
        _ => return None,
    };
    if known.iter().any(|k| k == id) {
        return None;
    }
    Some(format!("unknown {what} `{id}`; known: {}", list_or_none(&known)))
}

fn workflow_error(source: &PolicySource, problem: WorkflowProblem) -> PolicyError {
    let (line, message) = match problem {
        WorkflowProblem::Syntax { offset, message } => (offset.map(|o| line_of(&source.text, o)), message),
        WorkflowProblem::UnknownResource { name, known } => (
            section_line(&source.text, "resource", &name),
            format!("unknown resource `{name}`; known: {}", list_or_none(&known)),
        ),
        WorkflowProblem::UnknownGroup { name, known } => (
            section_line(&source.text, "group", &name),
            format!("unknown resource group `{name}`; known: {}", list_or_none(&known)),
        ),
        WorkflowProblem::Invalid { section, message } => {
            let line = match section.split_once('.') {
                Some((table, name)) => section_line(&source.text, table, name),
                None => section_line(&source.text, &section, ""),
            };
            (line, format!("[{section}]: {message}"))
        }
    };
    PolicyError {
        path: source.path.clone(),
        line,
        message,
    }
}

fn list_or_none(known: &[String]) -> String {
    if known.is_empty() {
        "none yet".to_owned()
    } else {
        known
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset.min(text.len()))
        .map(|t| t.matches('\n').count() + 1)
        .unwrap_or(1)
}

fn first_label_line(d: &dyn Diagnostic, text: &str) -> Option<usize> {
    d.labels()
        .and_then(|mut labels| labels.next())
        .map(|l| line_of(text, l.offset()))
}

fn help_of(d: &dyn Diagnostic) -> String {
    d.help().map(|h| format!(" ({h})")).unwrap_or_default()
}

/// The line where a policy starts, found through its source span.
fn policy_line(text: &str, policy: &Policy) -> Option<usize> {
    // Cedar keeps the original text of each policy; find it in the file.
    let own = policy.to_string();
    text.find(own.trim()).map(|o| line_of(text, o))
}

/// The first line where `"id"` appears quoted, which is how Cedar entity
/// literals are written.
fn literal_line(text: &str, id: &str) -> Option<usize> {
    text.find(&format!("\"{id}\"")).map(|o| line_of(text, o))
}

fn section_line(text: &str, table: &str, name: &str) -> Option<usize> {
    let wanted: Vec<String> = if name.is_empty() {
        vec![format!("[{table}]")]
    } else {
        vec![format!("[{table}.{name}]"), format!("[{table}.\"{name}\"]")]
    };
    text.lines()
        .position(|l| wanted.iter().any(|w| l.trim() == w))
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests;
