//! Leases: one grant's hold on one entitlement. Overlapping grants for the
//! same principal and entitlement share it; the entitlement is removed only
//! when the last lease ends.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use jitgate_shared::v1::{Entitlement, GrantId};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Derived from the entitlement; see [`Lease::key_for`].
    pub key: String,
    pub version: u64,
    pub entitlement: Entitlement,
    /// Grants holding the entitlement, with the end of each one's window.
    pub holders: BTreeMap<GrantId, DateTime<Utc>>,
    /// Counts the times the entitlement went from unheld to held; part of
    /// command ids so a re-grant after a revoke is a new command.
    pub generation: u64,
}

/// What the agent must be told after a lease change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseEffect {
    /// First holder: apply the entitlement until `deadline`.
    Apply { deadline: DateTime<Utc> },
    /// Already held, but the latest deadline moved later: tell the agent the
    /// new deadline it must enforce on its own.
    Prolong { deadline: DateTime<Utc> },
    /// A holder left early and the latest deadline moved earlier: tell the
    /// agent the shorter deadline, so its own revoke at the deadline is on
    /// time if the broker is gone.
    Shorten { deadline: DateTime<Utc> },
    /// Last holder gone: remove the entitlement.
    Remove,
    /// Nothing for the tenant.
    Nothing,
}

impl Lease {
    pub fn key_for(entitlement: &Entitlement) -> String {
        entitlement.digest()
    }

    pub fn new(entitlement: Entitlement) -> Lease {
        Lease {
            key: Self::key_for(&entitlement),
            version: 0,
            entitlement,
            holders: BTreeMap::new(),
            generation: 0,
        }
    }

    pub fn deadline(&self) -> Option<DateTime<Utc>> {
        self.holders.values().max().copied()
    }

    pub fn is_held(&self) -> bool {
        !self.holders.is_empty()
    }

    /// Adds or updates a holder. Idempotent for the same (grant, ends_at).
    pub fn hold(&self, grant: GrantId, ends_at: DateTime<Utc>) -> (Lease, LeaseEffect) {
        let before = self.deadline();
        let mut next = self.clone();
        if next.holders.is_empty() {
            next.generation += 1;
        }
        next.holders.insert(grant, ends_at);
        let deadline = next.deadline().unwrap_or(ends_at);
        let effect = match before {
            None => LeaseEffect::Apply { deadline },
            Some(b) if deadline > b => LeaseEffect::Prolong { deadline },
            Some(_) => LeaseEffect::Nothing,
        };
        (next, effect)
    }

    /// Removes a holder. Releasing a grant that does not hold is a no-op.
    pub fn release(&self, grant: GrantId) -> (Lease, LeaseEffect) {
        let before = self.deadline();
        let mut next = self.clone();
        if next.holders.remove(&grant).is_none() {
            return (next, LeaseEffect::Nothing);
        }
        let effect = match (before, next.deadline()) {
            (_, None) => LeaseEffect::Remove,
            (Some(b), Some(deadline)) if deadline < b => LeaseEffect::Shorten { deadline },
            _ => LeaseEffect::Nothing,
        };
        (next, effect)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jitgate_shared::v1::{ConfigId, Target};

    fn ent() -> Entitlement {
        Entitlement {
            configuration: ConfigId::new("aws").unwrap(),
            target: Target::AwsIamGroupMembership {
                group_name: "admins".into(),
            },
            principal: "alice".into(),
        }
    }

    #[test]
    fn overlapping_grants_share_one_entitlement() {
        let t = |s: i64| DateTime::from_timestamp(s, 0).unwrap();
        let (a, b) = (GrantId::generate(), GrantId::generate());
        let lease = Lease::new(ent());
        let (lease, e) = lease.hold(a, t(100));
        assert_eq!(e, LeaseEffect::Apply { deadline: t(100) });
        let (lease, e) = lease.hold(b, t(200));
        assert_eq!(e, LeaseEffect::Prolong { deadline: t(200) });
        let (lease, e) = lease.release(a);
        assert_eq!(e, LeaseEffect::Nothing, "the longest holder stays");
        assert!(lease.is_held());
        let (lease, e) = lease.release(a);
        assert_eq!(e, LeaseEffect::Nothing, "double release is a no-op");
        let (lease, e) = lease.release(b);
        assert_eq!(e, LeaseEffect::Remove);
        assert_eq!(lease.generation, 1);
        let (lease, e) = lease.hold(a, t(300));
        assert_eq!(e, LeaseEffect::Apply { deadline: t(300) });
        assert_eq!(lease.generation, 2);
    }

    #[test]
    fn the_longest_holder_leaving_early_shortens_the_deadline() {
        let t = |s: i64| DateTime::from_timestamp(s, 0).unwrap();
        let (a, b) = (GrantId::generate(), GrantId::generate());
        let (lease, _) = Lease::new(ent()).hold(a, t(100));
        let (lease, _) = lease.hold(b, t(200));
        let (lease, e) = lease.release(b);
        assert_eq!(e, LeaseEffect::Shorten { deadline: t(100) });
        let (_, e) = lease.release(a);
        assert_eq!(e, LeaseEffect::Remove);
    }

    #[test]
    fn key_is_stable_and_distinguishes_principals() {
        let mut other = ent();
        other.principal = "bob".into();
        assert_eq!(Lease::key_for(&ent()), Lease::key_for(&ent()));
        assert_ne!(Lease::key_for(&ent()), Lease::key_for(&other));
    }
}
