"""Scan: upload a scan -> three-plane viewer -> verdict (next release).

Thin page: widgets in, `core` calls, draw what core returns. Each section is a small function so
the verdict, Grad-CAM and report sections can be added without touching the viewer.
`render_scan(files)` is the whole page below the uploader; tests call it with files they make.
"""
from __future__ import annotations

import hashlib
import logging

import numpy as np
import streamlit as st

from core import preprocess, viz
from core.io import VolumeLoadError, load_volume
from core.io.volume import Volume

log = logging.getLogger("neurograde.pages.scan")

UPLOAD_HELP = ("One NIfTI file (.nii, .nii.gz), all files of one DICOM series (or a .zip of them), "
               "or one slice image (PNG, JPEG, TIFF). Files are processed in memory; identifying "
               "header fields are never shown or stored.")
PLANE_TITLES = {"axial": "Axial", "coronal": "Coronal", "sagittal": "Sagittal"}
DEFAULT_SERIES = "Default (largest MR series)"
_CACHE = "_scan_cache"      # session_state: the loaded volume of the current upload
_NORM = "_scan_norm"        # session_state: normalised arrays of the current volume, per channel


# ----------------------------------------------------------------------------------- loading
def upload_key(files, series=None) -> str:
    """Identifies an upload by file names and sizes (and the chosen series): reruns reuse it."""
    parts = [f"{getattr(f, 'name', '?')}:{_size(f)}" for f in files]
    parts.append(f"series={series}")
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]


def _size(f) -> int:
    size = getattr(f, "size", None)
    if size is None and hasattr(f, "getvalue"):
        size = len(f.getvalue())
    return int(size or 0)


def load_cached(files, series=None, loader=load_volume) -> tuple[Volume | None, str | None]:
    """(volume, None) or (None, error message for the user). Loads once per upload_key."""
    key = upload_key(files, series)
    cached = st.session_state.get(_CACHE)
    if cached is not None and cached["key"] == key:
        return cached["volume"], cached["error"]
    volume, error = None, None
    try:
        with st.spinner("Reading the scan..."):
            volume = loader(list(files), series=series)
    except VolumeLoadError as exc:
        error = str(exc)
    except Exception as exc:  # noqa: BLE001 - never a traceback in the UI
        log.exception("unexpected error loading upload %s", [getattr(f, "name", "?") for f in files])
        detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        error = f"Could not read this file: {detail}"
    st.session_state[_CACHE] = {"key": key, "volume": volume, "error": error}
    st.session_state.pop(_NORM, None)
    return volume, error


def normalized(volume: Volume, channel: str) -> np.ndarray:
    """The channel scaled to [0, 1] once per volume and channel (kept in session_state)."""
    key = (id(volume), channel)
    store = st.session_state.get(_NORM)
    if store is None or store.get("volume") != id(volume):
        store = {"volume": id(volume)}
        st.session_state[_NORM] = store
    if key not in store:
        store[key] = preprocess.normalize_intensity(volume.channels[channel])
    return store[key]


# ---------------------------------------------------------------------------------- sections
def _series_label(i: int, s: dict) -> str:
    desc = s.get("description") or s.get("SeriesDescription") or s.get("series_description") or ""
    mod = s.get("modality") or s.get("Modality") or ""
    n = next((s[k] for k in ("n_images", "num_images", "n_instances", "n_slices", "count", "images")
              if k in s), None)
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


def render_summary(volume: Volume) -> None:
    sz, sy, sx = volume.spacing
    st.caption(f"{' × '.join(str(n) for n in volume.shape)} voxels (z × y × x) · "
               f"{sz:.3g} × {sy:.3g} × {sx:.3g} mm · {volume.modality} · {volume.source_format}")


def render_warnings(volume: Volume) -> None:
    for message in volume.warnings:
        st.warning(message, icon=":material/warning:")


def _init_window() -> None:
    if "win_preset" not in st.session_state:
        st.session_state["win_preset"] = "full"
    if "win_center" not in st.session_state or "win_width" not in st.session_state:
        _apply_preset()


def _apply_preset() -> None:
    center, width = preprocess.WINDOW_PRESETS[st.session_state.get("win_preset", "full")]
    st.session_state["win_center"] = float(center)
    st.session_state["win_width"] = float(width)


def window_controls() -> tuple[float, float]:
    """Preset selectbox + center / width sliders over normalised intensities."""
    _init_window()
    c1, c2, c3 = st.columns([1, 2, 2])
    c1.selectbox("Window", list(preprocess.WINDOW_PRESETS), key="win_preset", on_change=_apply_preset)
    c2.slider("Level (center)", 0.0, 1.0, step=0.01, key="win_center")
    c3.slider("Width", 0.05, 2.0, step=0.01, key="win_width")
    return float(st.session_state["win_center"]), float(st.session_state["win_width"])


def channel_picker(volume: Volume) -> str:
    names = list(volume.channels)
    if len(names) <= 1:
        return names[0]
    active = volume.active_channel
    return st.radio("Sequence / channel", names, index=names.index(active) if active in names else 0,
                    horizontal=True, key="scan_channel")


