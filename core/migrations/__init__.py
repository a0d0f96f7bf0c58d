"""Alembic migrations of the store, configured programmatically (no alembic.ini): see
`core.store.db.alembic_config()`. Revisions: 0001 (first schema), 0002 (queue state, versioned
labels, double reading, scores, job cancellation)."""
