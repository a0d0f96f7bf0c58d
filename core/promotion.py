"""One promotion path: compare a challenger with the champion on the SAME locked test split, then
promote (or roll back). The store is the single truth for champions (history, audit); the zoo's
active.json, which inference reads, is derived from it after every change (`publish_champion`).

    from core import promotion
    cmp = promotion.compare("grade", "2.0.0")               # champion: the store's
    promotion.promote("grade", "2.0.0", actor="Dr Ada")     # PromotionRefused unless it beats it
    promotion.rollback("grade", actor="Dr Ada")
    review.refresh_queue_scores("grade", "2.0.0", store)    # the caller re-scores the review queue

Evaluations. A version's held-out numbers come from
- its card: `metrics.test` (score() output with ci95, confusion, per_class, `patient` level), on the
  split whose fingerprint the card records (`metrics.test.fingerprint`, else
  `recipe.split.locked_test.fingerprint`);
- the store: evaluations recorded later with `record_evaluation` (e.g. a retraining job that scored
  the champion and the challenger on one hold-out of confirmed review labels), kept in the version's
  store row under metrics["evaluations"][fingerprint].
`compare` only ever pairs two evaluations with the same fingerprint (the champion's own locked test
first); when the versions share none it refuses to compare.

Whatever the comparison says, and forced or not, a version becomes active only when its weights
load and match the sha256 in its card (`verify_weights`) and it has a score on a locked test
(`locked_test_evaluation`: scored on the split its card records when it has none yet).

Primary metric (higher is better; the challenger must be strictly better):
tumor_type: slice balanced accuracy; presence: slice ROC AUC; grade: patient-level ROC AUC.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core import auth
from core.auth import PermissionDenied
from core.cards import ModelCard, metric_ci, metric_value
from core.jsonable import jsonable
from core.store import Store
from core.tasks import primary_metric
from core.training.evaluation import evaluate
from core.zoo import active_version, load_checkpoint, model_card, set_active
from model_zoo import headline_metrics

SHOWN_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "auc", "ece")
PER_CLASS_KEYS = ("sensitivity", "specificity", "precision", "f1")


@dataclass(frozen=True)
class SampleMinimums:
    """Below these, two versions are not compared: their numbers would be noise shown as evidence
    (5 retraining labels judged on 2 held-out items once showed "AUC 1.000 [1.000, 1.000]").

    held_out: items of the shared held-out split. With n items a proportion's 95% interval is about
        +/- 1/sqrt(n) wide: +/- 0.22 at 20; fewer cannot separate two models.
    held_out_per_class: items of each class in it. AUC, sensitivity and balanced accuracy rest on
        the rarest class; with 1-4 of a class the bootstrap resamples the same few and its interval
        collapses to a point ([1.000, 1.000]), which looks certain and is not.
    labels_per_class: confirmed labels of each class a retraining run had (training + held out); at
        the default hold-out fraction (0.25) 20 give about 5 held-out items per class.
    """

    held_out: int = 20
    held_out_per_class: int = 5
    labels_per_class: int = 20


MINIMUMS = SampleMinimums()  # the one place these numbers live


class PromotionError(Exception):
    """A promotion or rollback that cannot be done (unknown version, nothing to roll back to)."""


class PromotionRefused(PromotionError):
    """The challenger does not beat the champion (or cannot be compared with it)."""

    def __init__(self, message: str, comparison: Comparison | None = None):
        super().__init__(message)
        self.comparison = comparison


# ------------------------------------------------------------------------------ evaluations
@dataclass(frozen=True)
class Evaluation:
    """Held-out metrics of one version on one split."""

    version: str
    fingerprint: str
    split: str  # human description ("locked test", "hold-out of review labels", ...)
    metrics: dict  # score()-like dict: accuracy, ..., ci95, confusion, per_class, patient
    source: str  # "card" | "store"


def card_fingerprint(card: ModelCard | Mapping) -> str | None:
    card = ModelCard.coerce(card)
    test = card.metrics.test or {}
    if test.get("fingerprint"):
        return str(test["fingerprint"])
    fp = card.locked_test.fingerprint
    return str(fp) if fp else None


def card_evaluation(card: ModelCard | Mapping, version: str | None = None) -> Evaluation | None:
    """The card's own locked-test evaluation, or None when it has none (e.g. CV only)."""
    card = ModelCard.coerce(card)
    test = card.metrics.test
    fp = card_fingerprint(card)
    if not test or not fp:
        return None
    return Evaluation(
        str(version or card.version or ""), fp, str(test.get("split") or "locked test"), dict(test), "card"
    )