def render_viewer(volume: Volume, vkey: str = "v") -> dict:
    """Three linked planes with sliders and crosshairs. Returns the view state (channel, position
    (z, y, x), window) so later sections (verdict, Grad-CAM) can follow the user's slice."""
    channel = channel_picker(volume)
    center, width = window_controls()
    data = normalized(volume, channel)
    shape = data.shape
    planes = preprocess.PLANES if shape[0] > 1 else ("axial",)
    for plane in preprocess.PLANES:  # sliders count from 1; start in the middle of the scan
        st.session_state.setdefault(f"pos_{plane}_{vkey}", preprocess.num_slices(shape, plane) // 2 + 1)
    cols = st.columns(len(planes))
    for col, plane in zip(cols, planes):
        with col:
            n = preprocess.num_slices(shape, plane)
            st.markdown(f"**{PLANE_TITLES[plane]}**")
            if len(planes) > 1 and n > 1:
                st.slider(f"{PLANE_TITLES[plane]} slice", 1, n, key=f"pos_{plane}_{vkey}",
                          label_visibility="collapsed")
    position = tuple(int(np.clip(st.session_state[f"pos_{p}_{vkey}"] - 1, 0, preprocess.num_slices(shape, p) - 1))
                     for p in preprocess.PLANES)  # voxel indices (z, y, x)
    for col, plane in zip(cols, planes):
        idx = position[preprocess.PLANES.index(plane)]
        img = preprocess.apply_window(preprocess.display_slice(data, plane, idx), center, width)
        others = [p for p in preprocess.PLANES if p != plane]
        cross = preprocess.crosshair(shape, plane, position) if len(planes) > 1 else None
        # horizontal line: the plane cutting rows; vertical: the plane cutting columns
        hplane = "coronal" if plane == "axial" else "axial"
        vplane = [p for p in others if p != hplane][0]
        fig = viz.slice_figure(img, preprocess.plane_aspect(volume, plane), crosshair=cross,
                               crosshair_colors=(viz.CROSSHAIR_COLORS[hplane], viz.CROSSHAIR_COLORS[vplane]),
                               height=340 if len(planes) > 1 else 520)
        with col:
            st.plotly_chart(fig, key=f"fig_{plane}_{vkey}", config={"displayModeBar": False})
            n = preprocess.num_slices(shape, plane)
            st.caption(f"slice {idx + 1} / {n}")
    return {"channel": channel, "position": position, "window": (center, width)}


def render_metadata(volume: Volume) -> None:
    sz, sy, sx = volume.spacing
    with st.expander("Scan details (de-identified)", expanded=False):
        st.markdown(
            f"- **Shape** (z, y, x): {' × '.join(str(s) for s in volume.shape)}\n"
            f"- **Voxel spacing** (mm): {sz:.3g} × {sy:.3g} × {sx:.3g}\n"
            f"- **Modality**: {volume.modality}\n"
            f"- **Format**: {volume.source_format}\n"
            f"- **Channels**: {', '.join(volume.channels)}"
        )
        if volume.meta:
            st.json({k: _jsonable(v) for k, v in volume.meta.items()}, expanded=False)


def _jsonable(v):
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, np.generic):
        return v.item()
    return str(v)


def render_verdict(volume: Volume, view: dict) -> None:
    """Placeholder until the models ship: the verdict section hooks in here."""
    st.subheader("Verdict")
    st.info("Models arrive in the next release: tumour presence, tumour type and grade with "
            "calibrated probabilities, an explicit 'refer to a human' when unsure, and Grad-CAM "
            "heat maps on the slices that drove the verdict.", icon=":material/schedule:")


# -------------------------------------------------------------------------------------- page
def render_scan(files, loader=load_volume) -> Volume | None:
    """Everything below the uploader. `files`: UploadedFile objects (or anything core.io reads)."""
    if not files:
        st.info("Drop a scan above to view it. " + UPLOAD_HELP, icon=":material/upload_file:")
        return None
    base = upload_key(files)
    chosen_by_upload = st.session_state.setdefault("_scan_series", {})
    series = chosen_by_upload.get(base)
    volume, error = load_cached(files, series, loader)
    if error is not None:
        st.error(error, icon=":material/error:")
        return None
    chosen = select_series(volume, base)
    if chosen != series:
        st.session_state["_scan_series"] = {base: chosen}
        volume, error = load_cached(files, chosen, loader)
        if error is not None:
            st.error(error, icon=":material/error:")
            return None
    vkey = upload_key(files, chosen)
    render_summary(volume)
    render_warnings(volume)
    view = render_viewer(volume, vkey)
    render_metadata(volume)
    render_verdict(volume, view)
    return volume


def main() -> None:
    st.title("Scan")
    files = st.file_uploader("Upload a scan", accept_multiple_files=True, help=UPLOAD_HELP,
                             key="scan_upload")
    render_scan(files)


if __name__ == "__main__":  # streamlit runs page files as __main__; tests import the functions
    main()
