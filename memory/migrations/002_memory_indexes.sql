-- Catch-up by namespace, tiering by age/access and TTL purges.
CREATE INDEX IF NOT EXISTS memories_namespace_id ON memories (namespace, id);
CREATE INDEX IF NOT EXISTS memories_accessed ON memories (greatest(created_at, accessed_at));
CREATE INDEX IF NOT EXISTS memories_expires ON memories (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS memories_tags ON memories USING gin (tags);
