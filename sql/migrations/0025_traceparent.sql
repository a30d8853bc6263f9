-- OpenTelemetry trace context stored with a job (issue 15): the W3C traceparent
-- of the span that enqueued it (errands.tracing, errands.set_traceparent), so
-- that the worker's execution span continues the caller's trace. NULL for a job
-- enqueued without tracing. Appended to the job row (errands.jobs, _job_row).
ALTER TABLE errands._jobs ADD COLUMN traceparent text;
