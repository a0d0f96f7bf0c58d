"""What the store raises: one base class, so callers can catch every store refusal at once."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotation only
    from core.store.views import LabelView


class StoreError(Exception):
    pass


class NotFound(StoreError, KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "not found"


class VersionConflict(StoreError):
    """Someone saved this item/task since the version the caller saw."""

    def __init__(
        self,
        item_id: int,
        task: str,
        current_label: LabelView | None,
        current_version: int,
        expected_version: int | None,
    ):
        self.item_id = item_id
        self.task = task
        self.current_label = current_label
        self.current_version = current_version
        self.expected_version = expected_version
        shown = f"{current_label.value!r} by {current_label.reviewer}" if current_label else "no label"
        super().__init__(
            f"item {item_id} ({task}) changed: you saw version {expected_version}, "
            f"it is now version {current_version} with {shown}"
        )


__all__ = ["StoreError", "NotFound", "VersionConflict"]
