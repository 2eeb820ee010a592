"""Every SQL statement Fairchild runs, by name. PostgreSQL 12+.

Time is always a parameter (``$now``) taken from the client's clock, never ``now()``, so
tests can move time without sleeping. The comment above each hot statement names the
index that serves it.
"""

from __future__ import annotations

CLAIMABLE = "('scheduled', 'available', 'retryable')"
FINAL = "('completed', 'discarded', 'cancelled')"

# -- enqueue -------------------------------------------------------------------------

# Lock existing upstreams so a concurrent completion cannot slip between our count of
# unfinished upstreams and our edge insert (it waits for our commit, then sees the edge).
LOCK_UPSTREAMS = """
SELECT id, task, state, workflow_id FROM fairchild_jobs
WHERE id = ANY($1::uuid[]) ORDER BY id FOR SHARE
"""

INSERT_JOBS = """
INSERT INTO fairchild_jobs (id, task, queue, args, state, priority, max_attempts, timeout,
                            tags, scheduled_at, inserted_at, parent_id, workflow_id,
                            deps_pending, cancel_reason, finished_at)
SELECT r.id, r.task, r.queue, r.args, r.state, r.priority, r.max_attempts, r.timeout,
       ARRAY(SELECT jsonb_array_elements_text(r.tags)), r.scheduled_at, $14, r.parent_id,
       r.workflow_id, r.deps_pending, r.cancel_reason,
       CASE WHEN r.state = 'cancelled' THEN $14::timestamptz END
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::text[], $6::smallint[],
            $7::int[], $8::float8[], $9::jsonb[], $10::timestamptz[], $11::uuid[], $12::uuid[],
            $13::int[], $15::text[])
     AS r(id, task, queue, args, state, priority, max_attempts, timeout, tags, scheduled_at,
          parent_id, workflow_id, deps_pending, cancel_reason)
ON CONFLICT (id) DO NOTHING
RETURNING *
"""

# A root becomes a listed workflow once another job joins it (a child, a dependent).
MARK_WORKFLOWS = """
UPDATE fairchild_jobs SET is_workflow = true
WHERE id = ANY($1::uuid[]) AND NOT is_workflow
"""

INSERT_EDGES = """
INSERT INTO fairchild_edges (upstream_id, downstream_id)
SELECT * FROM unnest($1::uuid[], $2::uuid[])
ON CONFLICT DO NOTHING
"""

NOTIFY = "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p"

# -- claim ---------------------------------------------------------------------------

_CLAIM = """
WITH next AS (
    SELECT id FROM fairchild_jobs j
    WHERE state IN {claimable} AND scheduled_at <= $1 {queue_filter}
      AND NOT EXISTS (SELECT 1 FROM fairchild_queues q WHERE q.name = j.queue AND q.paused)
    ORDER BY priority, scheduled_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE fairchild_jobs j
    SET state = 'running', attempt = j.attempt + 1, worker_id = $3, attempted_at = $1
    FROM next WHERE j.id = next.id
    RETURNING j.*
), announced AS (  -- one NOTIFY per claim that took jobs, for live dashboards
    SELECT pg_notify('fairchild_state', 'running') FROM (SELECT 1 FROM claimed LIMIT 1) AS any_claimed
)
SELECT claimed.* FROM claimed LEFT JOIN announced ON true
"""
# fairchild_jobs_claim_idx (queue, priority, scheduled_at, id) WHERE state IN claimable
CLAIM_QUEUES = _CLAIM.format(claimable=CLAIMABLE, queue_filter="AND queue = ANY($4::text[])")
# fairchild_jobs_claim_any_idx (priority, scheduled_at, id) WHERE state IN claimable
CLAIM_ANY = _CLAIM.format(claimable=CLAIMABLE, queue_filter="")

# The next time a scheduled or retryable job falls due (the idle producer sleeps until then).
# fairchild_jobs_due_idx (scheduled_at) WHERE state IN ('scheduled', 'retryable')
NEXT_DUE_ANY = """
SELECT scheduled_at FROM fairchild_jobs
WHERE state IN ('scheduled', 'retryable') ORDER BY scheduled_at LIMIT 1
"""
NEXT_DUE_QUEUES = """
SELECT scheduled_at FROM fairchild_jobs
WHERE state IN ('scheduled', 'retryable') AND queue = ANY($1::text[])
ORDER BY scheduled_at LIMIT 1
"""

# -- finish (fenced on id, attempt, worker, state) -----------------------------------

