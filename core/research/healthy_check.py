"""Healthy brains at every level: does the presence verdict say "no tumour" on normal brains, and
still "tumour" on tumour volumes? (`python -m core healthy-check`, issue 11 item 3.)

Runs the active presence model through the real `Predictor.predict_volume` on
- every `normal/images` volume (healthy volunteers; the PNG slices of one volume folder stacked in
  the manifest's `slice` order, as the series would arrive): specificity at the volume level;
- `normal/templates` (Colin27, MNI152): reported separately; they are the normal data the slice-vote
  constants were tuned on (see core/inference/slice_votes.py), not the data reported as the result;
- Br35H `no_tumor` slices, one 2D image at a time: slice-level specificity;
- TCGA-LGG tumour-free slices (`tumor_pixels` = 0) of the presence model's locked-test patients
  (card recipe.split.locked_test; the other TCGA patients were trained on), each patient's slices
  stacked in `slice` order into a pseudo-volume (FLAIR channel, as the model was trained): slice
  level, both as single 2D images and as votes inside their volume;
- TCIA-BTP slices outside the tumour masks (all-zero padding slices left out): slice level, as
  votes inside their volume. All 8 TCIA patients were in the presence model's training data;
- tumour volumes for sensitivity: the 16 TCIA-BTP volumes (trained on) and the TCGA-LGG
  pseudo-volumes of the locked-test patients (held out).

"before" is the rule the product used until issue 11 (a volume is "tumour" when any slice has
P(tumour) >= PRESENCE_THRESHOLD; single images: the same); "after" is the Predictor's verdict now
(core/inference/slice_votes.py: tissue-gated, neighbour-confirmed slice votes).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.cards import ModelCard
from core.inference import CANNOT_ASSESS_VERDICT, NO_TUMOUR_VERDICT, PRESENCE_THRESHOLD, slice_votes
from core.io import load_volume
from core.training.datasets import image_plane, normal_subjects, normal_volumes, stack_volume

CARD_PRESENCE = Path(__file__).resolve().parents[2] / "model_zoo" / "checkpoints" / "presence"


# ------------------------------------------------------------------------------------ loaders
# normal/ volumes are built by the training data loaders (one definition for training and checking)
_image_plane = image_plane


def _card(card: ModelCard | dict | Path | None) -> ModelCard:
    """A card given as a ModelCard or dict, a card.json path, or None (the shipped active presence card)."""
    if card is None:
        version = (CARD_PRESENCE / "ACTIVE").read_text().strip()
        card = CARD_PRESENCE / version / "card.json"
    return ModelCard.read(card) if isinstance(card, (str, Path)) else ModelCard.coerce(card)


def locked_test_patients(source: str = "tcga-lgg", card: ModelCard | Path | dict | None = None) -> list[str]:
    """Patients of `source` in the presence model's locked test (never trained on): `card` (a dict
    or card.json path), default the shipped active presence card."""
    pats = _card(card).locked_test.patients
    return [p.split(":", 1)[1] for p in pats if p.startswith(source + ":")]


def held_out_patients(source: str, card: ModelCard | Path | dict | None = None) -> set[str] | None:
    """The patients (groups) of `source` the presence model never trained on: None when `source` is
    not in its training data at all (everything is held out), else its locked-test ones."""
    c = _card(card)
    if source not in c.training_sources:
        return None
    return set(locked_test_patients(source, c))


def tcga_volumes(root: Path, patients: list[str]) -> Iterator[tuple[str, object, np.ndarray]]:
    """(case, Volume of the FLAIR channel, tumour per slice) per case of `patients`, slices stacked
    in `slice` order (a pseudo-volume: true spacing unknown, 1 mm nominal)."""
    rows = list(csv.DictReader(open(root / "manifest.csv", newline="")))
    by_case: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if r["patient"] in patients:
            by_case[r["case"]].append(r)
    for case, rs in sorted(by_case.items()):
        rs.sort(key=lambda r: int(r["slice"]))
        planes = [_image_plane(root / r["image"], channel="green") for r in rs]  # green = FLAIR
        tumour = np.array([int(r["tumor_pixels"]) > 0 for r in rs])
        yield case, stack_volume(planes, 1.0, f"tcga-lgg/{case}", channel="flair"), tumour


def tcia_volumes(root: Path) -> Iterator[tuple[str, object, np.ndarray]]:
    """(subject/timepoint, Volume, tumour per axial slice) for every TCIA-BTP T1 post-contrast scan."""
    for scan in sorted(root.glob("*/*_t1post.nii.gz")):
        vol = load_volume(str(scan))
        mask = load_volume(str(scan.with_name(scan.name.replace("_t1post", "_mask"))))
        tumour = (mask.array > 0).reshape(mask.array.shape[0], -1).any(1)
        vol.meta["source"] = f"tcia-btp/{scan.parent.name}/{scan.name}"
        yield f"{scan.parent.name}/{scan.name.split('_')[0]}", vol, tumour


def br35h_no_tumour(root: Path) -> list[Path]:
    rows = list(csv.DictReader(open(root / "manifest.csv", newline="")))
    return [root / r["image"] for r in rows if r["label"] == "no_tumor"]


# ------------------------------------------------------------------------------- the rules
def rule_before(p: np.ndarray, threshold: float) -> tuple[bool, float]:
    """The rule before issue 11 (kept here to compare): "tumour" when any slice has P(tumour) >=
    threshold; the volume's P(tumour) was the mean of the top-k slices (k ~ 2% of slices, 1..5)."""
    p = np.asarray(p, dtype=np.float64)
    k = int(min(5, max(1, np.ceil(0.02 * len(p)))))
    return bool((p >= threshold).any()), float(np.sort(p)[::-1][:k].mean())


