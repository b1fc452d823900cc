-- Civil servants' roles (issue 8): a person's post in an agency (đối tượng, đơn vị, chức vụ) and
-- the app roles it carries at each client, requested by the person and decided by an approver
-- of the agency's subtree (`broker/src/roles/`).
CREATE TABLE roles (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts (id),
    category    TEXT NOT NULL,
    org_code    TEXT NOT NULL REFERENCES org_units (code),
    position    TEXT NOT NULL,
    -- JSON object: client id -> the role codes asked for (and granted) at that client.
    app_roles   TEXT NOT NULL,
    -- pending, approved, rejected, withdrawn, superseded, revoked
    state       TEXT NOT NULL,
    -- A change request: the approved role it replaces when approved.
    replaces    TEXT REFERENCES roles (id),
    -- The last decision: its reason and who made it.
    reason      TEXT,
    decided_by  TEXT,
    decided_at  BIGINT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX roles_account ON roles (account_id, state);
CREATE INDEX roles_state_org ON roles (state, org_code);
-- One open change request per role.
CREATE UNIQUE INDEX roles_one_change ON roles (replaces) WHERE state = 'pending';

-- Every transition of a role, kept for ever.
CREATE TABLE role_history (
    id       BIGSERIAL PRIMARY KEY,
    role_id  TEXT NOT NULL REFERENCES roles (id),
    at       BIGINT NOT NULL,
    -- `account:<id>`, `operator:<name>`, or `roster` (approved by the unit's policy).
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    state    TEXT NOT NULL,
    reason   TEXT
);
CREATE INDEX role_history_role ON role_history (role_id, id);

-- Who may decide the requests of an agency and every agency below it.
CREATE TABLE approvers (
    account_id TEXT NOT NULL REFERENCES accounts (id),
    org_code   TEXT NOT NULL REFERENCES org_units (code),
    granted_by TEXT NOT NULL,
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, org_code)
);
CREATE INDEX approvers_org ON approvers (org_code);

-- An agency's approval policy, inherited by the agencies below it unless they set their own.
CREATE TABLE org_policies (
    org_code     TEXT PRIMARY KEY REFERENCES org_units (code),
    -- 1: a request that matches the staff roster exactly is approved at once.
    auto_approve BIGINT NOT NULL,
    updated_by   TEXT NOT NULL,
    updated_at   BIGINT NOT NULL
);