def _load_card(task: str, version: str) -> ModelCard:
    try:
        return model_card(f"{task}@{version}")
    except KeyError as exc:
        raise PromotionError(exc.args[0] if exc.args else str(exc)) from None


def _repo(repo: Store | None = None) -> Store:
    return repo if repo is not None else Store.open()


def current_champion(task: str, repo: Store | None = None) -> str | None:
    """The champion of `task`: the store's (the single truth); before any promotion, the zoo's
    default (its ACTIVE marker or newest shipped version)."""
    champion = _repo(repo).models.champion(task)
    return champion.version if champion else active_version(task)


def store_evaluations(task: str, version: str, repo=None) -> list[Evaluation]:
    repo = _repo(repo)
    for mv in repo.models.versions(task):
        if mv.version == version:
            evs = (mv.metrics or {}).get("evaluations") or {}
            return [
                Evaluation(version, fp, str(e.get("split") or ""), dict(e.get("metrics") or {}), "store")
                for fp, e in evs.items()
                if isinstance(e, Mapping)
            ]
    return []


def evaluations(task: str, version: str, repo=None, card: ModelCard | Mapping | None = None) -> list[Evaluation]:
    """Every held-out evaluation known for task@version: the card's first, then the store's."""
    card = card if card is not None else _load_card(task, version)
    out = []
    own = card_evaluation(card, version)
    if own is not None:
        out.append(own)
    out += [e for e in store_evaluations(task, version, repo) if own is None or e.fingerprint != own.fingerprint]
    return out


def record_evaluation(
    task: str, version: str, fingerprint: str, metrics: Mapping, split: str, repo=None, actor: str = "system"
) -> None:
    """Keep an evaluation of task@version on split `fingerprint` in the store (audited)."""
    repo = _repo(repo)
    current = next((mv for mv in repo.models.versions(task) if mv.version == version), None)
    base = dict(current.metrics) if current else {}
    evs = dict(base.get("evaluations") or {})
    evs[str(fingerprint)] = {"split": split, "metrics": jsonable(metrics)}
    base["evaluations"] = evs
    repo.models.register(task, version, metrics=base, actor=actor)
    repo.audit.append(
        actor,
        "evaluate",
        "model_version",
        f"{task}@{version}",
        None,
        {"fingerprint": fingerprint, "split": split, "summary": _summary(metrics)},
    )


def _summary(metrics: Mapping) -> dict:
    return {k: metrics.get(k) for k in SHOWN_METRICS if isinstance(metrics.get(k), (int, float))}


# ------------------------------------------------------------------------------ comparison
def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else float(a) - float(b)


@dataclass
class Comparison:
    task: str
    challenger: str
    champion: str | None
    comparable: bool
    beats: bool
    reason: str  # why it beats / does not / cannot be compared
    primary: str = ""  # e.g. "auc"
    level: str = "slice"  # "slice" | "patient"
    fingerprint: str | None = None
    split: str = ""
    challenger_value: float | None = None
    champion_value: float | None = None
    challenger_ci: list | None = None
    champion_ci: list | None = None
    metrics: list[dict] = field(
        default_factory=list
    )  # [{metric, level, challenger, challenger_ci, champion, champion_ci, delta}]
    per_class: dict = field(default_factory=dict)  # {class: {metric: {challenger, champion, delta}}}
    confusion: dict = field(default_factory=dict)  # {"classes", "challenger", "champion"}
    challenger_fingerprints: list[str] = field(default_factory=list)
    champion_fingerprints: list[str] = field(default_factory=list)

    @property
    def delta(self) -> float | None:
        return _delta(self.challenger_value, self.champion_value)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["delta"] = self.delta
        return d


