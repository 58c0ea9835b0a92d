"""Versioned SQL migrations of the task history (package data: ``NNN_name.sql``)."""
