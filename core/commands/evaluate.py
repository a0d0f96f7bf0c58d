"""`python -m core evaluate`: re-score a model version on its held-out data, the way its card says.

    python -m core evaluate --model grade@1.0.0 --data ../shared/data/tcga-lgg --split test --json
    python -m core evaluate --model tumor_type@1.0.0 --data ../shared/data/figshare-cemri --fold 1 --json

--split test: the version's model on the locked test patients recorded in the card (the split is
recomputed and its fingerprint checked). --fold F: that CV fold's model (kept beside model.pt) on
fold F's test patients (shipped: fold 1 of tumor_type only). Without --data the card's training
data paths are used (a folder missing here is looked up by name in NEUROGRADE_DATA_DIR).
"""
from __future__ import annotations

import argparse
import json
import sys

from core.commands import model_error_text, model_errors


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="re-score a model version on its held-out split",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="TASK@VERSION or TASK@active")
    p.add_argument("--data", help="data folder(s) (default: those in the card)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--fold", type=int, help="a CV fold (1..k): its fold model on its test patients")
    g.add_argument("--split", choices=["test"], help="the locked test split")
    p.add_argument("--split-of", metavar="TASK@VERSION", default=None,
                   help="with --split test: the locked test split (and data) recorded by ANOTHER version's card, "
                        "e.g. to score the champion on a challenger's locked test when their data differ")
    p.add_argument("--record", action="store_true",
                   help="keep the result in the store as this version's evaluation on that split (promotion "
                        "compares versions on a shared split fingerprint; see core.promotion)")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--tta-rotate", type=float, default=None, metavar="DEG",
                   help="research: also average views rotated by +DEG and -DEG (the card's metrics do not)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def data_for_card(card: dict, data: str | None = None) -> str:
    """The data argument that re-reads a version's data: `data` when given (keeping the card's
    per-source caps and options PATH:key=value:N for the same sources), else the card's recipe
    paths. Cards record the trainer's absolute paths: a recorded folder missing here is looked up
    by name in NEUROGRADE_DATA_DIR."""
    from pathlib import Path

    from core.config import get_settings
    from core.training.datasets import source_suffix

    def split_cap(source: str) -> tuple[str, str]:      # "PATH:key=value:N" -> ("PATH", ":key=value:N")
        return source_suffix(source)

    recorded = [split_cap(p) for p in (card.get("recipe") or {}).get("data", "").split(",") if p]
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


def evaluate(ref: str, data: str | None = None, fold: int | None = None, split: str | None = None,
             n_boot: int = 1000, tta_rotate: float | None = None, split_of: str | None = None) -> dict:
    import numpy as np

    from core.training.calibration import apply_temperature
    from core.training.datasets import load_dataset
    from core.training.experiment import TrainConfig, _flat, make_splits, score
    from core.training.loop import predict_logits
    from model_zoo.checkpoints import load_checkpoint, resolve_ref, spec_from_card
    from model_zoo.registry import create

    loaded = load_checkpoint(ref)
    card = loaded.card
    spec = spec_from_card(card)
    if split_of is not None:       # the data and locked test split of another version's card
        if fold is not None or split != "test":
            raise SystemExit("evaluate: --split-of goes with --split test")
        card = resolve_ref(split_of).card
        if card["task"] != loaded.task or list(card.get("classes") or []) != list(loaded.classes):
            raise SystemExit(f"evaluate: {split_of} is another task or has other classes than {ref}")
    recipe = card.get("recipe") or {}
    cfg = TrainConfig(task=card["task"], data=data_for_card(card, data), folds=int(recipe.get("folds") or 0),
                      test_fraction=recipe.get("test_fraction"), stratify=recipe.get("stratify") or "label",
                      img_size=spec.input_size)
    cfg.fit.seed = int((recipe.get("fit") or {}).get("seed", 0))
    ds = load_dataset(cfg.data, cfg.task, spec.input_size, seed=cfg.seed)
    sp = make_splits(ds, cfg)
    out = {"model": f"{loaded.task}@{loaded.version}", "data": cfg.data,
           "manifest_sha256": [p["sha256"] for p in ds.summary()],
           "card_manifest_sha256": [p.get("sha256") for p in card.get("training_data", [])]}
    if fold is not None:
        cv = (card.get("metrics") or {}).get("cv") or {}
        entries = {f["fold"]: f for f in cv.get("per_fold", [])}
        if fold not in entries or not 1 <= fold <= len(sp["folds"]):
            raise SystemExit(f"evaluate: {ref} has no CV fold {fold} (folds: {sorted(entries)})")
        entry = entries[fold]
        path = loaded.path / entry["weights"]["file"]
        if not path.is_file():   # only some fold models ship, to keep the repository small
            raise SystemExit(f"evaluate: the fold {fold} model of {ref} is not shipped; rebuild it with the "
                             f"card's command (`python -m core train --recipe {loaded.task} ...`)")
        from model_zoo.registry import sha256_file

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
        fp = recipe.get("split", {}).get("locked_test", {}).get("fingerprint")
        from core.training.splits import split_fingerprint

        if fp and split_fingerprint(ds.groups, sp["test"]) != fp:
            raise SystemExit("evaluate: the locked test split differs from the card's (other data?)")
        model, idx, temperature = loaded.model, sp["test"], loaded.temperature
        test = (card.get("metrics") or {}).get("test") or {}
        reference = {k: test.get(k) for k in _flat(test)} if test else {}
        out["evaluated"] = "locked test split"
        out["fingerprint"] = split_fingerprint(ds.groups, sp["test"])
        if split_of is not None:
            out["evaluated"] = f"locked test split of {split_of}"
            out["split_of"] = split_of
            reference = {}      # the card's numbers belong to the other version
            trained = _trained_groups(loaded.card, ds.groups[sp["test"]])
            if trained is not None:
                out["test_patients_in_its_training_data"] = trained
    rotations = (tta_rotate, -tta_rotate) if tta_rotate else ()
    z = predict_logits(model, spec, ds.images[idx], tta_flip=bool(recipe.get("tta", True)), rotations=rotations)
    if rotations:
        out["tta_rotations"] = list(rotations)
    m = score(apply_temperature(z, temperature), ds, np.asarray(idx), n_boot)
    out.update(n=int(len(idx)), n_patients=int(len(set(ds.groups[idx].tolist()))), temperature=temperature,
               **{"headline": _flat(m), "card": reference, "metrics": m})
    return out