def held_out_counts(metrics: Mapping) -> dict[str, int] | None:
    """{class: held-out items} of a score()-like dict (confusion rows, else per-class support)."""
    classes = list(metrics.get("classes") or [])
    confusion = metrics.get("confusion")
    try:
        if confusion and classes and len(confusion) == len(classes):
            return {str(c): int(sum(row)) for c, row in zip(classes, confusion)}
        per_class = metrics.get("per_class") or {}
        if per_class and all(isinstance(v, Mapping) and "support" in v for v in per_class.values()):
            return {str(c): int(v["support"]) for c, v in per_class.items()}
    except (TypeError, ValueError):
        return None
    return None


def too_small(metrics: Mapping, card: ModelCard | Mapping | None = None, minimums: SampleMinimums | None = None) -> str:
    """Why an evaluation is too small to compare on ("" when it is not; see SampleMinimums)."""
    m = minimums or MINIMUMS
    counts = held_out_counts(metrics)
    need = (
        f"at least {m.held_out} held-out items with {m.held_out_per_class} of each class, from "
        f"{m.labels_per_class} confirmed labels per class"
    )
    if counts is not None:
        total = sum(counts.values())
        rare = min(counts.values()) if counts else 0
        if total < m.held_out or rare < m.held_out_per_class:
            shown = ", ".join(f"{c} {n}" for c, n in counts.items())
            return (
                f"too few held-out items to compare: {total} ({shown}); a comparison needs {need}. "
                "Label more items of each class and retrain: no metrics are shown until then"
            )
    per_class = ModelCard.coerce(card).recipe.split.labels_per_class
    if per_class:
        rare = min(int(v) for v in per_class.values())
        if rare < m.labels_per_class:
            shown = ", ".join(f"{c} {n}" for c, n in per_class.items())
            return (
                f"too few confirmed labels to compare: {shown}; a comparison needs {need}. "
                "Label more items of each class and retrain: no metrics are shown until then"
            )
    return ""


def _pick_common(chal: list[Evaluation], champ: list[Evaluation]) -> tuple[Evaluation, Evaluation] | None:
    by_fp = {e.fingerprint: e for e in chal}
    for e in champ:  # the champion's own locked test first, then the store's
        if e.fingerprint in by_fp:
            return by_fp[e.fingerprint], e
    return None


