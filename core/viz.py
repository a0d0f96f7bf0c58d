"""Figures and images for the pages: pure functions, no streamlit.

Slices are drawn as a PNG inside a plotly `go.Image` trace (a few kB per slice instead of a JSON
matrix), with the y axis anchored to x at the physical aspect ratio of the plane so anisotropic
scans are not squashed.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import plotly.graph_objects as go
from PIL import Image

CROSSHAIR_COLORS = {"axial": "#e4572e", "coronal": "#29a35a", "sagittal": "#3b8bd4"}
HEAT_FLOOR = 0.2  # heat below this is not drawn at all


def to_uint8(img01: np.ndarray) -> np.ndarray:
    """[0, 1] floats (NaN -> 0) to uint8 with rounding."""
    a = np.nan_to_num(np.asarray(img01, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def png_data_uri(img: np.ndarray) -> str:
    """A grey (H, W) [0, 1] float / uint8 image or an (H, W, 3) uint8 RGB image as a PNG data URI."""
    a = np.asarray(img)
    if a.dtype != np.uint8:
        a = to_uint8(a)
    mode = "L" if a.ndim == 2 else "RGB"
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a), mode=mode).save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# ------------------------------------------------------------------------------ the viewer
RADIOLOGICAL, NEUROLOGICAL = "radiological", "neurological"
CONVENTIONS = {
    RADIOLOGICAL: "Radiological convention: the patient's right is on the viewer's left.",
    NEUROLOGICAL: "Neurological convention: the patient's right is on the viewer's right.",
}
# Edges (left, right, top, bottom) of the display-oriented slices of core.preprocess, which are
# radiological; the neurological convention mirrors the planes that show right and left.
_EDGES = {"axial": ("R", "L", "A", "P"), "coronal": ("R", "L", "S", "I"), "sagittal": ("A", "P", "S", "I")}
_AXIS_NAMES = ("inferior–superior (z)", "posterior–anterior (y)", "left–right (x)")
_PLANES_WITH = {0: ("coronal", "sagittal"), 1: ("axial", "sagittal"), 2: ("axial", "coronal")}
THICK_SLAB_RATIO = 2.5  # coarsest / finest spacing from which a volume counts as a thin-slab acquisition
CLICK_GRID = 128  # at most this many clickable points along a side of a slice


def _check_convention(convention: str) -> str:
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; expected one of {tuple(CONVENTIONS)}")
    return convention


def mirrored(plane: str, convention: str = RADIOLOGICAL) -> bool:
    """Whether `plane` is drawn mirrored left-right from core.preprocess's radiological slices."""
    return _check_convention(convention) == NEUROLOGICAL and _EDGES[plane][0] in "RL"


def edge_letters(plane: str, convention: str = RADIOLOGICAL) -> dict[str, str]:
    """The patient directions at the edges of a displayed `plane`: {"left", "right", "top", "bottom"}
    (R/L right/left, A/P anterior/posterior, S/I superior/inferior)."""
    left, right, top, bottom = _EDGES[plane]
    if mirrored(plane, convention):
        left, right = right, left
    return {"left": left, "right": right, "top": top, "bottom": bottom}


def in_convention(img: np.ndarray, plane: str, convention: str = RADIOLOGICAL) -> np.ndarray:
    """A display-oriented (radiological) slice (H, W) or (H, W, 3) as drawn in `convention`."""
    return np.asarray(img)[:, ::-1] if mirrored(plane, convention) else np.asarray(img)


def cross_in_convention(
    cross: tuple[int, int] | None, width: int, plane: str, convention: str = RADIOLOGICAL
) -> tuple[int, int] | None:
    """A (row, col) of `preprocess.crosshair` on a slice `width` pixels wide, as drawn in `convention`."""
    if cross is None or not mirrored(plane, convention):
        return cross
    return cross[0], width - 1 - cross[1]


def voxel_at(
    shape: tuple[int, int, int], plane: str, index: int, pixel: tuple[int, int], convention: str = RADIOLOGICAL
) -> tuple[int, int, int]:
    """The voxel (z, y, x) under `pixel` (row, col) of slice `index` of a drawn `plane`: the inverse
    of `preprocess.crosshair` (and of the convention's mirroring), clipped into the volume."""
    nz, ny, nx = shape
    row, col = int(pixel[0]), int(pixel[1])
    width = {"axial": nx, "coronal": nx, "sagittal": ny}[plane]
    if mirrored(plane, convention):
        col = width - 1 - col
    if plane == "axial":
        z, y, x = index, ny - 1 - row, nx - 1 - col
    elif plane == "coronal":
        z, y, x = nz - 1 - row, index, nx - 1 - col
    else:
        z, y, x = nz - 1 - row, ny - 1 - col, index
    return (int(np.clip(z, 0, nz - 1)), int(np.clip(y, 0, ny - 1)), int(np.clip(x, 0, nx - 1)))


