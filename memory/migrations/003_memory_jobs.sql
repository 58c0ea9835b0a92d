-- Shared cursors of the periodic jobs, so one node resumes where another stopped.
CREATE TABLE IF NOT EXISTS memory_jobs (
    job        text PRIMARY KEY,
    cursor     text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
