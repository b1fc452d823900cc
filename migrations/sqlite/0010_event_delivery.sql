-- Security Event Tokens for subscribers (`events/delivery.rs`).
--
-- Ordering: a delivery may name the subject it is about and that subject's event number; the
-- dispatcher then claims it only when no earlier delivery of the same (route, target, subject)
-- is still pending, so one person's events reach one subscriber in order. NULL: unordered
-- (back-channel logout).
--
-- Replays: an operator may send a finished delivery again as a new delivery of the same event
-- (a new `jti`, the original `txn`); `replay` numbers them (0 is the original), so the unique
-- key that makes fan-out idempotent becomes (event_id, route, target, replay). SQLite cannot
-- drop a table constraint: the table is rebuilt.
CREATE TABLE deliveries_new (
    id               TEXT PRIMARY KEY,
    event_id         BIGINT NOT NULL,
    route            TEXT NOT NULL,
    target           TEXT NOT NULL,
    payload          TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    created_at       BIGINT NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    lease_token      TEXT,
    lease_until      BIGINT,
    last_http_status BIGINT,
    last_error       TEXT,
    finished_at      BIGINT,
    subject          TEXT,
    seq              BIGINT,
    replay           BIGINT NOT NULL DEFAULT 0,
    UNIQUE (event_id, route, target, replay)
);
INSERT INTO deliveries_new (id, event_id, route, target, payload, status, attempts, created_at,
    next_attempt_at, lease_token, lease_until, last_http_status, last_error, finished_at)
SELECT id, event_id, route, target, payload, status, attempts, created_at, next_attempt_at,
    lease_token, lease_until, last_http_status, last_error, finished_at FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_new RENAME TO deliveries;
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX deliveries_ordering ON deliveries (route, target, subject, seq)
    WHERE status = 'pending' AND subject IS NOT NULL;
