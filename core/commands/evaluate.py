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


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="re-score a model version on its held-out split",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="TASK@VERSION or TASK@active")
    p.add_argument("--data", help="data folder(s) (default: those in the card)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--fold", type=int, help="a CV fold (1..k): its fold model on its test patients")
    g.add_argument("--split", choices=["test"], help="the locked test split")
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
             n_boot: int = 1000, tta_rotate: float | None = None) -> dict:
    import numpy as np

    from core.training.calibration import apply_temperature
    from core.training.datasets import load_dataset
    from core.training.experiment import TrainConfig, _flat, make_splits, score
    from core.training.loop import predict_logits
    from model_zoo.checkpoints import load_checkpoint, spec_from_card
    from model_zoo.registry import create

    loaded = load_checkpoint(ref)
    card = loaded.card
    recipe = card.get("recipe") or {}
    spec = spec_from_card(card)
    cfg = TrainConfig(task=card["task"], data=data_for_card(card, data), folds=int(recipe.get("folds") or 0),
                      test_fraction=recipe.get("test_fraction"), img_size=spec.input_size)
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
    rotations = (tta_rotate, -tta_rotate) if tta_rotate else ()
    z = predict_logits(model, spec, ds.images[idx], tta_flip=bool(recipe.get("tta", True)), rotations=rotations)
    if rotations:
        out["tta_rotations"] = list(rotations)
    m = score(apply_temperature(z, temperature), ds, np.asarray(idx), n_boot)
    out.update(n=int(len(idx)), n_patients=int(len(set(ds.groups[idx].tolist()))), temperature=temperature,
               **{"headline": _flat(m), "card": reference, "metrics": m})
    return out


def run(args) -> int:
    out = evaluate(args.model, args.data, args.fold, args.split, args.n_boot, args.tta_rotate)
    if args.json:
        print(json.dumps(out, indent=2, default=str))
    else:
        print(f"{out['model']} — {out['evaluated']} ({out['n']} slices, {out['n_patients']} patients)")
        if out.get("tta_rotations"):
            print(f"  views also rotated by {out['tta_rotations']} degrees: the card's numbers were not")
        for k, v in out["headline"].items():
            ref = out["card"].get(k)
            print(f"  {k:28s} {v if v is None else round(v, 4)!s:>8}   card: {ref if ref is None else round(ref, 4)}")
    return 0
