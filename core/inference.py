"""Batched slice inference, slice -> volume aggregation, uncertainty and "refer to a human".

    from core.inference import Predictor
    predictor = Predictor.from_active()              # active version of each task; notes for missing ones
    pred = predictor.predict_volume(volume)          # a core.io.Volume (a 2D image is one slice)
    pred.tasks["tumor_type"].label, pred.refer, pred.to_json()

The cascade for a volume:
1. `presence` on every axial slice: P(tumour) per slice = the slice's relevance.
2. `tumor_type` on the slices that weigh in the verdict; the volume's type is the relevance-weighted
   mean of their probabilities (weights = P(tumour) ** RELEVANCE_SHARPEN on slices with
   P(tumour) >= PRESENCE_THRESHOLD; uniform over all slices when none is relevant, and then the
   verdict reads "no tumour detected").
3. `grade` when the type verdict is glioma and the grade model's declared sequences are in the
   scan (or whenever asked with `tasks=`).

Models load once, are shared across threads (one lock per model around every forward, the same
lock `core.explain` holds while its hooks are on the model) and run under torch.inference_mode in
batches, channels_last, with flip test-time averaging when the card's metrics used it. Precision
"auto": on a CPU, int8 when the version has a calibration whose labels matched fp32 on >= 99.5% of
real images (`core.quantize`), else bf16 weights on CPUs with AMX, else fp32; on CUDA, autocast.
A bf16/fp16 fast path is kept only when it agrees with fp32 on a probe batch.
"""
from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

log = logging.getLogger(__name__)

TASKS = ("presence", "tumor_type", "grade")
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")

# ---- decision constants (stated in the UI; change them here only) --------------------------------
PRESENCE_THRESHOLD = 0.5      # a slice is "relevant" (shows tumour) when P(tumour) >= this
RELEVANCE_SHARPEN = 2.0       # volume weights = P(tumour) ** this (sharpens towards tumour slices)
ENTROPY_REFER = 0.6           # refer when normalised predictive entropy (H / log K) exceeds this
MARGIN_REFER = 0.2            # refer when top-1 minus top-2 probability is below this
BALD_REFER = 0.05             # refer when MC-dropout mutual information (nats) exceeds this
AGREEMENT_TOLERANCE = 0.05    # "auto" precision: largest |p_fast - p_fp32| accepted on the probe
INT8_MIN_AGREEMENT = 0.995    # "auto" int8: share of fp32 labels kept on real images at calibration
KEY_SLICES = 3                # how many key slices a volume reports
MC_MAX_SLICES = 16            # MC-dropout runs on at most this many (most relevant) slices
GLIOMA = "glioma"
NO_TUMOUR_VERDICT = "no tumour detected"

# image-statistics OOD checks (calibrated on Figshare, TCGA-LGG and TCIA slices: MRI has a dark
# background round the head, a dark border and little pixel-level noise)
OOD_MIN_BACKGROUND = 0.08     # fraction of pixels < 0.05 after normalisation (MRI: 0.2-0.8)
OOD_MAX_BORDER = 0.30         # mean intensity of the outer 8% frame (MRI: median 0.02-0.04)
OOD_MAX_NOISE = 0.75          # std(high-pass) / std(image) (MRI: 0.1-0.4; white noise: 0.94)
OOD_MAX_COLOUR = 0.06         # mean |channel - grey| of an RGB image whose channels are not sequences


# ----------------------------------------------------------------------------------- results
@dataclass
class TaskResult:
    task: str
    classes: list[str]
    probabilities: list[float]              # calibrated (card temperature), volume level
    label: str
    uncertainty: dict[str, float]           # entropy, entropy_norm, margin, max_prob, (bald)
    refer: bool
    refer_reasons: list[str] = field(default_factory=list)
    model_version: str = ""
    n_slices_used: int = 0
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class VolumePrediction:
    tasks: dict[str, TaskResult]
    slices: list[dict]                      # [{"index", "presence", "<task>": [probs] | None}]
    key_slices: list[int]
    verdict: str
    refer: bool
    refer_reasons: list[str]
    ood: dict[str, Any]
    model_versions: dict[str, str]
    timings_ms: dict[str, float]
    precision: dict[str, str] = field(default_factory=dict)
    device: str = "cpu"
    notes: list[str] = field(default_factory=list)
    source: str | None = None
    n_slices: int = 0
    shape: tuple[int, ...] = ()

    def class_index(self, task: str) -> int | None:
        r = self.tasks.get(task)
        return None if r is None else r.classes.index(r.label)

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "verdict": self.verdict,
            "refer": self.refer,
            "refer_reasons": list(self.refer_reasons),
            "tasks": {k: v.to_dict() for k, v in self.tasks.items()},
            "slices": self.slices,
            "key_slices": list(self.key_slices),
            "n_slices": self.n_slices,
            "shape": list(self.shape),
            "ood": self.ood,
            "model_versions": dict(self.model_versions),
            "timings_ms": {k: round(float(v), 2) for k, v in self.timings_ms.items()},
            "precision": dict(self.precision),
            "device": self.device,
            "notes": list(self.notes),
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(_jsonable(self.to_dict()), indent=indent)


