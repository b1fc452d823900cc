-- The mobile slot's eviction looks up the evicted device's open sessions on every token request
-- that takes the slot from another device. Through sessions_account it read every session the
-- account ever had and filtered them (hundreds for a citizen who logs in often); this index
-- holds only the open sessions of mobile devices, usually one per device. IF NOT EXISTS: where
-- `sessions` is large, an operator may build it first without blocking logins (on PostgreSQL:
-- CREATE INDEX CONCURRENTLY with the same definition), and this migration then keeps it.
CREATE INDEX IF NOT EXISTS sessions_open_device ON sessions (account_id, device_group, device_id)
    WHERE device_id IS NOT NULL AND ended_at IS NULL;