def compare(task: str, challenger_version: str, champion_version: str | None = None, *, repo=None) -> Comparison:
    """Challenger vs champion (default: the current champion) on one shared held-out split."""
    primary, level = primary_metric(task)
    champion_version = champion_version or current_champion(task, repo)
    chal_card = _load_card(task, challenger_version)
    base = dict(task=task, challenger=challenger_version, champion=champion_version, primary=primary, level=level)
    if champion_version is None:
        return Comparison(
            **base,
            comparable=False,
            beats=True,
            reason=f"{task} has no champion yet: the first version needs no comparison",
        )
    if champion_version == challenger_version:
        return Comparison(
            **base, comparable=False, beats=False, reason=f"{task}@{challenger_version} is already the champion"
        )
    champ_card = _load_card(task, champion_version)
    if chal_card.classes != champ_card.classes:
        return Comparison(
            **base,
            comparable=False,
            beats=False,
            reason=f"the classes differ: {list(chal_card.classes)} vs {list(champ_card.classes)}",
        )
    chal = evaluations(task, challenger_version, repo, chal_card)
    champ = evaluations(task, champion_version, repo, champ_card)
    fps = dict(
        challenger_fingerprints=[e.fingerprint for e in chal], champion_fingerprints=[e.fingerprint for e in champ]
    )
    pair = _pick_common(chal, champ)
    if pair is None:
        if not champ:
            why = (
                f"{task}@{champion_version} has no locked-test evaluation (its card holds "
                "cross-validation only) and none is recorded in the store"
            )
        elif not chal:
            why = f"{task}@{challenger_version} has no locked-test evaluation"
        else:
            why = (
                f"{task}@{challenger_version} and {task}@{champion_version} were evaluated on different "
                f"locked test splits (fingerprints {', '.join(f[:12] for f in fps['challenger_fingerprints'])} "
                f"vs {', '.join(f[:12] for f in fps['champion_fingerprints'])}): not comparable"
            )
        return Comparison(**base, comparable=False, beats=False, reason=why, **fps)
    ce, pe = pair
    cm, pm = ce.metrics, pe.metrics
    small = too_small(cm, chal_card)
    if small:
        return Comparison(
            **base,
            comparable=False,
            beats=False,
            reason=small,
            fingerprint=ce.fingerprint,
            split=pe.split or ce.split,
            **fps,
        )
    rows = []
    for lvl in ("slice", "patient"):
        if lvl == "patient" and not (cm.get("patient") and pm.get("patient")):
            continue
        for key in SHOWN_METRICS:
            a, b = metric_value(cm, key, lvl), metric_value(pm, key, lvl)
            if a is None and b is None:
                continue
            rows.append(
                {
                    "metric": key,
                    "level": lvl,
                    "challenger": a,
                    "challenger_ci": metric_ci(cm, key, lvl),
                    "champion": b,
                    "champion_ci": metric_ci(pm, key, lvl),
                    "delta": _delta(a, b),
                    "primary": key == primary and lvl == level,
                }
            )
    per_class: dict = {}
    for cls in chal_card.classes:
        a = (cm.get("per_class") or {}).get(cls) or {}
        b = (pm.get("per_class") or {}).get(cls) or {}
        per_class[cls] = {
            k: {"challenger": a.get(k), "champion": b.get(k), "delta": _delta(a.get(k), b.get(k))}
            for k in PER_CLASS_KEYS
            if a.get(k) is not None or b.get(k) is not None
        }
    confusion = {"classes": list(chal_card.classes), "challenger": cm.get("confusion"), "champion": pm.get("confusion")}
    a, b = metric_value(cm, primary, level), metric_value(pm, primary, level)
    name = f"{level}-level {primary}" if level == "patient" else primary
    if a is None or b is None:
        beats, reason = (
            False,
            f"{name} is undefined for {'the challenger' if a is None else 'the champion'} on this split",
        )
    elif a > b:
        beats, reason = True, f"{name} {a:.3f} > {b:.3f} (champion {task}@{champion_version})"
    else:
        beats, reason = (
            False,
            (f"the challenger does not beat the champion: {name} {a:.3f} vs {b:.3f} for {task}@{champion_version}"),
        )
    return Comparison(
        **base,
        comparable=True,
        beats=beats,
        reason=reason,
        fingerprint=ce.fingerprint,
        split=pe.split or ce.split,
        challenger_value=a,
        champion_value=b,
        challenger_ci=metric_ci(cm, primary, level),
        champion_ci=metric_ci(pm, primary, level),
        metrics=rows,
        per_class=per_class,
        confusion=confusion,
        **fps,
    )


# ------------------------------------------------------------------------------ promote / roll back
@dataclass(frozen=True)
class PromotionResult:
    task: str
    version: str
    previous: str | None
    forced: bool
    comparison: Comparison | None
    active_file: str  # the zoo's active.json, rewritten from the store

    def to_dict(self) -> dict:
        return {
            "task": self.task,
            "version": self.version,
            "previous": self.previous,
            "forced": self.forced,
            "comparison": self.comparison.to_dict() if self.comparison else None,
            "active_file": self.active_file,
        }


def verify_weights(task: str, version: str) -> None:
    """Load task@version as inference does: its weights must match the sha256 in its card and fit
    its architecture. PromotionRefused otherwise: a model that fails verification is never active."""
    try:
        load_checkpoint(f"{task}@{version}")
    except Exception as exc:  # noqa: BLE001 - whatever fails, these weights cannot be trusted
        raise PromotionRefused(
            f"refused: {task}@{version} cannot be loaded or verified, so it can never be "
            f"made active ({type(exc).__name__}: {exc})"
        ) from exc


