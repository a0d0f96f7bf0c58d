"""User- and file-supplied strings shown as text: the ONE escaping helper.

Streamlit renders the body of st.markdown / st.caption / st.write / st.info|success|warning|error,
widget labels and radio options as Markdown (and, with unsafe_allow_html, HTML). A reviewer name
such as `![x](https://host/pixel.png)` would make every other reviewer's browser fetch that URL.
Anything a person typed (reviewer names, labels, comments, version names, reasons) or a file or
card supplied (class names, series descriptions, intended use, limitations, notes) goes through
`text()` before it is placed in such a string:

    st.markdown(f"Current label: **{text(label)}** by {text(reviewer)}")

Every ASCII punctuation character is backslash-escaped (CommonMark lets any of them be escaped,
and an escaped `<` or `&` is never HTML), and line breaks become spaces (no new block can start).
"""

from __future__ import annotations

import re
import string

_PUNCT = re.compile("([" + re.escape(string.punctuation) + "])")
_BREAKS = re.compile(r"[\r\n\u2028\u2029\x0b\x0c]+")


def text(value, limit: int | None = 500) -> str:
    """`value` as literal text inside Markdown/HTML (None -> "")."""
    s = "" if value is None else str(value)
    if limit is not None and len(s) > limit:
        s = s[:limit] + "…"
    s = _BREAKS.sub(" ", s)
    return _PUNCT.sub(r"\\\1", s)


__all__ = ["text"]
