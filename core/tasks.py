"""The task table: what each task decides, its classes in words, the sequences it prefers and what
it depends on in the cascade. Defined once; the rest of `core` reads it from here.

A model's card names the classes it was trained with; `class_title` turns any of them into the
words a clinician reads.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    name: str
    title: str  # how the page, the PDF and the report name the task
    # Sequences in order of preference for a model trained on "grey" (any single sequence): the
    # Predictor reads the first one the scan has. A model that stacks several sequences declares
    # them in its card instead.
    prefers: tuple[str, ...]
    upstream: str | None  # the task whose answer this one needs (cascade order)
    classes: tuple[str, ...] = ()  # the labels a reviewer may give (the active card may add its own)


TASK_TABLE: dict[str, Task] = {
    # presence is most reliable on FLAIR (slice AUC 0.92 on held-out TCGA patients, 0.79 on T1-pre)
    "presence": Task("presence", "Tumour presence", ("flair", "t2", "t1post", "t1pre"), None, ("no_tumor", "tumor")),
    # tumour type was trained on T1 post-contrast slices only (Figshare CE-MRI)
    "tumor_type": Task(
        "tumor_type",
        "Tumour type",
        ("t1post", "t1", "t1pre", "flair", "t2"),
        "presence",
        ("glioma", "meningioma", "pituitary"),
    ),
    # G2/G3: TCGA-LGG (WHO grade II/III); LGG/HGG: BraTS-style data a user may train on
    "grade": Task("grade", "Glioma grade", ("t1pre", "flair", "t1post"), "tumor_type", ("G2", "G3", "LGG", "HGG")),
}
TASKS: tuple[str, ...] = tuple(TASK_TABLE)  # cascade order: presence -> tumor_type -> grade

# The metric a challenger must beat the champion on (core.promotion), and at which level
PRIMARY_METRIC: dict[str, tuple[str, str]] = {
    "tumor_type": ("balanced_accuracy", "slice"),
    "presence": ("auc", "slice"),
    "grade": ("auc", "patient"),
}


def primary_metric(task: str) -> tuple[str, str]:
    """(metric, "slice" | "patient") that decides promotion for `task`."""
    return PRIMARY_METRIC.get(task, ("balanced_accuracy", "slice"))


CLASS_TITLES = {
    "no_tumor": "No tumour",
    "tumor": "Tumour",
    "glioma": "Glioma",
    "meningioma": "Meningioma",
    "pituitary": "Pituitary tumour",
    "G2": "WHO grade II",
    "G3": "WHO grade III",
    "LGG": "Lower-grade glioma",
    "HGG": "High-grade glioma",
}


def task_title(task: str) -> str:
    t = TASK_TABLE.get(task)
    return t.title if t else str(task).replace("_", " ").capitalize()


def class_title(label: str) -> str:
    """A class name as a clinician reads it."""
    return CLASS_TITLES.get(str(label), str(label).replace("_", " ").capitalize())


class InvalidLabel(ValueError):
    """A task or label that is not in the task table (nor a class of the task's active model)."""


def label_classes(task: str) -> tuple[str, ...]:
    """The labels `task` accepts: its classes in the table, then those of its active model card."""
    t = TASK_TABLE.get(task)
    if t is None:
        return ()
    out = list(t.classes)
    try:  # model_zoo only when a label is checked; a broken zoo must not block labelling
        from core.zoo import active_version, model_card

        version = active_version(task)
        if version:
            out += [c for c in model_card(f"{task}@{version}").classes if c not in out]
    except Exception:  # noqa: BLE001 - the table's classes still hold
        pass
    return tuple(out)


def check_task(task: str) -> str:
    if task not in TASK_TABLE:
        raise InvalidLabel(f"unknown task {str(task)[:60]!r}; choose from {', '.join(TASKS)}")
    return task


def check_label(task: str, value: str) -> str:
    """`value` if it is a label of `task`; InvalidLabel (a ValueError) with the choices otherwise."""
    allowed = label_classes(check_task(task))
    if str(value) not in allowed:
        raise InvalidLabel(f"{str(value)[:60]!r} is not a class of {task}; choose from {', '.join(allowed)}")
    return str(value)


def downstream(task: str) -> list[str]:
    """The tasks that need `task`'s answer, directly or through another task, in cascade order."""
    out: list[str] = []
    for name in TASKS:
        up = TASK_TABLE[name].upstream
        while up is not None:
            if up == task:
                out.append(name)
                break
            up = TASK_TABLE[up].upstream
    return out
