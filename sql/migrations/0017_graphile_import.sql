-- errands.import_graphile (sql/schema/85_import.sql) remembers every Graphile
-- Worker job it copied, so that a second run copies nothing twice: a source job
-- is its schema, its id and its created_at (ids restart when a Graphile schema
-- is dropped and reinstalled; created_at tells the two apart). job_id is the
-- Errands job it became; no foreign key, since completed jobs are deleted and
-- their mapping must stay.
CREATE TABLE errands._graphile_imports (
    source_schema text NOT NULL,
    source_id bigint NOT NULL,
    source_created_at timestamptz NOT NULL,
    job_id bigint NOT NULL,
    imported_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_schema, source_id, source_created_at)
);
ALTER TABLE errands._graphile_imports ENABLE ROW LEVEL SECURITY;
