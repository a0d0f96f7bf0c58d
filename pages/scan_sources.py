"""Where the scan page's case comes from (a panel, not a navigation page: app.py lists pages).

A source draws its own choices (for an upload: the series, the names of unnamed channels) and
hands the page an `Opened` scan: one `core.case.Case` per scan key, kept in st.session_state so
reruns reuse the case and what it has computed. `open_case` is what any source (an upload today,
a PACS study next) calls with a key and a loader.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from typing import NamedTuple

import streamlit as st

import core.io
from core.case import Case, describe_upload, unnamed_channels
from core.io.volume import Volume, VolumeLoadError
from core.markup import text
from core.pacs.reference import SourceReference
from core.sequences import SEQUENCE_TITLES
from pages.common import first_line

log = logging.getLogger("neurograde.pages.scan")

CASE_KEY = "_scan_case"  # session_state: {"key", "case", "error"} of the scan on screen
_SEQINFO = "_scan_seqinfo"  # session_state: {upload: (kind, number of channels)} of multi-channel input
_SERIES = "_scan_series"  # session_state: {upload: chosen series id}

UPLOAD_HELP = (
    "One NIfTI file (.nii, .nii.gz), all files of one DICOM series (or a .zip of them), "
    "or one slice image (PNG, JPEG, TIFF). Files are processed in memory; identifying "
    "header fields are never shown or stored."
)
DEFAULT_SERIES = "Default (largest MR series)"
DEFAULT_SEQUENCES = ("t1pre", "flair", "t1post")  # TCGA-LGG slices store them as R, G, B
NOT_SEQUENCES = {"rgb": "Not MR sequences (a colour picture)", "volumes": "Unnamed (t0, t1, …)"}
OTHER_NAMES = "Other names…"


class Opened(NamedTuple):
    case: Case
    key: str  # the case's key: a new key is a new case (widgets of the case use it)
    view_key: str  # the viewer's widget keys: kept when only the channel names change


def open_case(
    key: str, load: Callable[[], Volume], describe: Callable[[Volume], str]
) -> tuple[Case | None, str | None]:
    """(the Case of scan `key`, None) or (None, a message for the user); `load()` runs once per key."""
    opened = st.session_state.get(CASE_KEY)
    if opened is not None and opened["key"] == key:
        return opened["case"], opened["error"]
    case = error = None
    try:
        with st.spinner("Reading the scan..."):
            volume = load()
        case = Case(volume, source=describe(volume))
    except VolumeLoadError as exc:
        error = str(exc)
    except Exception as exc:  # noqa: BLE001 - never a traceback in the UI
        log.exception("unexpected error loading a scan")  # no file names: they may identify
        error = f"Could not read this file: {first_line(exc)}"
    st.session_state[CASE_KEY] = {"key": key, "case": case, "error": error}
    return case, error


# ------------------------------------------------------------------------------------ upload
def upload_key(files, series=None, sequences=None) -> str:
    """Identifies an upload by file names and sizes (and the chosen series and channel names)."""
    parts = [f"{getattr(f, 'name', '?')}:{_size(f)}" for f in files]
    parts.append(f"series={series}")
    if sequences:
        parts.append("sequences=" + ",".join(sequences))
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]


def _size(f) -> int:
    size = getattr(f, "size", None)
    if size is None and hasattr(f, "getvalue"):
        size = len(f.getvalue())
    return int(size or 0)


def open_upload(files, suggested=None, loader=None) -> Opened | None:
    """The uploaded scan, or None when it cannot be read (the reason is shown). `suggested`: the
    sequence names to offer for unnamed channels (the grade model's)."""
    loader = loader or core.io.load_volume  # looked up per run: tests replace core.io.load_volume
    base = upload_key(files)
    series = st.session_state.setdefault(_SERIES, {}).get(base)
    sequences = chosen_sequences(base)

    def opened(series_id):
        options = {"series": series_id} | ({"sequences": list(sequences)} if sequences else {})
        return open_case(
            upload_key(files, series_id, sequences),
            lambda: loader(list(files), **options),
            lambda volume: describe_upload(volume, len(files)),
        )

    case, error = opened(series)
    if error is None and sequences is None:
        _remember_channels(base, case.volume)
    if error is None:
        chosen = select_series(case.volume, base)
        if chosen != series:
            st.session_state[_SERIES] = {base: chosen}
            series = chosen
            case, error = opened(series)
    sequence_picker(base, suggested)
    if error is not None:
        st.error(error, icon=":material/error:")
        return None
    if case.reference is None and case.volume.source_format.startswith("dicom"):
        case.reference = _source_study(files, case.volume)
    return Opened(case, upload_key(files, series, sequences), upload_key(files, series))


def _source_study(files, volume: Volume) -> SourceReference | None:
    """The DICOM upload's study (headers only, in memory), so that its DICOM results join it; None
    when the headers do not name one study (the results then go into a new anonymous study)."""
    loaded = [s["uid"] for s in volume.series if s.get("uid") and (s.get("selected") or s.get("channel"))]
    try:
        return SourceReference.from_files(list(files), series_uids=loaded or None)
    except ValueError:
        return None


def _series_label(i: int, s: dict) -> str:
    desc = s.get("description") or s.get("SeriesDescription") or s.get("series_description") or ""
    mod = s.get("modality") or s.get("Modality") or ""
    n = next((s[k] for k in ("n_images", "num_images", "n_instances", "n_slices", "count", "images") if k in s), None)
    bits = [b for b in (str(mod), str(desc).strip(), f"{n} images" if n is not None else "") if b]
    return f"Series {i + 1}: " + (", ".join(bits) if bits else "unnamed")


def _series_id(i: int, s: dict):
    return s.get("uid") or s.get("series_uid") or s.get("SeriesInstanceUID") or i


def select_series(volume: Volume, base: str = "") -> object | None:
    """When the upload holds several series: a selectbox; returns the chosen series id or None."""
    if len(volume.series) <= 1:
        return None
    labels = [DEFAULT_SERIES] + [_series_label(i, s) for i, s in enumerate(volume.series)]
    choice = st.selectbox(f"This upload holds {len(volume.series)} series", labels, key=f"scan_series_{base}")
    if choice == DEFAULT_SERIES:
        return None
    i = labels.index(choice) - 1
    return _series_id(i, volume.series[i])


# ---------------------------------------------------------------------------- channel naming
def _parse_names(text: str) -> list[str]:
    return [s for s in (x.strip() for x in re.split(r"[,;\s]+", text or "")) if s]


def chosen_sequences(base: str) -> list[str] | None:
    """The channel names the user gave for upload `base` (None: leave the channels unnamed)."""
    choice = st.session_state.get(f"scan_seq_{base}")
    if not choice or choice in NOT_SEQUENCES.values():
        return None
    if choice == OTHER_NAMES:
        return _parse_names(st.session_state.get(f"scan_seq_text_{base}", "")) or None
    return _parse_names(choice) or None


def sequence_picker(base: str, suggested) -> None:
    """For multi-channel input (an RGB slice, a 4D file): name the channels, as the CLI's
    --sequences does; the choice reloads the scan with load_volume(sequences=...). The grade model
    reads T1 pre-contrast, FLAIR and T1 post-contrast, which TCGA-LGG slices store as R, G, B."""
    info = st.session_state.get(_SEQINFO, {}).get(base)
    if info is None:
        return
    kind, n = info
    suggested = [str(s) for s in (suggested or DEFAULT_SEQUENCES)]
    options = [NOT_SEQUENCES[kind]]
    if len(suggested) == n:
        options.append(", ".join(suggested))
    if ", ".join(DEFAULT_SEQUENCES) not in options and n == len(DEFAULT_SEQUENCES):
        options.append(", ".join(DEFAULT_SEQUENCES))
    options.append(OTHER_NAMES)
    what = "colour channels (R, G, B)" if kind == "rgb" else f"{n} volumes"
    c1, c2 = st.columns([2, 3])
    c1.selectbox(
        f"The {what} of this image are",
        options,
        key=f"scan_seq_{base}",
        help="Name the channels when they are MR sequences (as the CLI's --sequences does). "
        "TCGA-LGG slices store T1 pre-contrast, FLAIR and T1 post-contrast as R, G, B; "
        "the grade model needs exactly these.",
    )
    if st.session_state.get(f"scan_seq_{base}") == OTHER_NAMES:
        c2.text_input(
            f"{n} names, comma separated, in channel order",
            key=f"scan_seq_text_{base}",
            placeholder=", ".join(suggested),
        )


def _remember_channels(base: str, volume: Volume) -> None:
    kind = unnamed_channels(volume)
    if kind is not None:
        st.session_state[_SEQINFO] = {**st.session_state.get(_SEQINFO, {}), base: kind}


# ------------------------------------------------------------------------- sequences of a study
UNKNOWN = "unknown"


def sequence_names(case: Case, key: str) -> None:
    """A study of several sequences: each channel's sequence as recognised (and from what), with a
    way to correct it; a correction renames the channel and the models re-read their sequences."""
    rows = [r for r in case.volume.series if r.get("channel")]
    if len(rows) < 2:
        return
    options = [*SEQUENCE_TITLES, UNKNOWN]
    with st.expander(f"Sequences of this study ({len(rows)}), aligned on one grid", expanded=False):
        for i, row in enumerate(rows):
            channel = row["channel"]
            c1, c2 = st.columns([3, 2], vertical_alignment="center")
            how = row.get("recognised_from") or "?"
            doubt = f" · {row['doubt']}" if row.get("doubt") else ""
            resampled = " · resampled onto the reference grid" if row.get("resampled") else " · reference grid"
            c1.markdown(text(f"**{channel}**: recognised from {how}{doubt}{resampled}", None))
            c2.selectbox(
                f"Sequence of {channel}",
                options,
                index=options.index(channel) if channel in options else len(options) - 1,
                format_func=lambda name: SEQUENCE_TITLES.get(name, "not recognised"),
                key=f"seqname_{key}_{i}",
                on_change=_rename,
                args=(case, channel, f"seqname_{key}_{i}"),
                label_visibility="collapsed",
            )


def _rename(case: Case, channel: str, widget: str) -> None:
    name = st.session_state.get(widget)
    if not name or name == channel:
        return
    try:
        case.rename_channels({channel: name})
    except VolumeLoadError as exc:
        st.session_state[widget] = channel
        st.toast(str(exc), icon=":material/error:")
