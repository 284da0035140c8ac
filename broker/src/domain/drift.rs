//! What drifted between the broker's leases and what an agent found in its
//! tenant.

use std::collections::BTreeSet;

use jitgate_shared::v1::Entitlement;

/// The difference between what the broker holds leases on and what an
/// agent found in the tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drift {
    pub unexpected: Vec<Entitlement>,
    pub missing: Vec<Entitlement>,
}

/// Compares `granted` (held leases whose grant an agent confirmed and no
/// newer command is queued for) with `found` in the tenant. `pending` are
/// entitlements with a command still queued or in flight: they are in
/// motion, not drift.
pub fn drift(
    granted: &BTreeSet<Entitlement>,
    found: &BTreeSet<Entitlement>,
    pending: &BTreeSet<Entitlement>,
) -> Drift {
    Drift {
        unexpected: found
            .iter()
            .filter(|e| !granted.contains(*e) && !pending.contains(*e))
            .cloned()
            .collect(),
        missing: granted
            .iter()
            .filter(|e| !found.contains(*e) && !pending.contains(*e))
            .cloned()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jitgate_shared::v1::{ConfigId, Target};

    fn ent(group: &str, who: &str) -> Entitlement {
        Entitlement {
            configuration: ConfigId::new("entra").unwrap(),
            target: Target::EntraGroupMembership {
                group_id: group.into(),
            },
            principal: who.into(),
        }
    }

    #[test]
    fn drift_names_both_directions_and_ignores_commands_in_motion() {
        let granted: BTreeSet<_> = [ent("a", "alice"), ent("b", "bob")].into();
        let found: BTreeSet<_> = [ent("a", "alice"), ent("c", "carol"), ent("d", "dave")].into();
        let pending: BTreeSet<_> = [ent("d", "dave")].into();
        let d = drift(&granted, &found, &pending);
        assert_eq!(d.unexpected, vec![ent("c", "carol")]);
        assert_eq!(d.missing, vec![ent("b", "bob")]);
    }
}