def _trained_groups(card: dict, test_groups) -> dict | None:
    """How many of a split's patients were in the evaluated version's own training pool (its
    locked-test patients of a source it trained on are not): {"n", "of", "note"}, or None."""
    locked = set(((card.get("recipe") or {}).get("split") or {}).get("locked_test", {}).get("patients") or [])
    sources = {d.get("name") for d in card.get("training_data") or []}
    pats = sorted(set(str(g) for g in test_groups))
    inside = [g for g in pats if g.split(":", 1)[0] in sources and g not in locked]
    return {"n": len(inside), "of": len(pats),
            "note": "patients of this split the evaluated version trained on (its own locked test aside): its "
                    "score here is optimistic on them"}


def run(args) -> int:
    if args.record and args.split != "test":
        raise SystemExit("evaluate: --record goes with --split test")
    try:
        out = evaluate(args.model, args.data, args.fold, args.split, args.n_boot, args.tta_rotate, args.split_of)
    except model_errors() as exc:   # checksum mismatch, unsafe pickle, unknown version: one line
        print(f"evaluate: {model_error_text(exc)}", file=sys.stderr)
        return 2
    if args.record:
        from core.promotion import record_evaluation

        task, version = out["model"].split("@", 1)
        split = out["evaluated"] + (f" ({out['test_patients_in_its_training_data']['n']} of its patients trained on "
                                    f"by {out['model']})" if out.get("test_patients_in_its_training_data") else "")
        record_evaluation(task, version, out["fingerprint"], out["metrics"], split, actor="evaluate")
        out["recorded"] = {"fingerprint": out["fingerprint"], "split": split}
    if args.json:
        print(json.dumps(out, indent=2, default=str))
    else:
        print(f"{out['model']} — {out['evaluated']} ({out['n']} slices, {out['n_patients']} patients)")
        if out.get("test_patients_in_its_training_data"):
            t = out["test_patients_in_its_training_data"]
            print(f"  {t['n']} of these {t['of']} patients were in {out['model']}'s training data (optimistic)")
        if out.get("recorded"):
            print(f"  recorded in the store for promotion (split {out['recorded']['fingerprint'][:12]})")
        if out.get("tta_rotations"):
            print(f"  views also rotated by {out['tta_rotations']} degrees: the card's numbers were not")
        for k, v in out["headline"].items():
            ref = out["card"].get(k)
            print(f"  {k:28s} {v if v is None else round(v, 4)!s:>8}   card: {ref if ref is None else round(ref, 4)}")
    return 0
