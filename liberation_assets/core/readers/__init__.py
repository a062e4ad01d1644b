"""Readers turn a source into batches of canonical change events: snapshot, query, CDC, outbox."""
