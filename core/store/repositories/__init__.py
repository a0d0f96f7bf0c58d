"""The store's repositories, one per concern, all over the one engine of a `core.store.Store`."""

from core.store.repositories.audit import AuditRepository
from core.store.repositories.cases import CaseRepository
from core.store.repositories.jobs import JobRepository
from core.store.repositories.model_versions import ModelRepository
from core.store.repositories.queue import QueueRepository

__all__ = ["AuditRepository", "CaseRepository", "JobRepository", "ModelRepository", "QueueRepository"]