def _runs(flags: np.ndarray) -> int:
    """Longest run of True."""
    best = cur = 0
    for f in flags:
        cur = cur + 1 if f else 0
        best = max(best, cur)
    return best


def _word(flag: bool | None) -> str:
    """True/False/None (no answer: the Predictor said "cannot assess") as the summaries count it."""
    return "cannot assess" if flag is None else "tumour" if flag else "no tumour"


def _slice_vote(o: dict, i: int, thr: float) -> dict:
    """One slice inside its volume: before = its P(tumour) >= thr, after = its evidence >= thr."""
    before = None if not np.isfinite(o["p"][i]) else bool(o["p"][i] >= thr)
    after = None if o["after"] is None or not np.isfinite(o["evidence"][i]) else bool(o["evidence"][i] >= thr)
    return {"before": _word(before), "after": _word(after)}


def _rate(k: int, n: int) -> float | None:
    return round(k / n, 4) if n else None


# ------------------------------------------------------------------------------- evaluation
class _Runner:
    def __init__(self, predictor):
        self.predictor = predictor
        self.threshold = PRESENCE_THRESHOLD

    def volume(self, vol) -> dict:
        """Presence through the real Predictor: per-slice P(tumour), tissue, evidence; the verdict
        before (old rule on the same P(tumour)) and after (the Predictor's)."""
        r = self.predictor.predict_volume(vol, tasks=["presence"])
        p = np.array([s.get("presence", np.nan) for s in r.slices], dtype=np.float64)
        tissue = np.array([s.get("tissue", 1.0) for s in r.slices], dtype=np.float64)
        ev = np.array([s.get("evidence", np.nan) for s in r.slices], dtype=np.float64)
        before, p_before = rule_before(p, self.threshold) if np.isfinite(p).any() else (None, float("nan"))
        res = r.tasks.get("presence")
        p_after = None
        if res is not None and res.probabilities:
            p_after = float(res.probabilities[res.classes.index("tumor") if "tumor" in res.classes else -1])
        after = None if r.verdict == CANNOT_ASSESS_VERDICT else r.verdict != NO_TUMOUR_VERDICT
        return {
            "p": p,
            "tissue": tissue,
            "evidence": ev,
            "before": before,
            "p_before": p_before,
            "after": after,
            "p_after": p_after,
            "verdict": r.verdict,
            "status": getattr(res, "status", "ok") if res is not None else "no presence result",
            "refer": bool(r.refer),
            "key_slices": list(r.key_slices),
        }


def _volume_row(name: str, out: dict, threshold: float, tissue_min: float) -> dict:
    high = (out["p"] >= threshold) & (out["tissue"] >= tissue_min)
    return {
        "name": name,
        "n_slices": int(len(out["p"])),
        "before": _word(out["before"]),
        "p_before": round(out["p_before"], 4),
        "after": _word(out["after"]),
        "p_after": None if out["p_after"] is None else round(out["p_after"], 4),
        "verdict": out["verdict"],
        "status": out["status"],
        "refer": out["refer"],
        "key_slices_after": out["key_slices"],
        "voting_slices": int((out["tissue"] >= tissue_min).sum()),
        "voting_slices_p_ge_threshold": int(high.sum()),
        "longest_run_voting_p_ge_threshold": _runs(high),
    }


