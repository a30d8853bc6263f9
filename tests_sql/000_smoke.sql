-- Smoke test for the pgTAP runner: errands is installed in the test database.
BEGIN;
SELECT plan(3);

SELECT has_schema('errands');
SELECT has_table('errands', 'migrations', 'errands.migrations should exist');
SELECT cmp_ok(
    (SELECT count(*)::int FROM errands.migrations), '>=', 1,
    'at least one migration is recorded'
);

SELECT * FROM finish();
ROLLBACK;
