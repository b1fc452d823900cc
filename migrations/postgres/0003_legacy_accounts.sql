-- Accounts of the province's older apps (Hue-S, dvc-hue, ...), loaded by
-- `broker import legacy-accounts` and linked to an account on a VNeID login
-- (docs/standardisation.md). The personal ID is sealed under the master key (purpose
-- `legacy-personal-id:{source}:{legacy_id}`) and found through the same keyed hash as
-- accounts.personal_id_lookup. `row_digest` is a keyed digest of the canonical row, so a
-- re-import recognises an unchanged row without reading PII. An import never writes
-- `account_id` or `linked_at`: only linking does.
CREATE TABLE legacy_accounts (
    source             TEXT NOT NULL,
    legacy_id          TEXT NOT NULL,
    full_name          TEXT NOT NULL,
    birthdate          TEXT,
    phone              TEXT,
    id_kind            TEXT,
    personal_id_enc    TEXT,
    personal_id_lookup TEXT,
    email              TEXT,
    row_digest         TEXT NOT NULL,
    account_id         TEXT REFERENCES accounts (id),
    linked_at          BIGINT,
    imported_at        BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    PRIMARY KEY (source, legacy_id),
    CHECK (id_kind IN ('cccd', 'cmnd'))
);
CREATE INDEX legacy_accounts_personal_id_lookup ON legacy_accounts (personal_id_lookup);
CREATE INDEX legacy_accounts_phone ON legacy_accounts (phone);
CREATE INDEX legacy_accounts_account ON legacy_accounts (account_id);
