"""Versioned SQL migrations of the memory warm tier (package data: ``NNN_name.sql``)."""
