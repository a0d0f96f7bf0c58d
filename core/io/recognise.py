"""Which MR sequence is this series? From a DICOM series' acquisition attributes
(`Volume.meta["acquisition"]`, see core.io.acquisition) or from a file name (BIDS, BraTS, free words).

Answers are canonical names of core.sequences (t1pre, t1post, t2, flair, pd, t2star, swi, dwi, adc)
or UNKNOWN, always with the evidence in words, so a wrong guess can be seen and corrected. Rules:
- Words (the series description, the file name) name the sequence when they name exactly one;
  the header's physics (TR, TE, TI, scanning sequence) names it otherwise, and a disagreement
  between the two is reported.
- A contrast agent in the header, or a contrast word ("post", "gd", "+c", BIDS `ce-`), makes a T1
  `t1post`; a T1 without either is `t1pre` (the convention of core.sequences). Only T1 is turned
  by contrast: a FLAIR acquired after contrast is still a FLAIR.
- Anything else is UNKNOWN: never guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.sequences import canonical_sequence

UNKNOWN = "unknown"

# words that are sequences without being spellings of core.sequences (scanner product names,
# BraTS 2023 suffixes); compared lower case. "t1" here is a T1 whose contrast is decided later.
_WORD_SEQUENCES = {
    "mprage": "t1",
    "mp2rage": "t1",
    "spgr": "t1",
    "fspgr": "t1",
    "bravo": "t1",
    "tfl": "t1",
    "tfe": "t1",
    "vibe": "t1",
    "t1n": "t1pre",
    "t2f": "flair",
}
_CONTRAST_WORDS = {
    "post",
    "gd",
    "gad",
    "gado",
    "contrast",
    "postcontrast",
    "ce",
    "enhanced",
    "postgd",
    "mdc",
    "kontrast",
    "km",
}
_PRE_WORDS = {"pre", "native", "nativ", "precontrast", "noncontrast", "nc", "plain"}
# files that are not a sequence: segmentations and masks (BraTS `_seg`, BIDS `_dseg`, `_mask`)
_LABEL_WORDS = {"seg", "dseg", "mask", "label", "labels", "segmentation", "roi", "brainmask"}
_NIFTI_SUFFIX = re.compile(r"\.(nii(\.gz)?|gz)$", re.IGNORECASE)


@dataclass(frozen=True)
class Recognition:
    sequence: str  # canonical name (core.sequences) or UNKNOWN
    evidence: str  # in words, without any identifying text ("series description: T1 POST")
    doubt: str = ""  # a disagreement the user should check, or ""


def words(text: str) -> list[str]:
    """Lower-case words of a description or a file stem: "Ax T1+C" -> ["ax", "t1", "post"],
    "T2*_GRE" -> ["t2star", "gre"], "sub-01_ce-gd_T1w" -> ["sub", "01", "ce", "gd", "t1w"]."""
    text = str(text).lower()
    text = re.sub(r"t2\s*\*", " t2star ", text)
    text = re.sub(r"(\+\s*c\b|\bc\s*\+|\+\s*gd\b|\+)", " post ", text)
    return re.findall(r"[a-z0-9]+", text)


def from_words(tokens: list[str]) -> tuple[str | None, str]:
    """(sequence or None, the words that named it) from description / file-name words.
    None when no word names a sequence or when words name several different ones."""
    found: dict[str, list[str]] = {}
    paired = set()
    for i in range(len(tokens) - 1):  # pairs first: "t1 gd", "t2 flair", "t1 post"
        pair = canonical_sequence(tokens[i] + tokens[i + 1])
        if pair and pair != canonical_sequence(tokens[i]):
            found.setdefault(pair, []).extend(tokens[i : i + 2])
            paired |= {i, i + 1}
    for i, word in enumerate(tokens):
        name = None if i in paired else canonical_sequence(word) or _WORD_SEQUENCES.get(word)
        if name:
            found.setdefault(name, []).append(word)
    t1 = [k for k in ("t1post", "t1pre", "t1") if k in found]
    if t1:  # "T1 MPRAGE post" is one T1; a bare "T1" is not yet "pre"
        said = [w for k in t1 for w in found.pop(k)]
        found["t1post" if "t1post" in t1 else "t1"] = said
        found.pop("flair", None)  # T1-FLAIR is a T1-weighted sequence
    if "t2" in found and ("flair" in found or "t2star" in found):
        found.pop("t2")  # "T2 ... FLAIR", "T2* GRE"
    if len(found) != 1:
        return None, ""
    name, said = next(iter(found.items()))
    if name == "t1":
        marks = sorted(set(tokens) & _CONTRAST_WORDS)
        if marks and not set(tokens) & _PRE_WORDS:
            return "t1post", " ".join([*dict.fromkeys(said), *marks])
        name = "t1pre"
    return name, " ".join(dict.fromkeys(said))


def _physics(acq: dict) -> tuple[str | None, str]:
    """The sequence the timing says (typical 1.5 / 3 T values), with the values quoted; None when
    they do not say."""
    tr, te, ti, flip = (_number(acq.get(k)) for k in ("RepetitionTime", "EchoTime", "InversionTime", "FlipAngle"))
    scanning = {str(s).upper() for s in acq.get("ScanningSequence") or []}
    quoted = ", ".join(f"{k} {v:g} ms" for k, v in (("TR", tr), ("TE", te), ("TI", ti)) if v is not None)
    if ti is not None and ti > 0:
        if ti >= 1500:
            return "flair", quoted
        if ti >= 300 and (te is None or te < 30):
            return "t1", quoted  # MPRAGE, T1-FLAIR, IR-SPGR
        return None, quoted  # STIR and other short-TI inversions
    if tr is None or te is None:
        return None, quoted
    if "GR" in scanning or (not scanning & {"SE", "IR"} and tr < 100):  # gradient echo
        if te >= 15 and (flip is None or flip <= 30):
            return "t2star", quoted
        if te < 10 and (tr < 100 or (flip or 0) >= 50):
            return "t1", quoted
        return None, quoted
    if tr < 1000 and te < 30:
        return "t1", quoted
    if tr >= 2000 and te >= 60:
        return "t2", quoted
    if tr >= 1500 and te < 35:
        return "pd", quoted
    return None, quoted


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) < 1e7 else None


def from_acquisition(acq: dict | None) -> Recognition:
    """A DICOM series' sequence from its de-identified acquisition attributes."""
    if not isinstance(acq, dict) or not acq or acq.get("error"):
        return Recognition(UNKNOWN, "no readable acquisition header")
    description = str(acq.get("SeriesDescription") or "")
    tokens = words(description)
    named, said = from_words(tokens)
    physics, quoted = _physics(acq)
    contrast = bool(acq.get("contrast_agent"))
    agent = ", contrast agent recorded" if contrast else ""
    if named is None and physics is None:
        what = f"series description {description!r}" if description else "no series description"
        return Recognition(UNKNOWN, f"{what}; {quoted or 'no TR/TE'}: not a sequence these rules name")
    if named is None:
        name = "t1post" if physics == "t1" and contrast else "t1pre" if physics == "t1" else physics
        return Recognition(name, f"header timing ({quoted}){agent}")
    evidence, doubt = f"series description ({said}){agent}", ""
    if named == "t1pre" and contrast:
        if set(tokens) & _PRE_WORDS:
            doubt = "the description says pre-contrast but the header records a contrast agent: check it"
        else:
            named = "t1post"
    if physics is not None and not _compatible(named, physics, acq):
        doubt = f"the series description says {named} but the timing ({quoted}) suggests {physics}: check it"
    return Recognition(named, evidence, doubt)


