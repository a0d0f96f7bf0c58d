"""The store: SQLAlchemy models, Alembic-managed schema and the `Repository` of operations.

    from core.store import Repository, VersionConflict
    repo = Repository.open()            # settings.db_url, schema upgraded to head
"""
from core.store.db import get_engine, init_db
from core.store.repository import (AuditView, CaseView, EntryView, ItemView, JobView, LabelView,
                                   ModelVersionView, NotFound, PredictionView, QueueCandidate,
                                   Repository, StoreError, VersionConflict, decode_png, encode_png)

__all__ = ["Repository", "VersionConflict", "NotFound", "StoreError", "init_db", "get_engine",
           "CaseView", "ItemView", "PredictionView", "LabelView", "EntryView", "QueueCandidate",
           "AuditView", "ModelVersionView", "JobView", "encode_png", "decode_png"]
