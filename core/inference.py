"""Batched slice inference, slice -> volume aggregation, uncertainty and "refer to a human".

    from core.inference import Predictor
    predictor = Predictor.from_active()              # active version of each task
    pred = predictor.predict_volume(volume)          # a core.io.Volume (a 2D image is one slice)
    pred.tasks["tumor_type"].label, pred.refer, pred.to_json()

The cascade for a volume:
1. `presence` on every axial slice: P(tumour) per slice; `core.slice_votes` turns it into slice
   evidence (slices with little head do not vote; in a series a slice needs a neighbour that
   agrees). The volume's P(tumour) is the largest evidence.
2. `tumor_type` on the slices that weigh in the verdict; the volume's type is the relevance-weighted
   mean of their probabilities (weights = evidence ** RELEVANCE_SHARPEN on slices with
   evidence >= PRESENCE_THRESHOLD). When no slice is relevant the verdict reads "no tumour
   detected" and the cascade stops there; type and grade asked for with `tasks=` then run on all
   slices and come out "not_applicable".
3. `grade` when the type verdict is glioma and the grade model's declared sequences are in the
   scan (or whenever asked with `tasks=`).

Know when not to answer: every TaskResult has a `status` (ok | refer | cannot_assess |
not_validated | not_applicable). A task whose model cannot be found, loaded or verified (sha256),
and every task downstream of it (`core.tasks.downstream`), is "cannot_assess" with the reason; a
task whose active model's card does not show it beats chance (`core.validity`) is "not_validated"
and its model does not run. Neither has probabilities.

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

from core import slice_votes
from core.gate import GateResult, check_input, gate_slices
from core.feature_density import UnverifiedFile, load_density
from core.referral import ReferralRule
from core.sequences import ANY_SEQUENCE, canonical_sequence, find_channel, sequence_title
from core.tasks import TASK_TABLE, TASKS, downstream, task_title
from core.validity import model_validity

log = logging.getLogger(__name__)

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
CANNOT_ASSESS_VERDICT = "cannot assess"

# image-statistics OOD checks (calibrated on Figshare, TCGA-LGG and TCIA slices: MRI has a dark
# background round the head, a dark border and little pixel-level noise)
OOD_MIN_BACKGROUND = 0.08     # fraction of pixels < 0.05 after normalisation (MRI: 0.2-0.8)
OOD_MAX_BORDER = 0.30         # mean intensity of the outer 8% frame (MRI: median 0.02-0.04)
OOD_MAX_NOISE = 0.75          # std(high-pass) / std(image) (MRI: 0.1-0.4; white noise: 0.94)
OOD_MAX_COLOUR = 0.06         # mean |channel - grey| of an RGB image whose channels are not sequences


# ----------------------------------------------------------------------------------- results
# A task's status: "ok" or "refer" when it answered (following its refer flag); otherwise why it
# gives no answer.
OK, REFER = "ok", "refer"
CANNOT_ASSESS = "cannot_assess"     # its model cannot be loaded or verified, a task it needs gave no
                                    # answer, or the input was refused
NOT_VALIDATED = "not_validated"     # the active model's card does not show it beats chance
NOT_APPLICABLE = "not_applicable"   # asked for with tasks=, but no tumour was detected
NO_ANSWER = (CANNOT_ASSESS, NOT_VALIDATED, NOT_APPLICABLE)


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
    note: str = ""                          # for a task without an answer: the reason, in words
    withheld: str = ""                      # one of NO_ANSWER when the task gives no answer
    sequences: list[str] = field(default_factory=list)   # the sequence(s) its model read, e.g. ["flair"]

    @classmethod
    def unavailable(cls, task: str, status: str, reason: str, model_version: str = "") -> "TaskResult":
        """A task that gives no answer: no probabilities, no label, `status` and `reason` say why.
        A task that cannot be assessed asks for a human reader (refer); one without a validated
        model does not (it never has one, so every case would be referred)."""
        if status not in NO_ANSWER:
            raise ValueError(f"status must be one of {NO_ANSWER}, got {status!r}")
        cannot = status == CANNOT_ASSESS
        return cls(task=task, classes=[], probabilities=[], label="", uncertainty={}, refer=cannot,
                   refer_reasons=[reason] if cannot else [], model_version=model_version, note=reason,
                   withheld=status)

    @property
    def status(self) -> str:
        """ok | refer | cannot_assess | not_validated | not_applicable"""
        return self.withheld or (REFER if self.refer else OK)

    @property
    def answered(self) -> bool:
        return self.status in (OK, REFER)

    @property
    def read_on(self) -> str:
        """The sequence(s) read, in words: "FLAIR", "T1 pre-contrast + FLAIR + T1 post-contrast"."""
        return " + ".join(sequence_title(s) for s in self.sequences)

    def to_dict(self) -> dict:
        d = asdict(self)
        del d["withheld"]
        d["status"] = self.status
        return d


@dataclass
class VolumePrediction:
    """The cascade's result. Slices are counted from 0 in `slices[i]["index"]` and `key_slices`;
    people read "slice k of N" (k = index + 1), which the JSON gives as `slices[i]["number"]` and
    `key_slice_numbers`."""
    tasks: dict[str, TaskResult]
    slices: list[dict]                      # [{"index", "presence", "<task>": [probs] | None}]
    key_slices: list[int]                   # 0-based indices
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
        return None if r is None or r.label not in r.classes else r.classes.index(r.label)

    @property
    def status(self) -> str:
        """"cannot_assess" when no verdict can be given (the first task of the cascade that was
        run gives no answer, or nothing was run), else "refer" or "ok"."""
        if not self.tasks or not _leads(self.tasks):
            return CANNOT_ASSESS
        return REFER if self.refer else OK

    @property
    def unassessed(self) -> list[str]:
        """The tasks that were run but cannot be assessed: the result is incomplete."""
        return [t for t, r in self.tasks.items() if r.status == CANNOT_ASSESS]

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "status": self.status,
            "verdict": self.verdict,
            "refer": self.refer,
            "refer_reasons": list(self.refer_reasons),
            "tasks": {k: v.to_dict() for k, v in self.tasks.items()},
            "slices": [{**s, "number": int(s["index"]) + 1} for s in self.slices],
            "key_slices": list(self.key_slices),
            "key_slice_numbers": [int(k) + 1 for k in self.key_slices],
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


def relevance_weights(presence: np.ndarray | None, n: int,
                      tissue: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
    """Volume aggregation weights from per-slice P(tumour) and tissue fractions: the slice evidence
    of `core.slice_votes` (tissue-gated, neighbour-confirmed) ** RELEVANCE_SHARPEN on slices whose
    evidence reaches PRESENCE_THRESHOLD, normalised. Returns (weights, any_relevant); uniform
    weights when no slice is relevant (the verdict then reads "no tumour")."""
    if presence is None or len(presence) == 0:
        return np.full(n, 1.0 / max(n, 1)), True
    e = slice_votes.slice_evidence(presence, tissue)
    relevant = bool((e >= PRESENCE_THRESHOLD).any())
    if not relevant:
        return np.full(n, 1.0 / n), False
    w = np.where(e >= PRESENCE_THRESHOLD, e, 0.0) ** RELEVANCE_SHARPEN
    return w / w.sum(), True


def volume_presence(p: np.ndarray, tissue: np.ndarray | None = None) -> float:
    """Volume-level P(tumour): the largest slice evidence (`core.slice_votes`: slices with little
    head do not vote; in a series a slice needs a neighbour that agrees). Equal to p for a single
    non-empty image; >= PRESENCE_THRESHOLD exactly when `relevance_weights` finds a relevant slice."""
    return slice_votes.volume_score(p, tissue)


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


class _LayerReached(Exception):
    """Raised by a forward hook once the layer it reads has run (the rest is skipped)."""


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
        # the referral rule and the gate read the version's fitted feature density (verified)
        self.density = load_density(loaded)
        self.gate_density = load_density(loaded, "gate")
        self.referral = ReferralRule.from_card(self.card) if self.density is not None else None
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

    def fp32_logits_and_features(self, x) -> tuple[np.ndarray, np.ndarray]:
        """fp32 logits (N, K) and penultimate features (N, D): the input of the fp32 model's last
        Linear layer, caught on the same forward pass (averaged over the flip views like the
        logits). Always fp32: the feature densities are fitted in fp32, and int8 moves the features
        enough to double their Mahalanobis distance."""
        captured: list[np.ndarray] = []

        def catch(_module, inputs):
            f = inputs[0].dequantize() if inputs[0].is_quantized else inputs[0]
            f = f.float().flatten(1).cpu().numpy()
            captured.append((f[:len(f) // 2] + f[len(f) // 2:]) / 2 if self.tta_flip else f)

        linears = [m for m in self.fp32.modules() if type(m).__name__ == "Linear"]
        if not linears:                        # no penultimate layer to read: logits only
            return self.logits(x, fp32=True), np.zeros((len(x), 0), np.float32)
        with self.lock:                        # no other thread's forward may pass the hook
            handle = linears[-1].register_forward_pre_hook(catch)
            try:
                lg = self.logits(x, fp32=True)
            finally:
                handle.remove()
        feats = np.concatenate(captured) if captured else np.zeros((0, 0), np.float32)
        return lg, feats

    def layer_statistics(self, x, layer: str) -> np.ndarray:
        """Channel means and standard deviations (N, 2C) of the fp32 model's `layer` output: the
        texture-level evidence the input gate reads (noise, photographs, CT and phantoms differ from
        MRI there, while the last layer maps many of them near a class mean)."""
        import torch

        module = dict(self.fp32.named_modules())[layer]
        captured: list = []

        def catch(_module, _inputs, output):
            captured.append(torch.cat([output.mean((2, 3)), output.std((2, 3))], 1).float().cpu().numpy())
            raise _LayerReached        # the layers after it are not needed: stop the forward here

        with self.lock, torch.inference_mode():
            handle = module.register_forward_hook(catch)
            try:
                for i in range(0, len(x), self.batch_size):
                    xb = x[i:i + self.batch_size].to(self.device)
                    with contextlib.suppress(_LayerReached):
                        self.fp32(xb if self.device.type == "mps" else xb.contiguous(memory_format=torch.channels_last))
            finally:
                handle.remove()
        return np.concatenate(captured) if captured else np.zeros((0, 0), np.float32)

    def familiarity(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(distance, percentile) per row in this model's feature space, or None when the version
        has no fitted feature density (`python -m core calibrate`)."""
        if self.density is None or not len(features):
            return None
        return self.density.distance(features), self.density.percentile(features)

    @property
    def sequences(self) -> list[str] | None:
        """The card's input sequences in canonical names ("T1Gd" -> "t1post"; "grey" stays)."""
        seqs = (self.card.get("input") or {}).get("sequences")
        return [canonical_sequence(s) or str(s) for s in seqs] if seqs else None


