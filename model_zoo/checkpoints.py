"""Model versions: immutable folders `<root>/<task>/<version>/{model.pt, card.json}`.

Two roots: shipped versions in `model_zoo/checkpoints/` (in the repository) and user-trained ones in
`settings.models_dir` (NEUROGRADE_HOME/models). A version name is unique per task across both.

- `save_checkpoint(model, card, task, version)` writes model.pt (a plain state dict, torch.save)
  and card.json (with the sha256 of model.pt). A version is never overwritten.
- `load_checkpoint("task@version" | "task@active")` checks the sha256, loads with
  torch.load(weights_only=True) and returns a LoadedModel (model in eval mode).
- Active version of a task: NEUROGRADE_HOME/active.json ({"task": "version"}) if it names an
  existing version (written only by promotion, core.promotion), else
  model_zoo/checkpoints/<task>/ACTIVE (one line), else the newest *shipped* version. A user-trained
  version never becomes active by being newest: it has to beat the champion and be promoted.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import re
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model_zoo.registry import (
    CheckpointError,
    ModelSpec,
    _unwrap,
    create,
    get_spec,
    load_state_file,
    sha256_file,
)

if TYPE_CHECKING:
    from torch import nn

SHIPPED_ROOT = Path(__file__).resolve().parent / "checkpoints"
MODEL_FILE = "model.pt"
CARD_FILE = "card.json"
ACTIVE_FILE = "ACTIVE"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Checkpoint:
    task: str
    version: str
    path: Path                       # the version folder
    card: dict = field(compare=False)
    source: str = "user"             # "shipped" | "user"

    @property
    def ref(self) -> str:
        return f"{self.task}@{self.version}"

    @property
    def architecture(self) -> str:
        return str(self.card.get("architecture", ""))

    @property
    def created(self) -> str:
        return str(self.card.get("created") or "")


@dataclass
class LoadedModel:
    model: "nn.Module"               # eval mode, on CPU
    spec: ModelSpec                  # the architecture's spec with the card's input (size, channels, mean, std)
    card: dict
    classes: list[str]
    temperature: float
    task: str = ""
    version: str = ""
    path: Path | None = None

    @property
    def ref(self) -> str:
        return f"{self.task}@{self.version}"


def _check_name(kind: str, value: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value) or value == "active":
        raise ValueError(f"{kind} {value!r}: use letters, digits, '.', '_' or '-' (not 'active')")
    return value


def _roots(root: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    if root is not None:
        return [("user", Path(root))]
    from core.config import get_settings

    return [("shipped", SHIPPED_ROOT), ("user", get_settings().models_dir)]


def _read_card(folder: Path) -> dict | None:
    try:
        card = json.loads((folder / CARD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        warnings.warn(f"skipping {folder}: unreadable {CARD_FILE} ({exc})", stacklevel=3)
        return None
    return card if isinstance(card, dict) else None


def list_checkpoints(task: str | None = None, root: str | os.PathLike | None = None) -> list[Checkpoint]:
    """Every version (shipped and user), sorted by task, then created date, then version."""
    found: list[Checkpoint] = []
    for source, base in _roots(root):
        if not base.is_dir():
            continue
        for task_dir in sorted(p for p in base.iterdir() if p.is_dir()):
            if task is not None and task_dir.name != task:
                continue
            for vdir in sorted(p for p in task_dir.iterdir() if p.is_dir()):
                if not (vdir / MODEL_FILE).is_file() or not (vdir / CARD_FILE).is_file():
                    continue
                card = _read_card(vdir)
                if card is None:
                    continue
                found.append(Checkpoint(task_dir.name, vdir.name, vdir, card, source))
    return sorted(found, key=lambda c: (c.task, c.created, c.version))


def _find(task: str, version: str, root=None) -> Checkpoint | None:
    for c in list_checkpoints(task, root):
        if c.version == version:
            return c
    return None


def _active_overrides() -> dict:
    from core.config import get_settings

    path = get_settings().home / "active.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        warnings.warn(f"ignoring unreadable {path}: {exc}", stacklevel=3)
        return {}
    return data if isinstance(data, dict) else {}


def active_version(task: str, root: str | os.PathLike | None = None) -> str | None:
    """The active version of `task` (see module doc), or None when the task has no version."""
    versions = list_checkpoints(task, root)
    names = {c.version for c in versions}
    if root is None:
        override = _active_overrides().get(task)
        if override:
            if override in names:
                return str(override)
            warnings.warn(f"active.json names {task}@{override}, which does not exist; ignoring it",
                          stacklevel=2)
        marker = SHIPPED_ROOT / task / ACTIVE_FILE
        if marker.is_file():
            shipped = marker.read_text(encoding="utf-8").strip()
            if shipped in names:
                return shipped
            if shipped:
                warnings.warn(f"{marker} names {shipped}, which does not exist; ignoring it", stacklevel=2)
    shipped = [c for c in versions if c.source == "shipped"]
    return shipped[-1].version if shipped else None


def set_active(task: str, version: str) -> Path:
    """Make `task@version` active for this NEUROGRADE_HOME (writes active.json atomically)."""
    from core.config import get_settings

    if _find(task, version) is None:
        raise KeyError(f"no model version {task}@{version}")
    path = get_settings().home / "active.json"
    data = _active_overrides()
    data[task] = version
    _atomic_write(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
    return path


def resolve_ref(ref: str, root: str | os.PathLike | None = None) -> Checkpoint:
    """"task@version" or "task@active" (or just "task", meaning active) -> Checkpoint."""
    task, _, version = str(ref).partition("@")
    version = version or "active"
    if version == "active":
        resolved = active_version(task, root)
        if resolved is None:
            raise KeyError(f"task {task!r} has no model version (shipped or user)")
        version = resolved
    ckpt = _find(task, version, root)
    if ckpt is None:
        known = ", ".join(c.version for c in list_checkpoints(task, root)) or "none"
        raise KeyError(f"no model version {task}@{version} (known for {task}: {known})")
    return ckpt


def _temp_prefix(name: str) -> str:
    """Temp files carry the writer's pid (".model.pt.<pid>.xxxx"), so a later save can tell the
    leftovers of a killed writer (SIGKILL runs no cleanup) from a save in progress."""
    return f".{name}.{os.getpid()}."


_TEMP_RE = re.compile(r"^\.(model\.pt|card\.json|int8_observers\.pt|[\w.-]+)\.(\d+)\.[\w-]+$")


_LEGACY_TEMP_RE = re.compile(r"^\.(model\.pt|card\.json)\.[a-z0-9_]{8}$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    try:   # a zombie (exited, not yet waited for) is dead
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def clean_stale_temp(root: str | os.PathLike) -> list[Path]:
    """Remove the temp files that killed writers left in `<root>/<task>/<version>/` (their pid is
    gone), and version folders left empty by them; returns what was removed."""
    removed: list[Path] = []
    root = Path(root)
    if not root.is_dir():
        return removed
    for folder in root.glob("*/*"):
        if not folder.is_dir():
            continue
        for f in folder.iterdir():
            m = _TEMP_RE.match(f.name)
            stale = (m is not None and int(m.group(2)) != os.getpid() and not _pid_alive(int(m.group(2))))
            if m is None and _LEGACY_TEMP_RE.match(f.name):   # written before temp names held a pid
                try:
                    stale = time.time() - f.stat().st_mtime > 3600
                except OSError:
                    stale = False
            if stale and f.is_file():
                try:
                    f.unlink()
                    removed.append(f)
                except OSError:
                    pass
        try:
            if removed and not any(folder.iterdir()):
                folder.rmdir()
        except OSError:
            pass
    return removed


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path.name))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _first_conv_channels(model: "nn.Module") -> int | None:
    from torch import nn

    for m in _unwrap(model).modules():
        if isinstance(m, nn.Conv2d):
            return int(m.in_channels)
    return None


def save_checkpoint(model: "nn.Module", card: dict, task: str, version: str,
                    root: str | os.PathLike | None = None) -> Path:
    """Write `<root>/<task>/<version>/model.pt` (state dict) and card.json; returns the folder.
    root defaults to settings.models_dir. card needs "architecture" and "classes"; task, version,
    sha256, created and input (from the spec) are filled in. Existing versions are never replaced."""
    import torch

    _check_name("task", task)
    _check_name("version", version)
    card = json.loads(json.dumps(card, default=str))  # a plain-JSON copy
    arch = card.get("architecture")
    spec = get_spec(arch) if arch else None
    if spec is None:
        raise ValueError("card['architecture'] is required (a registered architecture name)")
    classes = card.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise ValueError("card['classes'] must be a non-empty list of class names")
    if root is None:
        from core.config import get_settings

        root = get_settings().models_dir
        if (SHIPPED_ROOT / task / version).exists():
            raise FileExistsError(f"{task}@{version} is a shipped version; choose another version name")
    clean_stale_temp(root)    # what an earlier, killed save left behind
    folder = Path(root) / task / version
    if (folder / MODEL_FILE).exists() or (folder / CARD_FILE).exists():
        raise FileExistsError(f"{folder} exists: versions are immutable, choose a new version name")

    channels = _first_conv_channels(model) or spec.in_channels
    spec = spec.with_channels(channels)
    inp = dict(card.get("input") or {})
    inp.setdefault("size", spec.input_size)
    inp.setdefault("channels", channels)
    inp.setdefault("sequences", None)
    inp.setdefault("mean", list(spec.mean))
    inp.setdefault("std", list(spec.std))
    if int(inp["channels"]) != channels:
        raise ValueError(f"card input.channels={inp['channels']} but the model takes {channels}")
    card["input"] = inp
    card["task"], card["version"] = task, version
    card.setdefault("temperature", 1.0)
    card.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    card.setdefault("parent", None)

    state = {k: v.detach().to("cpu").contiguous() for k, v in _unwrap(model).state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=_temp_prefix(MODEL_FILE))
    os.close(fd)
    try:
        torch.save(state, tmp)
        card["sha256"] = sha256_file(tmp)
        os.replace(tmp, folder / MODEL_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _atomic_write(folder / CARD_FILE, (json.dumps(card, indent=2) + "\n").encode("utf-8"))
    return folder


# what a version's model is: fixed once written (a card may gain descriptive text, never these)
_DEFINING_KEYS = ("task", "version", "architecture", "classes", "input", "temperature", "sha256", "metrics")


def write_card(folder: str | os.PathLike, card: dict) -> None:
    """Rewrite a version's card.json with descriptive changes only (e.g. its results summary);
    refuses to change what defines the model or its measured results."""
    folder = Path(folder)
    old = _read_card(folder)
    if old is None:
        raise FileNotFoundError(f"{folder / CARD_FILE} not found")
    new = json.loads(json.dumps(card, default=str))
    changed = [k for k in _DEFINING_KEYS if old.get(k) != new.get(k)]
    if changed:
        raise ValueError(f"a card's {', '.join(changed)} cannot change: train a new version")
    _atomic_write(folder / CARD_FILE, (json.dumps(new, indent=2) + "\n").encode("utf-8"))


def spec_from_card(card: dict) -> ModelSpec:
    """The architecture's spec with the input size, channels and normalisation the card records."""
    import dataclasses

    spec = get_spec(card["architecture"])
    inp = card.get("input") or {}
    spec = spec.with_channels(int(inp.get("channels") or spec.in_channels))
    changes: dict[str, Any] = {}
    if inp.get("size"):
        changes["input_size"] = int(inp["size"])
    if inp.get("mean") is not None:
        changes["mean"] = tuple(float(v) for v in inp["mean"])
    if inp.get("std") is not None:
        changes["std"] = tuple(float(v) for v in inp["std"])
    return dataclasses.replace(spec, **changes) if changes else spec


