"""Cases, their slices (items, with the stored pictures) and the models' predictions on them.

A case never holds patient identity: only a de-identified summary of the volume is kept, and the
hidden `patient_key` / `known_label` leave the store only through `hidden_truth()`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.config import get_settings
from core.jsonable import jsonable
from core.preprocess import slices as display_slices
from core.store.errors import NotFound
from core.store.images import decode_png, encode_png
from core.store.models import Case, Item, Prediction, utcnow
from core.store.repositories.audit import AuditRepository, SessionFactory
from core.store.repositories.entries import ensure_entry
from core.store.views import CaseView, ItemView, PredictionView, item_view


class CaseRepository:
    def __init__(self, session: SessionFactory, audit: AuditRepository):
        self._session = session
        self._audit = audit

    def save(
        self,
        volume: Any,
        slices: Any = None,
        predictions: Sequence[Mapping] | None = None,
        *,
        source: str | None = None,
        plane: str = "axial",
        slice_indices: Sequence[int] | None = None,
        tasks: Iterable[str] = (),
        patient_key: str | None = None,
        known_label: str | None = None,
        item_known_labels: Sequence[str | None] | None = None,
        actor: str = "system",
    ) -> int:
        """Store a de-identified case, its slices as items and their predictions; returns the case id.

        volume: a `core.io.Volume` or a mapping/object with `modality`, `shape`, `meta`,
                `source_format` (only these de-identified summary fields are kept).
        slices: (N, H, W) or (N, H, W, 3) images in [0, 1] (or uint8), display-oriented; default:
                `core.preprocess.slices(volume, plane)` (every slice).
        slice_indices: the slice number of each image in the volume (default 0..N-1).
        predictions: mappings {"index": position in `slices`, "task", "model_version",
                "probabilities", optional "uncertainty", "embedding"}; each also queues the item
                for its task.
        tasks: queue every item for these tasks even without a prediction.
        patient_key / known_label / item_known_labels: hidden, for simulation and audit only.
        """
        get = volume.get if isinstance(volume, Mapping) else lambda k, d=None: getattr(volume, k, d)
        if slices is None:
            slices = display_slices(volume, plane)
        images = list(slices)
        meta = dict(get("meta", None) or {})
        fmt = get("source_format", None)
        if fmt:
            meta.setdefault("source_format", fmt)
        shape = get("shape", None)
        with self._session() as s:
            case = Case(
                source=str(source if source is not None else (fmt or "")),
                modality=str(get("modality", None) or "unknown"),
                shape=list(shape) if shape is not None else None,
                meta=jsonable(meta),
                patient_key=patient_key,
                known_label=known_label,
                created_at=utcnow(),
            )
            s.add(case)
            s.flush()
            ids = self._add_items(s, case.id, images, plane, slice_indices, item_known_labels)
            for task in tasks:
                for item_id in ids:
                    ensure_entry(s, item_id, task)
            for p in predictions or ():
                self._record_prediction(
                    s,
                    ids[int(p.get("index", 0))],
                    p["task"],
                    p["model_version"],
                    p["probabilities"],
                    p.get("uncertainty"),
                    p.get("embedding"),
                )
            self._audit.add(
                s, actor, "create", "case", case.id, None, {"source": case.source, "items": len(ids), "plane": plane}
            )
            return case.id

    def _add_items(
        self,
        s: Session,
        case_id: int,
        images: list,
        plane: str,
        slice_indices: Sequence[int] | None,
        known: Sequence[str | None] | None,
    ) -> list[int]:
        if slice_indices is not None and len(slice_indices) != len(images):
            raise ValueError("slice_indices must have one entry per image")
        if known is not None and len(known) != len(images):
            raise ValueError("item_known_labels must have one entry per image")
        rows = []
        for n, img in enumerate(images):
            row = Item(
                case_id=case_id,
                plane=plane,
                created_at=utcnow(),
                slice_index=int(slice_indices[n]) if slice_indices is not None else n,
                image_png=encode_png(img) if img is not None else None,
                known_label=known[n] if known is not None else None,
            )
            s.add(row)
            rows.append(row)
        s.flush()
        return [r.id for r in rows]

    def add_items(
        self,
        case_id: int,
        images: Sequence[Any],
        *,
        plane: str = "axial",
        slice_indices: Sequence[int] | None = None,
        tasks: Iterable[str] = (),
        known_labels: Sequence[str | None] | None = None,
    ) -> list[int]:
        with self._session() as s:
            if s.get(Case, case_id) is None:
                raise NotFound(f"no case {case_id}")
            ids = self._add_items(s, case_id, list(images), plane, slice_indices, known_labels)
            for task in tasks:
                for item_id in ids:
                    ensure_entry(s, item_id, task)
            return ids

    def get(self, case_id: int) -> CaseView:
        with self._session() as s:
            row = s.get(Case, case_id)
            if row is None:
                raise NotFound(f"no case {case_id}")
            n = s.scalar(select(func.count()).select_from(Item).where(Item.case_id == case_id))
            return CaseView(
                row.id,
                row.source,
                row.modality,
                tuple(row.shape) if row.shape else None,
                dict(row.meta or {}),
                row.created_at,
                int(n or 0),
            )

    def recent(self, limit: int | None = None) -> list[CaseView]:
        with self._session() as s:
            q = select(Case.id).order_by(Case.id.desc())
            if limit:
                q = q.limit(limit)
            ids = s.scalars(q).all()
        return [self.get(i) for i in ids]

    def item(self, item_id: int) -> ItemView:
        with self._session() as s:
            row = s.get(Item, item_id)
            if row is None:
                raise NotFound(f"no item {item_id}")
            return item_view(row)

    def items(self, case_id: int) -> list[ItemView]:
        with self._session() as s:
            rows = s.scalars(
                select(Item).where(Item.case_id == case_id).order_by(Item.plane, Item.slice_index, Item.id)
            ).all()
            return [item_view(r) for r in rows]

    def image(self, item_id: int) -> np.ndarray:
        """The stored picture of an item, uint8 (H, W) or (H, W, 3)."""
        with self._session() as s:
            row = s.get(Item, item_id)
            if row is None:
                raise NotFound(f"no item {item_id}")
            data, path = row.image_png, row.image_path
        if data is None and path:
            data = (get_settings().home / "items" / path).read_bytes()
        if data is None:
            raise NotFound(f"item {item_id} has no stored image")
        return decode_png(data)

    def images(self, item_ids: Iterable[int]) -> dict[int, np.ndarray]:
        """Stored pictures of several items at once (e.g. for training on confirmed labels)."""
        ids = list(item_ids)
        with self._session() as s:
            rows = s.execute(select(Item.id, Item.image_png).where(Item.id.in_(ids))).all()
        out = {i: decode_png(data) for i, data in rows if data is not None}
        for i in ids:
            if i not in out:
                out[i] = self.image(i)
        return out

    def hidden_truth(self, item_ids: Iterable[int] | None = None) -> dict[int, dict]:
        """Simulation/audit only, never for reviewers: {item_id: {patient_key, case_label, item_label}}."""
        q = select(Item.id, Case.patient_key, Case.known_label, Item.known_label).join(Case)
        if item_ids is not None:
            q = q.where(Item.id.in_(list(item_ids)))
        with self._session() as s:
            return {i: {"patient_key": pk, "case_label": cl, "item_label": il} for i, pk, cl, il in s.execute(q).all()}

    # ------------------------------------------------------------------ predictions
    def _record_prediction(
        self,
        s: Session,
        item_id: int,
        task: str,
        model_version: str,
        probabilities: Any,
        uncertainty: Any = None,
        embedding: Any = None,
    ) -> int:
        row = Prediction(
            item_id=item_id,
            task=task,
            model_version=str(model_version),
            probabilities=jsonable(np.asarray(probabilities, dtype=float)),
            uncertainty=jsonable(uncertainty) if uncertainty is not None else None,
            embedding=jsonable(np.asarray(embedding, dtype=float)) if embedding is not None else None,
            created_at=utcnow(),
        )
        s.add(row)
        s.flush()
        ensure_entry(s, item_id, task)
        return row.id

    def record_prediction(
        self,
        item_id: int,
        task: str,
        model_version: str,
        probabilities: Any,
        uncertainty: Any = None,
        embedding: Any = None,
    ) -> int:
        """Store one prediction and make sure the item is in the task's queue."""
        with self._session() as s:
            if s.get(Item, item_id) is None:
                raise NotFound(f"no item {item_id}")
            return self._record_prediction(s, item_id, task, model_version, probabilities, uncertainty, embedding)

    def latest_predictions(
        self, task: str, model_version: str | None = None, item_ids: Iterable[int] | None = None
    ) -> dict[int, PredictionView]:
        q = select(Prediction).where(Prediction.task == task).order_by(Prediction.id)
        if model_version is not None:
            q = q.where(Prediction.model_version == str(model_version))
        if item_ids is not None:
            q = q.where(Prediction.item_id.in_(list(item_ids)))
        out: dict[int, PredictionView] = {}
        with self._session() as s:
            for r in s.scalars(q):
                out[r.item_id] = PredictionView(
                    r.id,
                    r.item_id,
                    r.task,
                    r.model_version,
                    list(r.probabilities),
                    dict(r.uncertainty or {}),
                    list(r.embedding) if r.embedding is not None else None,
                    r.created_at,
                )
        return out


__all__ = ["CaseRepository"]