def selected_pixel(selection) -> tuple[int, int] | None:
    """(row, col) of the first clicked point of a `slice_figure(clickable=True)` selection (Streamlit's
    selection state or a list of points), or None."""
    points = _selection_points(selection)
    for p in points:
        try:
            return int(round(float(p["y"]))), int(round(float(p["x"])))
        except (KeyError, TypeError, ValueError):
            continue
    return None


def plane_pixel_mm(spacing, plane: str) -> tuple[float, float]:
    """(row, col) size in mm of one displayed pixel of `plane` for a volume's (z, y, x) spacing."""
    sz, sy, sx = (float(s) if np.isfinite(float(s)) and float(s) > 0 else 1.0 for s in spacing)
    return {"axial": (sy, sx), "coronal": (sz, sx), "sagittal": (sz, sy)}[plane]


def distance_mm(p0: tuple[float, float], p1: tuple[float, float], pixel_mm: tuple[float, float]) -> float:
    """Distance in millimetres between two (row, col) pixels of one slice with pixels `pixel_mm`."""
    return float(np.hypot((p1[0] - p0[0]) * pixel_mm[0], (p1[1] - p0[1]) * pixel_mm[1]))


def thick_slab_note(spacing, ratio: float = THICK_SLAB_RATIO) -> str | None:
    """A note when one axis of the voxel grid is `ratio` times coarser than the finest (a thin-slab
    acquisition): which views are stretched, and by how much; None for near-isotropic voxels."""
    mm = [float(s) for s in spacing]
    if not all(np.isfinite(m) and m > 0 for m in mm):
        return None
    thick, fine = int(np.argmax(mm)), min(mm)
    if mm[thick] < ratio * fine:
        return None
    views = " and ".join(_PLANES_WITH[thick])
    return (
        f"Thick slices: {mm[thick]:.3g} mm along {_AXIS_NAMES[thick]} against {fine:.3g} mm in-plane. "
        f"The {views} views are drawn at true spacing, each voxel {mm[thick] / fine:.1f}× taller "
        "than wide: they look blocky, and distances across the slices are coarse."
    )


def zoom_window(n: int, center: float, zoom: float = 1.0) -> tuple[float, float]:
    """The (low, high) axis range showing 1/zoom of `n` pixels around `center`, kept inside the image."""
    half = n / (2.0 * max(float(zoom), 1.0))
    low = float(np.clip(center - half + 0.5, 0.0, n - 2 * half)) - 0.5
    return low, low + 2 * half


def _edge_annotations(letters: dict[str, str]) -> list[dict]:
    spots = {
        "left": (0.0, 0.5, "left", "middle"),
        "right": (1.0, 0.5, "right", "middle"),
        "top": (0.5, 1.0, "center", "top"),
        "bottom": (0.5, 0.0, "center", "bottom"),
    }
    return [
        dict(
            text=f"<b>{letters[edge]}</b>",
            x=x,
            y=y,
            xref="x domain",
            yref="y domain",
            xanchor=xa,
            yanchor=ya,
            showarrow=False,
            font=dict(color="#ffd84d", size=15),
            bgcolor="rgba(0,0,0,0.45)",
            name=f"orientation-{edge}",
        )
        for edge, (x, y, xa, ya) in spots.items()
        if edge in letters
    ]


def _click_grid(h: int, w: int) -> go.Scattergl:
    """Invisible points over the slice (every pixel, or every k-th on big slices) so that a click
    comes back to Streamlit as a selected point (Streamlit forwards selections, not clicks, and an
    image trace cannot be selected)."""
    step = max(1, int(np.ceil(max(h, w) / CLICK_GRID)))
    rows, cols = np.mgrid[0:h:step, 0:w:step]
    return go.Scattergl(
        x=cols.ravel().astype(np.int16),
        y=rows.ravel().astype(np.int16),
        mode="markers",
        marker=dict(size=max(4, 2 * step), opacity=0),
        name="click",
        showlegend=False,
        hoverinfo="none",
        selected=dict(marker=dict(opacity=0)),
        unselected=dict(marker=dict(opacity=0)),
    )


