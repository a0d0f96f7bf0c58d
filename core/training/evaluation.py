"""Re-scoring a model version on its held-out data, the way its card says (`python -m core
evaluate`, promotion's locked-test score, calibration and quantisation read the same data).

`evaluate` raises SystemExit with a message for a version that cannot be re-scored as asked (no
such fold, a fold model not shipped, a locked test that differs from the card's)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from core.cards import ModelCard
from core.config import get_settings
from core.training.calibration import apply_temperature
from core.training.datasets import load_dataset, source_suffix
from core.training.experiment import TrainConfig, _flat, make_splits, score
from core.training.loop import predict_logits
from core.training.splits import split_fingerprint
from core.zoo import load_checkpoint, model_card
from model_zoo import create, sha256_file, spec_from_card


def data_for_card(card: ModelCard | Mapping, data: str | None = None) -> str:
    """The data argument that re-reads a version's data: `data` when given (keeping the card's
    per-source caps and options PATH:key=value:N for the same sources), else the card's recipe
    paths. Cards record the trainer's absolute paths: a recorded folder missing here is looked up
    by name in NEUROGRADE_DATA_DIR."""

    def split_cap(source: str) -> tuple[str, str]:  # "PATH:key=value:N" -> ("PATH", ":key=value:N")
        return source_suffix(source)

    recorded = [split_cap(p) for p in (ModelCard.coerce(card).recipe.data or "").split(",") if p]
    if not data:
        out = []
        for path, cap in recorded:
            local = get_settings().data_dir / Path(path.rstrip("/")).name
            out.append(f"{local}{cap}" if not Path(path).exists() and local.exists() else f"{path}{cap}")
        return ",".join(out)
    caps = {Path(path.rstrip("/")).name: cap for path, cap in recorded if cap}
    out = []
    for path, cap in map(split_cap, data.split(",")):
        out.append(f"{path}{cap or caps.get(Path(path.rstrip('/')).name, '')}")
    return ",".join(out)


def evaluate(
    ref: str,
    data: str | None = None,
    fold: int | None = None,
    split: str | None = None,
    n_boot: int = 1000,
    tta_rotate: float | None = None,
    split_of: str | None = None,
) -> dict:
    loaded = load_checkpoint(ref)
    own_card = card = ModelCard.of(loaded)
    spec = spec_from_card(card)
    if split_of is not None:  # the data and locked test split of another version's card
        if fold is not None or split != "test":
            raise SystemExit("evaluate: --split-of goes with --split test")
        card = model_card(split_of)
        if card.task != loaded.task or list(card.classes) != list(loaded.classes):
            raise SystemExit(f"evaluate: {split_of} is another task or has other classes than {ref}")
    recipe = card.recipe
    cfg = TrainConfig(
        task=card.task,
        data=data_for_card(card, data),
        folds=recipe.folds or 0,
        test_fraction=recipe.test_fraction,
        stratify=recipe.stratify or "label",
        img_size=spec.input_size,
    )
    cfg.fit.seed = recipe.seed
    ds = load_dataset(cfg.data, cfg.task, spec.input_size, seed=cfg.seed)
    sp = make_splits(ds, cfg)
    out = {
        "model": f"{loaded.task}@{loaded.version}",
        "data": cfg.data,
        "manifest_sha256": [p["sha256"] for p in ds.summary()],
        "card_manifest_sha256": [p.sha256 for p in card.training_data],
    }
    if fold is not None:
        entries = {f["fold"]: f for f in card.metrics.per_fold}
        if fold not in entries or not 1 <= fold <= len(sp["folds"]):
            raise SystemExit(f"evaluate: {ref} has no CV fold {fold} (folds: {sorted(entries)})")
        entry = entries[fold]
        path = loaded.path / entry["weights"]["file"]
        if not path.is_file():  # only some fold models ship, to keep the repository small
            raise SystemExit(
                f"evaluate: the fold {fold} model of {ref} is not shipped; rebuild it with the "
                f"card's command (`python -m core train --recipe {loaded.task} ...`)"
            )
        if sha256_file(path) != entry["weights"]["sha256"]:
            raise SystemExit(f"evaluate: {path} does not match the sha256 in the card")
        model = create(spec.name, len(loaded.classes), weights=str(path), in_channels=spec.in_channels).eval()
        idx = sp["folds"][fold - 1][1]
        temperature = float(entry["train"]["temperature"])
        reference = {k: entry.get(k) for k in _flat(entry["metrics"])}
        out["evaluated"] = f"fold {fold} model on fold {fold} test patients"
    else:
        if sp["test"] is None:
            raise SystemExit(f"evaluate: {ref} was trained without a locked test split; use --fold F")
        fp = card.locked_test.fingerprint
        if fp and split_fingerprint(ds.groups, sp["test"]) != fp:
            raise SystemExit("evaluate: the locked test split differs from the card's (other data?)")
        model, idx, temperature = loaded.model, sp["test"], loaded.temperature
        test = card.metrics.test or {}
        reference = {k: test.get(k) for k in _flat(test)} if test else {}
        out["evaluated"] = "locked test split"
        out["fingerprint"] = split_fingerprint(ds.groups, sp["test"])
        if split_of is not None:
            out["evaluated"] = f"locked test split of {split_of}"
            out["split_of"] = split_of
            reference = {}  # the card's numbers belong to the other version
            trained = _trained_groups(own_card, ds.groups[sp["test"]])
            if trained is not None:
                out["test_patients_in_its_training_data"] = trained
    rotations = (tta_rotate, -tta_rotate) if tta_rotate else ()
    tta = True if recipe.tta is None else recipe.tta  # an older card without the key: flip averaging
    z = predict_logits(model, spec, ds.images[idx], tta_flip=tta, rotations=rotations)
    if rotations:
        out["tta_rotations"] = list(rotations)
    m = score(apply_temperature(z, temperature), ds, np.asarray(idx), n_boot)
    out.update(
        n=int(len(idx)),
        n_patients=int(len(set(ds.groups[idx].tolist()))),
        temperature=temperature,
        **{"headline": _flat(m), "card": reference, "metrics": m},
    )
    return out


def _trained_groups(card: ModelCard, test_groups) -> dict | None:
    """How many of a split's patients were in the evaluated version's own training pool (its
    locked-test patients of a source it trained on are not): {"n", "of", "note"}, or None."""
    locked = set(card.locked_test.patients)
    sources = set(card.training_sources)
    pats = sorted(set(str(g) for g in test_groups))
    inside = [g for g in pats if g.split(":", 1)[0] in sources and g not in locked]
    return {
        "n": len(inside),
        "of": len(pats),
        "note": "patients of this split the evaluated version trained on (its own locked test aside): its "
        "score here is optimistic on them",
    }
