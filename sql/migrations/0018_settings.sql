-- Settings an administrator sets for the whole database, in a one-row table only
-- the schema owner can change (through errands.set_max_payload_bytes, which the
-- owner may grant to an admin role). Until version 16 the payload size limit was
-- the custom setting errands.max_payload_bytes, which any role could SET for its
-- own session; the value in effect for the upgrading session (e.g. from ALTER
-- DATABASE ... SET) is carried over when it is a valid number, and the setting
-- is ignored from now on.
CREATE TABLE errands._settings (
    id boolean PRIMARY KEY DEFAULT true
        CONSTRAINT settings_one_row CHECK (id),
    -- Bytes of a payload's JSON text add_job and add_jobs accept; 0: no limit.
    max_payload_bytes bigint NOT NULL DEFAULT 1048576
        CONSTRAINT settings_max_payload_bytes_not_negative CHECK (max_payload_bytes >= 0)
);

INSERT INTO errands._settings (max_payload_bytes)
SELECT CASE WHEN s ~ '^[+-]?[0-9]{1,18}$' THEN greatest(s::bigint, 0) ELSE 1048576 END
FROM (SELECT coalesce(nullif(btrim(current_setting('errands.max_payload_bytes', true)), ''),
                      '1048576') AS s) v;

ALTER TABLE errands._settings ENABLE ROW LEVEL SECURITY;