def _measure_shapes(points, pixel_mm) -> tuple[list[dict], list[dict]]:
    """The measurement's line (or first point) and its length label."""
    pts = [(float(r), float(c)) for r, c in points][-2:]
    style = dict(color="#00e5ff", width=2)
    if len(pts) == 1:
        ((r, c),) = pts
        return [dict(type="circle", x0=c - 1.5, x1=c + 1.5, y0=r - 1.5, y1=r + 1.5, line=style)], []
    (r0, c0), (r1, c1) = pts
    label = dict(
        text=f"{distance_mm(pts[0], pts[1], pixel_mm):.1f} mm",
        x=(c0 + c1) / 2,
        y=(r0 + r1) / 2,
        showarrow=False,
        yshift=12,
        font=dict(color="#00e5ff", size=13),
        bgcolor="rgba(0,0,0,0.55)",
        name="measurement",
    )
    return [dict(type="line", x0=c0, y0=r0, x1=c1, y1=r1, line=style)], [label]


def slice_figure(
    img: np.ndarray,
    aspect: float = 1.0,
    *,
    crosshair: tuple[float, float] | None = None,
    crosshair_colors: tuple[str, str] = ("#29a35a", "#3b8bd4"),
    title: str | None = None,
    height: int = 340,
    letters: dict[str, str] | None = None,
    clickable: bool = False,
    measure=(),
    pixel_mm: tuple[float, float] | None = None,
    uirevision: str | None = None,
    zoom: float = 1.0,
) -> go.Figure:
    """A displayed slice: `img` (H, W) in [0, 1] (already windowed) or (H, W, 3) uint8 RGB.

    aspect: physical height / width of one pixel (`preprocess.plane_aspect`); ignored when
        `pixel_mm` (row, col size in mm) is given, which also puts millimetres in the hover.
    crosshair: (row, col) of the other planes' cuts; colors for the horizontal and vertical line.
    letters: `edge_letters` drawn at the edges of the view (they stay there when zoomed).
    clickable: a click selects the pixel under it (`selected_pixel`); zoom (drag a box, scroll) and
        pan stay plotly's own, a double click resets; `uirevision` keeps them across reruns.
    measure: one or two (row, col) points of a distance measurement, drawn with its length in mm.
    zoom: magnification around the crosshair (the image centre without one). Unlike plotly's own
        zoom it survives reruns: Streamlit draws a changed figure as a new chart.
    """
    a = np.asarray(img)
    if a.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {a.shape}")
    h, w = a.shape[:2]
    if pixel_mm is not None:
        aspect = pixel_mm[0] / pixel_mm[1] if pixel_mm[1] else 1.0
    aspect = float(aspect) if np.isfinite(aspect) and aspect > 0 else 1.0
    hover = "row %{y}, col %{x}<extra></extra>"
    if pixel_mm is not None:
        hover = f"row %{{y}}, col %{{x}} · pixel {pixel_mm[0]:.3g} × {pixel_mm[1]:.3g} mm<extra></extra>"
    fig = go.Figure(go.Image(source=png_data_uri(a), x0=0, dx=1, y0=0, dy=1, hovertemplate=hover))
    if clickable:
        fig.add_trace(_click_grid(h, w))
    if crosshair is not None:
        row, col = crosshair
        hcolor, vcolor = crosshair_colors
        fig.add_shape(type="line", x0=-0.5, x1=w - 0.5, y0=row, y1=row, line=dict(color=hcolor, width=1))
        fig.add_shape(type="line", x0=col, x1=col, y0=-0.5, y1=h - 0.5, line=dict(color=vcolor, width=1))
    annotations = _edge_annotations(letters) if letters else []
    if len(measure):
        shapes, labels = _measure_shapes(measure, pixel_mm or (aspect, 1.0))
        for shape in shapes:
            fig.add_shape(**shape)
        annotations += labels
    center = crosshair if crosshair is not None else ((h - 1) / 2, (w - 1) / 2)
    rows, cols = zoom_window(h, center[0], zoom), zoom_window(w, center[1], zoom)
    fig.update_xaxes(visible=False, range=list(cols), constrain="domain")
    fig.update_yaxes(visible=False, range=list(rows[::-1]), scaleanchor="x", scaleratio=aspect, constrain="domain")
    fig.update_layout(
        height=height,
        margin=dict(l=0, r=0, t=28 if title else 0, b=0),
        title=dict(text=title, x=0.5, font=dict(size=13)) if title else None,
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="black",
        annotations=annotations,
        dragmode="zoom" if clickable else False,
        clickmode="event+select" if clickable else None,
        hovermode="closest",
        uirevision=uirevision,
        showlegend=False,
    )
    return fig