def _summary(rows: list[dict], word: str, key: str, measure: str) -> dict:
    """Counts of `word` before and after, as a rate of all rows ("cannot assess" counts against)."""
    n, out = len(rows), {"n": len(rows)}
    for when in ("before", "after"):
        k = sum(r[when] == word for r in rows)
        out[when] = {key: k, measure: _rate(k, n), "cannot_assess": sum(r[when] == "cannot assess" for r in rows)}
    return out


def _spec_summary(rows: list[dict]) -> dict:
    return _summary(rows, "no tumour", "no_tumour", "specificity")


def _sens_summary(rows: list[dict]) -> dict:
    return _summary(rows, "tumour", "tumour", "sensitivity")


@dataclass
class _Reads:
    """What a tumour source's volumes gave: a row per volume, the votes of its tumour-free and of its
    tumour slices inside their volume, and tumour-free slices read alone as 2D images."""

    volumes: list[dict] = field(default_factory=list)
    clear: list[dict] = field(default_factory=list)
    tumour: list[dict] = field(default_factory=list)
    single: list[dict] = field(default_factory=list)


def _words(o: dict) -> dict:
    return {"before": _word(o["before"]), "after": _word(o["after"])}


def _diagnosis(rows: list[dict]) -> dict:
    """Why normal/images volumes come out "tumour": the presence model's own slice scores."""
    vote = sum(r["voting_slices"] for r in rows)
    high = sum(r["voting_slices_p_ge_threshold"] for r in rows)
    return {
        "normal/images voting slices": vote,
        "normal/images voting slices with P(tumour) >= threshold": high,
        "share": _rate(high, vote),
        "volumes with a run of >= 5 such slices": sum(r["longest_run_voting_p_ge_threshold"] >= 5 for r in rows),
        "volumes referred to a human (any gate)": sum(r["refer"] for r in rows),
        "reading": "the presence model itself scores long runs of normal brain slices (not only "
        "skull base or vertex) as tumour; a vote rule cannot separate these from a "
        "tumour seen on adjacent slices without losing the tumour volumes",
    }


def _header(predictor, explicit: bool) -> dict:
    """The result before any source is read: the command, the model and the two rules."""
    thr = PRESENCE_THRESHOLD
    return {
        "command": "python -m core healthy-check --json research/results/healthy_check.json"
        + (f" --model {predictor.model_versions.get('presence')}" if explicit else ""),
        "model": {
            "presence": predictor.model_versions.get("presence"),
            "precision": predictor.precision.get("presence"),
            "device": str(predictor.device),
        },
        "rule": {
            "before": f"tumour when any slice has P(tumour) >= {thr:g}; volume P(tumour) = mean "
            "of the top 2% of slices (1..5)",
            "after": slice_votes.rule_text(thr),
            "constants": {
                "PRESENCE_THRESHOLD": thr,
                "TISSUE_MIN": slice_votes.TISSUE_MIN,
                "MIN_HEAD_AREA": slice_votes.MIN_HEAD_AREA,
                "HEAD_THRESHOLD": slice_votes.HEAD_THRESHOLD,
                "CONFIRM_MIN_SLICES": slice_votes.CONFIRM_MIN_SLICES,
            },
        },
        "specificity": {},
        "sensitivity": {},
        "tuning": {},
    }


