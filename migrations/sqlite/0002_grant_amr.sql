-- The `amr` of the login a grant came from (a JSON array), for ID tokens issued on refresh;
-- and an index for revoking a client's grants when it is deleted or narrowed.
ALTER TABLE grants ADD COLUMN amr TEXT;
CREATE INDEX grants_client ON grants (client_id);