def _colormap(name: str):
    try:
        import matplotlib  # optional: only its colormaps, when installed

        return matplotlib.colormaps[name]
    except (ImportError, KeyError):
        return None


def _jet(x: np.ndarray) -> np.ndarray:
    """Numpy 'jet' for when matplotlib is absent: (...) in [0, 1] -> (..., 3) in [0, 1]."""
    r = np.clip(1.5 - np.abs(4 * x - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * x - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * x - 1), 0, 1)
    return np.stack([r, g, b], axis=-1)


def _resize(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if a.shape == shape:
        return a

    return np.asarray(Image.fromarray(a.astype(np.float32), mode="F").resize((shape[1], shape[0]), Image.BILINEAR))


def overlay(
    slice01: np.ndarray, heat01: np.ndarray, cmap: str = "jet", alpha: float = 0.6, floor: float = HEAT_FLOOR
) -> np.ndarray:
    """A heat map (e.g. Grad-CAM) over a grey slice: uint8 RGB (H, W, 3).

    slice01 (H, W) in [0, 1]; heat01 in [0, 1], resized to the slice when its size differs.
    Low values leave the slice untouched: the colour's opacity rises from 0 at `floor` to `alpha`
    at 1, so only what drove the model is tinted, not the whole image.
    """
    base = np.clip(np.nan_to_num(np.asarray(slice01, dtype=np.float32)), 0, 1)
    if base.ndim != 2:
        raise ValueError(f"expected a grey (H, W) slice, got shape {base.shape}")
    heat = np.clip(np.nan_to_num(np.asarray(heat01, dtype=np.float32)), 0, 1)
    heat = np.clip(_resize(heat, base.shape), 0, 1)
    cm = _colormap(cmap)
    color = cm(heat)[..., :3] if cm is not None else _jet(heat)
    weight = heat_alpha(heat, float(np.clip(alpha, 0.0, 1.0)), floor)[..., None]
    out = (1.0 - weight) * base[..., None] + weight * color
    return to_uint8(out)


def heat_alpha(heat01: np.ndarray, alpha: float = 0.6, floor: float = HEAT_FLOOR) -> np.ndarray:
    """Per-pixel opacity of a heat map: 0 up to `floor`, rising linearly to `alpha` at 1."""
    floor = float(np.clip(floor, 0.0, 0.99))
    return alpha * np.clip((np.asarray(heat01, dtype=np.float32) - floor) / (1.0 - floor), 0.0, 1.0)


# ------------------------------------------------------------------ review, training and model pages
def probability_bars(classes, probabilities, *, highlight: str | None = None, height: int = 220) -> go.Figure:
    """Horizontal bars of class probabilities (the top class, or `highlight`, drawn darker)."""
    names = [str(c) for c in classes]
    p = [float(v) for v in np.asarray(probabilities, dtype=np.float64).reshape(-1)]
    if len(p) != len(names):
        raise ValueError(f"{len(names)} classes but {len(p)} probabilities")
    top = highlight if highlight is not None else (names[int(np.argmax(p))] if p else None)
    colors = ["#3b8bd4" if n == top else "#a9c6e4" for n in names]
    fig = go.Figure(
        go.Bar(
            x=p,
            y=names,
            orientation="h",
            marker_color=colors,
            text=[f"{v:.0%}" for v in p],
            textposition="auto",
            hovertemplate="%{y}: %{x:.3f}<extra></extra>",
        )
    )
    fig.update_xaxes(range=[0, 1], tickformat=".0%")
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(height=height, margin=dict(l=0, r=0, t=8, b=0), showlegend=False)
    return fig


def training_curves(history) -> go.Figure:
    """Loss and validation metrics per epoch from a job's history rows
    ({"stage", "epoch", "loss", "val_<metric>", ...}); epochs of successive stages (block-wise
    fine-tuning) are numbered on one axis, stage changes marked with dotted lines."""
    from plotly.subplots import make_subplots  # heavy: plotly, loaded on first use

    rows = [r for r in (history or []) if isinstance(r, dict) and r.get("loss") is not None]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("training loss", "validation"))
    x = list(range(1, len(rows) + 1))
    fig.add_trace(
        go.Scatter(
            x=x, y=[float(r["loss"]) for r in rows], mode="lines+markers", name="loss", line=dict(color="#e4572e")
        ),
        row=1,
        col=1,
    )
    if any(r.get("val_loss") is not None for r in rows):
        fig.add_trace(
            go.Scatter(
                x=x,
                y=[r.get("val_loss") for r in rows],
                mode="lines+markers",
                name="val loss",
                line=dict(color="#e4572e", dash="dot"),
            ),
            row=1,
            col=1,
        )
    keys = sorted({k for r in rows for k in r if k.startswith("val_") and k != "val_loss"})
    palette = ["#29a35a", "#3b8bd4", "#8e5bd4", "#d4a23b"]
    for n, key in enumerate(keys):
        fig.add_trace(
            go.Scatter(
                x=x,
                y=[r.get(key) for r in rows],
                mode="lines+markers",
                name=key[4:],
                line=dict(color=palette[n % len(palette)]),
            ),
            row=1,
            col=2,
        )
    for i in range(1, len(rows)):
        if rows[i].get("stage") != rows[i - 1].get("stage"):
            for col in (1, 2):
                fig.add_vline(x=i + 0.5, line=dict(color="#888", dash="dot", width=1), row=1, col=col)
    fig.update_xaxes(title_text="epoch", dtick=1 if len(rows) <= 20 else None)
    fig.update_yaxes(range=[0, 1], row=1, col=2)
    fig.update_layout(height=300, margin=dict(l=0, r=0, t=30, b=0), legend=dict(orientation="h", y=-0.25))
    return fig


