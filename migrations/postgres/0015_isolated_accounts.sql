-- Accounts of an upstream whose policy is `accounts = "isolated"` (a test gateway): they carry
-- that upstream's issuer and are never matched by ID number, linked to legacy records, or
-- reached through another upstream; every other account has NULL here.
ALTER TABLE accounts ADD COLUMN isolated_to TEXT;
