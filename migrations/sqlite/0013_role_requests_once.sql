-- One pending request per post and person: two requests sent at the same moment cannot both
-- wait (the second is refused as a repeat; `roles/service.rs` checks the same before inserting).
CREATE UNIQUE INDEX roles_one_pending_post ON roles (account_id, category, org_code, position)
    WHERE state = 'pending';