def score_locked_test(task: str, version: str, n_boot: int = 1000) -> dict:
    """score() of task@version on the locked test split its card records (as `python -m core
    evaluate --split test`: the data must be on this machine); PromotionError when it cannot."""

    try:
        return evaluate(f"{task}@{version}", split="test", n_boot=n_boot)["metrics"]
    except SystemExit as exc:  # evaluate() reports what stops it as SystemExit(message)
        raise PromotionError(str(exc.code)) from None
    except Exception as exc:  # noqa: BLE001 - data loaders fail in many ways: any failure means no score here
        raise PromotionError(f"{type(exc).__name__}: {exc}") from None


def locked_test_evaluation(task: str, version: str, card: ModelCard | Mapping, repo, actor: str) -> Evaluation:
    """The version's score on a locked test (its card's, else one recorded in the store). When it
    has none yet, it is scored on the locked test split its card records and the evaluation is
    recorded; PromotionRefused when it has none and cannot be scored."""
    known = evaluations(task, version, repo, card)
    if known:
        return known[0]
    fingerprint = card_fingerprint(card)
    if not fingerprint:
        raise PromotionRefused(
            f"refused: {task}@{version} has no score on a locked test: its card records no "
            "locked test split (cross-validation only) and no held-out evaluation is recorded "
            "in the store"
        )
    try:
        metrics = score_locked_test(task, version)
    except PromotionError as exc:
        raise PromotionRefused(
            f"refused: {task}@{version} has no score on its locked test split yet and cannot be "
            f"scored here ({exc}); run `python -m core evaluate --model {task}@{version} "
            "--split test` where its data is"
        ) from None
    record_evaluation(task, version, fingerprint, metrics, "locked test", repo=repo, actor=actor)
    return Evaluation(version, fingerprint, "locked test", jsonable(metrics), "store")


def _headline(task: str, version: str) -> dict:
    try:
        return headline_metrics(_load_card(task, version))
    except PromotionError:
        return {}


def publish_champion(repo: Store, task: str) -> Path:
    """Write the store's champion of `task` into the zoo's active.json, which inference reads: the
    file follows the store, never the other way round."""
    champion = repo.models.champion(task)
    try:
        return set_active(task, champion.version)
    except (OSError, KeyError) as exc:
        raise PromotionError(
            f"the store records {task}@{champion.version} as the champion, but the zoo's "
            f"active.json could not be written ({exc}); promote it again to rewrite the "
            "file"
        ) from exc


def _ensure_baseline(repo: Store, task: str, champion: str | None) -> None:
    """Before the first promotion of `task`, record the zoo's default version as its champion in
    the store, so that a rollback has somewhere to go."""
    if champion is None or repo.models.champion(task) is not None:
        return
    repo.models.register(task, champion, metrics=None)
    repo.models.promote(task, champion, actor="system", reason="baseline: the active version before this promotion")


class PromotionForbidden(PromotionError, PermissionDenied):
    """The signed-in role may not promote, force or roll back (core.auth's permissions table)."""


def _authorized(actor, permission: str) -> str:
    """The name to record; an Identity must hold `permission` (a plain name is a trusted caller)."""
    try:
        return auth.authorize(actor, permission)
    except PermissionDenied as exc:
        raise PromotionForbidden(str(exc)) from exc


