//! Workflow settings: how many approvals, how long, what justification.
//!
//! Read from `workflows.toml` in the policy directory. Settings are resolved
//! field by field: `[resource.ID]` over `[group.NAME]` over `[defaults]` over
//! built-in defaults.

use std::collections::BTreeMap;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

use crate::notify::route::{NotifyLayer, Routes};
use crate::on_call::ScheduleRef;

/// One layer of settings as written in the file; absent fields fall through.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowLayer {
    /// Approvals needed from the approver set (N of M).
    pub approvals_required: Option<u32>,
    #[serde(default, with = "opt_duration")]
    pub max_duration: Option<Duration>,
    #[serde(default, with = "opt_duration")]
    pub default_duration: Option<Duration>,
    pub justification_required: Option<bool>,
    /// A regular expression the ticket must match; a ticket is then required.
    pub ticket_pattern: Option<String>,
    /// How long a request may wait for approval.
    #[serde(default, with = "opt_duration")]
    pub pending_ttl: Option<Duration>,
    pub auto_approve: Option<bool>,
    pub break_glass_allowed: Option<bool>,
    pub extension: Option<ExtensionLayer>,
    /// Ask the agent to keep sessions issued from the entitlement no longer
    /// than the grant window where the cloud allows it (AWS Identity
    /// Center: the permission set's session duration, 1 h to 12 h).
    pub cap_session_duration: Option<bool>,
    /// Ask the agent to also end the principal's sign-in sessions when the
    /// grant ends (Entra ID: `revokeSignInSessions`, which invalidates
    /// refresh tokens and session cookies; access tokens already issued
    /// live until they expire).
    pub end_sign_in_sessions: Option<bool>,
    /// Who is told of which events: destination → event names (see
    /// [`crate::notify::route`]). Merged per destination across layers.
    pub notify: Option<NotifyLayer>,
    /// Chat messages offer Approve / Deny buttons; otherwise only a link
    /// to the console. Default: true, false where break-glass is allowed.
    pub approve_in_chat: Option<bool>,
    /// An on-call schedule, `NAME:SCHEDULE` (an `[[on_call]]` provider
    /// of the broker configuration and the schedule's id): Cedar sees
    /// `context.on_call`.
    pub on_call: Option<String>,
    /// Whoever is on call on `on_call` is approved without review.
    pub auto_approve_on_call: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtensionLayer {
    pub allowed: Option<bool>,
    /// When true an extension goes through the same approvals as a request.
    pub requires_approval: Option<bool>,
    /// Longest total window, extensions included.
    #[serde(default, with = "opt_duration")]
    pub max_total: Option<Duration>,
}

/// `workflows.toml` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowFile {
    #[serde(default)]
    pub defaults: WorkflowLayer,
    #[serde(default)]
    pub group: BTreeMap<String, WorkflowLayer>,
    #[serde(default)]
    pub resource: BTreeMap<String, WorkflowLayer>,
}

/// Settings in force for one resource.
#[derive(Debug, Clone)]
pub struct Workflow {
    pub approvals_required: u32,
    pub max_duration: Duration,
    pub default_duration: Duration,
    pub justification_required: bool,
    pub ticket_pattern: Option<Regex>,
    pub pending_ttl: Duration,
    pub auto_approve: bool,
    pub break_glass_allowed: bool,
    pub extension_allowed: bool,
    pub extension_requires_approval: bool,
    pub extension_max_total: Duration,
    pub cap_session_duration: bool,
    pub end_sign_in_sessions: bool,
    /// Who is told of which events.
    pub notify: Routes,
    /// Chat messages may approve and deny.
    pub approve_in_chat: bool,
    pub on_call: Option<ScheduleRef>,
    pub auto_approve_on_call: bool,
}

const MINUTE: u64 = 60;
/// No window, TTL or extension may be longer than a year: far beyond any
/// just-in-time use, and far from date arithmetic limits.
const LONGEST: Duration = Duration::from_secs(366 * 24 * 3600);
const HOUR: u64 = 60 * MINUTE;

