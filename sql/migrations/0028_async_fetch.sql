-- get_jobs gains a trailing async_commit parameter (issue 17, W2 latency): the
-- worker's fetch transaction commits without waiting for its WAL flush. The old
-- four-argument function would make four-argument calls ambiguous: drop it
-- (sql/schema/30_fetch.sql creates the new one).
DROP FUNCTION IF EXISTS errands.get_jobs(text, text[], integer, text[]);