def _marked(name: str, tokens: list[str]) -> str:
    """A T1 named at the end of a file name ("post_contrast_T1") with contrast words elsewhere."""
    if name == "t1pre" and set(tokens) & _CONTRAST_WORDS and not set(tokens) & _PRE_WORDS:
        return "t1post"
    return name


def _compatible(named: str, physics: str, acq: dict) -> bool:
    family = {"t1pre": "t1", "t1post": "t1", "swi": "t2star"}
    named, physics = family.get(named, named), family.get(physics, physics)
    no_ti = _number(acq.get("InversionTime")) is None
    return named == physics or (named == "flair" and physics == "t2" and no_ti)


def from_filename(name: str) -> Recognition:
    """A NIfTI file's sequence from its name: BIDS (`sub-01_ce-gd_T1w.nii.gz`: the suffix, with the
    `ce-` entity marking contrast), BraTS (`..._t1ce.nii.gz`, 2023's `-t1c`, `-t2f`) or free words
    (`flair_ax.nii`). Only the sequence words are quoted: file names can identify the patient."""
    stem = _NIFTI_SUFFIX.sub("", str(name or "").rsplit("/", 1)[-1])
    if not stem:
        return Recognition(UNKNOWN, "no file name")
    bids = _bids(stem)
    if bids is not None:
        return bids
    tokens = words(stem)
    if set(tokens) & _LABEL_WORDS:
        return Recognition("label", "file name (" + "/".join(sorted(set(tokens) & _LABEL_WORDS)) + ")")
    named, said = from_words(tokens)
    if named:
        return Recognition(named, f"file name ({said})")
    for take in (1, 2):  # several sequence words: BraTS and friends end in it
        named, said = from_words(tokens[-take:])
        if named:
            return Recognition(_marked(named, tokens), f"file name ending ({said})")
    return Recognition(UNKNOWN, "file name without a sequence word")


