"""TaskModel: one loaded task model prepared for fast, thread-safe inference.

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
import threading
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.nn.utils.fusion import fuse_conv_bn_eval

from core import quantize
from core.cards import ModelCard
from core.inference.feature_density import load_density
from core.inference.referral import ReferralRule
from core.inference.uncertainty import softmax
from core.preprocess import model_input
from core.sequences import canonical_sequence
from model_zoo import sha256_file

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
AGREEMENT_TOLERANCE = 0.05  # "auto" precision: largest |p_fast - p_fp32| accepted on the probe
INT8_MIN_AGREEMENT = 0.995  # "auto" int8: share of fp32 labels kept on real images at calibration


def _bf16_cpu_ok() -> bool:
    """bf16 pays on a CPU only with AMX tiles: with AVX512-BF16 alone, fp32 + channels_last was
    faster for our models on this project's machines (see `python -m core bench`)."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        flags = ""
    return bool(torch.backends.mkldnn.is_available()) and "amx_bf16" in flags


def _probe_batch(spec, n: int = 8) -> torch.Tensor:
    """Deterministic brain-like probe images (bright disc on black with blobs) for the agreement
    check: cheap, and exercises the models on inputs shaped like their training data."""
    rng = np.random.default_rng(1234)
    s = 96
    yy, xx = np.mgrid[0:s, 0:s] / s
    imgs = []
    for _ in range(n):
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
    for block in [m for m in model.modules() if isinstance(m, torch.nn.Sequential)]:
        names = list(block._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = block._modules[a], block._modules[b]
            if (
                isinstance(conv, torch.nn.Conv2d)
                and isinstance(bn, torch.nn.BatchNorm2d)
                and conv.out_channels == bn.num_features
            ):
                block._modules[a] = fuse_conv_bn_eval(conv, bn)
                block._modules[b] = torch.nn.Identity()
    return model


def _is_dropout(m) -> bool:
    return isinstance(m, torch.nn.modules.dropout._DropoutNd)


class _Path(NamedTuple):
    """How a forward runs: the network, the dtype of its inputs, the autocast dtype (or None)."""

    model: torch.nn.Module
    dtype: torch.dtype
    autocast: torch.dtype | None
    precision: str


class _LayerReached(Exception):
    """Raised by a forward hook once the layer it reads has run (the rest is skipped)."""


class TaskModel:
    """One loaded task model prepared for fast, thread-safe inference. It is an explainable model
    (`core.explain.ExplainableModel`): task, ref, spec, classes, lock and `cam_network()`."""

    def __init__(self, loaded, device, precision: str = "auto", batch_size: int = 64):
        self.loaded = loaded
        self.task = loaded.task
        self.spec = loaded.spec
        self.classes = list(loaded.classes)
        self.temperature = float(loaded.temperature or 1.0)
        self.card = ModelCard.of(loaded)  # model_zoo hands over plain data: typed once, here
        self.ref = loaded.ref if getattr(loaded, "version", "") else f"{loaded.task}@unversioned"
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.lock = threading.RLock()
        self.note = ""
        # the card's metrics average the logits of each slice and its mirror image (flip test-time
        # augmentation): run the same, so the app delivers what the card measured
        self.tta_flip = self.card.tta
        # the referral rule and the gate read the version's fitted feature density (verified)
        self.density = load_density(loaded)
        self.gate_density = load_density(loaded, "gate")
        self.referral = ReferralRule.from_card(self.card) if self.density is not None else None
        self.fp32 = self._inference_copy(loaded.model)
        self._use(_Path(self.fp32, torch.float32, None, "fp32"))
        want = (precision or "auto").lower()
        if want not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if want != "fp32":
            self._setup_fast(want)

    def _inference_copy(self, model) -> torch.nn.Module:
        with torch.no_grad():
            fp32 = fold_batchnorm(copy.deepcopy(model).to(self.device).eval())
            if self.device.type == "cpu":  # oneDNN's fast path; inputs are made channels_last too
                fp32 = fp32.to(memory_format=torch.channels_last)
            for p in fp32.parameters():  # inference and CAM never need weight gradients
                p.requires_grad_(False)
        return fp32

    def _use(self, path: _Path) -> None:
        self.model, self.dtype, self.autocast, self.precision = path

    # -- precision
    def _setup_fast(self, want: str) -> None:
        """Switch to the fast path `want` asks for; "auto" keeps it only where it pays and agrees."""
        dev = self.device.type
        if want == "int8" and dev != "cpu":
            raise ValueError("int8 is for CPUs (x86 kernels)")
        if dev == "cpu":
            cand = self._cpu_candidate(want)
        elif dev == "cuda":
            cand = self._cuda_candidate(want)
        elif want == "auto":  # mps and others: fp32 only (auto), an explicit request via autocast
            self.note = f"{dev}: fp32"
            cand = None
        else:
            cand = _Path(self.fp32, torch.float32, torch.bfloat16 if want == "bf16" else torch.float16, want)
        if cand is None:
            return
        if cand.precision == "int8":  # judged at calibration on real images (the card), not on the probe
            self.agreement_probe = dict(self.card.int8.agreement_with_fp32 or {}) if self.card.int8 else {}
            self._use(cand)
            return
        self._adopt_if_agrees(cand, fallback=want == "auto")

    def _cpu_candidate(self, want: str) -> _Path | None:
        if want == "fp16":
            raise ValueError("fp16 is for CUDA; use bf16 on a CPU")
        int8 = self._int8_model(required=want == "int8") if want in ("auto", "int8") else None
        if int8 is not None:
            return _Path(int8, torch.float32, None, "int8")
        if want == "auto" and not _bf16_cpu_ok():
            self.note = self.note or "no AMX on this CPU: fp32 (faster than bf16 here)"
            return None
        with torch.no_grad():
            fast = copy.deepcopy(self.fp32).to(torch.bfloat16).to(memory_format=torch.channels_last)
        return _Path(fast, torch.bfloat16, None, "bf16")

    def _cuda_candidate(self, want: str) -> _Path:
        if want == "auto":
            want = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        self.fp32 = self.fp32.to(memory_format=torch.channels_last)
        return _Path(self.fp32, torch.float32, torch.bfloat16 if want == "bf16" else torch.float16, want)

    def _adopt_if_agrees(self, cand: _Path, fallback: bool) -> None:
        """Use `cand`; measure it against fp32 on the probe batch and, when `fallback`, go back to
        the previous path if it disagrees."""
        prev = _Path(self.model, self.dtype, self.autocast, self.precision)
        self._use(cand)
        agree = self.agreement_probe = self.agreement()
        if agree["ok"]:
            return
        if fallback:
            self._use(prev)
            self.note = (
                f"{cand.precision} disagreed with fp32 on the probe batch (max |dp| {agree['max_abs_diff']:.3f}): fp32"
            )
        else:
            self.note = f"{cand.precision} differs from fp32 on the probe batch (max |dp| {agree['max_abs_diff']:.3f})"

    def _int8_model(self, required: bool):
        """The int8 model from the version's calibration (`python -m core quantize`), or None (with
        a note; an error when `required`) when there is none, it was altered, there are no x86
        kernels, or (unless `required`) it kept fewer than INT8_MIN_AGREEMENT of fp32's labels."""
        info = self.card.int8
        folder = getattr(self.loaded, "path", None)
        f = Path(folder) / (info.file or quantize.OBSERVERS_FILE) if folder and info else None
        why = ""
        if not quantize.available():
            why = "no x86 int8 kernels in this torch build"
        elif f is None or not f.is_file():
            why = f"no int8 calibration (run `python -m core quantize {self.ref}`)"
        elif sha256_file(f) != info.sha256:
            why = f"{f.name} does not match the card's sha256"
        elif not required:
            kept = info.identical_labels
            if kept < INT8_MIN_AGREEMENT:
                why = f"int8 kept {100 * kept:.1f}% of fp32 labels at calibration (< {100 * INT8_MIN_AGREEMENT:.1f}%)"
        if why:
            if required:
                raise ValueError(f"{self.ref}: {why}")
            self.note = f"{why}: fp32"
            return None
        observers = torch.load(f, map_location="cpu", weights_only=True)
        return quantize.quantized(self.fp32, observers, _probe_batch(self.spec, 1))

    def explainable(self, task: str | None = None) -> TaskModel:
        """The explainable model of its task (`core.explain`): this one."""
        return self

    def cam_network(self) -> tuple[torch.nn.Module, torch.dtype, torch.dtype | None]:
        """(network, dtype, autocast) that Grad-CAM hooks into: the fast model, or fp32 when the
        fast one has no gradients (int8)."""
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
        return {"ok": diff <= AGREEMENT_TOLERANCE and same == 1.0, "max_abs_diff": diff, "label_agreement": same}

    # -- forward
    def _to_device(self, x) -> torch.Tensor:
        xb = x.to(self.device, non_blocking=True)
        return xb if self.device.type == "mps" else xb.contiguous(memory_format=torch.channels_last)

    def _run(self, model, x, dtype, autocast):
        xb = self._to_device(x).to(dtype)
        with torch.autocast(self.device.type, dtype=autocast) if autocast is not None else contextlib.nullcontext():
            if self.tta_flip:  # one batch holds the slices and their mirror images: fewer, larger kernels
                both = model(torch.cat([xb, torch.flip(xb, dims=[3])]))
                out = (both[: len(xb)] + both[len(xb) :]) / 2
            else:
                out = model(xb)
        return out.float().cpu().numpy()

    def logits(self, x, fp32: bool = False, mc_dropout: bool = False) -> np.ndarray:
        """Logits (N, K) float32 for a model-input tensor (N, C, S, S), in batches."""
        model, dtype, ac = (self.fp32, torch.float32, None) if fp32 else (self.model, self.dtype, self.autocast)
        outs = []
        with self.lock:
            dropouts = [m for m in model.modules() if _is_dropout(m)] if mc_dropout else []
            try:
                for m in dropouts:
                    m.train()
                with torch.inference_mode():
                    for i in range(0, len(x), self.batch_size):
                        outs.append(self._run(model, x[i : i + self.batch_size], dtype, ac))
            finally:
                for m in dropouts:
                    m.eval()
        if not outs:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        return np.concatenate(outs)

    def has_dropout(self) -> bool:
        return any(_is_dropout(m) and m.p > 0 for m in self.model.modules())

    def probabilities(self, x) -> tuple[np.ndarray, np.ndarray]:
        lg = self.logits(x)
        return softmax(lg, self.temperature), lg

    def mc_samples(self, x, passes: int) -> list[np.ndarray]:
        """`passes` MC-dropout samples of calibrated probabilities on model-input slices `x`."""
        return [softmax(self.logits(x, mc_dropout=True), self.temperature) for _ in range(passes)]

    def fp32_logits_and_features(self, x) -> tuple[np.ndarray, np.ndarray]:
        """fp32 logits (N, K) and penultimate features (N, D): the input of the fp32 model's last
        Linear layer, caught on the same forward pass (averaged over the flip views like the
        logits). Always fp32: the feature densities are fitted in fp32, and int8 moves the features
        enough to double their Mahalanobis distance."""
        captured: list[np.ndarray] = []

        def catch(_module, inputs):
            f = inputs[0].dequantize() if inputs[0].is_quantized else inputs[0]
            f = f.float().flatten(1).cpu().numpy()
            captured.append((f[: len(f) // 2] + f[len(f) // 2 :]) / 2 if self.tta_flip else f)

        linears = [m for m in self.fp32.modules() if type(m).__name__ == "Linear"]
        if not linears:  # no penultimate layer to read: logits only
            return self.logits(x, fp32=True), np.zeros((len(x), 0), np.float32)
        with self.lock:  # no other thread's forward may pass the hook
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
        module = dict(self.fp32.named_modules())[layer]
        captured: list = []

        def catch(_module, _inputs, output):
            captured.append(torch.cat([output.mean((2, 3)), output.std((2, 3))], 1).float().cpu().numpy())
            raise _LayerReached  # the layers after it are not needed: stop the forward here

        with self.lock, torch.inference_mode():
            handle = module.register_forward_hook(catch)
            try:
                for i in range(0, len(x), self.batch_size):
                    with contextlib.suppress(_LayerReached):
                        self.fp32(self._to_device(x[i : i + self.batch_size]))
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
        seqs = self.card.input.sequences
        return [canonical_sequence(s) or str(s) for s in seqs] if seqs else None
