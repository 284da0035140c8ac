//! Which documented statuses were answered: by the schemathesis runs
//! (their HAR reports) and by the probes. Every status the document lists
//! for an operation must have been answered by it at least once, or the
//! document promises a client something it never meets.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// An operation: its method (upper case) and path template.
pub type Operation = (String, String);

/// Statuses answered, per operation.
#[derive(Debug, Default)]
pub struct Answered(BTreeMap<Operation, BTreeSet<u16>>);

impl Answered {
    pub fn insert(&mut self, operation: Operation, status: u16) {
        self.0.entry(operation).or_default().insert(status);
    }

    pub fn extend(&mut self, other: Answered) {
        for (operation, statuses) in other.0 {
            self.0.entry(operation).or_default().extend(statuses);
        }
    }

    fn contains(&self, operation: &Operation, status: u16) -> bool {
        self.0.get(operation).is_some_and(|s| s.contains(&status))
    }

    /// Distinct statuses answered, over every operation.
    pub fn count(&self) -> usize {
        self.0.values().map(BTreeSet::len).sum()
    }
}

/// The statuses the broker's OpenAPI document lists, per operation.
pub fn documented() -> BTreeMap<Operation, BTreeSet<u16>> {
    let doc = jitgate_broker::api::openapi::document_json();
    let mut documented = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if let Some(responses) = op["responses"].as_object() {
                documented.insert(
                    (method.to_uppercase(), path.clone()),
                    responses.keys().map(|s| s.parse().unwrap()).collect(),
                );
            }
        }
    }
    documented
}

/// Whether a concrete path is one of the template's (`{...}` matches one
/// segment).
fn matches(template: &str, path: &str) -> bool {
    let (t, p): (Vec<_>, Vec<_>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len() && t.iter().zip(&p).all(|(t, p)| t == p || t.starts_with('{'))
}

/// The operation of `documented` a request was for, if any.
fn operation_of(
    documented: &BTreeMap<Operation, BTreeSet<u16>>,
    method: &str,
    path: &str,
) -> Option<Operation> {
    let path = path.split('?').next().unwrap_or_default();
    documented
        .keys()
        .find(|(m, t)| m.eq_ignore_ascii_case(method) && matches(t, path))
        .cloned()
}

/// What the HAR reports in `reports` (one per role) saw answered.
pub fn from_har(reports: &Path, roles: &[&str]) -> Answered {
    let documented = documented();
    let mut answered = Answered::default();
    for role in roles {
        let Ok(text) = std::fs::read_to_string(reports.join(format!("{role}.har"))) else {
            println!("no HAR report for {role}");
            continue;
        };
        let har: serde_json::Value = serde_json::from_str(&text).unwrap();
        for entry in har["log"]["entries"].as_array().into_iter().flatten() {
            let method = entry["request"]["method"].as_str().unwrap_or_default();
            let url = entry["request"]["url"].as_str().unwrap_or_default();
            let path = url
                .split("://")
                .nth(1)
                .and_then(|r| r.find('/').map(|i| &r[i..]))
                .unwrap_or("");
            let Some(status) = entry["response"]["status"].as_u64() else {
                continue;
            };
            if let Some(operation) = operation_of(&documented, method, path) {
                answered.insert(operation, u16::try_from(status).unwrap());
            }
        }
    }
    answered
}

/// The documented statuses never answered, as `METHOD path status`.
/// Prints the tally (`--no-capture` shows it).
pub fn never_answered(answered: &Answered) -> Vec<String> {
    let documented = documented();
    let total: usize = documented.values().map(BTreeSet::len).sum();
    let mut never = Vec::new();
    for (operation, statuses) in &documented {
        for &status in statuses {
            if !answered.contains(operation, status) {
                never.push(format!("{} {} {status}", operation.0, operation.1));
            }
        }
    }
    println!("documented statuses answered: {} of {total}", total - never.len());
    never
}