impl WorkflowLayer {
    fn over(&self, below: &WorkflowLayer) -> WorkflowLayer {
        let ext = match (&self.extension, &below.extension) {
            (Some(a), Some(b)) => Some(ExtensionLayer {
                allowed: a.allowed.or(b.allowed),
                requires_approval: a.requires_approval.or(b.requires_approval),
                max_total: a.max_total.or(b.max_total),
            }),
            (a, b) => a.clone().or_else(|| b.clone()),
        };
        WorkflowLayer {
            approvals_required: self.approvals_required.or(below.approvals_required),
            max_duration: self.max_duration.or(below.max_duration),
            default_duration: self.default_duration.or(below.default_duration),
            justification_required: self.justification_required.or(below.justification_required),
            ticket_pattern: self
                .ticket_pattern
                .clone()
                .or_else(|| below.ticket_pattern.clone()),
            pending_ttl: self.pending_ttl.or(below.pending_ttl),
            auto_approve: self.auto_approve.or(below.auto_approve),
            break_glass_allowed: self.break_glass_allowed.or(below.break_glass_allowed),
            extension: ext,
            cap_session_duration: self.cap_session_duration.or(below.cap_session_duration),
            end_sign_in_sessions: self.end_sign_in_sessions.or(below.end_sign_in_sessions),
            approve_in_chat: self.approve_in_chat.or(below.approve_in_chat),
            on_call: self.on_call.clone().or_else(|| below.on_call.clone()),
            auto_approve_on_call: self.auto_approve_on_call.or(below.auto_approve_on_call),
            notify: match (&self.notify, &below.notify) {
                (Some(a), Some(b)) => {
                    let mut merged = b.clone();
                    merged.extend(a.iter().map(|(k, v)| (k.clone(), v.clone())));
                    Some(merged)
                }
                (a, b) => a.clone().or_else(|| b.clone()),
            },
        }
    }

    /// Fills in built-in defaults and checks the combination. The error is a
    /// sentence about the setting at fault.
    fn resolve(&self) -> Result<Workflow, String> {
        let too_long = [
            ("max_duration", self.max_duration),
            ("default_duration", self.default_duration),
            ("pending_ttl", self.pending_ttl),
            (
                "extension.max_total",
                self.extension.as_ref().and_then(|e| e.max_total),
            ),
        ]
        .into_iter()
        .find_map(|(name, d)| d.filter(|d| *d > LONGEST).map(|d| (name, d)));
        if let Some((name, d)) = too_long {
            return Err(format!(
                "{name} {} is longer than the longest jitgate accepts ({})",
                humantime::format_duration(d),
                humantime::format_duration(LONGEST)
            ));
        }
        let max_duration = self.max_duration.unwrap_or(Duration::from_secs(HOUR));
        let default_duration = self
            .default_duration
            .unwrap_or_else(|| max_duration.min(Duration::from_secs(30 * MINUTE)));
        if default_duration > max_duration {
            return Err(format!(
                "default_duration {} is longer than max_duration {}",
                humantime::format_duration(default_duration),
                humantime::format_duration(max_duration)
            ));
        }
        if max_duration.is_zero() {
            return Err("max_duration must be longer than zero".into());
        }
        let auto_approve = self.auto_approve.unwrap_or(false);
        let approvals_required = self.approvals_required.unwrap_or(1);
        if approvals_required == 0 && !auto_approve {
            return Err("approvals_required is 0; set auto_approve = true to grant without approval".into());
        }
        let ticket_pattern = match &self.ticket_pattern {
            Some(p) => Some(
                Regex::new(&format!("^(?:{p})$"))
                    .map_err(|e| format!("ticket_pattern `{p}` is not a valid regular expression: {e}"))?,
            ),
            None => None,
        };
        let ext = self.extension.clone().unwrap_or_default();
        let notify = match &self.notify {
            Some(layer) => Routes::parse(layer)?.over(&Routes::builtin()),
            None => Routes::builtin(),
        };
        let break_glass_allowed = self.break_glass_allowed.unwrap_or(false);
        let on_call = self.on_call.as_deref().map(ScheduleRef::parse).transpose()?;
        let auto_approve_on_call = self.auto_approve_on_call.unwrap_or(false);
        if auto_approve_on_call && on_call.is_none() {
            return Err(
                "auto_approve_on_call needs an on_call schedule (on_call = \"NAME:SCHEDULE\")".into(),
            );
        }
        Ok(Workflow {
            approvals_required,
            max_duration,
            default_duration,
            justification_required: self.justification_required.unwrap_or(false),
            ticket_pattern,
            pending_ttl: self.pending_ttl.unwrap_or(Duration::from_secs(24 * HOUR)),
            auto_approve,
            break_glass_allowed,
            extension_allowed: ext.allowed.unwrap_or(false),
            extension_requires_approval: ext.requires_approval.unwrap_or(true),
            extension_max_total: ext.max_total.unwrap_or(max_duration),
            cap_session_duration: self.cap_session_duration.unwrap_or(false),
            end_sign_in_sessions: self.end_sign_in_sessions.unwrap_or(false),
            notify,
            approve_in_chat: self.approve_in_chat.unwrap_or(!break_glass_allowed),
            on_call,
            auto_approve_on_call,
        })
    }
}

/// Where a workflow setting failed, before file and line are attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkflowProblem {
    /// The TOML did not parse; `offset` is a byte offset into the text.
    Syntax {
        offset: Option<usize>,
        message: String,
    },
    UnknownResource {
        name: String,
        known: Vec<String>,
    },
    UnknownGroup {
        name: String,
        known: Vec<String>,
    },
    /// `section` is `defaults`, `group.NAME` or `resource.ID`.
    Invalid {
        section: String,
        message: String,
    },
}

