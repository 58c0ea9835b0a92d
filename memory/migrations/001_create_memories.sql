-- Memories of the coordinator: the durable record (warm tier).
CREATE TABLE IF NOT EXISTS memories (
    id          text PRIMARY KEY,
    namespace   text NOT NULL,
    kind        text NOT NULL,
    content     text NOT NULL,
    author      text NOT NULL DEFAULT '',
    task_id     text,
    trace_id    text,
    tags        text[] NOT NULL DEFAULT '{}',
    confidence  double precision NOT NULL,
    created_at  double precision NOT NULL,
    expires_at  double precision,
    score       double precision NOT NULL DEFAULT 0,
    score_at    double precision NOT NULL DEFAULT 0,
    accessed_at double precision NOT NULL DEFAULT 0,
    sources     text[] NOT NULL DEFAULT '{}',
    vector      bytea NOT NULL DEFAULT '\x'
);
