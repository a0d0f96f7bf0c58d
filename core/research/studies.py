"""The three research studies as runnable units: defaults, the command that reproduces each, where
their result files live, and launching one as a background job (for the Research page).

Result files: committed ones under ``research/results/`` in the repository (or
``NEUROGRADE_RESEARCH_RESULTS``), re-runs from the page under ``NEUROGRADE_HOME/research/``.
File names: ``al_<task>.json``, ``transferability_<task>.json``, ``acgan_<task>.json``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from core import auth
from core.config import get_settings
from core.jsonable import jsonable
from core.research.al_simulation import ALConfig, simulate, split_pool_test
from core.research.features import dataset_features, parse_ref
from core.research.imbalance import run_imbalance_ablation
from core.store import Store
from core.store.jobs import launch, run_job
from core.training.datasets import load_dataset
from core.training.splits import assert_disjoint, locked_test_split, split_fingerprint
from core.zoo import model_card

__all__ = [
    "STUDIES",
    "default_backbone",
    "results_dirs",
    "list_results",
    "load_result",
    "study_argv",
    "command_line",
    "argv_from_args",
    "backbone_seen_patients",
    "clean_test_split",
    "launch_study",
    "al_table",
    "transferability_table",
    "agreement_table",
    "imbalance_table",
    "grade_baseline_table",
    "al_headline",
    "run_acgan_study",
    "run_al_study",
    "write_json",
    "REPO_ROOT",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
STUDIES = {
    "al": {"title": "Active learning", "command": "al-simulate", "prefix": "al_"},
    "transferability": {"title": "Transferability", "command": "transferability", "prefix": "transferability_"},
    "acgan": {"title": "ACGAN class balancing", "command": "imbalance-ablation", "prefix": "acgan_"},
    "grade_baseline": {"title": "Grade signal check", "command": "grade-baseline", "prefix": "baseline_"},
}
DATA_FOLDERS = {"grade": "tcga-lgg", "tumor_type": "figshare-cemri", "presence": "tcga-lgg"}


def default_data(task: str) -> str:
    return str(get_settings().data_dir / DATA_FOLDERS[task])


def default_backbone(task: str) -> tuple[str, str]:
    """(backbone reference, why) for a task's AL / ACGAN features: the shipped presence model, which
    never saw a grade or tumour-type label; its training patients are kept out of every test set
    (``clean_test_split``), so the backbone never saw a test image either. For the 3-sequence grade
    data each sequence goes through it as a grey image (+perseq), as it was trained (grey input)."""
    if task == "grade":
        return "presence@active+perseq", (
            "presence model (grey slices of TCGA-LGG FLAIR, TCIA, Figshare; tumour yes/no labels only): it never "
            "saw a grade label, and the test patients are ones it never saw at all; each sequence (t1pre, flair, "
            "t1post) through it as a grey image, features concatenated"
        )
    if task == "tumor_type":
        return "presence@active", (
            "presence model (tumour yes/no labels only, ~600 Figshare slices among its training data): it never "
            "saw a tumour-type label, and the test patients are ones it never saw at all"
        )
    return "tumor_type@active", "tumor_type model: a different task's backbone"


def results_dirs() -> list[Path]:
    """[the user's re-runs, the committed results] - the first found wins for a given file name."""
    committed = Path(os.environ.get("NEUROGRADE_RESEARCH_RESULTS") or REPO_ROOT / "research" / "results")
    return [get_settings().home / "research", committed]


def list_results(study: str) -> list[dict]:
    """[{"name", "path", "origin": "re-run" | "committed", "mtime"}] for a study, re-runs first."""
    prefix = STUDIES[study]["prefix"]
    out = []
    for origin, d in zip(("re-run", "committed"), results_dirs()):
        if d.is_dir():
            for p in sorted(d.glob(f"{prefix}*.json")):
                out.append({"name": p.stem, "path": str(p), "origin": origin, "mtime": p.stat().st_mtime})
    return out


def load_result(path: str | Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _study_json(result: dict):
    """Rounded (readable, diffable) and without working values (keys starting with "_")."""
    return jsonable(result, digits=6, skip_private=True)


def write_json(result: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(_study_json(result), indent=1, allow_nan=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def stamp(result: dict, argv: Sequence[str], started: float) -> dict:
    result["command"] = command_line(argv)
    result["created"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    result["seconds"] = round(time.time() - started, 1)
    return result


def argv_from_args(command: str, args, data: str | None = None) -> list[str]:
    """The full reproducing argv of a parsed command (every option written out, --job left out)."""
    out = [command]
    for key, value in vars(args).items():
        if key == "data" and data is not None:
            value = data
        if key in ("func", "job", "command") or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-") if len(key) > 1 else "-" + key
        if key == "C":
            flag = "--C"
        out += [flag] if value is True else [flag, str(value)]
    return out


def command_line(argv: Sequence[str]) -> str:
    """The reproducing command line (paths as given)."""
    return "python -m core " + " ".join(shlex.quote(a) for a in argv)


# ------------------------------------------------------------------------------ leakage
def backbone_seen_patients(ref: str) -> dict[str, set[str]]:
    """{data source name: patient ids} whose images trained (or validated) a zoo checkpoint: its
    card's training data re-loaded with the card's seed (same patient cap), minus its locked test
    patients. {} for random / ImageNet backbones (they never saw our data)."""
    r = parse_ref(ref)
    if r.kind != "zoo":
        return {}
    card = model_card(r.source)
    if not card.recipe.data:
        raise ValueError(f"{r.source}: its card does not record the training data; cannot check leakage")
    ds = load_dataset(card.recipe.data, card.task, card.input.size or 64, seed=card.recipe.seed)
    test = set(card.locked_test.patients)
    seen: dict[str, set[str]] = {}
    multi = "+" in ds.name
    for grp in set(str(x) for x in ds.groups.tolist()) - test:
        name, pid = grp.split(":", 1) if multi else (ds.name, grp)
        seen.setdefault(name, set()).add(pid)
    return seen


def clean_test_split(
    labels, groups, data_name: str, seen: dict[str, set[str]], test_fraction: float = 0.2
) -> tuple[np.ndarray, np.ndarray, dict]:
    """A fixed, label-stratified, patient-disjoint test split drawn ONLY from patients the feature
    backbone never saw (about ``test_fraction`` of all patients, or every unseen one if fewer)."""
    g = np.asarray([str(v) for v in np.asarray(groups).tolist()])
    y = np.asarray(labels)
    seen_here = seen.get(data_name, set())
    if not seen_here & set(g.tolist()):
        pool, test, info = split_pool_test(y, g, test_fraction)
        info["backbone_saw_test_patients"] = 0
        return pool, test, info
    unseen_rows = np.flatnonzero(~np.isin(g, sorted(seen_here)))
    n_all, n_unseen = len(set(g.tolist())), len(set(g[unseen_rows].tolist()))
    if n_unseen < 4:
        raise ValueError(f"only {n_unseen} patients of {data_name} are unseen by the backbone: no clean test set")
    frac = test_fraction * n_all / n_unseen
    if frac >= 0.95:
        test = unseen_rows
        method = "every patient the backbone never saw"
    else:
        sp = locked_test_split(g[unseen_rows], y[unseen_rows], fraction=frac)
        test = unseen_rows[sp.test_idx]
        method = f"splits.locked_test_split over the {n_unseen} patients the backbone never saw (fraction {frac:.3f})"
    pool = np.setdiff1d(np.arange(len(g)), test)
    assert_disjoint(g, pool, test)

    return (
        pool,
        test,
        {
            "fraction_of_patients": round(len(set(g[test].tolist())) / n_all, 4),
            "method": method,
            "n_patients": len(set(g[test].tolist())),
            "n_slices": int(len(test)),
            "fingerprint": split_fingerprint(g, test),
            "backbone_saw_test_patients": 0,
            "backbone_saw_pool_patients": len(seen_here & set(g[pool].tolist())),
        },
    )


# ------------------------------------------------------------------------------ runners
def run_al_study(
    task: str,
    data: str,
    *,
    backbone: str | None = None,
    cfg=None,
    n_boot: int = 1000,
    on_progress: Callable[[int, int, str], None] | None = None,
) -> dict:
    ref, why = (backbone, "given on the command line") if backbone else default_backbone(task)
    d = dataset_features(ref, data, task)
    cfg = cfg or ALConfig()
    _, test, test_info = clean_test_split(
        d["labels"], d["groups"], d["data"]["name"], backbone_seen_patients(ref), cfg.test_fraction
    )
    res = simulate(
        d["features"],
        d["labels"],
        d["groups"],
        d["classes"],
        cfg=cfg,
        n_boot=n_boot,
        on_progress=on_progress,
        test_idx=test,
    )
    res["test"].update(test_info)
    return {
        **res,
        "task": task,
        "data": d["data"],
        "backbone": {"ref": ref, "why": why, "feature_dim": int(d["features"].shape[1]), **d["backbone"]},
    }


def run_acgan_study(
    task: str,
    data: str,
    *,
    minority: str,
    fraction: float = 0.1,
    seeds: Sequence[int] = (0, 1, 2),
    backbone: str | None = None,
    head: str = "linear",
    head_epochs: int = 60,
    gan_epochs: int = 200,
    test_fraction: float = 0.2,
    on_progress: Callable[[int, int, str], None] | None = None,
) -> dict:
    """The feature-ACGAN imbalance ablation (``core.research.imbalance``) on real frozen features:
    a fixed patient-disjoint test split; the minority class cut by patient in the training split only."""
    ref, why = (backbone, "given on the command line") if backbone else default_backbone(task)
    d = dataset_features(ref, data, task)
    y, g = d["labels"], d["groups"].astype(str)
    tr, te, test_info = clean_test_split(y, g, d["data"]["name"], backbone_seen_patients(ref), test_fraction)
    res = run_imbalance_ablation(
        d["features"][tr],
        y[tr],
        d["features"][te],
        y[te],
        d["classes"],
        minority,
        fraction=fraction,
        seeds=[int(s) for s in seeds],
        train_groups=g[tr],
        test_groups=g[te],
        head=head,
        head_epochs=head_epochs,
        gan_epochs=gan_epochs,
        on_progress=on_progress,
    )
    return {
        "study": "acgan",
        **res,
        "task": task,
        "data": d["data"],
        "test": test_info,
        "backbone": {"ref": ref, "why": why, "feature_dim": int(d["features"].shape[1]), **d["backbone"]},
    }


# ------------------------------------------------------------------------------ jobs
def study_argv(study: str, params: dict, out: str | Path) -> list[str]:
    """`python -m core` arguments of a study with `params` (task, data, and the study's options)."""
    task = params["task"]
    data = params.get("data") or default_data(task)
    argv = [STUDIES[study]["command"], "--task", task, "--data", str(data), "--json", str(out)]
    if study == "al":
        for key, flag in (
            ("strategies", "--strategies"),
            ("seeds", "--seeds"),
            ("budgets", "--budgets"),
            ("backbone", "--backbone"),
            ("round_fraction", "--round-fraction"),
        ):
            if params.get(key) not in (None, ""):
                argv += [flag, str(params[key])]
    elif study == "transferability":
        if params.get("candidates"):
            argv += ["--candidates", str(params["candidates"])]
        if params.get("max_slices"):
            argv += ["--max-slices", str(params["max_slices"])]
    elif study == "acgan":
        for key, flag in (
            ("minority", "--minority"),
            ("fraction", "--fraction"),
            ("seeds", "--seeds"),
            ("backbone", "--backbone"),
            ("gan_epochs", "--gan-epochs"),
        ):
            if params.get(key) not in (None, ""):
                argv += [flag, str(params[key])]
    return argv


def launch_study(study: str, params: dict, actor="research page", repo=None) -> tuple[int, Path]:
    """Create a "research" job and start `python -m core <command> ... --job ID` detached; the
    result goes to NEUROGRADE_HOME/research/<prefix><task>.json. Returns (job id, output path).
    `actor`: the signed-in core.auth.Identity (its role must allow training) or a trusted name."""
    actor = auth.authorize(actor, "train")
    if study not in STUDIES:
        raise ValueError(f"unknown study {study!r}; one of {sorted(STUDIES)}")
    repo = repo or Store.open()
    out = get_settings().home / "research" / f"{STUDIES[study]['prefix']}{params['task']}.json"
    argv = study_argv(study, params, out)
    job_id = repo.jobs.create(
        "research", {"study": study, **params, "output": str(out), "command": command_line(argv)}, actor
    )
    launch(
        job_id,
        ["-m", "core", *argv, "--job", str(job_id)],
        repo=repo,
        env={"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))},
    )
    return job_id, out


def run_maybe_as_job(job_id: int | None, work: Callable[[Callable[[int, int, str], None]], dict]) -> int:
    """Run `work(on_progress)`; inside a job (`--job ID`) progress and the outcome go to the store."""
    if job_id is None:

        def progress(done: int, total: int, msg: str) -> None:
            print(f"[{done}/{total}] {msg}", file=sys.stderr, flush=True)

        work(progress)
        return 0

    repo = Store.open()

    def job_work(job):
        def progress(done: int, total: int, msg: str) -> None:
            job.check_cancel()
            job.progress(done / max(total, 1))
            job.log(msg)

        out = work(progress)
        return {"output": out.get("_output")} if isinstance(out, dict) else None

    return run_job(job_id, job_work, repo=repo)


def run_study_command(args, command: str, study: Callable[[str, Callable], dict]) -> int:
    """The common body of the research commands: one torch thread, the task's default data, the
    result stamped with its command line and written to `args.json` (or printed for "-"), progress
    reported to a store job when `--job` is given. `study(data, on_progress) -> result dict`."""
    torch.set_num_threads(1)
    data = args.data or default_data(args.task)
    argv = argv_from_args(command, args, data)

    def work(progress):
        t0 = time.time()
        res = stamp(study(data, progress), argv, t0)
        if args.json in (None, "-"):
            print(json.dumps(_study_json(res), indent=1))
        else:
            res["_output"] = str(write_json(res, args.json))
            print(f"wrote {args.json}", file=sys.stderr)
        return res

    return run_maybe_as_job(args.job, work)


# ------------------------------------------------------------------------------ tables (for the page)
def _r(v, nd: int = 3):
    return None if v is None else round(float(v), nd)


def al_table(result: dict, level: str = "patient_auc") -> list[dict]:
    """One row per strategy: AUC at 20/40/60% of the pool, budget reaching the baseline, mean
    paired difference to random below 100%."""
    rows = []
    for name, e in (result.get("strategies") or {}).items():
        row = {"strategy": name}
        for b in (0.2, 0.4, 0.6):
            if b in e["budgets"]:
                row[f"AUC @{int(b * 100)}%"] = _r(e[level]["mean"][e["budgets"].index(b)])
        ls = (e.get("label_saving") or {}).get(level) or {}
        reach, reach_lo = ls.get("budget_to_baseline"), ls.get("budget_to_baseline_lower_ci")
        row["reaches baseline at"] = None if reach is None else f"{reach:.0%}"
        row["reaches baseline CI at"] = None if reach_lo is None else f"{reach_lo:.0%}"
        vr = (e.get("vs_random") or {}).get(level) or {}
        row["mean diff vs random"] = _r(vr.get("mean_diff_below_full"))
        row["better than random at"] = (
            ", ".join(f"{b:.0%}" for b in vr.get("budgets_significantly_better") or []) or None
        )
        row["worse than random at"] = ", ".join(f"{b:.0%}" for b in vr.get("budgets_significantly_worse") or []) or None
        rows.append(row)
    return rows


def transferability_table(result: dict) -> list[dict]:
    rows = []
    for r in result.get("candidates", []):
        s, ft = r.get("scores") or {}, r.get("fine_tuned") or {}
        rows.append(
            {
                "candidate": r["candidate"],
                "status": r["status"],
                "LogME": _r(s.get("logme"), 4),
                "H-score": _r(s.get("h_score"), 3),
                "LEEP": _r(s.get("leep"), 4),
                "NCE": _r(s.get("nce"), 4),
                "fine-tuned bal. acc.": _r(ft.get("balanced_accuracy")),
                "fine-tuned AUC": _r(ft.get("auc")),
                "saw target images": r.get("saw_target_images"),
                "note": r.get("reason"),
            }
        )
    return rows


def agreement_table(result: dict, actual: str = "balanced_accuracy") -> list[dict]:
    ag = (result.get("agreement") or {}).get(actual) or {}
    return [
        {
            "score": s,
            "n": a.get("n"),
            "Kendall tau": _r(a.get("kendall_tau")),
            "p (tau)": _r(a.get("kendall_p")),
            "Spearman rho": _r(a.get("spearman_rho")),
            "p (rho)": _r(a.get("spearman_p")),
        }
        for s, a in ag.items()
    ]


def imbalance_table(result: dict) -> list[dict]:
    classes = (result.get("config") or {}).get("classes") or []
    rows = []
    for t, v in (result.get("treatments") or {}).items():
        s = v["summary"]
        row = {
            "treatment": t,
            "balanced accuracy": _r(s["balanced_accuracy"]["mean"]),
            "± sd": _r(s["balanced_accuracy"]["std"]),
        }
        if "patient_balanced_accuracy" in s:
            row["patient bal. acc."] = _r(s["patient_balanced_accuracy"]["mean"])
        row["macro F1"] = _r(s["macro_f1"]["mean"])
        for c in classes:
            row[f"sens. {c}"] = _r(s["sensitivity"][c]["mean"])
        rows.append(row)
    return rows


def grade_baseline_table(result: dict) -> list[dict]:
    """One row per mask-derived feature (its AUC alone), then the cross-validated logistic regression."""
    rows = [
        {"predictor": name, "AUC": _r(auc), "± sd": None}
        for name, auc in (result.get("single_feature_auc") or {}).items()
    ]
    lr = result.get("logistic_regression") or {}
    if lr:
        rows.append(
            {
                "predictor": f"logistic regression, all features ({lr['folds']}-fold CV x {lr['seeds']})",
                "AUC": _r(lr["auc_mean"]),
                "± sd": _r(lr["auc_sd"]),
            }
        )
    if result.get("age_auc_reference") is not None:
        rows.append(
            {
                "predictor": "age (clinical reference, not an image feature)",
                "AUC": _r(result["age_auc_reference"]),
                "± sd": None,
            }
        )
    return rows


def al_headline(result: dict, level: str = "patient_auc", max_budget: float = 0.6) -> list[str]:
    """Plain sentences answering the issue's target (reach the full-pool AUC with <= 60% of the pool,
    beat random at equal budget) for one AUC level."""
    base = result.get("baseline") or {}
    ci = base.get(f"{level}_ci95") or [None, None]
    lines = []
    if base.get(level) is not None:
        ci_txt = f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})" if ci[0] is not None else ""
        lines.append(
            f"Full-pool baseline {level.replace('_', ' ')}: {base[level]:.3f}{ci_txt}, "
            f"{(result.get('test') or {}).get('n_patients', '?')} test patients."
        )
    unc = [n for n in ("entropy", "margin", "least_confidence", "bald") if n in (result.get("strategies") or {})]
    for name in unc + [n for n in ("coreset", "random") if n in result.get("strategies", {})]:
        e = result["strategies"][name]
        ls = (e.get("label_saving") or {}).get(level) or {}
        reach = ls.get("budget_to_baseline")
        vr = ((e.get("vs_random") or {}).get(level) or {}).get("mean_diff_below_full")
        txt = f"**{name}**: reaches the baseline at " + (
            f"{reach:.0%} of the pool" if reach is not None else "no budget"
        )
        if reach is not None and reach < 1:
            txt += f" (label saving {1 - reach:.0%})"
        if vr is not None:
            txt += f"; mean AUC difference to random below 100%: {vr:+.3f}"
        lines.append(txt + ".")
    ok = [
        n
        for n in unc
        if ((result["strategies"][n].get("label_saving") or {}).get(level) or {}).get("budget_to_baseline") is not None
        and result["strategies"][n]["label_saving"][level]["budget_to_baseline"] <= max_budget + 1e-9
    ]
    beat = [
        n
        for n in unc
        if (((result["strategies"][n].get("vs_random") or {}).get(level) or {}).get("mean_diff_below_full") or 0) > 0
    ]
    if ci[0] is not None and ci[0] <= 0.5:
        # a baseline no better than chance is reached by anything: "label saving" would be vacuous
        lines.append(
            f"Target: **not assessable** — the full-pool model is not better than chance (its "
            f"{level.replace('_', ' ')} CI includes 0.5), so no label saving can be claimed."
        )
        return lines
    lines.append(
        f"Target (uncertainty sampling reaches the baseline with <= {max_budget:.0%} of the pool): "
        + ("met by " + ", ".join(ok) if ok else "**not met**")
        + ". Beats random on average: "
        + (", ".join(beat) if beat else "**none**")
        + "."
    )
    return lines
