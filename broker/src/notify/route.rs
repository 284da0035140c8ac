//! Where events go: the `notify` table of a `workflows.toml` layer maps
//! destinations to the events they get, and the router turns destinations
//! into the addresses one notification is queued for each.
//!
//! ```toml
//! [defaults.notify]
//! requester = ["request_approved", "request_denied", "grant_ending_soon"]
//! approvers = ["request_created"]
//! "webhook:siem" = ["*"]
//!
//! [group.prod.notify]
//! "email:security@example.com" = ["break_glass_used", "revoke_failing"]
//! ```
//!
//! Layers merge per destination (`[resource.ID]` over `[group.NAME]` over
//! `[defaults]`); an empty list stops a destination a lower layer named.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use strum::VariantArray;

use super::event::EventKind;

/// Who or what a workflow sends events to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Destination {
    /// The person who asked, at their email address.
    Requester,
    /// Everyone who may still approve the request (Cedar lets them, they
    /// are not the requester's person, they have not reviewed it yet), at
    /// their email addresses.
    Approvers,
    /// One mailbox (a team's list, the security desk).
    Email(String),
    /// A webhook endpoint the broker configuration names
    /// (`[[notify.webhook]]`).
    Webhook(String),
    /// A Slack channel, by id (`C0123ABCD`) or name (`#prod-approvals`).
    Slack(String),
    /// A Teams Workflows webhook the broker configuration names
    /// (`[[notify.teams]]`).
    Teams(String),
}

impl Destination {
    /// Reads a destination as `workflows.toml` writes it; the error names
    /// the forms there are.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "unknown destination `{text}`: use `requester`, `approvers`, `email:ADDRESS`, `webhook:NAME`, `slack:CHANNEL` or `teams:NAME`"
            )
        };
        match text {
            "requester" => return Ok(Destination::Requester),
            "approvers" => return Ok(Destination::Approvers),
            _ => {}
        }
        let (scheme, rest) = text.split_once(':').ok_or_else(bad)?;
        if rest.is_empty() {
            return Err(bad());
        }
        match scheme {
            "email" => {
                rest.parse::<lettre::Address>()
                    .map_err(|e| format!("destination `{text}`: `{rest}` is not an email address ({e})"))?;
                Ok(Destination::Email(rest.to_owned()))
            }
            "webhook" => Ok(Destination::Webhook(rest.to_owned())),
            "slack" => Ok(Destination::Slack(rest.to_owned())),
            "teams" => Ok(Destination::Teams(rest.to_owned())),
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Requester => f.write_str("requester"),
            Destination::Approvers => f.write_str("approvers"),
            Destination::Email(a) => write!(f, "email:{a}"),
            Destination::Webhook(n) => write!(f, "webhook:{n}"),
            Destination::Slack(c) => write!(f, "slack:{c}"),
            Destination::Teams(n) => write!(f, "teams:{n}"),
        }
    }
}

/// A `notify` table as written: destination → event names (`"*"`: all).
pub type NotifyLayer = BTreeMap<String, Vec<String>>;

/// Which events each destination gets, for one resource.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes(BTreeMap<Destination, BTreeSet<EventKind>>);

impl Routes {
    /// What a workflow routes when `workflows.toml` says nothing: the
    /// requester hears the outcome and the end, approvers hear of new
    /// requests (both by mail, once `[notify.email]` is set).
    pub fn builtin() -> Routes {
        use EventKind as K;
        Routes(BTreeMap::from([
            (
                Destination::Requester,
                BTreeSet::from([
                    K::RequestApproved,
                    K::RequestDenied,
                    K::RequestExpired,
                    K::GrantEndingSoon,
                    K::GrantEnded,
                ]),
            ),
            (Destination::Approvers, BTreeSet::from([K::RequestCreated])),
        ]))
    }

    /// Checks one layer as written; the error is a sentence about the
    /// entry at fault.
    pub fn parse(layer: &NotifyLayer) -> Result<Routes, String> {
        let mut routes = BTreeMap::new();
        for (to, events) in layer {
            let destination = Destination::parse(to)?;
            let mut kinds = BTreeSet::new();
            for name in events {
                if name == "*" {
                    kinds.extend(EventKind::VARIANTS.iter().copied());
                    continue;
                }
                let kind = name.parse::<EventKind>().map_err(|_| {
                    let known: Vec<&str> = EventKind::VARIANTS.iter().map(|k| k.name()).collect();
                    format!(
                        "notify.\"{to}\": unknown event `{name}`; known: \"*\", {}",
                        known.join(", ")
                    )
                })?;
                kinds.insert(kind);
            }
            routes.insert(destination, kinds);
        }
        Ok(Routes(routes))
    }

    /// `self` over `below`: a destination named here replaces its entry
    /// there.
    pub fn over(&self, below: &Routes) -> Routes {
        let mut merged = below.0.clone();
        for (to, kinds) in &self.0 {
            merged.insert(to.clone(), kinds.clone());
        }
        Routes(merged)
    }

