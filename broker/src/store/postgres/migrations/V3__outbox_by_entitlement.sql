-- A change reads the queued commands of the entitlements it queues for by
-- their digest alone (it names the configuration too): an index of its
-- own, so that the plan stays an index lookup whatever the statistics.
CREATE INDEX outbox_by_entitlement ON outbox (entitlement);