def _jsonable(o):
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, (np.floating, float)):
        v = float(o)
        return v if math.isfinite(v) else None
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, np.bool_):
        return bool(o)
    return o


# ------------------------------------------------------------------------------- numerics
def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / max(float(temperature), 1e-6)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float64)


def entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=-1)


def uncertainty(p: Sequence[float], mc_probs: np.ndarray | None = None) -> dict[str, float]:
    """Predictive entropy (nats and normalised by log K), top-1 minus top-2 margin, max prob;
    with MC-dropout samples (T, K): BALD = H(mean) - mean(H) (mutual information)."""
    p = np.asarray(p, dtype=np.float64)
    k = p.shape[-1]
    srt = np.sort(p)[::-1]
    h = float(entropy(p))
    out = {"entropy": h, "entropy_norm": h / math.log(k) if k > 1 else 0.0,
           "margin": float(srt[0] - (srt[1] if k > 1 else 0.0)), "max_prob": float(srt[0])}
    if mc_probs is not None and len(mc_probs):
        mc = np.asarray(mc_probs, dtype=np.float64)
        out["bald"] = float(max(0.0, entropy(mc.mean(0)) - entropy(mc).mean()))
        out["mc_std"] = float(mc.std(0).max())
    return out


def refer_reasons(u: Mapping[str, float]) -> list[str]:
    reasons = []
    if u.get("entropy_norm", 0.0) > ENTROPY_REFER:
        reasons.append(f"high uncertainty: normalised entropy {u['entropy_norm']:.2f} > {ENTROPY_REFER}")
    if u.get("margin", 1.0) < MARGIN_REFER:
        reasons.append(f"close call: top-2 margin {u['margin']:.2f} < {MARGIN_REFER}")
    if "bald" in u and u["bald"] > BALD_REFER:
        reasons.append(f"model disagreement under MC-dropout: BALD {u['bald']:.3f} > {BALD_REFER}")
    return reasons


def relevance_weights(presence: np.ndarray | None, n: int) -> tuple[np.ndarray, bool]:
    """Volume aggregation weights from per-slice P(tumour): p ** RELEVANCE_SHARPEN, normalised.
    Returns (weights, any_relevant); uniform weights when no slice reaches PRESENCE_THRESHOLD."""
    if presence is None or len(presence) == 0:
        return np.full(n, 1.0 / max(n, 1)), True
    p = np.asarray(presence, dtype=np.float64)
    relevant = bool((p >= PRESENCE_THRESHOLD).any())
    if not relevant:
        return np.full(n, 1.0 / n), False
    w = np.where(p >= PRESENCE_THRESHOLD, p, 0.0) ** RELEVANCE_SHARPEN
    return w / w.sum(), True


def volume_presence(p: np.ndarray) -> float:
    """Volume-level P(tumour): mean of the top-k slice probabilities (k ~ 2% of slices, 1..5),
    robust to one spurious slice in a long volume, equal to p for a single image."""
    p = np.sort(np.asarray(p, dtype=np.float64))[::-1]
    k = int(min(5, max(1, math.ceil(0.02 * len(p)))))
    return float(p[:k].mean())


