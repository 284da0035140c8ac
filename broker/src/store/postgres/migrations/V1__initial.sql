-- jitgate's store on PostgreSQL, first schema.
--
-- Every versioned record is a row of its kind's table: its id, the version
-- compare-and-set checks, and its stored form (JSON, as in every backend).
-- Columns the typed queries filter on are generated from the JSON, so a
-- write stays one generic statement and the indexes follow the queries.
-- Ids compare byte-wise (COLLATE "C"), as the embedded store orders keys:
-- request and grant ids sort by creation time.

-- chrono writes instants as RFC 3339 in UTC ("...Z"); the cast of such text
-- does not depend on the session's time zone, which makes it immutable
-- for our inputs (PostgreSQL cannot know that of the text cast in general).
CREATE FUNCTION jitgate_instant(text) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT $1::timestamptz $$;

CREATE TABLE configurations (
    id text COLLATE "C" PRIMARY KEY,
    version bigint NOT NULL,
    doc json NOT NULL
);

CREATE TABLE resources (
    id text COLLATE "C" PRIMARY KEY,
    version bigint NOT NULL,
    doc json NOT NULL
);

CREATE TABLE users (
    id text COLLATE "C" PRIMARY KEY,
    version bigint NOT NULL,
    doc json NOT NULL
);

CREATE TABLE requests (
    id text COLLATE "C" PRIMARY KEY,
    version bigint NOT NULL,
    doc json NOT NULL,
    requester text COLLATE "C" GENERATED ALWAYS AS (doc->>'requester') STORED,
    state text GENERATED ALWAYS AS (doc->>'state') STORED
);
CREATE INDEX requests_by_requester ON requests (requester, id);
CREATE INDEX requests_by_state ON requests (state, id);

CREATE TABLE grants (
    id text COLLATE "C" PRIMARY KEY,
    version bigint NOT NULL,
    doc json NOT NULL,
    user_id text COLLATE "C" GENERATED ALWAYS AS (doc->>'user') STORED,
    state text GENERATED ALWAYS AS (doc->>'state') STORED,
    revoke_failing boolean GENERATED ALWAYS AS (doc->>'revoke_failing' IS NOT NULL) STORED,
    ended_at timestamptz GENERATED ALWAYS AS (jitgate_instant(doc->>'ended_at')) STORED,
    chain_head text COLLATE "C" GENERATED ALWAYS AS (doc->'chain'->>0) STORED
);
CREATE INDEX grants_by_user ON grants (user_id, id);
CREATE INDEX grants_by_state ON grants (state, id);
CREATE INDEX grants_revoke_failing ON grants (id) WHERE revoke_failing;
CREATE INDEX grants_by_chain_head ON grants (chain_head, id) WHERE chain_head IS NOT NULL;

CREATE TABLE leases (
    id text COLLATE "C" PRIMARY KEY,
    version bigint NOT NULL,
    doc json NOT NULL,
    configuration text COLLATE "C" GENERATED ALWAYS AS (doc->'entitlement'->>'configuration') STORED,
    held boolean GENERATED ALWAYS AS ((doc->'holders')::jsonb <> '{}'::jsonb) STORED
);
CREATE INDEX leases_held ON leases (configuration) WHERE held;

CREATE TABLE join_tokens (
    id text COLLATE "C" PRIMARY KEY,
    version bigint NOT NULL,
    doc json NOT NULL
);

CREATE TABLE agents (
    id text COLLATE "C" PRIMARY KEY,
    version bigint NOT NULL,
    doc json NOT NULL
);

CREATE TABLE pending_logins (
    id text COLLATE "C" PRIMARY KEY,
    version bigint NOT NULL,
    doc json NOT NULL,
    expires_at timestamptz GENERATED ALWAYS AS (jitgate_instant(doc->>'expires_at')) STORED
);
CREATE INDEX pending_logins_by_expiry ON pending_logins (expires_at);

CREATE TABLE sessions (
    id text COLLATE "C" PRIMARY KEY,
    version bigint NOT NULL,
    doc json NOT NULL,
    user_id text COLLATE "C" GENERATED ALWAYS AS (doc->>'user') STORED
);
CREATE INDEX sessions_by_user ON sessions (user_id);

CREATE TABLE used_assertions (
    id text COLLATE "C" PRIMARY KEY,
    version bigint NOT NULL,
    doc json NOT NULL
);

CREATE TABLE scim_connections (
    id text COLLATE "C" PRIMARY KEY,
    version bigint NOT NULL,
    doc json NOT NULL
);

-- id is `{connection}/{kind}/{resource id}`; `name` is the lower-cased
-- userName or displayName, written beside the record by the store.
CREATE TABLE scim_resources (
    id text COLLATE "C" PRIMARY KEY,
    version bigint NOT NULL,
    doc json NOT NULL,
    name text COLLATE "C"
);
CREATE INDEX scim_resources_by_name ON scim_resources (name, id);

-- API tokens are written whole (no versions), by the hash of the token.
CREATE TABLE tokens (
    hash text COLLATE "C" PRIMARY KEY,
    doc json NOT NULL,
    user_id text COLLATE "C" GENERATED ALWAYS AS (doc->>'user') STORED,
    session text COLLATE "C" GENERATED ALWAYS AS (doc->>'session') STORED,
    expires_at timestamptz GENERATED ALWAYS AS (jitgate_instant(doc->>'expires_at')) STORED
);
CREATE INDEX tokens_by_user ON tokens (user_id);
CREATE INDEX tokens_by_session ON tokens (session) WHERE session IS NOT NULL;
CREATE INDEX tokens_by_expiry ON tokens (expires_at);

-- Scheduled work, due first.
CREATE TABLE jobs (
    due timestamptz NOT NULL,
    kind text NOT NULL,
    subject text COLLATE "C" NOT NULL,
    doc json NOT NULL,
    PRIMARY KEY (due, kind, subject)
);

-- Each configuration's outbox. `seq` orders it within a priority; at most
-- one command per entitlement is queued.
CREATE TABLE outbox (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    configuration text COLLATE "C" NOT NULL,
    priority smallint NOT NULL,
    entitlement text COLLATE "C" NOT NULL,
    command_id text COLLATE "C" NOT NULL UNIQUE,
    doc json NOT NULL,
    UNIQUE (configuration, entitlement)
);
CREATE INDEX outbox_in_order ON outbox (configuration, priority, seq);

-- Every command id ever queued: a command is queued at most once.
CREATE TABLE command_ids (
    id text COLLATE "C" PRIMARY KEY
);

-- Agents' answers, by command id.
CREATE TABLE command_results (
    command_id text COLLATE "C" PRIMARY KEY,
    doc json NOT NULL
);

-- The audit chain. Appends take the one row of audit_head FOR UPDATE, so
-- every broker extends one chain, in commit order.
CREATE TABLE audit (
    seq bigint PRIMARY KEY,
    doc json NOT NULL
);
CREATE TABLE audit_head (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    seq bigint NOT NULL,
    hash text NOT NULL
);
INSERT INTO audit_head (seq, hash)
    VALUES (0, '0000000000000000000000000000000000000000000000000000000000000000');

-- The newest signed anchor of the audit chain.
CREATE TABLE audit_anchor (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    seq bigint NOT NULL,
    doc json NOT NULL
);
