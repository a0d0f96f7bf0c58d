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
    title: str                         # how the page, the PDF and the report name the task
    # Sequences in order of preference for a model trained on "grey" (any single sequence): the
    # Predictor reads the first one the scan has. A model that stacks several sequences declares
    # them in its card instead.
    prefers: tuple[str, ...]
    upstream: str | None               # the task whose answer this one needs (cascade order)


TASK_TABLE: dict[str, Task] = {
    # presence is most reliable on FLAIR (slice AUC 0.92 on held-out TCGA patients, 0.79 on T1-pre)
    "presence": Task("presence", "Tumour presence", ("flair", "t2", "t1post", "t1pre"), None),
    # tumour type was trained on T1 post-contrast slices only (Figshare CE-MRI)
    "tumor_type": Task("tumor_type", "Tumour type", ("t1post", "t1", "t1pre", "flair", "t2"), "presence"),
    "grade": Task("grade", "Glioma grade", ("t1pre", "flair", "t1post"), "tumor_type"),
}
TASKS: tuple[str, ...] = tuple(TASK_TABLE)          # cascade order: presence -> tumor_type -> grade

CLASS_TITLES = {"no_tumor": "No tumour", "tumor": "Tumour", "glioma": "Glioma", "meningioma": "Meningioma",
                "pituitary": "Pituitary tumour", "G2": "WHO grade II", "G3": "WHO grade III",
                "LGG": "Lower-grade glioma", "HGG": "High-grade glioma"}


def task_title(task: str) -> str:
    t = TASK_TABLE.get(task)
    return t.title if t else str(task).replace("_", " ").capitalize()


def class_title(label: str) -> str:
    """A class name as a clinician reads it."""
    return CLASS_TITLES.get(str(label), str(label).replace("_", " ").capitalize())


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