def confusion_figure(matrix, classes, title: str | None = None, height: int = 300) -> go.Figure:
    """A confusion matrix (rows = truth, columns = prediction) as an annotated heat map."""
    m = np.asarray(matrix if matrix is not None else [], dtype=np.float64)
    names = [str(c) for c in classes]
    if m.size == 0:
        m = np.zeros((len(names), len(names)))
    row_sum = m.sum(axis=1, keepdims=True)
    frac = np.divide(m, row_sum, out=np.zeros_like(m), where=row_sum > 0)
    fig = go.Figure(
        go.Heatmap(
            z=frac,
            x=names,
            y=names,
            colorscale="Blues",
            zmin=0,
            zmax=1,
            showscale=False,
            text=[[f"{int(v)}" for v in row] for row in m],
            texttemplate="%{text}",
            hovertemplate="truth %{y}, predicted %{x}: %{text}<extra></extra>",
        )
    )
    fig.update_xaxes(title_text="predicted", side="bottom")
    fig.update_yaxes(title_text="truth", autorange="reversed")
    fig.update_layout(
        height=height,
        margin=dict(l=0, r=0, t=30 if title else 0, b=0),
        title=dict(text=title, x=0.5, font=dict(size=13)) if title else None,
    )
    return fig


def metric_comparison_figure(rows, height: int = 260) -> go.Figure:
    """Challenger vs champion per metric with 95% CIs; `rows` from `core.promotion.Comparison.metrics`."""
    rows = [r for r in rows if r.get("metric") != "ece"]
    labels = [f"{r['metric']}" + (" (patient)" if r.get("level") == "patient" else "") for r in rows]
    fig = go.Figure()
    for side, color in (("champion", "#a0a0a0"), ("challenger", "#3b8bd4")):
        vals = [r.get(side) for r in rows]
        cis = [r.get(f"{side}_ci") or [None, None] for r in rows]
        plus = [(ci[1] - v) if v is not None and ci[1] is not None else 0 for v, ci in zip(vals, cis)]
        minus = [(v - ci[0]) if v is not None and ci[0] is not None else 0 for v, ci in zip(vals, cis)]
        fig.add_trace(
            go.Bar(
                x=labels,
                y=vals,
                name=side,
                marker_color=color,
                error_y=dict(type="data", array=plus, arrayminus=minus, visible=True),
            )
        )
    fig.update_yaxes(range=[0, 1.05])
    fig.update_layout(
        barmode="group", height=height, margin=dict(l=0, r=0, t=8, b=0), legend=dict(orientation="h", y=1.1)
    )
    return fig


# ------------------------------------------------------------------------------ scan page v2
TASK_COLORS = {"glioma": "#8e5bd4", "meningioma": "#29a35a", "pituitary": "#d4a23b", "G2": "#3b8bd4", "G3": "#c0392b"}
_SERIES_PALETTE = ("#8e5bd4", "#29a35a", "#d4a23b", "#3b8bd4", "#c0392b", "#5f6b7a")
PRESENCE_COLOR = "#e4572e"


