-- 0001: the whole careplan schema. Bodies are marshalled protobuf, as in
-- boltstore; the other columns exist only to look rows up. NHS numbers and
-- ODS codes use the "C" collation so they sort bytewise, as bbolt keys do.

-- counters is one row, locked by every write transaction first: it
-- serialises writers (as bbolt's single writer does), so revisions and audit
-- sequences are gap-free and become visible in the order they were given.
CREATE TABLE counters (
    id         boolean PRIMARY KEY DEFAULT true CHECK (id),
    revision   bigint  NOT NULL DEFAULT 0,
    audit_seq  bigint  NOT NULL DEFAULT 0,
    -- SHA-256 of the last audit event's stored body; NULL before the first.
    audit_head bytea
);
INSERT INTO counters DEFAULT VALUES;

-- versions: every version of every plan, append-only.
CREATE TABLE versions (
    nhs     text COLLATE "C" NOT NULL,
    version bigint NOT NULL,
    body    bytea  NOT NULL,
    PRIMARY KEY (nhs, version)
);

-- plans: the current version of each plan; its body lives in versions.
CREATE TABLE plans (
    nhs     text COLLATE "C" PRIMARY KEY,
    version bigint NOT NULL,
    etag    text   NOT NULL,
    FOREIGN KEY (nhs, version) REFERENCES versions (nhs, version)
);

-- org_plans: one row per organisation related to a plan, with the fields
-- list filters need, so a filtered list reads no plan bodies.
CREATE TABLE org_plans (
    org              text COLLATE "C" NOT NULL,
    nhs              text COLLATE "C" NOT NULL REFERENCES plans (nhs),
    status           integer NOT NULL,
    coordinator_id   text    NOT NULL,
    next_review_date text    NOT NULL,
    PRIMARY KEY (org, nhs)
);
CREATE INDEX org_plans_nhs ON org_plans (nhs);

-- requests: request key → the version that write produced.
CREATE TABLE requests (
    key     text PRIMARY KEY,
    nhs     text COLLATE "C" NOT NULL,
    version bigint NOT NULL,
    FOREIGN KEY (nhs, version) REFERENCES versions (nhs, version)
);

-- revisions: the change feed. body is a CarePlanEvent whose care_plan names
-- only (nhs, version); readers hydrate it from versions.
CREATE TABLE revisions (
    revision bigint PRIMARY KEY,
    nhs      text COLLATE "C" NOT NULL,
    version  bigint NOT NULL,
    body     bytea  NOT NULL,
    FOREIGN KEY (nhs, version) REFERENCES versions (nhs, version)
);

-- audit: the hash-chained audit log. body is store.MarshalAudit's bytes,
-- hashed as stored. nhs is NULL when absent or too long to index; time is
-- Unix nanoseconds, so range queries lose no precision.
CREATE TABLE audit (
    sequence bigint PRIMARY KEY,
    body     bytea  NOT NULL,
    nhs      text COLLATE "C",
    org      text COLLATE "C" NOT NULL,
    time_ns  bigint NOT NULL
);
CREATE INDEX audit_nhs ON audit (nhs, sequence) WHERE nhs IS NOT NULL;