_BIDS_SUFFIXES = {
    "t1w": "t1pre",
    "t2w": "t2",
    "flair": "flair",
    "t2starw": "t2star",
    "pdw": "pd",
    "pd": "pd",
    "t2star": "t2star",
    "swimagandphase": "swi",
    "dwi": "dwi",
    "inplanet1": "t1pre",
    "inplanet2": "t2",
    "pdt2": None,
    "angio": None,
    "t1map": None,
    "t2map": None,
    "defacemask": "label",
    "mask": "label",
    "dseg": "label",
}


def _bids(stem: str) -> Recognition | None:
    parts = stem.split("_")
    if len(parts) < 2 or not all("-" in p for p in parts[:-1]) or not parts[0].lower().startswith("sub-"):
        return None
    suffix = parts[-1].lower()
    if suffix not in _BIDS_SUFFIXES:
        return Recognition(UNKNOWN, f"BIDS suffix {parts[-1][:16]!r} is not a sequence these rules name")
    name = _BIDS_SUFFIXES[suffix]
    if name is None:
        return Recognition(UNKNOWN, f"BIDS suffix {parts[-1]!r} (not an anatomical sequence read here)")
    entities = dict(p.lower().split("-", 1) for p in parts[:-1])
    if name == "t1pre" and entities.get("ce"):
        return Recognition("t1post", f"BIDS name (ce-{entities['ce'][:16]}_{parts[-1]})")
    return Recognition(name, f"BIDS name ({'ce-' + entities['ce'][:16] + '_' if 'ce' in entities else ''}{parts[-1]})")


def case_of(name: str) -> str | None:
    """What names the subject / session in a file name, compared across the files of one study:
    BIDS `sub-` and `ses-` entities, or a BraTS-style case prefix (`<case>_t1ce`, with a digit in
    it). None when the name does not say. Never stored nor shown: only compared."""
    stem = _NIFTI_SUFFIX.sub("", str(name or "").rsplit("/", 1)[-1])
    parts = stem.split("_")
    if parts and parts[0].lower().startswith("sub-"):
        return "_".join(p.lower() for p in parts if p.lower().startswith(("sub-", "ses-")))
    match = re.fullmatch(r"(?P<case>.+?)[_-](?P<seq>t1|t1ce|t1c|t1n|t1gd|t2|t2w|t2f|flair|pd|seg)", stem, re.IGNORECASE)
    if match and re.search(r"\d", match["case"]) and from_words(words(match["case"]))[0] is None:
        return match["case"].lower()
    return None