class _Check:
    """The sources of `run_healthy_check`, one method each; each adds its entries to the result."""

    def __init__(self, data: Path, predictor, say: Callable[[str], None]):
        self.data, self.say = data, say
        self.runner = _Runner(predictor)
        self.card = getattr(predictor.models.get("presence"), "card", None) or None  # the checked model's card
        self.thr, self.tmin = self.runner.threshold, slice_votes.TISSUE_MIN

    def normal(self, out: dict) -> None:
        """normal/ volumes (volume level); a model trained on normal/ saw every subject but its
        locked-test ones. The templates are tuning data, reported apart."""
        held = held_out_patients("normal", self.card)
        subjects = normal_subjects(self.data / "normal", ("images", "templates"))
        rows = self._normal_rows("images", subjects, held)
        entry = {"level": "volume", **_spec_summary(rows), "volumes": rows}
        if held is not None:
            entry["note"] = (
                "the presence model was trained on normal/: every volume but those of its "
                "locked-test subjects was in its training data (optimistic)"
            )
            kept = [r for r in rows if r["held_out"]]
            out["specificity"]["normal/images volumes held out (locked-test subjects)"] = {
                "level": "volume",
                **_spec_summary(kept),
                "subjects": sorted(held),
                "volumes": [r["name"] for r in kept],
            }
        out["specificity"]["normal/images volumes"] = entry
        out["diagnosis"] = _diagnosis(rows)
        rows = self._normal_rows("templates", subjects, held)
        out["tuning"]["normal/templates volumes"] = {
            "level": "volume",
            **_spec_summary(rows),
            "volumes": rows,
            "note": "population templates; the normal data the vote constants were checked on",
        }

    def _normal_rows(self, which: str, subjects: dict[str, str], held: set[str] | None) -> list[dict]:
        rows = []
        for name, vol in normal_volumes(self.data / "normal", sets=(which,)):
            self.say(f"normal: {name}")
            row = _volume_row(name, self.runner.volume(vol), self.thr, self.tmin)
            row["subject"] = subjects.get(name)
            row["held_out"] = held is None or which == "templates" or subjects.get(name) in held
            rows.append(row)
        return rows

    def br35h(self, out: dict) -> None:
        """Br35H no_tumor slices, one 2D image at a time (slice level)."""
        root = self.data / "br35h"
        held = held_out_patients("br35h", self.card)
        rows = []
        for path in br35h_no_tumour(root):
            o = self.runner.volume(load_volume(str(path)))
            rows.append({**_words(o), "held_out": held is None or path.relative_to(root).as_posix() in held})
        self.say(f"br35h: {len(rows)} no_tumor slices")
        spec = out["specificity"]
        if held is None:
            spec["br35h no_tumor slices (2D images)"] = {
                "level": "slice",
                **_spec_summary(rows),
                "note": "second source, not in the presence model's training data; no patient ids",
            }
        else:
            spec["br35h no_tumor slices (2D images)"] = {
                "level": "slice",
                **_spec_summary(rows),
                "note": "the presence model was trained on Br35H except its locked-test images (optimistic)",
            }
            spec["br35h no_tumor slices held out (locked-test images)"] = {
                "level": "slice",
                **_spec_summary([r for r in rows if r["held_out"]]),
                "note": "no patient ids: other slices of the same patients may have been trained on",
            }

    def tcga(self, out: dict) -> None:
        """TCGA-LGG: locked-test patients (held out) and the trained-on rest (tuning)."""
        locked = locked_test_patients("tcga-lgg", self.card)
        every = sorted(
            {r["patient"] for r in csv.DictReader(open(self.data / "tcga-lgg" / "manifest.csv", newline=""))}
        )
        reads = self._tcga_reads("locked", locked)
        vote_note = "before: P(tumour) >= threshold; after: slice evidence >= threshold"
        out["specificity"]["tcga-lgg locked-test tumour-free slices (2D images)"] = {
            "level": "slice",
            **_spec_summary(reads.single),
            "patients": len(locked),
            "note": "FLAIR plane of each slice with tumor_pixels = 0, read as one 2D image",
        }
        out["specificity"]["tcga-lgg locked-test tumour-free slices (votes in their pseudo-volume)"] = {
            "level": "slice",
            **_spec_summary(reads.clear),
            "note": vote_note,
        }
        out["sensitivity"]["tcga-lgg locked-test pseudo-volumes"] = {
            "level": "volume",
            **_sens_summary(reads.volumes),
            "volumes": reads.volumes,
            "note": "held out from the presence model (card recipe.split.locked_test)",
        }
        out["sensitivity"]["tcga-lgg locked-test tumour slices (votes in their pseudo-volume)"] = {
            "level": "slice",
            **_sens_summary(reads.tumour),
            "note": vote_note,
        }
        reads = self._tcga_reads("train", [p for p in every if p not in locked])
        out["tuning"]["tcga-lgg trained-on pseudo-volumes"] = {
            "level": "volume",
            **_sens_summary(reads.volumes),
            "volumes": reads.volumes,
            "note": "the presence model was trained on these patients: optimistic",
        }
        out["tuning"]["tcga-lgg trained-on tumour-free slices (votes in their pseudo-volume)"] = {
            "level": "slice",
            **_spec_summary(reads.clear),
        }

    def _tcga_reads(self, key: str, patients: list[str]) -> _Reads:
        """The pseudo-volumes of `patients`; tumour-free slices also read alone for the locked test."""
        reads = _Reads()
        for case, vol, tumour in tcga_volumes(self.data / "tcga-lgg", patients):
            self.say(f"tcga-lgg ({key}): {case}")
            self._read_tumour_volume(reads, case, vol, tumour, clear=~tumour)
            if key == "locked":
                for i in np.flatnonzero(~tumour):
                    one = stack_volume([vol.array[i]], 1.0, f"tcga-lgg/{case}/{i}", channel="flair")
                    reads.single.append(_words(self.runner.volume(one)))
        return reads

    def tcia(self, out: dict) -> None:
        """TCIA-BTP: tumour volumes and slices outside the masks."""
        reads = _Reads()
        for name, vol, tumour in tcia_volumes(self.data / "tcia-btp"):
            self.say(f"tcia-btp: {name}")
            filled = vol.array.reshape(vol.array.shape[0], -1).max(1) > 0  # padding slices are empty
            self._read_tumour_volume(reads, name, vol, tumour, clear=~tumour & filled)
        out["specificity"]["tcia-btp slices outside the masks (votes in their volume)"] = {
            "level": "slice",
            **_spec_summary(reads.clear),
            "note": "all 8 TCIA patients were in the presence model's training data; padding slices left out",
        }
        out["sensitivity"]["tcia-btp volumes"] = {
            "level": "volume",
            **_sens_summary(reads.volumes),
            "volumes": reads.volumes,
            "note": "all 8 patients were in the presence model's training data",
        }
        out["sensitivity"]["tcia-btp tumour slices (votes in their volume)"] = {
            "level": "slice",
            **_sens_summary(reads.tumour),
            "note": "trained on; in-mask slices",
        }

    def _read_tumour_volume(self, reads: _Reads, name: str, vol, tumour: np.ndarray, clear: np.ndarray) -> None:
        """One volume with tumour slices: its row, and the votes of its `clear` and tumour slices."""
        o = self.runner.volume(vol)
        row = _volume_row(name, o, self.thr, self.tmin)
        row["tumour_slices"] = int(tumour.sum())
        reads.volumes.append(row)
        reads.clear.extend(_slice_vote(o, i, self.thr) for i in np.flatnonzero(clear))
        reads.tumour.extend(_slice_vote(o, i, self.thr) for i in np.flatnonzero(tumour))