# ------------------------------------------------------------------------- image statistics
def image_ood(slices01: np.ndarray, volume=None) -> dict[str, Any]:
    """Cheap "does this look like a brain MRI" checks on normalised slices (N, H, W) in [0, 1]
    (plus the Volume's modality and colour when given). Returns {"score" in [0, 1], "is_ood",
    "reasons", "stats"}. Failing two of the three picture checks, or any of modality / colour /
    empty, makes it OOD."""
    from scipy.ndimage import uniform_filter

    reasons: list[str] = []
    hard = False
    stats: dict[str, float] = {}
    a = np.asarray(slices01, dtype=np.float32)
    if a.ndim == 2:
        a = a[None]
    if a.ndim == 4:                            # (N, C, H, W): check the first channel
        a = a[:, 0]
    fg = (a > 0.05).reshape(len(a), -1).mean(1) if len(a) else np.zeros(0)
    informative = np.flatnonzero(fg >= 0.05)
    if volume is not None and str(getattr(volume, "modality", "MR")).upper() not in ("MR", "UNKNOWN", "OT", ""):
        reasons.append(f"modality {volume.modality}: the models were trained on MRI only")
        hard = True
    if volume is not None:
        ch = getattr(volume, "channels", {}) or {}
        if {"red", "green", "blue"} <= set(ch):
            r, g, b = (np.asarray(ch[k], dtype=np.float32) for k in ("red", "green", "blue"))
            scale = max(float(max(r.max(), g.max(), b.max())), 1e-6)
            colour = float((np.abs(r - g) + np.abs(g - b) + np.abs(r - b)).mean() / (3 * scale))
            stats["colour"] = colour
            if colour > OOD_MAX_COLOUR:
                reasons.append("colour image: MRI is greyscale (if the colour channels are MR "
                               "sequences, name them with sequences=...)")
                hard = True
    if len(informative) == 0:
        reasons.append("the image is (almost) empty")
        return {"score": 1.0, "is_ood": True, "reasons": reasons, "stats": stats}
    pick = informative[np.linspace(0, len(informative) - 1, min(16, len(informative))).round().astype(int)]
    bg, border, noise = [], [], []
    for i in pick:
        img = a[i]
        s = max(1, max(img.shape) // 128)
        img = img[::s, ::s]
        h, w = img.shape
        b = max(1, int(0.08 * min(h, w)))
        frame = np.concatenate([img[:b].ravel(), img[-b:].ravel(), img[:, :b].ravel(), img[:, -b:].ravel()])
        bg.append(float((img < 0.05).mean()))
        border.append(float(frame.mean()))
        noise.append(float(np.std(img - uniform_filter(img, 3)) / (np.std(img) + 1e-6)))
    stats.update(background=float(np.median(bg)), border=float(np.median(border)),
                 noise=float(np.median(noise)))
    fails = []
    if stats["background"] < OOD_MIN_BACKGROUND:
        fails.append(f"almost no dark background ({stats['background']:.2f} < {OOD_MIN_BACKGROUND})")
    if stats["border"] > OOD_MAX_BORDER:
        fails.append(f"bright image border ({stats['border']:.2f} > {OOD_MAX_BORDER})")
    if stats["noise"] > OOD_MAX_NOISE:
        fails.append(f"noise-like texture ({stats['noise']:.2f} > {OOD_MAX_NOISE})")
    if len(fails) >= 2:
        reasons.append("does not look like a brain MRI: " + "; ".join(fails))
    score = min(1.0, len(fails) / 3 + (1.0 if hard else 0.0))
    return {"score": float(score), "is_ood": bool(hard or len(fails) >= 2), "reasons": reasons, "stats": stats}


def energy_score(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Energy OOD score per row: -T * logsumexp(logits / T) (higher = less familiar)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    m = z.max(-1, keepdims=True)
    return -temperature * (m[..., 0] + np.log(np.exp(z - m).sum(-1)))


# ------------------------------------------------------------------------------- precision
def _bf16_cpu_ok() -> bool:
    """bf16 pays on a CPU only with AMX tiles: with AVX512-BF16 alone, fp32 + channels_last was
    faster for our models on this project's machines (see `python -m core bench`)."""
    import torch

    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        flags = ""
    return bool(torch.backends.mkldnn.is_available()) and "amx_bf16" in flags


def _probe_batch(spec, n: int = 8) -> "Any":
    """Deterministic brain-like probe images (bright disc on black with blobs) for the agreement
    check: cheap, and exercises the models on inputs shaped like their training data."""
    from core.preprocess import model_input

    rng = np.random.default_rng(1234)
    s = 96
    yy, xx = np.mgrid[0:s, 0:s] / s
    imgs = []
    for i in range(n):
        disc = (((yy - 0.5) / 0.42) ** 2 + ((xx - 0.5) / 0.36) ** 2 < 1).astype(np.float32)
        tex = rng.random((s, s)).astype(np.float32)
        img = disc * (0.35 + 0.3 * tex)
        cy, cx, r = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.05, 0.15)
        img += 0.5 * (((yy - cy) ** 2 + (xx - cx) ** 2) < r * r) * disc
        imgs.append(np.clip(img, 0, 1))
    return model_input(np.stack(imgs), spec)


def fold_batchnorm(model):
    """Fold each eval-mode BatchNorm into the convolution before it (inside nn.Sequential blocks):
    same outputs, one pass less over every feature map (~10-15% faster on a CPU). Inference only:
    the training code keeps the unfolded model."""
    import torch
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for block in [m for m in model.modules() if isinstance(m, torch.nn.Sequential)]:
        names = list(block._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = block._modules[a], block._modules[b]
            if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d) \
                    and conv.out_channels == bn.num_features:
                block._modules[a] = fuse_conv_bn_eval(conv, bn)
                block._modules[b] = torch.nn.Identity()
    return model


class TaskModel:
    """One loaded task model prepared for fast, thread-safe inference."""

    def __init__(self, loaded, device, precision: str = "auto", batch_size: int = 64):
        import torch

        self.loaded = loaded
        self.task = loaded.task
        self.spec = loaded.spec
        self.classes = list(loaded.classes)
        self.temperature = float(loaded.temperature or 1.0)
        self.card = loaded.card or {}
        self.ref = loaded.ref if getattr(loaded, "version", "") else f"{loaded.task}@unversioned"
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.lock = threading.RLock()
        self.note = ""
        # the card's metrics average the logits of each slice and its mirror image (flip test-time
        # augmentation): run the same, so the app delivers what the card measured
        self.tta_flip = bool((self.card.get("recipe") or {}).get("tta", False))
        with torch.no_grad():
            fp32 = fold_batchnorm(copy.deepcopy(loaded.model).to(self.device).eval())
            if self.device.type == "cpu":      # oneDNN's fast path; inputs are made channels_last too
                fp32 = fp32.to(memory_format=torch.channels_last)
            for p in fp32.parameters():        # inference and CAM never need weight gradients
                p.requires_grad_(False)
        self.fp32 = fp32
        self.model, self.dtype, self.autocast = fp32, torch.float32, None
        self.precision = "fp32"
        want = (precision or "auto").lower()
        if want not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if want != "fp32":
            self._setup_fast(want)

    # -- precision
    def _setup_fast(self, want: str) -> None:
        import torch

        dev = self.device.type
        if want == "int8" and dev != "cpu":
            raise ValueError("int8 is for CPUs (x86 kernels)")
        if dev == "cpu":
            if want == "fp16":
                raise ValueError("fp16 is for CUDA; use bf16 on a CPU")
            int8 = self._int8_model(required=want == "int8") if want in ("auto", "int8") else None
            if int8 is not None:
                cand = (int8, torch.float32, None, "int8")
            elif want == "auto" and not _bf16_cpu_ok():
                self.note = self.note or "no AMX on this CPU: fp32 (faster than bf16 here)"
                return
            else:
                with torch.no_grad():
                    fast = copy.deepcopy(self.fp32).to(torch.bfloat16).to(memory_format=torch.channels_last)
                cand = (fast, torch.bfloat16, None, "bf16")
        elif dev == "cuda":
            if want == "auto":
                want = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
            dt = torch.bfloat16 if want == "bf16" else torch.float16
            self.fp32 = self.fp32.to(memory_format=torch.channels_last)
            cand = (self.fp32, torch.float32, dt, want)
        else:  # mps and others: fp32 only (auto), explicit request honoured via autocast if possible
            if want == "auto":
                self.note = f"{dev}: fp32"
                return
            dt = torch.bfloat16 if want == "bf16" else torch.float16
            cand = (self.fp32, torch.float32, dt, want)
        if cand[3] == "int8":   # judged at calibration on real images (the card), not on the probe batch
            self.agreement_probe = (self.card.get("int8") or {}).get("agreement_with_fp32") or {}
            self.model, self.dtype, self.autocast, self.precision = cand
            return
        prev = (self.model, self.dtype, self.autocast, self.precision)
        self.model, self.dtype, self.autocast, self.precision = cand
        agree = self.agreement()
        self.agreement_probe = agree
        if want == "auto" and not agree["ok"]:
            self.model, self.dtype, self.autocast, self.precision = prev
            self.note = (f"{cand[3]} disagreed with fp32 on the probe batch "
                         f"(max |dp| {agree['max_abs_diff']:.3f}): fp32")
        elif not agree["ok"]:
            self.note = f"{cand[3]} differs from fp32 on the probe batch (max |dp| {agree['max_abs_diff']:.3f})"

    def _int8_model(self, required: bool):
        """The int8 model from the version's calibration (`python -m core quantize`), or None (with
        a note; an error when `required`) when there is none, it was altered, there are no x86
        kernels, or (unless `required`) it kept fewer than INT8_MIN_AGREEMENT of fp32's labels."""
        import torch

        from core import quantize
        from model_zoo.registry import sha256_file

        info = self.card.get("int8") or {}
        folder = getattr(self.loaded, "path", None)
        f = Path(folder) / info.get("file", quantize.OBSERVERS_FILE) if folder and info else None
        why = ""
        if not quantize.available():
            why = "no x86 int8 kernels in this torch build"
        elif f is None or not f.is_file():
            why = f"no int8 calibration (run `python -m core quantize {self.ref}`)"
        elif sha256_file(f) != info.get("sha256"):
            why = f"{f.name} does not match the card's sha256"
        elif not required:
            kept = ((info.get("agreement_with_fp32") or {}).get("identical_labels")) or 0.0
            if kept < INT8_MIN_AGREEMENT:
                why = f"int8 kept {100 * kept:.1f}% of fp32 labels at calibration (< {100 * INT8_MIN_AGREEMENT:.1f}%)"
        if why:
            if required:
                raise ValueError(f"{self.ref}: {why}")
            self.note = f"{why}: fp32"
            return None
        observers = torch.load(f, map_location="cpu", weights_only=True)
        return quantize.quantized(self.fp32, observers, _probe_batch(self.spec, 1))

    def explainable(self):
        """(model, dtype, autocast) that Grad-CAM hooks into: the fast model, or fp32 when the fast
        one has no gradients (int8)."""
        import torch

        if self.precision == "int8":
            return self.fp32, torch.float32, None
        return self.model, self.dtype, self.autocast

    def agreement(self, x=None) -> dict:
        """Compare the current precision with fp32 on `x` (default: the probe batch)."""
        x = _probe_batch(self.spec) if x is None else x
        fast = softmax(self.logits(x), self.temperature)
        ref = softmax(self.logits(x, fp32=True), self.temperature)
        diff = float(np.abs(fast - ref).max()) if len(x) else 0.0
        same = float((fast.argmax(1) == ref.argmax(1)).mean()) if len(x) else 1.0
        return {"ok": diff <= AGREEMENT_TOLERANCE and same == 1.0, "max_abs_diff": diff,
                "label_agreement": same}

    # -- forward
    def _run(self, model, x, dtype, autocast):
        import torch

        xb = x.to(self.device, non_blocking=True)
        if self.device.type != "mps":
            xb = xb.contiguous(memory_format=torch.channels_last)
        xb = xb.to(dtype)
        with torch.autocast(self.device.type, dtype=autocast) if autocast is not None else contextlib.nullcontext():
            if self.tta_flip:   # one batch holds the slices and their mirror images: fewer, larger kernels
                both = model(torch.cat([xb, torch.flip(xb, dims=[3])]))
                out = (both[:len(xb)] + both[len(xb):]) / 2
            else:
                out = model(xb)
        return out.float().cpu().numpy()

    def logits(self, x, fp32: bool = False, mc_dropout: bool = False) -> np.ndarray:
        """Logits (N, K) float32 for a model-input tensor (N, C, S, S), in batches."""
        import torch

        model, dtype, ac = (self.fp32, torch.float32, None) if fp32 else (self.model, self.dtype, self.autocast)
        outs = []
        with self.lock:
            dropouts = [m for m in model.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)] \
                if mc_dropout else []
            try:
                for m in dropouts:
                    m.train()
                with torch.inference_mode():
                    for i in range(0, len(x), self.batch_size):
                        outs.append(self._run(model, x[i:i + self.batch_size], dtype, ac))
            finally:
                for m in dropouts:
                    m.eval()
        if not outs:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        return np.concatenate(outs)

    def has_dropout(self) -> bool:
        import torch

        return any(isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0 for m in self.model.modules())

    def probabilities(self, x) -> tuple[np.ndarray, np.ndarray]:
        lg = self.logits(x)
        return softmax(lg, self.temperature), lg

    @property
    def sequences(self) -> list[str] | None:
        seqs = (self.card.get("input") or {}).get("sequences")
        return [str(s) for s in seqs] if seqs else None


