-- The province's directories (issue 8): the agency tree and the staff roster, loaded by
-- `broker import org-units` and `broker import staff` (`broker/src/directory/`).
CREATE TABLE org_units (
    code        TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    parent_code TEXT,
    level       BIGINT,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX org_units_parent ON org_units (parent_code);

-- One post of the roster: the person (sealed, found by the ID's lookup hash), the unit and the
-- position; a person may hold several (kiêm nhiệm).
CREATE TABLE staff_posts (
    personal_id_lookup TEXT NOT NULL,
    org_code           TEXT NOT NULL,
    position           TEXT NOT NULL,
    category           TEXT NOT NULL,
    sealed             TEXT NOT NULL,
    digest             TEXT NOT NULL,
    imported_at        BIGINT NOT NULL,
    PRIMARY KEY (personal_id_lookup, org_code, position)
);
CREATE INDEX staff_posts_org ON staff_posts (org_code);