    /// The destinations that get `kind`.
    pub fn for_event(&self, kind: EventKind) -> impl Iterator<Item = &Destination> {
        self.0
            .iter()
            .filter(move |(_, kinds)| kinds.contains(&kind))
            .map(|(to, _)| to)
    }

    /// Every destination named (to check the channels they need exist).
    pub fn destinations(&self) -> impl Iterator<Item = &Destination> {
        self.0
            .iter()
            .filter(|(_, kinds)| !kinds.is_empty())
            .map(|(to, _)| to)
    }
}

/// One place a notification is delivered to: a destination made concrete.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Address {
    Email {
        to: String,
        /// Shown beside the address.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        name: String,
        /// The language the person chose (`en`, `ja`); the default when
        /// absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        language: Option<String>,
    },
    Webhook {
        endpoint: String,
    },
    /// A card to a Teams Workflows webhook.
    Teams {
        workflow: String,
    },
    /// A message to a Slack channel.
    SlackChannel {
        channel: String,
    },
    /// A direct message to the Slack member with this email address.
    SlackPerson {
        email: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        language: Option<String>,
    },
    /// A Slack message posted earlier, replaced to show the request as
    /// it now stands.
    SlackCopy {
        channel: String,
        ts: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        language: Option<String>,
    },
}

impl Address {
    /// What a notification to this address is told apart by, beside its
    /// event: `email:ADDRESS` (lower case), `webhook:NAME`.
    pub fn key(&self) -> String {
        match self {
            Address::Email { to, .. } => format!("email:{}", to.to_lowercase()),
            Address::Webhook { endpoint } => format!("webhook:{endpoint}"),
            Address::Teams { workflow } => format!("teams:{workflow}"),
            Address::SlackChannel { channel } => format!("slack:{channel}"),
            Address::SlackPerson { email, .. } => format!("slack-dm:{}", email.to_lowercase()),
            Address::SlackCopy { channel, ts, .. } => format!("slack-copy:{channel}/{ts}"),
        }
    }

    /// A message changed in place (a Slack message replaced): one
    /// notification per message, the newest event replacing the one
    /// queued before it, so the message ends showing the latest.
    pub fn changes_in_place(&self) -> bool {
        matches!(self, Address::SlackCopy { .. })
    }

    /// The channel's name (`email`, `webhook`).
    pub fn channel(&self) -> &'static str {
        match self {
            Address::Email { .. } => "email",
            Address::Webhook { .. } => "webhook",
            Address::Teams { .. } => "teams",
            Address::SlackChannel { .. } | Address::SlackPerson { .. } | Address::SlackCopy { .. } => "slack",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(entries: &[(&str, &[&str])]) -> NotifyLayer {
        entries
            .iter()
            .map(|(to, kinds)| (to.to_string(), kinds.iter().map(|k| k.to_string()).collect()))
            .collect()
    }

    #[test]
    fn destinations_parse_and_print_back() {
        for text in [
            "requester",
            "approvers",
            "email:sec@example.com",
            "webhook:siem",
            "slack:#prod",
            "slack:C012AB",
            "teams:ops",
        ] {
            assert_eq!(Destination::parse(text).unwrap().to_string(), text);
        }
        for bad in [
            "slack",
            "slack:",
            "email:",
            "email:not an address",
            "sms:123",
            "webhook:",
            "Requester",
        ] {
            let err = Destination::parse(bad).unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn unknown_events_are_named_with_the_known_ones() {
        let err = Routes::parse(&layer(&[("requester", &["request_aproved"])])).unwrap_err();
        assert!(
            err.contains("`request_aproved`") && err.contains("request_approved"),
            "{err}"
        );
    }

    #[test]
    fn upper_layers_replace_a_destination_and_keep_the_rest() {
        let defaults = Routes::parse(&layer(&[
            ("requester", &["request_approved", "request_denied"]),
            ("webhook:siem", &["*"]),
        ]))
        .unwrap();
        let prod = Routes::parse(&layer(&[
            ("requester", &["grant_ending_soon"]),
            ("webhook:siem", &[]),
            ("email:sec@example.com", &["break_glass_used"]),
        ]))
        .unwrap();
        let routes = prod.over(&defaults);
        let to = |kind| routes.for_event(kind).map(|d| d.to_string()).collect::<Vec<_>>();
        assert_eq!(to(EventKind::GrantEndingSoon), ["requester"]);
        assert!(to(EventKind::RequestApproved).is_empty());
        assert_eq!(to(EventKind::BreakGlassUsed), ["email:sec@example.com"]);
        let all = Routes::parse(&layer(&[("approvers", &["*"])])).unwrap();
        assert_eq!(
            all.for_event(EventKind::RevokeFailing).count(),
            1,
            "`*` is every event"
        );
    }

    #[test]
    fn email_keys_ignore_case() {
        let a = Address::Email {
            to: "Sec@Example.com".into(),
            name: String::new(),
            language: None,
        };
        assert_eq!(a.key(), "email:sec@example.com");
    }
}