def promote(
    task: str, version: str, actor, force: bool = False, reason: str | None = None, *, repo: Store | None = None
) -> PromotionResult:
    """Make task@version the champion if it beats the current one on a shared locked test split.

    force=True promotes anyway (a reason is required and both are audited). Forced or not, the
    version's weights must pass verification and it must have a locked-test score (see the module
    doc). Raises PromotionRefused (with .comparison when it lost the comparison) otherwise,
    PromotionError for unknown versions. The store records the change; active.json follows it.
    Re-scoring the review queue is the caller's next step (core.review.refresh_queue_scores)."""
    actor = _authorized(actor, "force_promote" if force else "promote")
    if not str(actor or "").strip():
        raise PromotionError("who is promoting? an actor name is required")
    card = _load_card(task, version)  # exists?
    verify_weights(task, version)
    repo = _repo(repo)
    champion = current_champion(task, repo)
    if champion == version:
        if repo.models.champion(task) is not None:
            publish_champion(repo, task)  # in case an earlier write of the file failed
        raise PromotionRefused(f"{task}@{version} is already the active version")
    locked_test_evaluation(task, version, card, repo, actor)
    comparison = compare(task, version, champion, repo=repo) if champion else None
    if comparison is not None and not comparison.beats:
        if not force:
            raise PromotionRefused(f"refused: {comparison.reason}", comparison)
        if not str(reason or "").strip():
            raise PromotionRefused("a forced promotion needs a reason", comparison)
    _ensure_baseline(repo, task, champion)
    forced = comparison is not None and not comparison.beats
    note = reason or (comparison.reason if comparison else "first version")
    repo.models.register(task, version, metrics=None)
    repo.models.promote(task, version, actor=actor, reason=("FORCED: " if forced else "") + note)
    repo.audit.append(
        actor,
        "promotion_decision",
        "model_version",
        f"{task}@{version}",
        {"champion": champion, "champion_metrics": _headline(task, champion) if champion else None},
        {
            "forced": forced,
            "reason": reason,
            "comparison": {
                k: v
                for k, v in (comparison.to_dict() if comparison else {}).items()
                if k
                in (
                    "comparable",
                    "beats",
                    "reason",
                    "primary",
                    "level",
                    "fingerprint",
                    "challenger_value",
                    "champion_value",
                    "delta",
                )
            },
        },
    )
    path = publish_champion(repo, task)
    return PromotionResult(task, version, champion, forced, comparison, str(path))


def rollback(task: str, actor, reason: str | None = None, *, repo: Store | None = None) -> PromotionResult:
    """Give the champion title back to the version promoted before the current one (re-scoring the
    review queue with it is the caller's next step, as after promote())."""
    actor = _authorized(actor, "rollback")
    if not str(actor or "").strip():
        raise PromotionError("who is rolling back? an actor name is required")
    repo = _repo(repo)
    history = repo.models.champion_history(task)
    current = current_champion(task, repo)
    if len(history) < 2:
        raise PromotionError(
            f"no earlier champion of {task} to roll back to (promotion history: {', '.join(history) or 'empty'})"
        )
    target = history[-2]
    _load_card(task, target)
    verify_weights(task, target)
    repo.models.rollback(task, actor=actor, reason=reason)
    repo.audit.append(
        actor,
        "rollback_decision",
        "model_version",
        f"{task}@{target}",
        {"active": current, "history": history},
        {"active": target, "reason": reason},
    )
    path = publish_champion(repo, task)
    return PromotionResult(task, target, current, False, None, str(path))


def history(task: str, repo=None) -> list[dict]:
    """Promotions and rollbacks of `task`, oldest first: [{at, actor, action, from, to, reason}]."""
    repo = _repo(repo)
    return [
        {
            "at": a.at,
            "actor": a.actor,
            "action": a.action,
            "from": (a.before or {}).get("version"),
            "to": (a.after or {}).get("version"),
            "reason": (a.after or {}).get("reason"),
        }
        for a in repo.audit.entries(entity="champion", entity_id=task)
    ]


__all__ = [
    "MINIMUMS",
    "SampleMinimums",
    "too_small",
    "held_out_counts",
    "Comparison",
    "Evaluation",
    "PromotionError",
    "PromotionRefused",
    "PromotionResult",
    "compare",
    "promote",
    "rollback",
    "history",
    "current_champion",
    "publish_champion",
    "evaluations",
    "record_evaluation",
    "card_evaluation",
    "card_fingerprint",
    "primary_metric",
    "verify_weights",
    "locked_test_evaluation",
    "score_locked_test",
]
