"""Envelope records, keys, idempotency and the audit trail: what the views orchestrate."""
