-- Delivery of outbox events (the dispatcher, `broker/src/dispatch/`). Each event is fanned out
-- once into deliveries (one per receiver and route); `dispatched_at` marks the events done. A
-- marker per event rather than one cursor over the ids: ids are taken at insert and committed in
-- another order, so a cursor could step over an event whose transaction committed late.
ALTER TABLE outbox ADD COLUMN dispatched_at BIGINT;
-- Events written before the dispatcher existed had no receivers.
UPDATE outbox SET dispatched_at = created_at;
CREATE INDEX outbox_undispatched ON outbox (id) WHERE dispatched_at IS NULL;

-- One message to one receiver. (event_id, route, target) is unique, so two instances fanning
-- out the same event make one delivery. A claim is a lease: `lease_token` names the claimer,
-- `lease_until` ends it, so a crashed instance's claim expires.
CREATE TABLE deliveries (
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
    UNIQUE (event_id, route, target)
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);

-- Every attempt: when, what came back (an HTTP status or an error summary without personal data).
CREATE TABLE delivery_attempts (
    delivery_id  TEXT NOT NULL,
    attempt      BIGINT NOT NULL,
    at           BIGINT NOT NULL,
    outcome      TEXT NOT NULL,
    http_status  BIGINT,
    error        TEXT,
    duration_ms  BIGINT NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);
