-- Privileges, applied after every definition: nothing in schema errands is open
-- to PUBLIC; grant_enqueue and grant_worker grant what a role needs.
--
-- PostgreSQL grants EXECUTE on a new function to PUBLIC: this takes it back. A
-- per-schema ALTER DEFAULT PRIVILEGES ... REVOKE cannot undo that built-in grant,
-- and the global form would change the installing role's defaults in every
-- schema. Grants to roles survive CREATE OR REPLACE, so re-running the
-- definitions keeps them.
REVOKE ALL ON SCHEMA errands FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA errands FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA errands FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA errands FROM PUBLIC;

-- The public API (every function whose name does not start with an underscore,
-- except the role helpers, import_graphile and errands.job_trigger, which run as their caller) runs as its owner with a
-- search_path the caller cannot change: every reference in the bodies is
-- schema-qualified or pg_catalog's. The definitions state it next to each
-- function; this makes sure none was missed.
DO $security_definer$
DECLARE
    v_fn regprocedure;
BEGIN
    FOR v_fn IN
        SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
        WHERE p.pronamespace = 'errands'::regnamespace
          AND p.prokind = 'f'
          AND left(p.proname, 1) <> '_'
          AND p.proname NOT IN ('grant_enqueue', 'grant_read', 'grant_worker', 'grant_dashboard',
                                'import_graphile',
                                'job_trigger')
          AND NOT (p.prosecdef
                   AND 'search_path=pg_catalog, pg_temp' = ANY (coalesce(p.proconfig, '{}')))
        ORDER BY p.oid
    LOOP
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = pg_catalog, pg_temp',
                       v_fn);
    END LOOP;
END
$security_definer$;
