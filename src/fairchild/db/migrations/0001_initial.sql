-- Fairchild schema, version 1. PostgreSQL 12+ (no features newer than 12).
--
-- States of a job:
--   scheduled   waiting for scheduled_at (claimable once due)
--   available   ready to run now
--   retryable   failed, waiting for its backoff (claimable once due)
--   blocked     waiting for upstream jobs (deps_pending > 0)
--   running     claimed by a worker (worker_id, attempt)
--   waiting     body finished; waiting for the children it spawned
--   completed | discarded | cancelled   final

CREATE TABLE fairchild_jobs (
    id               uuid PRIMARY KEY,
    task             text        NOT NULL,
    queue            text        NOT NULL DEFAULT 'default',
    args             jsonb       NOT NULL DEFAULT '{}'::jsonb,
    state            text        NOT NULL DEFAULT 'available'
        CHECK (state IN ('scheduled', 'available', 'retryable', 'blocked', 'running',
                         'waiting', 'completed', 'discarded', 'cancelled')),
    priority         smallint    NOT NULL DEFAULT 5 CHECK (priority BETWEEN 0 AND 9),
    attempt          integer     NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    max_attempts     integer     NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    timeout          double precision CHECK (timeout IS NULL OR timeout > 0),
    tags             text[]      NOT NULL DEFAULT '{}',
    result           jsonb,
    result_job_id    uuid,       -- a job that returned a Future completes with that job's result
    errors           jsonb       NOT NULL DEFAULT '[]'::jsonb,
    cancel_reason    text,
    cancel_requested_at timestamptz, -- an operator asked the worker holding this job to cancel it
    parent_id        uuid,
    workflow_id      uuid        NOT NULL,
    deps_pending     integer     NOT NULL DEFAULT 0,   -- upstream edges not yet completed
    children_pending integer     NOT NULL DEFAULT 0,   -- spawned children not yet final
    is_workflow      boolean     NOT NULL DEFAULT false, -- a root with other jobs in its workflow
    worker_id        uuid,
    scheduled_at     timestamptz NOT NULL DEFAULT now(),
    inserted_at      timestamptz NOT NULL DEFAULT now(),
    attempted_at     timestamptz,
    finished_at      timestamptz
) WITH (
    -- A queue table is update-heavy: keep room on each page for HOT updates and vacuum early.
    fillfactor = 85,
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_vacuum_threshold = 500,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_limit = 2000
);

-- The claim query: due jobs of the worker's queues in priority order.
CREATE INDEX fairchild_jobs_claim_idx ON fairchild_jobs (queue, priority, scheduled_at, id)
    WHERE state IN ('scheduled', 'available', 'retryable');
-- A worker that listens on every queue claims across queues in priority order.
CREATE INDEX fairchild_jobs_claim_any_idx ON fairchild_jobs (priority, scheduled_at, id)
    WHERE state IN ('scheduled', 'available', 'retryable');
-- The idle producer's "when is the next job due".
CREATE INDEX fairchild_jobs_due_idx ON fairchild_jobs (scheduled_at)
    WHERE state IN ('scheduled', 'retryable');
-- Rescue and cancel: running jobs by the worker that holds them.
CREATE INDEX fairchild_jobs_running_idx ON fairchild_jobs (worker_id)
    WHERE state = 'running';
-- Workflow views and "is the whole workflow final".
CREATE INDEX fairchild_jobs_workflow_idx ON fairchild_jobs (workflow_id);
-- Listing workflows, newest first (single-job "workflows" are not listed).
CREATE INDEX fairchild_jobs_workflows_idx ON fairchild_jobs (inserted_at DESC, id DESC)
    WHERE is_workflow;
-- Parents find their children (job detail, cascading failure).
CREATE INDEX fairchild_jobs_parent_idx ON fairchild_jobs (parent_id) WHERE parent_id IS NOT NULL;
-- Listing by state and pruning finished jobs by age.
CREATE INDEX fairchild_jobs_state_idx ON fairchild_jobs (state, inserted_at DESC);
CREATE INDEX fairchild_jobs_finished_idx ON fairchild_jobs (finished_at)
    WHERE state IN ('completed', 'discarded', 'cancelled');

-- The futures graph: `downstream` waits for `upstream`.
CREATE TABLE fairchild_edges (
    upstream_id   uuid NOT NULL REFERENCES fairchild_jobs (id) ON DELETE CASCADE,
    downstream_id uuid NOT NULL REFERENCES fairchild_jobs (id) ON DELETE CASCADE,
    PRIMARY KEY (upstream_id, downstream_id)
);
CREATE INDEX fairchild_edges_downstream_idx ON fairchild_edges (downstream_id);

-- One row per running worker process; its lease is last_heartbeat_at + lease.
CREATE TABLE fairchild_workers (
    id                uuid PRIMARY KEY,
    hostname          text        NOT NULL,
    pid               integer     NOT NULL,
    queues            text[],     -- NULL: every queue
    concurrency       integer     NOT NULL,
    state             text        NOT NULL DEFAULT 'running'
        CHECK (state IN ('running', 'paused', 'stopping')),
    started_at        timestamptz NOT NULL DEFAULT now(),
    last_heartbeat_at timestamptz NOT NULL DEFAULT now(),
    lease_expires_at  timestamptz NOT NULL
);
CREATE INDEX fairchild_workers_lease_idx ON fairchild_workers (lease_expires_at);

-- Operator state per queue (pause/resume). A queue with no row is active.
CREATE TABLE fairchild_queues (
    name       text PRIMARY KEY,
    paused     boolean     NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Wake workers when jobs are inserted ready to run, whoever inserts them (enqueue, bulk
-- enqueue, a caller's own transaction, plain SQL): one NOTIFY per queue per statement,
-- delivered at commit. The payload is the queue name only.
CREATE FUNCTION fairchild_notify_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('fairchild_insert', queue)
    FROM (SELECT DISTINCT queue FROM inserted WHERE state = 'available') AS q;
    RETURN NULL;
END
$$;

CREATE TRIGGER fairchild_jobs_notify_insert
    AFTER INSERT ON fairchild_jobs
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION fairchild_notify_insert();