def slice_strip(
    slices,
    *,
    task: str | None = "tumor_type",
    classes=None,
    current: int | None = None,
    key_slices=(),
    threshold: float | None = None,
    height: int = 200,
) -> go.Figure:
    """Per-slice evidence along the scan: P(tumour) per axial slice as bars (the slice relevance,
    strong colour at or above `threshold`), `task`'s class probabilities per slice as lines,
    the slice shown in the viewer (`current`, 0-based) as a vertical line, `key_slices` as stars.

    slices: `VolumePrediction.slices` ([{"index", "presence", "<task>": [probs] | None}]). x is the
    1-based slice number (as the viewer's slider counts); every point carries the 0-based index in
    `customdata`. A faint full-height bar per slice makes the whole column clickable.
    """
    rows = list(slices or [])
    n = len(rows)
    x = list(range(1, n + 1))
    idx = [int(r.get("index", i)) for i, r in enumerate(rows)]
    keep = dict(selected=dict(marker=dict(opacity=1.0)), unselected=dict(marker=dict(opacity=1.0)))
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            x=x,
            y=[1.0] * n,
            customdata=idx,
            name="slice",
            showlegend=False,
            marker=dict(color="rgba(120,130,140,0.07)", line=dict(width=0)),
            hovertemplate="slice %{x}<extra>click to view</extra>",
            **keep,
        )
    )
    presence = [r.get("presence") for r in rows]
    if n and all(p is not None for p in presence):
        thr = 0.5 if threshold is None else float(threshold)
        colors = [PRESENCE_COLOR if float(p) >= thr else "rgba(228,87,46,0.35)" for p in presence]
        fig.add_trace(
            go.Bar(
                x=x,
                y=[float(p) for p in presence],
                customdata=idx,
                name="P(tumour)",
                marker=dict(color=colors, line=dict(width=0)),
                hovertemplate="slice %{x}: P(tumour) %{y:.2f}<extra></extra>",
                **keep,
            )
        )
    read = [r.get(task) for r in rows] if task else []
    width = next((len(v) for v in read if v is not None), 0)
    if width:  # None: the task did not read that slice (a gap in its lines)
        probs = np.asarray([v if v is not None else [np.nan] * width for v in read], dtype=np.float64)
        names = list(classes) if classes is not None else [f"class {k}" for k in range(probs.shape[1])]
        for k, name in enumerate(names[: probs.shape[1]]):
            color = TASK_COLORS.get(str(name), _SERIES_PALETTE[k % len(_SERIES_PALETTE)])
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=probs[:, k],
                    customdata=idx,
                    name=str(name),
                    mode="lines",
                    line=dict(color=color, width=2, shape="spline", smoothing=0.4),
                    hovertemplate=f"slice %{{x}}: P({name}) %{{y:.2f}}<extra></extra>",
                    **keep,
                )
            )
    ks = [int(k) for k in key_slices if 0 <= int(k) < n]
    if ks:
        fig.add_trace(
            go.Scatter(
                x=[k + 1 for k in ks],
                y=[1.06] * len(ks),
                customdata=ks,
                mode="markers",
                name="key slice",
                marker=dict(symbol="star", size=11, color="#f0b429", line=dict(color="#8a6100", width=1)),
                hovertemplate="key slice %{x}<extra></extra>",
                **keep,
            )
        )
    if threshold is not None and n:
        fig.add_hline(y=float(threshold), line=dict(color="#888", dash="dot", width=1))
    if current is not None and 0 <= int(current) < n:
        fig.add_vline(x=int(current) + 1, line=dict(color="#1f2d3d", width=2))
    fig.update_xaxes(
        title_text=None, range=[0.5, n + 0.5], dtick=max(1, int(np.ceil(n / 24))), showgrid=False, fixedrange=True
    )
    fig.update_yaxes(
        range=[0, 1.12], tickvals=[0, 0.5, 1], tickformat=".0%", fixedrange=True, gridcolor="rgba(120,130,140,0.15)"
    )
    fig.update_layout(
        height=height,
        barmode="overlay",
        bargap=0.08,
        margin=dict(l=0, r=0, t=4, b=0),
        legend=dict(orientation="h", y=1.02, yanchor="bottom", x=1, xanchor="right", font=dict(size=11)),
        hovermode="closest",
        clickmode="event+select",
        dragmode=False,
        plot_bgcolor="rgba(0,0,0,0)",
        paper_bgcolor="rgba(0,0,0,0)",
    )
    return fig


def _selection_points(selection) -> list:
    """The points of Streamlit's plotly selection state ({"selection": {"points": [...]}}) or of a
    list of points."""
    if selection is None:
        return []
    pts = selection
    if isinstance(selection, dict) or hasattr(selection, "get"):
        sel = selection.get("selection", selection)
        pts = sel.get("points", []) if hasattr(sel, "get") else []
    return [p for p in pts or [] if hasattr(p, "get")]


