-- The revocation set of the (one) instance (issue 9): catch-up reads find what was revoked
-- since a moment through these indexes. SQLite has no notifications: the process that writes
-- tells its own set.
ALTER TABLE revoked_access_tokens ADD COLUMN revoked_at BIGINT NOT NULL DEFAULT 0;
CREATE INDEX revoked_access_tokens_revoked_at ON revoked_access_tokens (revoked_at);
CREATE INDEX grants_revoked_at ON grants (revoked_at) WHERE revoked_at IS NOT NULL;
