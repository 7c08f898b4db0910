-- Kiln agent fleet queue: one row per build job, one per agent host.
CREATE TABLE kiln_jobs (
    id            BIGSERIAL PRIMARY KEY,
    -- X-GitHub-Delivery: unique, so a redelivery sent to any agent of the fleet is queued once.
    delivery      TEXT NOT NULL UNIQUE,
    event         TEXT NOT NULL,
    repo          TEXT NOT NULL,
    sha           TEXT NOT NULL,
    branch        TEXT NOT NULL,
    lane          TEXT NOT NULL,
    pr_number     BIGINT,
    fork          BOOLEAN NOT NULL DEFAULT FALSE,
    author        TEXT,
    state         TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done')),
    outcome       TEXT CHECK (outcome IN ('passed', 'failed', 'error', 'cancelled', 'timed_out')),
    detail        TEXT,
    exit_code     INTEGER,
    attempts      INTEGER NOT NULL DEFAULT 0,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at    TIMESTAMPTZ,
    finished_at   TIMESTAMPTZ,
    superseded_by BIGINT,
    -- Set by a newer job of the lane while this one runs: its host cancels the build.
    cancel_by     BIGINT,
    -- The agent running the job, and until when its claim holds without a heartbeat.
    host          TEXT,
    lease_until   TIMESTAMPTZ,
    summary       JSONB
);

CREATE INDEX kiln_jobs_queued ON kiln_jobs (id) WHERE state = 'queued';
CREATE INDEX kiln_jobs_running ON kiln_jobs (lease_until) WHERE state = 'running';
CREATE INDEX kiln_jobs_active_lane ON kiln_jobs (lane, id) WHERE state <> 'done';
CREATE INDEX kiln_jobs_lane_sha ON kiln_jobs (lane, sha);

CREATE TABLE kiln_hosts (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    url        TEXT,
    workers    INTEGER NOT NULL,
    version    TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    seen_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