# A job that an operator asked to cancel while it ran, and that would now run again
# (released at shutdown, or failed with attempts left), ends `cancelled` instead.
_CANCEL_PENDING = "(o.state IN ('available', 'retryable') AND j.cancel_requested_at IS NOT NULL)"

FINISH = """
UPDATE fairchild_jobs j
SET state = CASE WHEN {cancel_pending} THEN 'cancelled' ELSE o.state END,
    result = COALESCE(o.result, j.result),
    result_job_id = o.result_job_id,
    errors = CASE WHEN o.error IS NULL THEN j.errors ELSE j.errors || jsonb_build_array(o.error) END,
    attempt = j.attempt - o.refund,
    scheduled_at = COALESCE(o.scheduled_at, j.scheduled_at),
    children_pending = o.children,
    cancel_reason = CASE WHEN {cancel_pending} THEN 'cancelled by an operator'
                         ELSE COALESCE(o.cancel_reason, j.cancel_reason) END,
    finished_at = CASE WHEN o.state IN {final} OR {cancel_pending} THEN $8::timestamptz END
FROM unnest($1::uuid[], $2::int[], $3::uuid[], $4::text[], $5::jsonb[], $6::uuid[], $7::jsonb[],
            $9::int[], $10::timestamptz[], $11::int[], $12::text[])
     AS o(id, attempt, worker_id, state, result, result_job_id, error, refund, scheduled_at,
          children, cancel_reason)
WHERE j.id = o.id AND j.attempt = o.attempt AND j.worker_id = o.worker_id AND j.state = 'running'
RETURNING j.id, j.task, j.queue, j.state, j.parent_id
""".format(final=FINAL, cancel_pending=_CANCEL_PENDING)

# -- settling: what a job's final state does to the jobs around it ---------------------

# Completed upstreams: each dependent loses one pending upstream per completed upstream;
# one that reaches zero becomes available. fairchild_edges_pkey (upstream_id, ...)
UNBLOCK_DEPENDENTS = """
UPDATE fairchild_jobs d
SET deps_pending = d.deps_pending - c.n,
    state = CASE WHEN d.deps_pending - c.n = 0 AND d.state = 'blocked'
                 THEN (CASE WHEN d.scheduled_at > $2 THEN 'scheduled' ELSE 'available' END)
                 ELSE d.state END
FROM (SELECT downstream_id, count(*)::int AS n FROM fairchild_edges
      WHERE upstream_id = ANY($1::uuid[]) GROUP BY downstream_id) c
WHERE d.id = c.downstream_id
RETURNING d.id, d.queue, d.state
"""

# Dead upstreams: dependents that have not started are cancelled, naming the upstream.
CANCEL_DEPENDENTS = """
UPDATE fairchild_jobs d
SET state = 'cancelled', finished_at = $2,
    cancel_reason = 'upstream ' || c.upstream_id || ' (' || c.upstream_task || ') was ' || c.upstream_state
FROM (SELECT DISTINCT ON (e.downstream_id) e.downstream_id, e.upstream_id,
             u.task AS upstream_task, u.state AS upstream_state
      FROM fairchild_edges e JOIN fairchild_jobs u ON u.id = e.upstream_id
      WHERE e.upstream_id = ANY($1::uuid[]) ORDER BY e.downstream_id, e.upstream_id) c
WHERE d.id = c.downstream_id AND d.state IN ('blocked', 'scheduled', 'available', 'retryable')
RETURNING d.id, d.task, d.queue, d.state, d.parent_id
"""

