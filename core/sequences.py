"""MR sequence names: one canonical name per sequence, whatever a user, a file or a model card calls
it ("T1c", "t1ce", "T1Gd", "ce-T1" are all `t1post`). The one alias table of `core`.

Channel names stay as the user gave them (`load_volume(sequences=...)`); code that looks for a
sequence asks `find_channel`, never compares names itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

ANY_SEQUENCE = "grey"  # a model card's sequences ["grey"]: one slice of any sequence, replicated

# canonical name -> how a clinician reads it
SEQUENCE_TITLES = {
    "t1pre": "T1 pre-contrast",
    "t1post": "T1 post-contrast",
    "t2": "T2",
    "flair": "FLAIR",
    "pd": "proton density",
    "t2star": "T2*",
    "swi": "SWI",
    "dwi": "diffusion-weighted",
    "adc": "ADC map",
}

# canonical name -> other spellings, compared after `_key` (lower case, letters/digits only).
# A T1 without a contrast marker is read as pre-contrast: the BraTS convention (t1 / t1ce) and the
# clinical one; a post-contrast T1 is always marked (c, ce, gd, post, +c).
_ALIASES = {
    "t1pre": (
        "t1",
        "t1w",
        "t1weighted",
        "t1native",
        "nativet1",
        "t1precontrast",
        "t1nc",
        "t1noncontrast",
        "t1n",
    ),  # t1n: BraTS 2023
    "t1post": (
        "t1c",
        "t1ce",
        "t1gd",
        "t1wgd",
        "t1wce",
        "t1wc",
        "cet1",
        "cet1w",
        "gdt1",
        "t1post",
        "t1postcontrast",
        "t1contrast",
        "t1wpost",
        "postt1",
        "t1cpost",
        "t1gad",
    ),
    "t2": ("t2w", "t2weighted", "t2tse", "t2fse"),
    "flair": ("t2flair", "t2wflair", "flairt2", "darkfluid", "t2f"),  # t2f: BraTS 2023
    "pd": ("pdw", "protondensity"),
    "t2star": ("t2s", "t2starw"),
    "dwi": ("diffusion", "trace", "tracew"),
}
_LOOKUP = {_key: name for name, spellings in _ALIASES.items() for _key in spellings}
_LOOKUP.update({name: name for name in SEQUENCE_TITLES})


def _key(name) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def canonical_sequence(name) -> str | None:
    """The canonical name of a sequence ("T1Gd" -> "t1post"), or None when `name` is not one
    (e.g. "grey", "red", "t0")."""
    return _LOOKUP.get(_key(name))


def find_channel(channels: Iterable[str], sequence: str) -> str | None:
    """The channel of `channels` that holds `sequence` (an exact name first, then any alias)."""
    channels = list(channels)
    if "t0" in channels:  # the loader's names for unnamed time points / echoes: "t1" is not a T1
        channels = [c for c in channels if not re.fullmatch(r"t\d+", c)]
    if sequence in channels:
        return sequence
    wanted = canonical_sequence(sequence)
    if wanted is None:
        return None
    return next((c for c in channels if canonical_sequence(c) == wanted), None)


def sequence_title(name) -> str:
    """How the page and the report name a sequence or channel: "FLAIR", "T1 post-contrast"."""
    return SEQUENCE_TITLES.get(canonical_sequence(name) or "", str(name))
