-- The W3C traceparent of the request that submitted the job, so that the
-- job's execution joins that request's trace, in whichever process runs it
-- (the otel feature). NULL when the request carried no trace.
ALTER TABLE jobs ADD COLUMN traceparent TEXT;
