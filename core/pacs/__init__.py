"""The hospital's PACS over DICOMweb: studies in (QIDO-RS / WADO-RS), results out (STOW-RS)."""

from core.pacs.dicomweb import (
    PacsError,
    PulledSeries,
    PulledStudy,
    SeriesSummary,
    StudySummary,
    connect,
    connect_from_settings,
    find,
    list_series,
    open_study,
    pull_study,
    push,
    search_studies,
)

__all__ = [
    "PacsError",
    "PulledSeries",
    "PulledStudy",
    "SeriesSummary",
    "StudySummary",
    "connect",
    "connect_from_settings",
    "find",
    "list_series",
    "open_study",
    "pull_study",
    "push",
    "search_studies",
]