# -------------------------------------------------------------------------------- Predictor
class Predictor:
    """Loaded task models + the cascade. Thread-safe; build once (st.cache_resource) and share."""

    def __init__(self, models: Mapping[str, Any], device: Any = None, precision: str = "auto",
                 batch_size: int = 64, mc_passes: int = 0, notes: Iterable[str] = (),
                 unavailable: Mapping[str, tuple[str, str]] | None = None):
        """models: {task: LoadedModel}. unavailable: {task: (ref, reason)} of the tasks asked for
        whose model could not be found, loaded or verified (see `from_refs`)."""
        import torch

        from core.config import get_settings
        from core.devices import select_device

        if device is None or isinstance(device, str):
            device = select_device(device or get_settings().device)
        self.device = torch.device(device)
        self.precision_request = precision
        self.mc_passes = int(mc_passes)
        self.notes: list[str] = list(notes)
        self.unavailable: dict[str, tuple[str, str]] = dict(unavailable or {})
        self.models: dict[str, TaskModel] = {}
        for task, loaded in models.items():
            if loaded is None:
                continue
            if not getattr(loaded, "task", ""):
                loaded.task = task
            try:
                self.models[task] = TaskModel(loaded, self.device, precision, batch_size)
            except UnverifiedFile as exc:     # e.g. its referral rule's density was altered
                self.unavailable[task] = (getattr(loaded, "ref", task), f"the model cannot be verified: {exc}")
        by_note: dict[str, list[str]] = {}     # one line per note, e.g. "presence, grade: fp32"
        for task, tm in self.models.items():
            if tm.note:
                by_note.setdefault(tm.note, []).append(task)
        self.notes += [f"{', '.join(tasks)}: {note}" for note, tasks in by_note.items()]

    # -- construction
    @classmethod
    def from_refs(cls, refs: Mapping[str, str], **kw) -> "Predictor":
        """refs: {task: "task@version" | "task@active"}. A task whose model cannot be found, loaded
        or verified (sha256) goes to `unavailable`: it and the tasks that need its answer come out
        "cannot assess" (fail closed: the cascade never goes on without it)."""
        from model_zoo.checkpoints import load_checkpoint, resolve_ref

        loaded, unavailable, notes = {}, {}, list(kw.pop("notes", ()))
        for task, ref in refs.items():
            try:
                ckpt = resolve_ref(ref)
            except KeyError as exc:
                unavailable[task] = (str(ref), f"no model is installed ({exc.args[0] if exc.args else exc})")
                continue
            try:
                loaded[task] = load_checkpoint(ckpt)
            except Exception as exc:  # noqa: BLE001 - whatever fails, these weights cannot be trusted
                unavailable[task] = (ckpt.ref, _load_failure(ckpt.ref, exc))
                notes.append(f"{task}: {ckpt.ref} could not be loaded ({type(exc).__name__}: {exc})")
        return cls(loaded, notes=notes, unavailable=unavailable, **kw)

    @classmethod
    def from_active(cls, tasks: Iterable[str] = TASKS, overrides: Mapping[str, str] | None = None,
                    **kw) -> "Predictor":
        """The active version of each task (user override, shipped ACTIVE, else newest); a task
        without any checkpoint cannot be assessed (see `from_refs`)."""
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

    def withheld(self) -> dict[str, tuple[str, str, str]]:
        """{task: (status, reason, model ref)} of the tasks that give no answer whatever the scan:
        their model cannot be loaded or verified (cannot_assess) or its card does not show that it
        beats chance (not_validated, `core.validity`); the tasks that need their answer cannot be
        assessed either."""
        out = {t: (CANNOT_ASSESS, why, ref) for t, (ref, why) in self.unavailable.items()}
        for t, tm in self.models.items():
            ok, why = model_validity(tm.card)
            if not ok:
                out[t] = (NOT_VALIDATED, why, tm.ref)
        for t in [t for t in TASKS if t in out]:
            for d in downstream(t):
                if d in self.models and d not in out:
                    out[d] = (CANNOT_ASSESS, f"it needs the {task_title(t).lower()} answer, which is "
                                             f"unavailable ({out[t][1]})", self.models[d].ref)
        return out

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
        """The pixels `task`'s model reads (see `task_channels`): (N, H, W) for one channel, its
        declared sequences stacked (N, C, H, W) for a multi-sequence model; `base` (the active
        channel's slices) when that is what it reads. (None, reason) when a multi-sequence model's
        inputs are missing and the task was not forced."""
        from core.preprocess import slices as _slices

        if volume is None:
            return base, ""
        channels, why = self.task_channels(task, volume, forced)
        if channels is None:
            return None, why
        if channels == [volume.active_channel]:
            return base, why
        planes = [_slices(volume, "axial", channel=c) for c in channels]
        return (planes[0] if len(planes) == 1 else np.stack(planes, axis=1)), why

    def task_channels(self, task: str, volume, forced: bool = True) -> tuple[list[str] | None, str]:
        """The channels of `volume` that `task`'s model reads, in input order, and a note ("" when
        it reads what it expects). A model of one grey channel (card sequences ["grey"] or one named
        sequence) reads the first of its own sequence and the task's `prefers` (core.tasks) that the
        scan has, else the active channel. A multi-sequence model reads exactly its declared
        sequences: when one is missing, (None, why) unless forced, then substitutes (flagged)."""
        want = self.models[task].sequences or []
        have = list(volume.channels)
        if len(want) > 1:
            return self._declared_channels(task, want, have, volume.active_channel, forced)
        declared = [s for s in want if s != ANY_SEQUENCE]
        prefers = TASK_TABLE[task].prefers if task in TASK_TABLE else ()
        order = list(dict.fromkeys(canonical_sequence(s) or s for s in [*declared, *prefers]))
        for seq in order:
            channel = find_channel(have, seq)
            if channel is not None:
                other = declared and canonical_sequence(channel) != declared[0]
                return [channel], (f"{task}: the model was trained on {sequence_title(declared[0])}; "
                                   f"the scan has none: read on {sequence_title(channel)}" if other else "")
        active = volume.active_channel
        if declared:
            return [active], (f"{task}: the model was trained on {sequence_title(declared[0])}; the "
                              f"scan has {', '.join(have)}: read on {active}")
        if len(have) > 1 and not {"red", "green", "blue"} <= set(have):   # unnamed sequences
            return [active], (f"{task}: no channel is named as a sequence it reads "
                              f"({', '.join(map(sequence_title, order))}): read on {active}")
        return [active], ""

    @staticmethod
    def _declared_channels(task, want, have, active, forced) -> tuple[list[str] | None, str]:
        found = [find_channel(have, s) for s in want]
        if all(found):
            return found, ""
        missing = [s for s, c in zip(want, found) if c is None]
        msg = (f"{task} needs sequences {', '.join(want)} (missing {', '.join(missing)}); "
               f"name the channels of multi-channel input with sequences=")
        if not forced:
            return None, msg
        colour = [c for c in ("red", "green", "blue") if c in have]
        if len(colour) == len(want):
            return colour, msg + "; ran on the red, green, blue channels as asked (substitute inputs)"
        return [active], msg + "; ran on the active channel replicated as asked (substitute inputs)"

    def sequences_read(self, task: str, volume, forced: bool = True) -> list[str]:
        """The sequence(s) `task`'s model reads on `volume`, canonical names where known."""
        channels = self.task_channels(task, volume, forced)[0] if volume is not None else None
        return [canonical_sequence(c) or c for c in channels or []]

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
            unknown = [t for t in forced if t not in self.models and t not in self.unavailable]
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
        withheld = self.withheld()
        run = (lambda t: t in self.models and t not in withheld and t not in results
               and (forced is None or t in forced))
        inputs = _InputCache()

        def no_answer(task: str) -> None:
            """Report a task that gives no answer, once the cascade reaches it."""
            if task in withheld and (forced is None or task in forced) and task not in results:
                status, why, ref = withheld[task]
                results[task] = TaskResult.unavailable(task, status, why, ref)

        # 0. the input gate: refused inputs get "cannot assess" for every task, with the reasons
        t0 = time.perf_counter()
        presence_ok = "presence" in self.models and "presence" not in withheld
        presence_x = None
        if presence_ok:             # the presence model's input, which the gate reads too
            x, why = self.task_slices("presence", vol, base, None, True)
            if why:
                notes.append(why)
            presence_x = inputs.get(x, self.models["presence"].spec)
        timings["presence_input"] = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        gate = self._gate(vol, base, ood, presence_x)
        ood.update(is_ood=gate.refused, reasons=gate.reasons, gate=gate.evidence)
        timings["gate"] = timings.pop("ood") + (time.perf_counter() - t0) * 1e3
        if gate.refused:
            why = "the input was refused: " + "; ".join(gate.reasons)
            for t in (forced or TASKS):
                if t in self.models or t in self.unavailable:
                    results[t] = TaskResult.unavailable(t, CANNOT_ASSESS, why, getattr(self.models.get(t), "ref", ""))

        # 1. presence
        presence = tissue = None
        no_answer("presence")
        if presence_ok and not gate.refused:   # always: it weights the other tasks
            t0 = time.perf_counter()
            tm = self.models["presence"]
            xt = presence_x
            pp, lg = tm.probabilities(xt)
            t_idx = tm.classes.index("tumor") if "tumor" in tm.classes else len(tm.classes) - 1
            presence = pp[:, t_idx]
            tissue = slice_votes.tissue_fraction(base)      # slices with little head do not vote
            evidence = slice_votes.slice_evidence(presence, tissue)
            for i in range(n):
                per_slice[i]["presence"] = float(presence[i])
                per_slice[i]["presence_probabilities"] = [float(v) for v in pp[i]]
                per_slice[i]["tissue"] = float(tissue[i])
                per_slice[i]["evidence"] = float(evidence[i])
            pv = volume_presence(presence, tissue)
            probs = [0.0] * len(tm.classes)
            probs[t_idx] = pv
            other = [j for j in range(len(tm.classes)) if j != t_idx]
            for j in other:
                probs[j] = (1.0 - pv) / len(other)
            mcp = None
            if mc > 0 and tm.has_dropout() and run("presence"):
                top = slice_votes.key_order(presence, tissue)[:MC_MAX_SLICES]
                mcp = []
                for _ in range(mc):          # the same vote rule on each pass, other slices as seen
                    q = np.array(presence, dtype=np.float64)
                    q[top] = self._mc(tm, xt[top], 1)[0][:, t_idx]
                    mcp.append(volume_presence(q, tissue))
                mcp = np.asarray(mcp)
                mcp = np.stack([mcp if j == t_idx else (1 - mcp) / len(other) for j in range(len(tm.classes))], 1)
            if run("presence"):
                key = slice_votes.key_order(presence, tissue)[:KEY_SLICES]
                fam = tm.familiarity(tm.fp32_logits_and_features(xt[key])[1]) if tm.density is not None else None
                results["presence"] = self._result(tm, probs, n, mcp, None if fam is None else float(fam[1].mean()))
            timings["presence"] = (time.perf_counter() - t0) * 1e3
        weights, any_relevant = relevance_weights(presence, n, tissue)
        read = np.arange(n) if every_slice else np.flatnonzero(weights > 0)   # slices type/grade read

        # 2. tumour type: only when presence found a tumour, unless asked for with tasks=
        no_tumour = presence is not None and not any_relevant
        if forced is not None or not no_tumour:
            no_answer("tumor_type")
        if run("tumor_type") and (forced is not None or not no_tumour):
            t0 = time.perf_counter()
            tm = self.models["tumor_type"]
            x, why = self.task_slices("tumor_type", vol, base, None, True)
            if why:
                notes.append(why)
            agg, mcp, fam = self._weighted(tm, inputs.get(x, tm.spec), weights, read, mc, per_slice)
            results["tumor_type"] = self._result(tm, agg, len(read), mcp, fam)
            if no_tumour:
                _not_applicable(results["tumor_type"])
            timings["tumor_type"] = (time.perf_counter() - t0) * 1e3

        # 3. grade: for a glioma (or, when the type gave no answer, to say that grade has none either)
        type_res = results.get("tumor_type")
        is_glioma = type_res is not None and type_res.answered and type_res.label == GLIOMA
        if forced is not None or is_glioma or (type_res is not None and type_res.status in (CANNOT_ASSESS, NOT_VALIDATED)):
            no_answer("grade")
        if run("grade"):
            tm = self.models["grade"]
            want_grade = (forced is not None and "grade" in forced) or (forced is None and is_glioma)
            if want_grade:
                x, why = self.task_slices("grade", vol, base, None, forced is not None)
                if why:
                    notes.append(why)
                if x is not None:
                    t0 = time.perf_counter()
                    agg, mcp, fam = self._weighted(tm, inputs.get(x, tm.spec), weights, read, mc, per_slice)
                    res = self._result(tm, agg, len(read), mcp, fam)
                    if "substitute inputs" in why:
                        res.refer = True
                        res.refer_reasons.append("grade ran on substitute inputs (declared sequences missing)")
                    if no_tumour:
                        _not_applicable(res)
                    results["grade"] = res
                    timings["grade"] = (time.perf_counter() - t0) * 1e3
            elif forced is None and type_res is not None and type_res.answered and not is_glioma:
                notes.append("grade: not run (the type verdict is not glioma)")

        for t, r in results.items():         # which sequence(s) each task read ("read on FLAIR")
            if t in self.models and t not in withheld:
                r.sequences = self.sequences_read(t, vol, forced=forced is not None)

        # verdict, OOD, refer
        verdict = _verdict(results, presence, no_tumour)
        all_reasons = []
        for t, r in results.items():
            all_reasons += [f"{t}: {why}" for why in r.refer_reasons]
        if not results:
            notes.append("no task model is available: nothing was predicted")
        order = slice_votes.key_order(presence, tissue) if presence is not None else \
            np.argsort(-weights, kind="stable")
        # without a presence answer no slice is more tumour-like than another
        key = [] if "presence" in withheld else sorted(int(i) for i in order[:min(KEY_SLICES, n)])
        timings["total"] = (time.perf_counter() - t_all) * 1e3
        return VolumePrediction(
            tasks=results, slices=per_slice, key_slices=key, verdict=verdict,
            refer=any(r.refer for r in results.values()) or bool(ood["is_ood"]),
            refer_reasons=all_reasons, ood=ood,
            model_versions={t: r.model_version for t, r in results.items() if r.model_version},
            timings_ms=timings, precision={t: self.models[t].precision for t in results if run(t)},
            device=str(self.device), notes=_dedupe(notes), source=source, n_slices=n,
            shape=tuple(getattr(vol, "shape", base.shape)))

    # -- helpers
    def _gate(self, vol, base: np.ndarray, image_check: dict, presence_x) -> GateResult:
        """The input gate (`core.gate`) on the header, the picture checks and, when the presence
        version has a gate density, the texture statistics of its informative slices."""
        distance = limit = None
        tm = self.models.get("presence")
        if presence_x is not None and tm.gate_density is not None:
            informative = (base.reshape(len(base), -1) > 0.05).mean(1) >= 0.05
            idx = gate_slices(informative)
            if len(idx):
                gate_card = tm.card["gate"]
                stats = tm.layer_statistics(presence_x[idx], gate_card["layer"])
                distance = float(np.median(tm.gate_density.distance(stats)))
                limit = float(gate_card["max_distance"])
        return check_input(getattr(vol, "meta", None), image_check, distance, limit)

    def _weighted(self, tm: TaskModel, x, weights: np.ndarray, read: np.ndarray, mc: int,
                  per_slice: list[dict]) -> tuple[np.ndarray, np.ndarray | None, float | None]:
        """`tm` on the model-input slices `x[read]`: per-slice probabilities into `per_slice` (None
        for unread slices), the relevance-weighted volume probabilities, their MC-dropout samples
        (passes, K) when asked, and the familiarity percentile of the (at most MC_MAX_SLICES) slices
        that weigh most in it, weighted like them (None without a fitted density)."""
        p = tm.probabilities(x[read])[0] if len(read) else np.zeros((0, len(tm.classes)))
        for i in range(len(per_slice)):
            per_slice[i][tm.task] = None
        for j, i in enumerate(read):
            per_slice[i][tm.task] = [float(v) for v in p[j]]
        w = weights[read]
        agg = (w[:, None] * p).sum(0)
        top = read[np.argsort(-w, kind="stable")[:MC_MAX_SLICES]]     # the slices that weigh most
        pct = None
        if tm.density is not None and len(top):
            fam = tm.familiarity(tm.fp32_logits_and_features(x[top])[1])
            pct = float((weights[top] * fam[1]).sum() / max(weights[top].sum(), 1e-12))
        mcp = None
        if mc > 0 and tm.has_dropout():
            wt = weights[top] / max(weights[top].sum(), 1e-12)
            mcp = np.stack([(wt[:, None] * q).sum(0) for q in self._mc(tm, x[top], mc)])
        return agg, mcp, pct

    @staticmethod
    def _mc(tm: TaskModel, x, passes: int) -> list[np.ndarray]:
        """`passes` MC-dropout samples of calibrated probabilities on model-input slices `x`."""
        return [softmax(tm.logits(x, mc_dropout=True), tm.temperature) for _ in range(passes)]

    def _result(self, tm: TaskModel, probs, n_used: int, mc_probs=None, familiarity: float | None = None) -> TaskResult:
        """The task's answer; referred by the version's calibrated rule (`core.referral`) when it has
        one, else by the fixed entropy/margin thresholds."""
        p = np.asarray(probs, dtype=np.float64)
        p = p / max(p.sum(), 1e-12)
        u = uncertainty(p, mc_probs)
        if tm.referral is not None and familiarity is not None:
            u["familiarity_percentile"] = familiarity
            reasons = tm.referral.reasons(familiarity, u["margin"]) + \
                [r for r in refer_reasons(u) if r.startswith("model disagreement")]
        else:
            reasons = refer_reasons(u)
        return TaskResult(task=tm.task, classes=list(tm.classes), probabilities=[float(v) for v in p],
                          label=tm.classes[int(p.argmax())], uncertainty=u, refer=bool(reasons),
                          refer_reasons=reasons, model_version=tm.ref, n_slices_used=int(n_used))


