"""Inference: the cascade over a volume, uncertainty and "refer to a human", the input gate.

    from core.inference import Predictor
    predictor = Predictor.from_active()              # active version of each task
    pred = predictor.predict_volume(volume)          # a core.io.Volume (a 2D image is one slice)
    pred.tasks["tumor_type"].label, pred.refer, pred.to_json()

Where things are:
    results.py          TaskResult, VolumePrediction, Status, Cause
    runtime.py          TaskModel: device, precision (bf16 / int8 / autocast), BatchNorm folding, probes
    cascade.py          Predictor: gate -> presence -> tumour type -> grade, one small step per task
    routing.py          which channels (sequences) of a scan each model reads
    slice_votes.py      which slices vote in "tumour present?", and the slice weights of the volume
    uncertainty.py      softmax, entropy, BALD, the fixed refer thresholds
    referral.py         the calibrated referral rule (conformal risk control on familiarity)
    feature_density.py  familiarity in a model's feature space (referral rule and input gate read it)
    gate.py             the input gate: DICOM header, picture statistics, feature distance
    validity.py         a task answers only through a model whose card shows it beats chance
    verdict.py          the verdict in words, shared by the scan page, the PDF report and the CLI

Know when not to answer: every TaskResult has a `status` (ok | refer | cannot_assess |
not_validated | not_applicable). A task whose model cannot be found, loaded or verified (sha256),
and every task downstream of it (`core.tasks.downstream`), is "cannot_assess" with the reason; a
task whose active model's card does not show it beats chance (`validity`) is "not_validated" and
its model does not run. Neither has probabilities.
"""

from core.inference.cascade import GLIOMA, KEY_SLICES, MC_MAX_SLICES, Predictor, Withheld
from core.inference.gate import image_ood
from core.inference.results import (
    CANNOT_ASSESS,
    CANNOT_ASSESS_VERDICT,
    NO_ANSWER,
    NO_TUMOUR_VERDICT,
    NOT_APPLICABLE,
    NOT_VALIDATED,
    OK,
    REFER,
    Cause,
    Status,
    TaskResult,
    VolumePrediction,
)
from core.inference.runtime import AGREEMENT_TOLERANCE, INT8_MIN_AGREEMENT, PRECISIONS, TaskModel, fold_batchnorm
from core.inference.slice_votes import PRESENCE_THRESHOLD, RELEVANCE_SHARPEN, relevance_weights, volume_presence
from core.inference.uncertainty import (
    BALD_REFER,
    ENTROPY_REFER,
    MARGIN_REFER,
    entropy,
    refer_reasons,
    softmax,
    uncertainty,
)

__all__ = [
    "Predictor",
    "TaskModel",
    "TaskResult",
    "VolumePrediction",
    "Status",
    "Cause",
    "Withheld",
    "OK",
    "REFER",
    "CANNOT_ASSESS",
    "NOT_VALIDATED",
    "NOT_APPLICABLE",
    "NO_ANSWER",
    "NO_TUMOUR_VERDICT",
    "CANNOT_ASSESS_VERDICT",
    "GLIOMA",
    "KEY_SLICES",
    "MC_MAX_SLICES",
    "PRECISIONS",
    "AGREEMENT_TOLERANCE",
    "INT8_MIN_AGREEMENT",
    "PRESENCE_THRESHOLD",
    "RELEVANCE_SHARPEN",
    "ENTROPY_REFER",
    "MARGIN_REFER",
    "BALD_REFER",
    "softmax",
    "entropy",
    "uncertainty",
    "refer_reasons",
    "relevance_weights",
    "volume_presence",
    "image_ood",
    "fold_batchnorm",
]
