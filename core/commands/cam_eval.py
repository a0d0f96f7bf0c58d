"""`python -m core cam-eval [--limit N] [--json]`: how well each CAM method points at the tumour.

On Figshare CE-MRI images of a held-out fold (the tumour box is in the manifest: bbox_cx, bbox_cy,
bbox_w, bbox_h as fractions), for the active tumor_type model: per method the pointing-game hit
rate (the heat map's argmax inside the box) and the mean fraction of CAM energy inside the box
(the box's share of the image area is printed as the chance level)."""

from __future__ import annotations

import csv
import dataclasses
import json
import sys

import numpy as np

from core.cards import ModelCard
from core.config import get_settings
from core.io import load_volume
from core.preprocess import slices


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "cam-eval",
        help="pointing game / energy-in-box of each CAM method on Figshare",
        description=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("--limit", type=int, default=40, help="images to use (default 40)")
    p.add_argument("--fold", type=int, default=None, help="held-out fold (default: the card's test fold, else 4)")
    p.add_argument("--methods", default=None, help="comma list (default: all but the slow ones)")
    p.add_argument("--model", default="tumor_type@active", help="TASK@VERSION to explain")
    p.add_argument(
        "--class",
        dest="target",
        choices=["label", "predicted"],
        default="label",
        help="explain the true class (default) or the predicted one",
    )
    p.add_argument(
        "--layer",
        default=None,
        help="module whose activations are explained (default: the architecture's cam_layer), "
        "e.g. features.block4.relu4 for a finer map",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def _test_fold(card: ModelCard) -> int | None:
    """The held-out fold a card names (an older card's own key in its recipe, test or top level)."""
    for where in (card.recipe.extra, card.metrics.test or {}, card.extra):
        for k in ("test_fold", "holdout_fold", "fold"):
            v = where.get(k)
            if isinstance(v, int) or (isinstance(v, str) and v.isdigit()):
                return int(v)
    return None


def held_out_model(loaded, fold: int | None) -> tuple[int, str]:
    """Swap in the cross-validation model that never saw `fold` when its weights ship with the card
    (the final model was trained on every fold: pointing at a tumour it has seen proves less).
    Returns (fold, what is explained)."""
    from model_zoo import sha256_file  # heavy: torch, only for this command

    card = ModelCard.of(loaded)
    shipped = {}
    for entry in card.metrics.per_fold:
        path = loaded.path / ((entry.get("weights") or {}).get("file") or "")
        if path.is_file() and sha256_file(path) == entry["weights"].get("sha256"):
            shipped[int(entry["fold"])] = (path, entry)
    fold = fold or (min(shipped) if shipped else _test_fold(card) or 4)
    if fold not in shipped:
        return fold, f"{loaded.ref} (final model: it was trained on fold {fold} too)"
    import torch  # heavy: torch, only for this command

    path, entry = shipped[fold]
    loaded.model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    loaded.temperature = float(entry["train"]["temperature"])
    return fold, f"{loaded.ref} fold-{fold} CV model (never saw fold {fold})"


def evaluate(predictor, rows, data_root, methods, target: str = "label") -> dict:
    from core import explain  # heavy: torch, only for this command

    tm = predictor.model("tumor_type")
    per = {m: {"hits": [], "energy": [], "ms": []} for m in methods}
    area = []
    for r in rows:
        vol = load_volume(data_root / r["image"])
        sl = slices(vol)[0]
        box = tuple(float(r[k]) for k in ("bbox_cx", "bbox_cy", "bbox_w", "bbox_h"))
        area.append(box[2] * box[3])
        if target == "label" and r["label"] in tm.classes:
            ci = tm.classes.index(r["label"])
        else:
            ci = int(np.argmax(predictor.predict_slices("tumor_type", sl[None])[0]))
        for m in methods:
            res = explain.cam(predictor, sl, m, ci, use_cache=False)
            per[m]["hits"].append(explain.pointing_hit(res.heatmap, box))
            per[m]["energy"].append(explain.energy_in_box(res.heatmap, box))
            per[m]["ms"].append(res.ms)
    out = {}
    for m, v in per.items():
        out[m] = {
            "pointing_hit_rate": float(np.mean(v["hits"])) if v["hits"] else None,
            "energy_in_box": float(np.mean(v["energy"])) if v["energy"] else None,
            "ms_median": float(np.median(v["ms"])) if v["ms"] else None,
            "n": len(v["hits"]),
        }
    return {"methods": out, "chance_box_area": float(np.mean(area)) if area else None}


def run(args) -> int:
    from core import explain  # heavy: torch, only for this command
    from core.inference import Predictor  # heavy: torch, only for this command

    root = get_settings().data_dir / "figshare-cemri"
    manifest = root / "manifest.csv"
    if not manifest.is_file():
        print(f"Figshare data not found at {root} (set NEUROGRADE_DATA_DIR)", file=sys.stderr)
        return 2
    from core.zoo import load_checkpoint  # heavy: torch, only for this command

    try:
        loaded = load_checkpoint(args.model)
    except (KeyError, FileNotFoundError) as exc:
        print(f"no tumor_type model: {exc}", file=sys.stderr)
        return 1
    fold, held_out = held_out_model(loaded, args.fold)
    if args.layer:
        try:
            loaded.model.get_submodule(args.layer)
        except AttributeError:
            print(f"{loaded.ref} has no module {args.layer!r}", file=sys.stderr)
            return 2
        loaded.spec = dataclasses.replace(loaded.spec, cam_layer=args.layer)
    predictor = Predictor({"tumor_type": loaded})
    rows = [r for r in csv.DictReader(open(manifest, newline="")) if str(r.get("fold")) == str(fold)]
    rows = rows[:: max(1, len(rows) // max(1, args.limit))][: args.limit]
    methods = (
        [m.strip() for m in args.methods.split(",")]
        if args.methods
        else [k for k, m in explain.METHODS.items() if not m.slow]
    )
    result = evaluate(predictor, rows, root, methods, args.target)
    result.update(
        model=predictor.model("tumor_type").ref,
        fold=fold,
        n_images=len(rows),
        target=args.target,
        explained=held_out,
        layer=loaded.spec.cam_layer,
    )
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"CAM quality on Figshare fold {fold}, {len(rows)} images, {result['model']} "
            f"(explaining the {args.target} class); chance energy = box area {result['chance_box_area']:.3f}"
        )
        print(f"model explained: {held_out}; layer {loaded.spec.cam_layer}")
        print(f"{'method':<12}{'pointing':>10}{'energy in box':>15}{'ms':>8}")
        for m, v in result["methods"].items():
            print(f"{m:<12}{v['pointing_hit_rate']:>10.3f}{v['energy_in_box']:>15.3f}{v['ms_median']:>8.0f}")
    return 0
