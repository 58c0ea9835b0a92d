-- Finished tasks: the history Redis does not keep (Redis holds live work only).
CREATE TABLE IF NOT EXISTS task_history (
    task_id         text PRIMARY KEY,
    type            text NOT NULL,
    recipient       text NOT NULL,
    state           text NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    priority        integer NOT NULL DEFAULT 0,
    idempotency_key text,
    agent_id        text,
    error           text,
    result          bytea,
    result_type     text NOT NULL DEFAULT '',
    created_at      double precision NOT NULL,
    started_at      double precision,
    finished_at     double precision NOT NULL,
    executions      integer NOT NULL DEFAULT 0,
    epoch           bigint NOT NULL DEFAULT 0
);
-- The listing reads newest first, filtered by state or type: one index each.
CREATE INDEX IF NOT EXISTS task_history_finished ON task_history (finished_at DESC, task_id);
CREATE INDEX IF NOT EXISTS task_history_state ON task_history (state, finished_at DESC);
CREATE INDEX IF NOT EXISTS task_history_type ON task_history (type, finished_at DESC);