# Finished children: each parent loses one pending child per final child. A waiting parent
# whose children are all final completes (with its own Record, or the result of the job
# whose Future it returned); one with a failed child ends discarded, naming the child.
SETTLE_PARENTS = """
WITH c AS (
    SELECT parent_id, count(*)::int AS n,
           (array_agg(id::text || ' (' || task || ') was ' || state ORDER BY id)
                FILTER (WHERE state <> 'completed'))[1] AS failure
    FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[]) AS f(id, parent_id, task, state)
    WHERE parent_id IS NOT NULL
    GROUP BY parent_id
)
UPDATE fairchild_jobs p
SET children_pending = p.children_pending - c.n,
    state = CASE
        WHEN p.state <> 'waiting' THEN p.state
        WHEN c.failure IS NOT NULL THEN 'discarded'
        WHEN p.children_pending - c.n > 0 THEN 'waiting'
        WHEN p.result_job_id IS NULL THEN 'completed'
        WHEN (SELECT r.state FROM fairchild_jobs r WHERE r.id = p.result_job_id) = 'completed'
            THEN 'completed'
        ELSE 'discarded' END,
    result = CASE
        WHEN p.state = 'waiting' AND c.failure IS NULL AND p.children_pending - c.n <= 0
             AND p.result_job_id IS NOT NULL
            THEN (SELECT r.result FROM fairchild_jobs r WHERE r.id = p.result_job_id)
        ELSE p.result END,
    errors = CASE WHEN p.state = 'waiting' AND c.failure IS NOT NULL
                  THEN p.errors || jsonb_build_array(jsonb_build_object(
                      'attempt', p.attempt, 'kind', 'child_failed', 'at', $5::timestamptz,
                      'error', 'child ' || c.failure, 'traceback', NULL))
                  ELSE p.errors END,
    finished_at = CASE WHEN p.state = 'waiting'
                        AND (c.failure IS NOT NULL OR p.children_pending - c.n <= 0)
                       THEN $5::timestamptz ELSE p.finished_at END
FROM c
WHERE p.id = c.parent_id
RETURNING p.id, p.task, p.queue, p.state, p.parent_id
"""

LOCK_JOBS = "SELECT id FROM fairchild_jobs WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE"

# -- reading -------------------------------------------------------------------------

PING = "SELECT 1"

GET_JOB = "SELECT * FROM fairchild_jobs WHERE id = $1"

# Resolution of Futures: every upstream's recorded result in one query. fairchild_jobs_pkey
FETCH_RESULTS = "SELECT id, result FROM fairchild_jobs WHERE id = ANY($1::uuid[])"

# A job's state and, for a workflow root, how many jobs of its workflow are not final.
# fairchild_jobs_pkey, fairchild_jobs_workflow_idx
WAIT_STATUS = f"""
SELECT j.state,
       CASE WHEN j.id = j.workflow_id THEN
           (SELECT count(*) FROM fairchild_jobs w
            WHERE w.workflow_id = j.id AND w.state NOT IN {FINAL})
       ELSE 0 END AS open_in_workflow
FROM fairchild_jobs j WHERE j.id = $1
"""

# -- migrations ----------------------------------------------------------------------

MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS fairchild_migrations (
    version    integer PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
MIGRATION_LOCK = "SELECT pg_advisory_xact_lock($1)"
APPLIED_MIGRATIONS = "SELECT version FROM fairchild_migrations ORDER BY version"
RECORD_MIGRATION = "INSERT INTO fairchild_migrations (version, name) VALUES ($1, $2)"

# -- workers -------------------------------------------------------------------------

REGISTER_WORKER = """
INSERT INTO fairchild_workers (id, hostname, pid, queues, concurrency, state, started_at,
                               last_heartbeat_at, lease_expires_at, version)
VALUES ($1, $2, $3, $4, $5, 'running', $6, $6, $7, $8)
ON CONFLICT (id) DO UPDATE SET last_heartbeat_at = $6, lease_expires_at = $7, state = 'running'
"""

# Fenced on the row existing: 0 rows means the rescuer took this worker for dead.
HEARTBEAT = """
UPDATE fairchild_workers w
SET last_heartbeat_at = $2, lease_expires_at = $3,
    -- 'paused' while every queue the worker serves is paused (it claims nothing then)
    state = CASE WHEN $4 = 'running' AND w.queues IS NOT NULL
                      AND NOT EXISTS (SELECT 1 FROM unnest(w.queues) AS served(name)
                                      WHERE NOT EXISTS (SELECT 1 FROM fairchild_queues q
                                                        WHERE q.name = served.name AND q.paused))
                 THEN 'paused' ELSE $4 END
WHERE w.id = $1 RETURNING w.id
"""

# Jobs this worker holds that an operator asked to cancel (the fallback for a lost
# NOTIFY on fairchild_cancel). fairchild_jobs_running_idx (worker_id) WHERE running
CANCEL_REQUESTED = """
SELECT id FROM fairchild_jobs
WHERE worker_id = $1 AND state = 'running' AND cancel_requested_at IS NOT NULL
"""

DEREGISTER_WORKER = "DELETE FROM fairchild_workers WHERE id = $1"

# -- maintenance (one leader per pass: a transaction-scoped advisory lock) -------------

MAINTENANCE_LOCK = "SELECT pg_try_advisory_xact_lock($1)"

# Jobs held by a worker whose lease has expired (or whose row is gone) go back to run
# again, or are discarded when their attempts are spent. By lease, never by age.
# fairchild_jobs_running_idx (worker_id) WHERE state = 'running', or fairchild_jobs_state_idx
RESCUE_ORPHANS = """
UPDATE fairchild_jobs j
SET state = CASE WHEN j.cancel_requested_at IS NOT NULL THEN 'cancelled'
                 WHEN j.attempt >= j.max_attempts THEN 'discarded' ELSE 'available' END,
    scheduled_at = $1,
    finished_at = CASE WHEN j.cancel_requested_at IS NOT NULL OR j.attempt >= j.max_attempts
                       THEN $1::timestamptz END,
    cancel_reason = CASE WHEN j.cancel_requested_at IS NOT NULL THEN 'cancelled by an operator'
                         ELSE j.cancel_reason END,
    errors = j.errors || jsonb_build_array(jsonb_build_object(
        'attempt', j.attempt, 'kind', 'worker_lost', 'type', NULL, 'traceback', NULL,
        'error', 'worker lost: ' || j.worker_id || ' stopped renewing its lease',
        'at', $1::timestamptz))
WHERE j.id IN (
    SELECT r.id FROM fairchild_jobs r
    WHERE r.state = 'running'
      AND NOT EXISTS (SELECT 1 FROM fairchild_workers w
                      WHERE w.id = r.worker_id AND w.lease_expires_at > $1)
    ORDER BY r.id LIMIT $2 FOR UPDATE SKIP LOCKED)
RETURNING j.id, j.task, j.queue, j.state, j.parent_id
"""

# Rows a live worker holds but does not know about: a claim that committed while its
# result was lost (the connection died, or the statement timed out after the commit). The
# worker never started them, so the attempt is refunded. fairchild_jobs_running_idx
RELEASE_UNKNOWN_CLAIMS = """
UPDATE fairchild_jobs
SET state = CASE WHEN cancel_requested_at IS NOT NULL THEN 'cancelled' ELSE 'available' END,
    finished_at = CASE WHEN cancel_requested_at IS NOT NULL THEN $3::timestamptz END,
    cancel_reason = CASE WHEN cancel_requested_at IS NOT NULL THEN 'cancelled by an operator'
                         ELSE cancel_reason END,
    attempt = attempt - 1, scheduled_at = $3
WHERE worker_id = $1 AND state = 'running' AND id <> ALL($2::uuid[])
RETURNING id, task, queue, state, parent_id
"""

# fairchild_workers_lease_idx
DELETE_DEAD_WORKERS = "DELETE FROM fairchild_workers WHERE lease_expires_at <= $1"

# Finished jobs older than their state's retention, pruned a whole workflow at a time and
# only when every job of the workflow is final and old enough.
# fairchild_jobs_finished_idx (finished_at) WHERE final; fairchild_jobs_workflow_idx
PRUNE = f"""
WITH candidates AS (
    SELECT DISTINCT workflow_id FROM (
        SELECT workflow_id FROM fairchild_jobs
        WHERE state IN {FINAL} AND finished_at < $1
          AND finished_at < CASE state WHEN 'completed' THEN $2::timestamptz
                                      WHEN 'cancelled' THEN $3::timestamptz
                                      ELSE $4::timestamptz END
        ORDER BY finished_at LIMIT $5) c
), prunable AS (
    SELECT c.workflow_id FROM candidates c
    WHERE NOT EXISTS (
        SELECT 1 FROM fairchild_jobs w
        WHERE w.workflow_id = c.workflow_id
          AND (w.state NOT IN {FINAL}
               OR w.finished_at >= CASE w.state WHEN 'completed' THEN $2::timestamptz
                                               WHEN 'cancelled' THEN $3::timestamptz
                                               ELSE $4::timestamptz END))
)
DELETE FROM fairchild_jobs j USING prunable p WHERE j.workflow_id = p.workflow_id
"""

# -- operator controls ------------------------------------------------------------------

CANCEL_QUEUED = """
UPDATE fairchild_jobs
SET state = 'cancelled', finished_at = $2, cancel_reason = $3
WHERE id = $1 AND state IN ('scheduled', 'available', 'retryable', 'blocked', 'waiting')
RETURNING id, task, queue, state, parent_id
"""

LOCK_JOB_STATE = "SELECT state FROM fairchild_jobs WHERE id = $1 FOR UPDATE"

# A running job an operator cancels: the request is persisted (the worker holding it
# also finds it at its next heartbeat if the NOTIFY is lost) and survives a rescue.
REQUEST_CANCEL = """
UPDATE fairchild_jobs SET cancel_requested_at = COALESCE(cancel_requested_at, $2)
WHERE id = $1 AND state = 'running'
"""

# A parent may run again only once its children are final (they count against the
# attempt that spawned them). fairchild_jobs_parent_idx
UNFINISHED_CHILDREN = f"""
SELECT count(*)::int FROM fairchild_jobs WHERE parent_id = $1 AND state NOT IN {FINAL}
"""

# A retried job waits again for any upstream that has not completed (a dependent that was
# cancelled because its upstream failed runs once that upstream, retried too, completes).
# fairchild_edges_downstream_idx
RETRY_JOB = """
UPDATE fairchild_jobs j
SET state = CASE WHEN d.pending > 0 THEN 'blocked' ELSE 'available' END,
    deps_pending = d.pending, scheduled_at = $2, finished_at = NULL, cancel_reason = NULL,
    cancel_requested_at = NULL,
    max_attempts = GREATEST(j.max_attempts, j.attempt + 1)
FROM (SELECT count(*) FILTER (WHERE u.state <> 'completed')::int AS pending
      FROM fairchild_edges e JOIN fairchild_jobs u ON u.id = e.upstream_id
      WHERE e.downstream_id = $1) AS d
WHERE j.id = $1 AND j.state IN ('discarded', 'cancelled')
RETURNING j.*
"""

SET_QUEUE_PAUSED = """
INSERT INTO fairchild_queues (name, paused, updated_at) VALUES ($1, $2, $3)
ON CONFLICT (name) DO UPDATE SET paused = $2, updated_at = $3
"""

# -- dashboard read models (fairchild.web) ---------------------------------------------
# Read-only statements behind the web UI and the JSON API. Filters are parameters (NULL:
# no filter); nothing here is built from request text.

_DASH_SUMMARY = """
    id, task, queue, state, priority, attempt, max_attempts, tags, parent_id, workflow_id,
    worker_id, cancel_reason, scheduled_at, inserted_at, attempted_at, finished_at,
    jsonb_array_length(errors) AS error_count
"""

DASH_STATS = "SELECT state, count(*)::bigint AS n FROM fairchild_jobs GROUP BY state"

# Newest first; keyset cursor on (inserted_at, id). fairchild_jobs_state_idx for ?state=.
DASH_LIST_JOBS = f"""
SELECT {_DASH_SUMMARY} FROM fairchild_jobs
WHERE ($1::text[] IS NULL OR state = ANY($1::text[]))
  AND ($2::text IS NULL OR queue = $2)
  AND ($3::text IS NULL OR task = $3)
  AND ($4::uuid IS NULL OR workflow_id = $4)
  AND ($5::timestamptz IS NULL OR (inserted_at, id) < ($5::timestamptz, $6::uuid))
ORDER BY inserted_at DESC, id DESC
LIMIT $7 OFFSET $8
"""

# Every queue that has jobs or operator state, with its counts by state (as JSON text).
DASH_QUEUES = """
SELECT n.name, COALESCE(q.paused, false) AS paused, q.updated_at,
       COALESCE(c.counts, '{}'::jsonb)::text AS counts
FROM (SELECT DISTINCT queue AS name FROM fairchild_jobs
      UNION SELECT name FROM fairchild_queues) n
LEFT JOIN fairchild_queues q ON q.name = n.name
LEFT JOIN (SELECT queue, jsonb_object_agg(state, n) AS counts
           FROM (SELECT queue, state, count(*) AS n FROM fairchild_jobs GROUP BY queue, state) s
           GROUP BY queue) c ON c.queue = n.name
ORDER BY n.name
"""

# Jobs finished per minute in [$1, $2). fairchild_jobs_finished_idx
DASH_THROUGHPUT = """
SELECT date_trunc('minute', finished_at) AS minute, state, count(*)::int AS n
FROM fairchild_jobs
WHERE state IN ('completed', 'discarded') AND finished_at >= $1 AND finished_at < $2
GROUP BY 1, 2
"""

# Workflow roots (a job whose workflow holds other jobs), newest first, with counts.
# fairchild_jobs_workflows_idx (newest roots), fairchild_jobs_workflow_idx (their jobs)
DASH_WORKFLOWS = f"""
SELECT {_DASH_SUMMARY}, s.total, s.counts
FROM fairchild_jobs r
CROSS JOIN LATERAL (
    SELECT sum(g.n)::int AS total, jsonb_object_agg(g.state, g.n)::text AS counts
    FROM (SELECT w.state, count(*) AS n FROM fairchild_jobs w
          WHERE w.workflow_id = r.id GROUP BY w.state) g) s
WHERE r.is_workflow
  AND ($1::text[] IS NULL OR r.state = ANY($1::text[]))
ORDER BY r.inserted_at DESC, r.id DESC
LIMIT $2 OFFSET $3
"""

# The jobs of one workflow (at most $2). fairchild_jobs_workflow_idx
DASH_WORKFLOW_JOBS = f"""
SELECT {_DASH_SUMMARY} FROM fairchild_jobs WHERE workflow_id = $1
ORDER BY inserted_at, id LIMIT $2
"""

DASH_WORKFLOW_COUNT = "SELECT count(*)::int AS n FROM fairchild_jobs WHERE workflow_id = $1"

# Futures edges whose downstream belongs to the workflow. fairchild_edges_downstream_idx
DASH_WORKFLOW_EDGES = """
SELECT e.upstream_id, e.downstream_id
FROM fairchild_edges e JOIN fairchild_jobs d ON d.id = e.downstream_id
WHERE d.workflow_id = $1
"""

# A job's children (at most $2) and how many it has. fairchild_jobs_parent_idx
DASH_CHILDREN = f"""
SELECT {_DASH_SUMMARY}, count(*) OVER ()::int AS total
FROM fairchild_jobs WHERE parent_id = $1 ORDER BY inserted_at, id LIMIT $2
"""

# The jobs a job waits for and the jobs waiting for it. fairchild_edges_pkey / _downstream_idx
DASH_JOB_EDGES = """
SELECT e.upstream_id, e.downstream_id, u.task AS upstream_task, u.state AS upstream_state,
       d.task AS downstream_task, d.state AS downstream_state
FROM fairchild_edges e
JOIN fairchild_jobs u ON u.id = e.upstream_id
JOIN fairchild_jobs d ON d.id = e.downstream_id
WHERE e.upstream_id = $1 OR e.downstream_id = $1
ORDER BY u.inserted_at, d.inserted_at
"""

# Workers and how many jobs each holds. fairchild_jobs_running_idx
DASH_WORKERS = """
SELECT w.id, w.hostname, w.pid, w.queues, w.concurrency, w.state, w.started_at,
       w.last_heartbeat_at, w.lease_expires_at,
       (SELECT count(*)::int FROM fairchild_jobs j
        WHERE j.worker_id = w.id AND j.state = 'running') AS running
FROM fairchild_workers w ORDER BY w.started_at, w.id
"""

DASH_HEALTH = "SELECT 1 AS ok"

# -- workflows (Fairchild.list_workflows / get_workflow) ---------------------------------
# A workflow is a root job (id = workflow_id) and every job whose workflow_id is that root;
# listed when it holds more than the root (is_workflow). Counts by state come as JSON text.
# fairchild_jobs_workflows_idx (newest roots), fairchild_jobs_workflow_idx (their jobs)
WORKFLOWS_LIST = """
SELECT r.id AS workflow_id, r.task AS root_task, r.inserted_at, s.total, s.finished_at, s.counts
FROM fairchild_jobs r
CROSS JOIN LATERAL (
    SELECT sum(g.n)::int AS total,
           max(g.finished_at) AS finished_at,
           jsonb_object_agg(g.state, g.n)::text AS counts
    FROM (SELECT w.state, count(*) AS n, max(w.finished_at) AS finished_at
          FROM fairchild_jobs w WHERE w.workflow_id = r.id GROUP BY w.state) g) s
WHERE r.is_workflow
ORDER BY r.inserted_at DESC, r.id DESC
LIMIT $1 OFFSET $2
"""

# Every job of one workflow, in insertion order. fairchild_jobs_workflow_idx
WORKFLOW_JOBS = "SELECT * FROM fairchild_jobs WHERE workflow_id = $1 ORDER BY inserted_at, id"

# The futures edges into the workflow's jobs. fairchild_jobs_workflow_idx, fairchild_edges_downstream_idx
WORKFLOW_EDGES = """
SELECT e.upstream_id, e.downstream_id
FROM fairchild_edges e JOIN fairchild_jobs d ON d.id = e.downstream_id
WHERE d.workflow_id = $1
ORDER BY e.downstream_id, e.upstream_id
"""