def selected_slice(selection, n: int) -> int | None:
    """The 0-based slice a plotly selection on `slice_strip` points at (its first point), or None.
    Accepts Streamlit's selection state ({"selection": {"points": [...]}}) or a list of points."""
    for p in _selection_points(selection):
        cd = p.get("customdata")
        if isinstance(cd, (list, tuple)):
            cd = cd[0] if cd else None
        try:
            i = int(cd) if cd is not None else int(round(float(p.get("x"))) - 1)
        except (TypeError, ValueError):
            continue
        if 0 <= i < n:
            return i
    return None


# ----------------------------------------------------------------------------- research studies
STRATEGY_COLORS = {
    "entropy": "#e4572e",
    "margin": "#d4a23b",
    "least_confidence": "#8e5bd4",
    "bald": "#29a35a",
    "coreset": "#3b8bd4",
    "random": "#555555",
}


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def al_curve_figure(result: dict, level: str = "patient_auc", height: int = 380) -> go.Figure:
    """Active-learning curves of an `al-simulate` result: per strategy the mean AUC over seeds
    with its 95% band, against the labelled fraction of the pool; the full-pool baseline as a
    dashed line with its 95% patient-bootstrap band; a marker where a strategy first reaches it."""
    fig = go.Figure()
    base = result.get("baseline") or {}
    b_val, b_ci = base.get(level), base.get(f"{level}_ci95") or [None, None]
    budgets_all = [b for e in result.get("strategies", {}).values() for b in e.get("budgets", [])]
    x_lo, x_hi = (min(budgets_all) * 100, max(budgets_all) * 100) if budgets_all else (0, 100)
    if b_ci[0] is not None and b_ci[1] is not None:
        fig.add_trace(
            go.Scatter(
                x=[x_lo, x_hi, x_hi, x_lo],
                y=[b_ci[0], b_ci[0], b_ci[1], b_ci[1]],
                fill="toself",
                fillcolor="rgba(0,0,0,0.06)",
                line=dict(width=0),
                hoverinfo="skip",
                name="baseline 95% CI (test patients)",
            )
        )
    if b_val is not None:
        fig.add_trace(
            go.Scatter(
                x=[x_lo, x_hi],
                y=[b_val, b_val],
                mode="lines",
                line=dict(color="#222", dash="dash"),
                name=f"full pool {b_val:.3f}",
            )
        )
    for name, e in (result.get("strategies") or {}).items():
        color = STRATEGY_COLORS.get(name, "#888888")
        xs = [b * 100 for b in e["budgets"]]
        band = e.get(level) or {}
        lo, hi = band.get("lo") or [], band.get("hi") or []
        if lo and all(v is not None for v in lo + hi):
            fig.add_trace(
                go.Scatter(
                    x=xs + xs[::-1],
                    y=list(hi) + list(lo)[::-1],
                    fill="toself",
                    fillcolor=_rgba(color, 0.12),
                    line=dict(width=0),
                    hoverinfo="skip",
                    legendgroup=name,
                    showlegend=False,
                )
            )
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=band.get("mean"),
                mode="lines+markers",
                name=name,
                legendgroup=name,
                line=dict(color=color, width=3 if name == "random" else 2, dash="dot" if name == "random" else "solid"),
                hovertemplate=f"{name}: %{{y:.3f}} at %{{x:.0f}}%<extra></extra>",
            )
        )
        reach = ((e.get("label_saving") or {}).get(level) or {}).get("budget_to_baseline")
        if reach is not None and reach < 1.0:
            i = e["budgets"].index(reach)
            fig.add_trace(
                go.Scatter(
                    x=[reach * 100],
                    y=[band["mean"][i]],
                    mode="markers",
                    legendgroup=name,
                    marker=dict(symbol="star", size=13, color=color, line=dict(color="#222", width=1)),
                    showlegend=False,
                    hovertemplate=f"{name} reaches the baseline at %{{x:.0f}}%<extra></extra>",
                )
            )
    fig.update_xaxes(title_text="labelled fraction of the pool (%)", ticksuffix="%")
    fig.update_yaxes(title_text=level.replace("_", " ").replace("auc", "AUC"))
    fig.update_layout(height=height, margin=dict(l=0, r=0, t=8, b=0), legend=dict(orientation="h", y=-0.2))
    return fig


