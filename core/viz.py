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

CROSSHAIR_COLORS = {"axial": "#e4572e", "coronal": "#29a35a", "sagittal": "#3b8bd4"}


def to_uint8(img01: np.ndarray) -> np.ndarray:
    """[0, 1] floats (NaN -> 0) to uint8 with rounding."""
    a = np.nan_to_num(np.asarray(img01, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def png_data_uri(img: np.ndarray) -> str:
    """A grey (H, W) [0, 1] float / uint8 image or an (H, W, 3) uint8 RGB image as a PNG data URI."""
    from PIL import Image

    a = np.asarray(img)
    if a.dtype != np.uint8:
        a = to_uint8(a)
    mode = "L" if a.ndim == 2 else "RGB"
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a), mode=mode).save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def slice_figure(img: np.ndarray, aspect: float = 1.0, *, crosshair: tuple[float, float] | None = None,
                 crosshair_colors: tuple[str, str] = ("#29a35a", "#3b8bd4"), title: str | None = None,
                 height: int = 340) -> go.Figure:
    """A displayed slice: `img` (H, W) in [0, 1] (already windowed) or (H, W, 3) uint8 RGB.

    aspect: physical height / width of one pixel (`preprocess.plane_aspect`).
    crosshair: (row, col) of the other planes' cuts; colors for the horizontal and vertical line.
    """
    a = np.asarray(img)
    if a.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {a.shape}")
    h, w = a.shape[:2]
    aspect = float(aspect) if np.isfinite(aspect) and aspect > 0 else 1.0
    fig = go.Figure(go.Image(source=png_data_uri(a), x0=0, dx=1, y0=0, dy=1,
                             hovertemplate="row %{y}, col %{x}<extra></extra>"))
    if crosshair is not None:
        row, col = crosshair
        hcolor, vcolor = crosshair_colors
        fig.add_shape(type="line", x0=-0.5, x1=w - 0.5, y0=row, y1=row,
                      line=dict(color=hcolor, width=1))
        fig.add_shape(type="line", x0=col, x1=col, y0=-0.5, y1=h - 0.5,
                      line=dict(color=vcolor, width=1))
    fig.update_xaxes(visible=False, range=[-0.5, w - 0.5], constrain="domain")
    fig.update_yaxes(visible=False, range=[h - 0.5, -0.5], scaleanchor="x", scaleratio=aspect,
                     constrain="domain")
    fig.update_layout(
        height=height, margin=dict(l=0, r=0, t=28 if title else 0, b=0),
        title=dict(text=title, x=0.5, font=dict(size=13)) if title else None,
        paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="black", dragmode=False,
    )
    return fig


def _colormap(name: str):
    try:
        import matplotlib

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
    from PIL import Image

    return np.asarray(Image.fromarray(a.astype(np.float32), mode="F").resize((shape[1], shape[0]),
                                                                           Image.BILINEAR))


def overlay(slice01: np.ndarray, heat01: np.ndarray, cmap: str = "jet", alpha: float = 0.4) -> np.ndarray:
    """A heat map (e.g. Grad-CAM) blended over a grey slice: uint8 RGB (H, W, 3).

    slice01 (H, W) in [0, 1]; heat01 in [0, 1], resized to the slice when its size differs;
    alpha is the weight of the coloured heat map.
    """
    base = np.clip(np.nan_to_num(np.asarray(slice01, dtype=np.float32)), 0, 1)
    if base.ndim != 2:
        raise ValueError(f"expected a grey (H, W) slice, got shape {base.shape}")
    heat = np.clip(np.nan_to_num(np.asarray(heat01, dtype=np.float32)), 0, 1)
    heat = np.clip(_resize(heat, base.shape), 0, 1)
    cm = _colormap(cmap)
    color = cm(heat)[..., :3] if cm is not None else _jet(heat)
    alpha = float(np.clip(alpha, 0.0, 1.0))
    out = (1.0 - alpha) * base[..., None] + alpha * color
    return to_uint8(out)


# ------------------------------------------------------------------ review, training and model pages
def probability_bars(classes, probabilities, *, highlight: str | None = None, height: int = 220) -> go.Figure:
    """Horizontal bars of class probabilities (the top class, or `highlight`, drawn darker)."""
    names = [str(c) for c in classes]
    p = [float(v) for v in np.asarray(probabilities, dtype=np.float64).reshape(-1)]
    if len(p) != len(names):
        raise ValueError(f"{len(names)} classes but {len(p)} probabilities")
    top = highlight if highlight is not None else (names[int(np.argmax(p))] if p else None)
    colors = ["#3b8bd4" if n == top else "#a9c6e4" for n in names]
    fig = go.Figure(go.Bar(x=p, y=names, orientation="h", marker_color=colors,
                           text=[f"{v:.0%}" for v in p], textposition="auto",
                           hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    fig.update_xaxes(range=[0, 1], tickformat=".0%")
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(height=height, margin=dict(l=0, r=0, t=8, b=0), showlegend=False)
    return fig


def training_curves(history) -> go.Figure:
    """Loss and validation metrics per epoch from a job's history rows
    ({"stage", "epoch", "loss", "val_<metric>", ...}); epochs of successive stages (block-wise
    fine-tuning) are numbered on one axis, stage changes marked with dotted lines."""
    from plotly.subplots import make_subplots

    rows = [r for r in (history or []) if isinstance(r, dict) and r.get("loss") is not None]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("training loss", "validation"))
    x = list(range(1, len(rows) + 1))
    fig.add_trace(go.Scatter(x=x, y=[float(r["loss"]) for r in rows], mode="lines+markers", name="loss",
                             line=dict(color="#e4572e")), row=1, col=1)
    if any(r.get("val_loss") is not None for r in rows):
        fig.add_trace(go.Scatter(x=x, y=[r.get("val_loss") for r in rows], mode="lines+markers",
                                 name="val loss", line=dict(color="#e4572e", dash="dot")), row=1, col=1)
    keys = sorted({k for r in rows for k in r if k.startswith("val_") and k != "val_loss"})
    palette = ["#29a35a", "#3b8bd4", "#8e5bd4", "#d4a23b"]
    for n, key in enumerate(keys):
        fig.add_trace(go.Scatter(x=x, y=[r.get(key) for r in rows], mode="lines+markers", name=key[4:],
                                 line=dict(color=palette[n % len(palette)])), row=1, col=2)
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
    fig = go.Figure(go.Heatmap(z=frac, x=names, y=names, colorscale="Blues", zmin=0, zmax=1, showscale=False,
                               text=[[f"{int(v)}" for v in row] for row in m], texttemplate="%{text}",
                               hovertemplate="truth %{y}, predicted %{x}: %{text}<extra></extra>"))
    fig.update_xaxes(title_text="predicted", side="bottom")
    fig.update_yaxes(title_text="truth", autorange="reversed")
    fig.update_layout(height=height, margin=dict(l=0, r=0, t=30 if title else 0, b=0),
                      title=dict(text=title, x=0.5, font=dict(size=13)) if title else None)
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
        fig.add_trace(go.Bar(x=labels, y=vals, name=side, marker_color=color,
                             error_y=dict(type="data", array=plus, arrayminus=minus, visible=True)))
    fig.update_yaxes(range=[0, 1.05])
    fig.update_layout(barmode="group", height=height, margin=dict(l=0, r=0, t=8, b=0),
                      legend=dict(orientation="h", y=1.1))
    return fig
