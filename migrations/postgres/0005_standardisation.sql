-- Account standardisation (docs/standardisation.md): the phone a citizen proved by OTP, when the
-- account went through legacy matching (NULL: created before it existed, matched on its next
-- login), the failures support staff review, and the outbox of account events.
ALTER TABLE accounts ADD COLUMN phone TEXT;
ALTER TABLE accounts ADD COLUMN phone_verified_at BIGINT;
ALTER TABLE accounts ADD COLUMN standardised_at BIGINT;

-- A standardisation that did not succeed: which fields disagreed and what was compared, masked.
CREATE TABLE standardisation_failures (
    id            TEXT PRIMARY KEY,
    created_at    BIGINT NOT NULL,
    upstream_iss  TEXT NOT NULL,
    upstream_sub  TEXT NOT NULL,
    account_id    TEXT,
    reason        TEXT NOT NULL,
    fields        TEXT NOT NULL,
    compared      TEXT NOT NULL,
    resolved_at   BIGINT,
    resolved_by   TEXT,
    resolution    TEXT
);
CREATE INDEX standardisation_failures_open ON standardisation_failures (resolved_at, created_at);
CREATE INDEX standardisation_failures_identity ON standardisation_failures (upstream_iss, upstream_sub);

-- Events written in the same transaction as the change they describe (RFC 8417 event types),
-- numbered per subject; delivery reads them in order.
CREATE TABLE event_subjects (
    subject TEXT PRIMARY KEY,
    seq     BIGINT NOT NULL
);
CREATE TABLE outbox (
    id          BIGSERIAL PRIMARY KEY,
    subject     TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    event_type  TEXT NOT NULL,
    payload     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (subject, seq)
);