def load_checkpoint(ref: str | Checkpoint, root: str | os.PathLike | None = None,
                    map_location: str = "cpu") -> LoadedModel:
    """Load "task@version" / "task@active" (or a Checkpoint): sha256 verified against the card
    (ChecksumError), weights_only load (UnsafeCheckpointError), model in eval mode."""
    ckpt = ref if isinstance(ref, Checkpoint) else resolve_ref(ref, root)
    card = ckpt.card
    for key in ("architecture", "classes", "sha256"):
        if not card.get(key):
            raise CheckpointError(f"{ckpt.path / CARD_FILE}: missing {key!r}")
    state = load_state_file(ckpt.path / MODEL_FILE, sha256=card["sha256"])
    spec = spec_from_card(card)
    classes = [str(c) for c in card["classes"]]
    model = create(spec.name, len(classes), weights=None, in_channels=spec.in_channels)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{ckpt.ref}: weights do not fit {spec.name}: {str(exc)[:500]}") from exc
    model.to(map_location).eval()
    return LoadedModel(model=model, spec=spec, card=card, classes=classes,
                       temperature=float(card.get("temperature") or 1.0), task=ckpt.task,
                       version=ckpt.version, path=ckpt.path)


def headline_metrics(card: dict) -> dict[str, float]:
    """Numeric metrics worth a column: test.<m> and cv.mean.<m> (cv_<m>), cv.ci95 left out."""
    out: dict[str, float] = {}
    metrics = card.get("metrics") or {}
    test = metrics.get("test") or {}
    if isinstance(test, dict):
        for k, v in test.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[f"test_{k}"] = float(v)
    cv = metrics.get("cv") or {}
    if isinstance(cv, dict):
        mean = cv.get("mean")
        if isinstance(mean, dict):
            for k, v in mean.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    out[f"cv_{k}"] = float(v)
        elif isinstance(mean, (int, float)) and not isinstance(mean, bool):
            out["cv_mean"] = float(mean)
    return out
