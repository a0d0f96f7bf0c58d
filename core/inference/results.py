"""What the cascade returns: one TaskResult per task and the VolumePrediction around them.

A task's status is "ok" or "refer" when it answered (following its refer flag); otherwise it says
why there is no answer. `Cause` records why, for code that must decide on it (the words are in
`note` and `refer_reasons`, for people).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from core.jsonable import jsonable
from core.sequences import sequence_title
from core.tasks import TASKS


class Status(StrEnum):
    OK = "ok"
    REFER = "refer"
    CANNOT_ASSESS = "cannot_assess"  # its model cannot be loaded or verified, a task it needs gave
    #                                     no answer, or the input was refused
    NOT_VALIDATED = "not_validated"  # the active model's card does not show it beats chance
    NOT_APPLICABLE = "not_applicable"  # asked for with tasks=, but no tumour was detected


class Cause(StrEnum):
    """Why a task gives no answer."""

    NONE = ""
    INPUT_REFUSED = "input_refused"  # the input gate refused the scan
    MODEL_UNAVAILABLE = "model_unavailable"  # not installed, not loadable or not verified
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"  # a task it needs gives no answer
    NOT_VALIDATED = "not_validated"  # its card does not show it beats chance
    NO_TUMOUR = "no_tumour"  # asked for, but no tumour was detected


OK, REFER = Status.OK, Status.REFER
CANNOT_ASSESS, NOT_VALIDATED, NOT_APPLICABLE = Status.CANNOT_ASSESS, Status.NOT_VALIDATED, Status.NOT_APPLICABLE
NO_ANSWER = (CANNOT_ASSESS, NOT_VALIDATED, NOT_APPLICABLE)

NO_TUMOUR_VERDICT = "no tumour detected"
CANNOT_ASSESS_VERDICT = "cannot assess"


@dataclass
class TaskResult:
    task: str
    classes: list[str]
    probabilities: list[float]  # calibrated (card temperature), volume level
    label: str
    uncertainty: dict[str, float]  # entropy, entropy_norm, margin, max_prob, (bald)
    refer: bool
    refer_reasons: list[str] = field(default_factory=list)
    model_version: str = ""
    n_slices_used: int = 0
    note: str = ""  # for a task without an answer: the reason, in words
    withheld: str = ""  # one of NO_ANSWER when the task gives no answer
    sequences: list[str] = field(default_factory=list)  # the sequence(s) its model read, e.g. ["flair"]
    cause: Cause = Cause.NONE  # why it gives no answer (for code; `note` has the words)

    @classmethod
    def unavailable(
        cls, task: str, status: str, reason: str, model_version: str = "", cause: Cause = Cause.NONE
    ) -> TaskResult:
        """A task that gives no answer: no probabilities, no label, `status` and `reason` say why.
        A task that cannot be assessed asks for a human reader (refer); one without a validated
        model does not (it never has one, so every case would be referred)."""
        if status not in NO_ANSWER:
            raise ValueError(f"status must be one of {NO_ANSWER}, got {status!r}")
        cannot = status == CANNOT_ASSESS
        return cls(
            task=task,
            classes=[],
            probabilities=[],
            label="",
            uncertainty={},
            refer=cannot,
            refer_reasons=[reason] if cannot else [],
            model_version=model_version,
            note=reason,
            withheld=Status(status),
            cause=cause,
        )

    @property
    def status(self) -> Status:
        """ok | refer | cannot_assess | not_validated | not_applicable"""
        if self.withheld:
            return Status(self.withheld)
        return REFER if self.refer else OK

    @property
    def answered(self) -> bool:
        return self.status in (OK, REFER)

    @property
    def read_on(self) -> str:
        """The sequence(s) read, in words: "FLAIR", "T1 pre-contrast + FLAIR + T1 post-contrast"."""
        return " + ".join(sequence_title(s) for s in self.sequences)

    def not_applicable(self) -> None:
        """Run (asked for with tasks=) where no tumour was detected: its answer does not apply."""
        self.withheld, self.note, self.cause = NOT_APPLICABLE, NO_TUMOUR_VERDICT, Cause.NO_TUMOUR
        self.refer, self.refer_reasons = False, []

    def to_dict(self) -> dict:
        d = asdict(self)
        del d["withheld"], d["cause"]
        d["status"] = str(self.status)
        return d


@dataclass
class VolumePrediction:
    """The cascade's result. Slices are counted from 0 in `slices[i]["index"]` and `key_slices`;
    people read "slice k of N" (k = index + 1), which the JSON gives as `slices[i]["number"]` and
    `key_slice_numbers`."""

    tasks: dict[str, TaskResult]
    slices: list[dict]  # [{"index", "presence", "<task>": [probs] | None}]
    key_slices: list[int]  # 0-based indices
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
    def status(self) -> Status:
        """ "cannot_assess" when no verdict can be given (the first task of the cascade that was
        run gives no answer, or nothing was run), else "refer" or "ok"."""
        if not self.tasks or not leads(self.tasks):
            return CANNOT_ASSESS
        return REFER if self.refer else OK

    @property
    def unassessed(self) -> list[str]:
        """The tasks that were run but cannot be assessed: the result is incomplete."""
        return [t for t, r in self.tasks.items() if r.status == CANNOT_ASSESS]

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "status": str(self.status),
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
        return json.dumps(jsonable(self.to_dict()), indent=indent)


def leads(results: Mapping[str, TaskResult]) -> bool:
    """Whether the first task of the cascade that was run gave an answer (or found it does not
    apply): without it there is no verdict."""
    first = next((results[t] for t in TASKS if t in results), next(iter(results.values()), None))
    return first is not None and first.status not in (CANNOT_ASSESS, NOT_VALIDATED)
