-- A refresh rotation changes no indexed column (refresh_generation and rotated_at are in no
-- index), so PostgreSQL can update the row in place on its page (a heap-only tuple, no index
-- entry written) when the page has room: keep 30 % of each page free for that. Applies to the
-- pages written from now on.
ALTER TABLE grants SET (fillfactor = 70);
