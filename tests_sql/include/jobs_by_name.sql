-- Helpers shared by the pgTAP files that fetch, complete and administer jobs
-- (included with \ir after plan(); pg_temp objects vanish with the session).

-- 'SQLSTATE: message' of the error a statement raises, or 'no error'.
CREATE FUNCTION pg_temp.error_of(query text) RETURNS text LANGUAGE plpgsql AS $f$
BEGIN
    EXECUTE query;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$f$;

-- Jobs by name: a test records each job it adds in j, then refers to it by name.
CREATE TEMP TABLE j (name text PRIMARY KEY, id bigint NOT NULL UNIQUE);
CREATE FUNCTION pg_temp.id(n text) RETURNS bigint LANGUAGE sql STABLE AS
    $f$ SELECT id FROM j WHERE name = n $f$;
CREATE FUNCTION pg_temp.ids(VARIADIC ns text[]) RETURNS bigint[] LANGUAGE sql STABLE AS
    $f$ SELECT array_agg(j.id ORDER BY n.ord) FROM unnest(ns) WITH ORDINALITY n(name, ord)
        JOIN j USING (name) $f$;
-- Ids sorted (for set comparisons of fetch results).
CREATE FUNCTION pg_temp.sorted(a bigint[]) RETURNS bigint[] LANGUAGE sql IMMUTABLE AS
    $f$ SELECT coalesce(array_agg(x ORDER BY x), '{}') FROM unnest(a) x $f$;
-- Who holds a named queue's lock: a worker id, '(unlocked)' or '(half locked!)'.
CREATE FUNCTION pg_temp.queue_lock(name text) RETURNS text LANGUAGE sql STABLE AS $f$
    SELECT CASE WHEN q.locked_by IS NULL AND q.locked_at IS NULL THEN '(unlocked)'
                WHEN q.locked_by IS NULL OR q.locked_at IS NULL THEN '(half locked!)'
                ELSE q.locked_by END
    FROM errands._queues q WHERE q.queue_name = name
$f$;
