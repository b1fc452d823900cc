-- A legacy record an operator unlinked from an account is never linked to it again by the
-- automatic matching (by ID number, by phone, by the app's request); only an operator's link
-- lifts the block.
CREATE TABLE legacy_link_blocks (
    source      TEXT NOT NULL,
    legacy_id   TEXT NOT NULL,
    account_id  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (source, legacy_id, account_id)
);
CREATE INDEX legacy_link_blocks_account ON legacy_link_blocks (account_id);
