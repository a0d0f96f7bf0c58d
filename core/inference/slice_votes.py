"""Which slices vote in a volume's "tumour present?" verdict, and with what evidence.

The presence model scores every axial slice on its own. A volume verdict built on "any slice with
P(tumour) >= PRESENCE_THRESHOLD" calls a normal brain "tumour" on one confident slice at the skull
base or the vertex (issue 11: a healthy 3D T1 called meningioma from the petrous bone). Two rules:

1. Tissue gate. A slice votes only when it holds enough head: its head area (largest connected
   foreground region, holes filled) is at least TISSUE_MIN of the volume's large slices'. Vertex
   caps, the edge of the field of view and empty padding slices do not vote; neither does a single
   2D image that is (almost) empty (head area < MIN_HEAD_AREA of the picture). Any other single
   image votes as it is.
2. Neighbour confirmation (volumes of at least CONFIRM_MIN_SLICES slices). A slice is tumour
   evidence only when a voting neighbour agrees: evidence[i] = min(p[i], max(p[i-1], p[i+1])).
   One confident slice with unremarkable neighbours is not a tumour; a tumour seen on two or more
   adjacent slices keeps its score. Thick-slice series (TCIA-BTP: 22 thick slices) still show
   a glioblastoma on 5-10 adjacent slices.

The volume's P(tumour) is the largest evidence over voting slices; the verdict is "tumour" when it
reaches PRESENCE_THRESHOLD, and type/grade read the slices whose evidence does (weights
evidence ** RELEVANCE_SHARPEN), so a vertex cap or a lone slice never drives the type verdict.

The gate measures head, not brain: a slice through the face or neck whose cross-section is as
large as the brain's still votes (see research/results/README.md, healthy-check). The rules cannot
repair a presence model that scores runs of normal mid-brain slices high; that needs training data.

Pure numpy/scipy on display slices in [0, 1]; no torch, no model.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

PRESENCE_THRESHOLD = 0.5  # a slice is "relevant" (shows tumour) when its evidence >= this
RELEVANCE_SHARPEN = 2.0  # volume weights = evidence ** this (sharpens towards tumour slices)

# ---- constants (how each was chosen; none was fitted on the normal/images volumes that
# `python -m core healthy-check` reports) --------------------------------------------------------
HEAD_THRESHOLD = 0.10  # foreground = normalised intensity above this (the background of MR
#                            after 0.5-99.5% normalisation is < 0.05; image_ood uses 0.05 for
#                            "informative"; 0.10 keeps noise speckle and ghosting out of the mask),
#                            or above half the stack's median tissue intensity when that is lower
#                            (a dim scan whose few very bright voxels set the normalisation)
TISSUE_MIN = 0.30  # vote when head area >= this share of the large slices'. Chosen on the
#                            TCGA-LGG patients the presence model was trained on (not its locked
#                            test): their 856 tumour slices have area shares >= 0.366 (1 < 0.40),
#                            so 0.30 keeps every one with a margin; on the normal/templates
#                            (Colin27, MNI152) it drops the vertex cap (Colin27 slice at 0.15 with
#                            P(tumour) 0.91) and keeps the upper convexity, where tumours occur.
REFERENCE_QUANTILE = 0.8  # "the largest slice" = the 80th percentile of the non-empty slices' head
#                            areas: a few full-frame noise slices (3 TCGA-LGG training cases end in
#                            2-3 slices whose "head" fills 93-98% of the frame) must not shrink every
#                            real slice's share
MIN_HEAD_AREA = 0.02  # a slice with less head than this share of its pixels is (almost) empty
#                            (a definition, not fitted: a single 2D brain image here fills >= 15%
#                            of its frame, so no real one comes near it)
CONFIRM_MIN_SLICES = 10  # neighbour confirmation for stacks of at least this many slices. A full
#                            axial series has >= 20 (TCGA-LGG pseudo-volumes 20-88, TCIA-BTP 22 +
#                            padding, clinical 5 mm series ~25); fewer slices are a handful of
#                            chosen images whose neighbours need not be adjacent anatomy, and each
#                            votes alone. The shortest tumour run in the TCGA-LGG training patients'
#                            masks is 3 slices, so asking for 2 adjacent slices loses none.


def head_area(slices01: np.ndarray) -> np.ndarray:
    """Per slice, the share of its pixels inside the head: the largest connected region whose 3x3
    mean is above HEAD_THRESHOLD (lower for a dim stack), after a 1-pixel opening, holes filled. slices01: (N, H, W) or (N, C, H, W)
    (channels averaged) or one (H, W) slice, intensities in [0, 1]."""
    a = np.asarray(slices01, dtype=np.float32)
    if a.ndim == 2:
        a = a[None]
    if a.ndim == 4:
        a = a.mean(axis=1)
    if a.ndim != 3:
        raise ValueError(f"expected slices (N, H, W), got shape {a.shape}")
    step = max(1, max(a.shape[1:]) // 128)  # ~128 px is plenty to measure an area
    a = np.nan_to_num(a[:, ::step, ::step])
    tissue = a[a > 0.02]
    thr = min(HEAD_THRESHOLD, 0.5 * float(np.median(tissue))) if tissue.size else HEAD_THRESHOLD
    out = np.zeros(len(a), dtype=np.float64)
    for i, img in enumerate(a):
        m = ndi.uniform_filter(img, 3) > thr  # 3x3 mean first: speckle neither makes nor breaks the mask
        if not m.any():
            continue
        m = ndi.binary_fill_holes(ndi.binary_opening(m))
        lab, n = ndi.label(m)
        if n:
            out[i] = float(np.bincount(lab.ravel())[1:].max()) / m.size
    return out


def tissue_fraction(slices01: np.ndarray) -> np.ndarray:
    """Per slice, head area relative to the volume's large slices (the REFERENCE_QUANTILE of the
    non-empty slices' areas; capped at 1.0); 0 for a slice that is (almost) empty. A single image:
    1.0, or 0.0 when (almost) empty."""
    area = head_area(slices01)
    filled = area[area >= MIN_HEAD_AREA]
    if not filled.size:
        return np.zeros_like(area)
    frac = np.minimum(1.0, area / float(np.quantile(filled, REFERENCE_QUANTILE)))
    frac[area < MIN_HEAD_AREA] = 0.0
    return frac


def votes(tissue: np.ndarray | None, n: int) -> np.ndarray:
    """Which of `n` slices vote: tissue >= TISSUE_MIN (all of them when tissue is unknown)."""
    if tissue is None:
        return np.ones(n, dtype=bool)
    t = np.asarray(tissue, dtype=np.float64)
    if t.shape != (n,):
        raise ValueError(f"tissue has shape {t.shape}, expected ({n},)")
    return t >= TISSUE_MIN


def slice_evidence(presence: np.ndarray, tissue: np.ndarray | None = None) -> np.ndarray:
    """Per-slice tumour evidence in [0, 1]: 0 on slices that do not vote; on voting slices of a
    stack of >= CONFIRM_MIN_SLICES, min(p[i], max(p of its voting neighbours)); else p[i]."""
    p = np.nan_to_num(np.asarray(presence, dtype=np.float64).ravel())
    n = len(p)
    v = votes(tissue, n)
    q = np.where(v, p, 0.0)
    if n < CONFIRM_MIN_SLICES:
        return q
    nb = np.zeros(n)
    nb[1:] = q[:-1]
    nb[:-1] = np.maximum(nb[:-1], q[1:])
    return np.minimum(q, nb)


def volume_score(presence: np.ndarray, tissue: np.ndarray | None = None) -> float:
    """The volume's P(tumour): the largest slice evidence (0.0 when no slice votes)."""
    e = slice_evidence(presence, tissue)
    return float(e.max()) if len(e) else 0.0


