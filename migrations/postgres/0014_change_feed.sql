-- The revocation set and the released-claims cache of every instance (issue 9). Catch-up
-- reads find what was revoked since a moment through these indexes, and the triggers notify
-- every listening instance in the writing transaction: PostgreSQL delivers a notification only
-- when that transaction commits, and never if it rolls back.
ALTER TABLE revoked_access_tokens ADD COLUMN revoked_at BIGINT NOT NULL DEFAULT 0;
CREATE INDEX revoked_access_tokens_revoked_at ON revoked_access_tokens (revoked_at);
CREATE INDEX grants_revoked_at ON grants (revoked_at) WHERE revoked_at IS NOT NULL;

CREATE FUNCTION broker_notify_grant_revoked() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('broker_revocations', 'g ' || NEW.revoked_at || ' ' || NEW.id);
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER grants_revoked AFTER UPDATE OF revoked_at ON grants FOR EACH ROW
    WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION broker_notify_grant_revoked();

CREATE FUNCTION broker_notify_token_denied() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('broker_revocations', 'a ' || NEW.expires_at || ' ' || NEW.jti_hash);
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER revoked_access_tokens_denied AFTER INSERT ON revoked_access_tokens FOR EACH ROW
    EXECUTE FUNCTION broker_notify_token_denied();

-- What userinfo releases: the account row, its approved roles, its legacy links. The argument
-- names the column that holds the account id.
CREATE FUNCTION broker_notify_account_changed() RETURNS trigger AS $$
DECLARE
    new_id TEXT;
    old_id TEXT;
BEGIN
    IF TG_OP <> 'DELETE' THEN
        new_id := to_jsonb(NEW) ->> TG_ARGV[0];
    END IF;
    IF TG_OP <> 'INSERT' THEN
        old_id := to_jsonb(OLD) ->> TG_ARGV[0];
    END IF;
    IF new_id IS NOT NULL THEN
        PERFORM pg_notify('broker_accounts', new_id);
    END IF;
    IF old_id IS NOT NULL AND old_id IS DISTINCT FROM new_id THEN
        PERFORM pg_notify('broker_accounts', old_id);
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER accounts_changed AFTER UPDATE OR DELETE ON accounts FOR EACH ROW
    EXECUTE FUNCTION broker_notify_account_changed('id');
CREATE TRIGGER roles_changed AFTER INSERT OR UPDATE OR DELETE ON roles FOR EACH ROW
    EXECUTE FUNCTION broker_notify_account_changed('account_id');
CREATE TRIGGER legacy_links_changed AFTER UPDATE OF account_id ON legacy_accounts FOR EACH ROW
    WHEN (OLD.account_id IS DISTINCT FROM NEW.account_id)
    EXECUTE FUNCTION broker_notify_account_changed('account_id');
CREATE TRIGGER legacy_links_removed AFTER DELETE ON legacy_accounts FOR EACH ROW
    WHEN (OLD.account_id IS NOT NULL)
    EXECUTE FUNCTION broker_notify_account_changed('account_id');

-- An org unit's name is in the role claims of everyone holding a post there: every account.
CREATE FUNCTION broker_notify_all_accounts() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('broker_accounts', '*');
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER org_units_changed AFTER UPDATE OR DELETE ON org_units FOR EACH STATEMENT
    EXECUTE FUNCTION broker_notify_all_accounts();
