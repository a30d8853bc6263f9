-- Cancelling running jobs (issue 12): a running job's cancellation is requested
-- by setting its reason here; whatever its worker then reports, or rescue, ends
-- it cancelled. NULL for every other job, so the column costs the fetch and
-- complete paths nothing but a bit of the (already present) null bitmap.
ALTER TABLE errands._jobs ADD COLUMN cancel_reason text;
-- The slow-poll fallback (errands.worker_cancel_requests) finds a worker's
-- requested jobs here; the predicate keeps every other row out of it.
CREATE INDEX jobs_cancel_requested ON errands._jobs (locked_by) WHERE cancel_reason IS NOT NULL;
