"""The Predictor: loaded task models and the cascade over a volume, one small step per task.

0. the input gate (`core.inference.gate`): a refused scan gets "cannot assess" for every task.
1. `presence` on every axial slice: P(tumour) per slice; `slice_votes` turns it into slice evidence
   (slices with little head do not vote; in a series a slice needs a neighbour that agrees). The
   volume's P(tumour) is the largest evidence.
2. `tumor_type` on the slices that weigh in the verdict; the volume's type is the relevance-weighted
   mean of their probabilities. When no slice is relevant the verdict reads "no tumour detected"
   and the cascade stops there; type and grade asked for with `tasks=` then run on all slices and
   come out "not_applicable".
3. `grade` when the type verdict is glioma and the grade model's declared sequences are in the scan
   (or whenever asked with `tasks=`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch

import core.inference.slice_votes as slice_votes
from core.cards import CardError
from core.config import get_settings
from core.devices import select_device
from core.inference.feature_density import UnverifiedFile
from core.inference.gate import GateResult, check_input, gate_slices, image_ood
from core.inference.results import (
    CANNOT_ASSESS,
    CANNOT_ASSESS_VERDICT,
    NO_TUMOUR_VERDICT,
    NOT_VALIDATED,
    Cause,
    Status,
    TaskResult,
    VolumePrediction,
    leads,
)
from core.inference.routing import Route, route
from core.inference.runtime import TaskModel
from core.inference.uncertainty import Trigger, refer_triggers, uncertainty
from core.inference.validity import model_validity
from core.preprocess import model_input, slices
from core.sequences import canonical_sequence
from core.tasks import TASKS, downstream, task_title
from core.zoo import load_checkpoint, resolve_ref
from model_zoo import ChecksumError

KEY_SLICES = 3  # how many key slices a volume reports
MC_MAX_SLICES = 16  # MC-dropout runs on at most this many (most relevant) slices
GLIOMA = "glioma"


class Withheld(NamedTuple):
    """A task that gives no answer whatever the scan."""

    status: Status
    reason: str
    ref: str
    cause: Cause


class _InputCache:
    """Model-input tensors of one prediction, one per (pixels, input spec): presence and tumor_type
    read the same slices at the same size, so the resize and normalisation run once."""

    def __init__(self):
        self._items: dict = {}

    def get(self, pixels: np.ndarray, spec):
        key = (
            id(pixels),
            int(spec.input_size),
            int(getattr(spec, "in_channels", 3)),
            tuple(np.ravel(spec.mean).tolist()),
            tuple(np.ravel(spec.std).tolist()),
        )
        hit = self._items.get(key)
        if hit is None or hit[0] is not pixels:  # the held pixels keep their id() unique
            hit = self._items[key] = (pixels, model_input(pixels, spec))
        return hit[1]


@dataclass
class _Run:
    """One `predict_volume` call: its input, what the steps found so far, and its bookkeeping."""

    vol: Any  # the Volume; None for bare slices
    base: np.ndarray  # axial slices of the active channel (N, H, W) in [0, 1]
    forced: list[str] | None  # tasks= (None: the cascade decides)
    mc: int  # MC-dropout passes
    every_slice: bool
    withheld: dict[str, Withheld]
    notes: list[str]
    timings: dict[str, float] = field(default_factory=dict)
    results: dict[str, TaskResult] = field(default_factory=dict)
    inputs: _InputCache = field(default_factory=_InputCache)
    ran: list[str] = field(default_factory=list)  # tasks whose model ran
    per_slice: list[dict] = field(default_factory=list)
    ood: dict = field(default_factory=dict)
    presence: np.ndarray | None = None
    tissue: np.ndarray | None = None
    weights: np.ndarray | None = None
    read: np.ndarray | None = None  # the slices type and grade read
    no_tumour: bool = False

    @property
    def n(self) -> int:
        return int(self.base.shape[0])

    def asked(self, task: str) -> bool:
        return self.forced is None or task in self.forced

    def note(self, text: str) -> None:
        if text:
            self.notes.append(text)

    @contextlib.contextmanager
    def timed(self, key: str):
        t0 = time.perf_counter()
        yield
        self.timings[key] = self.timings.get(key, 0.0) + (time.perf_counter() - t0) * 1e3

    def no_answer(self, task: str) -> None:
        """Report a task that gives no answer, once the cascade reaches it."""
        if task in self.withheld and self.asked(task) and task not in self.results:
            w = self.withheld[task]
            self.results[task] = TaskResult.unavailable(task, w.status, w.reason, w.ref, w.cause)


class Predictor:
    """Loaded task models + the cascade. Thread-safe; build once (st.cache_resource) and share."""

    def __init__(
        self,
        models: Mapping[str, Any],
        device: Any = None,
        precision: str = "auto",
        batch_size: int = 64,
        mc_passes: int = 0,
        notes: Iterable[str] = (),
        unavailable: Mapping[str, tuple[str, str]] | None = None,
    ):
        """models: {task: LoadedModel}. unavailable: {task: (ref, reason)} of the tasks asked for
        whose model could not be found, loaded or verified (see `from_refs`)."""
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
            except (UnverifiedFile, CardError) as exc:  # e.g. its referral rule's density was altered
                self.unavailable[task] = (getattr(loaded, "ref", task), f"the model cannot be verified: {exc}")
        by_note: dict[str, list[str]] = {}  # one line per note, e.g. "presence, grade: fp32"
        for task, tm in self.models.items():
            if tm.note:
                by_note.setdefault(tm.note, []).append(task)
        self.notes += [f"{', '.join(tasks)}: {note}" for note, tasks in by_note.items()]

    # -- construction
    @classmethod
    def from_refs(cls, refs: Mapping[str, str], **kw) -> Predictor:
        """refs: {task: "task@version" | "task@active"}. A task whose model cannot be found, loaded
        or verified (sha256) goes to `unavailable`: it and the tasks that need its answer come out
        "cannot assess" (fail closed: the cascade never goes on without it)."""
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
    def from_active(cls, tasks: Iterable[str] = TASKS, overrides: Mapping[str, str] | None = None, **kw) -> Predictor:
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

    def withheld(self) -> dict[str, Withheld]:
        """{task: (status, reason, model ref, cause)} of the tasks that give no answer whatever the
        scan: their model cannot be loaded or verified (cannot_assess) or its card does not show
        that it beats chance (not_validated, `core.inference.validity`); the tasks that need their
        answer cannot be assessed either."""
        out = {
            t: Withheld(CANNOT_ASSESS, why, ref, Cause.MODEL_UNAVAILABLE) for t, (ref, why) in self.unavailable.items()
        }
        for t, tm in self.models.items():
            ok, why = model_validity(tm.card)
            if not ok:
                out[t] = Withheld(NOT_VALIDATED, why, tm.ref, Cause.NOT_VALIDATED)
        for t in [t for t in TASKS if t in out]:
            for d in downstream(t):
                if d in self.models and d not in out:
                    out[d] = Withheld(
                        CANNOT_ASSESS,
                        f"it needs the {task_title(t).lower()} answer, which is unavailable ({out[t].reason})",
                        self.models[d].ref,
                        Cause.UPSTREAM_UNAVAILABLE,
                    )
        return out

    def model(self, task: str) -> TaskModel:
        try:
            return self.models[task]
        except KeyError:
            raise KeyError(f"no {task} model loaded (have {sorted(self.models)})") from None

    def explainable(self, task: str) -> TaskModel:
        """The explainable model of `task` (`core.explain`)."""
        return self.model(task)

    # -- slices and channels
    def predict_slices(self, task: str, slices01: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities (N, K) for slices (N, H, W) / (N, C, H, W) in [0, 1]."""
        tm = self.model(task)
        return tm.probabilities(model_input(slices01, tm.spec))[0]

    def routing(self, task: str, volume, forced: bool = True) -> Route:
        """The channels of `volume` that `task`'s model reads (`core.inference.routing`)."""
        return route(task, self.models[task].sequences, list(volume.channels), volume.active_channel, forced)

    def task_channels(self, task: str, volume, forced: bool = True) -> tuple[list[str] | None, str]:
        """(channels of `volume` that `task`'s model reads, in input order, a note: "" when it
        reads what it expects); (None, why) when a multi-sequence model's inputs are missing and
        the task was not forced."""
        r = self.routing(task, volume, forced)
        return r.channels, r.note

    def task_slices(
        self, task: str, volume, base: np.ndarray, sequences: Sequence[str] | None, forced: bool
    ) -> tuple[np.ndarray | None, str]:
        """The pixels `task`'s model reads: (N, H, W) for one channel, its declared sequences
        stacked (N, C, H, W) for a multi-sequence model; `base` (the active channel's slices) when
        that is what it reads. (None, reason) when a multi-sequence model's inputs are missing and
        the task was not forced. `sequences` is not read: the model's card declares what it reads."""
        x, r = self._pixels(task, volume, base, forced)
        return x, r.note

    def _pixels(self, task: str, volume, base: np.ndarray, forced: bool) -> tuple[np.ndarray | None, Route]:
        if volume is None:
            return base, Route([])
        r = self.routing(task, volume, forced)
        if r.channels is None or r.channels == [volume.active_channel]:
            return (None if r.channels is None else base), r
        planes = [slices(volume, "axial", channel=c) for c in r.channels]
        return (planes[0] if len(planes) == 1 else np.stack(planes, axis=1)), r

    def sequences_read(self, task: str, volume, forced: bool = True) -> list[str]:
        """The sequence(s) `task`'s model reads on `volume`, canonical names where known."""
        channels = self.task_channels(task, volume, forced)[0] if volume is not None else None
        return [canonical_sequence(c) or c for c in channels or []]

    # -- the cascade
    def predict_volume(
        self,
        volume,
        tasks: Iterable[str] | None = None,
        mc_passes: int | None = None,
        source: str | None = None,
        every_slice: bool = False,
        axial: np.ndarray | None = None,
    ) -> VolumePrediction:
        """Run the cascade on a `Volume` (or an array of slices (N, H, W) in [0, 1]).

        tasks: run exactly these tasks whatever the cascade decides (default: the cascade).
        mc_passes: MC-dropout passes for BALD (default: the predictor's, 0 = off).
        every_slice: run tumor_type and grade on every slice. By default they read only the slices
            that weigh in the verdict (P(tumour) >= PRESENCE_THRESHOLD; all slices when none does):
            the verdict is the same, and the other slices get None (the type and grade models were
            trained on tumour slices only, so their output there means nothing).
        axial: the volume's axial slices `preprocess.slices(volume, "axial")` when the caller has
            them already (a Case computes them once).
        """
        t_all = time.perf_counter()
        run = self._start(volume, tasks, mc_passes, every_slice, axial)
        if run.vol is not None:
            source = source or (getattr(run.vol, "meta", None) or {}).get("source")
        presence_x = self._gate_step(run)
        self._presence_step(run, presence_x)
        self._type_step(run)
        self._grade_step(run)
        return self._finish(run, source, t_all)

    def _start(self, volume, tasks, mc_passes, every_slice, axial=None) -> _Run:
        """The run's state: the axial slices of the active channel and the tasks it may run."""
        forced = None if tasks is None else list(tasks)
        notes = list(self.notes)
        for t in forced or ():
            if t not in self.models and t not in self.unavailable:
                notes.append(f"{t}: asked for but no model is loaded")
        t0 = time.perf_counter()
        if isinstance(volume, np.ndarray):
            base = np.asarray(volume, dtype=np.float32)
            base, vol = (base[None] if base.ndim == 2 else base), None
        else:
            base, vol = (slices(volume, "axial") if axial is None else axial), volume
        if int(base.shape[0]) == 0:
            raise ValueError("the scan has no slices")
        run = _Run(
            vol,
            base,
            forced,
            self.mc_passes if mc_passes is None else int(mc_passes),
            every_slice,
            self.withheld(),
            notes,
        )
        run.per_slice = [{"index": i} for i in range(run.n)]
        run.timings["preprocess"] = (time.perf_counter() - t0) * 1e3
        return run

    def _runs(self, run: _Run, task: str) -> bool:
        """Whether `task`'s model runs in this call (loaded, not withheld, not answered yet, asked)."""
        return task in self.models and task not in run.withheld and task not in run.results and run.asked(task)

    def _gate_step(self, run: _Run):
        """0. The input gate. Returns the presence model's input, which the gate reads too (None
        without a usable presence model); a refused input gets "cannot assess" for every task."""
        with run.timed("ood"):
            run.ood = image_ood(run.base, run.vol)
        presence_x = None
        with run.timed("presence_input"):
            if "presence" in self.models and "presence" not in run.withheld:
                x, r = self._pixels("presence", run.vol, run.base, True)
                run.note(r.note)
                presence_x = run.inputs.get(x, self.models["presence"].spec)
        with run.timed("gate"):
            gate = self._gate(run.vol, run.base, run.ood, presence_x)
            run.ood.update(is_ood=gate.refused, reasons=gate.reasons, gate=gate.evidence)
        run.timings["gate"] += run.timings.pop("ood")
        if gate.refused:
            why = "the input was refused: " + "; ".join(gate.reasons)
            for t in run.forced or TASKS:
                if t in self.models or t in self.unavailable:
                    ref = getattr(self.models.get(t), "ref", "")
                    run.results[t] = TaskResult.unavailable(t, CANNOT_ASSESS, why, ref, Cause.INPUT_REFUSED)
            return None
        return presence_x

    def _presence_step(self, run: _Run, x) -> None:
        """1. P(tumour) on every slice: it weights the other tasks, so it runs even when not asked
        for; then the slice weights and the slices type and grade read."""
        run.no_answer("presence")
        if x is not None:
            with run.timed("presence"):
                tm = self.models["presence"]
                pp = tm.probabilities(x)[0]
                t_idx = tm.classes.index("tumor") if "tumor" in tm.classes else len(tm.classes) - 1
                run.presence = pp[:, t_idx]
                run.tissue = slice_votes.tissue_fraction(run.base)  # slices with little head do not vote
                evidence = slice_votes.slice_evidence(run.presence, run.tissue)
                for i, s in enumerate(run.per_slice):
                    s.update(
                        presence=float(run.presence[i]),
                        presence_probabilities=[float(v) for v in pp[i]],
                        tissue=float(run.tissue[i]),
                        evidence=float(evidence[i]),
                    )
                if self._runs(run, "presence"):
                    run.results["presence"] = self._presence_result(run, tm, x, t_idx)
                    run.ran.append("presence")
        run.weights, any_relevant = slice_votes.relevance_weights(run.presence, run.n, run.tissue)
        run.read = np.arange(run.n) if run.every_slice else np.flatnonzero(run.weights > 0)
        run.no_tumour = run.presence is not None and not any_relevant

    def _presence_result(self, run: _Run, tm: TaskModel, x, t_idx: int) -> TaskResult:
        """The volume's presence answer: P(tumour) = the largest slice evidence, the rest of the
        probability shared by the other classes; MC-dropout re-scores the most telling slices."""

        def volume_probs(pv):
            other = len(tm.classes) - 1
            return [pv if j == t_idx else (1.0 - pv) / other for j in range(len(tm.classes))]

        pv = slice_votes.volume_presence(run.presence, run.tissue)
        order = slice_votes.key_order(run.presence, run.tissue)
        mcp = None
        if run.mc > 0 and tm.has_dropout():
            top = order[:MC_MAX_SLICES]
            samples = []
            for _ in range(run.mc):  # the same vote rule on each pass, other slices as seen
                q = np.array(run.presence, dtype=np.float64)
                q[top] = tm.mc_samples(x[top], 1)[0][:, t_idx]
                samples.append(slice_votes.volume_presence(q, run.tissue))
            mcp = np.array([volume_probs(v) for v in samples])
        fam = tm.familiarity(tm.fp32_logits_and_features(x[order[:KEY_SLICES]])[1]) if tm.density is not None else None
        return self._result(tm, volume_probs(pv), run.n, mcp, None if fam is None else float(fam[1].mean()))

    def _type_step(self, run: _Run) -> None:
        """2. The tumour type, only when presence found a tumour, unless asked for with tasks=."""
        if run.no_tumour and run.forced is None:
            return
        run.no_answer("tumor_type")
        if not self._runs(run, "tumor_type"):
            return
        with run.timed("tumor_type"):
            x, r = self._pixels("tumor_type", run.vol, run.base, True)
            run.note(r.note)
            run.results["tumor_type"] = self._read_slices(run, "tumor_type", x)

    def _grade_step(self, run: _Run) -> None:
        """3. The grade of a glioma (or, when the type gave no answer, to say that grade has none)."""
        type_res = run.results.get("tumor_type")
        is_glioma = type_res is not None and type_res.answered and type_res.label == GLIOMA
        if (
            run.forced is not None
            or is_glioma
            or (type_res is not None and type_res.status in (CANNOT_ASSESS, NOT_VALIDATED))
        ):
            run.no_answer("grade")
        if not self._runs(run, "grade"):
            return
        if run.forced is None and not is_glioma:
            if type_res is not None and type_res.answered:
                run.note("grade: not run (the type verdict is not glioma)")
            return
        x, r = self._pixels("grade", run.vol, run.base, run.forced is not None)
        run.note(r.note)
        if x is None:
            return
        with run.timed("grade"):
            res = self._read_slices(run, "grade", x)
            if r.substitute and res.answered:
                res.refer = True
                res.refer_reasons.append("grade ran on substitute inputs (declared sequences missing)")
            run.results["grade"] = res

    def _read_slices(self, run: _Run, task: str, x: np.ndarray) -> TaskResult:
        """`task`'s answer from the slices it reads (not applicable where no tumour was found)."""
        tm = self.models[task]
        agg, mcp, fam = self._weighted(tm, run.inputs.get(x, tm.spec), run.weights, run.read, run.mc, run.per_slice)
        res = self._result(tm, agg, len(run.read), mcp, fam)
        run.ran.append(task)
        if run.no_tumour:
            res.not_applicable()
        return res

    def _finish(self, run: _Run, source: str | None, t_all: float) -> VolumePrediction:
        """The VolumePrediction: verdict, key slices, reasons to refer, the sequences each task read."""
        results = run.results
        for t, r in results.items():  # which sequence(s) each task read ("read on FLAIR")
            if t in self.models and t not in run.withheld:
                r.sequences = self.sequences_read(t, run.vol, forced=run.forced is not None)
        if not results:
            run.notes.append("no task model is available: nothing was predicted")
        order = (
            slice_votes.key_order(run.presence, run.tissue)
            if run.presence is not None
            else np.argsort(-run.weights, kind="stable")
        )
        # without a presence answer no slice is more tumour-like than another
        key = [] if "presence" in run.withheld else sorted(int(i) for i in order[: min(KEY_SLICES, run.n)])
        run.timings["total"] = (time.perf_counter() - t_all) * 1e3
        return VolumePrediction(
            tasks=results,
            slices=run.per_slice,
            key_slices=key,
            verdict=verdict_of(results, run.presence, run.no_tumour),
            refer=any(r.refer for r in results.values()) or bool(run.ood["is_ood"]),
            refer_reasons=[f"{t}: {why}" for t, r in results.items() for why in r.refer_reasons],
            ood=run.ood,
            model_versions={t: r.model_version for t, r in results.items() if r.model_version},
            timings_ms=run.timings,
            precision={t: self.models[t].precision for t in run.ran},
            device=str(self.device),
            notes=list(dict.fromkeys(run.notes)),
            source=source,
            n_slices=run.n,
            shape=tuple(getattr(run.vol, "shape", run.base.shape)),
        )

    # -- helpers
    def _gate(self, vol, base: np.ndarray, image_check: dict, presence_x) -> GateResult:
        """The input gate on the header, the picture checks and, when the presence version has a
        gate density, the texture statistics of its informative slices."""
        distance = limit = None
        tm = self.models.get("presence")
        if presence_x is not None and tm.gate_density is not None:
            informative = (base.reshape(len(base), -1) > 0.05).mean(1) >= 0.05
            idx = gate_slices(informative)
            if len(idx):
                gate = tm.card.gate
                stats = tm.layer_statistics(presence_x[idx], gate.layer)
                distance = float(np.median(tm.gate_density.distance(stats)))
                limit = float(gate.max_distance)
        return check_input(getattr(vol, "meta", None), image_check, distance, limit)

    @staticmethod
    def _weighted(
        tm: TaskModel, x, weights: np.ndarray, read: np.ndarray, mc: int, per_slice: list[dict]
    ) -> tuple[np.ndarray, np.ndarray | None, float | None]:
        """`tm` on the model-input slices `x[read]`: per-slice probabilities into `per_slice` (None
        for unread slices), the relevance-weighted volume probabilities, their MC-dropout samples
        (passes, K) when asked, and the familiarity percentile of the (at most MC_MAX_SLICES) slices
        that weigh most in it, weighted like them (None without a fitted density)."""
        p = tm.probabilities(x[read])[0] if len(read) else np.zeros((0, len(tm.classes)))
        for s in per_slice:
            s[tm.task] = None
        for j, i in enumerate(read):
            per_slice[i][tm.task] = [float(v) for v in p[j]]
        w = weights[read]
        agg = (w[:, None] * p).sum(0)
        top = read[np.argsort(-w, kind="stable")[:MC_MAX_SLICES]]  # the slices that weigh most
        pct = None
        if tm.density is not None and len(top):
            fam = tm.familiarity(tm.fp32_logits_and_features(x[top])[1])
            pct = float((weights[top] * fam[1]).sum() / max(weights[top].sum(), 1e-12))
        mcp = None
        if mc > 0 and tm.has_dropout():
            wt = weights[top] / max(weights[top].sum(), 1e-12)
            mcp = np.stack([(wt[:, None] * q).sum(0) for q in tm.mc_samples(x[top], mc)])
        return agg, mcp, pct

    @staticmethod
    def _result(tm: TaskModel, probs, n_used: int, mc_probs=None, familiarity: float | None = None) -> TaskResult:
        """The task's answer; referred by the version's calibrated rule (`core.inference.referral`)
        when it has one (plus MC-dropout disagreement), else by the fixed thresholds."""
        p = np.asarray(probs, dtype=np.float64)
        p = p / max(p.sum(), 1e-12)
        u = uncertainty(p, mc_probs)
        triggers = refer_triggers(u)
        if tm.referral is not None and familiarity is not None:
            u["familiarity_percentile"] = familiarity
            reasons = tm.referral.reasons(familiarity, u["margin"]) + [
                r.text for r in triggers if r.trigger == Trigger.DISAGREEMENT
            ]
        else:
            reasons = [r.text for r in triggers]
        return TaskResult(
            task=tm.task,
            classes=list(tm.classes),
            probabilities=[float(v) for v in p],
            label=tm.classes[int(p.argmax())],
            uncertainty=u,
            refer=bool(reasons),
            refer_reasons=reasons,
            model_version=tm.ref,
            n_slices_used=int(n_used),
        )


def verdict_of(results: Mapping[str, TaskResult], presence, no_tumour: bool) -> str:
    """The verdict in a few machine-readable words; "cannot assess" when the first task of the
    cascade that was run gives no answer (see VolumePrediction.status)."""
    if results and not leads(results):
        return CANNOT_ASSESS_VERDICT
    if no_tumour:
        return NO_TUMOUR_VERDICT
    typed, grade = results.get("tumor_type"), results.get("grade")
    if typed is not None and typed.answered:
        return typed.label + (f" ({grade.label})" if grade is not None and grade.answered else "")
    return "tumour detected" if presence is not None else ""


def _load_failure(ref: str, exc: Exception) -> str:
    """Why a model cannot be used, in words (the exception's detail goes to the notes)."""
    if isinstance(exc, ChecksumError):
        return f"the model {ref} failed verification: its weights do not match the checksum in its card"
    return f"the model {ref} could not be loaded ({type(exc).__name__})"