def transferability_figure(
    result: dict, score: str = "logme", actual: str = "balanced_accuracy", height: int = 360
) -> go.Figure:
    """Transferability score (x, before fine-tuning) against the head-only fine-tuned metric (y)
    per candidate, with the Kendall / Spearman agreement in the title."""
    rows = [
        r
        for r in result.get("candidates", [])
        if r.get("status") == "ok"
        and (r.get("scores") or {}).get(score) is not None
        and (r.get("fine_tuned") or {}).get(actual) is not None
    ]
    colors = {"zoo": "#3b8bd4", "random": "#888888", "imagenet": "#29a35a"}
    fig = go.Figure()
    for kind in ("zoo", "random", "imagenet"):
        sel = [r for r in rows if r.get("kind") == kind]
        if not sel:
            continue
        fig.add_trace(
            go.Scatter(
                x=[r["scores"][score] for r in sel],
                y=[r["fine_tuned"][actual] for r in sel],
                mode="markers+text",
                text=[r["candidate"] for r in sel],
                textposition="top center",
                name=kind,
                marker=dict(
                    size=11,
                    color=colors[kind],
                    symbol=["diamond" if r.get("saw_target_images") else "circle" for r in sel],
                ),
                hovertemplate="%{text}<br>" + score + " %{x:.4f}<br>" + actual + " %{y:.3f}<extra></extra>",
            )
        )
    ag = ((result.get("agreement") or {}).get(actual) or {}).get(score) or {}
    tau, rho = ag.get("kendall_tau"), ag.get("spearman_rho")
    title = f"{score} vs fine-tuned {actual.replace('_', ' ')}"
    if tau is not None:
        title += f" - Kendall tau {tau:.2f}, Spearman rho {rho:.2f} (n={ag.get('n')})"
    fig.update_xaxes(title_text=f"{score} (before fine-tuning)")
    fig.update_yaxes(title_text=f"head-only {actual.replace('_', ' ')}")
    fig.update_layout(
        height=height,
        margin=dict(l=0, r=0, t=36, b=0),
        title=dict(text=title, x=0, font=dict(size=13)),
        legend=dict(orientation="h", y=-0.2),
    )
    return fig


def imbalance_figure(result: dict, height: int = 340) -> go.Figure:
    """ACGAN ablation: balanced accuracy and the minority class's sensitivity per treatment, mean
    over seeds with the standard deviation as error bars."""
    treatments = list((result.get("treatments") or {}).keys())
    minority = (result.get("config") or {}).get("minority")
    fig = go.Figure()
    series = [("balanced accuracy", "#3b8bd4", lambda s: s["balanced_accuracy"])]
    if minority:
        series.append((f"sensitivity {minority}", "#e4572e", lambda s: s["sensitivity"][minority]))
    for label, color, get in series:
        means, errs = [], []
        for t in treatments:
            s = get(result["treatments"][t]["summary"])
            means.append(s.get("mean"))
            errs.append(s.get("std") or 0)
        fig.add_trace(
            go.Bar(
                x=treatments,
                y=means,
                name=label,
                marker_color=color,
                error_y=dict(type="data", array=errs, visible=True),
                text=[f"{m:.2f}" if m is not None else "" for m in means],
                textposition="outside",
            )
        )
    fig.update_yaxes(range=[0, 1.1])
    fig.update_layout(
        barmode="group", height=height, margin=dict(l=0, r=0, t=8, b=0), legend=dict(orientation="h", y=1.12)
    )
    return fig


def risk_coverage_figure(curve: list[dict], chosen: float | None = None, height: int = 280) -> go.Figure:
    """Accuracy of the answers given without referral against the share answered, one point per
    familiarity threshold (`core.inference.referral.risk_coverage_curve`); the chosen threshold marked."""
    pts = [c for c in curve if c.get("accuracy_answered") is not None]
    fig = go.Figure(
        go.Scatter(
            x=[c["coverage"] for c in pts],
            y=[c["accuracy_answered"] for c in pts],
            mode="lines+markers",
            name="held-out",
            customdata=[c["max_percentile"] for c in pts],
            hovertemplate="threshold %{customdata:.2f}<br>answered %{x:.0%}<br>right %{y:.1%}",
        )
    )
    if chosen is not None and pts:
        near = min(pts, key=lambda c: abs(c["max_percentile"] - chosen))
        fig.add_trace(
            go.Scatter(
                x=[near["coverage"]],
                y=[near["accuracy_answered"]],
                mode="markers",
                marker=dict(size=12, symbol="star"),
                name="operating point",
            )
        )
    fig.update_layout(
        height=height,
        margin=dict(l=10, r=10, t=30, b=10),
        xaxis_title="share answered (coverage)",
        yaxis_title="accuracy of answers",
        xaxis_tickformat=".0%",
        yaxis_tickformat=".0%",
        title="Risk-coverage on held-out patients",
    )
    return fig
