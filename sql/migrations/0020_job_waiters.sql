-- Waiting for jobs (issue 12). A waiter's watch is marked on the job row itself
-- (errands.watch_jobs sets watched): the statement that finishes a job reads the
-- row it deletes or updates, so it sees a watch committed before it without a
-- race and without reading another table; it then keeps the job's finished row
-- (whatever its retention) and notifies. errands._job_waiters holds each watch's
-- lease: pruning keeps a watched job's finished row while a lease is live.
ALTER TABLE errands._jobs ADD COLUMN watched boolean NOT NULL DEFAULT false;

CREATE TABLE errands._job_waiters (
    job_id bigint PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
ALTER TABLE errands._job_waiters ENABLE ROW LEVEL SECURITY;
