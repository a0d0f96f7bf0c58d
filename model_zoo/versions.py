"""Model versions on disk: immutable folders `<root>/<task>/<version>/{model.pt, card.json}`.

A `Zoo` says where one installation's versions live; the caller passes the folders in (the zoo
never reads settings):

    zoo = Zoo(models_dir=home / "models", active_file=home / "active.json")
    zoo.list("tumor_type"); zoo.active("tumor_type"); loaded = zoo.load("tumor_type@active")

- Shipped versions are in `model_zoo/checkpoints/` (SHIPPED_ROOT), user-trained ones in
  `models_dir`. A version name is unique per task across both.
- `save` writes model.pt (a plain state dict) and card.json (with the sha256 of model.pt). A
  version is never overwritten.
- `load("task@version" | "task@active")` checks the sha256 against the card, loads with
  torch.load(weights_only=True) and returns a LoadedModel (model in eval mode).
- Active version of a task: `active_file` ({"task": "version"}, written by promotion) if it names
  an existing version, else model_zoo/checkpoints/<task>/ACTIVE (one line), else the newest
  *shipped* version. A user-trained version never becomes active by being newest: it has to beat
  the champion and be promoted.

The card is read here only as plain data: what verification and loading need (architecture,
classes, input, temperature, sha256).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import re
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model_zoo.architectures import build
from model_zoo.modules import first_conv_channels, unwrap
from model_zoo.registry import ModelSpec, get_spec
from model_zoo.state import CheckpointError, load_state_file, sha256_file

SHIPPED_ROOT = Path(__file__).resolve().parent / "checkpoints"
MODEL_FILE = "model.pt"
CARD_FILE = "card.json"
ACTIVE_FILE = "ACTIVE"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# what a version's model is: fixed once written (a card may gain descriptive text, never these)
_DEFINING_KEYS = ("task", "version", "architecture", "classes", "input", "temperature", "sha256", "metrics")


@dataclass(frozen=True)
class Checkpoint:
    task: str
    version: str
    path: Path  # the version folder
    card: dict = field(compare=False)
    source: str = "user"  # "shipped" | "user"

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
    model: nn.Module  # eval mode, on CPU
    spec: ModelSpec  # the architecture's spec with the card's input (size, channels, mean, std)
    card: dict
    classes: list[str]
    temperature: float
    task: str = ""
    version: str = ""
    path: Path | None = None

    @property
    def ref(self) -> str:
        return f"{self.task}@{self.version}"


@dataclass(frozen=True)
class Zoo:
    """The versions one installation sees. `models_dir`: user-trained versions (None: none);
    `active_file`: the champions promotion chose (None: none); `include_shipped`: also the versions
    in SHIPPED_ROOT (read at call time, so a test can point it elsewhere)."""

    models_dir: Path | None = None
    active_file: Path | None = None
    include_shipped: bool = True

    @classmethod
    def folder(cls, root: str | os.PathLike) -> Zoo:
        """Only the versions under `root`: no shipped ones, no champions file."""
        return cls(models_dir=Path(root), include_shipped=False)

    # ------------------------------------------------------------------------------ finding
    def roots(self) -> list[tuple[str, Path]]:
        found = [("shipped", SHIPPED_ROOT)] if self.include_shipped else []
        return found + ([("user", Path(self.models_dir))] if self.models_dir is not None else [])

    def list(self, task: str | None = None) -> list[Checkpoint]:
        """Every version, sorted by task, then created date, then version."""
        found: list[Checkpoint] = []
        for source, base in self.roots():
            for task_dir in _subfolders(base):
                if task is None or task_dir.name == task:
                    found.extend(
                        Checkpoint(task_dir.name, vdir.name, vdir, card, source)
                        for vdir, card in _versions_in(task_dir)
                    )
        return sorted(found, key=lambda c: (c.task, c.created, c.version))

    def find(self, task: str, version: str) -> Checkpoint | None:
        return next((c for c in self.list(task) if c.version == version), None)

    def champions(self) -> dict:
        """The active_file's {"task": "version"} ({} when there is none or it is unreadable)."""
        if self.active_file is None or not Path(self.active_file).is_file():
            return {}
        try:
            data = json.loads(Path(self.active_file).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            warnings.warn(f"ignoring unreadable {self.active_file}: {exc}", stacklevel=3)
            return {}
        return data if isinstance(data, dict) else {}

    def active(self, task: str) -> str | None:
        """The active version of `task` (see module doc), or None when the task has no version."""
        versions = self.list(task)
        names = {c.version for c in versions}
        override = self.champions().get(task)
        if override:
            if override in names:
                return str(override)
            warnings.warn(
                f"{Path(self.active_file).name} names {task}@{override}, which does not exist; ignoring it",
                stacklevel=2,
            )
        marker = SHIPPED_ROOT / task / ACTIVE_FILE
        if self.include_shipped and marker.is_file():
            shipped = marker.read_text(encoding="utf-8").strip()
            if shipped in names:
                return shipped
            if shipped:
                warnings.warn(f"{marker} names {shipped}, which does not exist; ignoring it", stacklevel=2)
        shipped = [c for c in versions if c.source == "shipped"]
        return shipped[-1].version if shipped else None

    def resolve(self, ref: str) -> Checkpoint:
        """ "task@version" or "task@active" (or just "task", meaning active) -> Checkpoint."""
        task, _, version = str(ref).partition("@")
        version = version or "active"
        if version == "active":
            resolved = self.active(task)
            if resolved is None:
                raise KeyError(f"task {task!r} has no model version (shipped or user)")
            version = resolved
        ckpt = self.find(task, version)
        if ckpt is None:
            known = ", ".join(c.version for c in self.list(task)) or "none"
            raise KeyError(f"no model version {task}@{version} (known for {task}: {known})")
        return ckpt

    # ------------------------------------------------------------------------------ changing
    def set_active(self, task: str, version: str) -> Path:
        """Make `task@version` active (writes active_file atomically)."""
        if self.active_file is None:
            raise ValueError("this zoo has no active file to record champions in")
        if self.find(task, version) is None:
            raise KeyError(f"no model version {task}@{version}")
        data = self.champions()
        data[task] = version
        _atomic_write(Path(self.active_file), (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
        return Path(self.active_file)

    def save(self, model: nn.Module, card: dict, task: str, version: str) -> Path:
        """Write `<models_dir>/<task>/<version>/model.pt` (state dict) and card.json; returns the
        folder. card needs "architecture" and "classes"; task, version, sha256, created and input
        (from the spec) are filled in. Existing versions, shipped ones included, are never replaced."""
        if self.models_dir is None:
            raise ValueError("this zoo has no folder for new versions")
        _check_name("task", task)
        _check_name("version", version)
        if self.include_shipped and (SHIPPED_ROOT / task / version).exists():
            raise FileExistsError(f"{task}@{version} is a shipped version; choose another version name")
        return save_version(model, card, Path(self.models_dir) / task / version)

    def load(self, ref: str | Checkpoint, map_location: str = "cpu") -> LoadedModel:
        """Load "task@version" / "task@active" (or a Checkpoint): sha256 verified against the card
        (ChecksumError), weights_only load (UnsafeCheckpointError), model in eval mode."""
        return load_version(ref if isinstance(ref, Checkpoint) else self.resolve(ref), map_location)


# ---------------------------------------------------------------------------------- one version
def load_version(ckpt: Checkpoint, map_location: str = "cpu") -> LoadedModel:
    card = ckpt.card
    for key in ("architecture", "classes", "sha256"):
        if not card.get(key):
            raise CheckpointError(f"{ckpt.path / CARD_FILE}: missing {key!r}")
    state = load_state_file(ckpt.path / MODEL_FILE, sha256=card["sha256"])
    spec = spec_from_card(card)
    classes = [str(c) for c in card["classes"]]
    model = build(spec, len(classes))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{ckpt.ref}: weights do not fit {spec.name}: {str(exc)[:500]}") from exc
    model.to(map_location).eval()
    return LoadedModel(
        model=model,
        spec=spec,
        card=card,
        classes=classes,
        temperature=float(card.get("temperature") or 1.0),
        task=ckpt.task,
        version=ckpt.version,
        path=ckpt.path,
    )


def save_version(model: nn.Module, card: dict, folder: Path) -> Path:
    """Write a new version folder `<root>/<task>/<version>` (see Zoo.save)."""
    task, version = folder.parent.name, folder.name
    card = json.loads(json.dumps(card, default=str))  # a plain-JSON copy
    spec = _card_architecture(card)
    classes = card.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise ValueError("card['classes'] must be a non-empty list of class names")
    clean_stale_temp(folder.parent.parent)  # what an earlier, killed save left behind
    if (folder / MODEL_FILE).exists() or (folder / CARD_FILE).exists():
        raise FileExistsError(f"{folder} exists: versions are immutable, choose a new version name")

    channels = first_conv_channels(model) or spec.in_channels
    card["input"] = _card_input(card, spec.with_channels(channels))
    card["task"], card["version"] = task, version
    card.setdefault("temperature", 1.0)
    card.setdefault("created", _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
    card.setdefault("parent", None)

    state = {k: v.detach().to("cpu").contiguous() for k, v in unwrap(model).state_dict().items()}
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


def _card_architecture(card: dict) -> ModelSpec:
    arch = card.get("architecture")
    if not arch:
        raise ValueError("card['architecture'] is required (a registered architecture name)")
    return get_spec(arch)


def _card_input(card: dict, spec: ModelSpec) -> dict:
    """The card's input section completed from the spec; its channels must be the model's."""
    inp = dict(card.get("input") or {})
    inp.setdefault("size", spec.input_size)
    inp.setdefault("channels", spec.in_channels)
    inp.setdefault("sequences", None)
    inp.setdefault("mean", list(spec.mean))
    inp.setdefault("std", list(spec.std))
    if int(inp["channels"]) != spec.in_channels:
        raise ValueError(f"card input.channels={inp['channels']} but the model takes {spec.in_channels}")
    return inp


def write_card(folder: str | os.PathLike, card: dict) -> None:
    """Rewrite a version's card.json with descriptive changes only (e.g. its results summary);
    refuses to change what defines the model or its measured results."""
    folder = Path(folder)
    old = read_card(folder)
    if old is None:
        raise FileNotFoundError(f"{folder / CARD_FILE} not found")
    new = json.loads(json.dumps(card, default=str))
    changed = [k for k in _DEFINING_KEYS if old.get(k) != new.get(k)]
    if changed:
        raise ValueError(f"a card's {', '.join(changed)} cannot change: train a new version")
    _atomic_write(folder / CARD_FILE, (json.dumps(new, indent=2) + "\n").encode("utf-8"))


def read_card(folder: Path) -> dict | None:
    """A version folder's card.json as plain data; None (with a warning) when it is unreadable."""
    try:
        card = json.loads((folder / CARD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        warnings.warn(f"skipping {folder}: unreadable {CARD_FILE} ({exc})", stacklevel=3)
        return None
    return card if isinstance(card, dict) else None


def spec_from_card(card: dict) -> ModelSpec:
    """The architecture's spec with the input size, channels and normalisation the card records."""
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


def headline_metrics(card: dict) -> dict[str, float]:
    """Numeric metrics worth a column: test.<m> and cv.mean.<m> (cv_<m>), cv.ci95 left out."""
    out: dict[str, float] = {}
    metrics = card.get("metrics") or {}
    test = metrics.get("test") or {}
    if isinstance(test, dict):
        out.update((f"test_{k}", float(v)) for k, v in test.items() if _is_number(v))
    cv = metrics.get("cv") or {}
    if isinstance(cv, dict):
        mean = cv.get("mean")
        if isinstance(mean, dict):
            out.update((f"cv_{k}", float(v)) for k, v in mean.items() if _is_number(v))
        elif _is_number(mean):
            out["cv_mean"] = float(mean)
    return out


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# ---------------------------------------------------------------------------------- the disk
def _check_name(kind: str, value: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value) or value == "active":
        raise ValueError(f"{kind} {value!r}: use letters, digits, '.', '_' or '-' (not 'active')")
    return value


def _subfolders(base: Path) -> list[Path]:
    return sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []


def _versions_in(task_dir: Path):
    """(folder, card) of every complete version folder of one task (both files, a readable card)."""
    for vdir in _subfolders(task_dir):
        if (vdir / MODEL_FILE).is_file() and (vdir / CARD_FILE).is_file():
            card = read_card(vdir)
            if card is not None:
                yield vdir, card


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
    try:  # a zombie (exited, not yet waited for) is dead
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _is_stale_temp(f: Path) -> bool:
    m = _TEMP_RE.match(f.name)
    if m is not None:
        pid = int(m.group(2))
        return pid != os.getpid() and not _pid_alive(pid)
    if _LEGACY_TEMP_RE.match(f.name):  # written before temp names held a pid
        try:
            return time.time() - f.stat().st_mtime > 3600
        except OSError:
            return False
    return False


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
            if f.is_file() and _is_stale_temp(f):
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
