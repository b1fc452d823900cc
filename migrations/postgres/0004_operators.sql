-- Operators of the admin API, each with their own revocable bearer token, stored as a keyed
-- hash (HMAC under a key derived from the master key). Names stay unique after revocation, so
-- an audit row's actor always names one operator.
CREATE TABLE operators (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

-- Who made an audited change: an operator's name, `bootstrap` or `cli`; empty for events
-- that no operator caused (logins).
ALTER TABLE audit_log ADD COLUMN actor TEXT;
