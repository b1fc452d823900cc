-- One logical schema for SQLite and PostgreSQL: ids and JSON as TEXT, instants as BIGINT Unix
-- seconds (see docs/architecture.md, "Storage").
CREATE TABLE clients (
    client_id   TEXT PRIMARY KEY,
    secret_hash TEXT,
    metadata    TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE accounts (
    id                 TEXT PRIMARY KEY,
    personal_id_enc    TEXT,
    personal_id_lookup TEXT,
    personal_id_flag   TEXT,
    full_name          TEXT NOT NULL,
    birthdate          TEXT,
    gender             TEXT,
    account_type       TEXT NOT NULL,
    loa                BIGINT NOT NULL,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
CREATE INDEX accounts_personal_id_lookup ON accounts (personal_id_lookup);

CREATE TABLE account_links (
    upstream_iss  TEXT NOT NULL,
    upstream_sub  TEXT NOT NULL,
    account_id    TEXT NOT NULL REFERENCES accounts (id),
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (upstream_iss, upstream_sub)
);
CREATE INDEX account_links_account ON account_links (account_id);

CREATE TABLE grants (
    id         TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL,
    account_id TEXT,
    sid        TEXT,
    scope      TEXT NOT NULL,
    resource   TEXT,
    acr        TEXT,
    auth_time  BIGINT,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    revoked_reason TEXT,
    -- The refresh-token family: the generation of its current token (see tokens/grants.rs).
    refresh_generation BIGINT,
    refresh_expires_at BIGINT,
    rotated_at         BIGINT
);
CREATE INDEX grants_account ON grants (account_id);
CREATE INDEX grants_sid ON grants (sid);

-- Revoked access tokens (RFC 7009), kept until they expire: durable, so that losing the
-- session store never brings a revoked token back.
CREATE TABLE revoked_access_tokens (
    jti_hash   TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);

CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY,
    alg          TEXT NOT NULL,
    private_enc  TEXT NOT NULL,
    public_jwk   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    activates_at BIGINT NOT NULL,
    retires_at   BIGINT,
    removes_at   BIGINT
);

CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    account_id TEXT,
    client_id  TEXT,
    detail     TEXT NOT NULL
);
