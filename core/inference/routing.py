"""Which channels of a scan each task's model reads.

A model of one grey channel (card sequences ["grey"] or one named sequence) reads the first of its
own sequence and the task's `prefers` (core.tasks) that the scan has, else the active channel. A
multi-sequence model reads exactly its declared sequences: when one is missing it does not run,
unless forced, and then it reads substitutes, flagged with `Route.substitute`.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.sequences import ANY_SEQUENCE, canonical_sequence, find_channel, sequence_title
from core.tasks import TASK_TABLE

COLOUR = ("red", "green", "blue")


@dataclass(frozen=True)
class Route:
    channels: list[str] | None  # in the model's input order; None: the model does not run
    note: str = ""  # "" when it reads what it expects, else why not, in words
    substitute: bool = False  # a forced multi-sequence model reads stand-ins for missing sequences


def route(task: str, declared: list[str] | None, have: list[str], active: str, forced: bool) -> Route:
    """The channels (of `have`; `active` is the volume's active channel) that `task`'s model,
    whose card declares `declared` sequences, reads."""
    want = declared or []
    if len(want) > 1:
        return _declared_channels(task, want, have, active, forced)
    named = [s for s in want if s != ANY_SEQUENCE]
    prefers = TASK_TABLE[task].prefers if task in TASK_TABLE else ()
    order = list(dict.fromkeys(canonical_sequence(s) or s for s in [*named, *prefers]))
    for seq in order:
        channel = find_channel(have, seq)
        if channel is not None:
            other = named and canonical_sequence(channel) != named[0]
            return Route(
                [channel],
                f"{task}: the model was trained on {sequence_title(named[0])}; "
                f"the scan has none: read on {sequence_title(channel)}"
                if other
                else "",
            )
    if named:
        return Route(
            [active],
            f"{task}: the model was trained on {sequence_title(named[0])}; the "
            f"scan has {', '.join(have)}: read on {active}",
        )
    if len(have) > 1 and not set(COLOUR) <= set(have):  # unnamed sequences
        return Route(
            [active],
            f"{task}: no channel is named as a sequence it reads "
            f"({', '.join(map(sequence_title, order))}): read on {active}",
        )
    return Route([active])


def _declared_channels(task: str, want: list[str], have: list[str], active: str, forced: bool) -> Route:
    found = [find_channel(have, s) for s in want]
    if all(found):
        return Route(found)
    missing = [s for s, c in zip(want, found) if c is None]
    msg = (
        f"{task} needs sequences {', '.join(want)} (missing {', '.join(missing)}); "
        f"name the channels of multi-channel input with sequences="
    )
    if not forced:
        return Route(None, msg)
    colour = [c for c in COLOUR if c in have]
    if len(colour) == len(want):
        return Route(colour, msg + "; ran on the red, green, blue channels as asked (substitute inputs)", True)
    return Route([active], msg + "; ran on the active channel replicated as asked (substitute inputs)", True)