def _leads(results: Mapping[str, TaskResult]) -> bool:
    """Whether the first task of the cascade that was run gave an answer (or found it does not
    apply): without it there is no verdict."""
    first = next((results[t] for t in TASKS if t in results), next(iter(results.values()), None))
    return first is not None and first.status not in (CANNOT_ASSESS, NOT_VALIDATED)


def _not_applicable(res: TaskResult) -> None:
    """A task run (asked for with tasks=) where no tumour was detected: its answer does not apply."""
    res.withheld, res.note = NOT_APPLICABLE, NO_TUMOUR_VERDICT
    res.refer, res.refer_reasons = False, []


def _verdict(results: Mapping[str, TaskResult], presence, no_tumour: bool) -> str:
    """The verdict in a few machine-readable words; "cannot assess" when the first task of the
    cascade that was run gives no answer (see VolumePrediction.status)."""
    if results and not _leads(results):
        return CANNOT_ASSESS_VERDICT
    if no_tumour:
        return NO_TUMOUR_VERDICT
    typed, grade = results.get("tumor_type"), results.get("grade")
    if typed is not None and typed.answered:
        return typed.label + (f" ({grade.label})" if grade is not None and grade.answered else "")
    return "tumour detected" if presence is not None else ""


def _load_failure(ref: str, exc: Exception) -> str:
    """Why a model cannot be used, in words (the exception's detail goes to the notes)."""
    from model_zoo.registry import ChecksumError

    if isinstance(exc, ChecksumError):
        return f"the model {ref} failed verification: its weights do not match the checksum in its card"
    return f"the model {ref} could not be loaded ({type(exc).__name__})"


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
