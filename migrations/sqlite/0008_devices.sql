-- One mobile device at a time (issue 7). The truth lives here; Redis is only the fast path.
--
-- The device a grant (refresh family) was issued to: the client's `device_slot` group and the
-- `device_id` the app sent. NULL for web clients.
ALTER TABLE grants ADD COLUMN device_group TEXT;
ALTER TABLE grants ADD COLUMN device_id TEXT;
CREATE INDEX grants_device ON grants (account_id, device_group, device_id)
    WHERE device_id IS NOT NULL AND revoked_at IS NULL;

-- The account's mobile slot: the one device that may hold tokens of mobile clients. Taken in
-- the transaction that issues tokens at the token endpoint; the row is the lock two racing
-- logins serialise on.
CREATE TABLE mobile_slots (
    account_id   TEXT PRIMARY KEY,
    device_group TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    client_id    TEXT,
    sid          TEXT,
    taken_at     BIGINT NOT NULL
);

-- Broker sessions (a login in one browser, `sid`): when and from where they started, and when
-- and why they ended. An ended session is never taken as alive again, whatever the session
-- store still holds.
CREATE TABLE sessions (
    sid          TEXT PRIMARY KEY,
    account_id   TEXT NOT NULL,
    client_id    TEXT NOT NULL,
    device_class TEXT NOT NULL,
    device_group TEXT,
    device_id    TEXT,
    user_agent   TEXT,
    address      TEXT,
    started_at   BIGINT NOT NULL,
    ended_at     BIGINT,
    end_reason   TEXT
);
CREATE INDEX sessions_account ON sessions (account_id, started_at);
