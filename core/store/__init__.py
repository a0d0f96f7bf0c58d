"""The store: SQLAlchemy models, Alembic-managed schema and the `Store` of repositories by concern.

from core.store import Store, VersionConflict
store = Store.open()                # settings.db_url, schema upgraded to head
store.queue.label(item_id, "grade", "LGG", "Dr Ada", expect_version=3)
"""

from core.store.db import get_engine, init_db
from core.store.errors import NotFound, StoreError, VersionConflict
from core.store.images import decode_png, encode_png
from core.store.store import Store
from core.store.views import (
    AuditView,
    CaseView,
    EntryView,
    ItemView,
    JobView,
    LabelView,
    ModelVersionView,
    PredictionView,
    QueueCandidate,
)

__all__ = [
    "Store",
    "VersionConflict",
    "NotFound",
    "StoreError",
    "init_db",
    "get_engine",
    "CaseView",
    "ItemView",
    "PredictionView",
    "LabelView",
    "EntryView",
    "QueueCandidate",
    "AuditView",
    "ModelVersionView",
    "JobView",
    "encode_png",
    "decode_png",
]
