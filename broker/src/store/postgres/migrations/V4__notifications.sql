-- The notification queue: one row per event and address, due until
-- delivered or given up; `due` (NULL once settled) is what the delivery
-- service reads by.
CREATE TABLE notifications (
    id text COLLATE "C" PRIMARY KEY,
    version bigint NOT NULL,
    doc json NOT NULL,
    due timestamptz GENERATED ALWAYS AS (jitgate_instant(doc->>'due')) STORED,
    request text COLLATE "C" GENERATED ALWAYS AS (doc->'event'->'request'->>'id') STORED
);
CREATE INDEX notifications_due ON notifications (due) WHERE due IS NOT NULL;
-- A request's messages, to change them when it is decided.
CREATE INDEX notifications_by_request ON notifications (request);

-- Named positions kept with compare-and-set (the notification router's
-- place in the audit log).
CREATE TABLE cursors (
    id text COLLATE "C" PRIMARY KEY,
    version bigint NOT NULL,
    doc json NOT NULL
);
