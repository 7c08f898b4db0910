-- The agent's seal over what decides a job's trust (repository, commit, branch, lane, event,
-- pull request, fork): an HMAC under a key derived from the webhook secret. A worker builds only
-- jobs whose seal checks out, so a row written straight into this table is never built.
ALTER TABLE kiln_jobs ADD COLUMN seal TEXT;
