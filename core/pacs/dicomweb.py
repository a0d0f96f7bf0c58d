"""Studies in and results out over DICOMweb (dicomweb-client): QIDO-RS search, WADO-RS pull,
STOW-RS push.

What leaves this module to be shown follows core.io.deid: a `StudySummary` holds the study date (so
a clinician can tell a patient's studies apart; shown, never stored), the modalities, a redacted
description, counts and a short opaque handle. Patient name, ID and birth date and the accession
number are never returned (the user typed the ID or accession they searched for). The UIDs needed to
pull a study and to answer back are held in memory only, in the summaries and the `PulledStudy`;
nothing here writes to the store, and queries (they hold patient IDs) are never logged.

Every failure (server unreachable, credentials refused, an answer that is not DICOMweb, a study over
the core.io limits) is a `PacsError` whose message a user can act on; it never holds the password or
the query.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from urllib.parse import urlsplit

import requests
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import create_session_from_user_pass
from pydicom.config import disable_value_validation
from pydicom.dataset import Dataset

from core.config import Settings, get_settings
from core.io import Volume, load_volume
from core.io.deid import UNTRUSTED, identifying_tokens, modality, redact
from core.io.limits import FATAL
from core.pacs.reference import SourceReference

# dicomweb-client logs every URL at DEBUG level, and a QIDO URL carries the PatientID searched for
logging.getLogger("dicomweb_client").setLevel(logging.INFO)

DEFAULT_TIMEOUT_S = 30.0
UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")  # PS3.5 9.1; anything else never reaches a URL
# Series that hold no image to read (reports, presentation states, key objects, segmentations)
NON_IMAGE_MODALITIES = frozenset({"SR", "PR", "KO", "SEG", "DOC", "REG", "RWV", "RTSTRUCT", "PLAN", "ECG", "AU"})
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"  # prefix of the SC SOP classes: results, not scans

_STUDY_FIELDS = (
    "StudyDate",
    "StudyDescription",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)
_SERIES_FIELDS = ("SeriesNumber", "SeriesDescription", "Modality", "NumberOfSeriesRelatedInstances")
# DICOM JSON tags read from WADO-RS metadata to bound a pull before its pixels are downloaded
_ROWS, _COLUMNS, _FRAMES, _BITS, _SAMPLES, _SOP_CLASS = (
    "00280010",
    "00280011",
    "00280008",
    "00280100",
    "00280002",
    "00080016",
)


class PacsError(RuntimeError):
    """The PACS cannot be used for this request; the message says why and what to do."""


@dataclass(frozen=True)
class StudySummary:
    """One study found on the PACS, as it may be shown."""

    handle: str  # short and opaque: names the study on a page
    study_date: str  # ISO date or "" (shown to pick a study, never stored)
    modalities: tuple[str, ...]
    description: str  # redacted (core.io.deid)
    n_series: int | None
    n_instances: int | None
    uid: str = field(repr=False)  # StudyInstanceUID: in memory only, to pull and to answer back


@dataclass(frozen=True)
class SeriesSummary:
    handle: str
    number: int | None
    modality: str
    description: str
    n_instances: int | None
    uid: str = field(repr=False)


@dataclass
class PulledSeries:
    folder: Path  # the series' files (core.io.load_volume reads the folder)
    description: str  # redacted
    modality: str
    n_instances: int
    uid: str = field(repr=False)


@dataclass
class PulledStudy:
    """A study retrieved into a folder the caller owns (one sub-folder per series). The files are the
    PACS's own DICOM, identifying headers included: delete the folder when done. `headers` (the
    instances without their pixels) stay in memory to reference the source when answering back."""

    root: Path
    series: list[PulledSeries]
    uid: str = field(repr=False)
    headers: list[Dataset] = field(default_factory=list, repr=False)

    @property
    def reference(self) -> SourceReference:
        """The source study for results sent back (identifying; in memory only). Every pulled series
        is referenced; `SourceReference.from_datasets(self.headers, series_uids=...)` narrows it to
        the series a volume was read from."""
        return SourceReference.from_datasets(self.headers)


# --- connection -------------------------------------------------------------------------------


def connect(
    url: str, user: str | None = None, password: str | None = None, *, timeout: float = DEFAULT_TIMEOUT_S
) -> DICOMwebClient:
    """A client for the DICOMweb root `url` (e.g. https://pacs.example.org/dicom-web), checked with
    one small query so that an unreachable server or refused credentials fail here, clearly."""
    root = _check_url(url)
    session = create_session_from_user_pass(user, password or "") if user else requests.Session()
    client = DICOMwebClient(root, session=session, timeout=timeout)
    client.set_http_retry_params(retry=False)  # a page waits on us: fail fast, say why
    _call(client, lambda: client.search_for_studies(limit=1), "a test query")
    return client


def _check_url(url) -> str:
    text = str(url or "").strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises on a port that is not one
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or any(c.isspace() for c in text)
    ):
        raise PacsError(
            "The PACS address must be an http(s) URL of its DICOMweb root, such as "
            "https://pacs.example.org/dicom-web (NEUROGRADE_PACS_URL)."
        )
    if parts.username or parts.password:
        raise PacsError(
            "Put the PACS user and password in NEUROGRADE_PACS_USER and NEUROGRADE_PACS_PASSWORD, not in the URL."
        )
    return text.rstrip("/")


def connect_from_settings(settings: Settings | None = None) -> DICOMwebClient:
    """`connect` with NEUROGRADE_PACS_URL / _USER / _PASSWORD."""
    settings = settings or get_settings()
    if not settings.pacs_url:
        raise PacsError(
            "No PACS is configured: set NEUROGRADE_PACS_URL to its DICOMweb root "
            "(and NEUROGRADE_PACS_USER / NEUROGRADE_PACS_PASSWORD if it asks for them)."
        )
    return connect(settings.pacs_url, settings.pacs_user or None, settings.pacs_password or None)


def _where(client: DICOMwebClient) -> str:
    parts = urlsplit(client.base_url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _call(client: DICOMwebClient, request: Callable, what: str):
    """`request()`, with every failure turned into a PacsError. Messages never quote the
    exception's text: a requests error holds the query URL, and so the patient ID searched for."""
    where = _where(client)
    try:
        with _quiet():
            return request()
    except PacsError:
        raise
    except requests.exceptions.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        if status in (401, 403):
            raise PacsError(
                f"The PACS at {where} refused the credentials (HTTP {status}): check "
                "NEUROGRADE_PACS_USER and NEUROGRADE_PACS_PASSWORD."
            ) from None
        if status == 404:
            raise PacsError(
                f"The PACS at {where} answered 'not found' (HTTP 404) to {what}: the "
                "study may be gone, or the URL is not its DICOMweb root (often ending in "
                "/dicom-web)."
            ) from None
        raise PacsError(f"The PACS at {where} refused {what} (HTTP {status}).") from None
    except requests.exceptions.Timeout:
        raise PacsError(
            f"The PACS at {where} did not answer {what} in time; try again, or ask whether it is overloaded."
        ) from None
    except requests.exceptions.ConnectionError as exc:
        raise PacsError(
            f"The PACS at {where} cannot be reached ({_reason(exc)}): check "
            "NEUROGRADE_PACS_URL and that the server is running."
        ) from None
    except requests.exceptions.JSONDecodeError:
        raise PacsError(
            f"The PACS at {where} sent an answer to {what} that is not valid DICOMweb (not JSON)."
        ) from None
    except requests.exceptions.RequestException as exc:
        raise PacsError(f"The request to the PACS at {where} for {what} failed ({type(exc).__name__}).") from None
    except OSError as exc:  # after requests' errors, which are OSErrors too: our own disk
        raise PacsError(
            f"The study could not be written to its folder ({exc.strerror or type(exc).__name__})."
        ) from None
    except FATAL:
        raise
    except Exception as exc:  # noqa: BLE001 - a malformed answer (bad multipart, bad JSON, bad DICOM)
        raise PacsError(
            f"The PACS at {where} sent an answer to {what} that is not valid DICOMweb ({type(exc).__name__})."
        ) from None


@contextlib.contextmanager
def _quiet():
    """pydicom warns about odd header values by quoting them: keep them out of logs."""
    with disable_value_validation(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _reason(exc: BaseException) -> str:
    text = str(exc).lower()
    for needle, reason in (
        ("refused", "connection refused"),
        ("name or service", "unknown host"),
        ("nameresolution", "unknown host"),
        ("getaddrinfo", "unknown host"),
        ("certificate", "its TLS certificate was not accepted"),
        ("ssl", "TLS failed"),
        ("timed out", "no answer"),
    ):
        if needle in text:
            return reason
    return "no connection"


# --- search (QIDO-RS) -------------------------------------------------------------------------


def search_studies(
    client: DICOMwebClient,
    *,
    patient_id: str | None = None,
    accession: str | None = None,
    date_from=None,
    date_to=None,
    limit: int = 50,
) -> list[StudySummary]:
    """Studies matching all the given filters, newest first. Dates: date objects or YYYY-MM-DD."""
    filters = {}
    if patient_id:
        filters["PatientID"] = str(patient_id).strip()
    if accession:
        filters["AccessionNumber"] = str(accession).strip()
    if date_from or date_to:
        filters["StudyDate"] = f"{_dicom_date(date_from)}-{_dicom_date(date_to)}"
    found = _call(
        client,
        lambda: client.search_for_studies(search_filters=filters, fields=list(_STUDY_FIELDS), limit=max(1, int(limit))),
        "the study search",
    )
    studies = [s for s in map(_study_summary, _items(found)) if s is not None]
    return sorted(studies, key=lambda s: s.study_date, reverse=True)


def list_series(client: DICOMwebClient, study_uid: str) -> list[SeriesSummary]:
    """The series of one study, in series-number order."""
    _check_uid(study_uid)
    found = _call(
        client,
        lambda: client.search_for_series(study_instance_uid=study_uid, fields=list(_SERIES_FIELDS)),
        "the series search",
    )
    series = [s for s in map(_series_summary, _items(found)) if s is not None]
    return sorted(series, key=lambda s: (s.number is None, s.number or 0))


def find(summaries: Iterable, handle: str):
    """The summary (study or series) with this handle, or None."""
    return next((s for s in summaries if s.handle == handle), None)


def _items(found) -> list[dict]:
    return [item for item in (found or []) if isinstance(item, dict)] if isinstance(found, list) else []


def _dicom_date(value) -> str:
    if value in (None, ""):
        return ""
    if isinstance(value, (date, datetime)):
        return value.strftime("%Y%m%d")
    text = str(value).strip()
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return datetime.strptime(text, fmt).strftime("%Y%m%d")
        except ValueError:
            continue
    raise PacsError(f"{text!r} is not a date: give it as YYYY-MM-DD.")


def _iso_date(value) -> str:
    try:
        return datetime.strptime(str(value or "").strip(), "%Y%m%d").date().isoformat()
    except ValueError:
        return ""


def _check_uid(uid: str) -> str:
    if not isinstance(uid, str) or len(uid) > 64 or not UID.match(uid):
        raise PacsError("That is not a DICOM UID (digits and dots, at most 64 characters).")
    return uid


def _handle(uid: str) -> str:
    return hashlib.sha256(uid.encode()).hexdigest()[:10]


def _dataset(item: dict) -> tuple[Dataset, set[str]]:
    """The QIDO answer as a dataset, and the words of its identifying values (to redact text).
    Elements that cannot be read are left out; then no free text is trusted (deid's UNTRUSTED)."""
    ds, unreadable = Dataset(), False
    with _quiet():
        for tag, element in item.items():
            try:
                ds.update(Dataset.from_json({tag: element}))
            except FATAL:
                raise
            except Exception:  # noqa: BLE001 - a malformed element could hide a name
                unreadable = True
        tokens = identifying_tokens(ds)
    return ds, tokens | ({UNTRUSTED} if unreadable else set())


def _text(ds: Dataset, keyword: str, tokens: set[str], limit: int = 64) -> str:
    try:
        value = ds.get(keyword)
    except Exception:  # noqa: BLE001
        return ""
    return redact(str(value or "").strip()[:limit], tokens)


def _count(ds: Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return int(value) if value not in (None, "") else None
    except Exception:  # noqa: BLE001
        return None


def _uid_of(ds: Dataset, keyword: str) -> str | None:
    value = str(ds.get(keyword, "") or "").strip()
    return value if value and len(value) <= 64 and UID.match(value) else None


def _study_summary(item: dict) -> StudySummary | None:
    ds, tokens = _dataset(item)
    uid = _uid_of(ds, "StudyInstanceUID")
    if uid is None:
        return None
    try:
        modalities = ds.get("ModalitiesInStudy") or []
        modalities = [modalities] if isinstance(modalities, str) else list(modalities)
    except Exception:  # noqa: BLE001
        modalities = []
    return StudySummary(
        handle=_handle(uid),
        study_date=_iso_date(ds.get("StudyDate")),
        modalities=tuple(sorted({modality(m) for m in modalities})),
        description=_text(ds, "StudyDescription", tokens),
        n_series=_count(ds, "NumberOfStudyRelatedSeries"),
        n_instances=_count(ds, "NumberOfStudyRelatedInstances"),
        uid=uid,
    )


def _series_summary(item: dict) -> SeriesSummary | None:
    ds, tokens = _dataset(item)
    uid = _uid_of(ds, "SeriesInstanceUID")
    if uid is None:
        return None
    return SeriesSummary(
        handle=_handle(uid),
        number=_count(ds, "SeriesNumber"),
        modality=modality(ds.get("Modality")),
        description=_text(ds, "SeriesDescription", tokens),
        n_instances=_count(ds, "NumberOfSeriesRelatedInstances"),
        uid=uid,
    )


# --- retrieve (WADO-RS) -----------------------------------------------------------------------


def pull_study(
    client: DICOMwebClient,
    study_uid: str,
    dest_dir,
    *,
    series_uids: Sequence[str] | None = None,
    settings: Settings | None = None,
) -> PulledStudy:
    """Retrieve a study's image series into `dest_dir` (a folder the caller owns), one sub-folder per
    series. Default: its MR series (else every image series), leaving out reports and secondary
    captures. Bounded by the core.io limits: a series whose metadata shows more frames, voxels or
    bytes than accepted is refused before its pixels are downloaded, and the download stops if the
    files turn out larger than announced."""
    settings = settings or get_settings()
    _check_uid(study_uid)
    available = list_series(client, study_uid)
    if not available:
        raise PacsError("The PACS holds no series for this study (it may have been deleted).")
    if series_uids:
        by_uid = {s.uid: s for s in available}
        missing = [u for u in series_uids if u not in by_uid]
        if missing:
            raise PacsError(f"{len(missing)} of the series asked for are not in this study on the PACS.")
        chosen = [by_uid[u] for u in series_uids]
    else:
        chosen = [s for s in available if s.modality not in NON_IMAGE_MODALITIES]
        chosen = [s for s in chosen if s.modality == "MR"] or chosen

    budget = _Budget(settings)
    plans = []
    for series in chosen:
        metadata = _call(
            client, lambda s=series: client.retrieve_series_metadata(study_uid, s.uid), "the series metadata"
        )
        instances = _items(metadata)
        if not series_uids and instances and all(_is_secondary_capture(i) for i in instances):
            continue  # results sent back to the PACS (ours or others'), not a scan to read
        budget.plan(instances, _series_label(series))
        plans.append(series)
    if not plans:
        raise PacsError("This study has no image series that NeuroGrade can read (only reports or secondary captures).")

    root = Path(dest_dir)
    pulled = PulledStudy(root=root, series=[], uid=study_uid)
    for k, series in enumerate(plans, start=1):
        folder = root / f"series-{k:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        n = _call(
            client,
            lambda s=series, f=folder: _download(client, study_uid, s, f, budget, pulled.headers),
            "the image download",
        )
        pulled.series.append(
            PulledSeries(
                folder=folder, description=series.description, modality=series.modality, n_instances=n, uid=series.uid
            )
        )
    return pulled


def open_study(client: DICOMwebClient, study_uid: str, dest_dir, **options) -> tuple[Volume, PulledStudy]:
    """Pull a study and load it: the page's one call (core.io.VolumeLoadError for a study that
    cannot be read as a brain MR volume). `options` go to `pull_study`."""
    pulled = pull_study(client, study_uid, dest_dir, **options)
    return load_volume(pulled.root), pulled


def _series_label(series: SeriesSummary) -> str:
    number = f" {series.number}" if series.number is not None else ""
    return f"Series{number}" + (f" ('{series.description}')" if series.description else "")


def _value(item: dict, tag: str, default=None):
    try:
        values = item.get(tag, {}).get("Value") or [default]
        return values[0]
    except (AttributeError, TypeError):
        return default


def _is_secondary_capture(item: dict) -> bool:
    return str(_value(item, _SOP_CLASS, "")).startswith(SECONDARY_CAPTURE)


class _Budget:
    """Frames, voxels and bytes a pull may cost (NEUROGRADE_MAX_FRAMES, _MAX_VOXELS,
    _MAX_DECODED_MB per instance, _MAX_UPLOAD_MB for the whole study)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.max_total = settings.max_upload_mb * 1024 * 1024
        self.planned = 0
        self.written = 0

    def plan(self, instances: list[dict], label: str) -> None:
        s = self.settings
        frames = voxels = 0
        for item in instances:
            try:
                n = max(int(_value(item, _FRAMES, 1) or 1), 1)
                rows, cols = int(_value(item, _ROWS, 0) or 0), int(_value(item, _COLUMNS, 0) or 0)
                bits, samples = int(_value(item, _BITS, 16) or 16), int(_value(item, _SAMPLES, 1) or 1)
            except (TypeError, ValueError):
                raise PacsError(
                    f"{label}: the PACS describes its images with values that are not numbers; it was not downloaded."
                ) from None
            decoded = rows * cols * n * samples * max(bits, 8) // 8
            if decoded > s.max_decoded_bytes:
                raise PacsError(
                    f"{label} holds an image of {decoded / 2**20:.0f} MB decoded; at most "
                    f"{s.max_decoded_bytes / 2**20:.0f} MB per file are accepted "
                    "(NEUROGRADE_MAX_DECODED_MB). It was not downloaded."
                )
            frames += n
            voxels += rows * cols * n
            self.planned += decoded
        if frames > s.max_frames:
            raise PacsError(
                f"{label} has {frames:,} frames; at most {s.max_frames:,} are accepted "
                "(NEUROGRADE_MAX_FRAMES). It was not downloaded."
            )
        if voxels > s.max_voxels:
            raise PacsError(
                f"{label} has {voxels:,} voxels; at most {s.max_voxels:,} are accepted "
                "(NEUROGRADE_MAX_VOXELS). It was not downloaded."
            )
        if self.planned > self.max_total:
            raise PacsError(
                f"The series chosen add up to {self.planned / 2**20:.0f} MB; at most "
                f"{s.max_upload_mb} MB are accepted (NEUROGRADE_MAX_UPLOAD_MB). Choose "
                "fewer series."
            )

    def take(self, n_bytes: int) -> None:
        self.written += n_bytes
        if self.written > self.max_total:
            raise PacsError(
                f"The study's files passed {self.settings.max_upload_mb} MB, more than its "
                "metadata announced and the most accepted (NEUROGRADE_MAX_UPLOAD_MB); the "
                "download was stopped."
            )


def _download(
    client: DICOMwebClient, study_uid: str, series: SeriesSummary, folder: Path, budget: _Budget, headers: list[Dataset]
) -> int:
    """Stream one series to `folder`, one file per instance; keeps each header (without pixels)."""
    n = 0
    # "*": the stored transfer syntax (core.io decodes the compressed ones); no transcoding on the server
    for ds in client.iter_series(study_uid, series.uid, media_types=(("application/dicom", "*"),)):
        if str(ds.get("SeriesInstanceUID", "")) != series.uid:
            raise PacsError("The PACS sent an instance of another series; the download was stopped.")
        n += 1
        if n > budget.settings.max_frames:
            raise PacsError(
                f"{_series_label(series)} has more instances than accepted "
                "(NEUROGRADE_MAX_FRAMES); the download was stopped."
            )
        path = folder / f"IM{n:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        budget.take(path.stat().st_size)
        for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
            if keyword in ds:
                delattr(ds, keyword)
        headers.append(ds)
    return n


# --- store (STOW-RS) --------------------------------------------------------------------------


def push(client: DICOMwebClient, datasets: Sequence[Dataset]) -> list[str]:
    """Store `datasets` on the PACS; the SOP Instance UIDs it stored. PacsError when it refuses any."""
    datasets = list(datasets)
    if not datasets:
        return []
    answer = _call(client, lambda: client.store_instances(datasets), "storing the results")
    failed = list(getattr(answer, "FailedSOPSequence", None) or [])
    stored = [
        str(item.get("ReferencedSOPInstanceUID", "")) for item in (getattr(answer, "ReferencedSOPSequence", None) or [])
    ]
    expected = {str(ds.SOPInstanceUID) for ds in datasets}
    if failed or not expected <= set(stored):
        reasons = sorted({str(item.get("FailureReason", "")) for item in failed} - {""})
        why = f" (failure reason {', '.join(reasons)})" if reasons else ""
        raise PacsError(
            f"The PACS at {_where(client)} stored {len(set(stored) & expected)} of the "
            f"{len(datasets)} objects sent{why}."
        )
    return stored
