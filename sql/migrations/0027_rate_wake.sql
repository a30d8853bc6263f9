-- Flow control: errands.next_start_at (sql/schema/35_flow_control.sql) finds the
-- rate-limited queues without reading the others (tenants may be many).
CREATE INDEX queues_rate_limited ON errands._queues (id) WHERE rate_limit IS NOT NULL;