/// Parsed and checked settings, ready to answer "what applies to resource R".
#[derive(Debug, Clone, Default)]
pub struct Workflows {
    file: WorkflowFile,
}

impl Workflows {
    /// Parses `text` and checks it against the known resources and groups.
    pub fn parse(
        text: &str,
        known_resources: &BTreeMap<String, Option<String>>,
    ) -> Result<Self, Vec<WorkflowProblem>> {
        Self::parse_with(text, Some(known_resources))
    }

    /// Parses `text` and checks every section's settings, without a
    /// catalogue: names of groups and resources are taken as they are
    /// (offline `policy check`).
    pub fn parse_offline(text: &str) -> Result<Self, Vec<WorkflowProblem>> {
        Self::parse_with(text, None)
    }

    fn parse_with(
        text: &str,
        known_resources: Option<&BTreeMap<String, Option<String>>>,
    ) -> Result<Self, Vec<WorkflowProblem>> {
        let file: WorkflowFile = toml::from_str(text).map_err(|e| {
            vec![WorkflowProblem::Syntax {
                offset: e.span().map(|s| s.start),
                message: e.message().to_owned(),
            }]
        })?;
        let mut problems = Vec::new();
        let known_groups: Option<Vec<String>> = known_resources.map(|known| {
            let mut g: Vec<String> = known.values().flatten().cloned().collect();
            g.sort();
            g.dedup();
            g
        });
        let check = |section: String, layer: &WorkflowLayer, problems: &mut Vec<WorkflowProblem>| {
            if let Err(message) = layer.resolve() {
                problems.push(WorkflowProblem::Invalid { section, message });
            }
        };
        check("defaults".into(), &file.defaults, &mut problems);
        for (name, layer) in &file.group {
            if let Some(known) = known_groups.as_ref().filter(|k| !k.contains(name)) {
                problems.push(WorkflowProblem::UnknownGroup {
                    name: name.clone(),
                    known: known.clone(),
                });
            }
            check(
                format!("group.{name}"),
                &layer.over(&file.defaults),
                &mut problems,
            );
        }
        for name in file.resource.keys() {
            match known_resources.map(|known| (known, known.get(name))) {
                Some((known, None)) => problems.push(WorkflowProblem::UnknownResource {
                    name: name.clone(),
                    known: known.keys().cloned().collect(),
                }),
                Some((_, Some(group))) => {
                    let merged = Self::layers_for(&file, name, group.as_deref());
                    check(format!("resource.{name}"), &merged, &mut problems);
                }
                // Offline: its group is not known; check it over the defaults.
                None => {
                    let merged = Self::layers_for(&file, name, None);
                    check(format!("resource.{name}"), &merged, &mut problems);
                }
            }
        }
        if problems.is_empty() {
            Ok(Self { file })
        } else {
            Err(problems)
        }
    }

    fn layers_for(file: &WorkflowFile, resource: &str, group: Option<&str>) -> WorkflowLayer {
        let mut layer = file.defaults.clone();
        if let Some(g) = group.and_then(|g| file.group.get(g)) {
            layer = g.over(&layer);
        }
        if let Some(r) = file.resource.get(resource) {
            layer = r.over(&layer);
        }
        layer
    }

    /// The settings of `[defaults]` alone (checked at parse time).
    pub fn defaults(&self) -> Workflow {
        self.file
            .defaults
            .resolve()
            .unwrap_or_else(|_| Workflow::builtin())
    }

    /// Settings for a resource. Resources added after the policies were
    /// loaded get the defaults (and their group's settings).
    pub fn for_resource(&self, resource: &str, group: Option<&str>) -> Workflow {
        match Self::layers_for(&self.file, resource, group).resolve() {
            Ok(w) => w,
            // Every layer combination of known names was checked at parse
            // time; a new resource falls back to the checked defaults.
            Err(_) => self.defaults(),
        }
    }
}

impl Workflow {
    /// The settings when no file says otherwise: one approval, up to an hour.
    pub fn builtin() -> Workflow {
        Workflow {
            approvals_required: 1,
            max_duration: Duration::from_secs(HOUR),
            default_duration: Duration::from_secs(30 * MINUTE),
            justification_required: false,
            ticket_pattern: None,
            pending_ttl: Duration::from_secs(24 * HOUR),
            auto_approve: false,
            break_glass_allowed: false,
            extension_allowed: false,
            extension_requires_approval: true,
            extension_max_total: Duration::from_secs(HOUR),
            cap_session_duration: false,
            end_sign_in_sessions: false,
            notify: Routes::builtin(),
            approve_in_chat: true,
            on_call: None,
            auto_approve_on_call: false,
        }
    }
}

mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        s.map(|s| {
            humantime::parse_duration(&s).map_err(|e| {
                serde::de::Error::custom(format!("`{s}` is not a duration like \"30m\" or \"8h\": {e}"))
            })
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> BTreeMap<String, Option<String>> {
        [
            ("aws-prod-admin".to_owned(), Some("prod".to_owned())),
            ("aws-dev-admin".to_owned(), Some("dev".to_owned())),
            ("entra-helpdesk".to_owned(), None),
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn resource_over_group_over_defaults() {
        let w = Workflows::parse(
            r#"
            [defaults]
            approvals_required = 1
            max_duration = "1h"
            [group.prod]
            approvals_required = 2
            max_duration = "2h"
            [resource.aws-prod-admin]
            max_duration = "15m"
            default_duration = "10m"
            "#,
            &known(),
        )
        .unwrap();
        let prod = w.for_resource("aws-prod-admin", Some("prod"));
        assert_eq!(prod.approvals_required, 2);
        assert_eq!(prod.max_duration, Duration::from_secs(15 * 60));
        let dev = w.for_resource("aws-dev-admin", Some("dev"));
        assert_eq!(dev.approvals_required, 1);
        assert_eq!(dev.max_duration, Duration::from_secs(3600));
        assert_eq!(dev.default_duration, Duration::from_secs(30 * 60));
    }

    #[test]
    fn unknown_names_are_reported_with_the_known_ones() {
        let err = Workflows::parse(
            "[resource.aws-prd-admin]\napprovals_required = 2\n[group.staging]\n",
            &known(),
        )
        .unwrap_err();
        assert!(err.contains(&WorkflowProblem::UnknownResource {
            name: "aws-prd-admin".into(),
            known: vec![
                "aws-dev-admin".into(),
                "aws-prod-admin".into(),
                "entra-helpdesk".into()
            ],
        }));
        assert!(err
            .iter()
            .any(|p| matches!(p, WorkflowProblem::UnknownGroup { name, .. } if name == "staging")));
    }

    #[test]
    fn bad_values_are_refused() {
        for (text, needle) in [
            ("[defaults]\nmax_duration = \"soon\"", "soon"),
            ("[defaults]\napprovals_requierd = 1", "approvals_requierd"),
            ("[defaults]\napprovals_required = 0", "auto_approve"),
            (
                "[defaults]\nmax_duration = \"1h\"\ndefault_duration = \"2h\"",
                "longer than",
            ),
            ("[defaults]\nticket_pattern = \"(\"", "ticket_pattern"),
            (
                "[defaults]\npending_ttl = \"100000years\"",
                "longer than the longest",
            ),
        ] {
            let err = Workflows::parse(text, &known()).unwrap_err();
            let text_of = format!("{err:?}");
            assert!(text_of.contains(needle), "{text}: {text_of}");
        }
    }

    #[test]
    fn chat_approval_is_off_where_break_glass_is_allowed_unless_said() {
        let w = Workflows::parse(
            "[group.prod]\nbreak_glass_allowed = true\n[group.dev]\nbreak_glass_allowed = true\napprove_in_chat = true\n",
            &known(),
        )
        .unwrap();
        assert!(!w.for_resource("aws-prod-admin", Some("prod")).approve_in_chat);
        assert!(w.for_resource("aws-dev-admin", Some("dev")).approve_in_chat);
        assert!(w.for_resource("entra-helpdesk", None).approve_in_chat);
    }

    #[test]
    fn on_call_schedules_are_named_with_their_provider() {
        let w = Workflows::parse(
            "[group.prod]\non_call = \"pd:PABC\"\nauto_approve_on_call = true\n",
            &known(),
        )
        .unwrap();
        let prod = w.for_resource("aws-prod-admin", Some("prod"));
        assert_eq!(prod.on_call.unwrap().schedule, "PABC");
        assert!(prod.auto_approve_on_call);
        for (text, needle) in [
            ("[defaults]\non_call = \"PABC\"\n", "NAME:SCHEDULE"),
            (
                "[defaults]\nauto_approve_on_call = true\n",
                "needs an on_call schedule",
            ),
            ("[defaults.notify]\n\"sms:1\" = [\"*\"]\n", "unknown destination"),
        ] {
            let err = format!("{:?}", Workflows::parse(text, &known()).unwrap_err());
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn ticket_pattern_matches_whole_ticket() {
        let w = Workflows::parse("[defaults]\nticket_pattern = \"[A-Z]+-[0-9]+\"", &known()).unwrap();
        let p = w.for_resource("aws-dev-admin", None).ticket_pattern.unwrap();
        assert!(p.is_match("OPS-12"));
        assert!(!p.is_match("see OPS-12 please"));
    }
}
