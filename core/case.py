"""Case: one scan being read, and everything derived from it, each computed once.

volume -> display slices (once) -> prediction (once per set of model versions) -> heat maps (cached
per model, task, slice, class and method) -> report (PDF / JSON) -> the review queue.

The scan page holds one Case per opened scan (an upload or a PACS study) and draws it; a notebook
or the CLI can use the same object. The Case never imports streamlit. Its predictor is a plain
attribute: after a promotion the page hands it the new Predictor and the prediction follows.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import replace

import numpy as np
from pydicom import Dataset

from core import explain, preprocess, report, review
from core.inference import Predictor, VolumePrediction
from core.io.study import rename_channels
from core.io.volume import Volume
from core.jsonable import jsonable
from core.pacs import dicom_out, dicomweb
from core.pacs.reference import SourceReference

HEATMAP_CACHE_SIZE = 128  # heat maps kept per case (a 256 px map is 256 kB)
SOURCE_KINDS = {"nifti": "NIfTI", "dicom": "DICOM series", "dicom-enhanced": "DICOM series", "image": "image"}


class Case:
    """One scan and what the models say about it. `source` names where it came from in the report
    and the JSON export ("uploaded NIfTI"): never a file name, which can name the patient."""

    def __init__(self, volume: Volume, source: str = "", predictor: Predictor | None = None):
        self.volume = volume
        self.source = source
        self.predictor = predictor
        self.review_case_id: int | None = None  # set once sent to the review queue
        # The source study for DICOM results (UIDs and the patient module, which identify): set by
        # the source (a PACS pull, a DICOM upload), held in memory only, never stored or shown.
        self.reference: SourceReference | None = None
        self.from_pacs = False  # opened from the PACS: results may go back into its study
        self.sent_to_pacs: list[str] = []  # SOP Instance UIDs stored in the PACS by `send_to_pacs`
        self._normalized: dict[str, np.ndarray] = {}
        self._slices: np.ndarray | None = None
        self._prediction: tuple[tuple, VolumePrediction] | None = None
        self._model_slices: dict[tuple[str, str], np.ndarray] = {}
        self._heatmaps: OrderedDict[tuple, explain.CamResult] = OrderedDict()
        self._report: tuple[tuple, bytes] | None = None

    def rename_channels(self, mapping: Mapping[str, str]) -> None:
        """Correct the sequence names of the channels ({channel: sequence}); everything derived
        from the names (the models' inputs, the prediction, heat maps, report) is recomputed."""
        self.volume = rename_channels(self.volume, dict(mapping))
        self._normalized.clear()
        self._slices = self._prediction = self._report = None
        self._model_slices.clear()
        self._heatmaps.clear()

    # ------------------------------------------------------------------------------- pixels
    def normalized(self, channel: str | None = None) -> np.ndarray:
        """`channel` (default: the active one) scaled to [0, 1], (z, y, x): what the viewer windows."""
        channel = channel or self.volume.active_channel
        if channel not in self._normalized:
            self._normalized[channel] = preprocess.normalize_intensity(self.volume.channels[channel])
        return self._normalized[channel]

    @property
    def slices(self) -> np.ndarray:
        """The axial display slices of the active channel, (N, H, W) in [0, 1]: what the models, the
        report and the review queue read. Equal to `preprocess.slices(volume, "axial")`, derived from
        the viewer's normalised channel so the volume is normalised once."""
        if self._slices is None:
            axial = preprocess.orient(self.normalized(), "axial")
            self._slices = np.ascontiguousarray(axial, dtype=np.float32)
        return self._slices

    def model_slices(self, task: str) -> np.ndarray:
        """The axial slices `task`'s model reads: (N, H, W), or (N, C, H, W) for a model of several
        sequences; what the prediction read, so heat maps explain the same pixels."""
        predictor = self._require_predictor()
        key = (task, predictor.model(task).ref)
        if key not in self._model_slices:
            x, _why = predictor.task_slices(task, self.volume, self.slices, sequences=None, forced=True)
            self._model_slices[key] = self.slices if x is None else x
        return self._model_slices[key]

    # --------------------------------------------------------------------------- prediction
    @property
    def prediction(self) -> VolumePrediction | None:
        """The cascade's answer for this scan (None without a predictor); computed once per set of
        model versions, so reruns reuse it and a promotion recomputes it."""
        if self.predictor is None:
            return None
        key = models_key(self.predictor)
        if self._prediction is None or self._prediction[0] != key:
            self._prediction = (key, self.predictor.predict_volume(self.volume, source=self.source, axial=self.slices))
        return self._prediction[1]

    @property
    def explainable_tasks(self) -> list[str]:
        """The tasks whose answer a heat map can explain (no heat map without an answer)."""
        pred = self.prediction
        if pred is None:
            return []
        return [t for t, r in pred.tasks.items() if t in self.predictor.models and r.answered]

    @property
    def explained_task(self) -> str | None:
        """The task heat maps explain unless asked otherwise: the tumour type when it answered."""
        tasks = self.explainable_tasks
        return "tumor_type" if "tumor_type" in tasks else next(iter(tasks), None)

    def classes(self, task: str) -> list[str]:
        """The class names of `task`'s model, in its output order."""
        return list(self._require_predictor().model(task).classes)

    # ---------------------------------------------------------------------------- heat maps
    def heatmap(
        self, task: str, slice_index: int, class_index: int | None = None, method: str = explain.DEFAULT_METHOD
    ) -> explain.CamResult:
        """The `method` heat map of axial slice `slice_index` on `task`'s model for class
        `class_index` (default: the verdict of `task`). Cached in the case (`cached` is then True)."""
        predictor = self._require_predictor()
        if class_index is None:
            class_index = self.prediction.class_index(task)
        key = (predictor.model(task).ref, task, int(slice_index), class_index, method)
        hit = self._heatmaps.get(key)
        if hit is not None:
            self._heatmaps.move_to_end(key)
            return replace(hit, ms=0.0, cached=True)
        x = self.model_slices(task)[int(slice_index)]
        result = explain.cam(predictor, x, method, class_index, task=task, use_cache=False)
        self._heatmaps[key] = result
        if len(self._heatmaps) > HEATMAP_CACHE_SIZE:
            self._heatmaps.popitem(last=False)
        return result

    def key_slice_heatmaps(
        self, task: str | None = None, class_index: int | None = None, method: str = explain.DEFAULT_METHOD
    ) -> dict[int, explain.CamResult]:
        """{slice index: heat map} of the key slices (the most tumour-like), for `task` (default:
        `explained_task`) and `class_index` (default: its verdict); {} when no task answered."""
        task = task or self.explained_task
        pred = self.prediction
        if task is None or pred is None:
            return {}
        return {k: self.heatmap(task, k, class_index, method) for k in pred.key_slices}

    # ------------------------------------------------------------------------------ reports
    def report_pdf(self, heatmaps: Mapping[int, explain.CamResult] | None = None) -> bytes:
        """The PDF case report: verdict, probabilities, uncertainty, the key slices with their heat
        maps (default: `key_slice_heatmaps()`), the model cards and the intended use. Built once
        per set of heat maps."""
        pred = self._require_prediction()
        if heatmaps is None:
            heatmaps = self.key_slice_heatmaps()
        key = (
            models_key(self.predictor),
            tuple(sorted((k, c.task, c.method, c.class_index) for k, c in heatmaps.items())),
        )
        if self._report is None or self._report[0] != key:
            pdf = report.build_pdf(
                pred, self.slices, cams=dict(heatmaps), cards=self._cards(pred), meta=self.volume.meta
            )
            self._report = (key, pdf)
        return self._report[1]

    def report_json(self) -> str:
        """The JSON export: the prediction, its headline and the de-identified metadata."""
        data = report.build_json(self._require_prediction(), meta=self.volume.meta)
        return json.dumps(jsonable(data), indent=2)

    def dicom_results(self, heatmaps: Mapping[int, explain.CamResult] | None = None) -> list[Dataset]:
        """[DICOM SR, key images (Secondary Capture with heat maps and a burned-in "not for
        diagnosis" banner)] of the verdict, in the source study (`reference`); a scan without DICOM
        headers gets a new anonymous study, kept so that a second export joins the same study."""
        pred = self._require_prediction()
        if heatmaps is None:
            heatmaps = self.key_slice_heatmaps()
        if self.reference is None:
            self.reference = SourceReference.new_study()
        picture = self.volume.source_format == "image"  # a 2D picture records no orientation
        return dicom_out.dicom_results(
            pred,
            self.reference,
            self.slices,
            dict(heatmaps),
            cards=self._cards(pred),
            aspect=preprocess.plane_aspect(self.volume, "axial"),
            patient_orientation=None if picture else ("L", "P"),
        )

    def send_to_pacs(self, client, heatmaps: Mapping[int, explain.CamResult] | None = None) -> list[str]:
        """Store `dicom_results` in the source study on the PACS (STOW-RS; core.pacs.PacsError when
        it refuses); returns the stored SOP Instance UIDs."""
        self.sent_to_pacs = dicomweb.push(client, self.dicom_results(heatmaps))
        return self.sent_to_pacs

    def _cards(self, pred: VolumePrediction) -> dict:
        return {t: self.predictor.models[t].card for t in pred.tasks if t in self.predictor.models}

    # ------------------------------------------------------------------------- review queue
    def send_to_review(self, repo, user) -> int:
        """Store the de-identified case, its slices and per-slice predictions in the review queue of
        every task (`user` must be allowed to: core.auth); once, later calls return the same id."""
        if self.review_case_id is None:
            self.review_case_id = review.send_to_review(
                repo, self.volume, self._require_prediction(), actor=user, images=self.slices
            )
        return self.review_case_id

    # ----------------------------------------------------------------------------- internal
    def _require_predictor(self) -> Predictor:
        if self.predictor is None:
            raise RuntimeError("no model is loaded for this case")
        return self.predictor

    def _require_prediction(self) -> VolumePrediction:
        pred = self.prediction
        if pred is None:
            raise RuntimeError("no model is loaded for this case")
        return pred


def models_key(predictor: Predictor) -> tuple:
    """What a prediction depends on: the loaded model versions and the tasks that failed to load."""
    loaded = tuple(sorted(predictor.model_versions.items()))
    failed = tuple(sorted((task, ref) for task, (ref, _why) in predictor.unavailable.items()))
    return loaded, failed


def describe_upload(volume: Volume | None, n_files: int) -> str:
    """How a case names an upload in reports and the store: what was uploaded ("uploaded NIfTI",
    "uploaded DICOM series (3 files)"), never the file names (they can name the patient)."""
    kind = SOURCE_KINDS.get(getattr(volume, "source_format", ""), "scan")
    return f"uploaded {kind}" + (f" ({n_files} files)" if n_files > 1 else "")


def unnamed_channels(volume: Volume) -> tuple[str, int] | None:
    """("rgb", 3) for a colour picture whose channels were not named as sequences, ("volumes", n)
    for a 4D file of unnamed volumes t0..tn, else None: the channels the user may name."""
    names = list(volume.channels)
    if {"red", "green", "blue"} <= set(names):
        return "rgb", 3
    if len(names) > 1 and all(re.fullmatch(r"t\d+", n) for n in names):
        return "volumes", len(names)
    return None