def key_order(presence: np.ndarray, tissue: np.ndarray | None = None) -> np.ndarray:
    """Slice indices, most telling first: by evidence, then by P(tumour) on voting slices, then by
    P(tumour) (so an excluded skull-base slice comes last, not first)."""
    p = np.nan_to_num(np.asarray(presence, dtype=np.float64).ravel())
    v = votes(tissue, len(p))
    e = slice_evidence(p, tissue)
    return np.lexsort((-p, -np.where(v, p, -1.0), -e))


def relevance_weights(presence: np.ndarray | None, n: int, tissue: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
    """Volume aggregation weights from per-slice P(tumour) and tissue fractions: the slice evidence
    (tissue-gated, neighbour-confirmed) ** RELEVANCE_SHARPEN on slices whose evidence reaches
    PRESENCE_THRESHOLD, normalised. Returns (weights, any_relevant); uniform weights when no slice
    is relevant (the verdict then reads "no tumour")."""
    if presence is None or len(presence) == 0:
        return np.full(n, 1.0 / max(n, 1)), True
    e = slice_evidence(presence, tissue)
    relevant = bool((e >= PRESENCE_THRESHOLD).any())
    if not relevant:
        return np.full(n, 1.0 / n), False
    w = np.where(e >= PRESENCE_THRESHOLD, e, 0.0) ** RELEVANCE_SHARPEN
    return w / w.sum(), True


def volume_presence(p: np.ndarray, tissue: np.ndarray | None = None) -> float:
    """Volume-level P(tumour): the largest slice evidence (slices with little head do not vote; in
    a series a slice needs a neighbour that agrees). Equal to p for a single non-empty image;
    >= PRESENCE_THRESHOLD exactly when `relevance_weights` finds a relevant slice."""
    return volume_score(p, tissue)


def rule_text(threshold: float = PRESENCE_THRESHOLD) -> str:
    """The rule in one sentence, with the numbers the code uses (for the UI and reports)."""
    return (
        f"Slices with less than {TISSUE_MIN:.0%} of the head area of the volume's large slices "
        f"(vertex, edge of the scan, empty slices) do not vote; in series of {CONFIRM_MIN_SLICES} or more slices a slice "
        f"counts as tumour evidence only when a neighbouring slice agrees "
        f"(min of its P(tumour) and its best neighbour's); the volume shows tumour when that "
        f"evidence reaches {threshold:g} on some slice."
    )
