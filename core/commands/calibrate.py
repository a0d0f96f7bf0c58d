"""`python -m core calibrate TASK@VERSION [--target R] [--gate] [--write] [--json]`: when to refer,
and (presence, --gate) when to refuse an input.

Fits the version's feature density on its training images, chooses the referral threshold on
held-out patients so that confident wrong verdicts stay at or below R (default 1.5% of cases) by
conformal risk control, and reports it cross-fitted with the risk-coverage curve. With --gate (the
presence model's representation is the input gate's), also sets the gate's distance limit on
held-out in-distribution images (locked-test patients of every source, the T1-pre and T1-post
channels of the TCGA ones, and the external br35h/ and normal/ brain MRI when
NEUROGRADE_DATA_DIR has them) and measures it against the out-of-distribution items of
`core.research.ood_sets`. --write stores the density beside model.pt and the results in the card
(keys feature_density, referral, gate). See `core.calibrate`.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from core.cards import ModelCard
from core.config import get_settings
from core.research.ood_sets import all_ood_images
from core.training.datasets import _normalize, _read_grey, _resize, load_dataset, load_tcga_lgg


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "calibrate", help="referral rule and input gate of a model version", description=__doc__.split("\n\n", 1)[1]
    )
    p.add_argument("ref", metavar="TASK@VERSION")
    p.add_argument("--target", type=float, default=None, help="confident wrong verdicts per case (default 0.015)")
    p.add_argument("--gate", action="store_true", help="also set the input gate's limit (presence)")
    p.add_argument("--write", action="store_true", help="write the density and the results into the version")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def _dataset(card: ModelCard):
    from core.training.evaluation import data_for_card  # heavy: torch, only for this command
    from core.training.experiment import TrainConfig, make_splits  # heavy: torch, only for this command

    recipe = card.recipe
    cfg = TrainConfig(
        task=card.task,
        data=data_for_card(card),
        folds=recipe.folds or 0,
        test_fraction=recipe.test_fraction,
        stratify=recipe.stratify or "label",
        img_size=int(card.input.size),
    )
    cfg.fit.seed = recipe.seed
    ds = load_dataset(cfg.data, cfg.task, cfg.img_size, seed=cfg.seed)
    return ds, make_splits(ds, cfg)


def _fold_model(loaded, fold: int = 1):
    """The shipped CV fold model of a version, as a LoadedModel (verified by its card's sha256)."""
    from model_zoo import LoadedModel, create, sha256_file  # heavy: torch, only for this command

    card = ModelCard.of(loaded)
    entry = {f["fold"]: f for f in card.metrics.per_fold}[fold]
    path = loaded.path / entry["weights"]["file"]
    if not path.is_file() or sha256_file(path) != entry["weights"]["sha256"]:
        raise SystemExit(f"calibrate: {loaded.ref} has no verified fold-{fold} model ({path.name})")
    model = create(loaded.spec.name, len(loaded.classes), weights=str(path), in_channels=loaded.spec.in_channels)
    card = card.without("feature_density", "referral", "gate")  # the final model's calibration
    return LoadedModel(
        model=model.eval(),
        spec=loaded.spec,
        card=card,
        classes=loaded.classes,
        temperature=float(entry["train"]["temperature"]),
        task=loaded.task,
        version=f"{loaded.version}-fold{fold}",
        path=None,
    )


def _external_brain_mri(size: int, skip: tuple[str, ...] = ()):
    """(uint8 slices, groups) of br35h/ and normal/ when the data folder has them; sources in
    `skip` (the model's own training sources: their locked-test patients are in already) left out."""
    root = Path(get_settings().data_dir)
    images, groups = [], []
    for name, group_of in (
        ("br35h", lambda r: "br35h:" + r["image"]),
        ("normal", lambda r: f"normal:{r['source']}/{r['subject']}/{r['sequence']}"),
    ):
        manifest = root / name / "manifest.csv"
        if name in skip or not manifest.is_file():
            continue
        for r in csv.DictReader(open(manifest, newline="")):
            images.append(_resize(_normalize(_read_grey(root / name / r["image"]))[None], size)[0])
            groups.append(group_of(r))
    return (np.stack(images) if images else np.zeros((0, size, size), np.uint8)), np.array(groups, dtype=object)


def _tcga_other_channels(ds, test_idx, size: int):
    """T1-pre and T1-post slices of the locked-test TCGA patients (anatomical MRI the gate must
    accept, though presence was trained on their FLAIR)."""
    part = next((p for p in ds.parts if p["name"] == "tcga-lgg"), None)
    if part is None or "t1pre" in (part.get("sequences") or []):  # all sequences: in the test already
        return np.zeros((0, size, size), np.uint8), np.array([], dtype=object)
    test_patients = {g.split(":", 1)[1] for g in ds.groups[test_idx] if str(g).startswith("tcga-lgg:")}
    images, groups = [], []
    for channel in ("t1pre", "t1post"):
        s = load_tcga_lgg(Path(part["path"]), "presence", size, presence_channel=channel)
        keep = np.isin(s.groups, list(test_patients))
        images.append(s.images[keep])
        groups.append(np.array([f"tcga-lgg:{g}" for g in s.groups[keep]], dtype=object))
    return np.concatenate(images), np.concatenate(groups)


def run(args) -> int:
    from core import calibrate as cal  # heavy: torch, only for this command
    from core.inference import TaskModel  # heavy: torch, only for this command
    from core.inference.feature_density import GATE_FILE, FeatureDensity  # heavy: torch, only for this command
    from core.inference.referral import TARGET_CONFIDENT_WRONG  # heavy: torch, only for this command
    from core.zoo import load_checkpoint  # heavy: torch, only for this command

    loaded = load_checkpoint(args.ref)
    card = ModelCard.of(loaded)
    target = TARGET_CONFIDENT_WRONG if args.target is None else float(args.target)
    ds, sp = _dataset(card)
    tm = TaskModel(loaded, "cpu", "fp32")
    pool = sp["pool"]
    _, train_features = cal.features(tm, ds.images[pool])
    density = FeatureDensity.fit(train_features, ds.labels[pool])
    if sp["test"] is not None:
        held, held_model, held_density = sp["test"], tm, density
        source = "final model on the locked test patients"
    else:
        held_model = TaskModel(_fold_model(loaded), "cpu", "fp32")
        fit_idx, held = sp["folds"][0]
        held_density = FeatureDensity.fit(cal.features(held_model, ds.images[fit_idx])[1], ds.labels[fit_idx])
        source = (
            "fold-1 model (trained on folds 2-4) on fold-1 patients; the final model (all folds) "
            "reads the same percentile threshold on its own training images' scale"
        )
    study = cal.referral_study(held_model, held_density, ds.images[held], ds.labels[held], ds.groups[held], target)
    study["held_out"]["source"] = source
    study["command"] = f"python -m core calibrate {loaded.ref}" + (" --gate" if args.gate else "") + " --write"
    out = {"model": loaded.ref, "referral": study}
    if args.gate:
        test = sp["test"] if sp["test"] is not None else held
        gate_density = FeatureDensity.fit(cal.gate_features(tm, ds.images[pool]))
        ext_images, ext_groups = _external_brain_mri(tm.spec.input_size, skip=tuple(p["name"] for p in ds.parts))
        t1_images, t1_groups = _tcga_other_channels(ds, test, tm.spec.input_size)
        ids, groups = [], []
        for imgs, grp in ((ds.images[test], ds.groups[test]), (t1_images, t1_groups), (ext_images, ext_groups)):
            if len(imgs):
                ids.append(gate_density.distance(cal.gate_features(tm, imgs)))
                groups.append(grp)
        ood = cal.picture_distances(tm, gate_density, dict(all_ood_images()))
        out["gate"] = cal.gate_study(gate_density, np.concatenate(ids), np.concatenate(groups), ood)
        out["gate"].update(
            layer=cal.GATE_LAYER,
            features=f"channel mean and std of {cal.GATE_LAYER}, log1p, "
            "one Gaussian, Ledoit-Wolf covariance, fitted on the training images",
            in_distribution="locked-test patients of every training source (+ their TCGA T1-pre, "
            "T1-post when trained on FLAIR only), br35h/ and normal/ slices where present and not "
            "training sources; grouped by patient / file / volume",
            command=study["command"],
        )
    if args.write:
        sections = {
            "feature_density": {
                **cal.save_density(density, loaded.path),
                "features": (
                    "input of the last Linear layer, log1p, class-conditional Gaussian, shared Ledoit-Wolf covariance"
                ),
            },
            "referral": study,
        }
        if "gate" in out:
            sections["gate"] = {**out["gate"], **cal.save_density(gate_density, loaded.path, GATE_FILE)}
        card.with_sections(**sections).write(loaded.path)
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        cf = study["cross_fitted"]
        print(
            f"{loaded.ref}: refer above familiarity percentile {study['max_percentile']:.3f} "
            f"(target {target:g} confident wrong per case)"
        )
        print(
            f"  cross-fitted on {study['held_out']['n']} held-out images: coverage {cf['coverage']['mean']:.3f}, "
            f"accuracy answered {cf['accuracy_answered']['mean']:.3f}, confident wrong "
            f"{cf['confident_wrong']['mean']:.3f}"
        )
        if "gate" in out:
            g = out["gate"]
            print(
                f"  gate: distance limit {g['max_distance']:.2f}, AUROC {g['auroc']:.3f}, false refusal "
                f"{g['false_refusal']['mean']:.3f}, OOD refused {g['ood_refused']:.3f} of {g['n_ood']}"
            )
    return 0