def run_healthy_check(
    data: Path, predictor, on_progress: Callable[[str], None] | None = None, explicit: bool = False
) -> dict:
    """Every source in the module docstring; returns the JSON-ready result."""
    check = _Check(Path(data), predictor, on_progress or (lambda msg: None))
    out = _header(predictor, explicit)
    check.normal(out)
    check.br35h(out)
    check.tcga(out)
    check.tcia(out)
    return out


def summary_text(res: dict) -> str:
    lines = [
        f"presence model {res['model']['presence']} ({res['model']['precision']}, {res['model']['device']})",
        f"before: {res['rule']['before']}",
        f"after : {res['rule']['after']}",
        "",
    ]
    for part, key, word in (
        ("specificity", "no_tumour", "specificity"),
        ("sensitivity", "tumour", "sensitivity"),
        ("tuning", None, None),
    ):
        lines.append(part.upper())
        for name, e in res[part].items():
            k = key or ("tumour" if "tumour" in e["before"] else "no_tumour")
            w = word or ("sensitivity" if k == "tumour" else "specificity")
            ca = [e[when].get("cannot_assess", 0) for when in ("before", "after")]
            lines.append(
                f"  {name} [{e.get('level', 'volume')}, n={e['n']}]: {w} "
                f"{e['before'][k]}/{e['n']} -> {e['after'][k]}/{e['n']}"
                + (f" (cannot assess {ca[0]} -> {ca[1]})" if any(ca) else "")
            )
        lines.append("")
    vols = res["specificity"].get("normal/images volumes", {}).get("volumes", [])
    if vols:
        lines.append("normal/images volumes (before -> after; voting slices with P(tumour) >= threshold, longest run):")
        for v in vols:
            lines.append(
                f"  {v['name']:<55} {v['before']:>9} -> {v['after']:<9} "
                f"{v['voting_slices_p_ge_threshold']:>3}/{v['voting_slices']:<3} run {v['longest_run_voting_p_ge_threshold']}"
            )
    return "\n".join(lines)