# -------------------------------------------------------------------------------- Predictor
class Predictor:
    """Loaded task models + the cascade. Thread-safe; build once (st.cache_resource) and share."""

    def __init__(self, models: Mapping[str, Any], device: Any = None, precision: str = "auto",
                 batch_size: int = 64, mc_passes: int = 0, notes: Iterable[str] = ()):
        import torch

        from core.config import get_settings
        from core.devices import select_device

        if device is None or isinstance(device, str):
            device = select_device(device or get_settings().device)
        self.device = torch.device(device)
        self.precision_request = precision
        self.mc_passes = int(mc_passes)
        self.notes: list[str] = list(notes)
        self.models: dict[str, TaskModel] = {}
        for task, loaded in models.items():
            if loaded is None:
                continue
            if not getattr(loaded, "task", ""):
                loaded.task = task
            self.models[task] = TaskModel(loaded, self.device, precision, batch_size)
        by_note: dict[str, list[str]] = {}     # one line per note, e.g. "presence, grade: fp32"
        for task, tm in self.models.items():
            if tm.note:
                by_note.setdefault(tm.note, []).append(task)
        self.notes += [f"{', '.join(tasks)}: {note}" for note, tasks in by_note.items()]

    # -- construction
    @classmethod
    def from_refs(cls, refs: Mapping[str, str], **kw) -> "Predictor":
        """refs: {task: "task@version" | "task@active"}; missing or broken ones become notes."""
        from model_zoo.checkpoints import load_checkpoint

        loaded, notes = {}, list(kw.pop("notes", ()))
        for task, ref in refs.items():
            try:
                loaded[task] = load_checkpoint(ref)
            except (KeyError, FileNotFoundError) as exc:
                notes.append(f"{task}: no model ({str(exc).strip(chr(39))}); task skipped")
            except Exception as exc:  # noqa: BLE001 - one broken checkpoint must not sink the others
                notes.append(f"{task}: {ref} could not be loaded ({type(exc).__name__}: {exc}); task skipped")
        return cls(loaded, notes=notes, **kw)

    @classmethod
    def from_active(cls, tasks: Iterable[str] = TASKS, overrides: Mapping[str, str] | None = None,
                    **kw) -> "Predictor":
        """The active version of each task (user override, shipped ACTIVE, else newest); tasks
        without any checkpoint are skipped with a note in `predictor.notes`."""
        refs = {t: f"{t}@active" for t in tasks}
        refs.update(overrides or {})
        return cls.from_refs(refs, **kw)

    # -- info
    @property
    def tasks(self) -> list[str]:
        return [t for t in TASKS if t in self.models] + [t for t in self.models if t not in TASKS]

    @property
    def model_versions(self) -> dict[str, str]:
        return {t: m.ref for t, m in self.models.items()}

    @property
    def precision(self) -> dict[str, str]:
        return {t: m.precision for t, m in self.models.items()}

    def model(self, task: str) -> TaskModel:
        try:
            return self.models[task]
        except KeyError:
            raise KeyError(f"no {task} model loaded (have {sorted(self.models)})") from None

    # -- slices
    def predict_slices(self, task: str, slices: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities (N, K) for slices (N, H, W) / (N, C, H, W) in [0, 1]."""
        from core.preprocess import model_input

        tm = self.model(task)
        return tm.probabilities(model_input(slices, tm.spec))[0]

    def task_slices(self, task: str, volume, base: np.ndarray, sequences: Sequence[str] | None,
                     forced: bool) -> tuple[np.ndarray | None, str]:
        """The pixels `task`'s model reads: its declared sequences stacked (N, C, H, W) when the scan
        has them, the active channel otherwise. (None, reason) when a multi-sequence model's inputs
        are missing and the task was not forced."""
        from core.preprocess import slices as _slices

        tm = self.models[task]
        want = tm.sequences
        if volume is None or not want:
            return base, ""
        have = list(getattr(volume, "channels", {}) or {})
        if all(s in have for s in want):
            if len(want) == 1:
                return _slices(volume, "axial", channel=want[0]), ""
            return np.stack([_slices(volume, "axial", channel=s) for s in want], axis=1), ""
        if tm.spec.in_channels == 1 or len(want) == 1:
            return base, f"{task}: the model was trained on {want[0]}; the scan has {have}: used {have[0] if have else 'the image'}"
        missing = [s for s in want if s not in have]
        msg = (f"{task} needs sequences {', '.join(want)} (missing {', '.join(missing)}); "
               f"name the channels of multi-channel input with sequences=")
        if not forced:
            return None, msg
        colour = [c for c in ("red", "green", "blue") if c in have]
        if len(colour) == len(want):
            return np.stack([_slices(volume, "axial", channel=c) for c in colour], axis=1), \
                msg + "; ran on the red, green, blue channels as asked (substitute inputs)"
        return base, msg + "; ran on the active channel replicated as asked (substitute inputs)"

    def predict_volume(self, volume, tasks: Iterable[str] | None = None, mc_passes: int | None = None,
                       source: str | None = None, every_slice: bool = False) -> VolumePrediction:
        """Run the cascade on a `Volume` (or an array of slices (N, H, W) in [0, 1]).

        tasks: run exactly these tasks whatever the cascade decides (default: the cascade).
        mc_passes: MC-dropout passes for BALD (default: the predictor's, 0 = off).
        every_slice: run tumor_type and grade on every slice. By default they read only the slices
            that weigh in the verdict (P(tumour) >= PRESENCE_THRESHOLD; all slices when none does):
            the verdict is the same, and the other slices get None (the type and grade models were
            trained on tumour slices only, so their output there means nothing).
        """
        from core.preprocess import slices as _slices

        t_all = time.perf_counter()
        timings: dict[str, float] = {}
        notes: list[str] = list(self.notes)
        forced = None if tasks is None else [t for t in tasks]
        mc = self.mc_passes if mc_passes is None else int(mc_passes)
        if forced is not None:
            unknown = [t for t in forced if t not in self.models]
            for t in unknown:
                notes.append(f"{t}: asked for but no model is loaded")
        t0 = time.perf_counter()
        if isinstance(volume, np.ndarray):
            base = np.asarray(volume, dtype=np.float32)
            base = base[None] if base.ndim == 2 else base
            vol = None
        else:
            vol = volume
            base = _slices(volume, "axial")
            source = source or (getattr(volume, "meta", None) or {}).get("source")
        n = int(base.shape[0])
        if n == 0:
            raise ValueError("the scan has no slices")
        timings["preprocess"] = (time.perf_counter() - t0) * 1e3

        t0 = time.perf_counter()
        ood = image_ood(base, vol)
        timings["ood"] = (time.perf_counter() - t0) * 1e3

        per_slice: list[dict] = [{"index": i} for i in range(n)]
        results: dict[str, TaskResult] = {}
        run = (lambda t: t in self.models and (forced is None or t in forced))
        inputs = _InputCache()

        # 1. presence
        presence = None
        if "presence" in self.models:   # always: it weights the other tasks; reported when asked
            t0 = time.perf_counter()
            tm = self.models["presence"]
            x, why = self.task_slices("presence", vol, base, None, True)
            if why:
                notes.append(why)
            xt = inputs.get(x, tm.spec)
            pp, lg = tm.probabilities(xt)
            t_idx = tm.classes.index("tumor") if "tumor" in tm.classes else len(tm.classes) - 1
            presence = pp[:, t_idx]
            en = energy_score(lg, tm.temperature)
            ood["energy"] = float(np.median(en))
            thr = ((tm.card.get("ood") or {}).get("energy_threshold"))
            if thr is not None and ood["energy"] > float(thr):
                ood["is_ood"] = True
                ood["score"] = max(ood["score"], 1.0)
                ood["reasons"].append(f"presence model energy {ood['energy']:.2f} > training limit {float(thr):.2f}")
            for i in range(n):
                per_slice[i]["presence"] = float(presence[i])
                per_slice[i]["presence_probabilities"] = [float(v) for v in pp[i]]
            pv = volume_presence(presence)
            probs = [0.0] * len(tm.classes)
            probs[t_idx] = pv
            other = [j for j in range(len(tm.classes)) if j != t_idx]
            for j in other:
                probs[j] = (1.0 - pv) / len(other)
            mcp = None
            if mc > 0 and tm.has_dropout() and run("presence"):
                top = np.argsort(presence)[::-1][:MC_MAX_SLICES]
                mcp = np.stack([volume_presence(self._mc(tm, xt[top], 1)[0][:, t_idx]) for _ in range(mc)])
                mcp = np.stack([mcp if j == t_idx else (1 - mcp) / len(other) for j in range(len(tm.classes))], 1)
            if run("presence"):
                results["presence"] = self._result(tm, probs, n, mcp)
            timings["presence"] = (time.perf_counter() - t0) * 1e3
        weights, any_relevant = relevance_weights(presence, n)
        read = np.arange(n) if every_slice else np.flatnonzero(weights > 0)   # slices type/grade read

        # 2. tumour type
        verdict = ""
        if run("tumor_type"):
            t0 = time.perf_counter()
            tm = self.models["tumor_type"]
            x, why = self.task_slices("tumor_type", vol, base, None, True)
            if why:
                notes.append(why)
            agg, mcp = self._weighted(tm, inputs.get(x, tm.spec), weights, read, mc, per_slice)
            results["tumor_type"] = self._result(tm, agg, len(read), mcp)
            if presence is not None and not any_relevant:
                results["tumor_type"].note = NO_TUMOUR_VERDICT
            timings["tumor_type"] = (time.perf_counter() - t0) * 1e3

        # 3. grade
        if "grade" in self.models:
            tm = self.models["grade"]
            type_res = results.get("tumor_type")
            is_glioma = type_res is not None and type_res.label == GLIOMA and (presence is None or any_relevant)
            want_grade = (forced is not None and "grade" in forced) or (forced is None and is_glioma)
            if want_grade:
                x, why = self.task_slices("grade", vol, base, None, forced is not None)
                if why:
                    notes.append(why)
                if x is not None:
                    t0 = time.perf_counter()
                    agg, mcp = self._weighted(tm, inputs.get(x, tm.spec), weights, read, mc, per_slice)
                    res = self._result(tm, agg, len(read), mcp)
                    if "substitute inputs" in why:
                        res.refer = True
                        res.refer_reasons.append("grade ran on substitute inputs (declared sequences missing)")
                    results["grade"] = res
                    timings["grade"] = (time.perf_counter() - t0) * 1e3
            elif forced is None and type_res is not None and not is_glioma:
                notes.append("grade: not run (the type verdict is not glioma)")

        # verdict, OOD, refer
        if presence is not None and not any_relevant:
            verdict = NO_TUMOUR_VERDICT
        elif "tumor_type" in results:
            verdict = results["tumor_type"].label
            if "grade" in results:
                verdict += f" ({results['grade'].label})"
        elif "presence" in results:
            verdict = "tumour detected" if any_relevant else NO_TUMOUR_VERDICT
        if ood["is_ood"]:
            for r in results.values():
                r.refer = True
                r.refer_reasons.append("input looks unlike the training data: " + "; ".join(ood["reasons"]))
        all_reasons = []
        for t, r in results.items():
            all_reasons += [f"{t}: {why}" for why in r.refer_reasons]
        if not results:
            notes.append("no task model is available: nothing was predicted")
        order = np.argsort(-(presence if presence is not None else weights), kind="stable")
        key = sorted(int(i) for i in order[:min(KEY_SLICES, n)])
        timings["total"] = (time.perf_counter() - t_all) * 1e3
        return VolumePrediction(
            tasks=results, slices=per_slice, key_slices=key, verdict=verdict,
            refer=any(r.refer for r in results.values()) or bool(ood["is_ood"]),
            refer_reasons=all_reasons, ood=ood,
            model_versions={t: self.models[t].ref for t in results},
            timings_ms=timings, precision={t: self.models[t].precision for t in results},
            device=str(self.device), notes=_dedupe(notes), source=source, n_slices=n,
            shape=tuple(getattr(vol, "shape", base.shape)))

    # -- helpers
    def _weighted(self, tm: TaskModel, x, weights: np.ndarray, read: np.ndarray, mc: int,
                  per_slice: list[dict]) -> tuple[np.ndarray, np.ndarray | None]:
        """`tm` on the model-input slices `x[read]`: per-slice probabilities into `per_slice` (None
        for unread slices), the relevance-weighted volume probabilities, and their MC-dropout
        samples (passes, K) when asked."""
        p = tm.probabilities(x[read])[0] if len(read) else np.zeros((0, len(tm.classes)))
        for i in range(len(per_slice)):
            per_slice[i][tm.task] = None
        for j, i in enumerate(read):
            per_slice[i][tm.task] = [float(v) for v in p[j]]
        w = weights[read]
        agg = (w[:, None] * p).sum(0)
        mcp = None
        if mc > 0 and tm.has_dropout():
            top = read[np.argsort(-w, kind="stable")[:MC_MAX_SLICES]]
            wt = weights[top] / max(weights[top].sum(), 1e-12)
            mcp = np.stack([(wt[:, None] * q).sum(0) for q in self._mc(tm, x[top], mc)])
        return agg, mcp

    @staticmethod
    def _mc(tm: TaskModel, x, passes: int) -> list[np.ndarray]:
        """`passes` MC-dropout samples of calibrated probabilities on model-input slices `x`."""
        return [softmax(tm.logits(x, mc_dropout=True), tm.temperature) for _ in range(passes)]

    def _result(self, tm: TaskModel, probs, n_used: int, mc_probs=None) -> TaskResult:
        p = np.asarray(probs, dtype=np.float64)
        p = p / max(p.sum(), 1e-12)
        u = uncertainty(p, mc_probs)
        reasons = refer_reasons(u)
        return TaskResult(task=tm.task, classes=list(tm.classes), probabilities=[float(v) for v in p],
                          label=tm.classes[int(p.argmax())], uncertainty=u, refer=bool(reasons),
                          refer_reasons=reasons, model_version=tm.ref, n_slices_used=int(n_used))


class _InputCache:
    """Model-input tensors of one prediction, one per (pixels, input spec): presence and tumor_type
    read the same slices at the same size, so the resize and normalisation run once."""

    def __init__(self):
        self._items: dict = {}

    def get(self, pixels: np.ndarray, spec):
        from core.preprocess import model_input

        key = (id(pixels), int(spec.input_size), int(getattr(spec, "in_channels", 3)),
               tuple(np.ravel(spec.mean).tolist()), tuple(np.ravel(spec.std).tolist()))
        hit = self._items.get(key)
        if hit is None or hit[0] is not pixels:     # the held pixels keep their id() unique
            hit = self._items[key] = (pixels, model_input(pixels, spec))
        return hit[1]


def _dedupe(items: list[str]) -> list[str]:
    seen, out = set(), []
    for s in items:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out
