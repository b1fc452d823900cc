-- PostgreSQL's grants table leaves room on its pages for in-place rotations (fillfactor);
-- SQLite has no such setting. Kept so that both backends have the same migration numbers.
SELECT 1;
