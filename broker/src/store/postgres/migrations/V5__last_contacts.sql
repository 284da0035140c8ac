-- When each configuration last had an agent connected to a broker (what
-- the `agent_offline` event is raised from), kept with compare-and-set.
CREATE TABLE last_contacts (
    id text COLLATE "C" PRIMARY KEY,
    version bigint NOT NULL,
    doc json NOT NULL
);
