"""The model card: what a version's card.json says, typed (read, validate, write).

A card is the record that travels with a version's weights, as torchvision's weights records carry
their transforms and meta: the task and classes, the input the model takes (size, channels,
normalisation, sequences in order of preference), the temperature, how it was trained (recipe,
data, command), what it measured (metrics, results), and the sections later commands add:
`int8` (quantize), `feature_density` and `referral` (calibrate), `gate` (calibrate --gate).

    card = ModelCard.read("model_zoo/checkpoints/presence/1.2.1")
    card.input.size, card.input.sequences, card.recipe.tta, card.referral.max_percentile
    card = ModelCard.coerce(loaded.card)          # model_zoo hands cards over as plain dicts
    card.replace(notes=(*card.notes, "...")).write(folder)

Every section is a frozen dataclass. A field the card does not have reads as its default (None,
an empty tuple or an empty section), so callers write `card.recipe.split.locked_test.patients`
instead of `get` chains. Keys this module does not know are kept in `extra`, and `to_dict()` gives
back exactly what was read (same keys, same order, same values): a card survives any number of
read/write round trips. Large measured results (`metrics.cv`, `referral.risk_coverage`, ...) stay
plain JSON values inside their section.

A ModelCard is also a read-only Mapping of its JSON (`card["gate"]`, `dict(card)`), for code that
takes plain card data: model_zoo's functions and JSON writers.

`model_zoo` reads card.json as plain data for loading and sha256 checks only; it never imports
this module, and this module needs only the standard library to read a card. Writes into an
existing version folder go through `model_zoo.write_card`, which refuses to change what defines
the model (weights, classes, input, metrics).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CARD_FILE = "card.json"


class CardError(ValueError):
    """A card.json that cannot be read or has a field of the wrong type; the message names the file
    and the field."""


class _FieldError(Exception):
    def __init__(self, path: str, problem: str):
        super().__init__(path, problem)
        self.path, self.problem = path, problem


# ------------------------------------------------------------------------------ field kinds
# A kind parses one JSON value (path: where it sits, for the error) into its typed form. Every
# kind accepts null: the card keeps it, and writes it back.
Kind = Callable[[Any, str], Any]


def _scalar(types: type | tuple[type, ...], what: str) -> Kind:
    def parse(value: Any, path: str) -> Any:
        if value is None or (isinstance(value, types) and (types is bool or not isinstance(value, bool))):
            return value  # (True is an int to Python, never to a card)
        raise _FieldError(path, f"must be {what}, got {value!r:.80}")

    return parse


STR = _scalar(str, "a string")
INT = _scalar(int, "an integer")
NUMBER = _scalar((int, float), "a number")  # kept as read: 1 stays 1, 1.0 stays 1.0
BOOL = _scalar(bool, "true or false")


def _json(types: type | tuple[type, ...], what: str) -> Kind:
    """A plain JSON value of one shape, kept as it is (a private copy)."""
    check = _scalar(types, what)
    return lambda value, path: copy.deepcopy(check(value, path))


ANY = lambda value, path: copy.deepcopy(value)  # noqa: E731 - a value of any JSON shape
OBJECT = _json(dict, "an object")
ARRAY = _json(list, "a list")


def _list_of(item: Kind) -> Kind:
    def parse(value: Any, path: str) -> tuple | None:
        if value is None:
            return None
        if not isinstance(value, list):
            raise _FieldError(path, f"must be a list, got {value!r:.80}")
        return tuple(item(v, f"{path}[{i}]") for i, v in enumerate(value))

    return parse


def _section(cls: type[_Section]) -> Kind:
    def parse(value: Any, path: str) -> _Section | None:
        return None if value is None else cls._parse(value, path)

    return parse


def _field(kind: Kind, default: Any = None, *, factory: Callable | None = None) -> Any:
    if factory is not None:
        return field(default_factory=factory, metadata={"kind": kind})
    return field(default=default, metadata={"kind": kind})


def _dump(value: Any) -> Any:
    if isinstance(value, _Section):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_dump(v) for v in value]
    return copy.deepcopy(value)


# ------------------------------------------------------------------------------ sections
@dataclass(frozen=True, kw_only=True)
class _Section:
    """A typed JSON object: declared fields (metadata "kind"), unknown keys in `extra`, and the
    order the keys were read in, so `to_dict()` writes back exactly what was read."""

    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)
    key_order: tuple[str, ...] = field(default=(), repr=False, compare=False)

    @classmethod
    def _declared(cls) -> dict[str, dataclasses.Field]:
        return {f.name: f for f in dataclasses.fields(cls) if "kind" in f.metadata}

    @classmethod
    def _parse(cls, data: Any, path: str):
        if not isinstance(data, Mapping):
            raise _FieldError(path, f"must be an object, got {data!r:.80}")
        declared = cls._declared()
        null_sections = {
            k for k, f in declared.items() if data.get(k, 0) is None and f.default_factory is not dataclasses.MISSING
        }  # "input": null reads as an empty section
        values = {
            k: declared[k].metadata["kind"](v, f"{path}.{k}".lstrip("."))
            for k, v in data.items()
            if k in declared and k not in null_sections
        }
        extra = {k: copy.deepcopy(v) for k, v in data.items() if k not in declared}
        return cls(**values, extra=extra, key_order=tuple(str(k) for k in data))

    def to_dict(self) -> dict[str, Any]:
        """The section as plain JSON data: the keys read (in their order), then fields set since."""
        out: dict[str, Any] = {}
        declared = self._declared()
        for key in self.key_order:
            if key in declared:
                out[key] = _dump(getattr(self, key))
            elif key in self.extra:
                out[key] = copy.deepcopy(self.extra[key])
        for key, f in declared.items():
            if key not in out and getattr(self, key) != _default(f):
                out[key] = _dump(getattr(self, key))
        out.update((k, copy.deepcopy(v)) for k, v in self.extra.items() if k not in out)
        return out

    def replace(self, **changes: Any):
        """A copy with `changes` (the card is immutable)."""
        return dataclasses.replace(self, **changes)


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


@dataclass(frozen=True, kw_only=True)
class InputSpec(_Section):
    """What the model takes: a square `size` px slice, `channels` channels normalised with mean/std
    on [0, 1] pixels, filled from `sequences` (in order; ["grey"]: any one sequence replicated)."""

    size: int | None = _field(INT)
    channels: int | None = _field(INT)
    mean: tuple[float, ...] | None = _field(_list_of(NUMBER))
    std: tuple[float, ...] | None = _field(_list_of(NUMBER))
    sequences: tuple[str, ...] | None = _field(_list_of(STR))
    note: str | None = _field(STR)


@dataclass(frozen=True, kw_only=True)
class TrainingSource(_Section):
    """One data source a version was trained on (a manifest's fingerprint, counts)."""

    name: str | None = _field(STR)
    path: str | None = _field(STR)
    sha256: str | None = _field(STR)
    n_images: int | None = _field(INT)
    n_patients: int | None = _field(INT)


@dataclass(frozen=True, kw_only=True)
class LockedTest(_Section):
    """The patients held out from all training: drawn with `seed` and `fraction`, identified by
    `fingerprint` (core.training.splits.split_fingerprint)."""

    fraction: float | None = _field(NUMBER)
    seed: int | None = _field(INT)
    fingerprint: str | None = _field(STR)
    n_patients: int | None = _field(INT)
    patients: tuple[str, ...] = _field(_list_of(STR), ())


@dataclass(frozen=True, kw_only=True)
class Split(_Section):
    """How the data was split: a locked test (train) or a held-out split (retraining jobs)."""

    grouping: str | None = _field(STR)
    locked_test: LockedTest = _field(_section(LockedTest), factory=LockedTest)
    cv: str | None = _field(STR)
    held_out: str | None = _field(STR)  # retraining: the split it was judged on
    fingerprint: str | None = _field(STR)
    labels_per_class: Mapping[str, int] | None = _field(OBJECT)


@dataclass(frozen=True, kw_only=True)
class Recipe(_Section):
    """How the version was trained (core.training.experiment.TrainConfig and what the run saw)."""

    task: str | None = _field(STR)
    data: str | None = _field(STR)  # "PATH[:key=value][:N],..." as `train --data`
    arch: str | None = _field(STR)
    strategy: str | None = _field(STR)
    init: str | None = _field(STR)
    folds: int | None = _field(INT)
    img_size: int | None = _field(INT)
    final: bool | None = _field(BOOL)
    test_fraction: float | None = _field(NUMBER)
    val_fraction: float | None = _field(NUMBER)
    tta: bool | None = _field(BOOL)  # flip test-time averaging in its metrics
    stratify: str | None = _field(STR)  # "label" | "source": what the folds balance
    fit: Mapping[str, Any] | None = _field(OBJECT)
    split: Split = _field(_section(Split), factory=Split)
    final_train: Mapping[str, Any] | None = _field(OBJECT)

    @property
    def seed(self) -> int:
        """The training seed (fit.seed; 0 when the card does not record one)."""
        return int((self.fit or {}).get("seed", 0) or 0)


@dataclass(frozen=True, kw_only=True)
class Metrics(_Section):
    """Held-out results as `core.training.experiment` writes them: `cv` (mean, ci95, per_fold,
    pooled) and `test` (the locked test's score() with its fingerprint), plain JSON."""

    cv: Mapping[str, Any] | None = _field(OBJECT)
    test: Mapping[str, Any] | None = _field(OBJECT)

    @property
    def per_fold(self) -> list[Mapping[str, Any]]:
        return list((self.cv or {}).get("per_fold") or [])


@dataclass(frozen=True, kw_only=True)
class SideFile(_Section):
    """A file a command wrote beside model.pt, verified by its sha256 before it is read."""

    file: str | None = _field(STR)
    sha256: str | None = _field(STR)


@dataclass(frozen=True, kw_only=True)
class Int8(SideFile):
    """`python -m core quantize`: int8 observers and their measured agreement with fp32."""

    engine: str | None = _field(STR)
    method: str | None = _field(STR)
    calibration: Mapping[str, Any] | None = _field(OBJECT)
    agreement_with_fp32: Mapping[str, Any] | None = _field(OBJECT)
    command: str | None = _field(STR)

    @property
    def identical_labels(self) -> float:
        """Share of images on which int8 kept fp32's label (0 when not measured)."""
        return float((self.agreement_with_fp32 or {}).get("identical_labels") or 0.0)


@dataclass(frozen=True, kw_only=True)
class FeatureDensity(SideFile):
    """`python -m core calibrate`: the referral rule's feature density."""

    n_reference: int | None = _field(INT)
    features: str | None = _field(STR)


@dataclass(frozen=True, kw_only=True)
class Referral(_Section):
    """`python -m core calibrate`: refer when less familiar than `max_percentile` of the training
    images or the top-2 margin is below `margin`; its measured operating point."""

    max_percentile: float | None = _field(NUMBER)
    target: float | None = _field(NUMBER)
    margin: float | None = _field(NUMBER)
    rule: str | None = _field(STR)
    held_out: Mapping[str, Any] | None = _field(OBJECT)
    cross_fitted: Mapping[str, Any] | None = _field(OBJECT)
    risk_coverage: tuple[Mapping[str, Any], ...] = _field(_list_of(OBJECT), ())
    command: str | None = _field(STR)


@dataclass(frozen=True, kw_only=True)
class Gate(SideFile):
    """`python -m core calibrate --gate`: the input gate (is this a brain MR these models read?)."""

    max_distance: float | None = _field(NUMBER)
    layer: str | None = _field(STR)
    auroc: float | None = _field(NUMBER)
    false_refusal: Mapping[str, Any] | None = _field(OBJECT)
    n_in_distribution: int | None = _field(INT)
    n_ood: int | None = _field(INT)
    ood_refused: float | None = _field(NUMBER)
    ood_items: Mapping[str, Any] | None = _field(OBJECT)
    slices_read: int | None = _field(INT)
    features: str | None = _field(STR)
    in_distribution: str | None = _field(STR)
    n_reference: int | None = _field(INT)
    command: str | None = _field(STR)


@dataclass(frozen=True, kw_only=True)
class Pretrained(_Section):
    """A natural-image backbone a version started from (model_zoo.weights provenance)."""

    source: str | None = _field(STR)
    package: str | None = _field(STR)
    file: str | None = _field(STR)
    sha256: str | None = _field(STR)
    licence: str | None = _field(STR)
    citation: str | None = _field(STR)
    trained_on: str | None = _field(STR)
    input_convention: str | None = _field(STR)


# ------------------------------------------------------------------------------ the card
@dataclass(frozen=True, kw_only=True)
class ModelCard(_Section, Mapping):
    task: str | None = _field(STR)
    classes: tuple[str, ...] = _field(_list_of(STR), ())
    architecture: str | None = _field(STR)
    input: InputSpec = _field(_section(InputSpec), factory=InputSpec)
    temperature: float | None = _field(NUMBER)
    version: str | None = _field(STR)
    sha256: str | None = _field(STR)
    created: str | None = _field(STR)
    parent: str | None = _field(STR)
    intended_use: str | None = _field(STR)
    limitations: tuple[str, ...] = _field(_list_of(STR), ())
    metrics: Metrics = _field(_section(Metrics), factory=Metrics)
    recipe: Recipe = _field(_section(Recipe), factory=Recipe)
    command: str | None = _field(STR)
    training_data: tuple[TrainingSource, ...] = _field(_list_of(_section(TrainingSource)), ())
    training_time_s: float | None = _field(NUMBER)
    results_summary: tuple[str, ...] = _field(_list_of(STR), ())
    notes: tuple[str, ...] = _field(_list_of(STR), ())
    informative: bool | None = _field(BOOL)  # False: the card says the model is at chance
    # sections later commands add (None until they run)
    pretrained_from: Pretrained | None = _field(_section(Pretrained))
    int8: Int8 | None = _field(_section(Int8))
    feature_density: FeatureDensity | None = _field(_section(FeatureDensity))
    referral: Referral | None = _field(_section(Referral))
    gate: Gate | None = _field(_section(Gate))
    source: str = field(default="card", repr=False, compare=False)  # where it was read (errors)

    # ------------------------------------------------------------------ reading
    @classmethod
    def from_dict(cls, data: Any, source: str | os.PathLike = "card") -> ModelCard:
        """Validate a card's JSON: CardError naming `source` and the field when one is malformed.
        Missing fields read as their defaults; unknown keys are kept."""
        try:
            card = cls._parse(data, "")
        except _FieldError as exc:
            where = f"field {exc.path!r}" if exc.path else "the card"
            raise CardError(f"{source}: {where} {exc.problem}") from None
        return dataclasses.replace(card, source=str(source))

    @classmethod
    def new(cls, data: Mapping, source: str = "a new card") -> ModelCard:
        """A card a command builds from its results (numpy numbers, paths...): made plain JSON
        exactly as model_zoo writes it (anything else becomes its string), then validated."""
        return cls.from_dict(json.loads(json.dumps(dict(data), default=str)), source)

    @classmethod
    def read(cls, path: str | os.PathLike) -> ModelCard:
        """A card.json (or the version folder holding one)."""
        path = _card_path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CardError(f"{path}: cannot read the model card ({exc})") from None
        return cls.from_dict(data, path)

    @classmethod
    def coerce(cls, card: ModelCard | Mapping | None, source: str | os.PathLike = "card") -> ModelCard:
        """`card` as a ModelCard: model_zoo's plain dicts (and a test's) are converted once here."""
        if isinstance(card, ModelCard):
            return card
        return cls.from_dict(dict(card or {}), source)

    @classmethod
    def of(cls, version) -> ModelCard:
        """The card of a model_zoo Checkpoint or LoadedModel (or anything with `.card`, `.path`)."""
        if isinstance(getattr(version, "card", None), ModelCard):
            return version.card
        folder = getattr(version, "path", None)
        return cls.coerce(getattr(version, "card", None), Path(folder) / CARD_FILE if folder else "card")

    # ------------------------------------------------------------------ writing
    def write(self, path: str | os.PathLike) -> Path:
        """Rewrite an existing version's card.json (path: it, or its folder). Descriptive changes
        only: model_zoo refuses changes to what defines the model (weights, classes, input, metrics)."""
        import model_zoo  # lazily: it loads torch, and reading a card needs neither

        folder = _card_path(path).parent
        model_zoo.write_card(folder, self.to_dict())
        return folder / CARD_FILE

    def with_sections(self, **sections: Any) -> ModelCard:
        """A copy with top-level keys set from a command's results (its new `referral`, `int8`...),
        made plain JSON as `new` does and validated: existing keys keep their place, new ones come last."""
        return ModelCard.new({**self.to_dict(), **sections}, self.source)

    def without(self, *keys: str) -> ModelCard:
        """A copy without these top-level keys (e.g. a fold model's card without the final model's
        calibration)."""
        return ModelCard.from_dict({k: v for k, v in self.to_dict().items() if k not in keys}, self.source)

    # ------------------------------------------------------------------ what callers ask
    @property
    def ref(self) -> str:
        return f"{self.task}@{self.version}"

    @property
    def tta(self) -> bool:
        """Did its metrics average each slice with its mirror image (so inference must too)?"""
        return bool(self.recipe.tta)

    @property
    def locked_test(self) -> LockedTest:
        return self.recipe.split.locked_test

    @property
    def training_sources(self) -> list[str]:
        return [str(d.name) for d in self.training_data if d.name]

    def side_file(self, key: str) -> SideFile | None:
        """The section ("int8", "feature_density", "gate") that declares a file beside model.pt."""
        section = getattr(self, key, None) if key in ("int8", "feature_density", "gate") else None
        return section if isinstance(section, SideFile) else None

    # ------------------------------------------------------------------ read-only Mapping of the JSON
    def __getitem__(self, key: str) -> Any:
        if key in self._declared() and (key in self.key_order or getattr(self, key) != _default(self._declared()[key])):
            return _dump(getattr(self, key))
        if key in self.extra:
            return copy.deepcopy(self.extra[key])
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())

    __hash__ = None  # type: ignore[assignment] - holds dicts


def _card_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path if path.name == CARD_FILE or path.suffix == ".json" else path / CARD_FILE


__all__ = [
    "CARD_FILE",
    "CardError",
    "FeatureDensity",
    "Gate",
    "InputSpec",
    "Int8",
    "LockedTest",
    "Metrics",
    "ModelCard",
    "Pretrained",
    "Recipe",
    "Referral",
    "SideFile",
    "Split",
    "TrainingSource",
]


# --------------------------------------------------------------- reading a card's metric blocks
def _level(metrics: Mapping, level: str) -> Mapping:
    return (metrics.get("patient") or {}) if level == "patient" else metrics


def metric_value(metrics: Mapping, key: str, level: str = "slice") -> float | None:
    """`key` of a score()-like dict (a card's metrics.test, a CV mean) at slice or patient level
    (None when absent)."""
    v = _level(metrics, level).get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def metric_ci(metrics: Mapping, key: str, level: str = "slice") -> list | None:
    """The 95% CI of `key` in a score()-like dict, [low, high], or None."""
    ci = (_level(metrics, level).get("ci95") or {}).get(key)
    return list(ci) if isinstance(ci, (list, tuple)) and len(ci) == 2 else None
